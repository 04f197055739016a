//! [`ReadPace`]: how often a connection's reader thread reads, as the node asks
//! ([`siprtmp_core::node::Output::ReadPacing`]). The event-loop drivers read a paced
//! publisher at the ticks of a grid and keep its socket quiet in between (`SO_RCVLOWAT`);
//! here each connection has a thread of its own that blocks in `read`, so pacing is simpler:
//! after a read, a paced reader waits for the next tick of the interval (on a grid common to
//! every connection, so that the node thread gets the readers of one tick together), then
//! reads whatever arrived meanwhile in one `read`. One that is not paced reads again at once.
//!
//! The node thread sets the interval and unparks the reader, which looks again: a connection
//! no longer paced (three players reading its every message) is read at once, not at the tick
//! it was waiting for.
//!
//! A read that brought [`PACED_LOW_WATER`] or more is followed by another at once, as the
//! event loops read a paced socket at once when that much has arrived: a stream that fills
//! that much between ticks (a high-rate publisher nobody watches, read every 400 ms) would
//! otherwise fill the socket's receive window and stall its sender until the tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use siprtmp_runtime_common::PACED_LOW_WATER;

/// A connection's read interval, shared by the node thread (which sets it) and the
/// connection's reader thread (which waits on it).
#[derive(Debug)]
pub(crate) struct ReadPace {
    /// The grid's origin, the same for every connection of the driver.
    epoch: Instant,
    /// The interval in nanoseconds; 0 reads as bytes arrive.
    every_ns: AtomicU64,
}

impl ReadPace {
    /// Not paced, on the grid that starts at `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            every_ns: AtomicU64::new(0),
        }
    }

    /// The node asked for the connection to be read every `every`, or (`None`) as its bytes
    /// arrive. The caller then unparks the reader thread, so that it looks again.
    pub(crate) fn set(&self, every: Option<Duration>) {
        let nanos = every.map_or(0, |every| {
            u64::try_from(every.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.every_ns.store(nanos, Ordering::Relaxed);
    }

    /// The interval, if paced.
    fn every(&self) -> Option<Duration> {
        match self.every_ns.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// The first tick of the grid after `at`, for interval `every`.
    fn next_tick(&self, at: Instant, every: Duration) -> Instant {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let every_ns = every.as_nanos().max(1);
        let ticks = since / every_ns + 1;
        let offset = u64::try_from(ticks.saturating_mul(every_ns)).unwrap_or(u64::MAX);
        self.epoch + Duration::from_nanos(offset)
    }

    /// Called by the reader thread after a read of `bytes` at `read_at`: returns when the
    /// next read may be taken, at once if the connection is not paced or the read brought
    /// [`PACED_LOW_WATER`] or more, else at the grid's first tick after `read_at` (or earlier,
    /// if the node stops pacing it or shortens its interval meanwhile: [`Self::set`] and an
    /// unpark).
    pub(crate) fn wait_after_read(&self, read_at: Instant, bytes: usize) {
        if bytes >= PACED_LOW_WATER {
            return;
        }
        while let Some(every) = self.every() {
            let now = Instant::now();
            let tick = self.next_tick(read_at, every);
            if now >= tick {
                return;
            }
            // An unpark (a new interval), or a spurious wake-up: look again.
            thread::park_timeout(tick - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_reader_waits_for_the_next_tick_of_the_common_grid() {
        let epoch = Instant::now();
        let pace = ReadPace::new(epoch);
        let every = Duration::from_millis(40);
        pace.set(Some(every));
        // Read 10 ms into the grid: the next read is at 40 ms, whatever the read time.
        assert_eq!(
            pace.next_tick(epoch + Duration::from_millis(10), every),
            epoch + every
        );
        assert_eq!(pace.next_tick(epoch + every, every), epoch + every * 2);
        let read_at = Instant::now();
        pace.wait_after_read(read_at, 100);
        let after = Instant::now();
        assert!(
            after >= pace.next_tick(read_at, every),
            "no read before the tick"
        );
    }

    #[test]
    fn a_reader_not_paced_reads_again_at_once() {
        let pace = ReadPace::new(Instant::now());
        assert_eq!(pace.every(), None);
        pace.set(Some(Duration::from_secs(3600)));
        pace.set(None);
        let before = Instant::now();
        pace.wait_after_read(before, 100);
        assert!(
            before.elapsed() < Duration::from_secs(60),
            "no wait for the hour's tick"
        );
    }

    #[test]
    fn a_read_that_brought_the_low_water_mark_is_followed_by_another_at_once() {
        let pace = ReadPace::new(Instant::now());
        pace.set(Some(Duration::from_secs(3600)));
        let before = Instant::now();
        pace.wait_after_read(before, PACED_LOW_WATER);
        assert!(
            before.elapsed() < Duration::from_secs(60),
            "no wait for the hour's tick"
        );
    }

    #[test]
    fn a_reader_waiting_for_its_tick_is_released_when_the_node_stops_pacing_it() {
        let pace = std::sync::Arc::new(ReadPace::new(Instant::now()));
        pace.set(Some(Duration::from_secs(3600)));
        let waiting = pace.clone();
        let reader = thread::spawn(move || waiting.wait_after_read(Instant::now(), 100));
        pace.set(None);
        reader.thread().unpark();
        // Joins only if the reader saw the change: a tick an hour away would hang the test.
        reader.join().unwrap();
    }
}
