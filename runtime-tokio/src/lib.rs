//! # siprtmp-tokio
//!
//! Runs a [`siprtmp_core::node::Node`] on a current-thread tokio runtime. The driver only moves
//! bytes, drained counts and timer expiry between sockets and the node; every protocol
//! decision is the node's, and carrying out its outputs is [`NodeHost`] (shared with the mio
//! and async-std drivers).
//!
//! Tasks, all on the thread that calls [`TokioDriver::run`]:
//!
//! - one **node task** owns the node. It waits (`select!`) for a stop request, a writable
//!   socket, a message from a reader, a new connection, completed file requests, or the
//!   node's deadline (`sleep_until`); then it drains whatever else is already queued and takes
//!   one [`NodeHost::turn`]: file completions, timer, outputs, one `try_write_vectored` per
//!   dirty connection with the drained count fed back.
//! - one **reader task** per connection reads into a `BytesMut` and sends the bytes to the node
//!   task over a bounded channel (a publisher faster than the node waits on the channel, so
//!   memory stays bounded), then a `Closed` message at end of stream.
//!
//! The node's UDP sockets (the SIP-RTMP gateway's SIP and RTP) are
//! [`siprtmp_driver_common::UdpExecutor`]'s: binds and vectored sends happen in the node task
//! without waiting. They are registered in a [`UdpPoll`] whose descriptor tokio's reactor
//! watches (`AsyncFd`): when it turns readable the node task drains the ready sockets straight
//! into the node, with no receive thread, channel or cross-thread wake-up in the way.
//!
//! Writes never wait: the node writes from its own queue with `try_write_vectored`, and after
//! a `WouldBlock` arms `poll_write_ready` with a per-connection waker that posts the
//! connection's id back to the node task when the socket drains. A slow player therefore
//! costs the node task nothing until its backlog passes the node's limits.
//!
//! ```no_run
//! use siprtmp_tokio::{DriverConfig, TokioDriver};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = TokioDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! driver.run().unwrap();
//! ```

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use siprtmp_core::node::{ConnId, Node, NodeConfig};
use siprtmp_driver_common::{
    bind_listener, configure_stream, FileExecutor, NodeHost, RelayLink, TcpExecutor, Transport,
    UdpExecutor, UdpPoll,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

pub use siprtmp_driver_common::{Decider, DriverConfig, Stopper, TcpStats, UdpStats};

pub mod worker;

/// Read buffer granularity: one allocation serves many reads.
const READ_CHUNK: usize = 64 * 1024;
/// Reader messages the node task may have pending before readers wait.
const CHANNEL_DEPTH: usize = 1024;
/// Messages handled per turn before the node writes (bounds latency under a flood).
const BATCH: usize = 256;

/// What reader tasks tell the node task.
enum Message {
    Received(ConnId, BytesMut),
    Closed(ConnId),
}

/// Posts a connection's id to the node task when tokio finds its socket writable again.
struct WritableWaker {
    conn: ConnId,
    tx: mpsc::UnboundedSender<ConnId>,
}

impl Wake for WritableWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A closed channel means the node task is gone: nobody to tell.
        let _ = self.tx.send(self.conn);
    }
}

/// A connection as the node task holds it; dropping it ends the reader task.
struct TokioConnection {
    stream: Arc<TcpStream>,
    /// Set right after the host names the connection, before its first write.
    writable: Option<Waker>,
    /// Set right after the host names the connection.
    reader: Option<JoinHandle<()>>,
}

impl Transport for TokioConnection {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // A few rounds at most: `try_write_vectored` clears tokio's readiness on WouldBlock,
        // so `poll_write_ready` is Pending unless the socket drained in between.
        let Some(writable) = &self.writable else {
            return Ok(0);
        };
        for _ in 0..4 {
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut cx = Context::from_waker(writable);
                    match self.stream.poll_write_ready(&mut cx) {
                        Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Err(e),
                    }
                }
                result => return result,
            }
        }
        Ok(0)
    }
}

