//! SIP over TLS and SRTP together, end to end through a real proxy to a real softphone: the
//! combined scenario of the secure gateway. Kamailio (with `kamailio-tls-modules`) is the
//! registrar and record-routing proxy, with digest authentication on REGISTER and a server
//! certificate from a CA made here. baresip registers at it over TLS (digest too) as `bob`,
//! requires SDES SRTP (`mediaenc=srtp-mand`) and echoes what it hears; Kamailio reaches it at
//! the Contact it registered, a TLS listener of its own (with a certificate from the same CA).
//! Every SIP message of the call travels over TLS, on both sides of Kamailio.
//!
//! A gateway with SIP over TLS (verifying Kamailio's certificate against the CA) and
//! `srtp = require`, without the plain-SIP override: its client registers with digest and
//! calls `sip:bob@127.0.0.1` through Kamailio; baresip answers with SRTP, and every frame the
//! client publishes comes back (to baresip as SRTP under the gateway's key, back as SRTP under
//! baresip's). Then datagrams to the call's RTP port: a bad tag, a packet under a wrong key, and
//! one under baresip's own key with a payload byte flipped are each dropped and counted under
//! `srtp_auth`, and their payload never reaches the client; the same packet as the last one
//! but untouched authenticates (it is dropped for its source instead: the call is latched onto
//! baresip's address), which shows the three were refused for their keys and tags. Once hung
//! up, the counts add up: one SRTP packet out per frame published, and every packet taken in
//! while the client played heard by it.
//!
//! The same call from a gateway whose SIP to the same Kamailio is plain UDP (registered
//! there with digest, same SRTP setting, no override) is refused by the gateway before an
//! INVITE leaves it (baresip sees none): the keys never go over plain signalling, and the
//! client is told why.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::gateway::srtp_policy::SrtpMode;
use siprtmp_core::node::{HttpConfig, NodeConfig};
use siprtmp_core::sdp::CryptoAttribute;
use siprtmp_core::sip::Transport;
use siprtmp_core::srtp::{MasterKey, SrtpContext, Suite};
use siprtmp_runtime_common::TlsRoots;
use siprtmp_tests::baresip::{tally_echo, Baresip, EchoTally};
use siprtmp_tests::gateway::{gateway_node, s, tls_gateway_node, EchoMedia, Phone};
use siprtmp_tests::kamailio::{modules_dir, registrar_config, tls_cfg, Kamailio};
use siprtmp_tests::ports::{free_tcp_port, free_udp_port, LOOPBACK};
use siprtmp_tests::rtmps::TestCa;
use siprtmp_tests::scrape::metric;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::{scratch_dir, wait};

const T: Duration = Duration::from_secs(10);

/// The password Kamailio checks every REGISTER against (whatever the user).
const PASSWORD: &str = "tls-srtp-secret";

const AUTH: &str = "siprtmp_gateway_rtp_dropped_total{reason=\"srtp_auth\"}";
const RECEIVED: &str = "siprtmp_gateway_rtp_packets_total{direction=\"received\",media=\"audio\"}";
const SENT: &str = "siprtmp_gateway_rtp_packets_total{direction=\"sent\",media=\"audio\"}";
const UNKNOWN_SOURCE: &str = "siprtmp_gateway_rtp_dropped_total{reason=\"unknown_source\"}";
const FAILED: &str = "siprtmp_gateway_calls_total{direction=\"outgoing\",outcome=\"failed\"}";

/// What a forged packet carries: 160 bytes of this, which no G.711 test frame is all of.
const FORGED_BYTE: u8 = 0xaa;

/// `node` with `srtp = require` (and the plain-SIP override off, as by default) and an HTTP
/// listener for its metrics.
fn require_srtp(mut node: NodeConfig) -> NodeConfig {
    let gateway = node.server.gateway.as_mut().expect("a gateway");
    gateway.session.srtp = SrtpMode::Require;
    gateway.session.srtp_over_plain_sip = false;
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    node
}

fn credentials(user: &str) -> Vec<siprtmp_core::amf::Value> {
    vec![s(user), s(PASSWORD), s(user)]
}

/// A PCMU RTP packet of SSRC `ssrc`, sequence `seq`, whose payload is all [`FORGED_BYTE`];
/// with `room` bytes to spare after it (for an SRTP tag).
fn forged_rtp(ssrc: u32, seq: u16, room: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[FORGED_BYTE; 160]);
    packet.resize(packet.len() + room, 0);
    packet
}

/// [`forged_rtp`] protected as SRTP under `key` (suite `suite`): a packet with a valid tag
/// for whoever holds that key.
fn protected(suite: Suite, key: &MasterKey, ssrc: u32, seq: u16) -> Vec<u8> {
    let mut context = SrtpContext::new(suite, key);
    let mut packet = forged_rtp(ssrc, seq, context.overhead());
    let len = packet.len() - context.overhead();
    let protected = context.protect(&mut packet, len).expect("protects");
    packet.truncate(protected);
    packet
}

/// Whether the client heard a forged payload.
fn heard_forged(phone: &Phone) -> bool {
    phone
        .remote_audio()
        .iter()
        .any(|p| p.len() == 161 && p[1..].iter().all(|&b| b == FORGED_BYTE))
}

