//! The SIP-RTMP gateway with SIP over TCP (`transport = tcp`) against sipp over TCP (`-t t1`,
//! one connection per peer used both ways), on the mio driver, all on loopback: a call whose
//! far end echoes RTP (still UDP) and then hangs up over the connection the gateway opened; a
//! Digest registration through a 401 challenge; sipp calling a client on its TCP listener;
//! and refused connections reaching the client as clear refusals.
//!
//! Every wait has a deadline; sipp runs with a global timeout that fails it and is killed on
//! drop. Ports (30xxx, below the ephemeral range) are distinct per test, so the tests run in
//! parallel.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::node::Event;
use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{echo_matches, g711_frames, gateway_node_over, s, Phone};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir, sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";

/// A TCP port on loopback with nothing listening (bound, then released).
fn closed_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the driver has closed every TCP connection and listener it opened.
fn assert_no_tcp_left(server: &TestServer, within: Duration) {
    let deadline = Instant::now() + within;
    while (server.tcp.open_streams() > 0 || server.tcp.open_listeners() > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        (server.tcp.open_streams(), server.tcp.open_listeners()),
        (0, 0),
        "TCP still open: {:?}",
        server.tcp
    );
}

#[test]
fn a_call_over_tcp_is_echoed_and_the_far_ends_bye_comes_on_the_same_connection() {
    let dir = scratch_dir("gw-tcp-hangup");
    let server = TestServer::start(gateway_node_over(Transport::Tcp, (30200, 30299)), None);
    let port = 30060;
    let sipp = sipp::start_tcp(
        "sipp uas over tcp (echo, then BYE)",
        &dir,
        Some(port),
        &sipp::args(&[
            "-sf",
            &sipp::scenario("uas_pcmu_hangup.xml").display().to_string(),
            "-p",
            &port.to_string(),
            "-mp",
            "30100",
            "-rtp_echo",
            "-d",
            "4000",
            "-m",
            "1",
        ]),
    );
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&format!("sip:service@127.0.0.1:{port}")), s("pcmu")],
    );
    assert_eq!(phone.callback("ringing", T), Some(vec![s("180 Ringing")]));
    let accepted = phone.callback("accepted", T).expect("accepted");
    assert_eq!(accepted.first(), Some(&s("pcmu")));
    phone.open_streams();
    // sipp hangs up 4 s after the ACK; 2 s of G.711 fit well before.
    let sent = g711_frames(&media("pcmu_8k_20s.ul"), 0x82, 100);
    phone.stream_audio(&sent, Duration::from_millis(500));
    let sent: Vec<Bytes> = sent.into_iter().map(|f| f.1).collect();
    let (matched, stray) = echo_matches(&sent, &phone.remote_audio(), 0);
    assert_eq!(stray, 0, "every echoed frame is one that was sent");
    assert!(matched >= 99, "only {matched} of 100 frames came back");
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
    let dir = scratch_dir("gw-tcp-register");
    let port = 30360;
    let sipp = sipp::start_tcp(
        "sipp registrar over tcp",
        &dir,
        Some(port),
        &sipp::args(&[
            "-sf",
            &sipp::scenario("uas_register_401.xml").display().to_string(),
            "-p",
            &port.to_string(),
            "-m",
            "2",
        ]),
    );
    let mut node = gateway_node_over(Transport::Tcp, (30400, 30499));
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let server = TestServer::start(node, None);
    let good = Phone::connect(server.addr, AOR, vec![s("alice"), s("secret"), s("Alice")]);
    assert!(good.is_ok(), "registered client connects: {:?}", good.err());
    let bad = Phone::connect(server.addr, AOR, vec![s("alice"), s("wrong")]);
    assert_eq!(
        bad.err().as_deref(),
        Some("403 Forbidden"),
        "the rejection's description is the registrar's answer"
    );
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (2, 0));
}

#[test]
fn sipp_calls_the_client_on_its_tcp_listener() {
    let dir = scratch_dir("gw-tcp-incoming");
    let mut server = TestServer::start(gateway_node_over(Transport::Tcp, (30600, 30699)), None);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let is_bound = |e: &Event| matches!(e, Event::GatewayBound { .. });
    assert!(server.wait_for(1, T, is_bound), "no GatewayBound event");
    let listener = server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::GatewayBound { sip, .. } => Some(*sip),
            _ => None,
        })
        .unwrap();
    let sipp = sipp::start_tcp(
        "sipp uac over tcp (echo)",
        &dir,
        None,
        &[
            listener.to_string(),
            "-s".into(),
            "alice".into(),
            "-sf".into(),
            sipp::scenario("uac_echo_pcmu.xml").display().to_string(),
            "-p".into(),
            closed_tcp_port().to_string(),
            "-mp".into(),
            "30560".into(),
            "-rtp_echo".into(),
            "-d".into(),
            "4000".into(),
            "-m".into(),
            "1".into(),
        ],
    );
    let invited = phone.callback("invited", T).expect("invited callback");
    assert!(
        invited[0].as_str().unwrap_or_default().contains("sipp@"),
        "{invited:?}"
    );
    phone.open_streams();
    phone.call("accept", vec![s("pcmu")]);
    let sent = g711_frames(&media("pcmu_8k_20s.ul"), 0x82, 100);
    phone.stream_audio(&sent, Duration::from_millis(500));
    let sent: Vec<Bytes> = sent.into_iter().map(|f| f.1).collect();
    let (matched, stray) = echo_matches(&sent, &phone.remote_audio(), 0);
    assert_eq!(stray, 0);
    assert!(matched >= 99, "only {matched} of 100 frames came back");
    assert!(phone.callback("byed", T).is_some(), "sipp's BYE gives byed");
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0));
}

#[test]
fn refused_connections_reach_the_client_as_clear_refusals() {
    let closed = closed_tcp_port();
    let mut node = gateway_node_over(Transport::Tcp, (30800, 30899));
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(SocketAddr::from(([127, 0, 0, 1], closed)));
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
