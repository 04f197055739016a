//! The SIP-RTMP gateway end to end with real peers: the node on the mio driver (real UDP
//! sockets through the driver's `UdpExecutor`), the project's own RTMP client as the Flash
//! VideoPhone ([`Phone`]), and sipp (Debian `sip-tester`) as the SIP far end, all on loopback.
//!
//! Every wait has a deadline; sipp runs with a global timeout that fails it and is killed on
//! drop, and its statistics file gives the successful and failed call counts. Every port (sipp's
//! SIP and media ports, the gateway's RTP range) is a free one from the OS, so the tests run in
//! parallel, with the other suites and with other checkouts. The scenarios that the SIP over
//! TCP suite (`gateway_tcp_interop.rs`) runs too are in `siprtmp_tests::gateway_scenarios`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::node::NodeConfig;
use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{
    accept_pcmu, assert_phones_hear_each_other, echo_matches, flv_video, g711_frames, gateway_node,
    gateway_node_with_ports, gateway_sip, s, EchoMedia, Phone,
};
use siprtmp_tests::gateway_scenarios::{
    a_registration_decides_the_connect, echo_call, echo_call_on, sipp_calls_a_client_that_accepts,
};
use siprtmp_tests::ports::{free_udp_range, LOOPBACK};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};
use siprtmp_tests::{media, scratch_dir, wait};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";

/// Waits until the driver has closed every UDP socket it opened; returns how long that took.
fn assert_no_udp_socket_left(server: &TestServer, within: Duration) -> Duration {
    let start = Instant::now();
    wait::until(within, || server.udp.open() == 0);
    assert_eq!(
        server.udp.open(),
        0,
        "UDP sockets still open {within:?} after the last call: {:?}",
        server.udp
    );
    start.elapsed()
}

/// A gateway node for the load tests, with SIP timers for loopback: T1 = 50 ms (the RTT is
/// microseconds) and T4 = 500 ms, so a departed client's last transactions (64·T1 for an
/// answered INVITE, T4 for a BYE) end, and its SIP socket closes, within seconds rather than
/// the half minute that real networks need. Its RTP range is `rtp_ports` free ports.
fn loopback_gateway_node(rtp_ports: u16) -> NodeConfig {
    let mut node = gateway_node_with_ports(Transport::Udp, free_udp_range(LOOPBACK, rtp_ports));
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.timers.t1 = Duration::from_millis(50);
        g.session.timers.t4 = Duration::from_millis(500);
    }
    node
}

#[test]
fn a_call_to_sipp_echoes_speex_wideband_byte_for_byte() {
    // 5 s of Speex 16 kHz (250 frames).
    echo_call(Runtime::Mio, "gw-echo-wideband", EchoMedia::Wideband, 250);
}

#[test]
fn a_call_to_sipp_echoes_speex_narrowband_byte_for_byte() {
    echo_call(
        Runtime::Mio,
        "gw-echo-narrowband",
        EchoMedia::Narrowband,
        150,
    );
}

/// Merged writes hold the echo for the client up to the window: every frame must still come
/// back, the last ones included. (That the client's own frames, which make epoll report its
/// socket writable, do not defeat the hold is runtime-common's host test.)
#[test]
fn with_merged_writes_every_echoed_frame_still_reaches_the_client() {
    for runtime in [Runtime::Mio, Runtime::Tokio, Runtime::IoUring] {
        let mut node = gateway_node(Transport::Udp);
        node.server.gateway_merge_writes = Some(Duration::from_millis(100));
        let name = format!("gw-echo-merged-{runtime:?}");
        echo_call_on(node, runtime, &name, EchoMedia::Wideband, 150);
    }
}

#[test]
fn a_call_to_sipp_echoes_g711_with_its_flv_header() {
    echo_call(Runtime::Mio, "gw-echo-pcmu", EchoMedia::Pcmu, 150);
}

#[test]
fn sipp_calls_the_client_which_accepts_hears_its_echo_and_is_byed() {
    sipp_calls_a_client_that_accepts(Transport::Udp, "gw-incoming");
}

