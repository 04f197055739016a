//! nginx-rtmp-style HTTP callbacks through the node, in memory and virtual time, the test
//! playing the backend on `MemoryTcp`: 2xx allows, other statuses refuse, a 3xx with
//! `Location` renames a publish or play; a backend that is down, slow, closes early or answers
//! garbage gets the failure policy, and so does a decision past the cap; the notifications
//! (`on_publish_done`, `on_play_done`, `on_done`, `on_update`) carry nginx-rtmp's fields; the
//! application's own decision comes first.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use siprtmp_core::http::request::{parse, Limits};
use siprtmp_core::http::{CallbackUrl, CallbacksConfig, FailurePolicy};
use siprtmp_core::node::{Decision, Event, NodeConfig, ServerConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::tcp::StreamId;
use support::rtmp_clients::{Driven, InMemory};

const BACKEND: &str = "127.0.0.1:8081";
const TIMEOUT: Duration = Duration::from_secs(2);

fn url(path: &str) -> Option<CallbackUrl> {
    Some(CallbackUrl::parse(&format!("http://{BACKEND}{path}")).unwrap())
}

fn config(on_failure: FailurePolicy) -> CallbacksConfig {
    CallbacksConfig {
        on_publish: url("/publish"),
        on_play: url("/play"),
        on_done: url("/done"),
        on_publish_done: url("/publish_done"),
        on_play_done: url("/play_done"),
        timeout: TIMEOUT,
        on_failure,
        ..CallbacksConfig::default()
    }
}

fn start(callbacks: CallbacksConfig, decisions: bool, backend_up: bool) -> InMemory {
    let server = ServerConfig {
        callbacks: Some(callbacks),
        ..ServerConfig::default()
    };
    let mut f = InMemory::start(NodeConfig { server, decisions }, 5);
    if backend_up {
        f.net.tcp.listen(BACKEND.parse::<SocketAddr>().unwrap());
    }
    f
}

/// One request the node sent the backend: (stream, path, form fields in order).
struct Sent {
    stream: StreamId,
    path: String,
    fields: Vec<(String, String)>,
}

impl Sent {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The requests the backend has received since the last call, parsed.
fn requests(f: &mut InMemory) -> Vec<Sent> {
    let mut by_stream: HashMap<StreamId, Vec<u8>> = HashMap::new();
    let mut order = Vec::new();
    for (stream, data) in f.net.tcp.outbox.drain(..) {
        if !by_stream.contains_key(&stream) {
            order.push(stream);
        }
        by_stream
            .entry(stream)
            .or_default()
            .extend_from_slice(&data);
    }
    order
        .into_iter()
        .map(|stream| {
            let raw = &by_stream[&stream];
            let (request, used) = parse(raw, &Limits::default()).unwrap().expect("whole");
            assert_eq!(used, raw.len());
            assert_eq!(request.method, "POST");
            assert_eq!(
                request.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            let body = std::str::from_utf8(&request.body).unwrap();
            let fields = body
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(n), decode(v))
                })
                .collect();
            Sent {
                stream,
                path: request.path,
                fields,
            }
        })
        .collect()
}

/// The backend answers `sent` with `response` and closes.
fn answer(f: &mut InMemory, sent: &Sent, response: &str) {
    f.net.tcp.send(sent.stream, response.as_bytes());
    f.net.tcp.close(sent.stream, None);
    f.pump();
}

/// A connected client with a stream; the connect needs no callback here.
fn client(f: &mut InMemory) -> (usize, u32) {
    f.client_with_stream("live")
}

