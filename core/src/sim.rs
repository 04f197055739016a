//! [`SimNet`]: deterministic simulation of a node and its RTMP clients over a seeded network,
//! in virtual time.
//!
//! Every byte a client or the node sends becomes TCP segments of random size that arrive after
//! a latency plus random jitter; a "lost" segment arrives one retransmission timeout later and,
//! as on TCP, holds back everything behind it in that direction (head-of-line blocking). The
//! node is driven exactly as a driver would drive it: `Received`, `Drained`, `Timeout`,
//! `Closed`. Nothing reads a clock: virtual time starts at the `origin` the caller passes
//! (only differences from it matter), the run is a function of the seed, byte for byte, and
//! [`SimNet::trace_hash`] proves it.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siprtmp_core::node::NodeConfig;
//! use siprtmp_core::rtmp::client::ClientEvent;
//! use siprtmp_core::sim::{SimConfig, SimNet};
//!
//! let run = |seed| {
//!     let config = SimConfig { seed, ..SimConfig::default() };
//!     let mut sim = SimNet::new(NodeConfig::default(), config, Instant::now());
//!     let c = sim.connect("live");
//!     sim.run_for(Duration::from_secs(1));
//!     assert!(sim.events(c).contains(&ClientEvent::Connected));
//!     sim.trace_hash()
//! };
//! assert_eq!(run(5), run(5)); // the same seed replays identically
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Input, Output};
use crate::node::{Node, NodeConfig};
use crate::rng::SeededRng;
use crate::rtmp::client::{ClientEvent, RtmpClient};
use crate::testkit::MemoryFs;

/// The simulated network's behaviour.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice (segment sizes, jitter, loss, client handshakes).
    pub seed: u64,
    /// One-way latency.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..=jitter`, per segment (order is kept, as on TCP).
    pub jitter: Duration,
    /// Largest TCP segment; each send is cut into random sizes up to this.
    pub max_segment: usize,
    /// Probability that a segment is lost once and retransmitted.
    pub loss: f64,
    /// Delay added by a retransmission.
    pub retransmit_timeout: Duration,
}

impl Default for SimConfig {
    /// 10 ms latency, 5 ms jitter, 1460-byte segments, no loss, 200 ms RTO.
    fn default() -> Self {
        Self {
            seed: 1,
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            max_segment: 1460,
            loss: 0.0,
            retransmit_timeout: Duration::from_millis(200),
        }
    }
}

/// Where a segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    /// To the node, on this client's connection.
    Node(usize),
    /// To this client.
    Client(usize),
}

/// One simulated client connection.
#[derive(Debug)]
pub struct SimClient {
    /// The node's id for the connection.
    pub conn: ConnId,
    /// The client machine.
    pub client: RtmpClient,
    /// Everything the client reported, in order.
    pub events: Vec<ClientEvent>,
    /// Set when the node closed the connection.
    pub closed: bool,
    inbox: BytesMut,
    /// Earliest arrival of the next segment each way (TCP keeps order).
    to_node_free: Instant,
    to_client_free: Instant,
}

/// A node, its clients and the network between them, in virtual time.
#[derive(Debug)]
pub struct SimNet {
    /// The node under simulation.
    pub node: Node,
    /// The clients, by the index [`SimNet::connect`] returned.
    pub clients: Vec<SimClient>,
    /// Keep client events (off for long runs that only count).
    pub record_events: bool,
    /// The disk that recordings and played files live on (requests run at once).
    pub fs: MemoryFs,
    config: SimConfig,
    now: Instant,
    rng: SeededRng,
    start: Instant,
    /// Segments in flight: (arrival, sequence number for a stable order, where, bytes).
    queue: BinaryHeap<Reverse<(Instant, u64, Endpoint, Bytes)>>,
    sequence: u64,
    trace: u64,
    delivered_bytes: u64,
}

