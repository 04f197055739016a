//! # siprtmp-runtime-io-uring
//!
//! Runs a [`siprtmp_core::node::Node`] on one thread like the mio driver (one `mio::Poll` for
//! readiness, the node's timer as the poll's timeout, the UDP sockets in the same poll, the
//! file and TCP executors of [`siprtmp_runtime_common`]), but makes the system calls of a
//! wake-up in batches through io_uring ([`ring`]): the mio driver costs one system call per
//! socket and per direction, which with one RTP socket per gateway call is about four per
//! Speex frame round trip, and `sendmmsg`/`recvmmsg` cannot help across sockets.
//!
//! Per wake-up:
//!
//! 1. the poll reports ready sockets; a readable UDP socket is drained into the node at once
//!    (`recvmmsg`, as mio), the readable connections are collected;
//! 2. one io_uring submission reads every readable connection (a `recv` each into its own
//!    part of a shared read block, split off without a copy); a connection whose part came
//!    back full (or that the peer closed) is read again in a further batch with larger parts;
//! 3. [`NodeHost::turn_batched`]: the node's outputs are carried out, and one submission makes
//!    every dirty connection's vectored write and every datagram the node queued (a
//!    `sendmsg` each, head and body as two iovecs; a run of them from one socket to one
//!    destination as one UDP GSO message, as the mio driver sends them).
//!
//! Every operation carries `MSG_DONTWAIT`, and each submission waits for all of its
//! completions before returning: io_uring is used as a batched system call with the
//! semantics of the non-blocking calls it replaces (bytes taken, `WouldBlock`), so the
//! buffers it points into (the node's queued segments) need live only for the call, and
//! readiness stays epoll's. Without io_uring (an old kernel, or one where it is turned off),
//! [`Driver::bind`] fails and says why.
//!
//! Publishers are read on the node's read grid as in the mio driver
//! ([`siprtmp_runtime_common::ReadGrid`], Linux): a paced socket has `SO_RCVLOWAT` of
//! [`siprtmp_runtime_common::PACED_LOW_WATER`], so epoll stays quiet while a few messages
//! gather, and at each tick of the grid one submission reads every paced connection due
//! (where the mio driver makes a `recv` each), before the turn that writes to the players.
//!
//! Several workers run with [`siprtmp_runtime_common::Workers`] as the mio driver's do (each
//! worker its own thread, poll and ring). [`DriverConfig::poll_interval`] moderates wake-ups
//! as in the mio driver ([`siprtmp_runtime_common::WakeModeration`]): fewer wake-ups, each
//! with more connections in its batches.
//!
//! ```no_run
//! use siprtmp_runtime_io_uring::{Driver, DriverConfig, UringDriver};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = UringDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! Box::new(driver).run().unwrap();
//! ```

use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use siprtmp_core::node::{ConnId, Node, NodeConfig};
use siprtmp_core::worker_relay::WorkerId;
use siprtmp_runtime_common::mio_poll::{self, PollTokens, Watched};
use siprtmp_runtime_common::{
    bind_listener, configure_stream, set_read_low_water, AcceptBackoff, FileExecutor, NodeHost,
    RelayLink, TcpExecutor, Transport, WakeModeration,
};

pub use siprtmp_runtime_common::{Decider, Driver, DriverConfig, Stopper, TcpStats, UdpStats};

mod read_sizes;
mod ring;
pub mod worker;

use read_sizes::ReadSize;
use ring::Ring;

const LISTENER: Token = PollTokens::control(1);
const WAKER: Token = PollTokens::control(2);
const TLS_LISTENER: Token = PollTokens::control(3);
/// Read buffer granularity: one allocation serves many reads.
const READ_CHUNK: usize = 64 * 1024;

/// A connection's socket; writability comes back as a mio event. The turn's writes go
/// through the ring ([`NodeHost::turn_batched`] asks for its descriptor); the host's own
/// synchronous write (the last one before a close) is a plain `writev`.
struct UringConnection {
    socket: TcpStream,
    /// Its first part of the read block in a wake-up, from what its reads brought last time.
    read_size: ReadSize,
}

impl UringConnection {
    fn new(socket: TcpStream) -> Self {
        Self {
            socket,
            read_size: ReadSize::default(),
        }
    }
}

impl Transport for UringConnection {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.socket.write_vectored(bufs)
    }

    fn set_read_low_water(&self, bytes: usize) -> io::Result<()> {
        set_read_low_water(&self.socket, bytes)
    }
}

impl AsRawFd for UringConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// A connection to read in this wake-up.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    conn: ConnId,
    /// The peer closed: read to the end of the stream, which raises no event of its own.
    closed: bool,
    /// What earlier reads of this wake-up brought.
    so_far: usize,
    /// The connection's read size when this wake-up began (its first part).
    size: ReadSize,
}

