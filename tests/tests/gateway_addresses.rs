//! The gateway's bind address (`--int-ip`) and advertised address (`--ext-ip`) against a real
//! far end: sipp records every message it receives (`-trace_msg`), so each test reads what
//! the gateway actually put in Via, Contact and the SDP's `o=` and `c=` lines, and checks
//! where its sockets are bound (`Event::GatewayBound`) and that the call still carries media
//! both ways.
//!
//! Behind NAT the external address is not a local one, so on loopback the tests advertise
//! 127.0.0.5 (routed to `lo` like all of 127/8, but not an address the gateway binds unless
//! it binds the wildcard). sipp answers to where requests come from and `-rtp_echo` echoes
//! to the source of each packet, as a NAT'd far end would have to; the wildcard case also
//! proves the advertised address reaches the gateway's SIP socket with an OPTIONS sent to it.
//! An IPv6 `--int-ip` is checked the same way against sipp on `::1` (`IN IP6` in the SDP).
//! The rows of the full table (every flag combination -> bind and advertised address) are unit
//! tests of the flags in `cli/src/gateway.rs`.
//!
//! Ports: sipp SIP/media and gateway RTP ranges in 19xxx and 20xxx, apart from the other suites.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::node::NodeConfig;
use siprtmp_tests::gateway::{echo_matches, flv_audio, gateway_node, gateway_sip, s, Phone};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir, sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";
/// The "external" address advertised in these tests.
const EXT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 5));

/// A gateway node binding on `bind` and advertising `advertised` (when set).
fn node(bind: IpAddr, advertised: Option<IpAddr>, rtp_lo: u16) -> NodeConfig {
    let mut node = gateway_node((rtp_lo, rtp_lo + 99));
    let gateway = node.server.gateway.as_mut().unwrap();
    gateway.bind_ip = bind;
    gateway.session.advertised_ip = advertised;
    node
}

/// The first INVITE sipp received, from its message log (`-trace_msg`) in `dir`.
fn received_invite(dir: &Path) -> String {
    let text = std::fs::read_to_string(sipp::message_log(dir)).expect("sipp's message log");
    let start = text
        .find("INVITE sip:")
        .expect("an INVITE in sipp's message log");
    let end = text[start..]
        .find("\n----")
        .map_or(text.len(), |n| start + n);
    text[start..end].to_owned()
}

/// The value of the first header `name` (case-insensitive) in a SIP message.
fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} header in:\n{message}"))
}

/// A call from a phone on `server` to a sipp UAS echoing RTP on 127.0.0.1: 3 s of Speex
/// 16 kHz must come back byte for byte. Returns the INVITE as sipp received it.
fn echo_call(server: &TestServer, name: &str, sip_port: u16, media_port: u16) -> String {
    echo_call_at(
        server,
        name,
        IpAddr::from([127, 0, 0, 1]),
        sip_port,
        media_port,
    )
}

