//! Socket setup shared by the drivers: the listening socket (`SO_REUSEADDR`, a deep backlog)
//! and per-connection options (`TCP_NODELAY`, `SO_SNDBUF`), applied through `socket2` because
//! no runtime exposes all of them.

use std::io;
use std::net::{SocketAddr, TcpListener};

#[cfg(unix)]
use std::os::fd::AsFd as AsSocket;
#[cfg(windows)]
use std::os::windows::io::AsSocket;

/// Pending connections the kernel may hold before `accept`.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds a TCP listener on `addr` with `SO_REUSEADDR`, in non-blocking mode if `nonblocking`
/// (the event-loop drivers) or blocking (the thread-per-connection driver).
///
/// ```
/// let listener = siprtmp_runtime_common::bind_listener("127.0.0.1:0".parse().unwrap(), false).unwrap();
/// assert_ne!(listener.local_addr().unwrap().port(), 0);
/// ```
pub fn bind_listener(addr: SocketAddr, nonblocking: bool) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(nonblocking)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Sets `TCP_NODELAY` as asked (default off: Nagle's algorithm on, as nginx-rtmp does) and
/// `SO_SNDBUF` if given, on an accepted socket of any runtime.
///
/// Why Nagle on by default: with it every per-message `writev` to a player becomes its own TCP
/// segment, and a player that reads in bulk (`SO_RCVLOWAT`) made the server pay several times
/// nginx-rtmp's CPU per player; with Nagle the kernel coalesces them and we pay about what
/// nginx-rtmp does. Players that read every message cost the same either way. (The run and
/// its figures: `bench-compare/results/design-figures.md`.)
pub fn configure_stream<S: AsSocket>(
    socket: &S,
    send_buffer: Option<usize>,
    nodelay: bool,
) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_nodelay(nodelay)?;
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    Ok(())
}

/// Sets `SO_RCVLOWAT`: the socket reports itself readable only once `bytes` have arrived (or
/// the peer closed), and a read still returns what is there. A driver reading a connection on
/// a grid ([`crate::ReadGrid`]) sets it high, so that the socket raises no event between
/// ticks unless much arrives, and back to 1 (the default) when the connection is no longer
/// paced. Linux only (where epoll honours it); elsewhere it does nothing.
pub fn set_read_low_water<S: AsSocket>(socket: &S, bytes: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid descriptor (borrowed for the call) and a c_int option value of the
        // size given.
        let result = unsafe {
            libc::setsockopt(
                socket.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, bytes);
    Ok(())
}

/// One read of what `socket` holds, asked of the socket itself (`recv`), whatever a runtime
/// records about its readiness: `WouldBlock` when nothing is there (the socket must be
/// non-blocking). For reading a paced connection at its tick, when its low-water mark has
/// kept the runtime from hearing of the bytes.
///
/// ```
/// use std::io::Write;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
/// let (server, _) = listener.accept().unwrap();
/// server.set_nonblocking(true).unwrap();
/// let mut buf = [0u8; 8];
/// let nothing = siprtmp_runtime_common::read_now(&server, &mut buf).unwrap_err();
/// assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
/// client.write_all(b"hi").unwrap();
/// server.set_nonblocking(false).unwrap(); // here only, to wait for the bytes
/// assert_eq!(siprtmp_runtime_common::read_now(&server, &mut buf).unwrap(), 2);
/// ```
pub fn read_now<S: AsSocket>(socket: &S, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let socket = socket2::SockRef::from(socket);
    (&*socket).read(buf)
}

/// Shuts both directions of a socket down now, whoever else holds a handle to it: a reader
/// blocked on it sees end of stream, a writer gets an error. Errors (already closed) are
/// ignored.
pub fn shutdown_stream<S: AsSocket>(socket: &S) {
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Both);
}
