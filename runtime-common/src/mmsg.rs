//! Batched datagram system calls: `recvmmsg(2)` and `sendmmsg(2)` with two-part (head and
//! body) datagrams, without waiting. [`crate::UdpExecutor`] drains and flushes the node's UDP
//! sockets with them; they are public so that a measurement of the kernel's own cost (the
//! gateway floor of bench-compare) makes exactly the same calls.

use std::io;
#[cfg(not(target_os = "linux"))]
use std::io::IoSlice;
#[cfg(target_os = "linux")]
use std::net::SocketAddr;

/// Datagrams one receive call asks for (Linux `recvmmsg`).
pub const RECV_BATCH: usize = 32;
/// Datagrams one send call carries at most (Linux `sendmmsg`).
pub const SEND_BATCH: usize = 32;

/// One `recvmmsg(2)` of up to `slots.len()` datagrams from `fd`, without waiting. Datagram
/// `i` lands in `slots[i][0]` and, past its length, in `slots[i][1]`, its source in
/// `names[i]`; `got[i]` receives its length and source. Returns how many datagrams arrived
/// (at least one), or the error (`WouldBlock` when the socket is empty).
#[cfg(target_os = "linux")]
pub fn recv_batch(
    fd: std::os::fd::RawFd,
    slots: &mut [[&mut [u8]; 2]; RECV_BATCH],
    names: &mut [libc::sockaddr_storage; RECV_BATCH],
    got: &mut [(usize, Option<SocketAddr>); RECV_BATCH],
) -> io::Result<usize> {
    // SAFETY: all-zero bytes are a valid value of this plain C struct (null pointers, zero
    // lengths and flags).
    let mut headers: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovecs = [[libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2]; RECV_BATCH];
    for (i, slot) in slots.iter_mut().enumerate() {
        for (iov, part) in iovecs[i].iter_mut().zip(slot.iter_mut()) {
            iov.iov_base = part.as_mut_ptr().cast();
            iov.iov_len = part.len();
        }
        let header = &mut headers[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        header.msg_iov = iovecs[i].as_mut_ptr();
        header.msg_iovlen = 2;
    }
    // SAFETY: every header points at live memory owned by this frame or borrowed mutably for
    // it: its name at `names[i]` (borrowed) with `msg_namelen` its size, its two iovecs at
    // `iovecs[i]`, which point into the `slots[i]` slices with their lengths. The kernel writes at most
    // those lengths and the message count into `headers`, and none of it is used after the
    // call returns except through those same borrows. MSG_DONTWAIT: it never blocks.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            RECV_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n {
        let len = headers[i].msg_len as usize;
        // SAFETY: the kernel wrote the datagram's source address, `msg_namelen` bytes of it,
        // into `names[i]`, a `sockaddr_storage` (big enough for any address family).
        let source = unsafe { socket2::SockAddr::new(names[i], headers[i].msg_hdr.msg_namelen) };
        got[i] = (len, source.as_socket());
    }
    Ok(n)
}

/// One `sendmmsg(2)` of `datagrams` (head and body of each, gathered) to `addrs`, without
/// waiting. Returns how many went (the first that did not is retried by the caller, to learn
/// its error).
#[cfg(target_os = "linux")]
pub fn send_batch(
    sock: &socket2::SockRef<'_>,
    datagrams: &[(&[u8], &[u8])],
    addrs: &[socket2::SockAddr],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = datagrams.len().min(addrs.len()).min(SEND_BATCH);
    // SAFETY: all-zero bytes are a valid value of `mmsghdr` (null pointers, zero lengths).
    let mut headers: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovecs = [[libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2]; SEND_BATCH];
    for i in 0..n {
        let (head, body) = datagrams[i];
        for (iov, part) in iovecs[i].iter_mut().zip([head, body]) {
            // The kernel only reads from a send's iovecs; the `*mut` is what the C type says.
            iov.iov_base = part.as_ptr() as *mut libc::c_void;
            iov.iov_len = part.len();
        }
        let header = &mut headers[i].msg_hdr;
        header.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
        header.msg_namelen = addrs[i].len();
        header.msg_iov = iovecs[i].as_mut_ptr();
        header.msg_iovlen = 2;
    }
    // SAFETY: the first `n` headers point at live memory for the whole call: names at
    // `addrs[i]` (a valid socket address of `len()` bytes), iovecs at `iovecs[i]`, which
    // point at the borrowed head and body slices with their lengths.
    unsafe { send_headers(sock.as_raw_fd(), &mut headers[..n]) }
}

