//! # siprtmp-runtime-std-threads
//!
//! Runs a [`siprtmp_core::node::Node`] with blocking std sockets and no async anywhere:
//!
//! - an **acceptor thread** (two with an RTMPS listener) blocks in `accept` and hands each
//!   connection to the node thread
//!   (after a failed accept, out of descriptors, it sleeps until [`AcceptBackoff`]'s retry
//!   time: it has nothing else to do);
//! - a **reader thread** per connection blocks in `read` and sends the bytes to the node
//!   thread over a bounded `std::sync::mpsc` channel; a publisher's reader, paced by the node,
//!   waits in each read for the next tick of its interval or for much data ([`read_pace`]);
//! - a **writer thread** per connection blocks in `write_all` on batches the node thread
//!   copies out of the connection's queue, and reports each written batch back as a drained
//!   count (reader, writer and node thread share the one socket: one descriptor a
//!   connection);
//! - the **node thread** (the caller of [`Driver::run`]) owns the node: it waits on the
//!   channel with `recv_timeout` until the node's deadline, feeds each message in, and hands
//!   each connection with queued bytes its next batch;
//! - a **file thread** ([`siprtmp_runtime_common::FileExecutor`], files under
//!   [`DriverConfig::root`]) runs the node's file requests (recording, video on demand) and,
//!   after each batch of completions, posts a wake-up on the node thread's channel; the node
//!   thread feeds the completions in on its next turn;
//! - the node's UDP sockets and its own TCP (the SIP-RTMP gateway's SIP and RTP) run on the
//!   [`siprtmp_runtime_common::UdpExecutor`] and [`siprtmp_runtime_common::TcpExecutor`]
//!   threads, which post the same wake-up.
//!
//! Decisions are answered on the node thread by the decider installed with
//! [`Driver::with_decider`] (everything is accepted without one). On stop, every
//! connection is closed and recordings are finished before [`Driver::run`] returns.
//!
//! A slow reader blocks only its own writer thread. The node counts the batch in flight as
//! still queued until the writer reports it written, so its backpressure (drop to keyframes,
//! disconnect past the hard limit) sees the true backlog, exactly as under the event-loop
//! drivers. Writer threads get the node's queued segments themselves
//! ([`siprtmp_core::node::Node::queued_segments`]: shared `Bytes`, a reference count each),
//! so no byte is copied on the way out; the model's price is a thread hop per batch and a
//! pair of threads per connection.
//!
//! ```no_run
//! use siprtmp_runtime_std_threads::{Driver, DriverConfig, ThreadsDriver};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = ThreadsDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! Box::new(driver).run().unwrap();
//! ```

mod read_pace;
mod workers;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use read_pace::ReadPace;
use siprtmp_core::node::{ConnId, Input, Node, NodeConfig, Output};
use siprtmp_runtime_common::{
    bind_listener, configure_stream, shutdown_stream, AcceptBackoff, EventRouter, FileExecutor,
    TcpExecutor, UdpExecutor, MAX_IOVECS, SHUTDOWN_FILE_GRACE,
};
use workers::{spawn_reader, spawn_writer, Batch, Job, Message};

pub use siprtmp_runtime_common::{Decider, Driver, DriverConfig, Stopper, TcpStats, UdpStats};

/// Messages the node thread may have pending before readers wait.
const CHANNEL_DEPTH: usize = 1024;
/// Messages handled per turn before the node thread writes.
const BATCH: usize = 256;
/// Largest batch copied to a writer thread at once.
const WRITE_BATCH: usize = 256 * 1024;
/// Largest tail written on close.
const CLOSE_TAIL: usize = 64 * 1024;

/// A connection as the node thread holds it.
struct Connection {
    /// The socket, shared with the reader and the writer: for shutting it down under them.
    stream: Arc<TcpStream>,
    jobs: Sender<Job>,
    /// Bytes handed to the writer and not yet reported written.
    in_flight: usize,
    /// On the dirty list already.
    dirty: bool,
    /// How often the reader thread reads (the node paces publishers).
    pace: Arc<ReadPace>,
    /// The reader's, then the writer's.
    threads: [JoinHandle<()>; 2],
}

/// The thread-per-connection driver around one node.
pub struct ThreadsDriver {
    listener: TcpListener,
    /// The RTMPS listener, if any: its connections go to the node with `accept_tls`.
    tls_listener: Option<TcpListener>,
    node: Node,
    config: DriverConfig,
    tx: SyncSender<Message>,
    rx: Receiver<Message>,
    stop: Arc<AtomicBool>,
    files: FileExecutor,
    udp: UdpExecutor,
    tcp: TcpExecutor,
    decider: Option<Decider>,
}

