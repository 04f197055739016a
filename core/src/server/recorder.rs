//! [`Recorder`]: writes one published stream to an FLV file through file requests: the header,
//! `onMetaData` with patchable `duration` and `filesize`, then every audio and video message
//! with timestamps rebased to 0 (or, appending, continuing after the file's last timestamp),
//! keeping a keyframe index as it goes.
//!
//! Writes are pipelined (the executor runs one file's requests in order), so a slow disk only
//! grows the bytes in flight; past `max_backlog` the recording stops rather than hold more.
//! When a write fails (a full disk), the file is cut back to the end of the last write that
//! completed, its metadata is patched to match, and it is closed: nothing already written is
//! lost and the file stays playable. A new file that no media reached is removed instead: an
//! empty recording helps nobody and hides the failure.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::amf::Value;
use crate::flv::index::{FileScanner, FileSummary, CLASSIFY_BYTES};
use crate::flv::metadata::{build, locate, patch_number};
use crate::flv::reader::FlvTag;
use crate::flv::tag::{encode_tag, tag_type, FileHeader, FIRST_TAG_OFFSET, TAG_HEADER_LEN};
use crate::ids::ConnId;
use crate::io::Output;
use crate::record_error::RecordError;
use crate::rtmp::message::type_id;
use crate::storage::{FileError, FileId, FileOp, FileReply, FileRequest, OpenMode};

/// What a request in flight was for (completions come back in request order).
#[derive(Debug, Clone, Copy)]
enum InFlight {
    Open,
    Scan(u64),
    /// A tag write: where it ends, the tag's (file) timestamp and whether it is media.
    Write {
        end: u64,
        timestamp: u32,
        media: bool,
    },
    Other,
    Close,
}

#[derive(Debug)]
enum State {
    /// Append mode: waiting for the open to learn the file's size.
    Opening,
    /// Append mode: reading the existing file's tags.
    Scanning(Box<FileScanner>),
    /// Writing tags as they come.
    Writing,
    /// Closed (or closing): nothing more is written.
    Closing,
}

/// What the server should tell the publisher after a completion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecorderNote {
    Nothing,
    /// The recording failed (first failure only).
    Failed(RecordError),
    /// The file could not be opened for writing.
    NoAccess(RecordError),
    /// The file is closed: the recorder can be dropped.
    Closed,
}

/// One recording in progress.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub file: FileId,
    pub conn: ConnId,
    pub stream_id: u32,
    pub stream: Arc<str>,
    pub path: String,
    pub error: Option<RecordError>,
    /// Whether the publisher asked for the recording (`record`, `append`) rather than the
    /// application recording every publish: only then is it told how the recording goes.
    pub requested: bool,
    /// Whether the file was removed (see the module documentation).
    pub removed: bool,
    append: bool,
    /// Whether a media tag was confirmed written.
    media_confirmed: bool,
    state: State,
    in_flight: VecDeque<InFlight>,
    max_backlog: usize,
    max_tag: usize,
    /// Messages that arrived before writing could start (append mode).
    held: Vec<(u8, u32, Bytes)>,
    held_bytes: usize,
    held_metadata: Option<Vec<(String, Value)>>,
    write_at: u64,
    /// End of the last write known to have completed, and the last media timestamp in it.
    confirmed: u64,
    confirmed_timestamp: u32,
    /// First source timestamp: file timestamps count from it.
    base: Option<u32>,
    /// Added to rebased timestamps (after the existing tags when appending).
    timestamp_offset: u32,
    last_timestamp: u32,
    metadata_written: bool,
    duration_at: Option<u64>,
    filesize_at: Option<u64>,
    summary: FileSummary,
    finish_requested: bool,
}

