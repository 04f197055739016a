//! [`SimCluster`]: deterministic simulation of several nodes (an origin and its edges) and
//! their RTMP clients over one seeded network, in virtual time.
//!
//! It extends what [`SimNet`](crate::sim::SimNet) does for one node: every connection, a
//! client's to a node or a node's own to another node, is a simulated TCP connection whose
//! bytes become segments of random size, arriving after a latency plus jitter, a lost one a
//! retransmission timeout late and holding back what follows it (head-of-line blocking).
//! Unlike `SimNet`, each direction has a send window: a sender hands the network at most
//! [`ClusterConfig::window`] bytes that have not arrived yet, so a peer that does not take its
//! bytes pushes back on the node that sends them, as a real socket's buffers do.
//!
//! A node's outgoing connections (a relay's `TcpCommand::Connect`, `Send`, `Close`, served as
//! the drivers' TCP executors serve them: sends queued while connecting, `Sent` as the network
//! takes bytes, one `Closed` when the peer closes) reach another node's RTMP listener by
//! address: node `i` listens at [`SimCluster::addr`]`(i)`. A connect to any other address
//! fails. [`SimCluster::stall`] makes everything one node sends another stop arriving, to
//! see what a stalled link does to everything else.
//!
//! Nodes may also be the workers of one server ([`SimCluster::add_workers`]): their relay
//! ([`crate::worker_relay`]) is carried as the drivers carry it, claims answered by one
//! registry of names per group, messages in order from one worker to another, at once.
//!
//! Nothing reads a clock: the run is a function of the seed, and [`SimCluster::trace_hash`]
//! proves it.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siprtmp_core::node::NodeConfig;
//! use siprtmp_core::rtmp::client::ClientEvent;
//! use siprtmp_core::sim::SimConfig;
//! use siprtmp_core::sim_cluster::{ClusterConfig, SimCluster};
//!
//! let run = |seed| {
//!     let config = ClusterConfig { net: SimConfig { seed, ..SimConfig::default() }, ..ClusterConfig::default() };
//!     let mut sim = SimCluster::new(config, Instant::now());
//!     let node = sim.add_node(NodeConfig::default());
//!     let c = sim.connect(node, "live");
//!     sim.run_for(Duration::from_secs(1));
//!     assert!(sim.take_events(c).iter().any(|(_, e)| *e == ClientEvent::Connected));
//!     sim.trace_hash()
//! };
//! assert_eq!(run(5), run(5)); // the same seed replays identically
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Event, Input, Output};
use crate::node::{Node, NodeConfig};
use crate::rng::SeededRng;
use crate::rtmp::client::{ClientEvent, RtmpClient};
use crate::sim::SimConfig;
use crate::tcp::{StreamId, TcpCommand, TcpEvent};
use crate::testkit::MemoryFs;
use crate::worker_relay::{RelayIn, RelayMessage, RelayOut, RelayTarget, WorkerId};

/// The simulated network of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Latency, jitter, segments, loss, as for a single node (its seed seeds everything).
    pub net: SimConfig,
    /// Bytes a sender may have in flight on one direction of a connection (the socket
    /// buffers): a node's queue for a peer that does not take its bytes grows past it.
    pub window: usize,
}

impl Default for ClusterConfig {
    /// [`SimConfig::default`], with a 256 KiB window.
    fn default() -> Self {
        Self {
            net: SimConfig::default(),
            window: 256 << 10,
        }
    }
}

/// One node of the cluster.
#[derive(Debug)]
pub struct SimNode {
    /// The node.
    pub node: Node,
    /// The disk of its recordings and files (requests run at once).
    pub fs: MemoryFs,
    /// What it reported, with the virtual time of each.
    pub events: Vec<(Instant, Event)>,
    /// Its accepted connections: the pipe of each.
    conns: BTreeMap<ConnId, usize>,
    /// The TCP streams it opened: the pipe of each.
    streams: BTreeMap<StreamId, usize>,
    /// Its group of workers and its id there, when it is a worker.
    group: Option<(usize, WorkerId)>,
}

