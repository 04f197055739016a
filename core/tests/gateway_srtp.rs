//! SRTP with SDES keys on a gateway client's calls, in memory and virtual time: the gateway
//! session on one side, a SIP user agent on the other whose media is SRTP made with the
//! crate's own `srtp` module (the interop proof against a real phone is in the workspace's
//! `tests/tests/gateway_srtp.rs`). The policy (`off`, `offer`, `require`, keys only over TLS
//! unless allowed) and the media path: protected both ways, forged and replayed packets
//! dropped before they reach the client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::gateway::call_session::{
    GatewayConfig, GatewayOutput, GatewaySession, MediaPorts, SessionSockets,
};
use siprtmp_core::gateway::client_api::{ClientCall, ClientCallback, ConnectRequest};
use siprtmp_core::gateway::codecs::CodecToken;
use siprtmp_core::gateway::media_bridge::{Leg, OutgoingRtp};
use siprtmp_core::gateway::srtp_policy::SrtpMode;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::rtp::RtpPacket;
use siprtmp_core::sdp::offer_answer::{answer, create_offer};
use siprtmp_core::sdp::sdes::{answer_secure, negotiated_keys, secure_offer};
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::sip::ua::{CallId, UaConfig, UaEvent, UserAgent};
use siprtmp_core::sip::Uri;
use siprtmp_core::srtp::{KeySecret, SrtpContext, SrtpError};

const GW_SIP: &str = "10.0.0.1:5060";
const FAR_SIP: &str = "10.0.0.2:5060";
const FAR_RTP: &str = "10.0.0.2:6000";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn far_caps() -> LocalCapabilities {
    LocalCapabilities {
        address: a(FAR_RTP).ip(),
        session_name: "far".into(),
        media: vec![MediaCapability::new(
            "audio",
            a(FAR_RTP).port(),
            vec![Codec::new(0, "PCMU", 8000, None)],
        )],
    }
}

fn origin() -> Origin {
    Origin {
        username: "-".into(),
        session_id: 42,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.2".into(),
    }
}

fn config(srtp: SrtpMode, over_plain: bool) -> GatewayConfig {
    GatewayConfig {
        srtp,
        srtp_over_plain_sip: over_plain,
        ..GatewayConfig::default()
    }
}

/// The far end's SRTP: it unprotects with the gateway's key and protects with its own.
struct FarSrtp {
    rx: SrtpContext,
    tx: SrtpContext,
}

struct Call {
    now: Instant,
    gw: GatewaySession,
    far: UserAgent,
    callbacks: Vec<ClientCallback>,
    notices: Vec<String>,
    remote_media: Vec<RtmpMessage>,
    far_events: Vec<UaEvent>,
    /// What reached the far end's RTP port, as sent.
    far_wire: Vec<Bytes>,
    far_srtp: Option<FarSrtp>,
}

