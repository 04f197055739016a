//! [`Headers`]: the header fields of a SIP message as an ordered list that keeps every name
//! exactly as received (so a forwarded message is not rewritten), with RFC 3261 lookups on
//! top: case-insensitive names, compact forms (`i:` is `Call-ID`), comma-list splitting for
//! the headers whose grammar is a list, and typed accessors for the fields the transaction
//! and dialog layers need.

use super::error::SipError;
use super::lex::{is_token, split_list};
use super::message::Method;
use super::name_addr::NameAddr;
use super::via::Via;

/// One header field: name as written on the wire, value with folding undone and surrounding
/// whitespace trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Name as received (`v`, `VIA`, `Via` ...).
    pub name: String,
    /// Unfolded, trimmed value.
    pub value: String,
}

/// The compact forms of RFC 3261 7.3.3 and later RFCs, lower-case letter to full name.
const COMPACT: [(u8, &str); 17] = [
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// The full name for a compact form, or `name` itself.
pub fn expand_compact(name: &str) -> &str {
    if let [c] = name.as_bytes() {
        let c = c.to_ascii_lowercase();
        if let Some((_, full)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return full;
        }
    }
    name
}

/// True if `a` and `b` name the same header (case-insensitive, compact forms expanded).
pub fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Headers whose grammar is a comma-separated list, so that `H: a, b` equals `H: a` +
/// `H: b` (RFC 3261 7.3.1). Everything else, notably WWW-Authenticate, Authorization,
/// Proxy-Authenticate, Proxy-Authorization (commas between auth-params) and Date (comma after
/// the weekday), and every unknown header, is never split.
const LIST_HEADERS: [&str; 26] = [
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Path",
    "Service-Route",
    "Allow",
    "Allow-Events",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Contact",
    "Content-Encoding",
    "Content-Language",
    "In-Reply-To",
    "Alert-Info",
    "Call-Info",
    "Error-Info",
    "Warning",
    "Reason",
    "Reject-Contact",
    "Request-Disposition",
];

/// True if values of `name` are comma lists that [`Headers::values`] splits.
pub fn is_list_header(name: &str) -> bool {
    let full = expand_compact(name);
    LIST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(full))
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (RFC 3261: a 32-bit unsigned integer).
    pub seq: u32,
    /// Method, which must equal the request's.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Result<CSeq, SipError> {
        let bad = |reason| SipError::header("CSeq", reason);
        let s = s.trim();
        let split = s
            .find([' ', '\t'])
            .ok_or_else(|| bad("expected sequence number and method"))?;
        let (num, method) = (&s[..split], s[split..].trim_start());
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("sequence number is not decimal"));
        }
        let seq = parse_decimal_u32(num).ok_or_else(|| bad("sequence number exceeds 2**32-1"))?;
        if !is_token(method) {
            return Err(bad("method is not a token"));
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

/// Decimal digits (leading zeros allowed) to `u32`, `None` on overflow.
fn parse_decimal_u32(s: &str) -> Option<u32> {
    let mut v: u32 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses a non-negative decimal length as used by Content-Length.
pub(crate) fn parse_length(s: &str) -> Result<usize, SipError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SipError::InvalidContentLength);
    }
    s.parse().map_err(|_| SipError::InvalidContentLength)
}

/// The Contact header set of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (REGISTER: remove all bindings).
    Star,
    /// Zero or more addresses, in order.
    List(Vec<NameAddr>),
}

