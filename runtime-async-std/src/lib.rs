//! # siprtmp-runtime-async-std
//!
//! Runs a [`siprtmp_core::node::Node`] on async-std. **async-std is discontinued upstream**
//! (its authors point to `smol`; tokio is the other choice); this driver exists because the
//! benchmark compares runtimes, async-std among them. New embeddings should use the tokio or
//! mio driver.
//!
//! The shape is the tokio driver's:
//!
//! - one **node task**, run by `async_std::task::block_on` on the thread that calls
//!   [`Driver::run`], owns the node. It waits for a control message (stop, a writable
//!   socket, completed file requests), a message from a reader, a new connection from the
//!   listener, or the node's deadline; then drains whatever else is queued and takes one
//!   [`NodeHost::turn`]: file completions, timer, outputs, one vectored write per dirty
//!   connection with the drained count fed back.
//! - **reads in the node task**: it polls `poll_read` on each connection with a
//!   per-connection waker until `Pending`; the reactor calls that waker when data arrives and
//!   the waker posts the connection's id to the node task, which reads again. No reader task
//!   and no channel of bytes: a reader task on async-std's executor threads put a
//!   cross-thread hop between every read and the node, which cost a multiple of mio's CPU
//!   per gateway call (`bench-compare/results/design-figures.md`). A connection that keeps delivering is read at most [`READS_PER_TURN`] times per
//!   turn, so one publisher cannot starve the others; a fast publisher is read only as fast as
//!   the node handles its data, so memory stays bounded.
//!
//! Publishers are read on the node's read grid, as under mio (on Linux): a paced socket's
//! `SO_RCVLOWAT` keeps the reactor quiet between ticks, and at each tick
//! [`NodeReads::read_paced`] reads the connections due (async-io's `poll_read` asks the
//! socket before it looks at readiness).
//!
//! A failed accept (out of descriptors) leaves the listener unpolled until a retry time that
//! the node task's timer includes ([`AcceptBackoff`]); the node task never sleeps on it.
//!
//! Writes never wait: the node task polls `poll_write_vectored` on the shared `&TcpStream`
//! with the same kind of waker; `Pending` means async-std's reactor will call that waker when
//! the socket drains, and the waker posts the connection's id back to the node task.
//!
//! File requests (recording, video on demand) run on the driver's background file thread
//! ([`siprtmp_runtime_common::FileExecutor`], files under [`DriverConfig::root`]), never on the
//! executor; after each batch of completions it posts a control message to the node task.
//! The node's UDP sockets (the SIP-RTMP gateway's SIP and RTP) are
//! [`siprtmp_runtime_common::UdpExecutor`]'s: binds and vectored sends happen in the node task
//! without waiting. They are registered in a [`UdpPoll`] whose descriptor async-std's reactor
//! (async-io) watches; when it turns readable the node task drains the ready sockets straight
//! into the node, with no receive thread or channel in the way. The node's own TCP (the gateway's SIP over TCP) runs on
//! [`siprtmp_runtime_common::TcpExecutor`]'s I/O thread, which posts the same control message.
//! Decisions are answered by the decider installed with [`Driver::with_decider`]
//! (everything is accepted without one). On stop, every connection is closed and recordings
//! are finished before [`Driver::run`] returns.
//!
//! ```no_run
//! use siprtmp_runtime_async_std::{AsyncStdDriver, Driver, DriverConfig};
//! use siprtmp_core::node::NodeConfig;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = AsyncStdDriver::bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! Box::new(driver).run().unwrap();
//! ```

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_std::channel::{self, Receiver, Sender};
use async_std::io::{Read, Write};
use async_std::net::{TcpListener, TcpStream};
use async_std::stream::Stream;
use siprtmp_core::node::{ConnId, Node, NodeConfig};
use siprtmp_runtime_common::{
    bind_listener, configure_stream, AcceptBackoff, ConnWakers, FileExecutor, NodeHost, NodeReads,
    SocketReady, TcpExecutor, Transport, UdpExecutor, UdpPoll,
};

pub use siprtmp_runtime_common::{
    Decider, Driver, DriverConfig, Stopper, TcpStats, UdpStats, READS_PER_TURN,
};

/// What wakers, the file thread and the stopper tell the node task (never refused: the
/// channel is unbounded, each connection's waker fires at most once per `WouldBlock`, and the
/// file thread posts once per batch of completions).
enum Control {
    /// From a connection's waker.
    Socket(SocketReady),
    /// An executor (files, the node's TCP) has completions or data: the turn feeds
    /// them in.
    Executors,
    Stop,
}

/// A connection as the node task holds it; dropping it shuts the socket down.
struct AsyncStdConnection {
    stream: TcpStream,
    /// Set right after the host names the connection, before its first read or write.
    wakers: Option<ConnWakers>,
}

impl AsyncStdConnection {
    /// One non-blocking read; `Pending` leaves the readable waker with the reactor.
    fn poll_read(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Some(wakers) = &self.wakers else {
            return Poll::Pending; // named right after accept, before the first read
        };
        let mut cx = Context::from_waker(&wakers.readable);
        let mut stream = &self.stream;
        Pin::new(&mut stream).poll_read(&mut cx, buf)
    }
}

