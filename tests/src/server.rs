//! A server under test: the mio driver on an ephemeral loopback port, in a thread, with its
//! application events observable.

use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siprtmp_core::node::{Event, NodeConfig};
use siprtmp_mio::{Decider, DriverConfig, MioDriver, Stopper};

/// A running server; stopped and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    events: Receiver<Event>,
    /// Events already received while waiting for others.
    seen: Vec<Event>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `node` settings and an optional `SO_SNDBUF`.
    pub fn start(node: NodeConfig, send_buffer: Option<usize>) -> Self {
        Self::start_in(
            node,
            send_buffer,
            std::env::temp_dir().join("siprtmp-tests-media"),
        )
    }

    /// Starts a server whose recorded and played files live under `root`.
    pub fn start_in(
        node: NodeConfig,
        send_buffer: Option<usize>,
        root: std::path::PathBuf,
    ) -> Self {
        Self::start_with(node, send_buffer, root, None)
    }

    /// Starts a server with files under `root` and `decider` answering its decisions.
    pub fn start_with(
        node: NodeConfig,
        send_buffer: Option<usize>,
        root: std::path::PathBuf,
        decider: Option<Decider>,
    ) -> Self {
        let (tx, events) = channel();
        let config = DriverConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            send_buffer,
            seed: 7,
            events: Some(tx),
            root,
        };
        let mut driver = MioDriver::bind(config, node).expect("bind test server");
        if let Some(decider) = decider {
            driver = driver.with_decider(decider);
        }
        let addr = driver.local_addr().unwrap();
        let stopper = driver.stopper();
        let thread = std::thread::spawn(move || driver.run().expect("driver run"));
        Self {
            addr,
            events,
            seen: Vec::new(),
            stopper,
            thread: Some(thread),
        }
    }

    /// `rtmp://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
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

    /// Every event received so far (drains pending ones first).
    pub fn events(&mut self) -> &[Event] {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        &self.seen
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
