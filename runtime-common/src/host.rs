//! [`NodeHost`]: the half of an event-loop driver that does not depend on the event loop.
//!
//! mio, tokio and async-std differ in how they learn that a socket is readable or writable and
//! how they sleep; they do not differ in what to do next. The host owns the [`Node`] and one
//! [`Transport`] per connection, and carries out the node's outputs: a `Transmit` marks the
//! connection dirty, each dirty connection gets one vectored write per turn with the drained
//! count fed back, a `Close` writes what goes without blocking and then drops the transport,
//! a `File` request goes to the [`FileExecutor`] (whose completions come back as
//! `Input::FileDone` on the next turn), a `Udp` command to the [`UdpExecutor`] (binds
//! answered at once, datagrams fed in on the next turn or when the driver reports a readable
//! UDP token), a `Tcp` command to the [`TcpExecutor`] (its events fed in on a later turn),
//! an `Event` goes to the [`EventRouter`] (logged,
//! answered if it is a decision, forwarded). The driver hands dropped transports back to its
//! event loop with [`NodeHost::take_closed`] (to deregister or cancel a reader task).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use siprtmp_core::id_hash::IdHashMap;
use siprtmp_core::node::{
    ConnId, Event, FileError, Input, Node, Output, TcpCommand, TcpEvent, UdpCommand, UdpEvent,
};
use siprtmp_core::storage::FileErrorKind;

use crate::events::{Decider, EventRouter};
use crate::file_io::{FileExecutor, SHUTDOWN_FILE_GRACE};
use crate::read_grid::ReadGrid;
use crate::relay_link::RelayLink;
use crate::tcp_executor::TcpExecutor;
use crate::udp_executor::{UdpExecutor, UdpSlot};

/// Most segments handed to one vectored write (Linux `IOV_MAX` is 1024).
pub const MAX_IOVECS: usize = 512;

/// Segments a write tries first: most writes carry a few, and filling a 512-slice array for
/// each (8 KiB of stores) cost more than the rest of a gateway packet's path.
const FEW_IOVECS: usize = 16;

/// A connection's socket as the host sees it: something that takes bytes without waiting.
pub trait Transport {
    /// Writes as much of `bufs` as the socket takes now, without waiting.
    ///
    /// `Err(WouldBlock)` is a promise: the driver will call [`NodeHost::writable`] for this
    /// connection once the socket can take more. `Ok(0)` means nothing was taken and no such
    /// promise is made; the host then tries again on the next turn.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Sets the socket's `SO_RCVLOWAT` (see [`crate::set_read_low_water`]), for a driver
    /// that reads connections on the node's read grid ([`crate::ReadGrid`]); by default
    /// nothing (such a transport's connection is read as its bytes arrive, paced or not).
    fn set_read_low_water(&self, bytes: usize) -> io::Result<()> {
        let _ = bytes;
        Ok(())
    }
}

struct Slot<T> {
    transport: T,
    /// On the dirty list already.
    dirty: bool,
    /// The last write met `WouldBlock`: the next writability report resumes writing. Other
    /// reports (epoll repeats `EPOLLOUT` with every read event) are ignored, so that media held
    /// for merged writes is not written early because the peer sent something.
    blocked: bool,
}

/// A [`Node`] with its connections' transports: everything an event-loop driver does besides
/// waiting.
///
/// ```
/// use std::io::{self, IoSlice};
/// use std::time::Instant;
/// use siprtmp_core::node::{Node, NodeConfig};
/// use siprtmp_runtime_common::{NodeHost, Transport};
///
/// /// A socket that takes everything: collects what the node sends.
/// struct Sink(Vec<u8>);
/// impl Transport for Sink {
///     fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
///         bufs.iter().for_each(|b| self.0.extend_from_slice(b));
///         Ok(bufs.iter().map(|b| b.len()).sum())
///     }
/// }
///
/// let now = Instant::now();
/// let mut host = NodeHost::new(Node::new(NodeConfig::default(), now, 1), None);
/// let conn = host.accept(now, "127.0.0.1:5000".parse().unwrap(), Sink(Vec::new()));
/// let mut c0c1 = vec![3u8];
/// c0c1.extend_from_slice(&[0; 1536]);
/// host.received(now, conn, c0c1.as_slice().into());
/// host.turn(now); // one writev of S0+S1+S2
/// assert_eq!(host.node().queued_bytes(conn), 0);
/// ```
pub struct NodeHost<T> {
    node: Node,
    /// Looked up for every read and write: the node's ids hash with a multiply, not SipHash.
    conns: IdHashMap<ConnId, Slot<T>>,
    /// Connections marked dirty since the last flush (each once).
    dirty: Vec<ConnId>,
    /// Transports dropped by the node or by errors, for the driver to dispose of.
    closed: Vec<(ConnId, T)>,
    /// Runs the node's file requests; without one they fail at once.
    files: Option<FileExecutor>,
    /// Opens the node's UDP sockets; without one its binds fail.
    udp: Option<UdpExecutor>,
    /// Opens the node's own TCP connections and listeners; without one they fail.
    tcp: Option<TcpExecutor>,
    router: EventRouter,
    /// The relay to the other workers of a group, when the node is one.
    relay: Option<RelayLink>,
    /// What [`Self::turn_batched`] keeps between turns for its allocations.
    batch: BatchState,
    /// When the driver was asked to stop ([`Self::begin_stop`]), if it was.
    stopping: Option<Instant>,
    /// The connections read on a grid, once the driver said it paces reads
    /// ([`Self::enable_read_pacing`]).
    read_grid: Option<ReadGrid>,
}

