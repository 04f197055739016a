//! The SIP-RTMP gateway's settings: the `[gateway]` section of the config file, the flags
//! that override it (`--gateway`/`--no-gateway`, `--int-ip`, `--ext-ip`, `--registrar`,
//! `--proxy`, `--rtp-ports`, `--shared-rtp-ports`, `--sip-transport`, `--rtp-source`), and the
//! default local address.
//!
//! The gateway is on by default: it needs no setup, and opens sockets only for clients that
//! connect to its application (`sip`). Its SIP and RTP sockets bind on `--int-ip`, which is
//! also the address Via, Contact and SDP carry unless `--ext-ip` says otherwise (behind NAT).
//! Without `--int-ip`, the address is the one this machine would send from towards the
//! registrar or outbound proxy when one is set, else towards the Internet (the machine's
//! primary address), else 127.0.0.1; finding it is a routing lookup (`connect` on a UDP
//! socket), no packet is sent. `--int-ip 0.0.0.0` (or `::`) binds every local address; what
//! is advertised is then `--ext-ip`, or else that routed address, never the wildcard (which
//! SDP would read as "on hold").
//!
//! | `--int-ip` | `--ext-ip` | binds on | Via, Contact, SDP say |
//! |---|---|---|---|
//! | - | - | routed address | routed address |
//! | A | - | A | A |
//! | - | E | routed address | E |
//! | A | E | A | E |
//! | 0.0.0.0 | - | every address | routed address |
//! | 0.0.0.0 | E | every address | E |
//!
//! SIP goes over UDP by default; with `transport = "tcp"` (`--sip-transport tcp`) each client
//! listens for SIP on a TCP port of its own on `--int-ip` and opens TCP connections to its
//! registrar, proxy and call targets; RTP stays on UDP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use serde::Deserialize;
use siprtmp_core::gateway::call_session::GatewayConfig;
use siprtmp_core::rtp::SourcePolicy;
use siprtmp_core::server::GatewayNodeConfig;
use siprtmp_core::sip::Transport;

/// The SIP port when `HOST` is given without one.
const SIP_PORT: u16 = 5060;

/// `[gateway]`: every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// `false` turns the gateway off (default on).
    pub enabled: Option<bool>,
    /// RTMP application of the gateway (default `sip`).
    pub app: Option<String>,
    /// Local address for SIP and RTP sockets (`--int-ip`).
    pub int_ip: Option<IpAddr>,
    /// Address advertised in SIP and SDP instead (`--ext-ip`).
    pub ext_ip: Option<IpAddr>,
    /// `HOST[:PORT]` of the registrar (`--registrar`).
    pub registrar: Option<String>,
    /// `HOST[:PORT]` of the outbound proxy (`--proxy`).
    pub proxy: Option<String>,
    /// `LO-HI`, the RTP port range (`--rtp-ports`), four ports per client.
    pub rtp_ports: Option<String>,
    /// Every call's media on the same four ports, the first free block of the range
    /// (`--shared-rtp-ports`, default false).
    pub shared_rtp_ports: Option<bool>,
    /// REGISTER lifetime asked for, seconds (default 3600).
    pub register_expires: Option<u32>,
    /// Largest RTP payload for video, bytes (default 1200).
    pub mtu: Option<usize>,
    /// A newer connection for an address of record replaces the older one (default true);
    /// false refuses the newer one.
    pub replace_existing: Option<bool>,
    /// What SIP goes over: `udp` (default) or `tcp` (`--sip-transport`).
    pub transport: Option<String>,
    /// Where a call's media is accepted from besides its SDP's address: `strict`,
    /// `learn-port` (default) or `learn-any` (`--rtp-source`).
    pub rtp_source: Option<String>,
    /// Gateway clients at once (each holds a SIP socket; default 4096).
    pub max_clients: Option<usize>,
    /// Gateway clients at once from one IP address (default 64).
    pub max_clients_per_ip: Option<usize>,
    /// UDP GSO for the gateway's sends where the kernel has it (default true;
    /// `--no-udp-gso`).
    pub udp_gso: Option<bool>,
}

