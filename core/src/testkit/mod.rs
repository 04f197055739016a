//! In-memory wiring of [`RtmpClient`](crate::rtmp::client::RtmpClient)s to a [`Node`](crate::node::Node), with no sockets and no disk: the base of
//! the benchmarks, the simulation harness and the embedding example.
//!
//! [`MemoryNet::pump`] moves bytes both ways until nothing moves: client output becomes
//! `Input::Received`, and the node's queued segments are "drained" into the client as if the
//! kernel had taken them at once. File requests run against a [`MemoryFs`], at once or, with
//! [`MemoryFs::hold`], when the test releases them (a slow disk).
//!
//! ```
//! use std::time::Instant;
//! use siprtmp_core::node::{Node, NodeConfig};
//! use siprtmp_core::rtmp::client::ClientEvent;
//! use siprtmp_core::testkit::MemoryNet;
//!
//! let now = Instant::now();
//! let mut net = MemoryNet::new(Node::new(NodeConfig::default(), now, 1));
//! let player = net.connect(now, "live");
//! net.pump(now);
//! assert!(net.events(player).contains(&ClientEvent::Connected));
//! ```

mod bridge;
mod checker;
mod fs;
mod media;
mod net;
mod sip_tls;
mod tcp;
mod udp;

pub use bridge::TcpBridge;
pub use checker::MediaChecker;
pub use fs::MemoryFs;
pub use media::synthetic_av;
pub use net::{drain_into, MemoryClient, MemoryNet};
pub use sip_tls::SipTlsClient;
pub use tcp::MemoryTcp;
pub use udp::MemoryUdp;

/// Received bytes as the drivers hand them to the node: carved from a shared 64 KiB block (a
/// driver's read buffer, a UDP reader's chunk), so that the node's zero-copy splits and clones
/// of them cost here what they cost in production. (A fresh `Vec` per delivery would make
/// each clone allocate, and the benchmarks would measure the harness.)
#[derive(Debug)]
struct ReadBlocks(crate::byte_blocks::ByteBlocks);

impl Default for ReadBlocks {
    fn default() -> Self {
        Self(crate::byte_blocks::ByteBlocks::with_block_size(64 * 1024))
    }
}
