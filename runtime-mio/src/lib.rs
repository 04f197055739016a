//! # siprtmp-runtime-mio
//!
//! Runs a [`siprtmp_core::node::Node`] on one thread with one `mio::Poll`. The driver only
//! moves bytes, drained counts and timer expiry between sockets and the node; every protocol
//! decision is the node's, and everything that does not depend on mio (carrying out the
//! node's outputs, one `writev` per dirty connection) is [`siprtmp_runtime_common::NodeHost`].
//!
//! With [`DriverConfig::poll_interval`], the loop polls at most once per interval and sleeps
//! in between (wake-up moderation: fewer, fuller wake-ups, at up to the interval of latency).
//!
//! A failed `accept` (out of descriptors) pauses accepting ([`AcceptBackoff`]): the poll's
//! timeout then includes the retry time, because the connections left in the backlog raise no
//! new edge-triggered event and would otherwise wait for the next client to arrive.
//!
//! Per wake-up: read every readable socket to `WouldBlock` and feed the bytes in; mark
//! writable sockets dirty; then [`NodeHost::turn`]: feed completed file requests in, fire the
//! node's timer if due, and write each connection that has queued segments with one `writev`,
//! reporting how many bytes the kernel took.
//!
//! Publishers are read on a grid when the node asks ([`siprtmp_runtime_common::ReadGrid`],
//! Linux): their sockets get `SO_RCVLOWAT` of [`PACED_LOW_WATER`], so epoll stays quiet
//! while a few messages gather, and each tick of the players' merge window reads every
//! paced socket once, before the turn that writes to the players. One read per window
//! instead of one per message, at no added delay: the players' writes would have waited for
//! the window anyway. A paced socket that had nothing at two ticks in a row goes back to
//! raising an event per arrival until its next bytes (an idle publisher costs no reads).
//!
//! File requests (recording, video on demand) run on the driver's background file thread
//! ([`siprtmp_runtime_common::FileExecutor`], files under [`DriverConfig::root`]), which wakes
//! the poll through the same `mio::Waker` as the [`Stopper`] when requests complete.
//! The node's UDP sockets (the SIP-RTMP gateway's SIP and RTP) live in the same poll:
//! [`siprtmp_runtime_common::UdpExecutor`] registers them under UDP tokens of the poll's
//! [`PollTokens`] (which keep them apart from the connections' tokens, whatever the worker
//! number in the connection ids), and a readable one is drained straight into the node, with
//! no thread hop; sends are non-blocking vectored `sendmsg`s from the loop. The node's own
//! TCP (the gateway's SIP over TCP) runs on [`siprtmp_runtime_common::TcpExecutor`]'s I/O
//! thread, which wakes the poll through the same waker when it has events for the node.
//! Decisions ([`siprtmp_core::node::Event::Decide`]) are answered by the decider installed
//! with [`Driver::with_decider`] (everything is accepted without one). On stop, every
//! connection is closed and recordings are finished before [`Driver::run`] returns.
//!
//! Several workers (one driver per thread, sharing the port and their live streams) run with
//! [`siprtmp_runtime_common::Workers`]; see [`worker`].
//!
//! ```no_run
//! use siprtmp_runtime_mio::{Driver, DriverConfig, MioDriver};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = MioDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! Box::new(driver).run().unwrap();
//! ```

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
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

pub use siprtmp_runtime_common::{
    Decider, Driver, DriverConfig, Stopper, TcpStats, UdpStats, PACED_LOW_WATER,
};

pub mod worker;

const LISTENER: Token = PollTokens::control(1);
const WAKER: Token = PollTokens::control(2);
const TLS_LISTENER: Token = PollTokens::control(3);
/// Read buffer granularity: one allocation serves many reads.
const READ_CHUNK: usize = 64 * 1024;

/// A connection's socket; writability comes back as a mio event.
struct MioConnection(TcpStream);

impl Transport for MioConnection {
    fn set_read_low_water(&self, bytes: usize) -> io::Result<()> {
        set_read_low_water(&self.0, bytes)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // On WouldBlock, the edge-triggered WRITABLE registration reports the socket again.
        match bufs {
            // One segment (a live message to a player that keeps up): `send`, a shorter way
            // through the kernel than `writev` (no iovec array to copy in and check, no file
            // position or change notification), as nginx-rtmp writes its messages.
            [one] => self.0.write(one),
            _ => self.0.write_vectored(bufs),
        }
    }
}

