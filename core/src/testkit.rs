//! In-memory wiring of [`RtmpClient`]s to a [`Node`], with no sockets and no disk: the base of
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

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Event, Input, Output};
use crate::node::Node;
use crate::rng::SeededRng;
use crate::rtmp::client::{ClientEvent, RtmpClient};
use crate::storage::{
    is_safe_relative_path, FileError, FileErrorKind, FileId, FileOp, FileReply, FileRequest,
    OpenMode,
};

/// An in-memory file system that executes a node's file requests, with an optional capacity
/// (a disk that fills up) and an optional hold on requests (a disk that is slow).
#[derive(Debug, Default)]
pub struct MemoryFs {
    /// The files, by relative path.
    pub files: HashMap<String, Vec<u8>>,
    /// Total bytes the disk holds; a write past it stores what fits and fails with
    /// [`FileErrorKind::NoSpace`], as a real full disk does.
    pub capacity: Option<usize>,
    /// Keep requests in [`MemoryFs::held`] instead of running them at once.
    pub hold: bool,
    /// Requests waiting while [`MemoryFs::hold`] is set.
    pub held: VecDeque<FileRequest>,
    /// Every request executed so far, in order.
    pub log: Vec<FileRequest>,
    open: HashMap<FileId, (String, OpenMode)>,
}

impl MemoryFs {
    /// Bytes stored over all files.
    pub fn used(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    /// Runs one request.
    pub fn execute(&mut self, request: &FileRequest) -> Result<FileReply, FileError> {
        self.log.push(request.clone());
        let file = request.file;
        let not_open = || FileError::new(FileErrorKind::Other, "file not open");
        match &request.op {
            FileOp::Open { path, mode } => {
                if !is_safe_relative_path(path) {
                    return Err(FileError::new(FileErrorKind::Denied, "unsafe path"));
                }
                match mode {
                    OpenMode::Read if !self.files.contains_key(path) => {
                        return Err(FileError::new(FileErrorKind::NotFound, "no such file"));
                    }
                    OpenMode::Read => {}
                    OpenMode::Create => {
                        self.files.insert(path.clone(), Vec::new());
                    }
                    OpenMode::Append => {
                        self.files.entry(path.clone()).or_default();
                    }
                }
                self.open.insert(file, (path.clone(), *mode));
                let size = self.files[path].len() as u64;
                Ok(FileReply::Opened { size })
            }
            FileOp::Read { offset, len } => {
                let (path, _) = self.open.get(&file).ok_or_else(not_open)?;
                let data = &self.files[path];
                let start = (*offset as usize).min(data.len());
                let end = start.saturating_add(*len).min(data.len());
                Ok(FileReply::Read(Bytes::copy_from_slice(&data[start..end])))
            }
            FileOp::Write { offset, data } => {
                let used = self.used();
                let (path, mode) = self.open.get(&file).ok_or_else(not_open)?;
                if *mode == OpenMode::Read {
                    return Err(FileError::new(FileErrorKind::Denied, "opened read-only"));
                }
                let contents = self.files.get_mut(path).ok_or_else(not_open)?;
                let offset = *offset as usize;
                let end = offset + data.len();
                let growth = end.saturating_sub(contents.len());
                let room = self.capacity.map_or(usize::MAX, |c| c.saturating_sub(used));
                let fits = if growth > room {
                    (contents.len() + room)
                        .saturating_sub(offset)
                        .min(data.len())
                } else {
                    data.len()
                };
                if contents.len() < offset + fits {
                    contents.resize(offset + fits, 0);
                }
                contents[offset..offset + fits].copy_from_slice(&data[..fits]);
                if fits < data.len() {
                    return Err(FileError::new(
                        FileErrorKind::NoSpace,
                        "No space left on device",
                    ));
                }
                Ok(FileReply::Done)
            }
            FileOp::Truncate { len } => {
                let (path, _) = self.open.get(&file).ok_or_else(not_open)?;
                let contents = self.files.get_mut(path).ok_or_else(not_open)?;
                contents.truncate(*len as usize);
                Ok(FileReply::Done)
            }
            FileOp::Close => {
                self.open.remove(&file);
                Ok(FileReply::Done)
            }
            FileOp::Remove => {
                let (path, _) = self.open.remove(&file).ok_or_else(not_open)?;
                self.files.remove(&path);
                Ok(FileReply::Done)
            }
        }
    }
}

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
    /// Every byte the node sent this client, when [`MemoryNet::keep_raw`] is set.
    pub raw: Vec<u8>,
    /// Writes to this client that moved bytes (each a `writev` for a real driver).
    pub writes: usize,
    /// The node asked for a write ([`Output::Transmit`]) not yet carried out.
    wants_write: bool,
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
    /// The disk the node's file requests run against.
    pub fs: MemoryFs,
    /// Events the node emitted, in order (when `record_events` is set).
    pub node_events: Vec<Event>,
    /// Keep a copy of the bytes each client receives (in [`MemoryClient::raw`]).
    pub keep_raw: bool,
    /// The UDP network the node's sockets live on.
    pub udp: MemoryUdp,
    /// The TCP network of the node's own connections and listeners.
    pub tcp: MemoryTcp,
    /// What the node asked of the relay between workers (a node made a worker with
    /// [`Node::with_relay`]), in order, for the test to carry out.
    pub relay_out: Vec<crate::relay::RelayOut>,
    /// Write to a client only when the node asked ([`Output::Transmit`]), as a real driver
    /// does, instead of whenever something is queued (for tests of when writes happen).
    pub transmit_driven: bool,
    /// Where what the clients send is delivered from.
    arena: Arena,
}

