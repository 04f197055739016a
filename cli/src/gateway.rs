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
//! registrar, proxy and call targets; RTP stays on UDP. With `transport = "tls"` the
//! connections are TLS (port 5061 by default): the server's certificate is verified against
//! the system's roots, or the CA file `sip_tls_ca` (`--sip-tls-ca`), and must be for the
//! proxy's host as written (else the registrar's), or `sip_tls_server_name`
//! (`--sip-tls-server-name`). A registrar written `sips:HOST[:PORT]` means TLS and `sips:`
//! URIs (RFC 5630).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use serde::Deserialize;
use siprtmp_core::gateway::call_session::GatewayConfig;
use siprtmp_core::gateway::srtp_policy::SrtpMode;
use siprtmp_core::node::{GatewayNodeConfig, SipTlsSettings};
use siprtmp_core::rtp::SourcePolicy;
use siprtmp_core::sip::Transport;
use siprtmp_core::srtp::KeySecret;
use siprtmp_core::tls::rustls::pki_types::ServerName;
use siprtmp_runtime_drivers::{client_config, load_roots, TlsRoots};
use std::path::PathBuf;

use crate::diagnostics::{pick, ConfigError, Origin};

/// The SIP port when `HOST` is given without one.
const SIP_PORT: u16 = 5060;

/// The SIP over TLS port when `HOST` is given without one.
const SIPS_PORT: u16 = 5061;

/// Smallest `mtu` accepted: room for an RTP payload header and some media.
const MIN_MTU: usize = 64;

/// Largest `mtu` accepted: a UDP datagram over IPv4 holds 65507 bytes, 12 of them the RTP
/// header.
const MAX_MTU: usize = 65_495;

/// `[gateway]`: every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewaySection {
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
    /// Merged writes for the far end's media to the client, milliseconds
    /// (`--gateway-merge-writes`; absent or 0: off, every frame written as it arrives).
    pub merge_writes_ms: Option<u64>,
    /// REGISTER lifetime asked for, seconds (default 3600).
    pub register_expires: Option<u32>,
    /// Largest RTP payload for video, bytes (default 1200).
    pub mtu: Option<usize>,
    /// A newer connection for an address of record replaces the older one (default true);
    /// false refuses the newer one.
    pub replace_existing: Option<bool>,
    /// What SIP goes over: `udp` (default), `tcp` or `tls` (`--sip-transport`).
    pub transport: Option<String>,
    /// SIP over TLS: the CA certificates (PEM) servers are verified against instead of the
    /// system's roots (`--sip-tls-ca`).
    pub sip_tls_ca: Option<PathBuf>,
    /// SIP over TLS: the name the registrar's or proxy's certificate must be for (default:
    /// the host as written in `proxy`, else `registrar`; `--sip-tls-server-name`).
    pub sip_tls_server_name: Option<String>,
    /// Where a call's media is accepted from besides its SDP's address: `strict`,
    /// `learn-port` (default) or `learn-any` (`--rtp-source`).
    pub rtp_source: Option<String>,
    /// SRTP with SDES keys to the far ends: `off` (default), `offer` or `require`
    /// (`--srtp`).
    pub srtp: Option<String>,
    /// SDES keys may go in SDP over plain (not TLS) SIP (default false;
    /// `--srtp-over-plain-sip`).
    pub srtp_over_plain_sip: Option<bool>,
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
pub(crate) struct GatewayFlags {
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
    /// `--sip-tls-ca`.
    pub sip_tls_ca: Option<PathBuf>,
    /// `--sip-tls-server-name`.
    pub sip_tls_server_name: Option<String>,
    /// `--rtp-source`.
    pub rtp_source: Option<String>,
    /// `--srtp`.
    pub srtp: Option<String>,
    /// `--srtp-over-plain-sip`: on, whatever the file says.
    pub srtp_over_plain_sip: bool,
}

/// 256 bits from the operating system that the gateway derives SDES master keys with (see
/// `siprtmp_core::srtp::key_secret`); `None`, with a warning, when the OS gives none: keys
/// then come from the node's seeded generator alone.
fn os_key_secret() -> Option<KeySecret> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => Some(KeySecret::new(bytes)),
        Err(e) => {
            tracing::warn!(
                "cannot read /dev/urandom ({e}): SRTP keys come from the seeded generator alone"
            );
            None
        }
    }
}

