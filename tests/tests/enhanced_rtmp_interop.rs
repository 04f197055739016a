//! Enhanced RTMP with ffmpeg 9 (imageio-ffmpeg's static build) on both ends: it publishes
//! HEVC+AAC, AV1+Opus, VP9+Opus and H.264 with a second video track (multitrack messages) in
//! real time, to an application that records every publish, and a second ffmpeg 9 joins 2.5 s
//! later. What the late player saved decodes, has the source's codecs, starts every video
//! track on a keyframe and holds every packet of the source from its join point on (the
//! timestamp of the first packet it received: the cached GOP's keyframe), identical; the
//! recording holds the whole source with its codecs, `onMetaData` codec ids and duration,
//! and plays back from a start position on the keyframe at or before it, after every
//! track's configuration. Legacy players (Debian's ffmpeg 5.1, rtmpdump) of an enhanced
//! stream: ffmpeg 5.1 gives up cleanly, rtmpdump saves the stream intact, the server serves on.

use std::path::Path;
use std::time::Duration;

use siprtmp_core::flv::media::{classify_audio, classify_video};
use siprtmp_core::flv::reader::{FlvReader, FlvTag};
use siprtmp_core::flv::tag::tag_type;
use siprtmp_core::node::Event;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_tests::ffmpeg9::{self, decode_errors, probe, Probe9};
use siprtmp_tests::nodes::recording_node;
use siprtmp_tests::peers::{rtmpdump_play, Peer};
use siprtmp_tests::runtimes::on_every_runtime_at_once;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(15);
/// The clips are 4 s long; publishing in real time takes that, plus slack.
const REAL_TIME: Duration = Duration::from_secs(30);
/// How long after the publish starts the late player joins.
const JOIN_AFTER: Duration = Duration::from_millis(2500);

fn started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
}

/// Asserts that `got` has the source's codecs and, from its first packet's timestamp on,
/// every packet of every stream of `source`, identical, each video stream starting on a
/// keyframe; the join point, in ms.
fn assert_every_packet_from_join(who: &str, source: &Probe9, got: &Probe9) -> i64 {
    assert_eq!(got.codecs, source.codecs, "{who}: codecs");
    let join = got.packets.first().map(|p| p.pts).expect("no packets");
    for (stream, codec) in source.codecs.iter().enumerate() {
        let expected: Vec<_> = source
            .of(stream)
            .into_iter()
            .filter(|p| p.pts >= join)
            .map(|p| (p.pts, &p.size_crc))
            .collect();
        let received: Vec<_> = got
            .of(stream)
            .iter()
            .map(|p| (p.pts, &p.size_crc))
            .collect();
        assert!(
            !expected.is_empty(),
            "{who}: nothing of stream {stream} after {join} ms"
        );
        assert_eq!(
            received.len(),
            expected.len(),
            "{who}: packets of stream {stream} ({codec}) from {join} ms on"
        );
        assert!(
            received == expected,
            "{who}: stream {stream} ({codec}) differs"
        );
        let video = !matches!(codec.as_str(), "aac" | "opus");
        if video {
            assert!(
                got.of(stream)[0].keyframe,
                "{who}: stream {stream} starts on a non-key frame"
            );
        }
    }
    join
}

fn read_tags(path: &Path) -> Vec<FlvTag> {
    let data = std::fs::read(path).expect("read recording");
    let mut reader = FlvReader::new(1 << 24);
    reader.push(&data);
    let mut tags = Vec::new();
    while let Some(tag) = reader.next_tag().expect("a valid FLV") {
        tags.push(tag);
    }
    tags
}

/// A number of the recording's `onMetaData`.
fn metadata_number(tags: &[FlvTag], key: &str) -> Option<f64> {
    let meta = tags.iter().find(|t| t.tag_type == tag_type::SCRIPT)?;
    let values = siprtmp_core::amf::amf0::decode_all(&meta.body).ok()?;
    values.get(1)?.get(key)?.as_f64()
}

fn is_config(tag: &FlvTag) -> bool {
    match tag.tag_type {
        tag_type::VIDEO => {
            classify_video(&tag.body).is_some_and(|v| v.sequence_header || v.metadata)
        }
        tag_type::AUDIO => {
            classify_audio(&tag.body).is_some_and(|a| a.sequence_header || a.multichannel_config)
        }
        _ => false,
    }
}

