//! The gateway inside the node, in memory and virtual time, for the tests and benchmarks that
//! need a call, with the SIP transport as a parameter: a [`World`] holds the node (behind a
//! [`MemoryNet`]) and a far-end SIP user agent (bob) that answers every call with PCMU (or,
//! [`World::wideband`], Speex 16 kHz) and echoes every RTP datagram. Over UDP bob's SIP and the
//! RTP may cross a seeded lossy network; over TCP bob listens for the node's connections (and
//! opens his own to its listener), and so does a Digest [`Registrar`] the node's clients
//! register with. [`call_as`] connects an RTMP client to `sip/USER` and calls bob through it.
//!
//! Part of `support` for the gateway tests, and included by path (`#[path = ...] mod
//! gateway_world;`) from core/benches/gateway_call.rs; each uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::amf::Value;
use siprtmp_core::node::GatewayNodeConfig;
use siprtmp_core::node::{Input, Node, NodeConfig};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::answer;
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::sip::ua::{UaConfig, UaEvent, UserAgent};
use siprtmp_core::sip::Transport;
use siprtmp_core::tcp::StreamId;
use siprtmp_core::testkit::MemoryNet;

#[path = "registrar.rs"]
pub(crate) mod registrar;
use registrar::Registrar;

/// The node's (and its gateway's) address.
pub(crate) const NODE_IP: &str = "10.0.0.1";
/// Bob's SIP address (over TCP, where he listens).
pub(crate) const FAR_SIP: &str = "10.0.0.2:5060";
/// Where bob's own connections to the node come from (SIP over TCP).
pub(crate) const FAR_OUT: &str = "10.0.0.2:40001";
/// Bob's RTP address, which echoes every datagram.
pub(crate) const FAR_RTP: &str = "10.0.0.2:6000";
/// The registrar's address (SIP over TCP).
pub(crate) const REGISTRAR: &str = "10.0.0.3:5060";
/// Where the tests' HTTP client connects from (to the node's HTTP listener, when configured).
pub(crate) const HTTP_CLIENT: &str = "10.0.0.7";
/// A SIP address where nobody listens: a far end that never answers.
pub(crate) const NOBODY: &str = "10.0.0.9:5060";
/// The gateway's RTP range unless a test needs another (virtual: no socket is bound). With
/// shared ports, its first four are the shared ones.
pub(crate) const RTP_PORTS: (u16, u16) = (20000, 20099);

