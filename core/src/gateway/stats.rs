//! What the gateway counts for the metrics and the HTTP API (`crate::admin`): registrations and
//! calls by outcome, call setup times, and each call's RTP (packets and bytes both ways, loss,
//! jitter and round-trip time from RTCP, datagrams dropped).
//!
//! The rule is the RTMP server's (`crate::server::counters`): plain integers where the event
//! already happens, no lock, no allocation, summed only when the metrics are read. Per-packet
//! counts live in the call's media bridge next to what the packet touches anyway
//! ([`LegCounters`]); what happens a few times per call (an outcome, an RTCP report) lands in a
//! session's `SessionStats`. When a call's bridge goes, its figures are folded into its
//! session's; when a client goes, its session's are folded into the host's: every counter stays
//! monotonic however calls and clients come and go.

use std::time::Duration;

use super::media_bridge::DropCounts;

/// Most buckets a [`Histogram`] has (its bounds say how many it uses).
const MAX_BUCKETS: usize = 12;

/// Upper bounds of the call setup time buckets, in seconds: an outgoing call's includes the
/// far end's ringing, an incoming one's the client's.
pub(crate) const SETUP_BOUNDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
/// Upper bounds of the round-trip time buckets, in seconds.
pub(crate) const RTT_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Upper bounds of the interarrival jitter buckets, in seconds.
pub(crate) const JITTER_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25];

/// A Prometheus histogram's figures: counts per bucket (not cumulative: the exposition sums
/// them), how many observations and their sum. The bounds are the family's constant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    /// Observations at most each bound (and above the last bound, in the last slot used).
    pub counts: [u64; MAX_BUCKETS],
    pub count: u64,
    /// The observations' sum in microseconds: integers add up exactly when merged.
    pub sum_micros: u64,
}

impl Histogram {
    /// Counts `value` against `bounds`.
    pub(crate) fn observe(&mut self, bounds: &[f64], value: Duration) {
        debug_assert!(bounds.len() < MAX_BUCKETS);
        let secs = value.as_secs_f64();
        let bucket = bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(bounds.len());
        self.counts[bucket] += 1;
        self.count += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(value.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Adds `other`'s observations.
    pub(crate) fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

/// One media leg's RTP, counted per packet by the bridge (RTCP is not counted here). Bytes are
/// whole datagrams (the UDP payload: RTP header and payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets from the far end the call used (media and telephone events).
    pub received_packets: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// RTP packets sent to the far end.
    pub sent_packets: u64,
    /// Their bytes.
    pub sent_bytes: u64,
}

impl LegCounters {
    fn add(&mut self, other: &LegCounters) {
        self.received_packets += other.received_packets;
        self.received_bytes += other.received_bytes;
        self.sent_packets += other.sent_packets;
        self.sent_bytes += other.sent_bytes;
    }
}

/// What RTCP tells of one leg, as it stands (latest values, not counters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegQuality {
    /// Packets of the far end's stream we never received (RFC 3550's cumulative loss, which
    /// duplicates can make negative), from our own reception statistics.
    pub lost: i64,
    /// Interarrival jitter of the far end's stream as we measure it.
    pub jitter: Duration,
    /// What the far end's last report says it lost of our stream, if it reported.
    pub far_lost: Option<i64>,
    /// The jitter of our stream in the far end's last report, if it reported.
    pub far_jitter: Option<Duration>,
    /// The round-trip time computed from the far end's last report on one of our sender
    /// reports (RFC 3550 6.4.1), if any.
    pub round_trip: Option<Duration>,
}

/// One leg of a call for the HTTP API: its counters and RTCP's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegView {
    /// Packets and bytes both ways.
    pub counters: LegCounters,
    /// Loss, jitter and round-trip time.
    pub quality: LegQuality,
}

/// Media figures accumulated over calls: summed counters and RTCP histograms. Losses are
/// counted as the last figure each call had (ours for what we received, the far end's report
/// for what we sent), never below zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MediaTotals {
    /// Audio, then video.
    pub legs: [LegCounters; 2],
    /// Packets lost on the way to us, audio then video.
    pub lost_received: [u64; 2],
    /// Packets the far ends reported lost of ours, audio then video.
    pub lost_sent: [u64; 2],
    /// Datagrams from the far ends dropped, by reason.
    pub drops: DropCounts,
    /// Round-trip times, one per far-end report on one of our sender reports.
    pub round_trip: Histogram,
    /// Jitter of what we received (one observation per report we send) and of what we sent
    /// (one per far-end report on our stream).
    pub jitter_received: Histogram,
    pub jitter_sent: Histogram,
}

impl MediaTotals {
    /// Adds `other`.
    pub(crate) fn add(&mut self, other: &MediaTotals) {
        for i in 0..2 {
            self.legs[i].add(&other.legs[i]);
            self.lost_received[i] += other.lost_received[i];
            self.lost_sent[i] += other.lost_sent[i];
        }
        self.drops.add(&other.drops);
        self.round_trip.add(&other.round_trip);
        self.jitter_received.add(&other.jitter_received);
        self.jitter_sent.add(&other.jitter_sent);
    }
}

