//! The HTTP API's operator actions and its list of applications against real peers on
//! loopback, with `curl` as the operator's client:
//!
//! - ending a gateway call: a phone (the project's RTMP client) calls a sipp UAS that echoes
//!   RTP and `curl` ends it (sipp's scenario takes the BYE and counts the call successful, the
//!   phone hears `byed`, the metrics' call figures move); a call ringing out ends with a
//!   CANCEL (sipp's ringing UAS), a call ringing the phone with 603 (a sipp UAC that expects
//!   it); the bearer token guards the action;
//! - stopping a recording: ffmpeg publishes to an application that records every publish,
//!   ffmpeg plays it, `curl` stops the recording; ffprobe reads the closed file, the backend
//!   hears `on_record_done`, the player goes on past the stop, `GET /api/v1/streams` says the
//!   stream is no longer recorded;
//! - `GET /api/v1/applications` under one worker and two, and under two workers the actions
//!   reaching the worker that holds the call or the stream.

use std::time::Duration;

use siprtmp_core::node::{
    AppConfig, CallbacksConfig, ConnId, Event, FailurePolicy, HttpConfig, NodeConfig, RecordPolicy,
};
use siprtmp_core::sip::Transport;
use siprtmp_tests::callback_backend::Backend;
use siprtmp_tests::gateway::{gateway_node, gateway_sip, s, EchoMedia, Phone};
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::probe::{count, packets, Packet};
use siprtmp_tests::scrape::{curl, sample};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};
use siprtmp_tests::{media, scratch_dir, wait};

const T: Duration = Duration::from_secs(15);
const AOR: &str = "alice@127.0.0.1";
const TOKEN: &str = "operator-token";

fn with_http(mut node: NodeConfig, token: Option<&str>) -> NodeConfig {
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        ..HttpConfig::default()
    });
    node
}

/// A sample of `/metrics` (0 when absent).
fn metric(http: &str, token: Option<&str>, name: &str) -> f64 {
    let (status, body) = curl(http, "GET", "/metrics", token);
    assert_eq!(status, 200, "{body}");
    sample(&body, name).unwrap_or(0.0)
}

fn calls_total(http: &str, token: Option<&str>, direction: &str, outcome: &str) -> f64 {
    let name =
        format!("siprtmp_gateway_calls_total{{direction=\"{direction}\",outcome=\"{outcome}\"}}");
    metric(http, token, &name)
}

/// The connection id of the gateway client `aor` (from `Event::GatewayBound`).
fn client_id(server: &mut TestServer, aor: &str) -> ConnId {
    gateway_sip(server, aor);
    server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::GatewayBound { conn, aor: a, .. } if a == aor => Some(*conn),
            _ => None,
        })
        .expect("the client's binding")
}

fn end_path(conn: ConnId) -> String {
    format!("/api/v1/calls/{}/end", conn.0)
}

