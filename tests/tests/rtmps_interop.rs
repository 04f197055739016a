//! RTMPS with peers nobody here wrote, under every runtime: Debian's ffmpeg (GnuTLS) and
//! ffmpeg 9 (OpenSSL) each publish to `rtmps://127.0.0.1:PORT/live/NAME` and both play each
//! stream, verifying the server against a CA made in the test; ffprobe checks that every
//! player saved every frame of the source, identical. A client that speaks plain RTMP to the
//! TLS port is closed (as a TLS error) while a TLS stream on the same server goes on intact,
//! a TLS handshake that never finishes is closed at the handshake deadline, and workers share
//! the RTMPS port and its streams as they share RTMP's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use siprtmp_core::node::{CloseReason, Event, NodeConfig, ServerConfig};
use siprtmp_tests::probe::{assert_receives_everything, packets};
use siprtmp_tests::rtmps::{clip, test_tls, Ffmpeg};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::{media, scratch_dir};

const STARTUP: Duration = Duration::from_secs(20);
/// The clip is 6 s long; publishing it in real time takes that, plus slack.
const PUBLISH_TIME: Duration = Duration::from_secs(40);
const SECONDS: u32 = 6;

fn play_started(e: &Event) -> bool {
    matches!(e, Event::PlayStarted { .. })
}

fn publish_started(e: &Event) -> bool {
    matches!(e, Event::PublishStarted { .. })
}

/// Each ffmpeg publishes a stream of its own over RTMPS; both ffmpegs play both streams, from
/// before the publish starts; every player gets every frame.
fn both_ffmpegs_publish_and_play(runtime: Runtime) {
    let dir = scratch_dir(&format!("rtmps_{}", runtime.name()));
    let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), SECONDS, &dir);
    let source = packets(&source_path);
    let (ca, tls) = test_tls(&dir);
    let mut server = TestServer::start_tls(runtime, NodeConfig::default(), tls);
    let mut players = Vec::new();
    for publisher in Ffmpeg::BOTH {
        let url = server.tls_url(&format!("live/{}", publisher.name()));
        for player in Ffmpeg::BOTH {
            let out = dir.join(format!("{}-plays-{}.flv", player.name(), publisher.name()));
            players.push((player.play(&url, &ca, &out), out, player, publisher));
        }
    }
    assert!(
        server.wait_for(players.len(), STARTUP, play_started),
        "{runtime}: the players did not start: {:?}",
        server.events()
    );
    let publishers: Vec<_> = Ffmpeg::BOTH
        .iter()
        .map(|p| {
            let url = server.tls_url(&format!("live/{}", p.name()));
            p.publish(&source_path, &url, &ca)
        })
        .collect();
    assert!(
        server.wait_for(2, STARTUP, publish_started),
        "{runtime}: the publishes did not start"
    );
    for publisher in publishers {
        publisher.finish(PUBLISH_TIME);
    }
    for (peer, out, player, publisher) in players {
        peer.finish(STARTUP);
        let who = format!("{runtime}: {} playing {}", player.name(), publisher.name());
        assert_receives_everything(&who, &source, &packets(&out));
    }
    let events = server.stop();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::Closing {
                reason: CloseReason::Tls { .. },
                ..
            }
        )),
        "{runtime}: a TLS error: {events:?}"
    );
}

#[test]
fn rtmps_on_mio() {
    both_ffmpegs_publish_and_play(Runtime::Mio);
}

#[test]
fn rtmps_on_tokio() {
    both_ffmpegs_publish_and_play(Runtime::Tokio);
}

#[test]
fn rtmps_on_threads() {
    both_ffmpegs_publish_and_play(Runtime::Threads);
}

#[test]
fn rtmps_on_async_std() {
    both_ffmpegs_publish_and_play(Runtime::AsyncStd);
}

#[test]
fn rtmps_on_io_uring() {
    both_ffmpegs_publish_and_play(Runtime::IoUring);
}

/// Reads from `socket` until the peer closes it (or `limit` passes: a panic); what came.
fn read_to_close(socket: &mut TcpStream, limit: Duration) -> Vec<u8> {
    socket.set_read_timeout(Some(limit)).expect("read timeout");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
}

