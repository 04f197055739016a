//! SIP over TCP for the gateway's clients (`transport = tcp`): the TCP side of the gateway
//! host, asked of the driver with `Output::Tcp` (see [`crate::tcp`]).
//!
//! Each client listens on a port of its own ([`SipStreams::listener`]): that address is its
//! Via and Contact, so a far end that calls it directly, or a registrar's proxy that does not
//! reuse connections, connects there. Requests go over a connection to their destination,
//! opened on the first message for it and reused after (whether we opened it or the far end
//! did), so responses and requests from the far end come back on the same connection. Bytes
//! are sent right after the connect: the driver queues them until the connection is up.
//!
//! A connection that cannot be opened or that breaks fails the transactions that were using
//! it at once (the client is told why: a rejected connect or call), and nothing else: the next
//! request opens a new one. Media stays RTP over UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::tcp::{ListenerId, StreamId, TcpCommand, TcpEvent};

use super::client::State;
use super::GatewayHost;

/// A client's SIP listener and connections.
#[derive(Debug)]
pub(crate) struct SipStreams {
    /// The listener (its address is the session's SIP address).
    pub listener: ListenerId,
    /// Where it listens, once the driver said.
    pub local: Option<SocketAddr>,
    /// Open connections: the peer, and what arrived of a message not yet complete.
    streams: HashMap<StreamId, (SocketAddr, BytesMut)>,
    /// The connection used for sending to a peer.
    by_peer: HashMap<SocketAddr, StreamId>,
}

