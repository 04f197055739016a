//! [`Session`]: the server side of one RTMP connection: handshake, chunk stream state, the
//! send queue, and the NetStreams the client created.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::client_backlog::FarMediaGate;
use super::read_lag::ReadLag;
use super::read_pacing::ReadPace;
use super::send_queue::SendQueue;
use crate::amf::Value;
use crate::decision::RequestId;
use crate::ids::ConnId;
use crate::media::frame::MediaFrame;
use crate::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
use crate::rtmp::chunk_encoder::ChunkEncoder;
use crate::rtmp::command::{status_object, Command};
use crate::rtmp::control::{ProtocolControl, UserControl};
use crate::rtmp::handshake::ServerHandshake;
use crate::rtmp::message::RtmpMessage;
use crate::storage::FileId;
use crate::tls::layer::TlsLayer;

pub(crate) use crate::rtmp::csid;

/// What queueing media under merged writes asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing: the bytes are held with earlier ones, or join a write under way.
    Nothing,
    /// A hold began: put the connection on the flush schedule at the deadline given.
    Started,
    /// Too much is held: emit the connection's `Transmit` now.
    Transmit,
}

/// What a NetStream of this connection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamRole {
    /// Created, not yet publishing or playing.
    Idle,
    /// Publishing the live stream with this key.
    Publishing(Arc<str>),
    /// Playing the live stream with this key.
    Playing(Arc<str>),
    /// Playing (or opening) a file: the video-on-demand player with this file id.
    Vod(FileId),
}

/// Where the connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    Handshake(Box<ServerHandshake>),
    /// Handshake done; waiting for or past `connect`.
    Active,
    /// The server asked the driver to close it; waiting for [`crate::node::Input::Closed`].
    Closing,
}

/// One RTMP connection, server side.
///
/// The fields are laid out in the order written (`repr(C)`), those every received chunk and
/// every sent message touch first, so that a media message costs a few adjacent cache lines
/// of the session rather than one line per field spread over the whole struct (with hundreds
/// of sessions taking turns, each line is a cache miss). Keep it so when adding fields.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Session {
    // Every read.
    pub rx: BytesMut,
    /// `rx` is a read the driver handed over, a slice of its read buffer (see
    /// [`Session::keep_rest`]).
    pub rx_borrowed: bool,
    pub rx_bytes: u64,
    /// Reads the driver handed in.
    pub rx_reads: u64,
    pub rx_bytes_acked: u64,
    pub last_rx: Instant,
    /// A decision the application has not made yet: the connection's messages are not read
    /// until it is.
    pub awaiting: Option<RequestId>,
    pub phase: Phase,
    /// The peer's window acknowledgement size: we acknowledge every this many bytes.
    pub peer_window: u32,
    pub ping_sent: bool,
    // Every message sent.
    /// A `Transmit` was emitted and the queue has not been emptied since.
    pub transmit_pending: bool,
    /// Merged writes: media is queued but held back, and its `Transmit` is due at this
    /// deadline (the session's live entry in the node's flush schedule).
    pub hold_deadline: Option<Instant>,
    /// Merged writes: the flush schedule's lane this connection's media is held on (0, the
    /// base window, unless its read lag allows a longer one).
    pub merge_lane: u8,
    /// How the driver reads this connection (a publisher may be read on the merge grid; see
    /// `read_pacing`).
    pub read_pace: ReadPace,
    /// The gateway's far-end media under backpressure (see `client_backlog`).
    pub far_gate: FarMediaGate,
    pub out: SendQueue,
    pub encoder: ChunkEncoder,
    pub decoder: ChunkDecoder,
    // The rest.
    pub id: ConnId,
    pub peer: SocketAddr,
    /// The application (scope) from `connect`, once connected.
    pub app: Option<String>,
    /// `connect` asked for AMF3 object encoding.
    pub object_encoding: f64,
    pub streams: SmallVec<[(u32, StreamRole); 2]>,
    pub next_stream_id: u32,
    /// The deadline of the connection's one live timer entry (older entries are stale).
    pub next_check: Instant,
    /// Bytes of `rx` counted in the server's budget for unfinished messages while a decision
    /// is pending.
    pub held_input: usize,
    /// RTMPS: the connection's TLS. Then `out` holds records for the driver, and what the
    /// server queues waits in `plain` until it is sealed (see `Session::seal`).
    pub tls: Option<Box<TlsLayer>>,
    /// RTMPS: plaintext queued and not sealed yet (always empty without TLS).
    pub plain: SendQueue,
    /// RTMPS: bytes the TLS layer holds, as counted in the server's budget for unfinished
    /// messages.
    pub tls_held: usize,
    /// How late the peer reads what we write (measured when the merge window adapts).
    pub read_lag: ReadLag,
}

