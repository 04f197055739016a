//! The cost SRTP adds per media packet: protecting and unprotecting a 20 ms G.711 packet
//! (12-byte RTP header, 160 bytes of payload) with AES_CM_128_HMAC_SHA1_80, in place, as the
//! gateway does on every packet of a secure call. Prints nanoseconds per packet
//! (criterion's report plus a plain summary line).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use siprtmp_core::srtp::{MasterKey, SrtpContext, Suite};

const PAYLOAD: usize = 160;
const TAG: usize = 10;

fn key() -> MasterKey {
    let bytes: Vec<u8> = (0..MasterKey::LEN as u8).collect();
    MasterKey::from_concatenated(&bytes).unwrap()
}

/// A packet with sequence `seq`, room for the tag after it.
fn packet(buf: &mut [u8; 12 + PAYLOAD + TAG], seq: u16) {
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    buf[12..12 + PAYLOAD].fill(0xd5);
}

/// One round: protect a packet with the sender's context, unprotect it with the receiver's.
fn round(tx: &mut SrtpContext, rx: &mut SrtpContext, buf: &mut [u8; 12 + PAYLOAD + TAG], seq: u16) {
    packet(buf, seq);
    let n = tx.protect(buf, 12 + PAYLOAD).unwrap();
    rx.unprotect(&mut buf[..n]).unwrap();
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("protect_160", |b| {
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key());
        let mut buf = [0u8; 12 + PAYLOAD + TAG];
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            packet(&mut buf, seq);
            tx.protect(black_box(&mut buf), 12 + PAYLOAD).unwrap()
        })
    });
    g.bench_function("protect_and_unprotect_160", |b| {
        let (mut tx, mut rx) = (
            SrtpContext::new(Suite::AesCm128HmacSha1_80, &key()),
            SrtpContext::new(Suite::AesCm128HmacSha1_80, &key()),
        );
        let mut buf = [0u8; 12 + PAYLOAD + TAG];
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            round(&mut tx, &mut rx, black_box(&mut buf), seq);
        })
    });
    g.finish();
}

/// A plain nanoseconds-per-packet figure, independent of criterion's report format.
fn summary() {
    let (mut tx, mut rx) = (
        SrtpContext::new(Suite::AesCm128HmacSha1_80, &key()),
        SrtpContext::new(Suite::AesCm128HmacSha1_80, &key()),
    );
    let mut buf = [0u8; 12 + PAYLOAD + TAG];
    let n = 200_000u32;
    let start = Instant::now();
    for i in 0..n {
        round(&mut tx, &mut rx, black_box(&mut buf), i as u16);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("srtp: protect + unprotect of a 160-byte-payload packet: {ns:.0} ns");
}

// `criterion_group!` defines a `pub fn` without a doc comment: inside a private module the
// function is not public, so needs none.
mod group {
    use super::*;
    criterion_group!(srtp, benches);
}

fn main() {
    group::srtp();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