#[test]
fn hanging_up_while_ringing_sends_cancel() {
    let dir = scratch_dir("gw-cancel");
    let server = TestServer::start(gateway_node(Transport::Udp), None);
    let sipp = Sipp::uas("uas_ring_cancel.xml").start("sipp uas (ring, cancel)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s("pcmu")]);
    assert!(phone.callback("ringing", T).is_some());
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(
        sipp::totals(&dir),
        (1, 0),
        "sipp saw CANCEL, sent 487, got its ACK"
    );
    assert!(!phone.pending_callbacks().contains(&"accepted".to_string()));
}

#[test]
fn rejecting_an_incoming_call_sends_the_clients_status() {
    let dir = scratch_dir("gw-reject");
    let mut server = TestServer::start(gateway_node(Transport::Udp), None);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let sip = gateway_sip(&mut server, AOR);
    let sipp = Sipp::uac("uac_expect_486.xml", sip)
        .user("alice")
        .start("sipp uac (expects 486)", &dir);
    assert!(phone.callback("invited", T).is_some());
    phone.call("reject", vec![s("486 Busy Here")]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp got 486 Busy Here");
}

#[test]
fn hold_and_resume_send_re_invites_with_the_direction() {
    let dir = scratch_dir("gw-hold");
    let server = TestServer::start(gateway_node(Transport::Udp), None);
    let sipp = Sipp::uas("uas_hold.xml").start("sipp uas (hold)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s("pcmu")]);
    assert!(phone.callback("accepted", T).is_some());
    // Each re-INVITE is answered by sipp at once; the pauses only keep them in order.
    phone.call("hold", vec![siprtmp_core::amf::Value::Boolean(true)]);
    std::thread::sleep(Duration::from_millis(400));
    phone.call("hold", vec![siprtmp_core::amf::Value::Boolean(false)]);
    std::thread::sleep(Duration::from_millis(400));
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(
        sipp::totals(&dir),
        (1, 0),
        "sipp saw a=sendonly, then a=sendrecv, then BYE"
    );
}

/// An RTP packet's payload type, marker and payload (no CSRCs or extensions are expected).
fn rtp(packet: &[u8]) -> Option<(u8, bool, u32, &[u8])> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let ts = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    Some((packet[1] & 0x7f, packet[1] & 0x80 != 0, ts, &packet[12..]))
}

#[test]
fn dtmf_goes_out_as_rfc4733_and_comes_back_as_a_callback() {
    dtmf_both_ways("pcmu", (0, "PCMU/8000"), 101, 8000);
}

/// A Speex wideband call whose far end answers the telephone-event at Speex's clock
/// (`telephone-event/16000`, RFC 4733 section 7.1.1): digits go out in 16 kHz units.
#[test]
fn dtmf_runs_at_16_khz_beside_speex_wideband() {
    dtmf_both_ways("wideband", (96, "speex/16000"), 100, 16000);
}

/// An Opus call whose far end answers `telephone-event/48000`, as most Opus peers do.
#[test]
fn dtmf_runs_at_48_khz_beside_opus() {
    dtmf_both_ways("opus", (111, "opus/48000/2"), 110, 48000);
}

/// A client offering `token` and `dtmf` calls sipp, which answers the codec `audio` (payload
/// type, rtpmap) and the telephone-event at `te_rate` as payload type `te_pt` (the one the
/// gateway offers at that rate), with the media address of a socket of this test: `sendDTMF`
/// goes out as RFC 4733 events with that payload type and durations in that clock's units,
/// and events sent back come to the client as a `dtmf` callback.
fn dtmf_both_ways(token: &str, audio: (u8, &str), te_pt: u8, te_rate: u32) {
    let dir = scratch_dir(&format!("gw-dtmf-{token}"));
    let server = TestServer::start(gateway_node(Transport::Udp), None);
    // The far end's RTP is this socket: sipp only signals.
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let far_port = far.local_addr().unwrap().port();
    let sipp = Sipp::uas("uas_dtmf.xml")
        .key("rtp_port", far_port)
        .key("audio_pt", audio.0)
        .key("audio_rtpmap", audio.1)
        .key("te_pt", te_pt)
        .key("te_rate", te_rate)
        .start("sipp uas (dtmf)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s(token), s("dtmf")]);
    let accepted = phone.callback("accepted", T).expect("accepted");
    assert_eq!(accepted.first(), Some(&s(token)));
    phone.call("sendDTMF", vec![s("5")]);
    // Collect the telephone-event packets until the end packets have come.
    let mut events = Vec::new();
    let mut gateway_rtp = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, from)) = far.recv_from(&mut buf) else {
            if events.iter().any(|(_, _, end, _, _)| *end) {
                break;
            }
            continue;
        };
        if let Some((pt, marker, ts, payload)) = rtp(&buf[..n]) {
            assert_eq!(
                pt, te_pt,
                "only telephone-events are sent, with the answered type"
            );
            gateway_rtp = Some(from);
            assert!(payload.len() >= 4, "a telephone-event payload is 4 bytes");
            let duration = u16::from_be_bytes([payload[2], payload[3]]);
            events.push((payload[0], marker, payload[1] & 0x80 != 0, ts, duration));
        }
    }
    eprintln!("telephone-event packets: {events:?}");
    assert!(!events.is_empty(), "no RFC 4733 packet arrived");
    assert!(events.iter().all(|e| e.0 == 5), "every packet is event 5");
    assert!(events[0].1, "the first packet has the marker bit");
    assert!(
        events.iter().all(|e| e.3 == events[0].3),
        "one event, one timestamp"
    );
    // 160 ms counted in the telephone-event's clock, the first update after 50 ms.
    let ends: Vec<u16> = events.iter().filter(|e| e.2).map(|e| e.4).collect();
    assert!(!ends.is_empty(), "an end packet was sent");
    assert!(
        ends.iter().all(|&d| u32::from(d) == 160 * te_rate / 1000),
        "end durations {ends:?} at {te_rate} Hz"
    );
    assert_eq!(u32::from(events[0].4), 50 * te_rate / 1000);

    // The far end sends digit 7 back (80 ms in its units): the client hears dtmf("7").
    let to = gateway_rtp.unwrap();
    let duration = (80 * te_rate / 1000) as u16;
    for (seq, end) in [(100u16, false), (101, true), (102, true), (103, true)] {
        let mut packet = vec![0x80, te_pt | if seq == 100 { 0x80 } else { 0 }];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(2 * te_rate).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&[7, if end { 0x8a } else { 0x0a }]);
        packet.extend_from_slice(&duration.to_be_bytes());
        far.send_to(&packet, to).unwrap();
    }
    let dtmf = phone.callback("dtmf", T).expect("dtmf callback");
    assert_eq!(dtmf, vec![s("7")]);
    assert!(
        phone.callback("dtmf", Duration::from_millis(300)).is_none(),
        "one digit, reported once"
    );
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0));
}