/// An in-memory UDP network for the node's sockets (the gateway's SIP and RTP): the node's
/// binds succeed unless the address is taken, datagrams between the node's own sockets are
/// delivered, and datagrams to anyone else wait in [`MemoryUdp::outbox`] for the test, which
/// answers with [`MemoryUdp::send`].
#[derive(Debug, Default)]
pub struct MemoryUdp {
    bound: std::collections::HashMap<std::net::SocketAddr, crate::udp::SocketId>,
    addresses: std::collections::HashMap<crate::udp::SocketId, std::net::SocketAddr>,
    /// Addresses that fail to bind (as if another program held them).
    pub taken: std::collections::HashSet<std::net::SocketAddr>,
    /// Datagrams the node sent to addresses it does not own: (from, to, bytes).
    pub outbox:
        std::collections::VecDeque<(std::net::SocketAddr, std::net::SocketAddr, bytes::Bytes)>,
    inbound: std::collections::VecDeque<(std::net::SocketAddr, std::net::SocketAddr, bytes::Bytes)>,
    next_port: u16,
    arena: Arena,
}

/// Received bytes as the drivers hand them to the node: carved from a shared block (a
/// driver's read buffer, a UDP reader's chunk), so that the node's zero-copy splits and clones
/// of them cost here what they cost in production. (A fresh `Vec` per delivery would make
/// each clone allocate, and the benchmarks would measure the harness.)
#[derive(Debug, Default)]
struct Arena(BytesMut);

impl Arena {
    /// Bytes that fit in one block, as drivers allocate them.
    const BLOCK: usize = 64 * 1024;

    /// `parts`, joined, in the arena's block.
    fn carve(&mut self, parts: &[&[u8]]) -> BytesMut {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if self.0.capacity() < len {
            self.0.reserve(len.max(Self::BLOCK));
        }
        for part in parts {
            self.0.extend_from_slice(part);
        }
        self.0.split()
    }
}

impl MemoryUdp {
    /// Queues a datagram from a test peer at `from` to the node's socket at `to`.
    pub fn send(
        &mut self,
        from: std::net::SocketAddr,
        to: std::net::SocketAddr,
        data: bytes::Bytes,
    ) {
        self.inbound.push_back((from, to, data));
    }

    /// The address the node's socket is bound to.
    pub fn address(&self, socket: crate::udp::SocketId) -> Option<std::net::SocketAddr> {
        self.addresses.get(&socket).copied()
    }

    /// How many sockets the node holds open.
    pub fn open_sockets(&self) -> usize {
        self.addresses.len()
    }

