//! A server under test: any of the five drivers (picked by value, [`Runtime`]) on an
//! ephemeral loopback port, in a thread, with its application events observable.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siprtmp_core::node::{Event, NodeConfig};
use siprtmp_runtime_drivers::{Decider, DriverConfig, Stopper, TcpStats, UdpStats};

/// The drivers a [`TestServer`] can run on; the conformance suite runs every scenario on each.
pub use siprtmp_runtime_drivers::Runtime;

/// Binds `runtime`'s driver (with `decider`, if any), reports its address, stopper and
/// counters over `ready`, then runs it.
fn serve(
    runtime: Runtime,
    config: DriverConfig,
    node: NodeConfig,
    decider: Option<Decider>,
    ready: std::sync::mpsc::Sender<io::Result<Ready>>,
) -> io::Result<()> {
    let mut driver = match runtime.bind(config, node) {
        Ok(driver) => driver,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    if let Some(decider) = decider {
        driver.set_decider(decider);
    }
    let _ = ready.send(driver.local_addr().map(|a| {
        (
            a,
            driver.tls_local_addr(),
            driver.stopper(),
            driver.udp_stats(),
            driver.tcp_stats(),
        )
    }));
    driver.run()
}

/// What a started driver reports: its address (and its RTMPS listener's), stopper, and UDP
/// and TCP counters.
type Ready = (
    SocketAddr,
    Option<SocketAddr>,
    Stopper,
    Arc<UdpStats>,
    Arc<TcpStats>,
);

/// Where servers started without a root of their own keep files.
fn default_root() -> PathBuf {
    crate::locate::target_dir().join("tmp/siprtmp-tests-media")
}

/// A seed for each server this process starts: servers in one test (two gateways behind one
/// registrar) must not make the same branches, tags and Call-IDs, which a proxy would take
/// for retransmissions of one another's requests.
fn next_seed() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(7);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A running server; stopped and joined on drop.
pub struct TestServer {
    /// The address the server's RTMP listener is bound to (an OS-chosen loopback port).
    pub addr: SocketAddr,
    /// The address of the RTMPS listener, when the server has one ([`Self::start_tls`]).
    pub tls_addr: Option<SocketAddr>,
    /// The driver's UDP counters (the gateway's sockets).
    pub udp: Arc<UdpStats>,
    /// The driver's counters of the node's own TCP (the gateway's SIP over TCP).
    pub tcp: Arc<TcpStats>,
    events: Receiver<Event>,
    /// Events already received while waiting for others.
    seen: Vec<Event>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
    /// `/proc/self/task/TID` of the thread that runs the driver (its node thread), where the
    /// system says.
    node_task: Option<PathBuf>,
}

impl TestServer {
    /// Starts a mio server with `node` settings and an optional `SO_SNDBUF`.
    pub fn start(node: NodeConfig, send_buffer: Option<usize>) -> Self {
        Self::start_on(Runtime::Mio, node, send_buffer)
    }

    /// Starts a server on `runtime` with `node` settings and an optional `SO_SNDBUF` (files
    /// under a shared scratch root).
    pub fn start_on(runtime: Runtime, node: NodeConfig, send_buffer: Option<usize>) -> Self {
        Self::start_on_with(runtime, node, send_buffer, default_root(), None)
    }

    /// Starts a mio server whose recorded and played files live under `root`.
    pub fn start_in(node: NodeConfig, send_buffer: Option<usize>, root: PathBuf) -> Self {
        Self::start_with(node, send_buffer, root, None)
    }

    /// Starts a mio server with files under `root` and `decider` answering its decisions.
    pub fn start_with(
        node: NodeConfig,
        send_buffer: Option<usize>,
        root: PathBuf,
        decider: Option<Decider>,
    ) -> Self {
        Self::start_on_with(Runtime::Mio, node, send_buffer, root, decider)
    }

    /// Starts a server on `runtime` with `node` settings, an optional `SO_SNDBUF`, files under
    /// `root`, and `decider` (if any) answering its decisions.
    pub fn start_on_with(
        runtime: Runtime,
        node: NodeConfig,
        send_buffer: Option<usize>,
        root: PathBuf,
        decider: Option<Decider>,
    ) -> Self {
        Self::start_configured(runtime, node, decider, |config| {
            config.send_buffer = send_buffer;
            config.root = root;
        })
    }

    /// Starts a server on `runtime` with `node` settings, `decider` (if any), and the driver
    /// settings that `configure` makes (on loopback, port 0, files under a shared root).
    ///
    /// It stops at once when asked (no shutdown grace): most tests end with far ends that are
    /// already gone, whose goodbyes nobody would answer. [`Self::start_graceful`] keeps the
    /// node's grace.
    pub fn start_configured(
        runtime: Runtime,
        mut node: NodeConfig,
        decider: Option<Decider>,
        configure: impl FnOnce(&mut DriverConfig),
    ) -> Self {
        node.server.shutdown_grace = Duration::ZERO;
        Self::start_driver(runtime, node, decider, configure)
    }

    /// A mio server with `node` settings, its shutdown grace as they say: a stop waits for
    /// the gateway's goodbyes to be answered (see [`Self::stop_within`]). `configure` adjusts
    /// the driver's settings.
    pub fn start_graceful(node: NodeConfig, configure: impl FnOnce(&mut DriverConfig)) -> Self {
        Self::start_driver(Runtime::Mio, node, None, configure)
    }

    fn start_driver(
        runtime: Runtime,
        node: NodeConfig,
        decider: Option<Decider>,
        configure: impl FnOnce(&mut DriverConfig),
    ) -> Self {
        let (tx, events) = channel();
        let mut config = DriverConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            seed: next_seed(),
            events: Some(tx),
            root: default_root(),
            ..DriverConfig::default()
        };
        configure(&mut config);
        let (ready_tx, ready) = channel();
        let (task_tx, task) = channel();
        // Each driver is built on the thread that runs it (so none needs to be `Send`); the
        // test only needs its address and stopper back.
        let thread = std::thread::Builder::new()
            .name(format!("{runtime:?} server"))
            .spawn(move || {
                // "PID/task/TID" on Linux.
                let _ = task_tx.send(std::fs::read_link("/proc/thread-self").ok());
                serve(runtime, config, node, decider, ready_tx).expect("driver run")
            })
            .expect("spawn server thread");
        let node_task = task
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .map(|task| PathBuf::from("/proc").join(task));
        let (addr, tls_addr, stopper, udp, tcp) = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("server thread started")
            .expect("bind test server");
        Self {
            addr,
            tls_addr,
            udp,
            tcp,
            events,
            seen: Vec::new(),
            stopper,
            thread: Some(thread),
            node_task,
        }
    }

    /// CPU time the driver's node thread has used (its `schedstat`), for tests that check a
    /// fault does not make the server spin; `None` where the system does not say.
    pub fn node_cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(self.node_task.as_ref()?.join("schedstat")).ok()?;
        let nanos = stat.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }

    /// Starts `workers` nodes of `runtime` (one that [`Runtime::runs_workers`]) on one port,
    /// sharing their live streams ([`siprtmp_runtime_drivers::Workers`]); each event's connection id tells which
    /// worker emitted it ([`siprtmp_core::node::ConnId::worker`]).
    pub fn start_workers(runtime: Runtime, node: NodeConfig, workers: usize) -> Self {
        Self::start_workers_with(runtime, node, workers, None)
    }

    /// [`Self::start_workers`] with an RTMPS listener too, shared by the workers, whose TLS
    /// configuration is `tls`.
    pub fn start_workers_tls(
        runtime: Runtime,
        node: NodeConfig,
        workers: usize,
        tls: siprtmp_core::tls::TlsConfig,
    ) -> Self {
        Self::start_workers_with(runtime, node, workers, Some(tls))
    }

    fn start_workers_with(
        runtime: Runtime,
        mut node: NodeConfig,
        workers: usize,
        tls: Option<siprtmp_core::tls::TlsConfig>,
    ) -> Self {
        node.server.shutdown_grace = Duration::ZERO;
        let (tx, events) = channel();
        let tls_listen = tls.as_ref().map(|_| "127.0.0.1:0".parse().unwrap());
        node.server.tls = tls;
        let config = DriverConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen,
            send_buffer: None,
            seed: next_seed(),
            events: Some(tx),
            root: default_root(),
            ..DriverConfig::default()
        };
        let group = runtime
            .start_workers(config, node, workers, |_, _| None)
            .unwrap_or_else(|e| panic!("{runtime:?} workers: {e}"));
        let (addr, tls_addr, stopper) =
            (group.local_addr(), group.tls_local_addr(), group.stopper());
        let thread = std::thread::Builder::new()
            .name(format!("{runtime:?} workers"))
            .spawn(move || group.join().expect("workers run"))
            .expect("spawn workers thread");
        Self {
            addr,
            tls_addr,
            // Each worker has its own UDP counters; the group's are not gathered here.
            udp: Arc::new(UdpStats::default()),
            tcp: Arc::new(TcpStats::default()),
            events,
            seen: Vec::new(),
            stopper,
            thread: Some(thread),
            node_task: None,
        }
    }

    /// `rtmp://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
    }

    /// Starts a server on `runtime` with an RTMPS listener too (an OS-chosen loopback port)
    /// whose TLS configuration is `tls`.
    pub fn start_tls(
        runtime: Runtime,
        mut node: NodeConfig,
        tls: siprtmp_core::tls::TlsConfig,
    ) -> Self {
        node.server.tls = Some(tls);
        Self::start_configured(runtime, node, None, |config| {
            config.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        })
    }

    /// The RTMPS listener's address; panics without one.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr.expect("the server has an RTMPS listener")
    }

    /// `rtmps://127.0.0.1:PORT/path` (the RTMPS listener).
    pub fn tls_url(&self, path: &str) -> String {
        format!("rtmps://{}/{}", self.tls_addr(), path)
    }

    /// Waits (up to `timeout`) until `count` events matching `pred` have been seen in total.
    pub fn wait_for(
        &mut self,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seen.iter().filter(|e| pred(e)).count() >= count {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(_) => return false,
            }
        }
    }

    /// The address the node's HTTP listener (metrics, API, page, HTTP-FLV) bound, as
    /// `IP:PORT`, once it reports it (up to `timeout`); `None` when it did not start.
    pub fn http_listening(&mut self, timeout: Duration) -> Option<String> {
        self.wait_for(1, timeout, |e| {
            matches!(e, Event::HttpListening { result: Ok(_) })
        });
        self.events().iter().find_map(|e| match e {
            Event::HttpListening { result: Ok(addr) } => Some(addr.to_string()),
            _ => None,
        })
    }

    /// Every event received so far (drains pending ones first).
    pub fn events(&mut self) -> &[Event] {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        &self.seen
    }
}

impl TestServer {
    /// Stops the server, waits for its `run` to return, and gives back every event it sent
    /// (those emitted while shutting down included).
    pub fn stop(mut self) -> Vec<Event> {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
        self.events().to_vec()
    }
}

impl TestServer {
    /// Asks the server to stop (what the binary does on SIGTERM) and waits for its `run` to
    /// return, at most `limit`: how long it took, or `None` if it was still running then (it
    /// is joined in the drop).
    pub fn stop_within(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        self.stopper.stop();
        let thread = self.thread.take()?;
        while !thread.is_finished() {
            if start.elapsed() > limit {
                self.thread = Some(thread);
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("server thread");
        Some(start.elapsed())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