/// One simulated RTMP client.
#[derive(Debug)]
pub struct ClusterClient {
    /// The node it connected to.
    pub node: usize,
    /// The client machine.
    pub client: RtmpClient,
    /// Set when the node closed the connection.
    pub closed: bool,
    /// What the client reported, with the virtual time of each.
    events: Vec<(Instant, ClientEvent)>,
    inbox: BytesMut,
    pipe: usize,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    /// A client.
    Client(usize),
    /// A node's own connection (a relay session).
    Node { node: usize, stream: StreamId },
}

/// One way of a connection.
#[derive(Debug, Default)]
struct Way {
    /// Earliest arrival of the next segment (TCP keeps order).
    free: Option<Instant>,
    /// Bytes on the network, not yet arrived.
    in_flight: usize,
    /// Bytes a node's TCP queued that the window did not let out yet (a relay's `Send`).
    queued: VecDeque<Bytes>,
}

/// A TCP connection: the opener's side, and the listening node's.
#[derive(Debug)]
struct Pipe {
    opener: Opener,
    /// The node it connects to, and the connection there once accepted.
    server: usize,
    conn: Option<ConnId>,
    /// Toward the server, and toward the opener.
    up: Way,
    down: Way,
    opener_closed: bool,
    server_closed: bool,
}

/// What arrives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Arrival {
    /// The connect reaches the listening node.
    Accept(usize),
    /// The accept's answer reaches the opening node.
    Connected(usize),
    /// A segment for the listening node.
    Up(usize, Bytes),
    /// A segment for the opener.
    Down(usize, Bytes),
    /// The opener's close reaches the listening node.
    CloseUp(usize),
    /// The listening node's close reaches the opener.
    CloseDown(usize),
    /// A connect to no node fails.
    Refused(usize, StreamId),
}

/// A group of workers: its nodes (by worker id), and its registry of claimed names.
type Group = (Vec<usize>, BTreeMap<std::sync::Arc<str>, WorkerId>);

/// Several nodes, their clients and the network between them, in virtual time.
#[derive(Debug)]
pub struct SimCluster {
    /// The nodes, by the index [`SimCluster::add_node`] returned.
    pub nodes: Vec<SimNode>,
    /// The clients, by the index [`SimCluster::connect`] returned.
    pub clients: Vec<ClusterClient>,
    /// Keep client events (the caller takes them as it goes in long runs).
    pub record_events: bool,
    config: ClusterConfig,
    pipes: Vec<Pipe>,
    /// (from node, to node): what the first sends the second stops arriving.
    stalled: BTreeSet<(usize, usize)>,
    now: Instant,
    start: Instant,
    rng: SeededRng,
    queue: BinaryHeap<Reverse<(Instant, u64, Arrival)>>,
    sequence: u64,
    /// Each group of workers: its nodes (by worker id) and its registry of claimed names.
    groups: Vec<Group>,
    /// Relay messages between workers not yet handed over: (to node, from worker, message).
    relay_queue: VecDeque<(usize, WorkerId, RelayMessage)>,
    trace: u64,
    delivered_bytes: u64,
}

impl SimCluster {
    /// An empty cluster, virtual time starting at `origin` (any instant: the run depends only
    /// on time since it).
    pub fn new(config: ClusterConfig, origin: Instant) -> Self {
        let rng = SeededRng::new(config.net.seed);
        Self {
            nodes: Vec::new(),
            clients: Vec::new(),
            record_events: true,
            config,
            pipes: Vec::new(),
            stalled: BTreeSet::new(),
            now: origin,
            start: origin,
            rng,
            queue: BinaryHeap::new(),
            sequence: 0,
            groups: Vec::new(),
            relay_queue: VecDeque::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            delivered_bytes: 0,
        }
    }