/// How a call attempt ended: labels of `siprtmp_gateway_calls_total{outcome}`.
pub(crate) const CALL_OUTCOMES: [&str; 9] = [
    "answered",
    "busy",
    "rejected_3xx",
    "rejected_4xx",
    "rejected_5xx",
    "rejected_6xx",
    "cancelled",
    "timed_out",
    "failed",
];

/// How a REGISTER ended: labels of `siprtmp_gateway_registrations_total{outcome}`.
pub(crate) const REGISTER_OUTCOMES: [&str; 7] = [
    "registered",
    "rejected_3xx",
    "rejected_4xx",
    "rejected_5xx",
    "rejected_6xx",
    "timed_out",
    "failed",
];

/// A call's direction (index of [`SessionStats::calls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallDirection {
    Outgoing = 0,
    Incoming = 1,
}

/// The outcome label of a final SIP status ending a call attempt (not a 2xx): busy for 486
/// and 600, a timeout for 408, else its class.
pub(crate) fn call_outcome(status: u16) -> &'static str {
    match status {
        486 | 600 => "busy",
        408 => "timed_out",
        300..=399 => "rejected_3xx",
        400..=499 => "rejected_4xx",
        500..=599 => "rejected_5xx",
        600..=699 => "rejected_6xx",
        _ => "failed",
    }
}

/// The outcome label of a failed REGISTER's status (408: no answer; 0: no registrar).
pub(crate) fn register_outcome(status: u16) -> &'static str {
    match status {
        408 => "timed_out",
        300..=399 => "rejected_3xx",
        400..=499 => "rejected_4xx",
        500..=599 => "rejected_5xx",
        600..=699 => "rejected_6xx",
        _ => "failed",
    }
}

/// What one gateway session counts (and, summed, the host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SessionStats {
    /// REGISTERs sent asking for a binding (first ones and refreshes, not a challenge's
    /// resend).
    pub register_attempts: u64,
    /// REGISTERs ended, by [`REGISTER_OUTCOMES`] index.
    pub registrations: [u64; REGISTER_OUTCOMES.len()],
    /// Call attempts ended, by direction and [`CALL_OUTCOMES`] index.
    pub calls: [[u64; CALL_OUTCOMES.len()]; 2],
    /// From the INVITE (sent or received) to the call's establishment.
    pub setup: Histogram,
    /// The media of the calls whose bridge has gone.
    pub media: MediaTotals,
}

impl SessionStats {
    /// Counts a call attempt's end.
    pub(crate) fn call(&mut self, direction: CallDirection, outcome: &str) {
        if let Some(i) = CALL_OUTCOMES.iter().position(|o| *o == outcome) {
            self.calls[direction as usize][i] += 1;
        }
    }

    /// Counts a REGISTER's end.
    pub(crate) fn registration(&mut self, outcome: &str) {
        if let Some(i) = REGISTER_OUTCOMES.iter().position(|o| *o == outcome) {
            self.registrations[i] += 1;
        }
    }

    /// Adds `other`.
    pub(crate) fn add(&mut self, other: &SessionStats) {
        self.register_attempts += other.register_attempts;
        for (a, b) in self.registrations.iter_mut().zip(other.registrations) {
            *a += b;
        }
        for (da, db) in self.calls.iter_mut().zip(other.calls) {
            for (a, b) in da.iter_mut().zip(db) {
                *a += b;
            }
        }
        self.setup.add(&other.setup);
        self.media.add(&other.media);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_value_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::default();
        h.observe(SETUP_BOUNDS, Duration::from_millis(100)); // on the bound: in it
        h.observe(SETUP_BOUNDS, Duration::from_millis(101));
        h.observe(SETUP_BOUNDS, Duration::from_secs(100)); // past the last bound
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[SETUP_BOUNDS.len()], 1);
        assert_eq!((h.count, h.sum_micros), (3, 100_201_000));
        let mut twice = h;
        twice.add(&h);
        assert_eq!((twice.count, twice.counts[0]), (6, 2));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(call_outcome(486), "busy");
        assert_eq!(call_outcome(600), "busy");
        assert_eq!(call_outcome(603), "rejected_6xx");
        assert_eq!(call_outcome(404), "rejected_4xx");
        assert_eq!(call_outcome(408), "timed_out");
        assert_eq!(call_outcome(503), "rejected_5xx");
        assert_eq!(call_outcome(302), "rejected_3xx");
        assert_eq!(register_outcome(401), "rejected_4xx");
        assert_eq!(register_outcome(0), "failed");
        let mut s = SessionStats::default();
        s.call(CallDirection::Incoming, "cancelled");
        s.registration("timed_out");
        let mut sum = SessionStats::default();
        sum.add(&s);
        sum.add(&s);
        assert_eq!(sum.calls[1][6], 2);
        assert_eq!(sum.registrations[5], 2);
    }
}
