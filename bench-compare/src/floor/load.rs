//! [`FloorLoad`]: the clients of the floor server. Each is one TCP connection that sends the
//! codec file's frames as records in real time (one `write` per frame with `TCP_NODELAY`, as
//! the gateway's RTMP clients send one message per frame), sequence-tagged as the gateway
//! calls' frames are, and counts which of its window frames come back. Clients start spread
//! over one frame interval, as calls that joined one after another are.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::RECORD_HEADER;
use crate::load::calls::SeqPlan;
use crate::load::delay::DelayHistogram;
use crate::load::echo_load::{EchoLoad, Received, SendTally};
use crate::load::media::{read_tag, tag_payload, Cursor, MediaLoop};

/// One client's state.
struct Client {
    stream: TcpStream,
    start: Instant,
    cursor: Cursor,
    tally: SendTally,
    /// Unsent bytes (the socket took less than a whole record).
    output: Vec<u8>,
    /// Received bytes not yet parsed into records.
    input: Vec<u8>,
    counted: u64,
    disorder: u64,
    /// Records without a sequence tag.
    unmatched: u64,
    last_seq: Option<u32>,
    failed: Option<String>,
}

/// The floor server's clients for one measurement point.
pub(crate) struct FloorLoad {
    poll: Poll,
    events: Events,
    clients: Vec<Client>,
    media: Arc<MediaLoop>,
    seq: SeqPlan,
    scratch: Vec<u8>,
    delays: DelayHistogram,
}

impl FloorLoad {
    /// Connects `calls` clients to the floor server at `addr`; they send `media` (its audio
    /// frames) tagged per `seq`, the first at once and the others spread over one frame
    /// interval.
    pub(crate) fn start(
        addr: SocketAddr,
        media: Arc<MediaLoop>,
        seq: SeqPlan,
        calls: usize,
    ) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut clients = Vec::with_capacity(calls);
        for i in 0..calls {
            let stream = std::net::TcpStream::connect(addr)
                .and_then(|s| s.set_nodelay(true).and(s.set_nonblocking(true)).map(|_| s))
                .map_err(|e| format!("connect to the floor server: {e}"))?;
            let mut stream = TcpStream::from_std(stream);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            clients.push(Client {
                stream,
                start: now + Duration::from_millis(20) * i as u32 / calls.max(1) as u32,
                cursor: Cursor::default(),
                tally: SendTally::new(seq),
                output: Vec::new(),
                input: Vec::with_capacity(4096),
                counted: 0,
                disorder: 0,
                unmatched: 0,
                last_seq: None,
                failed: None,
            });
        }
        Ok(Self {
            poll,
            events: Events::with_capacity(1024),
            clients,
            media,
            seq: SeqPlan {
                step: seq.step.max(1),
                ..seq
            },
            scratch: vec![0; 64 * 1024],
            delays: DelayHistogram::default(),
        })
    }

    /// Sends what is due, waits for replies up to `until` (or the next frame), reads them.
    fn step(&mut self, until: Instant) -> io::Result<()> {
        let now = Instant::now();
        let next_frame = self.send_due(now);
        let wake = next_frame.map_or(until, |t| t.min(until));
        match self
            .poll
            .poll(&mut self.events, Some(wake.saturating_duration_since(now)))
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            if let Some(client) = self.clients.get_mut(event.token().0) {
                client.read(&mut self.scratch, &mut self.delays);
            }
        }
        Ok(())
    }

    /// Sends every client's due audio frames; returns when the next one is due.
    fn send_due(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for c in &mut self.clients {
            if c.failed.is_some() {
                continue;
            }
            loop {
                let (frame, ts) = self.media.at(c.cursor);
                let due = c.start + Duration::from_millis(u64::from(ts));
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    break;
                }
                self.media.advance(&mut c.cursor);
                // The gateway carries audio only: other tags of the file are not sent.
                if frame.type_id != 8 || !frame.counted {
                    continue;
                }
                let payload = tag_payload(&frame.body, c.tally.take(self.seq, now));
                c.output
                    .extend_from_slice(&(payload.len() as u16).to_be_bytes());
                c.output.extend_from_slice(&payload);
                c.flush();
            }
        }
        next
    }
}

impl EchoLoad for FloorLoad {
    fn step(&mut self, until: Instant) -> io::Result<()> {
        FloorLoad::step(self, until)
    }

    fn plan(&self) -> SeqPlan {
        self.seq
    }

    fn tallies(&mut self) -> Vec<&mut SendTally> {
        self.clients.iter_mut().map(|c| &mut c.tally).collect()
    }

    fn delays(&self) -> &DelayHistogram {
        &self.delays
    }

    fn reset_delays(&mut self) {
        self.delays = DelayHistogram::default();
    }

    fn calls(&self) -> Vec<(&SendTally, Received, Option<&String>)> {
        self.clients
            .iter()
            .map(|c| {
                let received = Received {
                    counted: c.counted,
                    disorder: c.disorder,
                    unmatched: c.unmatched,
                };
                (&c.tally, received, c.failed.as_ref())
            })
            .collect()
    }
}

impl Client {
    /// Writes what is waiting; what the socket does not take waits for the next frame.
    fn flush(&mut self) {
        match self.stream.write(&self.output) {
            Ok(n) => {
                self.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.failed = Some(format!("write: {e}")),
        }
    }

    /// Reads until `WouldBlock`, counts the window's records and how long each took.
    fn read(&mut self, scratch: &mut [u8], delays: &mut DelayHistogram) {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.failed
                        .get_or_insert_with(|| "closed by the server".into());
                    return;
                }
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = Some(format!("read: {e}"));
                    return;
                }
            }
        }
        let now = Instant::now();
        let mut at = 0;
        while let Some(header) = self.input.get(at..at + RECORD_HEADER) {
            let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let Some(payload) = self.input.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
                break;
            };
            if let Some(seq) = read_tag(payload) {
                if seq >= self.tally.window.lo && seq <= self.tally.window.hi {
                    self.counted += 1;
                    if let Some(sent) = self.tally.times.sent_at(seq) {
                        delays.record(now.saturating_duration_since(sent));
                    }
                    if self.last_seq.is_some_and(|last| seq <= last) {
                        self.disorder += 1;
                    }
                }
                self.last_seq = Some(seq);
            } else {
                self.unmatched += 1;
            }
            at += RECORD_HEADER + len;
        }
        self.input.drain(..at);
    }
}