impl Driver for ThreadsDriver {
    fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        config.refuse_poll_interval("threads")?;
        let listener = bind_listener(config.listen, false)?;
        let tls_listener = config
            .tls_listen
            .map(|addr| bind_listener(addr, false))
            .transpose()?;
        let mut node = Node::new(node_config, Instant::now(), config.seed);
        // A paced reader's blocking read waits for its tick by SO_RCVTIMEO and for much data
        // by SO_RCVLOWAT (`read_pace`); the latter is set on Linux only, and elsewhere a read
        // would return at the first byte anyway.
        if cfg!(target_os = "linux") {
            node.enable_read_pacing();
        }
        let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
        let files_tx = tx.clone();
        let files = FileExecutor::start(config.root.clone(), move || {
            // A full channel means the node thread has messages to handle and takes a turn
            // (feeding completions in) after them anyway; a closed one, that it has gone.
            let _ = files_tx.try_send(Message::Executors);
        })?;
        let udp_tx = tx.clone();
        let mut udp = UdpExecutor::start(move || {
            // As for files: a full channel means a turn is coming anyway.
            let _ = udp_tx.try_send(Message::Executors);
        })?;
        udp.set_gso(config.udp_gso);
        let tcp_tx = tx.clone();
        let tcp = TcpExecutor::start(move || {
            let _ = tcp_tx.try_send(Message::Executors);
        })?;
        Ok(Self {
            listener,
            tls_listener,
            node,
            config,
            tx,
            rx,
            stop: Arc::new(AtomicBool::new(false)),
            files,
            udp,
            tcp,
            decider: None,
        })
    }

    fn set_decider(&mut self, decider: Decider) {
        self.decider = Some(decider);
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref()?.local_addr().ok()
    }

    fn udp_stats(&self) -> Arc<UdpStats> {
        self.udp.stats()
    }

    fn tcp_stats(&self) -> Arc<TcpStats> {
        self.tcp.stats()
    }

    fn stopper(&self) -> Stopper {
        let stop = self.stop.clone();
        let tx = self.tx.clone();
        Stopper::new(move || {
            stop.store(true, Ordering::SeqCst);
            // A full channel means the node thread is busy and will see the flag anyway.
            let _ = tx.try_send(Message::Stop);
        })
    }

    /// Runs the node on the calling thread until stopped.
    fn run(self: Box<Self>) -> io::Result<()> {
        (*self).run_node()
    }
}

impl ThreadsDriver {
    /// [`Driver::run`].
    fn run_node(self) -> io::Result<()> {
        let options = (self.config.send_buffer, self.config.tcp_nodelay);
        let mut acceptors = Vec::new();
        for (listener, tls) in [(Some(self.listener), false), (self.tls_listener, true)] {
            let Some(listener) = listener else {
                continue;
            };
            let addr = listener.local_addr()?;
            let tx = self.tx.clone();
            let stop = self.stop.clone();
            let name = if tls { "rtmps-accept" } else { "rtmp-accept" };
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || accept_loop(listener, tls, tx, stop, options))?;
            acceptors.push((addr, thread));
        }
        let mut node_thread = NodeThread {
            node: self.node,
            connections: HashMap::new(),
            dirty: Vec::new(),
            tx: self.tx,
            files: self.files,
            udp: self.udp,
            tcp: self.tcp,
            router: EventRouter::new(self.config.events, self.decider),
            epoch: Instant::now(),
        };
        node_thread.run(&self.rx, &self.stop);
        let connections = std::mem::take(&mut node_thread.connections);
        tracing::info!("shutting down: closing {} connections", connections.len());
        let mut threads = Vec::new();
        let now = Instant::now();
        for (conn, c) in connections {
            shutdown_stream(&*c.stream);
            threads.extend(c.threads);
            node_thread.node.handle(now, Input::Closed { conn });
        }
        // What the closes ask for: file requests queued, the gateway's SIP goodbyes sent once.
        node_thread.process_outputs(now);
        // Recordings end with the connections: let their last writes and metadata land.
        let NodeThread {
            mut node,
            mut files,
            mut router,
            ..
        } = node_thread;
        files.finish(&mut node, &mut router, SHUTDOWN_FILE_GRACE);
        // Dropping the receiver releases an acceptor blocked on a full channel.
        drop(self.rx);
        // Wake the acceptors out of `accept`; they see the stop flag.
        for (addr, acceptor) in acceptors {
            if wake_acceptor(addr) {
                let _ = acceptor.join();
            }
        }
        // Shut down sockets make both workers return promptly.
        for thread in threads {
            let _ = thread.join();
        }
        Ok(())
    }
}

