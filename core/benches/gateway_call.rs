//! Gateway calls in memory: `CALLS` RTMP clients, each in a Speex 16 kHz call through the node
//! to one far end that echoes every RTP datagram (shared RTP ports, merged writes of 100 ms: the
//! configuration bench-compare finds cheapest), a 20 ms audio frame from each client per
//! round. One iteration is one second of every call: 50 frames in from each client, 50 RTP
//! datagrams out and 50 echoes back in, the node's timers (merged writes, RTCP) as they fall
//! due. Prints the node's cost per call-second beside criterion's figure.
//!
//! Criterion's time includes the in-memory clients and far end (RTMP decoding on the client
//! side, the far end's SIP stack). For the node alone, count instructions with callgrind:
//!
//! ```sh
//! SIPRTMP_BENCH_SECONDS=5 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='gateway_call::measured_seconds' target/release/deps/gateway_call-<hash>
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep 'Node::handle'
//! ```
//!
//! and divide `Node::handle`'s inclusive count by `CALLS` times the seconds.
//!
//! For the cache misses that per-call state costs with many calls taking turns, set
//! `SIPRTMP_BENCH_CALLS=300` and add `--cache-sim=yes --LL=524288,8,64` (a 512 KiB second
//! level), collecting `Node::handle` and `Node::poll_output`; a run of 0 seconds gives the
//! set-up's share to subtract (the full recipe is in bench-compare's
//! `results/2026-12-06-gateway-cache-misses/README.md`).

#[path = "../tests/support/gateway_world.rs"]
mod gateway_world;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use gateway_world::{call_as, World};
use siprtmp_core::node::Input;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};

const CALLS: usize = 100;
const FRAME_EVERY: Duration = Duration::from_millis(20);
const FRAMES_PER_SECOND: u32 = 50;

/// `calls` established calls and their clients' indexes.
fn setup(calls: usize) -> (World, Vec<usize>) {
    let mut w =
        World::with_options((23000, 23003), Some(Duration::from_millis(100)), true).wideband();
    let clients: Vec<usize> = (0..calls)
        .map(|i| call_as(&mut w, &format!("user{i}")))
        .collect();
    // From here on nothing reads the clients' events: don't keep them.
    w.net.record_events = false;
    (w, clients)
}

/// The clients' running frame count (for timestamps) and a frame body: Speex 16 kHz, the
/// size of a Flash client's 20 ms frame (one RTMP chunk).
struct Frames {
    sent: u32,
    body: Bytes,
}

impl Frames {
    fn new() -> Self {
        let mut body = vec![0xb2];
        body.extend((0..42u32).map(|j| (j * 7) as u8));
        Self {
            sent: 0,
            body: Bytes::from(body),
        }
    }
}

/// `seconds` of every call: per 20 ms round, the node's timer if due, a frame from each
/// client, then everything moved until quiet. Kept out of line so that callgrind can collect
/// exactly this.
#[inline(never)]
fn measured_seconds(w: &mut World, clients: &[usize], frames: &mut Frames, seconds: u32) {
    for _ in 0..seconds * FRAMES_PER_SECOND {
        w.now += FRAME_EVERY;
        while w.net.node.poll_timeout().is_some_and(|due| due <= w.now) {
            w.net.node.handle(w.now, Input::Timeout);
        }
        let frame = RtmpMessage::new(type_id::AUDIO, 1, frames.sent * 20, frames.body.clone());
        frames.sent += 1;
        for &c in clients {
            w.net.clients[c].client.send_media(&frame);
        }
        w.pump();
    }
}

fn gateway_calls(c: &mut Criterion) {
    let (mut w, clients) = setup(CALLS);
    let mut frames = Frames::new();
    // The measured work is real: every frame of every call goes out to the far end.
    let before = w.echoed;
    measured_seconds(&mut w, &clients, &mut frames, 1);
    assert_eq!(
        w.echoed - before,
        CALLS * FRAMES_PER_SECOND as usize,
        "every frame of every call reached the far end"
    );
    let mut group = c.benchmark_group("gateway");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(10);
    group.bench_function("100_calls_one_second_merged_shared", |b| {
        b.iter(|| measured_seconds(&mut w, &clients, &mut frames, 1))
    });
    group.finish();
    let start = Instant::now();
    let seconds = 5;
    measured_seconds(&mut w, &clients, &mut frames, seconds);
    let per_call = start.elapsed().as_nanos() as f64 / (seconds as f64 * CALLS as f64);
    println!(
        "gateway: {:.1} us per call-second in memory (node, clients and far end together)",
        per_call / 1000.0
    );
}

fn main() {
    // Under callgrind: set up, then only the measured seconds (see the module comment).
    if let Some(seconds) = std::env::var("SIPRTMP_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // As many calls as the real server's profile (300) shows what per-call state does to
        // the caches (see the module comment).
        let calls = std::env::var("SIPRTMP_BENCH_CALLS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CALLS);
        let (mut w, clients) = setup(calls);
        let mut frames = Frames::new();
        let before = w.echoed;
        measured_seconds(&mut w, &clients, &mut frames, seconds);
        println!(
            "gateway: {calls} calls, {seconds} s, {} frames echoed",
            w.echoed - before
        );
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    gateway_calls(&mut criterion);
    criterion.final_summary();
}
