//! Two [`UserAgent`]s (and a test registrar built from the transaction layer and
//! `digest::verify`) talking through an in-memory datagram network in virtual time:
//! registration with Digest, refresh and un-registration, calls both ways, CANCEL, BYE,
//! re-INVITE hold/resume with real SDP offer/answer, INFO, the UAS's own refusals (481,
//! 405, 482, 486), a lost 2xx (NoAck -> BYE), and calls under 5 % datagram loss.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::sdp::{
    answer, create_offer, reoffer, Codec, Direction, LocalCapabilities, MediaCapability, Origin,
    SessionDescription,
};
use siprtmp_core::sip::digest::{self, Algorithm};
use siprtmp_core::sip::*;

const ALICE: &str = "127.0.0.1:5070";
const BOB: &str = "127.0.0.1:5080";
const REGISTRAR: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A registrar: challenges every REGISTER without valid credentials with a 401, answers
/// valid ones with 200 and the granted expiry.
struct Registrar {
    layer: TransactionLayer,
    password: String,
    nonce: String,
    grant: u32,
    /// (virtual time, Expires asked, had valid credentials) per REGISTER received.
    seen: Vec<(Instant, u32, bool)>,
}

impl Registrar {
    fn new(password: &str, grant: u32) -> Registrar {
        let cfg = TransactionConfig::new(sent_by_of(addr(REGISTRAR)));
        Registrar {
            layer: TransactionLayer::new(cfg, 99),
            password: password.into(),
            nonce: "5f1a2b3c4d".into(),
            grant,
            seen: Vec::new(),
        }
    }

    fn handle(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(msg) = parse_datagram(data) else {
            return;
        };
        self.layer.handle_incoming(now, msg, Transport::Udp, source);
        while let Some(ev) = self.layer.poll_event() {
            let TransactionEvent::Request { id, request, .. } = ev else {
                continue;
            };
            assert_eq!(request.method, Method::Register);
            let expires = request.headers.expires().unwrap().unwrap_or(3600);
            let ok = request
                .headers
                .get("Authorization")
                .and_then(|v| Authorization::parse(v).ok())
                .is_some_and(|a| {
                    a.nonce == self.nonce
                        && a.realm == "test.example"
                        && digest::verify(&a, &request.method, &self.password)
                });
            self.seen.push((now, expires, ok));
            let resp = if ok {
                let mut r = make_response(&request, 200, "OK", Some("reg1"));
                let contact = request.headers.get("Contact").unwrap().to_string();
                let granted = expires.min(self.grant);
                r.headers
                    .push("Contact", &format!("{contact};expires={granted}"));
                r
            } else {
                let mut r = make_response(&request, 401, "Unauthorized", Some("reg1"));
                let c = Challenge::new("test.example", &self.nonce, Algorithm::Md5);
                r.headers.push("WWW-Authenticate", &c.to_string());
                r
            };
            self.layer.send_response(now, id, resp).unwrap();
        }
    }
}

/// Decides whether to drop a datagram (from, to, bytes).
type Filter = Box<dyn FnMut(SocketAddr, SocketAddr, &Bytes) -> bool>;

/// The virtual network: datagrams are delivered instantly unless dropped by the loss rate
/// or the filter; time jumps from deadline to deadline.
struct World {
    now: Instant,
    alice: UserAgent,
    bob: UserAgent,
    registrar: Option<Registrar>,
    loss_per_mille: u64,
    rng: SeededRng,
    /// Drops a datagram (from, to, bytes) when it returns true.
    filter: Option<Filter>,
    alice_events: VecDeque<UaEvent>,
    bob_events: VecDeque<UaEvent>,
    /// Every datagram delivered, for assertions on the wire.
    log: Vec<(SocketAddr, SocketAddr, Bytes)>,
}

fn config(aor: &str, local: &str) -> UaConfig {
    UaConfig::new(aor.parse().unwrap(), addr(local))
}

impl World {
    fn new(alice: UaConfig, bob: UaConfig) -> World {
        World {
            now: Instant::now(),
            alice: UserAgent::new(alice, 1),
            bob: UserAgent::new(bob, 2),
            registrar: None,
            loss_per_mille: 0,
            rng: SeededRng::new(7),
            filter: None,
            alice_events: VecDeque::new(),
            bob_events: VecDeque::new(),
            log: Vec::new(),
        }
    }

    fn pair() -> World {
        World::new(
            config("sip:alice@127.0.0.1", ALICE),
            config("sip:bob@127.0.0.1", BOB),
        )
    }

