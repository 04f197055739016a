//! # siprtmp-runtime-common
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
//! - [`UdpExecutor`]: the node's UDP sockets (the gateway's SIP and RTP): binds and vectored
//!   sends on the event-loop thread (never blocking), receiving either on a background thread
//!   (datagrams queued, the driver woken as for files) or in the driver's own mio poll
//!   ([`mio_poll`]);
//! - [`UdpPoll`]: those sockets in a poll of their own whose descriptor an async runtime's
//!   reactor watches, so the tokio and async-std drivers receive without a thread;
//! - [`TcpExecutor`]: the node's own TCP connections and listeners (the gateway's SIP over
//!   TCP) on one I/O thread, commands handed over without blocking, events fed back after a
//!   wake-up as for files;
//! - [`bind_listener`], [`configure_stream`], [`shutdown_stream`]: socket options through
//!   `socket2`;
//! - [`WakeModeration`]: the poll-based drivers' poll interval (fewer, fuller wake-ups under
//!   load);
//! - [`AcceptBackoff`]: a failed `accept` (out of descriptors) pauses accepting for a few
//!   milliseconds, with a wake-up at the end of the pause, instead of spinning or waiting for
//!   the next connection;
//! - [`NodeHost`] and [`Transport`]: the node plus its connections, its file and UDP
//!   executors and its event router, carrying out every [`siprtmp_core::node::Output`] for
//!   the event-loop drivers (the thread driver writes from writer threads and keeps its own
//!   bookkeeping, but uses the same executors and router);
//! - [`BatchIo`] and [`NodeHost::turn_batched`]: a turn whose writes and datagram sends go to
//!   the driver as one batch (the io_uring driver makes them in one system call);
//! - [`Driver`]: the interface every driver implements (bind, decider, address, stopper,
//!   counters, run), so that embedders pick a driver by value;
//! - [`Workers`], [`WorkerDriver`] and [`RelayLink`]: several nodes on several threads sharing
//!   one port (`SO_REUSEPORT`) and their live streams (the relay between workers);
//! - [`TlsFiles`], [`load_certified_key`], [`ReloadableCert`] and [`server_config`]: the
//!   RTMPS listener's certificate, checked at load, swapped on reload, and the TLS
//!   configuration the node's RTMPS connections use ([`cert_validity`] reads a certificate's
//!   validity period for the check);
//! - [`TlsRoots`], [`load_roots`] and [`client_config`]: the roots the gateway's SIP over TLS
//!   connections verify servers against (the system's PEM bundle or a CA file), and their
//!   TLS client configuration;
//! - [`process_stats`]: the process's own figures (descriptors, memory) for `/metrics`, read
//!   when an HTTP request arrives and given to the node;
//! - [`mio_poll`]: the only mio types in this API, for the mio driver's poll: the tokens that
//!   tell its connections, the node's UDP sockets and its own wake-ups apart, and the UDP
//!   executor whose sockets it watches.
//!
//! The event loops differ only in how they wait; a turn of any of them is:
//!
//! ```text
//! wait for: readable sockets, a new connection, a writable socket, the node's deadline,
//!           the file or UDP executor's wake-up, a readable UDP socket, stop
//! host.received(..) / host.accept(..) / host.writable(..) / host.peer_closed(..) /
//! host.udp_readable(..) for each
//! host.turn(now)          // file completions, queued datagrams, timer if due, outputs
//!                         // (binds and sends of UDP at once), one writev per dirty
//!                         // connection
//! for t in host.take_closed() { dispose of t }
//! on stop: host.begin_stop(now) // the node's graceful stop: goodbyes, then keep serving
//! once host.stop_done(now): host.shutdown(now) // close everything, let recordings finish
//! ```

mod accept_backoff;
#[cfg(unix)]
mod batch_io;
pub mod cert_validity;
mod config;
mod conn_wakers;
mod driver;
mod events;
mod file_io;
mod host;
pub mod mio_poll;
pub mod mmsg;
mod node_reads;
mod paced_sockets;
pub mod process_stats;
mod read_grid;
#[cfg(target_os = "linux")]
mod recv_slot;
mod relay_link;
mod socket;
mod stopper;
mod tcp_executor;
#[cfg(test)]
mod test_rerun;
mod tls;
mod tls_client;
mod udp_executor;
mod udp_poll;
mod udp_send;
#[cfg(all(test, target_os = "linux"))]
mod udp_send_faults;
mod wake_moderation;
mod workers;

pub use accept_backoff::{AcceptBackoff, FIRST_PAUSE, MAX_PAUSE};
#[cfg(unix)]
pub use batch_io::{BatchIo, ConnWrite, DatagramSend};
pub use config::DriverConfig;
pub use conn_wakers::{ConnWakers, SocketReady};
pub use driver::Driver;
pub use events::{log_event, Decider, EventRouter};
pub use file_io::{Completion, FileExecutor, SHUTDOWN_FILE_GRACE};
pub use host::{NodeHost, Transport, MAX_IOVECS};
pub use node_reads::{NodeReads, READS_PER_TURN};
pub use read_grid::{ReadGrid, EMPTY_TICKS_TO_SLEEP, PACED_LOW_WATER};
pub use relay_link::RelayLink;
pub use socket::{bind_listener, configure_stream, read_now, set_read_low_water, shutdown_stream};
pub use stopper::Stopper;
pub use tcp_executor::{TcpExecutor, TcpStats, MAX_QUEUED_SEND, MAX_READ_AHEAD};
pub use tls::{
    crypto_provider, load_certified_key, server_config, ReloadableCert, TlsFiles, TlsLoadError,
};
pub use tls_client::{client_config, load_roots, TlsRoots, SYSTEM_BUNDLES};
pub use udp_executor::{UdpExecutor, UdpSlot, UdpStats};
pub use udp_poll::UdpPoll;
pub use wake_moderation::WakeModeration;
pub use workers::{bind_shared_listeners, WorkerDriver, WorkerSeat, Workers};