fn publish_asked(f: &mut InMemory, name: &str) -> (usize, u32, Sent) {
    let (c, id) = client(f);
    f.net.clients[c].client.publish(id, name);
    f.pump();
    let mut sent = requests(f);
    assert_eq!(sent.len(), 1, "one callback");
    (c, id, sent.pop().unwrap())
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[test]
fn a_2xx_allows_a_publish_with_nginx_rtmps_fields_and_another_status_refuses_it() {
    let mut f = start(config(FailurePolicy::Allow), false, true);
    let (c, _, sent) = publish_asked(&mut f, "show?token=abc&x=1");
    assert_eq!(sent.path, "/publish");
    let names: Vec<&str> = sent.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call", "name",
            "type", "token", "x"
        ]
    );
    assert_eq!(sent.field("call"), Some("publish"));
    assert_eq!(sent.field("app"), Some("live"));
    assert_eq!(sent.field("name"), Some("show"));
    assert_eq!(sent.field("type"), Some("live"));
    assert_eq!(sent.field("token"), Some("abc"));
    assert_eq!(sent.field("addr"), Some("127.0.0.1"));
    assert_eq!(sent.field("tcurl"), Some("rtmp://127.0.0.1/live"));
    // Nothing is decided before the backend answers.
    assert!(f.statuses(c).is_empty());
    answer(&mut f, &sent, OK);
    assert_eq!(f.statuses(c), ["NetStream.Publish.Start"]);

    let (refused, _, sent) = publish_asked(&mut f, "other");
    answer(
        &mut f,
        &sent,
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n",
    );
    assert_eq!(f.statuses(refused), ["NetStream.Publish.Denied"]);
}

#[test]
fn a_3xx_with_location_renames_a_play_and_a_publish() {
    let mut f = start(config(FailurePolicy::Refuse), false, true);
    let (publisher, _, sent) = publish_asked(&mut f, "wanted");
    answer(
        &mut f,
        &sent,
        "HTTP/1.1 302 Found\r\nLocation: real\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(f.statuses(publisher), ["NetStream.Publish.Start"]);
    assert!(f.net.node_events.contains(&Event::PublishStarted {
        conn: f.net.clients[publisher].conn,
        stream: "live/real".into()
    }));

    let (player, id) = client(&mut f);
    f.net.clients[player].client.play(id, "alias", -2.0);
    f.pump();
    let sent = requests(&mut f).pop().expect("asked");
    assert_eq!(sent.field("call"), Some("play"));
    assert_eq!(sent.field("name"), Some("alias"));
    // Chunked, to be sure any framing works.
    answer(
        &mut f,
        &sent,
        "HTTP/1.1 301 Moved\r\nLocation: real\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    assert!(f.net.node_events.contains(&Event::PlayStarted {
        conn: f.net.clients[player].conn,
        stream: "live/real".into()
    }));
}

/// The statuses a publish gets when its callback fails by `fail`, under `policy`.
fn failing(policy: FailurePolicy, fail: impl Fn(&mut InMemory, Option<&Sent>)) -> Vec<String> {
    let backend_up = true;
    let mut f = start(config(policy), false, backend_up);
    let (c, id) = client(&mut f);
    f.net.clients[c].client.publish(id, "show");
    f.pump();
    let sent = requests(&mut f).pop();
    fail(&mut f, sent.as_ref());
    f.pump();
    f.statuses(c)
}

#[test]
fn a_slow_backend_gets_the_failure_policy_at_the_timeout() {
    for (policy, expected) in [
        (FailurePolicy::Allow, "NetStream.Publish.Start"),
        (FailurePolicy::Refuse, "NetStream.Publish.Denied"),
    ] {
        let statuses = failing(policy, |f, _| {
            let start = f.now;
            f.net
                .run_until(&mut f.now, start + TIMEOUT - Duration::from_millis(1));
            assert!(f.statuses(0).is_empty(), "still waiting");
            f.net.run_until(&mut f.now, start + TIMEOUT);
        });
        assert_eq!(statuses, [expected], "{policy:?}");
    }
}

#[test]
fn a_backend_that_closes_early_or_answers_garbage_gets_the_failure_policy() {
    for policy in [FailurePolicy::Allow, FailurePolicy::Refuse] {
        let expected = match policy {
            FailurePolicy::Allow => "NetStream.Publish.Start",
            FailurePolicy::Refuse => "NetStream.Publish.Denied",
        };
        let closed = failing(policy, |f, sent| {
            let sent = sent.expect("sent");
            f.net
                .tcp
                .send(sent.stream, b"HTTP/1.1 200 OK\r\nContent-Le");
            f.net.tcp.close(sent.stream, None);
        });
        assert_eq!(closed, [expected], "closed early, {policy:?}");
        let reset = failing(policy, |f, sent| {
            f.net
                .tcp
                .close(sent.expect("sent").stream, Some("Connection reset"));
        });
        assert_eq!(reset, [expected], "reset, {policy:?}");
        let garbage = failing(policy, |f, sent| {
            f.net
                .tcp
                .send(sent.expect("sent").stream, b"\x00\x01 not http\r\n\r\n");
        });
        assert_eq!(garbage, [expected], "garbage, {policy:?}");
    }
}