/// Plays the recording `vod/NAME` from `start` ms with the project's client: it must land on
/// the first stream's keyframe at or before `start` (per ffmpeg 9's reading of the file),
/// after every configuration the file holds, and go on with the file's tags in order.
fn assert_plays_back_from(server: &TestServer, name: &str, file: &Path, recorded: &Probe9) {
    let start = 2500;
    let landing = recorded
        .of(0)
        .into_iter()
        .filter(|p| p.keyframe && p.pts <= start)
        .map(|p| p.pts)
        .max()
        .expect("a keyframe before the start");
    let tags = read_tags(file);
    let configs: Vec<&FlvTag> = tags.iter().filter(|t| is_config(t)).collect();
    let (mut client, _) =
        TcpRtmpClient::play_from(server.addr, "vod", name, f64::from(start as u32), None);
    let until = landing as u32 + 1000;
    let events = client.collect(STARTUP, |e| {
        matches!(e, ClientEvent::Media(m) if matches!(m.type_id, 8 | 9) && m.timestamp >= until)
    });
    let got: Vec<(u8, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) if matches!(m.type_id, 8 | 9) => {
                Some((m.type_id, m.payload.to_vec()))
            }
            _ => None,
        })
        .collect();
    assert!(
        got.len() > configs.len(),
        "{name}: no media after {start} ms"
    );
    let sent_configs: Vec<&[u8]> = got[..configs.len()].iter().map(|m| &m.1[..]).collect();
    let file_configs: Vec<&[u8]> = configs.iter().map(|t| &t.body[..]).collect();
    assert_eq!(
        sent_configs, file_configs,
        "{name}: every configuration first"
    );
    let rest = &got[configs.len()..];
    let from = tags
        .iter()
        .position(|t| {
            t.tag_type == tag_type::VIDEO && i64::from(t.timestamp) == landing && !is_config(t)
        })
        .expect("the landing keyframe in the file");
    let expected: Vec<(u8, Vec<u8>)> = tags[from..]
        .iter()
        .filter(|t| t.tag_type != tag_type::SCRIPT)
        .take(rest.len())
        .map(|t| (t.tag_type, t.body.to_vec()))
        .collect();
    assert!(
        rest == &expected[..],
        "{name}: not the file's tags from its keyframe at {landing} ms"
    );
}

/// Publishes `clip` with ffmpeg 9 to `vod/NAME` (recorded), joins 2.5 s later with a second
/// ffmpeg 9, and checks the late player, the recording and its playback from 2.5 s.
fn publish_join_late_and_record(
    runtime: Runtime,
    clip: &str,
    codecs: &[&str],
    fourccs: (&[u8; 4], &[u8; 4]),
    test: &str,
) {
    let source_path = media(clip);
    let source = probe(&source_path);
    assert_eq!(source.codecs, codecs, "the clip's codecs");
    let dir = scratch_dir(test);
    let root = dir.join("media");
    let mut server =
        TestServer::start_on_with(runtime, recording_node(false), None, root.clone(), None);
    let url = server.url("vod/clip");

    let publisher = ffmpeg9::publish(&source_path, &url);
    assert!(
        server.wait_for(1, STARTUP, started),
        "publish did not start"
    );
    // A deliberate delay, not a wait for a condition: the player must join mid-stream.
    std::thread::sleep(JOIN_AFTER);
    let late_path = dir.join("late.flv");
    let late = ffmpeg9::play(&url, &late_path);
    publisher.finish(REAL_TIME);
    late.finish(STARTUP);
    let stopped = server.wait_for(1, STARTUP, |e| matches!(e, Event::RecordStopped { .. }));
    assert!(stopped, "recording did not stop: {:?}", server.events());

    let got = probe(&late_path);
    let join = assert_every_packet_from_join("late ffmpeg 9", &source, &got);
    assert!(
        join >= 1000,
        "the late player joined at {join} ms: not late"
    );
    let errors = decode_errors(&late_path);
    assert!(
        errors.is_empty(),
        "late player's file does not decode cleanly: {errors}"
    );

    let recorded_path = root.join("vod/clip.flv");
    let recorded = probe(&recorded_path);
    assert_eq!(
        assert_every_packet_from_join("recording", &source, &recorded),
        0,
        "the recording starts at 0"
    );
    let tags = read_tags(&recorded_path);
    let last = |p: &Probe9| p.packets.iter().map(|p| p.pts).max().unwrap_or(0);
    assert_eq!(last(&recorded), last(&source), "recorded duration");
    let duration = metadata_number(&tags, "duration").expect("duration in onMetaData");
    assert!(
        (duration * 1000.0 - last(&source) as f64).abs() <= 100.0,
        "onMetaData duration {duration}"
    );
    let as_number = |c: &[u8; 4]| f64::from(u32::from_be_bytes(*c));
    assert_eq!(
        metadata_number(&tags, "videocodecid"),
        Some(as_number(fourccs.0))
    );
    assert_eq!(
        metadata_number(&tags, "audiocodecid"),
        Some(as_number(fourccs.1))
    );
    assert!(
        decode_errors(&recorded_path).is_empty(),
        "the recording does not decode"
    );
    assert_plays_back_from(&server, "clip", &recorded_path, &recorded);
}

