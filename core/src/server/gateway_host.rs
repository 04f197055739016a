//! The gateway inside the RTMP server: connections to the gateway application (`sip` by
//! default, `rtmp://host/sip/<user@domain>`) each get a [`GatewaySession`] and the UDP sockets
//! it needs, asked of the driver with `Output::Udp` and reported back with `Input::Udp`.
//!
//! The connect is held until the sockets are bound and, with a password, until the REGISTER
//! completes. Then the client's calls (`invite`, `accept`...) go to the session, its `local`
//! stream feeds the session instead of the live fan-out (never recorded, never played by
//! anyone else), and its `remote` stream carries what comes back. When the client leaves, the
//! call is cancelled or hung up and the AOR unregistered; the SIP socket stays open until
//! those transactions finish (at most [`LINGER`]).
//!
//! With SIP over TCP (`session.transport`), the client's SIP socket is a TCP listener instead
//! (its Via and Contact address), and its SIP goes over connections opened as needed; see
//! [`sip_tcp`].
//!
//! With `shared_rtp_ports`, a client gets no media sockets of its own: the host binds four
//! for everyone on the first connect (its SDP says their ports), sends every call's RTP from
//! them, and hands each datagram to the call [`media_routes`] names; they stay open for the
//! life of the node.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::amf::Value;
use crate::gateway::call_session::{
    GatewayConfig, GatewayOutput, GatewaySession, MediaPorts, SessionSockets,
};
use crate::gateway::client_api::{ClientCall, ClientCallback, ConnectRequest};
use crate::gateway::drop_notice::DropNotice;
use crate::gateway::media_bridge::{FromFarEnd, Leg, OutgoingRtp};
use crate::id_hash::IdHashMap;
use crate::media::frame::MediaFrame;
use crate::node::{ConnId, Event, Output};
use crate::rtmp::command::Command;
use crate::rtmp::control::UserControl;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::sip::Transport;
use crate::tcp::{ListenerId, StreamId};
use crate::udp::{SocketId, UdpCommand, UdpEvent};

use super::session::csid;
use media_routes::{Expect, MediaRoutes};
use port_blocks::PortBlocks;
use sip_tcp::SipStreams;

mod media_routes;
mod port_blocks;
mod sip_tcp;
use super::{RtmpServer, Timer};

/// How long the SIP socket of a departed client stays open for its last transactions.
pub const LINGER: Duration = Duration::from_secs(32);

/// Binding attempts for a call's RTP ports (a block another program holds is passed over)
/// before the call is refused.
const MAX_PORT_TRIES: u32 = 16;

/// Client calls kept while a call's RTP ports are being bound (the `invite` or `accept` that
/// needs them and what follows it); more is refused with `_error`.
const MAX_QUEUED_CALLS: usize = 16;

/// The receive buffer asked for a shared RTP socket: it queues every call's packets, where a
/// call's own socket would queue one call's (Linux's default, about 208 KiB, is a few
/// milliseconds of a thousand calls; the system may cap what it grants).
const SHARED_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// The gateway's settings in the node.
#[derive(Debug, Clone)]
pub struct GatewayNodeConfig {
    /// The RTMP application of the gateway.
    pub app: String,
    /// Local address to bind SIP and RTP sockets on (`--int-ip`). It is also what Via, Contact
    /// and SDP say unless `session.advertised_ip` is set, so a wildcard (`0.0.0.0`, `::`)
    /// needs `advertised_ip`: SDP would read a wildcard connection address as "on hold".
    pub bind_ip: IpAddr,
    /// RTP ports are taken from this range, four per call (audio RTP/RTCP, video RTP/RTCP),
    /// when the call starts and given back when it ends: the range bounds concurrent calls.
    pub rtp_ports: (u16, u16),
    /// Every call's media on the same four ports (the first free block of `rtp_ports`),
    /// told apart by the far end's address and SSRC (see `media_routes`), instead of four
    /// ports per session: fewer system calls per packet (one `recvmmsg`/`sendmmsg` carries
    /// many calls) and no port limit on the number of clients. Far ends must send from the
    /// address their SDP gives: an unknown source cannot be latched onto (NAT).
    pub shared_rtp_ports: bool,
    /// Registrar, proxy, `--ext-ip`, timers, SIP transport (UDP or TCP)...
    pub session: GatewayConfig,
    /// A newer connection for an address of record already connected replaces the older
    /// one (closed, its call ended, as a phone moved to another device); when false the newer
    /// one is refused instead.
    pub replace_existing: bool,
    /// Gateway clients at once (each holds a SIP socket); a connect beyond is refused with
    /// `503`. 0: no limit.
    pub max_clients: usize,
    /// Gateway clients at once from one IP address; a connect beyond is refused with `503`.
    /// 0: no limit (clients behind one proxy or NAT).
    pub max_clients_per_ip: usize,
}

impl Default for GatewayNodeConfig {
    fn default() -> Self {
        Self {
            app: "sip".into(),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            rtp_ports: (16000, 17999),
            shared_rtp_ports: false,
            session: GatewayConfig::default(),
            replace_existing: true,
            max_clients: 4096,
            max_clients_per_ip: 64,
        }
    }
}

/// What a socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sip,
    Rtp(Leg, bool),
}

const MEDIA_ROLES: [Role; 4] = [
    Role::Rtp(Leg::Audio, false),
    Role::Rtp(Leg::Audio, true),
    Role::Rtp(Leg::Video, false),
    Role::Rtp(Leg::Video, true),
];