impl PendingRead {
    fn new(conn: ConnId, closed: bool) -> Self {
        Self {
            conn,
            closed,
            so_far: 0,
            // Set when the first part is given out.
            size: ReadSize::default(),
        }
    }
}

/// The event loop around one node: mio for readiness, io_uring for the system calls.
pub struct UringDriver {
    poll: Poll,
    /// The batched system calls.
    ring: Ring,
    /// Connections to read in this wake-up, in one batch.
    readable: Vec<PendingRead>,
    /// The batch of reads being made: each connection and its part of the read block.
    reads: Vec<(PendingRead, BytesMut)>,
    /// Results of a batch.
    results: Vec<io::Result<usize>>,
    /// The connections whose reads in [`Self::read_batches`] brought bytes or their end
    /// (told to the read grid after a sweep).
    got: Vec<ConnId>,
    /// The paced connections read at a tick (kept for its allocation).
    sweep: Vec<ConnId>,
    /// The pacing changes of a turn (kept for its allocation).
    pacing_changes: Vec<(ConnId, bool)>,
    listener: TcpListener,
    /// The RTMPS listener, if any: its connections go to the node with `accept_tls`.
    tls_listener: Option<TcpListener>,
    waker: Arc<Waker>,
    host: NodeHost<UringConnection>,
    config: DriverConfig,
    read_buf: BytesMut,
    /// Set by the [`Stopper`] before it wakes the poll (the waker also reports file
    /// completions).
    stop: Arc<AtomicBool>,
    udp_stats: Arc<UdpStats>,
    tcp_stats: Arc<TcpStats>,
    /// Accepting paused after a failed accept (out of descriptors), and until when.
    accept_backoff: AcceptBackoff,
    /// What each of the poll's tokens names (the connections' tokens carry this node's ids
    /// without their worker byte).
    tokens: PollTokens,
}

impl Driver for UringDriver {
    fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        let listener = bind_listener(config.listen, true)?;
        let tls_listener = config
            .tls_listen
            .map(|addr| bind_listener(addr, true))
            .transpose()?;
        Self::build(config, node_config, listener, tls_listener, None)
    }

    fn set_decider(&mut self, decider: Decider) {
        self.host.set_decider(decider);
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref()?.local_addr().ok()
    }

    fn udp_stats(&self) -> Arc<UdpStats> {
        self.udp_stats.clone()
    }

    fn tcp_stats(&self) -> Arc<TcpStats> {
        self.tcp_stats.clone()
    }

    fn stopper(&self) -> Stopper {
        let waker = self.waker.clone();
        let stop = self.stop.clone();
        Stopper::new(move || {
            stop.store(true, Ordering::SeqCst);
            // A failed wake means the poll is gone already: nothing left to stop.
            let _ = waker.wake();
        })
    }

    fn run(self: Box<Self>) -> io::Result<()> {
        (*self).event_loop()
    }
}

