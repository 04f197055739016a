//! Runs `bench-compare --quick` against `siprtmp --runtime mio`, the same with merged writes
//! (`mio-merged`: `--merge-writes 100`), nginx-rtmp and rtmplite3 (when they are installed;
//! scripts/test.sh installs both): the run must finish, every player must receive every frame
//! published during each window (the binary exits non-zero otherwise), and the report and
//! plots must be written; with sipp installed, the one-call gateway point must get its frames
//! echoed back.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The debug `siprtmp` binary that `cargo test --workspace` builds next to ours.
fn siprtmp_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench-compare"));
    let bin = bench.with_file_name("siprtmp");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p siprtmp` first",
        bin.display()
    );
    bin
}

#[test]
fn quick_mode_delivers_every_frame() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-quick");
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_bench-compare"))
        .arg("--quick")
        .args(["--runtimes", "mio,mio-merged,nginx,rtmplite3"])
        .arg("--server-bin")
        .arg(siprtmp_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench-compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench-compare --quick failed ({}):\n{stderr}",
        output.status
    );
    // stderr is a pipe here, as in a log file: no progress line redrawn with carriage
    // returns or escape sequences, but the summary line is there.
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "terminal control characters in a piped stderr:\n{stderr:?}"
    );
    assert!(stderr.contains(" points in "), "no summary line:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "quick mode took {:?}",
        started.elapsed()
    );

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("| mio |"), "{report}");
    if report.contains("rtmplite3 skipped") {
        eprintln!("rtmplite3 is not installed: measured without it");
    } else {
        assert!(report.contains("| rtmplite3 |"), "{report}");
    }
    // Merged writes (--merge-writes 100) are measured beside plain mio and deliver every frame.
    assert!(report.contains("| mio-merged |"), "{report}");
    assert!(report.contains("No failures."), "{report}");
    assert!(report.contains("Python gevent"), "{report}");
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    // Header plus 3 player counts x 2 reader kinds for mio alone at least.
    assert!(csv.lines().count() > 6, "{csv}");
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (sent, min_received) = (f[10], f[11]);
        assert_eq!(sent, min_received, "lost frames: {line}");
        assert!(
            sent.parse::<u64>().unwrap() > 50,
            "too few frames in a window: {line}"
        );
    }
    for plot in ["cpu-audio-reader.svg", "cpu-audio-bulk.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).expect(plot);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{plot}"
        );
    }

    // The gateway smoke point (one call on mio through an echoing sipp), when sipp is here.
    if Command::new("sipp").arg("-v").output().is_ok() {
        assert!(report.contains("## SIP-RTMP gateway"), "{report}");
        let csv = std::fs::read_to_string(out.join("gateway.csv")).expect("gateway.csv");
        let point = csv.lines().nth(1).expect("one gateway point");
        let f: Vec<&str> = point.split(',').collect();
        let (sent, echoed) = (f[9].parse::<u64>().unwrap(), f[10].parse::<u64>().unwrap());
        assert!(sent > 50, "too few frames in the window: {point}");
        assert!(echoed * 100 >= sent * 99, "frames not echoed: {point}");
        assert!(out.join("cpu-gateway.svg").exists());
    }
}