/// Connects to the listener so that a blocked `accept` returns.
fn wake_acceptor(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok()
}

/// Accepts on `listener` (the RTMPS one if `tls`) until stopped.
fn accept_loop(
    listener: TcpListener,
    tls: bool,
    tx: SyncSender<Message>,
    stop: Arc<AtomicBool>,
    (send_buffer, nodelay): (Option<usize>, bool),
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        match accepted {
            Ok((stream, peer)) => {
                backoff.accepted(now);
                if let Err(e) = configure_stream(&stream, send_buffer, nodelay) {
                    tracing::warn!("socket options for {peer}: {e}");
                }
                if tx.send(Message::Accepted(stream, peer, tls)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: this thread only accepts, so it pauses by sleeping (the
                // connections already open have threads of their own).
                if backoff.failed(now, &e) {
                    if let Some(at) = backoff.retry_at() {
                        std::thread::sleep(at.saturating_duration_since(now));
                    }
                }
            }
        }
    }
}

/// The node and what the node thread knows about each connection.
struct NodeThread {
    node: Node,
    connections: HashMap<ConnId, Connection>,
    dirty: Vec<ConnId>,
    /// Handed to new reader and writer threads.
    tx: SyncSender<Message>,
    /// Runs the node's file requests; wakes this thread with [`Message::Executors`].
    files: FileExecutor,
    /// The node's UDP sockets; wakes this thread with [`Message::Executors`] too.
    udp: UdpExecutor,
    /// The node's own TCP (the gateway's SIP over TCP); wakes this thread the same way.
    tcp: TcpExecutor,
    /// Logs events, answers decisions, forwards events to the embedding application.
    router: EventRouter,
    /// The origin of the paced readers' common grid.
    epoch: Instant,
}

impl NodeThread {
    fn run(&mut self, rx: &Receiver<Message>, stop: &AtomicBool) {
        let mut stopping = false;
        loop {
            if stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                if !stopping {
                    // A graceful stop first: the node says goodbye (sent by this turn's
                    // outputs) and the thread serves on until the answers are in or the
                    // grace is over. The acceptors stop at the flag.
                    stopping = true;
                    tracing::info!(
                        "stopping: closing {} connections, waiting for the gateway's goodbyes",
                        self.connections.len()
                    );
                    self.node.handle(now, Input::Shutdown);
                    self.process_outputs(now);
                    self.flush_dirty(now);
                    self.process_outputs(now);
                }
                if self.node.is_drained(now) {
                    return;
                }
            }
            let first = match self.node.poll_timeout() {
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(message) => Some(message),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match rx.recv() {
                    Ok(message) => Some(message),
                    Err(_) => return,
                },
            };
            let now = Instant::now();
            if let Some(message) = first {
                self.handle(now, message);
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok(message) => self.handle(now, message),
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            self.files.feed(&mut self.node, now);
            self.udp.feed(&mut self.node, now);
            self.tcp.feed(&mut self.node, now);
            if self.node.poll_timeout().is_some_and(|d| d <= now) {
                self.node.handle(now, Input::Timeout);
            }
            self.process_outputs(now);
            self.flush_dirty(now);
            self.process_outputs(now);
        }
    }

    fn handle(&mut self, now: Instant, message: Message) {
        match message {
            Message::Accepted(stream, peer, tls) => self.accept(now, stream, peer, tls),
            Message::Received(conn, data) => {
                if self.connections.contains_key(&conn) {
                    self.node.handle(now, Input::Received { conn, data });
                }
            }
            Message::Closed(conn) | Message::WriteFailed(conn) => self.remove(now, conn, true),
            Message::Drained(conn, bytes) => {
                if let Some(c) = self.connections.get_mut(&conn) {
                    c.in_flight -= bytes;
                    self.node.handle(now, Input::Drained { conn, bytes });
                    if self.node.queued_bytes(conn) > 0 {
                        self.mark_dirty(conn);
                    }
                }
            }
            // The loop checks the flag.
            Message::Stop => {}
            // The turn feeds completions in.
            Message::Executors => {}
        }
    }

    fn accept(&mut self, now: Instant, stream: TcpStream, peer: SocketAddr, tls: bool) {
        let stream = Arc::new(stream);
        let conn = if tls {
            self.node.accept_tls(now, peer)
        } else {
            self.node.accept(now, peer)
        };
        let (jobs, job_rx) = mpsc::channel();
        let pace = Arc::new(ReadPace::new(self.epoch));
        let reader = spawn_reader(conn, stream.clone(), self.tx.clone(), pace.clone());
        let threads = reader.and_then(|reader| {
            let writer = spawn_writer(conn, stream.clone(), job_rx, self.tx.clone());
            if writer.is_err() {
                shutdown_stream(&*stream);
            }
            Ok([reader, writer?])
        });
        match threads {
            Ok(threads) => {
                tracing::debug!("{conn}: accepted {peer}");
                self.connections.insert(
                    conn,
                    Connection {
                        stream,
                        jobs,
                        in_flight: 0,
                        dirty: false,
                        pace,
                        threads,
                    },
                );
            }
            Err(e) => {
                tracing::warn!("{peer}: cannot start connection threads: {e}");
                self.node.handle(now, Input::Closed { conn });
            }
        }
    }

    fn process_outputs(&mut self, now: Instant) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { conn } => self.mark_dirty(conn),
                Output::Close { conn } => self.close(now, conn),
                Output::File(request) => self.files.submit(request),
                Output::Udp(command) => self.udp.execute(&mut self.node, now, command),
                Output::Tcp(command) => self.tcp.execute(command),
                Output::Event(event) => self.router.route(&mut self.node, now, event),
                // The reader takes it at its next read.
                Output::ReadPacing { conn, every } => {
                    if let Some(c) = self.connections.get(&conn) {
                        c.pace.set(every);
                    }
                }
                // This driver runs one node, never a worker of a group: nothing is relayed.
                Output::Relay(_) => {}
                // The enum grows: an output this driver does not know is one it cannot do.
                other => tracing::warn!("an output this driver does not carry out: {other:?}"),
            }
        }
        // The datagrams of this batch, a socket's run in one call.
        self.udp.flush();
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
            let Some(c) = self.connections.get_mut(&conn) else {
                continue;
            };
            c.dirty = false;
            // One batch in flight per connection: the writer reports it, then gets the next.
            if c.in_flight > 0 {
                continue;
            }
            let batch = queued_batch(&self.node, conn, WRITE_BATCH);
            if batch.is_empty() {
                continue;
            }
            c.in_flight = batch.len();
            if c.jobs.send(Job::Write(batch)).is_err() {
                self.remove(now, conn, true);
            }
        }
        // Keep the list's allocation for the next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// The node's `Close`: the writer sends what is left if it is idle, else the socket is
    /// shut down at once (a writer blocked on a peer that does not read would never get to it).
    fn close(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.connections.get(&conn) else {
            return;
        };
        // The writer shuts the socket down after its last write; otherwise do it here.
        let handed_over = c.in_flight == 0 && {
            let tail = queued_batch(&self.node, conn, CLOSE_TAIL);
            c.jobs.send(Job::Close(tail)).is_ok()
        };
        self.remove(now, conn, !handed_over);
    }

    /// Forgets `conn` and tells the node. Its threads end on their own: the reader at the
    /// shutdown or end of stream, the writer when its job sender drops (or after its last job).
    fn remove(&mut self, now: Instant, conn: ConnId, shutdown: bool) {
        if let Some(c) = self.connections.remove(&conn) {
            if shutdown {
                shutdown_stream(&*c.stream);
            }
            self.node.handle(now, Input::Closed { conn });
        }
    }
}

