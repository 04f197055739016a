//! The floor server: the gateway's data path with no protocol in it. One thread, one
//! `mio::Poll` (edge-triggered epoll, as the mio driver), TCP clients on one side and one UDP
//! socket towards the far end on the other, making the system calls the gateway makes for the
//! same traffic (see [`super`] for what it leaves out):
//!
//! - client sockets keep Nagle's algorithm on (siprtmp's default);
//! - a readable client is read until a read comes back short (the mio driver's rule), and
//!   every complete record becomes an RTP datagram (12-byte header, the record's payload);
//! - the datagrams of one wake-up leave in `sendmmsg` batches
//!   ([`siprtmp_runtime_common::mmsg::send_batch`], the gateway's own call), or with `-gso`
//!   each run of equal-length datagrams as one UDP GSO message
//!   ([`siprtmp_runtime_common::mmsg::send_segmented`], as the gateway does by default);
//! - the UDP socket (8 MiB receive buffer, as the gateway's shared RTP ports ask) is drained
//!   with `recvmmsg` ([`siprtmp_runtime_common::mmsg::recv_batch`]); each datagram goes back to
//!   the client its SSRC names, as a record;
//! - each client with records waiting gets one `write` per wake-up, or with a merge window,
//!   one when its oldest waiting record is that old (the gateway's `--merge-writes`);
//! - with a tick, the loop polls at most once per tick and sleeps in between (what the gateway
//!   does not do: a measure of what fewer wake-ups would save, at up to a tick of latency on
//!   every hop).
//!
//! No allocation per packet: buffers grow to their working size and are reused.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use siprtmp_runtime_common::mmsg::{
    extends_segment_group, recv_batch, send_batch, send_segmented, SegmentGroup, GSO_BATCH,
    RECV_BATCH, SEND_BATCH,
};

use super::{RECORD_HEADER, RTP_HEADER};

const LISTENER: Token = Token(usize::MAX - 1);
const UDP: Token = Token(usize::MAX - 2);
/// Room for one received datagram (RTP of a Speex frame is under 100 bytes).
const SLOT: usize = 2048;
/// What the UDP socket asks for as its receive buffer (as the gateway's shared ports).
const RECEIVE_BUFFER: usize = 8 << 20;

/// One client: its socket, its unparsed input and its records waiting to be written.
struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    /// Whether a flush of this client is scheduled (merged) or due (unmerged).
    scheduled: bool,
    /// The next RTP sequence number of its datagrams.
    rtp_seq: u16,
}

