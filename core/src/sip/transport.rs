//! The transport-facing rules of RFC 3261 section 18 and RFC 3581 (`rport`), as pure
//! functions over [`Via`] values: stamping our Via on an outgoing request, recording where a
//! request really came from (`received`, `rport`), choosing where a response goes, and
//! checking that a response was meant for us.
//!
//! No sockets here: a [`Transport`] is a label, a [`Destination`] is where the driver should
//! send bytes (an address, or a host name it still has to resolve).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::dialog::SentBy;
use super::headers::Headers;
use super::lex::split_list;
use super::uri::Host;
use super::via::{RPort, Via};

/// The default SIP port for UDP and TCP (RFC 3261 19.1.2).
pub const DEFAULT_PORT: u16 = 5060;

/// The default SIP port for TLS (RFC 3261 19.1.2: `sips:` URIs and `transport=tls`).
pub const DEFAULT_TLS_PORT: u16 = 5061;

/// The transport a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, so the transaction layer retransmits.
    Udp,
    /// TCP: reliable, so retransmission timers that only cover packet loss are not run and
    /// the "wait for stragglers" timers (D, I, J, K) are zero.
    Tcp,
    /// TLS over TCP (RFC 3261 section 26, RFC 5630): reliable like TCP, on connections
    /// whose bytes are TLS records.
    Tls,
}