impl Recorder {
    /// Opens `path` and starts a recording (`append` keeps what the file holds).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        file: FileId,
        conn: ConnId,
        stream_id: u32,
        stream: Arc<str>,
        path: String,
        append: bool,
        requested: bool,
        max_backlog: usize,
        max_tag: usize,
        out: &mut VecDeque<Output>,
    ) -> Self {
        let mode = if append {
            OpenMode::Append
        } else {
            OpenMode::Create
        };
        let mut recorder = Self {
            file,
            conn,
            stream_id,
            stream,
            path: path.clone(),
            error: None,
            requested,
            removed: false,
            append,
            media_confirmed: false,
            state: State::Opening,
            in_flight: VecDeque::new(),
            max_backlog,
            max_tag,
            held: Vec::new(),
            held_bytes: 0,
            held_metadata: None,
            write_at: 0,
            confirmed: 0,
            confirmed_timestamp: 0,
            base: None,
            timestamp_offset: 0,
            last_timestamp: 0,
            metadata_written: false,
            duration_at: None,
            filesize_at: None,
            summary: FileSummary::default(),
            finish_requested: false,
        };
        recorder.request(FileOp::Open { path, mode }, InFlight::Open, out);
        if !append {
            // The header goes out behind the open without waiting for it.
            recorder.begin_file(out);
        }
        recorder
    }

    fn request(&mut self, op: FileOp, what: InFlight, out: &mut VecDeque<Output>) {
        self.in_flight.push_back(what);
        out.push_back(Output::File(FileRequest {
            file: self.file,
            op,
        }));
    }

    /// A new file: the FLV header at offset 0.
    fn begin_file(&mut self, out: &mut VecDeque<Output>) {
        let header = FileHeader {
            audio: true,
            video: true,
            data_offset: 9,
        }
        .encode();
        self.summary.first_tag = FIRST_TAG_OFFSET;
        self.write(header, None, out);
        self.state = State::Writing;
        self.flush_held(out);
    }

    fn write(&mut self, data: Bytes, media_timestamp: Option<u32>, out: &mut VecDeque<Output>) {
        let offset = self.write_at;
        self.write_at += data.len() as u64;
        let what = InFlight::Write {
            end: self.write_at,
            timestamp: media_timestamp.unwrap_or(0),
            media: media_timestamp.is_some(),
        };
        self.request(FileOp::Write { offset, data }, what, out);
    }

    fn flush_held(&mut self, out: &mut VecDeque<Output>) {
        if let Some(properties) = self.held_metadata.take() {
            self.on_metadata(&properties, out);
        }
        for (kind, timestamp, payload) in std::mem::take(&mut self.held) {
            self.on_media(kind, timestamp, &payload, out);
        }
        self.held_bytes = 0;
        if self.finish_requested {
            self.finish(out);
        }
    }

    fn is_writing(&self) -> bool {
        matches!(self.state, State::Writing)
    }

    /// The publisher's `onMetaData` properties. Only metadata that comes before the first
    /// media is written (as the file's first tag); later updates are not recorded.
    pub(crate) fn on_metadata(
        &mut self,
        properties: &[(String, Value)],
        out: &mut VecDeque<Output>,
    ) {
        match self.state {
            State::Opening | State::Scanning(_) => {
                self.held_metadata = Some(properties.to_vec());
            }
            State::Writing if !self.metadata_written => self.write_metadata(properties, out),
            _ => {}
        }
    }

    fn write_metadata(&mut self, properties: &[(String, Value)], out: &mut VecDeque<Output>) {
        self.metadata_written = true;
        let meta = build(properties);
        let tag_at = self.write_at;
        let body_at = tag_at + TAG_HEADER_LEN as u64;
        self.duration_at = meta.duration_at.map(|at| body_at + at as u64);
        self.filesize_at = meta.filesize_at.map(|at| body_at + at as u64);
        self.summary.metadata = Some(FlvTag {
            offset: tag_at,
            tag_type: tag_type::SCRIPT,
            timestamp: 0,
            body: meta.body.clone(),
        });
        self.write(encode_tag(tag_type::SCRIPT, 0, &meta.body), None, out);
    }

    /// An audio or video message from the publisher. Returns an error when the recording
    /// had to stop (the disk does not keep up).
    pub(crate) fn on_media(
        &mut self,
        kind: u8,
        timestamp: u32,
        payload: &Bytes,
        out: &mut VecDeque<Output>,
    ) -> Option<RecordError> {
        match self.state {
            State::Opening | State::Scanning(_) => {
                self.held_bytes += payload.len();
                self.held.push((kind, timestamp, payload.clone()));
                if self.held_bytes > self.max_backlog {
                    return self.fail(RecordError::OpenTimedOut, out);
                }
                return None;
            }
            State::Closing => return None,
            State::Writing => {}
        }
        if payload.len() > self.max_tag {
            return None;
        }
        if !self.metadata_written {
            self.write_metadata(&[], out);
        }
        let base = *self.base.get_or_insert(timestamp);
        // Messages a little older than the first one (audio before video) clamp to 0.
        let rebased = timestamp.wrapping_sub(base);
        let rebased = if rebased > u32::MAX / 2 { 0 } else { rebased };
        let file_ts = rebased.wrapping_add(self.timestamp_offset);
        let tag_at = self.write_at;
        let tag = || FlvTag {
            offset: tag_at,
            tag_type: kind,
            timestamp: file_ts,
            body: payload.clone(),
        };
        let head = &payload[..payload.len().min(CLASSIFY_BYTES)];
        if self.summary.wants_config(kind, head) {
            self.summary.keep_config(tag());
        } else if kind == type_id::VIDEO && self.summary.is_keyframe(head) {
            self.summary.index.push(file_ts, tag_at);
        }
        self.last_timestamp = self.last_timestamp.max(file_ts);
        self.write(encode_tag(kind, file_ts, payload), Some(file_ts), out);
        let backlog = self.write_at - self.confirmed;
        if backlog > self.max_backlog as u64 {
            return self.fail(RecordError::DiskTooSlow { waiting: backlog }, out);
        }
        None
    }

    /// The publisher stopped: patch `duration` and `filesize`, then close.
    pub(crate) fn finish(&mut self, out: &mut VecDeque<Output>) {
        match self.state {
            State::Opening | State::Scanning(_) => {
                self.finish_requested = true;
            }
            State::Writing => {
                let (size, last) = (self.write_at, self.last_timestamp);
                self.patch_and_close(size, last, out);
            }
            State::Closing => {}
        }
    }

    fn patch_and_close(&mut self, size: u64, last_timestamp: u32, out: &mut VecDeque<Output>) {
        self.state = State::Closing;
        let duration = f64::from(last_timestamp) / 1000.0;
        for (at, value) in [
            (self.duration_at, duration),
            (self.filesize_at, size as f64),
        ] {
            if let Some(offset) = at.filter(|at| at + 8 <= size) {
                let data = Bytes::copy_from_slice(&patch_number(value));
                self.request(FileOp::Write { offset, data }, InFlight::Other, out);
            }
        }
        self.patch_summary(size, last_timestamp, duration);
        self.request(FileOp::Close, InFlight::Close, out);
    }

    /// The in-memory copy of what the file now holds, for the server's index cache.
    fn patch_summary(&mut self, size: u64, last_timestamp: u32, duration: f64) {
        self.summary.end = size;
        self.summary.last_timestamp = last_timestamp;
        self.summary.has_media = self.base.is_some() || self.summary.has_media;
        if let Some(meta) = &mut self.summary.metadata {
            let found = locate(&meta.body);
            let mut body = meta.body.to_vec();
            for (at, value) in [
                (found.duration_at, duration),
                (found.filesize_at, size as f64),
            ] {
                if let Some(at) = at {
                    body[at..at + 8].copy_from_slice(&patch_number(value));
                }
            }
            meta.body = Bytes::from(body);
        }
        self.summary.index = {
            let mut kept = crate::flv::index::KeyframeIndex::default();
            for &(ts, offset) in self.summary.index.entries() {
                if offset < size {
                    kept.push(ts, offset);
                }
            }
            kept
        };
    }

    /// Stops recording after an error: cut the file back to what was written completely,
    /// patch its metadata accordingly, close it.
    fn fail(&mut self, error: RecordError, out: &mut VecDeque<Output>) -> Option<RecordError> {
        if self.error.is_some() || matches!(self.state, State::Closing) {
            return None;
        }
        self.error = Some(error.clone());
        self.held.clear();
        if !self.append && !self.media_confirmed {
            self.state = State::Closing;
            self.removed = true;
            self.request(FileOp::Remove, InFlight::Close, out);
        } else if self.is_writing() {
            let keep = self.confirmed;
            if keep < self.write_at {
                self.request(FileOp::Truncate { len: keep }, InFlight::Other, out);
            }
            self.write_at = keep;
            self.patch_and_close(keep, self.confirmed_timestamp, out);
        } else {
            self.state = State::Closing;
            self.request(FileOp::Close, InFlight::Close, out);
        }
        Some(error)
    }

    /// A completion for this file.
    pub(crate) fn on_done(
        &mut self,
        result: Result<FileReply, FileError>,
        out: &mut VecDeque<Output>,
    ) -> RecorderNote {
        let Some(what) = self.in_flight.pop_front() else {
            return RecorderNote::Nothing;
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                return match what {
                    // A file that could not be removed was still closed.
                    InFlight::Close => {
                        self.removed = false;
                        RecorderNote::Closed
                    }
                    _ => match self.fail(RecordError::File(e), out) {
                        Some(error) if matches!(what, InFlight::Open) => {
                            RecorderNote::NoAccess(error)
                        }
                        Some(error) => RecorderNote::Failed(error),
                        None => RecorderNote::Nothing,
                    },
                };
            }
        };
        match (what, reply) {
            (InFlight::Open, FileReply::Opened { size }) => {
                if matches!(self.state, State::Opening) {
                    if size == 0 {
                        self.begin_file(out);
                    } else {
                        let scanner = FileScanner::new(size, self.max_tag);
                        self.state = State::Scanning(Box::new(scanner));
                        self.scan_next(out);
                    }
                }
            }
            (InFlight::Scan(offset), FileReply::Read(data)) => {
                if let State::Scanning(scanner) = &mut self.state {
                    if scanner.feed(offset, &data).is_err() {
                        return match self.fail(RecordError::NotFlv, out) {
                            Some(error) => RecorderNote::Failed(error),
                            None => RecorderNote::Nothing,
                        };
                    }
                    self.scan_next(out);
                }
            }
            (
                InFlight::Write {
                    end,
                    timestamp,
                    media,
                },
                _,
            ) => {
                self.confirmed = self.confirmed.max(end);
                if media {
                    self.confirmed_timestamp = self.confirmed_timestamp.max(timestamp);
                    self.media_confirmed = true;
                }
            }
            (InFlight::Close, _) => return RecorderNote::Closed,
            _ => {}
        }
        RecorderNote::Nothing
    }

    fn scan_next(&mut self, out: &mut VecDeque<Output>) {
        let State::Scanning(scanner) = &mut self.state else {
            return;
        };
        if let Some((offset, len)) = scanner.wanted() {
            self.request(FileOp::Read { offset, len }, InFlight::Scan(offset), out);
            return;
        }
        let State::Scanning(scanner) = std::mem::replace(&mut self.state, State::Writing) else {
            return;
        };
        let summary = scanner.finish();
        let size_end = summary.end;
        self.write_at = size_end;
        self.confirmed = size_end;
        // Append after a torn tail: cut it first.
        self.request(FileOp::Truncate { len: size_end }, InFlight::Other, out);
        if summary.has_media {
            self.timestamp_offset = summary.last_timestamp.saturating_add(1);
            self.last_timestamp = summary.last_timestamp;
            self.confirmed_timestamp = summary.last_timestamp;
        }
        if let Some(meta) = &summary.metadata {
            let found = locate(&meta.body);
            let body_at = meta.offset + TAG_HEADER_LEN as u64;
            self.duration_at = found.duration_at.map(|at| body_at + at as u64);
            self.filesize_at = found.filesize_at.map(|at| body_at + at as u64);
            self.metadata_written = true;
        }
        // Metadata goes first or not at all: a file with media but no metadata gets none.
        self.metadata_written |= summary.has_media;
        self.summary = summary;
        self.flush_held(out);
    }

    /// Bytes written (or being written) so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.write_at
    }

    /// The last media timestamp written, in ms.
    pub(crate) fn duration_ms(&self) -> u32 {
        if self.error.is_some() {
            self.confirmed_timestamp
        } else {
            self.last_timestamp
        }
    }

    /// What the closed file holds: metadata, configurations, keyframe index.
    pub(crate) fn summary(&self) -> Arc<FileSummary> {
        Arc::new(self.summary.clone())
    }
}