/// The storage of a batched flush ([`NodeHost::turn_batched`]), kept for its allocations.
#[derive(Default)]
struct BatchState {
    /// The writes of one batch.
    writes: Vec<crate::batch_io::ConnWrite>,
    /// Each write's connection and the bytes it offers.
    conns: Vec<(ConnId, usize)>,
    /// Every write's segments, one after the other. Empty between batches: while filled, its
    /// slices borrow the node's queued segments (see `NodeHost::flush_batched`).
    slices: Vec<IoSlice<'static>>,
    /// One result per write, then one per datagram.
    results: Vec<io::Result<usize>>,
    /// Connections to write once more in the batch's second round.
    again: Vec<ConnId>,
}

impl<T: Transport> NodeHost<T> {
    /// Hosts `node`, forwarding its events to `events` if given. Without
    /// [`Self::with_files`], its file requests fail; without [`Self::with_decider`], its
    /// decisions are accepted.
    pub fn new(node: Node, events: Option<Sender<Event>>) -> Self {
        Self {
            node,
            conns: IdHashMap::default(),
            dirty: Vec::new(),
            closed: Vec::new(),
            files: None,
            udp: None,
            tcp: None,
            router: EventRouter::new(events, None),
            relay: None,
            batch: BatchState::default(),
            stopping: None,
            read_grid: None,
        }
    }

    /// The driver reads connections on a grid when the node asks ([`Output::ReadPacing`]):
    /// the node is told so, and the requests are kept in [`Self::read_grid`]. A driver that
    /// calls this must read every connection of the grid at each tick, and set its sockets
    /// up as [`ReadGrid::take_changes`] says after each turn.
    pub fn enable_read_pacing(&mut self) {
        self.node.enable_read_pacing();
        self.read_grid = Some(ReadGrid::default());
    }

    /// The connections read on a grid (after [`Self::enable_read_pacing`]).
    pub fn read_grid(&mut self) -> Option<&mut ReadGrid> {
        self.read_grid.as_mut()
    }

    /// Carries the node's relay messages over `relay` (for a node made a worker with
    /// `Node::with_relay`; the link's waker must make the driver take a [`Self::turn`]).
    pub fn with_relay(mut self, relay: Option<RelayLink>) -> Self {
        // Worker 0's HTTP listener answers for the whole group: it must know how many
        // reports to wait for.
        if let Some(relay) = &relay {
            self.node.set_worker_count(relay.workers());
        }
        self.relay = relay;
        self
    }

    /// Runs the node's file requests on `files` (whose wake-up must make the driver take a
    /// [`Self::turn`]).
    pub fn with_files(mut self, files: FileExecutor) -> Self {
        self.files = Some(files);
        self
    }

    /// Gives the node UDP sockets through `udp` (in own-thread mode its wake-up must make the
    /// driver take a [`Self::turn`]; in driver's-poll mode the driver reports readable UDP
    /// sockets with [`Self::udp_readable`]).
    pub fn with_udp(mut self, udp: UdpExecutor) -> Self {
        self.udp = Some(udp);
        self
    }

    /// Gives the node TCP connections and listeners of its own through `tcp` (whose wake-up
    /// must make the driver take a [`Self::turn`]).
    pub fn with_tcp(mut self, tcp: TcpExecutor) -> Self {
        self.tcp = Some(tcp);
        self
    }

    /// A UDP socket in the driver's poll is readable (its token decoded to `slot`, see
    /// [`crate::mio_poll::PollTokens`]): its datagrams go to the node now. Returns false
    /// without a driver's-poll executor.
    pub fn udp_readable(&mut self, now: Instant, slot: UdpSlot) -> bool {
        match &mut self.udp {
            Some(udp) => udp.readable(&mut self.node, now, slot),
            None => false,
        }
    }

    /// Answers the node's [`Event::Decide`]s with `decider` (if given).
    pub fn with_decider(mut self, decider: Option<Decider>) -> Self {
        if let Some(decider) = decider {
            self.set_decider(decider);
        }
        self
    }

    /// Answers the node's [`Event::Decide`]s with `decider` from now on.
    pub fn set_decider(&mut self, decider: Decider) {
        self.router.set_decider(decider);
    }

    /// The node (for queries such as [`Node::queued_bytes`]).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Registers an accepted connection and its transport.
    pub fn accept(&mut self, now: Instant, peer: SocketAddr, transport: T) -> ConnId {
        let conn = self.node.accept(now, peer);
        tracing::debug!("{conn}: accepted {peer}");
        self.register(conn, transport);
        conn
    }

    /// Registers a connection accepted on the RTMPS listener and its transport: the node
    /// decrypts what it reads and encrypts what it writes (`Node::accept_tls`); the host moves
    /// bytes exactly as for [`Self::accept`].
    pub fn accept_tls(&mut self, now: Instant, peer: SocketAddr, transport: T) -> ConnId {
        let conn = self.node.accept_tls(now, peer);
        tracing::debug!("{conn}: accepted {peer} (RTMPS)");
        self.register(conn, transport);
        conn
    }

    /// The slot of a connection the node has just accepted: nothing to write, not blocked.
    fn register(&mut self, conn: ConnId, transport: T) {
        let slot = Slot {
            transport,
            dirty: false,
            blocked: false,
        };
        self.conns.insert(conn, slot);
    }

    /// The transport of `conn`, if it is live (for reading from it).
    pub fn transport_mut(&mut self, conn: ConnId) -> Option<&mut T> {
        self.conns.get_mut(&conn).map(|slot| &mut slot.transport)
    }