/// While ffmpeg publishes and plays over RTMPS, plain RTMP clients knock on the TLS port:
/// ffmpeg (which gives up) and a raw C0+C1 (which is answered with at most a TLS alert, never
/// an RTMP handshake, and then closed); each close is a TLS error, and the TLS player still
/// receives every frame.
#[test]
fn plain_rtmp_to_the_tls_port_is_closed_and_a_tls_stream_goes_on() {
    for runtime in [Runtime::Mio, Runtime::Threads] {
        let dir = scratch_dir(&format!("rtmps_plain_{}", runtime.name()));
        let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), SECONDS, &dir);
        let source = packets(&source_path);
        let (ca, tls) = test_tls(&dir);
        let mut server = TestServer::start_tls(runtime, NodeConfig::default(), tls);
        let url = server.tls_url("live/tls");
        let out = dir.join("player.flv");
        let player = Ffmpeg::Debian.play(&url, &ca, &out);
        assert!(
            server.wait_for(1, STARTUP, play_started),
            "{runtime}: no play"
        );
        let publisher = Ffmpeg::Nine.publish(&source_path, &url, &ca);
        assert!(
            server.wait_for(1, STARTUP, publish_started),
            "{runtime}: no publish"
        );

        let plain_url = format!("rtmp://{}/live/tls", server.tls_addr());
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "quiet",
                "-rw_timeout",
                "10000000",
            ])
            .args(["-i", &plain_url, "-t", "1", "-f", "null", "-"])
            .status()
            .expect("run ffmpeg");
        assert!(
            !status.success(),
            "{runtime}: plain ffmpeg played from the TLS port"
        );
        let mut socket = TcpStream::connect(server.tls_addr()).expect("connect");
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        socket.write_all(&c0c1).expect("send C0+C1");
        let answer = read_to_close(&mut socket, Duration::from_secs(10));
        assert!(
            answer.is_empty() || answer[0] == 21,
            "{runtime}: not a TLS alert: {:?}",
            &answer[..answer.len().min(8)]
        );
        let tls_closes = |e: &Event| {
            matches!(
                e,
                Event::Closing {
                    reason: CloseReason::Tls { .. },
                    ..
                }
            )
        };
        assert!(
            server.wait_for(2, STARTUP, tls_closes),
            "{runtime}: the plain clients were not closed as TLS errors: {:?}",
            server.events()
        );

        publisher.finish(PUBLISH_TIME);
        player.finish(STARTUP);
        assert_receives_everything(&format!("{runtime}: TLS player"), &source, &packets(&out));
    }
}

/// A client that sends the start of a TLS handshake and nothing more is closed when the
/// handshake deadline passes (2 s here), as a slow plain handshake is, under every runtime.
#[test]
fn a_tls_handshake_that_stalls_is_closed_at_the_handshake_deadline() {
    let deadline = Duration::from_secs(2);
    for runtime in Runtime::ALL {
        let dir = scratch_dir(&format!("rtmps_slow_{}", runtime.name()));
        let (_, tls) = test_tls(&dir);
        let node = NodeConfig {
            server: ServerConfig {
                handshake_timeout: deadline,
                ..ServerConfig::default()
            },
            ..NodeConfig::default()
        };
        let mut server = TestServer::start_tls(runtime, node, tls);
        let mut socket = TcpStream::connect(server.tls_addr()).expect("connect");
        let started = Instant::now();
        // A handshake record header announcing 512 bytes, and 10 of them.
        socket
            .write_all(&[22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3, 0, 0, 0, 0])
            .expect("send");
        let answer = read_to_close(&mut socket, Duration::from_secs(20));
        let took = started.elapsed();
        assert!(
            answer.is_empty() || answer[0] == 21,
            "{runtime}: {answer:?}"
        );
        assert!(
            took >= deadline - Duration::from_millis(200),
            "{runtime}: closed after {took:?}, before the deadline"
        );
        let timed_out = |e: &Event| {
            matches!(
                e,
                Event::Closing {
                    reason: CloseReason::HandshakeTimeout,
                    ..
                }
            )
        };
        assert!(
            server.wait_for(1, STARTUP, timed_out),
            "{runtime}: {:?}",
            server.events()
        );
    }
}

/// Two workers share the RTMPS port: ffmpeg players over TLS land on both, an ffmpeg
/// publisher over TLS lands on one, and every player gets every frame through the relay.
#[test]
fn workers_share_the_rtmps_port_and_its_streams() {
    const WORKERS: usize = 2;
    let dir = scratch_dir("rtmps_workers");
    let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), SECONDS, &dir);
    let source = packets(&source_path);
    let (ca, tls) = test_tls(&dir);
    let mut server =
        TestServer::start_workers_tls(Runtime::Mio, NodeConfig::default(), WORKERS, tls);
    let url = server.tls_url("live/w");
    let mut players = Vec::new();
    let workers = |server: &mut TestServer| -> std::collections::BTreeSet<_> {
        server
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::PlayStarted { conn, .. } => Some(conn.worker()),
                _ => None,
            })
            .collect()
    };
    // The kernel spreads connections over the workers' sockets: a few players reach both.
    while players.len() < 8 && workers(&mut server).len() < WORKERS {
        let i = players.len();
        let build = Ffmpeg::BOTH[i % 2];
        let out = dir.join(format!("player{i}.flv"));
        players.push((build.play(&url, &ca, &out), out, build));
        assert!(
            server.wait_for(i + 1, STARTUP, play_started),
            "player {i} did not start"
        );
    }
    assert_eq!(
        workers(&mut server).len(),
        WORKERS,
        "the players all on one worker"
    );
    let publisher = Ffmpeg::Nine.publish(&source_path, &url, &ca);
    assert!(server.wait_for(1, STARTUP, publish_started), "no publish");
    publisher.finish(PUBLISH_TIME);
    for (i, (peer, out, build)) in players.into_iter().enumerate() {
        peer.finish(STARTUP);
        let who = format!("{} player {i}", build.name());
        assert_receives_everything(&who, &source, &packets(&out));
    }
}