/// `strict`, `learn-port` or `learn-any` as where a call's media is accepted from.
pub(crate) fn parse_rtp_source(text: &str) -> Result<SourcePolicy, String> {
    SourcePolicy::parse(&text.to_ascii_lowercase()).ok_or_else(|| {
        format!("bad RTP source policy {text:?}: expected strict, learn-port or learn-any")
    })
}

/// `udp`, `tcp` or `tls` (any case) as the SIP transport; the error says what is expected.
pub(crate) fn parse_transport(text: &str) -> Result<Transport, String> {
    match text.to_ascii_lowercase().as_str() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        "tls" => Ok(Transport::Tls),
        _ => Err("unknown SIP transport: expected udp, tcp or tls".to_owned()),
    }
}

/// A registrar or proxy as configured: `[sip:|sips:]HOST[:PORT]`, split into whether it
/// said `sips:` and the rest.
fn split_scheme(text: &str) -> (bool, &str) {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("sips:") {
        (true, &text[5..])
    } else if lower.starts_with("sip:") {
        (false, &text[4..])
    } else {
        (false, text)
    }
}

/// The host of `HOST[:PORT]` as written (brackets of an IPv6 address taken off).
fn host_of(text: &str) -> &str {
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => text,
    }
}

/// `HOST[:PORT]` (port 5060 when absent; a name is resolved now) as a socket address; the
/// error says what is wrong with it.
#[cfg(test)]
pub(crate) fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    parse_host_port_or(text, SIP_PORT)
}

/// `HOST[:PORT]` (port `default_port` when absent: 5060, or 5061 over TLS; a name is
/// resolved now) as a socket address; the error says what is wrong with it.
pub(crate) fn parse_host_port_or(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let addr = if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        SocketAddr::new(ip, default_port)
    } else {
        let with_port = if text.contains(':') {
            text.to_owned()
        } else {
            format!("{text}:{default_port}")
        };
        with_port
            .to_socket_addrs()
            .map_err(|e| format!("expected HOST[:PORT] that resolves: {e}"))?
            .next()
            .ok_or_else(|| "expected HOST[:PORT]: the name has no address".to_owned())?
    };
    if addr.port() == 0 {
        return Err(format!(
            "port 0 is out of range: expected 1 to 65535 (without a port: {default_port})"
        ));
    }
    Ok(addr)
}

