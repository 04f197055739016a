//! In-memory wiring of [`RtmpClient`]s to a [`Node`], with no sockets: the base of the
//! benchmarks, the simulation harness and the embedding example.
//!
//! [`MemoryNet::pump`] moves bytes both ways until nothing moves: client output becomes
//! `Input::Received`, and the node's queued segments are "drained" into the client as if the
//! kernel had taken them at once.
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

use std::io::IoSlice;
use std::time::Instant;

use bytes::BytesMut;

use crate::node::{ConnId, Input, Node, Output};
use crate::rng::SeededRng;
use crate::rtmp::client::{ClientEvent, RtmpClient};

/// One in-memory client connection.
#[derive(Debug)]
pub struct MemoryClient {
    /// The node's id for this connection.
    pub conn: ConnId,
    /// The client machine.
    pub client: RtmpClient,
    /// Events the client reported, in order.
    pub events: Vec<ClientEvent>,
    /// Set once the node closed the connection.
    pub closed: bool,
    /// A muted client neither sends nor reads: a peer that went silent (or a frozen reader).
    pub muted: bool,
    inbox: BytesMut,
}

/// A node and the clients connected to it in memory.
#[derive(Debug)]
pub struct MemoryNet {
    /// The node under test.
    pub node: Node,
    /// The clients, indexed by the handle [`MemoryNet::connect`] returned.
    pub clients: Vec<MemoryClient>,
    rng: SeededRng,
    /// Keep client events (disable for benchmarks that only count bytes).
    pub record_events: bool,
}

impl MemoryNet {
    /// Wraps `node`.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            clients: Vec::new(),
            rng: SeededRng::new(99),
            record_events: true,
        }
    }

    /// Connects a new client to `app`; returns its index.
    pub fn connect(&mut self, now: Instant, app: &str) -> usize {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + self.clients.len() as u16));
        let conn = self.node.accept(now, peer);
        let client = RtmpClient::new(&mut self.rng, app, &format!("rtmp://127.0.0.1/{app}"));
        self.clients.push(MemoryClient {
            conn,
            client,
            events: Vec::new(),
            closed: false,
            muted: false,
            inbox: BytesMut::new(),
        });
        self.clients.len() - 1
    }

    /// The events client `index` has seen.
    pub fn events(&self, index: usize) -> &[ClientEvent] {
        &self.clients[index].events
    }

    /// Moves bytes until quiet.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for c in self.clients.iter_mut().filter(|c| !c.muted) {
                while let Some(bytes) = c.client.take_output() {
                    if c.closed {
                        continue;
                    }
                    moved = true;
                    let data = BytesMut::from(&bytes[..]);
                    self.node
                        .handle(now, Input::Received { conn: c.conn, data });
                }
            }
            while let Some(out) = self.node.poll_output() {
                if let Output::Close { conn } = out {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                        c.closed = true;
                    }
                    self.node.handle(now, Input::Closed { conn });
                }
            }
            for c in &mut self.clients {
                if c.closed || c.muted {
                    continue;
                }
                let drained = drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                if drained == 0 {
                    continue;
                }
                moved = true;
                if c.client.received(&mut c.inbox).is_err() {
                    c.closed = true;
                    continue;
                }
                while let Some(event) = c.client.poll_event() {
                    if self.record_events {
                        c.events.push(event);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// Copies everything queued for `conn` into `into` and reports it drained; returns the count.
pub fn drain_into(node: &mut Node, now: Instant, conn: ConnId, into: &mut BytesMut) -> usize {
    let mut total = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = node.io_slices(conn, &mut slices);
        if n == 0 {
            return total;
        }
        let mut bytes = 0;
        for s in &slices[..n] {
            into.extend_from_slice(s);
            bytes += s.len();
        }
        node.handle(now, Input::Drained { conn, bytes });
        total += bytes;
    }
}