    /// Moves datagrams until nobody has anything to send.
    fn deliver(&mut self) {
        loop {
            let mut out = Vec::new();
            while let Some((to, data)) = self.alice.poll_transmit() {
                out.push((addr(ALICE), to, data));
            }
            while let Some((to, data)) = self.bob.poll_transmit() {
                out.push((addr(BOB), to, data));
            }
            if let Some(r) = self.registrar.as_mut() {
                while let Some(t) = r.layer.poll_transmit() {
                    let Destination::Addr(to) = t.destination else {
                        panic!("registrar answers to an address")
                    };
                    out.push((addr(REGISTRAR), to, t.bytes));
                }
            }
            if out.is_empty() {
                break;
            }
            for (from, to, data) in out {
                let lost = self.loss_per_mille > 0 && self.rng.below(1000) < self.loss_per_mille;
                let filtered = self.filter.as_mut().is_some_and(|f| f(from, to, &data));
                if lost || filtered {
                    continue;
                }
                self.log.push((from, to, data.clone()));
                if to == addr(ALICE) {
                    self.alice.handle_datagram(self.now, from, data);
                } else if to == addr(BOB) {
                    self.bob.handle_datagram(self.now, from, data);
                } else if to == addr(REGISTRAR) {
                    if let Some(r) = self.registrar.as_mut() {
                        r.handle(self.now, from, &data);
                    }
                } else {
                    panic!("datagram to unknown address {to}");
                }
            }
        }
        while let Some(e) = self.alice.poll_event() {
            self.alice_events.push_back(e);
        }
        while let Some(e) = self.bob.poll_event() {
            self.bob_events.push_back(e);
        }
    }

    /// Runs the world for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.deliver();
            let next = [
                self.alice.poll_timeout(),
                self.bob.poll_timeout(),
                self.registrar.as_mut().and_then(|r| r.layer.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.alice.handle_timeout(self.now);
                    self.bob.handle_timeout(self.now);
                    if let Some(r) = self.registrar.as_mut() {
                        r.layer.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.deliver();
    }

    fn alice_event(&mut self) -> Option<UaEvent> {
        self.alice_events.pop_front()
    }

    fn bob_event(&mut self) -> Option<UaEvent> {
        self.bob_events.pop_front()
    }

    /// Alice calls Bob and Bob answers; returns (alice's call, bob's call).
    fn establish(&mut self, offer: &[u8], answer_sdp: &[u8]) -> (CallId, CallId) {
        let a = self
            .alice
            .invite(self.now, bob_uri(), Bytes::copy_from_slice(offer))
            .unwrap();
        self.run(Duration::from_millis(10));
        let b = expect_incoming(self.bob_event());
        self.bob
            .answer(self.now, b, Bytes::copy_from_slice(answer_sdp))
            .unwrap();
        self.run(Duration::from_millis(10));
        match self.alice_event() {
            Some(UaEvent::Answered { call, answer }) => {
                assert_eq!(call, a);
                assert_eq!(&answer[..], answer_sdp);
            }
            other => panic!("expected Answered, got {other:?}"),
        }
        (a, b)
    }
}

fn bob_uri() -> Uri {
    "sip:bob@127.0.0.1:5080".parse().unwrap()
}

fn expect_incoming(e: Option<UaEvent>) -> CallId {
    match e {
        Some(UaEvent::IncomingCall { call, .. }) => call,
        other => panic!("expected IncomingCall, got {other:?}"),
    }
}

fn capabilities(port: u16) -> LocalCapabilities {
    LocalCapabilities {
        address: "127.0.0.1".parse().unwrap(),
        session_name: "-".into(),
        media: vec![MediaCapability::new(
            "audio",
            port,
            vec![
                Codec::new(0, "PCMU", 8000, None),
                Codec::new(8, "PCMA", 8000, None),
                Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
            ],
        )],
    }
}

fn origin(id: u64) -> Origin {
    Origin {
        username: "-".into(),
        session_id: id,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "127.0.0.1".into(),
    }
}

/// The first status line Bob sent back after `inject`.
fn inject(ua: &mut UserAgent, now: Instant, from: SocketAddr, text: &str) -> Vec<String> {
    ua.handle_datagram(now, from, Bytes::copy_from_slice(text.as_bytes()));
    let mut out = Vec::new();
    while let Some((to, data)) = ua.poll_transmit() {
        assert_eq!(to, from);
        out.push(String::from_utf8(data.to_vec()).unwrap());
    }
    out
}

fn status_line(msg: &str) -> &str {
    msg.lines().next().unwrap()
}

#[test]
fn registers_with_digest_refreshes_and_unregisters() {
    let mut a = config("sip:alice@test.example", ALICE);
    a.registrar = Some(addr(REGISTRAR));
    a.credentials = Some(Credentials::new("alice", "secret"));
    a.register_expires = 120;
    let mut w = World::new(a, config("sip:bob@127.0.0.1", BOB));
    w.registrar = Some(Registrar::new("secret", 100));

    let start = w.now;
    w.alice.register(w.now);
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Registered { expires: 100 }));
    assert!(w.alice.is_registered());
    let seen = &w.registrar.as_ref().unwrap().seen;
    assert_eq!(seen.len(), 2, "401 challenge then the authorised retry");
    assert!(!seen[0].2 && seen[1].2);
    assert_eq!(seen[1].1, 120);
    assert_eq!(
        w.alice.register_attempts(),
        1,
        "one attempt: the retry that answers the challenge is not another"
    );

