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
    to.handle_incoming(now, parse_datagram(&t.bytes).unwrap(), t.transport, addr(from))
}

fn gaps(times: &[Duration]) -> Vec<u64> {
    times.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect()
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
    let id = a.send_request(t0, invite(1), Transport::Udp, addr(BOB)).unwrap();
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
    let id = a.send_request(t0, invite(1), Transport::Tcp, addr(BOB)).unwrap();
    let first = transmits(&mut a);
    assert_eq!(first.len(), 1);
    assert!(String::from_utf8_lossy(&first[0].bytes).contains("Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK"));
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(100));
    assert!(tx.is_empty());
    assert_eq!(ev[0], (Duration::from_secs(32), TransactionEvent::Timeout { id }));
}

#[test]
fn non_invite_client_retransmits_capped_at_t2_and_times_out_on_f() {
    let t0 = Instant::now();
    let mut a = layer(ALICE, 1);
    let id = a.send_request(t0, options(1), Transport::Udp, addr(BOB)).unwrap();
    assert_eq!(transmits(&mut a).len(), 1);
    let (tx, ev) = run(&mut a, t0, t0 + Duration::from_secs(100));
    let mut times = vec![Duration::ZERO];
    times.extend(tx.iter().map(|(t, _)| *t));
    // E: 500, 1000, 2000, then T2 = 4000 ms until F at 32 s (last send at 31.5 s).
    assert_eq!(
        gaps(&times),
        vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]
    );
    assert_eq!(ev[0], (Duration::from_secs(32), TransactionEvent::Timeout { id }));
}

#[test]
fn non_invite_client_retransmits_every_t2_once_proceeding_and_k_ends_it() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a.send_request(t0, options(1), Transport::Udp, addr(BOB)).unwrap();
    let req = transmits(&mut a).remove(0);
    deliver(&mut b, t0, &req, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 183, "Progress", Some("b"))).unwrap();
    deliver(&mut a, t0, &transmits(&mut b)[0], BOB);
    assert_eq!(a.state(id), Some(TransactionState::Proceeding));
    // The E already armed (T1) fires, then every T2.
    let (tx, _) = run(&mut a, t0, t0 + Duration::from_secs(10));
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 4500, 8500]);
    // A final response completes it; K = T4 later it is gone; a retransmitted final is
    // absorbed meanwhile.
    let t = t0 + Duration::from_secs(10);
    b.send_response(t, sid, make_response(&r, 200, "OK", Some("b"))).unwrap();
    let ok = transmits(&mut b).remove(0);
    deliver(&mut a, t, &ok, BOB);
    assert_eq!(a.state(id), Some(TransactionState::Completed));
    assert!(events(&mut a).iter().any(|e| matches!(e, TransactionEvent::Response { response, .. } if response.status == 200)));
    assert_eq!(deliver(&mut a, t + ms(100), &ok, BOB), Incoming::Matched(id));
    assert!(events(&mut a).is_empty());
    let (tx, ev) = run(&mut a, t, t + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(ev, vec![(Duration::from_secs(5), TransactionEvent::Terminated { id })]);
}

#[test]
fn provisional_response_stops_invite_retransmissions() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a.send_request(t0, invite(1), Transport::Udp, addr(BOB)).unwrap();
    let inv = transmits(&mut a).remove(0);
    assert!(matches!(deliver(&mut b, t0, &inv, ALICE), Incoming::NewTransaction(_)));
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
    assert!(matches!(&events(&mut a)[..], [TransactionEvent::Response { response, .. }] if response.status == 100));
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
    b.send_response(t0 + ms(150), id, make_response(&r, 180, "Ringing", Some("bt")))
        .unwrap();
    let ringing = transmits(&mut b);
    assert_eq!(as_response(&ringing[0].bytes).status, 180);
    let (tx, _) = run(&mut b, t0, t0 + Duration::from_secs(1));
    assert!(tx.is_empty());
    // An INVITE retransmission is answered with the latest provisional.
    let again = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKq1");
    let got = b.handle_incoming(t0 + ms(500), SipMessage::Request(again), Transport::Udp, addr(ALICE));
    assert_eq!(got, Incoming::Matched(id));
    assert_eq!(transmits(&mut b)[0].bytes, ringing[0].bytes);
    assert!(events(&mut b).is_empty());
}

