//! [`MemoryUdp`]: an in-memory UDP network for the node's sockets (the gateway's SIP and RTP).

use super::ReadBlocks;

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
    reads: ReadBlocks,
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
    pub(super) fn execute(&mut self, command: crate::udp::UdpCommand) -> Vec<crate::udp::UdpEvent> {
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
                let data = self.reads.0.carve(&[&head, &body]).freeze();
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
    pub(super) fn take_inbound(&mut self) -> Vec<crate::udp::UdpEvent> {
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
