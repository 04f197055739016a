//! The HTTP API's operator actions and its list of applications, in memory and virtual time:
//! ending a gateway client's call (established: BYE; ringing out: CANCEL; ringing in: 603),
//! the client told as when the far end ends it and the outcome counted; stopping a live
//! stream's recording (the file closed and whole, the stream and its players untouched);
//! `GET /api/v1/applications`; and under two workers, the actions forwarded to the worker
//! that holds what they act on, the applications counted across both.

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::flv::reader::FlvReader;
use siprtmp_core::flv::tag::tag_type;
use siprtmp_core::node::{
    AppConfig, CallPhase, ConnId, Event, HttpConfig, Input, Node, NodeConfig, RecordPolicy,
    ServerConfig,
};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::create_offer;
use siprtmp_core::sip::ua::UaEvent;
use siprtmp_core::sip::Transport;
use siprtmp_core::testkit::MemoryNet;
use siprtmp_core::worker_relay::{RelayIn, RelayOut, WorkerId};
use support::gateway_world::{call_as, far_origin, World, FAR_SIP, RTP_PORTS};
use support::rtmp_clients::{Driven, InMemory};

fn http_config() -> HttpConfig {
    HttpConfig {
        listen: "10.0.0.1:8080".parse().unwrap(),
        ..HttpConfig::default()
    }
}

/// A gateway node with the HTTP listener on.
fn world() -> World {
    World::configured(Transport::Udp, RTP_PORTS, |c| {
        c.server.http = Some(http_config());
    })
}

/// The value of the sample `name` (labels as written) in an exposition; 0 when absent.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

fn outcome(w: &mut World, direction: &str, outcome: &str) -> f64 {
    let (_, metrics) = w.http_get("/metrics");
    let name =
        format!("siprtmp_gateway_calls_total{{direction=\"{direction}\",outcome=\"{outcome}\"}}");
    sample(&metrics, &name)
}

fn end(w: &mut World, c: usize) -> (u16, String) {
    let conn = w.net.clients[c].conn;
    w.http("POST", &format!("/api/v1/calls/{}/end", conn.0))
}

/// Whether the node told of the end of `c`'s call with the operator as its reason.
fn ended_by_operator(w: &World, c: usize) -> bool {
    let conn = w.net.clients[c].conn;
    w.net.node_events.iter().any(|e| {
        matches!(e, Event::GatewayCall { conn: x, phase: CallPhase::Ended { reason } }
            if *x == conn && reason == "ended by operator")
    })
}

#[test]
fn ending_an_established_call_sends_bye_and_tells_the_client_byed() {
    let mut w = world();
    let c = call_as(&mut w, "alice");
    assert!(w.callback(c, "byed").is_none());
    let (status, body) = end(&mut w, c);
    assert_eq!(status, 200, "{body}");
    let conn = w.net.clients[c].conn;
    assert_eq!(
        body,
        format!("{{\"ended\":\"{}\",\"call\":\"established\"}}", conn.0)
    );
    assert!(
        w.far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { .. })),
        "bob got the BYE: {:?}",
        w.far_events
    );
    assert!(w.callback(c, "byed").is_some(), "{:?}", w.commands(c));
    assert!(ended_by_operator(&w, c));
    let (_, metrics) = w.http_get("/metrics");
    assert_eq!(
        sample(&metrics, "siprtmp_gateway_calls{state=\"established\"}"),
        0.0
    );
    assert_eq!(outcome(&mut w, "outgoing", "answered"), 1.0);

    // No call any more: 409; the media ports went back, so the client can call again.
    assert_eq!(end(&mut w, c).0, 409);
    assert_eq!(w.net.udp.open_sockets(), 1, "only the SIP socket is left");
    w.invite(c, &format!("bob@{FAR_SIP}"));
    assert_eq!(
        w.commands(c)
            .iter()
            .filter(|(n, _)| n == "accepted")
            .count(),
        2
    );
}

