//! The socket side of paced reads, for every driver that waits on epoll (mio and io-uring
//! directly, tokio and async-std through [`crate::NodeReads`]): a
//! paced connection's socket gets `SO_RCVLOWAT` of [`PACED_LOW_WATER`], so that it raises no
//! event between ticks of the node's read grid ([`ReadGrid`]) unless much arrives, and back to
//! 1 when the grid puts it to sleep or the node stops pacing it. How a driver reads (a `recv`
//! each, or one batch for all) is its own; these [`NodeHost`] methods keep the grid and the
//! sockets in step around those reads.

use std::time::Instant;

use siprtmp_core::node::ConnId;

use crate::host::{NodeHost, Transport};
use crate::read_grid::PACED_LOW_WATER;
#[cfg(doc)]
use crate::ReadGrid;

impl<T: Transport> NodeHost<T> {
    /// Whether a tick of the read grid is due at `now`; then `sweep` (emptied first) holds the
    /// paced connections to read, each to be reported with [`Self::paced_read`].
    pub fn paced_due(&mut self, now: Instant, sweep: &mut Vec<ConnId>) -> bool {
        self.read_grid().is_some_and(|grid| grid.tick(now, sweep))
    }

    /// Sets `conn`'s `SO_RCVLOWAT` to `bytes`. A failure is logged and otherwise harmless: the
    /// connection is then read as its bytes arrive, as well as at its ticks.
    fn set_conn_low_water(&mut self, conn: ConnId, bytes: usize) {
        if let Some(transport) = self.transport_mut(conn) {
            if let Err(e) = transport.set_read_low_water(bytes) {
                tracing::debug!("{conn}: SO_RCVLOWAT: {e}");
            }
        }
    }

    /// `conn`'s socket raised a read event: if the grid had put it to sleep, it goes back on
    /// the sweep, its socket quiet between ticks again.
    pub fn wake_paced(&mut self, conn: ConnId) {
        if self.read_grid().is_some_and(|grid| grid.woke(conn)) {
            self.set_conn_low_water(conn, PACED_LOW_WATER);
        }
    }

    /// `conn` was read at a tick of the grid, and `got_bytes` says whether the read brought
    /// anything (bytes or the end of the stream). One that had nothing twice in a row sleeps:
    /// its socket raises an event for its next byte again.
    pub fn paced_read(&mut self, conn: ConnId, got_bytes: bool) {
        if self
            .read_grid()
            .is_some_and(|grid| grid.swept(conn, got_bytes))
        {
            self.set_conn_low_water(conn, 1);
        }
    }

    /// Takes the connections the node paced or stopped pacing in the last turn into `changes`
    /// (emptied first; kept by the driver for its allocation) and sets their sockets. The
    /// driver then reads those no longer paced (`false`) at once: what waited below the
    /// low-water mark raises no event of its own.
    pub fn pace_sockets(&mut self, changes: &mut Vec<(ConnId, bool)>) {
        changes.clear();
        let Some(grid) = self.read_grid() else {
            return;
        };
        changes.extend(grid.take_changes());
        for &(conn, paced) in changes.iter() {
            self.set_conn_low_water(conn, if paced { PACED_LOW_WATER } else { 1 });
        }
    }
}
