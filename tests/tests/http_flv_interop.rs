//! HTTP-FLV against real clients, under every runtime: ffmpeg publishes over RTMP, an ffmpeg
//! reads `http://HOST:PORT/live/cam.flv` and saves what it gets, and the saved file holds
//! every frame from its join point on, starting on a keyframe; the response ends when the
//! publisher stops (the reader exits on its own). `curl --http1.0` reads the same stream
//! close-delimited (no chunked encoding) with the same result, and gets 404 for a stream
//! nobody publishes.
//!
//! How the frames are counted (`probe::assert_receives_all_from_join`): ffprobe lists the
//! audio and video packets of the source file and of the saved one (timestamp, keyframe flag,
//! MD5 of the payload; decoder configurations are not packets). The join point is the
//! timestamp of the first packet the reader saved (`-copyts` keeps the stream's timestamps);
//! for each of audio and video, the source's packets at or after it must be exactly the
//! reader's packets, in order, same timestamps and same payloads, and the reader's first
//! video packet must be a keyframe.

use std::process::Command;
use std::time::Duration;

use siprtmp_core::node::{Event, HttpConfig, NodeConfig};
use siprtmp_runtime_drivers::Runtime;
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish, Peer};
use siprtmp_tests::probe::{assert_receives_all_from_join, count, packets};
use siprtmp_tests::runtimes::on_every_runtime_at_once;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(15);
/// The media file is 20 s long; publishing in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(45);
const FILE: &str = "h264_aac_320x240_12fps_20s.flv";

fn http_flv(runtime: Runtime) {
    let dir = scratch_dir(&format!("http-flv-{}", runtime.name()));
    let mut config = NodeConfig::default();
    config.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    let mut server = TestServer::start_on(runtime, config, None);
    let addr = server
        .http_listening(STARTUP)
        .unwrap_or_else(|| panic!("{runtime:?}: the HTTP listener did not start"));
    let missing = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{addr}/live/nobody.flv"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");

    let mut publisher = ffmpeg_publish(&media(FILE), &server.url("live/cam"));
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::PublishStarted { .. })),
        "{runtime:?}: publish did not start"
    );
    let out = dir.join("http-player.flv");
    let mut player = ffmpeg_play(&format!("http://{addr}/live/cam.flv"), &out);
    // An HTTP/1.0 client: no chunked encoding, the body ends with the connection.
    let out_10 = dir.join("http10-player.flv");
    let mut curl_10 = Peer::spawn_command(
        "curl --http1.0",
        Command::new("curl")
            .args(["-s", "-S", "-f", "--http1.0", "-m", "60", "-o"])
            .arg(&out_10)
            .arg(format!("http://{addr}/live/cam.flv")),
    );
    assert!(
        server.wait_for(2, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
        "{runtime:?}: the HTTP plays did not start"
    );
    assert!(
        publisher.wait(PUBLISH_TIME).is_some_and(|s| s.success()),
        "{runtime:?}: the publisher did not finish"
    );
    // The publisher is gone: the response ends, and the reader finishes on its own.
    let status = player.wait(STARTUP);
    assert!(
        status.is_some_and(|s| s.success()),
        "{runtime:?}: the HTTP reader did not end with the stream: {status:?}"
    );
    let status = curl_10.wait(STARTUP);
    assert!(
        status.is_some_and(|s| s.success()),
        "{runtime:?}: the HTTP/1.0 reader did not end with the stream: {status:?}"
    );
    let source = packets(&media(FILE));
    for (who, file) in [("ffmpeg", &out), ("curl --http1.0", &out_10)] {
        let got = packets(file);
        assert!(
            count(&got, "video") > 100,
            "{runtime:?} {who}: {} video frames",
            count(&got, "video")
        );
        assert_receives_all_from_join(&format!("{runtime:?} HTTP-FLV {who}"), &source, &got);
    }
    server.stop();
}

#[test]
fn ffmpeg_reads_http_flv_with_every_frame_from_its_join_on_every_runtime() {
    on_every_runtime_at_once(http_flv);
}
