//! [`FlushSchedule`]: merged writes, the node-wide lists of players whose media is held back so
//! that several messages leave in one write.
//!
//! Without merging, every media message makes each idle player's queue go from empty to
//! non-empty, so each costs each player one `Transmit` and one `writev` (50 a second for
//! 20 ms audio). With merging, media queued on an idle connection is *held*: the connection
//! is put on this list with the deadline `now + window`, and its `Transmit` is emitted when
//! the deadline passes (or earlier, when the held bytes pass the size limit or when anything
//! else—a command response, a control message—makes the connection transmit anyway).
//!
//! **Lanes.** With an adaptive window (`ServerConfig::merge_writes_max`), a player whose
//! application reads late anyway (measured by `read_lag`) is held longer: a second lane holds
//! for the maximum, and a player goes there once its estimated read lag comes within one base
//! window of the maximum (the lag's grain: see `FlushSchedule::lane_for`).
//! Windows between the two would hold a bulk reader as little as its lag allows, but they
//! measured worse: a reader woken once its mark is reached reads at the first flush past it,
//! so a window that is not a divisor of its fill time adds most of a window to the frames
//! that just miss a flush (in memory, the delay at the 99th percentile went from 800 ms at
//! 400 ms to 900 ms at 303 ms, with more writes; bench-compare's bulk readers agreed). Without
//! adapting there is one lane.
//!
//! Each lane needs no heap beyond its queue: its window is the same for every connection on
//! it and the server's `now` never goes back, so deadlines are appended in order and the
//! front is always the lane's earliest. An entry is a (deadline, connection) pair pushed once
//! per hold (not per message); an entry whose connection transmitted meanwhile is stale and
//! skipped when it comes due (the session remembers the deadline of its live entry).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::ConnId;

/// The most lanes a schedule has: the base window and the maximum.
pub(crate) const MAX_LANES: usize = 2;

/// One window's held connections, in deadline order.
#[derive(Debug)]
struct Lane {
    window: Duration,
    /// Entries due within this much of the one that woke the timer go with it, so that players
    /// held a few milliseconds apart share one wake-up (they leave early, never late).
    coalesce: Duration,
    entries: VecDeque<(Instant, ConnId)>,
}

impl Lane {
    fn new(window: Duration) -> Self {
        Self {
            window,
            coalesce: window / 16,
            entries: VecDeque::new(),
        }
    }
}

/// Held connections, per lane in deadline order.
#[derive(Debug)]
pub(crate) struct FlushSchedule {
    /// Shortest window first.
    lanes: Vec<Lane>,
    /// Held bytes past which a connection transmits at once (bulk video must not wait for the
    /// window in memory).
    max_bytes: usize,
}

impl FlushSchedule {
    /// Holds for at most `window`, or until `max_bytes` are held: one lane.
    pub(crate) fn new(window: Duration, max_bytes: usize) -> Self {
        Self::adaptive(window, None, max_bytes)
    }

    /// Holds for `window`, or for `max_window` on the second lane, or until `max_bytes` are
    /// held. A `max_window` of at most `window` makes one lane.
    pub(crate) fn adaptive(
        window: Duration,
        max_window: Option<Duration>,
        max_bytes: usize,
    ) -> Self {
        let mut lanes = vec![Lane::new(window)];
        if let Some(max) = max_window.filter(|max| *max > window && !window.is_zero()) {
            lanes.push(Lane::new(max));
        }
        Self { lanes, max_bytes }
    }

    /// Whether players may be held on longer lanes (and their read lag is worth measuring).
    pub(crate) fn is_adaptive(&self) -> bool {
        self.lanes.len() > 1
    }

    /// The longest lane, when players may be held on it (an adaptive schedule).
    pub(crate) fn longest_lane(&self) -> Option<u8> {
        self.is_adaptive().then(|| (self.lanes.len() - 1) as u8)
    }

    /// The lane of a player whose application reads `lag` after a write: the longest window
    /// not past it by more than one base window (lane 0, the base window, when unknown or
    /// shorter). The slack is the lag's own grain: a probe's answer is measured through the
    /// base-window writes that follow it, so a reader that fills its buffer in about the
    /// longest window measures up to a base window less. Without it, bulk readers filling in
    /// about 400 ms measured 331-385 ms under a 100 ms base window and half of them were
    /// written every 100 ms (bench-compare/results/2026-12-07-bulk-merged-regression).
    pub(crate) fn lane_for(&self, lag: Option<Duration>) -> u8 {
        let Some(lag) = lag else { return 0 };
        let grain = self.lanes[0].window;
        let longer = self
            .lanes
            .iter()
            .skip(1)
            .take_while(|lane| lane.window.saturating_sub(grain) <= lag);
        longer.count() as u8
    }

    /// The window of `lane` (the longest, for a lane past the last).
    pub(crate) fn window(&self, lane: u8) -> Duration {
        self.lane(lane).window
    }

    fn lane(&self, lane: u8) -> &Lane {
        let last = self.lanes.len() - 1;
        &self.lanes[usize::from(lane).min(last)]
    }

    /// The deadline of a hold that starts at `now` on `lane`.
    pub(crate) fn deadline(&self, now: Instant, lane: u8) -> Instant {
        now + self.lane(lane).window
    }

