//! Recording, video on demand and two-phase decisions as clients see them, driven in memory
//! with an in-memory disk and in virtual time: what a recorded file holds, how playback is
//! paced, seek, pause, the end of a file, a full disk, appending, names that try to leave the
//! media root, and connects, publishes and plays accepted, rejected or redirected.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use siprtmp_core::amf::{amf0, Value};
use siprtmp_core::flv::reader::{FlvReader, FlvTag};
use siprtmp_core::flv::tag::tag_type;
use siprtmp_core::node::{AppConfig, RecordPolicy, ServerConfig};
use siprtmp_core::node::{Decision, Event, NodeConfig, PublishMode, Question, RecordError};
use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::command::{data_message, message_values};
use siprtmp_core::rtmp::control::{ProtocolControl, UserControl};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::storage::{FileError, FileErrorKind};
use support::rtmp_clients::{Driven, InMemory};

const AVC_CONFIG: &[u8] = &[0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e];
const AAC_CONFIG: &[u8] = &[0xaf, 0x00, 0x12, 0x10];
/// Source timestamps start here; recorded files start at 0.
const BASE: u32 = 7000;

/// One video frame every 100 ms (a keyframe every second) and audio every 50 ms, for
/// `seconds`, with source timestamps from `BASE`: (type, timestamp, payload).
fn stream(seconds: u32) -> Vec<(u8, u32, Vec<u8>)> {
    let mut out = vec![
        (type_id::VIDEO, BASE, AVC_CONFIG.to_vec()),
        (type_id::AUDIO, BASE, AAC_CONFIG.to_vec()),
    ];
    for ms in (0..seconds * 1000).step_by(50) {
        let n = (ms / 50) as u8;
        if ms % 100 == 0 {
            let first = if ms % 1000 == 0 { 0x17 } else { 0x27 };
            out.push((type_id::VIDEO, BASE + ms, vec![first, 1, 0, 0, 0, n, n, n]));
        }
        out.push((type_id::AUDIO, BASE + ms, vec![0xaf, 1, n, n]));
    }
    out
}

/// A node in memory (see `support::rtmp_clients`), with this suite's own steps.
type Fixture = InMemory;

impl Fixture {
    fn new() -> Self {
        Self::with(NodeConfig::default())
    }

    fn recording_all(app: &str) -> Self {
        let mut server = ServerConfig::default();
        server.apps.insert(
            app.into(),
            AppConfig {
                record: RecordPolicy::All,
                ..AppConfig::default()
            },
        );
        Self::with(NodeConfig {
            server,
            ..NodeConfig::default()
        })
    }

    fn with(config: NodeConfig) -> Self {
        let mut f = Self::start(config, 7);
        f.net.keep_raw = true;
        f
    }

    fn call(&mut self, c: usize, stream: u32, name: &str, args: Vec<Value>) {
        self.net.clients[c].client.call(stream, name, args);
        self.pump();
    }

    /// A publisher of `name` with `kind` ("live", "record", "append").
    fn publish(&mut self, name: &str, kind: &str) -> (usize, u32) {
        let (c, id) = self.client_with_stream("vod");
        self.call(
            c,
            id,
            "publish",
            vec![Value::string(name), Value::string(kind)],
        );
        (c, id)
    }

    fn send_metadata(&mut self, c: usize, s: u32) {
        let meta = data_message(
            s,
            BASE,
            &[
                Value::string("@setDataFrame"),
                Value::string("onMetaData"),
                Value::EcmaArray(vec![
                    ("width".into(), Value::Number(320.0)),
                    ("duration".into(), Value::Number(0.0)),
                ]),
            ],
        );
        self.net.clients[c].client.send_media(&meta);
        self.pump();
    }

    fn send_all(&mut self, c: usize, s: u32, media: &[(u8, u32, Vec<u8>)]) {
        for (t, ts, payload) in media {
            let msg = RtmpMessage::new(*t, s, *ts, payload.clone());
            self.net.clients[c].client.send_media(&msg);
        }
        self.pump();
    }

