//! [`CallLoad`]: N concurrent SIP-RTMP gateway calls from one thread and one mio `Poll`. Each
//! call is one RTMP connection to `rtmp://HOST/sip/<user>@127.0.0.1` that invites the far end
//! (an echoing sipp), publishes its own looped Speex or Opus stream on `local` (paced in real
//! time from its own publish start) and plays `remote`, counting which of its own window
//! frames came back.
//!
//! How a call tells its frames ([`EchoMatch`]): passed through, each frame carries a sequence
//! tag as the RTMP scenarios' frames do; the numbers are every `step`-th from `first`
//! ([`SeqPlan`]): all of them for Speex 16 kHz and Opus; for Speex 8 kHz only those whose last
//! byte ends in the bits the gateway's narrowband rewrite pads a frame with (see
//! `gateway_codec::GatewayCodec::seq_plan`), so the tag survives the round trip byte for byte.
//! Transcoded, frames go out as the file has them (the codecs decode them) and are told by
//! their timestamps ([`TimestampMatch`]), after a probe frame that goes out alone.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use siprtmp_core::amf::Value;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::RtmpClient;
use siprtmp_core::rtmp::message::RtmpMessage;

use super::conn::{Conn, DelayProbe, Phase};
use super::delay::DelayHistogram;
use super::echo_load::{EchoLoad, Received, SendTally};
use super::echo_match::{EchoMatch, Gate, TimestampMatch};
use super::media::{tag_payload, Cursor, MediaLoop};

/// Calls in setup at once: each costs the gateway a SIP socket, RTP sockets and an INVITE
/// transaction, so they join a few at a time.
const MAX_SETTING_UP: usize = 16;

/// Sent and echoed frames of one call over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallCount {
    /// Frames the call published during the window.
    pub sent: u64,
    /// Of those, frames that came back on `remote`.
    pub echoed: u64,
    /// Window frames that came back out of order or twice.
    pub disorder: u64,
    /// Frames (of the whole call) that came back as the echo of no frame it sent.
    pub unmatched: u64,
}

/// The echo check over all calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoSummary {
    /// Per call, in call order.
    pub calls: Vec<CallCount>,
    /// The first connection failure, if any.
    pub failure: Option<String>,
    /// How long the window frames that came back took, sent to echoed.
    pub delay: DelayHistogram,
}

impl EchoSummary {
    /// Frames sent by all calls.
    pub(crate) fn sent(&self) -> u64 {
        self.calls.iter().map(|c| c.sent).sum()
    }

    /// Frames that came back to all calls as the echo of no frame sent.
    pub(crate) fn unmatched(&self) -> u64 {
        self.calls.iter().map(|c| c.unmatched).sum()
    }

    /// Frames echoed back to all calls.
    pub(crate) fn echoed(&self) -> u64 {
        self.calls.iter().map(|c| c.echoed).sum()
    }

    /// The lowest echoed/sent ratio of any call (1.0 with no calls).
    pub(crate) fn worst_ratio(&self) -> f64 {
        self.calls
            .iter()
            .map(|c| c.echoed as f64 / c.sent.max(1) as f64)
            .fold(1.0, f64::min)
    }

    /// Whether every call got at least `ratio` of its window frames back and none failed.
    pub(crate) fn all_at_least(&self, ratio: f64) -> bool {
        self.failure.is_none() && self.worst_ratio() >= ratio
    }
}

/// Which sequence numbers tag a call's frames: `first`, `first + step`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqPlan {
    /// The first frame's number.
    pub first: u32,
    /// The distance between two frames' numbers (at least 1).
    pub step: u32,
}

impl SeqPlan {
    /// 1, 2, 3...
    pub(crate) const CONSECUTIVE: SeqPlan = SeqPlan { first: 1, step: 1 };
}

/// One call's sender state.
struct Sender {
    /// When its `local` stream's timestamp 0 was sent (set once it publishes and plays).
    start: Option<Instant>,
    cursor: Cursor,
    tally: SendTally,
    /// Transcoded: how echoes are matched to the frames sent (`None`: by their tags).
    by_timestamp: Option<TimestampMatch>,
}

impl Sender {
    /// Whether the call is sending its stream: it publishes and plays, and (matching echoes by
    /// timestamp) its probe came back.
    fn running(&self) -> bool {
        self.start.is_some() && self.by_timestamp.as_ref().is_none_or(|m| m.anchored())
    }
}

/// The gateway calls of one measurement point.
pub(crate) struct CallLoad {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    senders: Vec<Sender>,
    addr: SocketAddr,
    media: Arc<MediaLoop>,
    rng: SeededRng,
    scratch: Vec<u8>,
    seq: SeqPlan,
    echo: EchoMatch,
    delays: DelayHistogram,
}

