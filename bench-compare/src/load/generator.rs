//! [`Load`]: one thread, one mio `Poll`, one publisher paced in real time and N players, all
//! [`RtmpClient`] machines over TCP. The caller steps it through its phases: set up, run
//! (warm-up), open the measurement window, run, close it, then drain and check that every
//! player received every frame sent in the window.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::RtmpClient;
use siprtmp_core::rtmp::message::RtmpMessage;

use super::conn::{Conn, DelayProbe, Phase, Window};
use super::delay::{DelayHistogram, SendTimes};
use super::media::{tag_payload, Cursor, MediaLoop};

/// The stream every point publishes and plays.
const STREAM: &str = "bench";
/// Players in setup at once (keeps the servers' accept backlogs from overflowing).
const MAX_CONNECTING: usize = 64;
/// SO_RCVLOWAT of a bulk reader.
pub(crate) const BULK_LOW_WATER: i32 = 16 * 1024;

/// How players read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderKind {
    /// Reads every message as it arrives (one wake-up per message).
    Eager,
    /// SO_RCVLOWAT 16 KiB: woken once 16 KiB are queued.
    Bulk,
}

impl ReaderKind {
    /// Short name used in flags and reports.
    pub fn name(self) -> &'static str {
        match self {
            ReaderKind::Eager => "reader",
            ReaderKind::Bulk => "bulk",
        }
    }
}

/// What a closed window delivered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivery {
    /// Counted frames the publisher sent during the window.
    pub sent: u64,
    /// The fewest window frames any player received.
    pub min_received: u64,
    /// Players that received every window frame, in order.
    pub complete: usize,
    /// Players in the point.
    pub players: usize,
    /// The first failure, if any connection failed.
    pub failure: Option<String>,
    /// How long the window frames took, publisher's write to each player's read.
    pub delay: DelayHistogram,
}

impl Delivery {
    /// Whether every player received every frame sent during the window.
    pub(crate) fn is_complete(&self) -> bool {
        self.failure.is_none() && self.complete == self.players && self.sent > 0
    }
}

/// The load generator for one measurement point.
pub(crate) struct Load {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    /// Where the publisher publishes.
    addr: SocketAddr,
    /// Where the players play, taken in turn: the publisher's server, or the edges of a
    /// relay.
    play_addrs: Vec<SocketAddr>,
    /// Every connection over RTMPS.
    tls: bool,
    players: usize,
    reader: ReaderKind,
    media: Arc<MediaLoop>,
    rng: SeededRng,
    /// When the stream's timestamp 0 was sent (set once publishing starts).
    start: Option<Instant>,
    cursor: Cursor,
    next_seq: u32,
    window: Window,
    scratch: Vec<u8>,
    sent: SendTimes,
    delays: DelayHistogram,
}

impl Load {
    /// Connects the publisher and then `players` players to `addr`, and runs until all of
    /// them publish or play, or `timeout` passes.
    pub(crate) fn start(
        addr: SocketAddr,
        tls: bool,
        media: Arc<MediaLoop>,
        players: usize,
        reader: ReaderKind,
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::start_spread(addr, vec![addr], tls, media, players, reader, timeout)
    }

