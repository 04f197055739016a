//! An edge of two workers (`siprtmp --workers 2`, under mio and tokio) pulling from an
//! nginx-rtmp origin:
//! ffmpeg publishes to nginx, ffmpeg and rtmpdump players connect to the edge until both
//! workers have one, and nginx's statistics page counts one play of the stream from the edge
//! (not one per worker) while every player, whichever worker it landed on, gets the stream
//! from a keyframe to its end, checked with ffprobe against the source.
//!
//! The kernel spreads the players over the workers' `SO_REUSEPORT` sockets by a hash a test
//! cannot choose (see `workers.rs`): players keep connecting until both workers have one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use siprtmp_core::node::{
    AppConfig, Event, NodeConfig, RelayLimits, RelayPhase, RelayUrl, ServerConfig, WorkerId,
};
use siprtmp_tests::nginx::Nginx;
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish, rtmpdump_play, Peer};
use siprtmp_tests::probe::{assert_receives_from_keyframe, packets};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::{media, scratch_dir, wait};

const STARTUP: Duration = Duration::from_secs(15);
/// The media file is 20 s long; publishing in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(45);
const FILE: &str = "h264_aac_320x240_12fps_20s.flv";
const WORKERS: usize = 2;
/// Players started at most to land one on each worker (all on one worker by chance: once in
/// 32768 runs).
const MAX_PLAYERS: usize = 16;

/// An edge whose application `live` pulls from `origin`.
fn edge_config(origin: &str) -> NodeConfig {
    let mut server = ServerConfig {
        relay: RelayLimits {
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            pull_idle_timeout: Duration::from_secs(2),
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    server.apps.insert(
        "live".into(),
        AppConfig {
            pull: vec![RelayUrl::parse(origin).unwrap()],
            ..AppConfig::default()
        },
    );
    NodeConfig {
        server,
        ..NodeConfig::default()
    }
}

/// The workers of the edge's players started so far, in start order.
fn player_workers(edge: &mut TestServer) -> Vec<WorkerId> {
    edge.events()
        .iter()
        .filter_map(|e| match e {
            Event::PlayStarted { conn, .. } => Some(conn.worker()),
            _ => None,
        })
        .collect()
}

/// Pull sessions the edge's workers opened.
fn pulls_opened(edge: &mut TestServer) -> usize {
    edge.events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Relay {
                    phase: RelayPhase::Connecting,
                    ..
                }
            )
        })
        .count()
}

fn an_edge_with_two_workers_pulls_a_name_from_nginx_rtmp_once(runtime: Runtime) {
    let dir = scratch_dir(&format!("relay-workers-{runtime:?}"));
    let source_path = media(FILE);
    let source = packets(&source_path);
    let nginx = Nginx::live(
        &[("live", "wait_key on; wait_video on;")],
        &dir.join("nginx"),
    );
    let mut edge = TestServer::start_workers(runtime, edge_config(&nginx.url("live")), WORKERS);
    let publisher = ffmpeg_publish(&source_path, &nginx.url("live/cam"));
    assert!(
        wait::until(STARTUP, || nginx.stream_clients("live", "cam") == Some(1)),
        "the origin has the stream"
    );

    let url = edge.url("live/cam");
    let mut players: Vec<(String, Peer, PathBuf)> = Vec::new();
    while players.len() < MAX_PLAYERS {
        let i = players.len();
        let out = dir.join(format!("player{i}.flv"));
        let (name, peer) = match i % 2 {
            0 => (format!("ffmpeg player {i}"), ffmpeg_play(&url, &out)),
            _ => (format!("rtmpdump player {i}"), rtmpdump_play(&url, &out)),
        };
        players.push((name, peer, out));
        assert!(
            edge.wait_for(i + 1, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
            "player {i} did not start"
        );
        let covered: BTreeSet<WorkerId> = player_workers(&mut edge).into_iter().collect();
        if covered.len() == WORKERS {
            break;
        }
    }
    let workers = player_workers(&mut edge);
    assert_eq!(
        workers.iter().collect::<BTreeSet<_>>().len(),
        WORKERS,
        "{MAX_PLAYERS} players all landed on one worker"
    );
    assert!(
        edge.wait_for(1, STARTUP, |e| matches!(
            e,
            Event::Relay {
                phase: RelayPhase::Live,
                ..
            }
        )),
        "the pull"
    );
    // nginx counts the publisher and the edge's one play, with players on both workers.
    assert!(
        wait::until(STARTUP, || nginx.stream_clients("live", "cam") == Some(2)),
        "the origin serves the edge's play: {:?} clients",
        nginx.stream_clients("live", "cam")
    );
    publisher.finish(PUBLISH_TIME);
    for ((name, peer, out), worker) in players.into_iter().zip(&workers) {
        peer.finish(STARTUP);
        assert_receives_from_keyframe(
            &format!("{name} on {worker}"),
            &source,
            &packets(&out),
            true,
        );
    }
    // Not one per worker, not a second one racing the first: one pull in all the run.
    assert_eq!(pulls_opened(&mut edge), 1, "one pull for the edge");
}

mod mio {
    #[test]
    fn an_edge_with_two_workers_pulls_a_name_from_nginx_rtmp_once() {
        super::an_edge_with_two_workers_pulls_a_name_from_nginx_rtmp_once(super::Runtime::Mio);
    }
}

mod tokio {
    #[test]
    fn an_edge_with_two_workers_pulls_a_name_from_nginx_rtmp_once() {
        super::an_edge_with_two_workers_pulls_a_name_from_nginx_rtmp_once(super::Runtime::Tokio);
    }
}
