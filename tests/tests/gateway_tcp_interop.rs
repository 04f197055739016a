//! The SIP-RTMP gateway with SIP over TCP (`transport = tcp`) against sipp over TCP (`-t t1`,
//! one connection per peer used both ways), on the mio driver, all on loopback: a call whose
//! far end echoes RTP (still UDP) and then hangs up over the connection the gateway opened; a
//! Digest registration through a 401 challenge; sipp calling a client on its TCP listener;
//! and refused connections reaching the client as clear refusals. The registration and the
//! incoming call are the UDP suite's scenarios (`siprtmp_tests::gateway_scenarios`) over TCP.
//!
//! Every wait has a deadline; sipp runs with a global timeout that fails it and is killed on
//! drop. Every port is a free one from the OS, so the tests run in parallel.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{assert_hears_its_echo, gateway_node, s, EchoMedia, Phone};
use siprtmp_tests::gateway_scenarios::{
    a_registration_decides_the_connect, assert_no_tcp_left, sipp_calls_a_client_that_accepts,
};
use siprtmp_tests::ports::{free_tcp_port, LOOPBACK};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::sipp::{self, Sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";

#[test]
fn a_call_over_tcp_is_echoed_and_the_far_ends_bye_comes_on_the_same_connection() {
    let dir = scratch_dir("gw-tcp-hangup");
    let server = TestServer::start(gateway_node(Transport::Tcp), None);
    let sipp = Sipp::uas("uas_pcmu_hangup.xml")
        .over(Transport::Tcp)
        .rtp_echo()
        .pause_ms(4000)
        .start("sipp uas over tcp (echo, then BYE)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s("pcmu")]);
    assert_eq!(phone.callback("ringing", T), Some(vec![s("180 Ringing")]));
    let accepted = phone.callback("accepted", T).expect("accepted");
    assert_eq!(accepted.first(), Some(&s("pcmu")));
    phone.open_streams();
    // sipp hangs up 4 s after the ACK; 2 s of G.711 fit well before.
    assert_hears_its_echo(
        &mut phone,
        EchoMedia::Pcmu,
        100,
        Duration::from_millis(500),
        "the call over TCP",
    );
    assert!(phone.callback("byed", T).is_some(), "sipp's BYE gives byed");
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp got the 200 to its BYE");
    assert_eq!(
        server.tcp.opened.load(Ordering::Relaxed),
        1,
        "one connection carried the INVITE, the answer and the far end's BYE"
    );
    drop(phone);
    assert_no_tcp_left(&server, T);
}

#[test]
fn a_registration_over_tcp_answers_the_digest_challenge() {
    a_registration_decides_the_connect(Transport::Tcp, "gw-tcp-register");
}

#[test]
fn sipp_calls_the_client_on_its_tcp_listener() {
    sipp_calls_a_client_that_accepts(Transport::Tcp, "gw-tcp-incoming");
}

#[test]
fn refused_connections_reach_the_client_as_clear_refusals() {
    let closed = free_tcp_port(LOOPBACK);
    let mut node = gateway_node(Transport::Tcp);
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(SocketAddr::new(LOOPBACK, closed));
    }
    let server = TestServer::start(node, None);
    // The registrar refuses: the connect is rejected at once with why.
    let started = Instant::now();
    let refused = Phone::connect(server.addr, AOR, vec![s("alice"), s("secret")]);
    let why = refused.err().expect("rejected");
    assert!(
        why.starts_with("503") && why.contains("refused"),
        "connect rejected with: {why}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not after a timeout"
    );
    // A call target that refuses: `rejected` with why; the client stays connected.
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&format!("sip:bob@127.0.0.1:{closed}")), s("pcmu")],
    );
    let rejected = phone.callback("rejected", T).expect("rejected");
    let text = rejected[0].as_str().unwrap_or_default();
    assert!(
        text.starts_with("503") && text.contains("refused"),
        "rejected with: {text}"
    );
    assert!(phone.pump(), "the client is still connected");
    drop(phone);
    assert_no_tcp_left(&server, T);
}
