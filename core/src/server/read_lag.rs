//! [`ReadLag`]: how late a player's application reads what the server writes, measured with
//! RTMP pings, for the adaptive merge window (see `merge`).
//!
//! A player that reads in bulk (a buffering media player woken once 16 KiB are queued, say)
//! leaves each write in its receive buffer for hundreds of milliseconds; holding its media that
//! much longer on our side costs it almost no delay and saves a write per window. A player that
//! reads each message as it arrives would feel every millisecond of it. The server cannot see
//! the peer's reads from its socket, but it can ask: a `PingRequest` is answered only once the
//! application has read up to it, so the round trip of a ping, less the smallest round trip
//! seen (the network's share and the client's own turnaround, first measured by the RTMP
//! handshake), is how late that application reads.
//!
//! **When a probe goes, and the window meanwhile.** Just after a write, with the one message
//! that would have begun the next hold, at once; and until it is answered the player is held
//! on the base window. So a bulk reader's answer comes when its own mark is reached, a point
//! its writes pass in small steps, and not when one of our long windows happens to end (with
//! its long window kept, a reader would seem to read a window late whatever its mark, and
//! every reader that does not read at once would climb to the longest window). The price is
//! one write more per probe and base-window writes while it is out: every one to two seconds
//! for the first [`SETTLING`] answers, then every [`STEADY_INTERVAL`] to twice that, at a
//! random point (an answer comes when the reader reads, so a fixed interval from it would keep
//! probing a reader on a steady rhythm at the same point of its rhythm).
//!
//! **The estimate.** A bulk reader's answer comes anywhere between at once and its whole fill
//! time (how long its mark takes to gather), so its lags spread evenly over that time; what a
//! window may not pass is the fill time, the longest it reads late. Among the last eight lags,
//! once two of them are late (at least [`LATE`]: the application did not read a lone ping at
//! once), the estimate is the largest: a reader seen late more than once reads up to that late.
//! Otherwise it is the second largest, so that one late answer (a scheduling hiccup) does not
//! keep an eager reader on the longest window past its next probe. The first answer alone
//! stands for the estimate until a second comes, so that a bulk reader is held from its
//! first answer on. A second largest of four scaled up to the span, tried first, left one
//! bulk reader in eight on the base window at a time, each costing ten times a held one.
//!
//! **While a probe is out** the player is on the base window; a probe unanswered for the
//! longest window already proves the reader that late, and the player goes back to it then
//! ([`ReadLag::waited`]), without waiting for an answer that a slowly filling reader gives
//! only seconds later.
//!
//! Only the answer to the probe in flight counts; a client that never answers keeps the base
//! window. Hostile answers can only move the client's own window, within the maximum.

use std::time::{Duration, Instant};

/// Answers after which probes slow down.
pub(crate) const SETTLING: u32 = 2;
/// Probe interval while settling.
const SETTLING_INTERVAL: Duration = Duration::from_secs(1);
/// Probe interval after that.
pub(crate) const STEADY_INTERVAL: Duration = Duration::from_secs(15);
/// A probe unanswered this long is given up, and another may go.
const GIVE_UP: Duration = Duration::from_secs(30);
/// A lag from which a reader counts as late: it did not read a lone ping at once.
pub(crate) const LATE: Duration = Duration::from_millis(20);

/// One player connection's read lag.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadLag {
    /// When the handshake's reply (S0, S1, S2) was queued, until C2 answers it.
    handshake_sent: Option<Instant>,
    /// The probe in flight: its stamp and when it was queued.
    in_flight: Option<(u32, Instant)>,
    /// When the next probe may go (`None`: with the next merged write).
    next_probe: Option<Instant>,
    /// The smallest round trip answered: the handshake's (a client answers S1 as soon as it
    /// has it, before it plays and reads in bulk) or a probe's. Without the handshake's, a
    /// reader woken at a steady rhythm that answers every probe equally late would count
    /// that lateness as the network's.
    min_rtt: Option<Duration>,
    /// The last lags (round trip less `min_rtt` as it was then), newest at
    /// `answered % len`.
    recent: [Duration; 8],
    answered: u32,
}

impl ReadLag {
    /// The handshake's reply was queued at `now`.
    pub(crate) fn handshake_sent(&mut self, now: Instant) {
        self.handshake_sent = Some(now);
    }

    /// The handshake completed at `now` (C2 arrived): its round trip is the first smallest.
    pub(crate) fn handshake_done(&mut self, now: Instant) {
        if let Some(sent) = self.handshake_sent.take() {
            self.min_rtt = Some(now.saturating_duration_since(sent));
        }
    }

    /// Whether a probe stamped `stamp` should go with a write at `now`; if so it is recorded as
    /// in flight and the caller queues the `PingRequest`.
    pub(crate) fn probe(&mut self, now: Instant, stamp: u32) -> bool {
        if let Some((_, sent)) = self.in_flight {
            if now.saturating_duration_since(sent) < GIVE_UP {
                return false;
            }
        }
        if self.next_probe.is_some_and(|next| now < next) {
            return false;
        }
        self.in_flight = Some((stamp, now));
        true
    }

    /// A `PingResponse` stamped `stamp` arrived at `now`; returns whether it answered the probe
    /// in flight (and so changed the estimate). The next probe waits the interval and then
    /// `spread` thousandths of it more (`spread` random, below 1000).
    pub(crate) fn answered(&mut self, now: Instant, stamp: u32, spread: u32) -> bool {
        let Some((sent_stamp, sent)) = self.in_flight else {
            return false;
        };
        if sent_stamp != stamp {
            return false;
        }
        self.in_flight = None;
        let rtt = now.saturating_duration_since(sent);
        let min = self.min_rtt.map_or(rtt, |min| min.min(rtt));
        self.min_rtt = Some(min);
        let slot = self.answered as usize % self.recent.len();
        self.recent[slot] = rtt - min;
        self.answered = self.answered.saturating_add(1);
        let interval = if self.answered < SETTLING {
            SETTLING_INTERVAL
        } else {
            STEADY_INTERVAL
        };
        self.next_probe = Some(now + interval + interval * spread.min(999) / 1000);
        true
    }

