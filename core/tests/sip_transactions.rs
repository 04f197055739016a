//! The RFC 3261 / RFC 6026 transaction layer in virtual time: retransmission schedules,
//! timeouts, ACK handling, matching (RFC 3261 and RFC 2543 style, CANCEL), Via
//! `received`/`rport`, stateless rejections, and a property test that random interleavings of
//! messages and timeouts never panic and always drain the layer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use siprtmp_core::sip::{
    make_response, parse_datagram, sent_by_of, Destination, Incoming, Method, Request, Response,
    SipMessage, TimerConfig, TransactionConfig, TransactionEvent, TransactionId, TransactionLayer,
    TransactionState, Transmit, Transport, TxError,
};

const ALICE: &str = "192.0.2.1:5060";
const BOB: &str = "192.0.2.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn layer_with(local: &str, seed: u64, timers: TimerConfig) -> TransactionLayer {
    let mut cfg = TransactionConfig::new(sent_by_of(addr(local)));
    cfg.timers = timers;
    TransactionLayer::new(cfg, seed)
}

fn layer(local: &str, seed: u64) -> TransactionLayer {
    layer_with(local, seed, TimerConfig::default())
}

fn parse(text: &str) -> SipMessage {
    parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap()
}

fn request(text: &str) -> Request {
    match parse(text) {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("expected a request"),
    }
}

fn as_request(bytes: &[u8]) -> Request {
    match parse_datagram(bytes).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("expected a request"),
    }
}

fn as_response(bytes: &[u8]) -> Response {
    match parse_datagram(bytes).unwrap() {
        SipMessage::Response(r) => r,
        SipMessage::Request(_) => panic!("expected a response"),
    }
}

/// An INVITE as the UA core hands it over: no Via yet (the layer stamps it).
fn invite(seq: u32) -> Request {
    request(&format!(
        "INVITE sip:bob@192.0.2.2 SIP/2.0\n\
         Max-Forwards: 70\n\
         Route: <sip:proxy.example.com;lr>\n\
         To: Bob <sip:bob@example.com>\n\
         From: Alice <sip:alice@example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710@pc33.example.com\n\
         CSeq: {seq} INVITE\n\
         Contact: <sip:alice@192.0.2.1>\n\
         Content-Length: 0\n\n"
    ))
}

fn options(seq: u32) -> Request {
    request(&format!(
        "OPTIONS sip:bob@192.0.2.2 SIP/2.0\n\
         Max-Forwards: 70\n\
         To: <sip:bob@example.com>\n\
         From: <sip:alice@example.com>;tag=77\n\
         Call-ID: opt{seq}@192.0.2.1\n\
         CSeq: {seq} OPTIONS\n\
         Content-Length: 0\n\n"
    ))
}

/// An INVITE as it arrives at a server, with the client's Via.
fn incoming_invite(via: &str) -> Request {
    request(&format!(
        "INVITE sip:bob@192.0.2.2 SIP/2.0\n\
         Via: {via}\n\
         Max-Forwards: 70\n\
         To: Bob <sip:bob@example.com>\n\
         From: Alice <sip:alice@example.com>;tag=1928301774\n\
         Call-ID: call-1@192.0.2.1\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n"
    ))
}

fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<TransactionEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Runs one layer's timers alone until `until`, returning each transmit and each event with
/// its time offset from `start`.
#[allow(clippy::type_complexity)]
fn run(
    l: &mut TransactionLayer,
    start: Instant,
    until: Instant,
) -> (Vec<(Duration, Transmit)>, Vec<(Duration, TransactionEvent)>) {
    let (mut tx, mut ev) = (Vec::new(), Vec::new());
    while let Some(t) = l.poll_timeout() {
        if t > until {
            break;
        }
        l.handle_timeout(t);
        tx.extend(transmits(l).into_iter().map(|x| (t - start, x)));
        ev.extend(events(l).into_iter().map(|x| (t - start, x)));
    }
    (tx, ev)
}

fn deliver(to: &mut TransactionLayer, now: Instant, t: &Transmit, from: &str) -> Incoming {
    to.handle_incoming(
        now,
        parse_datagram(&t.bytes).unwrap(),
        t.transport,
        addr(from),
    )
}

fn gaps(times: &[Duration]) -> Vec<u64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect()
}

fn new_request_id(evs: &[TransactionEvent]) -> (TransactionId, Request) {
    evs.iter()
        .find_map(|e| match e {
            TransactionEvent::Request { id, request, .. } => Some((*id, request.clone())),
            _ => None,
        })
        .expect("a Request event")
}

#[test]
fn invite_client_retransmits_at_t1_doubling_until_timer_b_over_udp() {
    let t0 = Instant::now();
    let mut a = layer(ALICE, 1);
    let id = a
        .send_request(t0, invite(1), Transport::Udp, addr(BOB))
        .unwrap();
    let first = transmits(&mut a);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].destination, Destination::Addr(addr(BOB)));
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(100));
    let mut times = vec![Duration::ZERO];
    times.extend(tx.iter().map(|(t, _)| *t));
    // A: T1, 2T1, 4T1, 8T1, 16T1, 32T1; B = 64*T1 = 32 s ends it before the next one.
    assert_eq!(gaps(&times), vec![500, 1000, 2000, 4000, 8000, 16000]);
    assert!(tx.iter().all(|(_, t)| t.bytes == first[0].bytes));
    assert_eq!(
        ev,
        vec![
            (Duration::from_secs(32), TransactionEvent::Timeout { id }),
            (Duration::from_secs(32), TransactionEvent::Terminated { id }),
        ]
    );
    assert!(a.is_empty());
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn invite_client_never_retransmits_over_tcp() {
    let t0 = Instant::now();
    let mut a = layer(ALICE, 1);
    let id = a
        .send_request(t0, invite(1), Transport::Tcp, addr(BOB))
        .unwrap();
    let first = transmits(&mut a);
    assert_eq!(first.len(), 1);
    assert!(String::from_utf8_lossy(&first[0].bytes)
        .contains("Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK"));
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(100));
    assert!(tx.is_empty());
    assert_eq!(
        ev[0],
        (Duration::from_secs(32), TransactionEvent::Timeout { id })
    );
}

