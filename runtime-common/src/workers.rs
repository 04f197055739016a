//! [`Workers`]: several nodes, one per thread, serving one port. Each worker is a whole
//! driver (its own event loop, node, file thread and decider) with its own listening socket;
//! the sockets share the port with `SO_REUSEPORT`, so the kernel spreads new connections over
//! the workers, and the workers share live streams through a [`RelayLink`] each.
//!
//! A driver takes part by implementing [`WorkerDriver`] besides [`Driver`] (the mio and tokio
//! drivers do).
//!
//! ```no_run
//! # fn demo<D: siprtmp_runtime_common::WorkerDriver>() -> std::io::Result<()> {
//! use siprtmp_core::node::NodeConfig;
//! use siprtmp_runtime_common::{DriverConfig, Workers};
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! // Four workers of driver `D`, without deciders.
//! let workers = Workers::start::<D>(config, NodeConfig::default(), 4, |_, _| None)?;
//! let stop = workers.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! workers.join()
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::sync_channel;
use std::thread::JoinHandle;

use siprtmp_core::node::{NodeConfig, WorkerId};

use crate::{Decider, Driver, DriverConfig, RelayLink, Stopper};

/// Pending connections each worker's socket may hold before `accept`.
const LISTEN_BACKLOG: i32 = 1024;

/// What a worker's driver is built from besides its settings.
pub struct WorkerSeat {
    /// The worker's listening socket (non-blocking, sharing its port with the other workers').
    pub listener: TcpListener,
    /// The worker's RTMPS listening socket, when [`DriverConfig::tls_listen`] asks for one
    /// (shared the same way).
    pub tls_listener: Option<TcpListener>,
    /// The worker's end of the relay (the driver makes its node a worker with
    /// [`siprtmp_core::node::Node::with_relay`], wakes its loop with
    /// [`RelayLink::set_waker`], and hosts the link with `NodeHost::with_relay`).
    pub relay: RelayLink,
}

/// A driver that can also run as one worker of a group (the rest of its interface is
/// [`Driver`]'s).
pub trait WorkerDriver: Driver + Sized {
    /// Builds the driver on the thread that will run it, around `seat`'s listener and relay
    /// (instead of binding `config.listen`).
    fn bind_worker(config: DriverConfig, node: NodeConfig, seat: WorkerSeat) -> io::Result<Self>;
}

/// The node settings of `worker` of `count`: the group's, except that each worker runs a
/// gateway of its own on the same address, so each takes its own slice of the RTP ports and
/// its share of the gateway's client limits (`GatewayNodeConfig::worker_share`); without
/// that, one worker's calls bind ports another worker's calls hold and are refused.
fn node_of_worker(node: &NodeConfig, worker: WorkerId, count: usize) -> NodeConfig {
    let mut node = node.clone();
    if let Some(gateway) = node.server.gateway.as_mut() {
        *gateway = gateway.worker_share(usize::from(worker.0), count);
    }
    node
}

/// Binds `count` non-blocking listening sockets to `addr` with `SO_REUSEPORT` (the first
/// decides the port when `addr`'s is 0).
///
/// ```
/// let listeners = siprtmp_runtime_common::bind_shared_listeners("127.0.0.1:0".parse().unwrap(), 2).unwrap();
/// assert_eq!(listeners[0].local_addr().unwrap(), listeners[1].local_addr().unwrap());
/// ```
#[cfg(unix)]
pub fn bind_shared_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let domain = socket2::Domain::for_address(addr);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Without `SO_REUSEPORT`, one listener only.
#[cfg(not(unix))]
pub fn bind_shared_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    if count > 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "several workers need SO_REUSEPORT (Unix only)",
        ));
    }
    Ok(vec![crate::bind_listener(addr, true)?])
}

