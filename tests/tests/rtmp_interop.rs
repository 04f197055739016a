//! Interop with peers nobody here wrote: ffmpeg publishes, ffmpeg and rtmpdump play, ffprobe
//! checks what they saved against the source, packet by packet (timestamp and payload hash).

use std::time::Duration;

use siprtmp_core::node::ServerConfig;
use siprtmp_core::node::{CloseReason, Event, NodeConfig};
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish, rtmpdump_play};
use siprtmp_tests::probe::{assert_receives_all_from_join, count, packets};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(15);
/// The media files are 20 s long; publishing in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(45);

fn is_play_started(e: &Event) -> bool {
    matches!(e, Event::PlayStarted { .. })
}

fn is_publish_started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
}

fn publish_and_watch(file: &str, test: &str) {
    publish_and_watch_on(NodeConfig::default(), file, test);
}

fn publish_and_watch_on(config: NodeConfig, file: &str, test: &str) {
    let source_path = media(file);
    let source = packets(&source_path);
    let dir = scratch_dir(test);
    let mut server = TestServer::start(config, None);
    let url = server.url("live/s1");

    let early_ffmpeg = ffmpeg_play(&url, &dir.join("ffmpeg.flv"));
    let early_rtmpdump = rtmpdump_play(&url, &dir.join("rtmpdump.flv"));
    assert!(
        server.wait_for(2, STARTUP, is_play_started),
        "players did not start"
    );

    let publisher = ffmpeg_publish(&source_path, &url);
    assert!(
        server.wait_for(1, STARTUP, is_publish_started),
        "publish did not start"
    );
    // The late player joins 5 s into the stream: it must start on a keyframe from the cache.
    std::thread::sleep(Duration::from_secs(5));
    let late = ffmpeg_play(&url, &dir.join("late.flv"));

    publisher.finish(PUBLISH_TIME);
    early_ffmpeg.finish(STARTUP);
    early_rtmpdump.finish(STARTUP);
    late.finish(STARTUP);

    let early_a = packets(&dir.join("ffmpeg.flv"));
    let early_b = packets(&dir.join("rtmpdump.flv"));
    let late_c = packets(&dir.join("late.flv"));
    for (who, got) in [("ffmpeg", &early_a), ("rtmpdump", &early_b)] {
        assert_eq!(
            count(got, "video"),
            count(&source, "video"),
            "{who}: video frames"
        );
        assert_eq!(
            count(got, "audio"),
            count(&source, "audio"),
            "{who}: audio frames"
        );
        assert_receives_all_from_join(who, &source, got);
    }
    assert!(
        late_c.first().is_some_and(|p| p.pts >= 3000),
        "late player joined late"
    );
    assert_receives_all_from_join("late ffmpeg", &source, &late_c);
}

#[test]
fn ffmpeg_publishes_h264_aac_and_three_players_receive_every_frame() {
    publish_and_watch("h264_aac_320x240_12fps_20s.flv", "h264_aac");
}

#[test]
fn ffmpeg_publishes_h264_speex_and_three_players_receive_every_frame() {
    publish_and_watch("h264_speex16k_320x240_12fps_20s.flv", "h264_speex");
}

/// Merged writes (`--merge-writes 100`): media leaves in batches of up to 100 ms, and ffmpeg
/// and rtmpdump, early and late, still receive every frame, in order.
#[test]
fn with_merged_writes_three_players_receive_every_frame() {
    let config = NodeConfig {
        server: ServerConfig {
            merge_writes: Some(Duration::from_millis(100)),
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    publish_and_watch_on(config, "h264_aac_320x240_12fps_20s.flv", "h264_aac_merged");
}

/// A player that stops reading neither delays the publisher nor the other players, and is
/// disconnected once its backlog passes the hard limit; the server's memory stays bounded.
#[test]
fn a_player_that_never_reads_is_dropped_and_does_not_harm_the_others() {
    let source_path = media("h264_aac_320x240_12fps_20s.flv");
    let source = packets(&source_path);
    let dir = scratch_dir("slow_player");
    let config = NodeConfig {
        server: ServerConfig {
            player_soft_backlog: 16 * 1024,
            player_hard_backlog: 64 * 1024,
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut server = TestServer::start(config, Some(8 * 1024));
    let url = server.url("live/s1");
    let rss_before = rss_kib();

    let good = ffmpeg_play(&url, &dir.join("good.flv"));
    let stalled = TcpRtmpClient::play(server.addr, "live", "s1", Some(4096));
    assert!(
        server.wait_for(2, STARTUP, is_play_started),
        "players did not start"
    );
    let publisher = ffmpeg_publish(&source_path, &url);
    publisher.finish(PUBLISH_TIME);
    good.finish(STARTUP);

    let got = packets(&dir.join("good.flv"));
    assert_receives_all_from_join("reading player", &source, &got);
    assert_eq!(count(&got, "video"), count(&source, "video"));
    let dropped = server.events().iter().any(|e| {
        matches!(
            e,
            Event::Closing {
                reason: CloseReason::PlayerBacklog { .. },
                ..
            }
        )
    });
    assert!(
        dropped,
        "the stalled player was not disconnected: {:?}",
        server.events()
    );
    let rss_growth = rss_kib().saturating_sub(rss_before);
    assert!(rss_growth < 32 * 1024, "memory grew by {rss_growth} KiB");
    drop(stalled);
}

/// Garbage from one client closes that client only; a player of a live stream keeps getting
/// every frame.
#[test]
fn bad_bytes_from_one_client_close_only_that_client() {
    use std::io::Write;
    let source_path = media("h264_speex16k_320x240_12fps_20s.flv");
    let source = packets(&source_path);
    let dir = scratch_dir("bad_bytes");
    let mut server = TestServer::start(NodeConfig::default(), None);
    let url = server.url("live/s1");
    let player = ffmpeg_play(&url, &dir.join("player.flv"));
    assert!(server.wait_for(1, STARTUP, is_play_started));
    let publisher = ffmpeg_publish(&source_path, &url);
    assert!(server.wait_for(1, STARTUP, is_publish_started));
    // A client that connects, then announces a 16 MiB video message: beyond the largest
    // message the server accepts.
    let mut bad = TcpRtmpClient::connect(server.addr, "live", None);
    bad.until(Duration::from_secs(5), |e| {
        *e == siprtmp_core::rtmp::client::ClientEvent::Connected
    })
    .expect("bad client connected");
    bad.socket
        .write_all(&[0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x09, 1, 0, 0, 0])
        .unwrap();
    let closed = server.wait_for(1, STARTUP, |e| matches!(e, Event::Closing { .. }));
    assert!(closed, "the misbehaving client was not closed");
    publisher.finish(PUBLISH_TIME);
    player.finish(STARTUP);
    let got = packets(&dir.join("player.flv"));
    assert_eq!(count(&got, "video"), count(&source, "video"));
    assert_eq!(count(&got, "audio"), count(&source, "audio"));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
