//! The status page in a real browser: ffmpeg publishes over RTMP, headless Chromium opens
//! `http://HOST:PORT/?play=live/cam`, and through the DevTools protocol the test sees the page
//! list the stream (from the JSON API) and its `<video>` element play it (HTTP-FLV demuxed by
//! mpegts.js, both served by siprtmp): the position passes 1 s and frames were decoded.

use std::time::{Duration, Instant};

use siprtmp_core::node::{Event, HttpConfig, NodeConfig};
use siprtmp_runtime_drivers::Runtime;
use siprtmp_tests::devtools::Chromium;
use siprtmp_tests::peers::ffmpeg_publish;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(15);
/// How long the video may take to play past 1 s (the file lasts 20 s).
const PLAYS_WITHIN: Duration = Duration::from_secs(15);

/// What the page shows: the streams it lists, the video's position and decoded frames.
const PROBE: &str = "JSON.stringify({\
    streams: [...document.querySelectorAll('#streams tr[data-stream]')].map(r => r.dataset.stream),\
    time: document.getElementById('video').currentTime,\
    frames: document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames,\
    error: document.getElementById('error').textContent})";

/// A number field of the probe's answer (as the DevTools reply quotes it).
fn field(reply: &str, name: &str) -> f64 {
    let key = format!("\\\"{name}\\\":");
    let at = reply
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or(reply.len());
    let digits: String = reply[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().unwrap_or(0.0)
}

#[test]
fn the_page_lists_the_stream_and_its_player_plays_it() {
    let dir = scratch_dir("web-page-browser");
    let mut config = NodeConfig::default();
    config.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    let mut server = TestServer::start_on(Runtime::Mio, config, None);
    let addr = server
        .http_listening(STARTUP)
        .expect("the HTTP listener did not start");
    let _publisher = ffmpeg_publish(
        &media("h264_aac_320x240_12fps_20s.flv"),
        &server.url("live/cam"),
    );
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::PublishStarted { .. })),
        "publish did not start"
    );
    let mut browser = Chromium::launch(
        &format!("http://{addr}/?play=live/cam"),
        &dir.join("profile"),
        STARTUP,
    );
    let deadline = Instant::now() + PLAYS_WITHIN;
    let mut reply;
    loop {
        reply = browser.evaluate(PROBE);
        let listed = reply.contains(r#"\"streams\":[\"live/cam\"]"#);
        if listed && field(&reply, "time") > 1.0 && field(&reply, "frames") > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not list and play the stream: {reply}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("the page after playing: {reply}");
    // The page's player is an HTTP-FLV play like any other.
    assert!(
        server
            .events()
            .iter()
            .any(|e| matches!(e, Event::PlayStarted { stream, .. } if stream == "live/cam")),
        "no play seen by the server"
    );
    drop(browser);
    server.stop();
}