#[test]
fn non_invite_client_retransmits_capped_at_t2_and_times_out_on_f() {
    let t0 = Instant::now();
    let mut a = layer(ALICE, 1);
    let id = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    assert_eq!(transmits(&mut a).len(), 1);
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(100));
    let mut times = vec![Duration::ZERO];
    times.extend(tx.iter().map(|(t, _)| *t));
    // E: 500, 1000, 2000, then T2 = 4000 ms until F at 32 s (last send at 31.5 s).
    assert_eq!(
        gaps(&times),
        vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]
    );
    assert_eq!(
        ev[0],
        (Duration::from_secs(32), TransactionEvent::Timeout { id })
    );
}

#[test]
fn non_invite_client_retransmits_every_t2_once_proceeding_and_k_ends_it() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    let req = transmits(&mut a).remove(0);
    deliver(&mut b, t0, &req, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 183, "Progress", Some("b")))
        .unwrap();
    deliver(&mut a, t0, &transmits(&mut b)[0], BOB);
    assert_eq!(a.state(id), Some(TransactionState::Proceeding));
    // The E already armed (T1) fires, then every T2.
    let (tx, _) = run(&mut a, t0, t0 + Duration::from_secs(10));
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 4500, 8500]);
    // A final response completes it; K = T4 later it is gone; a retransmitted final is
    // absorbed meanwhile.
    let t = t0 + Duration::from_secs(10);
    b.send_response(t, sid, make_response(&r, 200, "OK", Some("b")))
        .unwrap();
    let ok = transmits(&mut b).remove(0);
    deliver(&mut a, t, &ok, BOB);
    assert_eq!(a.state(id), Some(TransactionState::Completed));
    assert!(events(&mut a).iter().any(
        |e| matches!(e, TransactionEvent::Response { response, .. } if response.status == 200)
    ));
    assert_eq!(
        deliver(&mut a, t + ms(100), &ok, BOB),
        Incoming::Matched(id)
    );
    assert!(events(&mut a).is_empty());
    let (tx, ev) = run(&mut a, t, t + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(
        ev,
        vec![(Duration::from_secs(5), TransactionEvent::Terminated { id })]
    );
}

#[test]
fn provisional_response_stops_invite_retransmissions() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a
        .send_request(t0, invite(1), Transport::Udp, addr(BOB))
        .unwrap();
    let inv = transmits(&mut a).remove(0);
    assert!(matches!(
        deliver(&mut b, t0, &inv, ALICE),
        Incoming::NewTransaction(_)
    ));
    // Bob's TU stays silent: the server transaction sends 100 Trying at 200 ms, not before.
    let (tx, _) = run(&mut b, t0, t0 + ms(199));
    assert!(tx.is_empty());
    let (tx, _) = run(&mut b, t0, t0 + ms(300));
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, ms(200));
    let trying = as_response(&tx[0].1.bytes);
    assert_eq!(trying.status, 100);
    deliver(&mut a, t0 + ms(250), &tx[0].1, BOB);
    assert_eq!(a.state(id), Some(TransactionState::Proceeding));
    assert!(
        matches!(&events(&mut a)[..], [TransactionEvent::Response { response, .. }] if response.status == 100)
    );
    // No retransmission and no Timer B for the next minute.
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(60));
    assert!(tx.is_empty(), "{tx:?}");
    assert!(ev.is_empty());
    assert_eq!(a.state(id), Some(TransactionState::Proceeding));
}

#[test]
fn server_does_not_send_100_when_the_tu_answers_within_200_ms() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKq1");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE));
    let (id, r) = new_request_id(&events(&mut b));
    b.send_response(
        t0 + ms(150),
        id,
        make_response(&r, 180, "Ringing", Some("bt")),
    )
    .unwrap();
    let ringing = transmits(&mut b);
    assert_eq!(as_response(&ringing[0].bytes).status, 180);
    let (tx, _) = run(&mut b, t0, t0 + Duration::from_secs(1));
    assert!(tx.is_empty());
    // An INVITE retransmission is answered with the latest provisional.
    let again = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKq1");
    let got = b.handle_incoming(
        t0 + ms(500),
        SipMessage::Request(again),
        Transport::Udp,
        addr(ALICE),
    );
    assert_eq!(got, Incoming::Matched(id));
    assert_eq!(transmits(&mut b)[0].bytes, ringing[0].bytes);
    assert!(events(&mut b).is_empty());
}