#[test]
fn a_backend_that_is_down_gets_the_failure_policy_at_once() {
    for (policy, expected) in [
        (FailurePolicy::Allow, "NetStream.Publish.Start"),
        (FailurePolicy::Refuse, "NetStream.Publish.Denied"),
    ] {
        let mut f = start(config(policy), false, false);
        let (c, id) = client(&mut f);
        f.net.clients[c].client.publish(id, "show");
        f.pump();
        assert_eq!(f.statuses(c), [expected]);
    }
}

#[test]
fn past_the_cap_a_decision_gets_the_failure_policy_without_a_request() {
    let mut f = start(
        CallbacksConfig {
            max_in_flight: 1,
            ..config(FailurePolicy::Refuse)
        },
        false,
        true,
    );
    let (first, _, sent) = publish_asked(&mut f, "one");
    let (second, id) = client(&mut f);
    f.net.clients[second].client.publish(id, "two");
    f.pump();
    assert!(requests(&mut f).is_empty(), "no second request");
    assert_eq!(f.statuses(second), ["NetStream.Publish.Denied"]);
    answer(&mut f, &sent, OK);
    assert_eq!(f.statuses(first), ["NetStream.Publish.Start"]);
}

#[test]
fn the_ends_of_publishes_and_plays_are_told_with_their_names_and_args() {
    let mut f = start(config(FailurePolicy::Refuse), false, true);
    let (publisher, p_id, sent) = publish_asked(&mut f, "show?k=v");
    answer(&mut f, &sent, OK);
    let (player, v_id) = client(&mut f);
    f.net.clients[player].client.play(v_id, "show?who=me", -2.0);
    f.pump();
    let sent = requests(&mut f).pop().expect("play asked");
    answer(&mut f, &sent, OK);
    assert!(f
        .statuses(player)
        .contains(&"NetStream.Play.Start".to_string()));

    // The player leaves, then the publisher stops.
    let player_conn = f.net.clients[player].conn;
    f.net.clients[player].closed = true;
    f.net.node.handle(
        f.now,
        siprtmp_core::node::Input::Closed { conn: player_conn },
    );
    f.pump();
    let done = requests(&mut f);
    let calls: Vec<[Option<&str>; 4]> = done
        .iter()
        .map(|s| {
            [
                Some(s.path.as_str()),
                s.field("call"),
                s.field("name"),
                s.field("who"),
            ]
        })
        .collect();
    assert_eq!(
        calls,
        [
            [
                Some("/play_done"),
                Some("play_done"),
                Some("show"),
                Some("me")
            ],
            [Some("/done"), Some("done"), Some("show"), Some("me")],
        ]
    );
    assert_eq!(
        done[0].field("clientid"),
        Some(player_conn.to_string().as_str())
    );
    f.net.clients[publisher].client.call(
        p_id,
        "deleteStream",
        vec![siprtmp_core::amf::Value::Number(f64::from(p_id))],
    );
    f.pump();
    let done = requests(&mut f);
    let calls: Vec<(&str, Option<&str>, Option<&str>)> = done
        .iter()
        .map(|s| (s.path.as_str(), s.field("call"), s.field("k")))
        .collect();
    assert_eq!(
        calls,
        [
            ("/publish_done", Some("publish_done"), Some("v")),
            ("/done", Some("done"), Some("v")),
        ]
    );
}

