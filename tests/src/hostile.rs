//! Hostile peers for the hardening suites: attackers written here, on raw sockets, that do
//! what a stranger on the network would do to a server exposed to it.
//!
//! [`RtpSprayer`] sends RTP to ports it guesses (a gateway's RTP port blocks are easy to
//! guess), as an attacker who wants to hear or inject a call's audio would, and counts what
//! the gateway sends back to it.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first byte of every payload a [`RtpSprayer`] sends: a client that receives a frame
/// starting with it heard the attacker.
pub const SPRAY_MARK: u8 = 0xA5;

/// A thread that sends one RTP packet every 20 ms to each of its targets from its own socket
/// (payload type, SSRC and sequence numbers as a real stream would have), and counts the
/// datagrams it receives: what the gateway mistook it for the far end and sent it.
pub struct RtpSprayer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    /// Where the attacker sends from.
    pub addr: SocketAddr,
}

/// What a [`RtpSprayer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SprayTotals {
    /// RTP packets sent (all targets).
    pub sent: u64,
    /// Datagrams received from anyone.
    pub received: u64,
}

impl RtpSprayer {
    /// Starts spraying `targets` from an ephemeral port of `from` with payload type
    /// `payload_type` and SSRC `ssrc`, each packet's payload [`SPRAY_MARK`] and 39 bytes.
    pub fn start(from: IpAddr, targets: Vec<SocketAddr>, payload_type: u8, ssrc: u32) -> Self {
        let socket = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind the attacker");
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent, received) = (stop.clone(), sent.clone(), received.clone());
            std::thread::spawn(move || {
                let mut sequence: u16 = 1;
                let mut timestamp: u32 = 0;
                let mut next = Instant::now();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        let packet = rtp(payload_type, sequence, timestamp, ssrc);
                        for target in &targets {
                            if socket.send_to(&packet, target).is_ok() {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        sequence = sequence.wrapping_add(1);
                        timestamp = timestamp.wrapping_add(320);
                        next += Duration::from_millis(20);
                    }
                    // Drain what comes back (a closed port's ICMP shows up as an error).
                    while let Ok((_, _)) = socket.recv_from(&mut buf) {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            stop,
            sent,
            received,
            thread: Some(thread),
            addr,
        }
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the thread; what it did.
    pub fn stop(mut self) -> SprayTotals {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("attacker thread");
        }
        SprayTotals {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

impl Drop for RtpSprayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An RTP packet (RFC 3550 fixed header, no CSRC) with a 40-byte payload starting with
/// [`SPRAY_MARK`].
fn rtp(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
    let mut packet = Vec::with_capacity(52);
    packet.push(0x80);
    packet.push(payload_type & 0x7f);
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.push(SPRAY_MARK);
    packet.extend_from_slice(&[0x11; 39]);
    packet
}

/// An RTMP peer on a raw socket that completes the handshake, announces a Set Chunk Size of
/// 8,388,000 and an 8 MiB video message, sends `body` bytes of it and holds the rest back:
/// the hardening issue's memory bomb. Returns the open socket (drop it to leave), or the
/// error when the server closed it first.
pub fn memory_bomb(server: SocketAddr, body: usize) -> std::io::Result<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(server)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut c0c1 = vec![3u8];
    c0c1.resize(1 + 1536, 0x42);
    socket.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    socket.read_exact(&mut s0s1s2)?;
    // C2 echoes S1.
    socket.write_all(&s0s1s2[1..1 + 1536])?;
    let mut wire = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    wire.extend_from_slice(&8_388_000u32.to_be_bytes());
    wire.extend_from_slice(&[3, 0, 0, 0, 0x80, 0, 0, 9, 1, 0, 0, 0]);
    socket.write_all(&wire)?;
    let block = vec![0x55u8; 64 * 1024];
    let mut left = body;
    while left > 0 {
        let n = left.min(block.len());
        socket.write_all(&block[..n])?;
        left -= n;
    }
    Ok(socket)
}

/// The resident memory of process `pid`, in bytes (`VmRSS` of `/proc/PID/status`).
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmRSS")
}

/// Open descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
