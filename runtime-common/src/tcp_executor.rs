//! [`TcpExecutor`]: the node's own TCP connections and listeners (the gateway's SIP over TCP,
//! see [`siprtmp_core::tcp`]) for every driver.
//!
//! Everything runs on one I/O thread per executor with its own `mio::Poll`, the pattern of the
//! file executor: the driver's event-loop thread only puts the node's commands on a channel
//! and wakes the thread ([`TcpExecutor::execute`] never blocks), and the thread queues what
//! happens (connected, accepted, bytes read, closed) and calls the driver's wake-up once per
//! batch; the driver feeds the queue into the node on its next turn ([`TcpExecutor::feed`]).
//! SIP signalling is a few messages per call, so one thread serves every driver alike.
//!
//! On the thread: a connect is a non-blocking `connect` (from the given local address), whose
//! outcome the first writable event tells (`SO_ERROR`); bytes sent before that wait in the
//! stream's send queue, as do bytes the socket does not take at once, up to
//! [`MAX_QUEUED_SEND`] per stream (beyond that the stream is closed and reported, since its
//! peer is not reading). Reads go to the node in arrival order; at most [`MAX_READ_AHEAD`]
//! bytes wait in the queue for the driver, after which the thread stops reading (TCP flow
//! control pushes back on the peer) until the driver has fed the queue.
//!
//! A failed accept (out of descriptors) pauses accepting on every listener for a few
//! milliseconds ([`crate::AcceptBackoff`]) and the thread wakes itself to retry, since the
//! connections left in a backlog raise no new edge-triggered event.
//!
//! `Close` and `Unlisten` forget the socket at once: nothing more is reported for it, and
//! what was queued for it and not yet fed is dropped when fed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::net::{TcpListener, TcpStream};

use crate::accept_backoff::AcceptBackoff;
use crate::process_stats::ProcessReader;
use mio::{Events, Interest, Poll, Token, Waker};
use siprtmp_core::node::{Input, ListenerId, Node, StreamId, TcpCommand, TcpEvent};
pub use siprtmp_core::tcp::MAX_QUEUED_SEND;

/// Bytes read and not yet fed to the node, over all streams, before the thread stops reading.
pub const MAX_READ_AHEAD: usize = 1 << 20;
/// One read's buffer.
const READ_CHUNK: usize = 16 * 1024;
/// The thread's own waker (commands, stop, resume).
const WAKE: Token = Token(0);
/// Most slices handed to one vectored write.
const MAX_SLICES: usize = 64;
/// How long a connect may wait for the peer's answer before it is reported failed: a host
/// that drops SYNs (down, firewalled) would otherwise leave the connect pending until the
/// kernel gives up (minutes), and the SIP transaction only until its own Timer B/F (32 s).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the executor did, for metrics and for tests that check nothing leaks.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections opened: connected or accepted.
    pub opened: AtomicU64,
    /// Connects that failed.
    pub connect_failed: AtomicU64,
    /// Accepts that failed for want of descriptors or memory (each pauses accepting a
    /// little: see [`crate::AcceptBackoff`]).
    pub accept_failed: AtomicU64,
    /// Connections closed (by the node, the peer, or an error).
    pub closed: AtomicU64,
    /// Listeners listening.
    pub listening: AtomicU64,
    /// Listeners closed.
    pub unlistened: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_sent: AtomicU64,
    /// Bytes fed to the node.
    pub bytes_received: AtomicU64,
}

impl TcpStats {
    /// Connections open now (connecting ones not counted).
    pub fn open_streams(&self) -> u64 {
        self.opened.load(Ordering::Relaxed) - self.closed.load(Ordering::Relaxed)
    }