#[test]
fn an_established_call_ended_through_the_api_gets_a_bye() {
    let dir = scratch_dir("api-end-established");
    let node = with_http(gateway_node(Transport::Udp), Some(TOKEN));
    let mut server = TestServer::start_on(Runtime::Mio, node, None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let token = Some(TOKEN);
    let sipp = Sipp::echo_uas(1).start("sipp uas (echo)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let conn = client_id(&mut server, AOR);
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(EchoMedia::Pcmu.tokens());
    phone.call("invite", invite);
    phone.callback("accepted", T).expect("accepted");
    phone.open_streams();
    let frames = EchoMedia::Pcmu.frames(50);
    phone.stream_audio(&frames, Duration::from_millis(200));
    let established = "siprtmp_gateway_calls{state=\"established\"}";
    assert_eq!(metric(&http, token, established), 1.0);

    // Without the token the action is refused, and the call goes on.
    let (status, _) = curl(&http, "POST", &end_path(conn), None);
    assert_eq!(status, 401);
    assert_eq!(metric(&http, token, established), 1.0);

    let (status, body) = curl(&http, "POST", &end_path(conn), token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("{{\"ended\":\"{}\",\"call\":\"established\"}}", conn.0)
    );
    assert!(
        phone.callback("byed", T).is_some(),
        "the phone hears the end: {:?}",
        phone.pending_callbacks()
    );
    sipp.finish(Duration::from_secs(20));
    assert_eq!(
        sipp::totals(&dir),
        (1, 0),
        "sipp's scenario took the BYE and answered it"
    );
    assert!(wait::until(T, || metric(&http, token, established) == 0.0));
    assert_eq!(calls_total(&http, token, "outgoing", "answered"), 1.0);
    let (_, calls) = curl(&http, "GET", "/api/v1/calls", token);
    assert!(calls.contains("\"call\":null"), "{calls}");
    assert_eq!(curl(&http, "POST", &end_path(conn), token).0, 409);
    assert_eq!(curl(&http, "GET", &end_path(conn), token).0, 405);
    assert_eq!(curl(&http, "POST", "/api/v1/calls/12345/end", token).0, 404);
}

#[test]
fn a_call_ringing_out_ended_through_the_api_gets_a_cancel() {
    let dir = scratch_dir("api-end-ringing");
    let node = with_http(gateway_node(Transport::Udp), None);
    let mut server = TestServer::start_on(Runtime::Mio, node, None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let sipp = Sipp::uas("uas_ring_cancel.xml").start("sipp uas (ring, cancel)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let conn = client_id(&mut server, AOR);
    phone.call("invite", vec![s(&sipp.uri("service")), s("pcmu")]);
    assert!(phone.callback("ringing", T).is_some());

    let (status, body) = curl(&http, "POST", &end_path(conn), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"call\":\"outgoing\""), "{body}");
    let rejected = phone
        .callback("rejected", T)
        .expect("the phone hears the end");
    assert_eq!(rejected, vec![s("487 Request Terminated")]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(
        sipp::totals(&dir),
        (1, 0),
        "sipp saw CANCEL (a BYE would fail it), sent 487, got its ACK"
    );
    assert_eq!(calls_total(&http, None, "outgoing", "cancelled"), 1.0);
    assert_eq!(calls_total(&http, None, "outgoing", "answered"), 0.0);
}

#[test]
fn a_call_ringing_in_ended_through_the_api_is_declined() {
    let dir = scratch_dir("api-end-incoming");
    let node = with_http(gateway_node(Transport::Udp), None);
    let mut server = TestServer::start_on(Runtime::Mio, node, None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let conn = client_id(&mut server, AOR);
    let sip = gateway_sip(&mut server, AOR);
    let sipp = Sipp::uac("uac_expect_603.xml", sip)
        .user("alice")
        .start("sipp uac (expects 603)", &dir);
    assert!(phone.callback("invited", T).is_some());

    let (status, body) = curl(&http, "POST", &end_path(conn), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"call\":\"incoming\""), "{body}");
    let cancelled = phone
        .callback("cancelled", T)
        .expect("the phone stops ringing");
    assert_eq!(cancelled.len(), 2, "cancelled(from, to): {cancelled:?}");
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp got 603 Decline");
    assert_eq!(calls_total(&http, None, "incoming", "rejected_6xx"), 1.0);
}

/// The live stream's `live_seconds` in `GET /api/v1/streams`, if it is listed.
fn live_seconds(http: &str, stream_json_prefix: &str) -> Option<f64> {
    let (_, streams) = curl(http, "GET", "/api/v1/streams", None);
    let at = streams.find(stream_json_prefix)?;
    let rest = &streams[at..];
    let value = rest.split("\"live_seconds\":").nth(1)?;
    value.split([',', '}']).next()?.parse().ok()
}

fn last_video_pts(packets: &[Packet]) -> i64 {
    packets
        .iter()
        .filter(|p| p.kind == "video")
        .map(|p| p.pts)
        .max()
        .expect("video packets")
}

#[test]
fn a_recording_stopped_through_the_api_is_closed_and_the_stream_goes_on() {
    let dir = scratch_dir("api-record-stop");
    let backend = Backend::start();
    let mut node = with_http(NodeConfig::default(), None);
    node.server.apps.insert(
        "rec".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    node.server.callbacks = Some(CallbacksConfig {
        on_record_done: Some(backend.url("/record_done")),
        timeout: Duration::from_secs(5),
        on_failure: FailurePolicy::Allow,
        ..CallbacksConfig::default()
    });
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut server = TestServer::start_in(node, None, root.clone());
    let http = server.http_listening(T).expect("the HTTP listener");

    let url = server.url("rec/cam");
    let _publisher = ffmpeg_publish(&media("h264_aac_320x240_12fps_20s.flv"), &url);
    assert!(server.wait_for(1, T, |e| matches!(e, Event::PublishStarted { .. })));
    let played = dir.join("player.flv");
    let mut player = ffmpeg_play(&url, &played);
    assert!(server.wait_for(1, T, |e| matches!(e, Event::PlayStarted { .. })));
    let player_conn = server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::PlayStarted { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    let cam = r#""app":"rec","name":"cam""#;
    assert!(
        wait::until(T, || live_seconds(&http, cam).is_some_and(|s| s >= 3.0)),
        "three seconds recorded"
    );
    let (_, streams) = curl(&http, "GET", "/api/v1/streams", None);
    assert!(streams.contains(r#""recording":true"#), "{streams}");

    let (status, body) = curl(&http, "POST", "/api/v1/streams/rec/cam/record/stop", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"stopped":"rec/cam","path":"rec/cam.flv"}"#);
    let stopped_at = live_seconds(&http, cam).expect("still live");
    assert!(
        server.wait_for(1, T, |e| matches!(
            e,
            Event::RecordStopped { path, error: None, .. } if path == "rec/cam.flv"
        )),
        "the file was closed"
    );
    assert!(
        wait::until(T, || !backend.requests("/record_done").is_empty()),
        "on_record_done"
    );
    let done = backend.requests("/record_done").pop().unwrap();
    assert_eq!(done.field("path"), Some("rec/cam.flv"));
    assert_eq!(done.field("name"), Some("cam"));

    // The closed file is whole: ffprobe reads it through, about the three seconds or more
    // recorded (12 frames a second).
    let file = root.join("rec/cam.flv");
    let recorded = packets(&file);
    assert!(
        count(&recorded, "video") >= 30 && count(&recorded, "audio") >= 30,
        "{} video and {} audio packets",
        count(&recorded, "video"),
        count(&recorded, "audio")
    );
    let size = std::fs::metadata(&file).unwrap().len();

    // The stream goes on, unrecorded, for its player.
    let (_, streams) = curl(&http, "GET", "/api/v1/streams", None);
    assert!(
        streams.contains(r#""players":1,"recording":false"#),
        "{streams}"
    );
    assert!(
        wait::until(T, || live_seconds(&http, cam)
            .is_some_and(|s| s >= stopped_at + 3.0)),
        "the stream stayed live"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        size,
        "nothing more recorded"
    );
    assert_eq!(
        curl(&http, "POST", "/api/v1/streams/rec/cam/record/stop", None).0,
        404,
        "not recorded any more"
    );
    // The player is dropped (so that ffmpeg closes its file) and read: it got the stream
    // well past the recording's end.
    let drop = format!("/api/v1/connections/{}/drop", player_conn.0);
    assert_eq!(curl(&http, "POST", &drop, None).0, 200);
    assert!(player.wait(T).is_some(), "ffmpeg ended with its connection");
    let got = packets(&played);
    assert!(
        last_video_pts(&got) >= last_video_pts(&recorded) + 2000,
        "the player's last frame at {} ms, the recording's at {} ms",
        last_video_pts(&got),
        last_video_pts(&recorded)
    );
    server.stop();
}

/// The application `name`'s object in a `GET /api/v1/applications` answer.
fn application(apps: &str, name: &str) -> Option<String> {
    let at = apps.find(&format!("{{\"name\":\"{name}\","))?;
    let end = apps[at..].find('}')?;
    Some(apps[at..=at + end].to_owned())
}

/// `GET /api/v1/applications` of a server of `workers` workers, while ffmpeg publishes two
/// streams of `live` and one of `rec` (which records every publish) and plays one twice, and
/// a phone is a gateway client: every application with the whole server's counts. With two
/// workers, the recording is stopped and a call ended through worker 0's API whichever
/// worker holds them.
fn applications(workers: usize) {
    let dir = scratch_dir(&format!("api-applications-{workers}"));
    let mut node = with_http(gateway_node(Transport::Udp), None);
    node.server.apps.insert(
        "rec".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    let mut server = if workers == 1 {
        TestServer::start_on(Runtime::Mio, node, None)
    } else {
        TestServer::start_workers(Runtime::Mio, node, workers)
    };
    let http = server.http_listening(T).expect("the HTTP listener");
    let (status, apps) = curl(&http, "GET", "/api/v1/applications", None);
    assert_eq!(status, 200);
    assert_eq!(
        apps,
        concat!(
            r#"{"applications":["#,
            r#"{"name":"rec","configured":true,"record":"all","gateway":false,"connections":0,"publishers":0,"players":0,"calls":null},"#,
            r#"{"name":"sip","configured":false,"record":"off","gateway":true,"connections":0,"publishers":0,"players":0,"calls":0}"#,
            "]}"
        )
    );

    let file = media("h264_aac_320x240_12fps_20s.flv");
    let _a = ffmpeg_publish(&file, &server.url("live/a"));
    let _b = ffmpeg_publish(&file, &server.url("live/b"));
    let _rec = ffmpeg_publish(&file, &server.url("rec/cam"));
    assert!(server.wait_for(3, T, |e| matches!(e, Event::PublishStarted { .. })));
    let _p1 = ffmpeg_play(&server.url("live/a"), &dir.join("p1.flv"));
    let _p2 = ffmpeg_play(&server.url("live/a"), &dir.join("p2.flv"));
    let _phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let expected = [
        (
            "live",
            r#"{"name":"live","configured":false,"record":"off","gateway":false,"connections":4,"publishers":2,"players":2,"calls":null}"#,
        ),
        (
            "rec",
            r#"{"name":"rec","configured":true,"record":"all","gateway":false,"connections":1,"publishers":1,"players":0,"calls":null}"#,
        ),
        (
            "sip",
            r#"{"name":"sip","configured":false,"record":"off","gateway":true,"connections":1,"publishers":0,"players":0,"calls":0}"#,
        ),
    ];
    let all_counted = || {
        let (_, apps) = curl(&http, "GET", "/api/v1/applications", None);
        expected
            .iter()
            .all(|(name, json)| application(&apps, name).as_deref() == Some(*json))
    };
    assert!(
        wait::until(T, all_counted),
        "{workers} worker(s): {}",
        curl(&http, "GET", "/api/v1/applications", None).1
    );

    if workers > 1 {
        // Whichever worker publishes `rec/cam`, worker 0's API stops its recording.
        let (status, body) = curl(&http, "POST", "/api/v1/streams/rec/cam/record/stop", None);
        assert!(status == 200 || status == 202, "{status} {body}");
        assert!(server.wait_for(1, T, |e| matches!(
            e,
            Event::RecordStopped { path, error: None, .. } if path == "rec/cam.flv"
        )));
        let not_recorded = || {
            let (_, streams) = curl(&http, "GET", "/api/v1/streams", None);
            streams.contains(r#""app":"rec","name":"cam""#)
                && !streams.contains(r#""recording":true"#)
        };
        assert!(wait::until(T, not_recorded));
    }
    server.stop();
}

#[test]
fn the_applications_under_one_worker() {
    applications(1);
}

#[test]
fn the_applications_under_two_workers() {
    applications(2);
}

/// Under two workers, a call held by worker 1 (the kernel spreads the phones over the
/// workers: phones connect until one lands there) is ended through worker 0's API: 202, and
/// sipp gets its BYE.
#[test]
fn under_two_workers_a_call_is_ended_by_the_worker_that_holds_it() {
    let dir = scratch_dir("api-end-workers");
    let node = with_http(gateway_node(Transport::Udp), None);
    let mut server = TestServer::start_workers(Runtime::Mio, node, 2);
    let http = server.http_listening(T).expect("the HTTP listener");
    let mut phones = Vec::new();
    let mut chosen = None;
    for i in 0..16 {
        let aor = format!("caller{i}@127.0.0.1");
        let phone = Phone::connect(server.addr, &aor, vec![]).expect("connect");
        let conn = client_id(&mut server, &aor);
        phones.push(phone);
        if conn.worker().0 == 1 {
            chosen = Some((phones.len() - 1, conn));
            break;
        }
    }
    let (index, conn) = chosen.expect("one of 16 phones on worker 1");
    let phone = &mut phones[index];
    let sipp = Sipp::echo_uas(1).start("sipp uas (echo)", &dir);
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(EchoMedia::Pcmu.tokens());
    phone.call("invite", invite);
    phone.callback("accepted", T).expect("accepted");

    let (status, body) = curl(&http, "POST", &end_path(conn), None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, format!("{{\"ending\":\"{}\"}}", conn.0));
    assert!(phone.callback("byed", T).is_some());
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "sipp took the BYE");
    let established = "siprtmp_gateway_calls{state=\"established\"}";
    assert!(wait::until(T, || metric(&http, None, established) == 0.0));
    assert_eq!(
        curl(&http, "POST", &end_path(conn), None).0,
        202,
        "forwarded again"
    );
}
