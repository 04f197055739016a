//! The live server as its clients see it, driven in memory and in virtual time: status codes
//! in order, what a late player receives first, pause and receiveVideo, unpublish, pings and
//! timeouts, and one misbehaving client among well-behaved ones.

mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use siprtmp_core::amf::Value;
use siprtmp_core::node::{Input, Node, NodeConfig, Output};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::command::{data_message, message_values};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::MemoryNet;
use support::rtmp_clients::{Driven, InMemory};

const AVC_CONFIG: &[u8] = &[0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e];
const AAC_CONFIG: &[u8] = &[0xaf, 0x00, 0x12, 0x10];

fn keyframe(n: u8) -> Vec<u8> {
    vec![0x17, 0x01, 0, 0, 0, n, n, n]
}

fn inter(n: u8) -> Vec<u8> {
    vec![0x27, 0x01, 0, 0, 0, n, n]
}

fn aac(n: u8) -> Vec<u8> {
    vec![0xaf, 0x01, n, n]
}

/// A node in memory (see `support::rtmp_clients`), with this suite's own steps.
type Fixture = InMemory;

impl Fixture {
    fn new() -> Self {
        Self::start(NodeConfig::default(), 7)
    }

    fn send(&mut self, c: usize, stream: u32, type_id: u8, timestamp: u32, payload: &[u8]) {
        let msg = RtmpMessage::new(type_id, stream, timestamp, payload.to_vec());
        self.net.clients[c].client.send_media(&msg);
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.net.node.handle(self.now, Input::Timeout);
        self.pump();
    }
}

