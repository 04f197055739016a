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
//! Tags carry the file's own timestamps, after a start position and a seek as before them,
//! and go out as aggregate messages (type 22): the tags due at one moment, as they lie in the
//! file, in one message stamped with the first one's time. That is how Flash Media Server
//! delivers files, and it is what lets librtmp clients record a play with a start right:
//! rtmpdump adds its `--start` to the timestamp of every single audio, video or data message
//! it writes (it assumes the server restarts the stream clock there), but writes the tags of
//! an aggregate with their own timestamps. Aggregates are split off the file buffer, not
//! copied; the aggregate size is bounded like Flash Media Server's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::amf::Value;
use crate::flv::index::{FileScanner, FileSummary};
use crate::flv::reader::FlvReader;
use crate::flv::tag::{encode_tag, tag_type, FlvError};
use crate::node::{ConnId, Event, Output};
use crate::rtmp::aggregate::normalize_tags;
use crate::rtmp::chunk_encoder::encode_fmt0;
use crate::rtmp::command::{data_message, status_object};
use crate::rtmp::control::UserControl;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::storage::{FileError, FileErrorKind, FileId, FileOp, FileReply, FileRequest, OpenMode};

use super::session::{csid, StreamRole};
use super::{RtmpServer, Timer};

/// Tags gathered into one aggregate message stop growing past this many bytes (Flash Media
/// Server's default `MaxAggMsgSize`); a larger tag goes alone.
const MAX_AGGREGATE: usize = 64 * 1024;

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
                    if vod.eof {
                        vod.reader.end_of_file();
                    }
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
        let summary = Arc::new(vod.scanner.take().expect("scanning").finish());
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
        vod.eof = offset >= vod.size;
        vod.clock = (now, timestamp);
        vod.last_sent = timestamp;
        if offset > summary.first_tag {
            // What a decoder needs that lies before the keyframe, at the keyframe's time: one
            // small aggregate per seek.
            let before = [
                &summary.metadata,
                &summary.video_config,
                &summary.audio_config,
            ];
            let mut tags = bytes::BytesMut::new();
            for tag in before.into_iter().flatten().filter(|t| t.offset < offset) {
                tags.extend_from_slice(&encode_tag(tag.tag_type, timestamp, &tag.body));
            }
            if !tags.is_empty() {
                self.vod_send_tags(file, timestamp, tags.freeze());
            }
        }
    }

    /// Sends whole FLV tags (previous-tag-sizes included, headers normalized) to the player as
    /// one aggregate message stamped with the first tag's `timestamp`.
    fn vod_send_tags(&mut self, file: FileId, timestamp: u32, tags: bytes::Bytes) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(vod.conn) else {
            return;
        };
        vod.bytes_sent += tags.len() as u64;
        let msg = RtmpMessage::new(type_id::AGGREGATE, vod.stream_id, timestamp, tags);
        let bytes = encode_fmt0(csid::VIDEO, &msg, session.encoder.chunk_size());
        let notify = session.queue(bytes);
        let conn = vod.conn;
        self.transmit_if(conn, notify);
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
            let backlog = self
                .sessions
                .get(vod.conn)
                .map_or(0, |s| s.out.queued_bytes());
            if backlog > soft {
                vod.blocked = true;
                return;
            }
            vod.blocked = false;
            let next = vod.next_run(now, burst);
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
            match next {
                Err(e) => {
                    let text = format!("{}: {e}", vod.request.name);
                    return self.vod_failed(file, &text);
                }
                Ok(Run::Send {
                    len,
                    timestamp,
                    newest,
                }) => {
                    if let Some(newest) = newest {
                        vod.last_sent = vod.last_sent.max(newest);
                    }
                    let mut tags = vod.reader.take_tags(len);
                    normalize_tags(&mut tags);
                    self.vod_send_tags(file, timestamp, tags.freeze());
                }
                Ok(Run::Skip(len)) => {
                    vod.reader.take_tags(len);
                }
                Ok(Run::Wait(due)) => {
                    if vod.timer.is_none_or(|t| t > due) {
                        vod.timer = Some(due);
                        self.timers
                            .push(std::cmp::Reverse((due, Timer::Vod(file.0))));
                    }
                    return;
                }
                Ok(Run::End) => return self.vod_complete(file),
                Ok(Run::Starved) => {
                    if vod.eof && vod.read_pending.is_none() {
                        self.vod_complete(file);
                    }
                    return;
                }
            }
        }
    }

    /// The whole file (or the asked duration) was sent: Play.Complete, StreamEOF, Play.Stop.
    fn vod_complete(&mut self, file: FileId) {
        let Some(vod) = self.vods.get_mut(&file) else {
            return;
        };
        vod.state = VodState::Ended;
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
        if session.out.queued_bytes() > self.config.player_soft_backlog {
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

/// What a file player's buffered tags allow now (see [`VodPlayer::next_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Send the first `len` buffered bytes, whole tags, as one aggregate stamped `timestamp`
    /// (the first tag's); `newest` is the latest audio or video timestamp among them.
    Send {
        len: usize,
        timestamp: u32,
        newest: Option<u32>,
    },
    /// Drop the next `len` bytes: a tag of a kind players do not take.
    Skip(usize),
    /// The next tag is due at this instant.
    Wait(Instant),
    /// The next tag is past the duration `play` asked for.
    End,
    /// No whole tag is buffered.
    Starved,
}

impl VodPlayer {
    /// When a tag at `timestamp` is due: when the play clock reaches it, less the burst.
    fn due(&self, timestamp: u32, burst: u64) -> Instant {
        let ahead = u64::from(timestamp.saturating_sub(self.clock.1));
        self.clock.0 + Duration::from_millis(ahead.saturating_sub(burst))
    }

    /// Whether a tag at `timestamp` lies past the duration `play` asked for (only audio and
    /// video count).
    fn past_end(&self, media: bool, timestamp: u32) -> bool {
        media && self.end_at.is_some_and(|end| timestamp > end)
    }

    /// The buffered tags to send as one aggregate now: those due, in file order, up to
    /// [`MAX_AGGREGATE`] bytes (a first tag larger than that goes alone).
    ///
    /// ffmpeg re-stamps the tags of an aggregate from the aggregate's timestamp by their
    /// differences, but takes a first tag at time 0 for "no time yet" and so shifts the tags
    /// after it: an aggregate that starts at 0 holds only tags at 0.
    fn next_run(&mut self, now: Instant, burst: u64) -> Result<Run, FlvError> {
        let mut len = 0;
        let mut first: Option<u32> = None;
        let mut newest: Option<u32> = None;
        while let Some(tag) = self.reader.peek_at(len)? {
            let media = matches!(tag.tag_type, tag_type::AUDIO | tag_type::VIDEO);
            let stop = if !media && tag.tag_type != tag_type::SCRIPT {
                Some(Run::Skip(tag.len))
            } else if self.past_end(media, tag.timestamp) {
                Some(Run::End)
            } else {
                let due = self.due(tag.timestamp, burst);
                (due > now).then_some(Run::Wait(due))
            };
            if let Some(stop) = stop {
                if first.is_none() {
                    return Ok(stop);
                }
                break;
            }
            if let Some(first) = first {
                if (first == 0 && tag.timestamp != 0) || len + tag.len > MAX_AGGREGATE {
                    break;
                }
            }
            first.get_or_insert(tag.timestamp);
            if media {
                newest = Some(newest.map_or(tag.timestamp, |n| n.max(tag.timestamp)));
            }
            len += tag.len;
        }
        Ok(match first {
            Some(timestamp) => Run::Send {
                len,
                timestamp,
                newest,
            },
            None => Run::Starved,
        })
    }
}

fn vod_size(vods: &std::collections::HashMap<FileId, VodPlayer>, file: FileId) -> u64 {
    vods.get(&file).map_or(0, |v| v.size)
}