/// Up to `max` bytes from the front of the connection's queue, as shared segments (the last
/// one sliced if it crosses `max`): the writer thread gets the node's own `Bytes`, not a copy.
fn queued_batch(node: &Node, conn: ConnId, max: usize) -> Batch {
    let mut batch = Batch::default();
    for segment in node.queued_segments(conn).take(MAX_IOVECS) {
        let room = max - batch.len();
        if segment.len() <= room {
            batch.push(segment.clone());
        } else {
            batch.push(segment.slice(..room));
        }
        if batch.len() == max {
            break;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with the handshake's S0+S1+S2 (3,073 bytes) queued for one connection.
    fn node_with_queued_handshake() -> (Node, ConnId) {
        let now = Instant::now();
        let mut node = Node::new(NodeConfig::default(), now, 1);
        let conn = node.accept(now, "127.0.0.1:50000".parse().unwrap());
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        node.handle(
            now,
            Input::Received {
                conn,
                data: c0c1.as_slice().into(),
            },
        );
        (node, conn)
    }

    #[test]
    fn a_batch_is_the_front_of_the_queue_cut_at_its_limit() {
        let (node, conn) = node_with_queued_handshake();
        let queued: Vec<u8> = node
            .queued_segments(conn)
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(queued.len(), 3073);
        for max in [1, 1000, 1537, 3073, 10_000] {
            let batch = queued_batch(&node, conn, max);
            let bytes: Vec<u8> = batch.segments().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(batch.len(), max.min(3073));
            assert_eq!(bytes, queued[..max.min(3073)], "max {max}");
        }
    }
}
