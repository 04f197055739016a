//! [`Ring`]: io_uring as a batched system call layer with synchronous semantics.
//!
//! Each batch is pushed as submission entries (the entry's user data is its index), submitted
//! with one `io_uring_enter` that waits for all of them, and every completion is read before
//! the call returns, so the memory the entries point into (the node's queued segments, the
//! driver's read buffers, the message headers kept here) is used for exactly the call. Every
//! socket operation carries `MSG_DONTWAIT`, which makes io_uring answer a full (or empty)
//! socket with `EAGAIN` at once instead of parking the operation until the socket is ready:
//! readiness stays the business of the driver's epoll, and the results are those of the
//! non-blocking calls the other drivers make one by one. In practice each entry completes
//! inline during the submission, and the wait returns at once.
//!
//! The storage entries point into (message headers, iovec pairs, socket addresses) is kept
//! here and reused across batches: it is sized before any pointer into it is taken, and not
//! resized until the batch has completed.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use io_uring::{opcode, squeue, types, IoUring};
use siprtmp_runtime_common::mmsg::{
    cannot_segment, joins_segment_group, lacks_gso, set_segment_size, SEGMENT_CONTROL_WORDS,
};
use siprtmp_runtime_common::{BatchIo, ConnWrite, DatagramSend};

/// Submission queue entries: a batch larger than this goes in several submissions.
const ENTRIES: u32 = 1024;

/// What every socket operation of a batch carries: never wait, never raise `SIGPIPE`.
const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// One ring and the storage its batches point into.
pub(crate) struct Ring {
    ring: IoUring,
    /// The entries of the batch being built.
    entries: Vec<squeue::Entry>,
    /// A `sendmsg` header per write of several segments and per datagram.
    headers: Vec<libc::msghdr>,
    /// Each datagram's head and body.
    pairs: Vec<[libc::iovec; 2]>,
    /// Each datagram's destination.
    addrs: Vec<libc::sockaddr_storage>,
    /// Each group's `UDP_SEGMENT` control message (see [`Self::set_gso`]).
    controls: Vec<[u64; SEGMENT_CONTROL_WORDS]>,
    /// The batch's datagrams as messages: a run of datagrams from one socket to one
    /// destination that may leave as one segmented message, or a datagram alone.
    groups: Vec<Group>,
    /// Each datagram's length (head and body).
    lens: Vec<usize>,
    /// Each message's result, before it is spread over its datagrams.
    group_results: Vec<io::Result<usize>>,
    /// Groups the kernel would not segment: their datagrams go again one by one.
    retry: Vec<Group>,
    /// Whether a run of datagrams to one destination leaves as one UDP GSO message.
    gso: bool,
    /// Datagrams sent in segmented messages since [`BatchIo::take_segmented`] last asked.
    segmented: u64,
    /// Submissions made (`io_uring_enter` calls), for tests and metrics.
    enters: u64,
}

/// Datagrams of a batch that leave as one message: `count` of them from `first` on, all from
/// `fd` to the address at `addrs[first]` (`namelen` bytes of it).
#[derive(Debug, Clone, Copy)]
struct Group {
    first: usize,
    count: usize,
    fd: i32,
    namelen: libc::socklen_t,
}

