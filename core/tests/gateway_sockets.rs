//! The gateway's UDP sockets in the node, in memory: a client's sockets are asked of the driver,
//! its bound SIP address is announced (`Event::GatewayBound`), and after it leaves its SIP
//! socket stays only as long as a SIP transaction still needs it.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use siprtmp_core::node::{Event, Input};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::sip::Transport;
use support::gateway_world::{a, gateway, World, NOBODY, NODE_IP, RTP_PORTS};

/// Connects a phone without a password; returns its index once connected.
fn phone(w: &mut World, user: &str) -> usize {
    let c = w.client(user, None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected), "{user}");
    c
}

/// A far end that never answers is invited by client `c`: the INVITE goes out.
fn invite_nobody(w: &mut World, c: usize) {
    w.invite(c, &format!("sip:bob@{NOBODY}"));
    assert!(w.unheard.contains(&a(NOBODY)), "the INVITE went out");
}

#[test]
fn a_client_without_a_call_holds_only_its_sip_socket_which_goes_with_it() {
    let mut w = World::new();
    let i = phone(&mut w, "alice");
    assert_eq!(
        w.net.udp.open_sockets(),
        1,
        "SIP only: RTP ports come with a call"
    );
    let announced = w.net.node_events.iter().find_map(|e| match e {
        Event::GatewayBound {
            aor, sip, rtp_port, ..
        } => Some((aor.clone(), *sip, *rtp_port)),
        _ => None,
    });
    let (aor, sip, rtp_port) = announced.expect("GatewayBound event");
    assert_eq!(aor, format!("alice@{NODE_IP}"));
    assert_eq!(sip.ip(), NODE_IP.parse::<IpAddr>().unwrap());
    assert_eq!(rtp_port, None, "no shared ports, none of its own yet");
    let conn = w.net.clients[i].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    assert_eq!(
        w.net.udp.open_sockets(),
        0,
        "no call, no registration: the SIP socket goes with the client"
    );
}

/// Hundreds of clients that connect and never call (the port exhaustion of the hardening
/// issue) take no RTP port: a real call still gets its ports afterwards.
#[test]
fn idle_clients_take_no_rtp_ports_from_callers() {
    let mut w = World::new();
    for n in 0..60 {
        phone(&mut w, &format!("idle{n}"));
    }
    assert_eq!(w.net.udp.open_sockets(), 60, "one SIP socket each");
    let i = phone(&mut w, "alice");
    // The call got its ports: its INVITE went out.
    invite_nobody(&mut w, i);
    assert_eq!(w.net.udp.open_sockets(), 61 + 4);
}

/// Connect limits per address and in total: a connect beyond gets a clear `503`, and a place
/// freed is taken again.
#[test]
fn gateway_clients_are_limited_per_address_and_in_total() {
    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        gateway(c).max_clients_per_ip = 2;
    });
    let a = phone(&mut w, "a");
    let _b = phone(&mut w, "b");
    let c = w.client("c", None);
    assert!(w
        .net
        .events(c)
        .iter()
        .any(|e| matches!(e, ClientEvent::ConnectRejected(_))));
    assert_eq!(
        w.connect_description(c),
        "503 127.0.0.1 has its 2 gateway clients"
    );
    // A place freed is a place taken.
    let conn = w.net.clients[a].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    phone(&mut w, "d");

    let mut w = World::configured(Transport::Udp, RTP_PORTS, |c| {
        gateway(c).max_clients_per_ip = 64;
        gateway(c).max_clients = 1;
    });
    phone(&mut w, "a");
    let b = w.client("b", None);
    assert_eq!(
        w.connect_description(b),
        "503 the gateway has its 1 clients"
    );
}

#[test]
fn a_departed_clients_sip_socket_stays_for_its_last_transaction_and_no_longer() {
    let mut w = World::new();
    let i = phone(&mut w, "alice");
    // An INVITE to a far end that never answers: the transaction runs until Timer B.
    invite_nobody(&mut w, i);
    let conn = w.net.clients[i].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    assert_eq!(
        w.net.udp.open_sockets(),
        1,
        "the SIP socket stays for the INVITE"
    );
    w.advance(Duration::from_secs(40));
    assert_eq!(w.net.udp.open_sockets(), 0, "and goes once it has ended");
}
