//! The load generator: one process, one thread, one mio `Poll` driving a publisher and
//! thousands of players (or N publishers, or N gateway calls), each a sans-IO `RtmpClient`
//! over TCP.

pub(crate) mod calls;
pub(crate) mod conn;
pub(crate) mod delay;
pub(crate) mod echo_load;
pub(crate) mod echo_match;
pub(crate) mod generator;
pub(crate) mod media;
pub(crate) mod publishers;
pub(crate) mod tls;

use std::io;
use std::time::Instant;

/// A load that a measurement runs through a window: it keeps going until a given time, and
/// counts what it sends between [`WindowedLoad::open_window`] and
/// [`WindowedLoad::close_window`].
pub(crate) trait WindowedLoad {
    /// Keeps the load going until `until`.
    fn run_until(&mut self, until: Instant) -> io::Result<()>;
    /// Starts counting: what is sent from now on is the window's.
    fn open_window(&mut self);
    /// Stops counting.
    fn close_window(&mut self);

    /// The window: opened now, the load run until `until`, closed.
    fn run_window(&mut self, until: Instant) -> io::Result<()> {
        self.open_window();
        self.run_until(until)?;
        self.close_window();
        Ok(())
    }
}
