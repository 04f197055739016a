//! The gateway's sockets: a client's SIP socket (its session starts once it is bound), a
//! call's four RTP ports (bound when the call needs them, given back when it ends, the next
//! block tried when another program holds one), and with shared RTP ports the four every call
//! uses; and forgetting a client with everything it holds.

use std::net::SocketAddr;
use std::time::Instant;

use crate::gateway::call_session::{GatewaySession, MediaPorts, SessionSockets};
use crate::gateway::client_api::ClientCall;
use crate::gateway::media_bridge::Leg;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::udp::{SocketId, UdpCommand, UdpEvent};

use super::client::{CallPorts, ClientSocket, Role, State, MEDIA_ROLES};
use super::{GatewayHost, RemoteMediaSink};

/// Binding attempts for a call's RTP ports (a block another program holds is passed over)
/// before the call is refused.
const MAX_PORT_TRIES: u32 = 16;

/// The receive buffer asked for a shared RTP socket: it queues every call's packets, where a
/// call's own socket would queue one call's (Linux's default, about 208 KiB, is a few
/// milliseconds of a thousand calls; the system may cap what it grants).
const SHARED_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// With `shared_rtp_ports`: the four sockets (in [`MEDIA_ROLES`] order) every call uses.
#[derive(Debug)]
pub(super) struct SharedPorts {
    /// Each socket and its address once bound.
    pub sockets: [(SocketId, Option<SocketAddr>); 4],
    pub base_port: u16,
    /// Blocks of ports tried so far.
    tries: u32,
}

impl SharedPorts {
    fn is_bound(&self) -> bool {
        self.sockets.iter().all(|s| s.1.is_some())
    }

    /// Which of the four `socket` is, and its role.
    pub(crate) fn role(&self, socket: SocketId) -> Option<(usize, Role)> {
        let i = self.sockets.iter().position(|s| s.0 == socket)?;
        Some((i, MEDIA_ROLES[i]))
    }
}

/// The shared socket for `role` (a media role), with shared RTP ports; never for SIP.
pub(super) fn shared_socket(shared: Option<&SharedPorts>, role: Role) -> Option<SocketId> {
    let shared = shared?;
    let i = MEDIA_ROLES.iter().position(|r| *r == role)?;
    Some(shared.sockets[i].0)
}

