//! Paced reads of publishers: a publisher's bytes wait in the kernel's buffer and are read on
//! the players' merge grid, and what a read brings goes to the players at once.
//!
//! With merged writes, a player's media waits up to the base window (40 ms) in the server
//! anyway. Read as it arrives, a publisher still costs one read per message (an audio frame
//! every 20 ms), which is most of what a publisher costs (kernel time: nginx-rtmp pays the same).
//! Paced, the same wait moves from the players' queues into the publisher's socket buffer:
//! one read per window brings every message since the last, and the players are written at
//! once after it instead of being held. The worst-case delay does not grow; the reads fall
//! with the messages per window.
//!
//! Only a driver can leave bytes in a socket, so the node asks for pacing
//! ([`Output::ReadPacing`]) only once the driver has said it honours it
//! ([`crate::node::Node::enable_read_pacing`]); a driver that never says so sees no such
//! output and its players stay on merged writes. Players on a longer lane (bulk readers, see
//! `read_lag`) keep their hold: written at once they would be woken more often than they read.

use std::time::Duration;

use super::session::{Phase, StreamRole};
use super::RtmpServer;
use crate::ids::ConnId;
use crate::io::Output;

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

    /// `conn` went live as a publisher: its reads go on the grid.
    pub(super) fn pace_publisher_reads(&mut self, conn: ConnId) {
        let Some(every) = self.read_grid() else {
            return;
        };
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if !session.reads_paced {
            session.reads_paced = true;
            self.outputs.push_back(Output::ReadPacing {
                conn,
                every: Some(every),
            });
        }
    }

    /// `conn` stopped publishing on `stream_id`: once it publishes nothing else, its reads go
    /// back to as the bytes arrive (a connection that plays next must not wait for its
    /// commands to be read). Nothing for a connection on its way out.
    pub(super) fn unpace_reads(&mut self, conn: ConnId, stream_id: u32) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let publishes_more = session
            .streams
            .iter()
            .any(|(id, role)| *id != stream_id && matches!(role, StreamRole::Publishing(_)));
        if !session.reads_paced || publishes_more || matches!(session.phase, Phase::Closing) {
            return;
        }
        session.reads_paced = false;
        self.outputs
            .push_back(Output::ReadPacing { conn, every: None });
    }

    /// Whether the publisher of a stream is read on the grid, so its messages are written to
    /// the players at once.
    pub(super) fn reads_paced(&self, publisher: Option<(ConnId, u32)>) -> bool {
        publisher
            .and_then(|(conn, _)| self.sessions.get(conn))
            .is_some_and(|session| session.reads_paced)
    }
}
