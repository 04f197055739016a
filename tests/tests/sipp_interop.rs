//! The core's SIP user agent, driven by a thin UDP runner, against sipp (Debian
//! `sip-tester`): sipp calling us with RTP that we echo, sipp answering calls we place
//! while echoing our RTP, and a sipp registrar that challenges REGISTER with Digest and
//! checks the answer with `verifyauth`.
//!
//! sipp runs with a global timeout that counts as an error, is killed on drop, and writes
//! its statistics CSV (`-trace_stat`), whose final `SuccessfulCall(C)` / `FailedCall(C)`
//! columns are checked along with its exit code. Its ports are free ones from the OS.

use std::path::Path;
use std::time::Duration;

use siprtmp_tests::sip_runner::{Counters, RunnerConfig, SipRunner};
use siprtmp_tests::sipp::{totals as sipp_totals, Sipp};
use siprtmp_tests::{media, scratch_dir};

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
    // 200 calls at 20 calls/s, at most 40 at once, each held 1 s.
    let peer = Sipp::uac("uac_rtpstream_pcmu.xml", runner.addr())
        .calls(200)
        .pause_ms(1000)
        .args(&["-r", "20", "-l", "40"])
        .start("sipp uac", &dir);
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
    let peer = Sipp::echo_uas(200).start("sipp uas", &dir);
    let mut config = RunnerConfig::new("caller");
    config.lifetime = Duration::from_secs(70);
    config.media = Some(media("pcmu_8k_20s.ul"));
    let runner = SipRunner::start(config);
    // 200 calls at 20 calls/s, 10 packets (200 ms) of audio each.
    runner.place_calls(&peer.uri("service"), 200, 20, 10);
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
    let peer = Sipp::uas("uas_register_401.xml")
        .calls(2)
        .start("sipp registrar", &dir);
    let registrar = peer.sip;

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