    /// How late the application reads at most (its fill time, for a bulk reader): the first
    /// lag alone, then the largest of the last lags when two of them are late, else the second
    /// largest.
    pub(crate) fn estimate(&self) -> Option<Duration> {
        let known = (self.answered as usize).min(self.recent.len());
        match known {
            0 => return None,
            1 => return Some(self.recent[0]),
            _ => {}
        }
        let mut lags = self.recent;
        let lags = &mut lags[..known];
        lags.sort_unstable();
        let late = lags.iter().filter(|lag| **lag >= LATE).count();
        Some(if late >= 2 {
            lags[known - 1]
        } else {
            lags[known - 2]
        })
    }

    /// How long the probe in flight has waited at `now` (zero when none is): a lower bound
    /// of how late the reader reads.
    pub(crate) fn waited(&self, now: Instant) -> Duration {
        self.in_flight.map_or(Duration::ZERO, |(_, sent)| {
            now.saturating_duration_since(sent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Probes at `t`, answered `lag` later; returns the time after the answer.
    fn round(lag: &mut ReadLag, t: Instant, stamp: u32, after: Duration) -> Instant {
        assert!(lag.probe(t, stamp), "a probe is due at {stamp}");
        assert!(lag.answered(t + after, stamp, 0));
        t + after
    }

    #[test]
    fn an_eager_reader_reads_at_once_and_one_late_answer_does_not_move_it() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        let mut t = t0;
        for (i, after) in [3, 2, 250, 3, 4].into_iter().enumerate() {
            t = round(&mut lag, t, i as u32, after * MS) + STEADY_INTERVAL;
        }
        // Lags against the smallest round trip (2 ms): 0 to 2 ms but for the one late answer.
        assert_eq!(lag.estimate(), Some(2 * MS));
    }

    #[test]
    fn a_bulk_reader_settles_near_the_top_of_its_spread() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        assert_eq!(lag.estimate(), None);
        let mut t = t0;
        for (i, after) in [5, 650, 300, 480, 120].into_iter().enumerate() {
            t = round(&mut lag, t, i as u32, after * MS) + STEADY_INTERVAL;
            if i == 0 {
                assert_eq!(
                    lag.estimate(),
                    Some(Duration::ZERO),
                    "the first answer alone"
                );
            }
        }
        // Lags 0, 645, 295, 475 and 115 ms: late more than once, so up to the largest.
        assert_eq!(lag.estimate(), Some(645 * MS));
    }

    #[test]
    fn a_reader_on_a_steady_rhythm_is_measured_against_the_handshake() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        lag.handshake_sent(t0);
        lag.handshake_done(t0 + 20 * MS); // 20 ms away
        let mut t = t0 + Duration::from_secs(1);
        for i in 0..4 {
            // Every probe waits 500 ms for the reader's next wake-up.
            t = round(&mut lag, t, i, 520 * MS) + STEADY_INTERVAL;
        }
        assert_eq!(lag.estimate(), Some(500 * MS));
        // An eager reader as far away reads at once.
        let mut eager = ReadLag::default();
        eager.handshake_sent(t0);
        eager.handshake_done(t0 + 20 * MS);
        for i in 0..4 {
            t = round(&mut eager, t, i, 21 * MS) + STEADY_INTERVAL;
        }
        assert_eq!(eager.estimate(), Some(MS));
    }

    #[test]
    fn one_probe_at_a_time_and_only_its_answer_counts() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        assert!(lag.probe(t0, 7));
        assert!(!lag.probe(t0 + 500 * MS, 8), "one in flight");
        assert!(!lag.answered(t0 + 10 * MS, 8, 0), "not the stamp in flight");
        assert!(lag.answered(t0 + 10 * MS, 7, 500));
        assert!(!lag.answered(t0 + 11 * MS, 7, 0), "answered once");
        // The next waits a second while settling, and half a second more at this spread.
        assert!(!lag.probe(t0 + 1509 * MS, 9));
        assert!(lag.probe(t0 + 1510 * MS, 9));
        // Never answered: given up after a while, then probed again.
        assert!(!lag.probe(t0 + 20 * 1000 * MS, 10));
        assert!(lag.probe(t0 + 32 * 1000 * MS, 10));
    }

    #[test]
    fn a_probe_in_flight_has_waited_since_it_went() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        assert_eq!(lag.waited(t0), Duration::ZERO);
        assert!(lag.probe(t0, 1));
        assert_eq!(lag.waited(t0 + 450 * MS), 450 * MS);
        assert!(lag.answered(t0 + 500 * MS, 1, 0));
        assert_eq!(lag.waited(t0 + 600 * MS), Duration::ZERO);
    }

    #[test]
    fn probes_slow_down_once_settled() {
        let t0 = Instant::now();
        let mut lag = ReadLag::default();
        let mut t = t0;
        for i in 0..SETTLING {
            t = round(&mut lag, t, i, MS) + SETTLING_INTERVAL;
        }
        assert!(!lag.probe(t, 99), "steady: every {STEADY_INTERVAL:?}");
        assert!(lag.probe(t - SETTLING_INTERVAL + STEADY_INTERVAL, 99));
    }
}
