//! The node's HTTP listener against real clients, under every runtime: ffmpeg publishes and
//! plays, `curl` scrapes `/metrics` (which `promtool check metrics` must accept) and reads the
//! JSON API, and dropping the player through the API ends its connection.

use std::time::Duration;

use siprtmp_core::node::{CloseReason, ConnId, Event, HttpConfig, NodeConfig};
use siprtmp_runtime_drivers::Runtime;
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::scrape::{self, promtool_check};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir, wait};

const STARTUP: Duration = Duration::from_secs(15);
const TOKEN: &str = "metrics-test-token";

/// `curl` with the token (or without it), the status code and body.
fn curl(addr: &str, method: &str, path: &str, token: bool) -> (u16, String) {
    scrape::curl(addr, method, path, token.then_some(TOKEN))
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
fn sample(exposition: &str, name: &str) -> Option<u64> {
    scrape::sample(exposition, name).map(|v| v as u64)
}

fn metrics_and_api(runtime: Runtime) {
    let dir = scratch_dir(&format!("http-metrics-{}", runtime.name()));
    let mut config = NodeConfig::default();
    config.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: Some(TOKEN.into()),
        ..HttpConfig::default()
    });
    let mut server = TestServer::start_on(runtime, config, None);
    let addr = server
        .http_listening(STARTUP)
        .unwrap_or_else(|| panic!("{runtime:?}: the HTTP listener did not start"));
    assert_eq!(
        curl(&addr, "GET", "/metrics", false).0,
        401,
        "a request without the token is refused"
    );

    let url = server.url("live/cam");
    let _publisher = ffmpeg_publish(&media("h264_aac_320x240_12fps_20s.flv"), &url);
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::PublishStarted { .. })),
        "{runtime:?}: publish did not start"
    );
    let mut player = ffmpeg_play(&url, &dir.join("player.flv"));
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
        "{runtime:?}: play did not start"
    );
    let player_conn: ConnId = server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::PlayStarted { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();

    let (status, first) = curl(&addr, "GET", "/metrics", true);
    assert_eq!(status, 200, "{first}");
    assert_eq!(sample(&first, "siprtmp_publishers"), Some(1), "{first}");
    assert_eq!(sample(&first, "siprtmp_players"), Some(1), "{first}");
    assert_eq!(
        sample(
            &first,
            "siprtmp_stream_players{app=\"live\",stream=\"cam\"}"
        ),
        Some(1),
        "{first}"
    );
    assert_eq!(
        sample(&first, "siprtmp_connections{state=\"rtmp\"}"),
        Some(2)
    );
    if let Err(complaints) = promtool_check(&first) {
        panic!("{runtime:?}: promtool check metrics: {complaints}\n{first}");
    }
    let received = sample(&first, "siprtmp_received_bytes_total").unwrap();
    let sent = sample(&first, "siprtmp_sent_bytes_total").unwrap();
    assert!(received > 0 && sent > 0, "{first}");
    // Media keeps flowing: both byte counts grow.
    assert!(
        wait::until(Duration::from_secs(10), || {
            let (_, later) = curl(&addr, "GET", "/metrics", true);
            sample(&later, "siprtmp_received_bytes_total").unwrap() > received
                && sample(&later, "siprtmp_sent_bytes_total").unwrap() > sent
        }),
        "{runtime:?}: the byte counters did not grow"
    );

    let (status, streams) = curl(&addr, "GET", "/api/v1/streams", true);
    assert_eq!(status, 200);
    assert!(
        streams.contains(r#""app":"live","name":"cam""#) && streams.contains(r#""players":1"#),
        "{streams}"
    );
    assert!(streams.contains(r#""video_codec":"h264""#), "{streams}");
    let (_, connections) = curl(&addr, "GET", "/api/v1/connections", true);
    let player_id = format!(r#""id":"{}""#, player_conn.0);
    assert!(connections.contains(&player_id), "{connections}");
    assert!(connections.contains("playing live/cam"), "{connections}");

    let drop = format!("/api/v1/connections/{}/drop", player_conn.0);
    assert_eq!(curl(&addr, "POST", &drop, true).0, 200);
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(
            e,
            Event::Closing { conn, reason: CloseReason::DroppedByOperator } if *conn == player_conn
        )),
        "{runtime:?}: the dropped player was not closed"
    );
    assert!(
        player.wait(STARTUP).is_some(),
        "{runtime:?}: ffmpeg kept playing after its connection was dropped"
    );
    assert!(
        wait::until(Duration::from_secs(10), || {
            let (_, now) = curl(&addr, "GET", "/metrics", true);
            sample(&now, "siprtmp_players") == Some(0)
                && sample(
                    &now,
                    "siprtmp_connections_closed_total{reason=\"dropped_by_operator\"}",
                ) == Some(1)
        }),
        "{runtime:?}: the scrape still counts the dropped player"
    );
    assert_eq!(curl(&addr, "POST", &drop, true).0, 404, "dropped twice");
    server.stop();
}

#[test]
fn metrics_and_api_on_every_runtime() {
    for runtime in Runtime::ALL {
        metrics_and_api(runtime);
    }
}
