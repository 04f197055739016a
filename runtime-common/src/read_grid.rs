//! [`ReadGrid`]: the connections a driver reads on a grid, once per interval, rather than as
//! their bytes arrive (the node asks with [`Output::ReadPacing`] for publishers; see
//! [`Node::enable_read_pacing`]).
//!
//! The grid is one for all of them: one wake-up per interval reads every paced connection,
//! and the writes to their players follow in the same turn. A driver that leaves a paced
//! socket alone between ticks (the mio driver sets `SO_RCVLOWAT`, so epoll stays quiet until
//! much has arrived) makes one read per tick where it made one per message.
//!
//! [`Output::ReadPacing`]: siprtmp_core::node::Output::ReadPacing
//! [`Node::enable_read_pacing`]: siprtmp_core::node::Node::enable_read_pacing

use std::time::{Duration, Instant};

use siprtmp_core::node::ConnId;

/// The paced connections, the grid's next tick, and the changes the driver has yet to carry
/// out on the sockets.
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
/// assert!(!grid.tick(t0 + every / 2));
/// assert!(grid.tick(t0 + every));
/// assert_eq!(grid.conns(), [ConnId(7)]);
/// ```
#[derive(Debug, Default)]
pub struct ReadGrid {
    /// The interval and the next tick, set by the first paced connection.
    grid: Option<(Duration, Instant)>,
    conns: Vec<ConnId>,
    /// Connections paced (true) or back to reads as bytes arrive (false) since the driver
    /// last looked.
    changes: Vec<(ConnId, bool)>,
}

impl ReadGrid {
    /// The node asked for `conn` to be read every `every`, or (`None`) as its bytes arrive.
    pub fn set(&mut self, now: Instant, conn: ConnId, every: Option<Duration>) {
        let paced = self.conns.contains(&conn);
        match every {
            Some(every) if !paced => {
                self.grid.get_or_insert((every, now + every));
                self.conns.push(conn);
                self.changes.push((conn, true));
            }
            None if paced => {
                self.conns.retain(|c| *c != conn);
                self.changes.push((conn, false));
            }
            _ => {}
        }
    }

    /// `conn` is gone: nothing to read or change.
    pub fn remove(&mut self, conn: ConnId) {
        self.conns.retain(|c| *c != conn);
        self.changes.retain(|(c, _)| *c != conn);
    }

    /// The next tick, while any connection is paced (for the poll's timeout).
    pub fn next_tick(&self) -> Option<Instant> {
        let (_, next) = self.grid?;
        (!self.conns.is_empty()).then_some(next)
    }

    /// Whether a tick has come at `now` (then the paced connections are to be read); moves the
    /// grid to its next tick after `now`.
    pub fn tick(&mut self, now: Instant) -> bool {
        let Some((every, next)) = &mut self.grid else {
            return false;
        };
        if *next > now {
            return false;
        }
        // Ticks missed (a busy or sleeping loop) are not made up: the next is on the grid.
        let behind = now.duration_since(*next).as_nanos() / every.as_nanos().max(1);
        *next += *every * (behind as u32 + 1);
        !self.conns.is_empty()
    }

    /// The paced connections.
    pub fn conns(&self) -> &[ConnId] {
        &self.conns
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
        assert_eq!(grid.next_tick(), None);
        assert!(
            !grid.tick(t0 + 1000 * MS),
            "no grid before a paced connection"
        );
        grid.set(t0, ConnId(1), Some(40 * MS));
        // A second connection joins the first one's grid.
        grid.set(t0 + 10 * MS, ConnId(2), Some(40 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 40 * MS));
        assert!(grid.tick(t0 + 41 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 80 * MS));
        // A loop that slept through three ticks reads once and goes on from the grid.
        assert!(grid.tick(t0 + 205 * MS));
        assert_eq!(grid.next_tick(), Some(t0 + 240 * MS));
        assert_eq!(grid.conns(), [ConnId(1), ConnId(2)]);
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
        assert!(grid.conns().is_empty());
        assert_eq!(grid.next_tick(), None, "nothing paced: no wake-ups");
        assert!(!grid.tick(t0 + 50 * MS));
    }
}
