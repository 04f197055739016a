//! [`ReadGrid`]: the connections a driver reads on a grid, once per interval, rather than as
//! their bytes arrive (the node asks with [`Output::ReadPacing`] for publishers; see
//! [`Node::enable_read_pacing`]).
//!
//! The grid is one for all of them: one wake-up per interval reads every paced connection
//! due, and the writes to their players follow in the same turn. A driver that leaves a
//! paced socket alone between ticks (every epoll driver sets `SO_RCVLOWAT` to
//! [`PACED_LOW_WATER`], so epoll stays quiet until much has arrived) makes one read per tick
//! where it made one per message.
//!
//! **Intervals.** The grid's is the shortest asked, and stays so. A connection asked to be
//! read less often (a publisher nobody watches: every 400 ms where the grid is 40 ms) is read
//! every so many ticks, at a phase its id picks, so that the reads of many spread over the
//! ticks rather than all coming at one.
//!
//! **A quiet connection sleeps.** A read at every tick of a connection that sends nothing
//! would cost a system call per tick for nothing, and a peer could hold thousands of idle
//! publishers. So a connection whose reads at two ticks in a row found nothing is taken off
//! the sweep ([`ReadGrid::swept`] says so, and the driver lets its socket raise an event for
//! the next byte again); the event wakes it ([`ReadGrid::woke`]), its bytes are read at once,
//! and it goes back on the sweep. A stream sparser than the grid (video alone at 12 frames a
//! second, one tick in two empty) stays on it.
//!
//! [`Output::ReadPacing`]: siprtmp_core::node::Output::ReadPacing
//! [`Node::enable_read_pacing`]: siprtmp_core::node::Node::enable_read_pacing

use std::time::{Duration, Instant};

use siprtmp_core::id_hash::IdHashMap;
use siprtmp_core::node::ConnId;

/// Ticks in a row whose read found nothing before a connection sleeps (here, and in the
/// std-threads driver's own pacing).
pub const EMPTY_TICKS_TO_SLEEP: u8 = 2;

/// A paced socket's `SO_RCVLOWAT` (what the epoll drivers set): more than this,
/// arrived between two ticks (a keyframe of a high-rate stream), is read at once rather than
/// left waiting for the tick. Not more: Linux grows a socket's receive buffer to fit the mark
/// and, when it has to, clamps the receive window to it; a default buffer (`tcp_rmem`'s
/// 128 KiB) fits 32 KiB as it is, so a publisher's window is left alone.
pub const PACED_LOW_WATER: usize = 32 * 1024;

/// One paced connection.
#[derive(Debug, Clone, Copy)]
struct Paced {
    /// How often the node asked for it to be read.
    every: Duration,
    /// The grid's ticks from one read to the next (at least one).
    stride: u32,
    /// The grid's ticks left before its next read.
    ticks_to_read: u32,
    /// Reads in a row that found nothing.
    empty_ticks: u8,
    /// Off the sweep until its socket raises an event.
    asleep: bool,
}

