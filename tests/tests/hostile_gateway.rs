//! The hardening issue's gateway port exhaustion, end to end: hundreds of RTMP connects to the
//! gateway's application that never call (each used to take four RTP ports and a SIP socket,
//! and 250 filled a 1,000-port range). A real call to a sipp echo far end must still get its
//! ports and hear every frame, the idle clients must hold one socket each and no port, and a
//! client past the per-address limit must be told why.

use std::time::Duration;

use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{assert_hears_its_echo, gateway_node_with_ports, s, EchoMedia, Phone};
use siprtmp_tests::ports::{free_udp_range, LOOPBACK};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::sipp::Sipp;
use siprtmp_tests::{scratch_dir, wait};

#[test]
fn idle_gateway_clients_leave_the_ports_to_calls() {
    let dir = scratch_dir("hostile-gateway-ports");
    // 40 ports: ten calls' worth, four times fewer than the idle clients below.
    let rtp_ports = free_udp_range(LOOPBACK, 40);
    let mut node = gateway_node_with_ports(Transport::Udp, rtp_ports);
    if let Some(g) = node.server.gateway.as_mut() {
        g.max_clients_per_ip = 50;
    }
    node.server.max_connections_per_ip = 0;
    let server = TestServer::start(node, None);
    let idle: Vec<Phone> = (0..49)
        .map(|i| Phone::connect(server.addr, &format!("idle{i}@127.0.0.1"), vec![]))
        .collect::<Result<_, _>>()
        .expect("idle clients connect");
    assert_eq!(
        server.udp.open(),
        49,
        "one SIP socket per idle client, no RTP port"
    );

    // The fiftieth from this address is past the limit, and told so.
    let caller = Phone::connect(server.addr, "alice@127.0.0.1", vec![]).expect("the 50th");
    let refused = Phone::connect(server.addr, "bob@127.0.0.1", vec![]).err();
    assert_eq!(
        refused.as_deref(),
        Some("503 127.0.0.1 has its 50 gateway clients")
    );

    // The call gets its ports and hears its own echo.
    let mut caller = caller;
    let far = Sipp::echo_uas(1).start("sipp uas", &dir);
    let mut invite = vec![s(&far.uri("echo"))];
    invite.extend(EchoMedia::Wideband.tokens());
    caller.call("invite", invite);
    caller
        .callback("accepted", Duration::from_secs(10))
        .expect("the call is accepted");
    assert_eq!(server.udp.open(), 50 + 4, "the call's four RTP sockets");
    caller.open_streams();
    assert_hears_its_echo(
        &mut caller,
        EchoMedia::Wideband,
        100,
        Duration::from_millis(500),
        "the call beside idle clients",
    );
    caller.call("bye", vec![]);
    far.finish(Duration::from_secs(20));
    // The call's ports go back as it ends; the caller stays connected.
    wait::until(Duration::from_secs(5), || {
        caller.pump();
        server.udp.open() <= 50
    });
    assert_eq!(server.udp.open(), 50, "the call's ports were given back");
    drop(idle);
}