/// A running group of workers.
pub struct Workers {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stoppers: Vec<Stopper>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Workers {
    /// Starts `count` workers (1 to 256) of driver `D` on `config.listen`, each on a thread of
    /// its own, and returns once every one is bound (or the first error, with the others
    /// stopped). `setup` adjusts each worker's copy of `config` (its seed is already
    /// `config.seed + index`) and returns its decider, if any.
    pub fn start<D: WorkerDriver>(
        config: DriverConfig,
        node: NodeConfig,
        count: usize,
        mut setup: impl FnMut(WorkerId, &mut DriverConfig) -> Option<Decider>,
    ) -> io::Result<Self> {
        if count == 0 || count > 256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{count} workers: between 1 and 256, please"),
            ));
        }
        let listeners = bind_shared_listeners(config.listen, count)?;
        let addr = listeners[0].local_addr()?;
        let mut tls_listeners: Vec<Option<TcpListener>> = match config.tls_listen {
            Some(tls) => bind_shared_listeners(tls, count)?
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..count).map(|_| None).collect(),
        };
        let tls_addr = match tls_listeners.first() {
            Some(Some(listener)) => Some(listener.local_addr()?),
            _ => None,
        };
        let mut workers = Self {
            addr,
            tls_addr,
            stoppers: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for (listener, relay) in listeners.into_iter().zip(RelayLink::group(count)) {
            let worker = relay.worker();
            let mut worker_config = config.clone();
            worker_config.listen = addr;
            worker_config.tls_listen = tls_addr;
            let tls_listener = tls_listeners.remove(0);
            worker_config.seed = config.seed.wrapping_add(u64::from(worker.0));
            let decider = setup(worker, &mut worker_config);
            let node = node_of_worker(&node, worker, count);
            let (ready_tx, ready) = sync_channel(1);
            // Each driver is built on the thread that runs it, so none needs to be `Send`.
            let thread = std::thread::Builder::new()
                .name(format!("worker-{}", worker.0))
                .spawn(move || {
                    let seat = WorkerSeat {
                        listener,
                        tls_listener,
                        relay,
                    };
                    let mut driver = match D::bind_worker(worker_config, node, seat) {
                        Ok(driver) => driver,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    if let Some(decider) = decider {
                        driver.set_decider(decider);
                    }
                    let _ = ready_tx.send(Ok(driver.stopper()));
                    Box::new(driver).run()
                });
            let started = match thread {
                Ok(thread) => {
                    workers.threads.push(thread);
                    ready.recv().unwrap_or_else(|_| {
                        Err(io::Error::other(format!("{worker} died while starting")))
                    })
                }
                Err(e) => Err(e),
            };
            match started {
                Ok(stopper) => workers.stoppers.push(stopper),
                Err(e) => {
                    workers.stopper().stop();
                    let _ = workers.join();
                    return Err(e);
                }
            }
        }
        Ok(workers)
    }

    /// The address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every worker's RTMPS listener is bound to, if they have one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.stoppers.len()
    }

    /// True when no worker runs (never, once started).
    pub fn is_empty(&self) -> bool {
        self.stoppers.is_empty()
    }

    /// A handle that stops every worker.
    pub fn stopper(&self) -> Stopper {
        let stoppers = self.stoppers.clone();
        Stopper::new(move || stoppers.iter().for_each(Stopper::stop))
    }

    /// Waits for every worker to return; the first error, if any.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            let outcome = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::GatewayNodeConfig;

    #[test]
    fn each_workers_gateway_binds_its_own_rtp_ports() {
        let mut node = NodeConfig::default();
        node.server.gateway = Some(GatewayNodeConfig {
            rtp_ports: (20000, 20399),
            ..GatewayNodeConfig::default()
        });
        let ports = |w: u8| {
            let n = node_of_worker(&node, WorkerId(w), 2);
            n.server.gateway.expect("a gateway").rtp_ports
        };
        assert_eq!(ports(0), (20000, 20199));
        assert_eq!(ports(1), (20200, 20399));
        // Without a gateway nothing changes.
        node.server.gateway = None;
        assert!(node_of_worker(&node, WorkerId(1), 2)
            .server
            .gateway
            .is_none());
    }
}
