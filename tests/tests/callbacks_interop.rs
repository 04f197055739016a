//! nginx-rtmp-style HTTP callbacks against ffmpeg and a small HTTP backend written here (a
//! std `TcpListener` on a thread that records the form fields of every request), under every
//! runtime: an allowed publish plays, a refused publish makes ffmpeg fail, a play redirected
//! by a 3xx plays the other stream, and the `on_play_done`, `on_publish_done`, `on_done` and
//! `on_record_done` notifications arrive with nginx-rtmp's field names and the right values
//! (the recording's path names a file ffprobe reads); a backend that
//! never answers or is down gets the failure policy (allow lets ffmpeg publish, refuse makes
//! it fail).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use siprtmp_core::node::{
    AppConfig, CallbackUrl, CallbacksConfig, Event, FailurePolicy, NodeConfig, RecordPolicy,
};
use siprtmp_runtime_drivers::Runtime;
use siprtmp_tests::callback_backend::{Backend, Got, FORBIDDEN, OK};
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::ports::{free_tcp_port, LOOPBACK};
use siprtmp_tests::probe::{count, packets};
use siprtmp_tests::runtimes::on_every_runtime_at_once;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir, wait};

const STARTUP: Duration = Duration::from_secs(15);

/// The backend's answers: refuses the publish of `refused`, redirects the play of `alias` to
/// `cam` (a 302 with a Location), allows the rest.
fn answer(got: &Got) -> &'static str {
    match (got.path.as_str(), got.field("name")) {
        ("/publish", Some("refused")) => FORBIDDEN,
        ("/play", Some("alias")) => {
            "HTTP/1.1 302 Found\r\nLocation: cam\r\nContent-Length: 0\r\n\r\n"
        }
        _ => OK,
    }
}

fn callbacks(runtime: Runtime) {
    let dir = scratch_dir(&format!("callbacks-{}", runtime.name()));
    let backend = Backend::answering(answer);
    let url = |path: &str| Some(backend.url(path));
    let mut config = NodeConfig::default();
    config.server.callbacks = Some(CallbacksConfig {
        on_publish: url("/publish"),
        on_play: url("/play"),
        on_done: url("/done"),
        on_publish_done: url("/publish_done"),
        on_play_done: url("/play_done"),
        on_record_done: url("/record_done"),
        timeout: Duration::from_secs(5),
        on_failure: FailurePolicy::Refuse,
        ..CallbacksConfig::default()
    });
    // `live` records every publish (nginx-rtmp's `record all`), into this test's own root.
    config.server.apps.insert(
        "live".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut server = TestServer::start_on_with(runtime, config, None, root.clone(), None);
    let requests = |path: &str| backend.requests(path);

    // Allowed: the publish goes live.
    let publisher = ffmpeg_publish(
        &media("h264_aac_320x240_12fps_20s.flv"),
        &server.url("live/cam?token=t1"),
    );
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(
            e,
            Event::PublishStarted { stream, .. } if stream == "live/cam"
        )),
        "{runtime:?}: the allowed publish did not start"
    );
    let publish = requests("/publish").pop().expect("on_publish");
    assert_eq!(
        publish.names(),
        [
            "app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call", "name",
            "type", "token"
        ],
        "{runtime:?}: nginx-rtmp's fields, then the query's"
    );
    assert_eq!(publish.field("call"), Some("publish"));
    assert_eq!(publish.field("app"), Some("live"));
    assert_eq!(publish.field("name"), Some("cam"));
    assert_eq!(publish.field("type"), Some("live"));
    assert_eq!(publish.field("token"), Some("t1"));
    assert_eq!(publish.field("addr"), Some("127.0.0.1"));
    assert!(
        publish.field("flashver").is_some_and(|v| !v.is_empty()),
        "{publish:?}"
    );
    assert!(
        publish
            .field("tcurl")
            .is_some_and(|v| v.starts_with("rtmp://127.0.0.1:")),
        "{publish:?}"
    );

    // Redirected: a play of `alias` plays `cam`, and media arrives.
    let out = dir.join("alias.flv");
    let player = ffmpeg_play(&server.url("live/alias"), &out);
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(
            e,
            Event::PlayStarted { stream, .. } if stream == "live/cam"
        )),
        "{runtime:?}: the redirected play did not start on live/cam"
    );
    assert!(
        wait::until(STARTUP, || std::fs::metadata(&out)
            .is_ok_and(|m| m.len() > 20_000)),
        "{runtime:?}: the redirected player received no media"
    );
    let play = requests("/play").pop().expect("on_play");
    assert_eq!(
        (play.field("call"), play.field("name")),
        (Some("play"), Some("alias"))
    );
    for field in ["start", "duration", "reset", "clientid"] {
        assert!(
            play.field(field).is_some(),
            "{runtime:?}: {field} in {play:?}"
        );
    }

    // Refused: ffmpeg fails.
    let mut refused = ffmpeg_publish(
        &media("h264_aac_320x240_12fps_20s.flv"),
        &server.url("live/refused"),
    );
    let status = refused.wait(STARTUP).expect("a refused ffmpeg exits");
    assert!(
        !status.success(),
        "{runtime:?}: a refused publish succeeded"
    );
    assert!(
        !server
            .events()
            .iter()
            .any(|e| matches!(e, Event::PublishStarted { stream, .. } if stream == "live/refused")),
        "{runtime:?}: the refused publish went live"
    );

    // The player leaves, then the publisher: the ends are told.
    player.signal("-KILL");
    assert!(
        wait::until(STARTUP, || !requests("/play_done").is_empty()),
        "{runtime:?}: no on_play_done"
    );
    let play_done = requests("/play_done").pop().unwrap();
    assert_eq!(play_done.field("call"), Some("play_done"));
    assert_eq!(play_done.field("name"), Some("cam"));
    assert_eq!(play_done.field("app"), Some("live"));
    assert_eq!(play_done.field("clientid"), play.field("clientid"));
    publisher.signal("-KILL");
    assert!(
        wait::until(STARTUP, || !requests("/publish_done").is_empty()
            && requests("/done").len() >= 2),
        "{runtime:?}: no on_publish_done or on_done"
    );
    let publish_done = requests("/publish_done").pop().unwrap();
    assert_eq!(publish_done.field("call"), Some("publish_done"));
    assert_eq!(publish_done.field("name"), Some("cam"));
    assert_eq!(publish_done.field("token"), Some("t1"));
    let done: Vec<(Option<String>, Option<String>)> = requests("/done")
        .iter()
        .map(|g| {
            (
                g.field("call").map(str::to_owned),
                g.field("clientid").map(str::to_owned),
            )
        })
        .collect();
    let done_of = |clientid: Option<&str>| {
        done.iter()
            .any(|(call, id)| call.as_deref() == Some("done") && id.as_deref() == clientid)
    };
    assert!(
        done_of(play.field("clientid")) && done_of(publish.field("clientid")),
        "{runtime:?}: on_done for both: {done:?}"
    );

    // The recording of the publish is closed and named to the backend; the file it names
    // is the stream, as ffprobe reads it.
    assert!(
        wait::until(STARTUP, || !requests("/record_done").is_empty()),
        "{runtime:?}: no on_record_done"
    );
    let record_done = requests("/record_done").pop().unwrap();
    assert_eq!(record_done.field("call"), Some("record_done"));
    assert_eq!(record_done.field("app"), Some("live"));
    assert_eq!(record_done.field("name"), Some("cam"));
    assert_eq!(record_done.field("recorder"), Some(""));
    assert_eq!(record_done.field("token"), Some("t1"), "{record_done:?}");
    let path = record_done.field("path").expect("a path");
    let file = root.join(path);
    let recorded = packets(&file);
    assert!(
        count(&recorded, "video") > 10 && count(&recorded, "audio") > 10,
        "{runtime:?}: {} holds {} video and {} audio packets",
        file.display(),
        count(&recorded, "video"),
        count(&recorded, "audio")
    );
    assert_eq!(
        requests("/record_done").len(),
        1,
        "{runtime:?}: one recording, one notification"
    );
    server.stop();
}