impl Call {
    fn new(config: GatewayConfig) -> Self {
        let now = Instant::now();
        let request = ConnectRequest::parse("sip/alice@10.0.0.1", &[]).unwrap();
        let sockets = SessionSockets {
            sip: a(GW_SIP),
            media: Some(MediaPorts {
                audio: 4000,
                video: 4002,
            }),
        };
        let gw = GatewaySession::new(now, &request, config, sockets, 1).unwrap();
        let far_config = UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), a(FAR_SIP));
        let mut call = Self {
            now,
            gw,
            far: UserAgent::new(far_config, 2),
            callbacks: Vec::new(),
            notices: Vec::new(),
            remote_media: Vec::new(),
            far_events: Vec::new(),
            far_wire: Vec::new(),
            far_srtp: None,
        };
        call.pump();
        call
    }

    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(out) = self.gw.poll_output() {
                moved = true;
                match out {
                    GatewayOutput::Callback(cb) => self.callbacks.push(cb),
                    GatewayOutput::RemoteMedia(m) => self.remote_media.push(m.to_message(0)),
                    GatewayOutput::SipSend { data, .. } => {
                        self.far.handle_datagram(self.now, a(GW_SIP), data)
                    }
                    GatewayOutput::Rtp(rtp) => self.carry_to_far(rtp),
                    GatewayOutput::Notice(n) => self.notices.push(n),
                    GatewayOutput::ConnectResult(_) => {}
                }
            }
            while let Some((_, data)) = self.far.poll_transmit() {
                moved = true;
                self.gw.sip_datagram(self.now, a(FAR_SIP), data);
            }
            while let Some(event) = self.far.poll_event() {
                moved = true;
                self.far_events.push(event);
            }
            if !moved {
                return;
            }
        }
        panic!("no quiet");
    }

    fn carry_to_far(&mut self, rtp: OutgoingRtp) {
        if !rtp.rtcp && rtp.destination == a(FAR_RTP) {
            self.far_wire.push(rtp.datagram.to_bytes());
        }
    }

    fn client(&mut self, call: ClientCall) {
        self.gw.client_call(self.now, call);
        self.pump();
    }

    fn far_incoming(&self) -> Option<(CallId, SessionDescription)> {
        self.far_events.iter().find_map(|e| match e {
            UaEvent::IncomingCall { call, offer, .. } => {
                Some((*call, SessionDescription::parse(offer.as_ref()?).ok()?))
            }
            _ => None,
        })
    }

    /// The client calls bob; bob answers with `reply` made from the offer (its SRTP keys
    /// kept when the answer has crypto).
    fn call_out(&mut self, secure_answer: bool) -> SessionDescription {
        self.client(ClientCall::Invite {
            dest: "bob@10.0.0.2:5060".into(),
            codecs: vec![CodecToken::Pcmu],
        });
        let (call, offer) = self.far_incoming().expect("far end got the INVITE");
        let reply = if secure_answer {
            answer_secure(&offer, &far_caps(), &origin(), &mut SeededRng::new(9)).unwrap()
        } else {
            // A far end without SRTP: it answers plain RTP/AVP whatever the profile offered.
            let mut plain = offer.clone();
            plain.media[0].proto = "RTP/AVP".into();
            answer(&plain, &far_caps(), &origin()).unwrap()
        };
        self.keep_far_keys(&offer, &reply);
        self.far
            .answer(self.now, call, Bytes::from(reply.serialize()))
            .unwrap();
        self.pump();
        offer
    }

    fn keep_far_keys(&mut self, offer: &SessionDescription, far_answer: &SessionDescription) {
        if let Ok(Some(keys)) = negotiated_keys(offer, far_answer, true, 0) {
            self.far_srtp = Some(FarSrtp {
                rx: SrtpContext::new(keys.suite, &keys.theirs),
                tx: SrtpContext::new(keys.suite, &keys.ours),
            });
        }
    }

    /// A datagram from the far end's RTP address to the gateway's audio port; true when it
    /// produced media for the client.
    fn far_sends(&mut self, bytes: Bytes) -> bool {
        let before = self.remote_media.len();
        let mut back = Vec::new();
        self.gw
            .rtp_datagram(self.now, Leg::Audio, false, a(FAR_RTP), bytes, &mut back);
        for item in back {
            if let siprtmp_core::gateway::media_bridge::FromFarEnd::Media(m) = item {
                self.remote_media.push(m.to_message(0));
            }
        }
        self.pump();
        self.remote_media.len() > before
    }

    /// The client publishes a frame; the far end gets it.
    fn publish(&mut self, i: u32) {
        let mut body = vec![0x82];
        body.extend((0..160).map(|j| (i as u8) ^ (j as u8)));
        let msg = RtmpMessage::new(type_id::AUDIO, 1, i * 20, body);
        self.now += Duration::from_millis(20);
        let mut rtp = Vec::new();
        self.gw.client_media(self.now, &msg, &mut rtp);
        for r in rtp {
            self.carry_to_far(r);
        }
    }
}

