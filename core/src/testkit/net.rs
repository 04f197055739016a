//! [`MemoryNet`]: a node and the RTMP clients connected to it in memory, with the file system,
//! UDP and TCP of the other modules; [`drain_into`] for a test that drives a node itself.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::ids::ConnId;
use crate::io::{Event, Input, Output};
use crate::node::Node;
use crate::rng::SeededRng;
use crate::rtmp::client::{ClientEvent, RtmpClient};

use super::{MemoryFs, MemoryTcp, MemoryUdp, ReadBlocks};

/// How many `Timeout`s at one instant [`MemoryNet::run_until`] feeds before it calls the
/// node's timer stuck (a node does a bounded amount of work per instant).
const STUCK_TIMER_TURNS: u32 = 10_000;

/// One in-memory client connection.
#[derive(Debug)]
pub struct MemoryClient {
    /// The node's id for this connection.
    pub conn: ConnId,
    /// The client machine.
    pub client: RtmpClient,
    /// Events the client reported, in order.
    pub events: Vec<ClientEvent>,
    /// Set once the node closed the connection.
    pub closed: bool,
    /// A muted client neither sends nor reads: a peer that went silent (or a frozen reader).
    pub muted: bool,
    /// A deaf client sends but never reads: a peer that stopped reading its socket and goes
    /// on writing (so that the node's liveness checks see it alive).
    pub deaf: bool,
    /// A bulk reader's low-water mark (SO_RCVLOWAT): what the node writes waits in the
    /// client's receive buffer until this many bytes have gathered, and only then does the
    /// client read it (0: it reads every write at once).
    pub low_water: usize,
    /// Every byte the node sent this client, when [`MemoryNet::keep_raw`] is set.
    pub raw: Vec<u8>,
    /// Writes to this client that moved bytes (each a `writev` for a real driver).
    pub writes: usize,
    /// Reads the node got from this client (each a `read` for a real driver).
    pub reads: usize,
    /// The node asked for this client to be read on the grid, this often
    /// ([`Output::ReadPacing`]), and [`MemoryNet::pace_reads`] honours it: what the client
    /// sends waits for its next tick.
    pub read_every: Option<Duration>,
    /// Paced: the grid's ticks from one read to the next, and those left before the next.
    read_stride: u32,
    ticks_to_read: u32,
    /// Paced and read in this pump.
    read_due: bool,
    /// The node asked for a write ([`Output::Transmit`]) not yet carried out.
    wants_write: bool,
    inbox: BytesMut,
}

/// A node and the clients connected to it in memory.
#[derive(Debug)]
pub struct MemoryNet {
    /// The node under test.
    pub node: Node,
    /// The clients, indexed by the handle [`MemoryNet::connect`] returned.
    pub clients: Vec<MemoryClient>,
    rng: SeededRng,
    /// Keep client events (disable for benchmarks that only count bytes).
    pub record_events: bool,
    /// The disk the node's file requests run against.
    pub fs: MemoryFs,
    /// Events the node emitted, in order (when `record_events` is set).
    pub node_events: Vec<Event>,
    /// Keep a copy of the bytes each client receives (in [`MemoryClient::raw`]).
    pub keep_raw: bool,
    /// The UDP network the node's sockets live on.
    pub udp: MemoryUdp,
    /// The TCP network of the node's own connections and listeners.
    pub tcp: MemoryTcp,
    /// What the node asked of the relay between workers (a node made a worker with
    /// [`Node::with_relay`]), in order, for the test to carry out.
    pub relay_out: Vec<crate::worker_relay::RelayOut>,
    /// Write to a client only when the node asked ([`Output::Transmit`]), as a real driver
    /// does, instead of whenever something is queued (for tests of when writes happen).
    pub transmit_driven: bool,
    /// Where what the clients send is delivered from.
    reads: ReadBlocks,
    /// Reads are paced as the node asks ([`Self::pace_reads`]): the grid's next tick and
    /// interval, once a connection is paced.
    read_pacing: Option<Option<(Instant, Duration)>>,
}

