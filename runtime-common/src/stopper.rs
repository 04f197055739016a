//! [`Stopper`]: the handle that ends a driver's `run` from another thread.
//!
//! Each driver wakes its loop its own way (a mio `Waker`, a tokio `Notify`, a channel
//! message); the handle hides which, so embedding code and tests treat every driver alike.

use std::fmt;
use std::sync::Arc;

/// Stops a running driver from another thread (or a signal-handling thread).
///
/// Cloning is cheap; every clone stops the same driver. Stopping twice, or stopping a driver
/// that has already returned, does nothing.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use siprtmp_runtime_common::Stopper;
/// let flag = Arc::new(AtomicBool::new(false));
/// let seen = flag.clone();
/// let stopper = Stopper::new(move || seen.store(true, Ordering::SeqCst));
/// std::thread::spawn(move || stopper.stop()).join().unwrap();
/// assert!(flag.load(Ordering::SeqCst));
/// ```
#[derive(Clone)]
pub struct Stopper {
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Stopper {
    /// A stopper that runs `wake` to tell the driver's loop to return. `wake` must not block
    /// and must tolerate being called after the loop has gone.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            wake: Arc::new(wake),
        }
    }

    /// Asks the driver to close every connection and return from its `run`.
    pub fn stop(&self) {
        (self.wake)();
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopper")
    }
}