fn plain_rtp(sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
    p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn far_protect(far: &mut FarSrtp, sequence: u16, payload: &[u8]) -> Bytes {
    let mut p = plain_rtp(sequence, payload);
    let len = p.len();
    p.resize(len + 10, 0);
    let n = far.tx.protect(&mut p, len).unwrap();
    p.truncate(n);
    Bytes::from(p)
}

#[test]
fn a_required_srtp_call_is_protected_both_ways_and_forgeries_never_reach_the_client() {
    let mut c = Call::new(config(SrtpMode::Require, true));
    let offer = c.call_out(true);
    assert_eq!(offer.media[0].proto, "RTP/SAVP");
    assert_eq!(offer.media[0].crypto().count(), 2, "both suites offered");
    assert!(matches!(
        c.callbacks.last(),
        Some(ClientCallback::Accepted { .. })
    ));
    // Client to far end: what goes on the wire is SRTP the far end opens with our key.
    for i in 0..50 {
        c.publish(i);
    }
    assert_eq!(c.far_wire.len(), 50);
    let mut far = c.far_srtp.take().expect("the far end answered with crypto");
    for (i, wire) in c.far_wire.iter().enumerate() {
        let mut buf = wire.to_vec();
        assert_eq!(buf.len(), 12 + 160 + 10, "an 80-bit tag on every packet");
        let expected: Vec<u8> = (0..160).map(|j| (i as u8) ^ (j as u8)).collect();
        assert_ne!(
            buf[12..172],
            expected[..],
            "the payload is not in the clear"
        );
        let n = far.rx.unprotect(&mut buf).unwrap();
        assert_eq!(buf[12..n], expected[..]);
    }
    // Far end to client: every protected packet arrives, decrypted.
    for s in 0..50u16 {
        let payload = vec![s as u8; 160];
        assert!(
            c.far_sends(far_protect(&mut far, s, &payload)),
            "packet {s}"
        );
        assert_eq!(c.remote_media.last().unwrap().payload[1..], payload[..]);
    }
    let good = c.remote_media.len();
    // A packet with a bad tag, one encrypted with another key, plain RTP and a replay: none
    // reaches the client.
    let mut tampered = far_protect(&mut far, 50, &[1; 160]).to_vec();
    *tampered.last_mut().unwrap() ^= 0xff;
    assert!(!c.far_sends(Bytes::from(tampered)));
    assert!(!c.far_sends(Bytes::from(plain_rtp(51, &[2; 160]))));
    let replay = far_protect(&mut far, 52, &[3; 160]);
    assert!(c.far_sends(replay.clone()));
    assert!(!c.far_sends(replay));
    assert_eq!(c.remote_media.len(), good + 1);
    assert!(
        c.notices
            .iter()
            .any(|n| n.contains("SRTP authentication failed")),
        "{:?}",
        c.notices
    );
}

#[test]
fn a_required_srtp_call_answered_without_crypto_is_ended_and_the_client_told() {
    let mut c = Call::new(config(SrtpMode::Require, true));
    c.call_out(false);
    let ended = c
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Ended { .. }));
    assert!(ended, "the far end got a BYE: {:?}", c.far_events);
    assert!(
        c.callbacks.iter().any(|cb| matches!(cb,
            ClientCallback::Rejected(why) if why.starts_with("488") && why.contains("without crypto"))),
        "{:?}",
        c.callbacks
    );
}

#[test]
fn offered_srtp_is_best_effort_and_takes_a_plain_answer() {
    let mut c = Call::new(config(SrtpMode::Offer, true));
    let offer = c.call_out(false);
    assert_eq!(
        offer.media[0].proto, "RTP/AVP",
        "a plain far end can still answer"
    );
    assert_eq!(offer.media[0].crypto().count(), 2);
    assert!(matches!(
        c.callbacks.last(),
        Some(ClientCallback::Accepted { .. })
    ));
    c.publish(0);
    let packet = RtpPacket::parse(c.far_wire[0].clone()).unwrap();
    assert_eq!(packet.payload.len(), 160, "plain RTP, no tag");
    assert!(c.far_sends(Bytes::from(plain_rtp(1, &[7; 160]))));
}

#[test]
fn required_srtp_places_no_call_over_plain_sip_without_the_override() {
    let mut c = Call::new(config(SrtpMode::Require, false));
    c.client(ClientCall::Invite {
        dest: "bob@10.0.0.2:5060".into(),
        codecs: vec![CodecToken::Pcmu],
    });
    assert!(
        c.far_incoming().is_none(),
        "no INVITE carried keys in the clear"
    );
    assert!(matches!(c.callbacks.last(),
        Some(ClientCallback::Rejected(why)) if why.contains("TLS")));
    // Offer mode over plain SIP offers plain RTP: no keys in the SDP.
    let mut c = Call::new(config(SrtpMode::Offer, false));
    let offer = c.call_out(false);
    assert_eq!(offer.media[0].crypto().count(), 0);
}