impl SimNet {
    /// A simulation of a fresh node with `node_config`, virtual time starting at `origin`
    /// (any instant: the run depends only on time since it, so equal seeds replay equally).
    pub fn new(node_config: NodeConfig, config: SimConfig, origin: Instant) -> Self {
        let now = origin;
        let mut rng = SeededRng::new(config.seed);
        let node = Node::new(node_config, now, rng.next_u64());
        Self {
            node,
            clients: Vec::new(),
            record_events: true,
            fs: MemoryFs::default(),
            config,
            now,
            rng,
            start: now,
            queue: BinaryHeap::new(),
            sequence: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            delivered_bytes: 0,
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A new client connected to `app`; returns its index.
    pub fn connect(&mut self, app: &str) -> usize {
        let index = self.clients.len();
        let peer = SocketAddr::from(([10, 0, (index >> 8) as u8, index as u8], 40000));
        let conn = self.node.accept(self.now, peer);
        let client = RtmpClient::new(&mut self.rng, app, &format!("rtmp://sim/{app}"));
        self.clients.push(SimClient {
            conn,
            client,
            events: Vec::new(),
            closed: false,
            inbox: BytesMut::new(),
            to_node_free: self.now,
            to_client_free: self.now,
        });
        self.flush_client(index);
        index
    }

    /// Client `index`'s machine, to call `publish`, `play`, `send_media`...; what it queues
    /// is sent at the next [`SimNet::run_for`] / [`SimNet::run_until`].
    pub fn client(&mut self, index: usize) -> &mut RtmpClient {
        &mut self.clients[index].client
    }

    /// The events client `index` has seen.
    pub fn events(&self, index: usize) -> &[ClientEvent] {
        &self.clients[index].events
    }

    /// Takes the events client `index` has seen so far (long runs drain them as they go).
    pub fn take_events(&mut self, index: usize) -> Vec<ClientEvent> {
        std::mem::take(&mut self.clients[index].events)
    }

    /// Runs the network and the node for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        for i in 0..self.clients.len() {
            self.flush_client(i);
        }
        loop {
            let next_segment = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self.node.poll_timeout();
            let next = match (next_segment, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_timer.is_some_and(|t| t <= self.now) {
                self.node.handle(self.now, Input::Timeout);
                self.after_node();
            }
            while self
                .queue
                .peek()
                .is_some_and(|Reverse((t, ..))| *t <= self.now)
            {
                let Some(Reverse((_, _, to, bytes))) = self.queue.pop() else {
                    break;
                };
                self.deliver(to, bytes);
            }
        }
        self.now = self.now.max(until);
    }

    /// A hash of every segment delivered so far (time, endpoint and bytes): equal hashes mean
    /// identical runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Bytes delivered so far, both ways.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered_bytes
    }

    fn mix(&mut self, data: &[u8]) {
        // FNV-1a: stable across platforms and runs, unlike the std hasher.
        for &b in data {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn deliver(&mut self, to: Endpoint, bytes: Bytes) {
        let elapsed = self.now.duration_since(self.start).as_micros() as u64;
        self.mix(&elapsed.to_le_bytes());
        let tag = match to {
            Endpoint::Node(i) => (i as u64) << 1,
            Endpoint::Client(i) => ((i as u64) << 1) | 1,
        };
        self.mix(&tag.to_le_bytes());
        self.mix(&bytes);
        self.delivered_bytes += bytes.len() as u64;
        match to {
            Endpoint::Node(i) => {
                if self.clients[i].closed {
                    return;
                }
                let conn = self.clients[i].conn;
                let data = BytesMut::from(&bytes[..]);
                self.node.handle(self.now, Input::Received { conn, data });
                self.after_node();
            }
            Endpoint::Client(i) => {
                let c = &mut self.clients[i];
                if c.closed {
                    return;
                }
                c.inbox.extend_from_slice(&bytes);
                if c.client.received(&mut c.inbox).is_err() {
                    c.closed = true;
                    return;
                }
                while let Some(event) = c.client.poll_event() {
                    if self.record_events {
                        c.events.push(event);
                    }
                }
                self.flush_client(i);
            }
        }
    }

    /// Executes the node's outputs: every queued byte goes on the wire at once (the simulated
    /// kernel has an unbounded send buffer; backpressure is what the network delays make).
    fn after_node(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Transmit { conn } => self.drain(conn),
                Output::Close { conn } => {
                    self.drain(conn);
                    if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                        c.closed = true;
                    }
                    self.node.handle(self.now, Input::Closed { conn });
                }
                Output::File(request) => {
                    let result = self.fs.execute(&request);
                    let file = request.file;
                    self.node.handle(self.now, Input::FileDone { file, result });
                }
                Output::Udp(crate::udp::UdpCommand::Bind { socket, .. }) => {
                    // The simulated network carries TCP only: a gateway cannot bind here.
                    let result = Err("no UDP in this simulation".to_owned());
                    let event = crate::udp::UdpEvent::Bound { socket, result };
                    self.node.handle(self.now, Input::Udp(event));
                }
                Output::Tcp(command) => {
                    // Nor TCP of the node's own: listens and connects fail.
                    let error = "no TCP of the node's own in this simulation".to_owned();
                    let event = match command {
                        crate::tcp::TcpCommand::Listen { listener, .. } => {
                            crate::tcp::TcpEvent::Listening {
                                listener,
                                result: Err(error),
                            }
                        }
                        crate::tcp::TcpCommand::Connect { stream, .. } => {
                            crate::tcp::TcpEvent::ConnectFailed { stream, error }
                        }
                        _ => continue,
                    };
                    self.node.handle(self.now, Input::Tcp(event));
                }
                // A lone node: nothing is ever relayed.
                Output::Udp(_)
                | Output::Event(_)
                | Output::Relay(_)
                | Output::ReadPacing { .. } => {}
            }
        }
    }

    fn drain(&mut self, conn: ConnId) {
        let Some(index) = self.clients.iter().position(|c| c.conn == conn) else {
            return;
        };
        loop {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self.node.io_slices(conn, &mut slices);
            if n == 0 {
                return;
            }
            let mut wire = BytesMut::new();
            for s in &slices[..n] {
                wire.extend_from_slice(s);
            }
            let bytes = wire.len();
            self.send_segments(Endpoint::Client(index), wire.freeze());
            self.node.handle(self.now, Input::Drained { conn, bytes });
        }
    }

    fn flush_client(&mut self, index: usize) {
        while let Some(bytes) = self.clients[index].client.take_output() {
            if self.clients[index].closed {
                continue;
            }
            self.send_segments(Endpoint::Node(index), bytes);
        }
    }

    /// Cuts `bytes` into segments and schedules their in-order arrival.
    fn send_segments(&mut self, to: Endpoint, mut bytes: Bytes) {
        while !bytes.is_empty() {
            let max = self.config.max_segment.max(1).min(bytes.len());
            let size = 1 + self.rng.below(max as u64) as usize;
            let segment = bytes.split_to(size);
            let jitter_us = self.config.jitter.as_micros() as u64;
            let mut delay =
                self.config.latency + Duration::from_micros(self.rng.below(jitter_us + 1));
            if self.config.loss > 0.0
                && (self.rng.next_u32() as f64) < self.config.loss * f64::from(u32::MAX)
            {
                delay += self.config.retransmit_timeout;
            }
            let (index, is_node) = match to {
                Endpoint::Node(i) => (i, true),
                Endpoint::Client(i) => (i, false),
            };
            let c = &mut self.clients[index];
            let free = if is_node {
                &mut c.to_node_free
            } else {
                &mut c.to_client_free
            };
            let arrival = (self.now + delay).max(*free);
            *free = arrival;
            self.sequence += 1;
            self.queue
                .push(Reverse((arrival, self.sequence, to, segment)));
        }
    }
}

