//! [`Net`]: the node as a driver would run it, over the soak's [`Wire`]: the table of RTMP
//! connections (each an in-memory [`RtmpClient`] at the far side of the wire), the node's
//! UDP sockets, and the node's outputs carried out.
//!
//! Writes happen as in an event loop: the node's `Transmit` marks the connection, and once
//! per tick everything queued for a marked connection is written in one go (cut into
//! segments by the wire). Datagrams the node sends are handed to the caller
//! ([`Net::take_datagrams`]) to account for and route; datagrams that reach an address the
//! node has no socket on are counted and dropped.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::node::{ConnId, Event, Input, Node, Output};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
use siprtmp_core::udp::{SocketId, UdpCommand, UdpEvent};

use super::wire::{ConnRef, Lane, Packet, Wire};

/// Who drives a connection's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Gateway call slot.
    Call(u32),
    /// Player slot.
    Player(u32),
    /// Publisher of stream `k`.
    Publisher(u32),
}

/// One RTMP connection: the node's id for it and the client at the other end.
#[derive(Debug)]
pub(crate) struct Conn {
    generation: u32,
    /// The node's id.
    pub id: ConnId,
    /// The client machine.
    pub client: RtmpClient,
    /// Who drives it.
    pub owner: Owner,
    inbox: BytesMut,
    up: Lane,
    down: Lane,
    /// The client closed (sent its FIN): nothing more reaches it.
    client_closed: bool,
    /// The node closed it.
    node_closed: bool,
    wants_write: bool,
}

/// Bytes as drivers hand them over: carved from a shared block, so that the node's
/// zero-copy splits of them cost here what they cost in production.
#[derive(Debug, Default)]
struct Arena(BytesMut);

impl Arena {
    const BLOCK: usize = 64 * 1024;

    fn carve<'a>(&mut self, parts: impl Iterator<Item = &'a [u8]> + Clone) -> BytesMut {
        let len = parts.clone().map(<[u8]>::len).sum::<usize>();
        if self.0.capacity() < len {
            self.0 = BytesMut::with_capacity(len.max(Self::BLOCK));
        }
        for part in parts {
            self.0.extend_from_slice(part);
        }
        self.0.split()
    }
}

/// A datagram the node sent.
#[derive(Debug)]
pub(crate) struct NodeDatagram {
    /// The node's socket address.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The whole datagram.
    pub data: Bytes,
}

/// Counts of the node's side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetStats {
    /// Connections opened.
    pub connections: u64,
    /// Connections the node closed by itself (none expected: every client behaves).
    pub closed_by_node: u64,
    /// Datagrams that arrived where the node had no socket (after it closed one).
    pub unbound_arrivals: u64,
    /// Sockets the node bound.
    pub binds: u64,
}

/// The node, its connections and its sockets.
pub(crate) struct Net {
    /// The node under test.
    pub node: Node,
    /// The network.
    pub wire: Wire,
    /// Virtual time now, in ms since `origin`.
    pub now_ms: u64,
    origin: Instant,
    conns: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_id: HashMap<ConnId, u32>,
    bound: HashMap<SocketAddr, SocketId>,
    addresses: HashMap<SocketId, SocketAddr>,
    /// Ephemeral ports, least recently freed first (as kernels hand them out).
    free_ports: VecDeque<u16>,
    dirty: Vec<u32>,
    datagrams: Vec<NodeDatagram>,
    /// Owners of connections the node closed, not yet told.
    lost: Vec<Owner>,
    arena: Arena,
    rng: SeededRng,
    /// Why the node closed connections by itself (the first few).
    pub closings: Vec<String>,
    /// Counts.
    pub stats: NetStats,
}

impl Net {
    /// The node, over `wire`, from `origin`.
    pub(crate) fn new(node: Node, wire: Wire, origin: Instant, seed: u64) -> Self {
        Self {
            node,
            wire,
            now_ms: 0,
            origin,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            bound: HashMap::new(),
            addresses: HashMap::new(),
            free_ports: (40000..=65000).collect(),
            dirty: Vec::new(),
            datagrams: Vec::new(),
            lost: Vec::new(),
            arena: Arena::default(),
            rng: SeededRng::new(seed),
            closings: Vec::new(),
            stats: NetStats::default(),
        }
    }

    /// The virtual instant now.
    pub(crate) fn now(&self) -> Instant {
        self.origin + Duration::from_millis(self.now_ms)
    }

    /// Connections open on the client side.
    pub(crate) fn open_connections(&self) -> usize {
        self.by_id.len()
    }

    /// The most connections open at once so far (slots are reused, so the slot list is as
    /// long as the peak).
    pub(crate) fn peak_connections(&self) -> usize {
        self.conns.len()
    }

    /// Sockets the node holds.
    pub(crate) fn open_sockets(&self) -> usize {
        self.addresses.len()
    }