impl Ring {
    /// A ring, or why this system has none: io_uring missing from the kernel (`ENOSYS`) or
    /// turned off (`EPERM`: the `kernel.io_uring_disabled` sysctl, a container's seccomp
    /// filter).
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            // Completions need no interrupt of the (only) thread: it waits for them anyway.
            .setup_coop_taskrun()
            .build(ENTRIES)
            .or_else(|e| match e.raw_os_error() {
                // A kernel before 5.19 has no COOP_TASKRUN: a plain ring does the same job.
                Some(libc::EINVAL) => IoUring::new(ENTRIES),
                _ => Err(e),
            })
            .map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::ENOSYS) => "this kernel has no io_uring",
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        "io_uring is turned off here (sysctl kernel.io_uring_disabled, or a \
                         seccomp filter such as a container runtime's)"
                    }
                    _ => "io_uring_setup failed",
                };
                io::Error::new(
                    e.kind(),
                    format!("the io-uring driver cannot start: {why} ({e}); use another --runtime"),
                )
            })?;
        Ok(Self {
            ring,
            entries: Vec::new(),
            headers: Vec::new(),
            pairs: Vec::new(),
            addrs: Vec::new(),
            controls: Vec::new(),
            groups: Vec::new(),
            lens: Vec::new(),
            group_results: Vec::new(),
            retry: Vec::new(),
            gso: false,
            segmented: 0,
            enters: 0,
        })
    }

    /// Turns UDP GSO on or off (off at first): on, a run of datagrams of one batch from one
    /// socket to one destination, each as long as the first but the last (the kernel's rule,
    /// [`joins_segment_group`]), leaves as one `sendmsg` with a `UDP_SEGMENT` control
    /// message, as the mio driver's sends do; the far end gets the same datagrams. The driver
    /// turns it on when the UDP executor found the system able to (`--no-udp-gso` says
    /// not to). A group the kernel refuses goes again one datagram at a time, and a system
    /// that lacks GSO turns it off for good.
    pub(crate) fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Submissions made so far.
    #[cfg(test)]
    pub(crate) fn enters(&self) -> u64 {
        self.enters
    }

    /// `recv` on each `(fd, buffer)`, in one batch: `results[i]` is the byte count read into
    /// `reads[i]`'s buffer (0: the peer closed), `WouldBlock` for an empty socket, or the
    /// error.
    pub(crate) fn recv_all<'b>(
        &mut self,
        reads: impl Iterator<Item = (i32, &'b mut [u8])>,
        results: &mut Vec<io::Result<usize>>,
    ) {
        self.entries.clear();
        for (i, (fd, buf)) in reads.enumerate() {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            self.entries.push(
                opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), len)
                    .flags(FLAGS)
                    .build()
                    .user_data(i as u64),
            );
        }
        // SAFETY: each entry points into a buffer `reads` lent mutably, not used elsewhere before
        // the caller regains it; `run` returns only once every entry has completed.
        unsafe { self.run(results) };
    }

    /// Submits `self.entries` (user data = index) and waits for all of them; `results[i]` is
    /// entry `i`'s.
    ///
    /// # Safety
    ///
    /// Every pointer in the entries must stay valid (and the buffers unused elsewhere) until
    /// this returns; it returns only once every entry has completed.
    unsafe fn run(&mut self, results: &mut Vec<io::Result<usize>>) {
        results.clear();
        results.resize_with(self.entries.len(), || Ok(0));
        let mut next = 0;
        while next < self.entries.len() {
            let mut pushed = 0;
            {
                let mut sq = self.ring.submission();
                while next + pushed < self.entries.len() && !sq.is_full() {
                    // SAFETY: the caller keeps what the entry points to valid until its
                    // completion is read below.
                    if unsafe { sq.push(&self.entries[next + pushed]) }.is_err() {
                        break;
                    }
                    pushed += 1;
                }
            }
            let mut done = 0;
            while done < pushed {
                self.enters += 1;
                match self.ring.submit_and_wait(pushed - done) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                        ) => {}
                    // Entries may be in flight, pointing into memory the caller frees once
                    // this returns: going on would hand the kernel dangling pointers.
                    Err(e) => panic!("io_uring_enter failed with operations in flight: {e}"),
                }
                for cqe in self.ring.completion() {
                    let Some(slot) = usize::try_from(cqe.user_data())
                        .ok()
                        .and_then(|i| results.get_mut(i))
                    else {
                        continue;
                    };
                    let result = cqe.result();
                    *slot = if result < 0 {
                        Err(io::Error::from_raw_os_error(-result))
                    } else {
                        Ok(result as usize)
                    };
                    done += 1;
                }
            }
            next += pushed;
        }
        self.entries.clear();
    }
}