#[derive(Debug)]
enum State {
    /// Waiting for the driver to bind the sockets.
    Binding {
        /// Boxed: the connect's strings would make every state, and so the hot start of
        /// every [`GatewayConn`], four cache lines long.
        request: Box<ConnectRequest>,
    },
    Active(Box<GatewaySession>),
    /// The client left; the SIP socket stays for the last transactions.
    Lingering(Box<GatewaySession>, Instant),
}

/// A connection's own RTP ports (without shared ports): taken for a call, given back after it.
#[derive(Debug)]
enum CallPorts {
    /// None held.
    Idle,
    /// A block is being bound; `queued` are the client's calls waiting for it (the `invite` or
    /// `accept` that needs the ports first), passed on in order once it is bound.
    Binding { tries: u32, queued: Vec<ClientCall> },
    /// The block from the connection's `base_port` is bound.
    Held,
}

/// One gateway client in the server.
///
/// In the order written: what every media packet reads (the state, the streams, the
/// sockets) comes first, next to the map's key, in one cache line.
#[derive(Debug)]
#[repr(C)]
pub(super) struct GatewayConn {
    state: State,
    local_stream: Option<u32>,
    remote_stream: Option<u32>,
    sockets: Vec<(SocketId, Role, Option<SocketAddr>)>,
    connect: Command,
    /// The first of the connection's own RTP ports, while it has them (see `ports`).
    base_port: u16,
    ports: CallPorts,
    /// The client's IP address (for the per-address limit).
    ip: IpAddr,
    /// The deadline of the connection's live timer entry.
    next_timer: Option<Instant>,
    /// The address of record, lower-cased: one live connection per address.
    aor: String,
    /// SIP over TCP: the listener and connections (`None` over UDP).
    sip_tcp: Option<SipStreams>,
    /// With shared RTP ports: the address (audio, video) this connection's call is routed
    /// from in [`GatewayHost::routes`], and what it takes from there.
    routed: [Option<(SocketAddr, Expect)>; 2],
    /// With shared RTP ports, when the call's media is addressed to our own shared port: the
    /// SDP session id of its far end and the client of ours that has it, if any (looked for
    /// once per session id, so a far end that is not ours costs no scan per packet).
    hairpin_peer: Option<(u64, Option<ConnId>)>,
}

/// With `shared_rtp_ports`: the four sockets (in [`MEDIA_ROLES`] order) every call uses.
#[derive(Debug)]
struct SharedPorts {
    sockets: [(SocketId, Option<SocketAddr>); 4],
    base_port: u16,
    /// Blocks of ports tried so far.
    tries: u32,
}

impl SharedPorts {
    fn is_bound(&self) -> bool {
        self.sockets.iter().all(|s| s.1.is_some())
    }

    fn role(&self, socket: SocketId) -> Option<(usize, Role)> {
        let i = self.sockets.iter().position(|s| s.0 == socket)?;
        Some((i, MEDIA_ROLES[i]))
    }
}

/// Everything the server keeps for the gateway.
///
/// Both maps are looked up for every media packet, and their keys are ids the node hands out
/// itself: they hash with [`IdHashMap`]'s multiply, not SipHash.
#[derive(Debug)]
pub(super) struct GatewayHost {
    config: GatewayNodeConfig,
    pub(super) conns: IdHashMap<ConnId, GatewayConn>,
    /// Each socket's connection and what the socket is for.
    sockets: IdHashMap<SocketId, (ConnId, Role)>,
    next_socket: u64,
    /// The RTP port blocks calls (or, with shared ports, the shared sockets) hold.
    blocks: PortBlocks,
    /// SIP over TCP: whose each listener and stream is.
    listeners: IdHashMap<ListenerId, ConnId>,
    streams: IdHashMap<StreamId, ConnId>,
    next_tcp_id: u64,
    /// With shared RTP ports: the shared sockets, once asked for.
    shared: Option<SharedPorts>,
    /// With shared RTP ports: whose call each far-end address is.
    routes: MediaRoutes,
    /// Where every session writes the RTP a client's frame makes, and the media a far end's
    /// packet makes, before the host sends them on: one buffer each for all sessions, warm
    /// in the cache, instead of each session's own queue (two cold cache lines per packet).
    /// Empty between inputs.
    media_rtp: Vec<OutgoingRtp>,
    media_far: Vec<FromFarEnd>,
    /// With shared RTP ports: datagrams from addresses no call expects, and when they may
    /// next be logged.
    unrouted: (u64, DropNotice),
}

impl GatewayHost {
    pub fn new(config: GatewayNodeConfig) -> Self {
        Self {
            blocks: PortBlocks::new(config.rtp_ports),
            config,
            conns: IdHashMap::default(),
            sockets: IdHashMap::default(),
            next_socket: 1,
            listeners: IdHashMap::default(),
            streams: IdHashMap::default(),
            next_tcp_id: 1,
            shared: None,
            routes: MediaRoutes::default(),
            media_rtp: Vec::new(),
            media_far: Vec::new(),
            unrouted: (0, DropNotice::default()),
        }
    }