    // Granted 100 s: refresh at min(50, 68) = 50 s, reusing the nonce (no new 401).
    w.run(Duration::from_secs(49));
    assert_eq!(
        w.registrar.as_ref().unwrap().seen.len(),
        2,
        "no refresh yet"
    );
    w.run(Duration::from_secs(2));
    assert_eq!(w.alice_event(), Some(UaEvent::Registered { expires: 100 }));
    let seen = &w.registrar.as_ref().unwrap().seen;
    assert_eq!(seen.len(), 3);
    assert!(seen[2].2, "refresh authorised with the known nonce");
    assert_eq!(seen[2].0 - start, Duration::from_secs(50));
    // And again 50 s later.
    w.run(Duration::from_secs(50));
    assert_eq!(w.alice_event(), Some(UaEvent::Registered { expires: 100 }));
    assert_eq!(
        w.alice.register_attempts(),
        3,
        "the first and two refreshes"
    );

    w.alice.unregister(w.now);
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Unregistered));
    assert_eq!(w.registrar.as_ref().unwrap().seen.last().unwrap().1, 0);
    assert!(!w.alice.is_registered());
    // No more refreshes.
    let n = w.registrar.as_ref().unwrap().seen.len();
    w.run(Duration::from_secs(300));
    assert_eq!(w.registrar.as_ref().unwrap().seen.len(), n);
    assert_eq!(w.alice_event(), None);
    assert_eq!(
        w.alice.register_attempts(),
        3,
        "an un-REGISTER is not an attempt"
    );
}

#[test]
fn wrong_password_fails_registration_with_401() {
    let mut a = config("sip:alice@test.example", ALICE);
    a.registrar = Some(addr(REGISTRAR));
    a.credentials = Some(Credentials::new("alice", "wrong"));
    let mut w = World::new(a, config("sip:bob@127.0.0.1", BOB));
    w.registrar = Some(Registrar::new("secret", 3600));
    w.alice.register(w.now);
    w.run(Duration::from_millis(10));
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::RegistrationFailed { status: 401, .. })
    ));
    assert_eq!(w.registrar.as_ref().unwrap().seen.len(), 2);
    assert!(!w.alice.is_registered());
}

#[test]
fn registration_times_out_as_408() {
    let mut a = config("sip:alice@test.example", ALICE);
    a.registrar = Some(addr(REGISTRAR));
    let mut w = World::new(a, config("sip:bob@127.0.0.1", BOB));
    w.registrar = Some(Registrar::new("secret", 3600));
    w.filter = Some(Box::new(|_, to, _| to == addr(REGISTRAR)));
    w.alice.register(w.now);
    w.run(Duration::from_secs(40));
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::RegistrationFailed { status: 408, .. })
    ));
}

#[test]
fn call_with_sdp_offer_answer_ringing_and_bye_from_callee() {
    let mut w = World::pair();
    let offer = create_offer(&capabilities(4000), &origin(1)).to_string();
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from(offer.clone()))
        .unwrap();
    w.run(Duration::from_millis(10));
    let (b, from, offered) = match w.bob_event() {
        Some(UaEvent::IncomingCall {
            call, from, offer, ..
        }) => (call, from, offer.unwrap()),
        other => panic!("{other:?}"),
    };
    assert_eq!(from.uri.to_string(), "sip:alice@127.0.0.1");
    assert_eq!(&offered[..], offer.as_bytes());
    w.bob.ringing(w.now, b).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Ringing { call: a }));

    let offer_sdp: SessionDescription = offer.parse().unwrap();
    let ans = answer(&offer_sdp, &capabilities(5000), &origin(2)).unwrap();
    w.bob
        .answer(w.now, b, Bytes::from(ans.to_string()))
        .unwrap();
    w.run(Duration::from_millis(10));
    match w.alice_event() {
        Some(UaEvent::Answered { call, answer }) => {
            assert_eq!(call, a);
            let sdp = SessionDescription::parse(&answer).unwrap();
            assert_eq!(sdp.media[0].port, 5000);
        }
        other => panic!("{other:?}"),
    }
    // The wire: Max-Forwards 70, a User-Agent, a Contact with our address, an ACK.
    let invite = w
        .log
        .iter()
        .find(|(f, _, d)| *f == addr(ALICE) && d.starts_with(b"INVITE"))
        .map(|(_, _, d)| String::from_utf8(d.to_vec()).unwrap())
        .unwrap();
    assert!(invite.contains("Max-Forwards: 70\r\n"));
    assert!(invite.contains("User-Agent: siprtmp\r\n"));
    assert!(invite.contains("Contact: <sip:alice@127.0.0.1:5070>\r\n"));
    assert!(w
        .log
        .iter()
        .any(|(f, _, d)| *f == addr(ALICE) && d.starts_with(b"ACK sip:bob@127.0.0.1:5080")));

    w.bob.hangup(w.now, b).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.bob_event(), Some(UaEvent::Ended { call: b }));
    assert_eq!(w.alice_event(), Some(UaEvent::Ended { call: a }));
    w.run(Duration::from_secs(40));
    assert_eq!((w.alice.call_count(), w.bob.call_count()), (0, 0));
    assert_eq!(
        (w.alice.transaction_count(), w.bob.transaction_count()),
        (0, 0)
    );
    assert_eq!((w.alice_event(), w.bob_event()), (None, None));
}

