//! [`DropNotice`]: how often dropped media is told to the operator.
//!
//! A stranger can send a gateway as many packets as its link carries; each one dropped must
//! not be a log line. A notice says how many were dropped since the last one, at most once per
//! [`DropNotice::INTERVAL`].

use std::time::{Duration, Instant};

/// When the next notice of dropped datagrams may go out, and how many the last one covered.
#[derive(Debug, Clone, Copy, Default)]
pub struct DropNotice {
    next: Option<Instant>,
    logged: u64,
}

impl DropNotice {
    /// The least time between two notices.
    pub const INTERVAL: Duration = Duration::from_secs(10);

    /// With `total` datagrams dropped so far: how many to tell of now (those since the last
    /// notice), or `None` while the last notice is too recent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use siprtmp_core::gateway::drop_notice::DropNotice;
    /// let now = Instant::now();
    /// let mut notice = DropNotice::default();
    /// assert_eq!(notice.due(now, 1), Some(1));
    /// assert_eq!(notice.due(now + Duration::from_secs(1), 500), None);
    /// assert_eq!(notice.due(now + DropNotice::INTERVAL, 900), Some(899));
    /// ```
    pub fn due(&mut self, now: Instant, total: u64) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            return None;
        }
        let since = total - self.logged.min(total);
        self.next = Some(now + Self::INTERVAL);
        self.logged = total;
        Some(since)
    }
}