/// The gateway flags as parsed (each overrides its `[gateway]` key).
#[derive(Debug, Default, Clone)]
pub struct GatewayFlags {
    /// `--gateway`: on, whatever the file says.
    pub on: bool,
    /// `--no-gateway`: off.
    pub off: bool,
    pub int_ip: Option<IpAddr>,
    pub ext_ip: Option<IpAddr>,
    pub registrar: Option<String>,
    pub proxy: Option<String>,
    pub rtp_ports: Option<String>,
    /// `--shared-rtp-ports`: on, whatever the file says.
    pub shared_rtp_ports: bool,
    /// `--sip-transport`.
    pub transport: Option<String>,
    /// `--rtp-source`.
    pub rtp_source: Option<String>,
}

/// `strict`, `learn-port` or `learn-any` as where a call's media is accepted from.
pub fn parse_rtp_source(text: &str) -> Result<SourcePolicy, String> {
    SourcePolicy::parse(&text.to_ascii_lowercase()).ok_or_else(|| {
        format!("bad RTP source policy {text:?}: expected strict, learn-port or learn-any")
    })
}

/// `udp` or `tcp` (any case) as the SIP transport.
pub fn parse_transport(text: &str) -> Result<Transport, String> {
    match text.to_ascii_lowercase().as_str() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        _ => Err(format!("bad SIP transport {text:?}: expected udp or tcp")),
    }
}

/// `HOST[:PORT]` (port 5060 when absent; a name is resolved now) as a socket address.
pub fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, SIP_PORT));
    }
    let with_port = if text.contains(':') {
        text.to_owned()
    } else {
        format!("{text}:{SIP_PORT}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text} has no address"))
}

/// `LO-HI` as an inclusive port range with room for at least one client (four ports).
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("bad port range {text:?}: expected LO-HI, e.g. 16000-17999");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || u32::from(lo & !1) + 3 > u32::from(hi) {
        return Err(format!(
            "port range {text:?} must hold four ports from an even one"
        ));
    }
    Ok((lo, hi))
}

/// The local address this machine sends from towards `target` (a routing lookup: `connect`
/// on a UDP socket sends nothing), if there is a route.
fn source_address_towards(target: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The default `--int-ip`: see the module documentation.
pub fn default_int_ip(towards: Option<SocketAddr>) -> IpAddr {
    // A documentation address (TEST-NET-1) stands for "the Internet": only the route to it
    // is looked up.
    let internet = SocketAddr::from(([192, 0, 2, 1], SIP_PORT));
    towards
        .and_then(source_address_towards)
        .or_else(|| source_address_towards(internet))
        .unwrap_or(IpAddr::from(Ipv4Addr::LOCALHOST))
}

/// The node's gateway settings from the file and the flags; `None` when it is off.
pub fn node_config(
    file: &GatewaySection,
    flags: &GatewayFlags,
) -> Result<Option<GatewayNodeConfig>, String> {
    let enabled = if flags.on {
        true
    } else if flags.off {
        false
    } else {
        file.enabled.unwrap_or(true)
    };
    if !enabled {
        return Ok(None);
    }
    let registrar = flags
        .registrar
        .as_deref()
        .or(file.registrar.as_deref())
        .map(parse_host_port)
        .transpose()?;
    let proxy = flags
        .proxy
        .as_deref()
        .or(file.proxy.as_deref())
        .map(parse_host_port)
        .transpose()?;
    let defaults = GatewayNodeConfig::default();
    let rtp_ports = match flags.rtp_ports.as_deref().or(file.rtp_ports.as_deref()) {
        Some(text) => parse_port_range(text)?,
        None => defaults.rtp_ports,
    };
    let ext_ip = flags.ext_ip.or(file.ext_ip);
    if ext_ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err("--ext-ip must be an address peers can reach, not a wildcard".into());
    }
    let int_ip = flags.int_ip.or(file.int_ip);
    let bind_ip = int_ip.unwrap_or_else(|| default_int_ip(proxy.or(registrar)));
    // A wildcard bind says nothing about where peers should send: advertise the routed
    // address unless --ext-ip names one.
    let advertised_ip = match ext_ip {
        Some(ip) => Some(ip),
        None if bind_ip.is_unspecified() => Some(default_int_ip(proxy.or(registrar))),
        None => None,
    };
    let session_defaults = GatewayConfig::default();
    let transport = match flags.transport.as_deref().or(file.transport.as_deref()) {
        Some(text) => parse_transport(text)?,
        None => session_defaults.transport,
    };
    let rtp_source = match flags.rtp_source.as_deref().or(file.rtp_source.as_deref()) {
        Some(text) => parse_rtp_source(text)?,
        None => session_defaults.rtp_source,
    };
    Ok(Some(GatewayNodeConfig {
        app: file.app.clone().unwrap_or(defaults.app),
        bind_ip,
        rtp_ports,
        shared_rtp_ports: flags.shared_rtp_ports
            || file.shared_rtp_ports.unwrap_or(defaults.shared_rtp_ports),
        session: GatewayConfig {
            registrar,
            outbound_proxy: proxy,
            advertised_ip,
            register_expires: file
                .register_expires
                .unwrap_or(session_defaults.register_expires),
            mtu: file.mtu.unwrap_or(session_defaults.mtu),
            transport,
            rtp_source,
            ..session_defaults
        },
        replace_existing: file.replace_existing.unwrap_or(defaults.replace_existing),
        max_clients: file.max_clients.unwrap_or(defaults.max_clients),
        max_clients_per_ip: file
            .max_clients_per_ip
            .unwrap_or(defaults.max_clients_per_ip),
    }))
}

