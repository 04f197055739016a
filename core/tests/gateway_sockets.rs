//! The gateway's UDP sockets in the node, in memory: a client's sockets are asked of the driver,
//! its bound SIP address is announced (`Event::GatewayBound`), and after it leaves its SIP
//! socket stays only as long as a SIP transaction still needs it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use siprtmp_core::amf::Value;
use siprtmp_core::node::{Event, Input, Node, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::server::{GatewayNodeConfig, ServerConfig};
use siprtmp_core::testkit::MemoryNet;

fn gateway_net(now: Instant) -> MemoryNet {
    let config = NodeConfig {
        server: ServerConfig {
            gateway: Some(GatewayNodeConfig {
                bind_ip: IpAddr::from([127, 0, 0, 1]),
                rtp_ports: (20000, 20099),
                ..GatewayNodeConfig::default()
            }),
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    MemoryNet::new(Node::new(config, now, 1))
}

/// Client `i` calls bob at `far` with PCMU.
fn invite(net: &mut MemoryNet, now: Instant, i: usize, far: SocketAddr) {
    let args = vec![
        Value::string(format!("sip:bob@{far}")),
        Value::string("pcmu"),
    ];
    net.clients[i].client.call(0, "invite", args);
    net.pump(now);
}

/// Connects a phone without a password; returns its index once connected.
fn phone(net: &mut MemoryNet, now: Instant) -> usize {
    let i = net.connect(now, "sip/alice@127.0.0.1");
    net.pump(now);
    assert!(net.events(i).contains(&ClientEvent::Connected));
    i
}

#[test]
fn a_client_without_a_call_holds_only_its_sip_socket_which_goes_with_it() {
    let now = Instant::now();
    let mut net = gateway_net(now);
    let i = phone(&mut net, now);
    assert_eq!(
        net.udp.open_sockets(),
        1,
        "SIP only: RTP ports come with a call"
    );
    let announced = net.node_events.iter().find_map(|e| match e {
        Event::GatewayBound {
            aor, sip, rtp_port, ..
        } => Some((aor.clone(), *sip, *rtp_port)),
        _ => None,
    });
    let (aor, sip, rtp_port) = announced.expect("GatewayBound event");
    assert_eq!(aor, "alice@127.0.0.1");
    assert_eq!(sip.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_eq!(rtp_port, None, "no shared ports, none of its own yet");
    let conn = net.clients[i].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    assert_eq!(
        net.udp.open_sockets(),
        0,
        "no call, no registration: the SIP socket goes with the client"
    );
}

/// Hundreds of clients that connect and never call (the port exhaustion of the hardening
/// issue) take no RTP port: a real call still gets its ports afterwards.
#[test]
fn idle_clients_take_no_rtp_ports_from_callers() {
    let now = Instant::now();
    let mut net = gateway_net(now);
    for n in 0..60 {
        let c = net.connect(now, &format!("sip/idle{n}@127.0.0.1"));
        net.pump(now);
        assert!(net.events(c).contains(&ClientEvent::Connected), "idle{n}");
    }
    assert_eq!(net.udp.open_sockets(), 60, "one SIP socket each");
    let i = phone(&mut net, now);
    let far: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    invite(&mut net, now, i, far);
    assert!(
        net.udp.outbox.iter().any(|(_, to, _)| *to == far),
        "the INVITE went out: the call got its ports"
    );
    assert_eq!(net.udp.open_sockets(), 61 + 4);
}

/// Connect limits per address and in total: a connect beyond gets a clear `503`, and a place
/// freed is taken again.
#[test]
fn gateway_clients_are_limited_per_address_and_in_total() {
    let now = Instant::now();
    let mut config = NodeConfig {
        server: ServerConfig {
            gateway: Some(GatewayNodeConfig {
                bind_ip: IpAddr::from([127, 0, 0, 1]),
                rtp_ports: (20000, 20099),
                max_clients_per_ip: 2,
                ..GatewayNodeConfig::default()
            }),
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut net = MemoryNet::new(Node::new(config.clone(), now, 1));
    let a = net.connect(now, "sip/a@127.0.0.1");
    let _b = net.connect(now, "sip/b@127.0.0.1");
    let c = net.connect(now, "sip/c@127.0.0.1");
    net.pump(now);
    let refusal = |net: &MemoryNet, c: usize| {
        net.clients[c].client.connect_info().and_then(|(_, info)| {
            info.get("description")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    };
    assert!(net.events(a).contains(&ClientEvent::Connected));
    assert!(net
        .events(c)
        .iter()
        .any(|e| matches!(e, ClientEvent::ConnectRejected(_))));
    assert_eq!(
        refusal(&net, c).as_deref(),
        Some("503 127.0.0.1 has its 2 gateway clients")
    );
    // A place freed is a place taken.
    let conn = net.clients[a].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    let d = net.connect(now, "sip/d@127.0.0.1");
    net.pump(now);
    assert!(net.events(d).contains(&ClientEvent::Connected));

    if let Some(g) = config.server.gateway.as_mut() {
        g.max_clients_per_ip = 64;
        g.max_clients = 1;
    }
    let mut net = MemoryNet::new(Node::new(config, now, 1));
    net.connect(now, "sip/a@127.0.0.1");
    let b = net.connect(now, "sip/b@127.0.0.1");
    net.pump(now);
    assert_eq!(
        refusal(&net, b).as_deref(),
        Some("503 the gateway has its 1 clients")
    );
}

#[test]
fn a_departed_clients_sip_socket_stays_for_its_last_transaction_and_no_longer() {
    let mut now = Instant::now();
    let mut net = gateway_net(now);
    let i = phone(&mut net, now);
    // An INVITE to a far end that never answers: the transaction runs until Timer B.
    let far: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    invite(&mut net, now, i, far);
    assert!(
        net.udp.outbox.iter().any(|(_, to, _)| *to == far),
        "INVITE sent"
    );
    let conn = net.clients[i].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    assert_eq!(
        net.udp.open_sockets(),
        1,
        "the SIP socket stays for the INVITE"
    );
    let later = now + Duration::from_secs(40);
    net.run_until(&mut now, later);
    assert_eq!(net.udp.open_sockets(), 0, "and goes once it has ended");
}
