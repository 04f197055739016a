//! [`GatewayNodeConfig`]: the gateway's settings in the node: its application, where its
//! sockets bind, its RTP ports, its limits, and the settings of each client's session.

use std::net::IpAddr;

use crate::gateway::call_session::GatewayConfig;

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