impl Drop for TokioConnection {
    fn drop(&mut self) {
        // The reader holds the other reference to the socket; once it is cancelled the socket
        // closes.
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

/// The tokio driver around one node.
pub struct TokioDriver {
    listener: std::net::TcpListener,
    node: Node,
    config: DriverConfig,
    stop: Arc<Notify>,
    files: FileExecutor,
    udp: UdpExecutor,
    /// The UDP sockets' poll, watched by tokio's reactor.
    udp_poll: UdpPoll,
    tcp: TcpExecutor,
    /// Notified by the file, UDP and TCP threads after each batch of completions or datagrams (and
    /// by other workers when they send this one relay messages).
    files_ready: Arc<Notify>,
    decider: Option<Decider>,
    relay: Option<RelayLink>,
}

impl TokioDriver {
    /// Binds the listening socket and builds the node (the runtime is built by [`Self::run`]).
    pub fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        let listener = bind_listener(config.listen, true)?;
        Self::build(config, node_config, listener, None)
    }

    /// Builds the driver around a bound non-blocking `listener`; with `relay`, its node is
    /// one worker of a group (see [`worker`]).
    fn build(
        config: DriverConfig,
        node_config: NodeConfig,
        listener: std::net::TcpListener,
        relay: Option<RelayLink>,
    ) -> io::Result<Self> {
        let mut node = Node::new(node_config, Instant::now(), config.seed);
        let files_ready = Arc::new(Notify::new());
        if let Some(relay) = &relay {
            node = node.with_relay(relay.worker());
            // Other workers' messages wake the node task like file completions; its turn
            // feeds both.
            let notify = files_ready.clone();
            relay.set_waker(move || notify.notify_one());
        }
        let notify = files_ready.clone();
        // `notify_one` keeps a permit if the node task is busy, so no completion is missed.
        let files = FileExecutor::start(config.root.clone(), move || notify.notify_one())?;
        let (udp_poll, udp) = UdpPoll::new()?;
        let notify = files_ready.clone();
        let tcp = TcpExecutor::start(move || notify.notify_one())?;
        Ok(Self {
            listener,
            node,
            config,
            stop: Arc::new(Notify::new()),
            files,
            udp,
            udp_poll,
            tcp,
            files_ready,
            decider: None,
            relay,
        })
    }

    /// Installs the decider that answers [`siprtmp_core::node::Event::Decide`] (use with
    /// [`NodeConfig::decisions`] on).
    pub fn with_decider(mut self, decider: Decider) -> Self {
        self.decider = Some(decider);
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The UDP executor's counters (sockets open, datagrams sent and dropped...).
    pub fn udp_stats(&self) -> Arc<UdpStats> {
        self.udp.stats()
    }

    /// The TCP executor's counters (the node's own connections and listeners).
    pub fn tcp_stats(&self) -> Arc<TcpStats> {
        self.tcp.stats()
    }

    /// A handle that stops [`Self::run`], from any thread.
    pub fn stopper(&self) -> Stopper {
        let stop = self.stop.clone();
        // `notify_one` keeps a permit if the node task is not waiting yet.
        Stopper::new(move || stop.notify_one())
    }

    /// Builds a current-thread runtime and runs the node on it until stopped.
    pub fn run(self) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        runtime.block_on(self.node_task())
    }

    async fn node_task(self) -> io::Result<()> {
        let listener = TcpListener::from_std(self.listener)?;
        let send_buffer = self.config.send_buffer;
        let nodelay = self.config.tcp_nodelay;
        let mut host: NodeHost<TokioConnection> = NodeHost::new(self.node, self.config.events)
            .with_files(self.files)
            .with_udp(self.udp)
            .with_tcp(self.tcp)
            .with_decider(self.decider)
            .with_relay(self.relay);
        // SAFETY: the descriptor is the poll's own; `UdpPoll` keeps it open and never replaces
        // it while the `AsyncFd` owns the poll (it is closed only when both are dropped).
        let mut udp_poll =
            unsafe { AsyncFd::register_with_interest(self.udp_poll, Interest::READABLE)? };
        let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
        let (writable_tx, mut writable_rx) = mpsc::unbounded_channel();
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = host.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            let woke = if host.has_pending_writes() {
                // Writes left over from the last turn: let the readers run, then go on.
                tokio::select! {
                    biased;
                    _ = self.stop.notified() => Woke::Stop,
                    _ = tokio::task::yield_now() => Woke::Again,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.stop.notified() => Woke::Stop,
                    Some(conn) = writable_rx.recv() => Woke::Writable(conn),
                    Some(message) = rx.recv() => Woke::Message(message),
                    // Cleared before the drain: a datagram arriving during it raises it again.
                    Ok(mut ready) = udp_poll.readable() => {
                        ready.clear_ready();
                        Woke::Udp
                    }
                    _ = self.files_ready.notified() => Woke::Again,
                    accepted = listener.accept() => Woke::Accepted(accepted),
                    _ = &mut sleep, if armed.is_some() => Woke::Again,
                }
            };
            let now = Instant::now();
            match woke {
                Woke::Stop => {
                    tracing::info!(
                        "shutting down: closing {} connections",
                        host.connection_count()
                    );
                    // Dropping the transports cancels the reader tasks.
                    drop(host.shutdown(now));
                    return Ok(());
                }
                Woke::Again => {}
                Woke::Udp => {
                    if let Err(e) = udp_poll.get_mut().drain(&mut host, now) {
                        tracing::warn!("UDP poll: {e}");
                    }
                }
                Woke::Writable(conn) => host.writable(conn),
                Woke::Message(message) => handle(&mut host, now, message),
                Woke::Accepted(Ok((stream, peer))) => {
                    if let Err(e) = configure_stream(&stream, send_buffer, nodelay) {
                        tracing::warn!("socket options for {peer}: {e}");
                    }
                    accept(&mut host, now, stream, peer, &tx, &writable_tx);
                }
                Woke::Accepted(Err(e)) => {
                    // EMFILE and friends: back off rather than spin on the listener.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            // Take whatever else is already waiting, then write once per connection.
            while let Ok(conn) = writable_rx.try_recv() {
                host.writable(conn);
            }
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(message) => handle(&mut host, now, message),
                    Err(_) => break,
                }
            }
            host.turn(Instant::now());
            host.take_closed().for_each(drop);
        }
    }
}