/// `LO-HI` as an inclusive port range with room for at least one client (four ports from an
/// even one); the error says what is wrong with it.
pub(crate) fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || "expected LO-HI, two ports from 1 to 65535, e.g. 16000-17999".to_owned();
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 {
        return Err("LO is 0: expected LO-HI with LO from 1 to 65535".to_owned());
    }
    if hi < lo {
        return Err(format!(
            "reversed: LO must not exceed HI (did you mean {hi}-{lo}?)"
        ));
    }
    if u32::from(lo & !1) + 3 > u32::from(hi) {
        let first = lo & !1;
        return Err(format!(
            "too small: a client takes four ports from an even one, so HI must be at least \
             {} (e.g. {first}-{})",
            u32::from(first) + 3,
            u32::from(first) + 3,
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
pub(crate) fn default_int_ip(towards: Option<SocketAddr>) -> IpAddr {
    // A documentation address (TEST-NET-1) stands for "the Internet": only the route to it
    // is looked up.
    let internet = SocketAddr::from(([192, 0, 2, 1], SIP_PORT));
    towards
        .and_then(source_address_towards)
        .or_else(|| source_address_towards(internet))
        .unwrap_or(IpAddr::from(Ipv4Addr::LOCALHOST))
}

/// The node's gateway settings from the file and the flags; `None` when it is off. An
/// error names the flag or key that gave the bad value.
pub(crate) fn node_config(
    file: &GatewaySection,
    flags: &GatewayFlags,
) -> Result<Option<GatewayNodeConfig>, ConfigError> {
    if flags.on && flags.off {
        return Err(ConfigError::Combination(
            "--gateway and --no-gateway contradict each other: give one of them (or neither, \
             and set gateway.enabled in the config file)"
                .to_owned(),
        ));
    }
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
    // Parses a value from a flag or the file, blaming whichever gave it.
    fn parsed<T>(
        given: Option<(&str, Origin)>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        given
            .map(|(text, origin)| {
                parse(text).map_err(|problem| ConfigError::value(origin, text, problem))
            })
            .transpose()
    }
    let session_defaults = GatewayConfig::default();
    let registrar_given = pick(
        flags.registrar.as_deref(),
        "--registrar",
        file.registrar.as_deref(),
        "gateway.registrar",
    );
    let proxy_given = pick(
        flags.proxy.as_deref(),
        "--proxy",
        file.proxy.as_deref(),
        "gateway.proxy",
    );
    // A `sips:` registrar means TLS (RFC 5630), and `sips:` URIs.
    let sips = registrar_given
        .as_ref()
        .is_some_and(|(text, _)| split_scheme(text).0);
    let transport_given = parsed(
        pick(
            flags.transport.as_deref(),
            "--sip-transport",
            file.transport.as_deref(),
            "gateway.transport",
        ),
        parse_transport,
    )?;
    let transport = match transport_given {
        Some(t) if sips && t != Transport::Tls => {
            return Err(ConfigError::Combination(format!(
                "the registrar is a sips: URI, which needs SIP over TLS, but the SIP transport \
                 (--sip-transport or gateway.transport) is {}",
                t.uri_param()
            )));
        }
        Some(t) => t,
        None if sips => Transport::Tls,
        None => session_defaults.transport,
    };
    let default_port = if transport == Transport::Tls {
        SIPS_PORT
    } else {
        SIP_PORT
    };
    let host_port = |text: &str| parse_host_port_or(split_scheme(text).1, default_port);
    let registrar = parsed(registrar_given.clone(), host_port)?;
    let proxy = parsed(proxy_given.clone(), host_port)?;
    let sip_tls = if transport == Transport::Tls {
        // The name certificates must be for: as configured, else the host as written.
        let named = proxy_given.as_ref().or(registrar_given.as_ref());
        let name_given = pick(
            flags.sip_tls_server_name.as_deref(),
            "--sip-tls-server-name",
            file.sip_tls_server_name.as_deref(),
            "gateway.sip_tls_server_name",
        );
        let server_name = match (name_given, named) {
            (Some((name, origin)), _) => {
                Some(ServerName::try_from(name.to_owned()).map_err(|e| {
                    ConfigError::value(origin, name, format!("not a host name: {e}"))
                })?)
            }
            (None, Some((text, _))) => {
                ServerName::try_from(host_of(split_scheme(text).1).to_owned()).ok()
            }
            (None, None) => None,
        };
        let ca = pick(
            flags.sip_tls_ca.clone(),
            "--sip-tls-ca",
            file.sip_tls_ca.clone(),
            "gateway.sip_tls_ca",
        );
        let roots = match &ca {
            Some((path, _)) => TlsRoots::CaFile(path.clone()),
            None => TlsRoots::System,
        };
        let roots = load_roots(&roots).map_err(|e| match ca {
            Some((path, origin)) => ConfigError::value(origin, path.display(), e.problem),
            None => ConfigError::Combination(format!(
                "SIP over TLS verifies servers against the system's roots, which cannot be \
                 read: {e} (name a CA file with --sip-tls-ca or gateway.sip_tls_ca)"
            )),
        })?;
        let mut settings = SipTlsSettings::new(client_config(roots));
        settings.server_name = server_name;
        Some(settings)
    } else {
        None
    };
    let defaults = GatewayNodeConfig::default();
    let rtp_ports = parsed(
        pick(
            flags.rtp_ports.as_deref(),
            "--rtp-ports",
            file.rtp_ports.as_deref(),
            "gateway.rtp_ports",
        ),
        parse_port_range,
    )?
    .unwrap_or(defaults.rtp_ports);
    let ext_ip = pick(flags.ext_ip, "--ext-ip", file.ext_ip, "gateway.ext_ip");
    if let Some((ip, origin)) = &ext_ip {
        if ip.is_unspecified() {
            return Err(ConfigError::value(
                origin.clone(),
                ip,
                "a wildcard: expected an address that peers can reach",
            ));
        }
    }
    let ext_ip = ext_ip.map(|(ip, _)| ip);
    let int_ip = flags.int_ip.or(file.int_ip);
    let bind_ip = int_ip.unwrap_or_else(|| default_int_ip(proxy.or(registrar)));
    // A wildcard bind says nothing about where peers should send: advertise the routed
    // address unless --ext-ip names one.
    let advertised_ip = match ext_ip {
        Some(ip) => Some(ip),
        None if bind_ip.is_unspecified() => Some(default_int_ip(proxy.or(registrar))),
        None => None,
    };
    let rtp_source = parsed(
        pick(
            flags.rtp_source.as_deref(),
            "--rtp-source",
            file.rtp_source.as_deref(),
            "gateway.rtp_source",
        ),
        parse_rtp_source,
    )?
    .unwrap_or(session_defaults.rtp_source);
    let srtp = parsed(
        pick(
            flags.srtp.as_deref(),
            "--srtp",
            file.srtp.as_deref(),
            "gateway.srtp",
        ),
        |text: &str| text.parse::<SrtpMode>(),
    )?
    .unwrap_or(session_defaults.srtp);
    let srtp_over_plain_sip = flags.srtp_over_plain_sip
        || file
            .srtp_over_plain_sip
            .unwrap_or(session_defaults.srtp_over_plain_sip);
    if file.register_expires == Some(0) {
        return Err(ConfigError::value(
            Origin::key("gateway.register_expires", None),
            0,
            "out of range: expected 1 or more seconds (0 would unregister)",
        ));
    }
    if let Some(mtu) = file.mtu.filter(|m| !(MIN_MTU..=MAX_MTU).contains(m)) {
        return Err(ConfigError::value(
            Origin::key("gateway.mtu", None),
            mtu,
            format!("out of range: expected {MIN_MTU} to {MAX_MTU} bytes"),
        ));
    }
    if file.app.as_deref() == Some("") {
        return Err(ConfigError::value(
            Origin::key("gateway.app", None),
            "\"\"",
            "empty: expected an application name such as \"sip\"",
        ));
    }
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
            sips,
            rtp_source,
            srtp,
            srtp_over_plain_sip,
            srtp_key_secret: (srtp != SrtpMode::Off).then(os_key_secret).flatten(),
            transcoder: transcoder(),
            opus: opus_transcoder(),
            ..session_defaults
        },
        sip_tls,
        replace_existing: file.replace_existing.unwrap_or(defaults.replace_existing),
        max_clients: file.max_clients.unwrap_or(defaults.max_clients),
        max_clients_per_ip: file
            .max_clients_per_ip
            .unwrap_or(defaults.max_clients_per_ip),
    }))
}

