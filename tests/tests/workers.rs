//! Several workers on one port (`siprtmp --workers 2`): ffmpeg publishes to whichever worker
//! the kernel gives it, and players on every worker receive every frame through the relay
//! between workers, checked with ffprobe against the published clip, under the mio and tokio
//! drivers (the two that run as workers).
//!
//! The kernel spreads connections over the workers' `SO_REUSEPORT` sockets by a hash of the
//! connection's addresses, which a test cannot choose for ffmpeg. So players keep connecting
//! (ffmpeg and rtmpdump in turn) until every worker has one; each connection's worker is read
//! from the worker number its connection id carries. With two workers, 3 players are needed
//! on average, and the cap of 16 fails by chance once in 32768 runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use siprtmp_core::node::{Event, NodeConfig, WorkerId};
use siprtmp_tests::peers::{ffmpeg_clip, ffmpeg_play, ffmpeg_publish, rtmpdump_play, Peer};
use siprtmp_tests::probe::{count, packets, Packet};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::{Runtime, TestServer};

const STARTUP: Duration = Duration::from_secs(15);
const PUBLISH_TIME: Duration = Duration::from_secs(30);
const WORKERS: usize = 2;
const MAX_PLAYERS: usize = 16;

/// Asserts that `got` holds every audio and video packet of `source`, in order, with
/// identical timestamps and payloads.
fn assert_receives_everything(who: &str, source: &[Packet], got: &[Packet]) {
    for kind in ["audio", "video"] {
        let expected: Vec<(i64, &str)> = source
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| (p.pts, p.hash.as_str()))
            .collect();
        let received: Vec<(i64, &str)> = got
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| (p.pts, p.hash.as_str()))
            .collect();
        assert_eq!(
            received.len(),
            expected.len(),
            "{who}: {kind} packets ({} in the source)",
            count(source, kind)
        );
        assert!(received == expected, "{who}: {kind} packets differ");
    }
}

/// The workers of the players started so far, in start order.
fn player_workers(server: &mut TestServer) -> Vec<WorkerId> {
    server
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::PlayStarted { conn, .. } => Some(conn.worker()),
            _ => None,
        })
        .collect()
}

fn ffmpeg_publish_reaches_players_on_every_worker(runtime: Runtime) {
    let dir = scratch_dir(&format!("workers-{runtime:?}"));
    // The first 4 s: two GOPs.
    let clip = ffmpeg_clip("h264_aac_320x240_12fps_20s.flv", 4, &dir.join("clip.flv"));
    let source = packets(&clip);
    let mut server = TestServer::start_workers(runtime, NodeConfig::default(), WORKERS);
    let url = server.url("live/s1");

    let mut players: Vec<(String, Peer, PathBuf)> = Vec::new();
    while players.len() < MAX_PLAYERS {
        let i = players.len();
        let out = dir.join(format!("player{i}.flv"));
        // Both client stacks, in turn.
        let (name, peer) = match i % 2 {
            0 => (format!("ffmpeg player {i}"), ffmpeg_play(&url, &out)),
            _ => (format!("rtmpdump player {i}"), rtmpdump_play(&url, &out)),
        };
        players.push((name, peer, out));
        assert!(
            server.wait_for(i + 1, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
            "player {i} did not start"
        );
        let covered: BTreeSet<WorkerId> = player_workers(&mut server).into_iter().collect();
        if covered.len() == WORKERS {
            break;
        }
    }
    let workers = player_workers(&mut server);
    assert_eq!(
        workers.iter().collect::<BTreeSet<_>>().len(),
        WORKERS,
        "{MAX_PLAYERS} players all landed on one worker"
    );

    let publisher = ffmpeg_publish(&clip, &url);
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::PublishStarted { .. })),
        "publish did not start"
    );
    let publishing_on = server.events().iter().find_map(|e| match e {
        Event::PublishStarted { conn, .. } => Some(conn.worker()),
        _ => None,
    });
    eprintln!("publisher on {publishing_on:?}, players on {workers:?}");
    publisher.finish(PUBLISH_TIME);
    for ((name, peer, out), worker) in players.into_iter().zip(&workers) {
        peer.finish(STARTUP);
        assert_receives_everything(&format!("{name} on {worker}"), &source, &packets(&out));
    }
}

mod mio {
    #[test]
    fn ffmpeg_publish_reaches_players_on_every_worker() {
        super::ffmpeg_publish_reaches_players_on_every_worker(super::Runtime::Mio);
    }
}

mod tokio {
    #[test]
    fn ffmpeg_publish_reaches_players_on_every_worker() {
        super::ffmpeg_publish_reaches_players_on_every_worker(super::Runtime::Tokio);
    }
}

mod io_uring {
    #[test]
    fn ffmpeg_publish_reaches_players_on_every_worker() {
        super::ffmpeg_publish_reaches_players_on_every_worker(super::Runtime::IoUring);
    }
}
