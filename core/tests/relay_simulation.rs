//! An origin, three edges pulling from it and 300 players, in memory over a seeded lossy
//! network in virtual time ([`SimCluster`]): several streams are published to the origin,
//! the players are spread over the edges and join over time. Every player gets every frame
//! from its join point (a late joiner from a keyframe), the origin sees one play per stream
//! per edge, the same seed replays the same run, and an upstream that stalls (a publisher
//! that stops sending, a link from the origin to one edge that stops delivering) neither
//! delays nor drops a frame for the players of the other streams or the other edges.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use siprtmp_core::node::{AppConfig, Event, NodeConfig, RelayUrl, ServerConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sim::SimConfig;
use siprtmp_core::sim_cluster::{ClusterConfig, SimCluster};
use siprtmp_core::testkit::{synthetic_av, MediaChecker};

const EDGES: usize = 3;
const STREAMS: usize = 3;
const PLAYERS: usize = 300;
/// Each stream's media (keyframes every 2 s).
const MEDIA: Duration = Duration::from_secs(6);
/// When a stall begins, from the first frame.
const STALL_AT: Duration = Duration::from_secs(3);
/// The network's worst case per hop: a segment handed to it arrives within the latency, the
/// jitter and one retransmission timeout (a segment behind a lost one waits for it, but no longer: TCP keeps
/// order, and the retransmission is due by then). A frame crosses three hops (publisher to
/// origin, origin to edge, edge to player) and the nodes pass it on as it arrives, so no
/// frame may take longer than three of those; what a stall elsewhere added would be seconds.
const LATENCY: Duration = Duration::from_millis(20);
const JITTER: Duration = Duration::from_millis(10);
const RTO: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_millis(3 * (20 + 10 + 200));

/// What goes wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stall {
    None,
    /// The publisher of this stream stops sending at [`STALL_AT`].
    Publisher(usize),
    /// From [`STALL_AT`], nothing the origin sends this edge (a node index) arrives.
    Link(usize),
}

/// What one player saw.
#[derive(Debug)]
struct Player {
    edge: usize,
    stream: usize,
    join: Duration,
    index: Option<usize>,
    checker: MediaChecker,
    /// Whether the first video frame after the configurations was a keyframe.
    first_video_key: Option<bool>,
    /// The timestamp of the first frame, and when the first media came.
    first_ts: Option<u32>,
    first_at: Option<Instant>,
    /// The longest time from a frame's publication to its arrival, for frames published
    /// after the player's first media (not the catch-up of a late joiner).
    max_delay: Duration,
    last_ts: Option<u32>,
}

struct Outcome {
    trace: u64,
    players: Vec<Player>,
    /// Plays at the origin, by the address of the edge and the stream.
    origin_plays: BTreeMap<(IpAddr, String), usize>,
    /// What the origin holds, at the end, for the network to take to each edge (its plays'
    /// connections), by the edge's address.
    origin_queued: BTreeMap<IpAddr, usize>,
}

/// Stream `s`'s media: the synthetic stream, each frame marked with the stream so that a
/// player of one can never pass for a player of another.
fn media(s: usize) -> Vec<RtmpMessage> {
    synthetic_av(1, MEDIA)
        .into_iter()
        .map(|m| {
            let mut body = m.payload.to_vec();
            let config = body.get(1) == Some(&0);
            if !config && body.len() > 10 {
                body[10] = 0xa0 + s as u8;
            }
            RtmpMessage::new(m.type_id, m.stream_id, m.timestamp, body)
        })
        .collect()
}

fn name(s: usize) -> String {
    format!("s{s}")
}

fn edge_config() -> NodeConfig {
    let url = RelayUrl::parse(&format!("rtmp://{}/live", SimCluster::addr(0))).unwrap();
    let mut server = ServerConfig::default();
    server.apps.insert(
        "live".into(),
        AppConfig {
            pull: vec![url],
            ..AppConfig::default()
        },
    );
    NodeConfig {
        server,
        ..NodeConfig::default()
    }
}

