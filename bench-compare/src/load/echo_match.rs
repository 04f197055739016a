//! How a gateway call tells which of its frames an echoed frame is ([`EchoMatch`]).
//!
//! Passed through, the gateway gives back the very bytes sent, so each frame carries its
//! sequence number in its last 8 bytes (`super::media`). Transcoded, what comes back is
//! new audio (the far end's G.711 or Speex, decoded and encoded again), so the bytes say
//! nothing; but the gateway keeps the timing: every frame sent makes one far-end packet whose
//! RTP timestamp is the frame's RTMP timestamp scaled to the clock (the call's G.711 and Speex
//! frames are 20 ms each way, so the transcoder emits one packet per frame with the frame's
//! own time), the echo carries that timestamp back, and the gateway turns it into the RTMP
//! timestamp of the frame it makes for the client. That RTMP clock is anchored at the first
//! packet the gateway receives (its arrival time on the `remote` stream's clock), so an
//! echoed frame comes back with the timestamp of the frame it came from plus a constant of
//! the call: the first frame's round trip and the time between the gateway's play and the
//! call's first frame.
//!
//! [`TimestampMatch`] learns that constant from a probe: the call's first frame goes out alone
//! and nothing else is sent until something comes back, which can then only be that frame
//! (or, after [`PROBE_TIMEOUT`] without an answer, the frame that goes out alone next; an
//! answer to an earlier probe slower than that would mislead it, and every later frame would
//! then be counted as unmatched, not as echoed). From then on an echoed frame is the frame
//! sent with its timestamp minus the constant ([`SentLog`]), found exactly, and a timestamp
//! that matches no frame sent is counted as unmatched.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::delay::REMEMBERED;

/// How a call recognises its echoed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EchoMatch {
    /// By the sequence tag in a frame's last 8 bytes (the gateway passes the bytes through).
    Tag,
    /// By the RTMP timestamp (the gateway transcodes): see [`TimestampMatch`].
    Timestamp,
}

/// How long a probe waits for its echo before the next frame goes out alone instead.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The counted frames a call sent recently, as (RTMP timestamp, sequence number), in sending
/// order: timestamps only grow, so a lookup is a binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct SentLog {
    entries: VecDeque<(u32, u32)>,
}

impl SentLog {
    /// Frame `seq` went out with timestamp `ts` (greater than any before it).
    pub(crate) fn record(&mut self, ts: u32, seq: u32) {
        if self.entries.len() == REMEMBERED {
            self.entries.pop_front();
        }
        self.entries.push_back((ts, seq));
    }

    /// The sequence number of the remembered frame sent with timestamp `ts`.
    pub(crate) fn seq_at(&self, ts: u32) -> Option<u32> {
        self.entries
            .binary_search_by_key(&ts, |&(t, _)| t)
            .ok()
            .map(|i| self.entries[i].1)
    }
}

/// Where a call's timestamp matching stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// Nothing sent yet: the next counted frame is the probe.
    Unsent,
    /// The probe with timestamp `ts` went out at `at`; nothing more goes out until an echo
    /// comes back or [`PROBE_TIMEOUT`] passes.
    Probing { ts: u32, at: Instant },
    /// Echoed timestamp minus sent timestamp; `caught_up` once the frames that fell due
    /// while the probe was out have been skipped.
    Anchored { offset: i64, caught_up: bool },
}

/// What a call's sender may do with the frame that is due (see [`TimestampMatch::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Send it (and [`TimestampMatch::sent`] it).
    Send,
    /// Skip it: it fell due while the probe was out.
    Skip,
    /// Hold everything until the given time (the probe's timeout) or an echo.
    Hold(Instant),
}

/// One call's matching of echoed frames by timestamp. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct TimestampMatch {
    log: SentLog,
    anchor: Anchor,
}

impl Default for TimestampMatch {
    fn default() -> Self {
        Self {
            log: SentLog::default(),
            anchor: Anchor::Unsent,
        }
    }
}

impl TimestampMatch {
    /// Whether the call's offset is known (its probe came back).
    pub(crate) fn anchored(&self) -> bool {
        matches!(self.anchor, Anchor::Anchored { .. })
    }

    /// What to do with the counted frame due at `due` (now is `now`).
    pub(crate) fn gate(&mut self, due: Instant, now: Instant) -> Gate {
        match &mut self.anchor {
            Anchor::Unsent => Gate::Send,
            Anchor::Probing { at, .. } => {
                let retry = *at + PROBE_TIMEOUT;
                if now < retry {
                    Gate::Hold(retry)
                } else {
                    Gate::Send
                }
            }
            Anchor::Anchored { caught_up, .. } => {
                // A frame more than one frame late fell due while the probe was out: the
                // stream resumes at the frame due now, as a phone's would after a gap.
                if !*caught_up && due + Duration::from_millis(20) < now {
                    Gate::Skip
                } else {
                    *caught_up = true;
                    Gate::Send
                }
            }
        }
    }

