//! Paced reads under the mio driver: a publisher is read once per merge window, not once per
//! message. A client publishing an audio message every 10 ms, each in a write (and a TCP
//! segment) of its own, is read at most once per 40 ms tick, as `GET /api/v1/connections`
//! counts; its player still gets every message, in order. (ffmpeg as the publisher, with
//! real players, is in `adaptive_merge_interop.rs`; ffmpeg writes a clip's frames in bursts,
//! so it cannot show the count.)

use std::thread;
use std::time::{Duration, Instant};

use siprtmp_core::node::{HttpConfig, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_tests::scrape::{connections, json_number};
use siprtmp_tests::server::TestServer;
use siprtmp_tests::tcp_client::TcpRtmpClient;

const STARTUP: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_millis(40);
const MESSAGES: u32 = 100;
const EVERY: Duration = Duration::from_millis(10);

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

#[test]
fn a_publisher_is_read_once_per_merge_window_and_its_player_gets_every_message() {
    let mut node = NodeConfig::default();
    node.server.merge_writes = Some(WINDOW);
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    let mut server = TestServer::start(node, None);
    let http = server.http_listening(STARTUP).expect("the HTTP listener");
    let mut player = TcpRtmpClient::play(server.addr, "live", "paced", None);
    let (mut publisher, stream) = TcpRtmpClient::with_stream(server.addr, "live", None);
    // Every message its own segment (no Nagle coalescing on the client's side).
    publisher.socket.set_nodelay(true).unwrap();
    publisher.machine.publish(stream, "paced");
    publisher.flush();
    let started = publisher.until(
        STARTUP,
        |e| matches!(e, ClientEvent::Status(_, code) if code == "NetStream.Publish.Start"),
    );
    assert!(started.is_some(), "publish did not start");

    let (before, grid) = publisher_reads(&http, "live/paced");
    assert_eq!(grid, Some(WINDOW.as_millis() as u64), "read on the grid");
    let since = Instant::now();
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        let payload = vec![0xb2, i as u8, (i >> 8) as u8, 7, 7, 7];
        let msg = RtmpMessage::new(type_id::AUDIO, stream, i * 10, payload.clone());
        publisher.machine.send_media(&msg);
        publisher.flush();
        sent.push((i * 10, payload));
        thread::sleep(EVERY);
    }
    // The last tick reads what is left.
    thread::sleep(WINDOW * 2);
    let (after, _) = publisher_reads(&http, "live/paced");
    let elapsed = since.elapsed();
    let reads = after - before;
    let ticks = (elapsed.as_millis() / WINDOW.as_millis()) as u64;
    eprintln!("{MESSAGES} messages in {reads} reads over {elapsed:?} ({ticks} ticks)");
    assert!(
        reads <= ticks + 2,
        "{reads} reads of {MESSAGES} messages in {elapsed:?}: more than one per tick"
    );

    let events = player.collect(
        STARTUP,
        |e| matches!(e, ClientEvent::Media(m) if m.timestamp == (MESSAGES - 1) * 10),
    );
    let got: Vec<(u32, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) if m.type_id == type_id::AUDIO => {
                Some((m.timestamp, m.payload.to_vec()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, sent, "the player got every message, in order");
    server.stop();
}
