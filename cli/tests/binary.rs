//! The `siprtmp` binary as an operator runs it: flags, a real ffmpeg publish and play through
//! it, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use siprtmp_tests::peers::{ffmpeg_play, Peer};
use siprtmp_tests::probe::{count, packets};
use siprtmp_tests::{media, scratch_dir};

#[test]
fn serves_ffmpeg_on_the_flag_address_and_exits_cleanly_on_sigterm() {
    let dir = scratch_dir("binary");
    let mut server = Command::new(env!("CARGO_BIN_EXE_siprtmp"))
        .args(["-i", "127.0.0.1", "-p", "0", "-r"])
        .arg(&dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siprtmp");
    // The log names the bound port; keep reading the log so the pipe never fills.
    let (lines_tx, lines) = mpsc::channel();
    let stderr = server.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no listening line in {log:?}"));
        if let Some(rest) = line.split("RTMP listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        log.push(line);
    };
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let url = format!("rtmp://{addr}/live/bin");
    let player = ffmpeg_play(&url, &dir.join("got.flv"));
    // The player must be waiting before the 3 s publish starts, or it would miss frames.
    let log_line = |needle: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect(needle);
        if line.contains(needle) {
            return line;
        }
    };
    log_line("play started");
    let source = media("h264_speex16k_320x240_12fps_20s.flv");
    let publisher = Peer::spawn_command(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-t", "3", "-i"])
            .arg(&source)
            .args(["-c", "copy", "-f", "flv", &url]),
    );
    publisher.finish(Duration::from_secs(30));
    player.finish(Duration::from_secs(15));
    let got = packets(&dir.join("got.flv"));
    assert!(
        count(&got, "video") >= 30,
        "video frames through the binary"
    );
    assert!(
        count(&got, "audio") >= 100,
        "audio frames through the binary"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

/// `--poll-interval` is the mio and io-uring runtimes': with another runtime the binary says
/// so and exits with an error instead of running without it; out-of-range values are refused
/// too.
#[test]
fn poll_interval_needs_a_moderating_runtime_and_a_bounded_value() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_siprtmp"))
            .args(["-i", "127.0.0.1", "-p", "0", "--no-gateway"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run siprtmp")
    };
    let tokio = run(&["--runtime", "tokio", "--poll-interval", "20"]);
    assert!(!tokio.status.success());
    let stderr = String::from_utf8_lossy(&tokio.stderr);
    assert!(
        stderr.contains("needs --runtime mio or io-uring"),
        "{stderr}"
    );
    let too_long = run(&["--poll-interval", "500"]);
    assert!(!too_long.status.success());
    let stderr = String::from_utf8_lossy(&too_long.stderr);
    assert!(
        stderr.contains("--poll-interval 500: out of range"),
        "{stderr}"
    );
}
