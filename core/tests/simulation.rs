//! Deterministic simulation: a publisher and players over a seeded network with latency,
//! jitter, loss (retransmissions) and random segmentation, in virtual time.

use std::time::{Duration, Instant};

use siprtmp_core::node::NodeConfig;
use siprtmp_core::sim::{run_live, SimConfig};
use siprtmp_core::testkit::synthetic_av;

fn lossy(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        max_segment: 1400,
        loss: 0.05,
        retransmit_timeout: Duration::from_millis(300),
    }
}

#[test]
fn every_player_gets_every_frame_from_its_join_point_over_a_lossy_network() {
    let media = synthetic_av(1, Duration::from_secs(20));
    let joins: Vec<Duration> = (0..8).map(|i| Duration::from_millis(i * 2300)).collect();
    let run = run_live(
        NodeConfig::default(),
        lossy(11),
        Instant::now(),
        &media,
        &joins,
    );
    for (i, verdict) in run.players.iter().enumerate() {
        let frames = verdict
            .as_ref()
            .unwrap_or_else(|e| panic!("player {i}: {e}"));
        assert!(*frames > 0);
    }
    // The first player joined before the first frame: it saw all of them.
    let all = media.len() - 2;
    assert_eq!(run.players[0], Ok(all));
}

#[test]
fn the_same_seed_replays_identically_and_another_seed_differs() {
    let media = synthetic_av(1, Duration::from_secs(6));
    let joins = [Duration::ZERO, Duration::from_secs(3)];
    let a = run_live(
        NodeConfig::default(),
        lossy(3),
        Instant::now(),
        &media,
        &joins,
    );
    let b = run_live(
        NodeConfig::default(),
        lossy(3),
        Instant::now(),
        &media,
        &joins,
    );
    let c = run_live(
        NodeConfig::default(),
        lossy(4),
        Instant::now(),
        &media,
        &joins,
    );
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.delivered_bytes, b.delivered_bytes);
    assert_ne!(a.trace_hash, c.trace_hash);
}
