//! The conformance suite: every black-box scenario, written once, run against each driver
//! (mio, tokio, std threads, async-std). Whatever a client can observe (status codes, the
//! media it receives, who gets disconnected and why) comes from the core, so it must be the
//! same under every driver; the scenarios check it against the source media and fixed
//! transcripts rather than against one another.
//!
//! Recording, playback of recorded files and application decisions are core behaviour too:
//! every driver runs the node's file requests on a background thread and answers its
//! decisions through the embedding application's decider, so those scenarios run on each
//! driver as well.
//!
//! Loopback only. Every wait is for an event (a server event, a client event, a peer's exit)
//! with a deadline; the only fixed durations are scenario parameters (how long a client
//! stays alive while pings are due), never waits hoping that something has happened.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::node::ServerConfig;
use siprtmp_core::node::{CloseReason, Decision, Event, NodeConfig, Question};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_tests::events::conn_of;
use siprtmp_tests::nodes::recording_node;
use siprtmp_tests::peers::{ffmpeg_clip, ffmpeg_play, ffmpeg_publish, rtmpdump_play};
use siprtmp_tests::probe::{assert_receives_all_from_join, assert_receives_everything};
use siprtmp_tests::probe::{duration, packets};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::tcp_client::TcpRtmpClient;

const STARTUP: Duration = Duration::from_secs(15);
/// The clips are 4 s long; publishing in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(30);
/// Length of the published clips: two GOPs of the 2 s-GOP test media.
const CLIP_SECONDS: u32 = 4;
/// The late player joins once the stream has passed this media time (after the second
/// keyframe, at 2023 ms).
const LATE_JOIN_MS: u32 = 2200;

fn is_play_started(e: &Event) -> bool {
    matches!(e, Event::PlayStarted { .. })
}

fn is_publish_started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
}

/// A scratch directory per scenario and runtime.
fn scratch(scenario: &str, runtime: Runtime) -> PathBuf {
    scratch_dir(&format!("conformance-{scenario}-{runtime:?}"))
}

/// ffmpeg publishes; an ffmpeg and an rtmpdump player waiting beforehand receive every frame;
/// a player joining after the second keyframe starts on it (from the GOP cache) and receives
/// everything from there.
fn ffmpeg_publish_reaches_every_player(runtime: Runtime) {
    let dir = scratch("publish", runtime);
    let clip = ffmpeg_clip(
        "h264_aac_320x240_12fps_20s.flv",
        CLIP_SECONDS,
        &dir.join("clip.flv"),
    );
    let source = packets(&clip);
    let mut server = TestServer::start_on(runtime, NodeConfig::default(), None);
    let url = server.url("live/s1");

    let early_ffmpeg = ffmpeg_play(&url, &dir.join("ffmpeg.flv"));
    let early_rtmpdump = rtmpdump_play(&url, &dir.join("rtmpdump.flv"));
    // An in-process player tells when the stream has passed the late player's join point.
    let mut watcher = TcpRtmpClient::play(server.addr, "live", "s1", None);
    assert!(
        server.wait_for(3, STARTUP, is_play_started),
        "players did not start"
    );
    let publisher = ffmpeg_publish(&clip, &url);
    assert!(
        server.wait_for(1, STARTUP, is_publish_started),
        "publish did not start"
    );
    let passed_join = watcher.until(STARTUP, |e| {
        matches!(e, ClientEvent::Media(m) if m.type_id == type_id::VIDEO && m.timestamp >= LATE_JOIN_MS)
    });
    assert!(
        passed_join.is_some(),
        "the stream never reached {LATE_JOIN_MS} ms"
    );
    let late = ffmpeg_play(&url, &dir.join("late.flv"));

    publisher.finish(PUBLISH_TIME);
    early_ffmpeg.finish(STARTUP);
    early_rtmpdump.finish(STARTUP);
    late.finish(STARTUP);
    drop(watcher);

    assert_receives_everything("ffmpeg", &source, &packets(&dir.join("ffmpeg.flv")));
    assert_receives_everything("rtmpdump", &source, &packets(&dir.join("rtmpdump.flv")));
    let late = packets(&dir.join("late.flv"));
    assert!(
        late.first().is_some_and(|p| p.pts >= 2000),
        "the late player did not start at the second keyframe: {:?}",
        late.first()
    );
    assert_receives_all_from_join("late ffmpeg", &source, &late);
}

