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
//! **A publisher nobody watches is read ten times less often** ([`ReadPace::Unwatched`]: no
//! player, HTTP-FLV player, push or worker subscribed to its stream). Its bytes go only to
//! the caches and a recording, which no one waits on, so it is read on every tenth tick of
//! the grid (400 ms at the default window): one read where there were ten, and a read is
//! most of what such a publisher costs. An ingest whose viewers have not come, a standby
//! feed, the long tail of a platform's channels: often most of a server's publishers. The
//! low-water mark still wakes the driver for a burst, so the socket holds no more than it
//! does on the base grid. A player (or push, or subscriber) that comes puts the publisher
//! back on the base grid at once, before its first live message; the cache it gets at once
//! covers the wait. A command from such a publisher (an `FCUnpublish`) may wait up to 400
//! ms, which no client times.
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

/// How often a publisher nobody watches is read, at the least: a whole number of the grid's
/// ticks (ten at the default 40 ms window).
const UNWATCHED_READ_EVERY: Duration = Duration::from_millis(400);

/// How the driver reads a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ReadPace {
    /// As its bytes arrive (everything but a paced publisher).
    #[default]
    Arrival,
    /// On the grid: a publisher whose stream has a few eager players.
    Grid,
    /// On every tenth tick of the grid: a publisher nobody watches.
    Unwatched,
}

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

    /// How often a connection read at `pace` is read (`None`: as its bytes arrive).
    pub(super) fn read_every(&self, pace: ReadPace) -> Option<Duration> {
        let grid = self.read_grid()?;
        match pace {
            ReadPace::Arrival => None,
            ReadPace::Grid => Some(grid),
            ReadPace::Unwatched => {
                let ticks = UNWATCHED_READ_EVERY.as_nanos().div_ceil(grid.as_nanos());
                Some(grid * u32::try_from(ticks).unwrap_or(1).max(1))
            }
        }
    }

    /// Reads `conn` at `pace` (an output only on a change; pacing only when the driver can
    /// and merged writes are on, for a connection that publishes one stream and is not on
    /// its way out).
    fn set_read_pace(&mut self, conn: ConnId, pace: ReadPace) {
        let grid = self.read_grid();
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let publishing = session
            .streams
            .iter()
            .filter(|(_, role)| matches!(role, StreamRole::Publishing(_)))
            .count();
        let pace = if grid.is_some() && publishing == 1 {
            pace
        } else {
            ReadPace::Arrival
        };
        if session.read_pace == pace || matches!(session.phase, Phase::Closing) {
            return;
        }
        session.read_pace = pace;
        let every = self.read_every(pace);
        self.outputs.push_back(Output::ReadPacing { conn, every });
    }

    /// `conn` went live as a publisher on `key`: its reads go on the grid, or on every tenth
    /// tick if nobody watches yet (until its stream's audience says otherwise).
    pub(super) fn pace_publisher_reads(&mut self, conn: ConnId, key: &str) {
        let watched = self.live.get(key).is_some_and(|s| s.watched());
        let pace = if watched {
            ReadPace::Grid
        } else {
            ReadPace::Unwatched
        };
        self.set_read_pace(conn, pace);
    }

    /// A message of `publisher`'s (read at `pace`) was delivered to a stream `watched` by
    /// someone, with `eager_players` on the base lane: the pace its reads take from the next
    /// message on. Nothing to do, and nothing looked up, while that does not change.
    pub(super) fn pace_for_audience(
        &mut self,
        publisher: ConnId,
        pace: ReadPace,
        watched: bool,
        eager_players: usize,
    ) {
        let wanted = if !watched {
            ReadPace::Unwatched
        } else if eager_players <= PACED_MAX_EAGER_PLAYERS {
            ReadPace::Grid
        } else {
            ReadPace::Arrival
        };
        if wanted != pace && self.read_grid().is_some() {
            self.set_read_pace(publisher, wanted);
        }
    }

    /// Someone started watching `key` (a player, an HTTP-FLV player, a push, a worker): a
    /// publisher read on every tenth tick goes back on the grid now, not at its next read.
    pub(super) fn audience_joined(&mut self, key: &str) {
        let Some((publisher, _)) = self.live.get(key).and_then(|s| s.publisher) else {
            return;
        };
        let unwatched = self
            .sessions
            .get(publisher)
            .is_some_and(|s| s.read_pace == ReadPace::Unwatched);
        if unwatched {
            self.set_read_pace(publisher, ReadPace::Grid);
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
            self.set_read_pace(conn, ReadPace::Arrival);
        }
    }
}
