//! [`PublisherLoad`]: one thread, one mio `Poll`, N publishers and no players, each
//! publisher publishing its own stream (`bench-0`, `bench-1`, ...) with the scenario's media
//! paced in real time, as the one publisher of a player point does. The caller steps it as it
//! steps [`super::generator::Load`]: set up, run (warm-up), open the window, run, close it,
//! then [`PublisherLoad::drain`] proves what the server took.
//!
//! With no player there is no frame to count at a receiver, so the proof of delivery is the
//! server's own reading: once the window closes the publishers stop sending, and the point
//! passes only when, for every publisher, the kernel's socket tables (`/proc/net/tcp`, through
//! `procfs`) show nothing left in the publisher's send queue nor in the server's receive queue
//! of that connection (every byte sent was read by the server process), the publisher got
//! `NetStream.Publish.Start`, and its connection was neither closed nor answered with an
//! error status through the drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::RtmpClient;
use siprtmp_core::rtmp::message::RtmpMessage;

use super::conn::{Conn, Phase, Window};
use super::media::{tag_payload, Cursor, MediaLoop};

/// Publishers in setup at once (keeps the servers' accept backlogs from overflowing).
const MAX_CONNECTING: usize = 64;
/// The publishers' first frames are spread over this much (the audio frame interval), so that
/// N publishers do not write their frames in lockstep, which independent encoders would not.
const PHASE_SPREAD: Duration = Duration::from_millis(20);

/// The stream name publisher `i` publishes.
pub(crate) fn stream_name(i: usize) -> String {
    format!("bench-{i}")
}

/// One connection's queues in the kernel's socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketQueues {
    /// The socket's own address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Bytes written by the application and not yet acknowledged by the peer.
    pub tx_queue: u64,
    /// Bytes received and not yet read by the application.
    pub rx_queue: u64,
}

/// Bytes a publisher at `publisher` sent to `server` that the server process has not read yet:
/// the publisher socket's send queue plus the server socket's receive queue. `None` when
/// either socket is missing from `table` (the connection is gone).
pub(crate) fn unread_by_server(
    table: &[SocketQueues],
    publisher: SocketAddr,
    server: SocketAddr,
) -> Option<u64> {
    let ours = table
        .iter()
        .find(|q| q.local == publisher && q.remote == server)?;
    let theirs = table
        .iter()
        .find(|q| q.local == server && q.remote == publisher)?;
    Some(ours.tx_queue + theirs.rx_queue)
}

/// The established TCP sockets of this network namespace, IPv4 and IPv6.
fn socket_table() -> Result<Vec<SocketQueues>, String> {
    let mut all = procfs::net::tcp().map_err(|e| format!("/proc/net/tcp: {e}"))?;
    // A kernel without IPv6 has no tcp6 table; the servers listen on IPv4 anyway.
    all.extend(procfs::net::tcp6().unwrap_or_default());
    Ok(all
        .into_iter()
        .map(|e| SocketQueues {
            local: e.local_address,
            remote: e.remote_address,
            tx_queue: u64::from(e.tx_queue),
            rx_queue: u64::from(e.rx_queue),
        })
        .collect())
}

/// What the server took from the publishers, checked after the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishCheck {
    /// Publishers in the point.
    pub publishers: usize,
    /// Counted frames all publishers sent during the window.
    pub frames_sent: u64,
    /// Publishers still publishing after the drain whose every byte the server read.
    pub verified: usize,
    /// Window frames of the verified publishers.
    pub verified_frames: u64,
    /// Bytes sent that the server had not read when the drain ended (all publishers).
    pub unread_bytes: u64,
    /// The first failure: a publisher refused, dropped, or with bytes left unread.
    pub failure: Option<String>,
}

/// One publisher: its connection and its own clock through the media.
struct Publisher {
    conn: Conn,
    name: String,
    /// The publisher's own address (its half of the connection in the socket table).
    local: SocketAddr,
    /// When its timestamp 0 is due (set once every publisher publishes).
    start: Option<Instant>,
    cursor: Cursor,
    next_seq: u32,
    /// Counted frames sent while the window was open.
    window_frames: u64,
}

/// The load generator of a publisher point.
pub(crate) struct PublisherLoad {
    poll: Poll,
    events: Events,
    pubs: Vec<Publisher>,
    /// Where every publisher publishes.
    addr: SocketAddr,
    tls: bool,
    media: Arc<MediaLoop>,
    rng: SeededRng,
    /// Frames are sent (cleared by [`Self::close_window`]: nothing needs them after it).
    sending: bool,
    in_window: bool,
    scratch: Vec<u8>,
}

