//! # siprtmp-driver-common
//!
//! What the siprtmp drivers (mio, tokio, async-std, std threads) share, so that each driver
//! crate is only its event loop:
//!
//! - [`DriverConfig`]: listen address, `SO_SNDBUF`, seed, event channel, file root;
//! - [`Stopper`]: the cross-thread handle that ends a driver's `run`;
//! - [`EventRouter`] and [`Decider`]: log each application event, answer the node's
//!   decisions (two-phase: the decider's answer goes back through `Node::decide`), and forward
//!   events to the embedding application;
//! - [`FileExecutor`]: the node's file requests (recording, video on demand) on one
//!   background thread per driver, completions fed back as `Input::FileDone` after a wake-up
//!   the driver supplies;
//! - [`bind_listener`], [`configure_stream`], [`shutdown_stream`]: socket options through
//!   `socket2`;
//! - [`NodeHost`] and [`Transport`]: the node plus its connections, its file executor and its
//!   event router, carrying out every [`siprtmp_core::node::Output`] for the event-loop
//!   drivers (the thread driver writes from writer threads and keeps its own bookkeeping, but
//!   uses the same executor and router);
//! - [`Workers`], [`WorkerDriver`] and [`RelayLink`]: several nodes on several threads sharing
//!   one port (`SO_REUSEPORT`) and their live streams (the relay between workers).
//!
//! The event loops differ only in how they wait; a turn of any of them is:
//!
//! ```text
//! wait for: readable sockets, a new connection, a writable socket, the node's deadline,
//!           the file executor's wake-up, stop
//! host.received(..) / host.accept(..) / host.writable(..) / host.peer_closed(..) for each
//! host.turn(now)          // file completions, timer if due, outputs, one writev per dirty
//!                         // connection
//! for t in host.take_closed() { dispose of t }
//! on stop: host.shutdown(now) // close everything, let recordings finish
//! ```

mod config;
mod events;
mod file_io;
mod host;
mod relay;
mod socket;
mod stopper;
mod workers;

pub use config::DriverConfig;
pub use events::{log_event, Decider, EventRouter};
pub use file_io::{Completion, FileExecutor, SHUTDOWN_FILE_GRACE};
pub use host::{NodeHost, Transport, MAX_IOVECS};
pub use relay::RelayLink;
pub use socket::{bind_listener, configure_stream, shutdown_stream};
pub use stopper::Stopper;
pub use workers::{bind_shared_listeners, WorkerDriver, WorkerSeat, Workers};

/// The answer of a driver without UDP sockets to the node's UDP commands: binds fail with a
/// clear reason (the gateway then refuses its connects), nothing else happens.
pub fn udp_unsupported(
    command: siprtmp_core::node::UdpCommand,
) -> Option<siprtmp_core::node::UdpEvent> {
    match command {
        siprtmp_core::node::UdpCommand::Bind { socket, .. } => {
            Some(siprtmp_core::node::UdpEvent::Bound {
                socket,
                result: Err("this driver has no UDP sockets".into()),
            })
        }
        _ => None,
    }
}
