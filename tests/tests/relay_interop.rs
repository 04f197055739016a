//! Relays against servers nobody here wrote, and between two siprtmp: ffmpeg publishes, ffmpeg
//! and rtmpdump play, ffprobe compares what they saved with the source, packet by packet
//! (`probe::assert_receives_everything`, `assert_receives_from_keyframe`: timestamps and
//! payload hashes, from the first keyframe a player got).
//!
//! - Push: a stream published to siprtmp is republished to nginx-rtmp, and to a second
//!   siprtmp; a player there gets every frame from its join point (a keyframe). The upstream crashes mid
//!   stream and comes back on the same port: the push reconnects (backoff), a player there
//!   gets the stream again, and the local player misses nothing.
//! - Pull: a siprtmp edge plays from an nginx-rtmp origin and from a siprtmp origin. Two
//!   players share one upstream session (nginx's statistics page, the siprtmp origin's plays),
//!   it closes the idle time after they left, a later player opens a new one; a name the origin
//!   lacks fails quickly for ffmpeg and rtmpdump (`StreamNotFound`); players waiting through an
//!   origin restart are told the stream stopped and get it again, without reconnecting.
//! - Every runtime the binary accepts pushes and pulls (a short clip each).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use siprtmp_core::node::{
    AppConfig, Event, HttpConfig, NodeConfig, RelayLimits, RelayPhase, RelayUrl, ServerConfig,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::type_id;
use siprtmp_runtime_drivers::Runtime;
use siprtmp_tests::nginx::Nginx;
use siprtmp_tests::peers::{
    ffmpeg_clip, ffmpeg_play, ffmpeg_play_for, ffmpeg_publish, rtmpdump_play, Peer,
};
use siprtmp_tests::probe::{assert_receives_everything, assert_receives_from_keyframe, packets};
use siprtmp_tests::runtimes::on_every_runtime_at_once;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{media, scrape, scratch_dir, wait};

const STARTUP: Duration = Duration::from_secs(15);
/// The media file is 20 s long; publishing in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(45);
const FILE: &str = "h264_aac_320x240_12fps_20s.flv";
/// How long a play that cannot succeed may take to fail.
const FAILS_WITHIN: Duration = Duration::from_secs(5);

/// Relay timers for tests: retries within a second, a pull closed 2 s after its last player.
fn limits() -> RelayLimits {
    RelayLimits {
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        pull_idle_timeout: Duration::from_secs(2),
        ..RelayLimits::default()
    }
}

/// A node whose applications push to or pull from upstreams: `(app, push, pull)`.
fn relaying(apps: &[(&str, &[String], &[String])]) -> NodeConfig {
    let urls = |list: &[String]| {
        list.iter()
            .map(|u| RelayUrl::parse(u).unwrap())
            .collect::<Vec<_>>()
    };
    let mut server = ServerConfig {
        relay: limits(),
        ..ServerConfig::default()
    };
    for (app, push, pull) in apps {
        server.apps.insert(
            (*app).to_owned(),
            AppConfig {
                push: urls(push),
                pull: urls(pull),
                ..AppConfig::default()
            },
        );
    }
    NodeConfig {
        server,
        ..NodeConfig::default()
    }
}

/// [`relaying`] with the HTTP listener (metrics and API) on a free loopback port.
fn relaying_with_http(apps: &[(&str, &[String], &[String])]) -> NodeConfig {
    let mut config = relaying(apps);
    config.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    config
}

/// The value of the sample `name` (labels as written) on the server's `/metrics`, which
/// `promtool check metrics` must accept.
fn metric(http: &str, name: &str) -> Option<f64> {
    let (status, exposition) = scrape::curl(http, "GET", "/metrics", None);
    assert_eq!(status, 200, "{exposition}");
    if let Err(complaints) = scrape::promtool_check(&exposition) {
        panic!("promtool check metrics: {complaints}\n{exposition}");
    }
    scrape::sample(&exposition, name)
}