#[test]
fn ack_for_486_uses_the_invite_branch_and_is_resent_for_retransmitted_486() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a
        .send_request(t0, invite(7), Transport::Udp, addr(BOB))
        .unwrap();
    let inv_tx = transmits(&mut a).remove(0);
    let inv = as_request(&inv_tx.bytes);
    deliver(&mut b, t0, &inv_tx, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(
        t0 + ms(10),
        sid,
        make_response(&r, 486, "Busy Here", Some("bobtag")),
    )
    .unwrap();
    let busy = transmits(&mut b).remove(0);
    assert_eq!(
        deliver(&mut a, t0 + ms(20), &busy, BOB),
        Incoming::Matched(id)
    );
    assert_eq!(a.state(id), Some(TransactionState::Completed));
    let evs = events(&mut a);
    assert!(
        matches!(&evs[..], [TransactionEvent::Response { response, .. }] if response.status == 486)
    );
    let ack_tx = transmits(&mut a);
    assert_eq!(ack_tx.len(), 1);
    assert_eq!(ack_tx[0].destination, Destination::Addr(addr(BOB)));
    let ack = as_request(&ack_tx[0].bytes);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    let (av, iv) = (ack.headers.vias().unwrap(), inv.headers.vias().unwrap());
    assert_eq!(av.len(), 1);
    assert_eq!(av[0].branch(), iv[0].branch());
    assert_eq!(ack.headers.to().unwrap().tag(), Some("bobtag"));
    assert_eq!(ack.headers.get("From"), inv.headers.get("From"));
    assert_eq!(ack.headers.get("Call-ID"), inv.headers.get("Call-ID"));
    assert_eq!(ack.headers.get("CSeq"), Some("7 ACK"));
    assert_eq!(ack.headers.get("Route"), Some("<sip:proxy.example.com;lr>"));
    // The ACK is lost: Bob retransmits the 486 on Timer G, Alice re-sends the same ACK
    // without telling her TU again.
    let (g, _) = run(&mut b, t0 + ms(10), t0 + ms(600));
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].0, ms(500));
    assert_eq!(g[0].1.bytes, busy.bytes);
    deliver(&mut a, t0 + ms(600), &g[0].1, BOB);
    assert_eq!(transmits(&mut a), ack_tx);
    assert!(events(&mut a).is_empty());
    // Timer D (32 s over UDP) ends the client transaction.
    let (_, ev) = run(&mut a, t0 + ms(20), t0 + Duration::from_secs(60));
    assert_eq!(
        ev,
        vec![(Duration::from_secs(32), TransactionEvent::Terminated { id })]
    );
}

#[test]
fn server_retransmits_486_on_g_until_ack_then_confirmed_then_gone_after_t4() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKg1";
    b.handle_incoming(
        t0,
        SipMessage::Request(incoming_invite(via)),
        Transport::Udp,
        addr(ALICE),
    );
    let (id, r) = new_request_id(&events(&mut b));
    b.send_response(t0, id, make_response(&r, 486, "Busy Here", Some("bt")))
        .unwrap();
    let busy = transmits(&mut b).remove(0);
    assert_eq!(busy.destination, Destination::Addr(addr(ALICE)));
    let (tx, _) = run(&mut b, t0, t0 + Duration::from_secs(16));
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    // G: T1, 2T1, 4T1, then capped at T2.
    assert_eq!(times, vec![500, 1500, 3500, 7500, 11500, 15500]);
    assert!(tx.iter().all(|(_, t)| t.bytes == busy.bytes));
    // An INVITE retransmission in Completed gets the 486 again.
    let t = t0 + Duration::from_secs(16);
    assert_eq!(
        b.handle_incoming(
            t,
            SipMessage::Request(incoming_invite(via)),
            Transport::Udp,
            addr(ALICE)
        ),
        Incoming::Matched(id)
    );
    assert_eq!(transmits(&mut b)[0].bytes, busy.bytes);
    let ack = request(&format!(
        "ACK sip:bob@192.0.2.2 SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
         To: Bob <sip:bob@example.com>;tag=bt\nFrom: Alice <sip:alice@example.com>;tag=1928301774\n\
         Call-ID: call-1@192.0.2.1\nCSeq: 1 ACK\nContent-Length: 0\n\n"
    ));
    assert_eq!(
        b.handle_incoming(
            t,
            SipMessage::Request(ack.clone()),
            Transport::Udp,
            addr(ALICE)
        ),
        Incoming::Matched(id)
    );
    assert_eq!(b.state(id), Some(TransactionState::Confirmed));
    // The ACK is absorbed (not passed to the TU), G stops, and I = T4 ends it.
    assert!(events(&mut b).is_empty());
    b.handle_incoming(
        t + ms(10),
        SipMessage::Request(ack),
        Transport::Udp,
        addr(ALICE),
    );
    let (tx, ev) = run(&mut b, t, t + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(
        ev,
        vec![(Duration::from_secs(5), TransactionEvent::Terminated { id })]
    );
}

#[test]
fn server_timer_h_reports_a_missing_ack() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKh1");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Tcp, addr(ALICE));
    let (id, r) = new_request_id(&events(&mut b));
    b.send_response(t0, id, make_response(&r, 603, "Decline", Some("bt")))
        .unwrap();
    assert_eq!(transmits(&mut b).len(), 1);
    // TCP: no Timer G, but H still waits 64*T1 for the ACK.
    let (tx, ev) = run(&mut b, t0, t0 + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(
        ev[0],
        (Duration::from_secs(32), TransactionEvent::Timeout { id })
    );
}

/// Alice called Bob over UDP and Bob answered 200.
struct Answered {
    a: TransactionLayer,
    b: TransactionLayer,
    /// Bob's INVITE server transaction.
    sid: TransactionId,
    /// Alice's INVITE as sent.
    invite: Transmit,
    /// Bob's 200 as sent.
    ok: Transmit,
    t0: Instant,
}

fn answered_call() -> Answered {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    a.send_request(t0, invite(1), Transport::Udp, addr(BOB))
        .unwrap();
    let invite = transmits(&mut a).remove(0);
    deliver(&mut b, t0, &invite, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 200, "OK", Some("bt")))
        .unwrap();
    let ok = transmits(&mut b).remove(0);
    assert_eq!(b.state(sid), Some(TransactionState::Accepted));
    Answered {
        a,
        b,
        sid,
        invite,
        ok,
        t0,
    }
}