#[test]
fn publish_and_play_report_the_standard_status_codes_in_order() {
    let mut f = Fixture::new();
    let (player, _) = f.player("live", "cam");
    assert_eq!(
        f.statuses(player),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let sample_access = f.events(player).iter().any(|e| match e {
        ClientEvent::Media(m) if m.type_id == type_id::DATA_AMF0 => {
            message_values(m).unwrap()[0].as_str() == Some("|RtmpSampleAccess")
        }
        _ => false,
    });
    assert!(sample_access, "player gets |RtmpSampleAccess");
    let _publisher = f.publisher("live", "cam");
    assert_eq!(
        f.statuses(player).last().unwrap(),
        "NetStream.Play.PublishNotify"
    );

    // The same name cannot be published twice.
    let (second, id) = f.client_with_stream("live");
    f.net.clients[second].client.publish(id, "cam");
    f.pump();
    assert_eq!(f.statuses(second), vec!["NetStream.Publish.BadName"]);
}

#[test]
fn a_late_player_starts_with_metadata_configs_and_a_keyframe() {
    let mut f = Fixture::new();
    let (p, s) = f.publisher("live", "cam");
    let meta = data_message(
        s,
        0,
        &[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            Value::object([("width", Value::Number(320.0))]),
        ],
    );
    f.net.clients[p].client.send_media(&meta);
    f.send(p, s, type_id::VIDEO, 0, AVC_CONFIG);
    f.send(p, s, type_id::AUDIO, 0, AAC_CONFIG);
    f.send(p, s, type_id::VIDEO, 0, &inter(0)); // before any keyframe: never cached
    f.send(p, s, type_id::VIDEO, 40, &keyframe(1));
    f.send(p, s, type_id::AUDIO, 45, &aac(1));
    f.send(p, s, type_id::VIDEO, 80, &inter(2));

    let (late, _) = f.player("live", "cam");
    let got = f.events(late).iter().find_map(|e| match e {
        ClientEvent::Media(m) if m.type_id == type_id::DATA_AMF0 => {
            let v = message_values(m).unwrap();
            (v[0].as_str() == Some("onMetaData")).then(|| v[1].get("width").cloned())
        }
        _ => None,
    });
    assert_eq!(
        got,
        Some(Some(Value::Number(320.0))),
        "onMetaData without @setDataFrame"
    );
    f.send(p, s, type_id::VIDEO, 120, &inter(3));
    assert_eq!(
        f.media(late),
        vec![
            (type_id::VIDEO, 0, AVC_CONFIG.to_vec()),
            (type_id::AUDIO, 0, AAC_CONFIG.to_vec()),
            (type_id::VIDEO, 40, keyframe(1)),
            (type_id::AUDIO, 45, aac(1)),
            (type_id::VIDEO, 80, inter(2)),
            (type_id::VIDEO, 120, inter(3)),
        ]
    );
}

#[test]
fn a_waiting_player_starts_at_the_first_keyframe() {
    let mut f = Fixture::new();
    let (early, _) = f.player("live", "cam");
    let (p, s) = f.publisher("live", "cam");
    f.send(p, s, type_id::VIDEO, 0, AVC_CONFIG);
    f.send(p, s, type_id::VIDEO, 0, &inter(0));
    f.send(p, s, type_id::AUDIO, 10, &aac(0));
    f.send(p, s, type_id::VIDEO, 40, &keyframe(1));
    let video: Vec<_> = f
        .media(early)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .collect();
    assert_eq!(
        video,
        vec![(9, 0, AVC_CONFIG.to_vec()), (9, 40, keyframe(1))]
    );
}

#[test]
fn unpublish_tells_players_and_the_publisher() {
    let mut f = Fixture::new();
    let (player, _) = f.player("live", "cam");
    let (p, s) = f.publisher("live", "cam");
    f.net.clients[p].client.call(s, "closeStream", vec![]);
    f.pump();
    assert_eq!(f.statuses(p).last().unwrap(), "NetStream.Unpublish.Success");
    assert_eq!(
        f.statuses(player).last().unwrap(),
        "NetStream.Play.UnpublishNotify"
    );
    // The name is free again.
    f.net.clients[p].client.publish(s, "cam");
    f.pump();
    assert_eq!(f.statuses(p).last().unwrap(), "NetStream.Publish.Start");
}

#[test]
fn playing_a_missing_recorded_stream_is_not_found() {
    let mut f = Fixture::new();
    let (c, id) = f.client_with_stream("live");
    f.net.clients[c].client.play(id, "nothing", 0.0);
    f.pump();
    assert_eq!(f.statuses(c), vec!["NetStream.Play.StreamNotFound"]);
}

#[test]
fn unknown_calls_get_an_error_and_known_ones_a_result() {
    let mut f = Fixture::new();
    let (c, _) = f.client_with_stream("live");
    f.net.clients[c].client.call(0, "noSuchMethod", vec![]);
    f.net.clients[c]
        .client
        .call(0, "getStreamLength", vec![Value::string("cam")]);
    f.pump();
    let answers: Vec<(String, Option<String>)> = f
        .events(c)
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Command(cmd) => Some((
                cmd.name.clone(),
                cmd.args
                    .first()
                    .and_then(|i| i.get("code"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )),
            _ => None,
        })
        .collect();
    assert!(answers.contains(&("_error".into(), Some("NetConnection.Call.Failed".into()))));
    assert!(answers.contains(&("_result".into(), None)));
}

#[test]
fn pause_stops_media_and_unpause_resumes_at_a_keyframe() {
    let mut f = Fixture::new();
    let (p, s) = f.publisher("live", "cam");
    f.send(p, s, type_id::VIDEO, 0, &keyframe(0));
    let (player, ps) = f.player("live", "cam");
    f.net.clients[player]
        .client
        .call(ps, "pause", vec![Value::Boolean(true), Value::Number(0.0)]);
    f.pump();
    assert_eq!(f.statuses(player).last().unwrap(), "NetStream.Pause.Notify");
    f.send(p, s, type_id::VIDEO, 40, &inter(1));
    f.net.clients[player].client.call(
        ps,
        "pause",
        vec![Value::Boolean(false), Value::Number(40.0)],
    );
    f.pump();
    assert_eq!(
        f.statuses(player).last().unwrap(),
        "NetStream.Unpause.Notify"
    );
    f.send(p, s, type_id::VIDEO, 80, &inter(2));
    f.send(p, s, type_id::VIDEO, 120, &keyframe(3));
    let video: Vec<u32> = f.media(player).iter().map(|m| m.1).collect();
    assert_eq!(video, vec![0, 120]);
}

#[test]
fn receive_video_false_leaves_only_audio() {
    let mut f = Fixture::new();
    let (p, s) = f.publisher("live", "cam");
    let (player, ps) = f.player("live", "cam");
    f.net.clients[player]
        .client
        .call(ps, "receiveVideo", vec![Value::Boolean(false)]);
    f.pump();
    f.send(p, s, type_id::VIDEO, 0, &keyframe(0));
    f.send(p, s, type_id::AUDIO, 5, &aac(0));
    assert_eq!(f.media(player), vec![(type_id::AUDIO, 5, aac(0))]);
}

#[test]
fn larger_chunk_sizes_from_the_publisher_are_honoured() {
    let mut f = Fixture::new();
    let (p, s) = f.publisher("live", "cam");
    let (player, _) = f.player("live", "cam");
    f.net.clients[p].client.set_chunk_size(4096);
    let mut big = keyframe(9);
    big.resize(10_000, 0x5a);
    f.send(p, s, type_id::VIDEO, 0, &big);
    assert_eq!(f.media(player), vec![(type_id::VIDEO, 0, big)]);
}

#[test]
fn idle_clients_are_pinged_and_silent_ones_closed() {
    let mut f = Fixture::new();
    let (alive, _) = f.client_with_stream("live");
    let (silent, _) = f.client_with_stream("live");
    f.net.clients[silent].muted = true;
    let config = NodeConfig::default().server;
    // Past the ping interval: both are pinged; the live one answers.
    f.advance(config.ping_interval + Duration::from_secs(1));
    assert!(!f.net.clients[alive].closed && !f.net.clients[silent].closed);
    f.advance(config.dead_timeout);
    assert!(
        !f.net.clients[alive].closed,
        "a client answering pings stays"
    );
    assert!(f.net.clients[silent].closed, "a silent client is closed");
    assert_eq!(f.net.node.connection_count(), 1);
}

#[test]
fn an_incomplete_handshake_times_out_even_when_trickled() {
    let mut f = Fixture::new();
    let conn = f.net.node.accept(f.now, "127.0.0.1:5000".parse().unwrap());
    let config = NodeConfig::default().server;
    let step = config.handshake_timeout / 4;
    let mut closed = false;
    // One byte of C0/C1 every quarter of the timeout: still closed at the deadline.
    for _ in 0..5 {
        f.now += step;
        let data = BytesMut::from(&[3u8][..]);
        f.net.node.handle(f.now, Input::Received { conn, data });
        f.net.node.handle(f.now, Input::Timeout);
        while let Some(out) = f.net.node.poll_output() {
            closed |= out == Output::Close { conn };
        }
    }
    assert!(closed, "handshake deadline counts from accept");
}

#[test]
fn encrypted_rtmp_is_refused_with_a_close() {
    let mut f = Fixture::new();
    let conn = f.net.node.accept(f.now, "127.0.0.1:5001".parse().unwrap());
    let mut c0c1 = vec![6u8];
    c0c1.resize(1537, 0);
    f.net.node.handle(
        f.now,
        Input::Received {
            conn,
            data: BytesMut::from(&c0c1[..]),
        },
    );
    let outputs: Vec<Output> = std::iter::from_fn(|| f.net.node.poll_output()).collect();
    assert!(outputs.contains(&Output::Close { conn }));
}

#[test]
fn garbage_from_one_client_closes_only_that_client() {
    let mut f = Fixture::new();
    let (p, s) = f.publisher("live", "cam");
    let (player, _) = f.player("live", "cam");
    let (bad, _) = f.client_with_stream("live");
    let conn = f.net.clients[bad].conn;
    // A 16 MiB message header: beyond the default limit.
    let data = BytesMut::from(&[0x04u8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x09, 1, 0, 0, 0][..]);
    f.net.node.handle(f.now, Input::Received { conn, data });
    f.pump();
    assert!(f.net.clients[bad].closed);
    f.send(p, s, type_id::VIDEO, 0, &keyframe(1));
    assert_eq!(f.media(player), vec![(type_id::VIDEO, 0, keyframe(1))]);
}

#[test]
fn an_amf3_connect_is_answered_in_amf3_with_object_encoding_3() {
    let mut f = Fixture::new();
    let c = f.net.connect(f.now, "live");
    f.net.clients[c].client.set_object_encoding(3.0);
    f.pump();
    assert!(f.events(c).contains(&ClientEvent::Connected));
    let (amf3, info) = f.net.clients[c].client.connect_info().cloned().unwrap();
    assert!(amf3, "the answer to an AMF3 connect is an AMF3 command");
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(3.0)
    );
    // And an AMF0 client is told 0.
    let d = f.net.connect(f.now, "live");
    f.pump();
    let (amf3, info) = f.net.clients[d].client.connect_info().cloned().unwrap();
    assert!(!amf3);
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(0.0)
    );
}

