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
    /// Submissions made (`io_uring_enter` calls), for tests and metrics.
    enters: u64,
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
            enters: 0,
        })
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
                    opcode::SendMsg::new(types::Fd(write.fd), header)
                        .flags(FLAGS as u32)
                        .build()
                }
            };
            self.entries.push(entry.user_data(i as u64));
        }
        for (j, datagram) in sends.enumerate().take(datagrams) {
            let i = writes.len() + j;
            self.pairs[j] = [iovec(datagram.head), iovec(datagram.body)];
            let namelen = write_sockaddr(&datagram.destination, &mut self.addrs[j]);
            let header = &mut self.headers[i];
            header.msg_name = (&mut self.addrs[j] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = namelen;
            header.msg_iov = self.pairs[j].as_mut_ptr();
            header.msg_iovlen = 2;
            self.entries.push(
                opcode::SendMsg::new(types::Fd(datagram.fd), header)
                    .flags(FLAGS as u32)
                    .build()
                    .user_data(i as u64),
            );
        }
        // SAFETY: the entries point into `slices` and the datagrams' buffers (borrowed for
        // this call) and into `headers`, `pairs` and `addrs`, which are not resized before
        // `run` returns, once every entry has completed.
        unsafe { self.run(results) };
    }
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
