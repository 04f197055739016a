//! Tests only: the [`UdpExecutor`]'s sends meeting real kernel errors, `ENOBUFS` and `EAGAIN`,
//! as a gateway under memory pressure or behind a congested device meets them. Neither happens
//! on a plain loopback (its packets leave the socket's accounting as they are sent), so each
//! test runs this test binary again, for that one test, inside a user and network namespace of
//! its own (`unshare`, no privilege needed) whose loopback is set up to produce the error:
//!
//! - `ENOBUFS`: a loopback MTU of 1,280 bytes and a socket send buffer at its minimum (4,608
//!   bytes): a datagram of 20,000 bytes is cut into fragments that need more buffer than the
//!   socket may have, and the kernel refuses that one datagram;
//! - `EAGAIN`: a token bucket (`tc qdisc ... tbf`, 1 Mbit/s) on the loopback holds what is
//!   sent, so a burst fills the socket's send buffer and the sends after it fail until the
//!   queue drains.
//!
//! What must hold: the failed datagram is dropped and counted (`send_dropped`), the others of
//! the same run and of other sockets go, the flush never waits, and the socket stays open and
//! sends again once the kernel has room.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Poll;
use siprtmp_core::node::{Node, NodeConfig, SocketId, UdpCommand};

use crate::test_rerun::{rerun_under, test_path};
use crate::udp_executor::UdpExecutor;

/// Whether the calling test is the copy inside its namespace; if not, runs `test` (a function
/// of this module) again in a user and network namespace of its own, after `setup` (shell
/// commands run as the namespace's root), and returns false once it passed.
fn inside_namespace(test: &str, setup: &str) -> bool {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    let wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "--net",
        "sh",
        "-c",
        &script,
    ];
    rerun_under(&wrapper, &test_path(module_path!(), test))
}

/// A far end that names each datagram by its first byte.
fn far_end() -> std::net::UdpSocket {
    let far = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    far
}

/// First bytes of the next `count` datagrams `far` receives.
fn receive(far: &std::net::UdpSocket, count: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 65_536];
    (0..count)
        .map(|_| {
            let n = far.recv(&mut buf).expect("a datagram");
            assert!(n > 0);
            buf[0]
        })
        .collect()
}

/// An executor on the driver's-poll path (the poll is kept alive with it) and a node.
fn executor() -> (UdpExecutor, Poll, Node) {
    let poll = Poll::new().unwrap();
    let udp = UdpExecutor::in_poll(poll.registry().try_clone().unwrap());
    (
        udp,
        poll,
        Node::new(NodeConfig::default(), Instant::now(), 1),
    )
}

fn bind(udp: &mut UdpExecutor, node: &mut Node, id: u64) {
    udp.execute(
        node,
        Instant::now(),
        UdpCommand::Bind {
            socket: SocketId(id),
            addr: "127.0.0.1:0".parse().unwrap(),
            receive_buffer: None,
        },
    );
    assert!(udp.local_addr(SocketId(id)).is_some(), "bound");
}

/// Queues a datagram of `len` bytes starting with `mark` on socket `id` (head and body apart,
/// as the gateway's RTP).
fn queue(udp: &mut UdpExecutor, node: &mut Node, id: u64, to: SocketAddr, mark: u8, len: usize) {
    let body = vec![mark; len - 1];
    udp.execute(
        node,
        Instant::now(),
        UdpCommand::SendTo {
            socket: SocketId(id),
            destination: to,
            head: [mark][..].into(),
            body: Bytes::from(body),
        },
    );
}

#[test]
fn a_datagram_the_kernel_has_no_buffers_for_is_dropped_alone() {
    if !inside_namespace(
        "a_datagram_the_kernel_has_no_buffers_for_is_dropped_alone",
        "ip link set lo mtu 1280 up",
    ) {
        return;
    }
    for gso in [true, false] {
        let (mut udp, _poll, mut node) = executor();
        udp.set_gso(gso);
        bind(&mut udp, &mut node, 1);
        bind(&mut udp, &mut node, 2);
        let small = udp.socket(SocketId(1)).unwrap();
        socket2::SockRef::from(&**small)
            .set_send_buffer_size(1)
            .unwrap();
        let far = far_end();
        let to = far.local_addr().unwrap();
        // A run on the small-buffer socket with a datagram it cannot take in the middle, and
        // a datagram on the other socket.
        queue(&mut udp, &mut node, 1, to, 1, 100);
        queue(&mut udp, &mut node, 1, to, 2, 20_000);
        queue(&mut udp, &mut node, 1, to, 3, 100);
        queue(&mut udp, &mut node, 2, to, 4, 100);
        udp.flush();
        let mut got = receive(&far, 3);
        got.sort_unstable();
        assert_eq!(got, [1, 3, 4], "gso {gso}");
        let stats = udp.stats();
        assert_eq!(stats.sent.load(Ordering::Relaxed), 3, "gso {gso}");
        assert_eq!(stats.send_dropped.load(Ordering::Relaxed), 1, "gso {gso}");
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0, "gso {gso}");
        // The socket is still open and sends.
        assert_eq!(stats.open(), 2);
        queue(&mut udp, &mut node, 1, to, 5, 100);
        udp.flush();
        assert_eq!(receive(&far, 1), [5], "gso {gso}");
    }
}

#[test]
fn a_full_send_buffer_drops_and_counts_without_waiting_and_the_socket_sends_again() {
    if !inside_namespace(
        "a_full_send_buffer_drops_and_counts_without_waiting_and_the_socket_sends_again",
        "ip link set lo up && tc qdisc add dev lo root tbf rate 1mbit burst 1600 limit 10000000",
    ) {
        return;
    }
    const BURST: usize = 500;
    for gso in [true, false] {
        let (mut udp, _poll, mut node) = executor();
        udp.set_gso(gso);
        bind(&mut udp, &mut node, 1);
        bind(&mut udp, &mut node, 2);
        let far = far_end();
        let to = far.local_addr().unwrap();
        // 500 KB at 1 Mbit/s: the queue holds what fits in the send buffer, the rest fails.
        for _ in 0..BURST {
            queue(&mut udp, &mut node, 1, to, 1, 1000);
        }
        let started = Instant::now();
        udp.flush();
        let flush = started.elapsed();
        let stats = udp.stats();
        let (sent, dropped) = (
            stats.sent.load(Ordering::Relaxed),
            stats.send_dropped.load(Ordering::Relaxed),
        );
        eprintln!("gso {gso}: {sent} sent, {dropped} dropped in {flush:?}");
        assert!(dropped > 0, "the send buffer never filled (gso {gso})");
        assert_eq!(sent + dropped, BURST as u64, "gso {gso}");
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
        // What went takes 8 ms a KB to leave the queue; the flush did not wait for it.
        assert!(
            flush < Duration::from_millis(sent * 8 / 2),
            "the flush took {flush:?} (gso {gso})"
        );
        // Another socket's datagram goes, behind the queue; then the full socket sends again.
        queue(&mut udp, &mut node, 2, to, 2, 100);
        udp.flush();
        let got = receive(&far, sent as usize + 1);
        assert!(got[..sent as usize].iter().all(|&b| b == 1));
        assert_eq!(got[sent as usize], 2, "gso {gso}");
        assert_eq!(stats.open(), 2);
        queue(&mut udp, &mut node, 1, to, 3, 100);
        udp.flush();
        assert_eq!(receive(&far, 1), [3], "gso {gso}");
        assert_eq!(stats.sent.load(Ordering::Relaxed), sent + 2);
    }
}
