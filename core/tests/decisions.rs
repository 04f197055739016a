//! Two-phase decisions against an application that is slow, silent or outrun, in memory and
//! virtual time: a question nobody answers is refused at the decision timeout (the client told
//! as for a rejection) and a late answer refused cleanly; the input connections send while
//! their questions wait counts in the server's budget for unfinished messages, so that many
//! of them cannot hold more than it, and a live stream beside them goes on. (Accepting,
//! rejecting and redirecting are in `vod_server.rs`.)

mod support;

use std::time::Duration;

use bytes::BytesMut;
use siprtmp_core::node::{
    CloseReason, ConnId, DecideError, Decision, Event, Input, NodeConfig, Question, RequestId,
    ServerConfig,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use support::rtmp_clients::{Driven, InMemory};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

fn deciding(server: ServerConfig) -> InMemory {
    InMemory::start(
        NodeConfig {
            server,
            decisions: true,
        },
        11,
    )
}

/// The questions asked since the last call, taken from the node's events.
fn questions(f: &mut InMemory) -> Vec<(RequestId, Question)> {
    let mut asked = Vec::new();
    f.net.node_events.retain(|e| match e {
        Event::Decide { request, question } => {
            asked.push((*request, question.clone()));
            false
        }
        _ => true,
    });
    asked
}

/// Accepts every question asked so far.
fn accept_all(f: &mut InMemory) {
    for (request, _) in questions(f) {
        f.net.node.decide(f.now, request, Decision::Accept).unwrap();
    }
    f.pump();
}

/// A client of `app` whose connect was accepted, with a stream created: (index, stream id).
fn accepted_client(f: &mut InMemory, app: &str) -> (usize, u32) {
    let c = f.net.connect(f.now, app);
    f.pump();
    accept_all(f);
    f.net.clients[c].client.create_stream();
    f.pump();
    let id = f
        .events(c)
        .iter()
        .find_map(|e| match e {
            ClientEvent::StreamCreated(id) => Some(*id),
            _ => None,
        })
        .expect("stream created");
    (c, id)
}

fn closing_reason(f: &InMemory, conn: ConnId) -> Option<CloseReason> {
    f.net.node_events.iter().find_map(|e| match e {
        Event::Closing { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

/// Moves virtual time on to `at` after the start, firing the node's timers on the way.
fn run_to(f: &mut InMemory, start: std::time::Instant, at: Duration) {
    f.net.run_until(&mut f.now, start + at);
}

#[test]
fn unanswered_questions_are_refused_at_the_timeout_and_late_answers_refused_cleanly() {
    let mut f = deciding(ServerConfig::default());
    let start = f.now;
    let (publisher, p_id) = accepted_client(&mut f, "live");
    let (player, v_id) = accepted_client(&mut f, "live");
    // A connect, a publish and a play nobody answers.
    let connecting = f.net.connect(f.now, "live");
    f.net.clients[publisher].client.publish(p_id, "show");
    f.net.clients[player].client.play(v_id, "show", -2.0);
    f.pump();
    let unanswered = questions(&mut f);
    assert_eq!(unanswered.len(), 3, "connect, publish and play asked");
    // One answered in time: its deadline passes harmlessly.
    let patient = f.net.connect(f.now, "live");
    f.pump();
    let (request, _) = questions(&mut f).pop().expect("asked");
    run_to(&mut f, start, TIMEOUT / 2);
    f.net.node.decide(f.now, request, Decision::Accept).unwrap();
    f.pump();
    assert!(f.events(patient).contains(&ClientEvent::Connected));

    run_to(&mut f, start, TIMEOUT - Duration::from_millis(1));
    for c in [connecting, publisher, player] {
        assert!(!f.net.clients[c].closed, "client {c} still waits");
    }
    assert!(f.statuses(publisher).is_empty() && f.statuses(player).is_empty());

    run_to(&mut f, start, TIMEOUT);
    // Each is told as a rejection would tell it, then closed.
    assert!(f.events(connecting).contains(&ClientEvent::ConnectRejected(
        "NetConnection.Connect.Rejected".into()
    )));
    let closed = "NetConnection.Connect.Closed";
    assert_eq!(
        f.statuses(publisher),
        vec!["NetStream.Publish.Denied", closed]
    );
    assert_eq!(f.statuses(player), vec!["NetStream.Play.Failed", closed]);
    for c in [connecting, publisher, player] {
        assert!(f.net.clients[c].closed, "client {c} closed");
        let conn = f.net.clients[c].conn;
        assert_eq!(
            closing_reason(&f, conn),
            Some(CloseReason::DecisionTimeout { after: TIMEOUT })
        );
    }

    // The application's answers come too late: refused, and nothing happens.
    let events_before = f.net.node_events.len();
    for (request, _) in unanswered {
        assert_eq!(
            f.net.node.decide(f.now, request, Decision::Accept),
            Err(DecideError::UnknownRequest(request))
        );
    }
    f.pump();
    assert_eq!(f.net.node_events.len(), events_before);

    run_to(&mut f, start, 3 * TIMEOUT);
    assert!(!f.net.clients[patient].closed, "answered in time: kept");
}

/// `count` acknowledgement messages (16 bytes each on the wire: a full chunk header and a
/// 4-byte body), as raw chunks on chunk stream 2: input that is valid and leaves nothing
/// behind once read.
fn acknowledgements(count: usize) -> BytesMut {
    let mut wire = BytesMut::with_capacity(count * 16);
    for i in 0..count as u32 {
        wire.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, type_id::ACKNOWLEDGEMENT, 0, 0, 0, 0]);
        wire.extend_from_slice(&i.to_be_bytes());
    }
    wire
}

/// The hardening issue's memory bound with decisions on: connections whose connect waits for
/// the application each send 900 KiB (within the 1 MiB each may send meanwhile). The server's
/// 3 MiB for unfinished messages hold three of them: the newest are closed as they pass it,
/// the others keep their place, and a stream and its player beside them lose nothing. An
/// answer releases what its connection held.
#[test]
fn input_held_for_decisions_counts_in_the_servers_budget() {
    let mut f = deciding(ServerConfig {
        max_total_partial_bytes: 3 * MIB,
        ..ServerConfig::default()
    });
    let (p, id) = accepted_client(&mut f, "live");
    f.net.clients[p].client.publish(id, "show");
    f.pump();
    accept_all(&mut f);
    let (watcher, w_id) = accepted_client(&mut f, "live");
    f.net.clients[watcher].client.play(w_id, "show", -1000.0);
    f.pump();
    accept_all(&mut f);
    let mut sent = 0u32;
    // The publisher's next frame (a keyframe every 12).
    let send_frame = |f: &mut InMemory, sent: &mut u32| {
        let key = if sent.is_multiple_of(12) { 0x17 } else { 0x27 };
        let msg = RtmpMessage::new(type_id::VIDEO, id, *sent * 40, vec![key, 1, 0, 0, 0]);
        f.net.clients[p].client.send_media(&msg);
        f.pump();
        *sent += 1;
    };
    send_frame(&mut f, &mut sent);

    let each = 900 * KIB / 16;
    let mut attackers = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..5 {
        let a = f.net.connect(f.now, "live");
        f.pump();
        pending.extend(questions(&mut f));
        let conn = f.net.clients[a].conn;
        // In pieces, as reads bring it.
        let mut wire = acknowledgements(each);
        while !wire.is_empty() {
            let data = wire.split_to(wire.len().min(64 * KIB));
            f.net.node.handle(f.now, Input::Received { conn, data });
            f.pump();
        }
        attackers.push(a);
        send_frame(&mut f, &mut sent);
    }
    let closed: Vec<usize> = attackers
        .iter()
        .copied()
        .filter(|a| f.net.clients[*a].closed)
        .collect();
    assert_eq!(closed, attackers[3..], "the newest are closed");
    for a in &attackers[3..] {
        let conn = f.net.clients[*a].conn;
        assert_eq!(
            closing_reason(&f, conn),
            Some(CloseReason::UnfinishedMessagesBudget { budget: 3 * MIB })
        );
    }
    assert!(!f.net.clients[p].closed && !f.net.clients[watcher].closed);
    let video = |f: &InMemory| {
        f.media(watcher)
            .iter()
            .filter(|m| m.0 == type_id::VIDEO)
            .count() as u32
    };
    assert_eq!(video(&f), sent, "every frame to the player");

    // The first attacker's connect is accepted: what it held is read, and its room in the
    // budget is free for another.
    let first_conn = f.net.clients[attackers[0]].conn;
    let (request, _) = pending
        .iter()
        .find(|(_, q)| q.conn() == first_conn)
        .expect("its question");
    f.net
        .node
        .decide(f.now, *request, Decision::Accept)
        .unwrap();
    f.pump();
    assert!(f.events(attackers[0]).contains(&ClientEvent::Connected));
    let late = f.net.connect(f.now, "live");
    f.pump();
    let conn = f.net.clients[late].conn;
    let data = acknowledgements(each);
    f.net.node.handle(f.now, Input::Received { conn, data });
    f.pump();
    assert!(!f.net.clients[late].closed, "room again");
    send_frame(&mut f, &mut sent);
    assert_eq!(video(&f), sent);
}
