//! The soak: one node serving gateway calls and live players over a lossy, reordering
//! network, in memory and virtual time, for as long as asked, with every frame accounted
//! for and the heap sampled as it goes.
//!
//! - [`wire`]: the network (TCP that delays, UDP that loses and reorders), a timing wheel.
//! - [`net`]: the node driven as a driver would, its connections and UDP sockets.
//! - [`calls`]: gateway calls to an echoing far end, churning, with their frame ledger.
//! - [`players`]: publishers and churning players, every message checked.
//! - [`alloc`]: the counting allocator the soak binaries install.
//!
//! Time moves a millisecond at a time: what the wire delivers now, then the node's and the
//! far end's timers, then the scripted clients, then the node's writes. The run is a
//! function of the seed. At the end new sessions stop, every call hangs up and every player
//! leaves, and the node must be left with no connection, no socket and no call.
//!
//! Included by path from core/examples/soak.rs and core/tests/soak.rs.
#![allow(dead_code)]

pub(crate) mod alloc;
mod calls;
mod net;
mod players;
mod wire;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use siprtmp_core::node::{GatewayNodeConfig, Node, NodeConfig};

pub(crate) use calls::CallTotals;
pub(crate) use net::NetStats;
pub(crate) use players::PlayerTotals;
pub(crate) use wire::{NetConfig, WireStats};

use calls::Calls;
use net::{Net, Owner};
use players::Players;
use wire::{Packet, Wire};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct SoakConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Simulated time under load (the wind-down follows).
    pub duration: Duration,
    /// Gateway call slots: calls at once, each followed by another after a pause.
    pub calls: u32,
    /// Player slots: players at once, each followed by another after a pause.
    pub players: u32,
    /// Live streams the players share (one publisher each).
    pub streams: u32,
    /// The network.
    pub net: NetConfig,
    /// How long a call talks (uniform in the range).
    pub talk: (Duration, Duration),
    /// Pause between a slot's calls.
    pub call_pause: (Duration, Duration),
    /// How long a player watches.
    pub watch: (Duration, Duration),
    /// Pause between a slot's players.
    pub player_pause: (Duration, Duration),
    /// Slots start at random within this.
    pub ramp: Duration,
    /// How often the heap is sampled.
    pub sample_every: Duration,
    /// Samples before this are the warm-up, left out of the flatness verdict.
    pub warmup: Duration,
}

impl SoakConfig {
    /// The hour-long shape: calls of 30 s to 5 min and viewings of 30 s to 10 min with
    /// pauses of 1 to 10 s, a streams per 100 players, slots starting over the first minute,
    /// the heap sampled every minute, the first 10 minutes (or third of the run) warm-up.
    pub(crate) fn long(duration: Duration, calls: u32, players: u32) -> Self {
        Self {
            seed: 1,
            duration,
            calls,
            players,
            streams: players.div_ceil(100).max(1),
            net: NetConfig::default(),
            talk: (Duration::from_secs(30), Duration::from_secs(300)),
            call_pause: (Duration::from_secs(1), Duration::from_secs(10)),
            watch: (Duration::from_secs(30), Duration::from_secs(600)),
            player_pause: (Duration::from_secs(1), Duration::from_secs(10)),
            ramp: Duration::from_secs(60),
            sample_every: Duration::from_secs(60),
            warmup: Duration::from_secs(600).min(duration / 3),
        }
    }

    /// The few-minutes shape of the test: sessions of seconds, so that slots churn many
    /// times, the heap sampled every 10 s, the first minute warm-up.
    pub(crate) fn short(duration: Duration, calls: u32, players: u32) -> Self {
        Self {
            streams: players.div_ceil(10).max(1),
            talk: (Duration::from_secs(4), Duration::from_secs(20)),
            call_pause: (Duration::from_millis(200), Duration::from_secs(2)),
            watch: (Duration::from_secs(4), Duration::from_secs(25)),
            player_pause: (Duration::from_millis(200), Duration::from_secs(2)),
            ramp: Duration::from_secs(5),
            sample_every: Duration::from_secs(10),
            warmup: Duration::from_secs(60).min(duration / 2),
            ..Self::long(duration, calls, players)
        }
    }
}

