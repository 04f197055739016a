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
/// `names[i]`; `got[i]` receives its length and source. Returns how many datagrams arrived (at least one), or the error
/// (`WouldBlock` when the socket is empty).
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
    // it: its name at `names[i]` (borrowed) with `msg_namelen` its size, its two iovecs at `iovecs[i]`,
    // which point into the `slots[i]` slices with their lengths. The kernel writes at most
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
    // point at the borrowed head and body slices with their lengths. The kernel reads those
    // and writes only `msg_len` into `headers`. MSG_DONTWAIT: it never blocks.
    let sent = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            headers.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
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
