//! [`Driver`]: what every driver offers its embedder (bind, decider, address, stopper,
//! counters, run), so that the binary and the tests handle the four alike and pick one by
//! value (`siprtmp-runtime-drivers`' `Runtime`) rather than by type.
//!
//! Only the start goes through the trait: once [`Driver::run`] is called, the driver's own
//! event loop runs with no dynamic dispatch in it, whether the driver was reached through a
//! `Box<dyn Driver>` or a type parameter.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use siprtmp_core::node::NodeConfig;

use crate::{Decider, DriverConfig, Stopper, TcpStats, UdpStats};

/// A driver: a node behind a listening socket, run on one event loop until stopped.
///
/// The trait is dyn-compatible (`bind` aside), so one value can hold any driver:
///
/// ```
/// use siprtmp_runtime_common::Driver;
/// fn serve(driver: Box<dyn Driver>) -> std::io::Result<()> {
///     println!("listening on {}", driver.local_addr()?);
///     let stop = driver.stopper();
///     std::thread::spawn(move || stop.stop());
///     driver.run()
/// }
/// ```
pub trait Driver {
    /// Binds the listening socket (`config.listen`, and `config.tls_listen` for RTMPS) and
    /// builds the node. A driver refuses
    /// settings it cannot honour (an `Unsupported` error) rather than ignore them, such as a
    /// [`DriverConfig::poll_interval`] without wake-up moderation.
    fn bind(config: DriverConfig, node: NodeConfig) -> io::Result<Self>
    where
        Self: Sized;

    /// Installs the decider that answers [`siprtmp_core::node::Event::Decide`] (use with
    /// [`NodeConfig::decisions`] on); without one, every decision is an accept.
    fn set_decider(&mut self, decider: Decider);

    /// [`Self::set_decider`], builder style.
    fn with_decider(mut self, decider: Decider) -> Self
    where
        Self: Sized,
    {
        self.set_decider(decider);
        self
    }

    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The address the RTMPS listener is bound to, when [`DriverConfig::tls_listen`] asked
    /// for one.
    fn tls_local_addr(&self) -> Option<SocketAddr>;

    /// A handle that stops [`Self::run`], from any thread.
    fn stopper(&self) -> Stopper;

    /// The UDP executor's counters (the node's UDP sockets: the gateway's SIP and RTP).
    fn udp_stats(&self) -> Arc<UdpStats>;

    /// The TCP executor's counters (the node's own connections and listeners: the gateway's
    /// SIP over TCP).
    fn tcp_stats(&self) -> Arc<TcpStats>;

    /// Runs on the calling thread until stopped; on stop, every connection is closed and
    /// recordings are finished before it returns. Boxed so that a `Box<dyn Driver>` can run:
    /// a driver held by value runs with `Box::new(driver).run()`.
    fn run(self: Box<Self>) -> io::Result<()>;
}
