//! `bench-compare --gateway --srtp` at small sizes against the debug `siprtmp`: each runtime
//! measured plain and with `--srtp require` against the bench's own echo far end, and every
//! frame of every call must come back byte for byte (by its sequence tag) with a round trip.
//! With SRTP required the gateway refuses a plain answer and the echo sends back only what
//! unprotects under the gateway's key, so an SRTP call's frames come back only through SRTP
//! both ways. Its own test binary, so that it does not share the machine with the quick
//! mode's timed run (cargo runs test binaries one after another).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn srtp_calls_get_every_frame_back_beside_plain_ones_in_one_run() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench-compare"));
    let siprtmp = bench.with_file_name("siprtmp");
    assert!(
        siprtmp.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p siprtmp` first",
        siprtmp.display()
    );
    if Command::new("sipp").arg("-v").output().is_err() {
        // The gateway mode checks for sipp up front (its other far ends), even with --srtp.
        eprintln!("skipped: sipp is not installed (scripts/test.sh installs it)");
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-srtp");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(&bench)
        .args(["--gateway", "--srtp", "--runtimes", "mio"])
        .args(["--calls", "1,4", "--codecs", "wideband"])
        .args(["--window", "1", "--warmup", "0.5", "--repeats", "1"])
        .arg("--server-bin")
        .arg(&siprtmp)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench-compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exits non-zero when a call got less than 99 % of its frames back.
    assert!(output.status.success(), "run failed:\n{stderr}");
    // The far end said so when it first answered an offer with SRTP.
    assert!(
        stderr.contains("echo far end: answering with SRTP (AES_CM_128_HMAC_SHA1_80)"),
        "{stderr}"
    );
    assert!(!stderr.contains("packet dropped"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("gateway.csv")).expect("gateway.csv");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (server, calls, sent, echoed, p50, unmatched) = (
        column("server"),
        column("calls"),
        column("frames_sent"),
        column("frames_echoed"),
        column("delay_p50_ms"),
        column("frames_unmatched"),
    );
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // Plain and SRTP alternate at each call count.
    let series: Vec<(&str, &str)> = rows.iter().map(|f| (f[server], f[calls])).collect();
    assert_eq!(
        series,
        [
            ("mio", "1"),
            ("mio-srtp", "1"),
            ("mio", "4"),
            ("mio-srtp", "4")
        ],
        "{csv}"
    );
    for f in &rows {
        let n: u64 = f[calls].parse().unwrap();
        let (s, e) = (
            f[sent].parse::<u64>().unwrap(),
            f[echoed].parse::<u64>().unwrap(),
        );
        // A second of 50 frames per call, less the frames in flight at its ends.
        assert!(s >= n * 45, "too few frames in the window: {f:?}");
        assert_eq!(s, e, "frames not back: {f:?}");
        assert_eq!(f[unmatched], "0", "echoes that match no frame sent: {f:?}");
        let p50: f64 = f[p50].parse().expect("a round trip");
        assert!(p50 > 0.0 && p50 < 1000.0, "{f:?}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("mio-srtp, Speex 16 kHz"), "{report}");
    // The comparison: one row for the runtime, with both slopes (1 and 4 calls: every frame
    // came back at both, so both fit).
    let row = report
        .lines()
        .find(|l| l.starts_with("| mio, wideband |"))
        .unwrap_or_else(|| panic!("no SRTP row:\n{report}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells[2].parse::<f64>().is_ok(), "plain slope: {row}");
    assert!(cells[3].parse::<f64>().is_ok(), "SRTP slope: {row}");
}
