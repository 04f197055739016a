//! [`Upstream`]: one connection of a relay session to its upstream server, as the core's RTMP
//! client ([`RtmpClient`]) over a TCP stream the node opened itself ([`crate::tcp`]).
//!
//! It does the client's part of the conversation on its own: the handshake, `connect` (with
//! the URL's application and query, as nginx-rtmp's relays send them), the chunk size, then
//! for a push `releaseStream`, `FCPublish`, `createStream` and `publish` (what encoders such
//! as ffmpeg send, which some ingest servers expect), for a pull `createStream` and
//! `play(name, -1000)` (live only). What it cannot decide alone it reports as [`Note`]s: the
//! stream started, the upstream refused, a status, a pulled message.
//!
//! Bytes leave as shared `Bytes` ([`Upstream::output`] for the client's own messages,
//! [`Upstream::media`] for a push's media, which are the fan-out's own chunk encodings), and
//! it counts what it handed to the driver against what the driver reports written
//! (`TcpEvent::Sent`): the difference is the push's backlog, and the timestamps of the media
//! in it say how far behind (in milliseconds) the upstream is.
//!
//! An `rtmps://` upstream has a client [`TlsLayer`] between the RTMP client and the stream
//! (the one the gateway's SIP over TLS uses): what arrives is decrypted before the client
//! reads it, and what the client and the push's media hand over is sealed first, so the
//! counts above are of the records the driver writes.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::amf::Value;
use crate::ids::StreamId;
use crate::rng::SeededRng;
use crate::rtmp::chunk_decoder::ChunkLimits;
use crate::rtmp::client::{ClientEvent, RtmpClient};
use crate::rtmp::message::RtmpMessage;
use crate::rtmp::url::RtmpUrl;
use crate::tls::layer::TlsLayer;

/// Which way media goes on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We publish to the upstream.
    Push,
    /// We play from the upstream.
    Pull,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The TCP connect is under way (the handshake's first bytes are queued behind it).
    Connecting,
    /// Connected; handshake, `connect`, `createStream` and `publish` or `play` under way.
    SettingUp,
    /// `publish` or `play` was answered with `Publish.Start` or `Play.Start`.
    Started,
}

/// What the conversation brought that the relay acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    /// `NetStream.Publish.Start` (push) or `NetStream.Play.Start` (pull).
    Started,
    /// The upstream refused `connect`, `publish` or `play` (the code it gave);
    /// `not_found`: a pull's `NetStream.Play.StreamNotFound`.
    Refused { code: String, not_found: bool },
    /// Another status of the stream (`NetStream.Play.PublishNotify`, `UnpublishNotify`,
    /// `Play.Stop`...).
    Status(String),
    /// Audio, video or data from a pull's upstream.
    Media(RtmpMessage),
    /// A pull's upstream has no more data for the stream (user control Stream EOF: its
    /// publisher left; how nginx-rtmp tells its players, without a status by default).
    StreamEof,
}

/// Most media messages whose timestamps a push remembers to tell how far behind it is (past
/// it the oldest are forgotten, and the figure is a lower bound).
const MAX_MARKS: usize = 4096;

/// One connection to an upstream; see the module documentation.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The node's TCP stream.
    pub stream: StreamId,
    role: Role,
    /// The stream name asked for upstream (with the URL's query).
    name: String,
    client: RtmpClient,
    /// Bytes read and not yet decoded.
    rx: BytesMut,
    pub phase: Phase,
    /// The upstream's message stream id, once `createStream` answered (0 before).
    pub stream_id: u32,
    /// The chunk size we send with (announced once the handshake is done).
    chunk_size: u32,
    /// Bytes handed to the driver, and bytes it reported written.
    queued: u64,
    taken: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// When bytes last arrived (or the attempt started).
    pub last_rx: Instant,
    /// When the attempt started.
    pub started_at: Instant,
    /// Unfinished-message bytes counted in the server's budget.
    pub partial: usize,
    /// (end offset in `queued`, timestamp) of the push's media not yet written.
    marks: VecDeque<(u64, u32)>,
    newest_timestamp: u32,
    /// `rtmps://`: the connection's TLS client.
    tls: Option<Box<TlsLayer>>,
}

