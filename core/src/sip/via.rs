//! [`Via`]: one hop of a Via header (RFC 3261 20.42, plus RFC 3581 `rport`):
//! `protocol-name "/" version "/" transport SP sent-by *( ";" via-params )`,
//! with whitespace allowed around every separator.

use std::fmt;
use std::str::FromStr;

use super::error::SipError;
use super::lex::{is_ws, scan_token, skip_ws};
use super::params::Params;
use super::uri::Host;

/// The RFC 3581 `rport` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RPort {
    /// `;rport` without a value: the client asks the server to fill it in.
    Requested,
    /// `;rport=N` as filled in by the server.
    Port(u16),
}

/// One Via hop.
///
/// ```
/// use siprtmp_core::sip::{Host, RPort, Via};
/// let v: Via = "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776asdhds;rport;received=192.0.2.1"
///     .parse()
///     .unwrap();
/// assert_eq!(v.transport, "UDP");
/// assert_eq!(v.host, Host::Ipv6("2001:db8::9".parse().unwrap()));
/// assert_eq!(v.port, Some(5070));
/// assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
/// assert_eq!(v.rport(), Some(RPort::Requested));
/// assert_eq!(v.received(), Some("192.0.2.1"));
/// assert_eq!(v.to_string(), "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776asdhds;rport;received=192.0.2.1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name, normally `SIP`.
    pub protocol_name: String,
    /// Protocol version, normally `2.0`.
    pub protocol_version: String,
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or any extension), as written.
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, if present.
    pub port: Option<u16>,
    /// All parameters in wire order (`branch`, `received`, `rport`, `maddr`, `ttl`, ...).
    pub params: Params,
}

impl Via {
    /// A `SIP/2.0/<transport>` hop with no parameters.
    pub fn new(transport: &str, host: Host, port: Option<u16>) -> Via {
        Via {
            protocol_name: "SIP".into(),
            protocol_version: "2.0".into(),
            transport: transport.into(),
            host,
            port,
            params: Params::new(),
        }
    }

    /// The `branch` parameter (transaction id; RFC 3261 ones start with `z9hG4bK`).
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// The `rport` parameter. The value was validated at parse time; a value set later that
    /// is not a port reads as `None`.
    pub fn rport(&self) -> Option<RPort> {
        match self.params.get("rport")? {
            None => Some(RPort::Requested),
            Some(v) => v.parse().ok().map(RPort::Port),
        }
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.value("maddr")
    }

    /// Parses one Via value (one element of the comma list).
    pub fn parse(s: &str) -> Result<Via, SipError> {
        Self::parse_inner(s.trim()).map_err(|reason| SipError::header("Via", reason))
    }

    fn parse_inner(s: &str) -> Result<Via, &'static str> {
        let b = s.as_bytes();
        let mut parts = [""; 3];
        let mut i = 0;
        for (n, part) in parts.iter_mut().enumerate() {
            if n > 0 {
                i = skip_ws(b, i);
                if b.get(i) != Some(&b'/') {
                    return Err("expected '/' in sent-protocol");
                }
                i = skip_ws(b, i + 1);
            }
            let end = scan_token(b, i);
            if end == i {
                return Err("empty sent-protocol element");
            }
            *part = &s[i..end];
            i = end;
        }
        if i >= b.len() || !is_ws(b[i]) {
            return Err("missing whitespace before sent-by");
        }
        i = skip_ws(b, i);

        let host_end = if b.get(i) == Some(&b'[') {
            s[i..].find(']').ok_or("unterminated IPv6 reference")? + i + 1
        } else {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'.' | b'_'))
            {
                j += 1;
            }
            j
        };
        let host = Host::parse(&s[i..host_end]).map_err(|_| "bad sent-by host")?;
        i = skip_ws(b, host_end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            i = skip_ws(b, i + 1);
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 5 {
                return Err("bad sent-by port");
            }
            port = Some(digits.parse::<u16>().map_err(|_| "bad sent-by port")?);
        }
        let params = Params::parse_header_params(&s[i..])?;
        if let Some(v) = params.get("rport").flatten() {
            if v.len() > 5 || !v.bytes().all(|c| c.is_ascii_digit()) || v.parse::<u16>().is_err() {
                return Err("bad rport value");
            }
        }
        if params.get("branch") == Some(None) || params.get("received") == Some(None) {
            return Err("branch and received need a value");
        }
        Ok(Via {
            protocol_name: parts[0].to_string(),
            protocol_version: parts[1].to_string(),
            transport: parts[2].to_string(),
            host,
            port,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol_name, self.protocol_version, self.transport, self.host
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

impl FromStr for Via {
    type Err = SipError;
    fn from_str(s: &str) -> Result<Via, SipError> {
        Via::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_everywhere() {
        // RFC 4475 3.1.1.1, after unfolding.
        let v = Via::parse("SIP  /   2.0  /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.protocol_name.as_str(), v.protocol_version.as_str()),
            ("SIP", "2.0")
        );
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host, Host::Domain("spindle.example.com".into()));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ipv6_sent_by() {
        let v = Via::parse(
            "SIP/2.0/TCP [2001:db8::9:1] : 5061 ;branch=z9hG4bKx;received=[2001:db8::2]",
        )
        .unwrap();
        assert_eq!(v.host, Host::Ipv6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.received(), Some("[2001:db8::2]"));
        let v = Via::parse("SIP/2.0/UDP [::1]").unwrap();
        assert_eq!(v.host, Host::Ipv6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(v.to_string(), "SIP/2.0/UDP [::1]");
        assert!(Via::parse("SIP/2.0/UDP [::g]").is_err());
        assert!(Via::parse("SIP/2.0/UDP ::1").is_err());
    }

    #[test]
    fn rport_forms() {
        let v = Via::parse("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-;rport").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(RPort::Requested));
        let v = Via::parse("SIP/2.0/UDP h;rport=5061;received=192.0.2.9").unwrap();
        assert_eq!(v.rport(), Some(RPort::Port(5061)));
        assert!(Via::parse("SIP/2.0/UDP h;rport=x").is_err());
        assert!(Via::parse("SIP/2.0/UDP h;rport=70000").is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
