//! [`UdpPoll`]: the UDP executor's sockets in a `mio::Poll` of their own, for async drivers
//! whose reactor watches that poll's file descriptor.
//!
//! An epoll instance is itself a pollable descriptor: it reads as ready while any socket
//! registered in it has an event. So an async runtime's reactor (tokio's `AsyncFd`,
//! async-io's `Async`) can wait on [`UdpPoll::fd`] beside its own sockets, and when it fires,
//! the node task calls [`UdpPoll::drain`], which takes the ready sockets without waiting and
//! reads each straight into the node ([`NodeHost::udp_readable`]).
//!
//! This replaces the executor's receive thread ([`UdpExecutor::start`]) for those drivers:
//! a datagram then costs no thread switch, no channel and no cross-thread wake-up, the mio
//! driver's path inside another runtime.
//!
//! ```
//! use siprtmp_core::node::{Node, NodeConfig};
//! use siprtmp_runtime_common::{NodeHost, Transport, UdpPoll};
//! use std::io::{self, IoSlice};
//! use std::time::Instant;
//!
//! struct NoSocket;
//! impl Transport for NoSocket {
//!     fn write_vectored(&mut self, _: &[IoSlice<'_>]) -> io::Result<usize> {
//!         Ok(0)
//!     }
//! }
//!
//! let (mut poll, udp) = UdpPoll::new().unwrap();
//! let node = Node::new(NodeConfig::default(), Instant::now(), 1);
//! let mut host: NodeHost<NoSocket> = NodeHost::new(node, None).with_udp(udp);
//! // Register `poll.fd()` with the runtime's reactor; when it reads as ready:
//! assert!(poll.fd() >= 0);
//! poll.drain(&mut host, Instant::now()).unwrap();
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use siprtmp_core::worker_relay::WorkerId;

use crate::host::{NodeHost, Transport};
use crate::mio_poll::{PollTokens, Watched};
use crate::udp_executor::UdpExecutor;

/// Readiness events taken per `epoll_wait`; a fuller batch is followed by another at once.
const EVENTS: usize = 256;

/// A poll holding only the UDP executor's sockets (see the module doc).
pub struct UdpPoll {
    poll: Poll,
    events: Events,
}

impl UdpPoll {
    /// A new poll and the executor whose sockets it watches (receiving in the driver, as with
    /// [`crate::mio_poll::udp_executor`]).
    pub fn new() -> io::Result<(Self, UdpExecutor)> {
        let poll = Poll::new()?;
        let udp = UdpExecutor::in_poll(poll.registry().try_clone()?);
        let events = Events::with_capacity(EVENTS);
        Ok((Self { poll, events }, udp))
    }

    /// The poll's descriptor, for the runtime's reactor (readable interest). It stays valid
    /// as long as this `UdpPoll` lives: deregister it first.
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Feeds every readable socket's datagrams to the node, without waiting. Call it when the
    /// reactor reports [`Self::fd`] readable, after clearing that readiness: a datagram that
    /// arrives during the drain makes the descriptor ready again, so none is left unseen.
    pub fn drain<T: Transport>(&mut self, host: &mut NodeHost<T>, now: Instant) -> io::Result<()> {
        loop {
            match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // Any worker: this poll holds no connection, only the executor's sockets.
            let tokens = PollTokens::new(WorkerId(0));
            let mut count = 0;
            for event in self.events.iter() {
                count += 1;
                if let Watched::Udp(slot) = tokens.decode(event.token()) {
                    host.udp_readable(now, slot);
                }
            }
            // Fewer than asked for: that was every ready socket.
            if count < EVENTS {
                return Ok(());
            }
        }
    }
}

/// The poll's descriptor, for reactors that take `AsRawFd` (tokio's `AsyncFd`).
impl AsRawFd for UdpPoll {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

/// The poll's descriptor as a borrowed one, for reactors that take `AsFd` (async-io's `Async`).
impl AsFd for UdpPoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is the poll's own, open for as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.poll.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::{Node, NodeConfig, SocketId, UdpCommand};
    use std::io::IoSlice;
    use std::sync::atomic::Ordering;

    struct NoSocket;
    impl Transport for NoSocket {
        fn write_vectored(&mut self, _: &[IoSlice<'_>]) -> io::Result<usize> {
            Ok(0)
        }
    }

    /// Whether `fd` reads as ready within `millis`.
    fn ready(fd: RawFd, millis: i32) -> bool {
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) == 1 }
    }

    /// The poll's descriptor reads as ready when datagrams arrive on one of its sockets; a
    /// drain hands them to the node, after which it is quiet until the next one.
    #[test]
    fn the_fd_turns_ready_on_a_datagram_and_a_drain_feeds_it_in() {
        let (mut poll, mut udp) = UdpPoll::new().unwrap();
        let now = Instant::now();
        let mut node = Node::new(NodeConfig::default(), now, 1);
        let socket = SocketId(7);
        let addr = "127.0.0.1:0".parse().unwrap();
        udp.execute(
            &mut node,
            now,
            UdpCommand::Bind {
                socket,
                addr,
                receive_buffer: None,
            },
        );
        let local = udp.local_addr(socket).expect("bound");
        let stats = udp.stats();
        let mut host: NodeHost<NoSocket> = NodeHost::new(node, None).with_udp(udp);
        assert!(!ready(poll.fd(), 0), "nothing arrived yet");

        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            peer.send_to(b"rtp", local).unwrap();
        }
        assert!(ready(poll.fd(), 5000), "a datagram makes the poll readable");
        poll.drain(&mut host, now).unwrap();
        assert_eq!(stats.received.load(Ordering::Relaxed), 3);
        assert!(!ready(poll.fd(), 0), "drained: quiet again");

        peer.send_to(b"rtp", local).unwrap();
        assert!(ready(poll.fd(), 5000), "the next datagram raises it again");
        poll.drain(&mut host, now).unwrap();
        assert_eq!(stats.received.load(Ordering::Relaxed), 4);
    }
}