/// A client announcing a message larger than the server accepts is closed; nobody else is,
/// and a player of a live stream keeps getting every frame.
fn bad_bytes_close_only_that_client(runtime: Runtime) {
    use std::io::Write;
    let dir = scratch("bad_bytes", runtime);
    let clip = ffmpeg_clip(
        "h264_speex16k_320x240_12fps_20s.flv",
        CLIP_SECONDS,
        &dir.join("clip.flv"),
    );
    let source = packets(&clip);
    let mut server = TestServer::start_on(runtime, NodeConfig::default(), None);
    let url = server.url("live/s1");
    let player = ffmpeg_play(&url, &dir.join("player.flv"));
    assert!(server.wait_for(1, STARTUP, is_play_started));
    let publisher = ffmpeg_publish(&clip, &url);
    assert!(server.wait_for(1, STARTUP, is_publish_started));

    let mut bad = TcpRtmpClient::connect(server.addr, "live", None);
    bad.until(STARTUP, |e| *e == ClientEvent::Connected)
        .expect("bad client connected");
    let bad_conn = conn_of(&mut server, bad.socket.local_addr().unwrap());
    // A type-0 chunk header on chunk stream 4 announcing a 16 MiB video message.
    bad.socket
        .write_all(&[0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x09, 1, 0, 0, 0])
        .unwrap();
    assert!(
        server.wait_for(
            1,
            STARTUP,
            |e| matches!(e, Event::Closing { conn, .. } if *conn == bad_conn)
        ),
        "the misbehaving client was not closed"
    );
    publisher.finish(PUBLISH_TIME);
    player.finish(STARTUP);

    assert_receives_everything("player", &source, &packets(&dir.join("player.flv")));
    let closed: Vec<&Event> = server
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Closing { .. }))
        .collect();
    assert!(
        closed
            .iter()
            .all(|e| matches!(e, Event::Closing { conn, .. } if *conn == bad_conn)),
        "someone else was closed: {closed:?}"
    );
}

