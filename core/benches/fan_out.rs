//! Decode a 10 KB video message from chunks and fan it out to 1,000 players: the server's
//! per-message, per-player cost. Prints the cost per player.
//!
//! Then 20 ms audio messages to 1,000 players as a driver runs them (virtual time advancing
//! 20 ms a round, the node's timer fired when due, one write per `Transmit`), without and with
//! merged writes (`ServerConfig::merge_writes`, 100 ms): prints the cost per player per message
//! and the writes per player per second. In memory a write is nearly free; on a socket each is
//! a `writev`, which is what merging saves.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use siprtmp_core::node::{ConnId, Input, Node, NodeConfig, Output};
use siprtmp_core::rtmp::chunk_encoder::encode_fmt0;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::MemoryNet;

const PLAYERS: usize = 1000;
const PAYLOAD: usize = 10 * 1024;

fn stream_id(events: &[ClientEvent]) -> u32 {
    events
        .iter()
        .find_map(|e| match e {
            ClientEvent::StreamCreated(id) => Some(*id),
            _ => None,
        })
        .expect("stream created")
}

/// A node with one publisher on live/bench and `PLAYERS` players, all in memory.
fn setup(now: Instant, mut config: NodeConfig) -> (Node, ConnId, Vec<ConnId>) {
    // Every in-memory client comes from the same address: the per-address cap (a defence
    // against one host taking every slot) would refuse most of the players.
    config.server.max_connections_per_ip = PLAYERS + 1;
    let mut net = MemoryNet::new(Node::new(config, now, 1));
    let publisher = net.connect(now, "live");
    let players: Vec<usize> = (0..PLAYERS).map(|_| net.connect(now, "live")).collect();
    net.pump(now);
    for &c in std::iter::once(&publisher).chain(&players) {
        net.clients[c].client.create_stream();
    }
    net.pump(now);
    let id = stream_id(net.events(publisher));
    net.clients[publisher].client.set_chunk_size(4096);
    net.clients[publisher].client.publish(id, "bench");
    for &p in &players {
        let id = stream_id(net.events(p));
        net.clients[p].client.play(id, "bench", -2.0);
    }
    net.pump(now);
    // A keyframe first, so that players are not waiting for one.
    let mut key = vec![0x17, 0x01, 0, 0, 0];
    key.resize(PAYLOAD, 0xAB);
    net.clients[publisher]
        .client
        .send_media(&RtmpMessage::new(type_id::VIDEO, id, 0, key));
    net.record_events = false;
    net.pump(now);
    let conns = players.iter().map(|&p| net.clients[p].conn).collect();
    (net.node, net.clients[publisher].conn, conns)
}

fn fan_out(c: &mut Criterion) {
    let now = Instant::now();
    let (mut node, publisher, players) = setup(now, NodeConfig::default());
    let mut frame = vec![0x27, 0x01, 0, 0, 0];
    frame.resize(PAYLOAD, 0xCD);
    // The publisher's chunk stream: one self-contained 10 KB message in 4096-byte chunks.
    let chunks: Bytes = encode_fmt0(6, &RtmpMessage::new(type_id::VIDEO, 1, 40, frame), 4096);
    // The measured work is real: one round queues the whole frame for every player.
    node.handle(
        now,
        Input::Received {
            conn: publisher,
            data: BytesMut::from(&chunks[..]),
        },
    );
    let queued: usize = players.iter().map(|&p| node.queued_bytes(p)).sum();
    assert!(
        queued >= PLAYERS * PAYLOAD,
        "every player got the frame ({queued} bytes)"
    );
    for &p in &players {
        let bytes = node.queued_bytes(p);
        node.handle(now, Input::Drained { conn: p, bytes });
    }
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(PLAYERS as u64));
    group.bench_function("10KB_video_to_1000_players", |b| {
        b.iter(|| {
            node.handle(
                now,
                Input::Received {
                    conn: publisher,
                    data: BytesMut::from(&chunks[..]),
                },
            );
            for &p in &players {
                let queued = node.queued_bytes(p);
                node.handle(
                    now,
                    Input::Drained {
                        conn: p,
                        bytes: queued,
                    },
                );
            }
            while node.poll_output().is_some() {}
        })
    });
    group.finish();
    // Criterion reports time per iteration and elements (players) per second; say the cost per
    // player in plain words as well.
    let start = std::time::Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        node.handle(
            now,
            Input::Received {
                conn: publisher,
                data: BytesMut::from(&chunks[..]),
            },
        );
        for &p in &players {
            let queued = node.queued_bytes(p);
            node.handle(
                now,
                Input::Drained {
                    conn: p,
                    bytes: queued,
                },
            );
        }
        while node.poll_output().is_some() {}
    }
    let per_player = start.elapsed().as_nanos() as f64 / (rounds * PLAYERS) as f64;
    println!("fan_out: {per_player:.1} ns per player per 10 KB message (decode + queue + drain)");
}