/// The grid's ticks in `every` (at least one).
fn stride(every: Duration, interval: Duration) -> u32 {
    let ticks = every.as_nanos() / interval.as_nanos().max(1);
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

/// The paced connections, the grid's next tick, and the changes the driver has yet to carry
/// out on the sockets. Every look-up is by id (a readable event asks whether its connection
/// slept, a tick's reads report what they found), so none costs more with more publishers.
///
/// ```
/// use std::time::{Duration, Instant};
/// use siprtmp_core::node::ConnId;
/// use siprtmp_runtime_common::ReadGrid;
/// let t0 = Instant::now();
/// let every = Duration::from_millis(40);
/// let mut grid = ReadGrid::default();
/// grid.set(t0, ConnId(7), Some(every));
/// assert_eq!(grid.next_tick(), Some(t0 + every));
/// assert_eq!(grid.take_changes().collect::<Vec<_>>(), [(ConnId(7), true)]);
/// let mut sweep = Vec::new();
/// assert!(!grid.tick(t0 + every / 2, &mut sweep));
/// assert!(grid.tick(t0 + every, &mut sweep));
/// assert_eq!(sweep, [ConnId(7)]);
/// // Read every fourth tick from now on.
/// grid.set(t0 + every, ConnId(7), Some(every * 4));
/// let reads = (2..=9)
///     .filter(|&n| grid.tick(t0 + every * n, &mut sweep))
///     .count();
/// assert_eq!(reads, 2);
/// ```
#[derive(Debug, Default)]
pub struct ReadGrid {
    /// The interval and the next tick, set by the first paced connection (the interval goes
    /// down to the shortest any asks).
    grid: Option<(Duration, Instant)>,
    paced: IdHashMap<ConnId, Paced>,
    /// Paced connections not asleep (the grid ticks only while there are some).
    awake: usize,
    /// Connections paced (true) or back to reads as bytes arrive (false) since the driver
    /// last looked.
    changes: Vec<(ConnId, bool)>,
}

impl ReadGrid {
    /// The node asked for `conn` to be read every `every`, or (`None`) as its bytes arrive.
    /// A connection paced anew is first read within its stride, at a tick its id picks (so
    /// that connections paced together spread over the ticks); one to be read more often than
    /// it was is read at the next tick.
    pub fn set(&mut self, now: Instant, conn: ConnId, every: Option<Duration>) {
        let Some(every) = every else {
            if self.paced.contains_key(&conn) {
                self.forget(conn);
                self.changes.push((conn, false));
            }
            return;
        };
        let (interval, next) = self.grid.get_or_insert((every, now + every));
        if every < *interval {
            // A shorter interval than the grid's: the grid takes it, and every stride follows.
            (*interval, *next) = (every, (*next).min(now + every));
            for paced in self.paced.values_mut() {
                paced.stride = stride(paced.every, every);
                paced.ticks_to_read = paced.ticks_to_read.min(paced.stride - 1);
            }
        }
        let stride = stride(every, *interval);
        match self.paced.get_mut(&conn) {
            Some(paced) => {
                if stride < paced.stride {
                    paced.ticks_to_read = 0;
                }
                (paced.every, paced.stride) = (every, stride);
            }
            None => {
                self.paced.insert(
                    conn,
                    Paced {
                        every,
                        stride,
                        ticks_to_read: (conn.0 % u64::from(stride)) as u32,
                        empty_ticks: 0,
                        asleep: false,
                    },
                );
                self.awake += 1;
                self.changes.push((conn, true));
            }
        }
    }

    /// Takes `conn` off the grid.
    fn forget(&mut self, conn: ConnId) {
        if let Some(paced) = self.paced.remove(&conn) {
            self.awake -= usize::from(!paced.asleep);
        }
    }

    /// `conn` is gone: nothing to read or change.
    pub fn remove(&mut self, conn: ConnId) {
        self.forget(conn);
        self.changes.retain(|(c, _)| *c != conn);
    }

    /// The next tick, while any connection is on the sweep (for the poll's timeout).
    pub fn next_tick(&self) -> Option<Instant> {
        let (_, next) = self.grid?;
        (self.awake > 0).then_some(next)
    }

    /// Whether a tick has come at `now`; if so `sweep` is filled with the connections to read
    /// (the paced ones not asleep whose turn it is), and the grid moves to its next tick
    /// after `now`.
    pub fn tick(&mut self, now: Instant, sweep: &mut Vec<ConnId>) -> bool {
        sweep.clear();
        let Some((every, next)) = &mut self.grid else {
            return false;
        };
        if *next > now {
            return false;
        }
        // Ticks missed (a busy or sleeping loop) are not made up: the next is on the grid.
        let behind = now.duration_since(*next).as_nanos() / every.as_nanos().max(1);
        let ticks = u32::try_from(behind).unwrap_or(u32::MAX - 1) + 1;
        *next += *every * ticks;
        for (conn, paced) in self.paced.iter_mut().filter(|(_, p)| !p.asleep) {
            if paced.ticks_to_read < ticks {
                paced.ticks_to_read = paced.stride - 1;
                sweep.push(*conn);
            } else {
                paced.ticks_to_read -= ticks;
            }
        }
        // Ids in order: the sweep reads the same connections in the same order every tick.
        sweep.sort_unstable();
        !sweep.is_empty()
    }

    /// What the read of `conn` at a tick found (`got_bytes`); true when the connection goes to
    /// sleep now: the driver must let its socket raise an event for the next byte.
    pub fn swept(&mut self, conn: ConnId, got_bytes: bool) -> bool {
        let Some(paced) = self.paced.get_mut(&conn) else {
            return false;
        };
        if got_bytes || paced.asleep {
            paced.empty_ticks = 0;
            return false;
        }
        paced.empty_ticks = paced.empty_ticks.saturating_add(1);
        paced.asleep = paced.empty_ticks >= EMPTY_TICKS_TO_SLEEP;
        self.awake -= usize::from(paced.asleep);
        paced.asleep
    }

    /// `conn`'s socket raised an event; true when it was asleep: it is back on the sweep, and
    /// the driver must make its socket quiet between ticks again.
    pub fn woke(&mut self, conn: ConnId) -> bool {
        let Some(paced) = self.paced.get_mut(&conn) else {
            return false;
        };
        let was_asleep = paced.asleep;
        paced.asleep = false;
        paced.empty_ticks = 0;
        self.awake += usize::from(was_asleep);
        was_asleep
    }

    /// The connections paced (true) or no longer paced (false) since the last call, for the
    /// driver to set their sockets up.
    pub fn take_changes(&mut self) -> impl Iterator<Item = (ConnId, bool)> + '_ {
        self.changes.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ticks_stay_on_one_grid_and_missed_ones_are_skipped() {
        let t0 = Instant::now();
        let mut grid = ReadGrid::default();
        let mut sweep = Vec::new();
        assert_eq!(grid.next_tick(), None);
        assert!(
            !grid.tick(t0 + 1000 * MS, &mut sweep),
            "no grid before a paced connection"
        );
        grid.set(t0, ConnId(1), Some(40 * MS));
        // A second connection joins the first one's grid.
        grid.set(t0 + 10 * MS, ConnId(2), Some(40 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 40 * MS));
        assert!(grid.tick(t0 + 41 * MS, &mut sweep));
        assert_eq!(grid.next_tick(), Some(t0 + 80 * MS));
        // A loop that slept through three ticks reads once and goes on from the grid.
        assert!(grid.tick(t0 + 205 * MS, &mut sweep));
        assert_eq!(grid.next_tick(), Some(t0 + 240 * MS));
        assert_eq!(sweep, [ConnId(1), ConnId(2)]);
    }

    #[test]
    fn changes_are_reported_once_and_a_closed_connection_drops_out() {
        let t0 = Instant::now();
        let mut grid = ReadGrid::default();
        grid.set(t0, ConnId(1), Some(40 * MS));
        grid.set(t0, ConnId(1), Some(40 * MS)); // asked twice: one change
        grid.set(t0, ConnId(2), Some(40 * MS));
        grid.set(t0, ConnId(3), None); // never paced: nothing to undo
        let changes: Vec<_> = grid.take_changes().collect();
        assert_eq!(changes, [(ConnId(1), true), (ConnId(2), true)]);
        grid.set(t0, ConnId(1), None);
        grid.set(t0, ConnId(2), Some(40 * MS));
        grid.remove(ConnId(2));
        assert_eq!(
            grid.take_changes().collect::<Vec<_>>(),
            [(ConnId(1), false)]
        );
        assert_eq!(grid.next_tick(), None, "nothing paced: no wake-ups");
        let mut sweep = Vec::new();
        assert!(!grid.tick(t0 + 50 * MS, &mut sweep));
        assert!(sweep.is_empty());
    }

    #[test]
    fn a_connection_quiet_for_two_ticks_sleeps_until_its_socket_wakes_it() {
        let t0 = Instant::now();
        let mut grid = ReadGrid::default();
        let mut sweep = Vec::new();
        grid.set(t0, ConnId(1), Some(40 * MS));
        grid.set(t0, ConnId(2), Some(40 * MS));
        // A sparse stream: one empty tick in two stays on the sweep.
        for (tick, got_bytes) in [(1, true), (2, false), (3, true), (4, false)] {
            assert!(grid.tick(t0 + 40 * MS * tick, &mut sweep));
            assert_eq!(sweep, [ConnId(1), ConnId(2)]);
            assert!(!grid.swept(ConnId(1), got_bytes));
            assert!(!grid.swept(ConnId(2), true));
        }
        // Two empty ticks in a row: off the sweep.
        assert!(grid.tick(t0 + 200 * MS, &mut sweep));
        assert!(
            grid.swept(ConnId(1), false),
            "asleep after the second empty tick"
        );
        assert!(grid.tick(t0 + 240 * MS, &mut sweep));
        assert_eq!(sweep, [ConnId(2)]);
        // With both asleep the grid raises no wake-ups.
        assert!(!grid.swept(ConnId(2), false));
        assert!(grid.swept(ConnId(2), false));
        assert_eq!(grid.next_tick(), None);
        // An event brings one back (once), and the grid ticks again.
        assert!(grid.woke(ConnId(1)));
        assert!(!grid.woke(ConnId(1)), "already awake");
        assert!(!grid.woke(ConnId(9)), "not paced");
        assert_eq!(grid.next_tick(), Some(t0 + 280 * MS));
        assert!(grid.tick(t0 + 280 * MS, &mut sweep));
        assert_eq!(sweep, [ConnId(1)]);
    }

    #[test]
    fn a_connection_read_less_often_is_read_every_so_many_ticks_at_its_own_phase() {
        let t0 = Instant::now();
        let mut grid = ReadGrid::default();
        let mut sweep = Vec::new();
        // The first to ask wants 400 ms: the grid starts at that interval.
        grid.set(t0, ConnId(13), Some(400 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 400 * MS));
        // A 40 ms connection brings the grid to 40 ms; the first is now read every tenth
        // tick, at the phase its id picks (13 % 10: the fourth tick).
        grid.set(t0, ConnId(2), Some(40 * MS));
        grid.set(t0, ConnId(4), Some(400 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 40 * MS));
        let mut reads: Vec<(u32, ConnId)> = Vec::new();
        for tick in 1..=20 {
            grid.tick(t0 + 40 * MS * tick, &mut sweep);
            reads.extend(
                sweep
                    .iter()
                    .filter(|c| **c != ConnId(2))
                    .map(|c| (tick, *c)),
            );
            assert!(sweep.contains(&ConnId(2)), "the 40 ms one at every tick");
        }
        // 13 (first read due before the rebase brought its stride to ten, so within the
        // first ticks) and 4 (phase 4 % 10: the fifth tick) each read twice in 20 ticks, ten
        // ticks apart.
        let of = |conn| -> Vec<u32> {
            reads
                .iter()
                .filter(|(_, c)| *c == conn)
                .map(|(t, _)| *t)
                .collect()
        };
        assert_eq!(of(ConnId(4)), [5, 15]);
        assert_eq!(of(ConnId(13)).len(), 2);
        assert_eq!(of(ConnId(13))[1] - of(ConnId(13))[0], 10);
        // Asked to be read more often: read at the next tick, then at every one.
        grid.set(t0 + 40 * MS * 20, ConnId(4), Some(40 * MS));
        for tick in 21..=23 {
            grid.tick(t0 + 40 * MS * tick, &mut sweep);
            assert!(sweep.contains(&ConnId(4)), "tick {tick}");
        }
        // The change of interval is no change of the socket's set-up.
        let changes: Vec<_> = grid.take_changes().collect();
        assert_eq!(
            changes,
            [(ConnId(13), true), (ConnId(2), true), (ConnId(4), true)]
        );
    }
}
