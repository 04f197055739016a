//! [`UdpSender`]: sending one socket's run of queued datagrams, for [`crate::UdpExecutor`].
//!
//! A run is what the node queued for one socket since the last flush, in order. On Linux it
//! leaves in as few system calls as the kernel allows:
//!
//! - consecutive datagrams to the same destination, each as long as the first but the last
//!   (the gateway's shared RTP port sending every call's 20 ms Speex frame to one far end),
//!   form a group that goes as one UDP GSO message (`UDP_SEGMENT`): the kernel builds one
//!   large datagram, routes it and runs it through the stack once, and cuts it into the
//!   original datagrams at the last moment (the device, or the receiving socket on
//!   loopback). The far end receives exactly the datagrams it would have otherwise;
//! - the groups of a run go in one `sendmmsg`, up to [`SEND_BATCH`] groups and [`GSO_BATCH`]
//!   datagrams a call.
//!
//! Whether the kernel has GSO at all (Linux 4.18 and later) is asked once per process, with
//! the `UDP_SEGMENT` socket option on a probe socket: an older kernel would not fail a group
//! but ignore the control message and send it as one large datagram. A route that cannot
//! segment (a device without checksum offload, a segment over the path MTU) fails the group;
//! its datagrams are then sent one by one, and on a sign that the system lacks the feature
//! (`EIO`, `ENOPROTOOPT`, `EOPNOTSUPP`) the sender stops asking. Without GSO (turned off, or
//! not Linux) a run is `sendmmsg` of up to [`SEND_BATCH`] datagrams (a lone one `sendmsg`).
//!
//! Head and body are always two iovecs: a media payload is never copied. A full socket
//! buffer (`EAGAIN`), or a datagram the kernel has no buffers for (`ENOBUFS`), drops what did
//! not go and counts it (`send_dropped`), as UDP does: the loop never waits, the socket stays
//! open, and the next datagram is sent as usual. A GSO group is one send: it goes or is
//! dropped whole (in a full buffer its datagrams one by one would not fare better).
//! `crate::udp_send_faults` produces both errors for real.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use siprtmp_core::node::{SocketId, UdpCommand};

#[cfg(target_os = "linux")]
use crate::mmsg::{cannot_segment, lacks_gso, send_segmented, SegmentGroup, SEND_BATCH};
use crate::mmsg::{extends_segment_group, send_batch, GSO_BATCH};
use crate::udp_executor::UdpStats;

/// The sending half of the executor: the buffers one run needs, kept for their allocation,
/// and whether to use GSO.
pub(crate) struct UdpSender {
    /// Destination of each datagram of the run being sent.
    addrs: Vec<socket2::SockAddr>,
    /// Each group of that run: its first datagram and its length.
    groups: Vec<(usize, usize)>,
    /// Whether runs go as GSO groups (Linux; off once the system refused it).
    gso: bool,
}

impl UdpSender {
    /// A sender using GSO where the system has it.
    pub(crate) fn new() -> Self {
        Self {
            addrs: Vec::new(),
            groups: Vec::new(),
            gso: system_has_gso(),
        }
    }

    /// Turns GSO on (where the system has it) or off.
    pub(crate) fn set_gso(&mut self, on: bool) {
        self.gso = on && system_has_gso();
    }

