//! The core's SIP user agent, driven by a thin UDP runner, against sipp (Debian
//! `sip-tester`): sipp calling us with RTP that we echo, sipp answering calls we place
//! while echoing our RTP, and a sipp registrar that challenges REGISTER with Digest and
//! checks the answer with `verifyauth`.
//!
//! sipp runs with a global timeout that counts as an error, is killed on drop, and writes
//! its statistics CSV (`-trace_stat`), whose final `SuccessfulCall(C)` / `FailedCall(C)`
//! columns are checked along with its exit code.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use siprtmp_tests::locate::sipp_scenario;
use siprtmp_tests::peers::Peer;
use siprtmp_tests::sip_runner::{Counters, RunnerConfig, SipRunner};
use siprtmp_tests::{media, scratch_dir};

/// A free UDP port on loopback (bound and released; sipp binds it right after).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sipp(name: &str, dir: &Path, args: &[String]) -> Peer {
    Peer::spawn_command(
        name,
        Command::new("sipp")
            .current_dir(dir)
            .args(["-nostdin", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-timeout", "60s", "-timeout_error"])
            .args(["-trace_stat", "-stf", "stats.csv", "-fd", "1"])
            .args(args),
    )
}

/// (successful, failed) calls from the last line of sipp's statistics file.
fn sipp_totals(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("stats.csv")).expect("sipp stats file");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stats header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("stats line").split(';').collect();
    let column = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"));
        last[i].trim().parse().unwrap()
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    Counters::get(c)
}

/// `uac_rtpstream_pcmu.xml` streams `pcmu_8k_20s.ul` from sipp's working directory: a copy
/// of the generated file goes into `dir`.
fn stream_audio_into(dir: &Path) {
    std::fs::copy(media("pcmu_8k_20s.ul"), dir.join("pcmu_8k_20s.ul")).expect("copy audio");
}

#[test]
fn sipp_calls_us_with_rtp_and_we_echo() {
    let dir = scratch_dir("sipp_uac_to_runner");
    let mut config = RunnerConfig::new("echo");
    config.lifetime = Duration::from_secs(70);
    let runner = SipRunner::start(config);
    stream_audio_into(&dir);
    let scenario = sipp_scenario("uac_rtpstream_pcmu.xml");
    let target = runner.addr().to_string();
    let peer = sipp(
        "sipp uac",
        &dir,
        &[
            target,
            "-sf".into(),
            scenario.to_str().unwrap().into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-mp".into(),
            "27000".into(),
            "-r".into(),
            "20".into(),
            "-m".into(),
            "200".into(),
            "-l".into(),
            "40".into(),
            "-d".into(),
            "1000".into(),
        ],
    );
    peer.finish(Duration::from_secs(65));
    let (ok, failed) = sipp_totals(&dir);
    let c = runner.counters();
    assert!(runner.wait_for(Duration::from_secs(2), |c| get(&c.completed) == 200));
    eprintln!(
        "sipp: {ok} successful, {failed} failed; runner: answered {} completed {} failed {} rtp echoed {}",
        get(&c.answered),
        get(&c.completed),
        get(&c.failed),
        get(&c.rtp_echoed)
    );
    assert_eq!((ok, failed), (200, 0));
    assert_eq!(get(&c.answered), 200);
    assert_eq!(get(&c.failed), 0);
    // About 50 packets per call for 1 s of hold time; allow for the stream's start.
    assert!(
        get(&c.rtp_echoed) > 200 * 30,
        "echoed {}",
        get(&c.rtp_echoed)
    );
}

#[test]
fn we_call_sipp_which_echoes_rtp() {
    let dir = scratch_dir("sipp_uas_from_runner");
    let scenario = sipp_scenario("uas_echo_any.xml");
    let port = free_udp_port();
    let peer = sipp(
        "sipp uas",
        &dir,
        &[
            "-sf".into(),
            scenario.to_str().unwrap().into(),
            "-p".into(),
            port.to_string(),
            "-mp".into(),
            "28000".into(),
            "-rtp_echo".into(),
            "-m".into(),
            "200".into(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut config = RunnerConfig::new("caller");
    config.lifetime = Duration::from_secs(70);
    config.media = Some(media("pcmu_8k_20s.ul"));
    let runner = SipRunner::start(config);
    // 200 calls at 20 calls/s, 10 packets (200 ms) of audio each.
    runner.place_calls(&format!("sip:service@127.0.0.1:{port}"), 200, 20, 10);
    let done = runner.wait_for(Duration::from_secs(40), |c| {
        get(&c.completed) + get(&c.failed) >= 200
    });
    let c = runner.counters();
    eprintln!(
        "runner: placed {} answered {} completed {} failed {} rtp sent {} received {}",
        get(&c.placed),
        get(&c.placed_answered),
        get(&c.completed),
        get(&c.failed),
        get(&c.rtp_sent),
        get(&c.rtp_received)
    );
    assert!(done, "calls did not finish");
    assert_eq!(get(&c.placed), 200);
    assert_eq!(get(&c.completed), 200);
    assert_eq!(get(&c.failed), 0);
    assert_eq!(get(&c.rtp_sent), 2000);
    assert!(
        get(&c.rtp_received) > 1950,
        "echo received {}",
        get(&c.rtp_received)
    );
    peer.finish(Duration::from_secs(20));
    let (ok, failed) = sipp_totals(&dir);
    assert_eq!((ok, failed), (200, 0));
}

#[test]
fn registers_against_a_sipp_registrar_with_digest() {
    let dir = scratch_dir("sipp_registrar");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uas_register_401.xml");
    let port = free_udp_port();
    let peer = sipp(
        "sipp registrar",
        &dir,
        &[
            "-sf".into(),
            scenario.to_str().unwrap().into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            "2".into(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let registrar = format!("127.0.0.1:{port}").parse().unwrap();

    let mut good = RunnerConfig::new("alice");
    good.registrar = Some(registrar);
    good.credentials = Some(("alice".into(), "secret".into()));
    good.lifetime = Duration::from_secs(20);
    let good = SipRunner::start(good);
    good.register();
    assert!(
        good.wait_for(Duration::from_secs(10), |c| get(&c.registered)
            + get(&c.registration_failed)
            > 0),
        "no registration outcome"
    );
    assert_eq!(get(&good.counters().registered), 1);
    assert_eq!(get(&good.counters().registration_failed), 0);

    let mut bad = RunnerConfig::new("alice");
    bad.registrar = Some(registrar);
    bad.credentials = Some(("alice".into(), "wrong".into()));
    bad.lifetime = Duration::from_secs(20);
    let bad = SipRunner::start(bad);
    bad.register();
    assert!(bad.wait_for(Duration::from_secs(10), |c| get(&c.registered)
        + get(&c.registration_failed)
        > 0));
    assert_eq!(get(&bad.counters().registered), 0);
    assert_eq!(get(&bad.counters().registration_failed), 1);
    assert_eq!(get(&bad.counters().last_registration_status), 403);

    peer.finish(Duration::from_secs(15));
    let (ok, failed) = sipp_totals(&dir);
    assert_eq!((ok, failed), (2, 0));
}
