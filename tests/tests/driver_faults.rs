//! Faults at the driver boundary, each under every driver (mio, tokio, std threads,
//! async-std), each beside a legitimate stream whose player must keep every frame:
//!
//! - a player that resets its connection (`SO_LINGER` 0, then close: an RST) while the server
//!   has a backlog queued to it: only that connection goes, reported gone once;
//! - a file removed while it plays: the players of it keep playing from the open file to a
//!   clean end (on Linux an unlinked open file still reads, and the player asked for the file
//!   as it was), and a new play of it is told the stream is not found;
//! - a file truncated while it plays: the reads come back short, the play ends cleanly at the
//!   new end of the file (Play.Stop, as at any end of file), and the node does not spin.
//!
//! Out of descriptors on accept is `cli/tests/out_of_descriptors.rs` (it needs a process of its
//! own); failed UDP sends are `runtime-common`'s `udp_send_faults` tests.
//!
//! Loopback only; every wait is for an event or a peer's exit, with a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use siprtmp_core::node::ServerConfig;
use siprtmp_core::node::{ConnId, Event, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::type_id;
use siprtmp_tests::events::conn_of;
use siprtmp_tests::peers::{ffmpeg_clip, ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::probe::{assert_receives_everything, packets};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(15);
/// The clips played are the first 4 s of the test media.
const CLIP_SECONDS: u32 = 4;
/// The clips are 4 s long and go out in real time; this is that plus slack.
const PLAY_TIME: Duration = Duration::from_secs(30);

fn scratch(scenario: &str, runtime: Runtime) -> PathBuf {
    scratch_dir(&format!("driver-faults-{scenario}-{runtime:?}"))
}

/// The connection an event is about, if it is about one.
fn conn_in(event: &Event) -> Option<ConnId> {
    match event {
        Event::Connected { conn, .. }
        | Event::PublishStarted { conn, .. }
        | Event::PublishStopped { conn, .. }
        | Event::PlayStarted { conn, .. }
        | Event::Gateway { conn, .. }
        | Event::GatewayBound { conn, .. }
        | Event::Closing { conn, .. }
        | Event::Disconnected { conn }
        | Event::RecordStarted { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// A player of a live stream stops reading (a small receive buffer, so the server's queue to
/// it grows), then resets its connection while the server still has a backlog for it. The
/// server must close that connection alone, report it gone exactly once and nothing about it
/// after; the publisher and a reading player go on, the reader gets every frame.
fn a_player_reset_mid_write_goes_alone(runtime: Runtime) {
    let dir = scratch("reset", runtime);
    let source_file = dir.join("clip.flv");
    ffmpeg_clip("h264_aac_320x240_12fps_20s.flv", CLIP_SECONDS, &source_file);
    let source = packets(&source_file);
    // A small send buffer: the server's queue, not the kernel, holds the backlog.
    let mut server = TestServer::start_on(runtime, NodeConfig::default(), Some(8 * 1024));
    let url = server.url("live/s1");
    let reader = ffmpeg_play(&url, &dir.join("reader.flv"));
    let resetter = TcpRtmpClient::play(server.addr, "live", "s1", Some(4096));
    let reset_conn = conn_of(&mut server, resetter.socket.local_addr().unwrap());
    let mut watcher = TcpRtmpClient::play(server.addr, "live", "s1", None);
    assert!(
        server.wait_for(3, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
        "players did not start"
    );
    let publisher = ffmpeg_publish(&source_file, &url);
    // 2.5 s of stream (about 75 KB) to a player that reads nothing.
    let passed = watcher.until(STARTUP, |e| {
        matches!(e, ClientEvent::Media(m) if m.type_id == type_id::VIDEO && m.timestamp >= 2500)
    });
    assert!(passed.is_some(), "the stream never reached 2.5 s");
    let unread = {
        resetter.socket.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        resetter.socket.peek(&mut buf).unwrap_or(0)
    };
    eprintln!("{runtime:?}: {unread} bytes unread by the player when it reset");
    assert!(
        unread >= 1024,
        "the server filled the player's window before the reset ({unread} bytes unread)"
    );
    // RST: close with a zero linger (and unread data).
    socket2::SockRef::from(&resetter.socket)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(resetter);
    assert!(
        server.wait_for(
            1,
            STARTUP,
            |e| matches!(e, Event::Disconnected { conn } if *conn == reset_conn)
        ),
        "the reset player was not reported gone"
    );
    publisher.finish(PLAY_TIME);
    reader.finish(STARTUP);
    drop(watcher);
    assert_receives_everything("reading player", &source, &packets(&dir.join("reader.flv")));

    let events = server.stop();
    let about_it: Vec<&Event> = events
        .iter()
        .filter(|e| conn_in(e) == Some(reset_conn))
        .collect();
    let gone = about_it
        .iter()
        .filter(|e| matches!(e, Event::Disconnected { .. }))
        .count();
    assert_eq!(gone, 1, "reported gone {gone} times: {about_it:?}");
    assert!(
        matches!(about_it.last(), Some(Event::Disconnected { .. })),
        "events about the reset player after it was gone: {about_it:?}"
    );
    assert!(
        !about_it.iter().any(|e| matches!(e, Event::Closing { .. })),
        "the server closed it itself instead of seeing the reset: {about_it:?}"
    );
    // Before the server stopped, nobody else was closed.
    let others_closed: Vec<&Event> = events
        .iter()
        .take_while(|e| !matches!(e, Event::PublishStopped { .. }))
        .filter(|e| matches!(e, Event::Closing { .. } | Event::Disconnected { .. }))
        .filter(|e| conn_in(e) != Some(reset_conn))
        .collect();
    assert!(
        others_closed.is_empty(),
        "others closed with the reset player: {others_closed:?}"
    );
}

/// Plays `app/name` from `start` on a fresh connection and returns the first status.
fn play_status(server: SocketAddr, app: &str, name: &str, start: f64) -> String {
    let (mut client, id) = TcpRtmpClient::with_stream(server, app, None);
    client.machine.play(id, name, start);
    client.flush();
    match client.until(STARTUP, |e| matches!(e, ClientEvent::Status(..))) {
        Some(ClientEvent::Status(_, code)) => code,
        other => panic!("no status for play {name}: {other:?}"),
    }
}

/// A recorded file is removed while two players play it: both play it to its end from the
/// file they opened, frame for frame; a play of it after the removal is told it is not found,
/// and the server goes on.
fn a_file_removed_while_it_plays_plays_to_its_end(runtime: Runtime) {
    let dir = scratch("removed", runtime);
    let root = dir.join("media");
    std::fs::create_dir_all(root.join("vod")).unwrap();
    let file = root.join("vod/clip.flv");
    ffmpeg_clip("h264_aac_320x240_12fps_20s.flv", CLIP_SECONDS, &file);
    let source = packets(&file);
    let mut server =
        TestServer::start_on_with(runtime, NodeConfig::default(), None, root.clone(), None);
    let url = server.url("vod/clip");
    let first = ffmpeg_play(&url, &dir.join("first.flv"));
    let second = ffmpeg_play(&url, &dir.join("second.flv"));
    assert!(
        server.wait_for(2, STARTUP, |e| matches!(e, Event::PlayStarted { .. })),
        "players did not start"
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        play_status(server.addr, "vod", "clip", 0.0),
        "NetStream.Play.StreamNotFound"
    );
    first.finish(PLAY_TIME);
    second.finish(PLAY_TIME);
    assert_receives_everything("first player", &source, &packets(&dir.join("first.flv")));
    assert_receives_everything("second player", &source, &packets(&dir.join("second.flv")));
}

/// A file is cut to a quarter of its length while an in-process player plays it (reads small,
/// so they meet the cut), beside an ffmpeg player of another file. The cut file's play ends
/// cleanly (Play.Stop, as at any end of file, never Play.Failed) with media up to the cut and
/// in order; the node thread does not spin afterwards; the other player gets every frame.
fn a_file_truncated_while_it_plays_ends_cleanly(runtime: Runtime) {
    let dir = scratch("truncated", runtime);
    let root = dir.join("media");
    std::fs::create_dir_all(root.join("vod")).unwrap();
    let cut = root.join("vod/cut.flv");
    std::fs::copy(media("h264_aac_320x240_12fps_20s.flv"), &cut).unwrap();
    let other = root.join("vod/other.flv");
    ffmpeg_clip("h264_aac_320x240_12fps_20s.flv", CLIP_SECONDS, &other);
    let other_source = packets(&other);
    let config = NodeConfig {
        server: ServerConfig {
            vod_read_size: 8 * 1024,
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    };
    let server = TestServer::start_on_with(runtime, config, None, root.clone(), None);
    let other_player = ffmpeg_play(&server.url("vod/other"), &dir.join("other.flv"));
    let (mut player, stream) = TcpRtmpClient::play_from(server.addr, "vod", "cut", 0.0, None);
    let passed = player.until(STARTUP, |e| {
        matches!(e, ClientEvent::Media(m) if m.type_id == type_id::VIDEO && m.timestamp >= 1000)
    });
    assert!(passed.is_some(), "the file never played past 1 s");
    let length = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(length / 4)
        .unwrap();
    let rest = player.collect(PLAY_TIME, |e| {
        matches!(e, ClientEvent::Status(_, code) if code.starts_with("NetStream.Play.") && code != "NetStream.Play.Start")
    });
    let ended = rest.iter().rev().find_map(|e| match e {
        ClientEvent::Status(_, code) => Some(code.as_str()),
        _ => None,
    });
    assert_eq!(ended, Some("NetStream.Play.Stop"), "after the cut");
    let stamps: Vec<u32> = rest
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) if m.type_id == type_id::VIDEO => Some(m.timestamp),
            _ => None,
        })
        .collect();
    let full_length = 20_000;
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "video out of order after the cut"
    );
    assert!(
        stamps.last().is_some_and(|&t| t < full_length / 2),
        "played on past the cut: {:?}",
        stamps.last()
    );
    // The play is over: an idle node thread, not one spinning on the short file.
    if let Some(before) = server.node_cpu() {
        let window = Instant::now();
        // A measurement window, not a wait for something to happen.
        std::thread::sleep(Duration::from_millis(500));
        let used = server.node_cpu().unwrap() - before;
        let share = used.as_secs_f64() / window.elapsed().as_secs_f64();
        eprintln!(
            "{runtime:?}: the cut play ended at video {:?} ms; node thread {:.1}% of a core after",
            stamps.last(),
            share * 100.0
        );
        assert!(
            share < 0.2,
            "the node thread used {:.0}% of a core after the play ended",
            share * 100.0
        );
    }
    // The connection is still served: the file plays again, as it is now.
    player.machine.play(stream, "cut", 0.0);
    player.flush();
    let again = player.until(
        STARTUP,
        |e| matches!(e, ClientEvent::Status(_, code) if code != "NetStream.Play.Reset"),
    );
    assert_eq!(
        again,
        Some(ClientEvent::Status(stream, "NetStream.Play.Start".into())),
        "playing the cut file again"
    );
    other_player.finish(PLAY_TIME);
    assert_receives_everything(
        "other file's player",
        &other_source,
        &packets(&dir.join("other.flv")),
    );
}

/// One module per driver, each with every fault (`cargo test -p siprtmp-tests --test
/// driver_faults mio::`, ...).
macro_rules! faults {
    ($($module:ident => $runtime:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn a_player_reset_mid_write_goes_alone() {
                super::a_player_reset_mid_write_goes_alone(Runtime::$runtime);
            }

            #[test]
            fn a_file_removed_while_it_plays_plays_to_its_end() {
                super::a_file_removed_while_it_plays_plays_to_its_end(Runtime::$runtime);
            }

            #[test]
            fn a_file_truncated_while_it_plays_ends_cleanly() {
                super::a_file_truncated_while_it_plays_ends_cleanly(Runtime::$runtime);
            }
        }
    )*};
}

faults!(mio => Mio, tokio => Tokio, threads => Threads, async_std => AsyncStd, io_uring => IoUring);