#[test]
fn callbacks_on_every_runtime() {
    on_every_runtime_at_once(callbacks);
}

/// A backend that accepts connections and never answers (it holds them open).
fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// An address where nothing listens (and, below the ephemeral range, where no other test's
/// server will).
fn down_backend() -> SocketAddr {
    SocketAddr::new(LOOPBACK, free_tcp_port(LOOPBACK))
}

fn failure_policy(runtime: Runtime) {
    for (backend, policy) in [
        (silent_backend(), FailurePolicy::Allow),
        (down_backend(), FailurePolicy::Refuse),
    ] {
        let mut config = NodeConfig::default();
        config.server.callbacks = Some(CallbacksConfig {
            on_publish: Some(CallbackUrl::parse(&format!("http://{backend}/publish")).unwrap()),
            timeout: Duration::from_millis(500),
            on_failure: policy,
            ..CallbacksConfig::default()
        });
        let mut server = TestServer::start_on(runtime, config, None);
        let mut publisher = ffmpeg_publish(
            &media("h264_aac_320x240_12fps_20s.flv"),
            &server.url("live/cam"),
        );
        match policy {
            FailurePolicy::Allow => assert!(
                server.wait_for(1, STARTUP, |e| matches!(e, Event::PublishStarted { .. })),
                "{runtime:?}: a silent backend under allow: the publish did not start"
            ),
            FailurePolicy::Refuse => {
                let status = publisher.wait(STARTUP).expect("a refused ffmpeg exits");
                assert!(
                    !status.success(),
                    "{runtime:?}: published with the backend down"
                );
                assert!(
                    !server
                        .events()
                        .iter()
                        .any(|e| matches!(e, Event::PublishStarted { .. })),
                    "{runtime:?}: the publish went live with the backend down"
                );
            }
        }
        server.stop();
    }
}

#[test]
fn failure_policy_on_every_runtime() {
    on_every_runtime_at_once(failure_policy);
}
