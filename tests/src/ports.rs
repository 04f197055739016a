//! Free ports for the suites that open real sockets, taken from the OS at run time rather than
//! written into the tests, so that the suites run in parallel with each other, with other
//! checkouts on the machine and with whatever else holds a port.
//!
//! Every port handed out, alone ([`free_udp_port`], [`free_tcp_port`]) or in a block of
//! consecutive ports ([`free_udp_block`], [`free_udp_range`], for a gateway's RTP range or
//! sipp's media ports), is one found free below the kernel's ephemeral range, where no bind to
//! port 0 and no outgoing connection can land on it later, and is never handed out twice by
//! this process. A port the kernel picked for a bind to port 0 and released was not safe to
//! hand on: another test's server binding port 0 got the same one before the peer it was meant
//! for bound it (CI saw it once with nginx, once with sipp).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// 127.0.0.1, where the suites' servers and peers meet.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A UDP port on `ip` that nothing holds, for a peer to bind (free for TCP too).
pub fn free_udp_port(ip: IpAddr) -> u16 {
    free_port(ip)
}

/// A TCP port on `ip` with nothing listening, for a peer to listen on or as an address that
/// refuses connections (free for UDP too).
pub fn free_tcp_port(ip: IpAddr) -> u16 {
    free_port(ip)
}

/// One port free for both TCP and UDP, so that either name above may give it to a peer that
/// binds both (a SIP server on UDP and TCP, say).
fn free_port(ip: IpAddr) -> u16 {
    find_block(ip, 1, |port| {
        TcpListener::bind(SocketAddr::new(ip, port)).is_ok()
            && UdpSocket::bind(SocketAddr::new(ip, port)).is_ok()
    })
}

/// Where blocks are looked for: from here up to the kernel's ephemeral range.
const BLOCKS_FROM: u16 = 20_000;

/// Blocks this process has handed out (first port, count): tests running at once in one test
/// binary would otherwise find the same free block before either binds it.
static HANDED_OUT: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());

/// The first port of `count` consecutive free UDP ports on `ip`. Each was bound and released,
/// so a program that binds fixed ports may still take one in between (a gateway then moves on
/// to its next block); no bind to port 0 will, and this process hands out no port twice.
pub fn free_udp_block(ip: IpAddr, count: u16) -> u16 {
    find_block(ip, count, |port| {
        UdpSocket::bind(SocketAddr::new(ip, port)).is_ok()
    })
}

/// The first port of `count` consecutive ports between [`BLOCKS_FROM`] and the ephemeral
/// range, each passing `is_free`, none handed out before; even (RTP ports come in pairs).
fn find_block(ip: IpAddr, count: u16, is_free: impl Fn(u16) -> bool) -> u16 {
    assert!(count > 0, "an empty block");
    let end = ephemeral_start();
    assert!(
        u32::from(BLOCKS_FROM) + u32::from(count) < u32::from(end),
        "{count} ports do not fit below the ephemeral range ({end})"
    );
    let span = end - BLOCKS_FROM - count;
    // Start at a place the kernel's random port choice gives, so that checkouts testing at the
    // same time look in different places; then walk up, wrapping around, one block at a time.
    let mut start = BLOCKS_FROM + kernel_picked_port(ip) % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..(span / (count + 2)).max(1) + 1 {
        start &= !1;
        let overlaps = handed_out
            .iter()
            .any(|&(first, n)| start < first + n && first < start + count);
        if !overlaps && (start..start + count).all(&is_free) {
            handed_out.push((start, count));
            return start;
        }
        start += count + 2;
        if start > BLOCKS_FROM + span {
            start = BLOCKS_FROM;
        }
    }
    panic!("no {count} free consecutive ports on {ip} between {BLOCKS_FROM} and {end}");
}

/// The port the kernel gives a UDP bind to port 0: a random place to start looking.
fn kernel_picked_port(ip: IpAddr) -> u16 {
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("no UDP socket on {ip}: {e}"))
        .port()
}

/// [`free_udp_block`] as an inclusive range, `(first, last)`: a gateway's `rtp_ports`.
pub fn free_udp_range(ip: IpAddr, count: u16) -> (u16, u16) {
    let first = free_udp_block(ip, count);
    (first, first + count - 1)
}

/// The first port of the kernel's ephemeral range (Linux's setting; 32768, its default,
/// elsewhere).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .filter(|&low| low > BLOCKS_FROM + 1000)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_handed_out_at_once_are_free_disjoint_and_below_the_ephemeral_range() {
        let blocks: Vec<(u16, u16)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| free_udp_range(LOOPBACK, 100)))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (i, &(first, last)) in blocks.iter().enumerate() {
            assert_eq!(first % 2, 0, "even first port");
            assert_eq!(last - first, 99);
            assert!(first >= BLOCKS_FROM && last < ephemeral_start());
            for &(other_first, other_last) in &blocks[i + 1..] {
                assert!(
                    last < other_first || other_last < first,
                    "{first}-{last} overlaps {other_first}-{other_last}"
                );
            }
            let bound: Vec<UdpSocket> = (first..=last)
                .map(|p| UdpSocket::bind((LOOPBACK, p)).expect("a port of the block is free"))
                .collect();
            drop(bound);
        }
    }

    #[test]
    fn single_ports_are_never_handed_out_twice_and_lie_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    free_udp_port(LOOPBACK)
                } else {
                    free_tcp_port(LOOPBACK)
                }
            })
            .collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        assert!(ports
            .iter()
            .all(|&p| (BLOCKS_FROM..ephemeral_start()).contains(&p)));
        // Both kinds of port are free for both protocols.
        let port = ports[1];
        drop(UdpSocket::bind((LOOPBACK, port)).expect("a TCP port is free for UDP"));
        drop(TcpListener::bind((LOOPBACK, port)).expect("and for TCP"));
    }

    #[test]
    fn a_free_tcp_port_refuses_connections() {
        let port = free_tcp_port(LOOPBACK);
        assert!(std::net::TcpStream::connect((LOOPBACK, port)).is_err());
    }
}