    /// Whether `app` (from connect) belongs to the gateway.
    pub fn owns_app(&self, app: &str) -> bool {
        app == self.config.app
            || app
                .strip_prefix(self.config.app.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether SIP goes over TCP.
    fn tcp(&self) -> bool {
        self.config.session.transport == Transport::Tcp
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

    /// With shared RTP ports, when `remote` (a call's media address from SDP) is the shared
    /// RTP port of `leg` itself (as bound, or as advertised): that port's bound address.
    fn own_media_address(&self, leg: Leg, remote: SocketAddr) -> Option<SocketAddr> {
        let index = MEDIA_ROLES
            .iter()
            .position(|r| *r == Role::Rtp(leg, false))?;
        let own = self.shared.as_ref()?.sockets[index].1?;
        let advertised = self.config.session.advertised_ip;
        let ours = remote.ip() == own.ip() || Some(remote.ip()) == advertised;
        (ours && remote.port() == own.port()).then_some(own)
    }

    /// The SDP session `conn`'s call is connected to and the client of ours that has it:
    /// `cached` while it is still right, else looked for among the clients.
    fn hairpin_peer(
        &self,
        conn: ConnId,
        cached: Option<(u64, Option<ConnId>)>,
    ) -> Option<(u64, Option<ConnId>)> {
        let State::Active(session) = &self.conns.get(&conn)?.state else {
            return None;
        };
        let wanted = session.peer_sdp_session_id()?;
        let is_peer =
            |g: &GatewayConn| matches!(&g.state, State::Active(s) if s.sdp_session_id() == wanted);
        if let Some((id, found)) = cached.filter(|c| c.0 == wanted) {
            // Not ours when last looked for (a client's session id never changes), or ours
            // and still there.
            if found.is_none_or(|c| self.conns.get(&c).is_some_and(is_peer)) {
                return Some((id, found));
            }
        }
        let found = self
            .conns
            .iter()
            .find(|(c, g)| **c != conn && is_peer(g))
            .map(|(c, _)| *c);
        Some((wanted, found))
    }

    fn new_socket(&mut self, conn: ConnId, role: Role) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket += 1;
        self.sockets.insert(id, (conn, role));
        id
    }
}

/// The calls a gateway client may make on the gateway (everything else is RTMP's own, or
/// refused as on any connection).
const GATEWAY_CALLS: [&str; 6] = ["invite", "accept", "reject", "bye", "sendDTMF", "hold"];

impl RtmpServer {
    fn gateway_conn(&mut self, conn: ConnId) -> Option<&mut GatewayConn> {
        self.gateway.as_mut()?.conns.get_mut(&conn)
    }

    pub(super) fn is_gateway_conn(&self, conn: ConnId) -> bool {
        self.gateway
            .as_ref()
            .is_some_and(|g| g.conns.contains_key(&conn))
    }

    /// A connect to the gateway application: parse it and ask for the sockets; the connect is
    /// answered once they are bound (and the REGISTER, if any, completed).
    pub(super) fn gateway_connect(&mut self, conn: ConnId, app: &str, cmd: Command) -> bool {
        let Some(gateway) = self.gateway.as_mut() else {
            return false;
        };
        if !gateway.owns_app(app) {
            return false;
        }
        let request = match ConnectRequest::parse(app, &cmd.args) {
            Ok(r) => r,
            Err(e) => {
                self.reject_connect(conn, &cmd, &e.to_string(), None);
                return true;
            }
        };
        let aor = request.aor.to_ascii_lowercase();
        let replace = gateway.config.replace_existing;
        let older: Vec<ConnId> = gateway
            .conns
            .iter()
            .filter(|(c, g)| {
                **c != conn && g.aor == aor && !matches!(g.state, State::Lingering(..))
            })
            .map(|(c, _)| *c)
            .collect();
        if !older.is_empty() && !replace {
            let reason = format!("486 {aor} is already connected");
            self.reject_connect(conn, &cmd, &reason, None);
            return true;
        }
        let Some(ip) = self.sessions.get(conn).map(|s| s.peer.ip()) else {
            return true;
        };
        let replaced = older.len();
        let (total, from_ip) = gateway.conns.values().fold((0, 0), |(total, from_ip), g| {
            (total + 1, from_ip + usize::from(g.ip == ip))
        });
        // The connections this one replaces free their place only once their SIP is done.
        let (max, max_per_ip) = (
            gateway.config.max_clients,
            gateway.config.max_clients_per_ip,
        );
        let refusal = if max > 0 && total >= max + replaced {
            Some(format!(
                "503 the gateway has its {} clients",
                gateway.config.max_clients
            ))
        } else if max_per_ip > 0 && from_ip >= max_per_ip + replaced {
            Some(format!(
                "503 {ip} has its {} gateway clients",
                gateway.config.max_clients_per_ip
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.reject_connect(conn, &cmd, &reason, None);
            return true;
        }
        for old in older {
            self.close(old, format!("replaced by a newer connection for {aor}"));
        }
        let Some(gateway) = self.gateway.as_mut() else {
            return false;
        };
        gateway.conns.insert(
            conn,
            GatewayConn {
                aor,
                state: State::Binding {
                    request: Box::new(request),
                },
                connect: cmd,
                sockets: Vec::new(),
                base_port: 0,
                ports: CallPorts::Idle,
                ip,
                local_stream: None,
                remote_stream: None,
                next_timer: None,
                sip_tcp: None,
                routed: [None; 2],
                hairpin_peer: None,
            },
        );
        self.bind_sip(conn);
        true
    }

    /// Asks for the client's SIP socket (over TCP, its SIP listener), and with shared RTP
    /// ports for the shared sockets if nobody has yet. Its own RTP ports, without shared
    /// ports, come with a call ([`Self::bind_call_ports`]).
    fn bind_sip(&mut self, conn: ConnId) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let ip = gateway.config.bind_ip;
        if gateway.config.shared_rtp_ports && gateway.shared.is_none() {
            self.bind_shared(0);
        }
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        if gateway.tcp() {
            self.sip_listen(conn, SocketAddr::new(ip, 0));
            return;
        }
        let socket = gateway.new_socket(conn, Role::Sip);
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            return;
        };
        gw.sockets.push((socket, Role::Sip, None));
        self.outputs.push_back(Output::Udp(UdpCommand::Bind {
            socket,
            addr: SocketAddr::new(ip, 0),
            receive_buffer: None,
        }));
    }

    /// Asks for a block of RTP ports for `conn`'s call (try `tries`, counting from 0), the
    /// client's `queued` calls waiting for it; refuses them at once when every block of the
    /// range is held.
    fn bind_call_ports(&mut self, now: Instant, conn: ConnId, tries: u32, queued: Vec<ClientCall>) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let ip = gateway.config.bind_ip;
        let Some(base) = gateway.blocks.take() else {
            let capacity = gateway.blocks.capacity();
            let reason = format!("all {capacity} RTP port blocks of the gateway are in use");
            return self.call_ports_failed(now, conn, queued, &reason);
        };
        let binds: Vec<(SocketId, Role)> = MEDIA_ROLES
            .into_iter()
            .map(|role| (gateway.new_socket(conn, role), role))
            .collect();
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            gateway.blocks.release(base);
            return;
        };
        gw.base_port = base;
        gw.ports = CallPorts::Binding { tries, queued };
        for (i, (socket, role)) in binds.into_iter().enumerate() {
            gw.sockets.push((socket, role, None));
            self.outputs.push_back(Output::Udp(UdpCommand::Bind {
                socket,
                addr: SocketAddr::new(ip, base + i as u16),
                receive_buffer: None,
            }));
        }
    }

