//! The whole node (the application the drivers run): a structured sequence of connections,
//! raw and well-formed RTMP, datagrams on the gateway's sockets, file replies, answers to
//! questions and time, checked by `siprtmp_fuzz::node_harness` for well-formed outputs, and
//! here for memory: the most heap live at once must stay under a ceiling set by the
//! configured limits plus a small multiple of the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_fuzz::counting_alloc::{self, Counting};
use siprtmp_fuzz::node_harness::{run, HARD_BACKLOG, MAX_CONNS, MAX_MESSAGE};
use siprtmp_fuzz::node_ops::Script;

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let Some(script) = Script::decode(data) else {
        return;
    };
    let base = counting_alloc::live();
    counting_alloc::reset_peak();
    run(&script);
    let used = counting_alloc::peak().saturating_sub(base);
    // Per connection: its backlog and partial messages; per stream: the GOP cache and a
    // recording's backlog (all HARD_BACKLOG in the harness); plus fixed costs and a copy or
    // two of the input.
    let per_conn = HARD_BACKLOG + 2 * MAX_MESSAGE as usize + 256 * 1024;
    let ceiling = MAX_CONNS * per_conn + 6 * HARD_BACKLOG + (16 << 20) + 64 * data.len();
    assert!(
        used <= ceiling,
        "{used} bytes live at once for a {} byte input (ceiling {ceiling})",
        data.len()
    );
});
