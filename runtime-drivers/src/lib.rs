//! # siprtmp-runtime-drivers
//!
//! Every siprtmp driver behind one value: [`Runtime`] names a driver (mio, tokio, threads,
//! async-std, io-uring), [`Runtime::bind`] binds it as a [`Driver`] object, and [`Runtime::start_workers`]
//! starts a group of workers on it. The binary's `--runtime` and the test harness pick a
//! driver this way, by value; what differs between the drivers stays behind the [`Driver`]
//! trait of `siprtmp-runtime-common`.
//!
//! This is a crate of its own because it depends on all five drivers, which all depend on
//! `siprtmp-runtime-common` (so the choice cannot live there), and both the binary and the
//! test harness need it (neither can depend on the other).
//!
//! The choice costs one dynamic call per accessor at start and one into [`Driver::run`]; the
//! event loop that `run` enters is the driver's own, with no dynamic dispatch per event.
//!
//! ```no_run
//! use siprtmp_core::node::NodeConfig;
//! use siprtmp_runtime_drivers::{DriverConfig, Runtime};
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let driver = Runtime::Tokio.bind(config, NodeConfig::default()).unwrap();
//! let stop = driver.stopper();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.stop(); });
//! driver.run().unwrap();
//! ```

use std::io;

use siprtmp_core::node::NodeConfig;
use siprtmp_core::worker_relay::WorkerId;
use siprtmp_runtime_async_std::AsyncStdDriver;
use siprtmp_runtime_io_uring::UringDriver;
use siprtmp_runtime_mio::MioDriver;
use siprtmp_runtime_std_threads::ThreadsDriver;
use siprtmp_runtime_tokio::TokioDriver;

pub use siprtmp_runtime_common::{
    client_config, crypto_provider, load_certified_key, load_roots, server_config, Decider, Driver,
    DriverConfig, ReloadableCert, Stopper, TcpStats, TlsFiles, TlsLoadError, TlsRoots, UdpStats,
    WorkerDriver, Workers,
};

/// Which event loop runs the node. (With the `clap` feature, a `clap::ValueEnum`: the
/// `--runtime` flag's values are [`Runtime::name`]s, their help the lines below.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Runtime {
    /// One thread, one mio Poll.
    Mio,
    /// A current-thread tokio runtime.
    Tokio,
    /// Blocking sockets: a reader and a writer thread per connection, one node thread.
    Threads,
    /// async-std (discontinued upstream; kept for the runtime comparison).
    AsyncStd,
    /// One thread, one mio Poll, the system calls of each wake-up batched through io_uring
    /// (Linux 5.19 and newer, or from 5.6 without the cooperative task-run setting).
    IoUring,
}

impl Runtime {
    /// Every driver.
    pub const ALL: [Runtime; 5] = [
        Runtime::Mio,
        Runtime::Tokio,
        Runtime::Threads,
        Runtime::AsyncStd,
        Runtime::IoUring,
    ];

