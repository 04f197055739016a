//! [`UdpExecutor`]: the node's UDP sockets (the gateway's SIP and RTP, see
//! [`siprtmp_core::udp`]) for every driver.
//!
//! The node's commands run on the event-loop thread, where they cannot block: `Bind` is a
//! `socket` + `bind` (answered at once with `UdpEvent::Bound`), `SendTo` is one
//! `sendmsg` of head and body as two `IoSlice`s (the body, often a media payload shared with
//! the RTMP side, is never copied) on the non-blocking socket, dropped and counted when the
//! socket buffer is full, and `Unbind` forgets the socket and closes it.
//!
//! Receiving needs readiness, which each driver learns differently. Two modes share the same
//! socket table and receive loop:
//!
//! - **own thread** ([`UdpExecutor::start`]): the sockets are registered in a `mio::Poll` of
//!   the executor's receive thread, which drains every readable socket to `WouldBlock`,
//!   queues the datagrams on a bounded channel (a full queue drops and counts, as the kernel
//!   would), and calls the driver's wake-up once per batch, the file executor's pattern. The
//!   driver feeds the queue in on its next turn ([`UdpExecutor::feed`]). Used by the tokio,
//!   async-std and thread drivers.
//! - **driver's poll** ([`UdpExecutor::with_registry`]): the sockets are registered in the
//!   driver's own `mio::Poll` under tokens at and above [`UDP_TOKEN_BASE`]; the driver calls
//!   [`UdpExecutor::readable`] for such a token, which drains the socket straight into the
//!   node: no thread, no queue, no wake-up. Used by the mio driver.
//!
//! After `Unbind`, nothing more is reported for the socket: the table forgets it at once and
//! datagrams already queued for it are dropped when fed.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use siprtmp_core::node::{Input, Node, SocketId, UdpCommand, UdpEvent};

/// Tokens at and above this one are UDP sockets when the executor shares a driver's poll
/// ([`UdpExecutor::with_registry`]); connection tokens (the node's connection ids) stay below.
pub const UDP_TOKEN_BASE: usize = 1 << (usize::BITS - 2);

/// Datagrams the receive thread may queue before it drops (about 2 s of 50 calls' audio and
/// video).
const QUEUE_DEPTH: usize = 16 * 1024;
/// Receive buffer allocation: many datagrams share one.
const RECV_CHUNK: usize = 256 * 1024;
/// Room kept for one datagram (the largest UDP payload is 65507 bytes).
const MAX_DATAGRAM: usize = 64 * 1024;
/// The receive thread's own waker (stop).
const STOP: Token = Token(usize::MAX);

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
    /// Datagrams dropped because the socket buffer was full (`WouldBlock`).
    pub send_dropped: AtomicU64,
    /// Sends that failed otherwise (unreachable destination...).
    pub send_errors: AtomicU64,
    /// Datagrams received and fed to the node.
    pub received: AtomicU64,
    /// Datagrams dropped on receipt (a full queue, or a socket unbound meanwhile).
    pub receive_dropped: AtomicU64,
}

impl UdpStats {
    /// Sockets open now: bound and not yet unbound.
    pub fn open(&self) -> u64 {
        self.bound.load(Ordering::Relaxed) - self.unbound.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A datagram read from a socket, not yet fed to the node.
type Received = (SocketId, SocketAddr, Bytes);

/// The sockets by token, shared with the receive thread in own-thread mode.
type Table = HashMap<Token, (SocketId, Arc<UdpSocket>)>;

/// The receive side.
enum Mode {
    /// A receive thread with its own poll.
    Thread {
        table: Arc<Mutex<Table>>,
        queue: Receiver<Received>,
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        thread: Option<JoinHandle<()>>,
    },
    /// The driver's poll; the driver calls [`UdpExecutor::readable`].
    Driver { buf: BytesMut },
}

/// The node's UDP sockets; see the module documentation.
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::node::{Node, NodeConfig, SocketId, UdpCommand};
/// use siprtmp_driver_common::UdpExecutor;
/// let (woken_tx, woken) = std::sync::mpsc::channel();
/// let mut udp = UdpExecutor::start(move || { let _ = woken_tx.send(()); }).unwrap();
/// let mut node = Node::new(NodeConfig::default(), Instant::now(), 1);
/// // The node asks for a socket; the answer goes straight back into the node.
/// let socket = SocketId(1);
/// udp.execute(&mut node, Instant::now(), UdpCommand::Bind { socket, addr: "127.0.0.1:0".parse().unwrap() });
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
    /// The node's sockets: the id, the token and the socket.
    sockets: HashMap<SocketId, (Token, Arc<UdpSocket>)>,
    /// The same sockets by token (for readiness in the driver's poll).
    tokens: HashMap<Token, SocketId>,
    next_token: usize,
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
        let table: Arc<Mutex<Table>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(UdpStats::default());
        let (tx, queue) = mpsc::sync_channel(QUEUE_DEPTH);
        let thread = {
            let (table, stop, stats) = (table.clone(), stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("siprtmp-udp".into())
                .spawn(move || receive_thread(poll, table, tx, stop, stats, wake))?
        };
        Ok(Self {
            registry,
            sockets: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            mode: Mode::Thread {
                table,
                queue,
                stop,
                waker,
                thread: Some(thread),
            },
            stats,
        })
    }

    /// Driver's-poll mode: sockets are registered in `registry` (the driver's poll) under
    /// tokens from [`UDP_TOKEN_BASE`] up, and the driver calls [`Self::readable`] for them.
    pub fn with_registry(registry: Registry) -> Self {
        Self {
            registry,
            sockets: HashMap::new(),
            tokens: HashMap::new(),
            next_token: UDP_TOKEN_BASE,
            mode: Mode::Driver {
                buf: BytesMut::new(),
            },
            stats: Arc::default(),
        }
    }

    /// The counters (shared: a driver hands them to whoever monitors it).
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }

    /// The bound address of `socket`, if it is open.
    pub fn local_addr(&self, socket: SocketId) -> Option<SocketAddr> {
        self.sockets.get(&socket)?.1.local_addr().ok()
    }

    /// Carries out one of the node's commands; a `Bind` is answered into `node` at once.
    pub fn execute(&mut self, node: &mut Node, now: Instant, command: UdpCommand) {
        match command {
            UdpCommand::Bind { socket, addr } => {
                let result = self.bind(socket, addr).map_err(|e| e.to_string());
                match &result {
                    Ok(_) => UdpStats::add(&self.stats.bound, 1),
                    Err(e) => {
                        UdpStats::add(&self.stats.bind_failed, 1);
                        tracing::debug!("{socket}: bind {addr}: {e}");
                    }
                }
                node.handle(now, Input::Udp(UdpEvent::Bound { socket, result }));
            }
            UdpCommand::SendTo {
                socket,
                destination,
                head,
                body,
            } => self.send(socket, destination, &head, &body),
            UdpCommand::Unbind { socket } => self.unbind(socket),
        }
    }

    fn bind(&mut self, socket: SocketId, addr: SocketAddr) -> io::Result<SocketAddr> {
        if self.sockets.contains_key(&socket) {
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
        // No SO_REUSEADDR: a port in use must fail, so the node moves to the next block.
        raw.bind(&addr.into())?;
        let mut udp = UdpSocket::from_std(raw.into());
        let local = udp.local_addr()?;
        let token = Token(self.next_token);
        self.next_token += 1;
        match &self.mode {
            Mode::Thread { table, .. } => {
                // Registered under the table's lock, so the receive thread finds the socket
                // for the first event it reports.
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                self.registry
                    .register(&mut udp, token, Interest::READABLE)?;
                let udp = Arc::new(udp);
                table.insert(token, (socket, udp.clone()));
                self.sockets.insert(socket, (token, udp));
                self.tokens.insert(token, socket);
            }
            Mode::Driver { .. } => {
                self.registry
                    .register(&mut udp, token, Interest::READABLE)?;
                self.sockets.insert(socket, (token, Arc::new(udp)));
                self.tokens.insert(token, socket);
            }
        }
        Ok(local)
    }

    fn send(&self, socket: SocketId, destination: SocketAddr, head: &[u8], body: &[u8]) {
        let Some((_, udp)) = self.sockets.get(&socket) else {
            return;
        };
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        let sock = socket2::SockRef::from(&**udp);
        let destination_raw = socket2::SockAddr::from(destination);
        loop {
            match sock.send_to_vectored(&slices, &destination_raw) {
                Ok(_) => UdpStats::add(&self.stats.sent, 1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // UDP semantics: a full buffer loses the datagram, the loop never waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    UdpStats::add(&self.stats.send_dropped, 1)
                }
                Err(e) => {
                    UdpStats::add(&self.stats.send_errors, 1);
                    tracing::debug!("{socket}: send to {destination}: {e}");
                }
            }
            return;
        }
    }

    fn unbind(&mut self, socket: SocketId) {
        let Some((token, udp)) = self.sockets.remove(&socket) else {
            return;
        };
        self.tokens.remove(&token);
        if let Mode::Thread { table, .. } = &self.mode {
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&token);
        }
        UdpStats::add(&self.stats.unbound, 1);
        // The last handle closes the socket (which also removes it from the poll). The receive
        // thread may hold one for a moment while it drains; then the socket closes when it
        // lets go, and what it read is dropped when fed.
        if let Ok(mut udp) = Arc::try_unwrap(udp) {
            let _ = self.registry.deregister(&mut udp);
        }
    }

    /// Own-thread mode: feeds every queued datagram of a still-open socket into `node` (a
    /// driver calls this on each turn). Does nothing in driver's-poll mode.
    pub fn feed(&mut self, node: &mut Node, now: Instant) {
        let Mode::Thread { queue, .. } = &self.mode else {
            return;
        };
        let mut fed = 0;
        let mut dropped = 0;
        while let Ok((socket, source, data)) = queue.try_recv() {
            if !self.sockets.contains_key(&socket) {
                dropped += 1;
                continue;
            }
            fed += 1;
            node.handle(
                now,
                Input::Udp(UdpEvent::Datagram {
                    socket,
                    source,
                    data,
                }),
            );
        }
        UdpStats::add(&self.stats.received, fed);
        UdpStats::add(&self.stats.receive_dropped, dropped);
    }