/// A player that never reads is disconnected once its backlog passes the hard limit, while
/// the publisher and a reading player go on: the reader gets every frame.
fn stalled_player_is_dropped_and_harms_nobody(runtime: Runtime) {
    let dir = scratch("stalled", runtime);
    let clip = ffmpeg_clip(
        "h264_aac_320x240_12fps_20s.flv",
        CLIP_SECONDS,
        &dir.join("clip.flv"),
    );
    let source = packets(&clip);
    // Soft limit = hard limit: no frame dropping, so the stalled player's backlog grows at the
    // stream's full rate (about 30 KB/s) and passes the limit well within the clip.
    let config = NodeConfig {
        server: ServerConfig {
            player_soft_backlog: 24 * 1024,
            player_hard_backlog: 24 * 1024,
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut server = TestServer::start_on(runtime, config, Some(8 * 1024));
    let url = server.url("live/s1");
    let reader = ffmpeg_play(&url, &dir.join("reader.flv"));
    let stalled = TcpRtmpClient::play(server.addr, "live", "s1", Some(4096));
    let stalled_conn = conn_of(&mut server, stalled.socket.local_addr().unwrap());
    assert!(
        server.wait_for(2, STARTUP, is_play_started),
        "players did not start"
    );
    let publisher = ffmpeg_publish(&clip, &url);
    let dropped = server.wait_for(1, PUBLISH_TIME, |e| {
        matches!(e, Event::Closing { conn, reason: CloseReason::PlayerBacklog { .. } } if *conn == stalled_conn)
    });
    assert!(
        dropped,
        "the stalled player was not disconnected: {:?}",
        server.events()
    );
    publisher.finish(PUBLISH_TIME);
    reader.finish(STARTUP);
    assert_receives_everything("reading player", &source, &packets(&dir.join("reader.flv")));
    drop(stalled);
}

/// With short ping settings, a client that stops answering is closed as dead (no earlier than
/// `ping_interval + dead_timeout` after it fell silent), while a client that answers the
/// server's pings stays connected through several such periods.
fn silent_client_is_closed_by_the_ping_timeout(runtime: Runtime) {
    let ping_interval = Duration::from_millis(500);
    let dead_timeout = Duration::from_millis(500);
    let config = NodeConfig {
        server: ServerConfig {
            ping_interval,
            dead_timeout,
            // The node's first liveness check of a connection is at the handshake deadline
            // (counted from accept); keep it before the first ping is due so pings run on
            // their own schedule. The in-process handshake takes milliseconds.
            handshake_timeout: Duration::from_millis(450),
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut server = TestServer::start_on(runtime, config, None);

    let mut silent = TcpRtmpClient::connect(server.addr, "live", None);
    silent
        .until(STARTUP, |e| *e == ClientEvent::Connected)
        .expect("silent client connected");
    let silent_since = Instant::now();
    let silent_conn = conn_of(&mut server, silent.socket.local_addr().unwrap());

    let mut answering = TcpRtmpClient::connect(server.addr, "live", None);
    answering
        .until(STARTUP, |e| *e == ClientEvent::Connected)
        .expect("answering client connected");
    let answering_conn = conn_of(&mut server, answering.socket.local_addr().unwrap());
    // Reads for three dead-peer periods, answering every ping (the client machine does).
    let alive_for = 3 * (ping_interval + dead_timeout);
    let answering = std::thread::spawn(move || {
        let ended = answering.until(alive_for, |e| matches!(e, ClientEvent::Status(..)));
        (answering, ended)
    });

    assert!(
        server.wait_for(1, STARTUP, |e| {
            matches!(e, Event::Closing { conn, reason: CloseReason::Silent { .. } } if *conn == silent_conn)
        }),
        "the silent client was not closed: {:?}",
        server.events()
    );
    let closed_after = silent_since.elapsed();
    assert!(
        closed_after >= ping_interval + dead_timeout - Duration::from_millis(50),
        "closed after only {closed_after:?}"
    );
    let (answering, ended) = answering.join().unwrap();
    assert_eq!(ended, None, "the answering client saw an unexpected status");
    let closings: Vec<&Event> = server
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Closing { conn, .. } if *conn == answering_conn))
        .collect();
    assert!(
        closings.is_empty(),
        "the answering client was closed: {closings:?}"
    );
    drop((silent, answering));
}

/// What a client saw, as comparable lines.
fn describe(event: &ClientEvent, sent: &[RtmpMessage]) -> String {
    match event {
        ClientEvent::HandshakeDone => "handshake".into(),
        ClientEvent::Connected => "connected".into(),
        ClientEvent::ConnectRejected(code) => format!("rejected {code}"),
        ClientEvent::StreamCreated(id) => format!("stream {id}"),
        ClientEvent::Status(id, code) => format!("status {id} {code}"),
        ClientEvent::Media(m) => {
            let index = sent
                .iter()
                .position(|s| s.type_id == m.type_id && s.payload == m.payload);
            match index {
                Some(i) => format!("media #{i} type {} at {}", m.type_id, m.timestamp),
                None if m.type_id == type_id::DATA_AMF0 => {
                    format!("data {} at {}", amf0_name(&m.payload), m.timestamp)
                }
                None => format!("unknown media type {} at {}", m.type_id, m.timestamp),
            }
        }
        ClientEvent::Command(c) => format!("command {}", c.name),
        ClientEvent::StreamEof(id) => format!("stream eof {id}"),
    }
}

/// The leading AMF0 string of a data message (its handler name), or `?`.
fn amf0_name(payload: &[u8]) -> String {
    match payload {
        [0x02, hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            rest.get(..len).map_or("?".into(), |name| {
                String::from_utf8_lossy(name).into_owned()
            })
        }
        _ => "?".into(),
    }
}

/// Records every event the client sees until one matches `until`.
fn record(
    client: &mut TcpRtmpClient,
    log: &RefCell<Vec<String>>,
    sent: &[RtmpMessage],
    until: impl Fn(&ClientEvent) -> bool,
) {
    let seen = client.until(STARTUP, |e| {
        log.borrow_mut().push(describe(e, sent));
        until(e)
    });
    assert!(seen.is_some(), "stopped waiting after {:?}", log.borrow());
}

fn is_status(code: &'static str) -> impl Fn(&ClientEvent) -> bool {
    move |e| matches!(e, ClientEvent::Status(_, c) if c == code)
}

/// The whole exchange of a scripted player and publisher, status codes and media, is the same
/// fixed transcript under every driver.
fn status_codes_and_media_are_the_same(runtime: Runtime) {
    let mut server = TestServer::start_on(runtime, NodeConfig::default(), None);
    let media: Vec<RtmpMessage> = vec![
        // AVC sequence header, keyframe, AAC sequence header, AAC frame, inter frame.
        RtmpMessage::new(
            type_id::VIDEO,
            1,
            0,
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0d]),
        ),
        RtmpMessage::new(
            type_id::VIDEO,
            1,
            0,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
        ),
        RtmpMessage::new(
            type_id::AUDIO,
            1,
            0,
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        ),
        RtmpMessage::new(
            type_id::AUDIO,
            1,
            23,
            Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04]),
        ),
        RtmpMessage::new(
            type_id::VIDEO,
            1,
            83,
            Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]),
        ),
    ];
    let player_log = RefCell::new(Vec::new());
    let publisher_log = RefCell::new(Vec::new());

    let mut player = TcpRtmpClient::connect(server.addr, "live", None);
    record(&mut player, &player_log, &media, |e| {
        *e == ClientEvent::Connected
    });
    player.machine.create_stream();
    player.flush();
    record(&mut player, &player_log, &media, |e| {
        matches!(e, ClientEvent::StreamCreated(_))
    });
    player.machine.play(1, "s1", -2.0);
    player.flush();
    record(
        &mut player,
        &player_log,
        &media,
        is_status("NetStream.Play.Start"),
    );

    let mut publisher = TcpRtmpClient::connect(server.addr, "live", None);
    record(&mut publisher, &publisher_log, &media, |e| {
        *e == ClientEvent::Connected
    });
    publisher.machine.create_stream();
    publisher.flush();
    record(&mut publisher, &publisher_log, &media, |e| {
        matches!(e, ClientEvent::StreamCreated(_))
    });
    publisher.machine.publish(1, "s1");
    publisher.flush();
    record(
        &mut publisher,
        &publisher_log,
        &media,
        is_status("NetStream.Publish.Start"),
    );
    for message in &media {
        publisher.machine.send_media(message);
    }
    publisher.flush();
    let last = media.len() - 1;
    record(
        &mut player,
        &player_log,
        &media,
        |e| matches!(e, ClientEvent::Media(m) if m.payload == media[last].payload),
    );
    drop(publisher);
    record(
        &mut player,
        &player_log,
        &media,
        is_status("NetStream.Play.UnpublishNotify"),
    );

    assert_eq!(
        publisher_log.into_inner(),
        [
            "handshake",
            "connected",
            "stream 1",
            "status 1 NetStream.Publish.Start",
        ],
        "publisher transcript"
    );
    assert_eq!(
        player_log.into_inner(),
        [
            "handshake",
            "connected",
            "stream 1",
            "status 1 NetStream.Play.Reset",
            "status 1 NetStream.Play.Start",
            "data |RtmpSampleAccess at 0",
            "status 1 NetStream.Play.PublishNotify",
            "media #0 type 9 at 0",
            "media #1 type 9 at 0",
            "media #2 type 8 at 0",
            "media #3 type 8 at 23",
            "media #4 type 9 at 83",
            "status 1 NetStream.Play.UnpublishNotify",
        ],
        "player transcript"
    );
    let kinds: Vec<&'static str> = server
        .events()
        .iter()
        .map(|e| match e {
            Event::Connected { .. } => "connected",
            Event::PublishStarted { .. } => "publish started",
            Event::PublishStopped { .. } => "publish stopped",
            Event::PlayStarted { .. } => "play started",
            Event::Closing { .. } => "closing",
            Event::Disconnected { .. } => "disconnected",
            Event::Decide { .. } => "decide",
            Event::RecordStarted { .. } => "record started",
            Event::RecordStopped { .. } => "record stopped",
            Event::Gateway { .. } => "gateway",
            Event::GatewayBound { .. } => "gateway-bound",
            Event::UnroutedMedia { .. } => "unrouted media",
            _ => "another event",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "connected",
            "play started",
            "connected",
            "publish started",
            "publish stopped",
            "disconnected",
        ],
        "server events"
    );
}