/// `GET /api/v1/streams`.
fn streams_api(http: &str) -> String {
    let (status, body) = scrape::curl(http, "GET", "/api/v1/streams", None);
    assert_eq!(status, 200, "{body}");
    body
}

/// A siprtmp origin (mio) on `addr`, whose application `strict` answers a name nobody
/// publishes with `StreamNotFound` (`idle_streams` off) and `live` waits for publishers.
fn siprtmp_origin(addr: SocketAddr) -> TestServer {
    let mut config = NodeConfig::default();
    config.server.apps.insert(
        "strict".into(),
        AppConfig {
            idle_streams: false,
            ..AppConfig::default()
        },
    );
    TestServer::start_configured(Runtime::Mio, config, None, |c| c.listen = addr)
}

/// An nginx-rtmp origin: `live` waits for publishers and starts players at a keyframe,
/// `strict` refuses names nobody publishes (`idle_streams off`).
fn nginx_origin(dir: &Path) -> Nginx {
    Nginx::live(
        &[
            ("live", "wait_key on; wait_video on;"),
            ("strict", "idle_streams off;"),
        ],
        &dir.join("nginx"),
    )
}

fn relay_live(e: &Event) -> bool {
    matches!(
        e,
        Event::Relay {
            phase: RelayPhase::Live,
            ..
        }
    )
}

fn relay_failed(e: &Event) -> bool {
    matches!(
        e,
        Event::Relay {
            phase: RelayPhase::Failed { .. },
            ..
        }
    )
}

fn relay_ended(reason: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Relay { phase: RelayPhase::Ended { reason: r }, .. } if r.starts_with(reason))
}

fn play_started(e: &Event) -> bool {
    matches!(e, Event::PlayStarted { .. })
}

fn publish_started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
}

/// The server a push goes to: nginx-rtmp, or a second siprtmp.
enum Upstream {
    Nginx(Nginx),
    Siprtmp(TestServer),
}

impl Upstream {
    fn start(nginx: bool, dir: &Path) -> Self {
        if nginx {
            // Players that join mid-stream start at a keyframe (nginx-rtmp has no GOP cache),
            // and are disconnected when the publisher leaves (otherwise ffmpeg would wait on).
            let apps = [("live", "wait_key on; wait_video on; idle_streams off;")];
            Upstream::Nginx(Nginx::live(&apps, &dir.join("nginx")))
        } else {
            let addr = SocketAddr::from((
                [127, 0, 0, 1],
                siprtmp_tests::ports::free_tcp_port([127, 0, 0, 1].into()),
            ));
            Upstream::Siprtmp(siprtmp_origin(addr))
        }
    }

    fn url(&self, path: &str) -> String {
        match self {
            Upstream::Nginx(nginx) => nginx.url(path),
            Upstream::Siprtmp(server) => server.url(path),
        }
    }

    /// Waits until `count` players play `live/cam` (on this run of the upstream).
    fn wait_players(&mut self, count: usize) {
        let waited = match self {
            // The push is a client of the stream too.
            Upstream::Nginx(nginx) => wait::until(STARTUP, || {
                nginx.stream_clients("live", "cam") == Some(count + 1)
            }),
            Upstream::Siprtmp(server) => server.wait_for(count, STARTUP, play_started),
        };
        assert!(waited, "{count} player(s) on the upstream");
    }

    /// Crashes it, runs `meanwhile`, and starts it again on the same port.
    fn restart(self, meanwhile: impl FnOnce()) -> Self {
        match self {
            Upstream::Nginx(mut nginx) => {
                nginx.kill();
                meanwhile();
                Upstream::Nginx(nginx.restart())
            }
            Upstream::Siprtmp(server) => {
                let addr = server.addr;
                server.stop();
                meanwhile();
                Upstream::Siprtmp(siprtmp_origin(addr))
            }
        }
    }
}