/// `sendmmsg(2)` of `headers` on `fd`, without waiting: how many went, or the error.
///
/// # Safety
/// Every header must point at memory that stays live and unchanged for the call: its name
/// (`msg_namelen` bytes), its iovecs (`msg_iovlen` of them, each at `iov_len` readable
/// bytes) and its control data (`msg_controllen` bytes, or none). The kernel only reads them,
/// and writes each header's `msg_len`.
#[cfg(target_os = "linux")]
unsafe fn send_headers(fd: std::os::fd::RawFd, headers: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the headers are as the caller promises; `headers.len()` of them are writable
    // for `msg_len`. MSG_DONTWAIT: it never blocks.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Datagrams one segmented message carries at most: the kernel's `UDP_MAX_SEGMENTS` (64 before
/// Linux 6.9, 128 since; the lower is taken).
pub const GSO_SEGMENTS: usize = 64;
/// Bytes one segmented message carries at most (a UDP datagram's limit, with room for headers).
pub const GSO_BYTES: usize = 65_000;
/// Datagrams one [`send_segmented`] call carries at most, over all its groups.
pub const GSO_BATCH: usize = 256;

/// Datagrams to one address that the kernel may send as one segmented message (UDP GSO):
/// every datagram as long as the first except the last, which may be shorter.
#[derive(Clone, Copy)]
pub struct SegmentGroup<'a> {
    /// Where they all go.
    pub addr: &'a socket2::SockAddr,
    /// Head and body of each, in order.
    pub datagrams: &'a [(&'a [u8], &'a [u8])],
}

impl SegmentGroup<'_> {
    /// Whether `datagrams` meets the kernel's rules for one segmented message: at most
    /// [`GSO_SEGMENTS`] of them and [`GSO_BYTES`] in all, each as long as the first but the
    /// last, which is no longer. A group of one always does.
    pub fn is_valid(&self) -> bool {
        match self.datagrams.split_last() {
            None => false,
            Some((last, rest)) => {
                (0..rest.len()).all(|i| extends_segment_group(&rest[..i], datagram_len(&rest[i])))
                    && extends_segment_group(rest, datagram_len(last))
            }
        }
    }
}

/// Whether a datagram of `len` bytes may follow `group` in one segmented message (see
/// [`SegmentGroup`]): it is no longer than the first, the group's last is as long as the
/// first, and the limits hold. Any datagram may start a group; an empty one joins none.
pub fn extends_segment_group(group: &[(&[u8], &[u8])], len: usize) -> bool {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return true;
    };
    joins_segment_group(datagram_len(first), datagram_len(last), group.len(), len)
}

/// [`extends_segment_group`] on lengths: whether a datagram of `len` bytes may follow a
/// non-empty group of `count` datagrams whose first is `size` bytes long and last `last`.
///
/// ```
/// use siprtmp_runtime_common::mmsg::joins_segment_group;
/// assert!(joins_segment_group(100, 100, 3, 100));
/// assert!(joins_segment_group(100, 100, 3, 60), "a shorter one ends the group");
/// assert!(!joins_segment_group(100, 60, 4, 60), "nothing after a shorter one");
/// assert!(!joins_segment_group(100, 100, 3, 101));
/// ```
pub fn joins_segment_group(size: usize, last: usize, count: usize, len: usize) -> bool {
    size > 0
        && last == size
        && len <= size
        && count < GSO_SEGMENTS
        && (count + 1) * size <= GSO_BYTES
}

/// Whether a GSO message failed because it was one (its datagrams may go one by one).
#[cfg(target_os = "linux")]
pub fn cannot_segment(e: &io::Error) -> bool {
    lacks_gso(e)
        || e.raw_os_error() == Some(libc::EINVAL)
        || e.raw_os_error() == Some(libc::EMSGSIZE)
}

/// Whether the system lacks GSO for this socket altogether (no use asking again).
#[cfg(target_os = "linux")]
pub fn lacks_gso(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
    )
}

/// A two-part datagram's length.
fn datagram_len(datagram: &(&[u8], &[u8])) -> usize {
    datagram.0.len() + datagram.1.len()
}