impl Session {
    pub(crate) fn new(
        id: ConnId,
        peer: SocketAddr,
        handshake: ServerHandshake,
        limits: ChunkLimits,
        now: Instant,
    ) -> Self {
        Self {
            id,
            peer,
            phase: Phase::Handshake(Box::new(handshake)),
            rx: BytesMut::new(),
            rx_borrowed: false,
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            out: SendQueue::default(),
            transmit_pending: false,
            hold_deadline: None,
            merge_lane: 0,
            read_pace: ReadPace::Arrival,
            far_gate: FarMediaGate::default(),
            app: None,
            object_encoding: 0.0,
            streams: SmallVec::new(),
            next_stream_id: 1,
            last_rx: now,
            next_check: now,
            ping_sent: false,
            rx_bytes: 0,
            rx_reads: 0,
            rx_bytes_acked: 0,
            peer_window: 0,
            awaiting: None,
            held_input: 0,
            tls: None,
            plain: SendQueue::default(),
            tls_held: 0,
            read_lag: ReadLag::default(),
        }
    }

    /// Bytes queued for the connection and not yet taken by the kernel: its backlog (with
    /// TLS, sealed records and plaintext not sealed yet).
    #[inline]
    pub(crate) fn backlog(&self) -> usize {
        self.out.queued_bytes() + self.plain.queued_bytes()
    }

    /// Where the server's bytes for the connection go: the driver's queue, or with TLS the
    /// plaintext that waits to be sealed.
    #[inline]
    fn sink(&mut self) -> &mut SendQueue {
        if self.tls.is_some() {
            &mut self.plain
        } else {
            &mut self.out
        }
    }

    /// Drops everything queued (sealed or not).
    pub(crate) fn clear_queue(&mut self) {
        self.out.clear();
        self.plain.clear();
    }

    /// RTMPS: seals the plaintext queued since the last call into records on `out`, one
    /// buffer for all of it (as few records as the record size allows). Called when the driver
    /// is about to write (a `Transmit` handed out, a queue drained) and on close; nothing
    /// happens without TLS or without plaintext.
    pub(crate) fn seal(&mut self) {
        let Some(tls) = &mut self.tls else {
            return;
        };
        if self.plain.is_empty() {
            return;
        }
        if let Some(records) = tls.seal(self.plain.segments()) {
            self.out.push(records);
        }
        self.plain.clear();
    }

    /// RTMPS: moves the records the TLS layer has ready by itself (handshake messages,
    /// alerts) to `out`; returns whether a `Transmit` is due.
    pub(crate) fn take_tls_records(&mut self) -> bool {
        let Some(tls) = &mut self.tls else {
            return false;
        };
        match tls.take_records(0) {
            Some(records) => {
                self.out.push(records);
                self.transmit_now()
            }
            None => false,
        }
    }

    /// Queues raw bytes. Returns true when the queue went from empty to non-empty and no
    /// `Transmit` is outstanding, i.e. the driver must be told.
    pub(crate) fn queue(&mut self, bytes: Bytes) -> bool {
        self.sink().push(bytes);
        self.transmit_now()
    }

    /// Marks a `Transmit` as emitted if one is needed (something queued and none
    /// outstanding); returns whether it is. Anything held goes with it.
    pub(crate) fn transmit_now(&mut self) -> bool {
        if !self.transmit_pending && self.backlog() > 0 {
            self.transmit_pending = true;
            self.hold_deadline = None;
            return true;
        }
        false
    }

    /// Queues media under merged writes: held until `deadline` unless a write is already
    /// under way (the bytes join it) or more than `max_bytes` are queued (written at once).
    pub(crate) fn queue_held(&mut self, bytes: Bytes, deadline: Instant, max_bytes: usize) -> Held {
        self.sink().push(bytes);
        self.hold_queued(max_bytes, || deadline)
    }