    /// Listeners open now.
    pub fn open_listeners(&self) -> u64 {
        self.listening.load(Ordering::Relaxed) - self.unlistened.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the driver's side and the thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes read and not yet fed.
    read_ahead: AtomicUsize,
    /// The thread stopped reading some stream for lack of room: wake it once there is.
    paused: AtomicBool,
    stop: AtomicBool,
    stats: Arc<TcpStats>,
}

/// What the thread tells the driver's side.
enum Report {
    Event(TcpEvent),
    /// The thread carried out the node's `Close` of this stream: no event for it follows.
    Forgotten(StreamId),
}

/// The node's TCP; see the module documentation.
///
/// ```
/// use std::net::TcpListener;
/// use std::sync::mpsc;
/// use std::time::{Duration, Instant};
/// use siprtmp_core::node::{Node, NodeConfig, StreamId, TcpCommand};
/// use siprtmp_runtime_common::TcpExecutor;
///
/// let peer = TcpListener::bind("127.0.0.1:0").unwrap();
/// let (woken_tx, woken) = mpsc::channel();
/// let mut tcp = TcpExecutor::start(move || { let _ = woken_tx.send(()); }).unwrap();
/// let mut node = Node::new(NodeConfig::default(), Instant::now(), 1);
/// let stream = StreamId(1);
/// tcp.execute(TcpCommand::Connect { stream, remote: peer.local_addr().unwrap(), local_ip: None });
/// // Sent before the connection is up: queued, then written.
/// tcp.execute(TcpCommand::Send { stream, data: "OPTIONS".into() });
/// let (mut accepted, _) = peer.accept().unwrap();
/// let mut got = [0u8; 7];
/// std::io::Read::read_exact(&mut accepted, &mut got).unwrap();
/// assert_eq!(&got, b"OPTIONS");
/// woken.recv_timeout(Duration::from_secs(5)).unwrap();
/// tcp.feed(&mut node, Instant::now()); // Connected goes to the node
/// assert_eq!(tcp.stats().open_streams(), 1);
/// ```
pub struct TcpExecutor {
    commands: Sender<TcpCommand>,
    events: Receiver<Report>,
    waker: Arc<Waker>,
    /// Streams the node closed whose `Close` the thread has not confirmed yet: events for
    /// them still in the queue are not fed.
    gone: HashSet<StreamId>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Reads the process's figures for an HTTP request (see `crate::process_stats`).
    process: ProcessReader,
}

impl TcpExecutor {
    /// Starts the I/O thread, which calls `wake` after each batch of events it queued (the
    /// driver then takes a turn and calls [`Self::feed`]).
    pub fn start(wake: impl Fn() + Send + 'static) -> io::Result<Self> {
        Self::start_with_connect_timeout(wake, CONNECT_TIMEOUT)
    }

    /// [`Self::start`] with another limit than `CONNECT_TIMEOUT` on how long a connect may
    /// wait for its answer.
    pub fn start_with_connect_timeout(
        wake: impl Fn() + Send + 'static,
        connect_timeout: Duration,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (commands, inbox) = mpsc::channel();
        let (outbox, events) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("siprtmp-tcp".into())
                .spawn(move || {
                    IoThread {
                        poll,
                        inbox,
                        outbox,
                        shared,
                        streams: HashMap::new(),
                        stream_tokens: HashMap::new(),
                        listeners: HashMap::new(),
                        listener_tokens: HashMap::new(),
                        next_token: 1,
                        accepted: 0,
                        paused: Vec::new(),
                        queued: false,
                        connect_timeout,
                        accept_backoff: AcceptBackoff::default(),
                    }
                    .run(&wake)
                })?
        };
        Ok(Self {
            commands,
            events,
            waker,
            gone: HashSet::new(),
            shared,
            thread: Some(thread),
            process: ProcessReader::default(),
        })
    }

    /// The counters (shared: a driver hands them to whoever monitors it).
    pub fn stats(&self) -> Arc<TcpStats> {
        self.shared.stats.clone()
    }

