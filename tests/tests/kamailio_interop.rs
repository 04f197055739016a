//! The gateway against a real SIP registrar and proxy: Kamailio (Debian `kamailio`), on
//! loopback with a minimal configuration written here (in-memory location table, record-
//! routing proxy, no authentication). Two RTMP clients connect with credentials, so the
//! gateway REGISTERs each with Kamailio; one calls the other by address of record through the
//! proxy (lookup, Record-Route, ACK and BYE routed back through it), both hear each other, and
//! the hang-up reaches the other side; once with per-client RTP ports, once with shared ones.
//! sipp plays registrar and far end elsewhere; this is the one test where a SIP server nobody
//! here wrote routes the calls.

use std::net::SocketAddr;
use std::time::Duration;

use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{
    accept_pcmu, assert_phones_hear_each_other, gateway_node_with_ports, s, Phone,
};
use siprtmp_tests::kamailio::{modules_dir, Kamailio};
use siprtmp_tests::ports::{free_udp_port, free_udp_range, LOOPBACK};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;

const T: Duration = Duration::from_secs(10);

/// Registrar (location in memory) and stateful proxy that record-routes, so that requests
/// inside the dialog (ACK, BYE) come back through it.
fn kamailio_config(modules: &str, port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
disable_tcp=yes
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    record_route();
    t_relay();
}}
"#
    )
}

#[test]
fn two_clients_registered_with_kamailio_call_each_other_through_it() {
    let dir = scratch_dir("gw-kamailio");
    let port = free_udp_port(LOOPBACK);
    let mut kamailio = Kamailio::start(&dir, &kamailio_config(modules_dir(), port));
    kamailio.wait_udp(port);
    let proxy = SocketAddr::new(LOOPBACK, port);
    // Per-client RTP ports, then every call on the shared ones (the two calls' media then
    // meets on the gateway's own port, paired by the SDP that crossed Kamailio).
    for (shared, rtp_ports) in [(false, 50), (true, 4)] {
        call_through_kamailio(proxy, shared, free_udp_range(LOOPBACK, rtp_ports));
    }
    drop(kamailio);
}

/// Alice and carol (`aliceN`, `carolN`: fresh names per gateway, so Kamailio's location table
/// holds one contact each) register with the Kamailio at `proxy`, call, talk and hang up.
fn call_through_kamailio(proxy: SocketAddr, shared_rtp_ports: bool, rtp_ports: (u16, u16)) {
    let mut node = gateway_node_with_ports(Transport::Udp, rtp_ports);
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(proxy);
        g.session.outbound_proxy = Some(proxy);
        g.shared_rtp_ports = shared_rtp_ports;
    }
    let server = TestServer::start(node, None);
    let n = u8::from(shared_rtp_ports);
    let (alice_aor, carol_aor) = (format!("alice{n}@127.0.0.1"), format!("carol{n}@127.0.0.1"));
    // With credentials the connect waits for the REGISTER's answer (Kamailio's 200 OK).
    let credentials = |user: &str| vec![s(user), s("secret"), s(user)];
    let mut alice =
        Phone::connect(server.addr, &alice_aor, credentials("alice")).expect("alice registered");
    let mut carol =
        Phone::connect(server.addr, &carol_aor, credentials("carol")).expect("carol registered");

    // By address of record: only Kamailio's location table knows where carol is.
    alice.call("invite", vec![s(&format!("sip:{carol_aor}")), s("pcmu")]);
    let invited = carol.callback("invited", T).expect("carol is invited");
    assert!(
        format!("{invited:?}").contains(&alice_aor),
        "the caller is alice: {invited:?}"
    );
    accept_pcmu(&mut alice, &mut carol);

    assert_phones_hear_each_other(&mut alice, &mut carol);

    // Alice hangs up: the BYE follows the recorded route through Kamailio to carol.
    alice.call("bye", vec![]);
    carol
        .callback("byed", T)
        .expect("carol is told the call ended");
}
