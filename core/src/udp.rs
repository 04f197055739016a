//! UDP as the node speaks it: the gateway's SIP and RTP sockets are opened, used and closed by
//! the driver on the node's request ([`UdpCommand`], carried by `Output::Udp`), and what
//! happens on them comes back as [`UdpEvent`]s (`Input::Udp`).
//!
//! The driver's contract:
//! - `Bind`: open a UDP socket on `addr` (port 0: any free port) and answer with
//!   `UdpEvent::Bound`, giving the bound address or why it failed. Never block.
//! - `SendTo`: send `head` then `body` as one datagram (a vectored send, so the media payload
//!   is not copied); a full socket buffer drops the datagram (UDP semantics), it never blocks.
//! - `Unbind`: close the socket; nothing more is reported for it.
//! - Every datagram read from a bound socket is fed as `UdpEvent::Datagram`. Drivers may batch
//!   (`recvmmsg`/`sendmmsg`), the node does not care.

use std::net::SocketAddr;

pub use crate::ids::SocketId;
use bytes::Bytes;
use smallvec::SmallVec;

/// What the node asks of the driver's UDP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpCommand {
    /// Open a socket on `addr` and report [`UdpEvent::Bound`].
    Bind {
        /// The node's name for it.
        socket: SocketId,
        /// Where to bind (port 0 picks a free one).
        addr: SocketAddr,
        /// The receive buffer to ask the system for (`SO_RCVBUF`), for a socket that many
        /// calls share and whose bursts would overflow the default; `None` keeps the default.
        /// The system may give less (Linux caps it at `net.core.rmem_max`).
        receive_buffer: Option<usize>,
    },
    /// Send one datagram, `head` then `body`.
    SendTo {
        /// From which socket.
        socket: SocketId,
        /// To whom.
        destination: SocketAddr,
        /// A small header (RTP header, payload-format header), kept inline.
        head: SmallVec<[u8; 32]>,
        /// The body, shared with wherever it came from (never copied by the node).
        body: Bytes,
    },
    /// Close the socket.
    Unbind {
        /// The socket.
        socket: SocketId,
    },
}

/// What the driver reports about UDP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpEvent {
    /// The answer to [`UdpCommand::Bind`].
    Bound {
        /// The socket.
        socket: SocketId,
        /// The bound address, or why binding failed.
        result: Result<SocketAddr, String>,
    },
    /// A datagram arrived.
    Datagram {
        /// On which socket.
        socket: SocketId,
        /// From whom.
        source: SocketAddr,
        /// Its bytes.
        data: Bytes,
    },
}