#[test]
fn ending_a_call_that_rings_out_cancels_it() {
    let mut w = world();
    w.far_answers = false;
    let c = w.client("alice", None);
    w.invite(c, &format!("bob@{FAR_SIP}"));
    assert!(w.callback(c, "ringing").is_some());
    let (status, body) = end(&mut w, c);
    assert_eq!(status, 200);
    assert!(body.contains("\"call\":\"outgoing\""), "{body}");
    assert!(
        w.far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Cancelled { .. })),
        "bob got the CANCEL: {:?}",
        w.far_events
    );
    assert_eq!(
        w.callback(c, "rejected").as_deref(),
        Some("487 Request Terminated")
    );
    assert!(ended_by_operator(&w, c));
    assert_eq!(outcome(&mut w, "outgoing", "cancelled"), 1.0);
    assert_eq!(outcome(&mut w, "outgoing", "answered"), 0.0);
    assert_eq!(end(&mut w, c).0, 409, "nothing left to end");
}

#[test]
fn ending_a_call_that_rings_in_declines_it() {
    let mut w = world();
    let c = w.client("alice", None);
    let sip = w
        .net
        .node_events
        .iter()
        .find_map(|e| match e {
            Event::GatewayBound { sip, .. } => Some(*sip),
            _ => None,
        })
        .expect("alice's SIP socket");
    let offer = create_offer(&w.far_capabilities(), &far_origin());
    let target = format!("sip:alice@{sip}").parse().unwrap();
    let call = w
        .far
        .invite(w.now, target, Bytes::from(offer.serialize()))
        .unwrap();
    w.pump();
    assert!(w.commands(c).iter().any(|(n, _)| n == "invited"));
    let (status, body) = end(&mut w, c);
    assert_eq!(status, 200);
    assert!(body.contains("\"call\":\"incoming\""), "{body}");
    assert!(
        w.far_events.iter().any(|e| matches!(
            e,
            UaEvent::Rejected { call: x, status: 603, .. } if *x == call
        )),
        "bob's INVITE was declined: {:?}",
        w.far_events
    );
    let (_, args) = w
        .commands(c)
        .into_iter()
        .find(|(n, _)| n == "cancelled")
        .expect("the client stops ringing");
    assert_eq!(args.len(), 2, "cancelled(from, to): {args:?}");
    assert!(ended_by_operator(&w, c));
    assert_eq!(outcome(&mut w, "incoming", "rejected_6xx"), 1.0);
}

#[test]
fn ending_the_call_of_no_client_or_a_client_without_one() {
    let mut w = world();
    let c = w.client("alice", None);
    assert_eq!(end(&mut w, c).0, 409, "a client without a call");
    assert_eq!(w.http("POST", "/api/v1/calls/424242/end").0, 404);
    assert_eq!(w.http("POST", "/api/v1/calls/alice/end").0, 404);
    let conn = w.net.clients[c].conn;
    assert_eq!(
        w.http("GET", &format!("/api/v1/calls/{}/end", conn.0)).0,
        405
    );
    // An RTMP connection that is no gateway client has no call either: 404.
    let other = w.net.connect(w.now, "live");
    w.pump();
    let other = w.net.clients[other].conn;
    assert_eq!(
        w.http("POST", &format!("/api/v1/calls/{}/end", other.0)).0,
        404
    );
}