    /// Carries out one command; returns what the node must be told.
    fn execute(&mut self, command: crate::udp::UdpCommand) -> Vec<crate::udp::UdpEvent> {
        use crate::udp::{UdpCommand, UdpEvent};
        match command {
            UdpCommand::Bind {
                socket, mut addr, ..
            } => {
                if addr.port() == 0 {
                    self.next_port = self.next_port.max(40000) + 1;
                    addr.set_port(self.next_port);
                }
                let result = if self.bound.contains_key(&addr) || self.taken.contains(&addr) {
                    Err(format!("{addr}: address in use"))
                } else {
                    self.bound.insert(addr, socket);
                    self.addresses.insert(socket, addr);
                    Ok(addr)
                };
                vec![UdpEvent::Bound { socket, result }]
            }
            UdpCommand::SendTo {
                socket,
                destination,
                head,
                body,
            } => {
                let Some(from) = self.addresses.get(&socket).copied() else {
                    return Vec::new();
                };
                let data = self.arena.carve(&[&head, &body]).freeze();
                match self.bound.get(&destination) {
                    Some(&to) => vec![UdpEvent::Datagram {
                        socket: to,
                        source: from,
                        data,
                    }],
                    None => {
                        self.outbox.push_back((from, destination, data));
                        Vec::new()
                    }
                }
            }
            UdpCommand::Unbind { socket } => {
                if let Some(addr) = self.addresses.remove(&socket) {
                    self.bound.remove(&addr);
                }
                Vec::new()
            }
        }
    }

    /// Datagrams from test peers to bound sockets, as node inputs (others are dropped).
    fn take_inbound(&mut self) -> Vec<crate::udp::UdpEvent> {
        let mut events = Vec::new();
        while let Some((from, to, data)) = self.inbound.pop_front() {
            if let Some(&socket) = self.bound.get(&to) {
                events.push(crate::udp::UdpEvent::Datagram {
                    socket,
                    source: from,
                    data,
                });
            }
        }
        events
    }
}

/// An in-memory TCP network for the node's own connections and listeners (the gateway's SIP
/// over TCP), with the test playing every peer: a connect succeeds to an address the test
/// [`listen`](MemoryTcp::listen)s on and is refused otherwise; what the node sends waits in
/// [`MemoryTcp::outbox`]; the test answers with [`MemoryTcp::send`], closes with
/// [`MemoryTcp::close`], and connects to the node's listeners with [`MemoryTcp::connect`].
/// Events reach the node on the next [`MemoryNet::pump`], in order.
#[derive(Debug, Default)]
pub struct MemoryTcp {
    /// Addresses where test peers accept connections.
    pub listening: std::collections::HashSet<std::net::SocketAddr>,
    /// Bytes the node sent, by stream, in order.
    pub outbox: VecDeque<(crate::tcp::StreamId, Bytes)>,
    /// Streams that are open: (node's address, peer's address).
    streams: HashMap<crate::tcp::StreamId, (std::net::SocketAddr, std::net::SocketAddr)>,
    /// The node's listeners: id by address.
    listeners: HashMap<std::net::SocketAddr, crate::tcp::ListenerId>,
    inbound: VecDeque<crate::tcp::TcpEvent>,
    next_port: u16,
    accepted: u64,
}

impl MemoryTcp {
    /// A test peer accepts connections at `addr` from now on.
    pub fn listen(&mut self, addr: std::net::SocketAddr) {
        self.listening.insert(addr);
    }

    /// A test peer sends `data` to the node on `stream` (ignored if it is closed).
    pub fn send(&mut self, stream: crate::tcp::StreamId, data: &[u8]) {
        if self.streams.contains_key(&stream) {
            self.inbound.push_back(crate::tcp::TcpEvent::Received {
                stream,
                data: BytesMut::from(data),
            });
        }
    }

    /// The test peer of `stream` closes it (with `error`, as a reset, or cleanly).
    pub fn close(&mut self, stream: crate::tcp::StreamId, error: Option<&str>) {
        if self.streams.remove(&stream).is_some() {
            self.inbound.push_back(crate::tcp::TcpEvent::Closed {
                stream,
                error: error.map(str::to_owned),
            });
        }
    }