    /// A new node; returns its index. It listens at [`Self::addr`] of that index.
    pub fn add_node(&mut self, config: NodeConfig) -> usize {
        let node = Node::new(config, self.now, self.rng.next_u64());
        self.nodes.push(SimNode {
            node,
            fs: MemoryFs::default(),
            events: Vec::new(),
            conns: BTreeMap::new(),
            streams: BTreeMap::new(),
            group: None,
        });
        self.nodes.len() - 1
    }

    /// `count` new nodes that are the workers of one server (each made one with
    /// [`Node::with_relay`]); returns their indices, in worker id order. Each listens at its
    /// own [`Self::addr`] (the kernel would spread one port's connections over them: here the
    /// test chooses).
    pub fn add_workers(&mut self, config: NodeConfig, count: usize) -> Vec<usize> {
        let group = self.groups.len();
        let nodes: Vec<usize> = (0..count)
            .map(|w| {
                let node = Node::new(config.clone(), self.now, self.rng.next_u64())
                    .with_relay(WorkerId(w as u8));
                self.nodes.push(SimNode {
                    node,
                    fs: MemoryFs::default(),
                    events: Vec::new(),
                    conns: BTreeMap::new(),
                    streams: BTreeMap::new(),
                    group: Some((group, WorkerId(w as u8))),
                });
                self.nodes.len() - 1
            })
            .collect();
        self.groups.push((nodes.clone(), BTreeMap::new()));
        nodes
    }

    /// Which worker of its group holds the name `stream` (`app/name`) in the registry.
    pub fn claimed_by(&self, node: usize, stream: &str) -> Option<WorkerId> {
        let (group, _) = self.nodes[node].group?;
        self.groups[group].1.get(stream).copied()
    }

