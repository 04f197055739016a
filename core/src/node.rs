//! [`Node`]: one event loop's worth of siprtmp behind a single sans-IO API.
//!
//! A driver accepts connections, feeds received bytes, drained byte counts, file completions
//! and timer expiry in as [`Input`]s with the current time, and carries out the [`Output`]s it
//! polls: write a connection's queued segments, close a connection, run a file request (see
//! [`crate::storage`] for the executor's contract), or log an application [`Event`]. With
//! [`NodeConfig::decisions`] on, [`Event::Decide`] asks the embedding application a question
//! that [`Node::decide`] answers later.
//!
//! ```
//! use std::time::Instant;
//! use siprtmp_core::node::{Input, Node, NodeConfig, Output};
//!
//! let start = Instant::now(); // a driver's clock; the node itself never reads one
//! let mut node = Node::new(NodeConfig::default(), start, 42);
//! let conn = node.accept(start, "127.0.0.1:50000".parse().unwrap());
//! // The client's C0+C1: version 3, then 1536 bytes.
//! let mut c0c1 = vec![3u8];
//! c0c1.extend_from_slice(&[0u8; 1536]);
//! node.handle(start, Input::Received { conn, data: c0c1.as_slice().into() });
//! let mut wants_write = false;
//! while let Some(out) = node.poll_output() {
//!     if let Output::Transmit { conn: c } = out {
//!         wants_write |= c == conn;
//!     }
//! }
//! assert!(wants_write); // S0+S1+S2 are queued
//! assert_eq!(node.queued_bytes(conn), 1 + 1536 + 1536);
//! ```

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

pub use crate::decision::{DecideError, Decision, PublishMode, Question, RequestId};
pub use crate::relay::{RelayIn, RelayOut, WorkerId};
use crate::server::{RtmpServer, ServerConfig};
pub use crate::storage::{FileError, FileId, FileReply, FileRequest};
pub use crate::tcp::{ListenerId, StreamId, TcpCommand, TcpEvent};
pub use crate::udp::{SocketId, UdpCommand, UdpEvent};

/// Identifies one connection for the life of the node (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The worker whose node made this id (always worker 0 for a node that is not one of a
    /// group; see [`Node::with_relay`]).
    ///
    /// ```
    /// use siprtmp_core::node::ConnId;
    /// use siprtmp_core::relay::WorkerId;
    /// assert_eq!(ConnId(1).worker(), WorkerId(0));
    /// assert_eq!(ConnId((3 << 56) | 1).worker(), WorkerId(3));
    /// ```
    pub fn worker(self) -> WorkerId {
        WorkerId((self.0 >> 56) as u8)
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.worker() {
            WorkerId(0) => write!(f, "c{}", self.0),
            worker => write!(f, "{worker}c{}", self.0 & ((1 << 56) - 1)),
        }
    }
}

/// What a driver tells the node.
#[derive(Debug)]
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
    /// The deadline from [`Node::poll_timeout`] has passed.
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
    /// [`Node::with_relay`]); see [`crate::relay`].
    Relay(RelayIn),
}

/// What the node asks a driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The connection has queued bytes: write them ([`Node::io_slices`]) when the socket is
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
    /// [`Node::with_relay`]); see [`crate::relay`].
    Relay(RelayOut),
}

/// Application events, for logs and for embedding applications.
#[derive(Debug, Clone, PartialEq)]
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
    /// A connection was closed by the server, with the reason.
    Closing {
        /// The connection.
        conn: ConnId,
        /// Why (a protocol error, a slow player, an idle timeout...).
        reason: String,
    },
    /// A connection is gone (whoever closed it); the last event about it.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// The embedding application must answer `question` with [`Node::decide`].
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
        error: Option<String>,
    },
}

/// Settings of a node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// The RTMP server application's settings.
    pub server: ServerConfig,
    /// Ask the embedding application about every connect, publish and play
    /// ([`Event::Decide`], answered with [`Node::decide`]). Off (the default), everything
    /// that is well-formed is accepted at once.
    pub decisions: bool,
}

/// One event loop's worth of siprtmp: today the live RTMP server.
#[derive(Debug)]
pub struct Node {
    server: RtmpServer,
}

impl Node {
    /// A node whose RTMP timestamps count from `epoch` and whose randomness comes from `seed`.
    pub fn new(config: NodeConfig, epoch: Instant, seed: u64) -> Self {
        Self {
            server: RtmpServer::new(config.server, epoch, seed).with_decisions(config.decisions),
        }
    }