impl Upstream {
    /// Starts a connection attempt on `stream` to `url`, for the local stream `local_name`
    /// (the upstream name when the URL has none), over `tls` for an `rtmps://` URL. The
    /// caller connects the stream and sends [`Self::output`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stream: StreamId,
        role: Role,
        url: &RtmpUrl,
        local_name: &str,
        rng: &mut SeededRng,
        limits: ChunkLimits,
        chunk_size: u32,
        now: Instant,
        tls: Option<TlsLayer>,
    ) -> Self {
        let mut client = RtmpClient::with_limits(rng, &url.connect_app(), &url.tc_url(), limits);
        if role == Role::Pull {
            client.report_stream_eof();
        }
        Self {
            stream,
            role,
            name: url.stream_name(local_name),
            client,
            rx: BytesMut::new(),
            phase: Phase::Connecting,
            stream_id: 0,
            chunk_size,
            queued: 0,
            taken: 0,
            rx_bytes: 0,
            last_rx: now,
            started_at: now,
            partial: 0,
            marks: VecDeque::new(),
            newest_timestamp: 0,
            tls: tls.map(Box::new),
        }
    }

    /// The next bytes of the client's own messages to send (counted as handed to the driver).
    pub(crate) fn output(&mut self) -> Option<Bytes> {
        let plain = self.client.take_output();
        let bytes = match (&mut self.tls, plain) {
            (None, plain) => plain?,
            // Over TLS: sealed, after any handshake records pending.
            (Some(tls), Some(plain)) => tls.seal(std::iter::once(&plain))?,
            (Some(tls), None) => tls.take_records(0)?,
        };
        self.queued += bytes.len() as u64;
        Some(bytes)
    }

    /// The TCP connection is up.
    pub(crate) fn connected(&mut self) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::SettingUp;
        }
    }

    /// Bytes from the upstream: the conversation goes on, and what the relay must act on is
    /// added to `notes`. An error means the upstream broke the protocol.
    pub(crate) fn received(
        &mut self,
        data: BytesMut,
        now: Instant,
        notes: &mut Vec<Note>,
    ) -> Result<(), String> {
        self.rx_bytes += data.len() as u64;
        self.last_rx = now;
        self.connected();
        let mut adopted = false;
        match &mut self.tls {
            // The handshake's answers and alerts leave with the next `output`.
            Some(tls) => tls
                .receive(&data, &mut self.rx)
                .map_err(|e| format!("TLS: {e}"))?,
            None if self.rx.is_empty() => {
                self.rx = data;
                adopted = true;
            }
            None => self.rx.extend_from_slice(&data),
        }
        let result = self
            .client
            .received(&mut self.rx)
            .map_err(|e| e.to_string());
        // What waits for the next read is copied out of this one, a slice of the driver's
        // read buffer (shared with everything read around it), as a session's is.
        if adopted && !self.rx.is_empty() {
            self.rx = BytesMut::from(&self.rx[..]);
        }
        while let Some(event) = self.client.poll_event() {
            self.on_event(event, notes);
        }
        result
    }

    fn on_event(&mut self, event: ClientEvent, notes: &mut Vec<Note>) {
        match event {
            ClientEvent::HandshakeDone => {
                // `connect` went out at the default chunk size; everything after at ours.
                self.client.set_chunk_size(self.chunk_size);
            }
            ClientEvent::Connected => {
                if self.role == Role::Push {
                    let name = Value::string(self.name.clone());
                    self.client.call(0, "releaseStream", vec![name.clone()]);
                    self.client.call(0, "FCPublish", vec![name]);
                }
                self.client.create_stream();
            }
            ClientEvent::ConnectRejected(code) => notes.push(Note::Refused {
                code,
                not_found: false,
            }),
            ClientEvent::StreamCreated(id) if self.stream_id == 0 => {
                self.stream_id = id;
                match self.role {
                    Role::Push => self.client.publish(id, &self.name),
                    // Live only: -1000 is how librtmp and ffmpeg send "-1".
                    Role::Pull => self.client.play(id, &self.name, -1000.0),
                }
            }
            ClientEvent::Status(_, code) => self.status(code, notes),
            ClientEvent::Media(msg) if self.role == Role::Pull && self.phase == Phase::Started => {
                notes.push(Note::Media(msg))
            }
            ClientEvent::StreamEof(id) if id == self.stream_id && self.phase == Phase::Started => {
                notes.push(Note::StreamEof)
            }
            _ => {}
        }
    }

    fn status(&mut self, code: String, notes: &mut Vec<Note>) {
        let started = match self.role {
            Role::Push => "NetStream.Publish.Start",
            Role::Pull => "NetStream.Play.Start",
        };
        if code == started {
            if self.phase != Phase::Started {
                self.phase = Phase::Started;
                notes.push(Note::Started);
            }
        } else if is_refusal(&code) {
            let not_found = code == "NetStream.Play.StreamNotFound";
            notes.push(Note::Refused { code, not_found });
        } else {
            notes.push(Note::Status(code));
        }
    }

    /// A push's media message, already chunk-encoded for this connection (the fan-out's
    /// shared encoding): counted, and returned to send.
    pub(crate) fn media(&mut self, bytes: Bytes, timestamp: u32) -> Bytes {
        let bytes = match &mut self.tls {
            None => bytes,
            // Media flows once the upstream answered `publish`: after the handshake.
            Some(tls) => tls.seal(std::iter::once(&bytes)).unwrap_or_default(),
        };
        self.queued += bytes.len() as u64;
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((self.queued, timestamp));
        self.newest_timestamp = timestamp;
        bytes
    }

    /// The driver wrote `bytes` more.
    pub(crate) fn taken(&mut self, bytes: usize) {
        self.taken = (self.taken + bytes as u64).min(self.queued);
        while self
            .marks
            .front()
            .is_some_and(|(end, _)| *end <= self.taken)
        {
            self.marks.pop_front();
        }
    }

    /// Bytes handed to the driver and not yet written.
    pub(crate) fn backlog(&self) -> usize {
        (self.queued - self.taken) as usize
    }

    /// How far behind the upstream is, in media time: from the oldest media message not yet
    /// written to the newest handed over.
    pub(crate) fn behind_ms(&self) -> u32 {
        self.marks.front().map_or(0, |(_, oldest)| {
            self.newest_timestamp.saturating_sub(*oldest)
        })
    }

    /// The chunk size this connection's media is encoded with.
    pub(crate) fn chunk_size(&self) -> u32 {
        self.client.chunk_size()
    }

    /// Unfinished-message bytes the decoder holds: (as counted before, now).
    pub(crate) fn take_partial_change(&mut self) -> (usize, usize) {
        self.client.take_partial_change()
    }

    /// Ends the stream politely before the connection closes: `FCUnpublish` (a push) and
    /// `deleteStream`, queued for [`Self::output`].
    pub(crate) fn goodbye(&mut self) {
        if self.phase == Phase::Connecting || self.stream_id == 0 {
            return;
        }
        if self.role == Role::Push {
            let name = Value::string(self.name.clone());
            self.client.call(0, "FCUnpublish", vec![name]);
        }
        let id = Value::Number(f64::from(self.stream_id));
        self.client.call(0, "deleteStream", vec![id]);
    }
}