/// ffmpeg publishes a 4 s clip to an application that records everything; the recorded file
/// holds every frame of the clip (ffprobe: timestamps and payload hashes) and its duration;
/// then an ffmpeg player plays the recording back from the file and receives every frame.
fn ffmpeg_publish_is_recorded_and_played_back(runtime: Runtime) {
    let dir = scratch("record", runtime);
    let clip = ffmpeg_clip(
        "h264_aac_320x240_12fps_20s.flv",
        CLIP_SECONDS,
        &dir.join("clip.flv"),
    );
    let source = packets(&clip);
    let root = dir.join("media");
    let mut server =
        TestServer::start_on_with(runtime, recording_node(false), None, root.clone(), None);
    let url = server.url("vod/clip");

    ffmpeg_publish(&clip, &url).finish(PUBLISH_TIME);
    assert!(
        server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStopped { .. })),
        "the recording did not stop: {:?}",
        server.events()
    );
    let stopped = server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::RecordStopped { path, error, .. } => Some((path.clone(), error.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(stopped, ("vod/clip.flv".to_owned(), None));
    let recorded_path = root.join("vod/clip.flv");
    let recorded = packets(&recorded_path);
    assert_receives_everything("recorded file", &source, &recorded);
    let (want, got) = (duration(&clip), duration(&recorded_path));
    assert!(
        (want - got).abs() <= 0.5,
        "recorded duration {got} s, clip {want} s"
    );

    let played = dir.join("played.flv");
    ffmpeg_play(&url, &played).finish(PUBLISH_TIME);
    assert_receives_everything("file player", &recorded, &packets(&played));
}

/// With decisions on, a decider that wants `?token=good` refuses a publish with a bad token
/// (`NetStream.Publish.Denied`, nothing recorded, no publish event), refuses a connect to an
/// unknown application, and lets the right token publish and be recorded.
fn a_publish_refused_by_the_decider_records_nothing(runtime: Runtime) {
    let dir = scratch("refused", runtime);
    let root = dir.join("media");
    let decider = Box::new(|event: &Event| match event {
        Event::Decide {
            request,
            question: Question::Connect { app, .. },
        } if app != "vod" => Some((*request, Decision::Reject("no such app".into()))),
        Event::Decide {
            request,
            question: Question::Publish { query, .. },
        } if query != "token=good" => Some((*request, Decision::Reject("bad token".into()))),
        Event::Decide { request, .. } => Some((*request, Decision::Accept)),
        _ => None,
    });
    let mut server = TestServer::start_on_with(
        runtime,
        recording_node(true),
        None,
        root.clone(),
        Some(decider),
    );
    let t = STARTUP;

    let mut stranger = TcpRtmpClient::connect(server.addr, "other", None);
    let rejected = stranger.until(t, |e| {
        matches!(e, ClientEvent::Connected | ClientEvent::ConnectRejected(_))
    });
    assert!(
        matches!(rejected, Some(ClientEvent::ConnectRejected(_))),
        "connect to an unknown app: {rejected:?}"
    );

    let publish = |name: &str| {
        let (mut client, id) = TcpRtmpClient::with_stream(server.addr, "vod", None);
        client.machine.publish(id, name);
        client.flush();
        let status = client.until(t, |e| matches!(e, ClientEvent::Status(..)));
        (client, id, status)
    };

    let (refused, _, status) = publish("clip?token=bad");
    assert!(
        matches!(&status, Some(ClientEvent::Status(_, code)) if code == "NetStream.Publish.Denied"),
        "bad token: {status:?}"
    );
    drop(refused);
    assert!(
        !root.join("vod/clip.flv").exists(),
        "a refused publish was recorded"
    );

    let (mut accepted, id, status) = publish("clip?token=good");
    assert!(
        matches!(&status, Some(ClientEvent::Status(_, code)) if code == "NetStream.Publish.Start"),
        "good token: {status:?}"
    );
    // An AVC sequence header and a keyframe, so the recording has media.
    for (timestamp, payload) in [
        (0, &[0x17u8, 0, 0, 0, 0, 1, 0x64, 0, 0x0d][..]),
        (0, &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65][..]),
        (40, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41][..]),
    ] {
        let message = RtmpMessage::new(
            type_id::VIDEO,
            id,
            timestamp,
            Bytes::copy_from_slice(payload),
        );
        accepted.machine.send_media(&message);
    }
    accepted.flush();
    assert!(
        server.wait_for(1, t, |e| matches!(e, Event::RecordStarted { .. })),
        "the accepted publish was not recorded"
    );
    drop(accepted);
    assert!(
        server.wait_for(1, t, |e| matches!(e, Event::RecordStopped { .. })),
        "the recording did not stop"
    );
    let file = std::fs::read(root.join("vod/clip.flv")).expect("recorded file");
    assert!(file.starts_with(b"FLV\x01"), "not an FLV file");

    let events = server.events();
    let publishes = events
        .iter()
        .filter(|e| matches!(e, Event::PublishStarted { .. }))
        .count();
    assert_eq!(publishes, 1, "only the good token publishes: {events:?}");
    let questions: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Decide { question, .. } => Some(match question {
                Question::Connect { .. } => "connect",
                Question::Publish { .. } => "publish",
                Question::Play { .. } => "play",
                _ => "another question",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(
        questions,
        ["connect", "connect", "publish", "connect", "publish"],
        "the decider was asked about every connect and publish"
    );
}

/// A publish being recorded when the server is stopped: `run` returns only once the recording
/// is finished, with every byte it counted on disk.
fn stopping_the_server_finishes_the_recording(runtime: Runtime) {
    let dir = scratch("stop", runtime);
    let root = dir.join("media");
    let mut server =
        TestServer::start_on_with(runtime, recording_node(false), None, root.clone(), None);
    let (mut publisher, id) = TcpRtmpClient::with_stream(server.addr, "vod", None);
    publisher.machine.publish(id, "live-at-stop");
    publisher.flush();
    // The application records every publish: the publisher is not told, the operator is.
    publisher
        .until(STARTUP, is_status("NetStream.Publish.Start"))
        .expect("publishing");
    assert!(server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStarted { .. })));
    for i in 0..50u32 {
        let payload: &[u8] = if i == 0 {
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]
        } else {
            &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]
        };
        let message = RtmpMessage::new(type_id::VIDEO, id, i * 40, Bytes::copy_from_slice(payload));
        publisher.machine.send_media(&message);
    }
    publisher.flush();
    assert!(server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStarted { .. })));
    let events = server.stop();
    let stopped = events.iter().find_map(|e| match e {
        Event::RecordStopped {
            path, bytes, error, ..
        } => Some((path.clone(), *bytes, error.clone())),
        _ => None,
    });
    let (path, bytes, error) = stopped.unwrap_or_else(|| panic!("no RecordStopped: {events:?}"));
    assert_eq!((path.as_str(), &error), ("vod/live-at-stop.flv", &None));
    let file = std::fs::read(root.join(&path)).expect("recorded file");
    assert_eq!(
        file.len() as u64,
        bytes,
        "the file is complete when run returns"
    );
    assert!(file.starts_with(b"FLV\x01"));
    drop(publisher);
}

