//! Paced reads of publishers: a publisher's bytes wait in the kernel's buffer and are read on
//! the players' merge grid, and what a read brings goes to the players at once.
//!
//! With merged writes, a player's media waits up to the base window (40 ms) in the server
//! anyway. Read as it arrives, a publisher costs one read per message (an audio frame every
//! 20 ms), which is most of what a publisher costs (kernel time: nginx-rtmp pays the same).
//! Paced, the wait moves from the players' queues into the publisher's socket buffer: one
//! read per window brings every message since the last, and the players are written at once
//! after it instead of being held. The worst-case delay does not grow; the reads fall with
//! the messages per window.
//!
//! **Only while the stream has few eager players** (at most [`PACED_MAX_EAGER_PLAYERS`] on
//! the base lane). Holding does better per player than the grid: a hold starts at the first
//! message after a player's last write, so with the window's slack it gathers about three
//! 20 ms messages per write, where a 40 ms grid brings two. At 1,000 players that was 17
//! against 25 writes a player a second, and 30-40 % more CPU per player (bench-compare,
//! `results/2026-12-06-paced-reads/`), while a read saved is worth about two or three
//! players' extra writes. So a publisher is paced while its stream has at most two eager
//! players (an ingest, a recording, a relay), and read as its bytes arrive, its players
//! held, above that; the count is taken as each message is delivered, and the change
//! applies from the next.
//!
//! Only a driver can leave bytes in a socket, so the node asks for pacing
//! ([`Output::ReadPacing`]) only once the driver has said it honours it
//! ([`crate::node::Node::enable_read_pacing`]); a driver that never says so sees no such
//! output and its players stay on merged writes. Players on a longer lane (bulk readers, see
//! `read_lag`) keep their hold: written at once they would be woken more often than they read.
//! A connection that publishes more than one stream is not paced.

use std::time::Duration;

use super::session::{Phase, StreamRole};
use super::RtmpServer;
use crate::ids::ConnId;
use crate::io::Output;

/// The most players on the base lane a stream may have for its publisher to be read on the
/// grid (see the module's notes for why two).
pub(crate) const PACED_MAX_EAGER_PLAYERS: usize = 2;

impl RtmpServer {
    /// The driver reads connections on a grid when asked ([`Output::ReadPacing`]).
    pub(crate) fn enable_read_pacing(&mut self) {
        self.read_pacing = true;
    }

    /// The grid a publisher's reads go on: the players' base merge window, when the driver
    /// paces reads and merged writes are on.
    pub(super) fn read_grid(&self) -> Option<Duration> {
        if !self.read_pacing {
            return None;
        }
        let window = self.merge.as_ref()?.window(0);
        (!window.is_zero()).then_some(window)
    }

    /// Paces `conn`'s reads or ends their pacing, as `paced` says (an output only on a change;
    /// pacing only when the driver can and merged writes are on, for a connection that
    /// publishes one stream and is not on its way out).
    fn set_reads_paced(&mut self, conn: ConnId, paced: bool) {
        let every = self.read_grid();
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let publishing = session
            .streams
            .iter()
            .filter(|(_, role)| matches!(role, StreamRole::Publishing(_)))
            .count();
        let paced = paced && every.is_some() && publishing == 1;
        if session.reads_paced == paced || matches!(session.phase, Phase::Closing) {
            return;
        }
        session.reads_paced = paced;
        let every = every.filter(|_| paced);
        self.outputs.push_back(Output::ReadPacing { conn, every });
    }

    /// `conn` went live as a publisher: its reads go on the grid (until its stream has more
    /// eager players than [`PACED_MAX_EAGER_PLAYERS`]).
    pub(super) fn pace_publisher_reads(&mut self, conn: ConnId) {
        self.set_reads_paced(conn, true);
    }

    /// A message of `publisher`'s (read on the grid if `paced`) was delivered to a stream with
    /// `eager_players` on the base lane: its reads are paced from the next message on if that
    /// is few enough. Nothing to do, and nothing looked up, while that does not change.
    pub(super) fn pace_for_players(
        &mut self,
        publisher: ConnId,
        paced: bool,
        eager_players: usize,
    ) {
        let wanted = eager_players <= PACED_MAX_EAGER_PLAYERS;
        if wanted != paced && self.read_grid().is_some() {
            self.set_reads_paced(publisher, wanted);
        }
    }

    /// `conn` stopped publishing on `stream_id`: its reads go back to as the bytes arrive (a
    /// connection that plays next must not wait for its commands to be read).
    pub(super) fn unpace_reads(&mut self, conn: ConnId, stream_id: u32) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        // Roles are still listed while they end.
        let publishes_more = session
            .streams
            .iter()
            .any(|(id, role)| *id != stream_id && matches!(role, StreamRole::Publishing(_)));
        if !publishes_more {
            self.set_reads_paced(conn, false);
        }
    }
}