impl Transport for AsyncStdConnection {
    fn set_read_low_water(&self, bytes: usize) -> io::Result<()> {
        siprtmp_runtime_common::set_read_low_water(&self.stream, bytes)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(wakers) = &self.wakers else {
            return Ok(0);
        };
        let mut cx = Context::from_waker(&wakers.writable);
        let mut stream = &self.stream;
        match Pin::new(&mut stream).poll_write_vectored(&mut cx, bufs) {
            Poll::Ready(result) => result,
            // The reactor holds the waker: the promise `Transport` asks for.
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Drop for AsyncStdConnection {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The async-std driver around one node.
pub struct AsyncStdDriver {
    listener: std::net::TcpListener,
    /// The RTMPS listener, if any: its connections go to the node with `accept_tls`.
    tls_listener: Option<std::net::TcpListener>,
    node: Node,
    config: DriverConfig,
    control_tx: Sender<Control>,
    control_rx: Receiver<Control>,
    files: FileExecutor,
    udp: UdpExecutor,
    /// The UDP sockets' poll, watched by async-std's reactor.
    udp_poll: UdpPoll,
    tcp: TcpExecutor,
    decider: Option<Decider>,
}

impl Driver for AsyncStdDriver {
    fn bind(config: DriverConfig, node_config: NodeConfig) -> io::Result<Self> {
        config.refuse_poll_interval("async-std")?;
        let listener = bind_listener(config.listen, true)?;
        let tls_listener = config
            .tls_listen
            .map(|addr| bind_listener(addr, true))
            .transpose()?;
        let node = Node::new(node_config, Instant::now(), config.seed);
        let (control_tx, control_rx) = channel::unbounded();
        let files_tx = control_tx.clone();
        let files = FileExecutor::start(config.root.clone(), move || {
            // Closed: the driver has returned; nobody waits for the completion.
            let _ = files_tx.try_send(Control::Executors);
        })?;
        let (udp_poll, mut udp) = UdpPoll::new()?;
        udp.set_gso(config.udp_gso);
        let tcp_tx = control_tx.clone();
        let tcp = TcpExecutor::start(move || {
            let _ = tcp_tx.try_send(Control::Executors);
        })?;
        Ok(Self {
            listener,
            tls_listener,
            node,
            config,
            control_tx,
            control_rx,
            files,
            udp,
            udp_poll,
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
        let tx = self.control_tx.clone();
        Stopper::new(move || {
            // Closed: the driver has returned already.
            let _ = tx.try_send(Control::Stop);
        })
    }

    /// Runs the node task on the calling thread until stopped.
    fn run(self: Box<Self>) -> io::Result<()> {
        async_std::task::block_on((*self).node_task())
    }
}

impl AsyncStdDriver {
    async fn node_task(self) -> io::Result<()> {
        let listener = TcpListener::from(self.listener);
        let tls_listener = self.tls_listener.map(TcpListener::from);
        let send_buffer = self.config.send_buffer;
        let nodelay = self.config.tcp_nodelay;
        let mut host: NodeHost<AsyncStdConnection> = NodeHost::new(self.node, self.config.events)
            .with_files(self.files)
            .with_udp(self.udp)
            .with_tcp(self.tcp)
            .with_decider(self.decider);
        // As under mio: epoll honours SO_RCVLOWAT on Linux, so a paced publisher's waker
        // stays quiet between the grid's ticks (elsewhere it would fire per message anyway).
        if cfg!(target_os = "linux") {
            host.enable_read_pacing();
        }
        let mut udp_poll = async_io::Async::new(self.udp_poll)?;
        let mut reads = NodeReads::default();
        let mut control = pin!(self.control_rx);
        let mut incoming = pin!(listener.incoming());
        let mut tls_incoming = tls_listener.as_ref().map(|l| Box::pin(l.incoming()));
        let mut timer: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let mut armed: Option<Instant> = None;
        // Accepting paused after a failed accept (out of descriptors): the listener is not
        // polled and the timer wakes the task at the retry time; everything else goes on.
        let mut backoff = AcceptBackoff::default();
        loop {
            // The clock is read only while paused.
            let accepting = backoff.retry_at().is_none() || backoff.ready(Instant::now());
            let deadline = host.wake_at(backoff.retry_at());
            if deadline != armed {
                timer = deadline.map(|at| {
                    let wait = at.saturating_duration_since(Instant::now());
                    Box::pin(async_std::task::sleep(wait))
                        as Pin<Box<dyn Future<Output = ()> + Send>>
                });
                armed = deadline;
            }
            let pending_writes = host.has_pending_writes() || reads.has_more();
            // One wait over every source, in priority order (control first, new connections
            // before data so a busy publisher cannot starve accept).
            let woke = poll_fn(|cx| {
                if let Poll::Ready(Some(c)) = control.as_mut().poll_next(cx) {
                    return Poll::Ready(Woke::Control(c));
                }
                if accepting {
                    if let Poll::Ready(Some(a)) = incoming.as_mut().poll_next(cx) {
                        return Poll::Ready(Woke::Accepted(a, false));
                    }
                    if let Some(tls) = tls_incoming.as_mut() {
                        if let Poll::Ready(Some(a)) = tls.as_mut().poll_next(cx) {
                            return Poll::Ready(Woke::Accepted(a, true));
                        }
                    }
                }
                // Ready once per event; the next poll re-arms it (level-triggered), so a
                // datagram that arrives during the drain is seen.
                if let Poll::Ready(ready) = udp_poll.poll_readable(cx) {
                    return Poll::Ready(Woke::Udp(ready));
                }
                if let Some(t) = timer.as_mut() {
                    if t.as_mut().poll(cx).is_ready() {
                        timer = None;
                        armed = None;
                        return Poll::Ready(Woke::Again);
                    }
                }
                if pending_writes {
                    // Writes or reads left over from the last turn: go on without waiting.
                    return Poll::Ready(Woke::Again);
                }
                Poll::Pending
            })
            .await;
            let now = Instant::now();
            match woke {
                // A graceful stop first: the node says goodbye and the task serves on until
                // the answers are in or the grace is over (checked after the turn).
                Woke::Control(Control::Stop) => host.begin_stop(now),
                Woke::Control(Control::Socket(ready)) => {
                    socket_ready(&mut host, &mut reads, now, ready)
                }
                Woke::Control(Control::Executors) => {}
                Woke::Udp(ready) => {
                    // SAFETY: draining neither closes nor replaces the poll's descriptor.
                    let drained =
                        ready.and_then(|()| unsafe { udp_poll.get_mut() }.drain(&mut host, now));
                    if let Err(e) = drained {
                        tracing::warn!("UDP poll: {e}");
                    }
                }
                Woke::Again => {}
                Woke::Accepted(Ok(stream), tls) => {
                    backoff.accepted(now);
                    if let Err(e) = configure_stream(&stream, send_buffer, nodelay) {
                        tracing::warn!("socket options: {e}");
                    }
                    if let Some(conn) = accept(&mut host, now, stream, tls, &self.control_tx) {
                        // Data may be there already; reading also arms the reactor.
                        reads.read(&mut host, now, conn, AsyncStdConnection::poll_read);
                    }
                }
                // EMFILE and friends: pause accepting rather than spin on the listener (or
                // sleep, which would stall every connection).
                Woke::Accepted(Err(e), _) => {
                    backoff.failed(now, &e);
                }
            }
            // Take whatever else is already waiting, then write once per connection.
            while let Ok(c) = control.try_recv() {
                match c {
                    Control::Socket(ready) => socket_ready(&mut host, &mut reads, now, ready),
                    Control::Executors => {}
                    // Put it back for the wait above, which handles it first.
                    Control::Stop => {
                        let _ = self.control_tx.try_send(Control::Stop);
                        break;
                    }
                }
            }
            reads.again(&mut host, now, AsyncStdConnection::poll_read);
            let now = Instant::now();
            // async-io's `poll_read` asks the socket before it looks at readiness: it reads
            // a quiet paced socket too.
            reads.read_paced(&mut host, now, AsyncStdConnection::poll_read);
            host.turn(now);
            if reads.pace_sockets(&mut host, now, AsyncStdConnection::poll_read) {
                host.turn(now);
            }
            host.take_closed().for_each(drop);
            if host.stop_done(now) {
                tracing::info!(
                    "shutting down: closing {} connections",
                    host.connection_count()
                );
                // Dropping the transports shuts the sockets down, which ends the readers.
                drop(host.shutdown(now));
                return Ok(());
            }
        }
    }
}

/// Why the node task woke up.
enum Woke {
    Control(Control),
    Again,
    /// The UDP poll turned readable (or its registration failed).
    Udp(io::Result<()>),
    /// A connection accepted, on the RTMPS listener if the flag says so.
    Accepted(io::Result<TcpStream>, bool),
}

/// A waker's report: read the connection, or resume its write.
fn socket_ready(
    host: &mut NodeHost<AsyncStdConnection>,
    reads: &mut NodeReads,
    now: Instant,
    ready: SocketReady,
) {
    match ready {
        SocketReady::Readable(conn) => {
            host.wake_paced(conn);
            reads.read(host, now, conn, AsyncStdConnection::poll_read);
        }
        SocketReady::Writable(conn) => host.writable(conn),
    }
}

/// Takes an accepted connection into the host; returns its id.
fn accept(
    host: &mut NodeHost<AsyncStdConnection>,
    now: Instant,
    stream: TcpStream,
    tls: bool,
    control_tx: &Sender<Control>,
) -> Option<ConnId> {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(e) => {
            tracing::debug!("accepted a connection already gone: {e}");
            return None;
        }
    };
    let transport = AsyncStdConnection {
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
    let control_tx = control_tx.clone();
    transport.wakers = Some(ConnWakers::new(conn, move |ready| {
        // A closed channel means the node task is gone: nobody to tell.
        let _ = control_tx.try_send(Control::Socket(ready));
    }));
    Some(conn)
}