pub(crate) fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) struct World {
    pub now: Instant,
    pub net: MemoryNet,
    /// SIP between the node and bob (and the registrar) goes over this.
    pub transport: Transport,
    pub far: UserAgent,
    pub far_events: Vec<UaEvent>,
    /// Bob answers incoming calls at once (else he lets them ring).
    pub far_answers: bool,
    /// What the node sent bob on each TCP connection, not yet a whole message.
    far_inbox: HashMap<StreamId, BytesMut>,
    /// The registrar listening over TCP.
    pub registrar: Option<Registrar>,
    pub echoed: usize,
    /// Where the node sent datagrams that nobody here listens for (a far end that never
    /// answers, such as [`NOBODY`]), in order.
    pub unheard: Vec<SocketAddr>,
    /// A seeded lossy network for datagrams both ways: 5 % dropped, 10 % held back one round
    /// (reordered behind later ones).
    pub lossy: Option<SeededRng>,
    pub held: Vec<(SocketAddr, SocketAddr, Bytes, bool)>,
    /// Every datagram delivered, hashed: equal for equal seeds.
    pub trace: u64,
    /// The first line of every SIP message the node sent over TCP, with its stream.
    pub wire: Vec<(StreamId, String)>,
    /// The codec clients ask for (the client API's token) and bob answers with.
    pub codec: (&'static str, Codec),
    /// What the node answered on each HTTP connection of [`World::http_get`].
    http_inbox: HashMap<StreamId, Vec<u8>>,
    /// Peers that take what the node sends them and never answer (a TLS server that does
    /// not finish its handshake), and what each connection to them got.
    pub silent: Vec<SocketAddr>,
    pub silent_inbox: HashMap<StreamId, Vec<u8>>,
    /// The node's address of the last RTP datagram it sent bob.
    pub node_rtp: Option<SocketAddr>,
}

impl World {
    /// SIP over UDP, the gateway's RTP ports [`RTP_PORTS`].
    pub(crate) fn new() -> Self {
        Self::over(Transport::Udp)
    }

    /// SIP over `transport`; over TCP, the node's clients register with the registrar.
    pub(crate) fn over(transport: Transport) -> Self {
        Self::configured(transport, RTP_PORTS, |_| {})
    }

    /// SIP over UDP, the gateway's RTP ports from `rtp_ports` (for the tests of the range).
    pub(crate) fn with_ports(rtp_ports: (u16, u16)) -> Self {
        Self::configured(Transport::Udp, rtp_ports, |_| {})
    }

    /// With `gateway_merge_writes` set as given; the client is then written only when the node asks
    /// (as a real driver does), so that holding media shows in its write count.
    pub(crate) fn with_merge(merge: Option<Duration>) -> Self {
        Self::with_options(RTP_PORTS, merge, false)
    }

    /// Every call's media on the same four ports (`shared_rtp_ports`), the first of
    /// [`RTP_PORTS`].
    pub(crate) fn with_shared_ports() -> Self {
        Self::configured(Transport::Udp, RTP_PORTS, |c| {
            gateway(c).shared_rtp_ports = true;
        })
    }

    /// SIP over UDP, merged writes and shared ports as given, written only when the node asks.
    pub(crate) fn with_options(
        rtp_ports: (u16, u16),
        merge: Option<Duration>,
        shared: bool,
    ) -> Self {
        let mut w = Self::configured(Transport::Udp, rtp_ports, |c| {
            c.server.gateway_merge_writes = merge;
            gateway(c).shared_rtp_ports = shared;
        });
        w.net.transmit_driven = true;
        w
    }

    /// SIP over `transport`, the gateway's RTP ports from `rtp_ports`, the node's configuration
    /// then adjusted by `configure` (see [`gateway`]).
    pub(crate) fn configured(
        transport: Transport,
        rtp_ports: (u16, u16),
        configure: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let now = Instant::now();
        let mut gateway = GatewayNodeConfig {
            bind_ip: NODE_IP.parse().unwrap(),
            rtp_ports,
            // Every client of this world comes from 127.0.0.1.
            max_clients_per_ip: 0,
            ..GatewayNodeConfig::default()
        };
        gateway.session.transport = transport;
        let mut far = UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), a(FAR_SIP));
        far.transport = transport;
        let mut registrar = None;
        if transport == Transport::Tcp {
            gateway.session.registrar = Some(a(REGISTRAR));
            registrar = Some(Registrar::new(a(REGISTRAR)));
        }
        let mut config = NodeConfig::default();
        config.server.gateway = Some(gateway);
        // Nor does the server limit them (the gateway bench holds 300 calls).
        config.server.max_connections_per_ip = 0;
        configure(&mut config);
        let mut net = MemoryNet::new(Node::new(config, now, 9));
        if transport == Transport::Tcp {
            net.tcp.listen(a(FAR_SIP));
            net.tcp.listen(a(REGISTRAR));
        }
        Self {
            now,
            net,
            transport,
            far: UserAgent::new(far, 3),
            far_events: Vec::new(),
            far_answers: true,
            far_inbox: HashMap::new(),
            registrar,
            echoed: 0,
            unheard: Vec::new(),
            lossy: None,
            held: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            wire: Vec::new(),
            codec: ("pcmu", Codec::new(0, "PCMU", 8000, None)),
            http_inbox: HashMap::new(),
            silent: Vec::new(),
            silent_inbox: HashMap::new(),
            node_rtp: None,
        }
    }

    /// `GET path` on the node's HTTP listener (configured by the test); the status and body.
    pub(crate) fn http_get(&mut self, path: &str) -> (u16, String) {
        self.http("GET", path)
    }

    /// `method path` on the node's HTTP listener (configured by the test); the status and
    /// body.
    pub(crate) fn http(&mut self, method: &str, path: &str) -> (u16, String) {
        self.pump(); // the listen, at the first request
        let listen = self.net.tcp.node_listeners()[0];
        let from = SocketAddr::new(
            HTTP_CLIENT.parse().unwrap(),
            41000 + self.http_inbox.len() as u16,
        );
        let stream = self.net.tcp.connect(from, listen).unwrap();
        self.pump();
        let request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
        self.net.tcp.send(stream, request.as_bytes());
        self.pump();
        let answer =
            String::from_utf8(self.http_inbox.get(&stream).cloned().unwrap_or_default()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    /// Calls speak Speex 16 kHz (`wideband`, what Flash sends) instead of PCMU.
    pub(crate) fn wideband(mut self) -> Self {
        self.codec = ("wideband", Codec::new(96, "speex", 16000, None));
        self
    }

    /// Whether the network lets this datagram through now; held ones come back next round.
    pub(crate) fn network(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &Bytes,
        to_far: bool,
    ) -> bool {
        for b in data.iter().chain(from.port().to_be_bytes().iter()) {
            self.trace = (self.trace ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let Some(rng) = &mut self.lossy else {
            return true;
        };
        match rng.below(100) {
            0..=4 => false,
            5..=14 => {
                self.held.push((from, to, data.clone(), to_far));
                false
            }
            _ => true,
        }
    }

    pub(crate) fn deliver_to_far(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        if to == a(FAR_SIP) {
            self.far.handle_datagram(self.now, from, data);
        } else if to == a(FAR_RTP) {
            self.echoed += 1;
            self.node_rtp = Some(from);
            self.net.udp.send(a(FAR_RTP), from, data);
        } else {
            self.unheard.push(to);
        }
    }

    /// Bytes the node sent on TCP connection `stream`: to the registrar or to bob.
    fn deliver_on_stream(&mut self, stream: StreamId, data: Bytes) {
        let line = String::from_utf8_lossy(&data)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        self.wire.push((stream, line));
        let Some((node_end, peer)) = self.net.tcp.addresses(stream) else {
            return;
        };
        if self.silent.contains(&peer) {
            self.silent_inbox
                .entry(stream)
                .or_default()
                .extend_from_slice(&data);
            return;
        }
        if peer.ip().to_string() == HTTP_CLIENT {
            self.http_inbox
                .entry(stream)
                .or_default()
                .extend_from_slice(&data);
            return;
        }
        match &mut self.registrar {
            Some(registrar) if peer == a(REGISTRAR) => {
                registrar.received(self.now, &mut self.net, stream, node_end, &data)
            }
            _ => {
                let inbox = self.far_inbox.entry(stream).or_default();
                inbox.extend_from_slice(&data);
                assert!(self.far.handle_stream(self.now, node_end, inbox));
            }
        }
    }

    /// Bob's TCP connections with the node: the ones the node opened to him and his own.
    pub(crate) fn far_streams(&self) -> Vec<StreamId> {
        self.net
            .tcp
            .open_streams()
            .into_iter()
            .filter(|s| {
                self.net
                    .tcp
                    .addresses(*s)
                    .is_some_and(|(_, peer)| peer.ip() == a(FAR_SIP).ip())
            })
            .collect()
    }

    /// The connection bob sends a message for `to` on: the one whose node end is `to`
    /// (responses), else, for the node's listener (a client's Contact), an open one (as sipp
    /// and most proxies reuse connections), else a new connection to the listener.
    fn far_route(&mut self, to: SocketAddr) -> StreamId {
        let streams = self.far_streams();
        let at_to = streams.iter().find(|s| {
            self.net
                .tcp
                .addresses(**s)
                .is_some_and(|(node, _)| node == to)
        });
        if let Some(s) = at_to.or(streams.first()) {
            return *s;
        }
        self.net
            .tcp
            .connect(a(FAR_OUT), to)
            .expect("the node listens there")
    }

    /// What bob answers (or offers) with: the world's codec and telephone-event, media at
    /// [`FAR_RTP`].
    pub(crate) fn far_capabilities(&self) -> LocalCapabilities {
        LocalCapabilities {
            address: a(FAR_RTP).ip(),
            session_name: "bob".into(),
            media: vec![MediaCapability::new(
                "audio",
                a(FAR_RTP).port(),
                vec![
                    self.codec.1.clone(),
                    Codec::new(101, "telephone-event", 8000, None),
                ],
            )],
        }
    }

    /// Moves RTMP bytes, the node's datagrams and connections' bytes, and bob's, until quiet.
    pub(crate) fn pump(&mut self) {
        for _ in 0..1000 {
            self.net.pump(self.now);
            let mut moved = false;
            // Datagrams held back last round arrive now, behind newer ones.
            for (from, to, data, to_far) in std::mem::take(&mut self.held) {
                moved = true;
                if to_far {
                    self.deliver_to_far(from, to, data);
                } else {
                    self.net.udp.send(from, to, data);
                }
            }
            while let Some((stream, data)) = self.net.tcp.outbox.pop_front() {
                moved = true;
                self.deliver_on_stream(stream, data);
            }
            while let Some((from, to, data)) = self.net.udp.outbox.pop_front() {
                moved = true;
                if self.network(from, to, &data, true) {
                    self.deliver_to_far(from, to, data);
                }
            }
            while let Some((to, data)) = self.far.poll_transmit() {
                moved = true;
                if self.transport == Transport::Tcp {
                    let stream = self.far_route(to);
                    self.net.tcp.send(stream, &data);
                } else if self.network(a(FAR_SIP), to, &data, false) {
                    self.net.udp.send(a(FAR_SIP), to, data);
                }
            }
            while let Some(e) = self.far.poll_event() {
                moved = true;
                if let UaEvent::IncomingCall { call, offer, .. } = &e {
                    self.far.ringing(self.now, *call).unwrap();
                    if self.far_answers {
                        let offer = SessionDescription::parse(offer.as_ref().unwrap()).unwrap();
                        let ans = answer(&offer, &self.far_capabilities(), &far_origin()).unwrap();
                        self.far
                            .answer(self.now, *call, Bytes::from(ans.serialize()))
                            .unwrap();
                    }
                }
                self.far_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    /// Moves virtual time on by `by`, half a second at a time, firing every timer.
    pub(crate) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(500).min(end - self.now);
            self.net.node.handle(self.now, Input::Timeout);
            self.far.handle_timeout(self.now);
            if let Some(registrar) = &mut self.registrar {
                registrar.handle_timeout(self.now);
            }
            self.pump();
        }
    }

    /// A client of `sip/USER@10.0.0.1`, with a password (it registers first) or without,
    /// pumped until its connect is answered.
    pub(crate) fn client(&mut self, user: &str, password: Option<&str>) -> usize {
        let c = self.net.connect(self.now, &format!("sip/{user}@{NODE_IP}"));
        if let Some(p) = password {
            self.net.clients[c]
                .client
                .set_connect_args(vec![Value::string(user), Value::string(p)]);
        }
        self.pump();
        c
    }

    /// Client `c` invites `dest` with PCMU.
    pub(crate) fn invite(&mut self, c: usize, dest: &str) {
        let args = vec![Value::string(dest), Value::string("pcmu")];
        self.net.clients[c].client.call(0, "invite", args);
        self.pump();
    }

    pub(crate) fn commands(&self, c: usize) -> Vec<(String, Vec<Value>)> {
        self.net
            .events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Command(cmd) => Some((cmd.name.clone(), cmd.args.clone())),
                _ => None,
            })
            .collect()
    }

    /// The text of client `c`'s last `name` callback's first argument.
    pub(crate) fn callback(&self, c: usize, name: &str) -> Option<String> {
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

    /// Every REGISTER the registrar saw: (connection, request text, had valid credentials).
    pub(crate) fn registers(&self) -> &[(StreamId, String, bool)] {
        self.registrar.as_ref().map_or(&[], |r| &r.seen)
    }

    /// The description of the answer to client `c`'s connect.
    pub(crate) fn connect_description(&self, c: usize) -> String {
        let (_, info) = self.net.clients[c].client.connect_info().expect("answered");
        info.get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// Client `c`, in a call, creates its two streams, publishes `local`, plays `remote` and
    /// sends `n` audio frames 20 ms apart; how many came back on `remote`, byte-identical.
    pub(crate) fn talk(&mut self, c: usize, n: u32) -> usize {
        let client = &mut self.net.clients[c].client;
        client.create_stream();
        client.create_stream();
        self.pump();
        open_media(self, c);
        self.pump();
        for i in 0..n {
            self.now += Duration::from_millis(20);
            self.net.clients[c].client.send_media(&frame(i));
            self.pump();
        }
        let back = echoes(self, c);
        (0..n)
            .zip(&back)
            .filter(|(i, got)| **got == frame(*i).payload)
            .count()
    }
}

/// The gateway's part of a node's configuration.
pub(crate) fn gateway(config: &mut NodeConfig) -> &mut GatewayNodeConfig {
    config.server.gateway.as_mut().expect("a gateway node")
}

/// Bob's SDP origin.
pub(crate) fn far_origin() -> Origin {
    Origin {
        username: "-".into(),
        session_id: 1,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.2".into(),
    }
}

/// Connects client `sip/alice`, calls bob (PCMU), and publishes `local` and plays `remote`
/// once accepted; returns the client's index.
pub(crate) fn established_call(w: &mut World) -> usize {
    let c = call_as(w, "alice");
    assert_eq!(
        w.net.udp.open_sockets(),
        5,
        "SIP plus RTP/RTCP for audio and video"
    );
    c
}

/// Connects client `sip/USER`, calls bob (the world's codec), and publishes `local` and plays
/// `remote` once accepted; returns the client's index.
pub(crate) fn call_as(w: &mut World, user: &str) -> usize {
    let c = w.client(user, None);
    assert!(
        w.net.events(c).contains(&ClientEvent::Connected),
        "connect answered once bound"
    );

    let client = &mut w.net.clients[c].client;
    client.create_stream();
    client.create_stream();
    let args = vec![
        Value::string(format!("bob@{FAR_SIP}")),
        Value::string(w.codec.0),
        Value::string("dtmf"),
    ];
    client.call(0, "invite", args);
    w.pump();
    let names: Vec<String> = w.commands(c).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"ringing".to_string()), "{names:?}");
    let accepted = w
        .commands(c)
        .into_iter()
        .find(|(n, _)| n == "accepted")
        .expect("accepted");
    assert_eq!(accepted.1, vec![Value::string(w.codec.0), Value::Null]);

    open_media(w, c);
    w.pump();
    c
}

/// Client `c` publishes `local` (stream 1) and plays `remote` (stream 2).
pub(crate) fn open_media(w: &mut World, c: usize) {
    let client = &mut w.net.clients[c].client;
    client.publish(1, "local");
    client.play(2, "remote", -2.0);
}

/// Speex-like audio frame `i` for stream 1, 20 ms apart.
pub(crate) fn frame(i: u32) -> RtmpMessage {
    let mut body = vec![0x82];
    body.extend((0..160).map(|j| (i as u8).wrapping_mul(3) ^ j as u8));
    RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
}

/// The payloads the client got back on `remote`.
pub(crate) fn echoes(w: &World, c: usize) -> Vec<Bytes> {
    w.net
        .events(c)
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) if m.type_id == type_id::AUDIO && m.stream_id == 2 => {
                Some(m.payload.clone())
            }
            _ => None,
        })
        .collect()
}