fn run(seed: u64, stall: Stall) -> Outcome {
    let config = ClusterConfig {
        net: SimConfig {
            seed,
            latency: LATENCY,
            jitter: JITTER,
            max_segment: 1400,
            loss: 0.02,
            retransmit_timeout: RTO,
        },
        // Small enough that a stalled link fills it within the run (a stream is about
        // 17 kB/s), large enough for a GOP of catch-up at once.
        window: 32 << 10,
    };
    let mut sim = SimCluster::new(config, Instant::now());
    let origin = sim.add_node(NodeConfig::default());
    for _ in 0..EDGES {
        sim.add_node(edge_config());
    }
    sim.record_events = true;
    let settle = Duration::from_secs(1);
    let publishers: Vec<usize> = (0..STREAMS).map(|_| sim.connect(origin, "live")).collect();
    sim.run_for(settle);
    for &p in &publishers {
        sim.client(p).create_stream();
    }
    sim.run_for(settle);
    for (s, &p) in publishers.iter().enumerate() {
        sim.client(p).publish(1, &name(s));
    }
    sim.run_for(settle);
    for &p in &publishers {
        sim.take_events(p);
    }

    let media: Vec<Vec<RtmpMessage>> = (0..STREAMS).map(media).collect();
    let mut players: Vec<Player> = (0..PLAYERS)
        .map(|i| Player {
            edge: 1 + i % EDGES,
            stream: (i / EDGES) % STREAMS,
            join: Duration::from_millis((i as u64 % 10) * 400),
            index: None,
            checker: MediaChecker::new(&media[(i / EDGES) % STREAMS]),
            first_video_key: None,
            first_ts: None,
            first_at: None,
            max_delay: Duration::ZERO,
            last_ts: None,
        })
        .collect();
    // Every stream's messages, in time order (stable: stream order at equal times).
    let mut schedule: Vec<(u32, usize, &RtmpMessage)> = media
        .iter()
        .enumerate()
        .flat_map(|(s, msgs)| msgs.iter().map(move |m| (m.timestamp, s, m)))
        .collect();
    schedule.sort_by_key(|(t, s, _)| (*t, *s));

    let start = sim.now();
    let feed = |sim: &mut SimCluster, players: &mut [Player]| {
        for p in players.iter_mut() {
            let Some(i) = p.index else { continue };
            for (at, event) in sim.take_events(i) {
                match event {
                    ClientEvent::Connected => sim.client(i).create_stream(),
                    ClientEvent::StreamCreated(id) => sim.client(i).play(id, &name(p.stream), -1.0),
                    ClientEvent::Media(m) => {
                        p.checker.check(&m);
                        let config = m.payload.get(1) == Some(&0);
                        if config || !(m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO) {
                            continue;
                        }
                        if m.type_id == type_id::VIDEO && p.first_video_key.is_none() {
                            p.first_video_key = Some(m.payload[0] >> 4 == 1);
                        }
                        p.first_ts.get_or_insert(m.timestamp);
                        let first_at = *p.first_at.get_or_insert(at);
                        let published = start + Duration::from_millis(u64::from(m.timestamp));
                        if published >= first_at {
                            p.max_delay = p.max_delay.max(at - published);
                        }
                        p.last_ts = Some(m.timestamp);
                    }
                    _ => {}
                }
            }
        }
    };
    let mut stalled = false;
    for (t, s, msg) in schedule {
        let at = start + Duration::from_millis(u64::from(t));
        for p in players.iter_mut() {
            if p.index.is_none() && start + p.join <= at {
                p.index = Some(sim.connect(p.edge, "live"));
            }
        }
        if !stalled && at >= start + STALL_AT {
            stalled = true;
            if let Stall::Link(edge) = stall {
                sim.stall(origin, edge);
            }
        }
        sim.run_until(at);
        feed(&mut sim, &mut players);
        if stall == Stall::Publisher(s) && at >= start + STALL_AT {
            continue;
        }
        sim.client(publishers[s]).send_media(msg);
    }
    sim.run_for(Duration::from_secs(3));
    feed(&mut sim, &mut players);

    let mut peers = BTreeMap::new();
    let mut origin_plays = BTreeMap::new();
    let mut origin_queued = BTreeMap::new();
    let origin_node = &sim.nodes[origin];
    for (_, event) in &origin_node.events {
        match event {
            Event::Connected { conn, peer, .. } => {
                peers.insert(*conn, peer.ip());
            }
            Event::PlayStarted { conn, stream } => {
                *origin_plays
                    .entry((peers[conn], stream.clone()))
                    .or_insert(0) += 1;
                *origin_queued.entry(peers[conn]).or_insert(0) +=
                    origin_node.node.queued_bytes(*conn);
            }
            _ => {}
        }
    }
    Outcome {
        trace: sim.trace_hash(),
        players,
        origin_plays,
        origin_queued,
    }
}

