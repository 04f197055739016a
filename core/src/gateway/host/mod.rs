//! [`GatewayHost`]: the SIP-RTMP gateway inside a node. Connections to the gateway's
//! application (`sip` by default, `rtmp://host/sip/<user@domain>`) each get a
//! [`GatewaySession`] and the sockets it needs, asked of the driver with `Output::Udp` (and
//! `Output::Tcp` for SIP over TCP) and reported back with `Input::Udp` / `Input::Tcp`.
//!
//! The RTMP server owns the connections and hands the gateway what concerns its clients
//! through a few hooks (a `connect` to its application, the client's calls, `publish` and
//! `play`, the client's media, the connection's end, a timer, socket events); the gateway
//! owns the calls, their sockets and media routes, and asks the server for what it needs of a
//! connection through [`ToServer`] requests (see [`requests`]).
//!
//! The connect is held until the SIP socket is bound and, with a password, until the REGISTER
//! completes. Then the client's calls (`invite`, `accept`...) go to the session, its `local`
//! stream feeds the session instead of the live fan-out (never recorded, never played by
//! anyone else), and its `remote` stream carries what comes back. A call takes four RTP ports
//! when it starts and gives them back when it ends ([`port_blocks`]). When the client leaves,
//! the call is cancelled or hung up and the AOR unregistered; the SIP socket stays until no
//! transaction waits for an answer (at most [`LINGER`]).
//!
//! With SIP over TCP (`session.transport`), the client's SIP socket is a TCP listener instead
//! (its Via and Contact address), and its SIP goes over connections opened as needed; see
//! [`sip_tcp`]. SIP over TLS is the same with TLS on each connection (the gateway is the TLS
//! client; see [`sip_tcp`]).
//!
//! With `shared_rtp_ports`, a client gets no media sockets of its own: the host binds four
//! for everyone on the first connect (its SDP says their ports), sends every call's RTP from
//! them, and hands each datagram to the call [`media_routes`] names; they stay open for the
//! life of the node.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::amf::Value;
use crate::close_reason::CloseReason;
use crate::gateway::call_session::{CallView, GatewayOutput, GatewaySession};
use crate::gateway::client_api::{ClientCall, ClientCallback, ConnectRequest};
use crate::gateway::drop_notice::DropNotice;
use crate::gateway::media_bridge::{FromFarEnd, Leg, OutgoingRtp};
use crate::gateway::stats::SessionStats;
use crate::id_hash::IdHashMap;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rng::SeededRng;
use crate::rtmp::command::{status_object, Command};
use crate::rtmp::message::RtmpMessage;
use crate::tcp::{ListenerId, StreamId};
use crate::udp::{SocketId, UdpCommand, UdpEvent};

use client::{CallPorts, GatewayConn, Role, State, MEDIA_ROLES};
use media_routes::{Expect, MediaRoutes};
use port_blocks::PortBlocks;
use ports::SharedPorts;

pub use config::{GatewayNodeConfig, SipTlsSettings};
pub(crate) use requests::{RemoteMediaSink, ToServer};

mod client;
mod config;
pub(crate) mod media_routes;
pub(crate) mod port_blocks;
mod ports;
pub(crate) mod requests;
pub(crate) mod sip_tcp;

/// How long the SIP socket of a departed client stays open for its last transactions.
pub(crate) const LINGER: Duration = Duration::from_secs(32);

/// Client calls kept while a call's RTP ports are being bound (the `invite` or `accept` that
/// needs them and what follows it); more is refused with `_error`.
const MAX_QUEUED_CALLS: usize = 16;

/// The calls a gateway client may make on the gateway (everything else is RTMP's own, or
/// refused as on any connection).
const GATEWAY_CALLS: [&str; 6] = ["invite", "accept", "reject", "bye", "sendDTMF", "hold"];

/// One gateway client, as the HTTP API shows it ([`GatewayHost::client_views`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientView {
    pub conn: ConnId,
    pub aor: String,
    pub state: &'static str,
    /// Whether its address of record is registered now.
    pub registered: bool,
    pub call: Option<&'static str>,
    pub far_end: Option<SocketAddr>,
    /// Its call's direction, times, codecs and RTP.
    pub call_view: Option<CallView>,
}

