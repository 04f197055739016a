//! [`FlushSchedule`]: merged writes, the node-wide list of players whose media is held back so
//! that several messages leave in one write.
//!
//! Without merging, every media message makes each idle player's queue go from empty to
//! non-empty, so each costs each player one `Transmit` and one `writev` (50 a second for
//! 20 ms audio). With merging, media queued on an idle connection is *held*: the connection
//! is put on this list with the deadline `now + window`, and its `Transmit` is emitted when
//! the deadline passes (or earlier, when the held bytes pass the size limit or when anything
//! else—a command response, a control message—makes the connection transmit anyway).
//!
//! One list serves the whole node, and it needs no heap: the window is the same for every
//! connection and the server's `now` never goes back, so deadlines are appended in order and
//! the front is always the earliest. An entry is a (deadline, connection) pair pushed once
//! per hold (not per message); an entry whose connection transmitted meanwhile is stale and
//! skipped when it comes due (the session remembers the deadline of its live entry).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::ConnId;

/// Held connections in deadline order.
#[derive(Debug)]
pub(crate) struct FlushSchedule {
    window: Duration,
    /// Entries due within this much of the one that woke the timer go with it, so that players
    /// held a few milliseconds apart share one wake-up (they leave early, never late).
    coalesce: Duration,
    /// Held bytes past which a connection transmits at once (bulk video must not wait for the
    /// window in memory).
    max_bytes: usize,
    entries: VecDeque<(Instant, ConnId)>,
}

impl FlushSchedule {
    /// Holds for at most `window`, or until `max_bytes` are held.
    pub(crate) fn new(window: Duration, max_bytes: usize) -> Self {
        Self {
            window,
            coalesce: window / 16,
            max_bytes,
            entries: VecDeque::new(),
        }
    }

    /// The deadline of a hold that starts at `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Instant {
        now + self.window
    }

    /// Held bytes past which a connection transmits at once.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Puts `conn` on the list with `deadline` (from [`Self::deadline`], so never earlier than
    /// the entries already listed).
    pub(crate) fn hold(&mut self, deadline: Instant, conn: ConnId) {
        if let Some((last, _)) = self.entries.back() {
            debug_assert!(*last <= deadline, "deadlines are appended in order");
        }
        self.entries.push_back((deadline, conn));
    }

    /// When the earliest entry is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.front().map(|(deadline, _)| *deadline)
    }

    /// Takes the next entry that is due at `now` (or close enough to share this wake-up).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, ConnId)> {
        let (deadline, _) = *self.entries.front()?;
        if deadline > now + self.coalesce {
            return None;
        }
        self.entries.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_order_and_near_ones_share_a_wake_up() {
        let t0 = Instant::now();
        let mut list = FlushSchedule::new(Duration::from_millis(160), 1000);
        assert_eq!(list.next_deadline(), None);
        let d1 = list.deadline(t0);
        list.hold(d1, ConnId(1));
        let d2 = list.deadline(t0 + Duration::from_millis(5));
        list.hold(d2, ConnId(2));
        let d3 = list.deadline(t0 + Duration::from_millis(50));
        list.hold(d3, ConnId(3));
        assert_eq!(list.next_deadline(), Some(t0 + Duration::from_millis(160)));
        assert_eq!(list.pop_due(t0 + Duration::from_millis(100)), None);
        let now = t0 + Duration::from_millis(160);
        // 165 ms is within 160/16 = 10 ms of the wake-up; 210 ms is not.
        assert_eq!(list.pop_due(now), Some((d1, ConnId(1))));
        assert_eq!(list.pop_due(now), Some((d2, ConnId(2))));
        assert_eq!(list.pop_due(now), None);
        assert_eq!(list.next_deadline(), Some(d3));
    }
}