/// The gateway's scenario (1) on this driver: a phone calls a sipp UAS that echoes RTP and
/// gets 2 s of Speex 16 kHz back byte for byte (the driver's UDP sockets carry SIP and RTP).
fn gateway_call_echoes_speex(runtime: Runtime) {
    let name = format!("conformance-gateway-{runtime:?}");
    siprtmp_tests::gateway_scenarios::echo_call(
        runtime,
        &name,
        siprtmp_tests::gateway::EchoMedia::Wideband,
        100,
    );
}

/// The same call with the gateway's SIP over TCP (sipp `-t t1`): the driver's TCP executor
/// carries the INVITE, the answer and the BYE, its UDP sockets the RTP; every connection and
/// listener is closed once the phone has left.
fn gateway_call_over_tcp_echoes_speex(runtime: Runtime) {
    let name = format!("conformance-gateway-tcp-{runtime:?}");
    siprtmp_tests::gateway_scenarios::echo_call_over(
        siprtmp_core::sip::Transport::Tcp,
        runtime,
        &name,
        siprtmp_tests::gateway::EchoMedia::Wideband,
        100,
    );
}

/// One module per driver, each with every scenario as a test (`cargo test mio::`, ...).
macro_rules! conformance {
    ($($module:ident => $runtime:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn ffmpeg_publish_reaches_every_player() {
                super::ffmpeg_publish_reaches_every_player(Runtime::$runtime);
            }

            #[test]
            fn bad_bytes_close_only_that_client() {
                super::bad_bytes_close_only_that_client(Runtime::$runtime);
            }

            #[test]
            fn stalled_player_is_dropped_and_harms_nobody() {
                super::stalled_player_is_dropped_and_harms_nobody(Runtime::$runtime);
            }

            #[test]
            fn silent_client_is_closed_by_the_ping_timeout() {
                super::silent_client_is_closed_by_the_ping_timeout(Runtime::$runtime);
            }

            #[test]
            fn status_codes_and_media_are_the_same() {
                super::status_codes_and_media_are_the_same(Runtime::$runtime);
            }

            #[test]
            fn ffmpeg_publish_is_recorded_and_played_back() {
                super::ffmpeg_publish_is_recorded_and_played_back(Runtime::$runtime);
            }

            #[test]
            fn a_publish_refused_by_the_decider_records_nothing() {
                super::a_publish_refused_by_the_decider_records_nothing(Runtime::$runtime);
            }

            #[test]
            fn stopping_the_server_finishes_the_recording() {
                super::stopping_the_server_finishes_the_recording(Runtime::$runtime);
            }

            #[test]
            fn gateway_call_echoes_speex() {
                super::gateway_call_echoes_speex(Runtime::$runtime);
            }

            #[test]
            fn gateway_call_over_tcp_echoes_speex() {
                super::gateway_call_over_tcp_echoes_speex(Runtime::$runtime);
            }
        }
    )*};
}

conformance!(mio => Mio, tokio => Tokio, threads => Threads, async_std => AsyncStd, io_uring => IoUring);
