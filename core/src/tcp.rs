//! TCP as the node asks for it: connections the node opens itself and listeners it asks for
//! (the gateway's SIP over TCP, the HTTP listener and callbacks, relays to other RTMP
//! servers), as opposed to the RTMP connections the driver accepts on its
//! own listener and feeds as `Input::Received`. The node asks with [`TcpCommand`]s (carried by
//! `Output::Tcp`); what happens on those sockets comes back as [`TcpEvent`]s (`Input::Tcp`).
//!
//! The driver's contract:
//! - Never block the event loop: connects are non-blocking, sends are buffered.
//! - `Connect`: start a connection to `remote` (from `local_ip`, port chosen by the kernel,
//!   when given) and report exactly one of `Connected` (with the local address) or
//!   `ConnectFailed` (with the reason). No connect timeout is required of the driver: the node
//!   closes a stream it has stopped waiting for.
//! - `Send`: queue the bytes for the stream and write them in order as the socket takes
//!   them. **A `Send` on a stream that is still connecting is queued too**, and written once
//!   the connection is up (so the node may send right after `Connect`); if the connect fails,
//!   the queued bytes are dropped with the `ConnectFailed`. The queue is bounded
//!   ([`MAX_QUEUED_SEND`] at least): a stream whose peer does not read is closed, reported as
//!   `Closed` with an error, rather than buffering without end. A `Send` for a stream the
//!   driver does not know (closed, failed) is ignored.
//! - `Close`: write what is queued if it goes without blocking, then close; nothing more is
//!   reported for the stream.
//! - `Listen`: bind and listen on `addr` (port 0: any free port), answered with `Listening`
//!   (the bound address, or why it failed). Each accepted connection is reported as
//!   `Accepted` with a stream id **the driver chooses**, with the top bit set
//!   ([`StreamId::is_accepted`]), so it never collides with the ids the node chooses for its
//!   connects (top bit clear). `Unlisten` closes the listener; streams it accepted stay.
//! - Each write that the socket takes is reported as `Sent` with its byte count (any
//!   grouping: what matters is the total), until the stream is closed.
//! - Every read is fed as `Received` (any split: the node frames the bytes itself), in
//!   order. The peer closing, or a read or write error, is reported once as `Closed`.
//!   The driver bounds what it reads ahead of the node.
//!
//! ```
//! use siprtmp_core::tcp::StreamId;
//! assert!(!StreamId(7).is_accepted());
//! assert!(StreamId::accepted(7).is_accepted());
//! assert_eq!(StreamId::accepted(7).to_string(), "a7");
//! ```

use std::net::{IpAddr, SocketAddr};

pub use crate::ids::{ListenerId, StreamId};
use bytes::{Bytes, BytesMut};

/// The least a driver buffers for a stream's unsent bytes before closing it. SIP messages
/// never come near it; HTTP-FLV players (`server::http_flv`) and relay pushes do: their
/// backlog, bounded by the live players' soft and hard limits (1 and 8 MiB by default), waits
/// here, so it is twice the default hard limit.
pub const MAX_QUEUED_SEND: usize = 16 << 20;

/// What the node asks of the driver's TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpCommand {
    /// Open a connection and report [`TcpEvent::Connected`] or [`TcpEvent::ConnectFailed`].
    Connect {
        /// The node's name for it (top bit clear).
        stream: StreamId,
        /// Where to.
        remote: SocketAddr,
        /// The local address to connect from (any port), or the kernel's choice.
        local_ip: Option<IpAddr>,
    },
    /// Queue bytes for the stream (also while it is still connecting).
    Send {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the stream after writing what goes without blocking.
    Close {
        /// The stream.
        stream: StreamId,
    },
    /// Listen on `addr` and report [`TcpEvent::Listening`].
    Listen {
        /// The node's name for it.
        listener: ListenerId,
        /// Where (port 0 picks a free one).
        addr: SocketAddr,
    },
    /// Stop listening.
    Unlisten {
        /// The listener.
        listener: ListenerId,
    },
}

/// What the driver reports about the node's TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent {
    /// A connect succeeded.
    Connected {
        /// The stream.
        stream: StreamId,
        /// Its local address.
        local: SocketAddr,
    },
    /// A connect failed (refused, unreachable, ...); the stream is gone.
    ConnectFailed {
        /// The stream.
        stream: StreamId,
        /// Why.
        error: String,
    },
    /// The answer to [`TcpCommand::Listen`].
    Listening {
        /// The listener.
        listener: ListenerId,
        /// The bound address, or why listening failed.
        result: Result<SocketAddr, String>,
    },
    /// A listener accepted a connection.
    Accepted {
        /// The listener.
        listener: ListenerId,
        /// The new stream (an id the driver chose, [`StreamId::is_accepted`]).
        stream: StreamId,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// Bytes read from a stream.
    Received {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: BytesMut,
    },
    /// The socket took `bytes` more of what was sent on the stream (reported as writes
    /// happen, so the node can tell how far behind a peer is; a node may ignore it).
    Sent {
        /// The stream.
        stream: StreamId,
        /// How many bytes.
        bytes: usize,
    },
    /// The stream is gone: the peer closed it, or an error (given) ended it.
    Closed {
        /// The stream.
        stream: StreamId,
        /// What went wrong, `None` for an orderly close by the peer.
        error: Option<String>,
    },
}

impl TcpEvent {
    /// The stream of an event about a connection the node opened itself
    /// ([`TcpCommand::Connect`]: callbacks, relays, SIP over TCP); `None` for listeners and
    /// accepted connections. The node's parts tell their own streams apart by id bits.
    pub(crate) fn opened_stream(&self) -> Option<StreamId> {
        let stream = match self {
            TcpEvent::Connected { stream, .. }
            | TcpEvent::ConnectFailed { stream, .. }
            | TcpEvent::Received { stream, .. }
            | TcpEvent::Sent { stream, .. }
            | TcpEvent::Closed { stream, .. } => *stream,
            TcpEvent::Listening { .. } | TcpEvent::Accepted { .. } => return None,
        };
        (!stream.is_accepted()).then_some(stream)
    }
}
