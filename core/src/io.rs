//! What a driver and the node say to each other: [`Input`]s in (bytes, drained writes,
//! closes, timeouts, file completions, socket events), [`Output`]s out (write, close, run a
//! file request, use a socket, an [`Event`] for the logs or the embedding application).
//! See [`crate::node`] for the contract around them.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;

use crate::close_reason::CloseReason;
use crate::decision::Question;
use crate::ids::{ConnId, FileId, RequestId};
use crate::record_error::RecordError;
use crate::storage::{FileError, FileReply, FileRequest};
use crate::tcp::{TcpCommand, TcpEvent};
use crate::udp::{UdpCommand, UdpEvent};
use crate::worker_relay::{RelayIn, RelayOut};

/// What the driver read of its own process for `/metrics` (the node reads no system state
/// itself): each figure `None` when it could not be read. Given with
/// [`crate::node::Node::set_process_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The limit of open file descriptors (the soft `RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
    /// Resident memory, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: Option<u64>,
}

/// What a driver tells the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// Bytes read from a connection.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes, handed over without a copy when the node has no partial input pending.
        data: BytesMut,
    },
    /// The kernel took `bytes` bytes of the connection's queued segments.
    Drained {
        /// The connection.
        conn: ConnId,
        /// How many bytes were written.
        bytes: usize,
    },
    /// The connection is gone (peer closed, error, or after an [`Output::Close`]).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// The deadline from [`Node::poll_timeout`](crate::node::Node::poll_timeout) has passed.
    Timeout,
    /// A file request ([`Output::File`]) completed.
    FileDone {
        /// The file.
        file: FileId,
        /// The reply, or why it failed.
        result: Result<FileReply, FileError>,
    },
    /// Something happened on a UDP socket the node asked for ([`Output::Udp`]).
    Udp(UdpEvent),
    /// Something happened on a TCP stream or listener the node asked for ([`Output::Tcp`]).
    Tcp(TcpEvent),
    /// From the relay between workers (only for a node made a worker with
    /// [`Node::with_relay`](crate::node::Node::with_relay)); see [`crate::worker_relay`].
    Relay(RelayIn),
    /// Begin a graceful stop (the driver was asked to stop: SIGTERM, SIGINT): every RTMP
    /// connection is closed with `NetConnection.Connect.Closed`, every gateway client's call
    /// is ended (BYE, CANCEL, or a refusal of a call still ringing in) and its address of
    /// record unregistered, and new connections are refused. The driver keeps serving until
    /// [`Node::is_drained`](crate::node::Node::is_drained) says the goodbyes were answered or
    /// [`ServerConfig::shutdown_grace`](crate::node::ServerConfig::shutdown_grace) has passed
    /// (the node's deadline includes it), then stops. A second one changes nothing.
    Shutdown,
}

/// What the node asks a driver to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// The connection has queued bytes: write them ([`Node::io_slices`](crate::node::Node::io_slices)) when the socket is
    /// writable, then report [`Input::Drained`]. Emitted once each time the queue goes from
    /// empty to non-empty.
    Transmit {
        /// The connection.
        conn: ConnId,
    },
    /// Write what is still queued if it goes without blocking, then close the connection and
    /// report [`Input::Closed`].
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Run a file operation off the event-loop thread and report [`Input::FileDone`].
    File(FileRequest),
    /// Open, use or close a UDP socket (the gateway's SIP and RTP); see [`crate::udp`].
    Udp(UdpCommand),
    /// Open, use or close a TCP stream or listener of the node's own (the gateway's SIP over
    /// TCP); see [`crate::tcp`].
    Tcp(TcpCommand),
    /// Something an operator or embedding application may want to know.
    Event(Event),
    /// For the relay between workers (only from a node made a worker with
    /// [`Node::with_relay`](crate::node::Node::with_relay)); see [`crate::worker_relay`].
    Relay(RelayOut),
    /// How to read the connection (only from a node whose driver said it can pace reads,
    /// [`Node::enable_read_pacing`](crate::node::Node::enable_read_pacing)). With `every`,
    /// its bytes may wait in the kernel's buffer and be read once per `every`, all the paced
    /// connections together on one grid (a publisher: the node writes what such a read
    /// brings to its players at once, where it would otherwise hold it for a merged write).
    /// A driver should still read at once when much has arrived (the mio driver: 32 KiB)
    /// or the peer closed. With `None`, reads go back to as the bytes arrive.
    ReadPacing {
        /// The connection.
        conn: ConnId,
        /// The grid's interval, or `None` for reads as bytes arrive.
        every: Option<Duration>,
    },
}

/// A phase of a gateway client's call ([`Event::GatewayCall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallPhase {
    /// An incoming call rings the client.
    Invited {
        /// The caller's From.
        from: String,
        /// The To.
        to: String,
    },
    /// The call was answered (either way) and media flows.
    Established,
    /// The call ended or failed: `bye`, `cancelled`, or the SIP final response
    /// (`486 Busy Here`).
    Ended {
        /// Why.
        reason: String,
    },
}