#[test]
fn call_the_other_way_and_reject_busy() {
    let mut w = World::pair();
    let b = w
        .bob
        .invite(
            w.now,
            "sip:alice@127.0.0.1:5070".parse().unwrap(),
            Bytes::from_static(b"v=0\r\n"),
        )
        .unwrap();
    w.run(Duration::from_millis(10));
    let a = expect_incoming(w.alice_event());
    w.alice.reject(w.now, a, 486, "Busy Here").unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Ended { call: a }));
    assert_eq!(
        w.bob_event(),
        Some(UaEvent::Rejected {
            call: b,
            status: 486,
            reason: "Busy Here".into()
        })
    );
    // The INVITE client transaction ACKed the 486: the server one is confirmed, not
    // retransmitting.
    w.run(Duration::from_secs(40));
    assert_eq!(
        (w.alice.transaction_count(), w.bob.transaction_count()),
        (0, 0)
    );
}

#[test]
fn cancel_before_answer_gives_487_and_cancelled() {
    let mut w = World::pair();
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_millis(10));
    let b = expect_incoming(w.bob_event());
    w.bob.ringing(w.now, b).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Ringing { call: a }));
    w.alice.hangup(w.now, a).unwrap();
    assert_eq!(w.alice.poll_event(), Some(UaEvent::Ended { call: a }));
    w.run(Duration::from_millis(10));
    assert_eq!(w.bob_event(), Some(UaEvent::Cancelled { call: b }));
    assert!(w
        .log
        .iter()
        .any(|(f, _, d)| *f == addr(BOB) && d.starts_with(b"SIP/2.0 487")));
    assert!(w
        .log
        .iter()
        .any(|(f, _, d)| *f == addr(ALICE) && d.starts_with(b"CANCEL")));
    assert_eq!(
        w.bob.answer(w.now, b, Bytes::new()),
        Err(UaError::UnknownCall)
    );
    w.run(Duration::from_secs(40));
    assert_eq!((w.alice_event(), w.bob_event()), (None, None));
    assert_eq!((w.alice.call_count(), w.bob.call_count()), (0, 0));
}

#[test]
fn hangup_before_any_provisional_waits_for_one_then_cancels() {
    let mut w = World::pair();
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.alice.hangup(w.now, a).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Ended { call: a }));
    let b = expect_incoming(w.bob_event());
    assert!(!w.log.iter().any(|(_, _, d)| d.starts_with(b"CANCEL")));
    // Bob's transaction sends 100 Trying after 200 ms; the CANCEL follows it.
    w.run(Duration::from_millis(300));
    assert_eq!(w.bob_event(), Some(UaEvent::Cancelled { call: b }));
}

#[test]
fn hangup_before_provisional_then_2xx_is_acked_and_byed() {
    let mut w = World::pair();
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.alice.hangup(w.now, a).unwrap();
    w.run(Duration::from_millis(10));
    let b = expect_incoming(w.bob_event());
    w.bob
        .answer(w.now, b, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.alice_event(), Some(UaEvent::Ended { call: a }));
    assert_eq!(w.alice_event(), None);
    assert_eq!(w.bob_event(), Some(UaEvent::Ended { call: b }));
    assert!(w.log.iter().any(|(_, _, d)| d.starts_with(b"ACK")));
    assert!(w.log.iter().any(|(_, _, d)| d.starts_with(b"BYE")));
}

