//! The soak's network: every TCP segment and UDP datagram in flight, in a timing wheel of
//! one-millisecond slots, with seeded latency, jitter, loss and reordering.
//!
//! TCP (the RTMP connections) loses nothing and keeps order, as TCP does: a "lost" segment
//! arrives one retransmission timeout late and holds back everything behind it in that
//! direction. Each write is cut into segments of at most `max_segment` bytes, some of them
//! split again at a random point, so that chunk headers and messages arrive in pieces. UDP
//! (SIP and RTP) loses datagrams for good and reorders them: each gets its own jitter, and
//! some are held back a while longer.
//!
//! A wheel instead of a priority queue because the soak moves a billion packets an hour. Its
//! slots are lists threaded through one pool of entries, not a vector each: the pool's size
//! is the most packets ever in flight at once, which levels off, where a vector per slot would
//! keep the capacity of the busiest millisecond it ever served and creep up all run long
//! (the soak measures the heap, the network's included).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::rng::SeededRng;

/// The network's behaviour.
#[derive(Debug, Clone)]
pub(crate) struct NetConfig {
    /// One-way latency.
    pub latency: Duration,
    /// Extra delay per segment or datagram, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Largest TCP segment.
    pub max_segment: usize,
    /// Share of TCP segments cut again at a random point.
    pub split: f64,
    /// Probability that a TCP segment is lost once (and arrives `retransmit_timeout` late).
    pub tcp_loss: f64,
    /// Delay a lost TCP segment adds.
    pub retransmit_timeout: Duration,
    /// Probability that a datagram is lost.
    pub udp_loss: f64,
    /// Probability that a datagram is held back (arrives behind later ones).
    pub udp_reorder: f64,
    /// How long a held-back datagram is held, at most (uniform from 1 ms).
    pub reorder_delay: Duration,
}

impl Default for NetConfig {
    /// 20 ms latency, 15 ms jitter; TCP: 1400-byte segments, a fifth split, 2 % lost (250 ms
    /// RTO); UDP: 5 % lost, 10 % held back up to 60 ms (three 20 ms frames).
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(15),
            max_segment: 1400,
            split: 0.2,
            tcp_loss: 0.02,
            retransmit_timeout: Duration::from_millis(250),
            udp_loss: 0.05,
            udp_reorder: 0.10,
            reorder_delay: Duration::from_millis(60),
        }
    }
}

impl NetConfig {
    /// The longest a TCP segment can take, in milliseconds (ordering never adds to it: a
    /// segment waits at most for one sent before it, which took no longer).
    pub(crate) fn tcp_max_ms(&self) -> u64 {
        ms(self.latency) + ms(self.jitter) + ms(self.retransmit_timeout)
    }

    /// The longest a datagram can take, in milliseconds.
    pub(crate) fn udp_max_ms(&self) -> u64 {
        ms(self.latency) + ms(self.jitter) + ms(self.reorder_delay)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A connection's slot in the world's table and the generation that used it: packets for a
/// connection that has since closed (and whose slot was reused) are recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnRef {
    /// Index in the table.
    pub index: u32,
    /// Generation of the slot.
    pub generation: u32,
}

/// Something in flight.
#[derive(Debug)]
pub(crate) enum Packet {
    /// A TCP segment from a client to the node.
    ToNode(ConnRef, Bytes),
    /// A TCP segment from the node to a client.
    ToClient(ConnRef, Bytes),
    /// The client closed its connection (after everything it sent).
    Fin(ConnRef),
    /// A UDP datagram.
    Datagram {
        /// Source.
        from: SocketAddr,
        /// Destination.
        to: SocketAddr,
        /// Bytes.
        data: Bytes,
    },
}

/// One direction of a TCP connection: when its last segment arrives (order is kept).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Lane {
    last_arrival: u64,
}

/// What the network carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireStats {
    /// TCP segments sent.
    pub segments: u64,
    /// TCP payload bytes sent.
    pub tcp_bytes: u64,
    /// Segments that were lost once and retransmitted.
    pub retransmitted: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagrams lost.
    pub datagrams_lost: u64,
    /// Datagrams held back behind later ones.
    pub datagrams_held: u64,
}

/// No entry.
const NONE: u32 = u32::MAX;

/// A packet in flight and the next in its slot.
#[derive(Debug)]
struct Entry {
    packet: Option<Packet>,
    next: u32,
}

/// What arrives in one slot: a list detached from the wheel, read with [`Wire::next_due`].
#[derive(Debug)]
pub(crate) struct Due(u32);

/// The network: a timing wheel of what is in flight.
#[derive(Debug)]
pub(crate) struct Wire {
    config: NetConfig,
    rng: SeededRng,
    /// Per slot, the first and last entry (`NONE` when empty).
    slots: Vec<(u32, u32)>,
    pool: Vec<Entry>,
    /// The first free entry of the pool.
    free: u32,
    /// Packets in flight.
    in_flight: usize,
    /// What went through.
    pub stats: WireStats,
}