    /// Bytes read from `conn` (ignored if the connection is already gone).
    pub fn received(&mut self, now: Instant, conn: ConnId, data: BytesMut) {
        if self.conns.contains_key(&conn) {
            self.node.handle(now, Input::Received { conn, data });
        }
    }

    /// The peer closed `conn`, or reading from it failed.
    pub fn peer_closed(&mut self, now: Instant, conn: ConnId) {
        self.remove(now, conn);
    }

    /// `conn`'s socket can take bytes again (after a `WouldBlock`; reports without one
    /// before are ignored: the node says when it has something to write).
    pub fn writable(&mut self, conn: ConnId) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            if std::mem::take(&mut slot.blocked) {
                self.mark_dirty(conn);
            }
        }
    }

    /// The node's next deadline; once a stop has drained the node, a deadline already past,
    /// so that the driver comes round to [`Self::stop_done`] without waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(since) = self.stopping {
            if self.node.is_drained(since) {
                return Some(since);
            }
        }
        self.node.poll_timeout()
    }

    /// The driver was asked to stop (its [`crate::Stopper`]): begins the node's graceful stop
    /// (`Input::Shutdown`: connections closed, the gateway's calls ended and its clients
    /// unregistered, newcomers refused), whose goodbyes the next turn sends. The driver goes
    /// on serving until [`Self::stop_done`], then calls [`Self::shutdown`]. Calling it again
    /// changes nothing.
    pub fn begin_stop(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now);
        tracing::info!(
            "stopping: closing {} connections, waiting for the gateway's goodbyes to be answered",
            self.conns.len()
        );
        self.node.handle(now, Input::Shutdown);
    }

    /// After [`Self::begin_stop`]: whether the node is drained (every goodbye answered, or
    /// its grace over), so that the driver may call [`Self::shutdown`] and return.
    pub fn stop_done(&self, now: Instant) -> bool {
        self.stopping.is_some() && self.node.is_drained(now)
    }

    /// Connections still to be written: the driver must not sleep before the next turn.
    pub fn has_pending_writes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// How long a readiness poll may wait from `now`: not at all while connections are still
    /// to be written, else until the earliest of the node's next deadline, the read grid's
    /// next tick and `also` (a deadline of the driver's own, such as a paused accept's
    /// retry: the backlog raises no new event); `None`, until an event.
    ///
    /// ```
    /// use std::io::{self, IoSlice};
    /// use std::time::{Duration, Instant};
    /// use siprtmp_core::node::{Node, NodeConfig};
    /// use siprtmp_runtime_common::{NodeHost, Transport};
    ///
    /// struct Closed;
    /// impl Transport for Closed {
    ///     fn write_vectored(&mut self, _: &[IoSlice<'_>]) -> io::Result<usize> {
    ///         Ok(0)
    ///     }
    /// }
    ///
    /// let now = Instant::now();
    /// let host: NodeHost<Closed> = NodeHost::new(Node::new(NodeConfig::default(), now, 1), None);
    /// // Nothing to write and nothing due sooner: the driver's own deadline bounds the wait.
    /// let retry = now + Duration::from_millis(250);
    /// assert_eq!(host.poll_wait(now, Some(retry)), Some(Duration::from_millis(250)));
    /// ```
    pub fn poll_wait(&self, now: Instant, also: Option<Instant>) -> Option<Duration> {
        if self.has_pending_writes() {
            return Some(Duration::ZERO);
        }
        self.wake_at(also)
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// When the driver must wake up even if no event comes: the earliest of the node's next
    /// deadline ([`Self::poll_timeout`]), the read grid's next tick and `also` (a deadline of
    /// the driver's own). For the drivers that wait on a timer rather than a poll's timeout
    /// (tokio, async-std); [`Self::poll_wait`] is this as a wait from `now`.
    pub fn wake_at(&self, also: Option<Instant>) -> Option<Instant> {
        let tick = self.read_grid.as_ref().and_then(ReadGrid::next_tick);
        [self.poll_timeout(), also, tick]
            .into_iter()
            .flatten()
            .min()
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// After a batch of inputs: feeds completed file requests in, fires the node's timer if
    /// due, carries out its outputs, and gives each dirty connection one vectored write.
    pub fn turn(&mut self, now: Instant) {
        self.feed_and_fire(now);
        self.process_outputs(now);
        self.flush_dirty(now);
        // Drained counts can release more work (a resumed player, a close).
        self.process_outputs(now);
    }

    /// Feeds completed file requests, relay messages, queued datagrams and TCP events in, and
    /// fires the node's timer if due.
    fn feed_and_fire(&mut self, now: Instant) {
        if let Some(files) = &mut self.files {
            files.feed(&mut self.node, now);
        }
        if let Some(relay) = &mut self.relay {
            relay.feed(&mut self.node, now);
        }
        if let Some(udp) = &mut self.udp {
            udp.feed(&mut self.node, now);
        }
        if let Some(tcp) = &mut self.tcp {
            tcp.feed(&mut self.node, now);
        }
        if self
            .node
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.node.handle(now, Input::Timeout);
        }
    }

    /// Transports dropped since the last call, for the driver to deregister or cancel.
    pub fn take_closed(&mut self) -> std::vec::Drain<'_, (ConnId, T)> {
        self.closed.drain(..)
    }

    /// On stop: removes every connection (the node is told each one closed, so recordings
    /// end and gateway calls are hung up, their SIP goodbyes sent once), then lets the file
    /// executor finish what that asks for (for up to
    /// [`SHUTDOWN_FILE_GRACE`]). Returns the transports for the driver to dispose of. Blocks
    /// while files finish: the loop has stopped serving.
    pub fn shutdown(&mut self, now: Instant) -> Vec<(ConnId, T)> {
        self.dirty.clear();
        let open: Vec<(ConnId, T)> = self.conns.drain().map(|(c, s)| (c, s.transport)).collect();
        for (conn, _) in &open {
            self.node.handle(now, Input::Closed { conn: *conn });
        }
        let mut transports: Vec<(ConnId, T)> = self.closed.drain(..).collect();
        transports.extend(open);
        // What the closes ask for now: file requests queued, and the gateway's goodbyes (CANCEL,
        // BYE, un-REGISTER) sent once while the UDP sockets are still open.
        self.process_outputs(now);
        if let Some(files) = &mut self.files {
            files.finish(&mut self.node, &mut self.router, SHUTDOWN_FILE_GRACE);
        }
        transports
    }

    fn process_outputs(&mut self, now: Instant) {
        self.carry_out_outputs(now);
        // The datagrams of this batch, a socket's run in one call.
        if let Some(udp) = &mut self.udp {
            udp.flush();
        }
    }

    /// Carries out the node's queued outputs; datagrams stay queued in the UDP executor.
    fn carry_out_outputs(&mut self, now: Instant) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { conn } => self.mark_dirty(conn),
                Output::Close { conn } => {
                    self.write(now, conn);
                    self.remove(now, conn);
                }
                Output::File(request) => match &mut self.files {
                    Some(files) => files.submit(request),
                    None => {
                        let result = Err(FileError::new(FileErrorKind::Other, "no file storage"));
                        let file = request.file;
                        self.node.handle(now, Input::FileDone { file, result });
                    }
                },
                Output::Udp(command) => match &mut self.udp {
                    Some(udp) => udp.execute(&mut self.node, now, command),
                    None => refuse_udp(&mut self.node, now, command),
                },
                Output::Tcp(command) => match &mut self.tcp {
                    Some(tcp) => tcp.execute(command),
                    None => refuse_tcp(&mut self.node, now, command),
                },
                Output::Event(event) => self.router.route(&mut self.node, now, event),
                Output::Relay(out) => match &mut self.relay {
                    Some(relay) => relay.execute(&mut self.node, now, out),
                    None => crate::relay_link::without_link(&mut self.node, now, out),
                },
                Output::ReadPacing { conn, every } => {
                    if let Some(grid) = &mut self.read_grid {
                        if self.conns.contains_key(&conn) {
                            grid.set(now, conn, every);
                        }
                    }
                }
                // The enum grows: an output this driver does not know is one it cannot do.
                other => tracing::warn!("an output this driver does not carry out: {other:?}"),
            }
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for conn in dirty.drain(..) {
            if let Some(slot) = self.conns.get_mut(&conn) {
                slot.dirty = false;
                self.write(now, conn);
            }
        }
        // Keep the list's allocation for the next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// One vectored write of the connection's queued segments (a second only if the first was
    /// partial, to reach `WouldBlock`, which is what arms the writable notification).
    fn write(&mut self, now: Instant, conn: ConnId) {
        for _ in 0..2 {
            let Some(slot) = self.conns.get_mut(&conn) else {
                return;
            };
            let mut few = [IoSlice::new(&[]); FEW_IOVECS];
            let many: [IoSlice<'_>; MAX_IOVECS];
            let mut count = self.node.io_slices(conn, &mut few);
            let slices = if count < FEW_IOVECS {
                &few[..count]
            } else {
                many = {
                    let mut many = [IoSlice::new(&[]); MAX_IOVECS];
                    count = self.node.io_slices(conn, &mut many);
                    many
                };
                &many[..count]
            };
            if count == 0 {
                return;
            }
            let total: usize = slices.iter().map(|s| s.len()).sum();
            match slot.transport.write_vectored(slices) {
                Ok(0) => break,
                Ok(n) => {
                    self.node.handle(now, Input::Drained { conn, bytes: n });
                    if n == total && self.node.queued_bytes(conn) == 0 {
                        return;
                    }
                }
                // The transport will report writability.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(slot) = self.conns.get_mut(&conn) {
                        slot.blocked = true;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("{conn}: write error: {e}");
                    self.remove(now, conn);
                    return;
                }
            }
        }
        // Still queued without a writability promise (more than MAX_IOVECS segments, two
        // partial writes, or `Ok(0)`): try again on the next turn.
        self.mark_dirty(conn);
    }

    fn remove(&mut self, now: Instant, conn: ConnId) {
        if let Some(slot) = self.conns.remove(&conn) {
            if let Some(grid) = &mut self.read_grid {
                grid.remove(conn);
            }
            self.closed.push((conn, slot.transport));
            self.node.handle(now, Input::Closed { conn });
        }
    }
}

