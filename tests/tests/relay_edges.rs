//! Edges at scale: two siprtmp edges pull from a siprtmp origin and a third pulls from an
//! nginx-rtmp origin; 100 players spread over the three edges and two streams receive every
//! frame from their join point; each origin serves exactly one play per stream per edge; once
//! the last player of an edge leaves, its upstream sessions close after the idle time, and the
//! origin sees them go.
//!
//! The players are mostly the in-process client (`TcpRtmpClient`, one thread each: 100 ffmpeg
//! processes would not fit two cores), with ffmpeg and rtmpdump among them; the in-process
//! players compare what they got with the tags of the published clip itself (type, timestamp
//! and payload bytes), the real ones with ffprobe's packets of it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::flv::reader::FlvReader;
use siprtmp_core::node::{
    AppConfig, ConnId, Event, NodeConfig, RelayLimits, RelayPhase, RelayUrl, ServerConfig,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::type_id;
use siprtmp_tests::nginx::Nginx;
use siprtmp_tests::peers::{ffmpeg_clip, ffmpeg_play, ffmpeg_publish, rtmpdump_play};
use siprtmp_tests::probe::{assert_receives_from_keyframe, packets};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{scratch_dir, wait};

const STARTUP: Duration = Duration::from_secs(15);
const FILE: &str = "h264_aac_320x240_12fps_20s.flv";
/// Seconds of the clip published: keyframes every 2 s, so late joiners get a few GOPs.
const CLIP_SECONDS: u32 = 8;
/// Publishing the clip in real time takes its length; this bounds every wait for its end.
const PUBLISH_TIME: Duration = Duration::from_secs(40);
/// A pull closes this long after its last player left.
const IDLE: Duration = Duration::from_secs(2);
/// How late past [`IDLE`] the close may be seen (the node's timers, the event channel).
const IDLE_SLACK: Duration = Duration::from_secs(3);
/// Players in all.
const PLAYERS: usize = 100;
/// In-process players that join once the stream runs (the rest are there before it starts).
const LATE_PER_GROUP: usize = 2;

/// One audio or video frame of the clip, as FLV and RTMP carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    type_id: u8,
    timestamp: u32,
    payload: Bytes,
}

impl Frame {
    /// A coded frame, not a sequence header or an end-of-sequence marker: H.264 and AAC
    /// packets of type 1 (headers are re-sent by every server at a join; they are not frames).
    fn is_coded(&self) -> bool {
        let p = &self.payload;
        match self.type_id {
            type_id::VIDEO => p.len() > 1 && p[0] & 0x0f == 7 && p[1] == 1,
            type_id::AUDIO => p.len() > 1 && p[0] >> 4 == 10 && p[1] == 1,
            _ => false,
        }
    }

    fn is_keyframe(&self) -> bool {
        self.type_id == type_id::VIDEO && self.payload[0] >> 4 == 1
    }
}

/// The coded frames of the FLV file `path`, in file order.
fn clip_frames(path: &Path) -> Vec<Frame> {
    let data = std::fs::read(path).expect("read the clip");
    let mut reader = FlvReader::new(data.len());
    reader.push(&data);
    let mut frames = Vec::new();
    while let Some(tag) = reader.next_tag().expect("the clip parses") {
        let frame = Frame {
            type_id: tag.tag_type,
            timestamp: tag.timestamp,
            payload: tag.body,
        };
        if frame.is_coded() {
            frames.push(frame);
        }
    }
    frames
}

/// What an in-process player made of the stream: where it joined (the timestamp of its
/// first keyframe) and how many frames it checked.
#[derive(Debug)]
struct Received {
    join: u32,
    frames: usize,
}