    /// A test peer at `from` connects to the node's listener at `to`; the stream, or `None`
    /// when nothing listens there.
    pub fn connect(
        &mut self,
        from: std::net::SocketAddr,
        to: std::net::SocketAddr,
    ) -> Option<crate::tcp::StreamId> {
        let listener = *self.listeners.get(&to)?;
        self.accepted += 1;
        let stream = crate::tcp::StreamId::accepted(self.accepted);
        self.streams.insert(stream, (to, from));
        self.inbound.push_back(crate::tcp::TcpEvent::Accepted {
            listener,
            stream,
            remote: from,
        });
        Some(stream)
    }

    /// The (node's, peer's) addresses of an open stream.
    pub fn addresses(
        &self,
        stream: crate::tcp::StreamId,
    ) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.streams.get(&stream).copied()
    }

    /// Open streams, in id order.
    pub fn open_streams(&self) -> Vec<crate::tcp::StreamId> {
        let mut ids: Vec<_> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The node's listening addresses, sorted.
    pub fn node_listeners(&self) -> Vec<std::net::SocketAddr> {
        let mut addrs: Vec<_> = self.listeners.keys().copied().collect();
        addrs.sort_unstable();
        addrs
    }

    fn port(&mut self) -> u16 {
        self.next_port = self.next_port.max(50000) + 1;
        self.next_port
    }

    fn execute(&mut self, command: crate::tcp::TcpCommand) {
        use crate::tcp::{TcpCommand, TcpEvent};
        match command {
            TcpCommand::Connect {
                stream,
                remote,
                local_ip,
            } => {
                if !self.listening.contains(&remote) {
                    self.inbound.push_back(TcpEvent::ConnectFailed {
                        stream,
                        error: "Connection refused".into(),
                    });
                    return;
                }
                let ip = local_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
                let local = std::net::SocketAddr::new(ip, self.port());
                self.streams.insert(stream, (local, remote));
                self.inbound
                    .push_back(TcpEvent::Connected { stream, local });
            }
            // Queued while connecting too, as a driver does; dropped once closed.
            TcpCommand::Send { stream, data } => {
                if self.streams.contains_key(&stream) {
                    self.outbox.push_back((stream, data));
                }
            }
            TcpCommand::Close { stream } => {
                self.streams.remove(&stream);
            }
            TcpCommand::Listen { listener, mut addr } => {
                if addr.port() == 0 {
                    addr.set_port(self.port());
                }
                let result = match self.listeners.entry(addr) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        Err(format!("{addr}: address in use"))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(listener);
                        Ok(addr)
                    }
                };
                self.inbound
                    .push_back(TcpEvent::Listening { listener, result });
            }
            TcpCommand::Unlisten { listener } => self.listeners.retain(|_, l| *l != listener),
        }
    }

    fn take_inbound(&mut self) -> Vec<crate::tcp::TcpEvent> {
        self.inbound.drain(..).collect()
    }
}