/// What came of the operator's ending a client's call ([`GatewayHost::end_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndCall {
    /// The call, in this state (`outgoing`, `incoming`, `established`), is being ended.
    Ended(&'static str),
    /// The client has no call (or is not active: still binding, or gone).
    NoCall,
    /// No such client.
    NoClient,
}

/// The gateway's figures for the metrics ([`GatewayHost::stats`]): gauges read off its
/// state, and the counters of every session it has had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GatewayStats {
    /// Clients `binding`, `active`, `lingering`.
    pub clients: [u64; 3],
    /// Calls `outgoing`, `incoming`, `established`.
    pub calls: [u64; 3],
    /// Clients whose address of record is registered now.
    pub registered: u64,
    /// Every session's counts, those gone included.
    pub sessions: SessionStats,
    /// Datagrams on the shared RTP ports from sources no call expects.
    pub unrouted: u64,
}

impl GatewayStats {
    /// Adds `other` (another worker's).
    pub(crate) fn add(&mut self, other: &GatewayStats) {
        for i in 0..3 {
            self.clients[i] += other.clients[i];
            self.calls[i] += other.calls[i];
        }
        self.registered += other.registered;
        self.sessions.add(&other.sessions);
        self.unrouted += other.unrouted;
    }
}

/// The gateway of a node. See the module documentation.
///
/// Both maps are looked up for every media packet, and their keys are ids the node hands out
/// itself: they hash with [`IdHashMap`]'s multiply, not SipHash.
#[derive(Debug)]
pub(crate) struct GatewayHost {
    config: GatewayNodeConfig,
    conns: IdHashMap<ConnId, GatewayConn>,
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
    /// Each session's randomness (SSRCs, tags, branches) comes from here.
    rng: SeededRng,
    /// The counts of the sessions that have gone (see [`crate::gateway::stats`]).
    finished: SessionStats,
    /// For the driver: socket commands and log events.
    outputs: VecDeque<Output>,
    /// For the RTMP server, carried out as soon as each call into the host returns.
    requests: VecDeque<ToServer>,
    /// The node is stopping: clients that leave now refuse a ringing call as busy.
    shutting_down: bool,
}

