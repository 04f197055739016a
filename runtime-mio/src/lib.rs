//! # siprtmp-mio
//!
//! Runs a [`siprtmp_core::node::Node`] on one thread with one `mio::Poll`. The driver only
//! moves bytes, drained counts and timer expiry between sockets and the node; every protocol
//! decision is the node's.
//!
//! Per wake-up: read every readable socket to `WouldBlock` and feed the bytes in; feed the
//! completed file requests in; fire the node's timer if due; then write each connection that
//! has queued segments with one `writev` and report how many bytes the kernel took.
//!
//! File requests (recording, video on demand) run on a background thread ([`file_io`]) that
//! wakes the poll when they complete. Decisions ([`Event::Decide`]) are answered by the
//! decider installed with [`MioDriver::with_decider`] (everything is accepted without one).
//!
//! ```no_run
//! use siprtmp_mio::{MioDriver, DriverConfig};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = MioDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! driver.run().unwrap();
//! ```

pub mod file_io;

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use siprtmp_core::node::{ConnId, Decision, Event, Input, Node, NodeConfig, Output, RequestId};

use file_io::FileExecutor;

/// Answers [`Event::Decide`] events: it sees every event (to count connections, say) and
/// returns an answer for the decisions it can make at once.
pub type Decider = Box<dyn FnMut(&Event) -> Option<(RequestId, Decision)> + Send>;

/// How long a stopping driver waits for file requests (recordings being finished) to complete.
const SHUTDOWN_FILE_GRACE: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Read buffer granularity: one allocation serves many reads.
const READ_CHUNK: usize = 64 * 1024;
/// Most segments handed to one `writev` (Linux IOV_MAX is 1024).
const MAX_IOVECS: usize = 512;

/// Socket-level settings of the driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Address to listen on for RTMP.
    pub listen: SocketAddr,
    /// `SO_SNDBUF` for accepted sockets; `None` leaves the kernel's autotuning on. A small value
    /// makes backpressure visible to the node sooner (the kernel holds less).
    pub send_buffer: Option<usize>,
    /// Seed for the node's random generator.
    pub seed: u64,
    /// Where application events go besides the log (for embedding applications and tests).
    pub events: Option<std::sync::mpsc::Sender<Event>>,
    /// Directory that recorded and played files live under.
    pub root: PathBuf,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            send_buffer: None,
            seed: 0x5eed,
            events: None,
            root: PathBuf::from("media"),
        }
    }
}

/// Stops a running driver from another thread or a signal handler thread.
#[derive(Clone)]
pub struct Stopper {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Stopper {
    /// Asks the driver to close every connection, finish its files and return from
    /// [`MioDriver::run`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake means the poll is gone already: nothing left to stop.
        let _ = self.waker.wake();
    }
}

struct Connection {
    socket: TcpStream,
    /// The node queued bytes the socket has not taken yet.
    dirty: bool,
}

/// The mio event loop around one node.
pub struct MioDriver {
    poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
    node: Node,
    connections: HashMap<ConnId, Connection>,
    config: DriverConfig,
    read_buf: BytesMut,
    /// Connections marked dirty since the last flush (each once).
    dirty: Vec<ConnId>,
    files: FileExecutor,
    decider: Option<Decider>,
    stop: Arc<AtomicBool>,
}

fn token(conn: ConnId) -> Token {
    Token(conn.0 as usize)
}