/// The far end calls the client with `offer`; the status it was refused with, if any.
fn call_in(c: &mut Call, offer: &SessionDescription) -> Option<u16> {
    let target = Uri::parse("sip:alice@10.0.0.1:5060").unwrap();
    let far_call = c
        .far
        .invite(c.now, target, Bytes::from(offer.serialize()))
        .unwrap();
    c.pump();
    c.far_events.iter().find_map(|e| match e {
        UaEvent::Rejected { call, status, .. } if *call == far_call => Some(*status),
        _ => None,
    })
}

#[test]
fn incoming_offers_get_488_when_the_policy_cannot_take_them() {
    let plain = create_offer(&far_caps(), &origin());
    let mut secure = plain.clone();
    secure_offer(&mut secure, &mut SeededRng::new(3), true);
    let mut c = Call::new(config(SrtpMode::Require, true));
    assert_eq!(call_in(&mut c, &plain), Some(488), "require: no crypto");
    let mut c = Call::new(config(SrtpMode::Off, false));
    assert_eq!(call_in(&mut c, &secure), Some(488), "off: SRTP only");
    let mut c = Call::new(config(SrtpMode::Require, false));
    assert_eq!(
        call_in(&mut c, &secure),
        Some(488),
        "require over plain SIP"
    );
    assert!(c.callbacks.is_empty(), "the client is never alerted");
    let mut c = Call::new(config(SrtpMode::Off, false));
    assert_eq!(call_in(&mut c, &plain), None, "off: plain RTP as before");
}

#[test]
fn an_incoming_srtp_call_is_answered_with_our_own_key_and_media_flows() {
    let mut c = Call::new(config(SrtpMode::Require, true));
    let mut offer = create_offer(&far_caps(), &origin());
    secure_offer(&mut offer, &mut SeededRng::new(4), true);
    assert_eq!(call_in(&mut c, &offer), None);
    assert!(matches!(
        c.callbacks.last(),
        Some(ClientCallback::Invited { .. })
    ));
    c.client(ClientCall::Accept {
        codecs: vec![CodecToken::Pcmu],
    });
    let reply = c
        .far_events
        .iter()
        .find_map(|e| match e {
            UaEvent::Answered { answer, .. } => SessionDescription::parse(answer).ok(),
            _ => None,
        })
        .expect("the far end got our answer");
    assert_eq!(reply.media[0].proto, "RTP/SAVP");
    let keys = negotiated_keys(&offer, &reply, false, 0).unwrap().unwrap();
    assert_ne!(
        keys.ours, keys.theirs,
        "the gateway answered with a key of its own"
    );
    let mut far = FarSrtp {
        rx: SrtpContext::new(keys.suite, &keys.theirs),
        tx: SrtpContext::new(keys.suite, &keys.ours),
    };
    c.publish(0);
    let mut wire = c.far_wire[0].to_vec();
    assert!(far.rx.unprotect(&mut wire).is_ok());
    assert!(c.far_sends(far_protect(&mut far, 0, &[5; 160])));
    // What the gateway sends cannot be opened with the far end's own key.
    let mut wrong = SrtpContext::new(keys.suite, &keys.ours);
    assert_eq!(
        wrong.unprotect(&mut c.far_wire[0].to_vec()),
        Err(SrtpError::Authentication)
    );
}

/// The keys of an offer made by a gateway whose secret is `secret`, with the session seed
/// every `Call` uses.
fn offered_keys(secret: Option<[u8; 32]>) -> Vec<String> {
    let mut config = config(SrtpMode::Require, true);
    config.srtp_key_secret = secret.map(KeySecret::new);
    let mut c = Call::new(config);
    let offer = c.call_out(true);
    offer.media[0]
        .crypto()
        .map(|line| line.keys[0].raw.clone())
        .collect()
}

#[test]
fn keys_come_from_the_operators_secret_not_only_from_the_seeded_generator() {
    // Same seed, so the same SSRCs, tags and Call-IDs on the wire: whoever works out the
    // generator from them knows the keys of a gateway without a secret, not of one with it.
    let plain = offered_keys(None);
    assert_eq!(
        plain,
        offered_keys(None),
        "the generator alone is predictable"
    );
    let a = offered_keys(Some([1; 32]));
    let b = offered_keys(Some([2; 32]));
    assert_ne!(a, plain);
    assert_ne!(a, b, "another secret, other keys");
}
