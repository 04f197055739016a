//! Relays from the config file, through the binary: an edge whose `[apps.live]` pulls from an
//! origin (another `siprtmp`) says so at start, plays a stream published to the origin to an
//! ffmpeg player through one pull, logs the pull's life, and closes it once idle.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{config_file, LoggingServer};
use siprtmp_tests::peers::{ffmpeg_play, Peer};
use siprtmp_tests::probe::{count, packets};
use siprtmp_tests::{media, scratch_dir};

#[test]
fn an_edge_configured_in_its_file_pulls_from_an_origin() {
    let dir = scratch_dir("cli_relay_edge");
    let origin = LoggingServer::start(&dir.join("origin"));
    let origin_addr = origin.rtmp_addr();
    let config = config_file(
        "cli_relay_edge",
        "edge.toml",
        &format!(
            "[apps.live]\npull = \"rtmp://{origin_addr}/live?token=t\"\n\
             [relay]\npull_idle_timeout_secs = 1\nbackoff_min_secs = 0.2\n"
        ),
    );
    let edge = LoggingServer::start_with(
        &dir.join("edge"),
        &["--config".as_ref(), config.as_os_str()],
    );
    let edge_addr = edge.rtmp_addr();
    let upstream = format!("rtmp://{origin_addr}/live");
    edge.wait_line(&format!(
        "relay: app 'live' pulls from {upstream} ({origin_addr})"
    ));

    let player = ffmpeg_play(
        &format!("rtmp://{edge_addr}/live/bin"),
        &dir.join("got.flv"),
    );
    edge.wait_line("play started");
    // The origin has no publisher yet: the pull waits there, as the player does here.
    origin.wait_line("play started: live/bin");
    let publisher = Peer::spawn_command(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-t", "3", "-i"])
            .arg(media("h264_aac_320x240_12fps_20s.flv"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{origin_addr}/live/bin")),
    );
    let live = edge.wait_line("pull live/bin: live with");
    assert!(
        live.contains(&upstream) && !live.contains("token"),
        "{live}"
    );
    publisher.finish(Duration::from_secs(30));
    player.finish(Duration::from_secs(15));
    let got = packets(&dir.join("got.flv"));
    assert!(count(&got, "video") >= 30, "video frames through the edge");
    assert!(count(&got, "audio") >= 100, "audio frames through the edge");
    let ended = edge.wait_line("ended: idle");
    assert!(
        ended.contains(&format!("pull live/bin: {upstream}: ended")),
        "{ended}"
    );
}
