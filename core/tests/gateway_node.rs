//! The gateway inside the node, in memory and virtual time, with SIP over UDP: an RTMP client
//! (the VideoPhone role) connects to `sip/alice@...`, calls a far-end SIP user agent that
//! echoes RTP, and hears its own media back on `remote`; the node's UDP sockets come and go
//! with the client. The same world with SIP over TCP is `gateway_tcp.rs`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::{Event, Input};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::RtmpMessage;
use siprtmp_core::sip::ua::UaEvent;
use siprtmp_core::sip::Transport;
use support::gateway_world::*;

#[test]
fn with_shared_ports_calls_to_one_far_end_each_hear_their_own_echo() {
    let mut w = World::with_shared_ports();
    let alice = call_as(&mut w, "alice");
    let carol = call_as(&mut w, "carol");
    // Both calls' media goes to bob's one RTP address and comes back from it: only the
    // SSRC tells them apart.
    assert_eq!(
        w.net.udp.open_sockets(),
        6,
        "a SIP socket per client and four shared media sockets, not four per client"
    );
    for i in 0..30u32 {
        w.now += Duration::from_millis(20);
        w.net.clients[alice].client.send_media(&frame(i));
        w.net.clients[carol].client.send_media(&frame(100 + i));
        w.pump();
    }
    assert_eq!(w.echoed, 60, "every frame of both calls went out as RTP");
    for (c, first) in [(alice, 0), (carol, 100)] {
        let back = echoes(&w, c);
        let expected: Vec<Bytes> = (first..first + 30).map(|i| frame(i).payload).collect();
        assert_eq!(back.len(), expected.len(), "client {c}: every echo");
        assert_eq!(back, expected, "each client hears its own frames, in order");
    }

    // A stranger's packets on the shared port reach nobody and harm no call.
    let shared_audio = SocketAddr::new(NODE_IP.parse().unwrap(), RTP_PORTS.0);
    let mut stranger = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    stranger.extend_from_slice(&[0xff; 160]);
    w.net
        .udp
        .send(a("10.0.0.66:6000"), shared_audio, Bytes::from(stranger));
    w.pump();
    for c in [alice, carol] {
        assert_eq!(echoes(&w, c).len(), 30, "nothing from a stranger");
    }
    w.now += Duration::from_millis(20);
    w.net.clients[carol].client.send_media(&frame(130));
    w.pump();
    assert_eq!(echoes(&w, carol).last(), Some(&frame(130).payload));

    // Alice leaves: her call ends, the shared sockets stay for carol's.
    let conn = w.net.clients[alice].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    w.now += Duration::from_millis(20);
    w.net.clients[carol].client.send_media(&frame(131));
    w.pump();
    assert_eq!(echoes(&w, carol).last(), Some(&frame(131).payload));
    assert_eq!(echoes(&w, alice).len(), 30);
    w.advance(Duration::from_secs(40));
    assert_eq!(
        w.net.udp.open_sockets(),
        5,
        "alice's SIP socket went after its last transaction; the shared ones stay"
    );
}

/// Alice and carol, both clients of the gateway, call each other: with shared ports both
/// calls' media goes to the shared port itself, and each must hear the other, not itself.
#[test]
fn with_shared_ports_two_clients_of_the_gateway_call_each_other() {
    let mut w = World::with_shared_ports();
    let alice = w.client("alice", None);
    let carol = w.client("carol", None);
    let carol_sip = w
        .net
        .node_events
        .iter()
        .find_map(|e| match e {
            Event::GatewayBound { aor, sip, .. } if aor.starts_with("carol") => Some(*sip),
            _ => None,
        })
        .expect("carol's SIP socket");
    for c in [alice, carol] {
        w.net.clients[c].client.create_stream();
        w.net.clients[c].client.create_stream();
    }
    w.pump();
    let to_carol = format!("carol@{carol_sip}");
    w.invite(alice, &to_carol);
    assert!(w.commands(carol).iter().any(|(n, _)| n == "invited"));
    w.net.clients[carol]
        .client
        .call(0, "accept", vec![Value::string("pcmu")]);
    w.pump();
    for c in [alice, carol] {
        assert!(
            w.commands(c).iter().any(|(n, _)| n == "accepted"),
            "{:?}",
            w.commands(c)
        );
        open_media(&mut w, c);
    }
    w.pump();
    for i in 0..20u32 {
        w.now += Duration::from_millis(20);
        w.net.clients[alice].client.send_media(&frame(i));
        w.net.clients[carol].client.send_media(&frame(100 + i));
        w.pump();
    }
    assert_eq!(w.echoed, 0, "nothing left the gateway");
    let from = |first: u32| {
        (first..first + 20)
            .map(|i| frame(i).payload)
            .collect::<Vec<_>>()
    };
    assert_eq!(echoes(&w, alice), from(100), "alice hears carol");
    assert_eq!(echoes(&w, carol), from(0), "carol hears alice");
}

