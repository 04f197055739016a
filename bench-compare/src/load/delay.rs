//! How long tagged frames took to arrive: [`SendTimes`] remembers when each of a sender's
//! recent sequence numbers went out, and [`DelayHistogram`] collects the delays the receivers
//! measure against it (a gateway call's frame echoed back to the call that sent it; a
//! publisher's frame at each of its players), so every point reports the delay a
//! configuration adds beside its CPU.
//!
//! Both ends of a delay are taken by the load generator itself (when the frame was handed to
//! the socket, when the read that brought it back returned), so the figure includes the load
//! generator's own scheduling; it is the same for every server measured in a run, and the
//! kernel floor's figure is the part no server removes.

use std::time::{Duration, Instant};

/// Sequence numbers remembered per sender: 20 s of a 50 frames/s stream, far more than any
/// frame spends in flight before it counts as lost.
pub(crate) const REMEMBERED: usize = 1024;

/// When a sender's last [`REMEMBERED`] sequence numbers were sent.
#[derive(Debug, Clone)]
pub(crate) struct SendTimes {
    slots: Box<[(u32, Option<Instant>)]>,
}

impl Default for SendTimes {
    fn default() -> Self {
        Self {
            slots: vec![(0, None); REMEMBERED].into_boxed_slice(),
        }
    }
}

impl SendTimes {
    /// Frame `seq` was sent at `at`.
    pub(crate) fn record(&mut self, seq: u32, at: Instant) {
        self.slots[seq as usize % REMEMBERED] = (seq, Some(at));
    }

    /// When `seq` was sent, if it is still remembered.
    pub(crate) fn sent_at(&self, seq: u32) -> Option<Instant> {
        match self.slots[seq as usize % REMEMBERED] {
            (s, at) if s == seq => at,
            _ => None,
        }
    }
}

/// Buckets: 10 µs wide below 1 ms, 100 µs below 100 ms, 10 ms below 10 s, then one for
/// everything slower. Enough to tell a 0.2 ms floor from a 1 ms gateway and a 20 ms
/// moderation window from a 100 ms merge.
const FINE: u64 = 1_000;
const MEDIUM: u64 = 100_000;
const COARSE: u64 = 10_000_000;
const FINE_BUCKETS: usize = (FINE / 10) as usize;
const MEDIUM_BUCKETS: usize = ((MEDIUM - FINE) / 100) as usize;
const COARSE_BUCKETS: usize = ((COARSE - MEDIUM) / 10_000) as usize;
const BUCKETS: usize = FINE_BUCKETS + MEDIUM_BUCKETS + COARSE_BUCKETS + 1;

/// A distribution of delays in microseconds: count, percentiles (to a bucket's upper edge)
/// and the exact maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DelayHistogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < FINE {
        (us / 10) as usize
    } else if us < MEDIUM {
        FINE_BUCKETS + ((us - FINE) / 100) as usize
    } else if us < COARSE {
        FINE_BUCKETS + MEDIUM_BUCKETS + ((us - MEDIUM) / 10_000) as usize
    } else {
        BUCKETS - 1
    }
}

/// The largest delay (µs) that falls in bucket `b`.
fn upper_edge(b: usize) -> u64 {
    if b < FINE_BUCKETS {
        (b as u64 + 1) * 10
    } else if b < FINE_BUCKETS + MEDIUM_BUCKETS {
        FINE + (b - FINE_BUCKETS + 1) as u64 * 100
    } else if b < BUCKETS - 1 {
        MEDIUM + (b - FINE_BUCKETS - MEDIUM_BUCKETS + 1) as u64 * 10_000
    } else {
        u64::MAX
    }
}

impl DelayHistogram {
    /// Counts one delay.
    pub(crate) fn record(&mut self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds every delay of `other`.
    pub(crate) fn merge(&mut self, other: &DelayHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The delay that fraction `q` (0 to 1) of the frames took at most, in milliseconds, to
    /// the resolution of its bucket (never above the maximum); `None` with no delays.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_edge(b).min(self.max_us) as f64 / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }

    /// The longest delay, in milliseconds.
    pub(crate) fn max_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.max_us as f64 / 1000.0)
    }

    /// "p50 / p99 / max" in ms for a report's table; "-" with no delays.
    pub(crate) fn table_cell(&self) -> String {
        match (self.quantile_ms(0.5), self.quantile_ms(0.99), self.max_ms()) {
            (Some(p50), Some(p99), Some(max)) => format!("{p50:.2} / {p99:.2} / {max:.1}"),
            _ => "-".into(),
        }
    }

    /// "p50,p99,max" in ms for a CSV row; empty fields with no delays.
    pub(crate) fn csv_fields(&self) -> String {
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        format!(
            "{},{},{}",
            ms(self.quantile_ms(0.5)),
            ms(self.quantile_ms(0.99)),
            ms(self.max_ms())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_forget_a_number_once_its_slot_is_reused() {
        let t0 = Instant::now();
        let mut times = SendTimes::default();
        times.record(7, t0);
        assert_eq!(times.sent_at(7), Some(t0));
        assert_eq!(times.sent_at(8), None);
        let later = t0 + Duration::from_millis(5);
        times.record(7 + REMEMBERED as u32, later);
        assert_eq!(times.sent_at(7), None);
        assert_eq!(times.sent_at(7 + REMEMBERED as u32), Some(later));
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_the_maximum_is_exact() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        // 98 fast frames (0.25 ms), one at 15.05 ms, one at 250 ms.
        for _ in 0..98 {
            h.record(Duration::from_micros(250));
        }
        h.record(Duration::from_micros(15_050));
        h.record(Duration::from_micros(250_000));
        assert_eq!(h.count, 100);
        assert_eq!(h.quantile_ms(0.5), Some(0.26));
        assert_eq!(h.quantile_ms(0.98), Some(0.26));
        assert_eq!(h.quantile_ms(0.99), Some(15.1));
        assert_eq!(h.quantile_ms(1.0), Some(250.0));
        assert_eq!(h.max_ms(), Some(250.0));
        assert_eq!(h.table_cell(), "0.26 / 15.10 / 250.0");
        assert_eq!(h.csv_fields(), "0.260,15.100,250.000");
        assert_eq!(DelayHistogram::default().table_cell(), "-");
        assert_eq!(DelayHistogram::default().csv_fields(), ",,");
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_larger_maximum() {
        let mut a = DelayHistogram::default();
        let mut b = DelayHistogram::default();
        a.record(Duration::from_micros(100));
        b.record(Duration::from_millis(30));
        b.record(Duration::from_secs(20));
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.max_ms(), Some(20_000.0));
        // The slowest bucket holds everything above 10 s; the maximum says how slow.
        assert_eq!(a.quantile_ms(1.0), Some(20_000.0));
        assert_eq!(a.quantile_ms(0.6), Some(30.1));
    }
}
