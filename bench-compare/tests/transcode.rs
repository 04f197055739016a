//! Transcoded gateway calls (`--codecs wideband-pcmu,opus-pcmu`) beside passed-through ones
//! (`wideband`) in one `bench-compare --gateway` run against the debug `siprtmp` and a real
//! sipp echo: the echo of a transcoded call is new audio, told from the frames sent by its
//! timestamps, and every frame of every call must come back matched to the frame it came
//! from, with a round trip. Its own test binary, so that it does not share the machine with
//! the quick mode's timed run (cargo runs test binaries one after another).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn transcoded_calls_get_every_frame_back_matched_beside_passed_through_ones() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("skipped: sipp is not installed (scripts/test.sh installs it)");
        return;
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench-compare"));
    let siprtmp = bench.with_file_name("siprtmp");
    assert!(
        siprtmp.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p siprtmp` first",
        siprtmp.display()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-transcode");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(&bench)
        .args(["--gateway", "--runtimes", "mio"])
        .args([
            "--calls",
            "1,4",
            "--codecs",
            "wideband,wideband-pcmu,opus-pcmu",
        ])
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
    let csv = std::fs::read_to_string(out.join("gateway.csv")).expect("gateway.csv");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (calls, sent, echoed, codec, p50, unmatched) = (
        column("calls"),
        column("frames_sent"),
        column("frames_echoed"),
        column("codec"),
        column("delay_p50_ms"),
        column("frames_unmatched"),
    );
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // 3 codecs x 2 call counts, each its own series.
    assert_eq!(rows.len(), 6, "{csv}");
    let codecs: Vec<&str> = rows.iter().map(|f| f[codec]).collect();
    assert_eq!(
        codecs,
        [
            "wideband",
            "wideband",
            "wideband-pcmu",
            "wideband-pcmu",
            "opus-pcmu",
            "opus-pcmu"
        ]
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
        // Every frame matched has its round trip.
        let p50: f64 = f[p50].parse().expect("a round trip");
        assert!(p50 > 0.0 && p50 < 1000.0, "{f:?}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("mio, Speex 16 kHz <-> PCMU"), "{report}");
    assert!(report.contains("uas_echo_pcmu_only.xml"), "{report}");
}
