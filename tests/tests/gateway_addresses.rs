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
//! Ports: sipp's and the gateway's RTP range are free ones from the OS, on the address each binds.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use siprtmp_core::node::NodeConfig;
use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{
    assert_hears_its_echo, gateway_node_with_ports, gateway_sip, s, EchoMedia, Phone, RTP_PORTS,
};
use siprtmp_tests::ports::{free_udp_range, LOOPBACK};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::sipp::{self, Sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";
/// The "external" address advertised in these tests.
const EXT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 5));

/// A gateway node binding on `bind` (its RTP range free there) and advertising `advertised`
/// (when set).
fn node(bind: IpAddr, advertised: Option<IpAddr>) -> NodeConfig {
    let rtp_ports = free_udp_range(bind, RTP_PORTS);
    let mut node = gateway_node_with_ports(Transport::Udp, rtp_ports);
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
fn echo_call(server: &TestServer, name: &str) -> String {
    echo_call_at(server, name, LOOPBACK)
}

/// [`echo_call`] with sipp on `sipp_ip`.
fn echo_call_at(server: &TestServer, name: &str, sipp_ip: IpAddr) -> String {
    let dir = scratch_dir(name);
    let sipp = Sipp::echo_uas(1).on(sipp_ip).start("sipp uas (echo)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s("wideband")]);
    phone.callback("accepted", T).expect("accepted callback");
    phone.open_streams();
    assert_hears_its_echo(
        &mut phone,
        EchoMedia::Wideband,
        150,
        Duration::from_millis(600),
        name,
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
    let mut server = TestServer::start(node(bind, None), None);
    let invite = echo_call(&server, "gw-addr-int");
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind);
    assert_advertises(&invite, bind, sip.port());
}

#[test]
fn int_ip_and_ext_ip_bind_one_and_advertise_the_other() {
    let bind = IpAddr::from([127, 0, 0, 1]);
    let mut server = TestServer::start(node(bind, Some(EXT)), None);
    let invite = echo_call(&server, "gw-addr-int-ext");
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind, "sockets bind on --int-ip");
    assert_advertises(&invite, EXT, sip.port());
}

#[test]
fn a_wildcard_int_ip_binds_every_address_and_the_ext_ip_reaches_it() {
    let bind = IpAddr::from([0, 0, 0, 0]);
    let mut server = TestServer::start(node(bind, Some(EXT)), None);
    let invite = echo_call(&server, "gw-addr-any-ext");
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
    let mut server = TestServer::start(node(bind, None), None);
    let invite = echo_call_at(&server, "gw-addr-v6", bind);
    let sip = gateway_sip(&mut server, AOR);
    assert_eq!(sip.ip(), bind);
    assert_advertises(&invite, bind, sip.port());
}
