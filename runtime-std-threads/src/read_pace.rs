//! [`ReadPace`]: how often a connection's reader thread reads, as the node asks
//! ([`siprtmp_core::node::Output::ReadPacing`]), and the socket options that make its blocking
//! `read` do so ([`PacedSocket`]).
//!
//! The event-loop drivers read a paced publisher at the ticks of a grid and keep its socket
//! quiet in between with `SO_RCVLOWAT`. Here each connection has a thread that blocks in
//! `read`, and the same two options shape that one call: `SO_RCVLOWAT` of [`PACED_LOW_WATER`]
//! makes it wait for that much (or a full buffer), and `SO_RCVTIMEO` until the next tick of
//! the interval makes it return there with whatever arrived. So a paced publisher is read once
//! per tick, and one that sends more than a read takes between ticks is read as its bytes come,
//! never held to the ticks with a full receive window. The ticks are on a grid common to every
//! connection, so that the node thread gets the readers of one tick together.
//!
//! A publisher whose reads found nothing at two ticks in a row sleeps, as on the event loops'
//! grid: its next `read` waits for its next byte (low-water mark 1, no timeout), and it is
//! paced again from that read on.
//!
//! The node thread changes the interval through [`ReadPace::set`]; the reader, blocked in a
//! `read` with the old options, takes the new ones at its next read: at most one interval
//! later (400 ms for a publisher nobody watched).

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use siprtmp_runtime_common::{set_read_low_water, EMPTY_TICKS_TO_SLEEP, PACED_LOW_WATER};

/// A connection's read interval, shared by the node thread (which sets it) and the
/// connection's reader thread (which reads by it).
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
    /// arrive; the reader takes it at its next read.
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
}

/// How the next `read` is to wait: for how many bytes, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadWait {
    low_water: usize,
    /// `None`: until the bytes come, however long.
    until: Option<Instant>,
}

/// A reader thread's side of its socket: the options it last set (each set only when it
/// changes, the timeout before every paced read) and its empty ticks.
#[derive(Debug)]
pub(crate) struct PacedSocket {
    low_water: usize,
    timeout: bool,
    empty_ticks: u8,
}

impl PacedSocket {
    /// A socket with the options it was accepted with (low-water mark 1, no timeout).
    pub(crate) fn new() -> Self {
        Self {
            low_water: 1,
            timeout: false,
            empty_ticks: 0,
        }
    }

    /// How the next read waits under `pace`, at `now`: a paced one until the grid's first
    /// tick after `now` (after a read at a tick, the next tick; after a slow turn, never one
    /// already past).
    fn wait(&self, pace: &ReadPace, now: Instant) -> ReadWait {
        match pace.every() {
            Some(every) if self.empty_ticks < EMPTY_TICKS_TO_SLEEP => ReadWait {
                low_water: PACED_LOW_WATER,
                until: Some(pace.next_tick(now, every)),
            },
            // Not paced, or asleep until its next byte.
            _ => ReadWait {
                low_water: 1,
                until: None,
            },
        }
    }

    /// Sets `stream` up for the next read under `pace` (the options that changed, and the
    /// timeout to the next tick when paced).
    pub(crate) fn prepare(&mut self, stream: &TcpStream, pace: &ReadPace) -> io::Result<()> {
        let now = Instant::now();
        let wait = self.wait(pace, now);
        if wait.low_water != self.low_water {
            set_read_low_water(stream, wait.low_water)?;
            self.low_water = wait.low_water;
        }
        match wait.until {
            // The tick is after `now`; the floor only keeps a zero timeout, which would mean
            // none, from ever being set.
            Some(until) => {
                let timeout = until.saturating_duration_since(now);
                stream.set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
                self.timeout = true;
            }
            None if self.timeout => {
                stream.set_read_timeout(None)?;
                self.timeout = false;
            }
            None => {}
        }
        Ok(())
    }

    /// The read brought bytes (`got_bytes`) or timed out at its tick with nothing.
    pub(crate) fn read(&mut self, got_bytes: bool) {
        self.empty_ticks = if got_bytes {
            0
        } else {
            self.empty_ticks.saturating_add(1)
        };
    }

    /// Whether a read error is the timeout of a paced read (an empty tick), not a failure.
    pub(crate) fn timed_out(&self, error: &io::Error) -> bool {
        self.timeout
            && matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_millis(40);

    #[test]
    fn a_paced_read_waits_for_the_low_water_mark_until_the_next_tick_of_the_common_grid() {
        let epoch = Instant::now();
        let pace = ReadPace::new(epoch);
        assert_eq!(
            pace.next_tick(epoch + Duration::from_millis(10), EVERY),
            epoch + EVERY
        );
        assert_eq!(pace.next_tick(epoch + EVERY, EVERY), epoch + EVERY * 2);
        let mut socket = PacedSocket::new();
        let unpaced = ReadWait {
            low_water: 1,
            until: None,
        };
        assert_eq!(socket.wait(&pace, epoch), unpaced, "not paced yet");
        pace.set(Some(EVERY));
        socket.read(true);
        let now = epoch + Duration::from_millis(5);
        let wait = socket.wait(&pace, now);
        assert_eq!(wait.low_water, PACED_LOW_WATER);
        assert_eq!(wait.until, Some(epoch + EVERY));
        pace.set(None);
        assert_eq!(
            socket.wait(&pace, now),
            unpaced,
            "back to reads as bytes come"
        );
    }

    #[test]
    fn a_reader_that_found_nothing_at_two_ticks_sleeps_until_its_next_byte() {
        let epoch = Instant::now();
        let pace = ReadPace::new(epoch);
        pace.set(Some(EVERY));
        let mut socket = PacedSocket::new();
        socket.read(false);
        assert_eq!(socket.wait(&pace, epoch).low_water, PACED_LOW_WATER);
        socket.read(false);
        let asleep = socket.wait(&pace, epoch);
        assert_eq!((asleep.low_water, asleep.until), (1, None));
        socket.read(true);
        assert_eq!(
            socket.wait(&pace, epoch).low_water,
            PACED_LOW_WATER,
            "awake"
        );
    }

    #[test]
    fn the_next_read_waits_for_the_tick_after_now_never_one_already_past() {
        let epoch = Instant::now();
        let pace = ReadPace::new(epoch);
        pace.set(Some(EVERY));
        let socket = PacedSocket::new();
        // Long after the last tick (a sleep, or a slow turn): the next tick from now.
        let now = epoch + EVERY * 10 + Duration::from_millis(5);
        let until = socket.wait(&pace, now).until.unwrap();
        assert_eq!(until, epoch + EVERY * 11);
    }
}