/// Whether the gateway's UDP sends use GSO: on unless `--no-udp-gso` or `udp_gso = false`.
pub fn udp_gso(file: &GatewaySection, no_udp_gso: bool) -> bool {
    !no_udp_gso && file.udp_gso.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_ranges() {
        assert_eq!(
            parse_host_port("10.1.2.3").unwrap(),
            "10.1.2.3:5060".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("10.1.2.3:5070").unwrap(),
            "10.1.2.3:5070".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("[::1]").unwrap(),
            "[::1]:5060".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("localhost:5062").unwrap().port(),
            5062,
            "names are resolved"
        );
        assert_eq!(parse_port_range("16000-17999").unwrap(), (16000, 17999));
        assert!(parse_port_range("16000").is_err());
        assert!(parse_port_range("17000-16000").is_err());
        assert!(
            parse_port_range("16000-16002").is_err(),
            "fewer than four ports"
        );
        assert!(parse_port_range("0-100").is_err());
    }

    #[test]
    fn flags_override_the_file_and_the_gateway_is_on_by_default() {
        let file: GatewaySection = toml::from_str(
            r#"
            int_ip = "127.0.0.1"
            ext_ip = "203.0.113.7"
            registrar = "127.0.0.1:5070"
            rtp_ports = "20000-20099"
            "#,
        )
        .unwrap();
        let config = node_config(&file, &GatewayFlags::default())
            .unwrap()
            .expect("on by default");
        assert_eq!(config.app, "sip");
        assert_eq!(config.bind_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.rtp_ports, (20000, 20099));
        assert_eq!(
            config.session.registrar,
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            config.session.advertised_ip,
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        let flags = GatewayFlags {
            rtp_ports: Some("30000-30003".into()),
            proxy: Some("127.0.0.2".into()),
            ..GatewayFlags::default()
        };
        let config = node_config(&file, &flags).unwrap().unwrap();
        assert_eq!(config.rtp_ports, (30000, 30003));
        assert!(!config.shared_rtp_ports, "four ports per client by default");
        let shared_file: GatewaySection = toml::from_str("shared_rtp_ports = true").unwrap();
        assert!(
            node_config(&shared_file, &flags)
                .unwrap()
                .unwrap()
                .shared_rtp_ports
        );
        let shared_flag = GatewayFlags {
            shared_rtp_ports: true,
            ..flags.clone()
        };
        assert!(
            node_config(&file, &shared_flag)
                .unwrap()
                .unwrap()
                .shared_rtp_ports
        );
        assert_eq!(
            config.session.outbound_proxy,
            Some("127.0.0.2:5060".parse().unwrap())
        );
        assert_eq!(config.session.transport, Transport::Udp, "UDP by default");
        assert!(udp_gso(&file, false), "UDP GSO on by default");
        assert!(!udp_gso(&file, true), "--no-udp-gso");
        let no_gso: GatewaySection = toml::from_str("udp_gso = false").unwrap();
        assert!(!udp_gso(&no_gso, false), "udp_gso = false");
        let tcp_file: GatewaySection = toml::from_str(r#"transport = "tcp""#).unwrap();
        let config = node_config(&tcp_file, &flags).unwrap().unwrap();
        assert_eq!(config.session.transport, Transport::Tcp);
        let udp_flag = GatewayFlags {
            transport: Some("UDP".into()),
            ..flags.clone()
        };
        let config = node_config(&tcp_file, &udp_flag).unwrap().unwrap();
        assert_eq!(config.session.transport, Transport::Udp, "the flag wins");
        let sctp: GatewaySection = toml::from_str(r#"transport = "sctp""#).unwrap();
        assert!(node_config(&sctp, &flags).is_err());
        let off = GatewayFlags {
            off: true,
            ..GatewayFlags::default()
        };
        assert!(node_config(&file, &off).unwrap().is_none());
        let disabled: GatewaySection = toml::from_str("enabled = false").unwrap();
        assert!(node_config(&disabled, &GatewayFlags::default())
            .unwrap()
            .is_none());
        let forced = GatewayFlags {
            on: true,
            ..GatewayFlags::default()
        };
        assert!(node_config(&disabled, &forced).unwrap().is_some());
        let wildcard_ext = GatewayFlags {
            ext_ip: Some(IpAddr::from([0, 0, 0, 0])),
            ..GatewayFlags::default()
        };
        assert!(node_config(&file, &wildcard_ext).is_err());
    }

    /// Every combination of `--int-ip` and `--ext-ip` (the table in the module doc): what the
    /// sockets bind on and what SIP and SDP advertise.
    #[test]
    fn int_ip_and_ext_ip_in_every_combination() {
        let file = GatewaySection {
            proxy: Some("127.0.0.1:5070".into()),
            ..GatewaySection::default()
        };
        let routed = default_int_ip(Some("127.0.0.1:5070".parse().unwrap()));
        let a = IpAddr::from([127, 0, 0, 9]);
        let e = IpAddr::from([203, 0, 113, 7]);
        let any4 = IpAddr::from([0, 0, 0, 0]);
        let any6 = IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED);
        let cases = [
            (None, None, routed, routed),
            (Some(a), None, a, a),
            (None, Some(e), routed, e),
            (Some(a), Some(e), a, e),
            (Some(any4), None, any4, routed),
            (Some(any4), Some(e), any4, e),
            (Some(any6), Some(e), any6, e),
        ];
        for (int_ip, ext_ip, binds, says) in cases {
            let flags = GatewayFlags {
                int_ip,
                ext_ip,
                ..GatewayFlags::default()
            };
            let config = node_config(&file, &flags).unwrap().unwrap();
            let advertised = config.session.advertised_ip.unwrap_or(config.bind_ip);
            assert_eq!(
                (config.bind_ip, advertised),
                (binds, says),
                "--int-ip {int_ip:?} --ext-ip {ext_ip:?}"
            );
            assert!(!advertised.is_unspecified());
        }
    }

    #[test]
    fn the_example_file_parses_with_its_gateway_section() {
        let text = include_str!("../../siprtmp.example.toml");
        let file: crate::config::FileConfig = toml::from_str(text).unwrap();
        let flags = GatewayFlags {
            int_ip: Some(IpAddr::from([127, 0, 0, 1])),
            ..GatewayFlags::default()
        };
        let config = node_config(&file.gateway, &flags).unwrap().unwrap();
        assert_eq!(
            (config.app.as_str(), config.rtp_ports),
            ("sip", (16000, 17999))
        );
    }

    #[test]
    fn the_default_address_is_the_route_towards_the_sip_server() {
        // Loopback is always routed through a loopback address.
        let ip = default_int_ip(Some("127.0.0.1:5060".parse().unwrap()));
        assert!(ip.is_loopback(), "{ip}");
        // Without a target: the primary address, or loopback without any route.
        assert!(!default_int_ip(None).is_unspecified());
    }
}