/// Checks that `got` is every coded frame of `source` from the first keyframe `got` has, in
/// order, with the same timestamps and payload bytes, to the end of the clip.
fn check_from_join(source: &[Frame], got: &[Frame]) -> Result<Received, String> {
    let first_video = got
        .iter()
        .find(|f| f.type_id == type_id::VIDEO)
        .ok_or("no video")?;
    if !first_video.is_keyframe() {
        return Err(format!(
            "first video frame (at {} ms) is not a keyframe",
            first_video.timestamp
        ));
    }
    let join = first_video.timestamp;
    for kind in [type_id::AUDIO, type_id::VIDEO] {
        let expected: Vec<&Frame> = source
            .iter()
            .filter(|f| f.type_id == kind && f.timestamp >= join)
            .collect();
        let received: Vec<&Frame> = got
            .iter()
            .filter(|f| f.type_id == kind && f.timestamp >= join)
            .collect();
        if expected.len() != received.len() {
            return Err(format!(
                "type {kind}: {} frames from {join} ms, the clip has {}",
                received.len(),
                expected.len()
            ));
        }
        if let Some((at, (e, r))) = expected
            .iter()
            .zip(&received)
            .enumerate()
            .find(|(_, (e, r))| e != r)
        {
            return Err(format!(
                "type {kind}: frame {at} from the join differs: {} ms ({} bytes) for {} ms ({} bytes)",
                r.timestamp,
                r.payload.len(),
                e.timestamp,
                e.payload.len()
            ));
        }
    }
    Ok(Received {
        join,
        frames: got.iter().filter(|f| f.timestamp >= join).count(),
    })
}

/// The last timestamp of each kind in `source`: (audio, video).
fn ends(source: &[Frame]) -> (u32, u32) {
    let last = |kind| {
        source
            .iter()
            .filter(|f| f.type_id == kind)
            .map(|f| f.timestamp)
            .max()
            .expect("the clip has audio and video")
    };
    (last(type_id::AUDIO), last(type_id::VIDEO))
}

/// An in-process player on its own thread: it plays `live/NAME` on `edge`, says so on
/// `playing`, reads the stream until its last frames (or the upstream's end, or
/// [`PUBLISH_TIME`]), checks it against `source`, and hands back its client (still
/// connected: the test decides when the last player leaves) with the verdict. With `mark`
/// `(ms, tx)`, it says on `tx` when the stream has reached `ms`.
fn spawn_player(
    edge: SocketAddr,
    name: &'static str,
    source: Arc<Vec<Frame>>,
    playing: mpsc::Sender<()>,
    mut mark: Option<(u32, mpsc::Sender<()>)>,
) -> JoinHandle<(TcpRtmpClient, Result<Received, String>)> {
    std::thread::spawn(move || {
        let mut client = TcpRtmpClient::play(edge, "live", name, None);
        let _ = playing.send(());
        let (audio_end, video_end) = ends(&source);
        let (mut audio_done, mut video_done) = (false, false);
        let mut got = Vec::new();
        client.until(PUBLISH_TIME, |e| match e {
            ClientEvent::Media(m) => {
                let frame = Frame {
                    type_id: m.type_id,
                    timestamp: m.timestamp,
                    payload: m.payload.clone(),
                };
                if mark.as_ref().is_some_and(|(ms, _)| frame.timestamp >= *ms) {
                    let (_, tx) = mark.take().unwrap();
                    let _ = tx.send(());
                }
                if frame.is_coded() {
                    audio_done |= frame.type_id == type_id::AUDIO && frame.timestamp >= audio_end;
                    video_done |= frame.type_id == type_id::VIDEO && frame.timestamp >= video_end;
                    got.push(frame);
                }
                audio_done && video_done
            }
            ClientEvent::Status(_, code) => {
                code == "NetStream.Play.UnpublishNotify" || code == "NetStream.Play.Stop"
            }
            _ => false,
        });
        let verdict = check_from_join(&source, &got);
        (client, verdict)
    })
}