#[test]
fn a_backlogged_player_skips_to_the_next_keyframe_then_is_dropped_past_the_hard_limit() {
    let now = Instant::now();
    let mut config = NodeConfig::default();
    config.server.player_soft_backlog = 20_000;
    config.server.player_hard_backlog = 100_000;
    let mut f = Fixture {
        net: MemoryNet::new(Node::new(config, now, 7)),
        now,
    };
    let (p, s) = f.publisher("live", "cam");
    let (slow, _) = f.player("live", "cam");
    let (fast, _) = f.player("live", "cam");
    let slow_conn = f.net.clients[slow].conn;
    f.net.clients[slow].muted = true;
    let frame = |first: u8, n: u8| {
        let mut v = vec![first, 0x01, 0, 0, 0, n];
        v.resize(10_000, n);
        v
    };
    let mut sent = Vec::new();
    let mut send = |f: &mut Fixture, t: u32, payload: Vec<u8>| {
        f.send(p, s, type_id::VIDEO, t, &payload);
        sent.push((type_id::VIDEO, t, payload));
    };
    send(&mut f, 0, frame(0x17, 0)); // queued: 10 KB
    send(&mut f, 40, frame(0x27, 1)); // queued: 20 KB, at the soft limit
    let before = f.net.node.queued_bytes(slow_conn);
    send(&mut f, 80, frame(0x27, 2)); // past soft: dropped
    send(&mut f, 120, frame(0x17, 3)); // still past soft: even a keyframe waits
    assert_eq!(
        f.net.node.queued_bytes(slow_conn),
        before,
        "non-key video dropped"
    );
    // The reader catches up: it resumes at the next keyframe, not at an inter frame.
    f.net.clients[slow].muted = false;
    f.pump();
    send(&mut f, 160, frame(0x27, 4));
    send(&mut f, 200, frame(0x17, 5));
    let got: Vec<u32> = f.media(slow).iter().map(|m| m.1).collect();
    assert_eq!(got, vec![0, 40, 200]);
    // Frozen again: audio keeps queueing until the hard limit closes it.
    f.net.clients[slow].muted = true;
    for t in 0..200u32 {
        f.send(p, s, type_id::AUDIO, 240 + t, &vec![0xaf; 1000]);
        if f.net.clients[slow].closed {
            break;
        }
    }
    assert!(f.net.clients[slow].closed, "dropped past the hard limit");
    // The other player got every video frame.
    let fast_video: Vec<_> = f
        .media(fast)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .collect();
    assert_eq!(fast_video, sent);
}

