//! Whole gateway scenarios against sipp that more than one suite runs, with what the suites
//! differ by as parameters: the SIP transport (UDP or TCP, sipp with `-t t1`; RTP is UDP either
//! way) and the driver. A [`Phone`] calls an echoing sipp ([`echo_call`]), sipp calls a phone
//! ([`sipp_calls_a_client_that_accepts`]), and a sipp registrar decides who may connect
//! ([`a_registration_decides_the_connect`]). Every port is a free one from the OS.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siprtmp_core::node::NodeConfig;
use siprtmp_core::sip::Transport;

use crate::gateway::{assert_hears_its_echo, gateway_node, gateway_sip, s, EchoMedia, Phone};
use crate::server::{Runtime, TestServer};
use crate::sipp::{self, Sipp};

/// How long a phone waits for a callback.
const T: Duration = Duration::from_secs(10);
/// How long sipp may take to finish once its last call is over.
const SIPP_FINISH: Duration = Duration::from_secs(20);
/// The phone's address of record.
const AOR: &str = "alice@127.0.0.1";

/// Scenario (1) of the gateway suite, on any driver: a phone connects to a gateway node (no
/// password), invites a sipp UAS that answers with the first offered codec and echoes RTP
/// (`uas_echo_any.xml -rtp_echo`), gets `ringing` and `accepted`, publishes `frames` audio
/// frames in real time on `local`, and must get at least 99 % of them back on `remote`, byte
/// for byte; then `bye`, and sipp must exit 0 with one successful call.
pub fn echo_call(runtime: Runtime, name: &str, media: EchoMedia, frames: usize) {
    echo_call_over(Transport::Udp, runtime, name, media, frames);
}

/// [`echo_call`] with the gateway's SIP over `transport`. Over TCP, once the phone has left,
/// the driver must have closed every connection and listener it opened for it.
pub fn echo_call_over(
    transport: Transport,
    runtime: Runtime,
    name: &str,
    media: EchoMedia,
    frames: usize,
) {
    echo_call_on(gateway_node(transport), runtime, name, media, frames);
}

/// [`echo_call_over`] on a node configured as given, over its gateway's transport.
pub fn echo_call_on(
    node: NodeConfig,
    runtime: Runtime,
    name: &str,
    media: EchoMedia,
    frames: usize,
) {
    let transport = node
        .server
        .gateway
        .as_ref()
        .expect("a gateway node")
        .session
        .transport;
    let dir = crate::scratch_dir(name);
    let server = TestServer::start_on(runtime, node, None);
    let sipp = Sipp::echo_uas(1)
        .over(transport)
        .start("sipp uas (echo)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(media.tokens());
    phone.call("invite", invite);
    let ringing = phone.callback("ringing", T).expect("ringing callback");
    assert_eq!(ringing, vec![s("180 Ringing")]);
    let accepted = phone.callback("accepted", T).expect("accepted callback");
    assert_eq!(
        accepted.first(),
        Some(&s(media.codec())),
        "accepted({accepted:?})"
    );
    phone.open_streams();
    let started = Instant::now();
    let what = format!("{name} on {runtime:?}");
    let echo = assert_hears_its_echo(&mut phone, media, frames, Duration::from_millis(600), &what);
    eprintln!("{what}: {echo:?} in {:?}", started.elapsed());
    phone.call("bye", vec![]);
    sipp.finish(SIPP_FINISH);
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp: one successful call");
    assert!(phone.pending_callbacks().iter().all(|c| c != "rejected"));
    if transport == Transport::Tcp {
        assert!(
            server.tcp.opened.load(Ordering::Relaxed) >= 1,
            "SIP went over TCP"
        );
        drop(phone);
        assert_no_tcp_left(&server, T);
    }
}

/// Waits up to `within` until the driver has closed every TCP connection and listener it
/// opened (the gateway's SIP over TCP), and fails if it has not.
pub fn assert_no_tcp_left(server: &TestServer, within: Duration) {
    let closed = || server.tcp.open_streams() == 0 && server.tcp.open_listeners() == 0;
    assert!(
        crate::wait::until(within, closed),
        "TCP still open {within:?} after the phone left: {:?}",
        server.tcp
    );
}

/// sipp calls a phone (connected to a gateway node whose SIP is over `transport`) at its SIP
/// address, as its AOR's user, offering PCMU: the phone is `invited` by sipp, accepts, hears
/// 2 s of its own G.711 echoed back by sipp, and is `byed` when sipp hangs up 4 s after its
/// ACK; sipp counts one successful call. `name` names the scratch directory.
pub fn sipp_calls_a_client_that_accepts(transport: Transport, name: &str) {
    let dir = crate::scratch_dir(name);
    let mut server = TestServer::start(gateway_node(transport), None);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let sip = gateway_sip(&mut server, AOR);
    let sipp = Sipp::uac("uac_echo_pcmu.xml", sip)
        .user("alice")
        .over(transport)
        .rtp_echo()
        .pause_ms(4000)
        .start("sipp uac (echo)", &dir);
    let invited = phone.callback("invited", T).expect("invited callback");
    assert_eq!(invited.len(), 2, "invited(from, to): {invited:?}");
    let from = invited[0].as_str().unwrap_or_default().to_owned();
    assert!(from.contains("sipp@127.0.0.1"), "from: {from}");
    phone.open_streams();
    phone.call("accept", vec![s("pcmu")]);
    // sipp hangs up 4 s after its ACK; 2 s of G.711 fit well before.
    let echo = assert_hears_its_echo(
        &mut phone,
        EchoMedia::Pcmu,
        100,
        Duration::from_millis(500),
        &format!("{name}: the incoming call"),
    );
    eprintln!("{name}: incoming call over {transport:?}: {echo:?}");
    assert!(phone.callback("byed", T).is_some(), "sipp's BYE gives byed");
    sipp.finish(SIPP_FINISH);
    assert_eq!(sipp::totals(&dir), (1, 0));
}

/// A gateway node whose SIP is over `transport` registers its clients with a sipp registrar
/// that challenges with Digest (`uas_register_401.xml`, user alice, password secret): a client
/// with the right password connects, one with a wrong one is refused with the registrar's
/// answer as the rejection's description, and sipp counts both registrations as successful.
pub fn a_registration_decides_the_connect(transport: Transport, name: &str) {
    let dir = crate::scratch_dir(name);
    let sipp = Sipp::uas("uas_register_401.xml")
        .over(transport)
        .calls(2)
        .start("sipp registrar", &dir);
    let mut node = gateway_node(transport);
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(sipp.sip);
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
    sipp.finish(SIPP_FINISH);
    assert_eq!(sipp::totals(&dir), (2, 0));
}
