//! What peers may make the node spend, in memory and virtual time: connections per address and
//! in total, and unfinished messages across all connections (the hardening issue's memory
//! bomb: many connections, each within its own limits, that announce large messages and hold
//! them unfinished). A legitimate stream and its player go on beside every attack.

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use siprtmp_core::node::ServerConfig;
use siprtmp_core::node::{CloseReason, ConnId, Event, Input, Node, NodeConfig};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::MemoryNet;
use support::rtmp_clients::Driven;

const MIB: usize = 1024 * 1024;
/// `play`'s start for live only (as librtmp and ffmpeg send it).
const LIVE_ONLY: f64 = -1000.0;

fn net(server: ServerConfig) -> (MemoryNet, Instant) {
    let now = Instant::now();
    let node = Node::new(
        NodeConfig {
            server,
            ..NodeConfig::default()
        },
        now,
        3,
    );
    (MemoryNet::new(node), now)
}

fn send_frames(net: &mut MemoryNet, now: Instant, p: usize, id: u32, from: u32, count: u32) {
    for i in from..from + count {
        let key = if i % 12 == 0 { 0x17 } else { 0x27 };
        let msg = RtmpMessage::new(type_id::VIDEO, id, i * 83, vec![key, 1, 0, 0, 0, i as u8]);
        net.clients[p].client.send_media(&msg);
    }
    net.pump(now);
}

/// Raw bytes on a connection (after its handshake): Set Chunk Size to 8,388,000, then a
/// format-0 header for an 8 MiB video message on chunk stream 20 and `body` bytes of it.
fn bomb(net: &mut MemoryNet, now: Instant, conn: ConnId, body: usize) {
    let mut wire = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    wire.extend_from_slice(&8_388_000u32.to_be_bytes());
    wire.extend_from_slice(&[20, 0, 0, 0, 0x80, 0, 0, type_id::VIDEO, 1, 0, 0, 0]);
    wire.resize(wire.len() + body, 0x55);
    net.node.handle(
        now,
        Input::Received {
            conn,
            data: BytesMut::from(&wire[..]),
        },
    );
    net.pump(now);
}

