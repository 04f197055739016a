//! Paced reads under every driver: a publisher is read once per merge
//! window, not once per message. A client publishing an audio message every 10 ms, each in a
//! write (and a TCP segment) of its own, is read at most once per 40 ms tick, as
//! `GET /api/v1/connections` counts; its player still gets every message, in order. While
//! nobody plays its stream it is read once per ten ticks, and a player that comes puts it
//! back on every tick. With three players reading every message it is read as its bytes
//! arrive, and back on the grid when one leaves. (ffmpeg as the publisher, with real
//! players, is in `adaptive_merge_interop.rs`; ffmpeg writes a clip's frames in bursts, so it
//! cannot show the count.)

use std::thread;
use std::time::{Duration, Instant};

use siprtmp_core::node::{HttpConfig, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_tests::scrape::{connections, json_number};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::tcp_client::TcpRtmpClient;

const STARTUP: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_millis(40);
const UNWATCHED_WINDOW: Duration = Duration::from_millis(400);
const MESSAGES: u32 = 100;
const EVERY: Duration = Duration::from_millis(10);

/// A server on `runtime` with merged writes over `WINDOW` and the HTTP API; its API's
/// address.
fn paced_server(runtime: Runtime) -> (TestServer, String) {
    let mut node = NodeConfig::default();
    node.server.merge_writes = Some(WINDOW);
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    let mut server = TestServer::start_on(runtime, node, None);
    let http = server.http_listening(STARTUP).expect("the HTTP listener");
    (server, http)
}

/// A publisher of `live/{name}` whose every message goes in a segment of its own, once it
/// is live; its message stream id.
fn publisher(server: &TestServer, name: &str) -> (TcpRtmpClient, u32) {
    let (mut publisher, stream) = TcpRtmpClient::with_stream(server.addr, "live", None);
    // Every message its own segment (no Nagle coalescing on the client's side).
    publisher.socket.set_nodelay(true).unwrap();
    publisher.machine.publish(stream, name);
    publisher.flush();
    let started = publisher.until(
        STARTUP,
        |e| matches!(e, ClientEvent::Status(_, code) if code == "NetStream.Publish.Start"),
    );
    assert!(started.is_some(), "publish did not start");
    (publisher, stream)
}

/// Sends the audio messages numbered `numbers`, one every 10 ms; what was sent: (timestamp,
/// payload).
fn send_audio(
    publisher: &mut TcpRtmpClient,
    stream: u32,
    numbers: std::ops::Range<u32>,
) -> Vec<(u32, Vec<u8>)> {
    let mut sent = Vec::new();
    for i in numbers {
        let payload = vec![0xb2, i as u8, (i >> 8) as u8, 7, 7, 7];
        let msg = RtmpMessage::new(type_id::AUDIO, stream, i * 10, payload.clone());
        publisher.machine.send_media(&msg);
        publisher.flush();
        sent.push((i * 10, payload));
        thread::sleep(EVERY);
    }
    sent
}

/// The audio `player` receives until the message stamped `last`: (timestamp, payload).
fn received_audio(player: &mut TcpRtmpClient, last: u32) -> Vec<(u32, Vec<u8>)> {
    let events = player.collect(
        STARTUP,
        |e| matches!(e, ClientEvent::Media(m) if m.timestamp == last),
    );
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) if m.type_id == type_id::AUDIO => {
                Some((m.timestamp, m.payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

/// The publisher of `stream` in the connections list: its reads and its read grid (ms).
fn publisher_reads(http: &str, stream: &str) -> (u64, Option<u64>) {
    let object = connections(http)
        .into_iter()
        .find(|object| object.contains(&format!("\"publishing {stream}\"")))
        .unwrap_or_else(|| panic!("no publisher of {stream}"));
    (
        json_number(&object, "reads").expect("reads"),
        json_number(&object, "read_every_ms"),
    )
}

/// Asserts that the `reads` of the `MESSAGES` sent over `elapsed` came at most once per
/// `every` (two more for the ticks at either end).
fn assert_at_most_one_read_per(every: Duration, reads: u64, elapsed: Duration) {
    let ticks = (elapsed.as_millis() / every.as_millis()) as u64;
    eprintln!("{MESSAGES} messages in {reads} reads over {elapsed:?} ({ticks} ticks of {every:?})");
    assert!(
        reads <= ticks + 2,
        "{reads} reads of {MESSAGES} messages in {elapsed:?}: more than one per {every:?}"
    );
}

/// Asserts that the `reads` over `elapsed` took most ticks of `every`: with a message every
/// 10 ms, every tick finds bytes waiting and must read them, though the socket's low-water
/// mark kept the runtime from hearing of them. (A driver that asked its runtime's record of
/// readiness instead read only when the grid put the socket to sleep and it woke: about one
/// tick in three.)
fn assert_most_ticks_read(every: Duration, reads: u64, elapsed: Duration) {
    let ticks = (elapsed.as_millis() / every.as_millis()) as u64;
    assert!(
        reads * 3 >= ticks * 2,
        "{reads} reads in {ticks} ticks of {every:?}: ticks that found bytes waiting left them"
    );
}

fn a_publisher_is_read_once_per_merge_window_and_its_player_gets_every_message(runtime: Runtime) {
    let (server, http) = paced_server(runtime);
    let mut player = TcpRtmpClient::play(server.addr, "live", "paced", None);
    let (mut publisher, stream) = publisher(&server, "paced");

    let (before, grid) = publisher_reads(&http, "live/paced");
    assert_eq!(grid, Some(WINDOW.as_millis() as u64), "read on the grid");
    let since = Instant::now();
    let sent = send_audio(&mut publisher, stream, 0..MESSAGES);
    // The last tick reads what is left.
    thread::sleep(WINDOW * 2);
    let (after, _) = publisher_reads(&http, "live/paced");
    assert_at_most_one_read_per(WINDOW, after - before, since.elapsed());
    assert_most_ticks_read(WINDOW, after - before, since.elapsed());

    let got = received_audio(&mut player, (MESSAGES - 1) * 10);
    assert_eq!(got, sent, "the player got every message, in order");
    server.stop();
}

fn a_publisher_nobody_watches_is_read_once_per_ten_windows_until_a_player_comes(runtime: Runtime) {
    let (server, http) = paced_server(runtime);
    let (mut publisher, stream) = publisher(&server, "alone");
    let (before, grid) = publisher_reads(&http, "live/alone");
    let unwatched = UNWATCHED_WINDOW.as_millis() as u64;
    assert_eq!(grid, Some(unwatched), "read once per ten windows");
    let since = Instant::now();
    send_audio(&mut publisher, stream, 0..MESSAGES);
    let (after, _) = publisher_reads(&http, "live/alone");
    assert_at_most_one_read_per(UNWATCHED_WINDOW, after - before, since.elapsed());

    // A player comes: the publisher is on every tick again, and the player gets what is
    // sent from then on, in order.
    let mut player = TcpRtmpClient::play(server.addr, "live", "alone", None);
    let (_, grid) = publisher_reads(&http, "live/alone");
    assert_eq!(grid, Some(WINDOW.as_millis() as u64), "back on the grid");
    let sent = send_audio(&mut publisher, stream, MESSAGES..MESSAGES + 20);
    let got = received_audio(&mut player, (MESSAGES + 19) * 10);
    assert!(
        got.ends_with(&sent),
        "the player got every message sent since it came, in order"
    );
    server.stop();
}

fn three_eager_players_have_their_publisher_read_as_its_bytes_arrive(runtime: Runtime) {
    let (server, http) = paced_server(runtime);
    let mut players: Vec<TcpRtmpClient> = (0..3)
        .map(|_| TcpRtmpClient::play(server.addr, "live", "busy", None))
        .collect();
    let (mut publisher, stream) = publisher(&server, "busy");
    // Three players reading every message: holding them costs more than reading the
    // publisher as its bytes come, so the node stops pacing it after its first message and
    // the driver sets its socket back to raising an event per arrival.
    let (before, _) = publisher_reads(&http, "live/busy");
    let since = Instant::now();
    let sent = send_audio(&mut publisher, stream, 0..MESSAGES);
    let (after, grid) = publisher_reads(&http, "live/busy");
    assert_eq!(grid, None, "read as its bytes arrive");
    let ticks = (since.elapsed().as_millis() / WINDOW.as_millis()) as u64;
    assert!(
        after - before > ticks + 2,
        "{} reads of {MESSAGES} messages in {:?}: no more than one per tick, as if paced",
        after - before,
        since.elapsed()
    );
    for player in &mut players {
        let got = received_audio(player, (MESSAGES - 1) * 10);
        assert_eq!(got, sent, "every player got every message, in order");
    }

    // One leaves: two eager players, and the publisher is back on the grid, its remaining
    // players still getting every message.
    drop(players.pop());
    let more = send_audio(&mut publisher, stream, MESSAGES..MESSAGES + 20);
    let (_, grid) = publisher_reads(&http, "live/busy");
    assert_eq!(grid, Some(WINDOW.as_millis() as u64), "back on the grid");
    for player in &mut players {
        let got = received_audio(player, (MESSAGES + 19) * 10);
        assert!(got.ends_with(&more), "the players still get every message");
    }
    server.stop();
}

/// A publisher nobody watches that sends much faster than one read per tick would carry
/// (4 MiB at once, where a 400 ms tick empties at most a receive window of some 64 KiB, about
/// 25 s at that pace): the server reads it as its bytes come once 32 KiB are waiting, as
/// under a low-water mark, so the sender is never held to the ticks.
fn a_fast_publisher_nobody_watches_is_read_as_fast_as_it_sends(runtime: Runtime) {
    const SIZE: usize = 4096;
    const COUNT: u32 = 1024;
    let (server, http) = paced_server(runtime);
    let (mut publisher, stream) = publisher(&server, "fast");
    let (_, grid) = publisher_reads(&http, "live/fast");
    assert_eq!(grid, Some(UNWATCHED_WINDOW.as_millis() as u64), "paced");
    let since = Instant::now();
    for i in 0..COUNT {
        let mut payload = vec![0xb2; SIZE];
        payload[1] = i as u8;
        publisher
            .machine
            .send_media(&RtmpMessage::new(type_id::AUDIO, stream, i * 10, payload));
        publisher.flush();
    }
    let total = u64::from(COUNT) * SIZE as u64;
    let deadline = since + Duration::from_secs(10);
    let received = loop {
        let object = connections(&http)
            .into_iter()
            .find(|object| object.contains("\"publishing live/fast\""))
            .expect("the publisher");
        let received = json_number(&object, "received_bytes").expect("received_bytes");
        if received >= total || Instant::now() > deadline {
            break received;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        received >= total,
        "{received} of at least {total} bytes read in {:?}: held to the ticks",
        since.elapsed()
    );
    server.stop();
}

/// The same tests for each driver that paces reads.
macro_rules! paced {
    ($($name:ident => $runtime:ident),*) => {$(
        mod $name {
            use super::Runtime;

            #[test]
            fn a_publisher_is_read_once_per_merge_window_and_its_player_gets_every_message() {
                super::a_publisher_is_read_once_per_merge_window_and_its_player_gets_every_message(
                    Runtime::$runtime,
                );
            }

            #[test]
            fn a_publisher_nobody_watches_is_read_once_per_ten_windows_until_a_player_comes() {
                super::a_publisher_nobody_watches_is_read_once_per_ten_windows_until_a_player_comes(
                    Runtime::$runtime,
                );
            }

            #[test]
            fn a_fast_publisher_nobody_watches_is_read_as_fast_as_it_sends() {
                super::a_fast_publisher_nobody_watches_is_read_as_fast_as_it_sends(Runtime::$runtime);
            }

            #[test]
            fn a_publisher_with_three_eager_players_is_read_as_its_bytes_arrive_until_one_leaves() {
                super::three_eager_players_have_their_publisher_read_as_its_bytes_arrive(
                    Runtime::$runtime,
                );
            }
        }
    )*};
}

paced!(mio => Mio, io_uring => IoUring, tokio => Tokio, async_std => AsyncStd, threads => Threads);