fn ack_for(ok: &Response, branch: &str) -> Request {
    request(&format!(
        "ACK sip:alice@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\n\
         Max-Forwards: 70\nTo: {}\nFrom: {}\nCall-ID: {}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        ok.headers.get("To").unwrap(),
        ok.headers.get("From").unwrap(),
        ok.headers.get("Call-ID").unwrap(),
    ))
}

#[test]
fn two_xx_is_retransmitted_t1_doubling_capped_at_t2_until_the_ack() {
    let Answered {
        mut a,
        mut b,
        sid,
        invite,
        ok,
        t0,
    } = answered_call();
    let (tx, _) = run(&mut b, t0, t0 + ms(8000));
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 1500, 3500, 7500]);
    assert!(tx.iter().all(|(_, t)| t.bytes == ok.bytes));
    // Alice hears every copy: the first moves her INVITE to Accepted, later ones are passed
    // up too (RFC 6026), and her UA answers with the ACK, a new transaction (new branch).
    let t = t0 + ms(8000);
    let cid = match deliver(&mut a, t, &ok, BOB) {
        Incoming::Matched(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.state(cid), Some(TransactionState::Accepted));
    deliver(&mut a, t, &tx[0].1, BOB);
    let statuses: Vec<u16> = events(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            TransactionEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![200, 200]);
    let mut ack = ack_for(&as_response(&ok.bytes), "unused");
    ack.headers.remove("Via");
    a.send_ack(t, &mut ack, Transport::Udp, addr(BOB)).unwrap();
    let ack_tx = transmits(&mut a).remove(0);
    assert_ne!(
        as_request(&ack_tx.bytes)
            .headers
            .top_via()
            .unwrap()
            .branch(),
        as_request(&invite.bytes)
            .headers
            .top_via()
            .unwrap()
            .branch()
    );
    assert_eq!(deliver(&mut b, t, &ack_tx, ALICE), Incoming::AckFor2xx(sid));
    assert!(
        matches!(&events(&mut b)[..], [TransactionEvent::AckFor2xx { invite, .. }] if *invite == sid)
    );
    // Re-sending the same ACK is byte-identical (its Via was stamped once).
    a.send_ack(t, &mut ack, Transport::Udp, addr(BOB)).unwrap();
    assert_eq!(transmits(&mut a)[0].bytes, ack_tx.bytes);
    // INVITE retransmissions are absorbed in Accepted (no response, nothing for the TU).
    assert_eq!(deliver(&mut b, t, &invite, ALICE), Incoming::Matched(sid));
    assert!(transmits(&mut b).is_empty());
    assert!(events(&mut b).is_empty());
    // No more 2xx, no NoAck; Timer L ends it at 64*T1.
    let (tx, ev) = run(&mut b, t0, t0 + Duration::from_secs(60));
    assert!(tx.is_empty(), "{tx:?}");
    assert_eq!(
        ev,
        vec![(
            Duration::from_secs(32),
            TransactionEvent::Terminated { id: sid }
        )]
    );
    // Alice's INVITE transaction leaves Accepted on Timer M (64*T1 after her first 2xx).
    let (_, ev) = run(&mut a, t0, t0 + Duration::from_secs(60));
    assert_eq!(
        ev,
        vec![(
            Duration::from_secs(40),
            TransactionEvent::Terminated { id: cid }
        )]
    );
}

#[test]
fn two_xx_without_ack_reports_no_ack_after_64_t1() {
    let Answered {
        mut b, sid, ok, t0, ..
    } = answered_call();
    let (tx, ev) = run(&mut b, t0, t0 + Duration::from_secs(60));
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(tx.iter().all(|(_, t)| t.bytes == ok.bytes));
    assert_eq!(
        ev,
        vec![
            (
                Duration::from_secs(32),
                TransactionEvent::NoAck { invite: sid }
            ),
            (
                Duration::from_secs(32),
                TransactionEvent::Terminated { id: sid }
            ),
        ]
    );
}

#[test]
fn ack_for_2xx_reusing_the_invite_branch_is_passed_up_too() {
    let Answered {
        mut b,
        sid,
        invite,
        ok,
        t0,
        ..
    } = answered_call();
    let branch = as_request(&invite.bytes)
        .headers
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .to_string();
    let ack = ack_for(&as_response(&ok.bytes), &branch);
    assert_eq!(
        b.handle_incoming(
            t0 + ms(100),
            SipMessage::Request(ack),
            Transport::Udp,
            addr(ALICE)
        ),
        Incoming::AckFor2xx(sid)
    );
    assert!(
        matches!(&events(&mut b)[..], [TransactionEvent::AckFor2xx { invite, .. }] if *invite == sid)
    );
    let (tx, _) = run(&mut b, t0, t0 + Duration::from_secs(60));
    assert!(tx.is_empty());
}

/// An RFC 2543 INVITE: the branch has no magic cookie.
fn rfc2543_request(method: &str, cseq_method: &str, to_tag: Option<&str>) -> Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    request(&format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=old1234\n\
         To: Bob <sip:bob@example.com>{to_tag}\n\
         From: Alice <sip:alice@example.com>;tag=a1\n\
         Call-ID: legacy@192.0.2.1\n\
         CSeq: 5 {cseq_method}\n\
         Content-Length: 0\n\n"
    ))
}

