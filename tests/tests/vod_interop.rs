//! Recording and video on demand with peers nobody here wrote: ffmpeg publishes (as `live`,
//! which the application records), ffprobe checks the recorded FLV against what ffmpeg itself
//! writes for the same input (every frame, identical payloads, the duration), then ffmpeg and
//! rtmpdump play the file back at the same time and receive every frame of it. Also: an
//! application decider refusing ffmpeg's publish (bad token), with nothing recorded.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use siprtmp_core::node::{Decision, Event, Question};
use siprtmp_tests::nodes::recording_node;
use siprtmp_tests::peers::{ffmpeg_play, Peer};
use siprtmp_tests::probe::{count, duration, packets, Packet};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::{media, scratch_dir};

const SECONDS: &str = "5";
const STARTUP: Duration = Duration::from_secs(15);
/// Publishing (or playing back) 5 s in real time, with slack.
const REAL_TIME: Duration = Duration::from_secs(30);

/// `ffmpeg -re -t 5 -i FILE -c copy -f flv OUT`: OUT is an rtmp:// URL or a file.
fn ffmpeg_copy(source: &Path, out: &str, realtime: bool) -> Peer {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if realtime {
        command.arg("-re");
    }
    command
        .args(["-t", SECONDS, "-i"])
        .arg(source)
        .args(["-c", "copy", "-f", "flv", out]);
    Peer::spawn_command("ffmpeg", &mut command)
}

/// `rtmpdump -r URL -o OUT`: a recorded-stream (not live) download.
fn rtmpdump_vod(url: &str, out: &Path) -> Peer {
    Peer::spawn_command(
        "rtmpdump player",
        Command::new("rtmpdump")
            .args(["-q", "-r", url, "-o"])
            .arg(out),
    )
}

fn media_of(packets: &[Packet], kind: &str) -> Vec<(i64, String)> {
    packets
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| (p.pts, p.hash.clone()))
        .collect()
}

fn assert_same_media(who: &str, expected: &[Packet], got: &[Packet]) {
    for kind in ["audio", "video"] {
        let (e, g) = (media_of(expected, kind), media_of(got, kind));
        assert!(!e.is_empty(), "{who}: no {kind} expected");
        assert_eq!(e.len(), g.len(), "{who}: {kind} packet count");
        assert!(e == g, "{who}: {kind} timestamps or payloads differ");
    }
}

fn record_then_play(file: &str, test: &str) {
    let source = media(file);
    let dir = scratch_dir(test);
    let root = dir.join("media");
    let mut server = TestServer::start_in(recording_node(false), None, root.clone());
    let url = server.url("vod/clip");

    // What ffmpeg itself writes for the same 5 s of input: the reference.
    let reference = dir.join("reference.flv");
    ffmpeg_copy(&source, reference.to_str().unwrap(), false).finish(STARTUP);

    ffmpeg_copy(&source, &url, true).finish(REAL_TIME);
    let stopped = server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStopped { .. }));
    assert!(stopped, "recording did not stop: {:?}", server.events());
    let recorded_path = root.join("vod/clip.flv");
    let expected = packets(&reference);
    let recorded = packets(&recorded_path);
    assert_same_media("recorded file", &expected, &recorded);
    let (want, got) = (duration(&reference), duration(&recorded_path));
    assert!(
        (want - got).abs() <= 0.5,
        "recorded duration {got} s, source {want} s"
    );

    // Two players of the file at once, each from the start.
    let by_ffmpeg = dir.join("ffmpeg.flv");
    let by_rtmpdump = dir.join("rtmpdump.flv");
    let ffmpeg = ffmpeg_play(&url, &by_ffmpeg);
    let rtmpdump = rtmpdump_vod(&url, &by_rtmpdump);
    ffmpeg.finish(REAL_TIME);
    rtmpdump.finish(REAL_TIME);
    let started = server
        .events()
        .iter()
        .filter(|e| matches!(e, Event::PlayStarted { .. }))
        .count();
    assert_eq!(started, 2);
    for (who, path) in [("ffmpeg", &by_ffmpeg), ("rtmpdump", &by_rtmpdump)] {
        let got = packets(path);
        assert_eq!(
            count(&got, "video"),
            count(&recorded, "video"),
            "{who}: video"
        );
        assert_same_media(who, &recorded, &got);
    }
}

#[test]
fn ffmpeg_publish_is_recorded_and_ffmpeg_and_rtmpdump_play_it_back_h264_aac() {
    record_then_play("h264_aac_320x240_12fps_20s.flv", "vod_h264_aac");
}

#[test]
fn ffmpeg_publish_is_recorded_and_ffmpeg_and_rtmpdump_play_it_back_h264_speex() {
    record_then_play("h264_speex16k_320x240_12fps_20s.flv", "vod_h264_speex");
}

/// `ffmpeg -re -t SECONDS -i FILE -c copy -f flv URL`.
fn ffmpeg_publish_for(source: &Path, url: &str, seconds: &str) -> Peer {
    Peer::spawn_command(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-t",
                seconds,
                "-i",
            ])
            .arg(source)
            .args(["-c", "copy", "-f", "flv", url]),
    )
}

/// A decider that wants `?token=good` on publishes: ffmpeg with a wrong token is refused
/// (`NetStream.Publish.Denied`, ffmpeg fails) and nothing is recorded; with the right one the
/// stream is recorded.
#[test]
fn a_publish_refused_by_the_application_records_nothing() {
    let source = media("h264_speex16k_320x240_12fps_20s.flv");
    let dir = scratch_dir("vod_refused");
    let root = dir.join("media");
    let node = recording_node(true);
    let decider = Box::new(|event: &Event| match event {
        Event::Decide {
            request,
            question: Question::Publish { query, .. },
        } if query != "token=good" => Some((*request, Decision::Reject("bad token".into()))),
        Event::Decide { request, .. } => Some((*request, Decision::Accept)),
        _ => None,
    });
    let mut server = TestServer::start_with(node, None, root.clone(), Some(decider));
    let mut refused = ffmpeg_publish_for(&source, &server.url("vod/clip?token=bad"), "1");
    let status = refused.wait(STARTUP).expect("refused ffmpeg exits");
    assert!(!status.success(), "ffmpeg should fail when refused");
    assert!(!root.join("vod/clip.flv").exists(), "nothing recorded");
    let published = server
        .events()
        .iter()
        .any(|e| matches!(e, Event::PublishStarted { .. }));
    assert!(!published);
    let url = server.url("vod/clip?token=good");
    ffmpeg_publish_for(&source, &url, "1").finish(REAL_TIME);
    assert!(server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStopped { .. })));
    assert!(count(&packets(&root.join("vod/clip.flv")), "video") >= 10);
}