#[test]
fn reinvite_hold_and_resume() {
    let mut w = World::pair();
    let offer = create_offer(&capabilities(4000), &origin(1));
    let ans = answer(&offer, &capabilities(5000), &origin(2)).unwrap();
    let (a, b) = w.establish(offer.to_string().as_bytes(), ans.to_string().as_bytes());

    // Hold: Alice re-offers sendonly, Bob answers recvonly.
    let hold = reoffer(&offer, true);
    w.alice
        .reinvite(w.now, a, Bytes::from(hold.to_string()))
        .unwrap();
    assert_eq!(
        w.alice.reinvite(w.now, a, Bytes::new()),
        Err(UaError::InvalidState)
    );
    w.run(Duration::from_millis(10));
    let Some(UaEvent::ReInvite { call, offer: held }) = w.bob_event() else {
        panic!()
    };
    assert_eq!(call, b);
    let held = SessionDescription::parse(&held).unwrap();
    assert_eq!(held.media[0].direction(), Some(Direction::SendOnly));
    let mut o2 = origin(2);
    o2.session_version = 2;
    let hold_answer = answer(&held, &capabilities(5000), &o2).unwrap();
    w.bob
        .answer(w.now, b, Bytes::from(hold_answer.to_string()))
        .unwrap();
    w.run(Duration::from_millis(10));
    let Some(UaEvent::Answered { call, answer: got }) = w.alice_event() else {
        panic!()
    };
    assert_eq!(call, a);
    let got = SessionDescription::parse(&got).unwrap();
    assert_eq!(got.media[0].direction(), Some(Direction::RecvOnly));

    // Resume.
    let resume = reoffer(&hold, false);
    w.alice
        .reinvite(w.now, a, Bytes::from(resume.to_string()))
        .unwrap();
    w.run(Duration::from_millis(10));
    let Some(UaEvent::ReInvite { offer: resumed, .. }) = w.bob_event() else {
        panic!()
    };
    let resumed = SessionDescription::parse(&resumed).unwrap();
    assert_eq!(resumed.media[0].direction(), Some(Direction::SendRecv));
    o2.session_version = 3;
    let resume_answer = answer(&resumed, &capabilities(5000), &o2).unwrap();
    w.bob
        .answer(w.now, b, Bytes::from(resume_answer.to_string()))
        .unwrap();
    w.run(Duration::from_millis(10));
    assert!(matches!(w.alice_event(), Some(UaEvent::Answered { call, .. }) if call == a));

    // Bob refuses a re-INVITE with 488: the call goes on.
    w.alice
        .reinvite(w.now, a, Bytes::from(resume.to_string()))
        .unwrap();
    w.run(Duration::from_millis(10));
    assert!(matches!(w.bob_event(), Some(UaEvent::ReInvite { .. })));
    w.bob.reject(w.now, b, 488, "Not Acceptable Here").unwrap();
    w.run(Duration::from_millis(10));
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::ReInviteFailed { status: 488, .. })
    ));

    // The 2xx of a re-INVITE is ACKed: no NoAck, the call survives 64*T1.
    w.run(Duration::from_secs(40));
    assert_eq!((w.alice_event(), w.bob_event()), (None, None));
    w.alice.hangup(w.now, a).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.bob_event(), Some(UaEvent::Ended { call: b }));
}

#[test]
fn info_is_delivered_and_answered() {
    let mut w = World::pair();
    let (a, b) = w.establish(b"v=0\r\n", b"v=0\r\n");
    w.alice
        .send_info(
            w.now,
            a,
            "application/dtmf-relay",
            Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"),
        )
        .unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(
        w.bob_event(),
        Some(UaEvent::Info {
            call: b,
            content_type: "application/dtmf-relay".into(),
            body: Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"),
        })
    );
    assert!(w.log.iter().any(
        |(f, _, d)| *f == addr(BOB) && d.starts_with(b"SIP/2.0 200") && {
            let s = String::from_utf8_lossy(d);
            s.contains(" INFO\r\n")
        }
    ));
}