    /// [`Load::start`] with the publisher on `addr` and the players spread over `play_addrs`
    /// in turn (player `i` on `play_addrs[i % len]`): an origin and its edges.
    pub(crate) fn start_spread(
        addr: SocketAddr,
        play_addrs: Vec<SocketAddr>,
        tls: bool,
        media: Arc<MediaLoop>,
        players: usize,
        reader: ReaderKind,
        timeout: Duration,
    ) -> Result<Self, String> {
        if play_addrs.is_empty() {
            return Err("no server for the players".into());
        }
        let mut load = Self {
            poll: Poll::new().map_err(|e| e.to_string())?,
            events: Events::with_capacity(1024),
            conns: Vec::with_capacity(players + 1),
            addr,
            play_addrs,
            tls,
            players,
            reader,
            media,
            rng: SeededRng::new(17),
            start: None,
            cursor: Cursor::default(),
            next_seq: 1,
            window: Window {
                lo: u32::MAX,
                hi: u32::MAX,
            },
            scratch: vec![0; 64 * 1024],
            sent: SendTimes::default(),
            delays: DelayHistogram::default(),
        };
        load.connect(true).map_err(|e| format!("connect: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = load.conns.iter().find_map(|c| c.failed.clone()) {
                return Err(why);
            }
            let running = load
                .conns
                .iter()
                .filter(|c| c.phase == Phase::Running)
                .count();
            if running == players + 1 {
                return Ok(load);
            }
            // Players join once the stream is published, a few at a time.
            if load.start.is_some() {
                let setting_up = load.conns.len() - running;
                let want = MAX_CONNECTING.saturating_sub(setting_up);
                let left = players + 1 - load.conns.len();
                for _ in 0..want.min(left) {
                    load.connect(false).map_err(|e| format!("connect: {e}"))?;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "setup timed out: {running} of {} connections running",
                    players + 1
                ));
            }
            load.step(deadline.min(Instant::now() + Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
        }
    }

    fn connect(&mut self, publisher: bool) -> io::Result<()> {
        // The publisher is connection 0; player k (from 1) goes to the servers in turn.
        let addr = match self.conns.len() {
            0 => self.addr,
            k => self.play_addrs[(k - 1) % self.play_addrs.len()],
        };
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let token = Token(self.conns.len());
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        let url = format!("{scheme}://{addr}/live");
        let machine = RtmpClient::new(&mut self.rng, "live", &url);
        let tls = self.tls.then(super::tls::client);
        self.conns
            .push(Conn::with_tls(stream, tls, machine, publisher));
        Ok(())
    }

    /// Runs the publisher and players until `until`.
    pub(crate) fn run_until(&mut self, until: Instant) -> io::Result<()> {
        while Instant::now() < until {
            self.step(until)?;
        }
        Ok(())
    }

    /// Starts counting: frames sent from now on are the window's.
    pub(crate) fn open_window(&mut self) {
        self.window = Window {
            lo: self.next_seq,
            hi: u32::MAX,
        };
        self.delays = DelayHistogram::default();
    }

    /// Stops counting: frames sent from now on are not the window's.
    pub(crate) fn close_window(&mut self) {
        self.window.hi = self.next_seq - 1;
    }

    /// After [`Load::close_window`], keeps the stream going and reads every player socket
    /// (ignoring SO_RCVLOWAT) until each player has the whole window or `timeout` passes.
    pub(crate) fn drain(&mut self, timeout: Duration) -> io::Result<Delivery> {
        let sent = u64::from(self.window.hi + 1 - self.window.lo);
        let deadline = Instant::now() + timeout;
        loop {
            self.step(Instant::now() + Duration::from_millis(10))?;
            // Reading a socket below its low-water mark returns what is there.
            for conn in self.conns.iter_mut().filter(|c| !c.publisher) {
                let probe = DelayProbe {
                    sent: &self.sent,
                    into: &mut self.delays,
                };
                conn.read(&mut self.scratch, STREAM, self.window, Some(probe), None);
            }
            let done = self
                .conns
                .iter()
                .filter(|c| !c.publisher)
                .all(|c| c.counted >= sent || c.failed.is_some());
            if done || Instant::now() >= deadline {
                break;
            }
        }
        let players = self.conns.iter().filter(|c| !c.publisher);
        Ok(Delivery {
            sent,
            min_received: players.clone().map(|c| c.counted).min().unwrap_or(sent),
            complete: players
                .clone()
                .filter(|c| c.counted == sent && c.disorder == 0 && c.failed.is_none())
                .count(),
            players: self.players,
            failure: self.conns.iter().find_map(|c| c.failed.clone()),
            delay: self.delays.clone(),
        })
    }

    /// Sends the frames that are due, waits for socket events up to `until` (or the next
    /// frame), and handles them.
    fn step(&mut self, until: Instant) -> io::Result<()> {
        let now = Instant::now();
        let next_frame = self.send_due(now);
        let wake = next_frame.map_or(until, |t| t.min(until));
        let timeout = wake.saturating_duration_since(now);
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            let Some(conn) = self.conns.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() {
                conn.flush();
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let was_running = conn.phase == Phase::Running;
                let probe = DelayProbe {
                    sent: &self.sent,
                    into: &mut self.delays,
                };
                conn.read(&mut self.scratch, STREAM, self.window, Some(probe), None);
                if conn.phase == Phase::Running && !was_running {
                    if conn.publisher {
                        self.start = Some(Instant::now());
                    } else if self.reader == ReaderKind::Bulk {
                        // Set only now: the setup replies are far smaller than 16 KiB.
                        conn.set_recv_low_water(BULK_LOW_WATER)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends every frame whose time has come; returns when the next one is due.
    fn send_due(&mut self, now: Instant) -> Option<Instant> {
        let start = self.start?;
        loop {
            let (frame, ts) = self.media.at(self.cursor);
            let due = start + Duration::from_millis(u64::from(ts));
            if due > now {
                return Some(due);
            }
            let payload = if frame.counted {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.sent.record(seq, now);
                tag_payload(&frame.body, seq)
            } else {
                frame.body.clone()
            };
            let msg = RtmpMessage::new(frame.type_id, 0, ts, payload);
            self.conns[0].send_media(&msg);
            self.media.advance(&mut self.cursor);
        }
    }
}

impl super::WindowedLoad for Load {
    fn run_until(&mut self, until: Instant) -> io::Result<()> {
        Load::run_until(self, until)
    }
    fn open_window(&mut self) {
        Load::open_window(self)
    }
    fn close_window(&mut self) {
        Load::close_window(self)
    }
}