impl CallLoad {
    /// Places `calls` calls through the gateway at `addr` to `dest` (a SIP URI) offering
    /// `codecs`, numbering frames per `seq` and telling their echoes per `echo`, and runs
    /// until every call publishes and plays (and, matching by timestamp, has its probe back),
    /// or `timeout` passes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        addr: SocketAddr,
        dest: &str,
        codecs: &[&str],
        media: Arc<MediaLoop>,
        seq: SeqPlan,
        echo: EchoMatch,
        calls: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut load = Self {
            poll: Poll::new().map_err(|e| e.to_string())?,
            events: Events::with_capacity(1024),
            conns: Vec::with_capacity(calls),
            senders: Vec::with_capacity(calls),
            addr,
            media,
            rng: SeededRng::new(29),
            scratch: vec![0; 64 * 1024],
            seq: SeqPlan {
                step: seq.step.max(1),
                ..seq
            },
            echo,
            delays: DelayHistogram::default(),
        };
        let mut invite = vec![Value::string(dest)];
        invite.extend(codecs.iter().map(|c| Value::string(*c)));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = load.conns.iter().find_map(|c| c.failed.clone()) {
                return Err(why);
            }
            let running = load.senders.iter().filter(|s| s.running()).count();
            if running == calls {
                return Ok(load);
            }
            let setting_up = load.conns.len() - running;
            let left = calls - load.conns.len();
            for _ in 0..MAX_SETTING_UP.saturating_sub(setting_up).min(left) {
                load.connect(invite.clone())
                    .map_err(|e| format!("connect: {e}"))?;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "setup timed out: {running} of {calls} calls running"
                ));
            }
            load.step(deadline.min(Instant::now() + Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
        }
    }

    fn connect(&mut self, invite: Vec<Value>) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_nodelay(true)?;
        let i = self.conns.len();
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        // Each call is its own gateway client (its own SIP socket and RTP ports).
        let app = format!("sip/caller{i}@127.0.0.1");
        let url = format!("rtmp://{}/{app}", self.addr);
        let machine = RtmpClient::new(&mut self.rng, &app, &url);
        let mut conn = Conn::new(stream, machine, true);
        conn.set_invite(invite);
        self.conns.push(conn);
        self.senders.push(Sender {
            start: None,
            cursor: Cursor::default(),
            tally: SendTally::new(self.seq),
            by_timestamp: (self.echo == EchoMatch::Timestamp).then(TimestampMatch::default),
        });
        Ok(())
    }

    /// Sends the frames that are due, waits for socket events up to `until` (or the next
    /// frame), and handles them.
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
            let i = event.token().0;
            let (Some(conn), Some(sender)) = (self.conns.get_mut(i), self.senders.get_mut(i))
            else {
                continue;
            };
            if event.is_writable() {
                conn.flush();
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let probe = DelayProbe {
                    sent: &sender.tally.times,
                    into: &mut self.delays,
                };
                let by_timestamp = sender.by_timestamp.as_mut();
                conn.read(
                    &mut self.scratch,
                    "",
                    sender.tally.window,
                    Some(probe),
                    by_timestamp,
                );
                if conn.phase == Phase::Running && sender.start.is_none() {
                    sender.start = Some(Instant::now());
                }
            }
        }
        Ok(())
    }

    /// Sends every call's due frames; returns when the next one is due.
    fn send_due(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (conn, s) in self.conns.iter_mut().zip(&mut self.senders) {
            let Some(start) = s.start else { continue };
            if conn.failed.is_some() {
                continue;
            }
            loop {
                let (frame, ts) = self.media.at(s.cursor);
                let due = start + Duration::from_millis(u64::from(ts));
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    break;
                }
                let payload = match (&mut s.by_timestamp, frame.counted) {
                    (_, false) => frame.body.clone(),
                    (None, true) => tag_payload(&frame.body, s.tally.take(self.seq, now)),
                    // Transcoded: the codec's own bytes, told apart by their timestamps.
                    (Some(m), true) => match m.gate(due, now) {
                        Gate::Send => {
                            m.sent(ts, s.tally.take(self.seq, now), now);
                            frame.body.clone()
                        }
                        Gate::Skip => {
                            self.media.advance(&mut s.cursor);
                            continue;
                        }
                        Gate::Hold(until) => {
                            next = Some(next.map_or(until, |n| n.min(until)));
                            break;
                        }
                    },
                };
                conn.send_media(&RtmpMessage::new(frame.type_id, 0, ts, payload));
                self.media.advance(&mut s.cursor);
            }
        }
        next
    }
}

impl EchoLoad for CallLoad {
    fn step(&mut self, until: Instant) -> io::Result<()> {
        CallLoad::step(self, until)
    }

    fn plan(&self) -> SeqPlan {
        self.seq
    }

    fn tallies(&mut self) -> Vec<&mut SendTally> {
        self.senders.iter_mut().map(|s| &mut s.tally).collect()
    }

    fn delays(&self) -> &DelayHistogram {
        &self.delays
    }

    fn reset_delays(&mut self) {
        self.delays = DelayHistogram::default();
    }

    fn calls(&self) -> Vec<(&SendTally, Received, Option<&String>)> {
        self.conns
            .iter()
            .zip(&self.senders)
            .map(|(c, s)| {
                let received = Received {
                    counted: c.counted,
                    disorder: c.disorder,
                    unmatched: c.unmatched,
                };
                (&s.tally, received, c.failed.as_ref())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_call_decides() {
        let summary = EchoSummary {
            calls: vec![
                CallCount {
                    sent: 250,
                    echoed: 250,
                    disorder: 0,
                    unmatched: 0,
                },
                CallCount {
                    sent: 250,
                    echoed: 247,
                    disorder: 1,
                    unmatched: 0,
                },
            ],
            failure: None,
            delay: DelayHistogram::default(),
        };
        assert_eq!((summary.sent(), summary.echoed()), (500, 497));
        assert!((summary.worst_ratio() - 0.988).abs() < 1e-9);
        assert!(!summary.all_at_least(MIN));
        assert!(summary.all_at_least(0.98));
        let failed = EchoSummary {
            failure: Some("closed".into()),
            ..summary
        };
        assert!(!failed.all_at_least(0.0));
    }

    const MIN: f64 = 0.99;
}