#[test]
fn stateless_duties_481_405_options_482() {
    let mut w = World::pair();
    let now = w.now;
    let peer = addr(ALICE);
    let bye = "BYE sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKunknown1\r\nMax-Forwards: 70\r\n\
        From: <sip:alice@127.0.0.1>;tag=aa\r\nTo: <sip:bob@127.0.0.1>;tag=nosuch\r\n\
        Call-ID: nosuchcall\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n";
    let out = inject(&mut w.bob, now, peer, bye);
    assert_eq!(
        status_line(&out[0]),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );

    let options = "OPTIONS sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\n\
        From: <sip:alice@127.0.0.1>;tag=aa\r\nTo: <sip:bob@127.0.0.1>\r\n\
        Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let out = inject(&mut w.bob, now, peer, options);
    assert_eq!(status_line(&out[0]), "SIP/2.0 200 OK");
    assert!(out[0].contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n"));
    assert!(out[0].contains("Accept: application/sdp\r\n"));
    let resp = parse_datagram(out[0].as_bytes()).unwrap();
    assert!(resp.headers().to().unwrap().tag().is_some());

    let message = "MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmsg1\r\nMax-Forwards: 70\r\n\
        From: <sip:alice@127.0.0.1>;tag=aa\r\nTo: <sip:bob@127.0.0.1>\r\n\
        Call-ID: msg1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi";
    let out = inject(&mut w.bob, now, peer, message);
    assert_eq!(status_line(&out[0]), "SIP/2.0 405 Method Not Allowed");
    assert!(out[0].contains("Allow: INVITE"));

    // The same INVITE (Call-ID, From tag, CSeq) by two paths: the second is merged (482).
    let invite = |branch: &str| {
        format!(
            "INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nMax-Forwards: 70\r\n\
            From: <sip:alice@127.0.0.1>;tag=aa\r\nTo: <sip:bob@127.0.0.1>\r\n\
            Call-ID: merged1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n\
            Content-Length: 0\r\n\r\n"
        )
    };
    let out = inject(&mut w.bob, now, peer, &invite("z9hG4bKpath1"));
    assert!(
        out.is_empty(),
        "the TU decides; 100 Trying comes after 200 ms"
    );
    assert!(matches!(
        w.bob.poll_event(),
        Some(UaEvent::IncomingCall { offer: None, .. })
    ));
    let out = inject(&mut w.bob, now, peer, &invite("z9hG4bKpath2"));
    assert_eq!(status_line(&out[0]), "SIP/2.0 482 Loop Detected");
    assert_eq!(w.bob.poll_event(), None);

    // Garbage is counted and dropped.
    let out = inject(&mut w.bob, now, peer, "\x00\x01garbage\r\n\r\n");
    assert!(out.is_empty());
    assert_eq!(w.bob.stats().malformed, 1);
    let out = inject(&mut w.bob, now, peer, "\r\n\r\n");
    assert!(out.is_empty());
    assert_eq!(
        w.bob.stats().malformed,
        1,
        "a CRLF keep-alive is not malformed"
    );
}

#[test]
fn max_calls_refuses_with_486() {
    let mut bob = config("sip:bob@127.0.0.1", BOB);
    bob.max_calls = 1;
    let mut w = World::new(config("sip:alice@127.0.0.1", ALICE), bob);
    let _first = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    let second = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_millis(10));
    assert!(matches!(w.bob_event(), Some(UaEvent::IncomingCall { .. })));
    assert_eq!(w.bob_event(), None);
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::Rejected { call, status: 486, .. }) if call == second
    ));
    assert_eq!(w.bob.stats().busy, 1);
}

#[test]
fn lost_2xx_means_no_ack_then_bye() {
    let mut w = World::pair();
    // Every 2xx to the INVITE from Bob is lost.
    w.filter = Some(Box::new(|from, _, d| {
        from == addr(BOB) && d.starts_with(b"SIP/2.0 200") && {
            let s = String::from_utf8_lossy(d);
            s.contains(" INVITE\r\n")
        }
    }));
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_millis(10));
    let b = expect_incoming(w.bob_event());
    w.bob
        .answer(w.now, b, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_secs(31));
    assert_eq!(w.bob_event(), None, "still retransmitting the 2xx");
    w.run(Duration::from_secs(2));
    assert_eq!(w.bob_event(), Some(UaEvent::Ended { call: b }));
    assert!(w
        .log
        .iter()
        .any(|(f, _, d)| *f == addr(BOB) && d.starts_with(b"BYE")));
    // Alice never saw a response at all (Bob answered before his 100 Trying was due):
    // Timer B gives up on her INVITE.
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::Rejected { call, status: 408, .. }) if call == a
    ));
}

#[test]
fn invite_timeout_is_rejected_408() {
    let mut w = World::pair();
    w.filter = Some(Box::new(|_, to, _| to == addr(BOB)));
    let a = w
        .alice
        .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_secs(40));
    assert!(matches!(
        w.alice_event(),
        Some(UaEvent::Rejected { call, status: 408, .. }) if call == a
    ));
}

