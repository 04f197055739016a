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

use crate::node::{ConnId, Event, Input, Node, Output};
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
                    Output::Event(event) if self.record_events => self.node_events.push(event),
                    Output::Event(_) | Output::Transmit { .. } => {}
                }
            }
            for c in &mut self.clients {
                if c.closed || c.muted {
                    continue;
                }
                let before = c.inbox.len();
                let drained = drain_into(&mut self.node, now, c.conn, &mut c.inbox);
                if drained == 0 {
                    continue;
                }
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
