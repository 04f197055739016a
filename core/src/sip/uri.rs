//! [`Uri`], [`SipUri`] and [`Host`]: the `sip:`/`sips:` URI of RFC 3261 section 19.1, parsed
//! into its parts, and every other scheme (`tel:`, `http:`, `urn:` ...) kept as opaque text.
//!
//! Components are stored exactly as received, `%HH` escapes included, so that
//! `uri.to_string()` reproduces the input (modulo the scheme's case) and a proxy never
//! re-encodes what it forwards. [`SipUri::user_decoded`] and friends resolve escapes on demand.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::error::SipError;
use super::lex::{is_unreserved, pct_decode, valid_escaped};
use super::params::Params;

/// `sip` or `sips`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS to the last hop).
    Sips,
}

/// The host part of a SIP URI or a Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as received.
    Domain(String),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference; written with its brackets (`[2001:db8::1]`).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses a host: `[v6]`, dotted quad, or a domain of alphanumerics, `-`, `.` (and `_`,
    /// which is outside the grammar but common in the field).
    pub fn parse(s: &str) -> Result<Host, SipError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(SipError::BadUri("unterminated IPv6 reference"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::Ipv6)
                .map_err(|_| SipError::BadUri("bad IPv6 address"));
        }
        if s.is_empty() {
            return Err(SipError::BadUri("empty host"));
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Host::Ipv4(v4));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(SipError::BadUri("bad character in host"));
        }
        Ok(Host::Domain(s.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed `sip:` or `sips:` URI:
/// `scheme ":" [ user [ ":" password ] "@" ] host [ ":" port ] *( ";" param ) [ "?" headers ]`.
///
/// ```
/// use siprtmp_core::sip::{Host, SipUri};
/// let u: SipUri = "sips:alice%20b@[2001:db8::1]:5061;transport=tcp;lr?subject=hi".parse().unwrap();
/// assert_eq!(u.user.as_deref(), Some("alice%20b"));
/// assert_eq!(u.user_decoded().unwrap(), b"alice b");
/// assert_eq!(u.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
/// assert_eq!(u.port, Some(5061));
/// assert_eq!(u.params.value("transport"), Some("tcp"));
/// assert_eq!(u.to_string(), "sips:alice%20b@[2001:db8::1]:5061;transport=tcp;lr?subject=hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// User part, escapes kept (`None` when the URI has no `@`).
    pub user: Option<String>,
    /// Password after `user:`, escapes kept (deprecated by RFC 3261 but legal).
    pub password: Option<String>,
    /// Host.
    pub host: Host,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// URI parameters (`transport`, `lr`, `maddr`, `user` ...), order kept.
    pub params: Params,
    /// URI headers after `?` as `(name, value)`, escapes kept.
    pub headers: Vec<(String, String)>,
}

/// `user-unreserved` adds `& = + $ , ; ? /` to `unreserved`.
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// Password characters: `unreserved` plus `& = + $ ,`.
fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar` = `param-unreserved` / `unreserved` (`param-unreserved` = `[ ] / : & + $`).
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hname`/`hvalue` characters: `hnv-unreserved` (`[ ] / ? : + $`) plus `unreserved`.
fn is_hnv_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

impl SipUri {
    /// A URI with just a scheme and host.
    pub fn new(scheme: Scheme, host: Host) -> SipUri {
        SipUri {
            scheme,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%HH` escapes resolved (bytes: `%00` is legal).
    pub fn user_decoded(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(pct_decode)
    }

    /// The `transport` URI parameter, if any.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Parses the text after `sip:` / `sips:`.
    fn parse_rest(scheme: Scheme, rest: &str) -> Result<SipUri, SipError> {
        // `@` cannot appear unescaped after the userinfo (params, headers and host exclude
        // it), while the user part may contain `;` and `?`; so the first `@` is the split.
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (mut user, mut password) = (None, None);
        if let Some(ui) = userinfo {
            let (u, p) = match ui.find(':') {
                Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                None => (ui, None),
            };
            if u.is_empty() || !valid_escaped(u, is_user_char) {
                return Err(SipError::BadUri("bad user part"));
            }
            if let Some(p) = p {
                if !valid_escaped(p, is_password_char) {
                    return Err(SipError::BadUri("bad password"));
                }
                password = Some(p.to_string());
            }
            user = Some(u.to_string());
        }

        // host [":" port]
        let b = hostpart.as_bytes();
        let host_end = if b.first() == Some(&b'[') {
            hostpart
                .find(']')
                .map(|i| i + 1)
                .ok_or(SipError::BadUri("unterminated IPv6 reference"))?
        } else {
            hostpart.find([':', ';', '?']).unwrap_or(hostpart.len())
        };
        let host = Host::parse(&hostpart[..host_end])?;
        let mut i = host_end;
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let start = i + 1;
            let end = hostpart[start..]
                .find([';', '?'])
                .map_or(hostpart.len(), |e| start + e);
            port = Some(parse_port(&hostpart[start..end]).ok_or(SipError::BadUri("bad port"))?);
            i = end;
        }

        // *( ";" pname [ "=" pvalue ] )
        let mut params = Params::new();
        while b.get(i) == Some(&b';') {
            let start = i + 1;
            let end = hostpart[start..]
                .find([';', '?'])
                .map_or(hostpart.len(), |e| start + e);
            let item = &hostpart[start..end];
            let (name, value) = match item.find('=') {
                Some(e) => (&item[..e], Some(&item[e + 1..])),
                None => (item, None),
            };
            if name.is_empty() || !valid_escaped(name, is_param_char) {
                return Err(SipError::BadUri("bad URI parameter name"));
            }
            if let Some(v) = value {
                if v.is_empty() || !valid_escaped(v, is_param_char) {
                    return Err(SipError::BadUri("bad URI parameter value"));
                }
            }
            params.push(name, value);
            i = end;
        }

        // [ "?" header *( "&" header ) ]
        let mut headers = Vec::new();
        if b.get(i) == Some(&b'?') {
            for item in hostpart[i + 1..].split('&') {
                let (name, value) = item
                    .split_once('=')
                    .ok_or(SipError::BadUri("URI header without '='"))?;
                if name.is_empty()
                    || !valid_escaped(name, is_hnv_char)
                    || !valid_escaped(value, is_hnv_char)
                {
                    return Err(SipError::BadUri("bad URI header"));
                }
                headers.push((name.to_string(), value.to_string()));
            }
        } else if i != hostpart.len() {
            return Err(SipError::BadUri("trailing characters after host"));
        }

        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

/// A decimal port of one to five digits, at most 65535.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        for (n, (name, value)) in self.headers.iter().enumerate() {
            f.write_str(if n == 0 { "?" } else { "&" })?;
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

impl FromStr for SipUri {
    type Err = SipError;
    fn from_str(s: &str) -> Result<SipUri, SipError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            Uri::Other(_) => Err(SipError::BadUri("not a sip: or sips: URI")),
        }
    }
}

/// Any URI a SIP message may carry: a parsed SIP URI, or another scheme kept opaque
/// (`tel:+1-201-555-0123`, `urn:service:sos`, `http://...`). RFC 3261 lets a SIP element
/// route on schemes it does not understand without parsing them, so they are not.
///
/// ```
/// use siprtmp_core::sip::Uri;
/// let tel = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
/// assert!(matches!(tel, Uri::Other(_)));
/// assert_eq!(tel.to_string(), "tel:+1-201-555-0123;phone-context=example.com");
/// assert!(Uri::parse("sip:bob@biloxi.example.com").unwrap().as_sip().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other `scheme:rest`, verbatim.
    Other(String),
}

impl Uri {
    /// Parses a URI. The scheme must be `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
    /// followed by `:`; whitespace, control characters and `<>"` are never part of a URI.
    pub fn parse(s: &str) -> Result<Uri, SipError> {
        let colon = s.find(':').ok_or(SipError::BadUri("no scheme"))?;
        let scheme = &s[..colon];
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(SipError::BadUri("bad scheme"));
        }
        if s.bytes()
            .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
        {
            return Err(SipError::BadUri("forbidden character in URI"));
        }
        let rest = &s[colon + 1..];
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(Scheme::Sip, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(Scheme::Sips, rest).map(Uri::Sip)
        } else if rest.is_empty() {
            Err(SipError::BadUri("empty opaque URI"))
        } else {
            Ok(Uri::Other(s.to_string()))
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }

    /// The scheme as written for opaque URIs, `sip`/`sips` otherwise.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) => match u.scheme {
                Scheme::Sip => "sip",
                Scheme::Sips => "sips",
            },
            Uri::Other(s) => s.split(':').next().unwrap_or(""),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Other(s) => f.write_str(s),
        }
    }
}