#[test]
fn outbound_proxy_gets_requests_with_a_loose_route() {
    // Bob stands in for the proxy: Alice's INVITE to some other target goes to him with a
    // Route naming him, and Bob's Record-Route-less 2xx makes the BYE go straight to Bob's
    // Contact (which is Bob again).
    let mut a = config("sip:alice@127.0.0.1", ALICE);
    a.outbound_proxy = Some(addr(BOB));
    let mut w = World::new(a, config("sip:bob@127.0.0.1", BOB));
    let call = w
        .alice
        .invite(
            w.now,
            "sip:carol@192.0.2.99".parse().unwrap(),
            Bytes::from_static(b"v=0\r\n"),
        )
        .unwrap();
    w.run(Duration::from_millis(10));
    let b = expect_incoming(w.bob_event());
    let invite = String::from_utf8(w.log[0].2.to_vec()).unwrap();
    assert!(invite.starts_with("INVITE sip:carol@192.0.2.99 SIP/2.0\r\n"));
    assert!(invite.contains("Route: <sip:127.0.0.1:5080;lr>\r\n"));
    w.bob
        .answer(w.now, b, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    w.run(Duration::from_millis(10));
    assert!(matches!(w.alice_event(), Some(UaEvent::Answered { .. })));
    w.alice.hangup(w.now, call).unwrap();
    w.run(Duration::from_millis(10));
    assert_eq!(w.bob_event(), Some(UaEvent::Ended { call: b }));
}

#[test]
fn calls_complete_under_five_percent_loss() {
    let mut w = World::pair();
    w.loss_per_mille = 50;
    for i in 0..20 {
        let a = w
            .alice
            .invite(w.now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
            .unwrap();
        w.run(Duration::from_secs(5));
        let b = expect_incoming(w.bob_event());
        w.bob.ringing(w.now, b).unwrap();
        w.bob
            .answer(w.now, b, Bytes::from_static(b"v=0\r\n"))
            .unwrap();
        w.run(Duration::from_secs(5));
        let mut answered = false;
        while let Some(e) = w.alice_event() {
            match e {
                UaEvent::Ringing { .. } => {}
                UaEvent::Answered { call, .. } if call == a => answered = true,
                other => panic!("call {i}: {other:?}"),
            }
        }
        assert!(answered, "call {i} answered");
        if i % 2 == 0 {
            w.alice.hangup(w.now, a).unwrap();
        } else {
            w.bob.hangup(w.now, b).unwrap();
        }
        w.run(Duration::from_secs(5));
        let ended = |e: Option<UaEvent>, c: CallId| assert_eq!(e, Some(UaEvent::Ended { call: c }));
        ended(w.alice_event(), a);
        ended(w.bob_event(), b);
    }
    w.run(Duration::from_secs(60));
    assert_eq!((w.alice.call_count(), w.bob.call_count()), (0, 0));
    assert_eq!(
        (w.alice.transaction_count(), w.bob.transaction_count()),
        (0, 0)
    );
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut ua = UserAgent::new(config("sip:bob@127.0.0.1", BOB), 3);
        let now = Instant::now();
        ua.handle_datagram(now, addr(ALICE), Bytes::from(data));
        while ua.poll_transmit().is_some() {}
        while ua.poll_event().is_some() {}
        ua.handle_timeout(now + Duration::from_secs(100));
    }

    #[test]
    fn mutated_invites_never_panic(cut in 0usize..400, byte in any::<u8>(), pos in 0usize..400) {
        let mut text = b"INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmut\r\nMax-Forwards: 70\r\n\
            From: <sip:alice@127.0.0.1>;tag=aa\r\nTo: <sip:bob@127.0.0.1>\r\n\
            Call-ID: mut1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n\
            Content-Length: 0\r\n\r\n".to_vec();
        let p = pos % text.len();
        text[p] = byte;
        text.truncate(cut.max(1).min(text.len()));
        let mut ua = UserAgent::new(config("sip:bob@127.0.0.1", BOB), 3);
        let now = Instant::now();
        ua.handle_datagram(now, addr(ALICE), Bytes::from(text));
        while let Some(UaEvent::IncomingCall { call, .. }) = ua.poll_event() {
            let _ = ua.answer(now, call, Bytes::from_static(b"v=0\r\n"));
        }
        while ua.poll_transmit().is_some() {}
        ua.handle_timeout(now + Duration::from_secs(100));
    }
}

#[test]
fn invite_answers_one_proxy_challenge() {
    let mut a = config("sip:alice@127.0.0.1", ALICE);
    a.credentials = Some(Credentials::new("alice", "secret"));
    let mut alice = UserAgent::new(a, 5);
    let now = Instant::now();
    let call = alice
        .invite(now, bob_uri(), Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    let (_, first) = alice.poll_transmit().unwrap();
    let SipMessage::Request(first) = parse_datagram(&first).unwrap() else {
        panic!()
    };
    let challenge = |req: &Request| {
        let mut r = make_response(req, 407, "Proxy Authentication Required", Some("px"));
        let c = Challenge::new("proxy.test", "n0nce", Algorithm::Md5);
        r.headers.push("Proxy-Authenticate", &c.to_string());
        SipMessage::Response(r).to_bytes()
    };
    alice.handle_datagram(now, addr(BOB), challenge(&first));
    // The transaction ACKs the 407, then the retry goes out with credentials and CSeq 2.
    let mut sent = Vec::new();
    while let Some((_, d)) = alice.poll_transmit() {
        sent.push(parse_datagram(&d).unwrap());
    }
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].method(), Some(&Method::Ack));
    let SipMessage::Request(retry) = sent[1].clone() else {
        panic!()
    };
    assert_eq!(retry.method, Method::Invite);
    assert_eq!(retry.headers.cseq().unwrap().seq, 2);
    assert_eq!(
        retry.headers.call_id().unwrap(),
        first.headers.call_id().unwrap()
    );
    let auth = Authorization::parse(retry.headers.get("Proxy-Authorization").unwrap()).unwrap();
    assert!(digest::verify(&auth, &Method::Invite, "secret"));
    assert_eq!(alice.poll_event(), None);
    // A second challenge is final: Rejected with 407.
    alice.handle_datagram(now, addr(BOB), challenge(&retry));
    assert!(matches!(
        alice.poll_event(),
        Some(UaEvent::Rejected { call: c, status: 407, .. }) if c == call
    ));
}