impl BatchIo for Ring {
    fn submit<'a>(
        &mut self,
        writes: &[ConnWrite],
        slices: &[IoSlice<'_>],
        sends: impl ExactSizeIterator<Item = DatagramSend<'a>>,
        results: &mut Vec<io::Result<usize>>,
    ) {
        self.entries.clear();
        // Sized first: the entries point into these, so they must not move once filled.
        let datagrams = sends.len();
        // SAFETY (for both): all-zero bytes are a valid `msghdr` and `sockaddr_storage`.
        self.headers
            .resize(writes.len() + datagrams, unsafe { std::mem::zeroed() });
        self.pairs.resize(datagrams, [empty_iovec(); 2]);
        self.addrs.resize(datagrams, unsafe { std::mem::zeroed() });
        self.controls.resize(datagrams, [0; SEGMENT_CONTROL_WORDS]);
        for (i, write) in writes.iter().enumerate() {
            let segments = &slices[write.first..write.first + write.count];
            let entry = match segments {
                // One segment (a live message to a player that keeps up): `send`, no header.
                [one] => opcode::Send::new(
                    types::Fd(write.fd),
                    one.as_ptr(),
                    u32::try_from(one.len()).unwrap_or(u32::MAX),
                )
                .flags(FLAGS)
                .build(),
                _ => {
                    let header = &mut self.headers[i];
                    // `IoSlice` is ABI-compatible with `iovec` on Unix.
                    header.msg_iov = segments.as_ptr() as *mut libc::iovec;
                    header.msg_iovlen = segments.len() as _;
                    header.msg_name = std::ptr::null_mut();
                    header.msg_namelen = 0;
                    // Headers are reused across batches: this one may have carried a group.
                    header.msg_control = std::ptr::null_mut();
                    header.msg_controllen = 0;
                    opcode::SendMsg::new(types::Fd(write.fd), header)
                        .flags(FLAGS as u32)
                        .build()
                }
            };
            self.entries.push(entry.user_data(i as u64));
        }
        self.group_datagrams(sends.take(datagrams));
        for (g, group) in self.groups.iter().enumerate() {
            let i = writes.len() + g;
            self.entries.push(
                message(
                    &mut self.headers[i],
                    &mut self.pairs,
                    &mut self.addrs,
                    Some(&mut self.controls[g]),
                    group,
                    self.lens[group.first],
                )
                .user_data(i as u64),
            );
        }
        // SAFETY: the entries point into `slices` and the datagrams' buffers (borrowed for
        // this call) and into `headers`, `pairs`, `addrs` and `controls`, which are not
        // resized before `run` returns, once every entry has completed.
        unsafe { self.run(results) };
        self.spread_group_results(writes.len(), results);
    }

    fn take_segmented(&mut self) -> u64 {
        std::mem::take(&mut self.segmented)
    }
}

impl Ring {
    /// Fills `pairs`, `addrs` and `lens` from `sends` and splits them into `groups`: with GSO,
    /// a datagram joins the group before it when it comes from the same socket to the same
    /// destination and the kernel's rule allows; without, each is a group of its own.
    fn group_datagrams<'a>(&mut self, sends: impl Iterator<Item = DatagramSend<'a>>) {
        self.groups.clear();
        self.lens.clear();
        let mut last: Option<(i32, SocketAddr)> = None;
        for (j, datagram) in sends.enumerate() {
            self.pairs[j] = [iovec(datagram.head), iovec(datagram.body)];
            let len = datagram.head.len() + datagram.body.len();
            self.lens.push(len);
            let namelen = write_sockaddr(&datagram.destination, &mut self.addrs[j]);
            let joins = self.gso
                && last == Some((datagram.fd, datagram.destination))
                && self.groups.last().is_some_and(|group| {
                    joins_group(&self.lens[group.first..group.first + group.count], len)
                });
            match self.groups.last_mut() {
                Some(group) if joins => group.count += 1,
                _ => self.groups.push(Group {
                    first: j,
                    count: 1,
                    fd: datagram.fd,
                    namelen,
                }),
            }
            last = Some((datagram.fd, datagram.destination));
        }
    }

    /// `results` holds the writes' results and then one per group: makes it one per datagram
    /// after the writes, each datagram of a group that went counted as sent whole. A group
    /// the kernel would not segment goes again, a datagram at a time.
    fn spread_group_results(&mut self, writes: usize, results: &mut Vec<io::Result<usize>>) {
        self.group_results.clear();
        self.group_results.extend(results.drain(writes..));
        self.retry.clear();
        for (group, result) in self.groups.iter().zip(self.group_results.drain(..)) {
            let datagrams = group.first..group.first + group.count;
            match result {
                Ok(_) => {
                    results.extend(self.lens[datagrams].iter().map(|&len| Ok(len)));
                    if group.count > 1 {
                        self.segmented += group.count as u64;
                    }
                }
                Err(e) if group.count > 1 && cannot_segment(&e) => {
                    if lacks_gso(&e) {
                        tracing::debug!("no UDP GSO here ({e}), sending one by one");
                        self.gso = false;
                    }
                    // Placeholders, replaced below.
                    results.extend(datagrams.map(|_| Ok(0)));
                    self.retry.push(*group);
                }
                Err(e) => results.extend(datagrams.map(|_| Err(same_error(&e)))),
            }
        }
        if !self.retry.is_empty() {
            self.send_one_by_one(writes, results);
        }
    }

    /// Sends every datagram of the groups in `retry` alone, in one submission; each result
    /// goes to the datagram's place in `results` (after `writes` writes).
    fn send_one_by_one(&mut self, writes: usize, results: &mut [io::Result<usize>]) {
        self.entries.clear();
        let mut alone = std::mem::take(&mut self.retry);
        for group in &alone {
            for j in group.first..group.first + group.count {
                let single = Group {
                    first: j,
                    count: 1,
                    ..*group
                };
                let i = writes + j;
                self.entries.push(
                    message(
                        &mut self.headers[i],
                        &mut self.pairs,
                        &mut self.addrs,
                        None,
                        &single,
                        self.lens[j],
                    )
                    .user_data(self.entries.len() as u64),
                );
            }
        }
        let mut singles = std::mem::take(&mut self.group_results);
        // SAFETY: as in `submit`: the datagrams' buffers are still borrowed by the caller's
        // call, and the storage the entries point into is not resized before `run` returns.
        unsafe { self.run(&mut singles) };
        let places = alone
            .iter()
            .flat_map(|group| group.first..group.first + group.count);
        for (j, result) in places.zip(singles.drain(..)) {
            results[writes + j] = result;
        }
        self.group_results = singles;
        alone.clear();
        self.retry = alone;
    }
}