/// The Speex codec for transcoding to G.711: libspeex with the `speex` feature (default),
/// when the build found the library.
#[cfg(feature = "speex")]
fn transcoder() -> Option<std::sync::Arc<dyn siprtmp_core::media::transcode::SpeexCodecs>> {
    if !siprtmp_codec_speex::is_available() {
        tracing::warn!(
            "built without libspeex (Debian: libspeex-dev): calls to far ends without Speex \
             get 488 instead of being transcoded to G.711"
        );
        return None;
    }
    Some(std::sync::Arc::new(siprtmp_codec_speex::gateway::Codecs))
}

/// Without the `speex` feature: pass-through only.
#[cfg(not(feature = "speex"))]
fn transcoder() -> Option<std::sync::Arc<dyn siprtmp_core::media::transcode::SpeexCodecs>> {
    None
}

/// The Opus codec for transcoding an Opus client's audio: libopus with the `opus` feature
/// (default), when the build found the library.
#[cfg(feature = "opus")]
fn opus_transcoder() -> Option<std::sync::Arc<dyn siprtmp_core::media::transcode::OpusCodecs>> {
    if !siprtmp_codec_opus::is_available() {
        tracing::warn!(
            "built without libopus (Debian: libopus-dev): calls of Opus clients to far ends \
             without Opus get 488 instead of being transcoded"
        );
        return None;
    }
    Some(std::sync::Arc::new(siprtmp_codec_opus::gateway::Codecs))
}

/// Without the `opus` feature: Opus passes through only.
#[cfg(not(feature = "opus"))]
fn opus_transcoder() -> Option<std::sync::Arc<dyn siprtmp_core::media::transcode::OpusCodecs>> {
    None
}