#[test]
fn rfc2543_requests_match_on_uri_tags_call_id_cseq_and_top_via() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let src = addr(ALICE);
    let inv = rfc2543_request("INVITE", "INVITE", None);
    let Incoming::NewTransaction(id) =
        b.handle_incoming(t0, SipMessage::Request(inv.clone()), Transport::Udp, src)
    else {
        panic!("expected a new transaction")
    };
    let (_, r) = new_request_id(&events(&mut b));
    b.send_response(t0, id, make_response(&r, 486, "Busy Here", Some("b2")))
        .unwrap();
    let busy = transmits(&mut b).remove(0);
    // The same INVITE again is a retransmission: the 486 goes out again.
    assert_eq!(
        b.handle_incoming(
            t0 + ms(100),
            SipMessage::Request(inv.clone()),
            Transport::Udp,
            src
        ),
        Incoming::Matched(id)
    );
    assert_eq!(transmits(&mut b)[0].bytes, busy.bytes);
    // A different CSeq is a different transaction.
    let mut other = inv.clone();
    other.headers.set("CSeq", "6 INVITE");
    assert!(matches!(
        b.handle_incoming(t0 + ms(100), SipMessage::Request(other), Transport::Udp, src),
        Incoming::NewTransaction(x) if x != id
    ));
    // So is one through a different top Via.
    let mut other = inv.clone();
    other
        .headers
        .set("Via", "SIP/2.0/UDP 192.0.2.9:5060;branch=old1234");
    assert!(matches!(
        b.handle_incoming(t0 + ms(100), SipMessage::Request(other), Transport::Udp, src),
        Incoming::NewTransaction(x) if x != id
    ));
    // The ACK carries the To tag of our 486 and matches the INVITE transaction.
    let wrong_ack = rfc2543_request("ACK", "ACK", Some("someone-else"));
    assert_eq!(
        b.handle_incoming(
            t0 + ms(200),
            SipMessage::Request(wrong_ack),
            Transport::Udp,
            src
        ),
        Incoming::StrayAck
    );
    let ack = rfc2543_request("ACK", "ACK", Some("b2"));
    assert_eq!(
        b.handle_incoming(t0 + ms(200), SipMessage::Request(ack), Transport::Udp, src),
        Incoming::Matched(id)
    );
    assert_eq!(b.state(id), Some(TransactionState::Confirmed));
}

#[test]
fn rfc2543_cancel_finds_its_invite() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let src = addr(ALICE);
    let inv = rfc2543_request("INVITE", "INVITE", None);
    let Incoming::NewTransaction(invite_id) =
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, src)
    else {
        panic!()
    };
    events(&mut b);
    let cancel = rfc2543_request("CANCEL", "CANCEL", None);
    let Incoming::NewTransaction(cancel_id) =
        b.handle_incoming(t0, SipMessage::Request(cancel), Transport::Udp, src)
    else {
        panic!()
    };
    assert_ne!(cancel_id, invite_id);
    assert!(matches!(
        &events(&mut b)[..],
        [TransactionEvent::Cancel { id, invite: Some(inv), .. }] if *id == cancel_id && *inv == invite_id
    ));
}

#[test]
fn cancel_matches_the_invite_server_transaction_and_gets_its_own() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let cid = a
        .send_request(t0, invite(3), Transport::Udp, addr(BOB))
        .unwrap();
    // CANCEL is only allowed once something provisional came back (RFC 3261 9.1).
    assert_eq!(a.send_cancel(t0, cid), Err(TxError::InvalidState));
    let inv = transmits(&mut a).remove(0);
    deliver(&mut b, t0, &inv, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 180, "Ringing", Some("bt")))
        .unwrap();
    deliver(&mut a, t0, &transmits(&mut b)[0], BOB);
    events(&mut a);
    let cancel_client = a.send_cancel(t0 + ms(10), cid).unwrap();
    assert_eq!(a.send_cancel(t0 + ms(10), cid), Err(TxError::InvalidState));
    let cancel_tx = transmits(&mut a).remove(0);
    let cancel = as_request(&cancel_tx.bytes);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.headers.get("CSeq"), Some("3 CANCEL"));
    assert_eq!(
        cancel.headers.top_via().unwrap(),
        as_request(&inv.bytes).headers.top_via().unwrap()
    );
    // Bob: the CANCEL is its own non-INVITE transaction and names the INVITE it cancels.
    let Incoming::NewTransaction(cancel_server) = deliver(&mut b, t0 + ms(10), &cancel_tx, ALICE)
    else {
        panic!()
    };
    let (creq, invite) = match &events(&mut b)[..] {
        [TransactionEvent::Cancel {
            id,
            invite,
            request,
        }] => {
            assert_eq!(*id, cancel_server);
            (request.clone(), *invite)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(invite, Some(sid));
    // Bob's TU: 200 to the CANCEL, 487 to the INVITE.
    b.send_response(
        t0 + ms(10),
        cancel_server,
        make_response(&creq, 200, "OK", Some("bt")),
    )
    .unwrap();
    b.send_response(
        t0 + ms(10),
        sid,
        make_response(&r, 487, "Request Terminated", Some("bt")),
    )
    .unwrap();
    let out = transmits(&mut b);
    assert_eq!(out.len(), 2);
    for t in &out {
        deliver(&mut a, t0 + ms(20), t, BOB);
    }
    let evs = events(&mut a);
    assert!(evs.iter().any(|e| matches!(e, TransactionEvent::Response { id, response } if *id == cancel_client && response.status == 200)));
    assert!(evs.iter().any(|e| matches!(e, TransactionEvent::Response { id, response } if *id == cid && response.status == 487)));
    // Alice ACKed the 487 with the INVITE's branch; Bob's INVITE transaction is Confirmed.
    let ack = transmits(&mut a).remove(0);
    assert_eq!(
        deliver(&mut b, t0 + ms(30), &ack, ALICE),
        Incoming::Matched(sid)
    );
    assert_eq!(b.state(sid), Some(TransactionState::Confirmed));
    // A CANCEL for nothing still gets a transaction, with no INVITE.
    let mut stray = creq.clone();
    stray
        .headers
        .set("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnothing");
    b.handle_incoming(t0, SipMessage::Request(stray), Transport::Udp, addr(ALICE));
    assert!(matches!(
        &events(&mut b)[..],
        [TransactionEvent::Cancel { invite: None, .. }]
    ));
}

#[test]
fn via_received_and_rport_are_filled_and_responses_follow_them() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    // A client behind a NAT: private sent-by, rport requested.
    let inv = incoming_invite("SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport");
    let nat = addr("203.0.113.5:40000");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, nat);
    let (id, r) = new_request_id(&events(&mut b));
    let top = r.headers.top_via().unwrap();
    assert_eq!(
        top.to_string(),
        "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport=40000;received=203.0.113.5"
    );
    b.send_response(t0, id, make_response(&r, 180, "Ringing", Some("x")))
        .unwrap();
    let out = transmits(&mut b).remove(0);
    assert_eq!(out.destination, Destination::Addr(nat));
    assert!(String::from_utf8_lossy(&out.bytes).contains("rport=40000;received=203.0.113.5"));
    // No rport, sent-by a name: received only, response to received at the sent-by port.
    let inv = incoming_invite("SIP/2.0/UDP pc.example.com:5070;branch=z9hG4bKname");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, nat);
    let (id, r) = new_request_id(&events(&mut b));
    assert_eq!(r.headers.top_via().unwrap().received(), Some("203.0.113.5"));
    b.send_response(t0, id, make_response(&r, 180, "Ringing", Some("x")))
        .unwrap();
    assert_eq!(
        transmits(&mut b)[0].destination,
        Destination::Addr(addr("203.0.113.5:5070"))
    );
    // Sent-by equal to the source: untouched. Over TCP the response uses the connection.
    let inv = incoming_invite("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKtcp");
    b.handle_incoming(
        t0,
        SipMessage::Request(inv),
        Transport::Tcp,
        addr("192.0.2.1:49152"),
    );
    let (id, r) = new_request_id(&events(&mut b));
    assert_eq!(r.headers.top_via().unwrap().received(), None);
    b.send_response(t0, id, make_response(&r, 180, "Ringing", Some("x")))
        .unwrap();
    let out = transmits(&mut b).remove(0);
    assert_eq!(out.transport, Transport::Tcp);
    assert_eq!(out.destination, Destination::Addr(addr("192.0.2.1:49152")));
}

