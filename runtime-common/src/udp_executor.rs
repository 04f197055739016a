//! [`UdpExecutor`]: the node's UDP sockets (the gateway's SIP and RTP, see
//! [`siprtmp_core::udp`]) for every driver.
//!
//! The node's commands run on the event-loop thread, where they cannot block: `Bind` is a
//! `socket` + `bind` (answered at once with `UdpEvent::Bound`), `SendTo` is queued, and
//! `Unbind` sends what is queued for the socket, forgets it and closes it. The driver calls
//! [`UdpExecutor::flush`] once it has carried out a batch of the node's outputs: the queued
//! datagrams go out then, each socket's run of consecutive datagrams in one `sendmmsg` on
//! Linux (an H.264 frame's fragments), datagrams of equal length to one destination as one
//! UDP GSO message (every call's audio frame through a shared RTP port), a lone one in one
//! `sendmsg`, always with head and body as two iovecs (the body, often a media payload shared
//! with the RTMP side, is never copied); see [`crate::udp_send`]. A full socket buffer drops
//! the datagram and counts it.
//!
//! Receiving needs readiness, which each driver learns differently. Two modes share the same
//! socket table and the same reader:
//!
//! - **own thread** ([`UdpExecutor::start`]): the sockets are registered in a `mio::Poll` of
//!   the executor's receive thread, which drains every readable socket, queues the datagrams
//!   of one wake-up as one batch on a bounded channel (past [`QUEUE_DEPTH`] datagrams waiting
//!   it drops and counts, as the kernel would), and calls the driver's wake-up once per batch,
//!   the file executor's pattern. The driver feeds the batches in on its next turn
//!   ([`UdpExecutor::feed`]). Used by the thread driver.
//! - **driver's poll** ([`crate::mio_poll::udp_executor`]): the sockets are registered in the
//!   driver's own `mio::Poll` under [`PollTokens::udp`] tokens; the driver decodes such a
//!   token to the socket's [`UdpSlot`] and calls [`UdpExecutor::readable`], which drains the
//!   socket straight into the node: no thread, no queue, no wake-up. Used by the mio driver,
//!   and by the tokio and async-std drivers through a poll of its own ([`crate::UdpPoll`])
//!   that their reactor watches.
//!
//! Draining a socket on Linux is `recvmmsg` of up to [`RECV_BATCH`] datagrams per call, and
//! a call that returns fewer than it asked for ends the drain: the socket was empty, and with
//! the edge-triggered epoll registration mio makes, every datagram that arrives later raises
//! a new event (the kernel re-arms the registration on each arrival, not only on the
//! empty-to-non-empty edge). So a wake-up for one datagram costs one receive call, not a
//! receive plus the `EAGAIN` that proves the socket empty. Elsewhere it is `recv_from` until
//! `WouldBlock`.
//!
//! After `Unbind`, nothing more is reported for the socket: the table forgets it at once and
//! datagrams already queued for it are dropped when fed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use siprtmp_core::id_hash::IdHashMap;
use siprtmp_core::node::{Input, Node, SocketId, UdpCommand, UdpEvent};
use siprtmp_core::worker_relay::WorkerId;

use crate::mio_poll::{PollTokens, Watched};
#[cfg(target_os = "linux")]
use crate::mmsg::recv_batch;
use crate::mmsg::{GSO_BATCH, RECV_BATCH};
#[cfg(target_os = "linux")]
use crate::recv_slot::{RecvSlot, SLOT_MIN};
use crate::udp_send::UdpSender;

/// One of the executor's sockets as its poll names it (its place in the executor's table):
/// what a driver's poll reports readable ([`crate::mio_poll::Watched::Udp`]) and hands to
/// [`UdpExecutor::readable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpSlot(pub(crate) usize);

/// Datagrams the receive thread may have waiting for the driver before it drops (about 2 s
/// of 50 calls' audio and video).
pub(crate) const QUEUE_DEPTH: usize = 16 * 1024;
/// Receive buffer allocation: many datagrams share one.
const RECV_CHUNK: usize = 256 * 1024;
/// Room for one datagram (the largest UDP payload is 65507 bytes).
const MAX_DATAGRAM: usize = 64 * 1024;
/// The receive thread's own waker (stop).
const STOP: Token = PollTokens::control(0);

/// What the executor did, for metrics and for tests that check nothing leaks.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Sockets bound.
    pub bound: AtomicU64,
    /// Binds that failed (port taken, address not local...).
    pub bind_failed: AtomicU64,
    /// Sockets closed on the node's `Unbind`.
    pub unbound: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Send calls made (a `sendmmsg` of several datagrams is one).
    pub send_calls: AtomicU64,
    /// Datagrams of [`Self::sent`] that left in UDP GSO messages of two or more.
    pub segmented: AtomicU64,
    /// Datagrams dropped because the socket buffer was full (`WouldBlock`) or the kernel had
    /// no buffers for them (`ENOBUFS`); the socket stays open.
    pub send_dropped: AtomicU64,
    /// Sends that failed otherwise (unreachable destination...).
    pub send_errors: AtomicU64,
    /// Datagrams received and fed to the node.
    pub received: AtomicU64,
    /// Receive calls made, including those that found nothing.
    pub receive_calls: AtomicU64,
    /// Datagrams dropped on receipt (a full queue, or a socket unbound meanwhile).
    pub receive_dropped: AtomicU64,
}

