//! Video on demand: playing an FLV file to one player through file requests.
//!
//! Each player of a file has its own [`VodPlayer`] (its own file handle, reader and position).
//! On open the file is summarised once ([`FileScanner`]: keyframe index, `onMetaData`, decoder
//! configurations), or the summary is taken from the server's cache (files it recorded or
//! played before, keyed by path and size). Tags are sent paced by their timestamps: a tag goes
//! out when the play clock reaches its timestamp minus `vod_burst`, so a player gets a small
//! buffer at once and then real time, never the whole file as fast as the socket takes it.
//! `seek` lands on the keyframe at or before the target; `pause` stops the clock.
//!
//! Tags keep the file's own timestamps after a start position and a seek (so players show the
//! file's position, as with nginx-rtmp), each message with a full format-0 header, so a jump
//! back or forth needs no state in the receiver's decoder. (rtmpdump's `--start` adds the start
//! to every timestamp it records, whatever the server: its recordings are shifted by it.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::amf::Value;
use crate::flv::index::{FileScanner, FileSummary};
use crate::flv::reader::{FlvReader, FlvTag};
use crate::flv::tag::tag_type;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rtmp::chunk_encoder::encode_fmt0;
use crate::rtmp::command::{data_message, status_object};
use crate::rtmp::control::UserControl;
use crate::rtmp::message::RtmpMessage;
use crate::storage::{FileError, FileErrorKind, FileId, FileOp, FileReply, FileRequest, OpenMode};

use super::session::{csid, StreamRole};
use super::{RtmpServer, Timer};

/// Where a file player is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VodState {
    Opening,
    Scanning,
    Playing,
    Paused,
    /// Everything was sent; the stream stays until closed (a seek plays again).
    Ended,
}

/// What `play` asked for.
#[derive(Debug, Clone)]
pub(crate) struct PlayRequest {
    pub name: String,
    pub key: Arc<str>,
    pub path: String,
    /// Start position in ms.
    pub start: u32,
    /// How much to play, in ms (`None`: to the end).
    pub len: Option<u32>,
    pub reset: bool,
    /// `play(name, -2)`: a missing file means "wait for a live publisher" instead of an error.
    pub fall_back_to_live: bool,
}