/// Problems found, counted; the first few told in full.
#[derive(Debug, Default, Clone)]
pub(crate) struct Failures {
    /// How many.
    pub count: u64,
    /// The first 20.
    pub first: Vec<String>,
}

impl Failures {
    /// Notes one.
    pub(crate) fn note(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < 20 {
            self.first.push(what);
        }
    }
}

/// The heap and the load at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Simulated time since the start.
    pub at: Duration,
    /// Live heap bytes (the whole process: node, clients, far end, network, ledgers).
    pub live_bytes: usize,
    /// The node's connections.
    pub connections: usize,
    /// The most connections open at once so far: tables sized by concurrency (the node's
    /// sessions, the clients') double their capacity when it passes a power of two, a step
    /// in the heap that is not a leak.
    pub peak_connections: usize,
    /// The node's UDP sockets.
    pub sockets: usize,
    /// Packets in flight on the wire.
    pub in_flight: usize,
    /// The most packets in flight at once so far, and the bytes the wire's entry pool (sized
    /// by that peak) takes.
    pub peak_in_flight: (usize, usize),
    /// Wall time since the start.
    pub wall: Duration,
}

/// What is left once every client is gone.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leftovers {
    /// Connections the node still has.
    pub connections: usize,
    /// UDP sockets the node still holds.
    pub sockets: usize,
    /// Calls bob still holds.
    pub far_calls: usize,
    /// Live heap bytes then.
    pub live_bytes: usize,
    /// Live heap bytes then, less those before the run began: what the run left behind (the
    /// counts are process-wide, so a run after another does not see the first's).
    pub grown_bytes: isize,
}

/// How the heap moved after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MemoryTrend {
    /// Samples after the warm-up.
    pub samples: usize,
    /// Their mean, least and largest live bytes.
    pub mean: f64,
    /// Least.
    pub min: usize,
    /// Largest.
    pub max: usize,
    /// Least-squares slope, bytes per simulated minute.
    pub slope_per_minute: f64,
    /// The slope over the samples' span: how much the heap grew, as a trend.
    pub growth: f64,
}

