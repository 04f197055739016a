//! # siprtmp-runtime-tokio
//!
//! Runs a [`siprtmp_core::node::Node`] on a current-thread tokio runtime. The driver only moves
//! bytes, drained counts and timer expiry between sockets and the node; every protocol
//! decision is the node's, and carrying out its outputs is [`NodeHost`] (shared with the mio
//! and async-std drivers).
//!
//! One **node task**, on the thread that calls [`Driver::run`], owns the node and does
//! every read and write itself. It waits (`select!`) for a stop request, a readable or
//! writable socket (ids posted by per-connection wakers), a new connection, completed file
//! requests, or the node's deadline (`sleep_until`); then it drains whatever else is already
//! queued and takes one [`NodeHost::turn`]: file completions, timer, outputs, one
//! `try_write_vectored` per dirty connection with the drained count fed back.
//!
//! Publishers are read on the node's read grid, as under mio (on Linux): a paced socket's
//! `SO_RCVLOWAT` keeps its waker quiet between ticks, and at each tick
//! [`NodeReads::read_paced`] reads the connections due with a `recv` of their own
//! (`TokioConnection::read_now`), since tokio's `try_read` would trust its record of
//! readiness, which the quiet socket never updates.
//!
//! A failed accept (out of descriptors) turns the accept branch off until a retry time that the
//! node task's timer includes ([`AcceptBackoff`]); the node task never sleeps on it.
//!
//! Reads: `poll_read_ready` with the connection's waker and `try_read`, by
//! [`NodeReads`] (at most [`READS_PER_TURN`] reads per connection per turn, so one publisher
//! cannot starve the others). A reader task per connection, as before, cost a task switch
//! and a channel message per read.
//!
//! The node's UDP sockets (the SIP-RTMP gateway's SIP and RTP) are
//! [`siprtmp_runtime_common::UdpExecutor`]'s: binds and vectored sends happen in the node task
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
//! use siprtmp_runtime_tokio::{Driver, DriverConfig, TokioDriver};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = TokioDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! Box::new(driver).run().unwrap();
//! ```

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use siprtmp_core::node::{ConnId, Node, NodeConfig};
use siprtmp_runtime_common::{
    bind_listener, configure_stream, AcceptBackoff, ConnWakers, FileExecutor, NodeHost, NodeReads,
    RelayLink, SocketReady, TcpExecutor, Transport, UdpExecutor, UdpPoll,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

pub use siprtmp_runtime_common::{
    Decider, Driver, DriverConfig, Stopper, TcpStats, UdpStats, READS_PER_TURN,
};

pub mod worker;

/// A connection as the node task holds it; dropping it closes the socket.
struct TokioConnection {
    stream: TcpStream,
    /// Set right after the host names the connection, before its first read or write.
    wakers: Option<ConnWakers>,
}

impl TokioConnection {
    /// One non-blocking read; `Pending` leaves the readable waker with tokio.
    fn poll_read(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Some(wakers) = &self.wakers else {
            return Poll::Pending; // named right after accept, before the first read
        };
        let mut cx = Context::from_waker(&wakers.readable);
        loop {
            match self.stream.poll_read_ready(&mut cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            match self.stream.try_read(buf) {
                // Readiness cleared: the next `poll_read_ready` leaves the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    /// One read of whatever the socket holds, asked of the socket itself: tokio's `try_read`
    /// would answer `WouldBlock` unread while its record of the socket says not ready, as it
    /// does for a paced socket, whose low-water mark keeps the reactor quiet. `Pending` when
    /// nothing is there (the waker stays with tokio as it was).
    fn read_now(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match siprtmp_runtime_common::read_now(&self.stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            result => Poll::Ready(result),
        }
    }
}

impl Transport for TokioConnection {
    fn set_read_low_water(&self, bytes: usize) -> io::Result<()> {
        siprtmp_runtime_common::set_read_low_water(&self.stream, bytes)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // A few rounds at most: `try_write_vectored` clears tokio's readiness on WouldBlock,
        // so `poll_write_ready` is Pending unless the socket drained in between.
        let Some(wakers) = &self.wakers else {
            return Ok(0);
        };
        for _ in 0..4 {
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut cx = Context::from_waker(&wakers.writable);
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

/// The tokio driver around one node.
pub struct TokioDriver {
    listener: std::net::TcpListener,
    /// The RTMPS listener, if any.
    tls_listener: Option<std::net::TcpListener>,
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

/// The runtime itself is built by [`Driver::run`], on the thread that runs the node.
impl Driver for TokioDriver {
    fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        let listener = bind_listener(config.listen, true)?;
        let tls_listener = config
            .tls_listen
            .map(|addr| bind_listener(addr, true))
            .transpose()?;
        Self::build(config, node_config, listener, tls_listener, None)
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
        // `notify_one` keeps a permit if the node task is not waiting yet.
        Stopper::new(move || stop.notify_one())
    }

    /// Builds a current-thread runtime and runs the node on it until stopped.
    fn run(self: Box<Self>) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        runtime.block_on((*self).node_task())
    }
}

impl TokioDriver {
    /// Builds the driver around a bound non-blocking `listener`; with `relay`, its node is
    /// one worker of a group (see [`worker`]).
    fn build(
        config: DriverConfig,
        node_config: NodeConfig,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        relay: Option<RelayLink>,
    ) -> io::Result<Self> {
        config.refuse_poll_interval("tokio")?;
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
        let (udp_poll, mut udp) = UdpPoll::new()?;
        udp.set_gso(config.udp_gso);
        let notify = files_ready.clone();
        let tcp = TcpExecutor::start(move || notify.notify_one())?;
        Ok(Self {
            listener,
            tls_listener,
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

    async fn node_task(self) -> io::Result<()> {
        let listener = TcpListener::from_std(self.listener)?;
        let tls_listener = self.tls_listener.map(TcpListener::from_std).transpose()?;
        let send_buffer = self.config.send_buffer;
        let nodelay = self.config.tcp_nodelay;
        let mut host: NodeHost<TokioConnection> = NodeHost::new(self.node, self.config.events)
            .with_files(self.files)
            .with_udp(self.udp)
            .with_tcp(self.tcp)
            .with_decider(self.decider)
            .with_relay(self.relay);
        // As under mio: epoll honours SO_RCVLOWAT on Linux, so a paced publisher's waker
        // stays quiet between the grid's ticks (elsewhere it would fire per message anyway).
        if cfg!(target_os = "linux") {
            host.enable_read_pacing();
        }
        // SAFETY: the descriptor is the poll's own; `UdpPoll` keeps it open and never replaces
        // it while the `AsyncFd` owns the poll (it is closed only when both are dropped).
        let mut udp_poll =
            unsafe { AsyncFd::register_with_interest(self.udp_poll, Interest::READABLE)? };
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let mut reads = NodeReads::default();
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        // Accepting paused after a failed accept (out of descriptors): the accept branch is off
        // and the timer wakes the task at the retry time; everything else goes on.
        let mut backoff = AcceptBackoff::default();
        loop {
            // The clock is read only while paused.
            let accepting = backoff.retry_at().is_none() || backoff.ready(Instant::now());
            let deadline = host.wake_at(backoff.retry_at());
            if deadline != armed {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            let woke = if host.has_pending_writes() || reads.has_more() {
                // Writes or reads left over from the last turn: let the others run, then go on.
                tokio::select! {
                    biased;
                    _ = self.stop.notified() => Woke::Stop,
                    _ = tokio::task::yield_now() => Woke::Again,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.stop.notified() => Woke::Stop,
                    Some(ready) = ready_rx.recv() => Woke::Socket(ready),
                    // Cleared before the drain: a datagram arriving during it raises it again.
                    Ok(mut ready) = udp_poll.readable() => {
                        ready.clear_ready();
                        Woke::Udp
                    }
                    _ = self.files_ready.notified() => Woke::Again,
                    accepted = listener.accept(), if accepting => Woke::Accepted(accepted, false),
                    accepted = accept_tls(&tls_listener), if accepting => Woke::Accepted(accepted, true),
                    _ = &mut sleep, if armed.is_some() => Woke::Again,
                }
            };
            let now = Instant::now();
            match woke {
                // A graceful stop first: the node says goodbye and the task serves on until
                // the answers are in or the grace is over (checked after the turn).
                Woke::Stop => host.begin_stop(now),
                Woke::Again => {}
                Woke::Udp => {
                    if let Err(e) = udp_poll.get_mut().drain(&mut host, now) {
                        tracing::warn!("UDP poll: {e}");
                    }
                }
                Woke::Socket(ready) => socket_ready(&mut host, &mut reads, now, ready),
                Woke::Accepted(Ok((stream, peer)), tls) => {
                    backoff.accepted(now);
                    if let Err(e) = configure_stream(&stream, send_buffer, nodelay) {
                        tracing::warn!("socket options for {peer}: {e}");
                    }
                    if let Some(conn) = accept(&mut host, now, stream, peer, tls, &ready_tx) {
                        // Data may be there already; reading also arms tokio's waker.
                        reads.read(&mut host, now, conn, TokioConnection::poll_read);
                    }
                }
                // EMFILE and friends: pause accepting rather than spin on the listener (or
                // sleep, which would stall every connection).
                Woke::Accepted(Err(e), _) => {
                    backoff.failed(now, &e);
                }
            }
            // Take whatever else is already waiting, then write once per connection.
            while let Ok(ready) = ready_rx.try_recv() {
                socket_ready(&mut host, &mut reads, now, ready);
            }
            reads.again(&mut host, now, TokioConnection::poll_read);
            let now = Instant::now();
            reads.read_paced(&mut host, now, TokioConnection::read_now);
            host.turn(now);
            if reads.pace_sockets(&mut host, now, TokioConnection::read_now) {
                host.turn(now);
            }
            host.take_closed().for_each(drop);
            if host.stop_done(now) {
                tracing::info!(
                    "shutting down: closing {} connections",
                    host.connection_count()
                );
                drop(host.shutdown(now));
                return Ok(());
            }
        }
    }
}

/// Why the node task woke up.
enum Woke {
    Stop,
    Again,
    /// A UDP socket is readable.
    Udp,
    Socket(SocketReady),
    /// A connection accepted, on the RTMPS listener if the flag says so.
    Accepted(io::Result<(TcpStream, SocketAddr)>, bool),
}

/// The next connection on the RTMPS listener; never, without one.
async fn accept_tls(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// A waker's report: read the connection, or resume its write.
fn socket_ready(
    host: &mut NodeHost<TokioConnection>,
    reads: &mut NodeReads,
    now: Instant,
    ready: SocketReady,
) {
    match ready {
        SocketReady::Readable(conn) => {
            host.wake_paced(conn);
            reads.read(host, now, conn, TokioConnection::poll_read);
        }
        SocketReady::Writable(conn) => host.writable(conn),
    }
}

/// Takes an accepted connection into the host; returns its id.
fn accept(
    host: &mut NodeHost<TokioConnection>,
    now: Instant,
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    ready_tx: &mpsc::UnboundedSender<SocketReady>,
) -> Option<ConnId> {
    let transport = TokioConnection {
        stream,
        wakers: None,
    };
    let conn = if tls {
        host.accept_tls(now, peer, transport)
    } else {
        host.accept(now, peer, transport)
    };
    let transport = host.transport_mut(conn)?;
    // The node names the connection; the wakers need that name.
    let ready_tx = ready_tx.clone();
    transport.wakers = Some(ConnWakers::new(conn, move |ready| {
        // A closed channel means the node task is gone: nobody to tell.
        let _ = ready_tx.send(ready);
    }));
    Some(conn)
}