/// One player of one file.
#[derive(Debug)]
pub(crate) struct VodPlayer {
    pub conn: ConnId,
    pub stream_id: u32,
    pub request: PlayRequest,
    pub state: VodState,
    size: u64,
    summary: Option<Arc<FileSummary>>,
    scanner: Option<Box<FileScanner>>,
    reader: FlvReader,
    /// The read in flight: (offset, length).
    read_pending: Option<(u64, usize)>,
    /// The reader's last read reached the end of the file.
    eof: bool,
    peeked: Option<FlvTag>,
    /// The play clock: at `.0` the player is at media time `.1` (ms).
    clock: (Instant, u32),
    end_at: Option<u32>,
    last_sent: u32,
    /// Waiting for the send queue to drain below the soft backlog.
    pub blocked: bool,
    timer: Option<Instant>,
    bytes_sent: u64,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl RtmpServer {
    /// Opens the file for `play`; playback starts when it is open and summarised.
    pub(super) fn start_vod(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        request: PlayRequest,
    ) {
        let file = self.next_file_id();
        let path = request.path.clone();
        let max_tag = self.config.chunk_limits.max_message_size as usize;
        self.vods.insert(
            file,
            VodPlayer {
                conn,
                stream_id,
                request,
                state: VodState::Opening,
                size: 0,
                summary: None,
                scanner: None,
                reader: FlvReader::at(0, max_tag),
                read_pending: None,
                eof: false,
                peeked: None,
                clock: (now, 0),
                end_at: None,
                last_sent: 0,
                blocked: false,
                timer: None,
                bytes_sent: 0,
            },
        );
        if let Some(session) = self.sessions.get_mut(conn) {
            session.set_role(stream_id, StreamRole::Vod(file));
        }
        self.file_request(
            file,
            FileOp::Open {
                path,
                mode: OpenMode::Read,
            },
        );
    }

    pub(super) fn file_request(&mut self, file: FileId, op: FileOp) {
        self.outputs
            .push_back(Output::File(FileRequest { file, op }));
    }

    /// Ends a file player (its stream closed, was replaced, or its connection went away).
    pub(super) fn end_vod(&mut self, file: FileId) {
        if self.vods.remove(&file).is_some() {
            self.file_request(file, FileOp::Close);
        }
    }

    /// A completion for a file player.
    pub(super) fn vod_file_done(
        &mut self,
        now: Instant,
        file: FileId,
        result: Result<FileReply, FileError>,
    ) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        match (vod.state, result) {
            (VodState::Opening, Ok(FileReply::Opened { size })) => {
                vod.size = size;
                let cached = self
                    .file_cache
                    .get(&vod.request.path)
                    .filter(|(cached_size, _)| *cached_size == size)
                    .map(|(_, summary)| summary.clone());
                match cached {
                    Some(summary) => {
                        vod.summary = Some(summary);
                        self.begin_vod_playback(now, file);
                    }
                    None => {
                        let max_tag = self.config.chunk_limits.max_message_size as usize;
                        vod.scanner = Some(Box::new(FileScanner::new(size, max_tag)));
                        vod.state = VodState::Scanning;
                        self.scan_next(now, file);
                    }
                }
            }
            (VodState::Opening, Err(e)) => {
                let (conn, stream_id) = (vod.conn, vod.stream_id);
                let request = vod.request.clone();
                // A failed open leaves nothing to close.
                self.vods.remove(&file);
                if let Some(session) = self.sessions.get_mut(conn) {
                    session.set_role(stream_id, StreamRole::Idle);
                }
                if e.kind == FileErrorKind::NotFound && request.fall_back_to_live {
                    self.begin_live_play(
                        conn,
                        stream_id,
                        &request.key,
                        &request.name,
                        request.reset,
                    );
                } else if e.kind == FileErrorKind::NotFound {
                    let text = format!("{} not found.", request.name);
                    self.status(
                        conn,
                        stream_id,
                        "error",
                        "NetStream.Play.StreamNotFound",
                        &text,
                    );
                } else {
                    let text = format!("{}: {e}", request.name);
                    self.status(conn, stream_id, "error", "NetStream.Play.Failed", &text);
                }
            }
            (VodState::Scanning, Ok(FileReply::Read(data))) => {
                let offset = vod.read_pending.take().map_or(0, |(o, _)| o);
                let fed = vod
                    .scanner
                    .as_mut()
                    .map(|scanner| scanner.feed(offset, &data));
                if let Some(Err(e)) = fed {
                    let text = format!("{}: {e}", vod.request.name);
                    return self.vod_failed(file, &text);
                }
                self.scan_next(now, file);
            }
            (_, Ok(FileReply::Read(data))) => {
                let Some((offset, len)) = vod.read_pending.take() else {
                    return;
                };
                // A read from before a seek is dropped.
                if offset == vod.reader.wanted_offset() {
                    vod.eof = data.len() < len || offset + data.len() as u64 >= vod.size;
                    vod.reader.push(&data);
                }
                self.vod_pump(now, file);
            }
            (_, Err(e)) => {
                let text = format!("{}: {e}", vod.request.name);
                self.vod_failed(file, &text);
            }
            _ => {}
        }
    }

    fn vod_failed(&mut self, file: FileId, text: &str) {
        let Some(vod) = self.vods.get(&file) else {
            return;
        };
        let (conn, stream_id) = (vod.conn, vod.stream_id);
        self.end_vod(file);
        if let Some(session) = self.sessions.get_mut(conn) {
            session.set_role(stream_id, StreamRole::Idle);
        }
        self.status(conn, stream_id, "error", "NetStream.Play.Failed", text);
    }