#[test]
fn registration_with_digest_decides_the_connect() {
    a_registration_decides_the_connect(Transport::Udp, "gw-register");
}

/// One short call through the echoing sipp: invite, accepted, three G.711 frames out and at
/// least one back, bye. Returns an error instead of panicking (for the load tests' counts).
fn short_call(server: SocketAddr, aor: &str, sipp: &str, frames: usize) -> Result<usize, String> {
    short_call_marked(server, aor, sipp, frames, None)
}

/// [`short_call`], with every frame's last byte set to `mark` when given, so that a frame
/// echoed to the wrong call counts as stray. `sipp` is the far end's URI.
fn short_call_marked(
    server: SocketAddr,
    aor: &str,
    sipp: &str,
    frames: usize,
    mark: Option<u8>,
) -> Result<usize, String> {
    let mut phone = Phone::connect(server, aor, vec![])?;
    let invite = vec![s(sipp), s("pcmu")];
    phone.call("invite", invite);
    phone.callback("accepted", T).ok_or("no accepted")?;
    phone.open_streams();
    let mut sent = g711_frames(&media("pcmu_8k_20s.ul"), 0x82, frames);
    if let Some(mark) = mark {
        for (_, frame) in &mut sent {
            let mut marked = frame.to_vec();
            if let Some(last) = marked.last_mut() {
                *last = mark;
            }
            *frame = Bytes::from(marked);
        }
    }
    phone.stream_audio(&sent, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(3);
    while phone.remote_audio().len() < frames && Instant::now() < deadline {
        phone.pump();
    }
    let sent: Vec<Bytes> = sent.into_iter().map(|f| f.1).collect();
    let (matched, stray) = echo_matches(&sent, &phone.remote_audio(), 0);
    if stray > 0 {
        return Err(format!("{stray} echoed frames match nothing sent"));
    }
    phone.call("bye", vec![]);
    // The client leaves right after its bye, as a browser tab closing would.
    Ok(matched)
}

#[test]
fn a_hundred_sequential_calls_leave_no_socket_behind() {
    let dir = scratch_dir("gw-sequential");
    let server = TestServer::start(loopback_gateway_node(400), None);
    let sipp = Sipp::echo_uas(100).start("sipp uas (100 calls)", &dir);
    let target = sipp.uri("service");
    let start = Instant::now();
    let mut echoed = 0;
    for i in 0..100 {
        match short_call(server.addr, AOR, &target, 3) {
            Ok(matched) => echoed += matched,
            Err(e) => panic!("call {i} failed: {e}"),
        }
    }
    let calls = start.elapsed();
    let drained = assert_no_udp_socket_left(&server, Duration::from_secs(15));
    sipp.finish(Duration::from_secs(30));
    let totals = sipp::totals(&dir);
    eprintln!(
        "100 sequential calls in {calls:?}, {echoed} of 300 frames echoed; sipp {totals:?}; all sockets closed {drained:?} after the last call; udp {:?}",
        server.udp
    );
    assert_eq!(totals, (100, 0));
    assert!(echoed >= 297, "echoed {echoed} of 300");
    // Five sockets per client; a port another program holds costs a retry with the next block.
    let bound = server.udp.bound.load(std::sync::atomic::Ordering::Relaxed);
    assert!(bound >= 500, "bound {bound}");
}

#[test]
fn fifty_concurrent_calls_leave_no_socket_behind() {
    let dir = scratch_dir("gw-concurrent");
    let server = TestServer::start(loopback_gateway_node(400), None);
    let sipp = Sipp::echo_uas(50).start("sipp uas (50 concurrent)", &dir);
    let start = Instant::now();
    // One second of G.711 each, all at once.
    let (echoed, failures) = concurrent_calls(server.addr, &sipp.uri("service"), 50, false);
    let calls = start.elapsed();
    let drained = assert_no_udp_socket_left(&server, Duration::from_secs(15));
    sipp.finish(Duration::from_secs(30));
    let totals = sipp::totals(&dir);
    eprintln!(
        "50 concurrent calls in {calls:?}, {echoed} of 2500 frames echoed; sipp {totals:?}; all sockets closed {drained:?} after the last call; udp {:?}",
        server.udp
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(totals, (50, 0));
    assert!(echoed * 100 >= 2500 * 99, "echoed {echoed} of 2500");
}

/// `calls` short calls of 50 frames at once, each from its own client (`userI@...`) and
/// thread, to the echoing sipp at URI `sipp`, each call's frames marked with its index when
/// `marked`: the frames echoed in all, and what failed.
fn concurrent_calls(
    server: SocketAddr,
    sipp: &str,
    calls: u8,
    marked: bool,
) -> (usize, Vec<String>) {
    let barrier = Arc::new(Barrier::new(usize::from(calls)));
    let threads: Vec<_> = (0..calls)
        .map(|i| {
            let barrier = barrier.clone();
            let sipp = sipp.to_owned();
            std::thread::spawn(move || {
                barrier.wait();
                let aor = format!("user{i}@127.0.0.1");
                short_call_marked(server, &aor, &sipp, 50, marked.then_some(i))
            })
        })
        .collect();
    let mut echoed = 0;
    let mut failures = Vec::new();
    for (i, call) in threads.into_iter().enumerate() {
        match call.join().expect("call thread") {
            Ok(matched) => echoed += matched,
            Err(e) => failures.push(format!("call {i}: {e}")),
        }
    }
    (echoed, failures)
}

/// Ten concurrent calls through `server` to an echoing sipp (files in `dir`), each frame marked
/// with its call: every call must succeed, sipp must count ten calls and no failure, and 99 %
/// of the 500 frames must come back to their own call (`what` names the case in failures).
fn ten_calls_each_hear_their_own_echo(server: &TestServer, dir: &std::path::Path, what: &str) {
    let name = format!("sipp uas (10 concurrent, {what})");
    let sipp = Sipp::echo_uas(10).start(&name, dir);
    let (echoed, failures) = concurrent_calls(server.addr, &sipp.uri("service"), 10, true);
    sipp.finish(Duration::from_secs(30));
    assert!(failures.is_empty(), "{what}: {failures:?}");
    assert_eq!(sipp::totals(dir), (10, 0), "{what}");
    assert!(echoed * 100 >= 500 * 99, "{what}: echoed {echoed} of 500");
}

/// [`loopback_gateway_node`] with every call's media on four free ports.
fn shared_ports_node() -> NodeConfig {
    let mut node = loopback_gateway_node(4);
    if let Some(g) = node.server.gateway.as_mut() {
        g.shared_rtp_ports = true;
    }
    node
}

/// With `--shared-rtp-ports`, concurrent calls to one sipp (which echoes every call from its
/// one media port, so only the SSRC tells them apart) each hear their own frames and no
/// other call's, under every runtime; the four shared sockets outlive the clients.
#[test]
fn with_shared_rtp_ports_concurrent_calls_each_hear_only_their_own_echo() {
    for runtime in Runtime::ALL {
        let dir = scratch_dir(&format!("gw-shared-{runtime:?}"));
        let server = TestServer::start_on(runtime, shared_ports_node(), None);
        ten_calls_each_hear_their_own_echo(&server, &dir, &format!("{runtime:?}"));
        // Clients gone: their SIP sockets close, the shared media sockets stay.
        wait::until(Duration::from_secs(15), || server.udp.open() <= 4);
        assert_eq!(server.udp.open(), 4, "{runtime:?}: {:?}", server.udp);
        assert_eq!(
            server.udp.bound.load(Ordering::Relaxed),
            14,
            "{runtime:?}: ten SIP sockets and four shared media sockets, not forty"
        );
    }
}

/// With a socket per call (the default) under the io-uring driver, which sends the datagrams
/// of every call and writes every client in shared batches: concurrent calls each hear every
/// frame of their own echo and none of another call's, no send fails, and every socket is
/// closed once the clients have left.
#[test]
fn under_io_uring_concurrent_calls_on_their_own_sockets_each_hear_their_own_echo() {
    let dir = scratch_dir("gw-io-uring-per-call");
    let server = TestServer::start_on(Runtime::IoUring, loopback_gateway_node(40), None);
    ten_calls_each_hear_their_own_echo(&server, &dir, "io-uring, per-call sockets");
    wait::until(Duration::from_secs(15), || server.udp.open() == 0);
    assert_eq!(server.udp.open(), 0, "{:?}", server.udp);
    assert_eq!(
        server.udp.send_errors.load(Ordering::Relaxed),
        0,
        "{:?}",
        server.udp
    );
}

/// With wake-up moderation (`--poll-interval 20`), merged writes and shared ports, the
/// configuration that costs the least CPU per call: concurrent calls each still hear every
/// frame of their own echo and none of another call's (what arrives between two polls waits
/// in the kernel's buffers, and one wake-up takes it all). The calls' frames of one wake-up
/// leave through the shared port as UDP GSO messages (Linux), which sipp receives as the
/// separate datagrams they were.
fn with_a_poll_interval_calls_hear_all_of_their_own_echo(runtime: Runtime) {
    let dir = scratch_dir(&format!("gw-poll-interval-{}", runtime.name()));
    let mut node = shared_ports_node();
    node.server.gateway_merge_writes = Some(Duration::from_millis(100));
    let server = TestServer::start_configured(runtime, node, None, |config| {
        config.poll_interval = Some(Duration::from_millis(20));
    });
    ten_calls_each_hear_their_own_echo(
        &server,
        &dir,
        &format!("poll interval, {}", runtime.name()),
    );
    if cfg!(target_os = "linux") {
        let segmented = server.udp.segmented.load(Ordering::Relaxed);
        assert!(
            segmented > 0,
            "no datagram left in a GSO message: {:?}",
            server.udp
        );
    }
}

#[test]
fn with_a_poll_interval_concurrent_calls_each_hear_all_of_their_own_echo() {
    with_a_poll_interval_calls_hear_all_of_their_own_echo(Runtime::Mio);
}

/// The same under io-uring, whose batches of reads, writes and GSO messages then carry every
/// connection that a 20 ms wait made ready.
#[test]
fn under_io_uring_with_a_poll_interval_concurrent_calls_each_hear_all_of_their_own_echo() {
    with_a_poll_interval_calls_hear_all_of_their_own_echo(Runtime::IoUring);
}

/// The drivers without wake-up moderation refuse a poll interval rather than ignore it; mio
/// and io-uring take it.
#[test]
fn only_the_moderating_drivers_take_a_poll_interval() {
    use siprtmp_runtime_common::Driver;
    let config = siprtmp_runtime_common::DriverConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        poll_interval: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let node = siprtmp_core::node::NodeConfig::default;
    let unsupported =
        |r: std::io::Result<()>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::Unsupported);
    assert!(unsupported(
        siprtmp_runtime_tokio::TokioDriver::bind(config.clone(), node()).map(drop)
    ));
    assert!(unsupported(
        siprtmp_runtime_std_threads::ThreadsDriver::bind(config.clone(), node()).map(drop)
    ));
    assert!(unsupported(
        siprtmp_runtime_async_std::AsyncStdDriver::bind(config.clone(), node()).map(drop)
    ));
    assert!(Runtime::IoUring.bind(config.clone(), node()).is_ok());
    assert!(siprtmp_runtime_mio::MioDriver::bind(config, node()).is_ok());
}

/// With `--shared-rtp-ports`, two clients of the gateway call each other (no SIP server:
/// alice invites carol's SIP socket): both calls' RTP goes to the shared port itself, over
/// real sockets, and each client hears the other's frames, not its own.
#[test]
fn with_shared_rtp_ports_two_clients_of_the_gateway_hear_each_other() {
    let mut server = TestServer::start(shared_ports_node(), None);
    let mut alice = Phone::connect(server.addr, "alice@127.0.0.1", vec![]).expect("alice");
    let mut carol = Phone::connect(server.addr, "carol@127.0.0.1", vec![]).expect("carol");
    let carol_sip = gateway_sip(&mut server, "carol@127.0.0.1");
    alice.call(
        "invite",
        vec![s(&format!("sip:carol@{carol_sip}")), s("pcmu")],
    );
    carol.callback("invited", T).expect("carol is invited");
    accept_pcmu(&mut alice, &mut carol);
    assert_phones_hear_each_other(&mut alice, &mut carol);
    assert_eq!(
        server.udp.open(),
        6,
        "two SIP sockets and the four shared ones"
    );
}

/// An RTP packet as the H.264 far end sees it (no CSRCs or extensions are expected).
#[derive(Debug)]
struct RtpPacket {
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

impl RtpPacket {
    fn parse(packet: &[u8]) -> RtpPacket {
        assert!(packet.len() > 12, "an RTP packet with a payload");
        assert_eq!(
            packet[0], 0x80,
            "RTP version 2, no padding, extension or CSRC"
        );
        RtpPacket {
            payload_type: packet[1] & 0x7f,
            marker: packet[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes(packet[4..8].try_into().unwrap()),
            ssrc: u32::from_be_bytes(packet[8..12].try_into().unwrap()),
            payload: packet[12..].to_vec(),
        }
    }
}

/// The SPS and PPS of an FLV AVC sequence header (the tag body: 5-byte video header, then an
/// AVCDecoderConfigurationRecord), and its NAL length size.
fn avc_parameter_sets(tag: &[u8]) -> (Vec<Vec<u8>>, usize) {
    assert_eq!(tag[..2], [0x17, 0], "an AVC sequence header");
    let config = &tag[5..];
    let length_size = usize::from(config[4] & 3) + 1;
    let mut sets = Vec::new();
    let mut at = 5;
    // SPS count in the low 5 bits, then the PPS count as a whole byte.
    for mask in [0x1f, 0xff] {
        let count = config[at] & mask;
        at += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([config[at], config[at + 1]]));
            sets.push(config[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
    }
    (sets, length_size)
}

/// The NAL units of an FLV AVC NALU tag body, split on their `length_size`-byte prefixes.
fn avcc_nal_units(tag: &[u8], length_size: usize) -> Vec<Vec<u8>> {
    assert_eq!(tag[1], 1, "an AVC NALU tag");
    let data = &tag[5..];
    let mut nals = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = data[at..at + length_size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        at += length_size;
        nals.push(data[at..at + len].to_vec());
        at += len;
    }
    nals
}

/// The NAL units of one frame's RTP packets (RFC 6184 packetization mode 1: single NAL unit,
/// STAP-A and FU-A packets), checking the F bit, the STAP-A sizes and the FU-A start, end and
/// reserved bits along the way.
fn depacketize(frame: &[RtpPacket]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fragmented: Option<Vec<u8>> = None;
    for packet in frame {
        let b = &packet.payload;
        assert_eq!(b[0] & 0x80, 0, "forbidden_zero_bit set: {:02x}", b[0]);
        let kind = b[0] & 0x1f;
        if kind != 28 {
            assert!(
                fragmented.is_none(),
                "an FU-A interrupted before its end bit"
            );
        }
        match kind {
            1..=23 => nals.push(b.clone()),
            24 => {
                let mut at = 1;
                while at < b.len() {
                    assert!(at + 2 <= b.len(), "STAP-A size runs past the packet");
                    let len = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
                    at += 2;
                    assert!(len > 0 && at + len <= b.len(), "STAP-A NAL size {len}");
                    nals.push(b[at..at + len].to_vec());
                    at += len;
                }
            }
            28 => {
                assert!(b.len() > 2, "an FU-A carries data");
                let (start, end) = (b[1] & 0x80 != 0, b[1] & 0x40 != 0);
                assert!(!(start && end), "an FU-A with both start and end bits");
                assert_eq!(b[1] & 0x20, 0, "FU header reserved bit");
                // The NAL header: F and NRI from the FU indicator, the type from the FU header.
                let header = (b[0] & 0xe0) | (b[1] & 0x1f);
                match &fragmented {
                    None => {
                        assert!(start, "an FU-A fragment without a start");
                        fragmented = Some(vec![header]);
                    }
                    Some(nal) => {
                        assert!(!start, "a start bit inside an FU-A");
                        assert_eq!(nal[0], header, "the NAL header changes inside an FU-A");
                    }
                }
                let nal = fragmented.as_mut().unwrap();
                nal.extend_from_slice(&b[2..]);
                if end {
                    nals.push(fragmented.take().unwrap());
                }
            }
            other => panic!("packet type {other} is not allowed in packetization mode 1"),
        }
    }
    assert!(fragmented.is_none(), "the frame ends inside an FU-A");
    nals
}

#[test]
fn an_h264_call_reaches_the_rtp_side_as_valid_nal_units() {
    let dir = scratch_dir("gw-h264");
    // The far end's video RTP is this socket: sipp only signals (and takes the audio).
    let far = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    far.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let video_port = far.local_addr().unwrap().port();
    let server = TestServer::start(gateway_node(Transport::Udp), None);
    let sipp = Sipp::uas("uas_h264.xml")
        .key("video_port", video_port)
        .start("sipp uas (h264)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&sipp.uri("service")), s("pcmu"), s("h264")],
    );
    let accepted = phone.callback("accepted", T).expect("accepted");
    assert_eq!(accepted, vec![s("pcmu"), s("h264")]);
    phone.open_streams();

    // A reader thread keeps the socket drained while the phone publishes in real time.
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut packets = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(12);
            while Instant::now() < deadline {
                match far.recv_from(&mut buf) {
                    Ok((n, _)) => packets.push(buf[..n].to_vec()),
                    Err(_) if stop.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            packets
        })
    };
    // The sequence header, then the frames of the first 3 s.
    let tags: Vec<(u32, Bytes)> = flv_video(&media("h264_speex16k_320x240_12fps_20s.flv"))
        .into_iter()
        .take_while(|(ts, _)| *ts <= 3000)
        .collect();
    let started = Instant::now();
    phone.stream_video(&tags, Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let packets: Vec<RtpPacket> = collector
        .join()
        .unwrap()
        .iter()
        .map(|p| RtpPacket::parse(p))
        .collect();

    // What each frame should become: its NAL units, after the SPS and PPS for a keyframe.
    let (parameter_sets, length_size) = avc_parameter_sets(&tags[0].1);
    assert_eq!(parameter_sets.len(), 2, "one SPS and one PPS");
    let expected: Vec<(u32, Vec<Vec<u8>>)> = tags[1..]
        .iter()
        .map(|(ts, tag)| {
            let mut nals = if tag[0] >> 4 == 1 {
                parameter_sets.clone()
            } else {
                Vec::new()
            };
            nals.extend(avcc_nal_units(tag, length_size));
            (*ts, nals)
        })
        .collect();

    // The packets, in order and without loss, grouped into frames by timestamp.
    assert!(!packets.is_empty(), "no RTP arrived on the video port");
    let mut frames: Vec<Vec<RtpPacket>> = Vec::new();
    for (i, packet) in packets.into_iter().enumerate() {
        assert_eq!(packet.payload_type, 99, "packet {i}: payload type");
        if let Some(previous) = frames.last().and_then(|f| f.last()) {
            assert_eq!(
                packet.sequence,
                previous.sequence.wrapping_add(1),
                "packet {i}: sequence numbers are consecutive"
            );
            assert_eq!(packet.ssrc, previous.ssrc, "packet {i}: one SSRC");
        }
        match frames.last_mut() {
            Some(frame) if frame[0].timestamp == packet.timestamp => frame.push(packet),
            _ => frames.push(vec![packet]),
        }
    }
    let kinds: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| f.iter().map(|p| p.payload[0] & 0x1f).collect())
        .collect();
    eprintln!(
        "h264: {} tags sent in {:?}, {} frames received, packet types per frame: {kinds:?}",
        expected.len(),
        started.elapsed(),
        frames.len()
    );
    assert_eq!(
        frames.len(),
        expected.len(),
        "one RTP timestamp per FLV frame"
    );

    // The first packets carry the SPS and PPS, alone or in a STAP-A.
    let first = &frames[0][0].payload;
    assert!(
        matches!(first[0] & 0x1f, 7 | 24),
        "the first packet is an SPS or a STAP-A, not type {}",
        first[0] & 0x1f
    );
    let first_nals = depacketize(&frames[0]);
    assert_eq!(first_nals[0][0] & 0x1f, 7, "SPS first");
    assert_eq!(first_nals[1][0] & 0x1f, 8, "then PPS");

    let (ts0, rtp0) = (expected[0].0, frames[0][0].timestamp);
    for (i, (frame, (ts, nals))) in frames.iter().zip(&expected).enumerate() {
        let markers: Vec<bool> = frame.iter().map(|p| p.marker).collect();
        let mut want = vec![false; frame.len()];
        *want.last_mut().unwrap() = true;
        assert_eq!(
            markers, want,
            "frame {i}: the marker on its last packet only"
        );
        assert_eq!(
            frame[0].timestamp.wrapping_sub(rtp0),
            90 * (ts - ts0),
            "frame {i}: RTP timestamp advances 90 kHz × the FLV delta"
        );
        let got = depacketize(frame);
        assert_eq!(got.len(), nals.len(), "frame {i}: NAL unit count");
        for (j, (g, w)) in got.iter().zip(nals).enumerate() {
            assert!(
                g == w,
                "frame {i} NAL {j}: differs ({} vs {} bytes)",
                g.len(),
                w.len()
            );
        }
    }
    // The media really exercised the fragmentation path.
    assert!(kinds.iter().flatten().any(|&k| k == 28), "no FU-A was sent");

    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0));
}