impl UringDriver {
    /// Builds the driver around a bound non-blocking `listener`; with `relay`, its node is
    /// one worker of a group (see [`worker`]).
    fn build(
        config: DriverConfig,
        node_config: NodeConfig,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        relay: Option<RelayLink>,
    ) -> io::Result<Self> {
        // First, so that a system without io_uring fails before anything else starts.
        let mut ring = Ring::new()?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut tls_listener = tls_listener.map(TcpListener::from_std);
        if let Some(tls_listener) = &mut tls_listener {
            poll.registry()
                .register(tls_listener, TLS_LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut node = Node::new(node_config, Instant::now(), config.seed);
        let tokens = PollTokens::new(relay.as_ref().map_or(WorkerId(0), RelayLink::worker));
        if let Some(relay) = &relay {
            node = node.with_relay(relay.worker());
            // Other workers' messages wake the poll like file completions; the turn feeds both.
            let relay_waker = waker.clone();
            relay.set_waker(move || {
                let _ = relay_waker.wake();
            });
        }
        let files_waker = waker.clone();
        let files = FileExecutor::start(config.root.clone(), move || {
            // A failed wake means the poll is gone: nobody is waiting for the completion.
            let _ = files_waker.wake();
        })?;
        let mut udp = mio_poll::udp_executor(poll.registry())?;
        udp.set_gso(config.udp_gso);
        // The ring sends the datagrams: segmented where the executor found the system able.
        ring.set_gso(udp.gso());
        let udp_stats = udp.stats();
        let tcp_waker = waker.clone();
        let tcp = TcpExecutor::start(move || {
            let _ = tcp_waker.wake();
        })?;
        let tcp_stats = tcp.stats();
        let mut host = NodeHost::new(node, config.events.clone())
            .with_files(files)
            .with_relay(relay)
            .with_udp(udp)
            .with_tcp(tcp);
        // epoll honours SO_RCVLOWAT on Linux (the only system with io_uring).
        host.enable_read_pacing();
        Ok(Self {
            poll,
            ring,
            readable: Vec::new(),
            reads: Vec::new(),
            results: Vec::new(),
            got: Vec::new(),
            sweep: Vec::new(),
            pacing_changes: Vec::new(),
            listener,
            tls_listener,
            waker,
            host,
            udp_stats,
            tcp_stats,
            config,
            read_buf: BytesMut::zeroed(READ_CHUNK),
            stop: Arc::new(AtomicBool::new(false)),
            accept_backoff: AcceptBackoff::default(),
            tokens,
        })
    }

    /// Runs until stopped ([`Driver::run`]).
    fn event_loop(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Wake-up moderation (`--poll-interval`), as in the mio driver: fewer wake-ups, each
        // with more sockets to read and write in its batches.
        let mut moderation = WakeModeration::new(self.config.poll_interval);
        loop {
            moderation.wait_turn();
            let timeout = self
                .host
                .poll_wait(Instant::now(), self.accept_backoff.retry_at());
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            moderation.polled(|| events.iter().count(), events.capacity());
            for event in events.iter() {
                match self.tokens.decode(event.token()) {
                    // While accepting is paused the event is dropped: the retry drains the
                    // backlog.
                    Watched::Other(LISTENER) if self.accept_backoff.ready(now) => {
                        self.accept_all(now, false)
                    }
                    Watched::Other(TLS_LISTENER) if self.accept_backoff.ready(now) => {
                        self.accept_all(now, true)
                    }
                    // LISTENER while paused; WAKER: stop (checked below) or file completions
                    // (fed in by the turn).
                    Watched::Other(_) => {}
                    Watched::Udp(slot) => {
                        self.host.udp_readable(now, slot);
                    }
                    Watched::Conn(conn) => {
                        if event.is_readable() || event.is_read_closed() {
                            self.host.wake_paced(conn);
                            self.readable
                                .push(PendingRead::new(conn, event.is_read_closed()));
                        }
                        if event.is_writable() {
                            self.host.writable(conn);
                        }
                    }
                }
            }
            self.read_batches(now);
            if self.stop.load(Ordering::SeqCst) {
                // A graceful stop first: the node says goodbye and the loop serves on until
                // the answers are in or the grace is over.
                self.host.begin_stop(now);
            }
            if self.host.stop_done(now) {
                tracing::info!(
                    "shutting down: closing {} connections",
                    self.host.connection_count()
                );
                for (_, mut c) in self.host.shutdown(now) {
                    let _ = self.poll.registry().deregister(&mut c.socket);
                }
                return Ok(());
            }
            if self.accept_backoff.pause_over(now) {
                self.accept_all(now, false);
                self.accept_all(now, true);
            }
            self.read_paced(now);
            self.host.turn_batched(now, &mut self.ring);
            self.pace_sockets(now);
            self.deregister_closed();
        }
    }

    /// At a tick of the read grid, reads every paced connection due, in one batch (before the
    /// turn, so that their players are written in it). One that had nothing twice in a row
    /// is left to raise an event for its next byte (see `ReadGrid`).
    fn read_paced(&mut self, now: Instant) {
        let mut sweep = std::mem::take(&mut self.sweep);
        if self.host.paced_due(now, &mut sweep) {
            self.readable
                .extend(sweep.iter().map(|&conn| PendingRead::new(conn, false)));
            self.read_batches(now);
            self.got.sort_unstable();
            for &conn in &sweep {
                let got_bytes = self.got.binary_search(&conn).is_ok();
                self.host.paced_read(conn, got_bytes);
            }
        }
        self.sweep = sweep;
    }

    /// Sets the sockets of connections the node paced or stopped pacing in the last turn.
    /// Those back to reads as bytes arrive are read now, in one batch, with a turn for what
    /// that brings: what waited below the low-water mark raises no event of its own.
    fn pace_sockets(&mut self, now: Instant) {
        let mut changes = std::mem::take(&mut self.pacing_changes);
        self.host.pace_sockets(&mut changes);
        self.readable.extend(
            changes
                .iter()
                .filter(|&&(_, paced)| !paced)
                .map(|&(conn, _)| PendingRead::new(conn, false)),
        );
        self.pacing_changes = changes;
        if !self.readable.is_empty() {
            self.read_batches(now);
            self.host.turn_batched(now, &mut self.ring);
        }
    }

    /// Accepts every pending connection of the plain listener, or of the RTMPS one if `tls`.
    fn accept_all(&mut self, now: Instant, tls: bool) {
        loop {
            let accepted = match (tls, &self.tls_listener) {
                (false, _) => self.listener.accept(),
                (true, Some(listener)) => listener.accept(),
                (true, None) => return,
            };
            match accepted {
                Ok((socket, peer)) => {
                    self.accept_backoff.accepted(now);
                    if let Err(e) =
                        configure_stream(&socket, self.config.send_buffer, self.config.tcp_nodelay)
                    {
                        tracing::warn!("socket options for {peer}: {e}");
                    }
                    // The token carries the node's id for the connection, so register after
                    // accept.
                    let conn = if tls {
                        self.host
                            .accept_tls(now, peer, UringConnection::new(socket))
                    } else {
                        self.host.accept(now, peer, UringConnection::new(socket))
                    };
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let Some(token) = self.tokens.conn(conn) else {
                        // Another worker's id, or one too wide for this system's tokens.
                        tracing::warn!("{conn}: no poll token for {peer}");
                        self.host.peer_closed(now, conn);
                        self.host.take_closed().for_each(drop);
                        continue;
                    };
                    let registered = match self.host.transport_mut(conn) {
                        Some(c) => self
                            .poll
                            .registry()
                            .register(&mut c.socket, token, interest),
                        None => continue,
                    };
                    if let Err(e) = registered {
                        tracing::warn!("register {peer}: {e}");
                        self.host.peer_closed(now, conn);
                        // Never registered: nothing to deregister.
                        self.host.take_closed().for_each(drop);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE and friends: pause accepting (the loop wakes up at the retry time),
                // unless only this connection failed.
                Err(e) => {
                    if self.accept_backoff.failed(now, &e) {
                        return;
                    }
                }
            }
        }
    }

    /// Reads every connection of [`Self::readable`] in batches: first a part of the read
    /// block each, as large as its reads brought last time ([`ReadSize`]), one submission for
    /// all; then, for those that filled their part (more may be waiting) or whose peer closed
    /// (its end of stream raised no event of its own), [`READ_CHUNK`] parts, until each has
    /// given less than its part. As in the mio driver, a read that fills less than its buffer
    /// emptied the socket: with epoll's edge-triggered registration, data arriving later
    /// raises a new event. Each connection that got bytes or its end is listed in
    /// [`Self::got`].
    fn read_batches(&mut self, now: Instant) {
        self.got.clear();
        while !self.readable.is_empty() {
            self.reads.clear();
            for mut pending in self.readable.drain(..) {
                let Some(c) = self.host.transport_mut(pending.conn) else {
                    continue;
                };
                let part = if pending.so_far == 0 {
                    pending.size = c.read_size;
                    pending.size.part()
                } else {
                    READ_CHUNK
                };
                // `read_buf` is kept initialised to its full length, so it is zeroed once per
                // READ_CHUNK of parts handed out, not once per read.
                if self.read_buf.len() < part {
                    self.read_buf = BytesMut::zeroed(READ_CHUNK);
                }
                self.reads.push((pending, self.read_buf.split_to(part)));
            }
            let host = &mut self.host;
            let reads = self.reads.iter_mut().map(|(pending, buf)| {
                // A connection removed since it was listed cannot be: nothing ran in between.
                let fd = host
                    .transport_mut(pending.conn)
                    .map_or(-1, |c| c.as_raw_fd());
                (fd, &mut buf[..])
            });
            self.ring.recv_all(reads, &mut self.results);
            for ((mut pending, mut data), result) in
                self.reads.drain(..).zip(self.results.drain(..))
            {
                let conn = pending.conn;
                match result {
                    Ok(0) => {
                        self.got.push(conn);
                        self.host.peer_closed(now, conn);
                    }
                    Ok(n) => {
                        self.got.push(conn);
                        let full = n == data.len();
                        data.truncate(n);
                        self.host.received(now, conn, data);
                        pending.so_far += n;
                        if full || pending.closed {
                            self.readable.push(pending);
                        } else {
                            emptied(&mut self.host, pending);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if pending.so_far > 0 {
                            emptied(&mut self.host, pending);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => self.readable.push(pending),
                    Err(e) => {
                        tracing::debug!("{conn}: read error: {e}");
                        self.host.peer_closed(now, conn);
                    }
                }
            }
        }
    }

    fn deregister_closed(&mut self) {
        for (_, mut c) in self.host.take_closed() {
            let _ = self.poll.registry().deregister(&mut c.socket);
        }
    }
}

/// `pending`'s reads emptied its socket: its next first part follows what they brought.
/// Only a change costs a second look-up of the connection (a gateway client's reads
/// never change it).
fn emptied(host: &mut NodeHost<UringConnection>, pending: PendingRead) {
    let size = ReadSize::after(pending.so_far);
    if size != pending.size {
        if let Some(c) = host.transport_mut(pending.conn) {
            c.read_size = size;
        }
    }
}