#[test]
fn with_shared_ports_a_client_that_cannot_get_them_is_refused() {
    // A range of one block, a port of which another program holds.
    let mut w = World::configured(Transport::Udp, (30000, 30003), |c| {
        gateway(c).shared_rtp_ports = true;
    });
    w.net
        .udp
        .taken
        .insert(SocketAddr::new(NODE_IP.parse().unwrap(), 30002));
    let c = w.client("alice", None);
    let rejected = w.net.events(c).iter().any(|e| {
        matches!(e, ClientEvent::ConnectRejected(code) if code == "NetConnection.Connect.Rejected")
    });
    assert!(rejected, "{:?}", w.net.events(c));
    assert_eq!(w.net.udp.open_sockets(), 0, "nothing left bound");
    // Once the port is free, the next client gets the shared ports.
    w.net.udp.taken.clear();
    let c = w.client("carol", None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    assert_eq!(w.net.udp.open_sockets(), 5);
}

#[test]
fn a_client_calls_through_the_node_and_hears_its_echo() {
    let mut w = World::new();
    let c = established_call(&mut w);
    let frames: Vec<RtmpMessage> = (0..50u32).map(frame).collect();
    for f in &frames {
        w.now += Duration::from_millis(20);
        w.net.clients[c].client.send_media(f);
        w.pump();
    }
    assert_eq!(w.echoed, 50, "every frame went out as RTP");
    let back = echoes(&w, c);
    assert_eq!(back.len(), 50, "every echo reached `remote`");
    for (sent, got) in frames.iter().zip(&back) {
        assert_eq!(got, &sent.payload);
    }

    // The client disconnects: the call is hung up, the media sockets close at once, and the
    // SIP socket once its last transactions are over.
    let conn = w.net.clients[c].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    assert!(
        w.far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { .. })),
        "BYE sent"
    );
    // The BYE was answered at once: nothing is left waiting for an answer, so the SIP
    // socket goes without waiting out the transactions that only absorb retransmissions
    // (32 s over UDP).
    assert_eq!(w.net.udp.open_sockets(), 0, "no socket left");
}

/// One second of 20 ms frames through an echoing far end with the gateway's merged writes set
/// to `merge`: how many writes the client got in that second, and the longest any echo waited
/// in the node (from the RTP datagram's arrival to the write that carried it).
fn one_second_of_echo(merge: Option<Duration>) -> (usize, Duration) {
    one_second_of_echo_in(World::with_merge(merge))
}

