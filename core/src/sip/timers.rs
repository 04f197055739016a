//! The transaction timers of RFC 3261 17 (table 4) and RFC 6026: their configuration
//! ([`TimerConfig`]), their names ([`TimerKind`]), and the deadline heap the transaction layer
//! keeps them in.
//!
//! The heap is never searched or edited: re-arming a timer pushes a new entry and the
//! transaction remembers the deadline it currently wants. An entry whose deadline is no
//! longer the one its transaction remembers (or whose transaction is gone) is stale and
//! ignored when it pops. Every operation is O(log n); a tick never scans all transactions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::transaction::TransactionId;

/// Timer values. `T1` is the round-trip estimate, `T2` the cap on non-INVITE request and
/// INVITE response retransmission intervals, `T4` how long the network may hold a message.
///
/// ```
/// use std::time::Duration;
/// use siprtmp_core::sip::TimerConfig;
/// let t = TimerConfig::default();
/// assert_eq!((t.t1, t.t2, t.t4), (Duration::from_millis(500), Duration::from_secs(4), Duration::from_secs(5)));
/// assert_eq!(t.timeout(), Duration::from_secs(32)); // 64*T1: Timers B, F, H, J, L, M
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network, 5 s.
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the TU before it sends 100 Trying
    /// itself (RFC 3261 17.2.1: "200 ms").
    pub trying_delay: Duration,
    /// Timer D on unreliable transports: at least 32 s.
    pub timer_d: Duration,
    /// A bound the RFC leaves to the TU: how long an INVITE client transaction may stay in
    /// Proceeding without a final response before it reports a timeout and ends (in the
    /// spirit of a proxy's Timer C; 3 minutes by default). It keeps every transaction finite
    /// whatever the peer does; a UA that wants longer ringing can raise it.
    pub max_proceeding: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
            timer_d: Duration::from_secs(32),
            max_proceeding: Duration::from_secs(180),
        }
    }
}

impl TimerConfig {
    /// 64*T1, the transaction timeout (Timers B, F, H, J, L, M).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// The timers of RFC 3261 table 4 and RFC 6026, plus two of our own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// INVITE request retransmit (UDP).
    A,
    /// INVITE transaction timeout.
    B,
    /// Wait time for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit (UDP).
    E,
    /// Non-INVITE transaction timeout.
    F,
    /// INVITE final (non-2xx) response retransmit.
    G,
    /// Wait time for ACK receipt.
    H,
    /// Wait time for ACK retransmits (INVITE server, Confirmed).
    I,
    /// Wait time for non-INVITE request retransmits (server, Completed).
    J,
    /// Wait time for response retransmits (non-INVITE client, Completed).
    K,
    /// RFC 6026: wait time for accepted INVITE request retransmits (server, Accepted).
    L,
    /// RFC 6026: wait time for retransmission of 2xx to INVITE (client, Accepted).
    M,
    /// Send 100 Trying if the TU has not answered an INVITE yet.
    Trying,
    /// Retransmit a 2xx to INVITE until the ACK (RFC 3261 13.3.1.4).
    TwoXx,
    /// Bound on an INVITE client transaction in Proceeding ([`TimerConfig::max_proceeding`]).
    Proceeding,
}

impl TimerKind {
    /// Number of kinds, for per-transaction slot arrays.
    pub(crate) const COUNT: usize = 15;
}

/// The deadlines a transaction currently wants, one slot per [`TimerKind`]. A popped heap
/// entry only fires if it matches its slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Armed {
    slots: [Option<Instant>; TimerKind::COUNT],
}

impl Armed {
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.slots[kind as usize] = Some(at);
    }

    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.slots[kind as usize] = None;
    }

    /// True if `kind` is armed for exactly `at`.
    pub(crate) fn is(&self, kind: TimerKind, at: Instant) -> bool {
        self.slots[kind as usize] == Some(at)
    }

    /// True (and the slot is cleared) if `kind` is armed for exactly `at`.
    pub(crate) fn take(&mut self, kind: TimerKind, at: Instant) -> bool {
        let slot = &mut self.slots[kind as usize];
        if *slot == Some(at) {
            *slot = None;
            true
        } else {
            false
        }
    }
}

/// One heap entry. `seq` breaks ties in arming order, so runs are deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    seq: u64,
    id: TransactionId,
    kind: TimerKind,
}

/// A min-heap of (deadline, transaction, timer) entries.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl TimerHeap {
    /// Schedules `kind` for transaction `id` at `at`.
    pub(crate) fn push(&mut self, at: Instant, id: TransactionId, kind: TimerKind) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            id,
            kind,
        }));
    }

    /// The earliest entry, possibly a stale one.
    pub(crate) fn peek_entry(&self) -> Option<(Instant, TransactionId, TimerKind)> {
        self.heap.peek().map(|Reverse(e)| (e.at, e.id, e.kind))
    }

    /// Drops the earliest entry.
    pub(crate) fn pop(&mut self) {
        self.heap.pop();
    }

    /// Pops the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TransactionId, TimerKind)> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        Some((e.at, e.id, e.kind))
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
