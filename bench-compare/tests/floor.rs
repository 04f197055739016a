//! The gateway's kernel floor (`bench-compare --gateway --runtimes floor...`) against a real
//! sipp echo. Its own test binary, so that it does not share the machine with the quick mode's
//! timed run (cargo runs test binaries one after another).

use std::path::PathBuf;
use std::process::Command;

/// The gateway's kernel floor (`--runtimes floor...`, the gateway's system calls with no
/// protocol, see bench-compare/src/floor) echoes every frame of every call, written per
/// wake-up and merged with GSO sends and a poll tick, so its figures compare with the
/// gateway's.
#[test]
fn the_gateway_floor_echoes_every_frame_of_every_call() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("skipped: sipp is not installed (scripts/test.sh installs it)");
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-floor");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_bench-compare"))
        .args(["--gateway", "--runtimes", "floor,floor-merged-gso-tick20"])
        .args(["--calls", "1,10", "--codecs", "wideband,narrowband"])
        .args(["--window", "1", "--warmup", "0.3", "--repeats", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench-compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exits non-zero when a call got less than 99 % of its frames back.
    assert!(output.status.success(), "floor run failed:\n{stderr}");
    let csv = std::fs::read_to_string(out.join("gateway.csv")).expect("gateway.csv");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // 2 floors x 2 call counts x 2 codecs.
    assert_eq!(rows.len(), 8, "{csv}");
    for f in &rows {
        assert!(
            f[0] == "floor" || f[0] == "floor-merged-gso-tick20",
            "{f:?}"
        );
        let calls: u64 = f[1].parse().unwrap();
        let (sent, echoed) = (f[9].parse::<u64>().unwrap(), f[10].parse::<u64>().unwrap());
        // A second of 50 frames per call, less the frames in flight at its ends.
        assert!(sent >= calls * 45, "too few frames in the window: {f:?}");
        assert_eq!(sent, echoed, "frames lost: {f:?}");
    }
}
