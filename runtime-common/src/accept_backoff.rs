//! [`AcceptBackoff`]: what an accept loop does when `accept` fails, shared by every driver
//! (and the node's own TCP listeners), so that running out of descriptors (`EMFILE`,
//! `ENFILE`) or kernel memory neither spins a core nor stalls accepting.
//!
//! Why a pause at all: while the process has no descriptor left, the connection at the head
//! of the backlog stays there and the listener stays readable, so a loop that retries at once
//! spins (a level-triggered loop) or, with epoll's edge-triggered registration, hears nothing
//! more until another connection arrives and never comes back on its own (the mio driver did
//! that: its backlog waited for the next client). So a failed accept pauses accepting, and the
//! driver wakes itself at [`AcceptBackoff::retry_at`] to try again, whether or not anything
//! else happens; the pause doubles from [`FIRST_PAUSE`] to [`MAX_PAUSE`] while the failures
//! go on, so an exhausted server retries ten times a second, and once descriptors are free it
//! is accepting again within [`MAX_PAUSE`]. Everything else (the connections already open,
//! timers, files) goes on meanwhile: a pause is a deadline in the loop, not a sleep.
//!
//! Errors that concern only the connection being accepted (it was reset or aborted while it
//! waited in the backlog) do not pause: the next one is accepted at once.
//!
//! An episode of failures is logged once when it starts (a warning naming the error), again
//! every [`REMINDER`] while it lasts, and once when accepting works again, so an exhausted
//! server does not flood its log with a line per attempt.

use std::io;
use std::time::{Duration, Instant};

/// The first pause after a failed accept.
pub const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause: how soon accepting resumes once the shortage is over.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);
/// How often a shortage that goes on is logged again.
const REMINDER: Duration = Duration::from_secs(30);

/// The state of one accept loop; see the module documentation.
///
/// ```
/// use std::io;
/// use std::time::Instant;
/// use siprtmp_runtime_common::AcceptBackoff;
///
/// let mut backoff = AcceptBackoff::default();
/// let now = Instant::now();
/// assert!(backoff.ready(now));
/// // Out of descriptors: stop accepting until the retry time, and wake up then.
/// let emfile = io::Error::from_raw_os_error(24);
/// assert!(backoff.failed(now, &emfile));
/// let retry = backoff.retry_at().unwrap();
/// assert!(!backoff.ready(now));
/// assert!(backoff.ready(retry));
/// backoff.accepted(retry);
/// assert_eq!(backoff.retry_at(), None);
/// ```
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Until when accepting is paused.
    retry_at: Option<Instant>,
    /// The pause after the next failure; zero outside an episode.
    pause: Duration,
    /// Failures in this episode.
    failures: u64,
    /// When this episode began, and when it was last logged.
    since: Option<Instant>,
    logged: Option<Instant>,
}

impl AcceptBackoff {
    /// Whether the loop may accept at `now`: false while paused. A pause that is over ends
    /// here (so a driver that asks at every turn tries again exactly once per pause).
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if now < at => false,
            Some(_) => {
                self.retry_at = None;
                true
            }
            None => true,
        }
    }

    /// Whether a pause ended by `now` (and ends it): the driver accepts now, since the
    /// backlog raises no new readiness event of its own.
    pub fn pause_over(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if now >= at => {
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }

    /// When a paused loop must wake up to accept again (include it in the loop's deadline).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// `accept` failed with `error` at `now`. Returns true if accepting is paused (until
    /// [`Self::retry_at`]), false if the error was the connection's own and the loop goes on.
    pub fn failed(&mut self, now: Instant, error: &io::Error) -> bool {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            tracing::debug!("accept: {error} (a connection gone while queued)");
            return false;
        }
        self.failures += 1;
        let since = *self.since.get_or_insert(now);
        self.pause = if self.pause.is_zero() {
            FIRST_PAUSE
        } else {
            (self.pause * 2).min(MAX_PAUSE)
        };
        self.retry_at = Some(now + self.pause);
        match self.logged {
            None => tracing::warn!(
                "accept: {error}; accepting paused, retried every {} ms at most until it works",
                MAX_PAUSE.as_millis()
            ),
            Some(at) if now.saturating_duration_since(at) >= REMINDER => tracing::warn!(
                "accept: {error}; still failing after {} attempts over {} s",
                self.failures,
                now.saturating_duration_since(since).as_secs()
            ),
            Some(_) => {
                tracing::debug!("accept: {error}");
                return true;
            }
        }
        self.logged = Some(now);
        true
    }

    /// A connection was accepted at `now`: an episode of failures, if any, is over.
    #[inline]
    pub fn accepted(&mut self, now: Instant) {
        if self.failures > 0 {
            self.recovered(now);
        }
    }

    #[cold]
    fn recovered(&mut self, now: Instant) {
        let lasted = self
            .since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        tracing::info!(
            "accepting again after {} failed attempts over {} ms",
            self.failures,
            lasted.as_millis()
        );
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn pauses_double_up_to_the_limit_and_a_success_resets_them() {
        let mut backoff = AcceptBackoff::default();
        let mut now = Instant::now();
        let mut pauses = Vec::new();
        for _ in 0..8 {
            assert!(backoff.ready(now));
            assert!(backoff.failed(now, &emfile()));
            let at = backoff.retry_at().unwrap();
            pauses.push(at - now);
            assert!(!backoff.ready(now));
            assert!(!backoff.pause_over(now));
            now = at;
        }
        let ms: Vec<u128> = pauses.iter().map(|p| p.as_millis()).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 100, 100, 100]);
        assert!(
            backoff.pause_over(now),
            "the last pause is over at its retry time"
        );
        assert!(!backoff.pause_over(now), "and ends once");
        backoff.accepted(now);
        assert!(backoff.failed(now, &emfile()));
        assert_eq!(backoff.retry_at(), Some(now + FIRST_PAUSE));
    }

    #[test]
    fn a_connection_gone_while_queued_does_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let now = Instant::now();
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert!(!backoff.failed(now, &kind.into()));
        }
        assert_eq!(backoff.retry_at(), None);
        assert!(backoff.ready(now));
    }

    #[test]
    fn every_other_error_pauses_so_an_unknown_one_cannot_spin_the_loop() {
        for error in [
            emfile(),
            io::Error::from_raw_os_error(23),  // ENFILE
            io::Error::from_raw_os_error(105), // ENOBUFS
            io::Error::from_raw_os_error(12),  // ENOMEM
            io::Error::from_raw_os_error(22),  // EINVAL
        ] {
            let mut backoff = AcceptBackoff::default();
            assert!(backoff.failed(Instant::now(), &error), "{error}");
        }
    }
}