/// baresip's certificate and key in one PEM file (its `sip_certificate`), from the CA.
fn baresip_certificate(ca: &TestCa, dir: &Path) -> std::path::PathBuf {
    let pair = ca.server(dir, "baresip", 2020, 2100);
    let bundle = dir.join("baresip.pem");
    let mut pem = std::fs::read(&pair.files.cert).expect("certificate");
    pem.extend(std::fs::read(&pair.files.key).expect("key"));
    std::fs::write(&bundle, pem).expect("write baresip's PEM");
    bundle
}

#[test]
fn a_client_over_tls_calls_baresip_through_kamailio_with_required_srtp_and_hears_every_frame() {
    let dir = scratch_dir("gw-tls-srtp");
    let ca = TestCa::new(&dir);
    let pair = ca.server(&dir, "kamailio", 2020, 2100);
    let cfg = dir.join("tls.cfg");
    std::fs::write(&cfg, tls_cfg(&pair.files.cert, &pair.files.key)).unwrap();
    let tls_port = free_tcp_port(LOOPBACK);
    let udp_port = free_udp_port(LOOPBACK);
    let listen = [
        format!("tls:127.0.0.1:{tls_port}"),
        format!("udp:127.0.0.1:{udp_port}"),
    ];
    let config = registrar_config(modules_dir(), &listen, Some(&cfg), PASSWORD);
    let mut kamailio = Kamailio::start(&dir, &config);
    kamailio.wait_tcp(tls_port);
    kamailio.wait_udp(udp_port);
    let over_tls = SocketAddr::new(LOOPBACK, tls_port);
    let over_udp = SocketAddr::new(LOOPBACK, udp_port);

    let bob_dir = dir.join("baresip");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let bundle = baresip_certificate(&ca, &bob_dir);
    let baresip = Baresip::srtp_echo_registered_tls(&bob_dir, over_tls, PASSWORD, &ca.pem, &bundle);
    let log = baresip.log();
    assert!(
        log.contains("SIP/2.0 401 Unauthorized") && log.contains("Authorization: Digest"),
        "baresip registered by answering Kamailio's digest challenge:\n{log}"
    );

    // Plain UDP SIP, SRTP required, no override: registered (digest over UDP), but the call
    // is refused before any INVITE (and so any key) leaves the gateway.
    let mut node = require_srtp(gateway_node(Transport::Udp));
    let gateway = node.server.gateway.as_mut().unwrap();
    gateway.session.registrar = Some(over_udp);
    gateway.session.outbound_proxy = Some(over_udp);
    let mut plain = TestServer::start_on(Runtime::Mio, node, None);
    let plain_http = plain.http_listening(T).expect("the HTTP listener");
    let mut phone = Phone::connect(plain.addr, "dave@127.0.0.1", credentials("dave"))
        .expect("dave registers over UDP");
    phone.call("invite", vec![s("sip:bob@127.0.0.1"), s("pcmu")]);
    let rejected = phone.callback("rejected", T).expect("the call is refused");
    let reason = format!("{rejected:?}");
    assert!(
        reason.contains("488") && reason.contains("SRTP required but SIP is not over TLS"),
        "the client is told why: {reason}"
    );
    assert_eq!(metric(&plain_http, FAILED), 1.0, "one outgoing call failed");
    assert!(
        !baresip.log().contains("\nINVITE sip:"),
        "no INVITE reached baresip:\n{}",
        baresip.log()
    );
    drop(phone);
    drop(plain);

    // SIP over TLS, SRTP required. Another seed than the first gateway's: the same one would
    // make the same branches and Call-IDs, which Kamailio could take for retransmissions.
    let node = require_srtp(tls_gateway_node(
        over_tls,
        TlsRoots::CaFile(ca.pem.clone()),
        Some("localhost"),
    ));
    let mut server = TestServer::start_configured(Runtime::Mio, node, None, |c| c.seed = 8);
    let http = server.http_listening(T).expect("the HTTP listener");
    let mut phone = Phone::connect(server.addr, "alice@127.0.0.1", credentials("alice"))
        .expect("alice registers over TLS");
    phone.call("invite", vec![s("sip:bob@127.0.0.1"), s("pcmu")]);
    let accepted = phone.callback("accepted", T);
    assert!(accepted.is_some(), "bob answered:\n{}", baresip.log());
    let log = baresip.log();
    let invite = &log[log
        .rfind("\nINVITE sip:")
        .expect("an INVITE reached baresip")..];
    assert!(
        invite.contains("SIP/2.0/TLS") && invite.contains("RTP/SAVP"),
        "the INVITE came over TLS with an SRTP offer:\n{log}"
    );
    let answer = baresip
        .answered_crypto()
        .expect("baresip answered with a key");
    let answer = CryptoAttribute::parse(&answer).expect("a crypto attribute");
    let (suite, bob_key) = answer.usable().expect("a usable key");

    // 3 s of G.711 out and back through baresip's decoder and encoder (mu-law survives the
    // round trip byte for byte). baresip's bridge plays silence when it has nothing to echo:
    // besides that, every frame heard is one sent, and every one sent is heard (matched by
    // content: the test tone repeats frames).
    phone.open_streams();
    // baresip sends from its answer on; the client hears what comes in once it plays.
    let before_play = metric(&http, RECEIVED);
    let frames = EchoMedia::Pcmu.frames(150);
    phone.stream_audio(&frames, Duration::from_millis(600));
    let sent: Vec<Bytes> = frames.iter().map(|f| f.1.clone()).collect();
    let got = phone.remote_audio();
    let EchoTally {
        missing,
        strays,
        in_order,
    } = tally_echo(&sent, &got);
    let (out, back) = (metric(&http, SENT), metric(&http, RECEIVED));
    eprintln!(
        "TLS + SRTP echo through Kamailio and baresip: {} sent, {} heard, {missing} missing, \
         {in_order} in order, {strays} neither sent nor silence; SRTP packets {out} sent, \
         {back} received",
        sent.len(),
        got.len()
    );
    assert_eq!(strays, 0, "nothing but our audio and baresip's silence");
    // As in gateway_srtp: baresip's echo may lose a frame under load (its own buffering,
    // not the gateway's: the gateway's side is counted exactly below).
    assert!(
        missing * 50 <= sent.len(),
        "{missing} of {} frames never came back",
        sent.len()
    );
    assert!(out >= 150.0, "every frame went out as a packet: {out}");
    assert!(
        back >= got.len() as f64,
        "every frame heard came in: {back}"
    );
    assert_eq!(
        metric(&http, AUTH),
        0.0,
        "every genuine packet authenticated"
    );

    // Datagrams to the call's RTP port from the far end's IP address (another port: baresip
    // holds its own): each is dropped under srtp_auth and its payload never heard.
    let gateway_rtp = (LOOPBACK, baresip.offered_audio_port());
    let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let mut bad_tag = forged_rtp(0x5ec2_e700, 0x1234, 0);
    bad_tag.extend_from_slice(&[0x55; 10]);
    let wrong_key = MasterKey {
        key: [0x17; 16],
        salt: [0x29; 14],
    };
    let mut tampered = protected(suite, bob_key, 0x5ec2_e701, 0x2000);
    tampered[20] ^= 0x01;
    let forged = [
        ("a bad tag", bad_tag),
        (
            "a wrong key",
            protected(suite, &wrong_key, 0x5ec2_e702, 0x3000),
        ),
        ("baresip's key, one byte flipped", tampered),
    ];
    for (n, (what, packet)) in forged.iter().enumerate() {
        socket.send_to(packet, gateway_rtp).unwrap();
        let counted = wait::until(T, || metric(&http, AUTH) == (n + 1) as f64);
        assert!(counted, "{what}: counted under srtp_auth");
    }
    phone.stream_audio(&[], Duration::from_millis(300));
    assert!(
        !heard_forged(&phone),
        "no forged payload reaches the client"
    );

    // The control: under baresip's key and untouched, the packet authenticates (whatever
    // the gateway then makes of its source and SSRC, it is not an srtp_auth drop).
    // The call latched onto baresip's address at its first packet, so a packet from anywhere
    // else that authenticates is then dropped for its source.
    assert_eq!(metric(&http, UNKNOWN_SOURCE), 0.0);
    let genuine = protected(suite, bob_key, 0x5ec2_e703, 0x4000);
    socket.send_to(&genuine, gateway_rtp).unwrap();
    let accounted = wait::until(T, || metric(&http, UNKNOWN_SOURCE) == 1.0);
    assert!(
        accounted,
        "the genuine packet authenticated and was dropped for its source"
    );
    assert_eq!(metric(&http, AUTH), 3.0, "the genuine packet authenticated");
    phone.stream_audio(&[], Duration::from_millis(100));
    assert!(!heard_forged(&phone), "nor does this one reach the client");

    // Hung up, the counts are final: every packet the gateway sent was a frame the client
    // published, and every packet it took from baresip reached the client as a frame.
    phone.call("bye", vec![]);
    let ended = wait::until(T, || baresip.log().contains("\nBYE sip:"));
    assert!(ended, "the hang-up reached baresip:\n{}", baresip.log());
    assert_eq!(metric(&http, SENT), 150.0, "one packet per frame published");
    let received = metric(&http, RECEIVED);
    let heard = |phone: &Phone| phone.remote_audio().len() as f64;
    let all_heard = wait::until(T, || {
        phone.pump();
        heard(&phone) >= received - before_play
    });
    eprintln!(
        "hung up: {received} packets received ({before_play} before the client played), {} \
         frames heard",
        heard(&phone)
    );
    assert!(
        all_heard && heard(&phone) <= received,
        "{} frames heard of {received} packets received, {before_play} before the client played",
        heard(&phone)
    );
    // Seconds after the plain gateway's refusal, still one INVITE only (the TLS call's): none
    // of the plain gateway's was merely slow.
    assert_eq!(
        baresip.log().matches("\nINVITE sip:").count(),
        1,
        "baresip was invited once"
    );
    drop(server);
    assert!(kamailio.running(), "Kamailio is still up");
}