impl MemoryNet {
    /// Wraps `node`.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            clients: Vec::new(),
            rng: SeededRng::new(99),
            record_events: true,
            fs: MemoryFs::default(),
            node_events: Vec::new(),
            keep_raw: false,
            udp: MemoryUdp::default(),
            tcp: MemoryTcp::default(),
            relay_out: Vec::new(),
            transmit_driven: false,
            reads: ReadBlocks::default(),
            read_pacing: None,
        }
    }

    /// Honours [`Output::ReadPacing`] as a driver that paces reads does (and tells the node
    /// so, [`Node::enable_read_pacing`]): a paced client's bytes are read on one grid (the
    /// shortest interval asked; a longer one is read every so many ticks), all that it sent
    /// since its last read in one read.
    pub fn pace_reads(&mut self) {
        self.node.enable_read_pacing();
        self.read_pacing = Some(None);
    }

    /// Runs up to `count` held file requests (see [`MemoryFs::hold`]) and reports them done.
    pub fn release_files(&mut self, now: Instant, count: usize) {
        for _ in 0..count {
            let Some(request) = self.fs.held.pop_front() else {
                break;
            };
            let result = self.fs.execute(&request);
            self.node.handle(
                now,
                Input::FileDone {
                    file: request.file,
                    result,
                },
            );
        }
        self.pump(now);
    }

    /// Moves virtual time from `*now` to `until`, firing every node timer on the way at its
    /// deadline and pumping after each.
    pub fn run_until(&mut self, now: &mut Instant, until: Instant) {
        self.pump(*now);
        // A node whose timer does not move when it is fed `Timeout` at its deadline would loop
        // here for ever: a test should fail on that, not hang.
        let mut same_instant = 0u32;
        while let Some(deadline) = self.node.poll_timeout() {
            if deadline > until {
                break;
            }
            if deadline <= *now {
                same_instant += 1;
                assert!(
                    same_instant < STUCK_TIMER_TURNS,
                    "the node's timer at {deadline:?} does not move: {STUCK_TIMER_TURNS} \
                     Input::Timeout at {now:?} left it due"
                );
            } else {
                same_instant = 0;
            }
            *now = deadline.max(*now);
            self.node.handle(*now, Input::Timeout);
            self.pump(*now);
        }
        *now = until.max(*now);
        self.pump(*now);
    }

    /// Connects a new client to `app`; returns its index.
    pub fn connect(&mut self, now: Instant, app: &str) -> usize {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + self.clients.len() as u16));
        let conn = self.node.accept(now, peer);
        let client = RtmpClient::new(&mut self.rng, app, &format!("rtmp://127.0.0.1/{app}"));
        self.clients.push(MemoryClient {
            conn,
            client,
            events: Vec::new(),
            closed: false,
            muted: false,
            deaf: false,
            low_water: 0,
            raw: Vec::new(),
            writes: 0,
            reads: 0,
            read_every: None,
            read_stride: 1,
            ticks_to_read: 0,
            read_due: false,
            wants_write: false,
            inbox: BytesMut::new(),
        });
        self.clients.len() - 1
    }

    /// The events client `index` has seen.
    pub fn events(&self, index: usize) -> &[ClientEvent] {
        &self.clients[index].events
    }

    /// The `onStatus` codes client `index` received, in order.
    pub fn statuses(&self, index: usize) -> Vec<String> {
        self.events(index)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status(_, code) => Some(code.clone()),
                _ => None,
            })
            .collect()
    }

    /// The audio and video client `index` received: (type, timestamp, payload).
    pub fn media(&self, index: usize) -> Vec<(u8, u32, Vec<u8>)> {
        use crate::rtmp::message::type_id;
        self.events(index)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m)
                    if m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO =>
                {
                    Some((m.type_id, m.timestamp, m.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    /// Moves bytes until quiet.
    pub fn pump(&mut self, now: Instant) {
        // The grid's ticks that have come since the last pump; the paced clients due at one
        // of them are read in this pump.
        let mut ticks = 0;
        if let Some(Some((next, every))) = &mut self.read_pacing {
            while *next <= now {
                ticks += 1;
                *next += *every;
            }
        }
        for c in self.clients.iter_mut().filter(|c| c.read_every.is_some()) {
            c.read_due = ticks > c.ticks_to_read;
            c.ticks_to_read = if c.read_due {
                c.read_stride - 1
            } else {
                c.ticks_to_read - ticks
            };
        }
        loop {
            let mut moved = false;
            for event in self.udp.take_inbound() {
                moved = true;
                self.node.handle(now, Input::Udp(event));
            }
            for event in self.tcp.take_inbound() {
                moved = true;
                self.node.handle(now, Input::Tcp(event));
            }
            for c in self.clients.iter_mut().filter(|c| !c.muted) {
                if c.read_every.is_some() {
                    if !c.read_due {
                        continue;
                    }
                    // Everything since the last read, in one read.
                    let mut sent = Vec::new();
                    while let Some(bytes) = c.client.take_output() {
                        sent.push(bytes);
                    }
                    if sent.is_empty() || c.closed {
                        continue;
                    }
                    moved = true;
                    c.reads += 1;
                    let parts: Vec<&[u8]> = sent.iter().map(|b| &b[..]).collect();
                    let data = self.reads.0.carve(&parts);
                    self.node
                        .handle(now, Input::Received { conn: c.conn, data });
                    continue;
                }
                while let Some(bytes) = c.client.take_output() {
                    if c.closed {
                        continue;
                    }
                    moved = true;
                    c.reads += 1;
                    let data = self.reads.0.carve(&[&bytes]);
                    self.node
                        .handle(now, Input::Received { conn: c.conn, data });
                }
            }
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Close { conn } => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                            // As a driver does: what is queued is written before the close.
                            if !c.muted && !c.deaf && !c.closed {
                                let before = c.inbox.len();
                                drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                                if self.keep_raw {
                                    c.raw.extend_from_slice(&c.inbox[before..]);
                                }
                                let _ = c.client.received(&mut c.inbox);
                                while let Some(event) = c.client.poll_event() {
                                    if self.record_events {
                                        c.events.push(event);
                                    }
                                }
                            }
                            c.closed = true;
                        }
                        self.node.handle(now, Input::Closed { conn });
                    }
                    Output::File(request) if self.fs.hold => self.fs.held.push_back(request),
                    Output::File(request) => {
                        let result = self.fs.execute(&request);
                        let file = request.file;
                        self.node.handle(now, Input::FileDone { file, result });
                    }
                    Output::Udp(command) => {
                        moved = true;
                        for event in self.udp.execute(command) {
                            self.node.handle(now, Input::Udp(event));
                        }
                    }
                    Output::Tcp(command) => {
                        moved = true;
                        self.tcp.execute(command);
                    }
                    Output::Relay(out) => self.relay_out.push(out),
                    Output::ReadPacing { conn, every } => {
                        let Some(grid) = &mut self.read_pacing else {
                            continue;
                        };
                        if let Some(every) = every {
                            // The grid starts with the first paced connection, and goes to
                            // the shortest interval asked.
                            let (next, interval) = grid.get_or_insert((now + every, every));
                            if every < *interval {
                                (*next, *interval) = ((now + every).min(*next), every);
                                for c in self.clients.iter_mut() {
                                    c.read_stride = stride(c.read_every, every);
                                }
                            }
                        }
                        let interval = grid.map_or(Duration::ZERO, |(_, interval)| interval);
                        if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                            let stride = stride(every, interval);
                            // Newly paced, or more often: read at the grid's next tick.
                            if c.read_every.is_none() || stride < c.read_stride {
                                c.ticks_to_read = 0;
                            }
                            c.read_every = every;
                            c.read_stride = stride;
                            // Back to reads at once: what waited is read now.
                            moved |= every.is_none();
                        }
                    }
                    Output::Event(event) if self.record_events => self.node_events.push(event),
                    Output::Transmit { conn } => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                            c.wants_write = true;
                        }
                    }
                    Output::Event(_) => {}
                }
            }
            for c in &mut self.clients {
                if c.closed || c.muted || c.deaf || (self.transmit_driven && !c.wants_write) {
                    continue;
                }
                c.wants_write = false;
                let before = c.inbox.len();
                let drained = drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                if drained == 0 {
                    continue;
                }
                c.writes += 1;
                if self.keep_raw {
                    c.raw.extend_from_slice(&c.inbox[before..]);
                }
                moved = true;
                if c.inbox.len() < c.low_water {
                    continue; // not woken yet: the bytes wait in its receive buffer
                }
                if c.client.received(&mut c.inbox).is_err() {
                    c.closed = true;
                    continue;
                }
                while let Some(event) = c.client.poll_event() {
                    if self.record_events {
                        c.events.push(event);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// Copies everything queued for `conn` into `into` and reports it drained; returns the count.
pub fn drain_into(node: &mut Node, now: Instant, conn: ConnId, into: &mut BytesMut) -> usize {
    let mut total = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = node.io_slices(conn, &mut slices);
        if n == 0 {
            return total;
        }
        let mut bytes = 0;
        for s in &slices[..n] {
            into.extend_from_slice(s);
            bytes += s.len();
        }
        node.handle(now, Input::Drained { conn, bytes });
        total += bytes;
    }
}

/// The grid's ticks from one read of a connection read every `every` to the next, on a grid
/// of `interval` (at least one).
fn stride(every: Option<Duration>, interval: Duration) -> u32 {
    let (Some(every), false) = (every, interval.is_zero()) else {
        return 1;
    };
    u32::try_from(every.as_nanos() / interval.as_nanos())
        .unwrap_or(u32::MAX)
        .max(1)
}