/// Room for a `UDP_SEGMENT` control message, in u64 words (the alignment a `cmsghdr` needs):
/// `CMSG_SPACE(sizeof(u16))` on 64-bit Linux, a 16-byte header and the value, padded.
pub const SEGMENT_CONTROL_WORDS: usize = 3;

/// Makes `header` a UDP GSO message of `size`-byte segments: its control message, written
/// into `control` (which must outlive every use of `header`), is `UDP_SEGMENT` with `size`.
#[cfg(target_os = "linux")]
pub fn set_segment_size(
    header: &mut libc::msghdr,
    control: &mut [u64; SEGMENT_CONTROL_WORDS],
    size: usize,
) {
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(control) as _;
    // SAFETY: `msg_control` points at `control`, big enough for one `cmsghdr` and a u16
    // (`CMSG_SPACE(2)`) and aligned for it; `CMSG_FIRSTHDR` and `CMSG_DATA` stay inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
    }
}

/// One `sendmmsg(2)` whose messages are `groups`, each sent as one UDP GSO message (a
/// `UDP_SEGMENT` control message with the first datagram's length; the kernel cuts it into
/// the datagrams again) when it holds more than one datagram, without waiting. Every group
/// must be [`SegmentGroup::is_valid`]. Returns how many groups went: at least one, unless
/// the first failed; a call carries [`SEND_BATCH`] groups and [`GSO_BATCH`] datagrams at
/// most, the caller sends the rest with the next. A kernel or route without UDP GSO fails
/// the first multi-datagram group (`EIO`, `EINVAL`, `ENOPROTOOPT`); the caller then sends
/// them one by one.
#[cfg(target_os = "linux")]
pub fn send_segmented(
    sock: &socket2::SockRef<'_>,
    groups: &[SegmentGroup<'_>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    debug_assert!(
        groups.iter().all(SegmentGroup::is_valid),
        "a group the kernel refuses"
    );
    // SAFETY: all-zero bytes are a valid value of `mmsghdr` (null pointers, zero lengths).
    let mut headers: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2 * GSO_BATCH];
    let mut controls = [[0u64; SEGMENT_CONTROL_WORDS]; SEND_BATCH];
    let mut firsts = [0usize; SEND_BATCH];
    let mut used = 0;
    let mut n = 0;
    for group in groups.iter().take(SEND_BATCH) {
        let count = group.datagrams.len();
        if count == 0 || used + count > GSO_BATCH {
            break;
        }
        let first = used;
        for &(head, body) in group.datagrams {
            for (iov, part) in iovecs[used * 2..used * 2 + 2].iter_mut().zip([head, body]) {
                // The kernel only reads from a send's iovecs; the `*mut` is what the C type says.
                iov.iov_base = part.as_ptr() as *mut libc::c_void;
                iov.iov_len = part.len();
            }
            used += 1;
        }
        let header = &mut headers[n].msg_hdr;
        header.msg_name = group.addr.as_ptr() as *mut libc::c_void;
        header.msg_namelen = group.addr.len();
        // Its iovecs' pointer is set once all are written (below).
        firsts[n] = first * 2;
        header.msg_iovlen = count * 2;
        if count > 1 {
            let size = group.datagrams[0].0.len() + group.datagrams[0].1.len();
            set_segment_size(header, &mut controls[n], size);
        }
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    let base = iovecs.as_mut_ptr();
    for (header, &first) in headers[..n].iter_mut().zip(&firsts) {
        // `wrapping_add` stays inside `iovecs`: the index is below `2 * used`.
        header.msg_hdr.msg_iov = base.wrapping_add(first);
    }
    // SAFETY: the first `n` headers point at live memory for the whole call: names at each
    // group's address (a valid socket address of `len()` bytes), iovecs into `iovecs` (which
    // point at the borrowed head and body slices with their lengths, and which no later write
    // moves), control messages at `controls[i]`.
    unsafe { send_headers(sock.as_raw_fd(), &mut headers[..n]) }
}

/// Without `sendmmsg`: the first datagram alone (the caller goes on with the rest).
#[cfg(not(target_os = "linux"))]
pub fn send_batch(
    sock: &socket2::SockRef<'_>,
    datagrams: &[(&[u8], &[u8])],
    addrs: &[socket2::SockAddr],
) -> io::Result<usize> {
    let (head, body) = datagrams[0];
    let slices = [IoSlice::new(head), IoSlice::new(body)];
    sock.send_to_vectored(&slices, &addrs[0]).map(|_| 1)
}
