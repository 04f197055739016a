//! [`Backoff`]: how long a relay waits before it tries a failed upstream again.
//!
//! The first retry waits the minimum; each failure after it doubles the wait, up to the
//! maximum. A session that stayed up for at least the maximum before it failed counts as a
//! fresh start (an upstream that was healthy for a while is retried soon after a break), while
//! one that keeps failing early stays at the long waits. No jitter: the node's timing replays
//! exactly, and relays of one node to one upstream start at different times anyway.

use std::time::Duration;

/// The retry schedule of one relay session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// Failures since the last fresh start.
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// A failure after the session stayed up for `up_for` (zero when it never came up): the
    /// wait before the next attempt.
    pub(crate) fn failed(&mut self, up_for: Duration) -> Duration {
        if up_for >= self.max {
            self.failures = 0;
        }
        let doubled = self
            .min
            .checked_mul(1u32 << self.failures.min(20))
            .unwrap_or(self.max);
        self.failures = self.failures.saturating_add(1);
        doubled.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_a_long_session_starts_again() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(1000));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.failed(ms(5))).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff.failed(ms(1000)), ms(100), "up for the maximum");
        assert_eq!(backoff.failed(ms(0)), ms(200));
        // Many failures never overflow.
        for _ in 0..100 {
            backoff.failed(Duration::ZERO);
        }
        assert_eq!(backoff.failed(Duration::ZERO), ms(1000));
    }
}