impl UdpStats {
    /// Sockets open now: bound and not yet unbound.
    pub fn open(&self) -> u64 {
        self.bound.load(Ordering::Relaxed) - self.unbound.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A datagram read from a socket, not yet fed to the node.
type Received = (SocketId, SocketAddr, Bytes);

/// The sockets by slot; a socket's token is its slot's [`PollTokens::udp`].
type Slots = Vec<Option<(SocketId, Arc<UdpSocket>)>>;

/// The receive side.
enum Mode {
    /// A receive thread with its own poll.
    Thread {
        /// The thread's copy of the slots (it locks once per wake-up).
        table: Arc<Mutex<Slots>>,
        /// Batches of datagrams, one per wake-up of the thread.
        queue: Receiver<Vec<Received>>,
        /// Emptied batches go back to the thread, so batches are not allocated per wake-up.
        recycle: Sender<Vec<Received>>,
        /// Datagrams in batches not yet fed.
        waiting: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        thread: Option<JoinHandle<()>>,
    },
    /// The driver's poll; the driver calls [`UdpExecutor::readable`].
    Driver { reader: Reader },
}

/// The node's UDP sockets; see the module documentation.
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::node::{Node, NodeConfig, SocketId, UdpCommand};
/// use siprtmp_runtime_common::UdpExecutor;
/// let (woken_tx, woken) = std::sync::mpsc::channel();
/// let mut udp = UdpExecutor::start(move || { let _ = woken_tx.send(()); }).unwrap();
/// let mut node = Node::new(NodeConfig::default(), Instant::now(), 1);
/// // The node asks for a socket; the answer goes straight back into the node.
/// let socket = SocketId(1);
/// let addr = "127.0.0.1:0".parse().unwrap();
/// udp.execute(&mut node, Instant::now(), UdpCommand::Bind { socket, addr, receive_buffer: None });
/// let addr = udp.local_addr(socket).unwrap();
/// // A datagram to it wakes the driver, which feeds it in on its next turn.
/// std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
/// woken.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
/// udp.feed(&mut node, Instant::now());
/// assert_eq!(udp.stats().received.load(std::sync::atomic::Ordering::Relaxed), 1);
/// udp.execute(&mut node, Instant::now(), UdpCommand::Unbind { socket });
/// assert_eq!(udp.stats().open(), 0);
/// ```
pub struct UdpExecutor {
    /// Where sockets are registered for readability.
    registry: Registry,
    /// The sockets by slot ([`UdpSlot`]).
    slots: Slots,
    /// Slots free for the next bind.
    free: Vec<usize>,
    /// Each socket's slot, looked up for every send.
    by_id: IdHashMap<SocketId, usize>,
    /// Datagrams to send at the next [`Self::flush`], with their socket's slot.
    pending: Vec<(usize, UdpCommand)>,
    /// Sends each socket's run of datagrams.
    sender: UdpSender,
    mode: Mode,
    stats: Arc<UdpStats>,
}

impl UdpExecutor {
    /// Own-thread mode: a receive thread that calls `wake` after each batch of datagrams it
    /// queued (the driver then takes a turn and calls [`Self::feed`]).
    pub fn start(wake: impl Fn() + Send + 'static) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let table: Arc<Mutex<Slots>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(UdpStats::default());
        let waiting = Arc::new(AtomicUsize::new(0));
        // Bounded in batches; the datagram bound is `waiting` against QUEUE_DEPTH.
        let (tx, queue) = mpsc::sync_channel(1024);
        let (recycle, spare) = mpsc::channel();
        let thread = {
            let shared = Shared {
                table: table.clone(),
                queue: tx,
                spare,
                waiting: waiting.clone(),
                stop: stop.clone(),
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name("siprtmp-udp".into())
                .spawn(move || receive_thread(poll, shared, wake))?
        };
        Ok(Self::new(
            registry,
            Mode::Thread {
                table,
                queue,
                recycle,
                waiting,
                stop,
                waker,
                thread: Some(thread),
            },
            stats,
        ))
    }

    /// Driver's-poll mode: sockets are registered in `registry` (the driver's poll) under
    /// [`PollTokens::udp`] tokens, and the driver calls [`Self::readable`] for them (public as
    /// [`crate::mio_poll::udp_executor`]).
    pub(crate) fn in_poll(registry: Registry) -> Self {
        Self::new(
            registry,
            Mode::Driver {
                reader: Reader::default(),
            },
            Arc::default(),
        )
    }

    fn new(registry: Registry, mode: Mode, stats: Arc<UdpStats>) -> Self {
        Self {
            registry,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: IdHashMap::default(),
            pending: Vec::new(),
            sender: UdpSender::new(),
            mode,
            stats,
        }
    }

    /// The counters (shared: a driver hands them to whoever monitors it).
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }

    pub(crate) fn socket(&self, socket: SocketId) -> Option<&Arc<UdpSocket>> {
        let slot = *self.by_id.get(&socket)?;
        Some(&self.slots[slot].as_ref()?.1)
    }

    /// The bound address of `socket`, if it is open.
    pub fn local_addr(&self, socket: SocketId) -> Option<SocketAddr> {
        self.socket(socket)?.local_addr().ok()
    }

    /// Carries out one of the node's commands; a `Bind` is answered into `node` at once, a
    /// `SendTo` waits for [`Self::flush`].
    pub fn execute(&mut self, node: &mut Node, now: Instant, command: UdpCommand) {
        match command {
            UdpCommand::Bind {
                socket,
                addr,
                receive_buffer,
            } => {
                let result = self
                    .bind(socket, addr, receive_buffer)
                    .map_err(|e| e.to_string());
                match &result {
                    Ok(_) => UdpStats::add(&self.stats.bound, 1),
                    Err(e) => {
                        UdpStats::add(&self.stats.bind_failed, 1);
                        tracing::debug!("{socket}: bind {addr}: {e}");
                    }
                }
                node.handle(now, Input::Udp(UdpEvent::Bound { socket, result }));
            }
            UdpCommand::SendTo { socket, .. } => {
                if let Some(&slot) = self.by_id.get(&socket) {
                    self.pending.push((slot, command));
                }
            }
            UdpCommand::Unbind { socket } => self.unbind(socket),
        }
    }

    fn bind(
        &mut self,
        socket: SocketId,
        addr: SocketAddr,
        receive_buffer: Option<usize>,
    ) -> io::Result<SocketAddr> {
        if self.by_id.contains_key(&socket) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "socket id in use",
            ));
        }
        let raw = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        raw.set_nonblocking(true)?;
        if let Some(size) = receive_buffer {
            // Less than asked (the system's cap) is still a working socket.
            if let Err(e) = raw.set_recv_buffer_size(size) {
                tracing::debug!("{socket}: receive buffer {size}: {e}");
            }
        }
        // No SO_REUSEADDR: a port in use must fail, so the node moves to the next block.
        raw.bind(&addr.into())?;
        let mut udp = UdpSocket::from_std(raw.into());
        let local = udp.local_addr()?;
        let slot = self.free.last().copied().unwrap_or(self.slots.len());
        let token = PollTokens::udp(UdpSlot(slot));
        let entry = match &self.mode {
            Mode::Thread { table, .. } => {
                // Registered under the table's lock, so the receive thread finds the socket
                // for the first event it reports.
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                self.registry
                    .register(&mut udp, token, Interest::READABLE)?;
                let entry = (socket, Arc::new(udp));
                put(&mut table, slot, Some(entry.clone()));
                entry
            }
            Mode::Driver { .. } => {
                self.registry
                    .register(&mut udp, token, Interest::READABLE)?;
                (socket, Arc::new(udp))
            }
        };
        if self.free.last() == Some(&slot) {
            self.free.pop();
        }
        put(&mut self.slots, slot, Some(entry));
        self.by_id.insert(socket, slot);
        Ok(local)
    }

    fn unbind(&mut self, socket: SocketId) {
        if !self.by_id.contains_key(&socket) {
            return;
        }
        // What the node sent before closing (an RTCP BYE) still goes.
        self.flush();
        let Some(slot) = self.by_id.remove(&socket) else {
            return;
        };
        let Some((_, udp)) = self.slots[slot].take() else {
            return;
        };
        if let Mode::Thread { table, .. } = &self.mode {
            // The receive thread holds the lock while it reads, so once it is taken no read
            // of this socket is under way, and the socket closes below.
            put(
                &mut table.lock().unwrap_or_else(|e| e.into_inner()),
                slot,
                None,
            );
        }
        self.free.push(slot);
        UdpStats::add(&self.stats.unbound, 1);
        // The last handle closes the socket (which also removes it from the poll).
        if let Ok(mut udp) = Arc::try_unwrap(udp) {
            let _ = self.registry.deregister(&mut udp);
        }
    }

    /// Sends every datagram queued since the last flush, in order: a socket's run of
    /// consecutive datagrams in one call where the system has one (`sendmmsg`). Drivers call
    /// it after carrying out a batch of the node's outputs.
    pub fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        while start < pending.len() {
            let slot = pending[start].0;
            let mut end = start + 1;
            while end < pending.len() && pending[end].0 == slot && end - start < GSO_BATCH {
                end += 1;
            }
            self.send_run(slot, &pending[start..end]);
            start = end;
        }
        pending.clear();
        // Keep the allocation for the next batch.
        if self.pending.is_empty() {
            self.pending = pending;
        }
    }

    /// Whether datagrams wait for [`Self::flush`] (or a batch).
    pub(crate) fn has_pending_sends(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The datagrams queued since the last flush, in order, for a [`crate::BatchIo`] that sends
    /// them all in one batch; [`Self::sent_batch`] then takes the results. (A datagram whose
    /// socket is gone cannot be queued: `Unbind` flushes first; should one be, its descriptor
    /// is -1, which the kernel refuses, counted as a send error.)
    #[cfg(unix)]
    pub(crate) fn pending_sends(
        &self,
    ) -> impl ExactSizeIterator<Item = crate::batch_io::DatagramSend<'_>> {
        use std::os::fd::AsRawFd;
        self.pending.iter().map(|(slot, command)| {
            let fd = self.slots[*slot]
                .as_ref()
                .map_or(-1, |(_, udp)| udp.as_raw_fd());
            match command {
                UdpCommand::SendTo {
                    destination,
                    head,
                    body,
                    ..
                } => crate::batch_io::DatagramSend {
                    fd,
                    destination: *destination,
                    head,
                    body,
                },
                // Only sends are queued.
                _ => crate::batch_io::DatagramSend {
                    fd: -1,
                    destination: SocketAddr::from(([0, 0, 0, 0], 0)),
                    head: &[],
                    body: &[],
                },
            }
        })
    }

    /// The results of the batch that sent [`Self::pending_sends`], one per datagram in the
    /// same order, `segmented` of them in segmented messages: counted as [`UdpSender`] counts
    /// its own sends (a full buffer or `ENOBUFS` drops the datagram), and the queue emptied.
    pub(crate) fn sent_batch(&mut self, results: &[io::Result<usize>], segmented: u64) {
        let (mut sent, mut dropped, mut errors) = (0, 0, 0);
        for (result, (_, command)) in results.iter().zip(&self.pending) {
            match result {
                Ok(_) => sent += 1,
                Err(e) if crate::udp_send::no_room(e) => dropped += 1,
                Err(e) => {
                    errors += 1;
                    if let UdpCommand::SendTo {
                        socket,
                        destination,
                        ..
                    } = command
                    {
                        tracing::debug!("{socket}: send to {destination}: {e}");
                    }
                }
            }
        }
        UdpStats::add(&self.stats.sent, sent);
        UdpStats::add(&self.stats.send_dropped, dropped);
        UdpStats::add(&self.stats.send_errors, errors);
        UdpStats::add(&self.stats.segmented, segmented);
        if !results.is_empty() {
            // One batch, however many datagrams: as one `sendmmsg` counts once.
            UdpStats::add(&self.stats.send_calls, 1);
        }
        self.pending.clear();
    }

    /// Sends `run`, datagrams all from the socket in `slot`.
    fn send_run(&mut self, slot: usize, run: &[(usize, UdpCommand)]) {
        if let Some((socket, udp)) = &self.slots[slot] {
            self.sender.send_run(udp, *socket, run, &self.stats);
        }
    }

    /// Turns UDP GSO on (the default on Linux) or off: whether a run of datagrams of equal
    /// length to one destination leaves as one segmented message (see [`crate::mmsg`]).
    /// Without it every datagram makes its own way through the kernel's stack.
    pub fn set_gso(&mut self, on: bool) {
        self.sender.set_gso(on);
    }

    /// Whether runs leave as GSO messages: asked for, and not refused by the system so far.
    pub fn gso(&self) -> bool {
        self.sender.gso()
    }

    /// Own-thread mode: feeds every queued datagram of a still-open socket into `node` (a
    /// driver calls this on each turn). Does nothing in driver's-poll mode.
    pub fn feed(&mut self, node: &mut Node, now: Instant) {
        self.feed_with(|socket, source, data| {
            node.handle(
                now,
                Input::Udp(UdpEvent::Datagram {
                    socket,
                    source,
                    data,
                }),
            )
        });
    }

    /// [`Self::feed`], handing each datagram to `deliver`.
    fn feed_with(&mut self, mut deliver: impl FnMut(SocketId, SocketAddr, Bytes)) {
        let Mode::Thread {
            queue,
            recycle,
            waiting,
            ..
        } = &self.mode
        else {
            return;
        };
        let mut fed = 0;
        let mut dropped = 0;
        while let Ok(mut batch) = queue.try_recv() {
            waiting.fetch_sub(batch.len(), Ordering::Relaxed);
            for (socket, source, data) in batch.drain(..) {
                if !self.by_id.contains_key(&socket) {
                    dropped += 1;
                    continue;
                }
                fed += 1;
                deliver(socket, source, data);
            }
            // The thread may be gone (stopping); then the batch is simply dropped.
            let _ = recycle.send(batch);
        }
        UdpStats::add(&self.stats.received, fed);
        UdpStats::add(&self.stats.receive_dropped, dropped);
    }

    /// Driver's-poll mode: the socket in `slot` is readable; drains it into `node`. Returns
    /// false in own-thread mode (whose sockets no driver's poll reports).
    pub fn readable(&mut self, node: &mut Node, now: Instant, slot: UdpSlot) -> bool {
        self.readable_with(slot, |socket, source, data| {
            node.handle(
                now,
                Input::Udp(UdpEvent::Datagram {
                    socket,
                    source,
                    data,
                }),
            )
        })
    }

    /// [`Self::readable`], handing each datagram to `deliver`.
    fn readable_with(
        &mut self,
        slot: UdpSlot,
        mut deliver: impl FnMut(SocketId, SocketAddr, Bytes),
    ) -> bool {
        let Mode::Driver { reader } = &mut self.mode else {
            return false;
        };
        let Some(Some((socket, udp))) = self.slots.get(slot.0) else {
            // A socket closed since the event was reported.
            return true;
        };
        let socket = *socket;
        let (mut fed, mut calls) = (0, 0);
        reader.drain(udp, &mut calls, |source, data| {
            fed += 1;
            deliver(socket, source, data);
        });
        UdpStats::add(&self.stats.received, fed);
        UdpStats::add(&self.stats.receive_calls, calls);
        true
    }

    /// Sockets open now.
    pub fn open_sockets(&self) -> usize {
        self.by_id.len()
    }
}