impl PublisherLoad {
    /// Connects `publishers` publishers to `addr`, at most [`MAX_CONNECTING`] in setup at
    /// once, and runs until every one publishes (then starts their media) or `timeout` passes.
    /// A publisher refused or dropped during setup is an error naming it.
    pub(crate) fn start(
        addr: SocketAddr,
        tls: bool,
        media: Arc<MediaLoop>,
        publishers: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut load = Self {
            poll: Poll::new().map_err(|e| e.to_string())?,
            events: Events::with_capacity(1024),
            pubs: Vec::with_capacity(publishers),
            addr,
            tls,
            media,
            rng: SeededRng::new(23),
            sending: false,
            in_window: false,
            scratch: vec![0; 64 * 1024],
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = load.first_failure() {
                return Err(why);
            }
            let running = load
                .pubs
                .iter()
                .filter(|p| p.conn.phase == Phase::Running)
                .count();
            if running == publishers {
                break;
            }
            let setting_up = load.pubs.len() - running;
            let left = publishers - load.pubs.len();
            for _ in 0..MAX_CONNECTING.saturating_sub(setting_up).min(left) {
                load.connect().map_err(|e| format!("connect: {e}"))?;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "setup timed out: {running} of {publishers} publishers publishing"
                ));
            }
            load.step(deadline.min(Instant::now() + Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
        }
        let now = Instant::now();
        for (i, p) in load.pubs.iter_mut().enumerate() {
            p.start = Some(now + PHASE_SPREAD.mul_f64(i as f64 / publishers as f64));
        }
        load.sending = true;
        Ok(load)
    }

    fn connect(&mut self) -> std::io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let i = self.pubs.len();
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        let url = format!("{scheme}://{}/live", self.addr);
        let machine = RtmpClient::new(&mut self.rng, "live", &url);
        let tls = self.tls.then(super::tls::client);
        self.pubs.push(Publisher {
            conn: Conn::with_tls(stream, tls, machine, true),
            name: stream_name(i),
            local,
            start: None,
            cursor: Cursor::default(),
            next_seq: 1,
            window_frames: 0,
        });
        Ok(())
    }

    /// The first publisher that failed, with its stream name.
    fn first_failure(&self) -> Option<String> {
        self.pubs.iter().find_map(|p| {
            p.conn
                .failed
                .as_ref()
                .map(|f| format!("publisher {}: {f}", p.name))
        })
    }

    /// Runs the publishers until `until`.
    pub(crate) fn run_until(&mut self, until: Instant) -> std::io::Result<()> {
        while Instant::now() < until {
            self.step(until)?;
        }
        Ok(())
    }

    /// Starts counting: frames sent from now on are the window's.
    pub(crate) fn open_window(&mut self) {
        self.in_window = true;
    }

    /// Stops counting, and sending: with no player, nothing needs later frames.
    pub(crate) fn close_window(&mut self) {
        self.in_window = false;
        self.sending = false;
    }

    /// After [`Self::close_window`]: reads the publishers' sockets and the kernel's socket
    /// table until the server has read every byte of every publisher still up, or `timeout`
    /// passes; then says which publishers passed.
    pub(crate) fn drain(&mut self, timeout: Duration) -> Result<PublishCheck, String> {
        let deadline = Instant::now() + timeout;
        let unread = loop {
            self.step(Instant::now() + Duration::from_millis(10))
                .map_err(|e| e.to_string())?;
            for p in &mut self.pubs {
                p.conn.flush();
                p.conn
                    .read(&mut self.scratch, &p.name, no_window(), None, None);
            }
            let table = socket_table()?;
            let unread: Vec<Option<u64>> = self
                .pubs
                .iter()
                .map(|p| {
                    let left = p.conn.queued() as u64;
                    unread_by_server(&table, p.local, self.addr).map(|n| n + left)
                })
                .collect();
            let settled = self
                .pubs
                .iter()
                .zip(&unread)
                .all(|(p, u)| p.conn.failed.is_some() || *u == Some(0));
            if settled || Instant::now() >= deadline {
                break unread;
            }
        };
        let mut check = PublishCheck {
            publishers: self.pubs.len(),
            frames_sent: self.pubs.iter().map(|p| p.window_frames).sum(),
            failure: self.first_failure(),
            ..PublishCheck::default()
        };
        for (p, u) in self.pubs.iter().zip(&unread) {
            let up = p.conn.failed.is_none() && p.conn.phase == Phase::Running;
            match u {
                Some(0) if up => {
                    check.verified += 1;
                    check.verified_frames += p.window_frames;
                }
                Some(n) => check.unread_bytes += n,
                None => {}
            }
            if check.failure.is_none() && up {
                check.failure = match u {
                    None => Some(format!(
                        "publisher {}: its connection is gone from /proc/net/tcp",
                        p.name
                    )),
                    Some(n) if *n > 0 => Some(format!(
                        "publisher {}: {n} bytes sent were not read by the server within {:.1} s",
                        p.name,
                        timeout.as_secs_f64()
                    )),
                    Some(_) => None,
                };
            }
        }
        if check.unread_bytes > 0 {
            if let Some(f) = &mut check.failure {
                f.push_str(&format!(
                    "; {} bytes unread over all publishers",
                    check.unread_bytes
                ));
            }
        }
        Ok(check)
    }

    /// Sends the frames that are due, waits for socket events up to `until` (or the next
    /// frame), and handles them.
    fn step(&mut self, until: Instant) -> std::io::Result<()> {
        let now = Instant::now();
        let next_frame = self.send_due(now);
        let wake = next_frame.map_or(until, |t| t.min(until));
        let timeout = wake.saturating_duration_since(now);
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            let Some(p) = self.pubs.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() {
                p.conn.flush();
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                p.conn
                    .read(&mut self.scratch, &p.name, no_window(), None, None);
            }
        }
        Ok(())
    }

    /// Sends every publisher's frames whose time has come; returns when the next one is due.
    fn send_due(&mut self, now: Instant) -> Option<Instant> {
        if !self.sending {
            return None;
        }
        let mut next: Option<Instant> = None;
        for p in &mut self.pubs {
            let Some(start) = p.start else { continue };
            if p.conn.failed.is_some() {
                continue;
            }
            loop {
                let (frame, ts) = self.media.at(p.cursor);
                let due = start + Duration::from_millis(u64::from(ts));
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    break;
                }
                // The same bytes as the one publisher of a player point: counted frames carry
                // their sequence tag.
                let payload = if frame.counted {
                    let seq = p.next_seq;
                    p.next_seq += 1;
                    if self.in_window {
                        p.window_frames += 1;
                    }
                    tag_payload(&frame.body, seq)
                } else {
                    frame.body.clone()
                };
                let msg = RtmpMessage::new(frame.type_id, 0, ts, payload);
                p.conn.send_media(&msg);
                self.media.advance(&mut p.cursor);
            }
        }
        next
    }
}

