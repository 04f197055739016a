//! Strangers' RTP against a gateway call, end to end: attackers on raw UDP sockets
//! ([`RtpSprayer`]) send well-formed RTP with the call's payload type to the gateway's guessable
//! RTP ports, before the call exists (to be latched onto instead of the far end) and in the
//! middle of it (to inject audio). The call is a Speex call from the project's phone to a
//! sipp echo far end; the phone must hear every frame it sent echoed back and nothing else,
//! the attackers must receive nothing, and the gateway must say it dropped their packets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::gateway::codecs::CodecToken;
use siprtmp_core::node::{Event, NodeConfig};
use siprtmp_core::rtp::SourcePolicy;
use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{echo_matches, gateway_node_with_ports, s, EchoMedia, Phone};
use siprtmp_tests::hostile::{RtpSprayer, SPRAY_MARK};
use siprtmp_tests::ports::{free_udp_range, LOOPBACK};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::sipp::{self, Sipp};
use siprtmp_tests::{scratch_dir, wait};

const T: Duration = Duration::from_secs(10);
/// Another loopback address: a host other than the far end's.
const OTHER_HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Where attackers send from, and when they start.
struct Attack {
    before_call: Vec<IpAddr>,
    mid_call: Vec<IpAddr>,
}

/// Runs one echo call of 150 Speex frames (3 s) with `attack` going on, on a gateway node that
/// `configure` adjusts (its RTP range is 40 free ports), and checks what the users
/// would notice.
fn call_under_attack(name: &str, attack: Attack, configure: impl FnOnce(&mut NodeConfig)) {
    let dir = scratch_dir(name);
    let rtp_ports = free_udp_range(LOOPBACK, 40);
    let rtp_base = rtp_ports.0;
    let mut node = gateway_node_with_ports(Transport::Udp, rtp_ports);
    configure(&mut node);
    let mut server = TestServer::start(node, None);
    // The audio RTP port of each of the first four clients (and the shared block's, the
    // first): the ports an attacker would guess.
    let targets: Vec<SocketAddr> = (0..4)
        .map(|k| SocketAddr::new(LOOPBACK, rtp_base + 4 * k))
        .collect();
    let payload_type = CodecToken::Wideband.codec().payload_type;
    let spray = |from: &IpAddr, i: u32| {
        RtpSprayer::start(*from, targets.clone(), payload_type, 0x5EED_0000 + i)
    };
    let mut attackers: Vec<RtpSprayer> = attack
        .before_call
        .iter()
        .enumerate()
        .map(|(i, ip)| spray(ip, i as u32))
        .collect();

    let sipp = Sipp::echo_uas(1).start("sipp uas (echo)", &dir);
    // The attackers before the call have had time to be taken for the far end.
    wait_until(
        || attackers.iter().all(|a| a.sent() >= 20),
        "attackers started",
    );

    let mut phone = Phone::connect(server.addr, "alice@127.0.0.1", vec![]).expect("connect");
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(EchoMedia::Wideband.tokens());
    phone.call("invite", invite);
    phone.callback("accepted", T).expect("accepted callback");
    phone.open_streams();
    let frames = EchoMedia::Wideband.frames(150);
    let base = frames[0].0;
    // One second of the call, then the mid-call attackers join once the echo flows (the
    // call's source is latched by then).
    phone.stream_audio_part(&frames[..50], base, Duration::from_millis(200));
    assert!(
        !phone.remote_audio().is_empty(),
        "{name}: no echo in the call's first second"
    );
    let first_mid = attackers.len();
    for (i, ip) in attack.mid_call.iter().enumerate() {
        attackers.push(spray(ip, 100 + i as u32));
    }
    wait_until(
        || attackers[first_mid..].iter().all(|a| a.sent() >= 20),
        "mid-call attackers started",
    );
    phone.stream_audio_part(&frames[50..], base, Duration::from_millis(600));
    let totals: Vec<_> = attackers.into_iter().map(RtpSprayer::stop).collect();

    let sent: Vec<Bytes> = frames.into_iter().map(|f| f.1).collect();
    let got = phone.remote_audio();
    let (matched, stray) = echo_matches(&sent, &got, EchoMedia::Wideband.compare_from());
    let heard_attacker = got.iter().filter(|g| g.get(1) == Some(&SPRAY_MARK)).count();
    eprintln!(
        "{name}: sent {}, received {}, matched {matched}, stray {stray} ({heard_attacker} \
         from attackers); attackers {totals:?}",
        sent.len(),
        got.len()
    );
    assert_eq!(heard_attacker, 0, "{name}: the phone heard an attacker");
    assert_eq!(stray, 0, "{name}: the phone heard frames it never sent");
    assert!(
        matched * 100 >= sent.len() * 99,
        "{name}: only {matched} of {} frames came back from the far end",
        sent.len()
    );
    for t in &totals {
        assert!(t.sent >= 20, "{name}: an attacker did not get to send");
        assert_eq!(t.received, 0, "{name}: the gateway sent an attacker media");
    }
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "{name}: sipp's one call");
    // A call's own ports tell of the call's drops; shared ports of datagrams no call expects.
    let told = server.events().iter().any(|e| match e {
        Event::Gateway { message, .. } => message.contains("dropped"),
        Event::UnroutedMedia { dropped, .. } => *dropped > 0,
        _ => false,
    });
    assert!(told, "{name}: no notice of the dropped packets");
}

fn wait_until(done: impl FnMut() -> bool, what: &str) {
    assert!(wait::until(T, done), "timed out waiting: {what}");
}

/// Defects 1 and 2 of the hardening issue, with the default source policy: a host other than
/// the far end's sprays the guessable ports before the call and another joins mid-call.
#[test]
fn strangers_neither_take_over_nor_join_a_call() {
    call_under_attack(
        "hostile-rtp-default",
        Attack {
            before_call: vec![OTHER_HOST],
            mid_call: vec![OTHER_HOST],
        },
        |_| {},
    );
}

/// With `--rtp-source strict`, even a stranger on the far end's own host (another port of its
/// IP, which the default may learn at call start) gets nothing.
#[test]
fn with_strict_sources_another_port_of_the_far_ends_host_gets_nothing() {
    call_under_attack(
        "hostile-rtp-strict",
        Attack {
            before_call: vec![LOOPBACK],
            mid_call: vec![LOOPBACK, OTHER_HOST],
        },
        |node| {
            if let Some(g) = node.server.gateway.as_mut() {
                g.session.rtp_source = SourcePolicy::Strict;
            }
        },
    );
}

/// After the far end latched, the default policy is strict too: another port of the far end's
/// host is dropped mid-call.
#[test]
fn once_latched_another_port_of_the_far_ends_host_cannot_inject() {
    call_under_attack(
        "hostile-rtp-latched",
        Attack {
            before_call: vec![],
            mid_call: vec![LOOPBACK],
        },
        |_| {},
    );
}

/// With every call's media on the shared ports (one well-known block), strangers on the far
/// end's host and on another get nothing in or out either.
#[test]
fn with_shared_rtp_ports_strangers_neither_take_over_nor_join_a_call() {
    call_under_attack(
        "hostile-rtp-shared",
        Attack {
            before_call: vec![LOOPBACK, OTHER_HOST],
            mid_call: vec![LOOPBACK, OTHER_HOST],
        },
        |node| {
            if let Some(g) = node.server.gateway.as_mut() {
                g.shared_rtp_ports = true;
            }
        },
    );
}
