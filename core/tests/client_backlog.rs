//! What a connection that stops reading can make the node queue, beyond the live fan-out's
//! players (`limits.rs`, `merged_writes.rs`), in memory and virtual time: a gateway client
//! whose far end keeps sending media, and clients that send requests and never read the
//! replies. Each stays bounded by the hard backlog and is then closed with its call hung up,
//! while the calls and streams beside it go on untouched.

mod support;

use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::{CloseReason, ConnId, Event, Input, NodeConfig, ServerConfig};
use siprtmp_core::rtmp::control::UserControl;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sip::ua::UaEvent;
use siprtmp_core::sip::Transport;
use support::gateway_world::*;
use support::rtmp_clients::{Driven, InMemory};

const SOFT: usize = 16 * 1024;
const HARD: usize = 64 * 1024;
/// The most one far-end frame takes queued: [`frame`]'s 161 bytes of payload behind a full
/// (12-byte) chunk header.
const ONE_FRAME: usize = 161 + 12;

fn closing_reason(events: &[Event], conn: ConnId) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closing { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

/// The users whose calls bob saw end, in order.
fn ended_calls(w: &World) -> Vec<String> {
    let mut callers = std::collections::HashMap::new();
    let mut ended = Vec::new();
    for e in &w.far_events {
        match e {
            UaEvent::IncomingCall { call, from, .. } => {
                let user = from.uri.as_sip().and_then(|u| u.user.clone());
                callers.insert(*call, user.unwrap_or_default());
            }
            UaEvent::Ended { call } => ended.push(callers.get(call).cloned().unwrap_or_default()),
            _ => {}
        }
    }
    ended
}

/// The hardening issue's unread gateway client: alice stops reading but keeps talking (so she
/// passes every liveness check) while bob echoes her media back. Her queue stays bounded (past
/// the soft backlog her far-end audio is dropped, counted), and once she is as far behind as
/// the hard backlog she is closed and her call hung up. Carol, in a call on the same node
/// all along, hears every frame.
#[test]
fn a_gateway_client_that_stops_reading_is_bounded_then_closed_and_its_call_hung_up() {
    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        c.server.player_soft_backlog = SOFT;
        c.server.player_hard_backlog = HARD;
    });
    let alice = call_as(&mut w, "alice");
    let carol = call_as(&mut w, "carol");
    let alice_conn = w.net.clients[alice].conn;
    w.net.clients[alice].deaf = true;

    let frames = 600u32; // 12 s: far more than it takes to be HARD bytes behind
    let mut most_queued = 0;
    let mut closed_at = None;
    for i in 0..frames {
        w.now += Duration::from_millis(20);
        w.net.clients[alice].client.send_media(&frame(i));
        w.net.clients[carol].client.send_media(&frame(i));
        w.net.node.handle(w.now, Input::Timeout);
        w.far.handle_timeout(w.now);
        w.pump();
        let queued = w.net.node.queued_bytes(alice_conn);
        most_queued = most_queued.max(queued);
        assert!(
            queued <= HARD + ONE_FRAME,
            "frame {i}: {queued} bytes queued"
        );
        if closed_at.is_none() && w.net.clients[alice].closed {
            closed_at = Some(i);
        }
    }
    // Past the soft backlog nothing more of the far end's audio is queued at all.
    assert!(
        (SOFT..=SOFT + ONE_FRAME).contains(&most_queued),
        "at most {most_queued} bytes queued"
    );
    assert!(w.net.node.far_media_dropped() > 0, "drops are counted");
    // She is closed once queued and dropped media pass the hard backlog: about (HARD - SOFT)
    // / 161 frames after the queue filled, well within the run.
    let closed_at = closed_at.expect("alice closed");
    assert!(closed_at < frames - 100, "closed at frame {closed_at}");
    assert_eq!(
        closing_reason(&w.net.node_events, alice_conn),
        Some(CloseReason::ClientBacklog { limit: HARD })
    );
    assert_eq!(
        ended_calls(&w),
        vec!["alice".to_string()],
        "her call, BYE to bob"
    );

    // Carol's call went on beside it: every frame back, byte for byte, in order.
    assert!(!w.net.clients[carol].closed);
    let expected: Vec<Bytes> = (0..frames).map(|i| frame(i).payload).collect();
    assert_eq!(echoes(&w, carol), expected);
}

/// The `n`th request of a kind a client sends.
type Request = fn(u32) -> RtmpMessage;

fn node_with(server: ServerConfig) -> InMemory {
    InMemory::start(
        NodeConfig {
            server,
            ..NodeConfig::default()
        },
        5,
    )
}

/// Clients that send pings, or calls (`getStreamLength`, an unknown method), and never read
/// the answers: each one's replies stop at the hard backlog and it is closed; a publisher and
/// its player beside them lose nothing.
#[test]
fn a_client_that_sends_requests_and_never_reads_the_replies_is_closed_at_the_hard_limit() {
    let mut f = node_with(ServerConfig {
        player_soft_backlog: SOFT,
        player_hard_backlog: HARD,
        ..ServerConfig::default()
    });
    let (p, id) = f.publisher("live", "show");
    let (watcher, _) = f.player_from("live", "show", -1000.0);
    let requests: [(&str, Request); 3] = [
        ("pings", |i| UserControl::PingRequest(i).to_message()),
        ("getStreamLength", |i| {
            let args = vec![Value::string("show")];
            command("getStreamLength", i, args)
        }),
        ("an unknown method", |i| {
            command("noSuchMethod", i, vec![Value::string("x".repeat(64))])
        }),
    ];
    let mut sent_video = 0;
    for (what, request) in requests {
        let (c, _) = f.client_with_stream("live");
        let conn = f.net.clients[c].conn;
        f.net.clients[c].deaf = true;
        let mut largest_reply = 0;
        let mut rounds = 0;
        while !f.net.clients[c].closed {
            rounds += 1;
            assert!(rounds < 100_000, "{what}: never closed");
            let before = f.net.node.queued_bytes(conn);
            // Any message goes on the client's data chunk stream: the server goes by type.
            f.net.clients[c].client.send_media(&request(rounds));
            f.pump();
            let queued = f.net.node.queued_bytes(conn);
            if f.net.clients[c].closed {
                break;
            }
            largest_reply = largest_reply.max(queued.saturating_sub(before));
            assert!(queued <= HARD + largest_reply, "{what}: {queued} queued");
            if rounds % 100 == 0 {
                // The stream beside goes on.
                let key = if sent_video % 12 == 0 { 0x17 } else { 0x27 };
                let msg = RtmpMessage::new(type_id::VIDEO, id, sent_video * 40, vec![key, 1, 0]);
                f.net.clients[p].client.send_media(&msg);
                sent_video += 1;
                f.pump();
            }
        }
        assert!(largest_reply > 0, "{what}: answered while it could be");
        assert_eq!(
            closing_reason(&f.net.node_events, conn),
            Some(CloseReason::ClientBacklog { limit: HARD }),
            "{what}"
        );
    }
    assert!(!f.net.clients[p].closed && !f.net.clients[watcher].closed);
    let video = f
        .media(watcher)
        .iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .count();
    assert_eq!(video as u32, sent_video, "every frame to the player");
}

/// A command message on stream 0 (AMF0), as a client's `call` sends it.
fn command(name: &str, transaction: u32, args: Vec<Value>) -> RtmpMessage {
    siprtmp_core::rtmp::command::Command::new(name, f64::from(transaction), Value::Null, args)
        .to_message(0)
}
