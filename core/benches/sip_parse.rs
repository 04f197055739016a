//! Parsing speed of the SIP message layer: a typical INVITE with an SDP offer, as a UDP
//! datagram and through the TCP stream framer, plus reading the fields a transaction layer
//! needs. Prints messages per second (criterion's throughput plus a plain summary line).

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, Criterion, Throughput};
use siprtmp_core::sip::{parse_datagram, StreamFramer};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: siprtmp-bench/0.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 241\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n";

fn benches(c: &mut Criterion) {
    // The whole buffer is one message: nothing may be left over for the stream case.
    let m = parse_datagram(INVITE).unwrap();
    assert_eq!(m.raw().unwrap().len(), INVITE.len());
    let mut g = c.benchmark_group("sip_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_datagram", |b| {
        b.iter(|| parse_datagram(black_box(INVITE)).unwrap())
    });
    g.bench_function("invite_datagram_and_accessors", |b| {
        b.iter(|| {
            let m = parse_datagram(black_box(INVITE)).unwrap();
            let h = m.headers();
            (
                h.top_via().unwrap(),
                h.cseq().unwrap(),
                h.from().unwrap(),
                h.call_id().unwrap().len(),
            )
        })
    });
    g.bench_function("invite_stream_framer", |b| {
        let mut framer = StreamFramer::default();
        let mut buf = BytesMut::with_capacity(INVITE.len());
        b.iter(|| {
            buf.extend_from_slice(black_box(INVITE));
            framer.push(&mut buf).unwrap().unwrap()
        })
    });
    g.finish();
}

/// A plain messages-per-second figure, independent of criterion's report format.
fn summary() {
    let n = 50_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(parse_datagram(black_box(INVITE)).unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sip_parse: INVITE+SDP ({} bytes) datagram parse: {:.0} messages/s",
        INVITE.len(),
        n as f64 / secs
    );
}

// `criterion_group!` defines a `pub fn` without a doc comment (and an attribute on the macro call
// does not reach it): inside a private module the function is not public, so needs none.
mod group {
    use super::*;
    criterion_group!(sip, benches);
}

fn main() {
    group::sip();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
