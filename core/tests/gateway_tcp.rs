//! The gateway with SIP over TCP, in memory and virtual time: a client registers (Digest)
//! with a registrar over a TCP connection the node opens, calls a far-end user agent over
//! another, hears its media echoed over RTP/UDP, and is hung up on by the far end over the same
//! connection; the far end calls a client directly on its listener; a refused or broken
//! connection reaches the client as a clear refusal at once, and nothing else is harmed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::amf::Value;
use siprtmp_core::node::{Input, Node, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::{answer, create_offer};
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::server::GatewayNodeConfig;
use siprtmp_core::sip::digest::{self, Algorithm};
use siprtmp_core::sip::{
    make_response, sent_by_of, Authorization, CallId, Challenge, Destination, Method, ParseLimits,
    SipMessage, StreamFramer, TransactionConfig, TransactionEvent, TransactionLayer, Transport,
    UaConfig, UaEvent, UserAgent,
};
use siprtmp_core::tcp::StreamId;
use siprtmp_core::testkit::MemoryNet;

const NODE_IP: &str = "10.0.0.1";
const BOB: &str = "10.0.0.2:5060";
/// Where Bob's own connections to the node come from.
const BOB_OUT: &str = "10.0.0.2:40001";
const FAR_RTP: &str = "10.0.0.2:6000";
const REGISTRAR: &str = "10.0.0.3:5060";
const PASSWORD: &str = "s3cret";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A registrar over TCP: 401 with a Digest challenge to a REGISTER without valid
/// credentials, 200 to one with.
struct Registrar {
    layer: TransactionLayer,
    framers: HashMap<StreamId, (StreamFramer, BytesMut)>,
    /// Every REGISTER: (stream, request text, had valid credentials).
    seen: Vec<(StreamId, String, bool)>,
}

impl Registrar {
    fn new() -> Self {
        Self {
            layer: TransactionLayer::new(TransactionConfig::new(sent_by_of(a(REGISTRAR))), 5),
            framers: HashMap::new(),
            seen: Vec::new(),
        }
    }

    /// Bytes from the node on `stream` (the node's end at `source`); responses go back on it.
    fn received(
        &mut self,
        now: Instant,
        net: &mut MemoryNet,
        stream: StreamId,
        source: SocketAddr,
        data: &[u8],
    ) {
        let (framer, buf) = self
            .framers
            .entry(stream)
            .or_insert_with(|| (StreamFramer::new(ParseLimits::default()), BytesMut::new()));
        buf.extend_from_slice(data);
        let mut messages = Vec::new();
        while let Some(msg) = framer.push(buf).expect("SIP from the node") {
            messages.push(msg);
        }
        for msg in messages {
            self.layer.handle_incoming(now, msg, Transport::Tcp, source);
        }
        while let Some(ev) = self.layer.poll_event() {
            let TransactionEvent::Request { id, request, .. } = ev else {
                continue;
            };
            assert_eq!(request.method, Method::Register);
            let ok = request
                .headers
                .get("Authorization")
                .and_then(|v| Authorization::parse(v).ok())
                .is_some_and(|auth| digest::verify(&auth, &request.method, PASSWORD));
            let text = SipMessage::Request(request.clone()).to_bytes();
            self.seen
                .push((stream, String::from_utf8_lossy(&text).into_owned(), ok));
            let response = if ok {
                let mut r = make_response(&request, 200, "OK", Some("reg"));
                let expires = request.headers.expires().unwrap().unwrap_or(3600);
                let contact = request.headers.get("Contact").unwrap().to_string();
                r.headers
                    .push("Contact", &format!("{contact};expires={expires}"));
                r
            } else {
                let mut r = make_response(&request, 401, "Unauthorized", Some("reg"));
                let c = Challenge::new("tcp.test", "n0nce", Algorithm::Md5);
                r.headers.push("WWW-Authenticate", &c.to_string());
                r
            };
            self.layer.send_response(now, id, response).unwrap();
        }
        while let Some(t) = self.layer.poll_transmit() {
            assert_eq!(
                t.destination,
                Destination::Addr(source),
                "back where it came from"
            );
            net.tcp.send(stream, &t.bytes);
        }
    }
}

struct World {
    now: Instant,
    net: MemoryNet,
    bob: UserAgent,
    bob_events: Vec<UaEvent>,
    /// Bob answers incoming calls at once (else he lets them ring).
    bob_answers: bool,
    bob_inbox: HashMap<StreamId, BytesMut>,
    registrar: Registrar,
    echoed: usize,
    /// The first line of every SIP message the node sent, with its stream.
    wire: Vec<(StreamId, String)>,
}

fn bob_caps() -> LocalCapabilities {
    LocalCapabilities {
        address: a(FAR_RTP).ip(),
        session_name: "bob".into(),
        media: vec![MediaCapability::new(
            "audio",
            a(FAR_RTP).port(),
            vec![
                Codec::new(0, "PCMU", 8000, None),
                Codec::new(101, "telephone-event", 8000, None),
            ],
        )],
    }
}

fn bob_origin() -> Origin {
    Origin {
        username: "-".into(),
        session_id: 1,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.2".into(),
    }
}

impl World {
    fn new(rtp_ports: (u16, u16)) -> Self {
        let now = Instant::now();
        let mut config = NodeConfig::default();
        let mut gateway = GatewayNodeConfig {
            bind_ip: NODE_IP.parse().unwrap(),
            rtp_ports,
            ..GatewayNodeConfig::default()
        };
        gateway.session.transport = Transport::Tcp;
        gateway.session.registrar = Some(a(REGISTRAR));
        config.server.gateway = Some(gateway);
        let mut bob = UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), a(BOB));
        bob.transport = Transport::Tcp;
        let mut net = MemoryNet::new(Node::new(config, now, 9));
        net.tcp.listen(a(BOB));
        net.tcp.listen(a(REGISTRAR));
        Self {
            now,
            net,
            bob: UserAgent::new(bob, 3),
            bob_events: Vec::new(),
            bob_answers: true,
            bob_inbox: HashMap::new(),
            registrar: Registrar::new(),
            echoed: 0,
            wire: Vec::new(),
        }
    }

    /// Bob's streams to the node: the ones the node opened to him and the ones he opened.
    fn bob_streams(&self) -> Vec<StreamId> {
        self.net
            .tcp
            .open_streams()
            .into_iter()
            .filter(|s| {
                self.net
                    .tcp
                    .addresses(*s)
                    .is_some_and(|(_, peer)| peer.ip() == a(BOB).ip())
            })
            .collect()
    }

    /// The stream Bob sends a message for `to` on: the one whose node end is `to` (responses),
    /// else, for the node's listener (a client's Contact), an open one (as sipp and most
    /// proxies reuse connections), else a new connection to the listener.
    fn bob_route(&mut self, to: SocketAddr) -> StreamId {
        let streams = self.bob_streams();
        if let Some(s) = streams.iter().find(|s| {
            self.net
                .tcp
                .addresses(**s)
                .is_some_and(|(node, _)| node == to)
        }) {
            return *s;
        }
        if let Some(s) = streams.first() {
            return *s;
        }
        self.net
            .tcp
            .connect(a(BOB_OUT), to)
            .expect("the node listens there")
    }

    fn pump(&mut self) {
        for _ in 0..1000 {
            self.net.pump(self.now);
            let mut moved = false;
            while let Some((stream, data)) = self.net.tcp.outbox.pop_front() {
                moved = true;
                let line = String::from_utf8_lossy(&data)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                self.wire.push((stream, line));
                let Some((node_end, peer)) = self.net.tcp.addresses(stream) else {
                    continue;
                };
                if peer == a(REGISTRAR) {
                    self.registrar
                        .received(self.now, &mut self.net, stream, node_end, &data);
                } else {
                    let inbox = self.bob_inbox.entry(stream).or_default();
                    inbox.extend_from_slice(&data);
                    assert!(self.bob.handle_stream(self.now, node_end, inbox));
                }
            }
            while let Some((from, to, data)) = self.net.udp.outbox.pop_front() {
                moved = true;
                if to == a(FAR_RTP) {
                    self.echoed += 1;
                    self.net.udp.send(a(FAR_RTP), from, data);
                }
            }
            while let Some((to, data)) = self.bob.poll_transmit() {
                moved = true;
                let stream = self.bob_route(to);
                self.net.tcp.send(stream, &data);
            }
            while let Some(e) = self.bob.poll_event() {
                moved = true;
                if let UaEvent::IncomingCall { call, offer, .. } = &e {
                    self.bob.ringing(self.now, *call).unwrap();
                    if self.bob_answers {
                        let offer = SessionDescription::parse(offer.as_ref().unwrap()).unwrap();
                        let ans = answer(&offer, &bob_caps(), &bob_origin()).unwrap();
                        self.bob
                            .answer(self.now, *call, Bytes::from(ans.serialize()))
                            .unwrap();
                    }
                }
                self.bob_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(500).min(end - self.now);
            self.net.node.handle(self.now, Input::Timeout);
            self.bob.handle_timeout(self.now);
            self.registrar.layer.handle_timeout(self.now);
            self.pump();
        }
    }

    /// A client without a password, and Bob's INVITE to it on its listener (pumped through).
    fn bob_calls_a_client(&mut self) -> (usize, CallId) {
        let c = self.client(None);
        assert!(self.net.events(c).contains(&ClientEvent::Connected));
        let listener = self.net.tcp.node_listeners()[0];
        let offer = create_offer(&bob_caps(), &bob_origin());
        let target = format!("sip:alice@{listener};transport=tcp")
            .parse()
            .unwrap();
        let call = self
            .bob
            .invite(self.now, target, Bytes::from(offer.serialize()))
            .unwrap();
        self.pump();
        (c, call)
    }

    /// A client for `alice@10.0.0.1`, with a password (registers first) or without.
    fn client(&mut self, password: Option<&str>) -> usize {
        let c = self.net.connect(self.now, "sip/alice@10.0.0.1");
        if let Some(p) = password {
            self.net.clients[c]
                .client
                .set_connect_args(vec![Value::string("alice"), Value::string(p)]);
        }
        self.pump();
        c
    }

    fn commands(&self, c: usize) -> Vec<(String, Vec<Value>)> {
        self.net
            .events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Command(cmd) => Some((cmd.name.clone(), cmd.args.clone())),
                _ => None,
            })
            .collect()
    }

    /// The text of the client's last `name` callback's first argument.
    fn callback(&self, c: usize, name: &str) -> Option<String> {
        self.commands(c)
            .into_iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, args)| {
                args.first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
    }

    fn invite(&mut self, c: usize, dest: &str) {
        let client = &mut self.net.clients[c].client;
        client.call(
            0,
            "invite",
            vec![Value::string(dest), Value::string("pcmu")],
        );
        self.pump();
    }

    /// Publishes on `local`, plays `remote`, sends `n` audio frames; returns how many came
    /// back on `remote`, byte-identical.
    fn media(&mut self, c: usize, n: u32) -> usize {
        let client = &mut self.net.clients[c].client;
        client.create_stream();
        client.create_stream();
        self.pump();
        let client = &mut self.net.clients[c].client;
        client.publish(1, "local");
        client.play(2, "remote", -2.0);
        self.pump();
        let frames: Vec<RtmpMessage> = (0..n)
            .map(|i| {
                let mut body = vec![0x82];
                body.extend((0..160).map(|j| (i as u8).wrapping_mul(7) ^ j as u8));
                RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
            })
            .collect();
        for f in &frames {
            self.now += Duration::from_millis(20);
            self.net.clients[c].client.send_media(f);
            self.pump();
        }
        let back: Vec<Bytes> = self
            .net
            .events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m) if m.type_id == type_id::AUDIO && m.stream_id == 2 => {
                    Some(m.payload.clone())
                }
                _ => None,
            })
            .collect();
        frames
            .iter()
            .zip(&back)
            .filter(|(sent, got)| **got == sent.payload)
            .count()
    }

    fn connect_description(&self, c: usize) -> String {
        let (_, info) = self.net.clients[c].client.connect_info().expect("answered");
        info.get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

#[test]
fn a_registered_client_calls_over_tcp_and_the_far_ends_bye_comes_on_the_same_connection() {
    let mut w = World::new((20000, 20099));
    let c = w.client(Some(PASSWORD));
    assert!(
        w.net.events(c).contains(&ClientEvent::Connected),
        "{:?} {}",
        w.net.events(c),
        w.connect_description(c)
    );
    // The REGISTER was challenged and retried with credentials on one connection, which
    // says TCP in Via and Contact, at the client's listening address.
    let listener = w.net.tcp.node_listeners()[0];
    assert_eq!(listener.ip().to_string(), NODE_IP);
    let seen = &w.registrar.seen;
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].2, seen[1].2), (false, true));
    assert_eq!(seen[0].0, seen[1].0, "the retry reused the connection");
    let register = &seen[1].1;
    assert!(
        register.contains(&format!("Via: SIP/2.0/TCP {listener};")),
        "{register}"
    );
    assert!(
        register.contains(&format!("<sip:alice@{listener};transport=tcp>")),
        "{register}"
    );
    assert_eq!(
        w.net.udp.open_sockets(),
        0,
        "SIP is on TCP, and RTP ports come with a call"
    );

    w.invite(c, "bob@10.0.0.2:5060");
    assert_eq!(w.net.udp.open_sockets(), 4, "the call's RTP/RTCP");
    let names: Vec<String> = w.commands(c).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"ringing".into()), "{names:?}");
    assert!(names.contains(&"accepted".into()), "{names:?}");
    let to_bob = w.bob_streams();
    assert_eq!(to_bob.len(), 1, "one connection to Bob");
    assert!(!to_bob[0].is_accepted(), "opened by the node");

    assert_eq!(w.media(c, 30), 30, "every frame echoed back over RTP");
    assert_eq!(w.echoed, 30);

    // Bob hangs up: his BYE (to the client's Contact) comes on the connection he has.
    let call = w
        .bob_events
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .unwrap();
    w.bob.hangup(w.now, call).unwrap();
    w.pump();
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "byed"),
        "{:?}",
        w.commands(c)
    );
    assert_eq!(w.bob_streams(), to_bob, "no other connection was opened");
    assert!(
        w.wire
            .iter()
            .any(|(s, line)| *s == to_bob[0] && line.starts_with("SIP/2.0 200")),
        "the node answered the BYE on it"
    );

    // The client leaves: un-REGISTER on the registrar's connection; then everything closes.
    let conn = w.net.clients[c].conn;
    w.net.node.handle(w.now, Input::Closed { conn });
    w.pump();
    let last = w.registrar.seen.last().unwrap();
    assert!(
        last.1.contains("Expires: 0") || last.1.contains("expires=0"),
        "{}",
        last.1
    );
    w.advance(Duration::from_secs(40));
    assert_eq!(w.net.tcp.open_streams(), vec![], "no connection leaked");
    assert_eq!(w.net.tcp.node_listeners(), vec![], "no listener leaked");
    assert_eq!(w.net.udp.open_sockets(), 0);
}