/// Two user agents joined by one TCP connection, delivered a few bytes at a time.
struct TcpPair {
    now: Instant,
    alice: UserAgent,
    bob: UserAgent,
    /// Bytes in flight each way, and what each side's connection buffer holds.
    to_bob: bytes::BytesMut,
    to_alice: bytes::BytesMut,
    bob_in: bytes::BytesMut,
    alice_in: bytes::BytesMut,
    wire: Vec<Bytes>,
    alice_events: Vec<UaEvent>,
    bob_events: Vec<UaEvent>,
}

impl TcpPair {
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some((to, data)) = self.alice.poll_transmit() {
                assert_eq!(to, addr(BOB));
                self.wire.push(data.clone());
                self.to_bob.extend_from_slice(&data);
            }
            while let Some((to, data)) = self.bob.poll_transmit() {
                assert_eq!(to, addr(ALICE));
                self.wire.push(data.clone());
                self.to_alice.extend_from_slice(&data);
            }
            while !self.to_bob.is_empty() || !self.to_alice.is_empty() {
                moved = true;
                let n = self.to_bob.len().min(7);
                self.bob_in.extend_from_slice(&self.to_bob.split_to(n));
                assert!(self
                    .bob
                    .handle_stream(self.now, addr(ALICE), &mut self.bob_in));
                let n = self.to_alice.len().min(7);
                self.alice_in.extend_from_slice(&self.to_alice.split_to(n));
                assert!(self
                    .alice
                    .handle_stream(self.now, addr(BOB), &mut self.alice_in));
            }
            while let Some(e) = self.bob.poll_event() {
                moved = true;
                self.bob_events.push(e);
            }
            while let Some(e) = self.alice.poll_event() {
                moved = true;
                self.alice_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }
}

/// SIP over TCP: both user agents use the stream transport; every message goes through the
/// stream framer in pieces of 7 bytes (as TCP may deliver them), Via says TCP, and nothing is
/// retransmitted (reliable transport).
#[test]
fn a_call_over_tcp_frames_messages_from_a_byte_stream() {
    let mut alice_config = config("sip:alice@127.0.0.1", ALICE);
    alice_config.transport = Transport::Tcp;
    let mut bob_config = config("sip:bob@127.0.0.1", BOB);
    bob_config.transport = Transport::Tcp;
    let mut p = TcpPair {
        now: Instant::now(),
        alice: UserAgent::new(alice_config, 1),
        bob: UserAgent::new(bob_config, 2),
        to_bob: bytes::BytesMut::new(),
        to_alice: bytes::BytesMut::new(),
        bob_in: bytes::BytesMut::new(),
        alice_in: bytes::BytesMut::new(),
        wire: Vec::new(),
        alice_events: Vec::new(),
        bob_events: Vec::new(),
    };
    let offer = create_offer(&capabilities(4000), &origin(1)).to_string();
    let a = p
        .alice
        .invite(p.now, bob_uri(), Bytes::from(offer.clone()))
        .unwrap();
    p.pump();
    let b = expect_incoming(p.bob_events.first().cloned());
    let ans = answer(&offer.parse().unwrap(), &capabilities(5000), &origin(2)).unwrap();
    p.bob
        .answer(p.now, b, Bytes::from(ans.to_string()))
        .unwrap();
    p.pump();
    assert!(p
        .alice_events
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { call, .. } if *call == a)));
    // A minute of virtual time: on TCP nothing is retransmitted.
    let sent = p.wire.len();
    for _ in 0..120 {
        p.now += Duration::from_millis(500);
        let now = p.now;
        p.alice.handle_timeout(now);
        p.bob.handle_timeout(now);
        p.pump();
    }
    assert_eq!(p.wire.len(), sent, "no retransmissions over TCP");
    let invite = String::from_utf8(p.wire[0].to_vec()).unwrap();
    assert!(
        invite.contains("Via: SIP/2.0/TCP 127.0.0.1:5070;"),
        "{invite}"
    );
    p.alice.hangup(p.now, a).unwrap();
    p.pump();
    assert!(p.bob_events.contains(&UaEvent::Ended { call: b }));
}