/// Publishers count nothing they receive.
fn no_window() -> Window {
    Window {
        lo: u32::MAX,
        hi: u32::MAX,
    }
}

impl super::WindowedLoad for PublisherLoad {
    fn run_until(&mut self, until: Instant) -> std::io::Result<()> {
        PublisherLoad::run_until(self, until)
    }
    fn open_window(&mut self) {
        PublisherLoad::open_window(self)
    }
    fn close_window(&mut self) {
        PublisherLoad::close_window(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(local: &str, remote: &str, tx: u64, rx: u64) -> SocketQueues {
        SocketQueues {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            tx_queue: tx,
            rx_queue: rx,
        }
    }

    const SERVER: &str = "127.0.0.1:1935";
    const PUB: &str = "127.0.0.1:40000";

    #[test]
    fn unread_bytes_are_the_senders_queue_and_the_servers_unread_input() {
        let server: SocketAddr = SERVER.parse().unwrap();
        let publisher: SocketAddr = PUB.parse().unwrap();
        // The listener and another publisher's connection do not count.
        let table = vec![
            q(SERVER, "0.0.0.0:0", 0, 0),
            q("127.0.0.1:40001", SERVER, 900, 0),
            q(SERVER, "127.0.0.1:40001", 0, 700),
            q(PUB, SERVER, 0, 0),
            q(SERVER, PUB, 0, 0),
        ];
        assert_eq!(unread_by_server(&table, publisher, server), Some(0));
        let table = vec![q(PUB, SERVER, 120, 0), q(SERVER, PUB, 5, 300)];
        // Only what the server has not read: its own send queue (5) is not the publisher's.
        assert_eq!(unread_by_server(&table, publisher, server), Some(420));
    }

    #[test]
    fn a_connection_missing_from_the_table_is_not_taken_as_read() {
        let server: SocketAddr = SERVER.parse().unwrap();
        let publisher: SocketAddr = PUB.parse().unwrap();
        assert_eq!(unread_by_server(&[], publisher, server), None);
        let half = vec![q(PUB, SERVER, 0, 0)];
        assert_eq!(unread_by_server(&half, publisher, server), None);
    }

    fn speex_loop() -> Arc<MediaLoop> {
        let tag = crate::flv::FlvTag {
            type_id: 8,
            timestamp: 0,
            body: vec![0xb2; 40].into(),
        };
        Arc::new(MediaLoop::new(vec![tag]).unwrap())
    }

    #[test]
    fn a_publisher_the_server_drops_during_setup_fails_the_point_by_name() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The "server" takes the first connection and closes it; the others wait in its
        // backlog, never answered.
        let closer = std::thread::spawn(move || drop(listener.accept()));
        let err = PublisherLoad::start(addr, false, speex_loop(), 3, Duration::from_secs(10))
            .err()
            .expect("a dropped publisher must fail the setup");
        closer.join().unwrap();
        // Closed with the handshake unread: a reset, or an orderly close if it came first.
        assert!(
            err.starts_with("publisher bench-")
                && (err.ends_with("closed by the server") || err.contains("reset by peer")),
            "{err}"
        );
    }

    #[test]
    fn publishers_never_answered_time_out_with_a_count() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = PublisherLoad::start(addr, false, speex_loop(), 2, Duration::from_millis(300))
            .err()
            .expect("no publish start, no point");
        assert_eq!(err, "setup timed out: 0 of 2 publishers publishing");
        drop(listener);
    }

    #[test]
    fn stream_names_are_distinct() {
        let names: std::collections::HashSet<String> = (0..1000).map(stream_name).collect();
        assert_eq!(names.len(), 1000);
    }
}