/// The floor server's state.
struct Floor {
    poll: Poll,
    listener: TcpListener,
    udp: UdpSocket,
    /// The far end's address once per slot of a `sendmmsg` batch (built once, not per batch).
    far_end: [socket2::SockAddr; SEND_BATCH],
    merge: Option<Duration>,
    tick: Option<Duration>,
    /// Runs of equal-length datagrams leave as one UDP GSO message each.
    gso: bool,
    clients: Vec<Client>,
    /// Datagrams built this wake-up, back to back, with their ends.
    datagrams: Vec<u8>,
    ends: Vec<usize>,
    /// Clients to write: at the end of this wake-up (unmerged) or at their deadline (merged;
    /// deadlines come in order since the window is the same for all).
    due: VecDeque<(Instant, usize)>,
    read_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

/// Serves on 127.0.0.1 (a free port, printed on stdout as `LISTEN <port>`) until killed,
/// sending RTP to `far_end`, writing to clients per wake-up or after `merge`, polling at most
/// once per `tick`.
pub(crate) fn serve(
    far_end: SocketAddr,
    merge: Option<Duration>,
    tick: Option<Duration>,
    gso: bool,
) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().expect("a literal address"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let std_udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket2::SockRef::from(&std_udp).set_recv_buffer_size(RECEIVE_BUFFER)?;
    std_udp.set_nonblocking(true)?;
    let mut udp = UdpSocket::from_std(std_udp);
    poll.registry()
        .register(&mut udp, UDP, Interest::READABLE)?;
    let port = listener.local_addr()?.port();
    let mut stdout = io::stdout();
    writeln!(stdout, "LISTEN {port}")?;
    stdout.flush()?;
    let mut floor = Floor {
        poll,
        listener,
        udp,
        far_end: std::array::from_fn(|_| far_end.into()),
        merge,
        tick,
        gso,
        clients: Vec::new(),
        datagrams: Vec::with_capacity(64 * 1024),
        ends: Vec::with_capacity(1024),
        due: VecDeque::with_capacity(1024),
        read_buf: vec![0; 64 * 1024],
        recv_buf: vec![0; RECV_BATCH * SLOT],
    };
    floor.run()
}

impl Floor {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_poll = Instant::now();
        loop {
            if let Some(tick) = self.tick {
                let since = last_poll.elapsed();
                if since < tick {
                    std::thread::sleep(tick - since);
                }
                last_poll = Instant::now();
            }
            let timeout = self
                .due
                .front()
                .map(|&(at, _)| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all()?,
                    UDP => self.drain_udp(),
                    Token(i) => {
                        if event.is_readable() || event.is_read_closed() {
                            self.read_client(i);
                        }
                        if event.is_writable() {
                            self.write_client(i);
                        }
                    }
                }
            }
            self.send_datagrams();
            self.write_due(Instant::now());
        }
    }

    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    // Nagle stays on, as on siprtmp's client sockets by default (its
                    // `--tcp-nodelay` is off): a write while the previous one is unacknowledged
                    // waits and joins the next, which the unmerged floor relies on as siprtmp does.
                    let token = Token(self.clients.len());
                    self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    self.clients.push(Client {
                        stream,
                        input: Vec::with_capacity(4096),
                        output: Vec::with_capacity(4096),
                        written: 0,
                        scheduled: false,
                        rtp_seq: 0,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads client `i` until a short read, turning its complete records into datagrams.
    fn read_client(&mut self, i: usize) {
        let Some(client) = self.clients.get_mut(i) else {
            return;
        };
        loop {
            match client.stream.read(&mut self.read_buf) {
                Ok(0) => return,
                Ok(n) => {
                    client.input.extend_from_slice(&self.read_buf[..n]);
                    if n < self.read_buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        let mut at = 0;
        while let Some(header) = client.input.get(at..at + RECORD_HEADER) {
            let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let Some(payload) = client
                .input
                .get(at + RECORD_HEADER..at + RECORD_HEADER + len)
            else {
                break;
            };
            let seq = client.rtp_seq;
            client.rtp_seq = seq.wrapping_add(1);
            let ssrc = i as u32 + 1;
            let timestamp = u32::from(seq) * 320;
            self.datagrams.extend_from_slice(&[0x80, 97]);
            self.datagrams.extend_from_slice(&seq.to_be_bytes());
            self.datagrams.extend_from_slice(&timestamp.to_be_bytes());
            self.datagrams.extend_from_slice(&ssrc.to_be_bytes());
            self.datagrams.extend_from_slice(payload);
            self.ends.push(self.datagrams.len());
            at += RECORD_HEADER + len;
        }
        client.input.drain(..at);
    }

    /// Sends this wake-up's datagrams to the far end, `SEND_BATCH` per `sendmmsg`.
    fn send_datagrams(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        if self.gso {
            self.send_segmented();
            return;
        }
        let sock = socket2::SockRef::from(&self.udp);
        let mut start = 0;
        let mut sent = 0;
        while sent < self.ends.len() {
            let mut batch: [(&[u8], &[u8]); SEND_BATCH] = [(&[], &[]); SEND_BATCH];
            let n = (self.ends.len() - sent).min(SEND_BATCH);
            let mut from = start;
            for (slot, &end) in batch.iter_mut().zip(&self.ends[sent..sent + n]) {
                *slot = (&self.datagrams[from..end], &[]);
                from = end;
            }
            // A full socket buffer drops the rest of the batch, as the gateway does.
            let went = send_batch(&sock, &batch[..n], &self.far_end[..n])
                .unwrap_or(n)
                .max(1);
            start = self.ends[sent + went - 1];
            sent += went;
        }
        self.datagrams.clear();
        self.ends.clear();
    }

    /// Sends this wake-up's datagrams to the far end with UDP GSO: each run of datagrams of
    /// equal length (the last may be shorter) as one message, `SEND_BATCH` messages per
    /// `sendmmsg`.
    fn send_segmented(&mut self) {
        let sock = socket2::SockRef::from(&self.udp);
        let mut parts: [(&[u8], &[u8]); GSO_BATCH] = [(&[], &[]); GSO_BATCH];
        let mut sent = 0;
        while sent < self.ends.len() {
            // This call's datagrams, then its groups.
            let n = (self.ends.len() - sent).min(GSO_BATCH);
            let mut from = if sent == 0 { 0 } else { self.ends[sent - 1] };
            for (part, &end) in parts.iter_mut().zip(&self.ends[sent..sent + n]) {
                *part = (&self.datagrams[from..end], &[]);
                from = end;
            }
            let mut groups = [SegmentGroup {
                addr: &self.far_end[0],
                datagrams: &[],
            }; SEND_BATCH];
            let mut count = 0;
            let mut at = 0;
            while at < n && count < SEND_BATCH {
                let mut end = at + 1;
                while end < n && extends_segment_group(&parts[at..end], parts[end].0.len()) {
                    end += 1;
                }
                groups[count].datagrams = &parts[at..end];
                count += 1;
                at = end;
            }
            // A failed send drops its group, as a full socket buffer does.
            let went = send_segmented(&sock, &groups[..count]).unwrap_or(1).max(1);
            sent += groups[..went]
                .iter()
                .map(|g| g.datagrams.len())
                .sum::<usize>();
        }
        self.datagrams.clear();
        self.ends.clear();
    }

    /// Drains the UDP socket: each datagram goes to the client its SSRC names.
    fn drain_udp(&mut self) {
        loop {
            let mut names: [libc::sockaddr_storage; RECV_BATCH] =
                // SAFETY: all-zero bytes are a valid `sockaddr_storage` (family unspecified).
                unsafe { std::mem::zeroed() };
            let mut got = [(0usize, None); RECV_BATCH];
            let mut chunks = self.recv_buf.chunks_mut(SLOT);
            let mut slots: [[&mut [u8]; 2]; RECV_BATCH] = std::array::from_fn(|_| {
                [chunks.next().expect("RECV_BATCH slots"), Default::default()]
            });
            let count = match recv_batch(self.udp.as_raw_fd(), &mut slots, &mut names, &mut got) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let now = Instant::now();
            for (k, &(len, _)) in got.iter().enumerate().take(count) {
                let datagram = &slots[k][0][..len.min(SLOT)];
                let Some(ssrc) = datagram.get(8..RTP_HEADER) else {
                    continue;
                };
                let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                let Some(client) = (ssrc as usize)
                    .checked_sub(1)
                    .and_then(|i| self.clients.get_mut(i))
                else {
                    continue;
                };
                let payload = &datagram[RTP_HEADER..];
                client
                    .output
                    .extend_from_slice(&(payload.len() as u16).to_be_bytes());
                client.output.extend_from_slice(payload);
                if !client.scheduled {
                    client.scheduled = true;
                    let at = now + self.merge.unwrap_or(Duration::ZERO);
                    self.due.push_back((at, ssrc as usize - 1));
                }
            }
            if count < RECV_BATCH {
                return;
            }
        }
    }

    /// Writes every client whose flush is due by `now`.
    fn write_due(&mut self, now: Instant) {
        while let Some(&(at, i)) = self.due.front() {
            if at > now {
                return;
            }
            self.due.pop_front();
            if let Some(client) = self.clients.get_mut(i) {
                client.scheduled = false;
            }
            self.write_client(i);
        }
    }

    /// One `write` of what client `i` has waiting (the rest waits for writability).
    fn write_client(&mut self, i: usize) {
        let Some(client) = self.clients.get_mut(i) else {
            return;
        };
        if client.scheduled || client.written == client.output.len() {
            return;
        }
        match client.stream.write(&client.output[client.written..]) {
            Ok(n) => client.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => client.written = client.output.len(),
        }
        if client.written == client.output.len() {
            client.output.clear();
            client.written = 0;
        }
    }
}
