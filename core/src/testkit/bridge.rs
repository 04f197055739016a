//! [`TcpBridge`]: the node of one [`MemoryNet`] connecting out over its own TCP (a relay's
//! upstream sessions) to the RTMP listener of another node, in memory: an edge and its origin,
//! or a server and the server it pushes to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Event, Input};
use crate::tcp::StreamId;

use super::net::{drain_into, MemoryNet};

/// Carries the streams a node in one [`MemoryNet`] (the *edge*) opens to [`TcpBridge::addr`]
/// to the RTMP server of another (the *upstream*): each stream becomes a connection the
/// upstream's node accepts, bytes move both ways in order, what the upstream takes is
/// reported to the edge as written (`TcpEvent::Sent`), and a close on either side closes the
/// other. The edge's TCP must listen on the address ([`super::MemoryTcp::listen`]) for its
/// connects to succeed; [`TcpBridge::stalled`] stops carrying the edge's bytes (an upstream
/// that does not read), and [`TcpBridge::cut`] breaks every connection (an upstream that
/// crashed).
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::node::{Node, NodeConfig};
/// use siprtmp_core::testkit::{MemoryNet, TcpBridge};
/// let now = Instant::now();
/// let mut edge = MemoryNet::new(Node::new(NodeConfig::default(), now, 1));
/// let mut origin = MemoryNet::new(Node::new(NodeConfig::default(), now, 2));
/// let mut bridge = TcpBridge::new("10.0.0.9:1935".parse().unwrap());
/// edge.tcp.listen(bridge.addr);
/// assert!(!bridge.exchange(now, &mut edge, &mut origin)); // nothing connects yet
/// ```
#[derive(Debug)]
pub struct TcpBridge {
    /// Where the upstream listens.
    pub addr: SocketAddr,
    /// While set, the edge's bytes wait (in order) instead of reaching the upstream.
    pub stalled: bool,
    /// The upstream's connection for each of the edge's streams.
    links: BTreeMap<StreamId, ConnId>,
    /// Bytes held while stalled.
    held: Vec<(StreamId, Bytes)>,
    /// How many of the upstream's events were looked at for closes.
    events_seen: usize,
    /// Connections made through the bridge since it was made.
    pub connections: usize,
}

impl TcpBridge {
    /// A bridge to an upstream listening at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stalled: false,
            links: BTreeMap::new(),
            held: Vec::new(),
            events_seen: 0,
            connections: 0,
        }
    }

    /// Connections open through the bridge now.
    pub fn open(&self) -> usize {
        self.links.len()
    }

    /// Moves what is ready both ways, once; whether anything moved. Call it between the two
    /// nets' pumps until neither moves anything.
    pub fn exchange(
        &mut self,
        now: Instant,
        edge: &mut MemoryNet,
        upstream: &mut MemoryNet,
    ) -> bool {
        let mut moved = false;
        // New streams to the upstream's address become connections it accepts.
        for stream in edge.tcp.open_streams() {
            let Some((local, remote)) = edge.tcp.addresses(stream) else {
                continue;
            };
            if remote == self.addr && !self.links.contains_key(&stream) {
                let conn = upstream.node.accept(now, local);
                self.links.insert(stream, conn);
                self.connections += 1;
                moved = true;
            }
        }
        // The edge's bytes, in order, to the upstream (or held).
        let mut others = std::collections::VecDeque::new();
        while let Some((stream, data)) = edge.tcp.outbox.pop_front() {
            if self.links.contains_key(&stream) {
                self.held.push((stream, data));
            } else {
                others.push_back((stream, data));
            }
        }
        edge.tcp.outbox = others;
        if !self.stalled {
            for (stream, data) in std::mem::take(&mut self.held) {
                let Some(&conn) = self.links.get(&stream) else {
                    continue;
                };
                edge.tcp.sent(stream, data.len());
                upstream.node.handle(
                    now,
                    Input::Received {
                        conn,
                        data: BytesMut::from(&data[..]),
                    },
                );
                moved = true;
            }
        }
        // Streams the edge closed.
        let open = edge.tcp.open_streams();
        let closed: Vec<StreamId> = self
            .links
            .keys()
            .filter(|s| !open.contains(s))
            .copied()
            .collect();
        for stream in closed {
            if let Some(conn) = self.links.remove(&stream) {
                self.held.retain(|(s, _)| *s != stream);
                upstream.node.handle(now, Input::Closed { conn });
                moved = true;
            }
        }
        // The upstream's bytes to the edge.
        for (&stream, &conn) in &self.links {
            let mut buf = BytesMut::new();
            if drain_into(&mut upstream.node, now, conn, &mut buf) > 0 {
                edge.tcp.send(stream, &buf);
                moved = true;
            }
        }
        // Connections the upstream ended.
        for event in &upstream.node_events[self.events_seen..] {
            if let Event::Disconnected { conn } = event {
                let stream = self.links.iter().find(|(_, c)| *c == conn).map(|(s, _)| *s);
                if let Some(stream) = stream {
                    self.links.remove(&stream);
                    edge.tcp.close(stream, None);
                    moved = true;
                }
            }
        }
        self.events_seen = upstream.node_events.len();
        moved
    }

    /// Breaks every connection through the bridge, as a crashed upstream does (the edge
    /// hears a reset; the upstream's node forgets them). A test replacing the upstream with a
    /// new one calls [`Self::restart`] too.
    pub fn cut(&mut self, now: Instant, edge: &mut MemoryNet, upstream: &mut MemoryNet) {
        for (stream, conn) in std::mem::take(&mut self.links) {
            edge.tcp.close(stream, Some("Connection reset by peer"));
            upstream.node.handle(now, Input::Closed { conn });
        }
        self.held.clear();
    }

    /// The upstream was replaced by a fresh one (whose events start from nothing).
    pub fn restart(&mut self) {
        self.links.clear();
        self.held.clear();
        self.events_seen = 0;
    }
}
