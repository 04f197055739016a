//! HTTP-FLV through the node, in memory: what an HTTP player receives (the FLV header, the
//! cached configurations and GOP, then every live tag), the shared encoding, backpressure on a
//! player that does not read, 404 for a stream nobody publishes, the end of the response when
//! the publisher stops, the players count in the API, and an HTTP player putting a publisher
//! nobody watched back on the read grid.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use siprtmp_core::node::{
    Decision, Event, HttpConfig, Input, NodeConfig, Question, RequestId, TcpEvent,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::tcp::StreamId;
use support::rtmp_clients::{Driven, InMemory};

const AVC_CONFIG: &[u8] = &[0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e];
const AAC_CONFIG: &[u8] = &[0xaf, 0x00, 0x12, 0x10];

fn keyframe(n: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0x17, 0x01, 0, 0, 0];
    v.resize(len.max(6), n);
    v
}

fn inter(n: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0x27, 0x01, 0, 0, 0];
    v.resize(len.max(6), n);
    v
}

fn fixture() -> (InMemory, SocketAddr) {
    fixture_with(NodeConfig::default())
}

fn fixture_with(mut config: NodeConfig) -> (InMemory, SocketAddr) {
    config.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    let mut f = InMemory::start(config, 11);
    f.pump();
    let listen = f.net.tcp.node_listeners()[0];
    (f, listen)
}

fn send(f: &mut InMemory, c: usize, stream: u32, kind: u8, ts: u32, payload: &[u8]) {
    let msg = RtmpMessage::new(kind, stream, ts, payload.to_vec());
    f.net.clients[c].client.send_media(&msg);
    f.pump();
}

/// An HTTP client sends `request` on a new connection; its stream.
fn http(f: &mut InMemory, listen: SocketAddr, request: &str) -> StreamId {
    let stream = f
        .net
        .tcp
        .connect("127.0.0.1:41000".parse().unwrap(), listen)
        .unwrap();
    f.pump();
    f.net.tcp.send(stream, request.as_bytes());
    f.pump();
    stream
}

/// What the node sent on `stream` so far (taken from the outbox), as the shared segments.
fn take(f: &mut InMemory, stream: StreamId) -> Vec<Bytes> {
    let mut mine = Vec::new();
    f.net.tcp.outbox.retain(|(s, data)| {
        if *s == stream {
            mine.push(data.clone());
            false
        } else {
            true
        }
    });
    mine
}

/// The client reads `segments`: the driver reports them taken.
fn read(f: &mut InMemory, stream: StreamId, segments: &[Bytes]) {
    let bytes = segments.iter().map(Bytes::len).sum();
    f.net
        .node
        .handle(f.now, Input::Tcp(TcpEvent::Sent { stream, bytes }));
    f.pump();
}

/// Splits a response into its head and its de-chunked body; whether the last chunk came.
fn response(bytes: &[u8]) -> (String, Vec<u8>, bool) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut body = Vec::new();
    let mut rest = &bytes[end..];
    let mut ended = false;
    while !rest.is_empty() {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        if size == 0 {
            assert_eq!(&rest[line..], b"\r\n\r\n");
            ended = true;
            break;
        }
        body.extend_from_slice(&rest[line + 2..line + 2 + size]);
        assert_eq!(&rest[line + 2 + size..line + 4 + size], b"\r\n");
        rest = &rest[line + 4 + size..];
    }
    (head, body, ended)
}

/// The tags of an FLV body (after its 13-byte header): (type, timestamp, body).
fn tags(body: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    assert_eq!(&body[..5], b"FLV\x01\x05");
    let mut out = Vec::new();
    let mut at = 13;
    while at < body.len() {
        let t = &body[at..];
        let size = u32::from_be_bytes([0, t[1], t[2], t[3]]) as usize;
        let ts = u32::from_be_bytes([t[7], t[4], t[5], t[6]]);
        out.push((t[0], ts, t[11..11 + size].to_vec()));
        let previous = u32::from_be_bytes(t[11 + size..15 + size].try_into().unwrap());
        assert_eq!(previous as usize, 11 + size);
        at += 15 + size;
    }
    out
}

fn concat(segments: &[Bytes]) -> Vec<u8> {
    segments.iter().flat_map(|s| s.iter().copied()).collect()
}