impl Transport {
    /// The Via transport token (`UDP`, `TCP`, `TLS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `transport` URI parameter (`udp`, `tcp`, `tls`).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// True for transports that deliver reliably (TCP, TLS).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The port a URI or Via without one means on this transport: 5061 for TLS, else 5060.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => DEFAULT_TLS_PORT,
            Transport::Udp | Transport::Tcp => DEFAULT_PORT,
        }
    }

    /// The transport a Via token names (case-insensitive), if it is one we speak.
    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("UDP") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("TCP") {
            Some(Transport::Tcp)
        } else if token.eq_ignore_ascii_case("TLS") {
            Some(Transport::Tls)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the driver should send a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A socket address. For TCP it names the connection (the peer's address).
    Addr(SocketAddr),
    /// A host name the driver must resolve first (RFC 3263), with the port to use.
    Host {
        /// Domain name as written in the Via.
        host: String,
        /// Port (the sent-by port, or [`DEFAULT_PORT`]).
        port: u16,
    },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Addr(a) => write!(f, "{a}"),
            Destination::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The sent-by for a local socket address (its transport token is informational: the
/// [`TransactionLayer`](super::TransactionLayer) stamps the transport each request uses).
///
/// ```
/// use siprtmp_core::sip::{sent_by_of, Host};
/// let s = sent_by_of("192.0.2.4:5062".parse().unwrap());
/// assert_eq!((s.host, s.port), (Host::Ipv4("192.0.2.4".parse().unwrap()), Some(5062)));
/// ```
pub fn sent_by_of(addr: SocketAddr) -> SentBy {
    let host = match addr.ip() {
        IpAddr::V4(a) => Host::Ipv4(a),
        IpAddr::V6(a) => Host::Ipv6(a),
    };
    SentBy::new("UDP", host, Some(addr.port()))
}

/// True if `via`'s sent-by is `local`'s (host case-insensitively, absent port = 5060).
fn same_sent_by(local: &SentBy, via: &Via) -> bool {
    same_host(&local.host, &via.host)
        && via.port.unwrap_or(DEFAULT_PORT) == local.port.unwrap_or(DEFAULT_PORT)
}

fn same_host(a: &Host, b: &Host) -> bool {
    match (a, b) {
        (Host::Domain(x), Host::Domain(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

/// Puts our Via on top of an outgoing request: `SIP/2.0/<transport> host:port;branch=..`,
/// plus a valueless `;rport` when `rport` is set (RFC 3581: ask the server to answer to the
/// address and port the request came from, which gets responses through NATs), and over TLS
/// a valueless `;alias` (RFC 5923: requests for us may come back on the connection). The topmost
/// existing hop, if any, is replaced: for a user agent it is the placeholder that
/// [`new_request`](super::new_request) wrote before the transport was known. The transport
/// token of `local` is ignored in favour of `transport`. Returns the Via written.
///
/// ```
/// use siprtmp_core::sip::{stamp_via, Headers, Host, SentBy, Transport};
/// let mut h = Headers::new();
/// h.push("Via", "SIP/2.0/UDP placeholder.invalid;branch=z9hG4bKold;rport");
/// let local = SentBy::new("UDP", Host::Ipv4("192.0.2.4".parse().unwrap()), Some(5062));
/// stamp_via(&mut h, Transport::Tcp, &local, "z9hG4bKabc", true);
/// assert_eq!(h.get("Via"), Some("SIP/2.0/TCP 192.0.2.4:5062;branch=z9hG4bKabc;rport"));
/// assert_eq!(h.len(), 1);
/// ```
pub fn stamp_via(
    headers: &mut Headers,
    transport: Transport,
    local: &SentBy,
    branch: &str,
    rport: bool,
) -> Via {
    let mut via = Via::new(transport.as_str(), local.host.clone(), local.port);
    via.params.push("branch", Some(branch));
    if rport {
        via.params.push("rport", None);
    }
    if transport == Transport::Tls {
        // RFC 5923: the far end may send its requests for our sent-by over this connection
        // rather than open one to us (we present no certificate of our own).
        via.params.push("alias", None);
    }
    let value = via.to_string();
    match headers.get("Via") {
        Some(first) => {
            let mut items: Vec<&str> = split_list(first);
            items[0] = &value;
            let joined = items.join(", ");
            replace_first(headers, "Via", joined);
        }
        None => headers.push_front("Via", &value),
    }
    via
}

/// Records on a received request's top Via where it really came from (RFC 3261 18.2.1,
/// RFC 3581 section 4): `received=<source ip>` when the sent-by host is a name or a different
/// address, and, when the client asked with a valueless `rport`, `rport=<source port>` plus
/// `received` even if the address is the same. Returns true if `via` changed.
///
/// ```
/// use siprtmp_core::sip::{fill_received, RPort, Via};
/// let mut v: Via = "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKx;rport".parse().unwrap();
/// assert!(fill_received(&mut v, "192.0.2.1:40000".parse().unwrap()));
/// assert_eq!(v.received(), Some("192.0.2.1"));
/// assert_eq!(v.rport(), Some(RPort::Port(40000)));
/// ```
pub fn fill_received(via: &mut Via, source: SocketAddr) -> bool {
    let ip = source.ip();
    let differs = match (&via.host, ip) {
        (Host::Ipv4(a), IpAddr::V4(b)) => *a != b,
        (Host::Ipv6(a), IpAddr::V6(b)) => *a != b,
        _ => true,
    };
    let fill_rport = via.rport() == Some(RPort::Requested);
    if !differs && !fill_rport {
        return false;
    }
    // IPv6 goes in `received` without brackets (RFC 3261 grammar: IPv6address).
    via.params.set("received", Some(&ip.to_string()));
    if fill_rport {
        via.params.set("rport", Some(&source.port().to_string()));
    }
    true
}

/// Applies [`fill_received`] to the top Via of `headers` in place, keeping any further hops
/// that share its header line. Returns the (possibly updated) top Via, or `None` if there is
/// no parseable top Via.
pub fn fill_received_in(headers: &mut Headers, source: SocketAddr) -> Option<Via> {
    let mut via = headers.top_via().ok()?;
    if !fill_received(&mut via, source) {
        return Some(via);
    }
    let first = headers.get("Via")?;
    let mut items = split_list(first);
    let top = via.to_string();
    items[0] = &top;
    let joined = items.join(", ");
    replace_first(headers, "Via", joined);
    Some(via)
}

/// Replaces the value of the first `name` header line, leaving later lines alone.
fn replace_first(headers: &mut Headers, name: &str, value: String) {
    let mut rebuilt = Headers::new();
    let mut done = false;
    for h in headers.iter() {
        if !done && super::headers::same_header(&h.name, name) {
            rebuilt.push_owned(h.name.clone(), value.clone());
            done = true;
        } else {
            rebuilt.push_owned(h.name.clone(), h.value.clone());
        }
    }
    *headers = rebuilt;
}

/// Where a response goes (RFC 3261 18.2.2 with RFC 3581 section 4), given the top Via of the
/// request (after [`fill_received`]), the transport it arrived on and its source:
///
/// - reliable transport: back on the connection the request came in on (`source`);
/// - UDP with `maddr`: to that host at the sent-by port (or 5060);
/// - UDP with `received`: to that address, at `rport` if filled in, else the sent-by port,
///   else 5060;
/// - otherwise the sent-by host and port (5060 by default); a name must be resolved.
///
/// ```
/// use siprtmp_core::sip::{response_destination, Destination, Transport, Via};
/// let v: Via = "SIP/2.0/UDP pc.example.com;branch=z9hG4bKx;received=192.0.2.1;rport=4000"
///     .parse()
///     .unwrap();
/// let src = "192.0.2.1:4000".parse().unwrap();
/// assert_eq!(response_destination(&v, Transport::Udp, src), Destination::Addr(src));
/// ```
pub fn response_destination(
    top_via: &Via,
    transport: Transport,
    source: SocketAddr,
) -> Destination {
    if transport.is_reliable() {
        return Destination::Addr(source);
    }
    let sent_port = top_via.port.unwrap_or(DEFAULT_PORT);
    if let Some(maddr) = top_via.maddr() {
        return match Host::parse(maddr) {
            Ok(Host::Ipv4(a)) => Destination::Addr(SocketAddr::new(a.into(), sent_port)),
            Ok(Host::Ipv6(a)) => Destination::Addr(SocketAddr::new(a.into(), sent_port)),
            _ => Destination::Host {
                host: maddr.to_string(),
                port: sent_port,
            },
        };
    }
    let port = match top_via.rport() {
        Some(RPort::Port(p)) => p,
        _ => sent_port,
    };
    if let Some(received) = top_via.received() {
        let ip = received
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .unwrap_or(source.ip());
        return Destination::Addr(SocketAddr::new(ip, port));
    }
    match &top_via.host {
        Host::Ipv4(a) => Destination::Addr(SocketAddr::new((*a).into(), port)),
        Host::Ipv6(a) => Destination::Addr(SocketAddr::new((*a).into(), port)),
        Host::Domain(d) => Destination::Host {
            host: d.clone(),
            port,
        },
    }
}

/// True if a received response's top Via names us; RFC 3261 18.1.2 says to drop it silently
/// otherwise (it was misrouted, or is an attack).
pub fn response_is_ours(top_via: &Via, local: &SentBy) -> bool {
    same_sent_by(local, top_via)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Via {
        s.parse().unwrap()
    }

    #[test]
    fn received_only_when_host_differs_unless_rport() {
        let src: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut v = via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa");
        assert!(!fill_received(&mut v, src));
        assert_eq!(v.received(), None);
        let mut v = via("SIP/2.0/UDP pc.example.com;branch=z9hG4bKa");
        assert!(fill_received(&mut v, src));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP pc.example.com;branch=z9hG4bKa;received=192.0.2.1"
        );
        let mut v = via("SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKa");
        assert!(fill_received(&mut v, src));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.1;rport=5060;branch=z9hG4bKa;received=192.0.2.1"
        );
        let src6: SocketAddr = "[2001:db8::2]:7000".parse().unwrap();
        let mut v = via("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKa");
        assert!(fill_received(&mut v, src6));
        assert_eq!(v.received(), Some("2001:db8::2"));
    }

    #[test]
    fn fill_in_headers_keeps_other_hops() {
        let mut h = Headers::new();
        h.push(
            "v",
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        );
        h.push("Via", "SIP/2.0/TCP c.example.com;branch=z9hG4bK3");
        let top = fill_received_in(&mut h, "198.51.100.3:5070".parse().unwrap()).unwrap();
        assert_eq!(top.received(), Some("198.51.100.3"));
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].received(), Some("198.51.100.3"));
        assert_eq!(vias[1].host, Host::Domain("b.example.com".into()));
        assert_eq!(h.iter().next().unwrap().name, "v");
    }

    #[test]
    fn destinations() {
        let src: SocketAddr = "203.0.113.9:33000".parse().unwrap();
        let v = via("SIP/2.0/UDP pc.example.com:5070;branch=z9hG4bKa");
        assert_eq!(
            response_destination(&v, Transport::Tcp, src),
            Destination::Addr(src)
        );
        assert_eq!(
            response_destination(&v, Transport::Udp, src),
            Destination::Host {
                host: "pc.example.com".into(),
                port: 5070
            }
        );
        let v = via("SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKa;received=203.0.113.9");
        assert_eq!(
            response_destination(&v, Transport::Udp, src),
            Destination::Addr("203.0.113.9:5060".parse().unwrap())
        );
        let v = via("SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKa;received=203.0.113.9;rport=33000");
        assert_eq!(
            response_destination(&v, Transport::Udp, src),
            Destination::Addr(src)
        );
        let v = via("SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKa");
        assert_eq!(
            response_destination(&v, Transport::Udp, src),
            Destination::Addr("10.1.1.1:5062".parse().unwrap())
        );
        let v = via("SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKa;maddr=239.255.255.1");
        assert_eq!(
            response_destination(&v, Transport::Udp, src),
            Destination::Addr("239.255.255.1:5062".parse().unwrap())
        );
    }

    #[test]
    fn sent_by_check() {
        let local = SentBy::new("UDP", Host::Domain("Gw.Example.com".into()), None);
        assert!(response_is_ours(
            &via("SIP/2.0/UDP gw.example.COM;branch=z9hG4bKa"),
            &local
        ));
        assert!(!response_is_ours(
            &via("SIP/2.0/UDP gw.example.com:5061;branch=z9hG4bKa"),
            &local
        ));
        assert!(!response_is_ours(
            &via("SIP/2.0/UDP evil.example.com;branch=z9hG4bKa"),
            &local
        ));
    }
}
