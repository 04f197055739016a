//! Runs `bench-compare --quick --publishers 0,2,6` against `siprtmp --runtime mio` and
//! nginx-rtmp (when installed): N publishers, each on its own stream, no player. The run must
//! finish, every publisher of every point must publish through the window with every byte it
//! sent read by the server (the binary exits non-zero otherwise), and the report must give
//! the CPU per publisher of each server.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The debug `siprtmp` binary built next to ours.
fn siprtmp_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench-compare"));
    let bin = bench.with_file_name("siprtmp");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p siprtmp` first",
        bin.display()
    );
    bin
}

#[test]
fn publisher_series_checks_every_publisher_and_reports_cost_per_publisher() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-publishers");
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_bench-compare"))
        .args([
            "--quick",
            "--publishers",
            "0,2,6",
            "--runtimes",
            "mio,nginx",
        ])
        .arg("--server-bin")
        .arg(siprtmp_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench-compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench-compare --quick --publishers failed ({}):\n{stderr}",
        output.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the quick publisher series took {:?}",
        started.elapsed()
    );

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let nginx = !report.contains("nginx-rtmp skipped");
    if !nginx {
        eprintln!("nginx-rtmp is not installed: measured without it");
    }
    // Only the publisher series: --publishers without --players measures no player.
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut points = std::collections::BTreeMap::<(String, usize), usize>::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[17], "publishers", "a player point: {line}");
        let n: usize = f[18].parse().unwrap();
        *points.entry((f[3].to_owned(), n)).or_default() += 1;
        assert_eq!(f[2], "0", "players in a publisher point: {line}");
        // Every publisher verified: published through the window, every byte read.
        assert_eq!(f[12], f[18], "a publisher not verified: {line}");
        let (sent, verified) = (f[10].parse::<u64>().unwrap(), f[11].parse::<u64>().unwrap());
        assert_eq!(sent, verified, "frames of unverified publishers: {line}");
        // Each publisher sends its 50 Speex frames a second through the 1.2 s window.
        assert!(sent >= 50 * n as u64, "too few frames in a window: {line}");
        assert!(f[13].is_empty(), "a failure: {line}");
    }
    let mut expected = std::collections::BTreeMap::new();
    let servers: &[&str] = if nginx {
        &["mio", "nginx-rtmp"]
    } else {
        &["mio"]
    };
    for server in servers {
        for n in [0, 2, 6] {
            expected.insert(((*server).to_owned(), n), 1);
        }
    }
    assert_eq!(points, expected, "{csv}");

    assert!(report.contains("No failures."), "{report}");
    assert!(
        report.contains("3 of 3") || report.contains("6 of 6"),
        "{report}"
    );
    let section = report
        .split("## Per publisher")
        .nth(1)
        .unwrap_or_else(|| panic!("no per-publisher table:\n{report}"));
    let mio = section
        .lines()
        .find(|l| l.starts_with("| mio |"))
        .unwrap_or_else(|| panic!("no mio row:\n{section}"));
    let cell = mio.split('|').map(str::trim).nth(2).unwrap();
    let mhz: f64 = cell
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no MHz per publisher: {mio}"));
    assert!(mhz.is_finite(), "{mio}");
    // nginx-rtmp's row (the ratio beside mio's figure needs nginx-rtmp's slope above 0, which
    // a 1.2 s window at 100 ticks a second does not promise: the unit tests check it).
    if nginx {
        assert!(section.contains("| nginx-rtmp |"), "{section}");
    }
    assert!(
        stderr.contains("MHz per publisher"),
        "no summary line:\n{stderr}"
    );
    let svg = std::fs::read_to_string(out.join("cpu-audio-publishers.svg")).expect("plot");
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
}