    /// Hands one of the node's commands to the I/O thread (never blocks). Everything is
    /// answered through [`Self::feed`].
    pub fn execute(&mut self, command: TcpCommand) {
        if let TcpCommand::Close { stream } = &command {
            self.gone.insert(*stream);
        }
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Feeds every queued event into `node` (a driver calls this on each turn).
    pub fn feed(&mut self, node: &mut Node, now: Instant) {
        let mut fed_bytes = 0;
        while let Ok(report) = self.events.try_recv() {
            let event = match report {
                Report::Event(event) => event,
                Report::Forgotten(stream) => {
                    self.gone.remove(&stream);
                    continue;
                }
            };
            let stream = match &event {
                TcpEvent::Received { stream, data } => {
                    fed_bytes += data.len();
                    Some(*stream)
                }
                TcpEvent::Closed { stream, .. }
                | TcpEvent::Connected { stream, .. }
                | TcpEvent::Sent { stream, .. } => Some(*stream),
                _ => None,
            };
            if stream.is_some_and(|s| self.gone.contains(&s)) {
                continue;
            }
            // The HTTP listener's connections are the node's own TCP, so every driver feeds
            // their bytes here: the one place to supply the process's figures to a scrape.
            if node.process_stats_wanted(&event) {
                if let Some(stats) = self.process.read_if_due(now) {
                    node.set_process_stats(stats);
                }
            }
            node.handle(now, Input::Tcp(event));
        }
        if fed_bytes > 0 {
            self.shared
                .read_ahead
                .fetch_sub(fed_bytes, Ordering::AcqRel);
            TcpStats::add(&self.shared.stats.bytes_received, fed_bytes as u64);
        }
        if self.shared.paused.swap(false, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for TcpExecutor {
    /// Stops the thread after one last attempt to write what is queued (a gateway's goodbyes
    /// at shutdown), without waiting for slow peers.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection on the thread.
struct Conn {
    id: StreamId,
    socket: TcpStream,
    /// Waiting for the connect's outcome.
    connecting: bool,
    /// When a connect still waiting is given up.
    connect_deadline: Instant,
    /// Bytes not yet written, in order.
    out: VecDeque<Bytes>,
    out_bytes: usize,
}

impl Conn {
    /// Writes what the socket takes now; how many bytes it took.
    fn flush(&mut self, stats: &TcpStats) -> io::Result<usize> {
        let mut written = 0;
        while !self.out.is_empty() {
            // On the stack: no allocation per write.
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slot, bytes) in slices.iter_mut().zip(&self.out) {
                *slot = IoSlice::new(bytes);
                count += 1;
            }
            match self.socket.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    written += n;
                    TcpStats::add(&stats.bytes_sent, n as u64);
                    self.out_bytes -= n;
                    while n > 0 {
                        let front = self.out.front_mut().expect("written from it");
                        if n >= front.len() {
                            n -= front.len();
                            self.out.pop_front();
                        } else {
                            let _ = front.split_to(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}

struct IoThread {
    poll: Poll,
    inbox: Receiver<TcpCommand>,
    outbox: Sender<Report>,
    shared: Arc<Shared>,
    streams: HashMap<Token, Conn>,
    stream_tokens: HashMap<StreamId, Token>,
    listeners: HashMap<Token, (ListenerId, TcpListener)>,
    listener_tokens: HashMap<ListenerId, Token>,
    next_token: usize,
    accepted: u64,
    /// Streams with unread bytes left while the read-ahead was full.
    paused: Vec<Token>,
    /// Events queued since the last wake-up.
    queued: bool,
    /// See [`CONNECT_TIMEOUT`].
    connect_timeout: Duration,
    /// Accepting (on every listener: descriptors are the process's) paused after a failure.
    accept_backoff: AcceptBackoff,
}

impl IoThread {
    fn run(mut self, wake: &dyn Fn()) {
        let mut events = Events::with_capacity(256);
        loop {
            // Connects are few (SIP signalling): a scan per turn finds the next deadline. A
            // paused accept wakes the thread too: the backlog raises no new event.
            let timeout = self
                .streams
                .values()
                .filter(|c| c.connecting)
                .map(|c| c.connect_deadline)
                .chain(self.accept_backoff.retry_at())
                .min()
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!("tcp poll: {e}");
                return;
            }
            while let Ok(command) = self.inbox.try_recv() {
                self.command(command);
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                for conn in self.streams.values_mut() {
                    let _ = conn.flush(&self.shared.stats);
                }
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                let token = event.token();
                if token == WAKE {
                    continue;
                }
                if self.listeners.contains_key(&token) {
                    // While paused the event is dropped: the retry tries every listener.
                    if self.accept_backoff.retry_at().is_none() {
                        self.accept(token);
                    }
                } else {
                    self.stream_ready(token, event.is_writable() || event.is_error());
                }
            }
            if self.accept_backoff.pause_over(now) {
                let listening: Vec<Token> = self.listeners.keys().copied().collect();
                for token in listening {
                    // Paused again: the others would fail alike.
                    if self.accept_backoff.retry_at().is_some() {
                        break;
                    }
                    self.accept(token);
                }
            }
            for token in std::mem::take(&mut self.paused) {
                self.read(token);
            }
            self.expire_connects(Instant::now());
            if std::mem::take(&mut self.queued) {
                wake();
            }
        }
    }

    fn report(&mut self, event: TcpEvent) {
        let _ = self.outbox.send(Report::Event(event));
        self.queued = true;
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    fn command(&mut self, command: TcpCommand) {
        match command {
            TcpCommand::Connect {
                stream,
                remote,
                local_ip,
            } => match connect(remote, local_ip) {
                Ok(mut socket) => {
                    let token = self.token();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut socket, token, interest) {
                        self.connect_failed(stream, e.to_string());
                        return;
                    }
                    self.stream_tokens.insert(stream, token);
                    self.streams.insert(
                        token,
                        Conn {
                            id: stream,
                            socket,
                            connecting: true,
                            connect_deadline: Instant::now() + self.connect_timeout,
                            out: VecDeque::new(),
                            out_bytes: 0,
                        },
                    );
                }
                Err(e) => self.connect_failed(stream, e.to_string()),
            },
            TcpCommand::Send { stream, data } => {
                let Some(&token) = self.stream_tokens.get(&stream) else {
                    return;
                };
                let Some(conn) = self.streams.get_mut(&token) else {
                    return;
                };
                conn.out_bytes += data.len();
                conn.out.push_back(data);
                if conn.out_bytes > MAX_QUEUED_SEND {
                    self.close(
                        token,
                        Some("send queue full: the peer does not read".into()),
                    );
                } else if !conn.connecting {
                    match conn.flush(&self.shared.stats) {
                        Ok(0) => {}
                        Ok(bytes) => self.report(TcpEvent::Sent { stream, bytes }),
                        Err(e) => self.close(token, Some(e.to_string())),
                    }
                }
            }
            TcpCommand::Close { stream } => {
                let _ = self.outbox.send(Report::Forgotten(stream));
                self.queued = true;
                if let Some(token) = self.stream_tokens.remove(&stream) {
                    if let Some(mut conn) = self.streams.remove(&token) {
                        if !conn.connecting {
                            let _ = conn.flush(&self.shared.stats);
                            TcpStats::add(&self.shared.stats.closed, 1);
                        }
                        let _ = self.poll.registry().deregister(&mut conn.socket);
                    }
                }
            }
            TcpCommand::Listen { listener, addr } => {
                let result = self.listen(listener, addr).map_err(|e| e.to_string());
                if result.is_ok() {
                    TcpStats::add(&self.shared.stats.listening, 1);
                }
                self.report(TcpEvent::Listening { listener, result });
            }
            TcpCommand::Unlisten { listener } => {
                if let Some(token) = self.listener_tokens.remove(&listener) {
                    if let Some((_, mut socket)) = self.listeners.remove(&token) {
                        let _ = self.poll.registry().deregister(&mut socket);
                        TcpStats::add(&self.shared.stats.unlistened, 1);
                    }
                }
            }
        }
    }

    /// Reports every connect past its deadline as failed, and forgets it.
    fn expire_connects(&mut self, now: Instant) {
        let expired: Vec<Token> = self
            .streams
            .iter()
            .filter(|(_, c)| c.connecting && c.connect_deadline <= now)
            .map(|(&token, _)| token)
            .collect();
        for token in expired {
            if let Some(mut conn) = self.streams.remove(&token) {
                let _ = self.poll.registry().deregister(&mut conn.socket);
                self.stream_tokens.remove(&conn.id);
                let error = format!("connect timed out after {:?}", self.connect_timeout);
                self.connect_failed(conn.id, error);
            }
        }
    }

    fn connect_failed(&mut self, stream: StreamId, error: String) {
        TcpStats::add(&self.shared.stats.connect_failed, 1);
        self.report(TcpEvent::ConnectFailed { stream, error });
    }

    fn listen(&mut self, listener: ListenerId, addr: SocketAddr) -> io::Result<SocketAddr> {
        let std = crate::bind_listener(addr, true)?;
        let mut socket = TcpListener::from_std(std);
        let local = socket.local_addr()?;
        let token = self.token();
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)?;
        self.listeners.insert(token, (listener, socket));
        self.listener_tokens.insert(listener, token);
        Ok(local)
    }

    fn accept(&mut self, token: Token) {
        loop {
            let Some((listener, socket)) = self.listeners.get(&token) else {
                return;
            };
            let listener = *listener;
            match socket.accept() {
                Ok((mut socket, remote)) => {
                    self.accept_backoff.accepted(Instant::now());
                    let _ = socket.set_nodelay(true);
                    self.accepted += 1;
                    let stream = StreamId::accepted(self.accepted);
                    let token = self.token();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut socket, token, interest) {
                        // The socket closes as it drops: the peer sees a refused connection
                        // and the node never hears of it, so the operator must.
                        tracing::warn!("SIP over TCP: connection from {remote} dropped: {e}");
                        continue;
                    }
                    TcpStats::add(&self.shared.stats.opened, 1);
                    self.stream_tokens.insert(stream, token);
                    self.streams.insert(
                        token,
                        Conn {
                            id: stream,
                            socket,
                            connecting: false,
                            connect_deadline: Instant::now(),
                            out: VecDeque::new(),
                            out_bytes: 0,
                        },
                    );
                    self.report(TcpEvent::Accepted {
                        listener,
                        stream,
                        remote,
                    });
                    // Bytes that came with the connection are read now (edge-triggered).
                    self.read(token);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Out of descriptors: pause accepting (the thread wakes up to retry); a
                // connection reset while queued: the next one.
                Err(e) => {
                    if self.accept_backoff.failed(Instant::now(), &e) {
                        TcpStats::add(&self.shared.stats.accept_failed, 1);
                        tracing::debug!("{listener}: accept: {e}");
                        return;
                    }
                }
            }
        }
    }

    fn stream_ready(&mut self, token: Token, writable: bool) {
        let Some(conn) = self.streams.get_mut(&token) else {
            return;
        };
        if conn.connecting {
            if !writable {
                return;
            }
            let stream = conn.id;
            let failed = match conn.socket.take_error() {
                Ok(Some(e)) | Err(e) => Some(e.to_string()),
                Ok(None) => match conn.socket.peer_addr() {
                    Ok(_) => None,
                    // Not connected yet (a spurious wake-up).
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => Some(e.to_string()),
                },
            };
            if let Some(error) = failed {
                if let Some(mut conn) = self.streams.remove(&token) {
                    let _ = self.poll.registry().deregister(&mut conn.socket);
                }
                self.stream_tokens.remove(&stream);
                self.connect_failed(stream, error);
                return;
            }
            conn.connecting = false;
            let _ = conn.socket.set_nodelay(true);
            let local = conn.socket.local_addr();
            TcpStats::add(&self.shared.stats.opened, 1);
            match local {
                Ok(local) => self.report(TcpEvent::Connected { stream, local }),
                Err(e) => {
                    self.close(token, Some(e.to_string()));
                    return;
                }
            }
        }
        let Some(conn) = self.streams.get_mut(&token) else {
            return;
        };
        let stream = conn.id;
        match conn.flush(&self.shared.stats) {
            Ok(0) => {}
            Ok(bytes) => self.report(TcpEvent::Sent { stream, bytes }),
            Err(e) => {
                self.close(token, Some(e.to_string()));
                return;
            }
        }
        self.read(token);
    }

    /// Reads the stream until `WouldBlock`, the read-ahead limit, or its end.
    fn read(&mut self, token: Token) {
        loop {
            let Some(conn) = self.streams.get_mut(&token) else {
                return;
            };
            if conn.connecting {
                return;
            }
            if self.shared.read_ahead.load(Ordering::Acquire) >= MAX_READ_AHEAD {
                self.paused.push(token);
                self.shared.paused.store(true, Ordering::Release);
                return;
            }
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            match conn.socket.read(&mut buf) {
                Ok(0) => {
                    self.close(token, None);
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    let stream = conn.id;
                    self.shared.read_ahead.fetch_add(n, Ordering::AcqRel);
                    self.report(TcpEvent::Received { stream, data: buf });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close(token, Some(e.to_string()));
                    return;
                }
            }
        }
    }

    /// The stream ended (the peer closed, or an error): forget it and report it.
    fn close(&mut self, token: Token, error: Option<String>) {
        let Some(mut conn) = self.streams.remove(&token) else {
            return;
        };
        self.stream_tokens.remove(&conn.id);
        let _ = self.poll.registry().deregister(&mut conn.socket);
        TcpStats::add(&self.shared.stats.closed, 1);
        self.report(TcpEvent::Closed {
            stream: conn.id,
            error,
        });
    }
}

/// A non-blocking connect to `remote` from `local_ip` (any port) if given.
fn connect(remote: SocketAddr, local_ip: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(remote),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = local_ip {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&remote.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc_einprogress()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// `EINPROGRESS`: a non-blocking connect under way (115 on Linux, 36 on the BSDs and macOS).
fn libc_einprogress() -> i32 {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        115
    } else {
        36
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

    /// Waits (up to 5 s) until `done` says the counters are as wanted, feeding in between.
    fn until(
        tcp: &mut TcpExecutor,
        woken: &mpsc::Receiver<()>,
        node: &mut Node,
        done: impl Fn(&TcpStats) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(&tcp.stats()) {
            assert!(Instant::now() < deadline, "timed out: {:?}", tcp.stats());
            let _ = woken.recv_timeout(Duration::from_millis(50));
            tcp.feed(node, Instant::now());
        }
    }

    fn executor() -> (TcpExecutor, mpsc::Receiver<()>) {
        let (tx, woken) = mpsc::channel();
        let tcp = TcpExecutor::start(move || {
            let _ = tx.send(());
        })
        .unwrap();
        (tcp, woken)
    }

    #[test]
    fn a_refused_connect_is_reported_and_its_queued_bytes_dropped() {
        let (mut tcp, woken) = executor();
        let mut node = node();
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stream = StreamId(1);
        tcp.execute(TcpCommand::Connect {
            stream,
            remote: port,
            local_ip: Some([127, 0, 0, 1].into()),
        });
        tcp.execute(TcpCommand::Send {
            stream,
            data: Bytes::from_static(b"REGISTER"),
        });
        until(&mut tcp, &woken, &mut node, |s| {
            s.connect_failed.load(Ordering::Relaxed) == 1
        });
        assert_eq!(tcp.stats().open_streams(), 0);
        assert_eq!(tcp.stats().bytes_sent.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_connect_that_gets_no_answer_fails_after_the_connect_timeout() {
        // A listener whose accept queue is full: Linux drops further SYNs, so a connect to
        // it waits for an answer that never comes, like one to a host that is down.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(0).unwrap();
        let silent = socket.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        while let Ok(s) = std::net::TcpStream::connect_timeout(&silent, Duration::from_millis(200))
        {
            fillers.push(s);
            assert!(fillers.len() < 64, "the accept queue never filled");
        }
        let (tx, woken) = mpsc::channel();
        let mut tcp = TcpExecutor::start_with_connect_timeout(
            move || {
                let _ = tx.send(());
            },
            Duration::from_millis(300),
        )
        .unwrap();
        let mut node = node();
        let started = Instant::now();
        tcp.execute(TcpCommand::Connect {
            stream: StreamId(1),
            remote: silent,
            local_ip: None,
        });
        until(&mut tcp, &woken, &mut node, |s| {
            s.connect_failed.load(Ordering::Relaxed) == 1
        });
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(tcp.stats().open_streams(), 0);
    }

    /// Listens on a free loopback port as listener 1; returns its address, read from the
    /// event queue directly (the node ignores events for listeners it never asked for).
    fn listen_on_loopback(tcp: &mut TcpExecutor, woken: &Receiver<()>) -> SocketAddr {
        tcp.execute(TcpCommand::Listen {
            listener: ListenerId(1),
            addr: "127.0.0.1:0".parse().unwrap(),
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no Listening event within 5 s");
            let _ = woken.recv_timeout(Duration::from_millis(50));
            if let Ok(Report::Event(TcpEvent::Listening { result, .. })) = tcp.events.try_recv() {
                return result.unwrap();
            }
        }
    }

    #[test]
    fn listens_accepts_reads_and_reports_the_peers_close() {
        let (mut tcp, woken) = executor();
        let mut node = node();
        let addr = listen_on_loopback(&mut tcp, &woken);
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        peer.write_all(b"INVITE sip:a@b SIP/2.0\r\n").unwrap();
        until(&mut tcp, &woken, &mut node, |s| {
            s.bytes_received.load(Ordering::Relaxed) == 24
        });
        assert_eq!(tcp.stats().open_streams(), 1);
        drop(peer);
        until(&mut tcp, &woken, &mut node, |s| s.open_streams() == 0);
        tcp.execute(TcpCommand::Unlisten {
            listener: ListenerId(1),
        });
        until(&mut tcp, &woken, &mut node, |s| s.open_listeners() == 0);
        assert!(std::net::TcpStream::connect(addr).is_err(), "closed");
    }

    /// Out of descriptors, a connection waiting on a listener is accepted by itself once one
    /// is free, within the accept pause: no other connection has to arrive (the listener's
    /// edge-triggered event came, and went, while accept failed). Runs alone in a process
    /// limited to 64 descriptors.
    #[cfg(target_os = "linux")]
    #[test]
    fn out_of_descriptors_a_waiting_connection_is_accepted_once_one_is_free() {
        if !crate::test_rerun::rerun_under(
            &["prlimit", "--nofile=64:64"],
            &crate::test_rerun::test_path(
                module_path!(),
                "out_of_descriptors_a_waiting_connection_is_accepted_once_one_is_free",
            ),
        ) {
            return;
        }
        let (mut tcp, woken) = executor();
        let mut node = node();
        let addr = listen_on_loopback(&mut tcp, &woken);
        // Every descriptor left but one, which the client takes: none for the accept.
        let mut fillers = Vec::new();
        let exhausted = loop {
            match std::fs::File::open("/dev/null") {
                Ok(file) => fillers.push(file),
                Err(e) => break e,
            }
            assert!(fillers.len() < 64, "the descriptor limit does not hold");
        };
        assert_eq!(exhausted.raw_os_error(), Some(24), "{exhausted}");
        fillers.pop();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        until(&mut tcp, &woken, &mut node, |s| {
            s.accept_failed.load(Ordering::Relaxed) >= 1
        });
        assert_eq!(tcp.stats().opened.load(Ordering::Relaxed), 0);
        fillers.pop();
        let freed = Instant::now();
        until(&mut tcp, &woken, &mut node, |s| {
            s.opened.load(Ordering::Relaxed) == 1
        });
        eprintln!(
            "accepted {:?} after a descriptor was freed",
            freed.elapsed()
        );
        assert!(freed.elapsed() < Duration::from_secs(1));
        let failed = tcp.stats().accept_failed.load(Ordering::Relaxed);
        assert!(failed < 20, "{failed} attempts: it spun");
    }

    #[test]
    fn what_the_socket_takes_is_reported_as_sent_in_total() {
        let (mut tcp, woken) = executor();
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = StreamId(3);
        tcp.execute(TcpCommand::Connect {
            stream,
            remote: peer.local_addr().unwrap(),
            local_ip: None,
        });
        let (mut held, _) = peer.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            held.read_to_end(&mut got).map(|_| got.len())
        });
        // More than the socket buffers take at once: part is written later, when writable
        // (and the first sends may find the connect still pending).
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let total = 48 * chunk.len();
        for _ in 0..48 {
            tcp.execute(TcpCommand::Send {
                stream,
                data: chunk.clone(),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = 0;
        while sent < total {
            assert!(Instant::now() < deadline, "{sent} of {total} reported sent");
            let _ = woken.recv_timeout(Duration::from_millis(50));
            while let Ok(report) = tcp.events.try_recv() {
                if let Report::Event(TcpEvent::Sent { stream: s, bytes }) = report {
                    assert_eq!(s, stream);
                    sent += bytes;
                }
            }
        }
        assert_eq!(sent, total);
        tcp.execute(TcpCommand::Close { stream });
        assert_eq!(reader.join().unwrap().unwrap(), total);
    }

    #[test]
    fn a_peer_that_does_not_read_gets_its_stream_closed_not_unbounded_memory() {
        let (mut tcp, woken) = executor();
        let mut node = node();
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = StreamId(2);
        tcp.execute(TcpCommand::Connect {
            stream,
            remote: peer.local_addr().unwrap(),
            local_ip: None,
        });
        let (_held, _) = peer.accept().unwrap();
        until(&mut tcp, &woken, &mut node, |s| s.open_streams() == 1);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        for _ in 0..(MAX_QUEUED_SEND / chunk.len()) * 8 {
            tcp.execute(TcpCommand::Send {
                stream,
                data: chunk.clone(),
            });
        }
        until(&mut tcp, &woken, &mut node, |s| s.open_streams() == 0);
    }
}
