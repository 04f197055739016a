//! [`BatchIo`]: the system calls of one turn, handed over at once, for a driver that can make
//! many of them in one call (io_uring: one `io_uring_enter` for the writes and sends of every
//! socket).
//!
//! [`crate::NodeHost::turn`] writes each dirty connection with its own vectored write, and the
//! [`crate::UdpExecutor`] sends each socket's datagrams with their own `sendmsg`/`sendmmsg`:
//! with one socket per call, that is one system call per packet whatever the load, because
//! `sendmmsg` batches only within one socket. [`crate::NodeHost::turn_batched`] instead collects
//! every connection's write and every queued datagram of the turn and hands them to a
//! [`BatchIo`] in one call, which makes them all and reports each result as the synchronous
//! call would have (bytes taken, `WouldBlock`, an error) before it returns. So the semantics
//! stay those of non-blocking system calls: the buffers the batch points into (the node's
//! queued `Bytes`) need live only for the call, and the host goes on exactly as after
//! `writev`s and `sendmsg`s.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// One connection's write in a batch: its socket and its segments, `count` slices of the
/// batch's slice array from `first` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnWrite {
    /// The connection's socket.
    pub fd: RawFd,
    /// Its first segment in the batch's slices.
    pub first: usize,
    /// How many segments it has (at least one).
    pub count: usize,
}

/// One datagram in a batch: sent from `fd` to `destination`, `head` then `body` as one
/// datagram (two iovecs: the body is a media payload, not copied).
#[derive(Debug, Clone, Copy)]
pub struct DatagramSend<'a> {
    /// The node's UDP socket.
    pub fd: RawFd,
    /// Where to.
    pub destination: SocketAddr,
    /// The header (RTP header), first.
    pub head: &'a [u8],
    /// The payload, after it.
    pub body: &'a [u8],
}

/// Makes a turn's writes and sends in as few system calls as it can, each with the
/// semantics of a non-blocking call, all complete when [`Self::submit`] returns.
pub trait BatchIo {
    /// Writes `slices[w.first..w.first + w.count]` to each `w.fd` of `writes`, as much as the
    /// socket takes now, and sends each datagram of `sends`, without waiting (a full socket
    /// answers `WouldBlock`). `results` is cleared, then holds one result per write (bytes
    /// taken) followed by one per datagram, in order. Every operation has completed when it
    /// returns: nothing it was given is referred to afterwards.
    fn submit<'a>(
        &mut self,
        writes: &[ConnWrite],
        slices: &[IoSlice<'_>],
        sends: impl ExactSizeIterator<Item = DatagramSend<'a>>,
        results: &mut Vec<io::Result<usize>>,
    );

    /// How many datagrams left in segmented messages (UDP GSO: a run to one destination as
    /// one message) since this was last asked, for the UDP counters; none for a batch that
    /// sends each datagram alone.
    fn take_segmented(&mut self) -> u64 {
        0
    }
}