impl GatewayHost {
    fn new_socket(&mut self, conn: ConnId, role: Role) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket += 1;
        self.sockets.insert(id, (conn, role));
        id
    }

    /// Asks for the client's SIP socket (over TCP, its SIP listener), and with shared RTP
    /// ports for the shared sockets if nobody has yet. Its own RTP ports, without shared
    /// ports, come with a call ([`Self::bind_call_ports`]).
    pub(super) fn bind_sip(&mut self, conn: ConnId) {
        let ip = self.config.bind_ip;
        if self.config.shared_rtp_ports && self.shared.is_none() {
            self.bind_shared(0);
        }
        if self.tcp() {
            self.sip_listen(conn, SocketAddr::new(ip, 0));
            return;
        }
        let socket = self.new_socket(conn, Role::Sip);
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        gw.sockets.push(ClientSocket {
            id: socket,
            role: Role::Sip,
            bound: None,
        });
        self.outputs.push_back(Output::Udp(UdpCommand::Bind {
            socket,
            addr: SocketAddr::new(ip, 0),
            receive_buffer: None,
        }));
    }

    /// Asks for a block of RTP ports for `conn`'s call (try `tries`, counting from 0), the
    /// client's `queued` calls waiting for it; refuses them at once when every block of the
    /// range is held.
    pub(super) fn bind_call_ports(
        &mut self,
        now: Instant,
        conn: ConnId,
        tries: u32,
        queued: Vec<ClientCall>,
    ) {
        let ip = self.config.bind_ip;
        let Some(base) = self.blocks.take() else {
            let capacity = self.blocks.capacity();
            let reason = format!("all {capacity} RTP port blocks of the gateway are in use");
            return self.call_ports_failed(now, conn, queued, &reason);
        };
        let binds: Vec<(SocketId, Role)> = MEDIA_ROLES
            .into_iter()
            .map(|role| (self.new_socket(conn, role), role))
            .collect();
        let Some(gw) = self.conns.get_mut(&conn) else {
            self.blocks.release(base);
            return;
        };
        gw.base_port = base;
        gw.ports = CallPorts::Binding { tries, queued };
        for (i, (socket, role)) in binds.into_iter().enumerate() {
            gw.sockets.push(ClientSocket {
                id: socket,
                role,
                bound: None,
            });
            self.outputs.push_back(Output::Udp(UdpCommand::Bind {
                socket,
                addr: SocketAddr::new(ip, base + i as u16),
                receive_buffer: None,
            }));
        }
    }

    /// `conn`'s call ports are bound: the session learns them and gets the calls that waited.
    fn call_ports_bound(&mut self, now: Instant, conn: ConnId) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let CallPorts::Binding { queued, .. } = std::mem::replace(&mut gw.ports, CallPorts::Held)
        else {
            return;
        };
        let base = gw.base_port;
        if let State::Active(session) = &mut gw.state {
            session.set_media_ports(Some(MediaPorts {
                audio: base,
                video: base + 2,
            }));
            for call in queued {
                session.client_call(now, call);
            }
        }
        self.pump(now, conn);
    }

    /// No RTP ports for `conn`'s call: the calls that waited for them are refused (the rest
    /// passed on).
    fn call_ports_failed(
        &mut self,
        now: Instant,
        conn: ConnId,
        queued: Vec<ClientCall>,
        reason: &str,
    ) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        gw.ports = CallPorts::Idle;
        if let State::Active(session) = &mut gw.state {
            for call in queued {
                session.media_ports_failed(now, call, reason);
            }
        }
        let message = format!("a call was refused: {reason}");
        self.outputs
            .push_back(Output::Event(Event::Gateway { conn, message }));
        self.pump(now, conn);
    }

    /// Closes `conn`'s call ports (the call ended, the client left) and gives their block back.
    pub(super) fn release_call_ports(&mut self, conn: ConnId) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(gw.ports, CallPorts::Idle) {
            return;
        }
        gw.ports = CallPorts::Idle;
        self.blocks.release(gw.base_port);
        if let Some(session) = gw.state.session() {
            session.set_media_ports(None);
        }
        let media: Vec<SocketId> = gw
            .sockets
            .iter()
            .filter(|s| s.role != Role::Sip)
            .map(|s| s.id)
            .collect();
        gw.sockets.retain(|s| s.role == Role::Sip);
        for socket in media {
            self.unbind(socket);
        }
    }

    /// With shared RTP ports: asks for the shared sockets on the next block of ports.
    fn bind_shared(&mut self, tries: u32) {
        let ip = self.config.bind_ip;
        // Held for the life of the node.
        let Some(base_port) = self.blocks.take() else {
            return self.shared_ports_failed("every block of the range was tried");
        };
        let mut sockets = [(SocketId(0), None); 4];
        for (i, s) in sockets.iter_mut().enumerate() {
            s.0 = SocketId(self.next_socket + i as u64);
        }
        self.next_socket += 4;
        self.shared = Some(SharedPorts {
            sockets,
            base_port,
            tries,
        });
        for (i, (socket, _)) in sockets.into_iter().enumerate() {
            let addr = SocketAddr::new(ip, base_port + i as u16);
            self.outputs.push_back(Output::Udp(UdpCommand::Bind {
                socket,
                addr,
                receive_buffer: Some(SHARED_RECEIVE_BUFFER),
            }));
        }
    }

    /// A shared socket bound, failed to bind, or received a datagram.
    pub(super) fn shared_udp(
        &mut self,
        now: Instant,
        index: usize,
        role: Role,
        event: UdpEvent,
        sink: &mut impl RemoteMediaSink,
    ) {
        match event {
            UdpEvent::Bound {
                result: Ok(addr), ..
            } => {
                let Some(shared) = self.shared.as_mut() else {
                    return;
                };
                shared.sockets[index].1 = Some(addr);
                if shared.is_bound() {
                    for conn in self.binding_conns() {
                        self.start_session_if_bound(now, conn);
                    }
                }
            }
            UdpEvent::Bound { result: Err(e), .. } => {
                let Some(shared) = self.shared.take() else {
                    return;
                };
                // Given back: the next try takes the next block in turn.
                self.blocks.release(shared.base_port);
                for (socket, _) in shared.sockets {
                    self.outputs
                        .push_back(Output::Udp(UdpCommand::Unbind { socket }));
                }
                let tries = shared.tries + 1;
                if tries < MAX_PORT_TRIES {
                    self.bind_shared(tries);
                    return;
                }
                self.shared_ports_failed(&e);
            }
            UdpEvent::Datagram { source, data, .. } => {
                let Role::Rtp { leg, rtcp } = role else {
                    return;
                };
                let Some(conn) = self.routes.route(leg, rtcp, source, &data) else {
                    let (total, notice) = &mut self.unrouted;
                    *total += 1;
                    if let Some(dropped) = notice.due(now, *total) {
                        self.outputs.push_back(Output::Event(Event::UnroutedMedia {
                            dropped,
                            last_source: source,
                        }));
                    }
                    return;
                };
                self.far_end_datagram(now, conn, leg, rtcp, source, data, sink);
            }
        }
    }

    /// The connections still waiting for their sockets (with shared RTP ports, for the
    /// shared ones).
    fn binding_conns(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, g)| matches!(g.state, State::Binding { .. }))
            .map(|(c, _)| *c)
            .collect()
    }

    /// No block for the shared RTP ports: everyone waiting for them is refused; the next
    /// connect tries again.
    fn shared_ports_failed(&mut self, why: &str) {
        for conn in self.binding_conns() {
            let cmd = self.conns.get(&conn).map(|g| g.connect.clone());
            self.drop_client(conn);
            if let Some(cmd) = cmd {
                self.reject(
                    conn,
                    cmd,
                    format!("503 cannot bind shared RTP ports: {why}"),
                );
            }
        }
    }

    /// One of `conn`'s own sockets bound, or failed to.
    pub(super) fn socket_bound(
        &mut self,
        now: Instant,
        conn: ConnId,
        socket: SocketId,
        result: Result<SocketAddr, String>,
    ) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(index) = gw.sockets.iter().position(|s| s.id == socket) else {
            return;
        };
        let role = gw.sockets[index].role;
        match (result, role) {
            (Ok(addr), Role::Sip) => {
                gw.sockets[index].bound = Some(addr);
                self.start_session_if_bound(now, conn);
            }
            (Ok(addr), Role::Rtp { .. }) => {
                gw.sockets[index].bound = Some(addr);
                if gw.media_bound() {
                    self.call_ports_bound(now, conn);
                }
            }
            (Err(e), Role::Sip) => {
                let cmd = gw.connect.clone();
                self.drop_client(conn);
                self.reject(conn, cmd, format!("503 cannot bind a SIP socket: {e}"));
            }
            (Err(e), Role::Rtp { .. }) => {
                // Another program holds a port of the block: close it and try the next one.
                // Held for the release that follows: it closes the block's sockets.
                let CallPorts::Binding { tries, queued } =
                    std::mem::replace(&mut gw.ports, CallPorts::Held)
                else {
                    return;
                };
                self.release_call_ports(conn);
                if tries + 1 < MAX_PORT_TRIES {
                    self.bind_call_ports(now, conn, tries + 1, queued);
                } else {
                    let reason = format!("cannot bind RTP ports: {e}");
                    self.call_ports_failed(now, conn, queued, &reason);
                }
            }
        }
    }

    /// Once the SIP socket is bound (over TCP, the SIP listener listens; with shared RTP
    /// ports, those are bound too): the session.
    pub(super) fn start_session_if_bound(&mut self, now: Instant, conn: ConnId) {
        // With shared RTP ports, the session's media ports are the shared ones, for its life;
        // its own come with each call.
        let media = match (self.config.shared_rtp_ports, &self.shared) {
            (false, _) => None,
            (true, Some(shared)) if shared.is_bound() => Some(MediaPorts {
                audio: shared.base_port,
                video: shared.base_port + 2,
            }),
            (true, _) => return,
        };
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let sip = match &gw.sip_tcp {
            Some(tcp) => tcp.local,
            None => gw
                .sockets
                .iter()
                .find(|s| s.role == Role::Sip)
                .and_then(|s| s.bound),
        };
        let Some(sip) = sip else {
            return;
        };
        let State::Binding { request, .. } = &gw.state else {
            return;
        };
        let request = request.clone();
        self.outputs.push_back(Output::Event(Event::GatewayBound {
            conn,
            aor: request.aor.clone(),
            sip,
            rtp_port: media.map(|m| m.audio),
        }));
        let sockets = SessionSockets { sip, media };
        let seed = self.rng.next_u64();
        match GatewaySession::new(now, &request, self.config.session.clone(), sockets, seed) {
            Ok(session) => {
                if let Some(gw) = self.conns.get_mut(&conn) {
                    gw.state = State::Active(Box::new(session));
                }
                self.pump(now, conn);
            }
            Err(e) => {
                let cmd = self.conns.get(&conn).map(|g| g.connect.clone());
                self.drop_client(conn);
                if let Some(cmd) = cmd {
                    self.reject(conn, cmd, e.to_string());
                }
            }
        }
    }

    pub(super) fn unbind(&mut self, socket: SocketId) {
        self.sockets.remove(&socket);
        self.outputs
            .push_back(Output::Udp(UdpCommand::Unbind { socket }));
    }

    /// Forgets a client and closes its sockets.
    pub(super) fn drop_client(&mut self, conn: ConnId) {
        let Some(gw) = self.conns.remove(&conn) else {
            return;
        };
        self.keep_counts(&gw);
        if !matches!(gw.ports, CallPorts::Idle) {
            self.blocks.release(gw.base_port);
        }
        for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
            if let Some((remote, _)) = gw.routed[i] {
                self.routes.remove(leg, remote, conn);
            }
        }
        for socket in &gw.sockets {
            self.unbind(socket.id);
        }
        if let Some(tcp) = gw.sip_tcp {
            self.close_sip_streams(tcp);
        }
    }
}