    /// Registers a newly accepted TCP connection from `peer`.
    pub fn accept(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        self.server.accept(now, peer)
    }

    /// Feeds one input at time `now`.
    // Never inlined: one call per input costs nothing next to the input's work, and profilers
    // (the benchmarks' callgrind recipes toggle on this function) get a stable frame.
    #[inline(never)]
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Received { conn, data } => self.server.received(now, conn, data),
            Input::Drained { conn, bytes } => self.server.drained(now, conn, bytes),
            Input::Closed { conn } => self.server.closed(conn),
            Input::Timeout => self.server.timeout(now),
            Input::Udp(event) => self.server.udp(now, event),
            Input::Tcp(event) => self.server.tcp(now, event),
            Input::FileDone { file, result } => self.server.file_done(now, file, result),
            Input::Relay(input) => self.server.relay_input(now, input),
        }
    }

    /// Makes this node worker `worker` of a group whose nodes share live streams through the
    /// driver's relay ([`crate::relay`]): its publishes are claimed from the group's registry
    /// and announced, its players may watch streams published on other workers, and its
    /// connection ids carry `worker` (unique across the group). Call before the first
    /// [`Node::accept`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Node, NodeConfig};
    /// use siprtmp_core::relay::WorkerId;
    /// let now = Instant::now();
    /// let mut node = Node::new(NodeConfig::default(), now, 1).with_relay(WorkerId(2));
    /// let conn = node.accept(now, "127.0.0.1:50000".parse().unwrap());
    /// assert_eq!(conn.worker(), WorkerId(2));
    /// ```
    pub fn with_relay(mut self, worker: WorkerId) -> Self {
        self.server.enable_relay(worker);
        self
    }

    /// Answers the [`Event::Decide`] with id `request`. Rejections send the client the
    /// matching status (`NetConnection.Connect.Rejected`, `NetStream.Publish.Denied`,
    /// `NetStream.Play.Failed`); a redirect is only valid for a connect.
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Decision, DecideError, Node, NodeConfig, RequestId};
    /// let mut node = Node::new(NodeConfig { decisions: true, ..NodeConfig::default() }, Instant::now(), 1);
    /// let unknown = node.decide(Instant::now(), RequestId(9), Decision::Accept);
    /// assert_eq!(unknown, Err(DecideError::UnknownRequest(RequestId(9))));
    /// ```
    pub fn decide(
        &mut self,
        now: Instant,
        request: RequestId,
        decision: Decision,
    ) -> Result<(), DecideError> {
        self.server.decide(now, request, decision)
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.server.poll_output()
    }

    /// The earliest deadline at which [`Input::Timeout`] must be fed, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    /// Fills `slices` with the connection's queued segments; returns how many were filled.
    pub fn io_slices<'a>(&'a self, conn: ConnId, slices: &mut [IoSlice<'a>]) -> usize {
        self.server.io_slices(conn, slices)
    }

    /// The connection's queued segments, front first: the same shared `Bytes` the queue
    /// holds (cloning one is a reference-count increment), for a driver that writes from
    /// another thread and so cannot borrow [`Node::io_slices`]. Report what was written with
    /// [`Input::Drained`], as for `io_slices`.
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Input, Node, NodeConfig};
    ///
    /// let now = Instant::now();
    /// let mut node = Node::new(NodeConfig::default(), now, 7);
    /// let conn = node.accept(now, "127.0.0.1:50000".parse().unwrap());
    /// let mut c0c1 = vec![3u8];
    /// c0c1.extend_from_slice(&[0u8; 1536]);
    /// node.handle(now, Input::Received { conn, data: c0c1.as_slice().into() });
    /// let queued: usize = node.queued_segments(conn).map(|s| s.len()).sum();
    /// assert_eq!(queued, node.queued_bytes(conn));
    /// ```
    pub fn queued_segments(&self, conn: ConnId) -> impl Iterator<Item = &bytes::Bytes> {
        self.server.queued_segments(conn)
    }

    /// Bytes queued for the connection and not yet drained.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.server.queued_bytes(conn)
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.server.connection_count()
    }

    /// Recordings that stopped on an error (a full disk, a file that cannot be written)
    /// since the node started; each is also told by [`Event::RecordStopped`] with its error.
    pub fn recordings_failed(&self) -> u64 {
        self.server.recordings_failed()
    }
}