impl Wire {
    /// An empty network; every random choice comes from `seed`.
    pub(crate) fn new(config: NetConfig, seed: u64) -> Self {
        let span = config.tcp_max_ms().max(config.udp_max_ms()) + 2;
        Self {
            config,
            rng: SeededRng::new(seed),
            slots: vec![(NONE, NONE); span.next_power_of_two() as usize],
            pool: Vec::new(),
            free: NONE,
            in_flight: 0,
            stats: WireStats::default(),
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Packets in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The most packets in flight at once so far (entries are reused, so the pool is as long
    /// as the peak), and the bytes the pool's capacity takes.
    pub(crate) fn peak_in_flight(&self) -> (usize, usize) {
        (
            self.pool.len(),
            self.pool.capacity() * std::mem::size_of::<Entry>(),
        )
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64) < p * f64::from(u32::MAX)
    }

    fn below_ms(&mut self, d: Duration) -> u64 {
        self.rng.below(ms(d) + 1)
    }

    fn schedule(&mut self, at: u64, packet: Packet) {
        let entry = Entry {
            packet: Some(packet),
            next: NONE,
        };
        let index = if self.free == NONE {
            self.pool.push(entry);
            (self.pool.len() - 1) as u32
        } else {
            let index = self.free;
            self.free = self.pool[index as usize].next;
            self.pool[index as usize] = entry;
            index
        };
        let mask = self.slots.len() as u64 - 1;
        let slot = &mut self.slots[(at & mask) as usize];
        if slot.1 == NONE {
            slot.0 = index;
        } else {
            self.pool[slot.1 as usize].next = index;
        }
        slot.1 = index;
        self.in_flight += 1;
    }

    /// Sends `data` at `now` (ms) over TCP in direction `lane`; `packet` wraps each segment.
    pub(crate) fn tcp(
        &mut self,
        now: u64,
        lane: &mut Lane,
        data: Bytes,
        packet: impl Fn(Bytes) -> Packet,
    ) {
        let mut rest = data;
        self.stats.tcp_bytes += rest.len() as u64;
        while !rest.is_empty() {
            let mut size = rest.len().min(self.config.max_segment.max(1));
            if size > 1 && self.chance(self.config.split) {
                size = 1 + self.rng.below(size as u64 - 1) as usize;
            }
            let segment = rest.split_to(size);
            let at = self.tcp_arrival(now, lane);
            self.schedule(at, packet(segment));
        }
    }

    /// The client's FIN at `now`, behind everything it sent on `lane`.
    pub(crate) fn fin(&mut self, now: u64, lane: &mut Lane, conn: ConnRef) {
        let at = self.tcp_arrival(now, lane);
        self.schedule(at, Packet::Fin(conn));
    }

    fn tcp_arrival(&mut self, now: u64, lane: &mut Lane) -> u64 {
        self.stats.segments += 1;
        let mut delay = ms(self.config.latency).max(1) + self.below_ms(self.config.jitter);
        if self.chance(self.config.tcp_loss) {
            self.stats.retransmitted += 1;
            delay += ms(self.config.retransmit_timeout);
        }
        let at = (now + delay).max(lane.last_arrival);
        lane.last_arrival = at;
        at
    }

    /// Sends a datagram at `now` (ms); false when the network loses it.
    pub(crate) fn udp(&mut self, now: u64, from: SocketAddr, to: SocketAddr, data: Bytes) -> bool {
        self.stats.datagrams += 1;
        if self.chance(self.config.udp_loss) {
            self.stats.datagrams_lost += 1;
            return false;
        }
        let mut delay = ms(self.config.latency).max(1) + self.below_ms(self.config.jitter);
        if self.chance(self.config.udp_reorder) {
            self.stats.datagrams_held += 1;
            delay += 1 + self.below_ms(
                self.config
                    .reorder_delay
                    .saturating_sub(Duration::from_millis(1)),
            );
        }
        self.schedule(now + delay, Packet::Datagram { from, to, data });
        true
    }

    /// Takes what arrives at `now` (ms): read it with [`Wire::next_due`], in the order it
    /// was sent. (What is sent meanwhile arrives a millisecond later at the earliest, in
    /// another slot.)
    pub(crate) fn take_due(&mut self, now: u64) -> Due {
        let mask = self.slots.len() as u64 - 1;
        let slot = std::mem::replace(&mut self.slots[(now & mask) as usize], (NONE, NONE));
        Due(slot.0)
    }

    /// The next packet of `due`, its entry given back to the pool.
    pub(crate) fn next_due(&mut self, due: &mut Due) -> Option<Packet> {
        if due.0 == NONE {
            return None;
        }
        let index = due.0;
        let entry = &mut self.pool[index as usize];
        let packet = entry.packet.take();
        due.0 = entry.next;
        entry.next = self.free;
        self.free = index;
        self.in_flight -= 1;
        packet
    }

    /// Entries the pool holds: the most packets that were ever in flight at once.
    pub(crate) fn pool_size(&self) -> usize {
        self.pool.len()
    }
}