    /// Whether runs go as GSO groups now.
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// Sends `run` (at most [`GSO_BATCH`] commands, all for `socket`, whose socket is `udp`).
    pub(crate) fn send_run(
        &mut self,
        udp: &UdpSocket,
        socket: SocketId,
        run: &[(usize, UdpCommand)],
        stats: &UdpStats,
    ) {
        self.addrs.clear();
        self.groups.clear();
        let sock = socket2::SockRef::from(udp);
        if let [(
            _,
            UdpCommand::SendTo {
                destination,
                head,
                body,
                ..
            },
        )] = run
        {
            // A lone datagram (every send with a socket per call, every RTCP report): one
            // `sendmsg`, without building a batch (its table is 8 KiB).
            self.addrs.push(socket2::SockAddr::from(*destination));
            send_each(&sock, socket, &[(head, body)], &self.addrs, stats);
            return;
        }
        let mut datagrams: [(&[u8], &[u8]); GSO_BATCH] = [(&[], &[]); GSO_BATCH];
        let mut n = 0;
        let mut last: Option<SocketAddr> = None;
        for (_, command) in run.iter().take(GSO_BATCH) {
            let UdpCommand::SendTo {
                destination,
                head,
                body,
                ..
            } = command
            else {
                continue;
            };
            let joins = self.gso
                && last == Some(*destination)
                && self.groups.last().is_some_and(|&(first, len)| {
                    extends_segment_group(&datagrams[first..first + len], head.len() + body.len())
                });
            datagrams[n] = (head, body);
            self.addrs.push(socket2::SockAddr::from(*destination));
            match self.groups.last_mut() {
                Some((_, len)) if joins => *len += 1,
                _ => self.groups.push((n, 1)),
            }
            last = Some(*destination);
            n += 1;
        }
        if !self.gso {
            send_each(&sock, socket, &datagrams[..n], &self.addrs, stats);
            return;
        }
        #[cfg(target_os = "linux")]
        self.send_groups(&sock, socket, &datagrams[..n], stats);
    }

