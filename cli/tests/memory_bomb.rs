//! The hardening issue's memory bomb against the `siprtmp` binary as an operator runs it:
//! 120 connections each announce an 8 MiB message and send 7 MiB of it, and hold. With a
//! legitimate ffmpeg stream and its player beside them, the server's resident memory must stay
//! within its budget for unfinished messages (256 MiB by default) plus a margin, the stream
//! must reach its player whole, and once the attackers leave, the memory must go back to near
//! what the server used before.

mod common;

use std::time::{Duration, Instant};

use siprtmp_tests::hostile::{memory_bomb, resident_bytes};
use siprtmp_tests::scratch_dir;

const MIB: u64 = 1024 * 1024;

#[test]
fn unfinished_messages_from_many_connections_stay_within_the_budget_and_memory_comes_back() {
    let dir = scratch_dir("memory-bomb");
    let server = common::LoggingServer::start(&dir);
    let pid = server.pid();
    let addr = server.rtmp_addr();
    let stream = common::WatchedStream::start(&server, addr, &dir);
    std::thread::sleep(Duration::from_millis(500));
    let idle = resident_bytes(pid);

    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused = 0;
    let mut peak = 0;
    for _ in 0..120 {
        match memory_bomb(addr, 7 * MIB as usize) {
            Ok(socket) => held.push(socket),
            Err(_) => refused += 1,
        }
        peak = peak.max(resident_bytes(pid));
    }
    // Let the server take in what was sent before measuring again.
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(resident_bytes(pid));
    eprintln!(
        "idle {} MiB, peak {} MiB with 120 bombers ({} refused while sending) in {:?}",
        idle / MIB,
        peak / MIB,
        refused,
        started.elapsed()
    );
    assert!(
        peak <= idle + 256 * MIB + 64 * MIB,
        "resident memory {} MiB, idle {} MiB: above the 256 MiB budget and a 64 MiB margin",
        peak / MIB,
        idle / MIB
    );
    drop(held);
    // Memory goes back once the connections are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = resident_bytes(pid);
    while after > idle + 16 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = resident_bytes(pid);
    }
    eprintln!("after the bombers left: {} MiB", after / MIB);
    assert!(
        after <= idle + 16 * MIB,
        "{} MiB resident after the attack, {} MiB before",
        after / MIB,
        idle / MIB
    );

    stream.assert_whole();
    drop(server);
}
