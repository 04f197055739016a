//! One whole INVITE transaction per iteration, client and server transaction layers talking
//! in memory: INVITE, 100, 180, 200, ACK (every message serialised and parsed, as a driver
//! would), then virtual time runs past Timers L and M so both sides forget it. Prints
//! transactions per second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use siprtmp_core::sip::{
    make_response, parse_datagram, sent_by_of, Request, SipMessage, TransactionConfig,
    TransactionEvent, TransactionLayer, Transport,
};

const INVITE: &str = "INVITE sip:bob@192.0.2.2 SIP/2.0\r\n\
    Max-Forwards: 70\r\n\
    To: Bob <sip:bob@example.com>\r\n\
    From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@pc33.example.com\r\n\
    CSeq: 314159 INVITE\r\n\
    Contact: <sip:alice@192.0.2.1>\r\n\
    Content-Type: application/sdp\r\n\
    Content-Length: 0\r\n\r\n";

/// The client side (Alice), the server side (Bob) and the virtual clock.
struct Pair {
    a: TransactionLayer,
    b: TransactionLayer,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    invite: Request,
    now: Instant,
}

impl Pair {
    fn new() -> Pair {
        let a_addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let b_addr: SocketAddr = "192.0.2.2:5060".parse().unwrap();
        let SipMessage::Request(invite) = parse_datagram(INVITE.as_bytes()).unwrap() else {
            unreachable!()
        };
        Pair {
            a: TransactionLayer::new(TransactionConfig::new(sent_by_of(a_addr)), 1),
            b: TransactionLayer::new(TransactionConfig::new(sent_by_of(b_addr)), 2),
            a_addr,
            b_addr,
            invite,
            now: Instant::now(),
        }
    }

    /// Carries everything Alice sent to Bob and back, parsing each datagram.
    fn a_to_b(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            let msg = parse_datagram(&t.bytes).unwrap();
            self.b
                .handle_incoming(self.now, msg, t.transport, self.a_addr);
        }
    }

    fn b_to_a(&mut self) {
        while let Some(t) = self.b.poll_transmit() {
            let msg = parse_datagram(&t.bytes).unwrap();
            self.a
                .handle_incoming(self.now, msg, t.transport, self.b_addr);
        }
    }

    /// One INVITE transaction from start to forgotten. Returns the number of events seen.
    fn call(&mut self) -> usize {
        let mut seen = 0;
        self.a
            .send_request(self.now, self.invite.clone(), Transport::Udp, self.b_addr)
            .unwrap();
        self.a_to_b();
        let Some(TransactionEvent::Request { id, request, .. }) = self.b.poll_event() else {
            panic!("Bob did not get the INVITE")
        };
        for (status, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
            let tag = (status != 100).then_some("bobtag");
            self.b
                .send_response(self.now, id, make_response(&request, status, reason, tag))
                .unwrap();
        }
        self.b_to_a();
        let mut ok = None;
        while let Some(e) = self.a.poll_event() {
            seen += 1;
            if let TransactionEvent::Response { response, .. } = e {
                if response.status == 200 {
                    ok = Some(response);
                }
            }
        }
        // Alice's UA core: the ACK for the 2xx.
        let ok = ok.expect("Alice got the 200");
        let mut ack = self.invite.clone();
        ack.method = siprtmp_core::sip::Method::Ack;
        ack.headers.set("To", ok.headers.get("To").unwrap());
        ack.headers.set("CSeq", "314159 ACK");
        ack.raw = None;
        self.a
            .send_ack(self.now, &mut ack, Transport::Udp, self.b_addr)
            .unwrap();
        self.a_to_b();
        while let Some(e) = self.b.poll_event() {
            seen += 1;
            debug_assert!(matches!(e, TransactionEvent::AckFor2xx { .. }));
        }
        // Past Timers L and M: both transactions end.
        self.now += Duration::from_secs(40);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        while self.a.poll_event().is_some() || self.b.poll_event().is_some() {
            seen += 1;
        }
        // Nothing is left to send: the ACK stopped Bob's 2xx retransmissions.
        debug_assert!(self.b.poll_transmit().is_none());
        debug_assert!(self.a.is_empty() && self.b.is_empty());
        seen
    }
}

fn invite_transaction(c: &mut Criterion) {
    let mut pair = Pair::new();
    let mut group = c.benchmark_group("sip_transaction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invite_100_180_200_ack_client_and_server", |b| {
        b.iter(|| pair.call())
    });
    group.finish();

    let mut pair = Pair::new();
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        pair.call();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sip_transaction: {:.0} INVITE transactions per second (client + server layers, \
         5 messages each, serialised and parsed), {:.2} us each",
        rounds as f64 / secs,
        secs * 1e6 / rounds as f64
    );
}

// `criterion_group!` defines a `pub fn` without a doc comment (and an attribute on the macro call
// does not reach it): inside a private module the function is not public, so needs none.
mod group {
    use super::*;
    criterion_group!(benches, invite_transaction);
}

criterion_main!(group::benches);