#[test]
fn ack_for_486_uses_the_invite_branch_and_is_resent_for_retransmitted_486() {
    let t0 = Instant::now();
    let (mut a, mut b) = (layer(ALICE, 1), layer(BOB, 2));
    let id = a.send_request(t0, invite(7), Transport::Udp, addr(BOB)).unwrap();
    let inv_tx = transmits(&mut a).remove(0);
    let inv = as_request(&inv_tx.bytes);
    deliver(&mut b, t0, &inv_tx, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0 + ms(10), sid, make_response(&r, 486, "Busy Here", Some("bobtag")))
        .unwrap();
    let busy = transmits(&mut b).remove(0);
    assert_eq!(deliver(&mut a, t0 + ms(20), &busy, BOB), Incoming::Matched(id));
    assert_eq!(a.state(id), Some(TransactionState::Completed));
    let evs = events(&mut a);
    assert!(matches!(&evs[..], [TransactionEvent::Response { response, .. }] if response.status == 486));
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
    assert_eq!(ev, vec![(Duration::from_secs(32), TransactionEvent::Terminated { id })]);
}

#[test]
fn server_retransmits_486_on_g_until_ack_then_confirmed_then_gone_after_t4() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKg1";
    b.handle_incoming(t0, SipMessage::Request(incoming_invite(via)), Transport::Udp, addr(ALICE));
    let (id, r) = new_request_id(&events(&mut b));
    b.send_response(t0, id, make_response(&r, 486, "Busy Here", Some("bt"))).unwrap();
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
        b.handle_incoming(t, SipMessage::Request(incoming_invite(via)), Transport::Udp, addr(ALICE)),
        Incoming::Matched(id)
    );
    assert_eq!(transmits(&mut b)[0].bytes, busy.bytes);
    let ack = request(&format!(
        "ACK sip:bob@192.0.2.2 SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
         To: Bob <sip:bob@example.com>;tag=bt\nFrom: Alice <sip:alice@example.com>;tag=1928301774\n\
         Call-ID: call-1@192.0.2.1\nCSeq: 1 ACK\nContent-Length: 0\n\n"
    ));
    assert_eq!(
        b.handle_incoming(t, SipMessage::Request(ack.clone()), Transport::Udp, addr(ALICE)),
        Incoming::Matched(id)
    );
    assert_eq!(b.state(id), Some(TransactionState::Confirmed));
    // The ACK is absorbed (not passed to the TU), G stops, and I = T4 ends it.
    assert!(events(&mut b).is_empty());
    b.handle_incoming(t + ms(10), SipMessage::Request(ack), Transport::Udp, addr(ALICE));
    let (tx, ev) = run(&mut b, t, t + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(ev, vec![(Duration::from_secs(5), TransactionEvent::Terminated { id })]);
}

#[test]
fn server_timer_h_reports_a_missing_ack() {
    let t0 = Instant::now();
    let mut b = layer(BOB, 2);
    let inv = incoming_invite("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKh1");
    b.handle_incoming(t0, SipMessage::Request(inv), Transport::Tcp, addr(ALICE));
    let (id, r) = new_request_id(&events(&mut b));
    b.send_response(t0, id, make_response(&r, 603, "Decline", Some("bt"))).unwrap();
    assert_eq!(transmits(&mut b).len(), 1);
    // TCP: no Timer G, but H still waits 64*T1 for the ACK.
    let (tx, ev) = run(&mut b, t0, t0 + Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(ev[0], (Duration::from_secs(32), TransactionEvent::Timeout { id }));
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
    a.send_request(t0, invite(1), Transport::Udp, addr(BOB)).unwrap();
    let invite = transmits(&mut a).remove(0);
    deliver(&mut b, t0, &invite, ALICE);
    let (sid, r) = new_request_id(&events(&mut b));
    b.send_response(t0, sid, make_response(&r, 200, "OK", Some("bt"))).unwrap();
    let ok = transmits(&mut b).remove(0);
    assert_eq!(b.state(sid), Some(TransactionState::Accepted));
    Answered { a, b, sid, invite, ok, t0 }
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
    let Answered { mut a, mut b, sid, invite, ok, t0 } = answered_call();
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
        as_request(&ack_tx.bytes).headers.top_via().unwrap().branch(),
        as_request(&invite.bytes).headers.top_via().unwrap().branch()
    );
    assert_eq!(deliver(&mut b, t, &ack_tx, ALICE), Incoming::AckFor2xx(sid));
    assert!(matches!(&events(&mut b)[..], [TransactionEvent::AckFor2xx { invite, .. }] if *invite == sid));
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
    assert_eq!(ev, vec![(Duration::from_secs(32), TransactionEvent::Terminated { id: sid })]);
    // Alice's INVITE transaction leaves Accepted on Timer M (64*T1 after her first 2xx).
    let (_, ev) = run(&mut a, t0, t0 + Duration::from_secs(60));
    assert_eq!(ev, vec![(Duration::from_secs(40), TransactionEvent::Terminated { id: cid })]);
}

#[test]
fn two_xx_without_ack_reports_no_ack_after_64_t1() {
    let Answered { mut b, sid, ok, t0, .. } = answered_call();
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
            (Duration::from_secs(32), TransactionEvent::NoAck { invite: sid }),
            (Duration::from_secs(32), TransactionEvent::Terminated { id: sid }),
        ]
    );
}