    /// Opens a connection to `app` for `owner`.
    pub(crate) fn connect(&mut self, app: &str, owner: Owner) -> ConnRef {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                (self.conns.len() - 1) as u32
            }
        };
        self.generations[index as usize] += 1;
        let generation = self.generations[index as usize];
        let peer = SocketAddr::from(([10, 1, (index >> 8) as u8, index as u8], 50000));
        let now = self.now();
        let id = self.node.accept(now, peer);
        let client = RtmpClient::new(&mut self.rng, app, &format!("rtmp://10.0.0.1/{app}"));
        self.conns[index as usize] = Some(Conn {
            generation,
            id,
            client,
            owner,
            inbox: BytesMut::new(),
            up: Lane::default(),
            down: Lane::default(),
            client_closed: false,
            node_closed: false,
            wants_write: false,
        });
        self.by_id.insert(id, index);
        self.stats.connections += 1;
        let conn = ConnRef { index, generation };
        self.after_node();
        self.flush_client(conn);
        conn
    }

    /// The connection `conn`, while its client has not closed it.
    pub(crate) fn conn(&mut self, conn: ConnRef) -> Option<&mut Conn> {
        self.conns[conn.index as usize]
            .as_mut()
            .filter(|c| c.generation == conn.generation && !c.client_closed)
    }

    /// Whether the node closed `conn` by itself.
    pub(crate) fn closed_by_node(&self, conn: ConnRef) -> bool {
        self.conns[conn.index as usize]
            .as_ref()
            .is_some_and(|c| c.generation == conn.generation && c.node_closed)
    }

    /// The client of `conn` (which must be open).
    pub(crate) fn client(&mut self, conn: ConnRef) -> &mut RtmpClient {
        &mut self.conn(conn).expect("open connection").client
    }

    /// Sends what the client of `conn` has queued.
    pub(crate) fn flush_client(&mut self, conn: ConnRef) {
        let now = self.now_ms;
        let Some(c) = self.conns[conn.index as usize].as_mut() else {
            return;
        };
        if c.generation != conn.generation || c.client_closed {
            return;
        }
        while let Some(bytes) = c.client.take_output() {
            self.wire
                .tcp(now, &mut c.up, bytes, move |b| Packet::ToNode(conn, b));
        }
    }

    /// The client closes `conn`: its FIN follows what it sent.
    pub(crate) fn close(&mut self, conn: ConnRef) {
        self.flush_client(conn);
        let now = self.now_ms;
        if let Some(c) = self.conns[conn.index as usize].as_mut() {
            if c.generation == conn.generation && !c.client_closed {
                c.client_closed = true;
                self.wire.fin(now, &mut c.up, conn);
            }
        }
    }

    /// A segment reached the node.
    pub(crate) fn deliver_to_node(&mut self, conn: ConnRef, data: Bytes) {
        let Some(c) = self.conns[conn.index as usize].as_ref() else {
            return;
        };
        if c.generation != conn.generation || c.node_closed {
            return;
        }
        let id = c.id;
        let data = self.arena.carve(std::iter::once(&data[..]));
        let now = self.now();
        self.node.handle(now, Input::Received { conn: id, data });
        self.after_node();
    }

    /// The client's FIN reached the node: the connection is gone.
    pub(crate) fn fin(&mut self, conn: ConnRef) {
        let Some(c) = self.conns[conn.index as usize].take_if(|c| c.generation == conn.generation)
        else {
            return;
        };
        self.by_id.remove(&c.id);
        self.free.push(conn.index);
        if !c.node_closed {
            let now = self.now();
            self.node.handle(now, Input::Closed { conn: c.id });
            self.after_node();
        }
    }

    /// A segment reached a client: it is fed to the client machine, whose events are
    /// appended to `events`. Returns the connection's owner (`None` when the client has
    /// closed it), or how the client failed.
    pub(crate) fn deliver_to_client(
        &mut self,
        conn: ConnRef,
        data: &[u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<Option<Owner>, (Owner, String)> {
        let Some(c) = self.conns[conn.index as usize]
            .as_mut()
            .filter(|c| c.generation == conn.generation && !c.client_closed)
        else {
            return Ok(None);
        };
        c.inbox.extend_from_slice(data);
        if let Err(e) = c.client.received(&mut c.inbox) {
            return Err((c.owner, format!("{:?}: client failed: {e}", c.owner)));
        }
        while let Some(event) = c.client.poll_event() {
            events.push(event);
        }
        Ok(Some(c.owner))
    }

    /// Whether the node has a socket on `addr`.
    pub(crate) fn is_bound(&self, addr: SocketAddr) -> bool {
        self.bound.contains_key(&addr)
    }

    /// A datagram from `from` reached the node's address `to`; false when nothing is bound
    /// there.
    pub(crate) fn deliver_datagram(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
    ) -> bool {
        let Some(&socket) = self.bound.get(&to) else {
            self.stats.unbound_arrivals += 1;
            return false;
        };
        let now = self.now();
        let event = UdpEvent::Datagram {
            socket,
            source: from,
            data,
        };
        self.node.handle(now, Input::Udp(event));
        self.after_node();
        true
    }

    /// Fires the node's timers if due.
    pub(crate) fn timers(&mut self) {
        let now = self.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle(now, Input::Timeout);
            self.after_node();
        }
    }

    /// Datagrams the node sent since the last call; hand the vector back with
    /// [`Net::give_back`] once emptied.
    pub(crate) fn take_datagrams(&mut self) -> Vec<NodeDatagram> {
        std::mem::take(&mut self.datagrams)
    }

    /// Returns the vector of [`Net::take_datagrams`] (keeping its capacity).
    pub(crate) fn give_back(&mut self, mut datagrams: Vec<NodeDatagram>) {
        if self.datagrams.is_empty() {
            datagrams.clear();
            self.datagrams = datagrams;
        }
    }

    /// Whether the node sent datagrams not yet taken.
    pub(crate) fn has_datagrams(&self) -> bool {
        !self.datagrams.is_empty()
    }

    /// Whether the node closed connections whose owners are not yet told.
    pub(crate) fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    /// The owners of the connections the node closed by itself since the last call.
    pub(crate) fn take_lost(&mut self) -> Vec<Owner> {
        std::mem::take(&mut self.lost)
    }

    /// Writes everything queued for the connections the node asked to write.
    pub(crate) fn write_all(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            self.write(index);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn write(&mut self, index: u32) {
        let now_ms = self.now_ms;
        let now = self.now();
        let Some(c) = self.conns[index as usize].as_mut() else {
            return;
        };
        c.wants_write = false;
        if c.node_closed {
            return;
        }
        let conn = ConnRef {
            index,
            generation: c.generation,
        };
        loop {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let n = self.node.io_slices(c.id, &mut slices);
            if n == 0 {
                break;
            }
            let data = self.arena.carve(slices[..n].iter().map(|s| &**s)).freeze();
            let bytes = data.len();
            if !c.client_closed {
                self.wire.tcp(now_ms, &mut c.down, data, move |b| {
                    Packet::ToClient(conn, b)
                });
            }
            self.node.handle(now, Input::Drained { conn: c.id, bytes });
        }
        self.after_node();
    }

    /// Carries out the node's outputs.
    pub(crate) fn after_node(&mut self) {
        let now = self.now();
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Transmit { conn } => {
                    if let Some(&index) = self.by_id.get(&conn) {
                        let c = self.conns[index as usize].as_mut().expect("listed");
                        if !c.wants_write {
                            c.wants_write = true;
                            self.dirty.push(index);
                        }
                    }
                }
                Output::Close { conn } => {
                    if let Some(&index) = self.by_id.get(&conn) {
                        // As a driver does: what is queued goes out before the close.
                        self.write(index);
                        let c = self.conns[index as usize].as_mut().expect("listed");
                        if !c.client_closed {
                            self.stats.closed_by_node += 1;
                            self.lost.push(c.owner);
                        }
                        c.node_closed = true;
                    }
                    self.node.handle(now, Input::Closed { conn });
                }
                Output::Udp(command) => self.udp(command),
                Output::Event(Event::Closing { conn, reason }) => {
                    if self.closings.len() < 20 {
                        self.closings.push(format!("{conn}: {reason}"));
                    }
                }
                Output::Event(_) | Output::Relay(_) | Output::Tcp(_) | Output::File(_) => {}
                // An output added to the node after this soak was written: modelling it is
                // part of adding it.
                _ => panic!("the soak does not model this output of the node"),
            }
        }
    }

    fn udp(&mut self, command: UdpCommand) {
        let now = self.now();
        match command {
            UdpCommand::Bind {
                socket, mut addr, ..
            } => {
                self.stats.binds += 1;
                if addr.port() == 0 {
                    let port = self.free_ports.pop_front().expect("a free ephemeral port");
                    addr.set_port(port);
                }
                let result = match self.bound.entry(addr) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        Err(format!("{addr}: address in use"))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(socket);
                        self.addresses.insert(socket, addr);
                        Ok(addr)
                    }
                };
                let event = UdpEvent::Bound { socket, result };
                self.node.handle(now, Input::Udp(event));
            }
            UdpCommand::SendTo {
                socket,
                destination,
                head,
                body,
            } => {
                if let Some(&from) = self.addresses.get(&socket) {
                    let data = self
                        .arena
                        .carve([&head[..], &body[..]].into_iter())
                        .freeze();
                    self.datagrams.push(NodeDatagram {
                        from,
                        to: destination,
                        data,
                    });
                }
            }
            UdpCommand::Unbind { socket } => {
                if let Some(addr) = self.addresses.remove(&socket) {
                    self.bound.remove(&addr);
                    if addr.port() >= 40000 {
                        self.free_ports.push_back(addr.port());
                    }
                }
            }
        }
    }

    /// Whether `ip` is the node's.
    pub(crate) fn is_node(ip: IpAddr) -> bool {
        ip == IpAddr::from([10, 0, 0, 1])
    }
}