#[test]
fn the_far_end_calls_a_client_directly_on_its_listener() {
    let mut w = World::new((20100, 20199));
    let (c, call) = w.bob_calls_a_client();
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "invited"),
        "{:?}",
        w.commands(c)
    );
    let from_bob = w.bob_streams();
    assert_eq!(from_bob.len(), 1);
    assert!(from_bob[0].is_accepted(), "Bob connected to the listener");

    w.net.clients[c]
        .client
        .call(0, "accept", vec![Value::string("pcmu")]);
    w.pump();
    assert!(w
        .bob_events
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { call: x, .. } if *x == call)));
    assert_eq!(w.media(c, 10), 10);

    // The client hangs up: the BYE goes to Bob's Contact, on a connection of its own.
    w.net.clients[c].client.call(0, "bye", vec![]);
    w.pump();
    assert!(w
        .bob_events
        .iter()
        .any(|e| matches!(e, UaEvent::Ended { call: x } if *x == call)));
}

/// RFC 3261 18.2.2: when the connection a request came in on is gone by the time the answer
/// is ready, the answer goes on a new connection to the request's Via (the address it came
/// from, the port in its sent-by), not to the closed connection's ephemeral port.
#[test]
fn an_answer_whose_connection_broke_goes_to_the_via_on_a_new_connection() {
    let mut w = World::new((20300, 20399));
    let (c, call) = w.bob_calls_a_client();
    assert!(w.commands(c).iter().any(|(n, _)| n == "invited"));
    // Bob's connection (from his ephemeral port) breaks while the client's phone rings.
    let from_bob = w.bob_streams();
    assert_eq!(from_bob.len(), 1);
    w.net
        .tcp
        .close(from_bob[0], Some("Connection reset by peer"));
    w.pump();

    w.net.clients[c]
        .client
        .call(0, "accept", vec![Value::string("pcmu")]);
    w.pump();
    let now_open = w.bob_streams();
    assert_eq!(now_open.len(), 1, "one new connection: {:?}", w.wire);
    let (_, peer) = w.net.tcp.addresses(now_open[0]).unwrap();
    assert_eq!(
        peer,
        a(BOB),
        "to Bob's sent-by (his listener), not {}",
        a(BOB_OUT)
    );
    assert!(
        w.bob_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { call: x, .. } if *x == call)),
        "Bob got the 200: {:?}",
        w.bob_events
    );
    assert_eq!(w.media(c, 10), 10, "the call is up");
}

