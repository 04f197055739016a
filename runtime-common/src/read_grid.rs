//! [`ReadGrid`]: the connections a driver reads on a grid, once per interval, rather than as
//! their bytes arrive (the node asks with [`Output::ReadPacing`] for publishers; see
//! [`Node::enable_read_pacing`]).
//!
//! The grid is one for all of them: one wake-up per interval reads every paced connection,
//! and the writes to their players follow in the same turn. A driver that leaves a paced
//! socket alone between ticks (the mio driver sets `SO_RCVLOWAT`, so epoll stays quiet until
//! much has arrived) makes one read per tick where it made one per message.
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

/// Ticks in a row whose read found nothing before a connection sleeps.
const EMPTY_TICKS_TO_SLEEP: u8 = 2;

/// One paced connection.
#[derive(Debug, Clone, Copy, Default)]
struct Paced {
    /// Ticks in a row whose read found nothing.
    empty_ticks: u8,
    /// Off the sweep until its socket raises an event.
    asleep: bool,
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
/// ```
#[derive(Debug, Default)]
pub struct ReadGrid {
    /// The interval and the next tick, set by the first paced connection.
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
    pub fn set(&mut self, now: Instant, conn: ConnId, every: Option<Duration>) {
        let paced = self.paced.contains_key(&conn);
        match every {
            Some(every) if !paced => {
                self.grid.get_or_insert((every, now + every));
                self.paced.insert(conn, Paced::default());
                self.awake += 1;
                self.changes.push((conn, true));
            }
            None if paced => {
                self.forget(conn);
                self.changes.push((conn, false));
            }
            _ => {}
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
    /// (the paced ones not asleep), and the grid moves to its next tick after `now`.
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
        *next += *every * (behind as u32 + 1);
        let awake = self.paced.iter().filter(|(_, p)| !p.asleep);
        sweep.extend(awake.map(|(conn, _)| *conn));
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
        let was_asleep = std::mem::take(paced).asleep;
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
}
