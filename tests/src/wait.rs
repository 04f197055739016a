//! Waiting on a condition with a deadline, for the suites' checks of what a server or peer
//! does in its own time (sockets closed, events arrived): never a fixed sleep.

use std::time::{Duration, Instant};

/// How often [`until`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Whether `done` held within `within`, asked every 10 ms (and once more at the deadline).
pub fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}