impl MemoryTrend {
    /// Whether the trend's growth over the span stays within `share` of the mean (a leak of
    /// a few hundred bytes per session shows as a steady climb; noise from what happens to
    /// be in flight at a sample does not make a trend).
    pub(crate) fn is_flat(&self, share: f64) -> bool {
        self.samples >= 3 && self.growth <= share * self.mean
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub(crate) struct SoakReport {
    /// What ran.
    pub config: SoakConfig,
    /// The heap, every `sample_every`.
    pub samples: Vec<Sample>,
    /// The calls' totals and frame ledger.
    pub calls: CallTotals,
    /// The players' totals.
    pub players: PlayerTotals,
    /// What the network carried.
    pub wire: WireStats,
    /// The node's side.
    pub net: NetStats,
    /// Problems.
    pub failures: Failures,
    /// What was left after the wind-down.
    pub leftovers: Leftovers,
    /// Simulated time including the wind-down.
    pub simulated: Duration,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl SoakReport {
    /// The heap's trend after the warm-up.
    pub(crate) fn memory_trend(&self) -> MemoryTrend {
        let after: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at > self.config.warmup)
            .collect();
        let n = after.len() as f64;
        let xs: Vec<f64> = after.iter().map(|s| s.at.as_secs_f64() / 60.0).collect();
        let ys: Vec<f64> = after.iter().map(|s| s.live_bytes as f64).collect();
        let mean_x = xs.iter().sum::<f64>() / n.max(1.0);
        let mean = ys.iter().sum::<f64>() / n.max(1.0);
        let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
        let sxy: f64 = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (x - mean_x) * (y - mean))
            .sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let span = xs.last().zip(xs.first()).map_or(0.0, |(l, f)| l - f);
        MemoryTrend {
            samples: after.len(),
            mean,
            min: after.iter().map(|s| s.live_bytes).min().unwrap_or(0),
            max: after.iter().map(|s| s.live_bytes).max().unwrap_or(0),
            slope_per_minute: slope,
            growth: slope * span,
        }
    }

    /// A human summary.
    pub(crate) fn summary(&self) -> String {
        let c = &self.config;
        let f = &self.calls.frames;
        let p = &self.players;
        let w = &self.wire;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {:.0} simulated min ({:.0} s with the wind-down), {} call slots, {} player slots on {} streams, seed {}: {:.1} s wall",
            c.duration.as_secs_f64() / 60.0,
            self.simulated.as_secs_f64(),
            c.calls,
            c.players,
            c.streams,
            c.seed,
            self.wall.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "calls: {} started, {} accepted, ended by client bye / far bye / disconnect: {} / {} / {}; at most {} talking",
            self.calls.started, self.calls.accepted, self.calls.ended[0], self.calls.ended[1], self.calls.ended[2], self.calls.peak_talking
        );
        let _ = writeln!(
            s,
            "call frames: {} sent, {} sent as RTP, {} lost out, {} echoed, {} lost back, {} delivered to the node ({} behind a later one), {} received on remote",
            f.sent, f.rtp_out, f.lost_out, f.echoed, f.lost_back, f.delivered_back, f.reordered_back, f.received
        );
        let _ = writeln!(
            s,
            "SIP: {} datagrams, {} lost; {} RTCP to the far end; {} RTP datagrams of no current call",
            self.calls.sip_datagrams, self.calls.sip_lost, self.calls.rtcp_to_far, self.calls.stray_rtp
        );
        let _ = writeln!(
            s,
            "players: {} sessions ({} complete), at most {} watching; {} messages published, {} delivered and checked, {} in flight when their player left, {} missing",
            p.sessions, p.completed, p.peak_watching, p.published, p.delivered, p.in_flight_at_leave, p.missing
        );
        let _ = writeln!(
            s,
            "network: {} TCP segments ({:.1} GB, {} retransmitted), {} datagrams ({} lost, {} held back); {} connections, {} sockets bound, {} datagrams to closed ports",
            w.segments,
            w.tcp_bytes as f64 / 1e9,
            w.retransmitted,
            w.datagrams,
            w.datagrams_lost,
            w.datagrams_held,
            self.net.connections,
            self.net.binds,
            self.net.unbound_arrivals
        );
        let l = &self.leftovers;
        let _ = writeln!(
            s,
            "after the wind-down: {} connections, {} sockets, {} far-end calls, {} KiB live ({:+} KiB since the start)",
            l.connections,
            l.sockets,
            l.far_calls,
            l.live_bytes / 1024,
            l.grown_bytes / 1024
        );
        let _ = writeln!(s, "heap (live MiB) every {:?}:", c.sample_every);
        for (i, chunk) in self.samples.chunks(10).enumerate() {
            let row: Vec<String> = chunk
                .iter()
                .map(|x| format!("{:.1}", x.live_bytes as f64 / 1048576.0))
                .collect();
            let _ = writeln!(s, "  {:>5}: {}", i * 10 + 1, row.join(" "));
        }
        let t = self.memory_trend();
        let _ = writeln!(
            s,
            "after the {:?} warm-up: {} samples, {:.1} to {:.1} MiB (mean {:.1}), trend {:+.3} MiB/min = {:+.2} MiB over the span ({:+.2} % of the mean)",
            c.warmup,
            t.samples,
            t.min as f64 / 1048576.0,
            t.max as f64 / 1048576.0,
            t.mean / 1048576.0,
            t.slope_per_minute / 1048576.0,
            t.growth / 1048576.0,
            100.0 * t.growth / t.mean.max(1.0)
        );
        let _ = writeln!(s, "failures: {}", self.failures.count);
        for f in &self.failures.first {
            let _ = writeln!(s, "  {f}");
        }
        s
    }
}

