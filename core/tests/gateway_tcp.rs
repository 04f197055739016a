//! The gateway with SIP over TCP, in memory and virtual time: a client registers (Digest)
//! with a registrar over a TCP connection the node opens, calls a far-end user agent over
//! another, hears its media echoed over RTP/UDP, and is hung up on by the far end over the same
//! connection; the far end calls a client directly on its listener; a refused or broken
//! connection reaches the client as a clear refusal at once, and nothing else is harmed. The
//! world is `gateway_node.rs`'s with the transport set to TCP (`support/gateway_world.rs`).

mod support;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::Input;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::sdp::offer_answer::create_offer;
use siprtmp_core::sip::{CallId, Transport, UaEvent};
use std::time::Duration;
use support::gateway_world::registrar::PASSWORD;
use support::gateway_world::{a, far_origin, World, FAR_OUT, FAR_SIP, NODE_IP, REGISTRAR};

/// A client without a password, and bob's INVITE to it on its listener (pumped through).
fn far_calls_a_client(w: &mut World) -> (usize, CallId) {
    let c = w.client("alice", None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    let listener = w.net.tcp.node_listeners()[0];
    let offer = create_offer(&w.far_capabilities(), &far_origin());
    let target = format!("sip:alice@{listener};transport=tcp")
        .parse()
        .unwrap();
    let call = w
        .far
        .invite(w.now, target, Bytes::from(offer.serialize()))
        .unwrap();
    w.pump();
    (c, call)
}

#[test]
fn a_registered_client_calls_over_tcp_and_the_far_ends_bye_comes_on_the_same_connection() {
    let mut w = World::over(Transport::Tcp);
    let c = w.client("alice", Some(PASSWORD));
    assert!(
        w.net.events(c).contains(&ClientEvent::Connected),
        "{:?} {}",
        w.net.events(c),
        w.connect_description(c)
    );
    // The REGISTER was challenged and retried with credentials on one connection, which
    // says TCP in Via and Contact, at the client's listening address.
    let listener = w.net.tcp.node_listeners()[0];
    assert_eq!(listener.ip().to_string(), NODE_IP);
    let seen = w.registers();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].2, seen[1].2), (false, true));
    assert_eq!(seen[0].0, seen[1].0, "the retry reused the connection");
    let register = &seen[1].1;
    assert!(
        register.contains(&format!("Via: SIP/2.0/TCP {listener};")),
        "{register}"
    );
    assert!(
        register.contains(&format!("<sip:alice@{listener};transport=tcp>")),
        "{register}"
    );
    assert_eq!(
        w.net.udp.open_sockets(),
        0,
        "SIP is on TCP, and RTP ports come with a call"
    );

    w.invite(c, "bob@10.0.0.2:5060");
    assert_eq!(w.net.udp.open_sockets(), 4, "the call's RTP/RTCP");
    let names: Vec<String> = w.commands(c).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"ringing".into()), "{names:?}");
    assert!(names.contains(&"accepted".into()), "{names:?}");
    let to_bob = w.far_streams();
    assert_eq!(to_bob.len(), 1, "one connection to Bob");
    assert!(!to_bob[0].is_accepted(), "opened by the node");

    assert_eq!(w.talk(c, 30), 30, "every frame echoed back over RTP");
    assert_eq!(w.echoed, 30);

    // Bob hangs up: his BYE (to the client's Contact) comes on the connection he has.
    let call = w
        .far_events
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .unwrap();
    w.far.hangup(w.now, call).unwrap();
    w.pump();
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "byed"),
        "{:?}",
        w.commands(c)
    );
    assert_eq!(w.far_streams(), to_bob, "no other connection was opened");
    assert!(
        w.wire
            .iter()
            .any(|(s, line)| *s == to_bob[0] && line.starts_with("SIP/2.0 200")),
        "the node answered the BYE on it"
    );

    // The client leaves: un-REGISTER on the registrar's connection; then everything closes.
    let conn = w.net.clients[c].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    let last = w.registers().last().unwrap();
    assert!(
        last.1.contains("Expires: 0") || last.1.contains("expires=0"),
        "{}",
        last.1
    );
    w.advance(Duration::from_secs(40));
    assert_eq!(w.net.tcp.open_streams(), vec![], "no connection leaked");
    assert_eq!(w.net.tcp.node_listeners(), vec![], "no listener leaked");
    assert_eq!(w.net.udp.open_sockets(), 0);
}