impl FromStr for Uri {
    type Err = SipError;
    fn from_str(s: &str) -> Result<Uri, SipError> {
        Uri::parse(s)
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Uri {
        Uri::Sip(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        s.parse().unwrap()
    }

    #[test]
    fn userinfo_with_unusual_characters() {
        // RFC 4475 3.1.1.2: user and password use every legal odd character.
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert!(u.params.is_empty());
    }

    #[test]
    fn escapes_are_kept_and_decodable() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user_decoded().unwrap(), b"sips:user@example.com");
        let u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.params.get("%6C%72"), Some(None));
        assert_eq!(u.params.value("n%61me"), Some("v%61lue%25%34%31"));
        assert_eq!(
            u.to_string(),
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
        );
        assert_eq!(
            sip("sip:null-%00-null@example.com").user_decoded().unwrap(),
            b"null-\0-null"
        );
        assert!(Uri::parse("sip:a%2@example.com").is_err());
    }

    #[test]
    fn semicolon_in_user_part() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user_decoded().unwrap(), b"user;par=u@example.net");
        assert_eq!(u.host, Host::Domain("example.com".into()));
    }

    #[test]
    fn hosts_ports_and_headers() {
        let u = sip("sip:[2001:db8::10]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, None);
        let u = sip("sip:alice@192.0.2.4:5060;transport=udp?Route=%3Csip:example.com%3E&x=");
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(u.port, Some(5060));
        assert_eq!(u.transport(), Some("udp"));
        assert_eq!(
            u.headers,
            vec![
                ("Route".to_string(), "%3Csip:example.com%3E".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(
            u.to_string(),
            "sip:alice@192.0.2.4:5060;transport=udp?Route=%3Csip:example.com%3E&x="
        );
        assert_eq!(
            sip("SIP:ALICE@AtLanTa.CoM").to_string(),
            "sip:ALICE@AtLanTa.CoM"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:@host",
            "sip:host:",
            "sip:host:65536",
            "sip:host:5x",
            "sip:[::1",
            "sip:[zz]",
            "sip:ho st",
            "sip:host;",
            "sip:host;a=",
            "sip:host?x",
            "<sip:host>",
            "sip:user@example.com; lr",
            "nocolon",
            "1abc:x",
            "tel:",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        for s in [
            "tel:+1-201-555-0123",
            "soap.beep://192.0.2.103:3002",
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "isbn:2983792873",
            "http://www.example.com",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u, Uri::Other(s.to_string()));
            assert_eq!(u.to_string(), s);
        }
        assert_eq!(Uri::parse("soap.beep://x").unwrap().scheme(), "soap.beep");
    }
}