    fn scan_next(&mut self, now: Instant, file: FileId) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        let Some(scanner) = vod.scanner.as_mut() else {
            return;
        };
        if let Some((offset, len)) = scanner.wanted() {
            vod.read_pending = Some((offset, len));
            self.file_request(file, FileOp::Read { offset, len });
            return;
        }
        let Some(summary) = vod.scanner.take().map(|scanner| Arc::new(scanner.finish())) else {
            return;
        };
        vod.summary = Some(summary.clone());
        let key = vod.request.path.clone();
        self.cache_summary(key, vod_size(&self.vods, file), summary);
        self.begin_vod_playback(now, file);
    }

    /// Remembers what a file holds (bounded: the cache is cleared when it grows too large).
    pub(super) fn cache_summary(&mut self, path: String, size: u64, summary: Arc<FileSummary>) {
        const MAX_CACHED_FILES: usize = 1024;
        if self.file_cache.len() >= MAX_CACHED_FILES {
            self.file_cache.clear();
        }
        self.file_cache.insert(path, (size, summary));
    }

    /// Open and summarised: the statuses, then media from the start position.
    fn begin_vod_playback(&mut self, now: Instant, file: FileId) {
        let Some(vod) = self.vods.get(&file) else {
            return;
        };
        let (conn, stream_id) = (vod.conn, vod.stream_id);
        let request = vod.request.clone();
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let mut notify = session.send_user_control(UserControl::StreamIsRecorded(stream_id));
        notify |= session.send_user_control(UserControl::StreamBegin(stream_id));
        if request.reset {
            let text = format!("Playing and resetting {}.", request.name);
            notify |= session.send_status(stream_id, "status", "NetStream.Play.Reset", &text);
        }
        let text = format!("Started playing {}.", request.name);
        notify |= session.send_status(stream_id, "status", "NetStream.Play.Start", &text);
        let access = data_message(
            stream_id,
            0,
            &[
                Value::string("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
        );
        notify |= session.send_message(csid::STATUS, &access);
        self.transmit_if(conn, notify);
        self.counters.plays += 1;
        self.outputs.push_back(Output::Event(Event::PlayStarted {
            conn,
            stream: request.key.to_string(),
        }));
        if let Some(vod) = self.vods.get_mut(&file) {
            vod.state = VodState::Playing;
        }
        let target = request.start;
        self.vod_position(now, file, target);
        if let Some(vod) = self.vods.get_mut(&file) {
            vod.end_at = request.len.map(|len| vod.last_sent.saturating_add(len));
        }
        self.vod_pump(now, file);
    }

    /// Moves a player to the keyframe at or before `target` ms, sending what a decoder needs
    /// before it when that is not the start of the file.
    fn vod_position(&mut self, now: Instant, file: FileId, target: u32) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        let Some(summary) = vod.summary.clone() else {
            return;
        };
        let max_tag = self.config.chunk_limits.max_message_size as usize;
        let (timestamp, offset) = match summary.index.seek(target) {
            Some((ts, offset)) if target > 0 => (ts, offset),
            _ => (0, summary.first_tag),
        };
        vod.reader = FlvReader::at(offset, max_tag);
        vod.peeked = None;
        vod.eof = offset >= vod.size;
        vod.clock = (now, timestamp);
        vod.last_sent = timestamp;
        if offset > summary.first_tag {
            let tags: Vec<FlvTag> = summary
                .metadata
                .iter()
                .chain(summary.configs.iter())
                .filter(|tag| tag.offset < offset)
                .map(|tag| FlvTag {
                    timestamp,
                    ..tag.clone()
                })
                .collect();
            for tag in tags {
                self.vod_send(file, &tag);
            }
        }
    }

    /// Sends one tag to the player.
    fn vod_send(&mut self, file: FileId, tag: &FlvTag) -> bool {
        let Some(vod) = self.vods.get_mut(&file) else {
            return false;
        };
        let Some(session) = self.sessions.get_mut(vod.conn) else {
            return false;
        };
        let (type_id, chunk_stream) = match tag.tag_type {
            tag_type::AUDIO => (crate::rtmp::message::type_id::AUDIO, csid::AUDIO),
            tag_type::VIDEO => (crate::rtmp::message::type_id::VIDEO, csid::VIDEO),
            tag_type::SCRIPT => (crate::rtmp::message::type_id::DATA_AMF0, csid::DATA),
            _ => return true,
        };
        let msg = RtmpMessage::new(type_id, vod.stream_id, tag.timestamp, tag.body.clone());
        let bytes = encode_fmt0(chunk_stream, &msg, session.encoder.chunk_size());
        vod.bytes_sent += tag.body.len() as u64;
        let notify = session.queue(bytes);
        let conn = vod.conn;
        self.transmit_if(conn, notify);
        true
    }

    /// Sends every tag that is due, reads ahead, and arms the timer for the next one.
    pub(super) fn vod_pump(&mut self, now: Instant, file: FileId) {
        let burst = ms(self.config.vod_burst);
        let soft = self.config.player_soft_backlog;
        let read_size = self.config.vod_read_size;
        loop {
            let Some(vod) = self.vods.get_mut(&file) else {
                return;
            };
            if vod.state != VodState::Playing {
                return;
            }
            let backlog = self.sessions.get(vod.conn).map_or(0, |s| s.backlog());
            if backlog > soft {
                vod.blocked = true;
                return;
            }
            vod.blocked = false;
            let tag = match vod.peeked.take() {
                Some(tag) => Some(tag),
                None => match vod.reader.next_tag() {
                    Ok(tag) => tag,
                    Err(e) => {
                        let text = format!("{}: {e}", vod.request.name);
                        return self.vod_failed(file, &text);
                    }
                },
            };
            if vod.read_pending.is_none() && !vod.eof && vod.reader.buffered() < read_size {
                let offset = vod.reader.wanted_offset();
                vod.read_pending = Some((offset, read_size));
                self.file_request(
                    file,
                    FileOp::Read {
                        offset,
                        len: read_size,
                    },
                );
            }
            let Some(vod) = self.vods.get_mut(&file) else {
                return;
            };
            let Some(tag) = tag else {
                if vod.eof && vod.read_pending.is_none() {
                    self.vod_complete(file);
                }
                return;
            };
            let media = matches!(tag.tag_type, tag_type::AUDIO | tag_type::VIDEO);
            if media && vod.end_at.is_some_and(|end| tag.timestamp > end) {
                return self.vod_complete(file);
            }
            // Due when the play clock reaches the tag's timestamp, less the burst.
            let ahead = u64::from(tag.timestamp.saturating_sub(vod.clock.1));
            let due = vod.clock.0 + Duration::from_millis(ahead.saturating_sub(burst));
            if due > now {
                vod.peeked = Some(tag);
                if vod.timer.is_none_or(|t| t > due) {
                    vod.timer = Some(due);
                    self.timers
                        .push(std::cmp::Reverse((due, Timer::Vod(file.0))));
                }
                return;
            }
            if media {
                vod.last_sent = vod.last_sent.max(tag.timestamp);
            }
            self.vod_send(file, &tag);
        }
    }

    /// The whole file (or the asked duration) was sent: Play.Complete, StreamEOF, Play.Stop.
    fn vod_complete(&mut self, file: FileId) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        vod.state = VodState::Ended;
        vod.peeked = None;
        let (conn, stream_id) = (vod.conn, vod.stream_id);
        let duration = vod
            .summary
            .as_ref()
            .map_or(0.0, |s| f64::from(s.last_timestamp) / 1000.0);
        let bytes = vod.bytes_sent as f64;
        let name = vod.request.name.clone();
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let mut info = status_object("status", "NetStream.Play.Complete", "");
        if let Value::Object { properties, .. } = &mut info {
            properties.push(("duration".into(), Value::Number(duration)));
            properties.push(("bytes".into(), Value::Number(bytes)));
        }
        let complete = data_message(stream_id, 0, &[Value::string("onPlayStatus"), info]);
        let mut notify = session.send_message(csid::STATUS, &complete);
        notify |= session.send_user_control(UserControl::StreamEof(stream_id));
        let text = format!("Stopped playing {name}.");
        notify |= session.send_status(stream_id, "status", "NetStream.Play.Stop", &text);
        self.transmit_if(conn, notify);
    }

    /// `seek(ms)` on a file player.
    pub(super) fn vod_seek(&mut self, now: Instant, conn: ConnId, stream_id: u32, target: f64) {
        let file = match self.sessions.get(conn).and_then(|s| s.role(stream_id)) {
            Some(StreamRole::Vod(file)) => *file,
            _ => {
                return self.status(
                    conn,
                    stream_id,
                    "error",
                    "NetStream.Seek.Failed",
                    "Not playing a file.",
                );
            }
        };
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        if vod.summary.is_none() {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Seek.Failed",
                "Not ready.",
            );
        }
        if vod.state == VodState::Ended {
            vod.state = VodState::Playing;
        }
        let name = vod.request.name.clone();
        let target = if target.is_finite() && target > 0.0 {
            target.min(f64::from(u32::MAX)) as u32
        } else {
            0
        };
        if let Some(session) = self.sessions.get_mut(conn) {
            let mut notify = session.send_user_control(UserControl::StreamBegin(stream_id));
            let text = format!("Seeking {target} (stream ID: {stream_id}).");
            notify |= session.send_status(stream_id, "status", "NetStream.Seek.Notify", &text);
            let text = format!("Playing and resetting {name}.");
            notify |= session.send_status(stream_id, "status", "NetStream.Play.Reset", &text);
            let text = format!("Started playing {name}.");
            notify |= session.send_status(stream_id, "status", "NetStream.Play.Start", &text);
            self.transmit_if(conn, notify);
        }
        self.vod_position(now, file, target);
        self.vod_pump(now, file);
    }

    /// `pause(flag, ms)` on a file player.
    pub(super) fn vod_pause(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        file: FileId,
        pause: bool,
    ) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        let name = vod.request.name.clone();
        match (vod.state, pause) {
            (VodState::Playing, true) => vod.state = VodState::Paused,
            (VodState::Paused, false) => {
                vod.state = VodState::Playing;
                // The clock restarts at the last media sent: the player holds what was sent
                // ahead of the clock before the pause.
                vod.clock = (now, vod.last_sent);
            }
            _ => {}
        }
        let (code, what) = if pause {
            ("NetStream.Pause.Notify", "Paused")
        } else {
            ("NetStream.Unpause.Notify", "Unpaused")
        };
        self.status(conn, stream_id, "status", code, &format!("{what} {name}."));
        if !pause {
            self.vod_pump(now, file);
        }
    }

    /// A file player's timer fired.
    pub(super) fn vod_timer(&mut self, now: Instant, file: FileId) {
        if let Some(vod) = self.vods.get_mut(&file) {
            vod.timer = None;
            self.vod_pump(now, file);
        }
    }

    /// The connection drained: file players waiting for room carry on.
    pub(super) fn vod_drained(&mut self, now: Instant, conn: ConnId) {
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        if session.backlog() > self.config.player_soft_backlog {
            return;
        }
        let files: smallvec::SmallVec<[FileId; 2]> = session
            .streams
            .iter()
            .filter_map(|(_, role)| match role {
                StreamRole::Vod(file) => Some(*file),
                _ => None,
            })
            .collect();
        for file in files {
            if self.vods.get(&file).is_some_and(|v| v.blocked) {
                self.vod_pump(now, file);
            }
        }
    }
}

fn vod_size(vods: &std::collections::HashMap<FileId, VodPlayer>, file: FileId) -> u64 {
    vods.get(&file).map_or(0, |v| v.size)
}
