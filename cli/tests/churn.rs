//! Connection churn against the `siprtmp` binary, beside a legitimate ffmpeg stream and its
//! player: 100 connections that stop half-way through the handshake and hold, and thousands
//! of connections that connect, handshake and leave at once. The stream must reach its player
//! whole, and once the churn is over the server's descriptors must be back where they were
//! and its memory near it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use siprtmp_tests::hostile::{open_descriptors, resident_bytes};
use siprtmp_tests::scratch_dir;

const MIB: u64 = 1024 * 1024;

/// Connects, completes the handshake and leaves.
fn handshake_and_leave(addr: SocketAddr) -> std::io::Result<()> {
    let mut socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut c0c1 = vec![3u8];
    c0c1.resize(1 + 1536, 7);
    socket.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    socket.read_exact(&mut s0s1s2)?;
    socket.write_all(&s0s1s2[1..1 + 1536])
}

#[test]
fn churn_and_half_open_connections_leave_nothing_behind() {
    let dir = scratch_dir("churn");
    let server = common::LoggingServer::start(&dir);
    let pid = server.pid();
    let addr = server.rtmp_addr();
    let stream = common::WatchedStream::start(&server, addr, &dir);
    let (fds, rss) = (open_descriptors(pid), resident_bytes(pid));

    // 100 half-open handshakes, held (the server closes them after 10 s).
    let half_open: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&[3u8; 700]).expect("half a C0+C1");
            s
        })
        .collect();
    // Churn for 8 s.
    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < Duration::from_secs(8) {
        handshake_and_leave(addr).expect("a handshake");
        cycles += 1;
    }
    drop(half_open);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_descriptors(pid) > fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fds_after, rss_after) = (open_descriptors(pid), resident_bytes(pid));
    eprintln!(
        "{cycles} connect-handshake-leave cycles in 8 s; descriptors {fds} -> {fds_after}, \
         resident {} -> {} MiB",
        rss / MIB,
        rss_after / MIB
    );
    assert!(cycles >= 1000, "only {cycles} cycles");
    assert_eq!(fds_after, fds, "descriptors left behind by the churn");
    assert!(
        rss_after <= rss + 16 * MIB,
        "resident memory {} MiB after the churn, {} MiB before",
        rss_after / MIB,
        rss / MIB
    );

    stream.assert_whole();
    drop(server);
}