#[test]
fn an_http_player_gets_the_configs_and_gop_first_then_every_tag_then_the_end() {
    let (mut f, listen) = fixture();
    let (p, id) = f.publisher("live", "cam");
    send(&mut f, p, id, type_id::VIDEO, 0, AVC_CONFIG);
    send(&mut f, p, id, type_id::AUDIO, 0, AAC_CONFIG);
    send(&mut f, p, id, type_id::VIDEO, 40, &inter(9, 20)); // before any keyframe: not cached
    send(&mut f, p, id, type_id::VIDEO, 80, &keyframe(1, 30));
    send(&mut f, p, id, type_id::AUDIO, 90, &[0xaf, 0x01, 7]);
    send(&mut f, p, id, type_id::VIDEO, 120, &inter(2, 20));
    let stream = http(
        &mut f,
        listen,
        "GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut got = take(&mut f, stream);
    read(&mut f, stream, &got);
    for n in 3..8u8 {
        send(
            &mut f,
            p,
            id,
            type_id::VIDEO,
            120 + 40 * u32::from(n),
            &inter(n, 20),
        );
        let more = take(&mut f, stream);
        read(&mut f, stream, &more);
        got.extend(more);
    }
    // The API counts the HTTP player.
    let api = http(&mut f, listen, "GET /api/v1/streams HTTP/1.1\r\n\r\n");
    let json = String::from_utf8(concat(&take(&mut f, api))).unwrap();
    assert!(json.contains("\"players\":1"), "{json}");

    f.net.clients[p].client.call(id, "closeStream", vec![]);
    f.pump();
    got.extend(take(&mut f, stream));
    let (head, body, ended) = response(&concat(&got));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: video/x-flv\r\n"));
    assert!(head.contains("Transfer-Encoding: chunked\r\n"));
    assert!(
        ended,
        "the response ends with the last chunk when the publisher stops"
    );
    let tags = tags(&body);
    let expected: Vec<(u8, u32, Vec<u8>)> = [
        (9, 0, AVC_CONFIG.to_vec()),
        (8, 0, AAC_CONFIG.to_vec()),
        (9, 80, keyframe(1, 30)),
        (8, 90, vec![0xaf, 0x01, 7]),
        (9, 120, inter(2, 20)),
    ]
    .into_iter()
    .chain((3..8u8).map(|n| (9, 120 + 40 * u32::from(n), inter(n, 20))))
    .collect();
    assert_eq!(tags, expected);
    // Once the client has read the end, the connection is closed.
    assert!(f.net.tcp.open_streams().contains(&stream));
    f.net
        .node
        .handle(f.now, Input::Tcp(TcpEvent::Sent { stream, bytes: 5 }));
    f.pump();
    assert!(!f.net.tcp.open_streams().contains(&stream));
}

#[test]
fn every_http_player_gets_the_same_encoding_of_a_tag() {
    let (mut f, listen) = fixture();
    let (p, id) = f.publisher("live", "cam");
    send(&mut f, p, id, type_id::VIDEO, 0, &keyframe(1, 100));
    let a = http(&mut f, listen, "GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let b = http(&mut f, listen, "GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let c = http(&mut f, listen, "GET /live/cam.flv HTTP/1.0\r\n\r\n");
    let (ga, gb, gc) = (take(&mut f, a), take(&mut f, b), take(&mut f, c));
    // The cached keyframe too: the same bytes.
    assert_eq!(ga.last().unwrap().as_ptr(), gb.last().unwrap().as_ptr());
    send(&mut f, p, id, type_id::VIDEO, 40, &inter(2, 100));
    let (na, nb, nc) = (take(&mut f, a), take(&mut f, b), take(&mut f, c));
    assert_eq!(na.len(), 1);
    assert_eq!(na[0].as_ptr(), nb[0].as_ptr(), "one encoding, shared");
    assert_eq!(na[0], nb[0]);
    // HTTP/1.0: no chunk framing, the bare tag is a slice of the same encoding.
    assert_eq!(&na[0][9..na[0].len() - 2], &nc[0][..]);
    assert_eq!(na[0][9..].as_ptr(), nc[0].as_ptr());
    let head = String::from_utf8_lossy(&gc[0]).to_string();
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    assert!(gc
        .iter()
        .any(|s| s.starts_with(b"FLV") || s.windows(3).any(|w| w == b"FLV")));
}

#[test]
fn an_http_player_that_does_not_read_is_closed_and_one_that_reads_is_not() {
    let mut config = NodeConfig::default();
    config.server.player_soft_backlog = 200_000;
    config.server.player_hard_backlog = 1_000_000;
    let (mut f, listen) = fixture_with(config);
    let (p, id) = f.publisher("live", "cam");
    send(&mut f, p, id, type_id::VIDEO, 0, &keyframe(1, 1000));
    let deaf = http(&mut f, listen, "GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let reader = http(&mut f, listen, "GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let first = take(&mut f, reader);
    read(&mut f, reader, &first);
    let mut deaf_frames = 0;
    for n in 0..400u32 {
        let frame = if n % 50 == 0 {
            keyframe(3, 10_000)
        } else {
            inter(4, 10_000)
        };
        send(&mut f, p, id, type_id::VIDEO, 40 * n, &frame);
        deaf_frames += take(&mut f, deaf).len();
        let got = take(&mut f, reader);
        assert_eq!(got.len(), 1, "the reader gets frame {n}");
        read(&mut f, reader, &got);
    }
    // 4 MB were published: the deaf player got frames up to the soft limit (20 of 10 KB),
    // then none, and was closed once that and what it missed passed the hard limit; the
    // reader is still there.
    assert_eq!(
        deaf_frames,
        2 + 20,
        "the head and the cached keyframe, then 20 frames"
    );
    let open = f.net.tcp.open_streams();
    assert!(!open.contains(&deaf), "the deaf player is closed");
    assert!(open.contains(&reader));
    let metrics = http(&mut f, listen, "GET /metrics HTTP/1.1\r\n\r\n");
    let text = String::from_utf8(concat(&take(&mut f, metrics))).unwrap();
    assert!(
        text.contains("reason=\"player_backlog\"} 1"),
        "{}",
        text.lines()
            .filter(|l| l.contains("backlog"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_stream_nobody_publishes_is_404_and_other_methods_are_refused() {
    let (mut f, listen) = fixture();
    let stream = http(&mut f, listen, "GET /live/nobody.flv HTTP/1.1\r\n\r\n");
    let answer = concat(&take(&mut f, stream));
    assert!(
        answer.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let post = http(&mut f, listen, "POST /live/nobody.flv HTTP/1.1\r\n\r\n");
    assert!(concat(&take(&mut f, post)).starts_with(b"HTTP/1.1 405"));
}

/// The questions the node asked so far: (request, app, name, query).
fn plays_asked(f: &mut InMemory) -> Vec<(RequestId, String, String, String)> {
    f.net
        .node_events
        .drain(..)
        .filter_map(|e| match e {
            Event::Decide {
                request,
                question:
                    Question::Play {
                        app, name, query, ..
                    },
            } => Some((request, app, name, query)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_http_play_is_decided_like_an_rtmp_play() {
    let (mut f, listen) = fixture_with(NodeConfig {
        decisions: true,
        ..NodeConfig::default()
    });
    f.net.record_events = true;
    // The publisher's connect and publish are decided too: both accepted.
    let accept_next = |f: &mut InMemory| {
        let request = f
            .net
            .node_events
            .drain(..)
            .find_map(|e| match e {
                Event::Decide { request, .. } => Some(request),
                _ => None,
            })
            .expect("a question");
        f.net.node.decide(f.now, request, Decision::Accept).unwrap();
        f.pump();
    };
    let c = f.net.connect(f.now, "live");
    f.pump();
    accept_next(&mut f);
    f.net.clients[c].client.create_stream();
    f.pump();
    let id = f
        .events(c)
        .iter()
        .find_map(|e| match e {
            ClientEvent::StreamCreated(id) => Some(*id),
            _ => None,
        })
        .expect("a stream");
    f.net.clients[c].client.publish(id, "cam");
    f.pump();
    accept_next(&mut f);
    send(&mut f, c, id, type_id::VIDEO, 0, &keyframe(1, 50));

    let refused = http(
        &mut f,
        listen,
        "GET /live/cam.flv?token=bad HTTP/1.1\r\n\r\n",
    );
    let allowed = http(
        &mut f,
        listen,
        "GET /live/cam.flv?token=good HTTP/1.1\r\n\r\n",
    );
    let questions = plays_asked(&mut f);
    let queries: Vec<(&str, &str, &str)> = questions
        .iter()
        .map(|(_, app, name, query)| (app.as_str(), name.as_str(), query.as_str()))
        .collect();
    assert_eq!(
        queries,
        [("live", "cam", "token=bad"), ("live", "cam", "token=good")]
    );
    // Nothing is answered before the decision.
    assert!(take(&mut f, refused).is_empty() && take(&mut f, allowed).is_empty());
    let reject = Decision::Reject("Bad or missing token.".into());
    f.net.node.decide(f.now, questions[0].0, reject).unwrap();
    f.net
        .node
        .decide(f.now, questions[1].0, Decision::Accept)
        .unwrap();
    f.pump();
    assert!(concat(&take(&mut f, refused)).starts_with(b"HTTP/1.1 403"));
    let (head, body, _) = response(&concat(&take(&mut f, allowed)));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(tags(&body), [(9, 0, keyframe(1, 50))]);
}

/// The API lists an HTTP player beside the RTMP connections (state `http_flv`, what it plays,
/// its backlog), and the operator's drop ends it like an RTMP player's.
#[test]
fn an_http_player_is_listed_with_the_connections_and_can_be_dropped() {
    let (mut f, listen) = fixture();
    let (p, id) = f.publisher("live", "cam");
    send(&mut f, p, id, type_id::VIDEO, 0, AVC_CONFIG);
    send(&mut f, p, id, type_id::VIDEO, 40, &keyframe(1, 30));
    let player = http(&mut f, listen, "GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let sent = take(&mut f, player);
    assert!(!sent.is_empty());
    let api = http(&mut f, listen, "GET /api/v1/connections HTTP/1.1\r\n\r\n");
    let json = String::from_utf8(concat(&take(&mut f, api))).unwrap();
    let id_field = format!("\"id\":\"{}\"", player.0);
    assert!(json.contains(&id_field), "{json}");
    assert!(json.contains("\"state\":\"http_flv\""), "{json}");
    assert!(
        json.contains("\"streams\":[\"playing live/cam\"]"),
        "{json}"
    );
    let queued: usize = sent.iter().map(Bytes::len).sum();
    assert!(
        json.contains(&format!("\"queued_bytes\":{queued}")),
        "{json}"
    );

    let drop = format!(
        "POST /api/v1/connections/{}/drop HTTP/1.1\r\n\r\n",
        player.0
    );
    let answer = http(&mut f, listen, &drop);
    let reply = String::from_utf8(concat(&take(&mut f, answer))).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        !f.net.tcp.open_streams().contains(&player),
        "the player's connection is closed"
    );
    let api = http(&mut f, listen, "GET /api/v1/streams HTTP/1.1\r\n\r\n");
    let json = String::from_utf8(concat(&take(&mut f, api))).unwrap();
    assert!(json.contains("\"players\":0"), "{json}");
}

#[test]
fn an_http_player_puts_a_publisher_nobody_watched_back_on_the_read_grid() {
    const GRID: std::time::Duration = std::time::Duration::from_millis(40);
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(GRID);
    let (mut f, listen) = fixture_with(config);
    f.net.pace_reads();
    let (p, id) = f.publisher("live", "cam");
    assert_eq!(
        f.net.clients[p].read_every,
        Some(GRID * 10),
        "nobody watches: every tenth tick"
    );
    let stream = http(
        &mut f,
        listen,
        "GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(f.net.clients[p].read_every, Some(GRID), "watched over HTTP");
    // Its next message goes to the HTTP player at the next tick.
    let before = concat(&take(&mut f, stream)).len();
    send(&mut f, p, id, type_id::AUDIO, 20, &[0xaf, 0x01, 7]);
    f.now += GRID;
    f.pump();
    let tag = concat(&take(&mut f, stream));
    assert!(
        before > 0 && tag.windows(3).any(|w| w == [0xaf, 0x01, 7]),
        "the audio tag at the next tick"
    );
}