    /// Where node `index` listens for RTMP: `10.0.0.{index + 1}:1935`.
    pub fn addr(index: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, index as u8 + 1], 1935))
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A new client connected to `app` on node `node`; returns its index.
    pub fn connect(&mut self, node: usize, app: &str) -> usize {
        let index = self.clients.len();
        let peer = SocketAddr::from(([10, 1, (index >> 8) as u8, index as u8], 40000));
        let conn = self.nodes[node].node.accept(self.now, peer);
        let pipe = self.pipes.len();
        self.pipes.push(Pipe {
            opener: Opener::Client(index),
            server: node,
            conn: Some(conn),
            up: Way::default(),
            down: Way::default(),
            opener_closed: false,
            server_closed: false,
        });
        self.nodes[node].conns.insert(conn, pipe);
        let url = format!("rtmp://{}/{app}", Self::addr(node).ip());
        let client = RtmpClient::new(&mut self.rng, app, &url);
        self.clients.push(ClusterClient {
            node,
            client,
            closed: false,
            events: Vec::new(),
            inbox: BytesMut::new(),
            pipe,
        });
        self.flush_client(index);
        index
    }

    /// Client `index`'s machine, to call `publish`, `play`, `send_media`...; what it queues
    /// is sent at the next [`Self::run_for`] / [`Self::run_until`].
    pub fn client(&mut self, index: usize) -> &mut RtmpClient {
        &mut self.clients[index].client
    }

    /// Client `index` closes its connection (what it queued is sent first); the node hears
    /// of it after the bytes before it.
    pub fn disconnect(&mut self, index: usize) {
        self.flush_client(index);
        let p = self.clients[index].pipe;
        self.clients[index].closed = true;
        if !self.pipes[p].opener_closed {
            self.pipes[p].opener_closed = true;
            let at = self.arrival_time(p, true);
            self.schedule(at, Arrival::CloseUp(p));
        }
    }

    /// Takes the events client `index` has seen so far, each with its virtual time.
    pub fn take_events(&mut self, index: usize) -> Vec<(Instant, ClientEvent)> {
        std::mem::take(&mut self.clients[index].events)
    }

    /// From now on, nothing node `from` sends node `to` arrives (on the connections open and
    /// on later ones): the segments stay on the network, filling the sender's window.
    pub fn stall(&mut self, from: usize, to: usize) {
        self.stalled.insert((from, to));
    }

    /// A hash of everything delivered so far (time, where, bytes): equal hashes mean
    /// identical runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Bytes delivered so far, every way.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered_bytes
    }

    /// Runs the network and the nodes for `duration` of virtual time.
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
            let next_arrival = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.node.poll_timeout())
                .min();
            let next = match (next_arrival, next_timer) {
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
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .node
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].node.handle(self.now, Input::Timeout);
                    self.after_node(i);
                    self.pump_relay();
                }
            }
            while self
                .queue
                .peek()
                .is_some_and(|Reverse((t, ..))| *t <= self.now)
            {
                let Some(Reverse((_, _, arrival))) = self.queue.pop() else {
                    break;
                };
                self.arrive(arrival);
                self.pump_relay();
            }
        }
        self.now = self.now.max(until);
    }

    /// Hands the workers the relay messages sent to them, in the order they were sent.
    fn pump_relay(&mut self) {
        while let Some((to, from, message)) = self.relay_queue.pop_front() {
            let input = Input::Relay(RelayIn::Received { from, message });
            self.nodes[to].node.handle(self.now, input);
            self.after_node(to);
        }
    }

    /// Carries out worker `n`'s relay output as a driver's relay link does.
    fn relay(&mut self, n: usize, out: RelayOut) {
        let Some((group, me)) = self.nodes[n].group else {
            // A lone node owns every name.
            if let RelayOut::Claim { request, .. } = out {
                let input = Input::Relay(RelayIn::Claimed {
                    request,
                    granted: true,
                });
                self.nodes[n].node.handle(self.now, input);
            }
            return;
        };
        match out {
            RelayOut::Claim { request, stream } => {
                let registry = &mut self.groups[group].1;
                let granted = !registry.contains_key(&stream);
                if granted {
                    registry.insert(stream, me);
                }
                let input = Input::Relay(RelayIn::Claimed { request, granted });
                self.nodes[n].node.handle(self.now, input);
            }
            RelayOut::Release { stream } => {
                let registry = &mut self.groups[group].1;
                if registry.get(&stream) == Some(&me) {
                    registry.remove(&stream);
                }
            }
            RelayOut::Send { to, message } => {
                let members = &self.groups[group].0;
                for (w, &node) in members.iter().enumerate() {
                    let wanted = match to {
                        RelayTarget::All => w != usize::from(me.0),
                        RelayTarget::Worker(id) => usize::from(id.0) == w,
                    };
                    if wanted {
                        self.relay_queue.push_back((node, me, message.clone()));
                    }
                }
            }
        }
    }

    fn mix(&mut self, data: &[u8]) {
        // FNV-1a: stable across platforms and runs, unlike the std hasher.
        for &b in data {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn schedule(&mut self, at: Instant, arrival: Arrival) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence, arrival)));
    }

    /// The one-way delay of one segment: latency, jitter, and a retransmission if lost.
    fn delay(&mut self) -> Duration {
        let net = &self.config.net;
        let jitter_us = net.jitter.as_micros() as u64;
        let mut delay = net.latency + Duration::from_micros(self.rng.below(jitter_us + 1));
        let lost = net.loss > 0.0
            && (self.rng.next_u32() as f64) < net.loss * f64::from(u32::MAX)
            && !net.retransmit_timeout.is_zero();
        if lost {
            delay += self.config.net.retransmit_timeout;
        }
        delay
    }

    fn arrive(&mut self, arrival: Arrival) {
        let elapsed = self.now.duration_since(self.start).as_micros() as u64;
        self.mix(&elapsed.to_le_bytes());
        let (kind, pipe) = match &arrival {
            Arrival::Accept(p) => (0u64, *p),
            Arrival::Connected(p) => (1, *p),
            Arrival::Up(p, _) => (2, *p),
            Arrival::Down(p, _) => (3, *p),
            Arrival::CloseUp(p) => (4, *p),
            Arrival::CloseDown(p) => (5, *p),
            Arrival::Refused(node, _) => (6, *node),
        };
        self.mix(&((pipe as u64) << 3 | kind).to_le_bytes());
        match arrival {
            Arrival::Accept(p) => self.accept(p),
            Arrival::Connected(p) => {
                if let Opener::Node { node, stream } = self.pipes[p].opener {
                    if !self.pipes[p].opener_closed {
                        let local = SocketAddr::new(Self::addr(node).ip(), 50000 + p as u16);
                        let event = TcpEvent::Connected { stream, local };
                        self.nodes[node].node.handle(self.now, Input::Tcp(event));
                        self.after_node(node);
                    }
                }
            }
            Arrival::Up(p, bytes) => self.arrive_up(p, bytes),
            Arrival::Down(p, bytes) => self.arrive_down(p, bytes),
            Arrival::CloseUp(p) => {
                let pipe = &mut self.pipes[p];
                if let (Some(conn), false) = (pipe.conn, pipe.server_closed) {
                    pipe.server_closed = true;
                    let server = pipe.server;
                    self.nodes[server].conns.remove(&conn);
                    self.nodes[server]
                        .node
                        .handle(self.now, Input::Closed { conn });
                    self.after_node(server);
                }
            }
            Arrival::CloseDown(p) => self.close_down(p),
            Arrival::Refused(node, stream) => {
                let error = "connection refused (no node at that address)".to_owned();
                let event = TcpEvent::ConnectFailed { stream, error };
                self.nodes[node].node.handle(self.now, Input::Tcp(event));
                self.after_node(node);
            }
        }
    }

    /// The listening node accepts a node's connection, and the answer goes back.
    fn accept(&mut self, p: usize) {
        if self.pipes[p].opener_closed {
            return; // given up before it got there
        }
        let Opener::Node { node, .. } = self.pipes[p].opener else {
            return;
        };
        let server = self.pipes[p].server;
        let peer = SocketAddr::new(Self::addr(node).ip(), 50000 + p as u16);
        let conn = self.nodes[server].node.accept(self.now, peer);
        self.nodes[server].conns.insert(conn, p);
        self.pipes[p].conn = Some(conn);
        let at = self.now + self.delay();
        self.pipes[p].down.free = Some(at);
        self.schedule(at, Arrival::Connected(p));
    }

    fn arrive_up(&mut self, p: usize, bytes: Bytes) {
        let opener = self.pipes[p].opener;
        let server = self.pipes[p].server;
        if let Opener::Node { node, .. } = opener {
            if self.stalled.contains(&(node, server)) {
                return; // stays on the network: the window stays full
            }
        }
        self.delivered_bytes += bytes.len() as u64;
        self.mix(&bytes);
        let pipe = &mut self.pipes[p];
        pipe.up.in_flight -= bytes.len();
        if let (Some(conn), false) = (pipe.conn, pipe.server_closed) {
            let data = BytesMut::from(&bytes[..]);
            self.nodes[server]
                .node
                .handle(self.now, Input::Received { conn, data });
            self.after_node(server);
        }
        // The window opened: a node's queued sends go on.
        if let Opener::Node { node, stream } = opener {
            self.send_queued(p, node, stream);
        }
    }

    fn arrive_down(&mut self, p: usize, bytes: Bytes) {
        let opener = self.pipes[p].opener;
        let server = self.pipes[p].server;
        if let Opener::Node { node, .. } = opener {
            if self.stalled.contains(&(server, node)) {
                return;
            }
        }
        self.delivered_bytes += bytes.len() as u64;
        self.mix(&bytes);
        self.pipes[p].down.in_flight -= bytes.len();
        match opener {
            Opener::Client(c) => {
                let client = &mut self.clients[c];
                if !client.closed {
                    client.inbox.extend_from_slice(&bytes);
                    if client.client.received(&mut client.inbox).is_err() {
                        client.closed = true;
                    } else {
                        while let Some(event) = client.client.poll_event() {
                            if self.record_events {
                                client.events.push((self.now, event));
                            }
                        }
                        self.flush_client(c);
                    }
                }
            }
            Opener::Node { node, stream } => {
                if !self.pipes[p].opener_closed {
                    let data = BytesMut::from(&bytes[..]);
                    let event = TcpEvent::Received { stream, data };
                    self.nodes[node].node.handle(self.now, Input::Tcp(event));
                    self.after_node(node);
                }
            }
        }
        // The window opened: the server's queue for the connection goes on.
        if let Some(conn) = self.pipes[p].conn {
            self.drain(server, conn);
        }
    }

    fn close_down(&mut self, p: usize) {
        match self.pipes[p].opener {
            Opener::Client(c) => self.clients[c].closed = true,
            Opener::Node { node, stream } => {
                if self.stalled.contains(&(self.pipes[p].server, node)) {
                    return; // the close stays on the network with the rest
                }
                if !self.pipes[p].opener_closed {
                    self.pipes[p].opener_closed = true;
                    self.nodes[node].streams.remove(&stream);
                    let event = TcpEvent::Closed {
                        stream,
                        error: None,
                    };
                    self.nodes[node].node.handle(self.now, Input::Tcp(event));
                    self.after_node(node);
                }
            }
        }
    }

    /// Executes node `n`'s outputs.
    fn after_node(&mut self, n: usize) {
        while let Some(out) = self.nodes[n].node.poll_output() {
            match out {
                Output::Transmit { conn } => self.drain(n, conn),
                Output::Close { conn } => {
                    self.drain(n, conn);
                    if let Some(&p) = self.nodes[n].conns.get(&conn) {
                        self.nodes[n].conns.remove(&conn);
                        self.pipes[p].server_closed = true;
                        let at = self.arrival_time(p, false);
                        self.schedule(at, Arrival::CloseDown(p));
                    }
                    self.nodes[n].node.handle(self.now, Input::Closed { conn });
                }
                Output::File(request) => {
                    let result = self.nodes[n].fs.execute(&request);
                    let file = request.file;
                    self.nodes[n]
                        .node
                        .handle(self.now, Input::FileDone { file, result });
                }
                Output::Udp(crate::udp::UdpCommand::Bind { socket, .. }) => {
                    let result = Err("no UDP in this simulation".to_owned());
                    let event = crate::udp::UdpEvent::Bound { socket, result };
                    self.nodes[n].node.handle(self.now, Input::Udp(event));
                }
                Output::Tcp(command) => self.tcp(n, command),
                Output::Event(event) => self.nodes[n].events.push((self.now, event)),
                Output::Relay(out) => self.relay(n, out),
                // The simulated network reads every byte as it arrives.
                Output::Udp(_) | Output::ReadPacing { .. } => {}
            }
        }
    }

    /// Serves node `n`'s own TCP as a driver's TCP executor does.
    fn tcp(&mut self, n: usize, command: TcpCommand) {
        match command {
            TcpCommand::Connect { stream, remote, .. } => {
                let at = self.now + self.delay();
                let Some(server) = (0..self.nodes.len()).find(|&i| Self::addr(i) == remote) else {
                    return self.schedule(at, Arrival::Refused(n, stream));
                };
                let p = self.pipes.len();
                self.pipes.push(Pipe {
                    opener: Opener::Node { node: n, stream },
                    server,
                    conn: None,
                    up: Way {
                        free: Some(at),
                        ..Way::default()
                    },
                    down: Way::default(),
                    opener_closed: false,
                    server_closed: false,
                });
                self.nodes[n].streams.insert(stream, p);
                self.schedule(at, Arrival::Accept(p));
            }
            TcpCommand::Send { stream, data } => {
                let Some(&p) = self.nodes[n].streams.get(&stream) else {
                    return; // a stream the driver no longer knows: ignored
                };
                self.pipes[p].up.queued.push_back(data);
                self.send_queued(p, n, stream);
            }
            TcpCommand::Close { stream } => {
                let Some(p) = self.nodes[n].streams.remove(&stream) else {
                    return;
                };
                // What the window takes goes out; the rest is dropped with the socket.
                self.send_queued(p, n, stream);
                self.pipes[p].up.queued.clear();
                self.pipes[p].opener_closed = true;
                let at = self.arrival_time(p, true);
                self.schedule(at, Arrival::CloseUp(p));
            }
            TcpCommand::Listen { listener, .. } => {
                let result = Err("no listeners but the RTMP ones in this simulation".to_owned());
                let event = TcpEvent::Listening { listener, result };
                self.nodes[n].node.handle(self.now, Input::Tcp(event));
            }
            TcpCommand::Unlisten { .. } => {}
        }
    }

    /// Puts what the window allows of a node's queued sends on the network, and tells the
    /// node (`Sent`).
    fn send_queued(&mut self, p: usize, n: usize, stream: StreamId) {
        let mut sent = 0;
        loop {
            let way = &mut self.pipes[p].up;
            let room = self.config.window.saturating_sub(way.in_flight);
            if room == 0 {
                break;
            }
            let Some(mut data) = way.queued.pop_front() else {
                break;
            };
            if data.len() > room {
                let rest = data.split_off(room);
                way.queued.push_front(rest);
            }
            sent += data.len();
            self.send_segments(p, true, data);
        }
        if sent > 0 {
            let event = TcpEvent::Sent {
                stream,
                bytes: sent,
            };
            self.nodes[n].node.handle(self.now, Input::Tcp(event));
            self.after_node(n);
        }
    }

    /// Puts what the window allows of node `n`'s queue for `conn` on the network.
    fn drain(&mut self, n: usize, conn: ConnId) {
        let Some(&p) = self.nodes[n].conns.get(&conn) else {
            return;
        };
        loop {
            let room = self
                .config
                .window
                .saturating_sub(self.pipes[p].down.in_flight);
            if room == 0 {
                return;
            }
            let mut slices = [IoSlice::new(&[]); 64];
            let count = self.nodes[n].node.io_slices(conn, &mut slices);
            if count == 0 {
                return;
            }
            let mut wire = BytesMut::new();
            for s in &slices[..count] {
                let take = s.len().min(room - wire.len());
                wire.extend_from_slice(&s[..take]);
                if wire.len() == room {
                    break;
                }
            }
            let bytes = wire.len();
            self.send_segments(p, false, wire.freeze());
            self.nodes[n]
                .node
                .handle(self.now, Input::Drained { conn, bytes });
        }
    }

    fn flush_client(&mut self, index: usize) {
        while let Some(bytes) = self.clients[index].client.take_output() {
            if self.clients[index].closed {
                continue;
            }
            let p = self.clients[index].pipe;
            self.send_segments(p, true, bytes);
        }
    }

    /// When something sent now on pipe `p` (`up`: toward the server) would arrive, in order
    /// after what is on its way.
    fn arrival_time(&mut self, p: usize, up: bool) -> Instant {
        let at = self.now + self.delay();
        let pipe = &mut self.pipes[p];
        let way = if up { &mut pipe.up } else { &mut pipe.down };
        let at = way.free.map_or(at, |free| at.max(free));
        way.free = Some(at);
        at
    }

    /// Cuts `bytes` into segments and schedules their in-order arrival on pipe `p`.
    fn send_segments(&mut self, p: usize, up: bool, mut bytes: Bytes) {
        while !bytes.is_empty() {
            let max = self.config.net.max_segment.max(1).min(bytes.len());
            let size = 1 + self.rng.below(max as u64) as usize;
            let segment = bytes.split_to(size);
            let at = self.arrival_time(p, up);
            let pipe = &mut self.pipes[p];
            if up {
                pipe.up.in_flight += size;
                self.schedule(at, Arrival::Up(p, segment));
            } else {
                pipe.down.in_flight += size;
                self.schedule(at, Arrival::Down(p, segment));
            }
        }
    }
}