    /// Sends the groups of `datagrams` (built by [`Self::send_run`]) as GSO messages.
    #[cfg(target_os = "linux")]
    fn send_groups(
        &mut self,
        sock: &socket2::SockRef<'_>,
        socket: SocketId,
        datagrams: &[(&[u8], &[u8])],
        stats: &UdpStats,
    ) {
        let mut next = 0;
        while next < self.groups.len() {
            let mut batch = [SegmentGroup {
                addr: &self.addrs[0],
                datagrams: &[],
            }; SEND_BATCH];
            let count = (self.groups.len() - next).min(SEND_BATCH);
            for (slot, &(first, len)) in batch.iter_mut().zip(&self.groups[next..next + count]) {
                *slot = SegmentGroup {
                    addr: &self.addrs[first],
                    datagrams: &datagrams[first..first + len],
                };
            }
            let result = send_segmented(sock, &batch[..count]);
            UdpStats::add(&stats.send_calls, 1);
            let (first, len) = self.groups[next];
            match result {
                Ok(went) => {
                    let went = went.max(1);
                    for &(_, len) in &self.groups[next..next + went] {
                        UdpStats::add(&stats.sent, len as u64);
                        if len > 1 {
                            UdpStats::add(&stats.segmented, len as u64);
                        }
                    }
                    next += went;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if no_room(&e) => {
                    UdpStats::add(&stats.send_dropped, len as u64);
                    next += 1;
                }
                Err(e) if len > 1 && cannot_segment(&e) => {
                    if lacks_gso(&e) {
                        tracing::debug!("{socket}: no UDP GSO here ({e}), sending one by one");
                        self.gso = false;
                    }
                    let range = first..first + len;
                    send_each(
                        sock,
                        socket,
                        &datagrams[range.clone()],
                        &self.addrs[range],
                        stats,
                    );
                    next += 1;
                }
                Err(e) => {
                    UdpStats::add(&stats.send_errors, len as u64);
                    tracing::debug!("{socket}: send to {:?}: {e}", self.addrs[first].as_socket());
                    next += 1;
                }
            }
        }
    }
}

/// Whether this kernel segments UDP (Linux 4.18 and later), asked once per process: a kernel
/// that knows `UDP_SEGMENT` accepts it as a socket option. The answer matters beyond speed:
/// a kernel without it would ignore the control message and send a group as one large
/// datagram.
fn system_has_gso() -> bool {
    #[cfg(target_os = "linux")]
    {
        static HAS_GSO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS_GSO.get_or_init(|| {
            use std::os::fd::AsRawFd;
            let Ok(probe) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            else {
                return false;
            };
            set_int_option(probe.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok()
        })
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// `setsockopt` of an `int` option (socket2 has no setter for the UDP ones).
#[cfg(target_os = "linux")]
fn set_int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is an `int` that lives for the call, passed with its size; the kernel
    // checks the descriptor, level and name and only reads the value.
    let set = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a send failed for want of room, now: the socket's send buffer is full
/// (`WouldBlock`), or the kernel had no buffers for this datagram (`ENOBUFS`: its fragments
/// need more than the socket may hold, or memory is short). Either drops the datagram alone,
/// counted as dropped like a loss on the way; the next one may well go. Any other error is
/// about the destination (`send_errors`).
pub(crate) fn no_room(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    if e.raw_os_error() == Some(libc::ENOBUFS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

/// Sends `datagrams` to `addrs` without GSO: `sendmmsg` of up to [`SEND_BATCH`] (Linux), a
/// lone one with `sendmsg`.
fn send_each(
    sock: &socket2::SockRef<'_>,
    socket: SocketId,
    datagrams: &[(&[u8], &[u8])],
    addrs: &[socket2::SockAddr],
    stats: &UdpStats,
) {
    let n = datagrams.len().min(addrs.len());
    let mut done = 0;
    while done < n {
        let result = if n - done == 1 {
            let (head, body) = datagrams[done];
            let slices = [IoSlice::new(head), IoSlice::new(body)];
            sock.send_to_vectored(&slices, &addrs[done]).map(|_| 1)
        } else {
            send_batch(sock, &datagrams[done..n], &addrs[done..n])
        };
        UdpStats::add(&stats.send_calls, 1);
        match result {
            Ok(sent) => {
                UdpStats::add(&stats.sent, sent as u64);
                done += sent.max(1);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // UDP semantics: a full buffer loses the datagram, the loop never waits.
            Err(e) if no_room(&e) => {
                UdpStats::add(&stats.send_dropped, 1);
                done += 1;
            }
            Err(e) => {
                UdpStats::add(&stats.send_errors, 1);
                tracing::debug!("{socket}: send to {:?}: {e}", addrs[done].as_socket());
                done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn sender_socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    fn receiver() -> std::net::UdpSocket {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer
    }

    /// A datagram of `len` bytes (`len` at least 3) that says which it is: its index, and
    /// a 12-byte head when there is room (as RTP's), the rest as its body.
    fn datagram(to: SocketAddr, index: usize, len: usize) -> (usize, UdpCommand) {
        let mut bytes = vec![(index % 251) as u8; len];
        bytes[..2].copy_from_slice(&(index as u16).to_be_bytes());
        let split = len.min(12);
        let command = UdpCommand::SendTo {
            socket: SocketId(1),
            destination: to,
            head: bytes[..split].into(),
            body: Bytes::copy_from_slice(&bytes[split..]),
        };
        (0, command)
    }

    fn bytes_of(command: &(usize, UdpCommand)) -> Vec<u8> {
        match &command.1 {
            UdpCommand::SendTo { head, body, .. } => [&head[..], &body[..]].concat(),
            _ => unreachable!("only sends are built"),
        }
    }

    /// Receives `count` datagrams from `peer`.
    fn receive(peer: &std::net::UdpSocket, count: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..count)
            .map(|_| {
                let n = peer.recv(&mut buf).expect("a datagram");
                buf[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn this_kernel_is_found_to_segment() {
        // Linux 4.18 and later (every supported distribution) has UDP GSO.
        assert_eq!(system_has_gso(), cfg!(target_os = "linux"));
        assert_eq!(UdpSender::new().gso(), cfg!(target_os = "linux"));
    }

    /// Sends `run` with `sender` from `udp` and checks that `far` receives each datagram of
    /// it, whole and in order; returns the sender's counters.
    fn send_and_check_arrival(
        sender: &mut UdpSender,
        udp: &UdpSocket,
        far: &std::net::UdpSocket,
        run: &[(usize, UdpCommand)],
    ) -> UdpStats {
        let stats = UdpStats::default();
        sender.send_run(udp, SocketId(1), run, &stats);
        let expected: Vec<Vec<u8>> = run.iter().map(bytes_of).collect();
        assert_eq!(receive(far, run.len()), expected);
        stats
    }

    #[test]
    fn equal_datagrams_to_one_far_end_leave_in_one_call_and_arrive_one_by_one() {
        let (udp, far) = (sender_socket(), receiver());
        let to = far.local_addr().unwrap();
        // 100 of 54 bytes (a Speex wideband frame's RTP), a shorter last one: two groups
        // (64 at most per message), one call.
        let mut run: Vec<_> = (0..100).map(|i| datagram(to, i, 54)).collect();
        run.push(datagram(to, 100, 20));
        let mut sender = UdpSender::new();
        let stats = send_and_check_arrival(&mut sender, &udp, &far, &run);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 101);
        if cfg!(target_os = "linux") {
            assert_eq!(stats.send_calls.load(Ordering::Relaxed), 1);
            assert_eq!(stats.segmented.load(Ordering::Relaxed), 101);
            assert!(sender.gso());
        }
    }

    #[test]
    fn without_gso_the_same_run_takes_a_sendmmsg_per_32_and_arrives_the_same() {
        let (udp, far) = (sender_socket(), receiver());
        let to = far.local_addr().unwrap();
        let run: Vec<_> = (0..40).map(|i| datagram(to, i, 54)).collect();
        let mut sender = UdpSender::new();
        sender.set_gso(false);
        let stats = send_and_check_arrival(&mut sender, &udp, &far, &run);
        assert_eq!(stats.segmented.load(Ordering::Relaxed), 0);
        if cfg!(target_os = "linux") {
            assert_eq!(stats.send_calls.load(Ordering::Relaxed), 2);
        }
    }

    /// A socket the kernel refuses GSO on (`SO_NO_CHECK`: no UDP checksum, which segmenting
    /// needs) fails each group with `EINVAL`; its datagrams still go, one by one.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_gso_message_is_sent_one_by_one() {
        use std::os::fd::AsRawFd;
        let (udp, far) = (sender_socket(), receiver());
        set_int_option(udp.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1)
            .expect("SO_NO_CHECK");
        let to = far.local_addr().unwrap();
        let run: Vec<_> = (0..10).map(|i| datagram(to, i, 54)).collect();
        let stats = send_and_check_arrival(&mut UdpSender::new(), &udp, &far, &run);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 10);
        assert_eq!(stats.segmented.load(Ordering::Relaxed), 0);
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the mix of destinations and lengths, every far end receives exactly its
        /// datagrams, whole and in order, with GSO and without.
        #[test]
        fn every_far_end_gets_its_datagrams_whole_and_in_order(
            // Mostly one length (groups form), some shorter (a group's last), some any.
            plan in proptest::collection::vec(
                (0usize..3, prop_oneof![4 => Just(54usize), 1 => Just(20usize), 1 => 3usize..1400]),
                1..100,
            ),
            gso in any::<bool>(),
        ) {
            let udp = sender_socket();
            let fars = [receiver(), receiver(), receiver()];
            let run: Vec<_> = plan
                .iter()
                .enumerate()
                .map(|(i, &(far, len))| datagram(fars[far].local_addr().unwrap(), i, len))
                .collect();
            let stats = UdpStats::default();
            let mut sender = UdpSender::new();
            sender.set_gso(gso);
            sender.send_run(&udp, SocketId(1), &run, &stats);
            prop_assert_eq!(stats.sent.load(Ordering::Relaxed), run.len() as u64);
            for (k, far) in fars.iter().enumerate() {
                let expected: Vec<Vec<u8>> = plan
                    .iter()
                    .zip(&run)
                    .filter(|((to, _), _)| *to == k)
                    .map(|(_, command)| bytes_of(command))
                    .collect();
                prop_assert_eq!(receive(far, expected.len()), expected);
            }
            let segmented = stats.segmented.load(Ordering::Relaxed);
            if !gso {
                prop_assert_eq!(segmented, 0);
            } else if cfg!(target_os = "linux") {
                // A group forms where one follows another to the same far end and is no
                // longer (unless the earlier already ended a group: then there is one).
                let joins = plan.windows(2).any(|w| w[0].0 == w[1].0 && w[1].1 <= w[0].1);
                prop_assert_eq!(segmented > 0, joins);
            }
        }
    }
}