#[test]
fn a_player_that_never_reads_a_video_only_stream_is_closed_once_its_drops_reach_the_hard_limit() {
    // Video only: past the soft limit every frame is dropped, so the backlog itself never
    // grows to the hard limit; what was dropped counts toward it.
    let now = Instant::now();
    let mut config = NodeConfig::default();
    config.server.player_soft_backlog = 20_000;
    config.server.player_hard_backlog = 100_000;
    let mut f = Fixture {
        net: MemoryNet::new(Node::new(config, now, 7)),
        now,
    };
    let (p, s) = f.publisher("live", "cam");
    let (deaf, _) = f.player("live", "cam");
    let (slow, _) = f.player("live", "cam");
    let (fast, _) = f.player("live", "cam");
    f.net.clients[deaf].muted = true;
    let frame = |t: u32| {
        let first = if t.is_multiple_of(10) { 0x17 } else { 0x27 };
        let mut v = vec![first, 0x01, 0, 0, 0, t as u8];
        v.resize(5_000, t as u8);
        v
    };
    let mut sent = 0u32;
    while !f.net.clients[deaf].closed && sent < 200 {
        f.send(p, s, type_id::VIDEO, sent * 40, &frame(sent));
        sent += 1;
        // The slow player reads now and then: it falls behind and catches up, and its
        // drops are forgiven each time it is back within the soft limit.
        f.net.clients[slow].muted = !sent.is_multiple_of(8);
        if sent.is_multiple_of(8) {
            f.pump();
        }
    }
    assert!(f.net.clients[deaf].closed, "the deaf player is closed");
    // About (hard - soft) / 5,000 frames after it passed the soft limit (4 frames), not
    // at once and not never.
    assert!((15..=30).contains(&sent), "closed after {sent} frames");
    f.net.clients[slow].muted = false;
    for t in sent..sent + 40 {
        f.send(p, s, type_id::VIDEO, t * 40, &frame(t));
    }
    f.pump();
    assert!(
        !f.net.clients[slow].closed,
        "a reader that catches up stays"
    );
    assert!(!f.net.clients[fast].closed);
    assert_eq!(
        f.media(fast).len() as u32,
        sent + 40,
        "the reading player got every frame"
    );
}

#[test]
fn the_first_ping_follows_the_ping_interval_not_the_handshake_timeout() {
    let now = Instant::now();
    let mut config = NodeConfig::default();
    config.server.ping_interval = Duration::from_millis(500);
    config.server.dead_timeout = Duration::from_millis(500);
    config.server.handshake_timeout = Duration::from_secs(10);
    let mut f = Fixture {
        net: MemoryNet::new(Node::new(config, now, 7)),
        now,
    };
    let (silent, _) = f.client_with_stream("live");
    f.net.clients[silent].muted = true;
    let deadline = f.net.node.poll_timeout().expect("a liveness timer");
    assert!(
        deadline <= f.now + Duration::from_millis(500),
        "next check within the ping interval"
    );
    f.advance(Duration::from_millis(600));
    f.advance(Duration::from_millis(600));
    assert!(
        f.net.clients[silent].closed,
        "closed after ping + dead timeout, long before 10 s"
    );
}