/// Every frame from the join point, from a keyframe, on time.
fn assert_served(p: &Player, i: usize) {
    let frames = p
        .checker
        .finish()
        .unwrap_or_else(|e| panic!("player {i} (edge {}, stream {}): {e}", p.edge, p.stream));
    assert!(frames > 0);
    assert_eq!(
        p.first_video_key,
        Some(true),
        "player {i} starts on a keyframe"
    );
    // From its join point: the GOP it joined in (keyframes every 2 s), not later.
    let first = u64::from(p.first_ts.unwrap());
    let joined = p.join.as_millis() as u64;
    assert!(
        first <= joined.max(1) + 2000,
        "player {i} joined at {joined} ms, first frame {first} ms"
    );
    assert!(
        p.max_delay <= MAX_DELAY,
        "player {i} (edge {}, stream {}): a frame {:?} late",
        p.edge,
        p.stream,
        p.max_delay
    );
}

#[test]
fn three_edges_serve_300_players_every_frame_with_one_pull_per_stream_per_edge() {
    let outcome = run(7, Stall::None);
    for (i, p) in outcome.players.iter().enumerate() {
        assert_served(p, i);
    }
    let mut expected = BTreeMap::new();
    for edge in 1..=EDGES {
        for s in 0..STREAMS {
            expected.insert(
                (SimCluster::addr(edge).ip(), format!("live/{}", name(s))),
                1,
            );
        }
    }
    assert_eq!(outcome.origin_plays, expected);

    // The same seed replays the same run, byte for byte; another seed makes another.
    assert_eq!(run(7, Stall::None).trace, outcome.trace);
    assert_ne!(run(8, Stall::None).trace, outcome.trace);
}

#[test]
fn a_publisher_that_stops_delays_no_player_of_another_stream() {
    let outcome = run(21, Stall::Publisher(0));
    let stall_ms = STALL_AT.as_millis() as u32;
    for (i, p) in outcome.players.iter().enumerate() {
        if p.stream == 0 {
            // The stall is real: nothing past it reached these players.
            assert!(p.last_ts.is_none_or(|t| t < stall_ms), "player {i}");
        } else {
            assert_served(p, i);
        }
    }
}

#[test]
fn a_stalled_link_to_one_edge_delays_no_player_of_the_others() {
    let edge = 2;
    let outcome = run(33, Stall::Link(edge));
    let media_ms = MEDIA.as_millis() as u32;
    let mut stalled = 0;
    for (i, p) in outcome.players.iter().enumerate() {
        if p.edge == edge {
            // The stall is real: these players miss the end.
            if p.last_ts.is_none_or(|t| t + 1000 < media_ms) {
                stalled += 1;
            }
        } else {
            assert_served(p, i);
        }
    }
    assert_eq!(stalled, PLAYERS / EDGES);
    // The stall reached the origin: the network took no more for that edge (its window is
    // full), the origin holds the rest; for the other edges it holds nothing.
    let stalled_ip = SimCluster::addr(edge).ip();
    for (ip, queued) in &outcome.origin_queued {
        if *ip == stalled_ip {
            assert!(*queued > 0, "nothing held for the stalled edge");
        } else {
            assert_eq!(*queued, 0, "held for {ip}");
        }
    }
    assert_eq!(outcome.origin_queued.len(), EDGES);
}