/// ffmpeg publishes to siprtmp, which pushes to `nginx` or a second siprtmp; players on
/// both; the upstream crashes 5 s in and comes back.
fn push_through_an_upstream_restart(nginx: bool) {
    let which = if nginx { "nginx" } else { "siprtmp" };
    let dir = scratch_dir(&format!("relay-push-{which}"));
    let source_path = media(FILE);
    let source = packets(&source_path);
    let mut upstream = Upstream::start(nginx, &dir);
    let push = [upstream.url("live")];
    let mut server = TestServer::start(relaying_with_http(&[("live", &push, &[])]), None);
    let http = server.http_listening(STARTUP).expect("the HTTP listener");
    let url = server.url("live/cam");
    let local = ffmpeg_play(&url, &dir.join("local.flv"));
    assert!(server.wait_for(1, STARTUP, play_started), "local player");

    let publisher = ffmpeg_publish(&source_path, &url);
    assert!(
        server.wait_for(1, STARTUP, relay_live),
        "{which}: the push did not start: {:?}",
        server.events()
    );
    let far_first = ffmpeg_play(&upstream.url("live/cam"), &dir.join("far-first.flv"));
    upstream.wait_players(1);
    // The API and the metrics say the stream is pushed, where, and how far behind.
    let api = streams_api(&http);
    let pushed = format!(
        r#""relays":[{{"direction":"push","upstream":"{}","state":"live","backlog_bytes":"#,
        push[0]
    );
    assert!(api.contains(&pushed), "{api}");
    assert!(api.contains(r#""behind_ms":"#), "{api}");
    let live = r#"siprtmp_relay_sessions{direction="push",state="live"}"#;
    assert_eq!(metric(&http, live), Some(1.0));
    let backlog = format!(
        r#"siprtmp_relay_push_backlog_bytes{{app="live",stream="cam",upstream="{}"}}"#,
        push[0]
    );
    assert!(metric(&http, &backlog).is_some(), "{backlog}");
    let sent = r#"siprtmp_relay_sent_bytes_total{direction="push"}"#;
    let before = metric(&http, sent).unwrap();
    assert!(
        wait::until(STARTUP, || metric(&http, sent).unwrap() > before),
        "bytes to the upstream do not grow"
    );
    // Five seconds of the stream, then the upstream crashes and comes back on its port once
    // the push has noticed.
    std::thread::sleep(Duration::from_secs(5));
    let mut upstream = upstream.restart(|| {
        assert!(
            server.wait_for(1, STARTUP, relay_failed),
            "{which}: the push did not notice the crash"
        );
    });
    assert!(
        server.wait_for(2, STARTUP, relay_live),
        "{which}: the push did not reconnect: {:?}",
        server.events()
    );
    let far_second = ffmpeg_play(&upstream.url("live/cam"), &dir.join("far-second.flv"));
    upstream.wait_players(1);
    let broken = r#"siprtmp_relay_failures_total{direction="push",reason="broken"}"#;
    assert!(metric(&http, broken).unwrap() >= 1.0, "the crash counted");
    let started = r#"siprtmp_relay_started_total{direction="push"}"#;
    assert_eq!(metric(&http, started), Some(2.0));

    publisher.finish(PUBLISH_TIME);
    local.finish(STARTUP);
    far_second.finish(STARTUP);
    drop(far_first);
    assert!(
        server.wait_for(1, STARTUP, relay_ended("unpublished")),
        "{which}: the push did not end with the publication"
    );

    let local_got = packets(&dir.join("local.flv"));
    assert_receives_everything("local player", &source, &local_got);
    let first = packets(&dir.join("far-first.flv"));
    assert_receives_from_keyframe(
        &format!("{which} player before the crash"),
        &source,
        &first,
        false,
    );
    let second = packets(&dir.join("far-second.flv"));
    assert_receives_from_keyframe(
        &format!("{which} player after the restart"),
        &source,
        &second,
        true,
    );
    drop(upstream);
}

#[test]
fn a_push_to_nginx_rtmp_survives_its_restart() {
    push_through_an_upstream_restart(true);
}

#[test]
fn a_push_to_a_second_siprtmp_survives_its_restart() {
    push_through_an_upstream_restart(false);
}

/// The origin a pull plays from: nginx-rtmp, or a siprtmp.
enum Origin {
    Nginx(Nginx),
    Siprtmp(TestServer),
}

impl Origin {
    fn start(nginx: bool, dir: &Path) -> Self {
        if nginx {
            Origin::Nginx(nginx_origin(dir))
        } else {
            let ip = [127, 0, 0, 1].into();
            let addr = SocketAddr::new(ip, siprtmp_tests::ports::free_tcp_port(ip));
            Origin::Siprtmp(siprtmp_origin(addr))
        }
    }

    fn url(&self, path: &str) -> String {
        match self {
            Origin::Nginx(nginx) => nginx.url(path),
            Origin::Siprtmp(server) => server.url(path),
        }
    }

    /// Waits until `live/cam` is published on the origin.
    fn wait_published(&mut self) {
        let published = match self {
            Origin::Nginx(nginx) => {
                wait::until(STARTUP, || nginx.stream_clients("live", "cam") == Some(1))
            }
            Origin::Siprtmp(server) => server.wait_for(1, STARTUP, publish_started),
        };
        assert!(published, "the origin has the stream");
    }

    /// The plays of `live/cam` the origin served: its clients less the publisher (nginx: now;
    /// siprtmp: every play since it started).
    fn plays(&mut self) -> usize {
        match self {
            Origin::Nginx(nginx) => nginx
                .stream_clients("live", "cam")
                .map_or(0, |n| n.saturating_sub(1)),
            Origin::Siprtmp(server) => server
                .events()
                .iter()
                .filter(|e| matches!(e, Event::PlayStarted { stream, .. } if stream == "live/cam"))
                .count(),
        }
    }
}

/// A play that cannot succeed: `peer` exits within [`FAILS_WITHIN`], unsuccessfully, and its
/// error output says `says`.
fn fails_quickly(peer: Peer, says: &str) {
    let name = peer.name.clone();
    let stderr = peer.fails_within(FAILS_WITHIN);
    assert!(stderr.contains(says), "{name}: {stderr}");
}

fn edge_for(origin: &Origin) -> TestServer {
    let live = [origin.url("live")];
    let strict = [origin.url("strict")];
    TestServer::start(
        relaying_with_http(&[("live", &[], &live), ("strict", &[], &strict)]),
        None,
    )
}

/// Two players on the edge share one upstream session; it closes the idle time after they
/// left; a later player opens another and gets the stream to its end; a name the origin
/// lacks fails at once for ffmpeg and rtmpdump.
fn pull_shared_idle_and_not_found(nginx: bool) {
    let which = if nginx { "nginx" } else { "siprtmp" };
    let dir = scratch_dir(&format!("relay-pull-{which}"));
    let source_path = media(FILE);
    let source = packets(&source_path);
    let mut origin = Origin::start(nginx, &dir);
    let mut edge = edge_for(&origin);
    let publisher = ffmpeg_publish(&source_path, &origin.url("live/cam"));
    origin.wait_published();

    let url = edge.url("live/cam");
    let first = ffmpeg_play_for(&url, &dir.join("first.flv"), 6);
    let second = ffmpeg_play_for(&url, &dir.join("second.flv"), 6);
    assert!(
        edge.wait_for(2, STARTUP, play_started),
        "{which}: edge players"
    );
    assert!(edge.wait_for(1, STARTUP, relay_live), "{which}: the pull");
    assert!(
        wait::until(STARTUP, || origin.plays() == 1),
        "{which}: the origin serves the edge's one play"
    );
    // The edge's API and metrics: one pulled stream, from where, with its two players.
    let http = edge.http_listening(STARTUP).expect("the HTTP listener");
    let api = streams_api(&http);
    assert!(api.contains(r#""players":2,"#), "{api}");
    let relay = format!(
        r#""relays":[{{"direction":"pull","upstream":"{}","state":"live""#,
        origin.url("live")
    );
    assert!(api.contains(&relay), "{api}");
    let pulls = r#"siprtmp_relay_sessions{direction="pull",state="live"}"#;
    assert_eq!(metric(&http, pulls), Some(1.0));
    first.finish(STARTUP);
    second.finish(STARTUP);
    assert_eq!(
        origin.plays(),
        1,
        "{which}: one upstream play for two players"
    );
    let sessions = edge
        .events()
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
        .count();
    assert_eq!(sessions, 1, "{which}: one upstream session");
    // Both left: the session closes after the idle time (2 s).
    assert!(
        edge.wait_for(1, Duration::from_secs(5), relay_ended("idle")),
        "{which}: the idle pull did not close: {:?}",
        edge.events()
    );
    if nginx {
        assert!(
            wait::until(STARTUP, || origin.plays() == 0),
            "{which}: the origin still serves the edge"
        );
    }

    // A name the origin lacks: the edge's players fail at once.
    let missing = edge.url("strict/missing");
    fails_quickly(ffmpeg_play(&missing, &dir.join("missing.flv")), "not found");
    // rtmpdump says why (not with -q), and exits with status 0 all the same.
    let rtmpdump = Peer::spawn_command(
        "rtmpdump player",
        std::process::Command::new("rtmpdump")
            .args(["--live", "-r", &missing, "-o"])
            .arg(dir.join("missing-rtmpdump.flv")),
    );
    let (_, said) = rtmpdump.exits_within(FAILS_WITHIN);
    assert!(
        said.contains("NetStream.Play.StreamNotFound"),
        "rtmpdump: {said}"
    );
    assert!(
        edge.wait_for(2, STARTUP, relay_ended("no upstream has the stream")),
        "{which}: {:?}",
        edge.events()
    );

    // A later player opens a new session and gets the stream to its end.
    let late = rtmpdump_play(&url, &dir.join("late.flv"));
    assert!(
        edge.wait_for(2, STARTUP, relay_live),
        "{which}: the second pull"
    );
    publisher.finish(PUBLISH_TIME);
    late.finish(STARTUP);

    for who in ["first", "second"] {
        let got = packets(&dir.join(format!("{who}.flv")));
        assert_receives_from_keyframe(&format!("{which} edge, {who} player"), &source, &got, false);
    }
    let got = packets(&dir.join("late.flv"));
    assert_receives_from_keyframe(&format!("{which} edge, late rtmpdump"), &source, &got, true);
}

#[test]
fn an_edge_pulls_from_nginx_rtmp_once_per_name() {
    pull_shared_idle_and_not_found(true);
}

#[test]
fn an_edge_pulls_from_a_siprtmp_origin_once_per_name() {
    pull_shared_idle_and_not_found(false);
}

/// The media a waiting client receives until it has `frames` video frames (or the deadline).
fn video_frames(client: &mut TcpRtmpClient, frames: usize) -> Vec<ClientEvent> {
    let mut seen = 0;
    client.collect(PUBLISH_TIME, |e| {
        if matches!(e, ClientEvent::Media(m) if m.type_id == type_id::VIDEO) {
            seen += 1;
        }
        seen >= frames
    })
}

/// Players on the edge wait through an origin crash and restart: told `UnpublishNotify`, then
/// `PublishNotify` once the origin has a publisher again, and the picture from a keyframe,
/// on the connection they had.
fn players_wait_through_an_origin_restart(nginx: bool) {
    let which = if nginx { "nginx" } else { "siprtmp" };
    let dir = scratch_dir(&format!("relay-origin-restart-{which}"));
    let source_path = media(FILE);
    let mut origin = Origin::start(nginx, &dir);
    let mut edge = edge_for(&origin);
    let publisher = ffmpeg_publish(&source_path, &origin.url("live/cam"));
    origin.wait_published();
    let mut players: Vec<TcpRtmpClient> = (0..2)
        .map(|_| TcpRtmpClient::play(edge.addr, "live", "cam", None))
        .collect();
    for player in &mut players {
        let got = video_frames(player, 24);
        assert!(got.len() >= 24, "{which}: media before the crash");
    }
    let origin = match origin {
        Origin::Nginx(mut nginx) => {
            nginx.kill();
            drop(publisher);
            for player in &mut players {
                let told = player.until(STARTUP, |e| {
                    matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Play.UnpublishNotify")
                });
                assert!(told.is_some(), "{which}: UnpublishNotify");
            }
            assert!(edge.wait_for(3, STARTUP, relay_failed), "{which}: retries");
            Origin::Nginx(nginx.restart())
        }
        Origin::Siprtmp(server) => {
            let addr = server.addr;
            server.stop();
            drop(publisher);
            for player in &mut players {
                let told = player.until(STARTUP, |e| {
                    matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Play.UnpublishNotify")
                });
                assert!(told.is_some(), "{which}: UnpublishNotify");
            }
            assert!(edge.wait_for(3, STARTUP, relay_failed), "{which}: retries");
            Origin::Siprtmp(siprtmp_origin(addr))
        }
    };
    let publisher = ffmpeg_publish(&source_path, &origin.url("live/cam"));
    for player in &mut players {
        let told = player.until(
            STARTUP,
            |e| matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Play.PublishNotify"),
        );
        assert!(told.is_some(), "{which}: PublishNotify after the restart");
        let got = video_frames(player, 24);
        let video: Vec<_> = got
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m)
                    if m.type_id == type_id::VIDEO && m.payload.get(1) == Some(&1) =>
                {
                    Some(m)
                }
                _ => None,
            })
            .collect();
        assert!(video.len() >= 20, "{which}: media again");
        assert_eq!(video[0].payload[0] >> 4, 1, "{which}: back at a keyframe");
    }
    drop(publisher);
    drop(origin);
}

#[test]
fn players_of_an_nginx_rtmp_pull_wait_through_its_restart() {
    players_wait_through_an_origin_restart(true);
}

#[test]
fn players_of_a_siprtmp_pull_wait_through_its_restart() {
    players_wait_through_an_origin_restart(false);
}

/// Under each runtime, a server pushes a 5 s clip to an origin (mio) while an edge pulls it
/// from there; players on the origin and on the edge, there before the publish, get every
/// frame.
#[test]
fn push_and_pull_on_every_runtime() {
    let dir = scratch_dir("relay-every-runtime");
    let clip = ffmpeg_clip(FILE, 5, &dir.join("clip.flv"));
    let source = packets(&clip);
    on_every_runtime_at_once(|runtime| {
        let name = runtime.name();
        let mut origin = TestServer::start(NodeConfig::default(), None);
        let to_origin = [origin.url("live")];
        let mut pusher =
            TestServer::start_on(runtime, relaying(&[("live", &to_origin, &[])]), None);
        let mut edge = TestServer::start_on(runtime, relaying(&[("live", &[], &to_origin)]), None);
        let far_out = dir.join(format!("{name}-origin.flv"));
        let far = ffmpeg_play(&origin.url("live/cam"), &far_out);
        let pulled_out = dir.join(format!("{name}-edge.flv"));
        let pulled = ffmpeg_play(&edge.url("live/cam"), &pulled_out);
        assert!(edge.wait_for(1, STARTUP, relay_live), "{name}: the pull");
        assert!(
            origin.wait_for(2, STARTUP, play_started),
            "{name}: the origin's players"
        );
        let publisher = ffmpeg_publish(&clip, &pusher.url("live/cam"));
        assert!(pusher.wait_for(1, STARTUP, relay_live), "{name}: the push");
        publisher.finish(PUBLISH_TIME);
        far.finish(STARTUP);
        pulled.finish(STARTUP);
        assert_receives_everything(
            &format!("{name}: origin player"),
            &source,
            &packets(&far_out),
        );
        assert_receives_everything(
            &format!("{name}: edge player"),
            &source,
            &packets(&pulled_out),
        );
        pusher.stop();
        edge.stop();
    });
}