    /// `conn`'s call ports are bound: the session learns them and gets the calls that waited.
    fn call_ports_bound(&mut self, now: Instant, conn: ConnId) {
        let Some(gw) = self.gateway_conn(conn) else {
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
        self.gateway_pump(now, conn);
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
        let Some(gw) = self.gateway_conn(conn) else {
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
        self.gateway_pump(now, conn);
    }

    /// Closes `conn`'s call ports (the call ended, the client left) and gives their block back.
    fn release_call_ports(&mut self, conn: ConnId) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            return;
        };
        if matches!(gw.ports, CallPorts::Idle) {
            return;
        }
        gw.ports = CallPorts::Idle;
        gateway.blocks.release(gw.base_port);
        if let State::Active(session) | State::Lingering(session, _) = &mut gw.state {
            session.set_media_ports(None);
        }
        let media: Vec<SocketId> = gw
            .sockets
            .iter()
            .filter(|s| s.1 != Role::Sip)
            .map(|s| s.0)
            .collect();
        gw.sockets.retain(|s| s.1 == Role::Sip);
        for socket in media {
            self.unbind(socket);
        }
    }

    /// With shared RTP ports: asks for the shared sockets on the next block of ports.
    fn bind_shared(&mut self, tries: u32) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let ip = gateway.config.bind_ip;
        // Held for the life of the node.
        let Some(base_port) = gateway.blocks.take() else {
            return self.shared_ports_failed("every block of the range was tried");
        };
        let mut sockets = [(SocketId(0), None); 4];
        for (i, s) in sockets.iter_mut().enumerate() {
            s.0 = SocketId(gateway.next_socket + i as u64);
        }
        gateway.next_socket += 4;
        gateway.shared = Some(SharedPorts {
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
    fn shared_udp(&mut self, now: Instant, index: usize, role: Role, event: UdpEvent) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        match event {
            UdpEvent::Bound {
                result: Ok(addr), ..
            } => {
                let Some(shared) = gateway.shared.as_mut() else {
                    return;
                };
                shared.sockets[index].1 = Some(addr);
                if shared.is_bound() {
                    for conn in gateway.binding_conns() {
                        self.start_session_if_bound(now, conn);
                    }
                }
            }
            UdpEvent::Bound { result: Err(e), .. } => {
                let Some(shared) = gateway.shared.take() else {
                    return;
                };
                // Given back: the next try takes the next block in turn.
                gateway.blocks.release(shared.base_port);
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
                let Role::Rtp(leg, rtcp) = role else {
                    return;
                };
                let Some(conn) = gateway.routes.route(leg, rtcp, source, &data) else {
                    let (total, notice) = &mut gateway.unrouted;
                    *total += 1;
                    if let Some(dropped) = notice.due(now, *total) {
                        self.outputs.push_back(Output::Event(Event::UnroutedMedia {
                            dropped,
                            last_source: source,
                        }));
                    }
                    return;
                };
                self.far_end_datagram(now, conn, leg, rtcp, source, data);
            }
        }
    }

    /// No block for the shared RTP ports: everyone waiting for them is refused; the next
    /// connect tries again.
    fn shared_ports_failed(&mut self, why: &str) {
        let Some(gateway) = self.gateway.as_ref() else {
            return;
        };
        for conn in gateway.binding_conns() {
            let cmd = self.gateway_conn(conn).map(|g| g.connect.clone());
            self.drop_gateway(conn);
            if let Some(cmd) = cmd {
                let reason = format!("503 cannot bind shared RTP ports: {why}");
                self.reject_connect(conn, &cmd, &reason, None);
            }
        }
    }

    /// With shared RTP ports: points the routes at where `conn`'s call now expects media
    /// from and what SSRCs it takes (nowhere once the call or the client is gone).
    fn sync_routes(&mut self, conn: ConnId) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        if !gateway.config.shared_rtp_ports {
            return;
        }
        let Some(gw) = gateway.conns.get(&conn) else {
            return;
        };
        let mut wanted = [None; 2];
        let mut peer = None;
        if let State::Active(session) = &gw.state {
            for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
                let Some(remote) = session.media_remote(leg) else {
                    continue;
                };
                wanted[i] = Some(match gateway.own_media_address(leg, remote) {
                    // A call to another client of ours: its media comes from our own port.
                    Some(own) => {
                        peer = peer.or_else(|| gateway.hairpin_peer(conn, gw.hairpin_peer));
                        let ssrc = peer.and_then(|(_, p)| match &gateway.conns.get(&p?)?.state {
                            State::Active(s) => s.media_ssrc(leg),
                            _ => None,
                        });
                        (own, Expect::Peer { ssrc })
                    }
                    None => (
                        remote,
                        Expect::FarEnd {
                            own_ssrc: session.media_ssrc(leg),
                        },
                    ),
                });
            }
        }
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            return;
        };
        gw.hairpin_peer = peer;
        for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
            if gw.routed[i] != wanted[i] {
                if let Some((old, _)) = gw.routed[i] {
                    gateway.routes.remove(leg, old, conn);
                }
                if let Some((new, expect)) = wanted[i] {
                    gateway.routes.insert(leg, new, conn, expect);
                }
                gw.routed[i] = wanted[i];
            }
        }
    }

    /// Input from the driver about a UDP socket.
    pub fn udp(&mut self, now: Instant, event: UdpEvent) {
        self.last_now = self.last_now.max(now);
        let socket = match &event {
            UdpEvent::Bound { socket, .. } | UdpEvent::Datagram { socket, .. } => *socket,
        };
        if let Some((index, role)) = self
            .gateway
            .as_ref()
            .and_then(|g| g.shared.as_ref()?.role(socket))
        {
            self.shared_udp(now, index, role, event);
            return;
        }
        let Some((conn, role)) = self
            .gateway
            .as_ref()
            .and_then(|g| g.sockets.get(&socket).copied())
        else {
            return;
        };
        match event {
            UdpEvent::Bound { result, .. } => self.socket_bound(now, conn, socket, result),
            UdpEvent::Datagram { source, data, .. } => match role {
                Role::Sip => {
                    let Some(gw) = self.gateway_conn(conn) else {
                        return;
                    };
                    let session = match &mut gw.state {
                        State::Active(s) | State::Lingering(s, _) => s,
                        State::Binding { .. } => return,
                    };
                    session.sip_datagram(now, source, data);
                    self.gateway_pump(now, conn);
                }
                Role::Rtp(leg, rtcp) => {
                    self.far_end_datagram(now, conn, leg, rtcp, source, data);
                }
            },
        }
    }

    fn socket_bound(
        &mut self,
        now: Instant,
        conn: ConnId,
        socket: SocketId,
        result: Result<SocketAddr, String>,
    ) {
        let Some(gw) = self.gateway_conn(conn) else {
            return;
        };
        let Some(index) = gw.sockets.iter().position(|s| s.0 == socket) else {
            return;
        };
        let role = gw.sockets[index].1;
        match (result, role) {
            (Ok(addr), Role::Sip) => {
                gw.sockets[index].2 = Some(addr);
                self.start_session_if_bound(now, conn);
            }
            (Ok(addr), Role::Rtp(..)) => {
                gw.sockets[index].2 = Some(addr);
                let media = gw.sockets.iter().filter(|s| s.1 != Role::Sip);
                if media.clone().count() == 4 && media.clone().all(|s| s.2.is_some()) {
                    self.call_ports_bound(now, conn);
                }
            }
            (Err(e), Role::Sip) => {
                let cmd = gw.connect.clone();
                self.drop_gateway(conn);
                let reason = format!("503 cannot bind a SIP socket: {e}");
                self.reject_connect(conn, &cmd, &reason, None);
            }
            (Err(e), Role::Rtp(..)) => {
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

    /// Once every socket is bound (and, over TCP, the SIP listener listens): the session.
    fn start_session_if_bound(&mut self, now: Instant, conn: ConnId) {
        // With shared RTP ports, the session's media ports are the shared ones.
        let shared = self.gateway.as_ref().and_then(|g| {
            g.config
                .shared_rtp_ports
                .then(|| g.shared.as_ref().map(|s| (s.is_bound(), s.base_port)))
        });
        let Some(gw) = self.gateway_conn(conn) else {
            return;
        };
        let sip = match &gw.sip_tcp {
            Some(tcp) => tcp.local,
            None => gw
                .sockets
                .iter()
                .find(|s| s.1 == Role::Sip)
                .and_then(|s| s.2),
        };
        // Shared RTP ports are the session's for its life; its own come with each call.
        let media = match shared {
            Some(Some((true, base))) => Some(MediaPorts {
                audio: base,
                video: base + 2,
            }),
            Some(_) => return,
            None => None,
        };
        let Some(sip) = sip else {
            return;
        };
        let State::Binding { request, .. } = &gw.state else {
            return;
        };
        let sockets = SessionSockets { sip, media };
        let request = request.clone();
        self.outputs.push_back(Output::Event(Event::GatewayBound {
            conn,
            aor: request.aor.clone(),
            sip,
            rtp_port: media.map(|m| m.audio),
        }));
        let config = self
            .gateway
            .as_ref()
            .map(|g| g.config.session.clone())
            .unwrap_or_default();
        let seed = self.rng.next_u64();
        match GatewaySession::new(now, &request, config, sockets, seed) {
            Ok(session) => {
                if let Some(gw) = self.gateway_conn(conn) {
                    gw.state = State::Active(Box::new(session));
                }
                self.gateway_pump(now, conn);
            }
            Err(e) => {
                let cmd = self.gateway_conn(conn).map(|g| g.connect.clone());
                self.drop_gateway(conn);
                if let Some(cmd) = cmd {
                    self.reject_connect(conn, &cmd, &e.to_string(), None);
                }
            }
        }
    }

    fn unbind(&mut self, socket: SocketId) {
        if let Some(g) = self.gateway.as_mut() {
            g.sockets.remove(&socket);
        }
        self.outputs
            .push_back(Output::Udp(UdpCommand::Unbind { socket }));
    }

    /// Forgets a gateway connection and closes its sockets.
    fn drop_gateway(&mut self, conn: ConnId) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let Some(gw) = gateway.conns.remove(&conn) else {
            return;
        };
        if !matches!(gw.ports, CallPorts::Idle) {
            gateway.blocks.release(gw.base_port);
        }
        for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
            if let Some((remote, _)) = gw.routed[i] {
                gateway.routes.remove(leg, remote, conn);
            }
        }
        for (socket, ..) in gw.sockets {
            self.unbind(socket);
        }
        if let Some(tcp) = gw.sip_tcp {
            self.close_sip_streams(tcp);
        }
    }

    /// A call from a gateway client that is not one of RTMP's own; true when handled.
    pub(super) fn gateway_command(&mut self, now: Instant, conn: ConnId, cmd: &Command) -> bool {
        if !self.is_gateway_conn(conn) || !GATEWAY_CALLS.contains(&cmd.name.as_str()) {
            return false;
        }
        match ClientCall::parse(&cmd.name, &cmd.args) {
            Ok(call) => {
                // Answered at once, as the original gateway did; the outcome comes as callbacks.
                let answer = Command::new("_result", cmd.transaction_id, Value::Null, vec![]);
                if let Some(session) = self.sessions.get_mut(conn) {
                    let notify = session.send_command(0, answer, cmd.amf3);
                    self.transmit_if(conn, notify);
                }
                let shared = self
                    .gateway
                    .as_ref()
                    .is_some_and(|g| g.config.shared_rtp_ports);
                let Some(gw) = self.gateway_conn(conn) else {
                    return true;
                };
                let State::Active(session) = &mut gw.state else {
                    return true;
                };
                match &mut gw.ports {
                    // What the client says while its call's ports are bound waits for them.
                    CallPorts::Binding { queued, .. } => {
                        if queued.len() < MAX_QUEUED_CALLS {
                            queued.push(call);
                        } else {
                            self.call_failed(conn, cmd);
                        }
                        return true;
                    }
                    CallPorts::Idle
                        if !shared
                            && matches!(
                                call,
                                ClientCall::Invite { .. } | ClientCall::Accept { .. }
                            )
                            && session.needs_media_ports(&call) =>
                    {
                        self.bind_call_ports(now, conn, 0, vec![call]);
                        return true;
                    }
                    _ => session.client_call(now, call),
                }
                self.gateway_pump(now, conn);
            }
            Err(_) => self.call_failed(conn, cmd),
        }
        true
    }

    /// `publish` on a gateway connection: only `local`, which feeds the call.
    pub(super) fn gateway_publish(&mut self, conn: ConnId, stream_id: u32, name: &str) -> bool {
        let Some(gw) = self.gateway_conn(conn) else {
            return false;
        };
        let (level, code) = if name == "local" {
            gw.local_stream = Some(stream_id);
            ("status", "NetStream.Publish.Start")
        } else {
            ("error", "NetStream.Publish.BadName")
        };
        if let Some(session) = self.sessions.get_mut(conn) {
            let mut notify = session.send_user_control(UserControl::StreamBegin(stream_id));
            notify |= session.send_status(stream_id, level, code, name);
            self.transmit_if(conn, notify);
        }
        true
    }

    /// `play` on a gateway connection: only `remote`, which carries the far end's media.
    pub(super) fn gateway_play(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        name: &str,
    ) -> bool {
        let Some(gw) = self.gateway_conn(conn) else {
            return false;
        };
        if name != "remote" {
            self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                name,
            );
            return true;
        }
        gw.remote_stream = Some(stream_id);
        if let State::Active(session) = &mut gw.state {
            session.remote_play_started(now);
        }
        if let Some(session) = self.sessions.get_mut(conn) {
            let mut notify = session.send_user_control(UserControl::StreamBegin(stream_id));
            notify |= session.send_status(stream_id, "status", "NetStream.Play.Reset", name);
            notify |= session.send_status(stream_id, "status", "NetStream.Play.Start", name);
            self.transmit_if(conn, notify);
        }
        true
    }

    /// Audio or video from a gateway client: to the call, if it is on `local`.
    pub(super) fn gateway_media(&mut self, now: Instant, conn: ConnId, msg: &RtmpMessage) -> bool {
        let Some(gateway) = self.gateway.as_mut() else {
            return false;
        };
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            return false;
        };
        if gw.local_stream != Some(msg.stream_id) {
            return true;
        }
        let State::Active(session) = &mut gw.state else {
            return true;
        };
        // Media from the client only turns into RTP: it moves no timer and no media address,
        // so the routes and the timer need no second look (they cost cache misses on every
        // frame of every call), and the RTP goes out from here, with no second look-up of the
        // connection.
        #[cfg(debug_assertions)]
        let before = (session.poll_timeout(), session.media_remote(Leg::Audio));
        session.client_media_into(now, msg, &mut gateway.media_rtp);
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            before,
            (session.poll_timeout(), session.media_remote(Leg::Audio)),
            "client media moved a timer or a media address"
        );
        for rtp in gateway.media_rtp.drain(..) {
            let role = Role::Rtp(rtp.leg, rtp.rtcp);
            let socket = shared_socket(gateway.shared.as_ref(), role).or_else(|| gw.socket(role));
            if let Some(socket) = socket {
                self.outputs.push_back(rtp_send(socket, rtp));
            }
        }
        true
    }

    /// An RTP or RTCP datagram for `conn`'s call: the media it makes goes to the client from
    /// here; the rest (a keyframe request, a latched address, RTCP's timers) through
    /// [`Self::gateway_pump`].
    fn far_end_datagram(
        &mut self,
        now: Instant,
        conn: ConnId,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: Bytes,
    ) {
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        let Some(gw) = gateway.conns.get_mut(&conn) else {
            return;
        };
        let session = match &mut gw.state {
            State::Active(s) | State::Lingering(s, _) => s,
            State::Binding { .. } => return,
        };
        let mut media = std::mem::take(&mut gateway.media_far);
        let settled = session_rtp(session, now, leg, rtcp, source, data, &mut media);
        let stream = gw.remote_stream;
        for item in media.drain(..) {
            match item {
                FromFarEnd::Media(frame) => {
                    if let Some(stream) = stream {
                        self.send_remote_media(conn, stream, frame);
                    }
                }
                FromFarEnd::Dtmf(digit) => {
                    let callback = GatewayOutput::Callback(ClientCallback::Dtmf(digit));
                    self.gateway_output(now, conn, callback);
                }
            }
        }
        if let Some(gateway) = self.gateway.as_mut() {
            gateway.media_far = media;
        }
        if !settled {
            self.gateway_pump(now, conn);
        }
    }

    /// The client left: end its call, unregister, keep the SIP socket for a while.
    pub(super) fn gateway_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(mut gw) = self.gateway.as_mut().and_then(|g| g.conns.remove(&conn)) else {
            return;
        };
        match gw.state {
            State::Active(mut session) => {
                session.close(now);
                gw.state = State::Lingering(session, now + LINGER);
                gw.local_stream = None;
                gw.remote_stream = None;
                // Calls that waited for ports are moot: the session has hung up.
                if let CallPorts::Binding { .. } = gw.ports {
                    gw.ports = CallPorts::Held;
                }
                if let Some(g) = self.gateway.as_mut() {
                    g.conns.insert(conn, gw);
                }
                // The media sockets go now; SIP stays for the goodbyes.
                self.release_call_ports(conn);
                self.gateway_pump(now, conn);
            }
            State::Lingering(..) => {
                if let Some(g) = self.gateway.as_mut() {
                    g.conns.insert(conn, gw);
                }
            }
            // Still binding: nothing was said on SIP yet, so everything closes now.
            State::Binding { .. } => {
                for (socket, ..) in gw.sockets {
                    self.unbind(socket);
                }
                if let Some(tcp) = gw.sip_tcp {
                    self.close_sip_streams(tcp);
                }
            }
        }
    }

    /// A gateway connection's timer fired.
    pub(super) fn gateway_timer(&mut self, now: Instant, conn: ConnId, deadline: Instant) {
        let Some(gw) = self.gateway_conn(conn) else {
            return;
        };
        if gw.next_timer != Some(deadline) {
            return; // replaced by a later one
        }
        gw.next_timer = None;
        match &mut gw.state {
            State::Active(session) => session.handle_timeout(now),
            State::Lingering(session, until) => {
                session.handle_timeout(now);
                if now >= *until {
                    self.drop_gateway(conn);
                    return;
                }
            }
            State::Binding { .. } => return,
        }
        self.gateway_pump(now, conn);
    }

    /// Carries out what a session asks for, gives back its call's ports once it has no call,
    /// and re-arms its timer.
    fn gateway_pump(&mut self, now: Instant, conn: ConnId) {
        self.gateway_outputs(now, conn);
        self.sync_routes(conn);
        let Some(gw) = self.gateway_conn(conn) else {
            return;
        };
        if let (CallPorts::Held, State::Active(session)) = (&gw.ports, &gw.state) {
            if !session.has_call() {
                self.release_call_ports(conn);
            }
        }
        let Some(gw) = self.gateway_conn(conn) else {
            return;
        };
        let next = match &mut gw.state {
            // A departed client's SIP socket goes as soon as its last transaction has ended.
            State::Lingering(s, _) if s.is_finished() => {
                self.drop_gateway(conn);
                return;
            }
            State::Active(s) => s.poll_timeout(),
            State::Lingering(s, until) => Some(s.poll_timeout().map_or(*until, |t| t.min(*until))),
            State::Binding { .. } => None,
        };
        if next.is_some() && next != gw.next_timer {
            gw.next_timer = next;
            if let Some(t) = next {
                self.timers
                    .push(std::cmp::Reverse((t, Timer::Gateway(conn.0))));
            }
        }
    }

    /// Carries out what the session of `conn` has to do (sends, callbacks, media).
    fn gateway_outputs(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(gw) = self.gateway_conn(conn) else {
                return;
            };
            let output = match &mut gw.state {
                State::Active(s) | State::Lingering(s, _) => s.poll_output(),
                State::Binding { .. } => None,
            };
            let Some(output) = output else { break };
            self.gateway_output(now, conn, output);
        }
    }

    /// Media from the far end to the client's `remote` stream `stream`.
    fn send_remote_media(&mut self, conn: ConnId, stream: u32, frame: MediaFrame) {
        let channel = if frame.type_id == type_id::VIDEO {
            csid::VIDEO
        } else {
            csid::AUDIO
        };
        self.send_media(conn, channel, stream, frame);
    }

    /// The socket `role` goes out from for `conn`: the shared one for media with shared RTP
    /// ports, else the connection's own.
    fn socket_for(&self, conn: ConnId, role: Role) -> Option<SocketId> {
        let gateway = self.gateway.as_ref()?;
        shared_socket(gateway.shared.as_ref(), role)
            .or_else(|| gateway.conns.get(&conn)?.socket(role))
    }

    fn gateway_output(&mut self, _now: Instant, conn: ConnId, output: GatewayOutput) {
        match output {
            GatewayOutput::ConnectResult(Ok(())) => {
                if let Some(cmd) = self.gateway_conn(conn).map(|g| g.connect.clone()) {
                    self.accept_connect(conn, cmd);
                }
            }
            GatewayOutput::ConnectResult(Err(reason)) => {
                if let Some(cmd) = self.gateway_conn(conn).map(|g| g.connect.clone()) {
                    self.drop_gateway(conn);
                    self.reject_connect(conn, &cmd, &reason, None);
                }
            }
            GatewayOutput::Callback(callback) => {
                let (name, args) = callback.to_call();
                let amf3 = self.gateway_conn(conn).is_some_and(|g| g.connect.amf3);
                if let Some(session) = self.sessions.get_mut(conn) {
                    let cmd = Command::new(name, 0.0, Value::Null, args);
                    let notify = session.send_command(0, cmd, amf3);
                    self.transmit_if(conn, notify);
                }
            }
            GatewayOutput::RemoteMedia(frame) => {
                if let Some(stream) = self.gateway_conn(conn).and_then(|g| g.remote_stream) {
                    self.send_remote_media(conn, stream, frame);
                }
            }
            GatewayOutput::SipSend { destination, data } => {
                if self.gateway_conn(conn).is_some_and(|g| g.sip_tcp.is_some()) {
                    self.sip_tcp_send(conn, destination, data);
                } else if let Some(socket) = self.socket_for(conn, Role::Sip) {
                    self.outputs.push_back(Output::Udp(UdpCommand::SendTo {
                        socket,
                        destination,
                        head: SmallVec::new(),
                        body: data,
                    }));
                }
            }
            GatewayOutput::Rtp(rtp) => {
                if let Some(socket) = self.socket_for(conn, Role::Rtp(rtp.leg, rtp.rtcp)) {
                    self.outputs.push_back(rtp_send(socket, rtp));
                }
            }
            GatewayOutput::Notice(message) => {
                self.outputs
                    .push_back(Output::Event(Event::Gateway { conn, message }));
            }
        }
    }
}