#[test]
fn our_requests_carry_rport_and_foreign_responses_are_dropped() {
    let t0 = Instant::now();
    let mut a = layer(ALICE, 1);
    let id = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    let sent = as_request(&transmits(&mut a)[0].bytes);
    let via = sent.headers.top_via().unwrap();
    assert_eq!(sent.headers.vias().unwrap().len(), 1);
    assert!(via.branch().unwrap().starts_with("z9hG4bK"));
    assert_eq!(via.rport(), Some(siprtmp_core::sip::RPort::Requested));
    let mut resp = make_response(&sent, 200, "OK", Some("t"));
    assert_eq!(
        a.handle_incoming(
            t0,
            SipMessage::Response(resp.clone()),
            Transport::Udp,
            addr(BOB)
        ),
        Incoming::Matched(id)
    );
    // Same branch but another sent-by: misrouted (18.1.2).
    let mut a = layer(ALICE, 1);
    let id2 = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    let wrong = via.to_string().replace("192.0.2.1:5060", "192.0.2.66:5060");
    resp.headers.set("Via", &wrong);
    assert!(matches!(
        a.handle_incoming(
            t0,
            SipMessage::Response(resp.clone()),
            Transport::Udp,
            addr(BOB)
        ),
        Incoming::Dropped(_)
    ));
    // Our sent-by but the CSeq method differs: no match (17.1.3).
    resp.headers.set("Via", &via.to_string());
    resp.headers.set("CSeq", "1 INVITE");
    assert!(matches!(
        a.handle_incoming(t0, SipMessage::Response(resp), Transport::Udp, addr(BOB)),
        Incoming::Dropped(_)
    ));
    assert_eq!(a.state(id2), Some(TransactionState::Trying));
}

#[test]
fn custom_t1_and_t2_are_honoured() {
    let timers = TimerConfig {
        t1: ms(100),
        t2: ms(1000),
        t4: ms(2000),
        ..TimerConfig::default()
    };
    let t0 = Instant::now();
    let mut a = layer_with(ALICE, 1, timers);
    let id = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    transmits(&mut a);
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(20));
    let mut times = vec![Duration::ZERO];
    times.extend(tx.iter().map(|(t, _)| *t));
    assert_eq!(
        gaps(&times),
        vec![100, 200, 400, 800, 1000, 1000, 1000, 1000]
    );
    assert_eq!(ev[0], (ms(6400), TransactionEvent::Timeout { id }));
    let id = a
        .send_request(t0, invite(1), Transport::Udp, addr(BOB))
        .unwrap();
    transmits(&mut a);
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(20));
    let mut times = vec![Duration::ZERO];
    times.extend(tx.iter().map(|(t, _)| *t));
    assert_eq!(gaps(&times), vec![100, 200, 400, 800, 1600, 3200]);
    assert_eq!(ev[0], (ms(6400), TransactionEvent::Timeout { id }));
}

#[test]
fn missing_mandatory_headers_get_a_stateless_400() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let mut inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbad");
    inv.headers.remove("Call-ID");
    assert_eq!(
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
        Incoming::Rejected(400)
    );
    let out = transmits(&mut b);
    let resp = as_response(&out[0].bytes);
    assert_eq!(resp.status, 400);
    assert!(resp.headers.to().unwrap().tag().is_some());
    assert_eq!(out[0].destination, Destination::Addr(addr(ALICE)));
    assert_eq!(out[0].transaction, None);
    assert!(b.is_empty() && events(&mut b).is_empty());
    // No Via: nowhere to answer. A bad ACK: never answered.
    let mut inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbad");
    inv.headers.remove("Via");
    assert!(matches!(
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
        Incoming::Dropped(_)
    ));
    let mut ack = rfc2543_request("ACK", "ACK", None);
    ack.headers.remove("From");
    assert!(matches!(
        b.handle_incoming(t0, SipMessage::Request(ack), Transport::Udp, addr(ALICE)),
        Incoming::Dropped(_)
    ));
    assert!(transmits(&mut b).is_empty());
    // Max-Forwards is not the layer's business.
    let mut inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmf");
    inv.headers.remove("Max-Forwards");
    assert!(matches!(
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
        Incoming::NewTransaction(_)
    ));
}