fn closing_reasons(net: &MemoryNet) -> Vec<(ConnId, CloseReason)> {
    net.node_events
        .iter()
        .filter_map(|e| match e {
            Event::Closing { conn, reason } => Some((*conn, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn many_connections_holding_unfinished_messages_stop_at_the_servers_budget() {
    let (mut net, now) = net(ServerConfig {
        max_total_partial_bytes: 24 * MIB,
        ..ServerConfig::default()
    });
    let (p, id) = (&mut net, now).publisher("live", "show");
    let (watcher, _) = (&mut net, now).player_from("live", "show", LIVE_ONLY);
    send_frames(&mut net, now, p, id, 0, 24);
    // Ten attackers, each 4 MiB into an 8 MiB message (within its own 9 MiB limit).
    let mut attackers = Vec::new();
    for _ in 0..10 {
        let a = net.connect(now, "live");
        net.pump(now);
        let conn = net.clients[a].conn;
        bomb(&mut net, now, conn, 4 * MIB);
        attackers.push(a);
        send_frames(&mut net, now, p, id, 24 + attackers.len() as u32, 1);
    }
    let closed: Vec<usize> = attackers
        .iter()
        .copied()
        .filter(|a| net.clients[*a].closed)
        .collect();
    // 24 MiB hold six 4 MiB partial messages: the four after are closed, each as it passed
    // the budget, and the six before keep their place.
    assert_eq!(closed, attackers[6..], "the newest are closed");
    let reasons = closing_reasons(&net);
    assert!(reasons
        .iter()
        .any(|(_, r)| *r == CloseReason::UnfinishedMessagesBudget { budget: 24 * MIB }));
    // The legitimate stream went on, every frame to its player.
    assert!(!net.clients[p].closed && !net.clients[watcher].closed);
    let video = net
        .media(watcher)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .count();
    assert_eq!(video, 24 + 10);
    // A departed attacker's memory is given back: another may take its place.
    let conn = net.clients[attackers[0]].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    let a = net.connect(now, "live");
    net.pump(now);
    let conn = net.clients[a].conn;
    bomb(&mut net, now, conn, 4 * MIB);
    assert!(!net.clients[a].closed);
}

#[test]
fn connections_are_limited_per_address_and_in_total() {
    let (mut net, now) = net(ServerConfig {
        max_connections_per_ip: 3,
        max_connections: 5,
        ..ServerConfig::default()
    });
    let first: Vec<usize> = (0..4).map(|_| net.connect(now, "live")).collect();
    net.pump(now);
    assert!(first[..3].iter().all(|c| !net.clients[*c].closed));
    assert!(net.clients[first[3]].closed, "a fourth from 127.0.0.1");
    assert!(closing_reasons(&net).iter().any(|(_, r)| *r
        == CloseReason::AddressFull {
            ip: [127, 0, 0, 1].into(),
            max: 3
        }));
    // Another address is counted apart, up to the total.
    let other: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let (b, c, d) = (
        net.node.accept(now, other),
        net.node.accept(now, other),
        net.node.accept(now, other),
    );
    net.pump(now);
    let reasons = closing_reasons(&net);
    assert!(!reasons.iter().any(|(conn, _)| *conn == b || *conn == c));
    assert!(reasons
        .iter()
        .any(|(conn, r)| *conn == d && *r == CloseReason::ServerFull { max: 5 }));
    // A place freed is taken again.
    let conn = net.clients[first[0]].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    let again = net.connect(now, "live");
    net.pump(now);
    assert!(!net.clients[again].closed);
}

/// A late player of `live/<name>`: the video it gets at once (its GOP from the cache).
fn late_joiner_video(net: &mut MemoryNet, now: Instant, name: &str) -> usize {
    let (c, _) = (&mut *net, now).player_from("live", name, LIVE_ONLY);
    net.media(c)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .count()
}

#[test]
fn gop_caches_stop_at_the_servers_budget() {
    let (mut net, now) = net(ServerConfig {
        max_total_gop_cache_bytes: 100_000,
        ..ServerConfig::default()
    });
    // Two publishers, a keyframe then 9 frames of 6 KB each: 60 KB of GOP apiece.
    for name in ["one", "two"] {
        let (p, id) = (&mut net, now).publisher("live", name);
        for i in 0..10u32 {
            let key = if i == 0 { 0x17 } else { 0x27 };
            let mut body = vec![key, 1, 0, 0, 0];
            body.resize(6000, i as u8);
            let msg = RtmpMessage::new(type_id::VIDEO, id, i * 83, body);
            net.clients[p].client.send_media(&msg);
        }
        net.pump(now);
    }
    // The first stream's GOP fits and a late joiner gets it at once; the second passed the
    // budget, so its late joiners wait for its next keyframe.
    assert_eq!(late_joiner_video(&mut net, now, "one"), 10);
    assert_eq!(late_joiner_video(&mut net, now, "two"), 0);
}

#[test]
fn a_gop_of_tiny_messages_counts_what_keeping_them_costs() {
    let (mut net, now) = net(ServerConfig {
        max_gop_cache_bytes: 64 * 1024,
        ..ServerConfig::default()
    });
    // A keyframe, then inter frames of 6 bytes: "few" as payload (100 messages: 600 bytes),
    // while keeping each costs far more than its payload.
    let cache_after = |net: &mut MemoryNet, name: &str, frames: u32| {
        let (p, id) = (&mut *net, now).publisher("live", name);
        for i in 0..frames {
            let key = if i == 0 { 0x17 } else { 0x27 };
            let msg = RtmpMessage::new(type_id::VIDEO, id, i, vec![key, 1, 0, 0, 0, 0]);
            net.clients[p].client.send_media(&msg);
        }
        net.pump(now);
        late_joiner_video(net, now, name)
    };
    assert_eq!(
        cache_after(&mut net, "few", 100),
        100,
        "100 small frames are kept"
    );
    // 10,000 of them: 60 KB of payload, but a megabyte or more to keep. Past the limit.
    assert_eq!(cache_after(&mut net, "many", 10_000), 0);
}