/// Why the node task woke up.
enum Woke {
    Stop,
    Again,
    /// A UDP socket is readable.
    Udp,
    Writable(ConnId),
    Message(Message),
    Accepted(io::Result<(TcpStream, SocketAddr)>),
}

fn handle(host: &mut NodeHost<TokioConnection>, now: Instant, message: Message) {
    match message {
        Message::Received(conn, data) => host.received(now, conn, data),
        Message::Closed(conn) => host.peer_closed(now, conn),
    }
}

fn accept(
    host: &mut NodeHost<TokioConnection>,
    now: Instant,
    stream: TcpStream,
    peer: SocketAddr,
    tx: &mpsc::Sender<Message>,
    writable_tx: &mpsc::UnboundedSender<ConnId>,
) {
    let stream = Arc::new(stream);
    // The node names the connection; the reader and the waker need that name, so they are
    // attached once the host has it.
    let transport = TokioConnection {
        stream: stream.clone(),
        writable: None,
        reader: None,
    };
    let conn = host.accept(now, peer, transport);
    let Some(transport) = host.transport_mut(conn) else {
        return;
    };
    transport.writable = Some(Waker::from(Arc::new(WritableWaker {
        conn,
        tx: writable_tx.clone(),
    })));
    transport.reader = Some(tokio::spawn(read_loop(conn, stream, tx.clone())));
}

/// Reads `conn` until end of stream or error, sending what arrives to the node task.
async fn read_loop(conn: ConnId, stream: Arc<TcpStream>, tx: mpsc::Sender<Message>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() < READ_CHUNK / 4 {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        if let Err(e) = stream.readable().await {
            tracing::debug!("{conn}: read error: {e}");
            break;
        }
        match stream.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if tx.send(Message::Received(conn, buf.split())).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("{conn}: read error: {e}");
                break;
            }
        }
    }
    let _ = tx.send(Message::Closed(conn)).await;
}
