//! [`MemoryTcp`]: an in-memory TCP network for the node's own connections and listeners (the
//! gateway's SIP over TCP), the test playing every peer.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

/// An in-memory TCP network for the node's own connections and listeners (the gateway's SIP
/// over TCP), with the test playing every peer: a connect succeeds to an address the test
/// [`listen`](MemoryTcp::listen)s on and is refused otherwise; what the node sends waits in
/// [`MemoryTcp::outbox`]; the test answers with [`MemoryTcp::send`], closes with
/// [`MemoryTcp::close`], and connects to the node's listeners with [`MemoryTcp::connect`].
/// Events reach the node on the next [`MemoryNet::pump`](super::MemoryNet::pump), in order.
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

    /// The test peer's socket took `bytes` more of what the node sent on `stream` (reported
    /// to the node as `TcpEvent::Sent`, as a driver does; ignored if it is closed).
    pub fn sent(&mut self, stream: crate::tcp::StreamId, bytes: usize) {
        if self.streams.contains_key(&stream) {
            self.inbound
                .push_back(crate::tcp::TcpEvent::Sent { stream, bytes });
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

    pub(super) fn execute(&mut self, command: crate::tcp::TcpCommand) {
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

    pub(super) fn take_inbound(&mut self) -> Vec<crate::tcp::TcpEvent> {
        self.inbound.drain(..).collect()
    }
}
