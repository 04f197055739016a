//! [`NodeReads`]: reading connections in the node's own task, for the drivers whose runtime
//! reports readiness through wakers (tokio, async-std).
//!
//! The driver's waker for a connection posts its id to the node task; the node task calls
//! [`NodeReads::read`], which reads until the runtime has the waker again (`Pending`), the peer
//! is gone, or [`READS_PER_TURN`] reads were taken. In that last case the runtime still holds
//! the socket ready and will not wake anyone for it, so the connection is queued and read
//! again by [`NodeReads::again`] at the end of the turn: one publisher cannot starve the
//! others, and a fast one is read only as fast as the node handles its data (memory stays
//! bounded without a channel).
//!
//! Reading here rather than in a task per connection saves a task switch and a channel
//! message per read on tokio, and on async-std a cross-thread hop (the figures:
//! `bench-compare/results/design-figures.md`).
//!
//! Paced reads, as under mio ([`crate::ReadGrid`]): a paced connection's socket has a high
//! `SO_RCVLOWAT`, so its waker stays quiet between ticks; at each tick
//! [`NodeReads::read_paced`] reads the connections due, and after each turn
//! [`NodeReads::pace_sockets`] sets the sockets the node paced or stopped pacing. Both read
//! with the driver's `read_now`, a read that asks the socket itself rather than the
//! runtime's record of its readiness (tokio's `try_read` returns `WouldBlock` unread while its
//! record says not ready, which for a quiet paced socket it always does).

use std::collections::VecDeque;
use std::io;
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;
use siprtmp_core::node::ConnId;

use crate::host::{NodeHost, Transport};

/// Reads of one connection per turn before the node writes and serves the others (bounds
/// latency under a flood).
pub const READS_PER_TURN: usize = 4;

/// Read buffer granularity: one allocation serves many reads of every connection.
const READ_CHUNK: usize = 64 * 1024;

/// One read buffer for every connection, and the connections to read again this turn.
#[derive(Debug)]
pub struct NodeReads {
    /// Kept initialised to its full length, so it is zeroed once per READ_CHUNK received, not
    /// once per read.
    buf: BytesMut,
    again: VecDeque<ConnId>,
    /// The paced connections read at a tick (kept for its allocation).
    sweep: Vec<ConnId>,
    /// The connections the node paced or stopped pacing in a turn (kept likewise).
    pacing_changes: Vec<(ConnId, bool)>,
}

impl Default for NodeReads {
    fn default() -> Self {
        Self {
            buf: BytesMut::zeroed(READ_CHUNK),
            again: VecDeque::new(),
            sweep: Vec::new(),
            pacing_changes: Vec::new(),
        }
    }
}

impl NodeReads {
    /// True when some connection is to be read again this turn (the driver must not wait).
    pub fn has_more(&self) -> bool {
        !self.again.is_empty()
    }

    /// Reads `conn` with `poll_read` (the runtime's non-blocking read that leaves the
    /// connection's waker when it returns `Pending`) and feeds what arrives to the node.
    /// Returns whether the reads brought anything: bytes, or the end of the stream.
    pub fn read<T: Transport>(
        &mut self,
        host: &mut NodeHost<T>,
        now: Instant,
        conn: ConnId,
        mut poll_read: impl FnMut(&mut T, &mut [u8]) -> Poll<io::Result<usize>>,
    ) -> bool {
        let mut reads = 0;
        while reads < READS_PER_TURN {
            let Some(transport) = host.transport_mut(conn) else {
                return reads > 0; // closed meanwhile: a stale wake-up
            };
            if self.buf.len() < READ_CHUNK / 4 {
                self.buf = BytesMut::zeroed(READ_CHUNK);
            }
            match poll_read(transport, &mut self.buf) {
                Poll::Pending => return reads > 0,
                Poll::Ready(Ok(0)) => {
                    host.peer_closed(now, conn);
                    return true;
                }
                Poll::Ready(Ok(n)) => {
                    reads += 1;
                    host.received(now, conn, self.buf.split_to(n));
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!("{conn}: read error: {e}");
                    host.peer_closed(now, conn);
                    return true;
                }
            }
        }
        self.again.push_back(conn);
        true
    }

    /// At a tick of the host's read grid, reads every paced connection due with `read_now`
    /// (before the turn, so that their players are written in it). One that had nothing
    /// twice in a row is left to raise an event for its next byte (see [`crate::ReadGrid`]).
    pub fn read_paced<T: Transport>(
        &mut self,
        host: &mut NodeHost<T>,
        now: Instant,
        mut read_now: impl FnMut(&mut T, &mut [u8]) -> Poll<io::Result<usize>>,
    ) {
        let mut sweep = std::mem::take(&mut self.sweep);
        if host.paced_due(now, &mut sweep) {
            for &conn in &sweep {
                let got_bytes = self.read(host, now, conn, &mut read_now);
                host.paced_read(conn, got_bytes);
            }
        }
        self.sweep = sweep;
    }

    /// After a turn: sets the sockets of the connections the node paced or stopped pacing
    /// in it, and reads those no longer paced at once with `read_now` (what waited below the
    /// low-water mark raises no event of its own). Returns whether it read any: the driver
    /// then takes another turn for what they brought.
    pub fn pace_sockets<T: Transport>(
        &mut self,
        host: &mut NodeHost<T>,
        now: Instant,
        mut read_now: impl FnMut(&mut T, &mut [u8]) -> Poll<io::Result<usize>>,
    ) -> bool {
        let mut changes = std::mem::take(&mut self.pacing_changes);
        host.pace_sockets(&mut changes);
        let mut unpaced = false;
        for &(conn, paced) in &changes {
            if !paced {
                self.read(host, now, conn, &mut read_now);
                unpaced = true;
            }
        }
        self.pacing_changes = changes;
        unpaced
    }