/// The node's configuration: the gateway on 10.0.0.1 with RTP ports for every slot, no
/// limits per address or in total (every simulated client is well-behaved).
fn node_config(calls: u32) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.server.max_connections = 0;
    config.server.max_connections_per_ip = 0;
    let blocks = u32::max(calls + calls / 4 + 16, 64);
    let last = (10_000 + 4 * blocks - 1).min(39_999) as u16;
    config.server.gateway = Some(GatewayNodeConfig {
        bind_ip: "10.0.0.1".parse().unwrap(),
        rtp_ports: (10_000, last),
        max_clients: 0,
        max_clients_per_ip: 0,
        ..GatewayNodeConfig::default()
    });
    config
}

/// The world: the node, its network, and what drives it.
struct World {
    net: Net,
    calls: Calls,
    players: Players,
    failures: Failures,
    events: Vec<siprtmp_core::rtmp::client::ClientEvent>,
}

impl World {
    fn deliver(&mut self, packet: Packet) {
        match packet {
            Packet::ToNode(conn, data) => self.net.deliver_to_node(conn, data),
            Packet::Fin(conn) => self.net.fin(conn),
            Packet::ToClient(conn, data) => {
                let mut events = std::mem::take(&mut self.events);
                match self.net.deliver_to_client(conn, &data, &mut events) {
                    Ok(Some(owner)) => {
                        // What the client machine answers by itself (C2, acknowledgements).
                        self.net.flush_client(conn);
                        for event in events.drain(..) {
                            self.client_event(owner, event);
                        }
                    }
                    Ok(None) => {}
                    Err((owner, e)) => {
                        self.failures.note(e);
                        self.lost(owner);
                    }
                }
                events.clear();
                self.events = events;
            }
            Packet::Datagram { from, to, data } => {
                if to.ip() == calls::FAR_SIP.ip() {
                    self.calls
                        .far_received(&mut self.net, from, to, data, &mut self.failures);
                } else {
                    let bound = self.net.is_bound(to);
                    self.calls.delivered_to_node(from, &data, bound);
                    self.net.deliver_datagram(from, to, data);
                }
            }
        }
        self.route();
    }

    fn client_event(&mut self, owner: Owner, event: siprtmp_core::rtmp::client::ClientEvent) {
        let (net, failures) = (&mut self.net, &mut self.failures);
        match owner {
            Owner::Call(slot) => self.calls.client_event(net, slot, event, failures),
            Owner::Player(slot) => self.players.player_event(net, slot, event, failures),
            Owner::Publisher(k) => self.players.publisher_event(net, k, event, failures),
        }
    }

    fn lost(&mut self, owner: Owner) {
        match owner {
            Owner::Call(slot) => {
                self.calls
                    .connection_lost(&mut self.net, slot, &mut self.failures)
            }
            other => self.players.connection_lost(other, &mut self.failures),
        }
    }

    /// The node's datagrams onto the wire, and the connections it closed to their owners.
    fn route(&mut self) {
        while self.net.has_datagrams() || self.net.has_lost() {
            let mut datagrams = self.net.take_datagrams();
            for d in datagrams.drain(..) {
                self.calls.node_sent(&mut self.net, d.from, d.to, d.data);
            }
            self.net.give_back(datagrams);
            for owner in self.net.take_lost() {
                self.lost(owner);
            }
        }
    }

    /// One millisecond.
    fn tick(&mut self, now_ms: u64) {
        self.net.now_ms = now_ms;
        let mut due = self.net.wire.take_due(now_ms);
        while let Some(packet) = self.net.wire.next_due(&mut due) {
            self.deliver(packet);
        }
        self.net.timers();
        self.route();
        self.calls.far_timers(&mut self.net, &mut self.failures);
        self.calls.tick(&mut self.net, &mut self.failures);
        self.players.tick(&mut self.net, &mut self.failures);
        self.route();
        self.net.write_all();
        self.route();
    }

