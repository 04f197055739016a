//! Ten minutes of live media from one publisher to 100 players, entirely in memory and in
//! virtual time over a seeded network; every player's media is checked frame by frame.
//!
//! `cargo run --release -p siprtmp-core --example sim_live [minutes] [players]`
//! prints the wall time it took (a benchmark figure, not a test).

use std::time::{Duration, Instant};

use siprtmp_core::node::NodeConfig;
use siprtmp_core::sim::{run_live, SimConfig};
use siprtmp_core::testkit::synthetic_av;

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let players: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let media = synthetic_av(1, Duration::from_secs(60 * minutes));
    // Players join over the first minute.
    let joins: Vec<Duration> = (0..players)
        .map(|i| Duration::from_millis(i * 60_000 / players.max(1)))
        .collect();
    let started = Instant::now();
    let run = run_live(
        NodeConfig::default(),
        SimConfig::default(),
        started,
        &media,
        &joins,
    );
    let wall = started.elapsed();
    let mut frames = 0;
    for (i, verdict) in run.players.iter().enumerate() {
        match verdict {
            Ok(n) => frames += n,
            Err(e) => panic!("player {i}: {e}"),
        }
    }
    println!(
        "{minutes} min of media ({} messages) to {players} players: every frame checked ({frames} deliveries, {:.1} MB on the wire) in {:.2} s wall time",
        media.len(),
        run.delivered_bytes as f64 / 1e6,
        wall.as_secs_f64()
    );
}
