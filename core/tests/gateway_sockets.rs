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

/// Connects a phone without a password; returns its index once connected.
fn phone(net: &mut MemoryNet, now: Instant) -> usize {
    let i = net.connect(now, "sip/alice@127.0.0.1");
    net.pump(now);
    assert!(net.events(i).contains(&ClientEvent::Connected));
    i
}

#[test]
fn a_clients_five_sockets_are_announced_and_closed_at_once_when_nothing_is_pending() {
    let now = Instant::now();
    let mut net = gateway_net(now);
    let i = phone(&mut net, now);
    assert_eq!(
        net.udp.open_sockets(),
        5,
        "SIP plus audio and video RTP/RTCP"
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
    assert_eq!(rtp_port, 20000);
    let conn = net.clients[i].conn;
    net.node.handle(now, Input::Closed { conn });
    net.pump(now);
    assert_eq!(
        net.udp.open_sockets(),
        0,
        "no call, no registration: the SIP socket goes with the client"
    );
}

#[test]
fn a_departed_clients_sip_socket_stays_for_its_last_transaction_and_no_longer() {
    let mut now = Instant::now();
    let mut net = gateway_net(now);
    let i = phone(&mut net, now);
    // An INVITE to a far end that never answers: the transaction runs until Timer B.
    let far: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    net.clients[i].client.call(
        0,
        "invite",
        vec![
            Value::string(format!("sip:bob@{far}")),
            Value::string("pcmu"),
        ],
    );
    net.pump(now);
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
