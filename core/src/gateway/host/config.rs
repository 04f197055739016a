//! [`GatewayNodeConfig`]: the gateway's settings in the node: its application, where its
//! sockets bind, its RTP ports, its limits, and the settings of each client's session.

use std::net::IpAddr;
use std::time::Duration;

use crate::gateway::call_session::GatewayConfig;
use crate::tls::rustls::pki_types::ServerName;
use crate::tls::ClientTlsConfig;

/// How the gateway's SIP over TLS connections verify the server (`session.transport =
/// Tls`). The roots are read by the embedder; the node does no file I/O.
#[derive(Debug, Clone)]
pub struct SipTlsSettings {
    /// The rustls client configuration: the roots (the system's, or a configured CA) and
    /// the crypto provider.
    pub client: ClientTlsConfig,
    /// The name the registrar's and the outbound proxy's certificates must be for (their
    /// host name as configured, or `sip_tls_server_name`). `None`, and for every other
    /// destination (a call target by address): the destination's IP address.
    pub server_name: Option<ServerName<'static>>,
    /// How long a TLS handshake may take from the connect; past it the connection is closed
    /// and what waited on it fails.
    pub handshake_timeout: Duration,
}

impl SipTlsSettings {
    /// Settings with `client`, no configured name, a 10 s handshake timeout.
    pub fn new(client: ClientTlsConfig) -> Self {
        Self {
            client,
            server_name: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

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
    /// Registrar, proxy, `--ext-ip`, timers, SIP transport (UDP, TCP or TLS)...
    pub session: GatewayConfig,
    /// SIP over TLS's certificate verification; a client of a gateway whose transport is
    /// TLS and that has none is refused (`503`).
    pub sip_tls: Option<SipTlsSettings>,
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

impl GatewayNodeConfig {
    /// The settings of worker `index` of `count` (`--workers`): every worker's node runs a
    /// gateway of its own on the same address, so each takes its own contiguous slice of
    /// `rtp_ports` (whole four-port blocks; the last worker also takes what is left), and the
    /// client limits are shared out so that all workers together admit what one node would.
    /// Without slices the workers bind each other's ports and calls fail with `503 cannot
    /// bind RTP ports`.
    ///
    /// ```
    /// use siprtmp_core::node::GatewayNodeConfig;
    ///
    /// let one = GatewayNodeConfig::default(); // ports 16000-17999, 4096 clients
    /// let first = one.worker_share(0, 2);
    /// let second = one.worker_share(1, 2);
    /// assert_eq!((first.rtp_ports, second.rtp_ports), ((16000, 16999), (17000, 17999)));
    /// assert_eq!(first.max_clients + second.max_clients, 4096);
    /// ```
    pub fn worker_share(&self, index: usize, count: usize) -> Self {
        let count = count.max(1);
        let index = index.min(count - 1);
        let mut share = self.clone();
        let first = self.rtp_ports.0 & !1;
        let blocks = (usize::from(self.rtp_ports.1) + 1).saturating_sub(usize::from(first)) / 4;
        let per_worker = blocks / count;
        let lo = usize::from(first) + 4 * per_worker * index;
        let hi = if index + 1 == count {
            usize::from(self.rtp_ports.1)
        } else {
            (lo + 4 * per_worker).saturating_sub(1)
        };
        // Fewer blocks than workers: the slice is empty (lo > hi), and that worker's calls
        // are refused as when the range is used up.
        share.rtp_ports = (
            u16::try_from(lo).unwrap_or(u16::MAX),
            u16::try_from(hi).unwrap_or(u16::MAX),
        );
        let split = |limit: usize| match limit {
            0 => 0, // no limit stays no limit
            n => (n / count + usize::from(index < n % count)).max(1),
        };
        share.max_clients = split(self.max_clients);
        share.max_clients_per_ip = split(self.max_clients_per_ip);
        share
    }
}

impl Default for GatewayNodeConfig {
    fn default() -> Self {
        Self {
            app: "sip".into(),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            rtp_ports: (16000, 17999),
            shared_rtp_ports: false,
            session: GatewayConfig::default(),
            sip_tls: None,
            replace_existing: true,
            max_clients: 4096,
            max_clients_per_ip: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The workers' slices never overlap, stay inside the range, and cover every block
        /// of it; their client limits add up to the node's.
        #[test]
        fn worker_slices_partition_the_range(
            lo in 1024u16..60000,
            len in 0u16..5000,
            count in 1usize..16,
            max_clients in 0usize..10000,
        ) {
            let mut config = GatewayNodeConfig {
                rtp_ports: (lo, lo.saturating_add(len)),
                max_clients,
                ..GatewayNodeConfig::default()
            };
            config.max_clients_per_ip = max_clients / 3;
            let shares: Vec<_> = (0..count).map(|i| config.worker_share(i, count)).collect();
            let blocks = |c: &GatewayNodeConfig| {
                let first = c.rtp_ports.0 & !1;
                (u32::from(c.rtp_ports.1) + 1).saturating_sub(u32::from(first)) / 4
            };
            let total: u32 = shares.iter().map(blocks).sum();
            prop_assert_eq!(total, blocks(&config));
            for pair in shares.windows(2) {
                if blocks(&pair[0]) > 0 && blocks(&pair[1]) > 0 {
                    prop_assert!(pair[0].rtp_ports.1 < pair[1].rtp_ports.0);
                }
            }
            for s in &shares {
                if blocks(s) > 0 {
                    prop_assert!(s.rtp_ports.0 >= config.rtp_ports.0 & !1);
                    prop_assert!(s.rtp_ports.1 <= config.rtp_ports.1);
                    prop_assert_eq!(s.rtp_ports.0 % 4, (config.rtp_ports.0 & !1) % 4);
                }
            }
            if max_clients >= count {
                prop_assert_eq!(shares.iter().map(|s| s.max_clients).sum::<usize>(), max_clients);
            }
            if max_clients == 0 {
                prop_assert!(shares.iter().all(|s| s.max_clients == 0));
            }
        }
    }
}
