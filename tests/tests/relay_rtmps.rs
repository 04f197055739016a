//! `rtmps://` relay upstreams: siprtmp relays over TLS to and from a siprtmp origin that
//! serves RTMPS (its certificate from a CA made here, which the relaying servers trust).
//! ffmpeg publishes a clip over plain RTMP to an edge that pushes it to the origin over TLS;
//! ffmpeg 9 plays it from the origin over RTMPS (verifying the origin too), and Debian's
//! ffmpeg plays it over plain RTMP from a second edge that pulls it from the origin over TLS;
//! ffprobe checks both got every frame, identical. An edge that trusts only the system's
//! roots fails its push attempts with the certificate named, and keeps serving.

use std::time::Duration;

use siprtmp_core::node::{AppConfig, Event, NodeConfig, RelayLimits, RelayPhase, RelayUrl};
use siprtmp_runtime_common::{client_config, load_roots, TlsRoots};
use siprtmp_tests::peers::ffmpeg_publish;
use siprtmp_tests::peers::Peer;
use siprtmp_tests::probe::{assert_receives_everything, packets};
use siprtmp_tests::rtmps::{clip, test_tls, Ffmpeg};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(20);
/// The clip is 6 s long; publishing it in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(40);
const SECONDS: u32 = 6;

/// A node whose application `live` pushes to or pulls from `upstream`, verifying TLS
/// upstreams against `roots`.
fn edge(push: bool, upstream: &str, roots: TlsRoots) -> NodeConfig {
    let url = RelayUrl::parse(upstream).expect("an rtmps:// URL");
    let mut config = NodeConfig::default();
    config.server.relay = RelayLimits {
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..RelayLimits::default()
    };
    let (push, pull) = if push {
        (vec![url], Vec::new())
    } else {
        (Vec::new(), vec![url])
    };
    config.server.apps.insert(
        "live".into(),
        AppConfig {
            push,
            pull,
            ..AppConfig::default()
        },
    );
    let roots = load_roots(&roots).expect("the roots load");
    config.server.relay_tls = Some(client_config(roots));
    config
}

fn play_started(e: &Event) -> bool {
    matches!(e, Event::PlayStarted { .. })
}

fn publish_started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
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

#[test]
fn a_push_and_a_pull_over_tls_carry_every_frame() {
    let dir = scratch_dir("relay-rtmps");
    let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), SECONDS, &dir);
    let source = packets(&source_path);
    let (ca, tls) = test_tls(&dir);
    let mut origin = TestServer::start_tls(Runtime::Mio, NodeConfig::default(), tls);
    let upstream = origin.tls_url("live");
    assert!(upstream.starts_with("rtmps://"));
    let pusher = TestServer::start(edge(true, &upstream, TlsRoots::CaFile(ca.clone())), None);
    let mut puller = TestServer::start(edge(false, &upstream, TlsRoots::CaFile(ca.clone())), None);

    // ffmpeg 9 plays from the origin over RTMPS; Debian's ffmpeg from the pulling edge.
    let from_origin = dir.join("ffmpeg9-from-origin.flv");
    let tls_player = Ffmpeg::Nine.play(&origin.tls_url("live/cam"), &ca, &from_origin);
    let from_edge = dir.join("ffmpeg-from-pulling-edge.flv");
    let edge_player = Peer::spawn_command(
        "ffmpeg player on the pulling edge",
        std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(puller.url("live/cam"))
            .args(["-map", "0", "-c", "copy", "-copyts", "-f", "flv"])
            .arg(&from_edge),
    );
    // The origin sees ffmpeg 9 and the pull play.
    assert!(
        origin.wait_for(2, STARTUP, play_started),
        "the players did not start at the origin: {:?}",
        origin.events()
    );
    assert!(
        puller.wait_for(1, STARTUP, relay_live),
        "the pull over TLS is not live: {:?}",
        puller.events()
    );

    let publisher = ffmpeg_publish(&source_path, &pusher.url("live/cam"));
    assert!(
        origin.wait_for(1, STARTUP, publish_started),
        "the push over TLS did not publish at the origin: {:?}",
        origin.events()
    );
    publisher.finish(PUBLISH_TIME);
    tls_player.finish(STARTUP);
    edge_player.finish(STARTUP);
    assert_receives_everything("ffmpeg 9 on the origin", &source, &packets(&from_origin));
    assert_receives_everything("ffmpeg on the pulling edge", &source, &packets(&from_edge));
    drop(pusher);
    drop(puller);
    drop(origin);
}

#[test]
fn an_untrusted_upstream_fails_with_its_certificate_named() {
    let dir = scratch_dir("relay-rtmps-untrusted");
    let (_ca, tls) = test_tls(&dir);
    let origin = TestServer::start_tls(Runtime::Mio, NodeConfig::default(), tls);
    let mut pusher = TestServer::start(edge(true, &origin.tls_url("live"), TlsRoots::System), None);
    let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), SECONDS, &dir);
    let publisher = ffmpeg_publish(&source_path, &pusher.url("live/cam"));
    let certificate_failure = |e: &Event| {
        matches!(
            e,
            Event::Relay { phase: RelayPhase::Failed { error, .. }, .. }
                if error.contains("invalid peer certificate")
        )
    };
    assert!(
        pusher.wait_for(2, STARTUP, certificate_failure),
        "the push attempts fail on the certificate: {:?}",
        pusher.events()
    );
    // The edge still serves its own publisher and players.
    assert!(pusher.wait_for(1, STARTUP, publish_started));
    publisher.finish(PUBLISH_TIME);
}