/// An edge whose application `live` pulls from `origin` (a `rtmp://HOST:PORT/live` URL),
/// closing a pull [`IDLE`] after its last player left.
fn edge(origin: &str) -> TestServer {
    let app = AppConfig {
        pull: vec![RelayUrl::parse(origin).unwrap()],
        ..AppConfig::default()
    };
    let mut server = ServerConfig {
        relay: RelayLimits {
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            pull_idle_timeout: IDLE,
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    server.apps.insert("live".into(), app);
    TestServer::start(
        NodeConfig {
            server,
            ..NodeConfig::default()
        },
        None,
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

fn relay_opened(e: &Event) -> bool {
    matches!(
        e,
        Event::Relay {
            phase: RelayPhase::Connecting,
            ..
        }
    )
}

fn relay_idle(e: &Event) -> bool {
    matches!(e, Event::Relay { phase: RelayPhase::Ended { reason }, .. } if reason.starts_with("idle"))
}

/// The connections that played `stream` on a siprtmp origin.
fn plays_of(origin: &mut TestServer, stream: &str) -> Vec<ConnId> {
    origin
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::PlayStarted { conn, stream: s } if s == stream => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Whether the siprtmp origin has seen connection `conn` go.
fn gone(origin: &mut TestServer, conn: ConnId) -> bool {
    origin
        .events()
        .iter()
        .any(|e| matches!(e, Event::Disconnected { conn: c } if *c == conn))
}

/// A group of players: an edge, a stream on it, how many in-process players (some of them
/// late), and which real player (if any) joins them.
struct Group {
    edge: usize,
    name: &'static str,
    players: usize,
    real: Option<&'static str>,
}

#[test]
fn a_hundred_players_on_three_edges_of_two_origins() {
    let dir = scratch_dir("relay-edges");
    let clip = ffmpeg_clip(FILE, CLIP_SECONDS, &dir.join("clip.flv"));
    let source = Arc::new(clip_frames(&clip));
    let source_packets = packets(&clip);
    let first_key = source.iter().find(|f| f.is_keyframe()).unwrap().timestamp;

    let mut origin = TestServer::start(NodeConfig::default(), None);
    let nginx = Nginx::live(
        &[("live", "wait_key on; wait_video on;")],
        &dir.join("nginx"),
    );
    let mut edges = [
        edge(&origin.url("live")),
        edge(&origin.url("live")),
        edge(&nginx.url("live")),
    ];
    // 100 players: 40 on each siprtmp-fed edge (20 per stream), 20 on the nginx-fed one.
    let groups = [
        Group {
            edge: 0,
            name: "one",
            players: 19,
            real: Some("ffmpeg"),
        },
        Group {
            edge: 0,
            name: "two",
            players: 20,
            real: None,
        },
        Group {
            edge: 1,
            name: "one",
            players: 20,
            real: None,
        },
        Group {
            edge: 1,
            name: "two",
            players: 19,
            real: Some("rtmpdump"),
        },
        Group {
            edge: 2,
            name: "one",
            players: 19,
            real: Some("ffmpeg"),
        },
    ];
    assert_eq!(
        groups
            .iter()
            .map(|g| g.players + usize::from(g.real.is_some()))
            .sum::<usize>(),
        PLAYERS
    );

    // Everyone but the late joiners plays before anything is published.
    let (playing_tx, playing) = mpsc::channel();
    let mut threads = Vec::new();
    let mut early = 0;
    // The first early player says when the stream is 2.5 s past its first keyframe.
    let (reached_tx, reached) = mpsc::channel();
    let mut mark = Some((first_key + 2500, reached_tx));
    for group in &groups {
        for _ in 0..group.players - LATE_PER_GROUP {
            let handle = spawn_player(
                edges[group.edge].addr,
                group.name,
                source.clone(),
                playing_tx.clone(),
                mark.take(),
            );
            threads.push((group.edge, group.name, false, handle));
            early += 1;
        }
    }
    let mut real = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let Some(kind) = group.real else { continue };
        let url = edges[group.edge].url(&format!("live/{}", group.name));
        let out = dir.join(format!("{kind}-{i}.flv"));
        let peer = match kind {
            "ffmpeg" => ffmpeg_play(&url, &out),
            _ => rtmpdump_play(&url, &out),
        };
        real.push((
            format!("{kind} on edge {} ({})", group.edge, group.name),
            peer,
            out,
        ));
    }
    for _ in 0..early {
        playing
            .recv_timeout(STARTUP)
            .expect("an early player did not start playing");
    }
    // Every edge waits upstream for each of its names: one session each.
    let wanted = [2, 2, 1];
    for (edge, &sessions) in edges.iter_mut().zip(&wanted) {
        assert!(
            edge.wait_for(sessions, STARTUP, relay_opened),
            "upstream sessions: {:?}",
            edge.events()
        );
    }

    let publishers = [
        ffmpeg_publish(&clip, &origin.url("live/one")),
        ffmpeg_publish(&clip, &origin.url("live/two")),
        ffmpeg_publish(&clip, &nginx.url("live/one")),
    ];
    for (edge, &sessions) in edges.iter_mut().zip(&wanted) {
        assert!(
            edge.wait_for(sessions, STARTUP, relay_live),
            "the pulls go live: {:?}",
            edge.events()
        );
    }
    // Late joiners: two per group, once the stream has run for a while (past a second
    // keyframe).
    reached
        .recv_timeout(STARTUP)
        .expect("the stream did not reach 2.5 s");
    for group in &groups {
        for _ in 0..LATE_PER_GROUP {
            let handle = spawn_player(
                edges[group.edge].addr,
                group.name,
                source.clone(),
                playing_tx.clone(),
                None,
            );
            threads.push((group.edge, group.name, true, handle));
        }
    }
    for _ in 0..LATE_PER_GROUP * groups.len() {
        playing
            .recv_timeout(STARTUP)
            .expect("a late player did not start playing");
    }

    // One play per stream per edge upstream, while every player plays.
    let siprtmp_plays =
        |origin: &mut TestServer| (plays_of(origin, "live/one"), plays_of(origin, "live/two"));
    let (one, two) = siprtmp_plays(&mut origin);
    assert_eq!((one.len(), two.len()), (2, 2), "the siprtmp origin's plays");
    // nginx counts the publisher among the stream's clients.
    assert_eq!(
        nginx.stream_clients("live", "one"),
        Some(2),
        "nginx's clients of live/one: {}",
        nginx.stat_xml()
    );
    for (edge, &sessions) in edges.iter_mut().zip(&wanted) {
        let opened = edge.events().iter().filter(|e| relay_opened(e)).count();
        assert_eq!(opened, sessions, "one upstream session per name on an edge");
    }

    for publisher in publishers {
        publisher.finish(PUBLISH_TIME);
    }
    for (who, peer, out) in real {
        peer.finish(STARTUP);
        assert_receives_from_keyframe(&who, &source_packets, &packets(&out), true);
    }
    let mut clients = Vec::new();
    for (edge, name, late, handle) in threads {
        let (client, verdict) = handle.join().expect("a player thread panicked");
        let who = format!(
            "{} player of {name} on edge {edge}",
            if late { "late" } else { "early" }
        );
        let got = verdict.unwrap_or_else(|why| panic!("{who}: {why}"));
        if !late {
            assert_eq!(got.join, first_key, "{who} missed the start");
        }
        assert!(got.frames > 10, "{who}: {got:?}");
        clients.push(client);
    }
    // Still one play per stream per edge once the stream ended.
    assert_eq!(siprtmp_plays(&mut origin), (one.clone(), two.clone()));

    // The last players leave: every pull closes after the idle time, not before.
    drop(clients);
    let left = Instant::now();
    let early_close = wait::until(IDLE - Duration::from_millis(200), || {
        edges
            .iter_mut()
            .any(|edge| edge.events().iter().any(relay_idle))
    });
    assert!(
        !early_close,
        "a pull closed within {:?} of its last player leaving",
        left.elapsed()
    );
    for (edge, &sessions) in edges.iter_mut().zip(&wanted) {
        let within = (left + IDLE + IDLE_SLACK).saturating_duration_since(Instant::now());
        assert!(
            edge.wait_for(sessions, within, relay_idle),
            "the idle pulls did not close within {:?}: {:?}",
            IDLE + IDLE_SLACK,
            edge.events()
        );
    }
    for conn in one.iter().chain(&two) {
        assert!(
            wait::until(STARTUP, || gone(&mut origin, *conn)),
            "the siprtmp origin still serves an edge's play"
        );
    }
    assert!(
        wait::until(STARTUP, || nginx.stream_clients("live", "one").unwrap_or(0)
            == 0),
        "nginx still serves the edge: {}",
        nginx.stat_xml()
    );
}