    fn sample(&self, at: u64, started: Instant) -> Sample {
        Sample {
            at: Duration::from_millis(at),
            live_bytes: alloc::live_bytes(),
            connections: self.net.node.connection_count(),
            peak_connections: self.net.peak_connections(),
            sockets: self.net.open_sockets(),
            in_flight: self.net.wire.in_flight(),
            peak_in_flight: self.net.wire.peak_in_flight(),
            wall: started.elapsed(),
        }
    }
}

/// After the wind-down, how long SIP transactions may linger (Timer J/K: 32 s over UDP)
/// before the node must have let go of everything.
const LINGER_MS: u64 = 40_000;
/// How long the wind-down may take before it counts as stuck.
const WIND_DOWN_MS: u64 = 120_000;

/// Runs the soak; `on_sample` sees each heap sample as it is taken.
pub(crate) fn run(config: &SoakConfig, mut on_sample: impl FnMut(&Sample)) -> SoakReport {
    let started = Instant::now();
    let live_before = alloc::live_bytes();
    let origin = started;
    let wire = Wire::new(config.net.clone(), config.seed ^ 0x5eed_0001);
    let node = Node::new(node_config(config.calls), origin, config.seed ^ 0x5eed_0002);
    let mut net = Net::new(node, wire, origin, config.seed ^ 0x5eed_0003);
    let tcp_max = config.net.tcp_max_ms();
    let udp_max = config.net.udp_max_ms();
    let calls = Calls::new(
        config.calls,
        config.talk,
        config.call_pause,
        config.ramp,
        tcp_max.max(udp_max),
        config.seed ^ 0x5eed_0004,
    );
    let players = Players::new(&mut net, config);
    let mut world = World {
        net,
        calls,
        players,
        failures: Failures::default(),
        events: Vec::new(),
    };
    let end = config.duration.as_millis() as u64;
    let every = (config.sample_every.as_millis() as u64).max(1);
    let mut samples = Vec::new();
    let mut all_left: Option<u64> = None;
    let mut t = 0;
    loop {
        t += 1;
        world.tick(t);
        if t % every == 0 && t <= end {
            let sample = world.sample(t, started);
            on_sample(&sample);
            samples.push(sample);
        }
        if t == end {
            world.calls.wind_down(&mut world.net);
            world.players.wind_down(&mut world.net);
        }
        if t < end {
            continue;
        }
        match all_left {
            None if world.calls.all_done() && world.players.all_done() => {
                world.players.close_publishers(&mut world.net);
                all_left = Some(t);
            }
            None if t > end + WIND_DOWN_MS => {
                let pending = format!(
                    "the wind-down did not finish in two minutes: calls {}; players {}",
                    world.calls.pending(),
                    world.players.pending()
                );
                world.failures.note(pending);
                break;
            }
            Some(left) if t >= left + LINGER_MS && world.net.wire.in_flight() == 0 => break,
            _ => {}
        }
    }
    let leftovers = Leftovers {
        connections: world.net.node.connection_count(),
        sockets: world.net.open_sockets(),
        far_calls: world.calls.far_calls(),
        live_bytes: alloc::live_bytes(),
        grown_bytes: alloc::live_bytes() as isize - live_before as isize,
    };
    if leftovers.connections + leftovers.sockets + leftovers.far_calls > 0 {
        world
            .failures
            .note(format!("left after every client went: {leftovers:?}"));
    }
    if world.calls.totals.stray_rtp > 0 {
        let stray = world.calls.totals.stray_rtp;
        world
            .failures
            .note(format!("{stray} RTP datagrams belonged to no current call"));
    }
    if let Some(closing) = world.net.closings.first() {
        world.failures.note(format!(
            "the node closed {} connections by itself, first {closing}",
            world.net.stats.closed_by_node
        ));
    }
    SoakReport {
        config: config.clone(),
        samples,
        calls: world.calls.totals.clone(),
        players: world.players.totals.clone(),
        wire: world.net.wire.stats,
        net: world.net.stats,
        failures: world.failures,
        leftovers,
        simulated: Duration::from_millis(t),
        wall: started.elapsed(),
    }
}