/// [`echo_call`] with sipp on `sipp_ip`.
fn echo_call_at(
    server: &TestServer,
    name: &str,
    sipp_ip: IpAddr,
    sip_port: u16,
    media_port: u16,
) -> String {
    let dir = scratch_dir(name);
    let sipp = sipp::start(
        "sipp uas (echo)",
        &dir,
        None,
        &[
            // After sipp::start's own loopback addresses: the last ones count.
            "-i".into(),
            sipp_ip.to_string(),
            "-mi".into(),
            sipp_ip.to_string(),
            "-sf".into(),
            sipp::scenario("uas_echo_any.xml").display().to_string(),
            "-p".into(),
            sip_port.to_string(),
            "-mp".into(),
            media_port.to_string(),
            "-rtp_echo".into(),
            "-m".into(),
            "1".into(),
        ],
    );
    let deadline = Instant::now() + T;
    // Bound by sipp once our own bind fails.
    while UdpSocket::bind((sipp_ip, sip_port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "sipp did not bind {sipp_ip}:{sip_port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    // host:port as SIP writes it ([v6]:port).
    let target = format!("sip:service@{}", SocketAddr::new(sipp_ip, sip_port));
    phone.call("invite", vec![s(&target), s("wideband")]);
    phone.callback("accepted", T).expect("accepted callback");
    phone.open_streams();
    let mut sent = flv_audio(&media("speex16k_audio_20s.flv"));
    sent.truncate(150);
    phone.stream_audio(&sent, Duration::from_millis(600));
    let sent: Vec<Bytes> = sent.into_iter().map(|f| f.1).collect();
    let (matched, stray) = echo_matches(&sent, &phone.remote_audio(), 1);
    assert_eq!(stray, 0, "every echoed frame is one that was sent");
    assert!(
        matched * 100 >= sent.len() * 99,
        "{name}: only {matched} of {} frames came back",
        sent.len()
    );
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp: one successful call");
    received_invite(&dir)
}

/// Asserts that Via, Contact, `o=` and `c=` of `invite` all carry `ip`, with the SIP port
/// `sip_port` in Via and Contact.
fn assert_advertises(invite: &str, ip: IpAddr, sip_port: u16) {
    // host:port as SIP writes it ([v6]:port).
    let at = SocketAddr::new(ip, sip_port).to_string();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let via = header(invite, "Via");
    assert!(via.starts_with(&format!("SIP/2.0/UDP {at}")), "Via: {via}");
    let contact = header(invite, "Contact");
    assert!(contact.contains(&format!("@{at}")), "Contact: {contact}");
    let origin = invite.lines().find(|l| l.starts_with("o=")).unwrap();
    assert!(origin.ends_with(&format!("IN {family} {ip}")), "{origin}");
    let connection = invite.lines().find(|l| l.starts_with("c=")).unwrap();
    assert_eq!(connection.trim(), format!("c=IN {family} {ip}"));
}

#[test]
fn int_ip_alone_is_bound_and_advertised() {
    let bind = IpAddr::from([127, 0, 0, 1]);
    let mut server = TestServer::start(node(bind, None, 20200), None);
    let invite = echo_call(&server, "gw-addr-int", 20060, 20100);
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind);
    assert_advertises(&invite, bind, sip.port());
}

#[test]
fn int_ip_and_ext_ip_bind_one_and_advertise_the_other() {
    let bind = IpAddr::from([127, 0, 0, 1]);
    let mut server = TestServer::start(node(bind, Some(EXT), 20500), None);
    let invite = echo_call(&server, "gw-addr-int-ext", 20360, 20400);
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind, "sockets bind on --int-ip");
    assert_advertises(&invite, EXT, sip.port());
}

#[test]
fn a_wildcard_int_ip_binds_every_address_and_the_ext_ip_reaches_it() {
    let bind = IpAddr::from([0, 0, 0, 0]);
    let mut server = TestServer::start(node(bind, Some(EXT), 20800), None);
    let invite = echo_call(&server, "gw-addr-any-ext", 20660, 20700);
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind, "sockets bind on the wildcard");
    assert_advertises(&invite, EXT, sip.port());

    // The advertised address reaches the gateway: an OPTIONS sent to EXT:port is answered.
    let phone = Phone::connect(server.addr, "bob@127.0.0.1", vec![]).expect("connect");
    let bob_sip = gateway_sip(&mut server, "bob@127.0.0.1");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:bob@{EXT}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-addr-test-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe1\r\n\
         To: <sip:bob@{EXT}>\r\n\
         Call-ID: addr-test-options@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        port = bob_sip.port()
    );
    let deadline = Instant::now() + T;
    let mut buf = [0u8; 4096];
    let answer = loop {
        // Retransmitted every 200 ms until answered, as a UAC over UDP would.
        socket
            .send_to(options.as_bytes(), (EXT, bob_sip.port()))
            .unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no answer to OPTIONS sent to {EXT}"
        );
    };
    assert!(answer.starts_with("SIP/2.0 200"), "answer: {answer}");
    drop(phone);
}

#[test]
fn an_ipv6_int_ip_is_bound_and_advertised_to_an_ipv6_far_end() {
    let bind = IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    let mut server = TestServer::start(node(bind, None, 19800), None);
    let invite = echo_call_at(&server, "gw-addr-v6", bind, 19960, 19980);
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind);
    assert_advertises(&invite, bind, sip.port());
}
