//! Runs `bench-compare --relay --quick` with two edges: a siprtmp origin, two siprtmp edges
//! pulling from it and the players spread over them, beside the single siprtmp with the same
//! players. The run must finish, every player of every point must receive every frame
//! published during the window (the binary exits non-zero otherwise), and the report must
//! give the edges' CPU per player and the origin's per edge.

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
fn relay_mode_measures_edges_and_origin_and_delivers_every_frame() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compare-relay");
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_bench-compare"))
        .args(["--relay", "--quick", "--edges", "2", "--runtimes", "mio"])
        .arg("--server-bin")
        .arg(siprtmp_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench-compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench-compare --relay --quick failed ({}):\n{stderr}",
        output.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "quick relay mode took {:?}",
        started.elapsed()
    );

    // Every point of every series: the single server, the edges, the origin, at each count
    // of players (0, 4, 20) and reader kind; every window frame delivered.
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut series = std::collections::BTreeMap::<String, usize>::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        *series.entry(f[3].to_owned()).or_default() += 1;
        let (sent, min_received) = (f[10], f[11]);
        assert_eq!(sent, min_received, "lost frames: {line}");
        assert!(
            sent.parse::<u64>().unwrap() > 50,
            "too few frames in a window: {line}"
        );
    }
    let expected: std::collections::BTreeMap<String, usize> = [
        ("mio".to_owned(), 6),
        ("mio-edges2".to_owned(), 6),
        ("mio-origin".to_owned(), 6),
    ]
    .into_iter()
    .collect();
    assert_eq!(series, expected, "{csv}");

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("| mio-edges2 |"), "{report}");
    assert!(report.contains("No failures."), "{report}");
    let section = report
        .split("## Relay: edges and origin against a single server")
        .nth(1)
        .unwrap_or_else(|| panic!("no relay section:\n{report}"));
    // Both reader kinds have the single server's and the edges' CPU per player, and the
    // origin's per edge.
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| audio |"))
        .collect();
    assert_eq!(rows.len(), 2, "{section}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (column, what) in [
            (3, "single per player"),
            (4, "edge per player"),
            (8, "origin per edge"),
        ] {
            assert!(cells[column].contains('%'), "no {what}: {row}");
        }
    }
    assert!(
        stderr.contains("origin per edge"),
        "no relay summary line:\n{stderr}"
    );
}
