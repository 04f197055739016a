//! The server's graceful stop ([`Input::Shutdown`](crate::node::Input::Shutdown)): what it
//! closes when the stop begins, and when it is drained.
//!
//! A gateway node in a farm behind a registrar must not simply vanish: its clients' bindings
//! would stay in the registrar's location table until they expire, and calls would be
//! routed to a dead address meanwhile; its far ends would keep a call up until their own
//! timers end it. So the stop closes every connection the way a client's leaving does (the
//! gateway then ends each call and unregisters), refuses newcomers, and waits for the
//! answers, bounded by [`ServerConfig::shutdown_grace`](crate::node::ServerConfig::shutdown_grace).

use std::time::Instant;

use crate::close_reason::CloseReason;
use crate::ids::ConnId;

use super::RtmpServer;

impl RtmpServer {
    /// Begins the graceful stop at `now`: every connection closed (its last words written
    /// first: `NetConnection.Connect.Closed`), so gateway clients' calls end and their
    /// addresses of record are unregistered; later connections are refused
    /// (`accept_with`). A second call changes nothing.
    pub(crate) fn begin_shutdown(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(now + self.config.shutdown_grace);
        if let Some(gateway) = &mut self.gateway {
            gateway.begin_shutdown();
        }
        let mut open: Vec<ConnId> = self.sessions.iter().map(|s| s.id).collect();
        // In id order, so that equal inputs give equal outputs (replays, tests).
        open.sort_unstable();
        for conn in open {
            self.close(conn, CloseReason::Shutdown);
        }
    }

    /// Whether a stop has begun and has nothing left to wait for: no connection left and no
    /// gateway client still waiting for the answer to its goodbyes, or the grace is over.
    pub(crate) fn is_drained(&self, now: Instant) -> bool {
        let Some(deadline) = self.shutdown else {
            return false;
        };
        now >= deadline
            || (self.sessions.len() == 0
                && self.gateway.as_ref().is_none_or(|g| g.client_count() == 0))
    }

    /// While a stop is draining: when it gives up waiting (for the node's deadline).
    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        self.shutdown
    }
}