#[test]
fn a_refused_or_broken_connection_reaches_the_client_as_a_clear_refusal() {
    // The registrar refuses the connection: the connect is rejected with why.
    let mut w = World::new((20200, 20299));
    w.net.tcp.listening.remove(&a(REGISTRAR));
    let c = w.client(Some(PASSWORD));
    assert_eq!(
        w.net.events(c).last(),
        Some(&ClientEvent::ConnectRejected(
            "NetConnection.Connect.Rejected".into()
        ))
    );
    let why = w.connect_description(c);
    assert!(
        why.starts_with("503") && why.contains("Connection refused") && why.contains(REGISTRAR),
        "{why}"
    );
    assert_eq!(w.net.tcp.open_streams(), vec![]);
    assert_eq!(w.net.tcp.node_listeners(), vec![]);
    assert_eq!(w.net.udp.open_sockets(), 0);

    // A call to a far end that refuses: `rejected` at once, and the client can call again.
    let c = w.client(None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    w.invite(c, "carol@10.0.0.9:5060");
    let rejected = w.callback(c, "rejected").expect("rejected");
    assert!(
        rejected.starts_with("503") && rejected.contains("Connection refused"),
        "{rejected}"
    );
    // Bob lets it ring, then his connection breaks: `rejected` at once, not after Timer B.
    w.bob_answers = false;
    w.invite(c, "bob@10.0.0.2:5060");
    assert_eq!(w.callback(c, "ringing").as_deref(), Some("180 Ringing"));
    let stream = w.bob_streams()[0];
    w.net.tcp.close(stream, Some("Connection reset by peer"));
    w.pump();
    let rejected = w.callback(c, "rejected").unwrap();
    assert!(rejected.contains("Connection reset by peer"), "{rejected}");
    // Nothing else was harmed: the next call opens a new connection and goes through.
    w.bob_answers = true;
    w.invite(c, "bob@10.0.0.2:5060");
    assert!(
        w.commands(c).iter().any(|(n, _)| n == "accepted"),
        "{:?}",
        w.commands(c)
    );
    assert_ne!(w.bob_streams(), vec![stream]);
}