    /// What merged writes make of the bytes just queued: nothing more when a write is under
    /// way (they join it) or a hold is running, a `Transmit` when more than `max_bytes` are
    /// queued, else a hold until `deadline()` (asked for only then).
    #[inline]
    pub(crate) fn hold_queued(
        &mut self,
        max_bytes: usize,
        deadline: impl FnOnce() -> Instant,
    ) -> Held {
        let backlog = self.backlog();
        if self.transmit_pending || backlog == 0 {
            Held::Nothing
        } else if backlog > max_bytes {
            self.transmit_now();
            Held::Transmit
        } else if self.hold_deadline.is_none() {
            self.hold_deadline = Some(deadline());
            Held::Started
        } else {
            Held::Nothing
        }
    }

    /// Encodes `msg` on `csid` with the session's stateful encoder and queues it.
    pub(crate) fn send_message(&mut self, csid: u32, msg: &RtmpMessage) -> bool {
        let bytes = self.encode(csid, msg);
        self.queue(bytes)
    }

    /// Encodes `msg` on `csid` with the session's stateful encoder, without queueing it.
    fn encode(&mut self, csid: u32, msg: &RtmpMessage) -> Bytes {
        let mut buf = BytesMut::with_capacity(msg.payload.len() + 32);
        self.encoder.encode(csid, msg, &mut buf);
        buf.freeze()
    }

    /// Encodes `frame` on `csid` and message stream `stream_id` and queues its wire segments
    /// as they come (nothing gathered in between): chunk headers and the tag header split off
    /// `headers` (the server's, shared by every session), the body as slices of the frame's
    /// own (no copy, and no allocation for a one-chunk message). Says nothing about writing:
    /// see [`Self::transmit_now`] and [`Self::hold_queued`].
    pub(crate) fn queue_frame(
        &mut self,
        csid: u32,
        stream_id: u32,
        frame: MediaFrame,
        headers: &mut BytesMut,
    ) {
        // The sink borrowed apart from the encoder (what `sink` returns, field by field).
        let sink = if self.tls.is_some() {
            &mut self.plain
        } else {
            &mut self.out
        };
        self.encoder.encode_parts(
            csid,
            frame.type_id,
            stream_id,
            frame.timestamp,
            &frame.header,
            frame.body,
            headers,
            |segment| sink.push(segment),
        );
    }

    /// Takes in a read: it becomes the input when none is left over (no copy), else it is
    /// appended.
    pub(crate) fn take_read(&mut self, data: BytesMut) {
        if self.rx.is_empty() {
            self.rx = data;
            self.rx_borrowed = true;
        } else {
            self.rx.extend_from_slice(&data);
        }
    }

    /// Called when a read has been taken in as far as it goes: what it leaves undecoded (the
    /// start of a message, a handshake part, input held for a decision) waits for the next
    /// read. When the read itself became the input, that rest is a slice of the driver's read
    /// buffer, which would stay allocated, with everything other peers sent into it, for as
    /// long as this peer takes to send the rest: it is copied out.
    pub(crate) fn keep_rest(&mut self) {
        if std::mem::take(&mut self.rx_borrowed) && !self.rx.is_empty() {
            self.rx = BytesMut::from(&self.rx[..]);
        }
    }

    pub(crate) fn send_control(&mut self, control: ProtocolControl) -> bool {
        if let ProtocolControl::SetChunkSize(size) = control {
            self.encoder.set_chunk_size(size);
        }
        self.send_message(csid::CONTROL, &control.to_message())
    }

    pub(crate) fn send_user_control(&mut self, event: UserControl) -> bool {
        self.send_message(csid::CONTROL, &event.to_message())
    }

    /// Sends a command on message stream `stream_id`, in the encoding the client used.
    pub(crate) fn send_command(
        &mut self,
        stream_id: u32,
        mut command: Command,
        amf3: bool,
    ) -> bool {
        command.amf3 = amf3;
        let csid = if stream_id == 0 {
            csid::COMMAND
        } else {
            csid::STATUS
        };
        self.send_message(csid, &command.to_message(stream_id))
    }

    /// `onStatus(0, null, {level, code, description})` on `stream_id`.
    pub(crate) fn send_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> bool {
        let mut info = status_object(level, code, description);
        if let Value::Object { properties, .. } = &mut info {
            properties.push(("details".into(), Value::string(description)));
        }
        let cmd = Command::new("onStatus", 0.0, Value::Null, vec![info]);
        self.send_command(stream_id, cmd, false)
    }

    pub(crate) fn role(&self, stream_id: u32) -> Option<&StreamRole> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, role)| role)
    }

    pub(crate) fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        if let Some(slot) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            slot.1 = role;
        } else {
            self.streams.push((stream_id, role));
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Active)
    }
}