/// [`one_second_of_echo`] in the world given.
fn one_second_of_echo_in(mut w: World) -> (usize, Duration) {
    let c = established_call(&mut w);
    let writes_before = w.net.clients[c].writes;
    let start = w.now;
    let mut arrived_at = Vec::new();
    let mut longest = Duration::ZERO;
    // Node timers (flushes among them) fire at their own deadlines; the far end echoes at
    // once, so an echo reaching the client at the moment its frame left waited for nothing.
    let run_timers_until = |w: &mut World, until: Instant, arrived_at: &mut Vec<Instant>| {
        while let Some(deadline) = w.net.node.poll_timeout() {
            if deadline > until {
                break;
            }
            w.now = deadline.max(w.now);
            w.net.node.handle(w.now, Input::Timeout);
            w.pump();
            arrived_at.resize(echoes(w, c).len(), w.now);
        }
        w.now = until;
    };
    for i in 0..50u32 {
        let sent_at = start + Duration::from_millis(20 * u64::from(i));
        run_timers_until(&mut w, sent_at, &mut arrived_at);
        w.net.clients[c].client.send_media(&frame(i));
        w.pump();
        arrived_at.resize(echoes(&w, c).len(), w.now);
    }
    // Let the last hold run out.
    let end = w.now + Duration::from_millis(200);
    run_timers_until(&mut w, end, &mut arrived_at);
    let back = echoes(&w, c);
    assert_eq!(back.len(), 50, "every echo reached `remote`");
    for (i, got) in back.iter().enumerate() {
        assert_eq!(got, &frame(i as u32).payload, "echo {i} in order");
        let sent_at = start + Duration::from_millis(20 * i as u64);
        longest = longest.max(arrived_at[i] - sent_at);
    }
    (w.net.clients[c].writes - writes_before, longest)
}

#[test]
fn with_merged_writes_the_far_ends_media_reaches_the_client_in_a_few_writes() {
    let (writes, longest) = one_second_of_echo(None);
    assert!(
        writes >= 50,
        "one write per echoed frame without merging: {writes}"
    );
    assert_eq!(longest, Duration::ZERO, "nothing held without merging");

    let window = Duration::from_millis(100);
    let (writes, longest) = one_second_of_echo(Some(window));
    assert!(
        (9..=12).contains(&writes),
        "about one write per 100 ms window, not one per frame: {writes}"
    );
    assert!(
        longest <= window,
        "no echo held longer than the window: {longest:?}"
    );
}

/// The players' merged writes (`merge_writes`, on by default in the binary) leave a call's
/// media alone: only `gateway_merge_writes` holds it.
#[test]
fn the_players_merge_window_does_not_hold_a_calls_media() {
    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        c.server.merge_writes = Some(Duration::from_millis(100));
    });
    w.net.transmit_driven = true;
    let (writes, longest) = one_second_of_echo_in(w);
    assert!(writes >= 50, "one write per echoed frame: {writes}");
    assert_eq!(longest, Duration::ZERO, "nothing held");
}

/// Client `c` calls bob with PCMU.
fn invite_bob(w: &mut World, c: usize) {
    w.invite(c, &format!("sip:bob@{FAR_SIP}"));
}

/// The range's only block is held by another program: the client connects (it needs no
/// port for that), and its call is refused with a clear reason, nothing left bound for it.
#[test]
fn a_call_that_cannot_get_ports_is_refused_with_the_reason() {
    let mut w = World::with_ports((30000, 30003));
    for port in 30000..=30003 {
        w.net
            .udp
            .taken
            .insert(SocketAddr::new(NODE_IP.parse().unwrap(), port));
    }
    let c = w.client("alice", None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    invite_bob(&mut w, c);
    let rejected = w.commands(c).into_iter().find(|(n, _)| n == "rejected");
    let reason = rejected.and_then(|(_, args)| args.first()?.as_str().map(str::to_owned));
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("503 cannot bind RTP ports")),
        "{reason:?}"
    );
    assert_eq!(w.net.udp.open_sockets(), 1, "only the SIP socket");
}