/// Whether the gateway's UDP sends use GSO: on unless `--no-udp-gso` or `udp_gso = false`.
pub(crate) fn udp_gso(file: &GatewaySection, no_udp_gso: bool) -> bool {
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

    proptest::proptest! {
        /// Any text: a range accepted holds four ports from an even one, and a refusal says
        /// what was expected.
        #[test]
        fn any_port_range(text in "[0-9 -]{0,14}|\\PC{0,14}") {
            match parse_port_range(&text) {
                Ok((lo, hi)) => {
                    proptest::prop_assert!(lo >= 1 && lo <= hi);
                    proptest::prop_assert!(u32::from(lo & !1) + 3 <= u32::from(hi));
                }
                Err(problem) => proptest::prop_assert!(problem.contains("expected")
                    || problem.starts_with("reversed") || problem.starts_with("too small")),
            }
        }
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

    #[test]
    fn srtp_comes_from_the_file_or_the_flags_and_is_off_by_default() {
        let plain = GatewaySection::default();
        let config = node_config(&plain, &GatewayFlags::default())
            .unwrap()
            .unwrap();
        assert_eq!(config.session.srtp, SrtpMode::Off);
        assert!(
            !config.session.srtp_over_plain_sip,
            "keys only over TLS by default"
        );
        let file: GatewaySection =
            toml::from_str("srtp = \"offer\"\nsrtp_over_plain_sip = true").unwrap();
        let config = node_config(&file, &GatewayFlags::default())
            .unwrap()
            .unwrap();
        assert_eq!(config.session.srtp, SrtpMode::Offer);
        assert!(config.session.srtp_over_plain_sip);
        let flags = GatewayFlags {
            srtp: Some("require".into()),
            srtp_over_plain_sip: true,
            ..GatewayFlags::default()
        };
        let config = node_config(&plain, &flags).unwrap().unwrap();
        assert_eq!(config.session.srtp, SrtpMode::Require, "the flag wins");
        assert!(config.session.srtp_over_plain_sip);
        assert!(
            config.session.srtp_key_secret.is_some(),
            "keys are derived under a secret from the OS"
        );
        let bad: GatewaySection = toml::from_str("srtp = \"sometimes\"").unwrap();
        let err = node_config(&bad, &GatewayFlags::default()).unwrap_err();
        assert!(format!("{err:?}").contains("unknown srtp mode"), "{err:?}");
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

    #[test]
    fn tls_takes_port_5061_its_roots_and_the_name_as_written() {
        let dir = std::env::temp_dir().join(format!("siprtmp-cli-siptls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();

        let file: GatewaySection = toml::from_str(&format!(
            "transport = \"tls\"\nregistrar = \"localhost\"\nsip_tls_ca = \"{}\"",
            ca.display()
        ))
        .unwrap();
        let flags = GatewayFlags::default();
        let config = node_config(&file, &flags).unwrap().unwrap();
        assert_eq!(config.session.transport, Transport::Tls);
        assert_eq!(config.session.registrar.map(|a| a.port()), Some(5061));
        assert!(!config.session.sips);
        let tls = config.sip_tls.expect("TLS settings");
        assert_eq!(
            tls.server_name,
            Some(ServerName::try_from("localhost").unwrap()),
            "the registrar's host as written"
        );
        let named = GatewayFlags {
            sip_tls_server_name: Some("sip.example.com".into()),
            ..flags.clone()
        };
        let config = node_config(&file, &named).unwrap().unwrap();
        assert_eq!(
            config.sip_tls.unwrap().server_name,
            Some(ServerName::try_from("sip.example.com").unwrap())
        );

        // A sips: registrar means TLS and sips: URIs, and cannot go with another transport.
        let sips: GatewaySection = toml::from_str(&format!(
            "registrar = \"sips:127.0.0.1\"\nsip_tls_ca = \"{}\"",
            ca.display()
        ))
        .unwrap();
        let config = node_config(&sips, &flags).unwrap().unwrap();
        assert_eq!(config.session.transport, Transport::Tls);
        assert!(config.session.sips);
        assert_eq!(
            config.session.registrar,
            Some("127.0.0.1:5061".parse().unwrap())
        );
        let tcp = GatewayFlags {
            transport: Some("tcp".into()),
            ..flags.clone()
        };
        let e = node_config(&sips, &tcp).unwrap_err().render(None);
        assert!(e.contains("sips:") && e.contains("tcp"), "{e}");

        // A CA file that is not there stops the start, naming the key.
        let missing: GatewaySection =
            toml::from_str("transport = \"tls\"\nsip_tls_ca = \"/nonexistent/ca.pem\"").unwrap();
        let e = node_config(&missing, &flags).unwrap_err().render(None);
        assert!(
            e.contains("sip_tls_ca") && e.contains("cannot read it"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