#[test]
fn the_applications_decision_comes_first_and_a_refusal_makes_no_request() {
    let mut f = start(config(FailurePolicy::Refuse), true, true);
    let c = f.net.connect(f.now, "live");
    f.pump();
    // The connect: no on_connect configured, so the application's acceptance is final.
    let asked = take_questions(&mut f);
    assert_eq!(asked.len(), 1);
    f.net
        .node
        .decide(f.now, asked[0], Decision::Accept)
        .unwrap();
    f.pump();
    assert!(f.events(c).contains(&ClientEvent::Connected));
    f.net.clients[c].client.create_stream();
    f.pump();
    let id = f
        .events(c)
        .iter()
        .find_map(|e| match e {
            ClientEvent::StreamCreated(id) => Some(*id),
            _ => None,
        })
        .expect("stream created");
    f.net.clients[c].client.publish(id, "show");
    f.pump();
    let asked = take_questions(&mut f);
    assert!(requests(&mut f).is_empty(), "the application answers first");
    f.net
        .node
        .decide(f.now, asked[0], Decision::Reject("rules".into()))
        .unwrap();
    f.pump();
    assert!(
        requests(&mut f).is_empty(),
        "refused by the rules: no callback"
    );
    assert_eq!(f.statuses(c), ["NetStream.Publish.Denied"]);

    f.net.clients[c].client.publish(id, "show");
    f.pump();
    let asked = take_questions(&mut f);
    f.net
        .node
        .decide(f.now, asked[0], Decision::Accept)
        .unwrap();
    // Answered once: a second answer is refused while the callback decides.
    assert!(f
        .net
        .node
        .decide(f.now, asked[0], Decision::Accept)
        .is_err());
    f.pump();
    let sent = requests(&mut f).pop().expect("now the callback");
    answer(&mut f, &sent, OK);
    assert_eq!(
        f.statuses(c),
        ["NetStream.Publish.Denied", "NetStream.Publish.Start"]
    );
}

fn take_questions(f: &mut InMemory) -> Vec<siprtmp_core::node::RequestId> {
    let mut asked = Vec::new();
    f.net.node_events.retain(|e| match e {
        Event::Decide { request, .. } => {
            asked.push(*request);
            false
        }
        _ => true,
    });
    asked
}

#[test]
fn a_refused_update_ends_the_connection() {
    let interval = Duration::from_secs(5);
    let mut f = start(
        CallbacksConfig {
            on_update: url("/update"),
            update_interval: interval,
            ..config(FailurePolicy::Allow)
        },
        false,
        true,
    );
    let start_at = f.now;
    let (publisher, _, sent) = publish_asked(&mut f, "show");
    answer(&mut f, &sent, OK);
    f.net.run_until(&mut f.now, start_at + interval);
    let sent = requests(&mut f).pop().expect("an update");
    assert_eq!(sent.field("call"), Some("update_publish"));
    assert_eq!(sent.field("name"), Some("show"));
    assert_eq!(sent.field("time"), Some("5"));
    answer(&mut f, &sent, OK);
    assert!(!f.net.clients[publisher].closed);
    f.net.run_until(&mut f.now, start_at + interval * 2);
    let sent = requests(&mut f).pop().expect("the next update");
    answer(&mut f, &sent, "HTTP/1.1 404 Not Found\r\n\r\n");
    assert!(f.net.clients[publisher].closed, "a refused update closes");
}

#[test]
fn on_connect_gets_the_connects_fields_and_a_3xx_redirects_the_client() {
    let callbacks = CallbacksConfig {
        on_connect: url("/connect"),
        ..config(FailurePolicy::Refuse)
    };
    let mut f = start(callbacks, false, true);
    let allowed = f.net.connect(f.now, "live?k=v");
    f.pump();
    let sent = requests(&mut f).pop().expect("on_connect");
    let names: Vec<&str> = sent.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "epoch", "call", "k"]
    );
    assert_eq!(sent.field("app"), Some("live"));
    assert_eq!(sent.field("call"), Some("connect"));
    assert!(!f.events(allowed).contains(&ClientEvent::Connected));
    answer(&mut f, &sent, OK);
    assert!(f.events(allowed).contains(&ClientEvent::Connected));

    let redirected = f.net.connect(f.now, "live");
    f.pump();
    let sent = requests(&mut f).pop().expect("on_connect");
    answer(
        &mut f,
        &sent,
        "HTTP/1.1 302 Found\r\nLocation: rtmp://10.0.0.2/live\r\n\r\n",
    );
    assert!(f.events(redirected).contains(&ClientEvent::ConnectRejected(
        "NetConnection.Connect.Rejected".into()
    )));
    assert!(f.net.node_events.iter().any(|e| matches!(
        e,
        Event::Closing { reason: siprtmp_core::node::CloseReason::ConnectRedirected { url }, .. }
            if url == "rtmp://10.0.0.2/live"
    )));
}