#[test]
fn a_full_layer_answers_503_statelessly_and_refuses_new_client_transactions() {
    let t0 = Instant::now();
    let mut cfg = TransactionConfig::new(sent_by_of(addr(BOB)));
    cfg.max_transactions = 2;
    let mut b = TransactionLayer::new(cfg, 3);
    for i in 0..2 {
        let inv = incoming_invite(&format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfull{i}"));
        assert!(matches!(
            b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
            Incoming::NewTransaction(_)
        ));
    }
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfull2");
    assert_eq!(
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
        Incoming::Rejected(503)
    );
    assert_eq!(as_response(&transmits(&mut b)[0].bytes).status, 503);
    assert_eq!(b.len(), 2);
    // Retransmissions of existing transactions still match.
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfull1");
    assert!(matches!(
        b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE)),
        Incoming::Matched(_)
    ));
    assert_eq!(
        b.send_request(t0, options(1), Transport::Udp, addr(ALICE)),
        Err(TxError::TooManyTransactions)
    );
}

#[test]
fn api_misuse_is_an_error_and_transport_errors_end_transactions() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let mut ack = rfc2543_request("ACK", "ACK", None);
    assert_eq!(
        a.send_request(t0, ack.clone(), Transport::Udp, addr(BOB)),
        Err(TxError::WrongMethod)
    );
    ack.headers.set("CSeq", "5 BYE");
    let mut bye = ack.clone();
    bye.method = Method::Bye;
    bye.headers.remove("From");
    assert_eq!(
        a.send_request(t0, bye, Transport::Udp, addr(BOB)),
        Err(TxError::BadMessage("From"))
    );
    let id = a
        .send_request(t0, options(1), Transport::Udp, addr(BOB))
        .unwrap();
    let req = transmits(&mut a).remove(0);
    let r = as_request(&req.bytes);
    assert_eq!(
        a.send_response(t0, id, make_response(&r, 200, "OK", None)),
        Err(TxError::WrongKind)
    );
    assert_eq!(a.send_cancel(t0, id), Err(TxError::WrongKind));
    assert_eq!(
        a.send_response(t0, TransactionId(999), make_response(&r, 200, "OK", None)),
        Err(TxError::UnknownTransaction)
    );
    a.handle_transport_error(t0, id);
    assert_eq!(
        events(&mut a),
        vec![
            TransactionEvent::TransportError { id },
            TransactionEvent::Terminated { id }
        ]
    );
    assert!(a.is_empty());
    // Server: a second final response is refused; a final over TCP ends a non-INVITE
    // transaction at once (Timer J = 0).
    deliver(
        &mut b,
        t0,
        &Transmit {
            transport: Transport::Tcp,
            ..req
        },
        ALICE,
    );
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 200, "OK", Some("x")))
        .unwrap();
    assert!(matches!(&events(&mut b)[..], [TransactionEvent::Terminated { id }] if *id == sid));
    assert_eq!(
        b.send_response(t0, sid, make_response(&r, 200, "OK", Some("x"))),
        Err(TxError::UnknownTransaction)
    );
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtwice");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Udp, addr(ALICE));
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 486, "Busy Here", Some("x")))
        .unwrap();
    assert_eq!(
        b.send_response(t0, sid, make_response(&r, 200, "OK", Some("x"))),
        Err(TxError::InvalidState)
    );
    assert_eq!(
        b.send_response(t0, sid, make_response(&r, 99, "Odd", Some("x"))),
        Err(TxError::BadMessage("status"))
    );
}

/// One step of the random interleaving.
#[derive(Debug, Clone)]
enum Op {
    /// Alice starts an INVITE or an OPTIONS transaction.
    Send { invite: bool, tcp: bool },
    /// The network delivers message `n` (modulo what is in flight).
    Deliver(usize),
    /// ... delivers a copy and keeps the original in flight.
    Duplicate(usize),
    /// ... loses it.
    Drop(usize),
    /// ... delivers it to the wrong side (a reflected or forged message).
    Reflect(usize),
    /// Bob's TU answers one of its pending requests.
    Answer { n: usize, status: u16 },
    /// Alice cancels one of her INVITEs.
    Cancel(usize),
    /// The driver reports a send failure.
    Fail(usize),
    /// Virtual time passes.
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(invite, tcp)| Op::Send { invite, tcp }),
        any::<usize>().prop_map(Op::Deliver),
        any::<usize>().prop_map(Op::Duplicate),
        any::<usize>().prop_map(Op::Drop),
        any::<usize>().prop_map(Op::Reflect),
        (
            any::<usize>(),
            prop::sample::select(vec![100u16, 180, 183, 200, 202, 302, 486, 487, 603])
        )
            .prop_map(|(n, status)| Op::Answer { n, status }),
        any::<usize>().prop_map(Op::Cancel),
        any::<usize>().prop_map(Op::Fail),
        (1u16..5000).prop_map(Op::Advance),
    ]
}