impl GatewayConn {
    /// The connection's own socket for `role`, if it has one.
    fn socket(&self, role: Role) -> Option<SocketId> {
        self.sockets.iter().find(|s| s.1 == role).map(|s| s.0)
    }
}

/// The shared socket for `role` (a media role), with shared RTP ports; never for SIP.
fn shared_socket(shared: Option<&SharedPorts>, role: Role) -> Option<SocketId> {
    let shared = shared?;
    let i = MEDIA_ROLES.iter().position(|r| *r == role)?;
    Some(shared.sockets[i].0)
}

/// What sends `rtp` from `socket`.
fn rtp_send(socket: SocketId, rtp: OutgoingRtp) -> Output {
    Output::Udp(UdpCommand::SendTo {
        socket,
        destination: rtp.destination,
        head: SmallVec::from_slice(&rtp.datagram.header),
        body: rtp.datagram.payload,
    })
}

/// Hands an RTP or RTCP datagram to `session`, its media for the client to `out`; true when
/// routes and timers need no second look (see [`GatewaySession::rtp_datagram`]), which debug
/// builds check.
fn session_rtp(
    session: &mut GatewaySession,
    now: Instant,
    leg: Leg,
    rtcp: bool,
    source: SocketAddr,
    data: Bytes,
    out: &mut Vec<FromFarEnd>,
) -> bool {
    #[cfg(debug_assertions)]
    let before = (session.poll_timeout(), session.media_remote(leg));
    let settled = session.rtp_datagram_into(now, leg, rtcp, source, data, out);
    #[cfg(debug_assertions)]
    if settled {
        debug_assert_eq!(
            before,
            (session.poll_timeout(), session.media_remote(leg)),
            "a settled RTP packet moved a timer or a media address"
        );
    }
    settled
}