/// The outcome of [`run_live`]: per player, the checker's verdict (frames matched, or what
/// went wrong).
#[derive(Debug)]
pub struct LiveRun {
    /// One verdict per player, in the order of `joins`.
    pub players: Vec<Result<usize, String>>,
    /// Bytes delivered over the simulated network.
    pub delivered_bytes: u64,
    /// The run's fingerprint (see [`SimNet::trace_hash`]).
    pub trace_hash: u64,
}

/// One publisher sends `media` (on stream 1, in real virtual time) to `live/sim`; a player
/// joins at each offset in `joins`; every player's media is checked as it arrives
/// ([`MediaChecker`](crate::testkit::MediaChecker)).
///
/// ```
/// use std::time::{Duration, Instant};
/// use siprtmp_core::node::NodeConfig;
/// use siprtmp_core::sim::{run_live, SimConfig};
/// use siprtmp_core::testkit::synthetic_av;
///
/// let media = synthetic_av(1, Duration::from_secs(5));
/// let joins = [Duration::ZERO, Duration::from_millis(2500)];
/// let run = run_live(NodeConfig::default(), SimConfig::default(), Instant::now(), &media, &joins);
/// for verdict in &run.players {
///     assert!(verdict.is_ok(), "{verdict:?}");
/// }
/// ```
pub fn run_live(
    node_config: NodeConfig,
    sim_config: SimConfig,
    origin: Instant,
    media: &[crate::rtmp::message::RtmpMessage],
    joins: &[Duration],
) -> LiveRun {
    use crate::testkit::MediaChecker;
    let mut sim = SimNet::new(node_config, sim_config, origin);
    let settle = Duration::from_secs(2);
    let publisher = sim.connect("live");
    sim.run_for(settle);
    sim.client(publisher).create_stream();
    sim.run_for(settle);
    sim.client(publisher).publish(1, "sim");
    sim.run_for(settle);
    let start = sim.now();
    let mut players: Vec<(Duration, Option<usize>, MediaChecker)> = joins
        .iter()
        .map(|&j| (j, None, MediaChecker::new(media)))
        .collect();
    let feed = |sim: &mut SimNet, players: &mut [(Duration, Option<usize>, MediaChecker)]| {
        for (_, index, checker) in players.iter_mut() {
            let Some(i) = *index else { continue };
            for event in sim.take_events(i) {
                match event {
                    ClientEvent::Connected => sim.client(i).create_stream(),
                    ClientEvent::StreamCreated(id) => sim.client(i).play(id, "sim", -2.0),
                    ClientEvent::Media(m) => checker.check(&m),
                    _ => {}
                }
            }
        }
    };
    for msg in media {
        let at = start + Duration::from_millis(u64::from(msg.timestamp));
        for (join, index, _) in players.iter_mut() {
            if index.is_none() && start + *join <= at {
                *index = Some(sim.connect("live"));
            }
        }
        sim.run_until(at);
        feed(&mut sim, &mut players);
        sim.client(publisher).send_media(msg);
    }
    sim.run_for(settle);
    feed(&mut sim, &mut players);
    LiveRun {
        players: players.iter().map(|(_, _, c)| c.finish()).collect(),
        delivered_bytes: sim.delivered_bytes(),
        trace_hash: sim.trace_hash(),
    }
}