/// The mio event loop around one node.
pub struct MioDriver {
    poll: Poll,
    listener: TcpListener,
    /// The RTMPS listener, if any: its connections go to the node with `accept_tls`.
    tls_listener: Option<TcpListener>,
    waker: Arc<Waker>,
    host: NodeHost<MioConnection>,
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
    /// The paced connections read at a tick (kept for its allocation).
    sweep: Vec<ConnId>,
    /// The pacing changes of a turn (kept for its allocation).
    pacing_changes: Vec<(ConnId, bool)>,
}

impl Driver for MioDriver {
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

impl MioDriver {
    /// Builds the driver around a bound non-blocking `listener`; with `relay`, its node is
    /// one worker of a group (see [`worker`]).
    fn build(
        config: DriverConfig,
        node_config: NodeConfig,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        relay: Option<RelayLink>,
    ) -> io::Result<Self> {
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
        // epoll honours SO_RCVLOWAT on Linux: elsewhere a paced socket would raise an event per
        // message anyway.
        if cfg!(target_os = "linux") {
            host.enable_read_pacing();
        }
        Ok(Self {
            poll,
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
            sweep: Vec::new(),
            pacing_changes: Vec::new(),
        })
    }

    /// Runs until stopped ([`Driver::run`]).
    fn event_loop(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Wake-up moderation (`--poll-interval`): what arrives meanwhile waits in the
        // kernel's buffers and is taken in one wake-up.
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
                            self.read_all(now, conn, event.is_read_closed());
                        }
                        if event.is_writable() {
                            self.host.writable(conn);
                        }
                    }
                }
            }
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
                    let _ = self.poll.registry().deregister(&mut c.0);
                }
                return Ok(());
            }
            if self.accept_backoff.pause_over(now) {
                self.accept_all(now, false);
                self.accept_all(now, true);
            }
            self.read_paced(now);
            self.host.turn(now);
            self.pace_sockets(now);
            self.deregister_closed();
        }
    }

    /// At a tick of the read grid, reads every paced connection (before the turn, so that
    /// their players are written in it). One that had nothing twice in a row is left to
    /// raise an event for its next byte (see `ReadGrid`).
    fn read_paced(&mut self, now: Instant) {
        let mut sweep = std::mem::take(&mut self.sweep);
        if self.host.paced_due(now, &mut sweep) {
            for &conn in &sweep {
                let got_bytes = self.read_all(now, conn, false);
                self.host.paced_read(conn, got_bytes);
            }
        }
        self.sweep = sweep;
    }

    /// Sets the sockets of connections the node paced or stopped pacing in the last turn. One
    /// back to reads as bytes arrive is read now, with a turn for what that brings: what waited
    /// below the low-water mark raises no event of its own.
    fn pace_sockets(&mut self, now: Instant) {
        let mut changes = std::mem::take(&mut self.pacing_changes);
        self.host.pace_sockets(&mut changes);
        let mut unpaced = false;
        for &(conn, paced) in &changes {
            if !paced {
                self.read_all(now, conn, false);
                unpaced = true;
            }
        }
        self.pacing_changes = changes;
        if unpaced {
            self.host.turn(now);
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
                        self.host.accept_tls(now, peer, MioConnection(socket))
                    } else {
                        self.host.accept(now, peer, MioConnection(socket))
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
                        Some(c) => self.poll.registry().register(&mut c.0, token, interest),
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

    /// Reads what `conn` has. A read that fills less than the buffer emptied the socket, so
    /// it ends the loop without the `WouldBlock` read that would prove it: with epoll's
    /// edge-triggered registration (mio's), data arriving later raises a new event. Not when
    /// the peer closed: its end of stream raised no event of its own, so it is read now.
    /// Whether anything came (bytes, or the end of the stream).
    fn read_all(&mut self, now: Instant, conn: ConnId, closed: bool) -> bool {
        let mut got = false;
        loop {
            let Some(c) = self.host.transport_mut(conn) else {
                return got;
            };
            // `read_buf` is kept initialised to its full length, so it is zeroed once per
            // READ_CHUNK of received data, not once per read.
            if self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf = BytesMut::zeroed(READ_CHUNK);
            }
            match c.0.read(&mut self.read_buf) {
                Ok(0) => {
                    self.host.peer_closed(now, conn);
                    return true;
                }
                Ok(n) => {
                    got = true;
                    let drained = n < self.read_buf.len();
                    let data = self.read_buf.split_to(n);
                    self.host.received(now, conn, data);
                    if drained && !closed && cfg!(target_os = "linux") {
                        return got;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("{conn}: read error: {e}");
                    self.host.peer_closed(now, conn);
                    return true;
                }
            }
        }
    }

    fn deregister_closed(&mut self) {
        for (_, mut c) in self.host.take_closed() {
            let _ = self.poll.registry().deregister(&mut c.0);
        }
    }
}