    /// The name the binary's `--runtime` flag takes.
    ///
    /// ```
    /// use siprtmp_runtime_drivers::Runtime;
    /// assert_eq!(Runtime::AsyncStd.name(), "async-std");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Mio => "mio",
            Runtime::Tokio => "tokio",
            Runtime::Threads => "threads",
            Runtime::AsyncStd => "async-std",
            Runtime::IoUring => "io-uring",
        }
    }

    /// Whether the driver moderates its wake-ups, i.e. takes a
    /// [`DriverConfig::poll_interval`] (mio and io-uring; the others refuse one at bind).
    pub fn moderates_wakeups(self) -> bool {
        matches!(self, Runtime::Mio | Runtime::IoUring)
    }

    /// Whether the driver runs as several workers sharing a port ([`Self::start_workers`]);
    /// the others run one node.
    pub fn runs_workers(self) -> bool {
        matches!(self, Runtime::Mio | Runtime::Tokio | Runtime::IoUring)
    }

    /// Binds this runtime's driver on `config.listen` around a node built from `node` (see
    /// [`Driver::bind`]: a setting the driver cannot honour is an `Unsupported` error).
    pub fn bind(self, config: DriverConfig, node: NodeConfig) -> io::Result<Box<dyn Driver>> {
        fn boxed<D: Driver + 'static>(driver: D) -> Box<dyn Driver> {
            Box::new(driver)
        }
        match self {
            Runtime::Mio => MioDriver::bind(config, node).map(boxed),
            Runtime::Tokio => TokioDriver::bind(config, node).map(boxed),
            Runtime::Threads => ThreadsDriver::bind(config, node).map(boxed),
            Runtime::AsyncStd => AsyncStdDriver::bind(config, node).map(boxed),
            Runtime::IoUring => UringDriver::bind(config, node).map(boxed),
        }
    }

    /// Starts `count` workers of this runtime on `config.listen` (see [`Workers::start`]:
    /// `setup` adjusts each worker's settings and gives its decider). An `Unsupported` error
    /// for a runtime that runs one node ([`Self::runs_workers`]).
    pub fn start_workers(
        self,
        config: DriverConfig,
        node: NodeConfig,
        count: usize,
        setup: impl FnMut(WorkerId, &mut DriverConfig) -> Option<Decider>,
    ) -> io::Result<Workers> {
        match self {
            Runtime::Mio => Workers::start::<MioDriver>(config, node, count, setup),
            Runtime::Tokio => Workers::start::<TokioDriver>(config, node, count, setup),
            Runtime::IoUring => Workers::start::<UringDriver>(config, node, count, setup),
            Runtime::Threads | Runtime::AsyncStd => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the {} driver runs one node, not workers", self.name()),
            )),
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn loopback() -> DriverConfig {
        DriverConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            root: std::env::temp_dir(),
            ..DriverConfig::default()
        }
    }

    /// The server's answer to C0+C1: S0+S1+S2 (3,073 bytes).
    fn handshake(addr: std::net::SocketAddr) -> io::Result<usize> {
        let mut client = TcpStream::connect(addr)?;
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 1536]);
        client.write_all(&c0c1)?;
        let mut answer = [0u8; 3073];
        client.read_exact(&mut answer)?;
        Ok(answer.len())
    }

    /// Each runtime, picked by value, binds, serves a client and stops.
    #[test]
    fn every_runtime_binds_serves_and_stops() {
        for runtime in Runtime::ALL {
            let (ready_tx, ready) = std::sync::mpsc::channel();
            // Built on the thread that runs it: drivers need not be `Send`.
            let thread = std::thread::spawn(move || {
                let driver = runtime.bind(loopback(), NodeConfig::default())?;
                ready_tx
                    .send((driver.local_addr()?, driver.stopper()))
                    .unwrap();
                driver.run()
            });
            let (addr, stopper) = ready
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{runtime}: not bound: {e}"));
            assert_ne!(addr.port(), 0, "{runtime}");
            assert_eq!(handshake(addr).unwrap(), 3073, "{runtime}");
            stopper.stop();
            thread
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{runtime}: {e}"));
        }
    }

    /// A poll interval is taken by the runtimes that moderate wake-ups and refused by the
    /// others, at bind.
    #[test]
    fn only_a_moderating_runtime_takes_a_poll_interval() {
        for runtime in Runtime::ALL {
            let config = DriverConfig {
                poll_interval: Some(Duration::from_millis(20)),
                ..loopback()
            };
            match runtime.bind(config, NodeConfig::default()) {
                Ok(_) => assert!(runtime.moderates_wakeups(), "{runtime} took it"),
                Err(e) => {
                    assert!(!runtime.moderates_wakeups(), "{runtime}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{runtime}: {e}");
                }
            }
        }
    }

    /// Two workers share a port on the runtimes that run workers; the others say they cannot.
    #[test]
    fn only_a_worker_runtime_starts_workers() {
        for runtime in Runtime::ALL {
            match runtime.start_workers(loopback(), NodeConfig::default(), 2, |_, _| None) {
                Ok(workers) => {
                    assert!(runtime.runs_workers(), "{runtime} started workers");
                    assert_eq!(workers.len(), 2);
                    assert_eq!(handshake(workers.local_addr()).unwrap(), 3073);
                    workers.stopper().stop();
                    workers.join().unwrap();
                }
                Err(e) => {
                    assert!(!runtime.runs_workers(), "{runtime}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{runtime}: {e}");
                    assert!(e.to_string().contains(runtime.name()), "{e}");
                }
            }
        }
    }
}