#[cfg(unix)]
impl<T: Transport + std::os::fd::AsRawFd> NodeHost<T> {
    /// [`Self::turn`] with the turn's system calls made through `io` in one batch: the
    /// datagrams the outputs queued and one vectored write per dirty connection go in one
    /// [`BatchIo::submit`](crate::BatchIo::submit) (a second round only for the connections
    /// whose write was partial, to reach `WouldBlock` as [`Self::turn`] does). The results are
    /// those of the synchronous calls, so the node sees the same drained counts, the same
    /// `WouldBlock`s and the same errors.
    pub fn turn_batched(&mut self, now: Instant, io: &mut impl crate::BatchIo) {
        self.feed_and_fire(now);
        self.carry_out_outputs(now);
        self.flush_batched(now, io);
        // Drained counts can release more work (a resumed player, a close); what it sends
        // goes in a batch of its own, without writes (the connections it dirtied are written
        // on the next turn, as with `turn`).
        self.carry_out_outputs(now);
        if self.udp.as_ref().is_some_and(|u| u.has_pending_sends()) {
            let dirty = std::mem::take(&mut self.dirty);
            self.flush_batched(now, io);
            self.dirty = dirty;
        }
    }

    /// Writes every dirty connection and sends every queued datagram in one batch; see
    /// [`Self::turn_batched`].
    fn flush_batched(&mut self, now: Instant, io: &mut impl crate::BatchIo) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut list = std::mem::take(&mut self.dirty);
        for round in 0..2 {
            batch.writes.clear();
            batch.conns.clear();
            for &conn in &list {
                let Some(slot) = self.conns.get_mut(&conn) else {
                    continue;
                };
                slot.dirty = false;
                let fd = slot.transport.as_raw_fd();
                let mut few = [IoSlice::new(&[]); FEW_IOVECS];
                let mut many: [IoSlice<'_>; MAX_IOVECS];
                let mut count = self.node.io_slices(conn, &mut few);
                let slices = if count < FEW_IOVECS {
                    &few[..count]
                } else {
                    many = [IoSlice::new(&[]); MAX_IOVECS];
                    count = self.node.io_slices(conn, &mut many);
                    &many[..count]
                };
                if count == 0 {
                    continue;
                }
                let first = batch.slices.len();
                let mut total = 0;
                for slice in slices {
                    total += slice.len();
                    // SAFETY: the slice points into a segment the node holds queued for
                    // `conn`. The node is not changed (no `&mut self.node`) until
                    // `batch.slices` is cleared below, right after the batch is submitted,
                    // so the segment outlives every use of the extended borrow.
                    batch.slices.push(unsafe {
                        std::mem::transmute::<IoSlice<'_>, IoSlice<'static>>(*slice)
                    });
                }
                batch
                    .writes
                    .push(crate::batch_io::ConnWrite { fd, first, count });
                batch.conns.push((conn, total));
            }
            let sends = round == 0 && self.udp.as_ref().is_some_and(|u| u.has_pending_sends());
            if batch.writes.is_empty() && !sends {
                break;
            }
            match (&self.udp, sends) {
                (Some(udp), true) => io.submit(
                    &batch.writes,
                    &batch.slices,
                    udp.pending_sends(),
                    &mut batch.results,
                ),
                _ => io.submit(
                    &batch.writes,
                    &batch.slices,
                    std::iter::empty(),
                    &mut batch.results,
                ),
            }
            batch.slices.clear();
            let writes = batch.writes.len();
            if sends {
                if let Some(udp) = &mut self.udp {
                    let segmented = io.take_segmented();
                    udp.sent_batch(batch.results.get(writes..).unwrap_or_default(), segmented);
                }
            }
            batch.again.clear();
            for (i, &(conn, total)) in batch.conns.iter().enumerate() {
                let result = batch
                    .results
                    .get_mut(i)
                    .map(|r| std::mem::replace(r, Ok(0)))
                    .unwrap_or(Ok(0));
                match result {
                    // Nothing taken, no writability promise: the next turn tries again.
                    Ok(0) => self.mark_dirty(conn),
                    Ok(n) => {
                        self.node.handle(now, Input::Drained { conn, bytes: n });
                        if n < total || self.node.queued_bytes(conn) > 0 {
                            batch.again.push(conn);
                        }
                    }
                    // The driver's poll reports writability.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Some(slot) = self.conns.get_mut(&conn) {
                            slot.blocked = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => batch.again.push(conn),
                    Err(e) => {
                        tracing::debug!("{conn}: write error: {e}");
                        self.remove(now, conn);
                    }
                }
            }
            list.clear();
            std::mem::swap(&mut list, &mut batch.again);
        }
        // Still queued without a writability promise after two rounds (as `write`): the next
        // turn tries again.
        for &conn in &list {
            self.mark_dirty(conn);
        }
        list.clear();
        // Keep the allocations for the next turn (`self.dirty` may have been refilled).
        if self.dirty.is_empty() {
            self.dirty = list;
        }
        self.batch = batch;
    }
}