/// Ordered header fields.
///
/// ```
/// use siprtmp_core::sip::Headers;
/// let mut h = Headers::new();
/// h.push("v", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2");
/// h.push("i", "f81d4fae@example.com");
/// h.push("CSeq", "7 INVITE");
/// h.push("Authorization", "Digest username=\"a\", realm=\"b\"");
/// assert_eq!(h.call_id().unwrap(), "f81d4fae@example.com");
/// assert_eq!(h.vias().unwrap().len(), 2);
/// assert_eq!(h.cseq().unwrap().seq, 7);
/// assert_eq!(h.values("authorization").len(), 1); // never split
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers { list: Vec::new() }
    }

    /// Room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// Appends a header (the name is kept as given).
    pub fn push(&mut self, name: &str, value: &str) {
        self.list.push(Header {
            name: name.to_string(),
            value: value.to_string(),
        });
    }

    /// Appends an owned header without copying.
    pub fn push_owned(&mut self, name: String, value: String) {
        self.list.push(Header { name, value });
    }

    /// Replaces the first `name` header's value and removes later ones, or appends one.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.list.iter().position(|h| same_header(&h.name, name)) {
            Some(first) => {
                self.list[first].value = value.to_string();
                let mut n = 0;
                self.list.retain(|h| {
                    n += 1;
                    n - 1 <= first || !same_header(&h.name, name)
                });
            }
            None => self.push(name, value),
        }
    }

    /// Inserts a header before all others (a proxy prepending its Via, say).
    pub fn push_front(&mut self, name: &str, value: &str) {
        self.list.insert(
            0,
            Header {
                name: name.to_string(),
                value: value.to_string(),
            },
        );
    }

    /// Removes every `name` header; returns how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.list.len();
        self.list.retain(|h| !same_header(&h.name, name));
        before - self.list.len()
    }

    /// All headers in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.list.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are no headers.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first `name` header's whole value (compact forms and case folded).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every `name` header line's whole value, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.list
            .iter()
            .filter(move |h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`: list headers are split at top-level commas across all their
    /// lines; other headers give one value per line.
    pub fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        let split = is_list_header(name);
        let mut out = Vec::new();
        for v in self
            .list
            .iter()
            .filter(|h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
        {
            if split {
                out.extend(split_list(v));
            } else {
                out.push(v);
            }
        }
        out
    }

    fn require(&self, name: &'static str) -> Result<&str, SipError> {
        self.get(name).ok_or(SipError::MissingHeader(name))
    }

    /// Call-ID (must be non-empty and free of whitespace).
    pub fn call_id(&self) -> Result<&str, SipError> {
        let v = self.require("Call-ID")?;
        if v.is_empty() || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(SipError::header("Call-ID", "empty or contains whitespace"));
        }
        Ok(v)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, SipError> {
        CSeq::parse(self.require("CSeq")?)
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse(self.require("From")?).map_err(|e| rename(e, "From"))
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse(self.require("To")?).map_err(|e| rename(e, "To"))
    }

    /// All Via hops, topmost first (empty if there is no Via).
    pub fn vias(&self) -> Result<Vec<Via>, SipError> {
        self.values("Via").into_iter().map(Via::parse).collect()
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via, SipError> {
        let first = self.require("Via")?;
        Via::parse(split_list(first)[0])
    }

    /// Contact: `*`, or the (possibly empty) list of addresses.
    pub fn contacts(&self) -> Result<Contacts, SipError> {
        let values = self.values("Contact");
        if values.len() == 1 && values[0] == "*" {
            return Ok(Contacts::Star);
        }
        values
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|e| rename(e, "Contact")))
            .collect::<Result<Vec<_>, _>>()
            .map(Contacts::List)
    }

    /// Route entries in order.
    pub fn routes(&self) -> Result<Vec<NameAddr>, SipError> {
        self.name_addr_list("Route")
    }

    /// Record-Route entries in order.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, SipError> {
        self.name_addr_list("Record-Route")
    }

    fn name_addr_list(&self, name: &'static str) -> Result<Vec<NameAddr>, SipError> {
        self.values(name)
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|e| rename(e, name)))
            .collect()
    }

    /// Content-Length, `None` if absent. Several headers must agree.
    pub fn content_length(&self) -> Result<Option<usize>, SipError> {
        let mut found = None;
        for v in self.get_all("Content-Length") {
            let n = parse_length(v)?;
            if found.is_some_and(|f| f != n) {
                return Err(SipError::ConflictingContentLength);
            }
            found = Some(n);
        }
        Ok(found)
    }

    /// Content-Type as written (`application/sdp`, parameters included).
    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
    }

    /// Max-Forwards (0..=255), `None` if absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, SipError> {
        self.get("Max-Forwards")
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SipError::header("Max-Forwards", "not decimal"));
                }
                parse_decimal_u32(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(SipError::header("Max-Forwards", "exceeds 255"))
            })
            .transpose()
    }

    /// Expires in seconds, `None` if absent.
    pub fn expires(&self) -> Result<Option<u32>, SipError> {
        self.get("Expires")
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SipError::header("Expires", "not decimal"));
                }
                parse_decimal_u32(v).ok_or(SipError::header("Expires", "exceeds 2**32-1"))
            })
            .transpose()
    }
}

/// Re-labels a URI/name-addr error with the header it came from.
fn rename(e: SipError, name: &str) -> SipError {
    match e {
        SipError::BadUri(reason) => SipError::header(name, reason),
        other => other,
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_resolve() {
        let mut h = Headers::new();
        for (c, v) in [
            ("i", "id1"),
            ("m", "<sip:a@b>"),
            ("e", "gzip"),
            ("l", "0"),
            ("c", "application/sdp"),
            ("f", "<sip:f@x>;tag=1"),
            ("s", "hello"),
            ("k", "100rel"),
            ("t", "<sip:t@x>"),
            ("v", "SIP/2.0/UDP h;branch=z9hG4bKx"),
            ("o", "presence"),
            ("u", "refer"),
            ("r", "<sip:r@x>"),
            ("a", "*;audio"),
            ("b", "<sip:b@x>"),
            ("x", "1800"),
            ("y", "abc"),
        ] {
            h.push(&c.to_ascii_uppercase(), v);
        }
        for (long, v) in [
            ("Call-ID", "id1"),
            ("contact", "<sip:a@b>"),
            ("Content-Encoding", "gzip"),
            ("CONTENT-LENGTH", "0"),
            ("Content-Type", "application/sdp"),
            ("From", "<sip:f@x>;tag=1"),
            ("Subject", "hello"),
            ("Supported", "100rel"),
            ("To", "<sip:t@x>"),
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"),
            ("Event", "presence"),
            ("Allow-Events", "refer"),
            ("Refer-To", "<sip:r@x>"),
            ("Accept-Contact", "*;audio"),
            ("Referred-By", "<sip:b@x>"),
            ("Session-Expires", "1800"),
            ("Identity", "abc"),
        ] {
            assert_eq!(h.get(long), Some(v), "{long}");
        }
        // And the other way round: a compact query finds a long header.
        let mut h = Headers::new();
        h.push("Call-ID", "x");
        assert_eq!(h.get("I"), Some("x"));
        assert_eq!(h.get("ii"), None);
    }

    #[test]
    fn multi_value_splitting() {
        let mut h = Headers::new();
        h.push("Contact", r#""Doe, John" <sip:j,k@x;a=1>;q=0.5, <sip:k@y>"#);
        h.push("m", "sip:l@z;expires=60");
        h.push("Allow", "INVITE, ACK,BYE");
        h.push(
            "WWW-Authenticate",
            r#"Digest realm="a", nonce="b", qop="auth,auth-int""#,
        );
        h.push("Date", "Sat, 13 Nov 2010 23:29:00 GMT");
        h.push("X-Unknown", "a, b");
        assert_eq!(h.values("Allow"), vec!["INVITE", "ACK", "BYE"]);
        assert_eq!(h.values("www-authenticate").len(), 1);
        assert_eq!(h.values("Date"), vec!["Sat, 13 Nov 2010 23:29:00 GMT"]);
        assert_eq!(h.values("X-Unknown"), vec!["a, b"]);
        let Contacts::List(c) = h.contacts().unwrap() else {
            panic!("expected a list")
        };
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].display_name.as_deref(), Some("Doe, John"));
        assert_eq!(c[0].params.value("q"), Some("0.5"));
        assert_eq!(c[2].params.value("expires"), Some("60"));
    }

    #[test]
    fn star_contact_and_empty_contact() {
        let mut h = Headers::new();
        assert_eq!(h.contacts().unwrap(), Contacts::List(vec![]));
        h.push("Contact", "*");
        assert_eq!(h.contacts().unwrap(), Contacts::Star);
    }

    #[test]
    fn scalar_accessors() {
        let mut h = Headers::new();
        h.push("cseq", "0009\t INVITE");
        h.push("Max-Forwards", "0068");
        h.push("Expires", "4294967295");
        h.push("l", "150");
        assert_eq!(
            h.cseq().unwrap(),
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert_eq!(h.max_forwards().unwrap(), Some(68));
        assert_eq!(h.expires().unwrap(), Some(u32::MAX));
        assert_eq!(h.content_length().unwrap(), Some(150));
        h.set("Max-Forwards", "256");
        assert!(h.max_forwards().is_err());
        h.set("Expires", "4294967296");
        assert!(h.expires().is_err());
        h.set("CSeq", "36893488147419103232 REGISTER");
        assert!(h.cseq().is_err());
        h.set("CSeq", "-1 INVITE");
        assert!(h.cseq().is_err());
        h.push("Content-Length", "5");
        assert_eq!(h.content_length(), Err(SipError::ConflictingContentLength));
        h.set("Content-Length", "-999");
        assert_eq!(h.content_length(), Err(SipError::InvalidContentLength));
        assert_eq!(h.call_id(), Err(SipError::MissingHeader("Call-ID")));
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut h = Headers::new();
        h.push("A", "1");
        h.push("v", "x");
        h.push("B", "2");
        h.push("Via", "y");
        h.set("VIA", "z");
        let names: Vec<_> = h
            .iter()
            .map(|x| (x.name.as_str(), x.value.as_str()))
            .collect();
        assert_eq!(names, vec![("A", "1"), ("v", "z"), ("B", "2")]);
        assert_eq!(h.remove("a"), 1);
        h.push_front("Via", "top");
        assert_eq!(h.get("v"), Some("top"));
    }
}
