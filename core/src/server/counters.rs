//! [`Counters`]: what the RTMP server counts since it started, for the metrics
//! (`crate::admin`). Each is a plain integer incremented where the event already happens: no
//! allocation, no lock, one add. What can be read off the server's state when scraped (live
//! connections, publishers, players, queued bytes) is not counted here.

use crate::close_reason::CloseReason;

/// Labels of [`Counters::closed`]: every [`CloseReason::kind`], then the peer's own close.
pub(crate) const CLOSE_KINDS: [&str; 24] = [
    "server_full",
    "address_full",
    "unfinished_messages_budget",
    "input_while_deciding",
    "handshake",
    "handshake_timeout",
    "tls",
    "silent",
    "chunk_stream",
    "command",
    "data_message",
    "aggregate",
    "protocol_control",
    "user_control",
    "command_before_connect",
    "player_backlog",
    "client_backlog",
    "decision_timeout",
    "connect_redirected",
    "connect_rejected",
    "replaced_by_newer",
    "dropped_by_operator",
    "shutdown",
    PEER_CLOSED,
];

/// The label of a connection the peer closed (or whose socket failed) before the server did.
pub(crate) const PEER_CLOSED: &str = "peer";

/// The server's counters since it started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes read from connections.
    pub bytes_received: u64,
    /// Reads the driver handed in (each one or more messages' bytes).
    pub reads: u64,
    /// Bytes the driver wrote to connections.
    pub bytes_sent: u64,
    /// Live video messages not sent to a player because its backlog was past the soft limit.
    pub player_messages_dropped: u64,
    /// Bytes of recordings that have ended (running ones are read off their recorders).
    pub record_bytes_finished: u64,
    /// Publishes that went live.
    pub publishes: u64,
    /// Plays of live streams and files that started.
    pub plays: u64,
    /// Connections closed, by [`CLOSE_KINDS`] index.
    pub closed: [u64; CLOSE_KINDS.len()],
}

impl Counters {
    /// Adds `other`'s counts (another worker's).
    pub(crate) fn add(&mut self, other: &Counters) {
        self.accepted += other.accepted;
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.reads += other.reads;
        self.player_messages_dropped += other.player_messages_dropped;
        self.record_bytes_finished += other.record_bytes_finished;
        self.publishes += other.publishes;
        self.plays += other.plays;
        for (a, b) in self.closed.iter_mut().zip(other.closed) {
            *a += b;
        }
    }

    /// Counts a close by the server for `reason`.
    pub(crate) fn count_close(&mut self, reason: &CloseReason) {
        self.count_close_kind(reason.kind());
    }

    /// Counts a close by its label (one of [`CLOSE_KINDS`]; closes are rare, so a search).
    pub(crate) fn count_close_kind(&mut self, kind: &str) {
        if let Some(i) = CLOSE_KINDS.iter().position(|k| *k == kind) {
            self.closed[i] += 1;
        }
    }

    /// Closes of one kind.
    pub(crate) fn closed_by(&self, kind: &str) -> u64 {
        CLOSE_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.closed[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label `CloseReason::kind` can return (read off its source, so a new reason
    /// without a counter fails here) has a counter.
    #[test]
    fn every_close_reason_kind_has_a_counter() {
        let source = include_str!("../close_reason.rs");
        let body = &source[source.find("pub fn kind(&self)").unwrap()..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        let kinds: Vec<&str> = body
            .lines()
            .filter_map(|line| line.split("=> \"").nth(1))
            .map(|rest| rest.trim_end_matches("\","))
            .collect();
        assert!(kinds.len() >= 20, "{kinds:?}");
        let mut counters = Counters::default();
        for kind in &kinds {
            counters.count_close_kind(kind);
            assert_eq!(counters.closed_by(kind), 1, "{kind} has no counter");
        }
        counters.count_close(&CloseReason::HandshakeTimeout);
        assert_eq!(counters.closed_by("handshake_timeout"), 2);
    }
}