#[test]
fn the_far_end_calls_a_client_directly_on_its_listener() {
    let mut w = World::over(Transport::Tcp);
    let (c, call) = far_calls_a_client(&mut w);
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "invited"),
        "{:?}",
        w.commands(c)
    );
    let from_bob = w.far_streams();
    assert_eq!(from_bob.len(), 1);
    assert!(from_bob[0].is_accepted(), "Bob connected to the listener");

    w.net.clients[c]
        .client
        .call(0, "accept", vec![Value::string("pcmu")]);
    w.pump();
    assert!(w
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { call: x, .. } if *x == call)));
    assert_eq!(w.talk(c, 10), 10);

    // The client hangs up: the BYE goes to Bob's Contact, on a connection of its own.
    w.net.clients[c].client.call(0, "bye", vec![]);
    w.pump();
    assert!(w
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Ended { call: x } if *x == call)));
}

/// RFC 3261 18.2.2: when the connection a request came in on is gone by the time the answer
/// is ready, the answer goes on a new connection to the request's Via (the address it came
/// from, the port in its sent-by), not to the closed connection's ephemeral port.
#[test]
fn an_answer_whose_connection_broke_goes_to_the_via_on_a_new_connection() {
    let mut w = World::over(Transport::Tcp);
    let (c, call) = far_calls_a_client(&mut w);
    assert!(w.commands(c).iter().any(|(n, _)| n == "invited"));
    // Bob's connection (from his ephemeral port) breaks while the client's phone rings.
    let from_bob = w.far_streams();
    assert_eq!(from_bob.len(), 1);
    w.net
        .tcp
        .close(from_bob[0], Some("Connection reset by peer"));
    w.pump();

    w.net.clients[c]
        .client
        .call(0, "accept", vec![Value::string("pcmu")]);
    w.pump();
    let now_open = w.far_streams();
    assert_eq!(now_open.len(), 1, "one new connection: {:?}", w.wire);
    let (_, peer) = w.net.tcp.addresses(now_open[0]).unwrap();
    assert_eq!(
        peer,
        a(FAR_SIP),
        "to Bob's sent-by (his listener), not {}",
        a(FAR_OUT)
    );
    assert!(
        w.far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { call: x, .. } if *x == call)),
        "Bob got the 200: {:?}",
        w.far_events
    );
    assert_eq!(w.talk(c, 10), 10, "the call is up");
}

#[test]
fn a_refused_or_broken_connection_reaches_the_client_as_a_clear_refusal() {
    // The registrar refuses the connection: the connect is rejected with why.
    let mut w = World::over(Transport::Tcp);
    w.net.tcp.listening.remove(&a(REGISTRAR));
    let c = w.client("alice", Some(PASSWORD));
    assert_eq!(
        w.net.events(c).last(),
        Some(&ClientEvent::ConnectRejected(
            "NetConnection.Connect.Rejected".into()
        ))
    );
    let why = w.connect_description(c);
    assert!(
        why.starts_with("503") && why.contains("Connection refused") && why.contains(REGISTRAR),
        "{why}"
    );
    assert_eq!(w.net.tcp.open_streams(), vec![]);
    assert_eq!(w.net.tcp.node_listeners(), vec![]);
    assert_eq!(w.net.udp.open_sockets(), 0);

    // A call to a far end that refuses: `rejected` at once, and the client can call again.
    let c = w.client("alice", None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    w.invite(c, "carol@10.0.0.9:5060");
    let rejected = w.callback(c, "rejected").expect("rejected");
    assert!(
        rejected.starts_with("503") && rejected.contains("Connection refused"),
        "{rejected}"
    );
    // Bob lets it ring, then his connection breaks: `rejected` at once, not after Timer B.
    w.far_answers = false;
    w.invite(c, "bob@10.0.0.2:5060");
    assert_eq!(w.callback(c, "ringing").as_deref(), Some("180 Ringing"));
    let stream = w.far_streams()[0];
    w.net.tcp.close(stream, Some("Connection reset by peer"));
    w.pump();
    let rejected = w.callback(c, "rejected").unwrap();
    assert!(rejected.contains("Connection reset by peer"), "{rejected}");
    // Nothing else was harmed: the next call opens a new connection and goes through.
    w.far_answers = true;
    w.invite(c, "bob@10.0.0.2:5060");
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "accepted"),
        "{:?}",
        w.commands(c)
    );
    assert_ne!(w.far_streams(), vec![stream]);
}
