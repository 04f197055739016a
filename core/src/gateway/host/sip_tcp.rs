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
//!
//! SIP over TLS (`transport = tls`, RFC 3261 section 26, RFC 5630) is the same with a TLS
//! client ([`TlsLayer`]) on each connection the client opens: its ClientHello goes out right
//! after the connect, what the session sends is sealed into records (rustls keeps what is
//! sealed before the handshake ends and sends it after), and what arrives is decrypted before
//! the SIP framing sees it. The server's certificate is verified against the roots of
//! [`super::SipTlsSettings`] and must be for the registrar's or proxy's configured name (by
//! IP address for other destinations); a certificate that fails is a TLS error, which fails
//! the transactions on the connection like a broken TCP connection, with the reason
//! ("invalid peer certificate: UnknownIssuer") in the log and in the client's rejection.
//! The gateway has no certificate of its own, so a connection accepted on the listener is
//! closed: requests for the client come over the connections it opened (the registrar reuses
//! the one the REGISTER came on: the Via's `alias`, RFC 5923). Bounded like TCP: a handshake
//! has `handshake_timeout` from the moment the connection is asked for, and what rustls holds
//! of an unfinished handshake is at most [`MAX_HANDSHAKE_BYTES`]; SIP messages themselves
//! are bounded by the session's stream framing as over TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::tcp::{ListenerId, StreamId, TcpCommand, TcpEvent};
use crate::tls::layer::TlsLayer;
use crate::tls::rustls::pki_types::ServerName;

use super::client::State;
use super::GatewayHost;