/// A node whose application `vod` records every publish, with the HTTP listener on.
fn recording_node() -> InMemory {
    let mut server = ServerConfig::default();
    server.apps.insert(
        "vod".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    server.http = Some(http_config());
    let mut f = InMemory::start(
        NodeConfig {
            server,
            ..NodeConfig::default()
        },
        5,
    );
    f.pump(); // the listen
    f
}

/// `method path` on the node's HTTP listener from a new connection: the status and body.
fn http(net: &mut MemoryNet, now: Instant, method: &str, path: &str) -> (u16, String) {
    let listen = net.tcp.node_listeners()[0];
    let from: SocketAddr = "10.0.0.7:41000".parse().unwrap();
    let stream = net.tcp.connect(from, listen).unwrap();
    net.pump(now);
    let request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
    net.tcp.send(stream, request.as_bytes());
    net.pump(now);
    let mut answer = Vec::new();
    net.tcp.outbox.retain(|(s, data)| {
        if *s == stream {
            answer.extend_from_slice(data);
            false
        } else {
            true
        }
    });
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

const AVC_CONFIG: &[u8] = &[0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e];

/// Video at 10 frames a second from `first` (a keyframe every tenth), for `frames`.
fn video(f: &mut InMemory, c: usize, stream: u32, first: u32, frames: u32) {
    for n in first..first + frames {
        let key = if n % 10 == 0 { 0x17 } else { 0x27 };
        let msg = RtmpMessage::new(
            type_id::VIDEO,
            stream,
            n * 100,
            vec![key, 1, 0, 0, 0, n as u8],
        );
        f.net.clients[c].client.send_media(&msg);
    }
    f.pump();
}

/// The FLV file's tags, read whole (a cut file fails here).
fn media_tags(file: &[u8]) -> usize {
    let mut reader = FlvReader::new(1 << 20);
    reader.push(file);
    let mut n = 0;
    while let Some(tag) = reader.next_tag().expect("valid FLV") {
        n += usize::from(tag.tag_type == tag_type::VIDEO);
    }
    n
}

#[test]
fn stopping_a_recording_closes_its_file_and_leaves_the_stream_live() {
    let mut f = recording_node();
    let (p, s) = f.publisher("vod", "cam");
    let (viewer, _) = f.player("vod", "cam");
    let config = RtmpMessage::new(type_id::VIDEO, s, 0, AVC_CONFIG.to_vec());
    f.net.clients[p].client.send_media(&config);
    video(&mut f, p, s, 0, 20);
    let (_, streams) = http(&mut f.net, f.now, "GET", "/api/v1/streams");
    assert!(streams.contains("\"recording\":true"), "{streams}");

    let (status, body) = http(
        &mut f.net,
        f.now,
        "POST",
        "/api/v1/streams/vod/cam/record/stop",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"stopped":"vod/cam","path":"vod/cam.flv"}"#);
    assert!(f.net.node_events.iter().any(|e| matches!(
        e,
        Event::RecordStopped { path, error: None, .. } if path == "vod/cam.flv"
    )));
    let file = f.net.fs.files["vod/cam.flv"].clone();
    assert_eq!(media_tags(&file), 21, "the configuration and 20 frames");
    // The publisher did not ask for the recording (the application records all): it hears
    // nothing of it, as of the start.
    assert_eq!(f.statuses(p), vec!["NetStream.Publish.Start"]);

    // The stream goes on for its player, and nothing more reaches the file.
    let before = f.media(viewer).len();
    video(&mut f, p, s, 20, 20);
    assert_eq!(f.media(viewer).len(), before + 20);
    assert_eq!(f.net.fs.files["vod/cam.flv"], file);
    let (_, streams) = http(&mut f.net, f.now, "GET", "/api/v1/streams");
    assert!(
        streams.contains("\"recording\":false") && streams.contains("\"players\":1"),
        "{streams}"
    );
    let stop = "/api/v1/streams/vod/cam/record/stop";
    assert_eq!(
        http(&mut f.net, f.now, "POST", stop).0,
        404,
        "stopped already"
    );
    assert_eq!(
        http(
            &mut f.net,
            f.now,
            "POST",
            "/api/v1/streams/vod/nobody/record/stop"
        )
        .0,
        404
    );
}

#[test]
fn a_publisher_that_asked_for_its_recording_hears_it_stop() {
    let mut f = recording_node();
    let (p, s) = f.client_with_stream("live");
    f.net.clients[p].client.call(
        s,
        "publish",
        vec![Value::string("my cam"), Value::string("record")],
    );
    f.pump();
    assert_eq!(
        f.statuses(p),
        vec!["NetStream.Publish.Start", "NetStream.Record.Start"]
    );
    video(&mut f, p, s, 0, 5);
    // The name's space is percent-encoded in the path.
    let stop = "/api/v1/streams/live/my%20cam/record/stop";
    let (status, body) = http(&mut f.net, f.now, "POST", stop);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        f.statuses(p),
        vec![
            "NetStream.Publish.Start",
            "NetStream.Record.Start",
            "NetStream.Record.Stop"
        ]
    );
    assert_eq!(media_tags(&f.net.fs.files["live/my cam.flv"]), 5);
}

#[test]
fn the_applications_list_their_settings_and_what_they_serve() {
    let mut f = recording_node();
    let (_, empty) = http(&mut f.net, f.now, "GET", "/api/v1/applications");
    assert_eq!(
        empty,
        r#"{"applications":[{"name":"vod","configured":true,"record":"all","gateway":false,"connections":0,"publishers":0,"players":0,"calls":null}]}"#
    );
    f.publisher("live", "a");
    f.publisher("live", "b");
    f.player("live", "a");
    f.player("live", "a");
    f.player("vod", "later"); // waits for a publisher: a player all the same
    f.client_with_stream("live");
    let (status, apps) = http(&mut f.net, f.now, "GET", "/api/v1/applications");
    assert_eq!(status, 200);
    assert_eq!(
        apps,
        concat!(
            r#"{"applications":["#,
            r#"{"name":"live","configured":false,"record":"off","gateway":false,"connections":5,"publishers":2,"players":2,"calls":null},"#,
            r#"{"name":"vod","configured":true,"record":"all","gateway":false,"connections":1,"publishers":0,"players":1,"calls":null}"#,
            "]}"
        )
    );
    assert_eq!(
        http(&mut f.net, f.now, "POST", "/api/v1/applications").0,
        405
    );
}

#[test]
fn the_gateways_application_counts_its_clients_and_calls() {
    let mut w = world();
    let (_, before) = w.http_get("/api/v1/applications");
    assert_eq!(
        before,
        r#"{"applications":[{"name":"sip","configured":false,"record":"off","gateway":true,"connections":0,"publishers":0,"players":0,"calls":0}]}"#
    );
    call_as(&mut w, "alice");
    w.client("carol", None);
    let (_, during) = w.http_get("/api/v1/applications");
    assert!(
        during.contains(r#""name":"sip","configured":false,"record":"off","gateway":true,"connections":2,"publishers":0,"players":0,"calls":1"#),
        "{during}"
    );
}

/// Two workers in memory, HTTP on worker 0, `vod` recording every publish, and the relay
/// between them carried out as the drivers do (a registry of names, messages in order).
struct Workers {
    nets: [MemoryNet; 2],
    registry: std::collections::HashMap<std::sync::Arc<str>, usize>,
    now: Instant,
}

impl Workers {
    fn new() -> Self {
        let now = Instant::now();
        let node = |w: u8| {
            let mut server = ServerConfig::default();
            server.apps.insert(
                "vod".into(),
                AppConfig {
                    record: RecordPolicy::All,
                    ..AppConfig::default()
                },
            );
            server.http = Some(http_config());
            let config = NodeConfig {
                server,
                ..NodeConfig::default()
            };
            let mut node = Node::new(config, now, 20 + u64::from(w)).with_relay(WorkerId(w));
            node.set_worker_count(2);
            MemoryNet::new(node)
        };
        let mut workers = Self {
            nets: [node(0), node(1)],
            registry: std::collections::HashMap::new(),
            now,
        };
        workers.pump();
        workers
    }

    fn pump(&mut self) {
        loop {
            for net in &mut self.nets {
                net.pump(self.now);
            }
            let mut moved = false;
            for from in 0..2 {
                for out in std::mem::take(&mut self.nets[from].relay_out) {
                    moved = true;
                    match out {
                        RelayOut::Claim { request, stream } => {
                            let granted = !self.registry.contains_key(&stream);
                            if granted {
                                self.registry.insert(stream, from);
                            }
                            let input = Input::Relay(RelayIn::Claimed { request, granted });
                            self.nets[from].node.handle(self.now, input);
                        }
                        RelayOut::Release { stream } => {
                            self.registry.remove(&stream);
                        }
                        RelayOut::Send { message, .. } => {
                            // Two workers: every message goes to the other one.
                            let input = Input::Relay(RelayIn::Received {
                                from: WorkerId(from as u8),
                                message,
                            });
                            self.nets[1 - from].node.handle(self.now, input);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// `method path` on worker 0's HTTP listener, the relay carried out until quiet.
    fn http(&mut self, method: &str, path: &str) -> (u16, String) {
        let net = &mut self.nets[0];
        let listen = net.tcp.node_listeners()[0];
        let stream = net
            .tcp
            .connect("10.0.0.7:41000".parse().unwrap(), listen)
            .unwrap();
        self.pump();
        let request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
        self.nets[0].tcp.send(stream, request.as_bytes());
        self.pump();
        let mut answer = Vec::new();
        self.nets[0].tcp.outbox.retain(|(s, data)| {
            if *s == stream {
                answer.extend_from_slice(data);
                false
            } else {
                true
            }
        });
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }
}

/// Worker `w` of a [`Workers`], for setting up its clients (the relay carried out).
struct OnWorker<'a> {
    workers: &'a mut Workers,
    w: usize,
}

impl Driven for OnWorker<'_> {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        (&mut self.workers.nets[self.w], self.workers.now)
    }

    fn pump(&mut self) {
        self.workers.pump();
    }
}

#[test]
fn under_two_workers_a_recording_is_stopped_by_its_publishers_worker() {
    let mut w = Workers::new();
    let (p, s) = OnWorker {
        workers: &mut w,
        w: 1,
    }
    .publisher("vod", "cam");
    let (viewer, _) = OnWorker {
        workers: &mut w,
        w: 0,
    }
    .player("vod", "cam");
    for n in 0..10u32 {
        let key = if n == 0 { 0x17 } else { 0x27 };
        let msg = RtmpMessage::new(type_id::VIDEO, s, n * 100, vec![key, 1, 0, 0, 0, n as u8]);
        w.nets[1].clients[p].client.send_media(&msg);
    }
    w.pump();
    let (_, apps) = w.http("GET", "/api/v1/applications");
    assert!(
        apps.contains(r#""name":"vod","configured":true,"record":"all","gateway":false,"connections":2,"publishers":1,"players":1"#),
        "both workers' counts: {apps}"
    );

    let (status, body) = w.http("POST", "/api/v1/streams/vod/cam/record/stop");
    assert_eq!((status, body.as_str()), (202, r#"{"stopping":"vod/cam"}"#));
    assert!(w.nets[1].node_events.iter().any(|e| matches!(
        e,
        Event::RecordStopped { path, error: None, .. } if path == "vod/cam.flv"
    )));
    assert_eq!(media_tags(&w.nets[1].fs.files["vod/cam.flv"]), 10);
    let (_, streams) = w.http("GET", "/api/v1/streams");
    assert!(streams.contains("\"recording\":false"), "{streams}");
    // The stream plays on across the workers.
    let before = w.nets[0].media(viewer).len();
    let msg = RtmpMessage::new(type_id::VIDEO, s, 1000, vec![0x17, 1, 0, 0, 0, 10]);
    w.nets[1].clients[p].client.send_media(&msg);
    w.pump();
    assert_eq!(w.nets[0].media(viewer).len(), before + 1);

    // A call id naming worker 1 is forwarded; one naming a worker beyond the group is not.
    let on_one = ConnId(1 << 56 | 77);
    let (status, body) = w.http("POST", &format!("/api/v1/calls/{}/end", on_one.0));
    assert_eq!(
        (status, body),
        (202, format!("{{\"ending\":\"{}\"}}", on_one.0))
    );
    let beyond = ConnId(5 << 56 | 77);
    assert_eq!(
        w.http("POST", &format!("/api/v1/calls/{}/end", beyond.0)).0,
        404
    );
}
