//! The gateway inside the node, in memory and virtual time, for the tests and benchmarks
//! that need a call: a [`World`] holds the node (behind a [`MemoryNet`]) and a far-end SIP
//! user agent (bob) that answers every call with PCMU (or, [`World::wideband`], Speex 16 kHz)
//! and echoes every RTP datagram; [`call_as`] connects an RTMP client to `sip/USER` and calls bob through it.
//!
//! Included by path (`#[path = ...] mod gateway_world;`) from core/tests/gateway_node.rs and
//! core/benches/gateway_call.rs; each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::{Input, Node, NodeConfig};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::answer;
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::server::GatewayNodeConfig;
use siprtmp_core::sip::ua::{UaConfig, UaEvent, UserAgent};
use siprtmp_core::testkit::MemoryNet;

pub const FAR_SIP: &str = "10.0.0.2:5060";
pub const FAR_RTP: &str = "10.0.0.2:6000";

pub fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub struct World {
    pub now: Instant,
    pub net: MemoryNet,
    pub far: UserAgent,
    pub far_events: Vec<UaEvent>,
    pub echoed: usize,
    /// A seeded lossy network for datagrams both ways: 5 % dropped, 10 % held back one round
    /// (reordered behind later ones).
    pub lossy: Option<SeededRng>,
    pub held: Vec<(SocketAddr, SocketAddr, Bytes, bool)>,
    /// Every datagram delivered, hashed: equal for equal seeds.
    pub trace: u64,
    /// The codec clients ask for (the client API's token) and bob answers with.
    pub codec: (&'static str, Codec),
}

impl World {
    pub fn new(rtp_ports: (u16, u16)) -> Self {
        let mut w = Self::with_merge(rtp_ports, None);
        w.net.transmit_driven = false;
        w
    }

    /// With `merge_writes` set as given; the client is then written only when the node asks
    /// (as a real driver does), so that holding media shows in its write count.
    pub fn with_merge(rtp_ports: (u16, u16), merge: Option<Duration>) -> Self {
        Self::with_options(rtp_ports, merge, false)
    }

    /// Every call's media on the same four ports (`shared_rtp_ports`).
    pub fn with_shared_ports(rtp_ports: (u16, u16)) -> Self {
        let mut w = Self::with_options(rtp_ports, None, true);
        w.net.transmit_driven = false;
        w
    }

    pub fn with_options(rtp_ports: (u16, u16), merge: Option<Duration>, shared: bool) -> Self {
        let now = Instant::now();
        let mut config = NodeConfig::default();
        config.server.merge_writes = merge;
        config.server.gateway = Some(GatewayNodeConfig {
            bind_ip: "10.0.0.1".parse().unwrap(),
            rtp_ports,
            shared_rtp_ports: shared,
            // Every client of this world comes from 127.0.0.1.
            max_clients_per_ip: 0,
            ..GatewayNodeConfig::default()
        });
        let far = UserAgent::new(
            UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), a(FAR_SIP)),
            3,
        );
        let mut net = MemoryNet::new(Node::new(config, now, 9));
        net.transmit_driven = true;
        Self {
            now,
            net,
            far,
            far_events: Vec::new(),
            echoed: 0,
            lossy: None,
            held: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            codec: ("pcmu", Codec::new(0, "PCMU", 8000, None)),
        }
    }

    /// Calls speak Speex 16 kHz (`wideband`, what Flash sends) instead of PCMU.
    pub fn wideband(mut self) -> Self {
        self.codec = ("wideband", Codec::new(96, "speex", 16000, None));
        self
    }

    /// Whether the network lets this datagram through now; held ones come back next round.
    pub fn network(
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

    pub fn deliver_to_far(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        if to == a(FAR_SIP) {
            self.far.handle_datagram(self.now, from, data);
        } else if to == a(FAR_RTP) {
            self.echoed += 1;
            self.net.udp.send(a(FAR_RTP), from, data);
        }
    }

    /// Moves RTMP bytes, the node's datagrams and the far end's until quiet.
    pub fn pump(&mut self) {
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
            while let Some((from, to, data)) = self.net.udp.outbox.pop_front() {
                moved = true;
                if self.network(from, to, &data, true) {
                    self.deliver_to_far(from, to, data);
                }
            }
            while let Some((to, data)) = self.far.poll_transmit() {
                moved = true;
                if self.network(a(FAR_SIP), to, &data, false) {
                    self.net.udp.send(a(FAR_SIP), to, data);
                }
            }
            while let Some(e) = self.far.poll_event() {
                moved = true;
                if let UaEvent::IncomingCall { call, offer, .. } = &e {
                    // Bob answers at once with the codec and telephone-event, media at FAR_RTP.
                    let offer = SessionDescription::parse(offer.as_ref().unwrap()).unwrap();
                    let caps = LocalCapabilities {
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
                    };
                    let origin = Origin {
                        username: "-".into(),
                        session_id: 1,
                        session_version: 1,
                        nettype: "IN".into(),
                        addrtype: "IP4".into(),
                        address: "10.0.0.2".into(),
                    };
                    let ans = answer(&offer, &caps, &origin).unwrap();
                    self.far.ringing(self.now, *call).unwrap();
                    self.far
                        .answer(self.now, *call, Bytes::from(ans.serialize()))
                        .unwrap();
                }
                self.far_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(500).min(end - self.now);
            self.net.node.handle(self.now, Input::Timeout);
            self.far.handle_timeout(self.now);
            self.pump();
        }
    }

    pub fn commands(&self, c: usize) -> Vec<(String, Vec<Value>)> {
        self.net
            .events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Command(cmd) => Some((cmd.name.clone(), cmd.args.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Connects client `sip/alice`, calls bob (PCMU), and publishes `local` and plays `remote`
/// once accepted; returns the client's index.
pub fn established_call(w: &mut World) -> usize {
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
pub fn call_as(w: &mut World, user: &str) -> usize {
    let c = w.net.connect(w.now, &format!("sip/{user}@10.0.0.1"));
    w.pump();
    assert!(
        w.net.events(c).contains(&ClientEvent::Connected),
        "connect answered once bound"
    );

    let client = &mut w.net.clients[c].client;
    client.create_stream();
    client.create_stream();
    let args = vec![
        Value::string("bob@10.0.0.2:5060"),
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
pub fn open_media(w: &mut World, c: usize) {
    let client = &mut w.net.clients[c].client;
    client.publish(1, "local");
    client.play(2, "remote", -2.0);
}

/// Speex-like audio frame `i` for stream 1, 20 ms apart.
pub fn frame(i: u32) -> RtmpMessage {
    let mut body = vec![0x82];
    body.extend((0..160).map(|j| (i as u8).wrapping_mul(3) ^ j as u8));
    RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
}

/// The payloads the client got back on `remote`.
pub fn echoes(w: &World, c: usize) -> Vec<Bytes> {
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