impl Drop for UdpExecutor {
    fn drop(&mut self) {
        self.flush();
        if let Mode::Thread {
            stop,
            waker,
            thread,
            ..
        } = &mut self.mode
        {
            stop.store(true, Ordering::SeqCst);
            let _ = waker.wake();
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Sets `slots[slot]`, growing the table by one when `slot` is its end.
fn put<T>(slots: &mut Vec<Option<T>>, slot: usize, value: Option<T>) {
    if slot == slots.len() {
        slots.push(value);
    } else {
        slots[slot] = value;
    }
}

/// Reads datagrams into shared buffers: each datagram becomes a `Bytes` that shares one
/// `RECV_CHUNK` allocation with its neighbours.
struct Reader {
    buf: BytesMut,
    /// How much of `buf` each datagram of a batched receive lands in; a longer datagram's
    /// rest lands in its slot's overflow and is joined up, the one case where received bytes
    /// are copied.
    #[cfg(target_os = "linux")]
    slot: RecvSlot,
    /// Where each slot of a batched receive puts what does not fit in the slot.
    #[cfg(target_os = "linux")]
    overflow: Vec<u8>,
    /// Where a batched receive writes the sources (kept: not zeroed again per call).
    #[cfg(target_os = "linux")]
    names: Box<[libc::sockaddr_storage; RECV_BATCH]>,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            #[cfg(target_os = "linux")]
            slot: RecvSlot::default(),
            #[cfg(target_os = "linux")]
            overflow: vec![0; RECV_BATCH * (MAX_DATAGRAM - SLOT_MIN)],
            // SAFETY: all-zero bytes are a valid `sockaddr_storage` (family AF_UNSPEC).
            #[cfg(target_os = "linux")]
            names: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

impl Reader {
    /// Reads `udp` until it is empty (the registration is edge-triggered), handing each
    /// datagram to `deliver` in arrival order; counts its receive calls in `calls`.
    #[cfg(target_os = "linux")]
    fn drain(
        &mut self,
        udp: &UdpSocket,
        calls: &mut u64,
        mut deliver: impl FnMut(SocketAddr, Bytes),
    ) {
        use std::os::fd::AsRawFd;
        loop {
            let slot = self.slot.size();
            if self.buf.len() < RECV_BATCH * slot {
                self.buf = BytesMut::zeroed(RECV_CHUNK);
            }
            let mut got = [(0usize, None); RECV_BATCH];
            let result = {
                let mut primary = self.buf.chunks_mut(slot);
                let mut overflow = self.overflow.chunks_mut(MAX_DATAGRAM - slot);
                let mut slots: [[&mut [u8]; 2]; RECV_BATCH] = std::array::from_fn(|_| {
                    [
                        primary.next().unwrap_or_default(),
                        overflow.next().unwrap_or_default(),
                    ]
                });
                recv_batch(udp.as_raw_fd(), &mut slots, &mut self.names, &mut got)
            };
            *calls += 1;
            let count = match result {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // An ICMP error reported on the socket: nothing to read, keep going.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    return;
                }
            };
            // Slot i starts at i * slot; the bytes between one datagram's end and the next
            // slot are skipped (and stay unused in the chunk).
            let mut at = 0;
            let mut longest = 0;
            for (i, &(len, source)) in got[..count].iter().enumerate() {
                self.buf.advance(i * slot - at);
                at = i * slot;
                longest = longest.max(len);
                let data = if len <= slot {
                    at += len;
                    self.buf.split_to(len).freeze()
                } else {
                    let mut joined = Vec::with_capacity(len);
                    joined.extend_from_slice(&self.buf[..slot]);
                    let rest = i * (MAX_DATAGRAM - slot);
                    joined.extend_from_slice(&self.overflow[rest..rest + len - slot]);
                    self.buf.advance(slot);
                    at += slot;
                    Bytes::from(joined)
                };
                // The kernel always names the source of a datagram on an unconnected socket.
                if let Some(source) = source {
                    deliver(source, data);
                }
            }
            self.slot.observe(longest);
            if count < RECV_BATCH {
                return;
            }
        }
    }

    /// Reads `udp` until `WouldBlock` (the registration is edge-triggered), handing each
    /// datagram to `deliver`; counts its receive calls in `calls`.
    #[cfg(not(target_os = "linux"))]
    fn drain(
        &mut self,
        udp: &UdpSocket,
        calls: &mut u64,
        mut deliver: impl FnMut(SocketAddr, Bytes),
    ) {
        loop {
            if self.buf.len() < MAX_DATAGRAM {
                self.buf = BytesMut::zeroed(RECV_CHUNK);
            }
            *calls += 1;
            match udp.recv_from(&mut self.buf) {
                Ok((n, source)) => deliver(source, self.buf.split_to(n).freeze()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    return;
                }
            }
        }
    }
}

/// What the receive thread shares with the executor.
struct Shared {
    table: Arc<Mutex<Slots>>,
    queue: SyncSender<Vec<Received>>,
    spare: Receiver<Vec<Received>>,
    waiting: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    stats: Arc<UdpStats>,
}

fn receive_thread(mut poll: Poll, shared: Shared, wake: impl Fn()) {
    let mut events = Events::with_capacity(1024);
    // Any worker: this poll holds no connection, only the sockets and STOP.
    let tokens = PollTokens::new(WorkerId(0));
    let mut reader = Reader::default();
    let mut batch: Vec<Received> = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("udp poll: {e}");
            return;
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (mut dropped, mut calls) = (0, 0);
        {
            // One lock per wake-up, held while reading: an unbind waits until no read of its
            // socket is under way.
            let table = shared.table.lock().unwrap_or_else(|e| e.into_inner());
            let room = QUEUE_DEPTH.saturating_sub(shared.waiting.load(Ordering::Relaxed));
            for event in events.iter() {
                let Watched::Udp(slot) = tokens.decode(event.token()) else {
                    continue; // STOP
                };
                let Some(Some((socket, udp))) = table.get(slot.0) else {
                    continue; // a socket closed meanwhile
                };
                reader.drain(udp, &mut calls, |source, data| {
                    if batch.len() < room {
                        batch.push((*socket, source, data));
                    } else {
                        dropped += 1;
                    }
                });
            }
        }
        UdpStats::add(&shared.stats.receive_calls, calls);
        if batch.is_empty() {
            UdpStats::add(&shared.stats.receive_dropped, dropped);
            continue;
        }
        let count = batch.len();
        let next = shared.spare.try_recv().unwrap_or_default();
        shared.waiting.fetch_add(count, Ordering::Relaxed);
        match shared.queue.try_send(std::mem::replace(&mut batch, next)) {
            Ok(()) => wake(),
            Err(TrySendError::Full(mut lost)) => {
                shared.waiting.fetch_sub(count, Ordering::Relaxed);
                dropped += count as u64;
                lost.clear();
                batch = lost;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
        UdpStats::add(&shared.stats.receive_dropped, dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recv_slot::SLOT_MAX;
    use siprtmp_core::node::NodeConfig;
    use std::time::Duration;

    fn node() -> Node {
        Node::new(NodeConfig::default(), Instant::now(), 1)
    }

    /// The slot a readiness event of the driver's poll names (the test polls hold only UDP).
    fn udp_slot(token: Token) -> UdpSlot {
        match PollTokens::new(WorkerId(0)).decode(token) {
            Watched::Udp(slot) => slot,
            other => panic!("not a UDP token: {other:?}"),
        }
    }

    fn bind(udp: &mut UdpExecutor, node: &mut Node, id: u64, addr: &str) -> SocketAddr {
        let socket = SocketId(id);
        let addr = addr.parse().unwrap();
        udp.execute(
            node,
            Instant::now(),
            UdpCommand::Bind {
                socket,
                addr,
                receive_buffer: None,
            },
        );
        udp.local_addr(socket).expect("bound")
    }

    fn send(
        udp: &mut UdpExecutor,
        node: &mut Node,
        id: u64,
        to: SocketAddr,
        head: &[u8],
        body: Bytes,
    ) {
        let command = UdpCommand::SendTo {
            socket: SocketId(id),
            destination: to,
            head: head.into(),
            body,
        };
        udp.execute(node, Instant::now(), command);
    }

    fn peer() -> std::net::UdpSocket {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer
    }

    /// Sends `lengths` from `peer` to `to` (each datagram's bytes say its index), drains them
    /// with `reader` and checks each arrived whole, in order, from `peer`.
    #[cfg(target_os = "linux")]
    fn send_and_drain(
        reader: &mut Reader,
        peer: &std::net::UdpSocket,
        socket: &UdpSocket,
        lengths: &[usize],
    ) {
        let to = socket.local_addr().unwrap();
        let sent: Vec<Vec<u8>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        for data in &sent {
            peer.send_to(data, to).unwrap();
        }
        let mut got = Vec::new();
        let mut calls = 0;
        reader.drain(socket, &mut calls, |source, data| {
            assert_eq!(source, peer.local_addr().unwrap());
            got.push(data.to_vec());
        });
        assert_eq!(got, sent);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn receive_slots_shrink_for_audio_and_a_longer_datagram_still_arrives_whole() {
        use crate::recv_slot::SHRINK_AFTER;
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = peer();
        let mut reader = Reader::default();
        // Full batches of Speex-sized RTP until the slot has shrunk.
        for _ in 0..SHRINK_AFTER {
            send_and_drain(&mut reader, &peer, &socket, &[60; RECV_BATCH]);
        }
        assert_eq!(reader.slot.size(), SLOT_MIN);
        reader.buf = BytesMut::zeroed(RECV_CHUNK);
        let before = reader.buf.len();
        send_and_drain(&mut reader, &peer, &socket, &[60; RECV_BATCH]);
        assert!(
            before - reader.buf.len() <= RECV_BATCH * SLOT_MIN,
            "a batch of audio takes {} bytes of the buffer",
            before - reader.buf.len()
        );
        // Video and a jumbo datagram among audio: longer than the slot, joined from the
        // overflow, whole and in order; the slot grows at once.
        send_and_drain(&mut reader, &peer, &socket, &[60, 1400, 60, 9000, 60, 300]);
        assert_eq!(reader.slot.size(), SLOT_MAX);
        send_and_drain(&mut reader, &peer, &socket, &[1400; RECV_BATCH]);
    }

    #[test]
    fn head_and_body_leave_as_one_datagram_and_replies_are_fed_after_a_wake() {
        let (woken_tx, woken) = mpsc::channel();
        let mut udp = UdpExecutor::start(move || {
            let _ = woken_tx.send(());
        })
        .unwrap();
        let mut node = node();
        let local = bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        let peer = peer();
        let to = peer.local_addr().unwrap();
        send(&mut udp, &mut node, 1, to, &[0x80, 0x00], "payload".into());
        assert_eq!(udp.stats().sent.load(Ordering::Relaxed), 0, "sent at flush");
        udp.flush();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x80\x00payload");
        assert_eq!(from, local);
        for _ in 0..3 {
            peer.send_to(b"back", local).unwrap();
        }
        let stats = udp.stats();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.received.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
            let _ = woken.recv_timeout(Duration::from_millis(100));
            udp.feed(&mut node, Instant::now());
        }
        assert_eq!(stats.received.load(Ordering::Relaxed), 3);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_run_of_sends_on_one_socket_goes_in_one_call_and_in_order() {
        let mut udp = UdpExecutor::start(|| {}).unwrap();
        let mut node = node();
        bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        bind(&mut udp, &mut node, 2, "127.0.0.1:0");
        let (a, b) = (peer(), peer());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Ten from socket 1 (alternating destinations), then three from socket 2.
        for i in 0..10u8 {
            let to = if i % 2 == 0 { to_a } else { to_b };
            send(&mut udp, &mut node, 1, to, &[i], Bytes::from(vec![i; 3]));
        }
        for i in 10..13u8 {
            send(&mut udp, &mut node, 2, to_a, &[i], Bytes::new());
        }
        udp.flush();
        let stats = udp.stats();
        assert_eq!(stats.sent.load(Ordering::Relaxed), 13);
        let expected_calls = if cfg!(target_os = "linux") { 2 } else { 13 };
        assert_eq!(stats.send_calls.load(Ordering::Relaxed), expected_calls);
        let mut buf = [0u8; 16];
        let mut at_a = Vec::new();
        for _ in 0..8 {
            let n = a.recv(&mut buf).unwrap();
            at_a.push(buf[..n].to_vec());
        }
        assert_eq!(
            at_a,
            vec![
                vec![0, 0, 0, 0],
                vec![2, 2, 2, 2],
                vec![4, 4, 4, 4],
                vec![6, 6, 6, 6],
                vec![8, 8, 8, 8],
                vec![10],
                vec![11],
                vec![12]
            ]
        );
        let at_b: Vec<u8> = (0..5).map(|_| a_first_byte(&b)).collect();
        assert_eq!(at_b, [1, 3, 5, 7, 9]);
    }

    fn a_first_byte(s: &std::net::UdpSocket) -> u8 {
        let mut buf = [0u8; 16];
        s.recv(&mut buf).unwrap();
        buf[0]
    }

    /// Datagrams per socket in a burst: few enough that each socket's default receive buffer
    /// holds them all even if the receiver is descheduled for the whole burst (a loaded CI
    /// machine), since a UDP socket past its buffer drops, and the test is about batching and
    /// order, not about the kernel's buffer.
    const PER_SOCKET: usize = 16;

    /// A burst of `per_socket` datagrams to each of `sockets` sockets, interleaved, with a
    /// few longer than a receive slot; returns what was sent, per socket.
    fn burst(peer: &std::net::UdpSocket, to: &[SocketAddr], per_socket: usize) -> Vec<Vec<Bytes>> {
        let mut sent = vec![Vec::new(); to.len()];
        for seq in 0..per_socket {
            for (i, addr) in to.iter().enumerate() {
                // Every 7th datagram is longer than a slot (the joined-up path).
                let len = if seq % 7 == 3 {
                    SLOT_MAX + 100 + i
                } else {
                    20 + seq % 50
                };
                let mut data = vec![(seq % 251) as u8; len];
                data[..4].copy_from_slice(&(seq as u32).to_be_bytes());
                data[4] = i as u8;
                peer.send_to(&data, addr).unwrap();
                sent[i].push(Bytes::from(data));
            }
        }
        sent
    }

    #[test]
    fn a_burst_to_many_sockets_arrives_whole_and_in_order_per_socket_in_the_drivers_poll() {
        let mut poll = Poll::new().unwrap();
        let mut udp = UdpExecutor::in_poll(poll.registry().try_clone().unwrap());
        let mut node = node();
        let sockets = 40;
        let addrs: Vec<SocketAddr> = (0..sockets)
            .map(|i| bind(&mut udp, &mut node, 100 + i, "127.0.0.1:0"))
            .collect();
        let peer = peer();
        let sent = burst(&peer, &addrs, PER_SOCKET);
        let mut got: Vec<Vec<Bytes>> = vec![Vec::new(); sockets as usize];
        let mut events = Events::with_capacity(64);
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < 40 * PER_SOCKET && Instant::now() < deadline
        {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for event in events.iter() {
                assert!(
                    udp.readable_with(udp_slot(event.token()), |socket, source, data| {
                        assert_eq!(source, peer.local_addr().unwrap());
                        got[(socket.0 - 100) as usize].push(data);
                    })
                );
            }
        }
        assert_eq!(got, sent);
        let stats = udp.stats();
        assert_eq!(
            stats.received.load(Ordering::Relaxed),
            40 * PER_SOCKET as u64
        );
        if cfg!(target_os = "linux") {
            // Batched: far fewer receive calls than datagrams.
            assert!(stats.receive_calls.load(Ordering::Relaxed) < 40 * PER_SOCKET as u64 / 2);
        }
    }

    #[test]
    fn a_burst_to_many_sockets_arrives_whole_and_in_order_per_socket_from_the_thread() {
        let (woken_tx, woken) = mpsc::channel();
        let mut udp = UdpExecutor::start(move || {
            let _ = woken_tx.send(());
        })
        .unwrap();
        let mut node = node();
        let addrs: Vec<SocketAddr> = (0..40)
            .map(|i| bind(&mut udp, &mut node, 100 + i, "127.0.0.1:0"))
            .collect();
        let peer = peer();
        let sent = burst(&peer, &addrs, PER_SOCKET);
        let mut got: Vec<Vec<Bytes>> = vec![Vec::new(); 40];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < 40 * PER_SOCKET && Instant::now() < deadline
        {
            let _ = woken.recv_timeout(Duration::from_millis(100));
            udp.feed_with(|socket, _, data| got[(socket.0 - 100) as usize].push(data));
        }
        assert_eq!(got, sent);
        assert_eq!(udp.stats().receive_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_bind_that_asks_for_a_receive_buffer_gets_more_than_the_default() {
        let mut udp = UdpExecutor::in_poll(Poll::new().unwrap().registry().try_clone().unwrap());
        let mut node = node();
        bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        let addr = "127.0.0.1:0".parse().unwrap();
        let big = UdpCommand::Bind {
            socket: SocketId(2),
            addr,
            receive_buffer: Some(8 << 20),
        };
        udp.execute(&mut node, Instant::now(), big);
        let size = |id| {
            let socket = udp.socket(SocketId(id)).expect("bound");
            socket2::SockRef::from(&**socket)
                .recv_buffer_size()
                .unwrap()
        };
        // Capped by the system (net.core.rmem_max), but above the default whatever the cap.
        assert!(size(2) > size(1), "{} vs default {}", size(2), size(1));
    }

    #[test]
    fn a_taken_port_fails_the_bind_and_unbind_frees_the_port() {
        let mut udp = UdpExecutor::start(|| {}).unwrap();
        let mut node = node();
        let first = bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        udp.execute(
            &mut node,
            Instant::now(),
            UdpCommand::Bind {
                socket: SocketId(2),
                addr: first,
                receive_buffer: None,
            },
        );
        assert_eq!(udp.local_addr(SocketId(2)), None);
        let stats = udp.stats();
        assert_eq!(stats.bind_failed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open(), 1);
        udp.execute(
            &mut node,
            Instant::now(),
            UdpCommand::Unbind {
                socket: SocketId(1),
            },
        );
        assert_eq!(stats.open(), 0);
        assert_eq!(udp.open_sockets(), 0);
        // Closed: the port can be bound again, and sends on the gone socket do nothing.
        std::net::UdpSocket::bind(first).expect("port released");
        send(&mut udp, &mut node, 1, first, &[], Bytes::from_static(b"x"));
        udp.flush();
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
        // The freed slot serves the next socket.
        bind(&mut udp, &mut node, 3, "127.0.0.1:0");
        assert_eq!(udp.slots.len(), 1);
    }

    #[test]
    fn sends_queued_before_an_unbind_still_go() {
        let mut udp = UdpExecutor::start(|| {}).unwrap();
        let mut node = node();
        bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        let peer = peer();
        let to = peer.local_addr().unwrap();
        send(&mut udp, &mut node, 1, to, b"bye", Bytes::new());
        let unbind = UdpCommand::Unbind {
            socket: SocketId(1),
        };
        udp.execute(&mut node, Instant::now(), unbind);
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"bye");
    }

    #[test]
    fn datagrams_queued_for_an_unbound_socket_are_never_fed() {
        let (woken_tx, woken) = mpsc::channel();
        let mut udp = UdpExecutor::start(move || {
            let _ = woken_tx.send(());
        })
        .unwrap();
        let mut node = node();
        let local = bind(&mut udp, &mut node, 1, "127.0.0.1:0");
        peer().send_to(b"late", local).unwrap();
        woken.recv_timeout(Duration::from_secs(5)).expect("queued");
        udp.execute(
            &mut node,
            Instant::now(),
            UdpCommand::Unbind {
                socket: SocketId(1),
            },
        );
        udp.feed(&mut node, Instant::now());
        let stats = udp.stats();
        assert_eq!(stats.received.load(Ordering::Relaxed), 0);
        assert_eq!(stats.receive_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn in_the_drivers_poll_a_readable_token_is_drained_into_the_node() {
        let mut poll = Poll::new().unwrap();
        let mut udp = UdpExecutor::in_poll(poll.registry().try_clone().unwrap());
        let mut node = node();
        let local = bind(&mut udp, &mut node, 7, "127.0.0.1:0");
        let peer = peer();
        for _ in 0..5 {
            peer.send_to(b"rtp", local).unwrap();
        }
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let slot = udp_slot(events.iter().next().expect("readable").token());
        assert!(udp.readable(&mut node, Instant::now(), slot));
        let stats = udp.stats();
        assert_eq!(
            stats.received.load(Ordering::Relaxed),
            5,
            "drained to WouldBlock"
        );
        if cfg!(target_os = "linux") {
            assert_eq!(
                stats.receive_calls.load(Ordering::Relaxed),
                1,
                "one recvmmsg"
            );
        }
        udp.execute(
            &mut node,
            Instant::now(),
            UdpCommand::Unbind {
                socket: SocketId(7),
            },
        );
        assert!(
            udp.readable(&mut node, Instant::now(), slot),
            "a gone socket's slot is still UDP's"
        );
        assert_eq!(
            stats.received.load(Ordering::Relaxed),
            5,
            "nothing from a gone socket"
        );
    }
}
