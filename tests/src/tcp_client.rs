//! A blocking RTMP client over a std `TcpStream`, built on the core's [`RtmpClient`] machine:
//! enough to script a player that connects, plays and then misbehaves (stops reading, sends
//! garbage) in tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};

/// How long each step of setting a client up may take.
const SET_UP_WITHIN: Duration = Duration::from_secs(15);

/// A connected client.
pub struct TcpRtmpClient {
    /// The connection to the server (blocking, with a 200 ms read timeout).
    pub socket: TcpStream,
    /// The client's protocol state; tests drive it directly to send commands or misbehave.
    pub machine: RtmpClient,
    buf: BytesMut,
}

impl TcpRtmpClient {
    /// Connects to `addr`, with `recv_buffer` as SO_RCVBUF if given (set before connecting so
    /// the TCP window stays small).
    pub fn connect(addr: SocketAddr, app: &str, recv_buffer: Option<usize>) -> Self {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&addr.into()).unwrap();
        let socket: TcpStream = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let machine = RtmpClient::new(&mut SeededRng::new(3), app, &format!("rtmp://{addr}/{app}"));
        let mut client = Self {
            socket,
            machine,
            buf: BytesMut::new(),
        };
        client.flush();
        client
    }

    /// Writes everything the machine queued.
    pub fn flush(&mut self) {
        while let Some(bytes) = self.machine.take_output() {
            self.socket.write_all(&bytes).unwrap();
        }
    }

    /// Reads and processes until an event matching `pred` arrives (or `timeout`).
    pub fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ClientEvent) -> bool,
    ) -> Option<ClientEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(event) = self.machine.poll_event() {
                if pred(&event) {
                    return Some(event);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.socket.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.machine.received(&mut self.buf).ok()?;
                    self.flush();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Every event up to and including the first that `stop` accepts, or up to `timeout`.
    pub fn collect(
        &mut self,
        timeout: Duration,
        mut stop: impl FnMut(&ClientEvent) -> bool,
    ) -> Vec<ClientEvent> {
        let mut seen = Vec::new();
        // `until` hands over only the event it stops at, so the predicate keeps the rest.
        let mut stopped = false;
        self.until(timeout, |e| {
            if !stopped {
                stopped = stop(e);
                seen.push(e.clone());
            }
            stopped
        });
        seen
    }

    /// Handshake, connect to `app` and createStream (each answered within 15 s): the client and
    /// its stream id.
    pub fn with_stream(addr: SocketAddr, app: &str, recv_buffer: Option<usize>) -> (Self, u32) {
        let mut client = Self::connect(addr, app, recv_buffer);
        client
            .until(SET_UP_WITHIN, |e| *e == ClientEvent::Connected)
            .expect("connected");
        client.machine.create_stream();
        client.flush();
        let Some(ClientEvent::StreamCreated(id)) = client.until(SET_UP_WITHIN, |e| {
            matches!(e, ClientEvent::StreamCreated(_))
        }) else {
            panic!("no stream created");
        };
        (client, id)
    }

    /// Handshake, connect, createStream and play `name`; returns once Play.Start arrives.
    pub fn play(addr: SocketAddr, app: &str, name: &str, recv_buffer: Option<usize>) -> Self {
        Self::play_from(addr, app, name, -2.0, recv_buffer).0
    }

    /// Handshake, connect, createStream and `play(name, start)`; returns the client and its
    /// stream id once Play.Start arrives.
    pub fn play_from(
        addr: SocketAddr,
        app: &str,
        name: &str,
        start: f64,
        recv_buffer: Option<usize>,
    ) -> (Self, u32) {
        let (mut client, id) = Self::with_stream(addr, app, recv_buffer);
        client.machine.play(id, name, start);
        client.flush();
        client
            .until(
                SET_UP_WITHIN,
                |e| matches!(e, ClientEvent::Status(_, code) if code == "NetStream.Play.Start"),
            )
            .expect("Play.Start");
        (client, id)
    }
}