    /// A counted frame went out: number `seq`, timestamp `ts`, at `at`.
    pub(crate) fn sent(&mut self, ts: u32, seq: u32, at: Instant) {
        self.log.record(ts, seq);
        if !self.anchored() {
            self.anchor = Anchor::Probing { ts, at };
        }
    }

    /// A frame came back with timestamp `ts`: the sequence number of the frame it is the
    /// echo of, or `None` when it matches no frame sent (or came before any was).
    pub(crate) fn echoed(&mut self, ts: u32) -> Option<u32> {
        let offset = match self.anchor {
            Anchor::Unsent => return None,
            Anchor::Probing { ts: probe, .. } => {
                let offset = i64::from(ts) - i64::from(probe);
                self.anchor = Anchor::Anchored {
                    offset,
                    caught_up: false,
                };
                offset
            }
            Anchor::Anchored { offset, .. } => offset,
        };
        let sent = u32::try_from(i64::from(ts) - offset).ok()?;
        self.log.seq_at(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_finds_frames_by_timestamp_and_forgets_the_oldest() {
        let mut log = SentLog::default();
        for i in 0..REMEMBERED as u32 + 10 {
            log.record(20 * i, 100 + i);
        }
        assert_eq!(log.seq_at(20 * 10), Some(110));
        assert_eq!(
            log.seq_at(20 * (REMEMBERED as u32 + 9)),
            Some(109 + REMEMBERED as u32)
        );
        assert_eq!(log.seq_at(20 * 9), None, "forgotten");
        assert_eq!(log.seq_at(20 * 10 + 1), None, "between two frames");
    }

    /// Frames every 20 ms from timestamp 0; echoes with timestamp + `offset`.
    #[test]
    fn the_probe_anchors_the_offset_and_then_every_echo_is_found() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = TimestampMatch::default();
        assert_eq!(m.echoed(5), None, "nothing sent yet");
        assert_eq!(m.gate(t0, t0), Gate::Send);
        m.sent(0, 1, t0);
        // Held while the probe is out.
        assert_eq!(m.gate(ms(20), ms(20)), Gate::Hold(ms(1000)));
        assert!(!m.anchored());
        // It comes back 33 ms after the gateway's clock started, at our 30 ms.
        assert_eq!(m.echoed(33), Some(1));
        assert!(m.anchored());
        // The frame due at 20 ms is now more than a frame late: skipped; 40 ms is due now.
        assert_eq!(m.gate(ms(20), ms(45)), Gate::Skip);
        assert_eq!(m.gate(ms(40), ms(45)), Gate::Send);
        m.sent(40, 2, ms(45));
        // Once caught up, a late frame is sent anyway (a slow loader is no gap).
        assert_eq!(m.gate(ms(60), ms(200)), Gate::Send);
        m.sent(60, 3, ms(200));
        m.sent(80, 4, ms(200));
        assert_eq!(m.echoed(93), Some(3));
        assert_eq!(m.echoed(73), Some(2));
        // The echo of no frame: between two, or of the skipped one.
        assert_eq!(m.echoed(100), None);
        assert_eq!(m.echoed(53), None);
        assert_eq!(m.echoed(113), Some(4));
    }

    #[test]
    fn an_unanswered_probe_is_replaced_by_the_next_frame() {
        let t0 = Instant::now();
        let mut m = TimestampMatch::default();
        m.sent(0, 1, t0);
        let later = t0 + PROBE_TIMEOUT;
        assert_eq!(m.gate(later, later), Gate::Send);
        m.sent(1000, 2, later);
        assert_eq!(m.gate(later, later), Gate::Hold(later + PROBE_TIMEOUT));
        // The answer is to the new probe: its offset is taken.
        assert_eq!(m.echoed(1004), Some(2));
        m.sent(1020, 3, later);
        assert_eq!(m.echoed(1024), Some(3));
        // Echoes from before the anchor's frame (the lost probe) match nothing sent since.
        assert_eq!(m.echoed(3), None);
    }

    #[test]
    fn a_negative_offset_and_timestamps_below_it_are_handled() {
        // The gateway's clock may start after the call's (its play came later).
        let t0 = Instant::now();
        let mut m = TimestampMatch::default();
        m.sent(500, 1, t0);
        assert_eq!(m.echoed(480), Some(1));
        m.sent(520, 2, t0);
        assert_eq!(m.echoed(500), Some(2));
        assert_eq!(m.echoed(0), None);
    }
}