impl SipStreams {
    fn new(listener: ListenerId) -> Self {
        Self {
            listener,
            local: None,
            streams: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }

    fn add(&mut self, stream: StreamId, peer: SocketAddr) {
        self.streams.insert(stream, (peer, BytesMut::new()));
        // The newest connection to a peer is the one we send on.
        self.by_peer.insert(peer, stream);
    }

    /// Forgets `stream`; returns its peer.
    fn remove(&mut self, stream: StreamId) -> Option<SocketAddr> {
        let (peer, _) = self.streams.remove(&stream)?;
        if self.by_peer.get(&peer) == Some(&stream) {
            self.by_peer.remove(&peer);
            // Another connection with the same peer, if any, takes over.
            if let Some((&other, _)) = self.streams.iter().find(|(_, (p, _))| *p == peer) {
                self.by_peer.insert(peer, other);
            }
        }
        Some(peer)
    }
}

impl GatewayHost {
    /// Asks for the client's SIP listener on `addr` (its session starts once it listens).
    pub(super) fn sip_listen(&mut self, conn: ConnId, addr: SocketAddr) {
        let listener = ListenerId(self.next_tcp_id);
        self.next_tcp_id += 1;
        self.listeners.insert(listener, conn);
        if let Some(gw) = self.conns.get_mut(&conn) {
            gw.sip_tcp = Some(SipStreams::new(listener));
        }
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Listen { listener, addr }));
    }

    /// Closes a client's SIP listener and connections.
    pub(super) fn close_sip_streams(&mut self, tcp: SipStreams) {
        self.listeners.remove(&tcp.listener);
        for stream in tcp.streams.keys() {
            self.streams.remove(stream);
        }
        self.outputs.push_back(Output::Tcp(TcpCommand::Unlisten {
            listener: tcp.listener,
        }));
        let mut streams: Vec<StreamId> = tcp.streams.into_keys().collect();
        streams.sort_unstable();
        for stream in streams {
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
        }
    }

    /// Sends a SIP message to `destination` on the connection to it, opening one if needed.
    pub(super) fn sip_tcp_send(&mut self, conn: ConnId, destination: SocketAddr, data: Bytes) {
        let bind_ip = self.config.bind_ip;
        let next = StreamId(self.next_tcp_id);
        let Some(tcp) = self.conns.get_mut(&conn).and_then(|g| g.sip_tcp.as_mut()) else {
            return;
        };
        let stream = match tcp.by_peer.get(&destination) {
            Some(&stream) => stream,
            None => {
                tcp.add(next, destination);
                self.next_tcp_id += 1;
                self.streams.insert(next, conn);
                self.outputs.push_back(Output::Tcp(TcpCommand::Connect {
                    stream: next,
                    remote: destination,
                    local_ip: (!bind_ip.is_unspecified()).then_some(bind_ip),
                }));
                next
            }
        };
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
    }

    /// Input from the driver about a TCP stream or listener of the node's.
    pub(crate) fn tcp_event(&mut self, now: Instant, event: TcpEvent) {
        match event {
            TcpEvent::Listening { listener, result } => {
                let Some(&conn) = self.listeners.get(&listener) else {
                    return;
                };
                match result {
                    Ok(addr) => {
                        if let Some(tcp) =
                            self.conns.get_mut(&conn).and_then(|g| g.sip_tcp.as_mut())
                        {
                            tcp.local = Some(addr);
                        }
                        self.start_session_if_bound(now, conn);
                    }
                    Err(e) => {
                        let cmd = self.conns.get(&conn).map(|g| g.connect.clone());
                        self.drop_client(conn);
                        if let Some(cmd) = cmd {
                            let reason = format!("503 cannot listen for SIP over TCP: {e}");
                            self.reject(conn, cmd, reason);
                        }
                    }
                }
            }
            TcpEvent::Accepted {
                listener,
                stream,
                remote,
            } => {
                let conn = self.listeners.get(&listener).copied();
                let tcp = conn.and_then(|c| self.conns.get_mut(&c)).and_then(|g| {
                    // Only a running session takes calls.
                    match g.state {
                        State::Binding { .. } => None,
                        _ => g.sip_tcp.as_mut(),
                    }
                });
                match (conn, tcp) {
                    (Some(conn), Some(tcp)) => {
                        tcp.add(stream, remote);
                        self.streams.insert(stream, conn);
                    }
                    _ => self
                        .outputs
                        .push_back(Output::Tcp(TcpCommand::Close { stream })),
                }
            }
            TcpEvent::Connected { .. } | TcpEvent::Sent { .. } => {}
            TcpEvent::Received { stream, data } => self.sip_stream_received(now, stream, data),
            TcpEvent::ConnectFailed { stream, error } => {
                self.sip_stream_gone(now, stream, &error);
            }
            TcpEvent::Closed { stream, error } => {
                let error = error.unwrap_or_else(|| "closed by the peer".into());
                self.sip_stream_gone(now, stream, &error);
            }
        }
    }

    fn sip_stream_received(&mut self, now: Instant, stream: StreamId, data: BytesMut) {
        let Some(&conn) = self.streams.get(&stream) else {
            return;
        };
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let (Some(tcp), State::Active(session) | State::Lingering(session, _)) =
            (gw.sip_tcp.as_mut(), &mut gw.state)
        else {
            return;
        };
        let Some((peer, inbox)) = tcp.streams.get_mut(&stream) else {
            return;
        };
        let peer = *peer;
        if inbox.is_empty() {
            *inbox = data;
        } else {
            inbox.extend_from_slice(&data);
        }
        if !session.sip_stream(now, peer, inbox) {
            // Not SIP: this connection goes, and with it what was waiting on it.
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
            self.sip_stream_gone(now, stream, "malformed SIP");
            return;
        }
        self.pump(now, conn);
    }

    /// A connection failed or closed: forget it and fail what was waiting on it.
    fn sip_stream_gone(&mut self, now: Instant, stream: StreamId, error: &str) {
        let Some(conn) = self.streams.remove(&stream) else {
            return;
        };
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(peer) = gw.sip_tcp.as_mut().and_then(|t| t.remove(stream)) else {
            return;
        };
        if let State::Active(session) | State::Lingering(session, _) = &mut gw.state {
            session.sip_stream_failed(now, peer, error);
        }
        self.outputs.push_back(Output::Event(Event::Gateway {
            conn,
            message: format!("SIP connection {stream} to {peer}: {error}"),
        }));
        self.pump(now, conn);
    }
}
