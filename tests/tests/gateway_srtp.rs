//! SRTP interop against a real SRTP-capable user agent: a phone (the project's RTMP client)
//! calls baresip through the gateway with `srtp = "require"` (over plain SIP, allowed with
//! `srtp_over_plain_sip`, since SIP over TLS is not there yet). baresip requires SDES SRTP
//! itself (`mediaenc=srtp-mand`) and echoes the audio it decodes, so every frame that comes
//! back went gateway -> baresip and baresip -> gateway as SRTP, each side decrypting the
//! other's. A datagram with a bad authentication tag sent to the gateway's RTP port is
//! dropped, counted under `srtp_auth`, and never reaches the client. The other way, baresip
//! calls the client with SRTP required and the audio it plays reaches the client.

use std::net::UdpSocket;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::gateway::srtp_policy::SrtpMode;
use siprtmp_core::node::{HttpConfig, NodeConfig};
use siprtmp_core::sip::Transport;
use siprtmp_tests::baresip::{tally_echo, Baresip, EchoTally};
use siprtmp_tests::gateway::{gateway_node, gateway_sip, s, EchoMedia, Phone};
use siprtmp_tests::ports::LOOPBACK;
use siprtmp_tests::scrape::metric;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::{scratch_dir, wait};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";
const AUTH: &str = "siprtmp_gateway_rtp_dropped_total{reason=\"srtp_auth\"}";
const RECEIVED: &str = "siprtmp_gateway_rtp_packets_total{direction=\"received\",media=\"audio\"}";

fn srtp_node() -> NodeConfig {
    let mut node = gateway_node(Transport::Udp);
    let gateway = node.server.gateway.as_mut().unwrap();
    gateway.session.srtp = SrtpMode::Require;
    gateway.session.srtp_over_plain_sip = true;
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    node
}

#[test]
fn a_required_srtp_call_to_baresip_echoes_and_forged_packets_are_dropped_and_counted() {
    let dir = scratch_dir("gw-srtp-baresip");
    let baresip = Baresip::srtp_echo(&dir);
    let mut server = TestServer::start_on(Runtime::Mio, srtp_node(), None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&baresip.uri()), s("pcmu")]);
    let accepted = phone.callback("accepted", T);
    assert!(accepted.is_some(), "baresip answered:\n{}", baresip.log());
    // Both SDPs named RTP/SAVP with a crypto line: baresip's trace has our INVITE and its 200.
    let log = baresip.log();
    assert!(
        log.matches("m=audio").count() >= 2 && log.matches("RTP/SAVP").count() >= 2,
        "SRTP offered and answered:\n{log}"
    );
    assert!(
        log.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{log}"
    );

    // 3 s of G.711 out and back through baresip's decoder and encoder (mu-law survives the
    // round trip byte for byte).
    phone.open_streams();
    let frames = EchoMedia::Pcmu.frames(150);
    phone.stream_audio(&frames, Duration::from_millis(600));
    let sent: Vec<Bytes> = frames.iter().map(|f| f.1.clone()).collect();
    let got = phone.remote_audio();
    // Besides baresip's silence, every frame heard is one sent, and every one sent is heard.
    let EchoTally {
        missing,
        strays,
        in_order,
    } = tally_echo(&sent, &got);
    eprintln!(
        "echo through baresip: {} sent, {} heard, {missing} missing, {in_order} in order, \
         {strays} neither sent nor silence",
        sent.len(),
        got.len()
    );
    assert_eq!(
        strays, 0,
        "nothing but our audio and baresip's silence is heard"
    );
    assert!(
        missing * 50 <= sent.len(),
        "{missing} of {} frames never came back",
        sent.len()
    );
    assert_eq!(
        metric(&http, AUTH),
        0.0,
        "every genuine SRTP packet authenticated"
    );
    let received = metric(&http, RECEIVED);
    assert!(received >= 135.0, "{received} packets received");

    // A forged SRTP packet (plausible header, bad tag) to the gateway's audio RTP port, from
    // the far end's IP address (another port: baresip holds its own).
    let gateway_rtp = (LOOPBACK, baresip.offered_audio_port());
    let mut forged = vec![
        0x80, 0x00, 0x12, 0x34, 0, 0, 0x40, 0, 0x5e, 0xc2, 0xe7, 0x00,
    ];
    forged.extend_from_slice(&[0xaa; 160]);
    forged.extend_from_slice(&[0x55; 10]);
    let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    socket.send_to(&forged, gateway_rtp).unwrap();
    assert!(
        wait::until(T, || metric(&http, AUTH) == 1.0),
        "the forged packet is counted under srtp_auth"
    );
    phone.stream_audio(&[], Duration::from_millis(300));
    let poisoned = phone
        .remote_audio()
        .iter()
        .any(|p| p.len() == 161 && p[1..].iter().all(|&b| b == 0xaa));
    assert!(!poisoned, "the forged payload never reaches the client");

    phone.call("bye", vec![]);
    drop(server);
}

/// The test media's G.711 as an 8 kHz WAV file in `dir` (what baresip's `aufile` plays).
fn pcmu_wav(dir: &std::path::Path) -> std::path::PathBuf {
    let wav = dir.join("pcmu.wav");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "mulaw",
            "-ar",
            "8000",
        ])
        .args(["-ac", "1", "-i"])
        .arg(siprtmp_tests::media("pcmu_8k_20s.ul"))
        .args(["-t", "10"])
        .arg(&wav)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg made the WAV file");
    wav
}

#[test]
fn baresip_calling_with_required_srtp_is_answered_with_srtp_and_its_audio_reaches_the_client() {
    let dir = scratch_dir("gw-srtp-baresip-in");
    let wav = pcmu_wav(&dir);
    let mut server = TestServer::start_on(Runtime::Mio, srtp_node(), None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let sip = gateway_sip(&mut server, AOR);
    let baresip = Baresip::srtp_caller(&dir, &format!("sip:alice@{sip}"), &wav);
    let invited = phone.callback("invited", T);
    assert!(
        invited.is_some(),
        "baresip's INVITE reached the client:\n{}",
        baresip.log()
    );
    phone.call("accept", vec![s("pcmu")]);
    assert!(phone.callback("accepted", T).is_some());
    phone.open_streams();
    // baresip plays the test media: mu-law decoded and encoded again is the same bytes, so
    // what the client hears are frames of the file.
    let file: Vec<Bytes> = EchoMedia::Pcmu
        .frames(500)
        .into_iter()
        .map(|f| f.1)
        .collect();
    let heard = |phone: &Phone| {
        phone
            .remote_audio()
            .iter()
            .filter(|p| file.contains(p))
            .count()
    };
    let enough = wait::until(T, || {
        phone.pump();
        heard(&phone) >= 100
    });
    let got = phone.remote_audio();
    assert!(
        enough,
        "{} of {} frames heard are the file's:\n{}",
        heard(&phone),
        got.len(),
        baresip.log()
    );
    eprintln!(
        "from baresip: {} frames heard, {} of them the file's",
        got.len(),
        heard(&phone)
    );
    let log = baresip.log();
    assert!(log.contains("SRTP is Enabled"), "{log}");
    assert!(
        log.matches("RTP/SAVP").count() >= 2 && log.contains("a=crypto:"),
        "baresip offered and we answered RTP/SAVP with crypto:\n{log}"
    );
    assert_eq!(
        metric(&http, AUTH),
        0.0,
        "every packet of baresip authenticated"
    );
    phone.call("bye", vec![]);
    drop(server);
}