#[test]
fn hevc_aac_late_player_recording_and_playback() {
    publish_join_late_and_record(
        Runtime::Mio,
        "hevc_aac_160x120_12fps_4s.flv",
        &["hevc", "aac"],
        (b"hvc1", &[0, 0, 0, 10]),
        "ertmp_hevc_aac",
    );
}

#[test]
fn av1_opus_late_player_recording_and_playback() {
    publish_join_late_and_record(
        Runtime::Mio,
        "av1_opus_160x120_12fps_4s.flv",
        &["av1", "opus"],
        (b"av01", b"Opus"),
        "ertmp_av1_opus",
    );
}

#[test]
fn vp9_opus_late_player_recording_and_playback_on_every_runtime() {
    on_every_runtime_at_once(|runtime| {
        publish_join_late_and_record(
            runtime,
            "vp9_opus_160x120_12fps_4s.flv",
            &["vp9", "opus"],
            (b"vp09", b"Opus"),
            &format!("ertmp_vp9_opus_{runtime:?}"),
        )
    });
}

/// ffmpeg 9 publishes a second video track as multitrack messages (OneTrack, track 1): the
/// late player gets both tracks from the same keyframe time on.
#[test]
fn h264_with_a_second_video_track_late_player_recording_and_playback() {
    publish_join_late_and_record(
        Runtime::Mio,
        "h264x2_aac_12fps_4s.flv",
        &["h264", "h264", "aac"],
        (&[0, 0, 0, 7], &[0, 0, 0, 10]),
        "ertmp_h264x2_aac",
    );
}

/// Legacy players of an AV1+Opus stream: Debian's ffmpeg 5.1 does not know the codecs and
/// exits with an error (not a crash); rtmpdump saves the stream, which ffmpeg 9 then reads
/// with every packet from its join point; the server keeps serving (a second rtmpdump).
#[test]
fn legacy_players_of_an_enhanced_stream_neither_crash_nor_break_the_server() {
    let source_path = media("av1_opus_160x120_12fps_4s.flv");
    let source = probe(&source_path);
    let dir = scratch_dir("ertmp_legacy");
    let mut server = TestServer::start(recording_node(false), None);
    let url = server.url("live/clip");
    let publisher = ffmpeg9::publish(&source_path, &url);
    assert!(
        server.wait_for(1, STARTUP, started),
        "publish did not start"
    );
    let mut legacy = Peer::spawn_command(
        "ffmpeg 5.1 player",
        std::process::Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "quiet",
                "-y",
                "-i",
                &url,
            ])
            .args(["-c", "copy", "-f", "flv"])
            .arg(dir.join("ffmpeg5.flv")),
    );
    let dump_path = dir.join("rtmpdump.flv");
    let dump = rtmpdump_play(&url, &dump_path);
    let status = legacy.wait(REAL_TIME).expect("ffmpeg 5.1 exits");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "ffmpeg 5.1 was killed by a signal: {status}"
    );
    publisher.finish(REAL_TIME);
    dump.finish(STARTUP);
    assert_every_packet_from_join("rtmpdump", &source, &probe(&dump_path));
    // The server still serves: the stream ended, so a new player is told Play.Start and
    // waits for a publisher (`play` returns once it is told).
    let _again = TcpRtmpClient::play(server.addr, "live", "clip", None);
}