/// The `sendmsg` of `group` (its datagrams' iovec pairs, its destination) through `header`;
/// a group of more than one carries a `UDP_SEGMENT` control message in `control` with the
/// first datagram's length, `size` (a datagram alone needs no `control`).
fn message(
    header: &mut libc::msghdr,
    pairs: &mut [[libc::iovec; 2]],
    addrs: &mut [libc::sockaddr_storage],
    control: Option<&mut [u64; SEGMENT_CONTROL_WORDS]>,
    group: &Group,
    size: usize,
) -> squeue::Entry {
    header.msg_name = (&mut addrs[group.first] as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = group.namelen;
    // The pairs of a group are consecutive: one array of `2 * count` iovecs.
    header.msg_iov = pairs[group.first..].as_mut_ptr().cast::<libc::iovec>();
    header.msg_iovlen = (2 * group.count) as _;
    if let Some(control) = control.filter(|_| group.count > 1) {
        set_segment_size(header, control, size);
    } else {
        header.msg_control = std::ptr::null_mut();
        header.msg_controllen = 0;
    }
    opcode::SendMsg::new(types::Fd(group.fd), header)
        .flags(FLAGS as u32)
        .build()
}

/// Whether a datagram of `len` bytes may join a group of datagrams of `lens` bytes (the
/// kernel's rule, [`joins_segment_group`]).
fn joins_group(lens: &[usize], len: usize) -> bool {
    match (lens.first(), lens.last()) {
        (Some(&size), Some(&last)) => joins_segment_group(size, last, lens.len(), len),
        _ => true,
    }
}

/// `e` again, for each datagram of a group that failed with it.
fn same_error(e: &io::Error) -> io::Error {
    e.raw_os_error()
        .map_or_else(|| io::Error::from(e.kind()), io::Error::from_raw_os_error)
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }
}

