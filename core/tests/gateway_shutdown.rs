//! The node's graceful stop ([`Input::Shutdown`]) with gateway clients, in memory and virtual
//! time: each client's call is ended the way its state asks (BYE when established, CANCEL
//! when ringing out, 486 when ringing in), its address of record is unregistered at the
//! registrar with the credentials it registered with, the RTMP clients are told the
//! connection closed, newcomers are refused, and the node reports itself drained once the
//! answers are in, or when the grace is over if they never come.

mod support;

use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::Input;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::sdp::offer_answer::create_offer;
use siprtmp_core::sip::ua::UaEvent;
use siprtmp_core::sip::Transport;
use support::gateway_world::registrar::PASSWORD;
use support::gateway_world::*;

/// Client alice registers (Digest, over TCP) and calls bob, who answers: index of the client.
fn registered_call(w: &mut World) -> usize {
    let c = w.client("alice", Some(PASSWORD));
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    assert!(w.registers().last().is_some_and(|r| r.2), "registered");
    w.invite(c, &format!("bob@{FAR_SIP}"));
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "accepted"),
        "{:?}",
        w.commands(c)
    );
    c
}

fn far_got(w: &World, wanted: impl Fn(&UaEvent) -> bool) -> bool {
    w.far_events.iter().any(wanted)
}

#[test]
fn a_shutdown_hangs_up_unregisters_and_is_drained_once_both_are_answered() {
    let mut w = World::over(Transport::Tcp);
    let c = registered_call(&mut w);
    assert!(!w.net.node.is_drained(w.now), "no shutdown yet");
    let registers_before = w.registers().len();

    w.net.node.handle(w.now, Input::Shutdown);
    // The node's goodbyes leave, and nobody has answered yet.
    w.net.pump(w.now);
    assert!(
        !w.net.node.is_drained(w.now),
        "the BYE and the un-REGISTER wait for their answers"
    );
    w.pump();

    assert!(
        far_got(&w, |e| matches!(e, UaEvent::Ended { .. })),
        "bob got a BYE: {:?}",
        w.far_events
    );
    let unregister = &w.registers()[registers_before..];
    assert!(
        unregister
            .iter()
            .any(|(_, text, authorized)| *authorized && text.contains("Expires: 0")),
        "an un-REGISTER with valid Digest credentials: {unregister:?}"
    );
    assert!(
        w.net.events(c).iter().any(
            |e| matches!(e, ClientEvent::Status(0, code) if code == "NetConnection.Connect.Closed")
        ),
        "the RTMP client was told: {:?}",
        w.net.events(c)
    );
    assert_eq!(w.net.node.connection_count(), 0);
    assert!(
        w.net.node.is_drained(w.now),
        "every goodbye answered: drained at once, not at the end of the grace"
    );

    // A newcomer while the node is stopping is refused.
    let late = w.net.connect(w.now, &format!("sip/carol@{NODE_IP}"));
    w.pump();
    assert!(!w.net.events(late).contains(&ClientEvent::Connected));
    assert_eq!(w.net.node.connection_count(), 0);
    assert!(w.net.node.is_drained(w.now));
}

#[test]
fn a_call_ringing_out_is_cancelled_and_one_ringing_in_is_refused_busy() {
    // Ringing out: bob lets it ring.
    let mut w = World::new();
    w.far_answers = false;
    let c = w.client("alice", None);
    w.invite(c, &format!("bob@{FAR_SIP}"));
    assert!(w.commands(c).iter().any(|(n, _)| n == "ringing"));
    w.net.node.handle(w.now, Input::Shutdown);
    w.pump();
    assert!(
        far_got(&w, |e| matches!(e, UaEvent::Cancelled { .. })),
        "bob's ringing call was cancelled: {:?}",
        w.far_events
    );
    assert!(w.net.node.is_drained(w.now));

    // Ringing in: bob calls a client that has not answered.
    let mut w = World::new();
    let c = w.client("alice", None);
    let sip = w
        .net
        .node_events
        .iter()
        .find_map(|e| match e {
            siprtmp_core::node::Event::GatewayBound { sip, .. } => Some(*sip),
            _ => None,
        })
        .expect("alice's SIP socket");
    let offer = create_offer(&w.far_capabilities(), &far_origin());
    w.far
        .invite(
            w.now,
            format!("sip:alice@{sip}").parse().unwrap(),
            Bytes::from(offer.serialize()),
        )
        .unwrap();
    w.pump();
    assert!(w.commands(c).iter().any(|(n, _)| n == "invited"));
    w.net.node.handle(w.now, Input::Shutdown);
    w.pump();
    assert!(
        far_got(&w, |e| matches!(e, UaEvent::Rejected { status: 486, .. })),
        "bob's call was refused as busy: {:?}",
        w.far_events
    );
    assert!(w.net.node.is_drained(w.now));
}

#[test]
fn the_grace_bounds_the_drain_when_nobody_answers() {
    let grace = Duration::from_secs(2);
    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        c.server.shutdown_grace = grace;
    });
    let c = w.client("alice", None);
    // A far end that never answers: the INVITE's transaction would last 32 s.
    let args = vec![
        Value::string(format!("bob@{NOBODY}")),
        Value::string("pcmu"),
    ];
    w.net.clients[c].client.call(0, "invite", args);
    w.pump();
    let start = w.now;
    w.net.node.handle(w.now, Input::Shutdown);
    w.pump();
    assert!(!w.net.node.is_drained(w.now), "the INVITE is still open");
    let deadline = w.net.node.poll_timeout().expect("a deadline");
    assert!(
        deadline <= start + grace,
        "the node wakes its driver by the end of the grace"
    );
    w.advance(grace - Duration::from_millis(500));
    assert!(!w.net.node.is_drained(w.now), "still within the grace");
    w.advance(Duration::from_millis(500));
    assert!(w.net.node.is_drained(w.now), "the grace is over");
}

#[test]
fn a_registration_still_in_flight_at_the_shutdown_is_undone_once_granted() {
    let mut w = World::over(Transport::Tcp);
    let c = w.net.connect(w.now, &format!("sip/alice@{NODE_IP}"));
    w.net.clients[c]
        .client
        .set_connect_args(vec![Value::string("alice"), Value::string(PASSWORD)]);
    // The node sends the REGISTER; the registrar has not seen it yet.
    for _ in 0..10 {
        w.net.pump(w.now);
    }
    assert!(w.registers().is_empty(), "not delivered yet");

    w.net.node.handle(w.now, Input::Shutdown);
    w.pump();
    let registers = w.registers();
    assert!(
        registers
            .iter()
            .any(|(_, text, ok)| *ok && !text.contains("Expires: 0")),
        "the registration was granted: {registers:?}"
    );
    let last = registers.last().unwrap();
    assert!(
        last.2 && last.1.contains("Expires: 0"),
        "and then removed, with credentials: {last:?}"
    );
    assert!(w.net.node.is_drained(w.now));
}