/// Most bytes of a TLS server's handshake (its certificate chain above all) held before the
/// handshake ends; a server that sends more is cut off. Real chains are a few KiB.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// What a TLS connection to a destination is made with: the client configuration and the
/// name the server's certificate must be for.
type TlsTarget = (crate::tls::ClientTlsConfig, ServerName<'static>);

/// One SIP connection of a client.
#[derive(Debug)]
struct SipConn {
    /// The far end.
    peer: SocketAddr,
    /// What arrived (decrypted, over TLS) of a message not yet complete.
    inbox: BytesMut,
    /// Over TLS: the connection's TLS client.
    tls: Option<TlsLayer>,
    /// Over TLS, while the handshake is under way: when it is given up (set by the first
    /// `pump` after the connection is asked for, the moment the host learns the time).
    handshake_deadline: Option<Instant>,
}

/// A client's SIP listener and connections.
#[derive(Debug)]
pub(crate) struct SipStreams {
    /// The listener (its address is the session's SIP address).
    pub listener: ListenerId,
    /// Where it listens, once the driver said.
    pub local: Option<SocketAddr>,
    /// Open connections.
    streams: HashMap<StreamId, SipConn>,
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

    fn add(&mut self, stream: StreamId, peer: SocketAddr, tls: Option<TlsLayer>) {
        let conn = SipConn {
            peer,
            inbox: BytesMut::new(),
            tls,
            handshake_deadline: None,
        };
        self.streams.insert(stream, conn);
        // The newest connection to a peer is the one we send on.
        self.by_peer.insert(peer, stream);
    }

    /// Forgets `stream`; returns its peer.
    fn remove(&mut self, stream: StreamId) -> Option<SocketAddr> {
        let peer = self.streams.remove(&stream)?.peer;
        if self.by_peer.get(&peer) == Some(&stream) {
            self.by_peer.remove(&peer);
            // Another connection with the same peer, if any, takes over.
            if let Some((&other, _)) = self.streams.iter().find(|(_, c)| c.peer == peer) {
                self.by_peer.insert(peer, other);
            }
        }
        Some(peer)
    }

    /// Gives every TLS handshake that has no deadline yet one `timeout` from `now`; returns
    /// the earliest deadline of a handshake under way.
    pub(crate) fn arm_handshakes(
        &mut self,
        now: Instant,
        timeout: std::time::Duration,
    ) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for conn in self.streams.values_mut() {
            let Some(tls) = &conn.tls else { continue };
            if !tls.is_handshaking() {
                conn.handshake_deadline = None;
                continue;
            }
            let deadline = *conn.handshake_deadline.get_or_insert(now + timeout);
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        earliest
    }

    /// The connections whose TLS handshake is past its deadline at `now`, in id order.
    pub(crate) fn expired_handshakes(&self, now: Instant) -> Vec<StreamId> {
        let mut expired: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, c)| {
                c.handshake_deadline.is_some_and(|d| d <= now)
                    && c.tls.as_ref().is_some_and(TlsLayer::is_handshaking)
            })
            .map(|(&s, _)| s)
            .collect();
        expired.sort_unstable();
        expired
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
        let mut streams: Vec<(StreamId, SipConn)> = tcp.streams.into_iter().collect();
        streams.sort_unstable_by_key(|(stream, _)| *stream);
        for (stream, mut sip) in streams {
            // A TLS session ends with its close_notify (RFC 8446 6.1), written before the close.
            if let Some(data) = sip.tls.as_mut().and_then(|tls| {
                tls.close_notify();
                tls.take_records(0)
            }) {
                self.outputs
                    .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
            }
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
        }
    }

    /// Sends a SIP message to `destination` on the connection to it, opening one if needed
    /// (over TLS: sealed into records, after the ClientHello of a new connection).
    pub(super) fn sip_tcp_send(&mut self, conn: ConnId, destination: SocketAddr, data: Bytes) {
        let bind_ip = self.config.bind_ip;
        let next = StreamId(self.next_tcp_id);
        let Some(tcp) = self.conns.get(&conn).and_then(|g| g.sip_tcp.as_ref()) else {
            return;
        };
        let existing = tcp.by_peer.get(&destination).copied();
        // A new connection over TLS starts with its TLS client (the ClientHello is ready).
        let layer = match (existing, self.tls_settings_for(destination)) {
            (None, Some(settings)) => {
                match settings.and_then(|(config, name)| TlsLayer::client(&config, name)) {
                    Ok(layer) => Some(layer),
                    Err(e) => {
                        self.sip_tls_unusable(conn, destination, &e);
                        return;
                    }
                }
            }
            _ => None,
        };
        let Some(tcp) = self.conns.get_mut(&conn).and_then(|g| g.sip_tcp.as_mut()) else {
            return;
        };
        let stream = match existing {
            Some(stream) => stream,
            None => {
                tcp.add(next, destination, layer);
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
        let data = match tcp.streams.get_mut(&stream).and_then(|c| c.tls.as_mut()) {
            None => Some(data),
            // A new connection's ClientHello comes out with the first seal; over a
            // connection whose handshake is under way rustls keeps the plaintext until it is
            // done (and [`Self::sip_stream_received`] sends it then).
            Some(tls) => tls.seal(std::iter::once(&data)),
        };
        if let Some(data) = data {
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
        }
    }

    /// Over TLS, the client configuration and the name `destination`'s certificate must be
    /// for (the configured name for the registrar and the proxy, else its address); `None`
    /// over TCP; an error when TLS is asked for and not configured.
    fn tls_settings_for(&self, destination: SocketAddr) -> Option<Result<TlsTarget, String>> {
        if self.config.session.transport != crate::sip::Transport::Tls {
            return None;
        }
        let Some(tls) = &self.config.sip_tls else {
            return Some(Err(
                "SIP over TLS is not configured (no roots to verify with)".into(),
            ));
        };
        let session = &self.config.session;
        let named =
            session.registrar == Some(destination) || session.outbound_proxy == Some(destination);
        let name = match (&tls.server_name, named) {
            (Some(name), true) => name.clone(),
            _ => ServerName::IpAddress(destination.ip().into()),
        };
        Some(Ok((tls.client.clone(), name)))
    }

    /// A TLS connection to `destination` cannot even start: what waited to go there fails
    /// (reported the next time the host pumps the session).
    fn sip_tls_unusable(&mut self, conn: ConnId, destination: SocketAddr, error: &str) {
        let message = format!("SIP over TLS to {destination}: {error}");
        self.outputs
            .push_back(Output::Event(Event::Gateway { conn, message }));
        if let Some(gw) = self.conns.get_mut(&conn) {
            gw.sip_tls_failures.push((destination, error.to_owned()));
        }
    }

    /// Fails what waited on connections that could not start (see [`Self::sip_tls_unusable`]).
    pub(super) fn report_sip_tls_failures(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return false;
        };
        if gw.sip_tls_failures.is_empty() {
            return false;
        }
        let failures = std::mem::take(&mut gw.sip_tls_failures);
        if let State::Active(session) | State::Lingering(session, _) = &mut gw.state {
            for (peer, error) in failures {
                session.sip_stream_failed(now, peer, &error);
            }
        }
        true
    }

    /// Closes the TLS connections of `conn` whose handshake is past its deadline; returns
    /// whether any was.
    pub(super) fn expire_sip_handshakes(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(tcp) = self.conns.get(&conn).and_then(|g| g.sip_tcp.as_ref()) else {
            return false;
        };
        let expired = tcp.expired_handshakes(now);
        let timeout = self
            .config
            .sip_tls
            .as_ref()
            .map_or(0, |t| t.handshake_timeout.as_secs());
        for &stream in &expired {
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
            let error = format!("TLS handshake not done within {timeout} s");
            self.sip_stream_gone(now, stream, &error);
        }
        !expired.is_empty()
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
                let tls = self.config.session.transport == crate::sip::Transport::Tls;
                match (conn, tcp) {
                    (Some(conn), Some(tcp)) if !tls => {
                        tcp.add(stream, remote, None);
                        self.streams.insert(stream, conn);
                    }
                    (Some(conn), Some(_)) => {
                        // No certificate to serve TLS with: requests for the client come on
                        // the connections it opened.
                        self.outputs
                            .push_back(Output::Tcp(TcpCommand::Close { stream }));
                        self.outputs.push_back(Output::Event(Event::Gateway {
                            conn,
                            message: format!(
                                "SIP over TLS: connection from {remote} refused (the gateway \
                                 takes requests only on the connections it opened)"
                            ),
                        }));
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
        let Some(sip) = tcp.streams.get_mut(&stream) else {
            return;
        };
        let peer = sip.peer;
        let mut tls_error = None;
        match sip.tls.as_mut() {
            None if sip.inbox.is_empty() => sip.inbox = data,
            None => sip.inbox.extend_from_slice(&data),
            Some(tls) => {
                let result = tls.receive(&data, &mut sip.inbox);
                // Handshake messages, alerts and the plaintext that waited for the
                // handshake, in the order rustls made them.
                if let Some(records) = tls.take_records(0) {
                    self.outputs.push_back(Output::Tcp(TcpCommand::Send {
                        stream,
                        data: records,
                    }));
                }
                tls_error = match result {
                    Err(e) => Some(format!("TLS: {e}")),
                    Ok(()) if tls.is_handshaking() && tls.held() > MAX_HANDSHAKE_BYTES => Some(
                        format!("TLS: the server's handshake exceeds {MAX_HANDSHAKE_BYTES} bytes"),
                    ),
                    Ok(()) => None,
                };
                if !tls.is_handshaking() {
                    sip.handshake_deadline = None;
                }
            }
        }
        if let Some(error) = tls_error {
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
            self.sip_stream_gone(now, stream, &error);
            return;
        }
        if !session.sip_stream(now, peer, &mut sip.inbox) {
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