/// Writes `addr` as a C socket address into `out`; returns its length.
fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: `sockaddr_storage` is large and aligned enough for any socket address.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn udp() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// Datagrams from three sockets, each to its own peer, leave in one `io_uring_enter`
    /// (what `sendmmsg` cannot do), each exactly as head then body.
    #[test]
    fn datagrams_of_several_sockets_leave_in_one_submission() {
        let mut ring = Ring::new().unwrap();
        let senders: Vec<UdpSocket> = (0..3).map(|_| udp()).collect();
        let peers: Vec<UdpSocket> = (0..3).map(|_| udp()).collect();
        let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let sends = senders
            .iter()
            .zip(&peers)
            .zip(&bodies)
            .map(|((from, to), body)| DatagramSend {
                fd: from.as_raw_fd(),
                destination: to.local_addr().unwrap(),
                head: b"head",
                body,
            });
        let mut results = Vec::new();
        ring.submit(
            &[],
            &[],
            sends.collect::<Vec<_>>().into_iter(),
            &mut results,
        );
        assert_eq!(ring.enters(), 1);
        for (i, peer) in peers.iter().enumerate() {
            assert_eq!(results[i].as_ref().ok(), Some(&(4 + bodies[i].len())));
            let mut got = [0u8; 512];
            let (n, from) = peer.recv_from(&mut got).unwrap();
            assert_eq!(from, senders[i].local_addr().unwrap());
            assert_eq!(&got[..4], b"head");
            assert_eq!(&got[4..n], &bodies[i][..]);
        }
    }

    /// What `peer` receives next, `count` datagrams, each checked to come from `from`.
    fn receive(peer: &UdpSocket, from: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| {
                let mut got = [0u8; 2048];
                let (n, sender) = peer.recv_from(&mut got).unwrap();
                assert_eq!(sender, from.local_addr().unwrap());
                got[..n].to_vec()
            })
            .collect()
    }

    /// Six datagrams to one peer (five of 104 bytes and a shorter last) and two to another
    /// (the second longer than the first, so it cannot join), with GSO on: the six leave as
    /// one segmented message in the same submission as the others, and each peer receives
    /// exactly the datagrams it was sent; with GSO off, the same arrives, none segmented.
    #[test]
    fn with_gso_a_run_to_one_peer_leaves_as_one_message_and_arrives_as_its_datagrams() {
        let sender = udp();
        let (a, b) = (udp(), udp());
        let bodies: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; if i == 5 { 50 } else { 100 }])
            .chain([vec![6; 46], vec![7; 56]])
            .collect();
        for gso in [true, false] {
            let mut ring = Ring::new().unwrap();
            ring.set_gso(gso);
            let sends = bodies.iter().enumerate().map(|(i, body)| DatagramSend {
                fd: sender.as_raw_fd(),
                destination: if i < 6 {
                    a.local_addr()
                } else {
                    b.local_addr()
                }
                .unwrap(),
                head: b"head",
                body,
            });
            let mut results = Vec::new();
            ring.submit(&[], &[], sends, &mut results);
            assert_eq!(ring.enters(), 1);
            let lens: Vec<_> = results.iter().map(|r| *r.as_ref().unwrap()).collect();
            let expected: Vec<_> = bodies.iter().map(|body| 4 + body.len()).collect();
            assert_eq!(lens, expected);
            assert_eq!(ring.take_segmented(), if gso { 6 } else { 0 });
            assert_eq!(ring.take_segmented(), 0, "counted once");
            let got: Vec<_> = receive(&a, &sender, 6)
                .into_iter()
                .chain(receive(&b, &sender, 2))
                .collect();
            for (datagram, body) in got.iter().zip(&bodies) {
                assert_eq!(&datagram[..4], b"head");
                assert_eq!(&datagram[4..], &body[..]);
            }
        }
    }

    /// A group the kernel would not segment (`EINVAL`, here made up) goes again one datagram
    /// at a time, each result in its place, and GSO stays on; a system that lacks GSO
    /// (`EIO`) turns it off.
    #[test]
    fn a_group_the_kernel_refuses_goes_again_one_by_one() {
        let sender = udp();
        let peer = udp();
        let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 20]).collect();
        for (errno, gso_after) in [(libc::EINVAL, true), (libc::EIO, false)] {
            let mut ring = Ring::new().unwrap();
            ring.set_gso(true);
            let sends = bodies.iter().map(|body| DatagramSend {
                fd: sender.as_raw_fd(),
                destination: peer.local_addr().unwrap(),
                head: b"h",
                body,
            });
            ring.pairs.resize(bodies.len(), [empty_iovec(); 2]);
            // SAFETY: all-zero bytes are a valid `msghdr` and `sockaddr_storage`.
            ring.addrs
                .resize(bodies.len(), unsafe { std::mem::zeroed() });
            ring.headers
                .resize(bodies.len(), unsafe { std::mem::zeroed() });
            ring.group_datagrams(sends);
            assert_eq!(ring.groups.len(), 1, "one group of three");
            let mut results = vec![Err(io::Error::from_raw_os_error(errno))];
            ring.spread_group_results(0, &mut results);
            let lens: Vec<_> = results.iter().map(|r| *r.as_ref().unwrap()).collect();
            assert_eq!(lens, vec![21; 3]);
            assert_eq!(ring.gso, gso_after);
            assert_eq!(ring.take_segmented(), 0);
            for (datagram, body) in receive(&peer, &sender, 3).iter().zip(&bodies) {
                assert_eq!(&datagram[1..], &body[..]);
            }
        }
    }

    /// A socket that cannot take more answers `WouldBlock` at once (the ring does not park
    /// the write until it can), and the bytes it did take arrive in order; writes of two
    /// connections go in the same submission.
    #[test]
    fn a_full_socket_answers_would_block_and_a_partial_write_counts_what_went() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let full = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut full_peer, _) = listener.accept().unwrap();
        let other = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut other_peer, _) = listener.accept().unwrap();
        full.set_nonblocking(true).unwrap();
        other.set_nonblocking(true).unwrap();
        let block = vec![7u8; 1 << 20];
        let mut ring = Ring::new().unwrap();
        let mut results = Vec::new();
        let mut taken = 0;
        // Fill the first socket (nobody reads it) until it refuses.
        let refused = loop {
            let slices = [IoSlice::new(&block), IoSlice::new(b"x")];
            let writes = [ConnWrite {
                fd: full.as_raw_fd(),
                first: 0,
                count: 2,
            }];
            ring.submit(&writes, &slices, std::iter::empty(), &mut results);
            match results.pop().unwrap() {
                Ok(n) => taken += n,
                Err(e) => break e,
            }
            assert!(taken < 1 << 30, "the socket never filled");
        };
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock, "{refused}");
        let before = ring.enters();
        let slices = [IoSlice::new(b"abc"), IoSlice::new(b"more")];
        let writes = [
            ConnWrite {
                fd: full.as_raw_fd(),
                first: 0,
                count: 1,
            },
            ConnWrite {
                fd: other.as_raw_fd(),
                first: 0,
                count: 2,
            },
        ];
        ring.submit(&writes, &slices, std::iter::empty(), &mut results);
        assert_eq!(ring.enters(), before + 1);
        assert_eq!(
            results[0].as_ref().map_err(io::Error::kind).err(),
            Some(io::ErrorKind::WouldBlock)
        );
        assert_eq!(results[1].as_ref().ok(), Some(&7));
        let mut got = [0u8; 7];
        other_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcmore");
        // What the full socket took is what its peer reads.
        drop(full);
        let mut all = Vec::new();
        full_peer.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), taken);
    }

    /// Reads of several sockets in one submission: each buffer gets its socket's bytes, an
    /// empty socket answers `WouldBlock`, a closed one 0.
    #[test]
    fn reads_of_several_sockets_complete_in_one_submission() {
        use std::io::Write as _;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            pairs.push((client, server));
        }
        pairs[0].0.write_all(b"first").unwrap();
        drop(std::mem::replace(
            &mut pairs[2].0,
            TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
        ));
        // Loopback delivers before `write` returns; the close likewise.
        let mut bufs = [[0u8; 64]; 3];
        let mut ring = Ring::new().unwrap();
        let mut results = Vec::new();
        let reads = pairs
            .iter()
            .zip(bufs.iter_mut())
            .map(|((_, server), buf)| (server.as_raw_fd(), &mut buf[..]));
        ring.recv_all(reads, &mut results);
        assert_eq!(ring.enters(), 1);
        assert_eq!(results[0].as_ref().ok(), Some(&5));
        assert_eq!(&bufs[0][..5], b"first");
        assert_eq!(
            results[1].as_ref().map_err(io::Error::kind).err(),
            Some(io::ErrorKind::WouldBlock)
        );
        assert_eq!(results[2].as_ref().ok(), Some(&0));
    }

    /// A batch larger than the submission queue goes in several submissions, and every
    /// operation still gets its result.
    #[test]
    fn a_batch_larger_than_the_queue_goes_in_several_submissions() {
        let mut ring = Ring::new().unwrap();
        let from = udp();
        let to = udp().local_addr().unwrap();
        let count = ENTRIES as usize + 10;
        let sends = (0..count).map(|_| DatagramSend {
            fd: from.as_raw_fd(),
            destination: to,
            head: b"h",
            body: b"b",
        });
        let mut results = Vec::new();
        ring.submit(&[], &[], sends, &mut results);
        assert_eq!(results.len(), count);
        assert!(results.iter().all(|r| r.as_ref().ok() == Some(&2)));
        assert_eq!(ring.enters(), 2);
    }
}