/// Whether a status code refuses what was asked: `connect`, `publish` or `play` (a recording's
/// troubles upstream are not the relay's).
fn is_refusal(code: &str) -> bool {
    const REFUSALS: [&str; 7] = [
        ".BadName",
        ".Denied",
        ".Failed",
        ".Rejected",
        ".StreamNotFound",
        ".Forbidden",
        ".InvalidApp",
    ];
    !code.starts_with("NetStream.Record.")
        && code != "NetConnection.Connect.Closed"
        && REFUSALS.iter().any(|suffix| code.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay session of stream `cam` with `rtmp://127.0.0.1/live`, before its handshake.
    fn upstream(role: Role, now: Instant) -> Upstream {
        let url = RtmpUrl::parse("rtmp://127.0.0.1/live").unwrap();
        Upstream::new(
            StreamId(1),
            role,
            &url,
            "cam",
            &mut SeededRng::new(1),
            ChunkLimits::default(),
            4096,
            now,
            None,
        )
    }

    #[test]
    fn refusals_are_told_from_other_statuses() {
        for code in [
            "NetStream.Publish.BadName",
            "NetStream.Play.StreamNotFound",
            "NetStream.Play.Failed",
            "NetConnection.Connect.Rejected",
            "NetStream.Failed",
        ] {
            assert!(is_refusal(code), "{code}");
        }
        for code in [
            "NetStream.Play.UnpublishNotify",
            "NetStream.Record.Failed",
            "NetConnection.Connect.Closed",
            "NetStream.Play.Reset",
        ] {
            assert!(!is_refusal(code), "{code}");
        }
    }

    #[test]
    fn the_backlog_and_how_far_behind_follow_what_the_driver_wrote() {
        let now = Instant::now();
        let mut up = upstream(Role::Push, now);
        let handshake = up.output().unwrap().len();
        up.taken(handshake);
        for (ts, len) in [(0, 100), (40, 100), (80, 100)] {
            up.media(Bytes::from(vec![0; len]), ts);
        }
        assert_eq!((up.backlog(), up.behind_ms()), (300, 80));
        up.taken(150);
        assert_eq!((up.backlog(), up.behind_ms()), (150, 40));
        up.taken(150);
        assert_eq!((up.backlog(), up.behind_ms()), (0, 0));
    }

    #[test]
    fn an_unfinished_read_keeps_none_of_the_read_buffer() {
        let now = Instant::now();
        let mut up = upstream(Role::Pull, now);
        // The start of the upstream's handshake answer (S0 and part of S1), read into a
        // driver's buffer.
        let mut buffer = BytesMut::zeroed(64 * 1024);
        buffer[0] = 3;
        let data = buffer.split_to(100);
        up.received(data, now, &mut Vec::new()).unwrap();
        assert_eq!(up.rx.len(), 100, "the handshake waits for the rest");
        buffer.clear();
        assert!(
            buffer.try_reclaim(64 * 1024),
            "nothing else refers to the buffer"
        );
    }
}