/// Application events, for logs and for embedding applications.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A client's `connect` was accepted.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The application (scope) it connected to.
        app: String,
        /// The client's address.
        peer: std::net::SocketAddr,
    },
    /// A live stream began.
    PublishStarted {
        /// The publishing connection.
        conn: ConnId,
        /// The stream's key: `app/name`.
        stream: String,
    },
    /// A live stream ended.
    PublishStopped {
        /// The publishing connection.
        conn: ConnId,
        /// The stream's key: `app/name`.
        stream: String,
    },
    /// A player started watching a stream.
    PlayStarted {
        /// The playing connection.
        conn: ConnId,
        /// The stream's key: `app/name`.
        stream: String,
    },
    /// Something the gateway wants in the logs about a client (a refused call, a lost
    /// registration).
    Gateway {
        /// The client's connection.
        conn: ConnId,
        /// What happened.
        message: String,
    },
    /// A gateway client's call changed phase (for the `on_call` and `on_call_done`
    /// callbacks and the logs).
    GatewayCall {
        /// The client's connection.
        conn: ConnId,
        /// What happened.
        phase: CallPhase,
    },
    /// Datagrams came to the gateway's shared RTP ports from addresses no call expects media
    /// from (see [`crate::rtp::source_filter`]) and were dropped; told at most every 10 s.
    UnroutedMedia {
        /// Datagrams dropped since the last such event.
        dropped: u64,
        /// Where the last one came from.
        last_source: SocketAddr,
    },
    /// A gateway client's SIP socket is bound (its `connect` is answered next, or after its
    /// REGISTER): where SIP requests for it go, and with shared RTP ports the first of the
    /// four its calls use.
    GatewayBound {
        /// The client's connection.
        conn: ConnId,
        /// Its address of record (`user@domain`).
        aor: String,
        /// The bound address of its SIP socket (with SIP over TCP, of its SIP listener).
        sip: SocketAddr,
        /// With shared RTP ports, the shared audio RTP port (audio RTCP, video RTP and video
        /// RTCP follow); `None` when each call takes ports of its own.
        rtp_port: Option<u16>,
    },
    /// A relay session (a push of a stream published here, or the pull of a stream from
    /// upstream) changed: see [`RelayPhase`].
    Relay {
        /// The local stream's key: `app/name`.
        stream: String,
        /// Push or pull.
        direction: RelayDirection,
        /// The upstream's URL, without its query (which may carry credentials).
        upstream: String,
        /// What happened.
        phase: RelayPhase,
    },
    /// The node's HTTP listener (`ServerConfig::http`) is listening on the address given, or
    /// could not listen (why).
    HttpListening {
        /// The bound address, or why listening failed.
        result: Result<SocketAddr, String>,
    },
    /// A connection was closed by the server, with the reason.
    Closing {
        /// The connection.
        conn: ConnId,
        /// Why (a protocol error, a slow player, an idle timeout...).
        reason: CloseReason,
    },
    /// A connection is gone (whoever closed it); the last event about it.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// The embedding application must answer `question` with [`Node::decide`](crate::node::Node::decide),
    /// within [`ServerConfig::decision_timeout`](crate::node::ServerConfig::decision_timeout)
    /// (past it the node refuses on its own and closes the connection).
    Decide {
        /// The id to answer with.
        request: RequestId,
        /// What is asked.
        question: Question,
    },
    /// A published stream started being recorded to `path` (relative to the file root).
    RecordStarted {
        /// The publishing connection.
        conn: ConnId,
        /// The stream's key: `app/name`.
        stream: String,
        /// The file.
        path: String,
    },
    /// A recording ended and its file is closed.
    RecordStopped {
        /// The stream's key: `app/name`.
        stream: String,
        /// The file.
        path: String,
        /// Bytes in the file.
        bytes: u64,
        /// Timestamp of its last media tag, in milliseconds.
        duration_ms: u32,
        /// Why it ended early (a full disk, a write error), or `None` when the publisher
        /// stopped.
        error: Option<RecordError>,
    },
}

/// Which way a relay carries a stream ([`Event::Relay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayDirection {
    /// A stream published here, republished upstream.
    Push,
    /// A stream played here, played from upstream.
    Pull,
}

impl RelayDirection {
    /// `push` or `pull`, as the API and the metrics say.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDirection::Push => "push",
            RelayDirection::Pull => "pull",
        }
    }
}

/// What happened to a relay session ([`Event::Relay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayPhase {
    /// A connection attempt to the upstream started.
    Connecting,
    /// The upstream took the publish (push) or the play (pull).
    Live,
    /// The attempt failed, or the started session broke: why, and how long until the next
    /// attempt (`None`: none; the session ends, as the next event says).
    Failed {
        /// What went wrong (the connect's error, the upstream's refusal, a timeout...).
        error: String,
        /// The wait before the next attempt (zero: the next upstream of a pull's list).
        retry_in: Option<Duration>,
    },
    /// The session ended (the publication ended, the pull's players left, no upstream has the
    /// stream, or the limits did not let it start): why.
    Ended {
        /// Why.
        reason: String,
    },
}