    /// Driver's-poll mode: the socket registered under `token` is readable; drains it into
    /// `node`. Returns false if `token` is not one of this executor's (or is gone).
    pub fn readable(&mut self, node: &mut Node, now: Instant, token: Token) -> bool {
        let Mode::Driver { buf } = &mut self.mode else {
            return false;
        };
        let found = self.tokens.get(&token).and_then(|socket| {
            let (_, udp) = self.sockets.get(socket)?;
            Some((*socket, udp.clone()))
        });
        let Some((socket, udp)) = found else {
            return token.0 >= UDP_TOKEN_BASE;
        };
        let mut fed = 0;
        drain(&udp, buf, |source, data| {
            fed += 1;
            node.handle(
                now,
                Input::Udp(UdpEvent::Datagram {
                    socket,
                    source,
                    data,
                }),
            );
        });
        UdpStats::add(&self.stats.received, fed);
        true
    }

    /// Sockets open now.
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }
}

impl Drop for UdpExecutor {
    fn drop(&mut self) {
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

/// Reads `udp` until `WouldBlock` (the registration is edge-triggered), handing each datagram
/// to `deliver`. Datagrams share `buf`'s allocations.
fn drain(udp: &UdpSocket, buf: &mut BytesMut, mut deliver: impl FnMut(SocketAddr, Bytes)) {
    loop {
        if buf.len() < MAX_DATAGRAM {
            *buf = BytesMut::zeroed(RECV_CHUNK);
        }
        match udp.recv_from(buf) {
            Ok((n, source)) => deliver(source, buf.split_to(n).freeze()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // An ICMP error reported on the socket: nothing to read, keep going.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                return;
            }
        }
    }
}

fn receive_thread(
    mut poll: Poll,
    table: Arc<Mutex<Table>>,
    queue: SyncSender<Received>,
    stop: Arc<AtomicBool>,
    stats: Arc<UdpStats>,
    wake: impl Fn(),
) {
    let mut events = Events::with_capacity(1024);
    let mut buf = BytesMut::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("udp poll: {e}");
            return;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut queued = false;
        for event in events.iter() {
            let token = event.token();
            if token == STOP {
                continue;
            }
            let Some((socket, udp)) = table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&token)
                .map(|(s, u)| (*s, u.clone()))
            else {
                continue;
            };
            let mut dropped = 0;
            drain(&udp, &mut buf, |source, data| {
                match queue.try_send((socket, source, data)) {
                    Ok(()) => queued = true,
                    Err(TrySendError::Full(_)) => dropped += 1,
                    Err(TrySendError::Disconnected(_)) => {}
                }
            });
            UdpStats::add(&stats.receive_dropped, dropped);
        }
        if queued {
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::NodeConfig;
    use std::time::Duration;

    fn node() -> Node {
        Node::new(NodeConfig::default(), Instant::now(), 1)
    }

    fn bind(udp: &mut UdpExecutor, node: &mut Node, id: u64, addr: &str) -> SocketAddr {
        let socket = SocketId(id);
        let addr = addr.parse().unwrap();
        udp.execute(node, Instant::now(), UdpCommand::Bind { socket, addr });
        udp.local_addr(socket).expect("bound")
    }

    fn send(
        udp: &mut UdpExecutor,
        node: &mut Node,
        id: u64,
        to: SocketAddr,
        head: &[u8],
        body: &'static [u8],
    ) {
        let command = UdpCommand::SendTo {
            socket: SocketId(id),
            destination: to,
            head: head.into(),
            body: Bytes::from_static(body),
        };
        udp.execute(node, Instant::now(), command);
    }

    fn peer() -> std::net::UdpSocket {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer
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
        send(
            &mut udp,
            &mut node,
            1,
            peer.local_addr().unwrap(),
            &[0x80, 0x00],
            b"payload",
        );
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
        send(&mut udp, &mut node, 1, first, &[], b"x");
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
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
        let mut udp = UdpExecutor::with_registry(poll.registry().try_clone().unwrap());
        let mut node = node();
        let local = bind(&mut udp, &mut node, 7, "127.0.0.1:0");
        let peer = peer();
        for _ in 0..5 {
            peer.send_to(b"rtp", local).unwrap();
        }
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let token = events.iter().next().expect("readable").token();
        assert!(token.0 >= UDP_TOKEN_BASE);
        assert!(udp.readable(&mut node, Instant::now(), token));
        assert_eq!(
            udp.stats().received.load(Ordering::Relaxed),
            5,
            "drained to WouldBlock"
        );
        assert!(
            !udp.readable(&mut node, Instant::now(), Token(3)),
            "not a UDP token"
        );
        udp.execute(
            &mut node,
            Instant::now(),
            UdpCommand::Unbind {
                socket: SocketId(7),
            },
        );
        assert!(
            udp.readable(&mut node, Instant::now(), token),
            "a gone socket's token is still UDP's"
        );
    }
}