impl MemoryNet {
    /// Wraps `node`.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            clients: Vec::new(),
            rng: SeededRng::new(99),
            record_events: true,
            fs: MemoryFs::default(),
            node_events: Vec::new(),
            keep_raw: false,
            udp: MemoryUdp::default(),
            tcp: MemoryTcp::default(),
            relay_out: Vec::new(),
            transmit_driven: false,
            arena: Arena::default(),
        }
    }

    /// Runs up to `count` held file requests (see [`MemoryFs::hold`]) and reports them done.
    pub fn release_files(&mut self, now: Instant, count: usize) {
        for _ in 0..count {
            let Some(request) = self.fs.held.pop_front() else {
                break;
            };
            let result = self.fs.execute(&request);
            self.node.handle(
                now,
                Input::FileDone {
                    file: request.file,
                    result,
                },
            );
        }
        self.pump(now);
    }

    /// Moves virtual time from `*now` to `until`, firing every node timer on the way at its
    /// deadline and pumping after each.
    pub fn run_until(&mut self, now: &mut Instant, until: Instant) {
        self.pump(*now);
        while let Some(deadline) = self.node.poll_timeout() {
            if deadline > until {
                break;
            }
            *now = deadline.max(*now);
            self.node.handle(*now, Input::Timeout);
            self.pump(*now);
        }
        *now = until.max(*now);
        self.pump(*now);
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
            raw: Vec::new(),
            writes: 0,
            wants_write: false,
            inbox: BytesMut::new(),
        });
        self.clients.len() - 1
    }

    /// The events client `index` has seen.
    pub fn events(&self, index: usize) -> &[ClientEvent] {
        &self.clients[index].events
    }

    /// The `onStatus` codes client `index` received, in order.
    pub fn statuses(&self, index: usize) -> Vec<String> {
        self.events(index)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status(_, code) => Some(code.clone()),
                _ => None,
            })
            .collect()
    }

    /// The audio and video client `index` received: (type, timestamp, payload).
    pub fn media(&self, index: usize) -> Vec<(u8, u32, Vec<u8>)> {
        use crate::rtmp::message::type_id;
        self.events(index)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m)
                    if m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO =>
                {
                    Some((m.type_id, m.timestamp, m.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    /// Moves bytes until quiet.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for event in self.udp.take_inbound() {
                moved = true;
                self.node.handle(now, Input::Udp(event));
            }
            for event in self.tcp.take_inbound() {
                moved = true;
                self.node.handle(now, Input::Tcp(event));
            }
            for c in self.clients.iter_mut().filter(|c| !c.muted) {
                while let Some(bytes) = c.client.take_output() {
                    if c.closed {
                        continue;
                    }
                    moved = true;
                    let data = self.arena.carve(&[&bytes]);
                    self.node
                        .handle(now, Input::Received { conn: c.conn, data });
                }
            }
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Close { conn } => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                            // As a driver does: what is queued is written before the close.
                            if !c.muted && !c.closed {
                                let before = c.inbox.len();
                                drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                                if self.keep_raw {
                                    c.raw.extend_from_slice(&c.inbox[before..]);
                                }
                                let _ = c.client.received(&mut c.inbox);
                                while let Some(event) = c.client.poll_event() {
                                    if self.record_events {
                                        c.events.push(event);
                                    }
                                }
                            }
                            c.closed = true;
                        }
                        self.node.handle(now, Input::Closed { conn });
                    }
                    Output::File(request) if self.fs.hold => self.fs.held.push_back(request),
                    Output::File(request) => {
                        let result = self.fs.execute(&request);
                        let file = request.file;
                        self.node.handle(now, Input::FileDone { file, result });
                    }
                    Output::Udp(command) => {
                        moved = true;
                        for event in self.udp.execute(command) {
                            self.node.handle(now, Input::Udp(event));
                        }
                    }
                    Output::Tcp(command) => {
                        moved = true;
                        self.tcp.execute(command);
                    }
                    Output::Relay(out) => self.relay_out.push(out),
                    Output::Event(event) if self.record_events => self.node_events.push(event),
                    Output::Transmit { conn } => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                            c.wants_write = true;
                        }
                    }
                    Output::Event(_) => {}
                }
            }
            for c in &mut self.clients {
                if c.closed || c.muted || (self.transmit_driven && !c.wants_write) {
                    continue;
                }
                c.wants_write = false;
                let before = c.inbox.len();
                let drained = drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                if drained == 0 {
                    continue;
                }
                c.writes += 1;
                if self.keep_raw {
                    c.raw.extend_from_slice(&c.inbox[before..]);
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

/// A synthetic audio/video stream for tests, benchmarks and simulations: an AVC and an AAC
/// sequence header at 0 ms, then 12 fps video with a keyframe every 2 s (each frame's payload
/// says its index) and an audio frame every 20 ms, in timestamp order.
///
/// ```
/// use std::time::Duration;
/// let msgs = siprtmp_core::testkit::synthetic_av(1, Duration::from_secs(2));
/// assert_eq!(msgs.iter().filter(|m| m.type_id == 9).count(), 1 + 24);
/// assert_eq!(msgs.iter().filter(|m| m.type_id == 8).count(), 1 + 100);
/// ```
pub fn synthetic_av(
    stream_id: u32,
    duration: std::time::Duration,
) -> Vec<crate::rtmp::message::RtmpMessage> {
    use crate::rtmp::message::{type_id, RtmpMessage};
    let total_ms = duration.as_millis() as u32;
    let mut msgs = vec![
        RtmpMessage::new(
            type_id::VIDEO,
            stream_id,
            0,
            vec![0x17, 0x00, 0, 0, 0, 1, 0x42, 0xc0, 0x1e],
        ),
        RtmpMessage::new(type_id::AUDIO, stream_id, 0, vec![0xaf, 0x00, 0x12, 0x10]),
    ];
    let frames = total_ms * 12 / 1000;
    let mut video = (0..frames).map(|i| {
        let t = i * 1000 / 12;
        let key = i % 24 == 0;
        let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        body.extend_from_slice(&i.to_be_bytes());
        // Keyframes are larger, as in real streams.
        body.resize(if key { 6000 } else { 900 }, (i % 251) as u8);
        RtmpMessage::new(type_id::VIDEO, stream_id, t, body)
    });
    let mut audio = (0..total_ms / 20).map(|i| {
        let mut body = vec![0xaf, 0x01];
        body.extend_from_slice(&i.to_be_bytes());
        body.resize(60, 0x11);
        RtmpMessage::new(type_id::AUDIO, stream_id, i * 20, body)
    });
    let (mut v, mut a) = (video.next(), audio.next());
    loop {
        match (v.take(), a.take()) {
            (Some(x), Some(y)) if x.timestamp <= y.timestamp => {
                msgs.push(x);
                a = Some(y);
                v = video.next();
            }
            (x, Some(y)) => {
                msgs.push(y);
                v = x;
                a = audio.next();
            }
            (Some(x), None) => {
                msgs.push(x);
                v = video.next();
            }
            (None, None) => return msgs,
        }
    }
}

/// Checks, message by message, what a player receives against what was published: the codec
/// configurations, then every frame from one point on (a keyframe, for a player that joined
/// late), in order and byte-identical. Stream ids are ignored (each player has its own).
/// Incremental, so that long runs need not keep what players received.
#[derive(Debug)]
pub struct MediaChecker {
    frames: Vec<(u8, u32, bytes::Bytes)>,
    configs: usize,
    next: Option<usize>,
    checked: usize,
    error: Option<String>,
}

impl MediaChecker {
    /// A checker against the `published` messages.
    pub fn new(published: &[crate::rtmp::message::RtmpMessage]) -> Self {
        let frames = published
            .iter()
            .filter(|m| is_media(m) && !is_config(m))
            .map(|m| (m.type_id, m.timestamp, m.payload.clone()))
            .collect();
        Self {
            frames,
            configs: 0,
            next: None,
            checked: 0,
            error: None,
        }
    }

    /// One message the player received (non-media messages are ignored).
    pub fn check(&mut self, msg: &crate::rtmp::message::RtmpMessage) {
        if self.error.is_some() || !is_media(msg) {
            return;
        }
        if is_config(msg) {
            self.configs += 1;
            return;
        }
        let key = (msg.type_id, msg.timestamp, msg.payload.clone());
        let index = match self.next {
            Some(i) => i,
            None => match self.frames.iter().position(|f| *f == key) {
                Some(i) => i,
                None => {
                    self.error = Some(format!("first frame at {} ms never published", key.1));
                    return;
                }
            },
        };
        if self.frames.get(index) != Some(&key) {
            self.error = Some(format!(
                "frame {index} differs or is missing (got {} ms)",
                key.1
            ));
            return;
        }
        self.next = Some(index + 1);
        self.checked += 1;
    }

    /// The verdict once publishing is over: how many frames matched, or what went wrong.
    pub fn finish(&self) -> Result<usize, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.configs < 2 {
            return Err(format!(
                "{} codec configurations received, want 2",
                self.configs
            ));
        }
        match self.next {
            None => Err("no frames received".into()),
            Some(n) if n != self.frames.len() => {
                Err(format!("stopped after frame {n} of {}", self.frames.len()))
            }
            Some(_) => Ok(self.checked),
        }
    }
}

fn is_media(m: &crate::rtmp::message::RtmpMessage) -> bool {
    use crate::rtmp::message::type_id;
    m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO
}

fn is_config(m: &crate::rtmp::message::RtmpMessage) -> bool {
    use crate::flv::media::{classify_audio, classify_video};
    use crate::rtmp::message::type_id;
    match m.type_id {
        type_id::VIDEO => classify_video(&m.payload).is_some_and(|v| v.sequence_header),
        type_id::AUDIO => classify_audio(&m.payload).is_some_and(|a| a.sequence_header),
        _ => false,
    }
}