/// Alice (client side), Bob (server side) and a lossy, reordering, duplicating network.
struct World {
    now: Instant,
    a: TransactionLayer,
    b: TransactionLayer,
    /// In flight: (to Bob?, transmit).
    wire: Vec<(bool, Transmit)>,
    /// Bob's server transactions awaiting his TU.
    pending: Vec<(TransactionId, Request)>,
    /// Alice's INVITE client transactions (some may be gone).
    invites: Vec<TransactionId>,
    /// All transaction ids either side created.
    ids: Vec<TransactionId>,
    seq: u32,
}

impl World {
    fn new() -> World {
        World {
            now: Instant::now(),
            a: layer(ALICE, 11),
            b: layer(BOB, 12),
            wire: Vec::new(),
            pending: Vec::new(),
            invites: Vec::new(),
            ids: Vec::new(),
            seq: 0,
        }
    }

    /// Moves outputs onto the wire and lets the TUs react to events.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.a.poll_transmit() {
                self.wire.push((true, t));
                progressed = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                self.wire.push((false, t));
                progressed = true;
            }
            while let Some(e) = self.a.poll_event() {
                progressed = true;
                if let TransactionEvent::Request { id, request, .. }
                | TransactionEvent::Cancel { id, request, .. } = &e
                {
                    // Alice expects no requests (reflections): she refuses them at once.
                    let no = make_response(request, 481, "No", Some("at"));
                    self.a.send_response(self.now, *id, no).unwrap();
                }
                if let TransactionEvent::Response { response, .. } = e {
                    let is_invite = response.headers.cseq().map(|c| c.method) == Ok(Method::Invite);
                    if is_invite && (200..300).contains(&response.status) {
                        // Alice's UA core ACKs every 2xx.
                        let mut ack = ack_for(&response, "x");
                        let seq = response.headers.cseq().unwrap().seq;
                        ack.headers.set("CSeq", &format!("{seq} ACK"));
                        ack.headers.remove("Via");
                        self.a
                            .send_ack(self.now, &mut ack, Transport::Udp, addr(BOB))
                            .unwrap();
                    }
                }
            }
            while let Some(e) = self.b.poll_event() {
                progressed = true;
                match e {
                    TransactionEvent::Request { id, request, .. }
                    | TransactionEvent::Cancel { id, request, .. } => {
                        self.ids.push(id);
                        self.pending.push((id, request));
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn deliver(&mut self, to_b: bool, t: &Transmit) {
        let Ok(msg) = parse_datagram(&t.bytes) else {
            panic!("the layer sent unparseable bytes");
        };
        if to_b {
            self.b
                .handle_incoming(self.now, msg, t.transport, addr(ALICE));
        } else {
            self.a
                .handle_incoming(self.now, msg, t.transport, addr(BOB));
        }
    }

    fn answer(&mut self, n: usize, status: u16) {
        if self.pending.is_empty() {
            return;
        }
        let i = n % self.pending.len();
        let (id, req) = self.pending[i].clone();
        let status = if req.method == Method::Cancel {
            200
        } else {
            status
        };
        let _ = self
            .b
            .send_response(self.now, id, make_response(&req, status, "X", Some("bt")));
        if status >= 200 {
            self.pending.swap_remove(i);
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Send { invite: inv, tcp } => {
                self.seq += 1;
                let req = if inv {
                    invite(self.seq)
                } else {
                    options(self.seq)
                };
                let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                let id = self
                    .a
                    .send_request(self.now, req, transport, addr(BOB))
                    .unwrap();
                self.ids.push(id);
                if inv {
                    self.invites.push(id);
                }
            }
            Op::Deliver(n) | Op::Duplicate(n) | Op::Drop(n) | Op::Reflect(n)
                if !self.wire.is_empty() =>
            {
                let i = n % self.wire.len();
                let (to_b, t) = self.wire[i].clone();
                match op {
                    Op::Deliver(_) => {
                        self.wire.remove(i);
                        self.deliver(to_b, &t);
                    }
                    Op::Duplicate(_) => self.deliver(to_b, &t),
                    Op::Drop(_) => {
                        self.wire.remove(i);
                    }
                    _ => self.deliver(!to_b, &t),
                }
            }
            Op::Answer { n, status } => self.answer(n, status),
            Op::Cancel(n) if !self.invites.is_empty() => {
                let id = self.invites[n % self.invites.len()];
                if let Ok(c) = self.a.send_cancel(self.now, id) {
                    self.ids.push(c);
                }
            }
            Op::Fail(n) if !self.ids.is_empty() => {
                let id = self.ids[n % self.ids.len()];
                self.a.handle_transport_error(self.now, id);
                self.b.handle_transport_error(self.now, id);
            }
            Op::Advance(d) => {
                self.now += ms(u64::from(d));
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            _ => {}
        }
        self.pump();
    }

    /// Everyone behaves from now on: Bob answers everything, the network delivers
    /// everything, time runs. Then every transaction must be gone.
    fn settle(&mut self) {
        for _ in 0..250 {
            while !self.pending.is_empty() {
                self.answer(0, 486);
            }
            self.pump();
            let mut rounds = 0;
            while !self.wire.is_empty() && rounds < 10_000 {
                let (to_b, t) = self.wire.remove(0);
                self.deliver(to_b, &t);
                self.pump();
                rounds += 1;
            }
            self.now += Duration::from_secs(1);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.pump();
        }
        self.now += Duration::from_secs(600);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_interleavings_never_panic_and_always_drain(ops in prop::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        for op in ops {
            w.apply(op);
        }
        w.settle();
        prop_assert!(w.a.is_empty(), "Alice still holds {} transactions", w.a.len());
        prop_assert!(w.b.is_empty(), "Bob still holds {} transactions", w.b.len());
        prop_assert_eq!(w.a.poll_timeout(), None);
        prop_assert_eq!(w.b.poll_timeout(), None);
    }
}