/// A range of two blocks carries two calls at once, whatever the clients: a third caller is
/// told the range is full, and calls again once a call has ended and given its ports back.
#[test]
fn the_port_range_bounds_concurrent_calls_and_ports_come_back() {
    let mut w = World::with_ports((30000, 30007));
    let alice = call_as(&mut w, "alice");
    let carol = call_as(&mut w, "carol");
    assert_eq!(w.net.udp.open_sockets(), 2 + 8);
    let dave = w.client("dave", None);
    invite_bob(&mut w, dave);
    let reasons = |w: &World, c: usize| -> Vec<String> {
        w.commands(c)
            .into_iter()
            .filter(|(n, _)| n == "rejected")
            .filter_map(|(_, args)| args.first()?.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        reasons(&w, dave),
        ["503 all 2 RTP port blocks of the gateway are in use"]
    );
    // Alice hangs up but stays connected: her ports go back with the call.
    w.net.clients[alice].client.call(0, "bye", vec![]);
    w.pump();
    assert_eq!(
        w.net.udp.open_sockets(),
        3 + 4,
        "three SIP sockets, carol's call"
    );
    invite_bob(&mut w, dave);
    assert!(
        w.commands(dave).iter().any(|(n, _)| n == "accepted"),
        "{:?}",
        w.commands(dave)
    );
    assert_eq!(w.net.udp.open_sockets(), 3 + 8);
    let _ = carol;
}

#[test]
fn a_connect_without_an_address_of_record_is_refused() {
    let mut w = World::new();
    let c = w.net.connect(w.now, "sip");
    w.pump();
    assert!(matches!(
        w.net.events(c).last(),
        Some(ClientEvent::ConnectRejected(_))
    ));
}

#[test]
fn gateway_calls_are_refused_on_other_applications() {
    let mut w = World::new();
    let c = w.net.connect(w.now, "live");
    w.pump();
    w.net.clients[c]
        .client
        .call(0, "invite", vec![Value::string("bob@10.0.0.2")]);
    w.pump();
    assert!(w.commands(c).iter().any(|(n, _)| n == "_error"));
    assert_eq!(w.net.udp.open_sockets(), 0);
}

/// One whole call over a seeded network that drops 5 % of the datagrams and reorders 10 %,
/// SIP and RTP alike: it completes (retransmissions), most media gets through, and the same
/// seed replays the same run.
fn lossy_call(seed: u64) -> (u64, usize, bool) {
    let mut w = World::new();
    w.lossy = Some(SeededRng::new(seed));
    let c = w.client("alice", None);
    let client = &mut w.net.clients[c].client;
    client.create_stream();
    client.create_stream();
    w.invite(c, &format!("bob@{FAR_SIP}"));
    w.advance(Duration::from_secs(10));
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "accepted"),
        "seed {seed}: {:?}",
        w.commands(c)
    );
    open_media(&mut w, c);
    w.pump();
    for i in 0..100u32 {
        w.now += Duration::from_millis(20);
        w.net.clients[c].client.send_media(&frame(i));
        w.pump();
    }
    let back = echoes(&w, c).len();
    w.net.clients[c].client.call(0, "bye", vec![]);
    w.pump();
    w.advance(Duration::from_secs(40));
    let ended = w
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Ended { .. }));
    (w.trace, back, ended)
}

#[test]
fn calls_complete_over_a_lossy_reordering_network_and_replay_by_seed() {
    for seed in [1, 2, 3] {
        let (trace, back, ended) = lossy_call(seed);
        // Each frame crosses the lossy network twice (out and echoed back).
        assert!(back >= 70, "seed {seed}: {back} of 100 frames came back");
        assert!(ended, "seed {seed}: the BYE got through");
        assert_eq!(lossy_call(seed).0, trace, "seed {seed} replays identically");
    }
}

#[test]
fn a_newer_connection_for_the_same_address_replaces_the_older() {
    let mut w = World::new();
    let first = w.client("alice", None);
    assert!(w.net.events(first).contains(&ClientEvent::Connected));
    let second = w.client("Alice", None);
    assert!(
        w.net.clients[first].closed,
        "the older connection is closed"
    );
    assert!(w.net.events(second).contains(&ClientEvent::Connected));
}

#[test]
fn with_replacement_off_the_newer_connection_is_refused() {
    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        gateway(c).replace_existing = false;
    });
    let first = w.client("alice", None);
    let second = w.client("alice", None);
    assert!(!w.net.clients[first].closed);
    assert!(matches!(
        w.net.events(second).last(),
        Some(ClientEvent::ConnectRejected(_))
    ));
}