/// Audio messages between rounds of a driver.
const AUDIO_EVERY: Duration = Duration::from_millis(20);

/// One round of a driver at virtual time `now`: the publisher's chunks arrive, the node's timer
/// fires if due, and each connection the node asks to write is written in full. Returns the
/// writes.
fn driver_round(
    node: &mut Node,
    now: Instant,
    publisher: ConnId,
    chunks: &Bytes,
    dirty: &mut Vec<ConnId>,
) -> usize {
    node.handle(
        now,
        Input::Received {
            conn: publisher,
            data: BytesMut::from(&chunks[..]),
        },
    );
    if node.poll_timeout().is_some_and(|deadline| deadline <= now) {
        node.handle(now, Input::Timeout);
    }
    while let Some(out) = node.poll_output() {
        if let Output::Transmit { conn } = out {
            dirty.push(conn);
        }
    }
    let writes = dirty.len();
    for conn in dirty.drain(..) {
        let bytes = node.queued_bytes(conn);
        node.handle(now, Input::Drained { conn, bytes });
    }
    writes
}

fn audio(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(PLAYERS as u64));
    for (name, merge) in [
        ("20ms_audio_to_1000_players", None),
        (
            "20ms_audio_to_1000_players_merged_100ms",
            Some(Duration::from_millis(100)),
        ),
    ] {
        let start = Instant::now();
        let mut config = NodeConfig::default();
        config.server.merge_writes = merge;
        // Virtual time runs for hours here: no pings, no dead-peer closes.
        config.server.ping_interval = Duration::from_secs(1 << 30);
        let (mut node, publisher, players) = setup(start, config);
        let mut payload = vec![0xaf, 0x01];
        payload.resize(200, 0x5a);
        let chunks = encode_fmt0(4, &RtmpMessage::new(type_id::AUDIO, 1, 40, payload), 4096);
        let mut dirty = Vec::with_capacity(PLAYERS);
        let mut now = start;
        group.bench_function(name, |b| {
            b.iter(|| {
                now += AUDIO_EVERY;
                driver_round(&mut node, now, publisher, &chunks, &mut dirty)
            })
        });
        let rounds = 2000;
        let mut writes = 0;
        let timer = std::time::Instant::now();
        for _ in 0..rounds {
            now += AUDIO_EVERY;
            writes += driver_round(&mut node, now, publisher, &chunks, &mut dirty);
        }
        let per_player = timer.elapsed().as_nanos() as f64 / (rounds * PLAYERS) as f64;
        let virtual_secs = (AUDIO_EVERY * rounds as u32).as_secs_f64();
        let writes_per_sec = writes as f64 / PLAYERS as f64 / virtual_secs;
        assert!(players.iter().all(|&p| node.queued_bytes(p) < 64 * 1024));
        println!(
            "{name}: {per_player:.1} ns per player per message; {writes_per_sec:.1} writes per \
             player per second"
        );
    }
    group.finish();
}

// `criterion_group!` defines a `pub fn` without a doc comment (and an attribute on the macro call
// does not reach it): inside a private module the function is not public, so needs none.
mod group {
    use super::*;
    criterion_group!(benches, fan_out, audio);
}

criterion_main!(group::benches);
