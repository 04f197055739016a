//! [`WakeModeration`]: a poll-based driver's `--poll-interval` (`DriverConfig::poll_interval`).
//!
//! Under load a driver that handles every event as it comes wakes up for nearly every packet:
//! with a socket per gateway call, a wake-up, a read and a write per Speex frame. Moderated,
//! the loop polls at most once per interval: what arrives meanwhile waits in the kernel's
//! buffers and one wake-up takes it all, in fewer and fuller system calls. Only a loop that
//! came round sooner than the interval sleeps; one that blocked in the poll for longer (an
//! idle server) goes straight on, so an idle server still sleeps until something arrives and
//! then answers at once. A poll that filled its event list goes straight on too: more sockets
//! were ready than it could report. The price is up to one interval of delay per hop.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siprtmp_runtime_common::WakeModeration;
//!
//! let start = Instant::now();
//! let mut moderation = WakeModeration::new(Some(Duration::from_millis(20)));
//! moderation.poll_starts(start);
//! moderation.polled(|| 3, 1024);
//! // 5 ms after a poll began that reported 3 events: the next one waits 15 ms more.
//! assert_eq!(moderation.pause(start + Duration::from_millis(5)), Duration::from_millis(15));
//! // A poll that filled its list of 1,024 events: no pause.
//! moderation.polled(|| 1024, 1024);
//! assert_eq!(moderation.pause(start + Duration::from_millis(5)), Duration::ZERO);
//! ```

use std::time::{Duration, Instant};

/// A driver loop's wake-up moderation: how long to wait before the next poll.
#[derive(Debug, Clone)]
pub struct WakeModeration {
    /// The shortest time between the starts of two polls; `None`: no moderation.
    interval: Option<Duration>,
    /// When the last poll began.
    last_poll: Option<Instant>,
    /// Whether the last poll reported as many events as it could hold.
    full: bool,
}

impl WakeModeration {
    /// Moderation at `interval` (`None`: every poll goes at once).
    pub fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            last_poll: None,
            full: false,
        }
    }

    /// How long to wait at `now` before polling again: what is left of the interval since
    /// the last poll began, or nothing (no moderation, the first poll, a full last poll, or a
    /// loop that blocked in the poll or worked for longer than the interval).
    pub fn pause(&self, now: Instant) -> Duration {
        match (self.interval, self.last_poll) {
            (Some(interval), Some(last)) if !self.full => {
                interval.saturating_sub(now.saturating_duration_since(last))
            }
            _ => Duration::ZERO,
        }
    }

    /// Waits out [`Self::pause`] on the calling thread (the loop has nothing else to do), and
    /// notes that the poll begins.
    pub fn wait_turn(&mut self) {
        if self.interval.is_none() {
            return;
        }
        let pause = self.pause(Instant::now());
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        self.poll_starts(Instant::now());
    }

    /// A poll begins at `now` ([`Self::wait_turn`] says so itself).
    pub fn poll_starts(&mut self, now: Instant) {
        self.last_poll = Some(now);
    }

    /// The poll returned `reported()` events in a list of `capacity` (counted only when
    /// moderating: mio's events are counted by walking them).
    pub fn polled(&mut self, reported: impl FnOnce() -> usize, capacity: usize) {
        self.full = self.interval.is_some() && reported() >= capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_loop_waits_only_for_what_is_left_of_the_interval() {
        let t0 = Instant::now();
        let mut moderation = WakeModeration::new(Some(20 * MS));
        assert_eq!(moderation.pause(t0), Duration::ZERO, "the first poll");
        moderation.poll_starts(t0);
        moderation.polled(|| 1, 1024);
        assert_eq!(moderation.pause(t0), 20 * MS);
        assert_eq!(moderation.pause(t0 + 12 * MS), 8 * MS);
        // A loop that blocked in the poll (or worked) longer than the interval: at once.
        assert_eq!(moderation.pause(t0 + 30 * MS), Duration::ZERO);
        // More sockets ready than one poll reports: at once.
        moderation.polled(|| 1024, 1024);
        assert_eq!(moderation.pause(t0 + MS), Duration::ZERO);
        // And the next poll that reports fewer waits again.
        moderation.poll_starts(t0 + MS);
        moderation.polled(|| 10, 1024);
        assert_eq!(moderation.pause(t0 + 2 * MS), 19 * MS);
    }

    #[test]
    fn without_an_interval_nothing_waits() {
        let t0 = Instant::now();
        let mut moderation = WakeModeration::new(None);
        moderation.poll_starts(t0);
        moderation.polled(|| 1, 1024);
        assert_eq!(moderation.pause(t0), Duration::ZERO);
        moderation.wait_turn();
    }
}