impl MioDriver {
    /// Binds the listening socket and builds the node.
    pub fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        let poll = Poll::new()?;
        let listener = bind_listener(config.listen)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let node = Node::new(node_config, Instant::now(), config.seed);
        let files_waker = waker.clone();
        let files = FileExecutor::start(config.root.clone(), move || {
            let _ = files_waker.wake();
        })?;
        Ok(Self {
            poll,
            listener,
            waker,
            node,
            connections: HashMap::new(),
            config,
            read_buf: BytesMut::zeroed(READ_CHUNK),
            dirty: Vec::new(),
            files,
            decider: None,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Installs the decider that answers [`Event::Decide`] (use with
    /// [`NodeConfig::decisions`] on).
    pub fn with_decider(mut self, decider: Decider) -> Self {
        self.decider = Some(decider);
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`Self::run`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Runs until stopped.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.dirty.is_empty() {
                self.node
                    .poll_timeout()
                    .map(|deadline| deadline.saturating_duration_since(Instant::now()))
            } else {
                Some(std::time::Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {}
                    Token(raw) => {
                        let conn = ConnId(raw as u64);
                        if event.is_readable() || event.is_read_closed() {
                            self.read_all(now, conn);
                        }
                        if event.is_writable() {
                            self.mark_dirty(conn);
                        }
                    }
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                self.shutdown(now);
                return Ok(());
            }
            self.file_completions(now);
            if self
                .node
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.node.handle(now, Input::Timeout);
            }
            self.process_outputs(now);
            self.flush_dirty(now);
            self.process_outputs(now);
        }
    }

    /// Feeds completed file requests in.
    fn file_completions(&mut self, now: Instant) {
        while let Some((file, result)) = self.files.try_completion() {
            self.node.handle(now, Input::FileDone { file, result });
        }
    }

    /// Closes every connection, then lets the node finish its files (recordings get their
    /// metadata patched) for up to [`SHUTDOWN_FILE_GRACE`].
    fn shutdown(&mut self, now: Instant) {
        tracing::info!(
            "shutting down: closing {} connections",
            self.connections.len()
        );
        let conns: Vec<ConnId> = self.connections.keys().copied().collect();
        for conn in conns {
            self.drop_connection(now, conn);
        }
        let deadline = Instant::now() + SHUTDOWN_FILE_GRACE;
        loop {
            self.process_outputs(now);
            if self.files.outstanding() == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.files.wait_idle(left) {
                tracing::warn!(
                    "{} file requests unfinished at exit",
                    self.files.outstanding()
                );
                return;
            }
            self.file_completions(Instant::now());
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut socket, peer)) => {
                    if let Err(e) = self.configure(&socket) {
                        tracing::warn!("socket options for {peer}: {e}");
                    }
                    let conn = self.node.accept(now, peer);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut socket, token(conn), interest)
                    {
                        tracing::warn!("register {peer}: {e}");
                        self.node.handle(now, Input::Closed { conn });
                        continue;
                    }
                    tracing::debug!("{conn}: accepted {peer}");
                    self.connections.insert(
                        conn,
                        Connection {
                            socket,
                            dirty: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: stop accepting for this wake-up rather than spin.
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn configure(&self, socket: &TcpStream) -> io::Result<()> {
        socket.set_nodelay(true)?;
        if let Some(size) = self.config.send_buffer {
            socket2::SockRef::from(socket).set_send_buffer_size(size)?;
        }
        Ok(())
    }

    fn read_all(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(c) = self.connections.get_mut(&conn) else {
                return;
            };
            // `read_buf` is kept initialised to its full length, so it is zeroed once per
            // READ_CHUNK of received data, not once per read.
            if self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf = BytesMut::zeroed(READ_CHUNK);
            }
            match c.socket.read(&mut self.read_buf) {
                Ok(0) => {
                    self.drop_connection(now, conn);
                    return;
                }
                Ok(n) => {
                    let data = self.read_buf.split_to(n);
                    self.node.handle(now, Input::Received { conn, data });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("{conn}: read error: {e}");
                    self.drop_connection(now, conn);
                    return;
                }
            }
        }
    }

    fn process_outputs(&mut self, now: Instant) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { conn } => self.mark_dirty(conn),
                Output::Close { conn } => {
                    self.write(now, conn);
                    self.drop_connection(now, conn);
                }
                Output::File(request) => self.files.submit(request),
                Output::Event(event) => {
                    log_event(&event);
                    let answer = match (&mut self.decider, &event) {
                        (Some(decider), _) => decider(&event),
                        (None, Event::Decide { request, .. }) => Some((*request, Decision::Accept)),
                        (None, _) => None,
                    };
                    if let Some((request, decision)) = answer {
                        if decision != Decision::Accept {
                            tracing::info!("{request}: {decision:?}");
                        }
                        if let Err(e) = self.node.decide(now, request, decision) {
                            tracing::warn!("decision {request}: {e}");
                        }
                    }
                    if let Some(sink) = &self.config.events {
                        // A dropped receiver only means nobody listens any more.
                        let _ = sink.send(event);
                    }
                }
            }
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(c) = self.connections.get_mut(&conn) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for conn in dirty.drain(..) {
            if let Some(c) = self.connections.get_mut(&conn) {
                c.dirty = false;
                self.write(now, conn);
            }
        }
        // Keep the list's allocation for the next wake-up.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// One `writev` of the connection's queued segments (a second only if the first was
    /// partial, to reach `WouldBlock` so that mio reports writability again).
    fn write(&mut self, now: Instant, conn: ConnId) {
        for _ in 0..2 {
            let Some(c) = self.connections.get_mut(&conn) else {
                return;
            };
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.node.io_slices(conn, &mut slices);
            if count == 0 {
                return;
            }
            let total: usize = slices[..count].iter().map(|s| s.len()).sum();
            match c.socket.write_vectored(&slices[..count]) {
                Ok(n) => {
                    self.node.handle(now, Input::Drained { conn, bytes: n });
                    if n == total && self.node.queued_bytes(conn) == 0 {
                        return;
                    }
                }
                // Wait for the writable event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("{conn}: write error: {e}");
                    self.drop_connection(now, conn);
                    return;
                }
            }
        }
        // Still queued without having seen WouldBlock (more than MAX_IOVECS segments, or two
        // partial writes): try again on the next turn of the loop.
        self.mark_dirty(conn);
    }

    fn drop_connection(&mut self, now: Instant, conn: ConnId) {
        if let Some(mut c) = self.connections.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut c.socket);
            self.node.handle(now, Input::Closed { conn });
        }
    }
}

fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn log_event(event: &Event) {
    match event {
        Event::Connected { conn, app, peer } => {
            tracing::info!("{conn}: {peer} connected to app '{app}'")
        }
        Event::PublishStarted { conn, stream } => {
            tracing::info!("{conn}: publish started: {stream}")
        }
        Event::PublishStopped { conn, stream } => {
            tracing::info!("{conn}: publish stopped: {stream}")
        }
        Event::PlayStarted { conn, stream } => tracing::info!("{conn}: play started: {stream}"),
        Event::Closing { conn, reason } => tracing::info!("{conn}: closing: {reason}"),
        Event::Disconnected { conn } => tracing::debug!("{conn}: disconnected"),
        Event::Decide { request, question } => {
            tracing::debug!("{request}: asking the application: {question:?}")
        }
        Event::RecordStarted { conn, stream, path } => {
            tracing::info!("{conn}: recording {stream} to {path}")
        }
        Event::RecordStopped {
            stream,
            path,
            bytes,
            duration_ms,
            error,
        } => match error {
            None => tracing::info!(
                "recording of {stream} ended: {path}, {bytes} bytes, {} s",
                f64::from(*duration_ms) / 1000.0
            ),
            Some(e) => tracing::warn!("recording of {stream} to {path} failed: {e}"),
        },
    }
}