impl GatewayHost {
    /// A gateway with `config`, its randomness from `seed`.
    pub(crate) fn new(config: GatewayNodeConfig, seed: u64) -> Self {
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
            rng: SeededRng::new(seed),
            finished: SessionStats::default(),
            outputs: VecDeque::new(),
            requests: VecDeque::new(),
            shutting_down: false,
        }
    }

    /// The next socket command or event for the driver.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next request for the RTMP server.
    pub(crate) fn pop_request(&mut self) -> Option<ToServer> {
        self.requests.pop_front()
    }

    /// The gateway's application (`sip` by default).
    pub(crate) fn app(&self) -> &str {
        &self.config.app
    }

    /// Whether `app` (from connect) belongs to the gateway.
    pub(crate) fn owns_app(&self, app: &str) -> bool {
        app == self.config.app
            || app
                .strip_prefix(self.config.app.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Every client, for the HTTP API and the metrics: its connection, address of record,
    /// state (`binding`, `active`, `lingering`), its call's state if it has one, and the call's
    /// far end (its audio media address) while it has media.
    pub(crate) fn client_views(&self) -> Vec<ClientView> {
        let mut views: Vec<ClientView> = self
            .conns
            .iter()
            .map(|(conn, g)| {
                let (state, session) = match &g.state {
                    State::Binding { .. } => ("binding", None),
                    State::Active(s) => ("active", Some(s)),
                    State::Lingering(s, _) => ("lingering", Some(s)),
                };
                ClientView {
                    conn: *conn,
                    aor: g.aor.clone(),
                    state,
                    registered: session.is_some_and(|s| s.registered()),
                    call: session.and_then(|s| s.call_state()),
                    far_end: session
                        .and_then(|s| s.media_remote(crate::gateway::media_bridge::Leg::Audio)),
                    call_view: session.and_then(|s| s.call_view()),
                }
            })
            .collect();
        views.sort_by_key(|v| v.conn);
        views
    }

    /// The figures of the metrics: one walk over the clients, each session's plain counters
    /// summed (nothing is counted here that a packet pays for twice).
    pub(crate) fn stats(&self) -> GatewayStats {
        let mut stats = GatewayStats {
            sessions: self.finished,
            unrouted: self.unrouted.0,
            ..GatewayStats::default()
        };
        for g in self.conns.values() {
            let session = match &g.state {
                State::Binding { .. } => {
                    stats.clients[0] += 1;
                    continue;
                }
                State::Active(s) => {
                    stats.clients[1] += 1;
                    s
                }
                State::Lingering(s, _) => {
                    stats.clients[2] += 1;
                    s
                }
            };
            match session.call_state() {
                Some("outgoing") => stats.calls[0] += 1,
                Some("incoming") => stats.calls[1] += 1,
                Some(_) => stats.calls[2] += 1,
                None => {}
            }
            stats.registered += u64::from(session.registered());
            stats.sessions.add(&session.stats());
        }
        stats
    }

    /// A client's session is going: its counts join those of the sessions gone.
    fn keep_counts(&mut self, gw: &GatewayConn) {
        if let State::Active(s) | State::Lingering(s, _) = &gw.state {
            self.finished.add(&s.stats());
        }
    }

    /// Whether `conn` is a client of the gateway (from its `connect` on).
    pub(crate) fn is_client(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// A `connect` to the gateway's application from `peer`: parsed, checked against the
    /// limits, and held until the client's SIP socket is bound (and its REGISTER, if any,
    /// completed). False when `app` is not the gateway's.
    pub(crate) fn connect(&mut self, conn: ConnId, peer: IpAddr, app: &str, cmd: Command) -> bool {
        if !self.owns_app(app) {
            return false;
        }
        let request = match ConnectRequest::parse(app, &cmd.args) {
            Ok(r) => r,
            Err(e) => {
                self.reject(conn, cmd, e.to_string());
                return true;
            }
        };
        let aor = request.aor.to_ascii_lowercase();
        let older: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(c, g)| {
                **c != conn && g.aor == aor && !matches!(g.state, State::Lingering(..))
            })
            .map(|(c, _)| *c)
            .collect();
        if !older.is_empty() && !self.config.replace_existing {
            self.reject(conn, cmd, format!("486 {aor} is already connected"));
            return true;
        }
        if let Some(reason) = self.over_limit(peer, older.len()) {
            self.reject(conn, cmd, reason);
            return true;
        }
        for old in older {
            let reason = CloseReason::ReplacedByNewer { aor: aor.clone() };
            self.requests
                .push_back(ToServer::Close { conn: old, reason });
        }
        self.conns
            .insert(conn, GatewayConn::new(request, cmd, aor, peer));
        self.bind_sip(conn);
        true
    }

    /// Why a client from `peer` may not connect now (the gateway's limits, counting the
    /// `replaced` connections it takes over, which free their place only once their SIP is
    /// done).
    fn over_limit(&self, peer: IpAddr, replaced: usize) -> Option<String> {
        let (total, from_ip) = self.conns.values().fold((0, 0), |(total, from_ip), g| {
            (total + 1, from_ip + usize::from(g.ip == peer))
        });
        let (max, max_per_ip) = (self.config.max_clients, self.config.max_clients_per_ip);
        if max > 0 && total >= max + replaced {
            Some(format!("503 the gateway has its {max} clients"))
        } else if max_per_ip > 0 && from_ip >= max_per_ip + replaced {
            Some(format!("503 {peer} has its {max_per_ip} gateway clients"))
        } else {
            None
        }
    }

    /// Refuses `conn`'s connect with `reason` and forgets it.
    fn reject(&mut self, conn: ConnId, cmd: Command, reason: String) {
        self.requests.push_back(ToServer::RejectConnect {
            conn,
            cmd: Box::new(cmd),
            reason,
        });
    }

    /// Sends `cmd` to `conn` (AMF3 if `amf3`).
    fn send_command(&mut self, conn: ConnId, cmd: Command, amf3: bool) {
        let cmd = Box::new(cmd);
        self.requests
            .push_back(ToServer::Command { conn, cmd, amf3 });
    }

    /// A call from a client that is not one of RTMP's own; true when handled.
    pub(crate) fn command(&mut self, now: Instant, conn: ConnId, cmd: &Command) -> bool {
        if !self.is_client(conn) || !GATEWAY_CALLS.contains(&cmd.name.as_str()) {
            return false;
        }
        let Ok(call) = ClientCall::parse(&cmd.name, &cmd.args) else {
            self.call_failed(conn, cmd);
            return true;
        };
        // Answered at once, as the original gateway did; the outcome comes as callbacks.
        let answer = Command::new("_result", cmd.transaction_id, Value::Null, vec![]);
        self.send_command(conn, answer, cmd.amf3);
        let shared = self.config.shared_rtp_ports;
        let Some(gw) = self.conns.get_mut(&conn) else {
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
            CallPorts::Idle if !shared && session.needs_media_ports(&call) => {
                self.bind_call_ports(now, conn, 0, vec![call]);
                return true;
            }
            _ => {
                // The client ending its call is told no callback; the phase is told here.
                let ended = match &call {
                    ClientCall::Bye => Some("bye from client"),
                    ClientCall::Reject { .. } => Some("rejected by client"),
                    _ => None,
                };
                session.client_call(now, call);
                if let Some(reason) = ended {
                    let phase = crate::io::CallPhase::Ended {
                        reason: reason.into(),
                    };
                    self.outputs
                        .push_back(Output::Event(Event::GatewayCall { conn, phase }));
                }
            }
        }
        self.pump(now, conn);
        true
    }

    /// The operator ends `conn`'s call (the HTTP API's `end`; see
    /// [`GatewaySession::end_call`]): the client hears it as when the far end ends a call,
    /// and the call's end is told with reason `ended by operator`.
    pub(crate) fn end_call(&mut self, now: Instant, conn: ConnId) -> EndCall {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return EndCall::NoClient;
        };
        let State::Active(session) = &mut gw.state else {
            // Binding: no call yet; lingering: the client left and its call ended with it.
            return EndCall::NoCall;
        };
        let Some(state) = session.call_state() else {
            return EndCall::NoCall;
        };
        let Some(callback) = session.end_call(now) else {
            return EndCall::NoCall;
        };
        let amf3 = gw.connect.amf3;
        let (name, args) = callback.to_call();
        self.send_command(conn, Command::new(name, 0.0, Value::Null, args), amf3);
        let phase = crate::io::CallPhase::Ended {
            reason: "ended by operator".into(),
        };
        self.outputs
            .push_back(Output::Event(Event::GatewayCall { conn, phase }));
        self.pump(now, conn);
        EndCall::Ended(state)
    }

    /// `_error` for a call that cannot be made.
    fn call_failed(&mut self, conn: ConnId, cmd: &Command) {
        let info = status_object(
            "error",
            "NetConnection.Call.Failed",
            &format!("Method not found ({}).", cmd.name),
        );
        let error = Command::new("_error", cmd.transaction_id, Value::Null, vec![info]);
        self.send_command(conn, error, cmd.amf3);
    }

    /// `publish` on a client's connection: only `local`, which feeds the call. False when
    /// `conn` is not a client.
    pub(crate) fn publish(&mut self, conn: ConnId, stream_id: u32, name: &str) -> bool {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return false;
        };
        let (level, code): (_, &'static [&'static str]) = if name == "local" {
            gw.local_stream = Some(stream_id);
            ("status", &["NetStream.Publish.Start"])
        } else {
            ("error", &["NetStream.Publish.BadName"])
        };
        self.requests.push_back(ToServer::Status {
            conn,
            stream_id,
            begin: true,
            level,
            codes: code,
            description: name.to_owned(),
        });
        true
    }

    /// `play` on a client's connection: only `remote`, which carries the far end's media.
    /// False when `conn` is not a client.
    pub(crate) fn play(&mut self, now: Instant, conn: ConnId, stream_id: u32, name: &str) -> bool {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return false;
        };
        if name != "remote" {
            self.requests.push_back(ToServer::Status {
                conn,
                stream_id,
                begin: false,
                level: "error",
                codes: &["NetStream.Play.StreamNotFound"],
                description: name.to_owned(),
            });
            return true;
        }
        gw.remote_stream = Some(stream_id);
        if let State::Active(session) = &mut gw.state {
            session.remote_play_started(now);
        }
        self.requests.push_back(ToServer::Status {
            conn,
            stream_id,
            begin: true,
            level: "status",
            codes: &["NetStream.Play.Reset", "NetStream.Play.Start"],
            description: name.to_owned(),
        });
        true
    }

    /// Audio or video from a client: to its call, if it is on `local`. False when `conn` is
    /// not a client (its media is the live server's).
    pub(crate) fn client_media(&mut self, now: Instant, conn: ConnId, msg: &RtmpMessage) -> bool {
        let Some(gw) = self.conns.get_mut(&conn) else {
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
        session.client_media(now, msg, &mut self.media_rtp);
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            before,
            (session.poll_timeout(), session.media_remote(Leg::Audio)),
            "client media moved a timer or a media address"
        );
        pop_order(&mut self.media_rtp);
        while let Some(rtp) = self.media_rtp.pop() {
            let role = Role::Rtp {
                leg: rtp.leg,
                rtcp: rtp.rtcp,
            };
            let socket =
                ports::shared_socket(self.shared.as_ref(), role).or_else(|| gw.socket(role));
            if let Some(socket) = socket {
                self.outputs.push_back(rtp_send(socket, rtp));
            }
        }
        true
    }

    /// An RTP or RTCP datagram for `conn`'s call: the media it makes goes to the client from
    /// here; the rest (a keyframe request, a latched address, RTCP's timers) through
    /// [`Self::pump`].
    // Once per datagram: inlined into its two callers (per-call and shared ports).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn far_end_datagram(
        &mut self,
        now: Instant,
        conn: ConnId,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: Bytes,
        sink: &mut impl RemoteMediaSink,
    ) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(session) = gw.state.session() else {
            return;
        };
        let settled = session_rtp(session, now, leg, rtcp, source, data, &mut self.media_far);
        let stream = gw.remote_stream;
        pop_order(&mut self.media_far);
        while let Some(item) = self.media_far.pop() {
            match item {
                FromFarEnd::Media(frame) => {
                    if let Some(stream_id) = stream {
                        sink.remote_media(conn, stream_id, frame);
                    }
                }
                FromFarEnd::Dtmf(digit) => {
                    let (name, args) = ClientCallback::Dtmf(digit).to_call();
                    let cmd = Box::new(Command::new(name, 0.0, Value::Null, args));
                    let amf3 = gw.connect.amf3;
                    self.requests
                        .push_back(ToServer::Command { conn, cmd, amf3 });
                }
            }
        }
        if !settled {
            self.pump(now, conn);
        }
    }

    /// The client left: end its call, unregister, keep the SIP socket for a while.
    pub(crate) fn closed(&mut self, now: Instant, conn: ConnId) {
        let Some(mut gw) = self.conns.remove(&conn) else {
            return;
        };
        match gw.state {
            State::Active(mut session) => {
                if self.shutting_down {
                    session.shut_down(now);
                } else {
                    session.close(now);
                }
                gw.state = State::Lingering(session, now + LINGER);
                gw.local_stream = None;
                gw.remote_stream = None;
                // Calls that waited for ports are moot: the session has hung up.
                if let CallPorts::Binding { .. } = gw.ports {
                    gw.ports = CallPorts::Held;
                }
                self.conns.insert(conn, gw);
                // The media sockets go now; SIP stays for the goodbyes.
                self.release_call_ports(conn);
                self.pump(now, conn);
            }
            State::Lingering(..) => {
                self.conns.insert(conn, gw);
            }
            // Still binding: nothing was said on SIP yet, so everything closes now.
            State::Binding { .. } => {
                for socket in &gw.sockets {
                    self.unbind(socket.id);
                }
                if let CallPorts::Binding { .. } | CallPorts::Held = gw.ports {
                    self.blocks.release(gw.base_port);
                }
                if let Some(tcp) = gw.sip_tcp {
                    self.close_sip_streams(tcp);
                }
            }
        }
    }

    /// The node begins a graceful stop; its clients are closed next (see
    /// `server::shutdown`).
    pub(crate) fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Clients held in any state, those whose SIP socket lingers for their goodbyes'
    /// answers included: none left means the gateway has nothing more to say.
    pub(crate) fn client_count(&self) -> usize {
        self.conns.len()
    }

    /// A client's timer (asked for with [`ToServer::Timer`]) fired at `deadline`.
    pub(crate) fn timer(&mut self, now: Instant, conn: ConnId, deadline: Instant) {
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        if gw.next_timer != Some(deadline) {
            return; // replaced by a later one
        }
        gw.next_timer = None;
        if self.expire_sip_handshakes(now, conn) {
            // Their transactions failed, which may have ended a lingering session.
            if !self.conns.contains_key(&conn) {
                return;
            }
        }
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut gw.state {
            State::Active(session) => session.handle_timeout(now),
            State::Lingering(session, until) => {
                session.handle_timeout(now);
                if now >= *until {
                    self.drop_client(conn);
                    return;
                }
            }
            State::Binding { .. } => return,
        }
        self.pump(now, conn);
    }

    /// Input from the driver about a UDP socket; the far end's media it makes goes to `sink`.
    pub(crate) fn udp(&mut self, now: Instant, event: UdpEvent, sink: &mut impl RemoteMediaSink) {
        let socket = match &event {
            UdpEvent::Bound { socket, .. } | UdpEvent::Datagram { socket, .. } => *socket,
        };
        if let Some((index, role)) = self.shared.as_ref().and_then(|s| s.role(socket)) {
            self.shared_udp(now, index, role, event, sink);
            return;
        }
        let Some(&(conn, role)) = self.sockets.get(&socket) else {
            return;
        };
        match event {
            UdpEvent::Bound { result, .. } => self.socket_bound(now, conn, socket, result),
            UdpEvent::Datagram { source, data, .. } => match role {
                Role::Sip => {
                    let Some(session) = self.conns.get_mut(&conn).and_then(|g| g.state.session())
                    else {
                        return;
                    };
                    session.sip_datagram(now, source, data);
                    self.pump(now, conn);
                }
                Role::Rtp { leg, rtcp } => {
                    self.far_end_datagram(now, conn, leg, rtcp, source, data, sink);
                }
            },
        }
    }

    /// With shared RTP ports: points the routes at where `conn`'s call now expects media
    /// from and what SSRCs it takes (nowhere once the call or the client is gone).
    fn sync_routes(&mut self, conn: ConnId) {
        if !self.config.shared_rtp_ports {
            return;
        }
        let Some(gw) = self.conns.get(&conn) else {
            return;
        };
        let mut wanted = [None; 2];
        let mut peer = None;
        if let State::Active(session) = &gw.state {
            for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
                let Some(remote) = session.media_remote(leg) else {
                    continue;
                };
                wanted[i] = Some(match self.own_media_address(leg, remote) {
                    // A call to another client of ours: its media comes from our own port.
                    Some(own) => {
                        peer = peer.or_else(|| self.hairpin_peer(conn, gw.hairpin_peer));
                        let ssrc = peer.and_then(|(_, p)| match &self.conns.get(&p?)?.state {
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
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        gw.hairpin_peer = peer;
        for (i, leg) in [Leg::Audio, Leg::Video].into_iter().enumerate() {
            if gw.routed[i] != wanted[i] {
                if let Some((old, _)) = gw.routed[i] {
                    self.routes.remove(leg, old, conn);
                }
                if let Some((new, expect)) = wanted[i] {
                    self.routes.insert(leg, new, conn, expect);
                }
                gw.routed[i] = wanted[i];
            }
        }
    }

    /// With shared RTP ports, when `remote` (a call's media address from SDP) is the shared
    /// RTP port of `leg` itself (as bound, or as advertised): that port's bound address.
    fn own_media_address(&self, leg: Leg, remote: SocketAddr) -> Option<SocketAddr> {
        let index = MEDIA_ROLES
            .iter()
            .position(|r| *r == Role::Rtp { leg, rtcp: false })?;
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

    /// Carries out what a session asks for, gives back its call's ports once it has no call,
    /// and re-arms its timer.
    fn pump(&mut self, now: Instant, conn: ConnId) {
        self.session_outputs(conn);
        // Failing what waited on a TLS connection that could not start makes more outputs.
        while self.report_sip_tls_failures(now, conn) {
            self.session_outputs(conn);
        }
        self.sync_routes(conn);
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        if let (CallPorts::Held, State::Active(session)) = (&gw.ports, &gw.state) {
            if !session.has_call() {
                self.release_call_ports(conn);
            }
        }
        let Some(gw) = self.conns.get_mut(&conn) else {
            return;
        };
        let next = match &mut gw.state {
            // A departed client's SIP socket goes as soon as its last transaction has ended.
            State::Lingering(s, _) if s.is_finished() => {
                self.drop_client(conn);
                return;
            }
            State::Active(s) => s.poll_timeout(),
            State::Lingering(s, until) => Some(s.poll_timeout().map_or(*until, |t| t.min(*until))),
            State::Binding { .. } => None,
        };
        // TLS handshakes under way have a deadline of their own.
        let handshakes = match (&self.config.sip_tls, gw.sip_tcp.as_mut()) {
            (Some(tls), Some(tcp)) => tcp.arm_handshakes(now, tls.handshake_timeout),
            _ => None,
        };
        let next = match (next, handshakes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if next.is_some() && next != gw.next_timer {
            gw.next_timer = next;
            if let Some(at) = next {
                self.requests.push_back(ToServer::Timer { conn, at });
            }
        }
    }

    /// Carries out what the session of `conn` has to do (sends, callbacks, media).
    fn session_outputs(&mut self, conn: ConnId) {
        loop {
            let Some(output) = self
                .conns
                .get_mut(&conn)
                .and_then(|g| g.state.session())
                .and_then(GatewaySession::poll_output)
            else {
                break;
            };
            self.session_output(conn, output);
        }
    }

    /// The socket `role` goes out from for `conn`: the shared one for media with shared RTP
    /// ports, else the connection's own.
    fn socket_for(&self, conn: ConnId, role: Role) -> Option<SocketId> {
        ports::shared_socket(self.shared.as_ref(), role)
            .or_else(|| self.conns.get(&conn)?.socket(role))
    }

    fn session_output(&mut self, conn: ConnId, output: GatewayOutput) {
        match output {
            GatewayOutput::ConnectResult(Ok(())) => {
                if let Some(cmd) = self.conns.get(&conn).map(|g| g.connect.clone()) {
                    let cmd = Box::new(cmd);
                    self.requests
                        .push_back(ToServer::AcceptConnect { conn, cmd });
                }
            }
            GatewayOutput::ConnectResult(Err(reason)) => {
                if let Some(cmd) = self.conns.get(&conn).map(|g| g.connect.clone()) {
                    self.drop_client(conn);
                    self.reject(conn, cmd, reason);
                }
            }
            GatewayOutput::Callback(callback) => {
                if let Some(phase) = call_phase(&callback) {
                    self.outputs
                        .push_back(Output::Event(Event::GatewayCall { conn, phase }));
                }
                let (name, args) = callback.to_call();
                let amf3 = self.conns.get(&conn).is_some_and(|g| g.connect.amf3);
                self.send_command(conn, Command::new(name, 0.0, Value::Null, args), amf3);
            }
            GatewayOutput::RemoteMedia(frame) => {
                if let Some(stream_id) = self.conns.get(&conn).and_then(|g| g.remote_stream) {
                    self.requests.push_back(ToServer::Media {
                        conn,
                        stream_id,
                        frame,
                    });
                }
            }
            GatewayOutput::SipSend { destination, data } => {
                if self.conns.get(&conn).is_some_and(|g| g.sip_tcp.is_some()) {
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
                let role = Role::Rtp {
                    leg: rtp.leg,
                    rtcp: rtp.rtcp,
                };
                if let Some(socket) = self.socket_for(conn, role) {
                    self.outputs.push_back(rtp_send(socket, rtp));
                }
            }
            GatewayOutput::Notice(message) => {
                self.outputs
                    .push_back(Output::Event(Event::Gateway { conn, message }));
            }
        }
    }

    /// Whether SIP goes over connections (TCP or TLS).
    fn tcp(&self) -> bool {
        self.config.session.transport.is_reliable()
    }
}

/// Reverses `items` so that popping them takes them in their order, leaving the buffer empty
/// (its allocation kept). For the one item a media packet usually makes, nothing is moved and
/// each pop is a length check: cheaper than setting up and dropping a `Drain` per packet.
#[inline]
fn pop_order<T>(items: &mut [T]) {
    if items.len() > 1 {
        items.reverse();
    }
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
    let settled = session.rtp_datagram(now, leg, rtcp, source, data, out);
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

/// The call phase a callback to the client tells, if any (for [`Event::GatewayCall`]).
fn call_phase(callback: &ClientCallback) -> Option<crate::io::CallPhase> {
    use crate::io::CallPhase;
    Some(match callback {
        ClientCallback::Invited { from, to } => CallPhase::Invited {
            from: from.clone(),
            to: to.clone(),
        },
        ClientCallback::Accepted { .. } => CallPhase::Established,
        ClientCallback::Rejected(reason) => CallPhase::Ended {
            reason: reason.clone(),
        },
        ClientCallback::Cancelled { .. } => CallPhase::Ended {
            reason: "cancelled".into(),
        },
        ClientCallback::Byed => CallPhase::Ended {
            reason: "bye".into(),
        },
        _ => return None,
    })
}