    /// Gives each connection queued by [`Self::read`] its next share.
    pub fn again<T: Transport>(
        &mut self,
        host: &mut NodeHost<T>,
        now: Instant,
        mut poll_read: impl FnMut(&mut T, &mut [u8]) -> Poll<io::Result<usize>>,
    ) {
        for _ in 0..self.again.len() {
            if let Some(conn) = self.again.pop_front() {
                self.read(host, now, conn, &mut poll_read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::{Node, NodeConfig};
    use std::collections::VecDeque;
    use std::io::IoSlice;

    /// A socket with a script of read results, and whatever the node writes to it.
    #[derive(Default)]
    struct ScriptedSocket {
        reads: VecDeque<Poll<io::Result<Vec<u8>>>>,
        polls: usize,
        written: usize,
    }

    impl ScriptedSocket {
        fn poll_read(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            self.polls += 1;
            match self.reads.pop_front() {
                None | Some(Poll::Pending) => Poll::Pending,
                Some(Poll::Ready(Ok(data))) => {
                    buf[..data.len()].copy_from_slice(&data);
                    Poll::Ready(Ok(data.len()))
                }
                Some(Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            }
        }
    }

    impl Transport for ScriptedSocket {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let n = bufs.iter().map(|b| b.len()).sum();
            self.written += n;
            Ok(n)
        }
    }

    /// An RTMP C0+C1 in `parts` reads: the node answers it once every byte has arrived.
    fn handshake_in(parts: usize) -> VecDeque<Poll<io::Result<Vec<u8>>>> {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 1536]);
        let size = c0c1.len().div_ceil(parts);
        c0c1.chunks(size)
            .map(|c| Poll::Ready(Ok(c.to_vec())))
            .collect()
    }

    /// S0+S1+S2: what the node queues in answer to a C0+C1.
    const HANDSHAKE_REPLY: usize = 1 + 1536 + 1536;

    fn host_with(socket: ScriptedSocket) -> (NodeHost<ScriptedSocket>, ConnId, Instant) {
        let now = Instant::now();
        let mut host = NodeHost::new(Node::new(NodeConfig::default(), now, 9), None);
        let conn = host.accept(now, "127.0.0.1:4000".parse().unwrap(), socket);
        (host, conn, now)
    }

    #[test]
    fn a_connection_that_keeps_delivering_yields_after_its_share_and_is_read_again() {
        let mut reads = handshake_in(READS_PER_TURN + 2);
        reads.push_back(Poll::Pending);
        let (mut host, conn, now) = host_with(ScriptedSocket {
            reads,
            ..Default::default()
        });
        let mut node_reads = NodeReads::default();
        node_reads.read(&mut host, now, conn, ScriptedSocket::poll_read);
        let socket = host.transport_mut(conn).unwrap();
        assert_eq!(socket.polls, READS_PER_TURN, "stops after its share");
        assert!(node_reads.has_more(), "queued: nobody would wake it");
        host.turn(now);
        assert_eq!(
            host.transport_mut(conn).unwrap().written,
            0,
            "C0+C1 still partial"
        );

        node_reads.again(&mut host, now, ScriptedSocket::poll_read);
        assert!(!node_reads.has_more(), "it met Pending: the waker is armed");
        host.turn(now);
        let socket = host.transport_mut(conn).unwrap();
        assert_eq!(socket.polls, READS_PER_TURN + 3);
        assert_eq!(
            socket.written, HANDSHAKE_REPLY,
            "every byte reached the node, in order"
        );
    }

    #[test]
    fn end_of_stream_and_read_errors_close_the_connection_and_stale_wake_ups_are_ignored() {
        for end in [Ok(Vec::new()), Err(io::ErrorKind::ConnectionReset.into())] {
            let (mut host, conn, now) = host_with(ScriptedSocket {
                reads: VecDeque::from([Poll::Ready(Ok(vec![3u8; 10])), Poll::Ready(end)]),
                ..Default::default()
            });
            let mut node_reads = NodeReads::default();
            node_reads.read(&mut host, now, conn, ScriptedSocket::poll_read);
            assert!(!node_reads.has_more());
            host.turn(now);
            let closed: Vec<ConnId> = host.take_closed().map(|(id, _)| id).collect();
            assert_eq!(closed, vec![conn]);
            // A wake-up posted before the close finds nothing to read.
            node_reads.read(&mut host, now, conn, ScriptedSocket::poll_read);
            assert!(!node_reads.has_more());
        }
    }

    #[test]
    fn an_interrupted_read_is_retried() {
        let mut reads = VecDeque::from([Poll::Ready(Err(io::ErrorKind::Interrupted.into()))]);
        reads.extend(handshake_in(1));
        let (mut host, conn, now) = host_with(ScriptedSocket {
            reads,
            ..Default::default()
        });
        NodeReads::default().read(&mut host, now, conn, ScriptedSocket::poll_read);
        host.turn(now);
        assert_eq!(host.transport_mut(conn).unwrap().written, HANDSHAKE_REPLY);
    }
}