    /// Publishes `seconds` of media as a `record` and stops; returns the file's bytes.
    fn record(&mut self, name: &str, seconds: u32) -> Vec<u8> {
        let (p, s) = self.publish(name, "record");
        assert_eq!(
            self.statuses(p),
            vec!["NetStream.Publish.Start", "NetStream.Record.Start"]
        );
        self.send_metadata(p, s);
        self.send_all(p, s, &stream(seconds));
        self.call(p, s, "closeStream", vec![]);
        self.net.fs.files[&format!("vod/{name}.flv")].clone()
    }

    fn play(&mut self, name: &str, start: f64) -> (usize, u32) {
        let (c, id) = self.client_with_stream("vod");
        self.call(
            c,
            id,
            "play",
            vec![Value::string(name), Value::Number(start)],
        );
        (c, id)
    }

    /// Names of the data messages received (`onMetaData`, `onPlayStatus`...), with their
    /// second value.
    fn data(&self, c: usize) -> Vec<(String, Value)> {
        self.events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m) if m.type_id == type_id::DATA_AMF0 => {
                    let v = message_values(m).ok()?;
                    Some((v.first()?.as_str()?.to_owned(), v.get(1)?.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// User control events the client received (from its raw bytes).
    fn user_controls(&self, c: usize) -> Vec<UserControl> {
        let raw = &self.net.clients[c].raw;
        let mut input = BytesMut::from(&raw[3073.min(raw.len())..]);
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        let mut out = Vec::new();
        while let Ok(Some(msg)) = decoder.decode(&mut input) {
            match msg.type_id {
                type_id::SET_CHUNK_SIZE => {
                    if let Ok(ProtocolControl::SetChunkSize(n)) = ProtocolControl::parse(&msg) {
                        decoder.set_chunk_size(n).unwrap();
                    }
                }
                type_id::USER_CONTROL => out.push(UserControl::parse(&msg.payload).unwrap()),
                _ => {}
            }
        }
        out
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.net.run_until(&mut self.now, until);
    }

    fn node_events(&self) -> &[Event] {
        &self.net.node_events
    }
}

fn tags(file: &[u8]) -> Vec<FlvTag> {
    let mut reader = FlvReader::new(1 << 20);
    reader.push(file);
    let mut out = Vec::new();
    while let Some(tag) = reader.next_tag().expect("valid FLV") {
        out.push(tag);
    }
    out
}

fn metadata_of(tag: &FlvTag) -> Value {
    assert_eq!(tag.tag_type, tag_type::SCRIPT);
    let values = amf0::decode_all(&tag.body).unwrap();
    assert_eq!(values[0], Value::string("onMetaData"));
    values[1].clone()
}

/// The media of the file as an RTMP client would receive it: (type, timestamp, payload).
fn file_media(file: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    tags(file)
        .into_iter()
        .filter(|t| t.tag_type != tag_type::SCRIPT)
        .map(|t| (t.tag_type, t.timestamp, t.body.to_vec()))
        .collect()
}

#[test]
fn a_recorded_file_has_patched_metadata_and_timestamps_from_zero() {
    let mut f = Fixture::new();
    let (live_player, _) = f.play("show", -1000.0);
    let file = f.record("show", 3);
    assert_eq!(&file[..3], b"FLV");
    let tags = tags(&file);
    let meta = metadata_of(&tags[0]);
    assert_eq!(meta.get("width"), Some(&Value::Number(320.0)));
    // The last media timestamp: 2950 ms after the first.
    assert_eq!(meta.get("duration"), Some(&Value::Number(2.95)));
    assert_eq!(
        meta.get("filesize"),
        Some(&Value::Number(file.len() as f64))
    );
    let expected: Vec<_> = stream(3)
        .into_iter()
        .map(|(t, ts, p)| (t, ts - BASE, p))
        .collect();
    assert_eq!(file_media(&file), expected);
    // The live player watched while it recorded, with the publisher's timestamps.
    assert_eq!(f.media(live_player).len(), expected.len());
    assert!(f.node_events().iter().any(|e| matches!(
        e,
        Event::RecordStopped { path, bytes, duration_ms: 2950, error: None, .. }
            if path == "vod/show.flv" && *bytes == file.len() as u64
    )));
}

#[test]
fn ffmpeg_style_live_publishes_are_recorded_when_the_app_records_all() {
    let mut f = Fixture::recording_all("vod");
    let (p, s) = f.publish("cam", "live");
    // The publisher did not ask: it hears nothing of the recording (the log does).
    assert_eq!(f.statuses(p), vec!["NetStream.Publish.Start"]);
    assert!(f
        .node_events()
        .iter()
        .any(|e| matches!(e, Event::RecordStarted { path, .. } if path == "vod/cam.flv")));
    f.send_all(p, s, &stream(1));
    f.call(p, s, "closeStream", vec![]);
    assert_eq!(
        file_media(&f.net.fs.files["vod/cam.flv"]).len(),
        stream(1).len()
    );
    // Without the setting, live is not recorded.
    let mut f = Fixture::new();
    let (p, s) = f.publish("cam", "live");
    f.send_all(p, s, &stream(1));
    assert_eq!(f.statuses(p), vec!["NetStream.Publish.Start"]);
    assert!(f.net.fs.files.is_empty());
}

#[test]
fn playback_starts_with_metadata_and_is_paced_by_timestamps() {
    let mut f = Fixture::new();
    let file = f.record("show", 4);
    let (c, s) = f.play("show", 0.0);
    assert_eq!(
        f.statuses(c),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let data = f.data(c);
    assert_eq!(data[0].0, "|RtmpSampleAccess");
    assert_eq!(data[1].0, "onMetaData");
    assert_eq!(data[1].1.get("duration"), Some(&Value::Number(3.95)));
    let burst = ServerConfig::default().vod_burst.as_millis() as u32;
    let start = f.now;
    for _ in 0..50 {
        let elapsed = f.now.duration_since(start).as_millis() as u32;
        let newest = f.media(c).iter().map(|m| m.1).max().unwrap_or(0);
        assert!(
            newest <= elapsed + burst,
            "sent {newest} ms of media after {elapsed} ms"
        );
        // Tags are 50 ms apart: everything due has gone.
        assert!(
            newest + 50 > (elapsed + burst).min(3950),
            "late: {newest} ms of media after {elapsed} ms"
        );
        f.run_for(Duration::from_millis(100));
    }
    assert_eq!(f.media(c), file_media(&file), "every tag, in order");
    // The end: onPlayStatus Play.Complete, StreamEOF, then Play.Stop.
    let complete = f
        .data(c)
        .into_iter()
        .find(|(name, _)| name == "onPlayStatus");
    assert_eq!(
        complete.unwrap().1.get("code"),
        Some(&Value::string("NetStream.Play.Complete"))
    );
    assert!(f.user_controls(c).contains(&UserControl::StreamEof(s)));
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Play.Stop");
}

#[test]
fn start_and_seek_land_on_the_keyframe_at_or_before_the_target() {
    let mut f = Fixture::new();
    f.record("show", 4);
    let (c, s) = f.play("show", 2500.0);
    let video: Vec<_> = f
        .media(c)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .collect();
    // Decoder configuration first (at the keyframe's time), then the keyframe at 2000 ms.
    assert_eq!(video[0], (type_id::VIDEO, 2000, AVC_CONFIG.to_vec()));
    assert_eq!((video[1].1, video[1].2[0]), (2000, 0x17));
    assert_eq!(f.data(c)[1].0, "onMetaData");

    f.run_for(Duration::from_millis(300));
    let before = f.events(c).len();
    f.call(c, s, "seek", vec![Value::Number(1200.0)]);
    let after: Vec<ClientEvent> = f.events(c)[before..].to_vec();
    let codes: Vec<&str> = after
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status(_, code) => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "NetStream.Seek.Notify",
            "NetStream.Play.Reset",
            "NetStream.Play.Start"
        ]
    );
    let first_video_after_seek = after.iter().find_map(|e| match e {
        ClientEvent::Media(m) if m.type_id == type_id::VIDEO && m.payload[1] == 1 => {
            Some((m.timestamp, m.payload[0]))
        }
        _ => None,
    });
    assert_eq!(first_video_after_seek, Some((1000, 0x17)));
}

/// After a start and after seeks back and forth, every tag carries the file's own timestamp
/// from the keyframe playback landed on (the decoder configurations first, stamped with the
/// keyframe's time), never a time counted from the start or the seek target: players show
/// the file's position, and recorders write the file's times.
#[test]
fn a_start_and_seeks_either_way_send_the_files_own_timestamps() {
    let mut f = Fixture::new();
    let file = file_media(&f.record("show", 4));
    let landed_on = |keyframe: u32| {
        if keyframe == 0 {
            return file.clone();
        }
        let at = file
            .iter()
            .position(|m| m.0 == type_id::VIDEO && m.1 == keyframe && m.2[0] == 0x17)
            .expect("a keyframe");
        let mut expected = vec![
            (type_id::VIDEO, keyframe, AVC_CONFIG.to_vec()),
            (type_id::AUDIO, keyframe, AAC_CONFIG.to_vec()),
        ];
        expected.extend_from_slice(&file[at..]);
        expected
    };
    let (c, s) = f.play("show", 2500.0);
    f.run_for(Duration::from_millis(300));
    let got = f.media(c);
    assert!(got.len() > 10, "only {} tags", got.len());
    assert!(landed_on(2000).starts_with(&got), "play from 2500 ms");
    for (target, keyframe) in [(1200.0, 1000), (3999.0, 3000), (500.0, 0)] {
        let before = f.media(c).len();
        f.call(c, s, "seek", vec![Value::Number(target)]);
        f.run_for(Duration::from_millis(300));
        let got = f.media(c)[before..].to_vec();
        assert!(got.len() > 10, "seek to {target}: only {} tags", got.len());
        assert!(landed_on(keyframe).starts_with(&got), "seek to {target} ms");
    }
}

#[test]
fn pause_holds_the_file_and_unpause_continues_where_it_stopped() {
    let mut f = Fixture::new();
    let file = f.record("show", 3);
    let (c, s) = f.play("show", 0.0);
    f.run_for(Duration::from_millis(1000));
    f.call(
        c,
        s,
        "pause",
        vec![Value::Boolean(true), Value::Number(1000.0)],
    );
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Pause.Notify");
    let held = f.media(c).len();
    f.run_for(Duration::from_secs(10));
    assert_eq!(f.media(c).len(), held, "nothing is sent while paused");
    f.call(
        c,
        s,
        "pause",
        vec![Value::Boolean(false), Value::Number(1000.0)],
    );
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Unpause.Notify");
    f.run_for(Duration::from_secs(4));
    assert_eq!(f.media(c), file_media(&file), "no tag lost or repeated");
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Play.Stop");
}

#[test]
fn a_duration_ends_playback_early() {
    let mut f = Fixture::new();
    f.record("show", 3);
    let (c, _) = f.client_with_stream("vod");
    f.call(
        c,
        1,
        "play",
        vec![
            Value::string("show"),
            Value::Number(0.0),
            Value::Number(1000.0),
            Value::Boolean(false),
        ],
    );
    f.run_for(Duration::from_secs(5));
    assert_eq!(
        f.statuses(c).first().unwrap(),
        "NetStream.Play.Start",
        "no reset"
    );
    assert!(f.media(c).iter().all(|m| m.1 <= 1000));
    assert!(f.media(c).iter().any(|m| m.1 == 1000));
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Play.Stop");
}

#[test]
fn two_players_of_one_file_keep_their_own_positions() {
    let mut f = Fixture::new();
    let file = f.record("show", 3);
    let (a, _) = f.play("show", 0.0);
    f.run_for(Duration::from_millis(2000));
    let (b, _) = f.play("show", 0.0);
    let newest = |f: &Fixture, c| f.media(c).iter().map(|m| m.1).max().unwrap_or(0);
    assert!(newest(&f, a) >= 2000);
    assert!(
        newest(&f, b) <= 500,
        "the second player starts at the start"
    );
    f.run_for(Duration::from_millis(1000));
    assert!(newest(&f, a) == 2950 && newest(&f, b) <= 1500);
    f.run_for(Duration::from_secs(3));
    assert_eq!(f.media(a), file_media(&file));
    assert_eq!(f.media(b), file_media(&file));
}

#[test]
fn a_missing_file_is_not_found_and_default_play_waits_for_live() {
    let mut f = Fixture::new();
    let (c, _) = f.play("nothing", 0.0);
    assert_eq!(f.statuses(c), vec!["NetStream.Play.StreamNotFound"]);
    let (w, _) = f.play("later", -2000.0);
    assert_eq!(
        f.statuses(w),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let (p, s) = f.publish("later", "live");
    f.send_all(p, s, &stream(1));
    assert_eq!(
        f.statuses(w).last().unwrap(),
        "NetStream.Play.PublishNotify"
    );
    assert!(!f.media(w).is_empty());
}

#[test]
fn names_that_leave_the_media_root_are_refused() {
    let mut f = Fixture::new();
    for bad in ["../escape", "a/../../b", "/etc/passwd", ".hidden", "x\\y"] {
        let (p, _) = f.publish(bad, "record");
        assert_eq!(f.statuses(p), vec!["NetStream.Publish.BadName"], "{bad}");
        let (c, _) = f.play(bad, 0.0);
        assert_eq!(
            f.statuses(c),
            vec!["NetStream.Play.StreamNotFound"],
            "{bad}"
        );
    }
    assert!(
        f.net.fs.log.is_empty(),
        "no file was touched: {:?}",
        f.net.fs.log
    );
}

#[test]
fn a_full_disk_ends_the_recording_and_keeps_what_was_written() {
    let mut f = Fixture::new();
    f.net.fs.capacity = Some(1500);
    let (live_player, _) = f.play("show", -1000.0);
    let (p, s) = f.publish("show", "record");
    f.send_metadata(p, s);
    f.send_all(p, s, &stream(3));
    assert_eq!(f.statuses(p).last().unwrap(), "NetStream.Record.Failed");
    let file = f.net.fs.files["vod/show.flv"].clone();
    assert!(file.len() <= 1500 && file.len() > 1000, "{}", file.len());
    // Whole tags only (the torn one is cut), and metadata matching what is there.
    let tags = tags(&file);
    let end = tags.last().unwrap();
    assert_eq!(
        end.offset + 11 + end.body.len() as u64 + 4,
        file.len() as u64
    );
    let meta = metadata_of(&tags[0]);
    assert_eq!(
        meta.get("filesize"),
        Some(&Value::Number(file.len() as f64))
    );
    let last = f64::from(end.timestamp) / 1000.0;
    assert_eq!(meta.get("duration"), Some(&Value::Number(last)));
    let written = file_media(&file);
    let source: Vec<_> = stream(3)
        .into_iter()
        .map(|(t, ts, p)| (t, ts - BASE, p))
        .collect();
    assert_eq!(
        written[..],
        source[..written.len()],
        "a prefix of the stream"
    );
    let error = f.node_events().iter().find_map(|e| match e {
        Event::RecordStopped { error, .. } => error.clone(),
        _ => None,
    });
    assert!(matches!(
        error,
        Some(RecordError::File(FileError {
            kind: FileErrorKind::NoSpace,
            ..
        }))
    ));
    // The live stream goes on.
    assert_eq!(f.media(live_player).len(), source.len());
}

#[test]
fn a_slow_disk_delays_only_the_file() {
    let mut f = Fixture::new();
    f.net.fs.hold = true;
    let (live_player, _) = f.play("show", -1000.0);
    let (p, s) = f.publish("show", "record");
    f.send_all(p, s, &stream(2));
    assert_eq!(
        f.media(live_player).len(),
        stream(2).len(),
        "players never wait"
    );
    assert!(f.net.fs.files.is_empty());
    f.call(p, s, "closeStream", vec![]);
    f.net.fs.hold = false;
    let held = f.net.fs.held.len();
    f.net.release_files(f.now, held);
    assert_eq!(
        file_media(&f.net.fs.files["vod/show.flv"]).len(),
        stream(2).len()
    );
}

#[test]
fn a_disk_that_never_catches_up_stops_the_recording_not_the_server() {
    let server = ServerConfig {
        max_record_backlog: 1000,
        ..ServerConfig::default()
    };
    let mut f = Fixture::with(NodeConfig {
        server,
        ..NodeConfig::default()
    });
    f.net.fs.hold = true;
    let (p, s) = f.publish("show", "record");
    f.send_all(p, s, &stream(3));
    assert_eq!(f.statuses(p).last().unwrap(), "NetStream.Record.Failed");
    let writes_before = f.net.fs.held.len();
    f.send_all(p, s, &stream(1));
    assert_eq!(f.net.fs.held.len(), writes_before, "nothing more is queued");
}

#[test]
fn append_continues_after_the_last_timestamp() {
    let mut f = Fixture::new();
    let first = f.record("show", 1);
    let (p, s) = f.publish("show", "append");
    assert_eq!(f.statuses(p).last().unwrap(), "NetStream.Record.Start");
    f.send_all(p, s, &stream(1));
    f.call(p, s, "closeStream", vec![]);
    let file = f.net.fs.files["vod/show.flv"].clone();
    let media = file_media(&file);
    let half = stream(1).len();
    assert_eq!(
        media[..half],
        file_media(&first)[..],
        "the first recording is kept"
    );
    assert_eq!(media.len(), 2 * half);
    assert_eq!(media[half - 1].1, 950);
    assert_eq!(media[half].1, 951, "continues after the last timestamp");
    assert_eq!(media[2 * half - 1].1, 951 + 950);
    let meta = metadata_of(&tags(&file)[0]);
    assert_eq!(meta.get("duration"), Some(&Value::Number(1.901)));
    assert_eq!(
        meta.get("filesize"),
        Some(&Value::Number(file.len() as f64))
    );
}

#[test]
fn stream_length_reports_a_recorded_duration() {
    let mut f = Fixture::new();
    f.record("show", 2);
    let (c, _) = f.client_with_stream("vod");
    f.call(c, 0, "getStreamLength", vec![Value::string("show")]);
    let length = f.events(c).iter().find_map(|e| match e {
        ClientEvent::Command(cmd) if cmd.name == "_result" => cmd.args.first().cloned(),
        _ => None,
    });
    assert_eq!(length, Some(Value::Number(1.95)));
}

fn decide_all(f: &mut Fixture, mut answer: impl FnMut(&Question) -> Decision) {
    let pending: Vec<_> = f
        .net
        .node_events
        .drain(..)
        .filter_map(|e| match e {
            Event::Decide { request, question } => Some((request, question)),
            _ => None,
        })
        .collect();
    for (request, question) in pending {
        f.net
            .node
            .decide(f.now, request, answer(&question))
            .unwrap();
    }
    f.pump();
}

fn deciding() -> Fixture {
    Fixture::with(NodeConfig {
        decisions: true,
        ..NodeConfig::default()
    })
}

#[test]
fn connects_wait_for_the_application_and_may_be_rejected_or_redirected() {
    let mut f = deciding();
    let rejected = f.net.connect(f.now, "vod");
    let redirected = f.net.connect(f.now, "vod");
    let accepted = f.net.connect(f.now, "vod");
    f.pump();
    for c in [rejected, redirected, accepted] {
        assert!(!f.events(c).contains(&ClientEvent::Connected), "waits");
    }
    let (r1, r2) = (f.net.clients[rejected].conn, f.net.clients[redirected].conn);
    decide_all(&mut f, |q| match q {
        Question::Connect { conn, app, .. } if *conn == r1 => {
            assert_eq!(app, "vod");
            Decision::Reject("go away".into())
        }
        Question::Connect { conn, .. } if *conn == r2 => {
            Decision::Redirect("rtmp://other.example/vod".into())
        }
        _ => Decision::Accept,
    });
    let rejected_code = ClientEvent::ConnectRejected("NetConnection.Connect.Rejected".into());
    assert!(f.events(rejected).contains(&rejected_code));
    assert!(f.events(redirected).contains(&rejected_code));
    assert!(f.net.clients[rejected].closed && f.net.clients[redirected].closed);
    assert!(f.events(accepted).contains(&ClientEvent::Connected));
    // The redirect target is in the answer, as `ex.redirect` with code 302.
    let raw = &f.net.clients[redirected].raw;
    let needle = b"rtmp://other.example/vod";
    assert!(raw.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn rejected_publishes_and_plays_get_their_status_and_record_nothing() {
    let mut f = deciding();
    let c = f.net.connect(f.now, "vod");
    f.pump();
    decide_all(&mut f, |_| Decision::Accept);
    f.net.clients[c].client.create_stream();
    f.net.clients[c].client.create_stream();
    f.pump();
    f.call(
        c,
        1,
        "publish",
        vec![Value::string("cam?token=wrong"), Value::string("record")],
    );
    let mut seen = None;
    decide_all(&mut f, |q| {
        if let Question::Publish {
            name, query, mode, ..
        } = q
        {
            assert_eq!(
                (name.as_str(), query.as_str(), *mode),
                ("cam", "token=wrong", PublishMode::Record)
            );
        }
        Decision::Reject("bad token".into())
    });
    assert_eq!(f.statuses(c), vec!["NetStream.Publish.Denied"]);
    assert!(f.net.fs.log.is_empty(), "nothing recorded");
    f.call(
        c,
        2,
        "play",
        vec![Value::string("cam?token=x"), Value::Number(0.0)],
    );
    decide_all(&mut f, |q| {
        seen = Some(q.clone());
        Decision::Reject("no".into())
    });
    assert!(matches!(seen, Some(Question::Play { ref query, .. }) if query == "token=x"));
    assert_eq!(f.statuses(c).last().unwrap(), "NetStream.Play.Failed");
    assert!(f.net.fs.log.is_empty(), "no file opened");
    // Accepted, the same publish goes through and records.
    f.call(
        c,
        1,
        "publish",
        vec![Value::string("cam?token=right"), Value::string("record")],
    );
    decide_all(&mut f, |_| Decision::Accept);
    assert_eq!(
        f.statuses(c)[2..],
        ["NetStream.Publish.Start", "NetStream.Record.Start"]
    );
    assert!(f.net.fs.files.contains_key("vod/cam.flv"));
}

#[test]
fn messages_sent_while_a_decision_is_pending_wait_for_it() {
    let mut f = deciding();
    let c = f.net.connect(f.now, "vod");
    let player = f.net.connect(f.now, "vod");
    f.pump();
    decide_all(&mut f, |_| Decision::Accept);
    for client in [c, player] {
        f.net.clients[client].client.create_stream();
    }
    f.pump();
    f.call(
        player,
        1,
        "play",
        vec![Value::string("cam"), Value::Number(-1000.0)],
    );
    // publish, then media at once, before any answer.
    f.call(
        c,
        1,
        "publish",
        vec![Value::string("cam"), Value::string("live")],
    );
    f.send_all(c, 1, &stream(1)[..4]);
    assert!(f.statuses(c).is_empty() && f.statuses(player).is_empty());
    // Both answered: the publish starts and the media sent meanwhile reaches the player.
    decide_all(&mut f, |_| Decision::Accept);
    assert_eq!(f.statuses(c), vec!["NetStream.Publish.Start"]);
    let sent: Vec<_> = stream(1)[..4]
        .iter()
        .map(|(t, ts, p)| (*t, *ts, p.clone()))
        .collect();
    assert_eq!(f.media(player), sent);
    // A redirect is only for connects.
    f.net.clients[c].client.create_stream();
    f.pump();
    f.call(c, 2, "play", vec![Value::string("x")]);
    let request = f.net.node_events.iter().find_map(|e| match e {
        Event::Decide { request, .. } => Some(*request),
        _ => None,
    });
    let err = f.net.node.decide(
        f.now,
        request.unwrap(),
        Decision::Redirect("rtmp://x/y".into()),
    );
    assert!(err.is_err());
}

/// Media after [`stream`]'s first `from` seconds up to `to` (no decoder configurations: an
/// encoder sends those once).
fn stream_between(from: u32, to: u32) -> Vec<(u8, u32, Vec<u8>)> {
    stream(to)
        .into_iter()
        .skip(2)
        .filter(|(_, ts, _)| *ts >= BASE + from * 1000)
        .collect()
}

/// The hardening issue's full disk under `record-all`: the encoder (ffmpeg aborts on an error
/// status) hears nothing of the recording the application chose, its players keep every
/// message, the failure is counted and logged, and once there is room again the recording
/// goes on in a new file that starts cleanly (metadata, decoder configurations, a keyframe).
#[test]
fn with_record_all_a_full_disk_neither_ends_the_stream_nor_the_recording() {
    let mut f = Fixture::recording_all("vod");
    f.net.fs.capacity = Some(1500);
    let (live_player, _) = f.play("show", -1000.0);
    let (p, s) = f.publish("show", "live");
    f.send_metadata(p, s);
    f.send_all(p, s, &stream(3));
    assert_eq!(
        f.statuses(p),
        vec!["NetStream.Publish.Start"],
        "no Record.Start, no Record.Failed"
    );
    assert_eq!(f.net.node.recordings_failed(), 1);
    let error = f.node_events().iter().find_map(|e| match e {
        Event::RecordStopped { error, .. } => error.clone(),
        _ => None,
    });
    assert!(matches!(
        error,
        Some(RecordError::File(FileError {
            kind: FileErrorKind::NoSpace,
            ..
        }))
    ));
    let first = f.net.fs.files["vod/show.flv"].clone();
    assert!(!file_media(&first).is_empty(), "kept up to the failure");

    // Room again: within the 10 s wait nothing is tried, then the next keyframe opens a new
    // file.
    f.net.fs.capacity = None;
    f.send_all(p, s, &stream_between(3, 12));
    assert!(
        !f.net.fs.files.contains_key("vod/show-1.flv"),
        "still waiting"
    );
    f.send_all(p, s, &stream_between(12, 16));
    f.call(p, s, "closeStream", vec![]);
    assert!(
        f.statuses(p).iter().all(|code| !code.contains("Record")),
        "{:?}",
        f.statuses(p)
    );
    let resumed = f.net.fs.files["vod/show-1.flv"].clone();
    let tags = tags(&resumed);
    assert_eq!(
        metadata_of(&tags[0]).get("width"),
        Some(&Value::Number(320.0))
    );
    let media = file_media(&resumed);
    assert_eq!(media[0].2, AVC_CONFIG, "decoder configurations first");
    assert_eq!(media[1].2, AAC_CONFIG);
    assert_eq!(media[2].2[0], 0x17, "then a keyframe");
    assert_eq!(media[0].1, 0, "timestamps from 0");
    // From 13 s (the first keyframe at or after 3 s + the first message + 10 s) to the end.
    let expected = stream_between(13, 16).len();
    assert_eq!(media.len(), 2 + expected);
    // The live stream went on all along.
    assert_eq!(
        f.media(live_player).len(),
        stream(3).len() + stream_between(3, 16).len()
    );
}

/// A publish while the disk is full: the stream goes live as ever, and the recording that
/// could not write even its header leaves no empty file behind.
#[test]
fn with_record_all_a_publish_onto_a_full_disk_goes_live_and_leaves_no_empty_file() {
    let mut f = Fixture::recording_all("vod");
    f.net.fs.capacity = Some(0);
    let (live_player, _) = f.play("show", -1000.0);
    let (p, s) = f.publish("show", "live");
    f.send_all(p, s, &stream(1));
    assert_eq!(f.statuses(p), vec!["NetStream.Publish.Start"]);
    assert!(
        !f.net.fs.files.contains_key("vod/show.flv"),
        "the empty file was removed"
    );
    assert_eq!(f.media(live_player).len(), stream(1).len());
    assert_eq!(f.net.node.recordings_failed(), 1);
}

/// Hardening issue, defect 7: a name that cannot be a file name is refused at publish, with
/// a clear status, recorded or not.
#[test]
fn a_stream_name_too_long_for_a_file_is_refused_at_publish() {
    let mut f = Fixture::new();
    let long = "n".repeat(252);
    let (p, _) = f.publish(&long, "live");
    assert_eq!(f.statuses(p), vec!["NetStream.Publish.BadName"]);
    let description = f.net.clients[p].events.iter().find_map(|e| match e {
        ClientEvent::Status(_, code) if code == "NetStream.Publish.BadName" => Some(()),
        _ => None,
    });
    assert!(description.is_some());
    let fits = "n".repeat(251);
    let (p, s) = f.publish(&fits, "record");
    assert_eq!(
        f.statuses(p),
        vec!["NetStream.Publish.Start", "NetStream.Record.Start"]
    );
    f.send_all(p, s, &stream(1));
    f.call(p, s, "closeStream", vec![]);
    assert!(f.net.fs.files.contains_key(&format!("vod/{fits}.flv")));
}
