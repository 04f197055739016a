//! [`GatewayConn`]: what the gateway keeps for one client (one RTMP connection to its
//! application): the session, the client's streams, its sockets and what each is for, its
//! call's RTP ports and routes.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::gateway::call_session::GatewaySession;
use crate::gateway::client_api::{ClientCall, ConnectRequest};
use crate::gateway::media_bridge::Leg;
use crate::ids::ConnId;
use crate::rtmp::command::Command;
use crate::udp::SocketId;

use super::media_routes::Expect;
use super::sip_tcp::SipStreams;

/// What a socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Sip,
    Rtp { leg: Leg, rtcp: bool },
}

/// The four media roles, in the order of a block of ports (audio RTP, audio RTCP, video RTP,
/// video RTCP).
pub(super) const MEDIA_ROLES: [Role; 4] = [
    Role::Rtp {
        leg: Leg::Audio,
        rtcp: false,
    },
    Role::Rtp {
        leg: Leg::Audio,
        rtcp: true,
    },
    Role::Rtp {
        leg: Leg::Video,
        rtcp: false,
    },
    Role::Rtp {
        leg: Leg::Video,
        rtcp: true,
    },
];

#[derive(Debug)]
pub(super) enum State {
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

impl State {
    /// The session, once it runs (and while it lingers).
    pub(super) fn session(&mut self) -> Option<&mut GatewaySession> {
        match self {
            State::Active(s) | State::Lingering(s, _) => Some(s),
            State::Binding { .. } => None,
        }
    }
}

/// A connection's own RTP ports (without shared ports): taken for a call, given back after it.
#[derive(Debug)]
pub(super) enum CallPorts {
    /// None held.
    Idle,
    /// A block is being bound; `queued` are the client's calls waiting for it (the `invite` or
    /// `accept` that needs the ports first), passed on in order once it is bound.
    Binding { tries: u32, queued: Vec<ClientCall> },
    /// The block from the connection's `base_port` is bound.
    Held,
}

/// One socket of a client: its id, what it is for, and its address once bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientSocket {
    pub id: SocketId,
    pub role: Role,
    pub bound: Option<SocketAddr>,
}

/// One gateway client.
///
/// In the order written: what every media packet reads (the state, the streams, the
/// sockets) comes first, next to the map's key, in one cache line.
#[derive(Debug)]
#[repr(C)]
pub(super) struct GatewayConn {
    pub state: State,
    pub local_stream: Option<u32>,
    pub remote_stream: Option<u32>,
    pub sockets: Vec<ClientSocket>,
    pub connect: Command,
    /// The first of the connection's own RTP ports, while it has them (see `ports`).
    pub base_port: u16,
    pub ports: CallPorts,
    /// The client's IP address (for the per-address limit).
    pub ip: IpAddr,
    /// The deadline of the connection's live timer entry.
    pub next_timer: Option<Instant>,
    /// The address of record, lower-cased: one live connection per address.
    pub aor: String,
    /// SIP over TCP: the listener and connections (`None` over UDP).
    pub sip_tcp: Option<SipStreams>,
    /// SIP over TLS: destinations a connection to which could not even start (no TLS
    /// settings, a bad name), and why; reported to the session at its next pump.
    pub sip_tls_failures: Vec<(SocketAddr, String)>,
    /// With shared RTP ports: the address (audio, video) this connection's call is routed
    /// from in the host's routes, and what it takes from there.
    pub routed: [Option<(SocketAddr, Expect)>; 2],
    /// With shared RTP ports, when the call's media is addressed to our own shared port: the
    /// SDP session id of its far end and the client of ours that has it, if any (looked for
    /// once per session id, so a far end that is not ours costs no scan per packet).
    pub hairpin_peer: Option<(u64, Option<ConnId>)>,
}

impl GatewayConn {
    /// A client whose `connect` (`cmd`, parsed as `request`) waits for its sockets.
    pub(crate) fn new(request: ConnectRequest, cmd: Command, aor: String, ip: IpAddr) -> Self {
        Self {
            state: State::Binding {
                request: Box::new(request),
            },
            local_stream: None,
            remote_stream: None,
            sockets: Vec::new(),
            connect: cmd,
            base_port: 0,
            ports: CallPorts::Idle,
            ip,
            next_timer: None,
            aor,
            sip_tcp: None,
            sip_tls_failures: Vec::new(),
            routed: [None; 2],
            hairpin_peer: None,
        }
    }

    /// The connection's own socket for `role`, if it has one.
    pub(crate) fn socket(&self, role: Role) -> Option<SocketId> {
        self.sockets.iter().find(|s| s.role == role).map(|s| s.id)
    }

    /// Whether the client's call has its four RTP sockets bound.
    pub(crate) fn media_bound(&self) -> bool {
        let mut media = self.sockets.iter().filter(|s| s.role != Role::Sip);
        media.clone().count() == 4 && media.all(|s| s.bound.is_some())
    }
}
