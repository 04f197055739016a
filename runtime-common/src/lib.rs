//! # siprtmp-driver-common
//!
//! What the siprtmp drivers (mio, tokio, async-std, std threads) share, so that each driver
//! crate is only its event loop:
//!
//! - [`DriverConfig`]: listen address, `SO_SNDBUF`, seed, event channel;
//! - [`Stopper`]: the cross-thread handle that ends a driver's `run`;
//! - [`deliver_event`]: log an application event and forward it to the embedding application;
//! - [`bind_listener`], [`configure_stream`], [`shutdown_stream`]: socket options through
//!   `socket2`;
//! - [`NodeHost`] and [`Transport`]: the node plus its connections, carrying out every
//!   [`siprtmp_core::node::Output`] for the event-loop drivers (the thread driver writes from
//!   writer threads and keeps its own bookkeeping).
//!
//! The event loops differ only in how they wait; a turn of any of them is:
//!
//! ```text
//! wait for: readable sockets, a new connection, a writable socket, the node's deadline, stop
//! host.received(..) / host.accept(..) / host.writable(..) / host.peer_closed(..) for each
//! host.turn(now)          // timer if due, outputs, one writev per dirty connection
//! for t in host.take_closed() { dispose of t }
//! ```

mod config;
mod events;
mod host;
mod socket;
mod stopper;

pub use config::DriverConfig;
pub use events::{deliver_event, log_event};
pub use host::{NodeHost, Transport, MAX_IOVECS};
pub use socket::{bind_listener, configure_stream, shutdown_stream};
pub use stopper::Stopper;