/// Without a UDP executor: binds fail with a clear reason (the gateway then refuses its
/// connects), nothing else happens.
fn refuse_udp(node: &mut Node, now: Instant, command: UdpCommand) {
    if let UdpCommand::Bind { socket, .. } = command {
        let result = Err("this host has no UDP sockets".into());
        node.handle(now, Input::Udp(UdpEvent::Bound { socket, result }));
    }
}

/// Without a TCP executor: listens and connects fail with a clear reason, nothing else
/// happens.
pub(crate) fn refuse_tcp(node: &mut Node, now: Instant, command: TcpCommand) {
    let error = "this host has no TCP of the node's own".to_owned();
    let event = match command {
        TcpCommand::Listen { listener, .. } => TcpEvent::Listening {
            listener,
            result: Err(error),
        },
        TcpCommand::Connect { stream, .. } => TcpEvent::ConnectFailed { stream, error },
        _ => return,
    };
    node.handle(now, Input::Tcp(event));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use siprtmp_core::node::{AppConfig, RecordPolicy, ServerConfig};
    use siprtmp_core::node::{Decision, NodeConfig, Question};
    use siprtmp_core::rng::SeededRng;
    use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
    use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
    use std::time::Duration;

    /// A socket whose kernel buffer takes `budget` more bytes, then says `WouldBlock` (or
    /// fails, or takes nothing, as told).
    #[derive(Default)]
    struct FakeSocket {
        budget: usize,
        written: Vec<u8>,
        writes: usize,
        fail: bool,
        zero: bool,
        /// The descriptor a batched turn asks for.
        #[cfg(unix)]
        fd: std::os::fd::RawFd,
    }

    impl Transport for FakeSocket {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.writes += 1;
            if self.fail {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if self.zero {
                return Ok(0);
            }
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.budget - n);
                self.written.extend_from_slice(&buf[..take]);
                n += take;
            }
            self.budget -= n;
            Ok(n)
        }
    }

    /// S0+S1+S2: what the node queues in answer to a C0+C1.
    const HANDSHAKE_REPLY: usize = 1 + 1536 + 1536;

    fn host_with_handshake(socket: FakeSocket) -> (NodeHost<FakeSocket>, ConnId, Instant) {
        let now = Instant::now();
        let mut host = NodeHost::new(Node::new(NodeConfig::default(), now, 9), None);
        let conn = host.accept(now, "127.0.0.1:4000".parse().unwrap(), socket);
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 1536]);
        host.received(now, conn, c0c1.as_slice().into());
        (host, conn, now)
    }

    #[test]
    fn a_full_socket_waits_for_writable_then_resumes_where_it_stopped() {
        let socket = FakeSocket {
            budget: 1000,
            ..FakeSocket::default()
        };
        let (mut host, conn, now) = host_with_handshake(socket);
        host.turn(now);
        // One partial write, a second attempt that hits WouldBlock, and no busy retry.
        assert_eq!(host.transport_mut(conn).unwrap().writes, 2);
        assert_eq!(host.node().queued_bytes(conn), HANDSHAKE_REPLY - 1000);
        assert!(!host.has_pending_writes());
        host.turn(now);
        assert_eq!(
            host.transport_mut(conn).unwrap().writes,
            2,
            "wrote without being told"
        );

        host.transport_mut(conn).unwrap().budget = 10_000;
        host.writable(conn);
        host.turn(now);
        let socket = host.transport_mut(conn).unwrap();
        assert_eq!(socket.written.len(), HANDSHAKE_REPLY);
        assert_eq!(socket.written[0], 3, "S0 first: the bytes go out in order");
        assert_eq!(host.node().queued_bytes(conn), 0);
    }

    #[cfg(unix)]
    impl std::os::fd::AsRawFd for FakeSocket {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            self.fd
        }
    }

    /// A batch that gives each descriptor `budgets[fd]` more bytes, then says `WouldBlock`;
    /// records what each submission held.
    #[cfg(unix)]
    #[derive(Default)]
    struct FakeBatch {
        budgets: std::collections::HashMap<std::os::fd::RawFd, usize>,
        written: std::collections::HashMap<std::os::fd::RawFd, usize>,
        /// The descriptors written by each submission.
        submissions: Vec<Vec<std::os::fd::RawFd>>,
    }

    #[cfg(unix)]
    impl crate::BatchIo for FakeBatch {
        fn submit<'a>(
            &mut self,
            writes: &[crate::ConnWrite],
            slices: &[IoSlice<'_>],
            sends: impl ExactSizeIterator<Item = crate::DatagramSend<'a>>,
            results: &mut Vec<io::Result<usize>>,
        ) {
            results.clear();
            self.submissions.push(writes.iter().map(|w| w.fd).collect());
            for w in writes {
                let offered: usize = slices[w.first..w.first + w.count]
                    .iter()
                    .map(|s| s.len())
                    .sum();
                let budget = self.budgets.entry(w.fd).or_default();
                let n = offered.min(*budget);
                *budget -= n;
                *self.written.entry(w.fd).or_default() += n;
                results.push(if n == 0 {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                });
            }
            results.extend(sends.map(|d| Ok(d.head.len() + d.body.len())));
        }
    }

    /// The batched turn writes every dirty connection in one submission, a second round only
    /// for the one whose write was partial (to reach `WouldBlock`), and resumes it once told
    /// it is writable, as the synchronous turn does.
    #[cfg(unix)]
    #[test]
    fn a_batched_turn_writes_every_connection_at_once_and_resumes_a_full_one() {
        let now = Instant::now();
        let mut host = NodeHost::new(Node::new(NodeConfig::default(), now, 9), None);
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 1536]);
        let mut conns = Vec::new();
        for fd in [10, 11] {
            let socket = FakeSocket {
                fd,
                ..FakeSocket::default()
            };
            let conn = host.accept(now, "127.0.0.1:4000".parse().unwrap(), socket);
            host.received(now, conn, c0c1.as_slice().into());
            conns.push(conn);
        }
        let mut batch = FakeBatch::default();
        batch.budgets.insert(10, 1000);
        batch.budgets.insert(11, usize::MAX);
        host.turn_batched(now, &mut batch);
        assert_eq!(batch.submissions, [vec![10, 11], vec![10]]);
        assert_eq!(batch.written[&11], HANDSHAKE_REPLY);
        assert_eq!(host.node().queued_bytes(conns[1]), 0);
        assert_eq!(host.node().queued_bytes(conns[0]), HANDSHAKE_REPLY - 1000);
        assert!(!host.has_pending_writes());
        host.turn_batched(now, &mut batch);
        assert_eq!(batch.submissions.len(), 2, "wrote without being told");

        batch.budgets.insert(10, usize::MAX);
        host.writable(conns[0]);
        host.turn_batched(now, &mut batch);
        assert_eq!(batch.submissions[2], [10]);
        assert_eq!(batch.written[&10], HANDSHAKE_REPLY);
        assert_eq!(host.node().queued_bytes(conns[0]), 0);
    }

    #[test]
    fn a_write_that_takes_nothing_is_retried_on_the_next_turn() {
        let socket = FakeSocket {
            zero: true,
            ..FakeSocket::default()
        };
        let (mut host, conn, now) = host_with_handshake(socket);
        host.turn(now);
        assert!(host.has_pending_writes());
        let socket = host.transport_mut(conn).unwrap();
        socket.zero = false;
        socket.budget = usize::MAX;
        host.turn(now);
        assert!(!host.has_pending_writes());
        assert_eq!(host.node().queued_bytes(conn), 0);
    }

    #[test]
    fn a_write_error_removes_the_connection_and_hands_back_its_transport() {
        let socket = FakeSocket {
            fail: true,
            ..FakeSocket::default()
        };
        let (mut host, conn, now) = host_with_handshake(socket);
        host.turn(now);
        let closed: Vec<ConnId> = host.take_closed().map(|(c, _)| c).collect();
        assert_eq!(closed, [conn]);
        assert_eq!(host.connection_count(), 0);
        assert_eq!(host.node().connection_count(), 0);
        // Late input for the gone connection is ignored.
        host.received(now, conn, BytesMut::from(&b"late"[..]));
        host.writable(conn);
        host.turn(now);
        assert!(!host.has_pending_writes());
    }

    #[test]
    fn a_peer_close_tells_the_node_and_hands_back_the_transport() {
        let (mut host, conn, now) = host_with_handshake(FakeSocket::default());
        host.peer_closed(now, conn);
        assert_eq!(host.take_closed().count(), 1);
        assert_eq!(host.node().connection_count(), 0);
        host.peer_closed(now, conn);
        assert_eq!(host.take_closed().count(), 0, "closed twice");
    }

    /// A client machine wired to a host through a [`FakeSocket`] that takes everything.
    struct Wired {
        host: NodeHost<FakeSocket>,
        conn: ConnId,
        client: RtmpClient,
        inbox: BytesMut,
    }

    impl Wired {
        fn new(host: NodeHost<FakeSocket>, app: &str) -> Self {
            let mut host = host;
            let socket = FakeSocket {
                budget: usize::MAX,
                ..FakeSocket::default()
            };
            let conn = host.accept(Instant::now(), "127.0.0.1:4000".parse().unwrap(), socket);
            let client = RtmpClient::new(&mut SeededRng::new(2), app, "rtmp://127.0.0.1/app");
            Self {
                host,
                conn,
                client,
                inbox: BytesMut::new(),
            }
        }

        /// Moves bytes both ways until the client sees an event matching `pred`.
        fn until(&mut self, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
            for _ in 0..100 {
                let now = Instant::now();
                while let Some(bytes) = self.client.take_output() {
                    self.host
                        .received(now, self.conn, BytesMut::from(&bytes[..]));
                }
                self.host.turn(now);
                if let Some(socket) = self.host.transport_mut(self.conn) {
                    self.inbox
                        .extend_from_slice(&std::mem::take(&mut socket.written));
                }
                self.client.received(&mut self.inbox).expect("client input");
                while let Some(event) = self.client.poll_event() {
                    if pred(&event) {
                        return event;
                    }
                }
            }
            panic!("the client never saw the event");
        }

        fn publish(&mut self, name: &str) -> (u32, ClientEvent) {
            self.until(|e| *e == ClientEvent::Connected);
            self.client.create_stream();
            let ClientEvent::StreamCreated(id) =
                self.until(|e| matches!(e, ClientEvent::StreamCreated(_)))
            else {
                unreachable!()
            };
            // As `record`: the publisher asks for the recording, and so hears how it goes.
            self.client.publish_as(id, name, "record");
            (id, self.until(|e| matches!(e, ClientEvent::Status(..))))
        }
    }

    fn recording_node(decisions: bool) -> Node {
        let mut server = ServerConfig::default();
        server.apps.insert(
            "live".into(),
            AppConfig {
                record: RecordPolicy::All,
                ..AppConfig::default()
            },
        );
        let config = NodeConfig { server, decisions };
        Node::new(config, Instant::now(), 5)
    }

    fn scratch(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("siprtmp-host-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_recording_runs_on_the_executor_and_is_finished_at_shutdown() {
        let root = scratch("record");
        let (woken_tx, woken) = std::sync::mpsc::channel();
        let files = FileExecutor::start(root.clone(), move || {
            let _ = woken_tx.send(());
        })
        .unwrap();
        let (events_tx, events) = std::sync::mpsc::channel();
        let host = NodeHost::new(recording_node(false), Some(events_tx)).with_files(files);
        let mut wired = Wired::new(host, "live");
        let (id, status) = wired.publish("cam");
        assert_eq!(
            status,
            ClientEvent::Status(id, "NetStream.Publish.Start".into())
        );
        for (timestamp, payload) in [
            (0, &[0x17u8, 0, 0, 0, 0, 1, 0x64, 0, 0x0d][..]),
            (0, &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65][..]),
            (40, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41][..]),
        ] {
            let message = RtmpMessage::new(
                type_id::VIDEO,
                id,
                timestamp,
                Bytes::copy_from_slice(payload),
            );
            wired.client.send_media(&message);
        }
        // The open and the first writes complete on the file thread, which wakes the driver;
        // the next turn feeds the completions in.
        wired.until(|e| matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Record.Start"));
        woken
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the file thread woke the driver");
        wired.host.turn(Instant::now());
        assert!(root.join("live/cam.flv").exists());

        let transports = wired.host.shutdown(Instant::now());
        assert_eq!(transports.len(), 1);
        let events: Vec<Event> = events.try_iter().collect();
        let stopped = events.iter().find_map(|e| match e {
            Event::RecordStopped {
                path, error, bytes, ..
            } => Some((path.clone(), error.clone(), *bytes)),
            _ => None,
        });
        let (path, error, bytes) = stopped.expect("the recording ended at shutdown");
        assert_eq!((path.as_str(), error), ("live/cam.flv", None));
        let file = std::fs::read(root.join(&path)).unwrap();
        assert_eq!(
            file.len() as u64,
            bytes,
            "every byte reached the disk before shutdown returned"
        );
        assert!(file.starts_with(b"FLV\x01"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn without_an_executor_a_recording_fails_and_the_stream_goes_on() {
        let (events_tx, events) = std::sync::mpsc::channel();
        let host = NodeHost::new(recording_node(false), Some(events_tx));
        let mut wired = Wired::new(host, "live");
        let (id, status) = wired.publish("cam");
        assert_eq!(
            status,
            ClientEvent::Status(id, "NetStream.Publish.Start".into())
        );
        wired.until(|e| matches!(e, ClientEvent::Status(_, c) if c.starts_with("NetStream.Record.") && c != "NetStream.Record.Start"));
        assert!(events
            .try_iter()
            .any(|e| matches!(e, Event::RecordStopped { error: Some(_), .. })));
        assert_eq!(
            wired.host.connection_count(),
            1,
            "the publisher stays connected"
        );
    }

    #[test]
    fn the_decider_answers_decisions_and_refusals_reach_the_client() {
        let decider: Decider = Box::new(|event| match event {
            Event::Decide {
                request,
                question: Question::Publish { name, .. },
            } if name == "secret" => Some((*request, Decision::Reject("not you".into()))),
            Event::Decide { request, .. } => Some((*request, Decision::Accept)),
            _ => None,
        });
        let host = NodeHost::new(recording_node(true), None).with_decider(Some(decider));
        let mut wired = Wired::new(host, "other");
        let (id, status) = wired.publish("secret");
        assert_eq!(
            status,
            ClientEvent::Status(id, "NetStream.Publish.Denied".into())
        );
    }

    /// The gateway's pattern: one connection publishes and plays. With merged writes, media
    /// for its player is held; the publisher's next message makes epoll report the socket
    /// writable again (`EPOLLOUT` comes with every event), which must not write the held bytes.
    #[test]
    fn a_writability_report_without_a_would_block_does_not_write_held_media() {
        let mut config = NodeConfig::default();
        config.server.merge_writes = Some(Duration::from_millis(100));
        let host = NodeHost::new(Node::new(config, Instant::now(), 9), None);
        let mut wired = Wired::new(host, "live");
        let (publishing, _) = wired.publish("s");
        wired.client.create_stream();
        let ClientEvent::StreamCreated(playing) =
            wired.until(|e| matches!(e, ClientEvent::StreamCreated(_)))
        else {
            unreachable!()
        };
        wired.client.play(playing, "s", -1.0);
        wired
            .until(|e| matches!(e, ClientEvent::Status(_, code) if code == "NetStream.Play.Start"));
        let frame =
            |i: u32| RtmpMessage::new(type_id::AUDIO, publishing, i * 20, vec![0xb2, i as u8]);
        // The first media after a play goes at once; the second is held.
        wired.client.send_media(&frame(0));
        wired.until(|e| {
            matches!(e, ClientEvent::Media(m) if m.stream_id == playing && m.type_id == type_id::AUDIO)
        });

        let start = Instant::now();
        let conn = wired.conn;
        for i in 1..=3u32 {
            let now = start + Duration::from_millis(20 * u64::from(i));
            wired.client.send_media(&frame(i));
            while let Some(bytes) = wired.client.take_output() {
                wired.host.received(now, conn, BytesMut::from(&bytes[..]));
            }
            wired.host.writable(conn);
            wired.host.turn(now);
            let socket = wired.host.transport_mut(conn).unwrap();
            assert!(
                socket.written.is_empty(),
                "frame {i}'s echo was written before its window"
            );
        }
        let writes = wired.host.transport_mut(conn).unwrap().writes;
        wired.host.turn(start + Duration::from_millis(20 + 100));
        let socket = wired.host.transport_mut(conn).unwrap();
        assert_eq!(
            socket.writes,
            writes + 1,
            "the held frames leave in one write"
        );
        wired
            .inbox
            .extend_from_slice(&std::mem::take(&mut socket.written));
        wired.client.received(&mut wired.inbox).unwrap();
        let mut got = Vec::new();
        while let Some(event) = wired.client.poll_event() {
            if let ClientEvent::Media(m) = event {
                got.push(m.payload[1]);
            }
        }
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn without_a_decider_every_decision_is_accepted() {
        let host = NodeHost::new(recording_node(true), None);
        let mut wired = Wired::new(host, "other");
        let (id, status) = wired.publish("anything");
        assert_eq!(
            status,
            ClientEvent::Status(id, "NetStream.Publish.Start".into())
        );
    }

    #[test]
    fn a_handshake_deadline_closes_through_the_host() {
        let (mut host, conn, now) = host_with_handshake(FakeSocket {
            budget: usize::MAX,
            ..FakeSocket::default()
        });
        host.turn(now);
        let deadline = host.poll_timeout().expect("handshake deadline");
        host.turn(deadline);
        let closed: Vec<ConnId> = host.take_closed().map(|(c, _)| c).collect();
        assert_eq!(
            closed,
            [conn],
            "an unfinished handshake is closed at its deadline"
        );
    }
}