    /// The deadlines of a hold that starts at `now`, by lane (one computation for every player
    /// a message is held on).
    pub(crate) fn deadlines(&self, now: Instant) -> [Instant; MAX_LANES] {
        let mut all = [now; MAX_LANES];
        for (deadline, lane) in all.iter_mut().zip(&self.lanes) {
            *deadline = now + lane.window;
        }
        all
    }

    /// Held bytes past which a connection transmits at once.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Puts `conn` on `lane` with `deadline` (from [`Self::deadline`], so never earlier than
    /// the entries already on that lane).
    pub(crate) fn hold(&mut self, lane: u8, deadline: Instant, conn: ConnId) {
        let last = self.lanes.len() - 1;
        let entries = &mut self.lanes[usize::from(lane).min(last)].entries;
        if let Some((latest, _)) = entries.back() {
            debug_assert!(*latest <= deadline, "deadlines are appended in order");
        }
        entries.push_back((deadline, conn));
    }

    /// When the earliest entry is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let fronts = self.lanes.iter().filter_map(|lane| lane.entries.front());
        fronts.map(|(deadline, _)| *deadline).min()
    }

    /// Takes the next entry that is due at `now` (or close enough to share this wake-up).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, ConnId)> {
        self.lanes.iter_mut().find_map(|lane| {
            let (deadline, _) = *lane.entries.front()?;
            if deadline > now + lane.coalesce {
                return None;
            }
            lane.entries.pop_front()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn entries_come_due_in_order_and_near_ones_share_a_wake_up() {
        let t0 = Instant::now();
        let mut list = FlushSchedule::new(Duration::from_millis(160), 1000);
        assert!(!list.is_adaptive());
        assert_eq!(list.next_deadline(), None);
        let d1 = list.deadline(t0, 0);
        list.hold(0, d1, ConnId(1));
        let d2 = list.deadline(t0 + Duration::from_millis(5), 0);
        list.hold(0, d2, ConnId(2));
        let d3 = list.deadline(t0 + Duration::from_millis(50), 0);
        list.hold(0, d3, ConnId(3));
        assert_eq!(list.next_deadline(), Some(t0 + Duration::from_millis(160)));
        assert_eq!(list.pop_due(t0 + Duration::from_millis(100)), None);
        let now = t0 + Duration::from_millis(160);
        // 165 ms is within 160/16 = 10 ms of the wake-up; 210 ms is not.
        assert_eq!(list.pop_due(now), Some((d1, ConnId(1))));
        assert_eq!(list.pop_due(now), Some((d2, ConnId(2))));
        assert_eq!(list.pop_due(now), None);
        assert_eq!(list.next_deadline(), Some(d3));
    }

    #[test]
    fn an_adaptive_schedule_has_the_base_window_and_the_maximum() {
        let windows = |list: &FlushSchedule| -> Vec<u128> {
            (0..list.lanes.len() as u8)
                .map(|lane| list.window(lane).as_millis())
                .collect()
        };
        let list = FlushSchedule::adaptive(40 * MS, Some(400 * MS), 1000);
        assert!(list.is_adaptive());
        assert_eq!(windows(&list), [40, 400]);
        // No maximum, or one not above the base: one lane.
        for max in [None, Some(40 * MS), Some(10 * MS)] {
            let list = FlushSchedule::adaptive(40 * MS, max, 1000);
            assert_eq!(windows(&list), [40], "{max:?}");
            assert!(!list.is_adaptive());
        }
    }

    #[test]
    fn a_player_gets_the_longest_lane_its_lag_covers_within_one_base_window() {
        let list = FlushSchedule::adaptive(40 * MS, Some(400 * MS), 1000);
        assert_eq!(list.lane_for(None), 0);
        assert_eq!(list.lane_for(Some(2 * MS)), 0);
        assert_eq!(list.lane_for(Some(359 * MS)), 0);
        assert_eq!(list.lane_for(Some(360 * MS)), 1);
        assert_eq!(list.lane_for(Some(9000 * MS)), 1);
        // Under a 100 ms base window a reader measured 331-385 ms late fills in about 400
        // ms: the longest lane from 300 ms on.
        let list = FlushSchedule::adaptive(100 * MS, Some(400 * MS), 1000);
        assert_eq!(list.lane_for(Some(299 * MS)), 0);
        assert_eq!(list.lane_for(Some(331 * MS)), 1);
        assert_eq!(list.lane_for(Some(385 * MS)), 1);
    }

    #[test]
    fn lanes_come_due_by_their_own_windows() {
        let t0 = Instant::now();
        let mut list = FlushSchedule::adaptive(40 * MS, Some(400 * MS), 1000);
        let at = list.deadlines(t0);
        list.hold(1, at[1], ConnId(9));
        list.hold(0, at[0], ConnId(1));
        let later = list.deadline(t0 + 100 * MS, 0);
        list.hold(0, later, ConnId(2));
        assert_eq!(list.next_deadline(), Some(t0 + 40 * MS));
        assert_eq!(list.pop_due(t0 + 40 * MS), Some((at[0], ConnId(1))));
        assert_eq!(list.pop_due(t0 + 40 * MS), None);
        assert_eq!(list.next_deadline(), Some(t0 + 140 * MS));
        assert_eq!(list.pop_due(t0 + 140 * MS), Some((later, ConnId(2))));
        assert_eq!(list.next_deadline(), Some(t0 + 400 * MS));
        assert_eq!(
            list.pop_due(t0 + 399 * MS),
            Some((at[1], ConnId(9))),
            "within 25 ms"
        );
        assert_eq!(list.next_deadline(), None);
    }
}
