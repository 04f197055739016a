//! Building SIP requests and responses outside a dialog's state (RFC 3261 sections 8.1.1,
//! 8.2.6, 9.1, 12.1.1): fresh branches and tags, the Via a request is sent with
//! ([`SentBy`]), an out-of-dialog request ([`new_request`]), a response copying what it must
//! from its request ([`make_response`]) and the CANCEL for a sent INVITE ([`cancel_for`]).
//!
//! Every request gets a Via placeholder: the sent-by given by the caller, a fresh `z9hG4bK`
//! branch and `rport` (RFC 3581). The transport layer may rewrite sent-by when it knows the
//! real local address. Randomness comes from the caller's [`SeededRng`].

use bytes::Bytes;

use super::dialog::DialogError;
use super::error::SipError;
use super::lex::split_list;
use super::message::{Method, Request, Response};
use super::name_addr::NameAddr;
use super::uri::{Host, Uri};
use super::via::Via;
use crate::rng::SeededRng;

/// Max-Forwards of every request this module builds (RFC 3261 8.1.1.6).
pub const MAX_FORWARDS: u8 = 70;
/// The RFC 3261 branch prefix ("magic cookie").
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// A fresh Via branch: the magic cookie plus 16 random characters (~95 bits).
pub fn new_branch(rng: &mut SeededRng) -> String {
    format!("{BRANCH_MAGIC}{}", rng.token(16))
}

/// A fresh From/To tag (10 random characters, ~59 bits; 19.3 asks for at least 32).
pub fn new_tag(rng: &mut SeededRng) -> String {
    rng.token(10)
}

/// Where requests are sent from, for the Via placeholder: transport token and sent-by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBy {
    /// Transport token (`UDP`, `TCP`, `TLS`, `WS` ...).
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port (`None`: the transport's default).
    pub port: Option<u16>,
}

impl SentBy {
    /// A sent-by.
    pub fn new(transport: &str, host: Host, port: Option<u16>) -> SentBy {
        SentBy {
            transport: transport.into(),
            host,
            port,
        }
    }

    /// A Via hop with a fresh branch and `rport` (RFC 3581: ask for the source port).
    pub fn via(&self, rng: &mut SeededRng) -> Via {
        let mut v = Via::new(&self.transport, self.host.clone(), self.port);
        v.params.push("branch", Some(&new_branch(rng)));
        v.params.push("rport", None);
        v
    }
}

/// Methods whose 2xx/1xx can establish a dialog.
pub(super) fn creates_dialog(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Subscribe | Method::Refer)
}

pub(super) fn new_request_shell(method: Method, uri: Uri) -> Request {
    Request {
        method,
        uri,
        version: "SIP/2.0".into(),
        headers: super::Headers::new(),
        body: Bytes::new(),
        raw: None,
    }
}

/// An out-of-dialog request to build with [`new_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub request_uri: Uri,
    /// From; a tag is added unless it has one.
    pub from: NameAddr,
    /// To (no tag outside a dialog).
    pub to: NameAddr,
    /// Call-ID; `None` draws one from the rng (`<random>@<sent-by host>`).
    pub call_id: Option<String>,
    /// CSeq number.
    pub cseq: u32,
    /// Contact, if the method wants one (INVITE, REGISTER, SUBSCRIBE ...).
    pub contact: Option<NameAddr>,
    /// Pre-loaded Route set (an outbound proxy), in visiting order.
    pub route: Vec<Uri>,
}

impl NewRequest {
    /// A request with a fresh Call-ID, no Contact and no Route.
    pub fn new(method: Method, request_uri: Uri, from: NameAddr, to: NameAddr, cseq: u32) -> Self {
        NewRequest {
            method,
            request_uri,
            from,
            to,
            call_id: None,
            cseq,
            contact: None,
            route: Vec::new(),
        }
    }
}

/// Builds an out-of-dialog request (8.1.1): Via placeholder from `sent_by` (fresh branch,
/// `rport`), Max-Forwards 70, Route, To, From (tagged), Call-ID, CSeq, Contact,
/// Content-Length 0.
///
/// ```
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::sip::{new_request, Host, Method, NewRequest, SentBy};
/// let mut rng = SeededRng::new(3);
/// let sent_by = SentBy::new("UDP", Host::Domain("bobspc.biloxi.com".into()), Some(5060));
/// let mut spec = NewRequest::new(
///     Method::Register,
///     "sip:registrar.biloxi.com".parse().unwrap(),
///     "Bob <sip:bob@biloxi.com>".parse().unwrap(),
///     "Bob <sip:bob@biloxi.com>".parse().unwrap(),
///     1826,
/// );
/// spec.contact = Some("<sip:bob@192.0.2.4>".parse().unwrap());
/// let req = new_request(spec, &sent_by, &mut rng);
/// let h = &req.headers;
/// assert!(h.call_id().unwrap().ends_with("@bobspc.biloxi.com"));
/// assert!(h.from().unwrap().tag().is_some());
/// assert!(h.top_via().unwrap().branch().unwrap().starts_with("z9hG4bK"));
/// assert_eq!(h.max_forwards().unwrap(), Some(70));
/// ```
pub fn new_request(spec: NewRequest, sent_by: &SentBy, rng: &mut SeededRng) -> Request {
    let NewRequest {
        method,
        request_uri,
        mut from,
        to,
        call_id,
        cseq,
        contact,
        route,
    } = spec;
    let mut req = new_request_shell(method, request_uri);
    let h = &mut req.headers;
    h.push_owned("Via".into(), sent_by.via(rng).to_string());
    h.push_owned("Max-Forwards".into(), MAX_FORWARDS.to_string());
    for r in route {
        h.push_owned("Route".into(), format!("<{r}>"));
    }
    h.push_owned("To".into(), to.to_string());
    if from.tag().is_none() {
        from.params.set("tag", Some(&new_tag(rng)));
    }
    h.push_owned("From".into(), from.to_string());
    let call_id = call_id.unwrap_or_else(|| format!("{}@{}", rng.token(20), sent_by.host));
    h.push_owned("Call-ID".into(), call_id);
    h.push_owned("CSeq".into(), format!("{cseq} {}", req.method));
    if let Some(c) = contact {
        req.headers.push_owned("Contact".into(), c.to_string());
    }
    req.headers.push("Content-Length", "0");
    req
}

/// Builds a response to `request` (8.2.6): every Via line in order, From, To (with
/// `to_tag` added when the request's To has no tag), Call-ID, CSeq, Timestamp on a 100,
/// and for a 101-299 to a dialog-creating request (INVITE, SUBSCRIBE, REFER outside a
/// dialog) every Record-Route (12.1.1). Values are copied as received. The caller adds
/// Contact, Content-Type and a body as needed.
///
/// ```
/// use siprtmp_core::sip::{make_response, parse_datagram, SipMessage};
/// let SipMessage::Request(bye) = parse_datagram(b"BYE sip:alice@pc33.atlanta.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\r\nMax-Forwards: 70\r\n\
///     From: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
///     To: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 231 BYE\r\nContent-Length: 0\r\n\r\n").unwrap()
/// else { unreachable!() };
/// let ok = make_response(&bye, 200, "OK", None);
/// assert_eq!(
///     &SipMessage::Response(ok).to_bytes()[..],
///     &b"SIP/2.0 200 OK\r\n\
///     Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\r\n\
///     From: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
///     To: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 231 BYE\r\nContent-Length: 0\r\n\r\n"[..]
/// );
/// ```
pub fn make_response(
    request: &Request,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Response {
    let mut resp = Response {
        status,
        reason: reason.into(),
        version: "SIP/2.0".into(),
        headers: super::Headers::new(),
        body: Bytes::new(),
        raw: None,
    };
    let to_has_tag = request
        .headers
        .to()
        .map(|t| t.tag().is_some())
        .unwrap_or(false);
    let copy_record_route =
        (101..=299).contains(&status) && creates_dialog(&request.method) && !to_has_tag;
    // Walk the request's headers once so that Via, From, To, Call-ID, CSeq and
    // Record-Route keep their relative order and exact spelling.
    for h in &request.headers {
        let name = super::expand_compact(&h.name);
        let keep = ["Via", "From", "Call-ID", "CSeq"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            || (copy_record_route && name.eq_ignore_ascii_case("Record-Route"))
            || (status == 100 && name.eq_ignore_ascii_case("Timestamp"));
        if keep {
            resp.headers.push(&h.name, &h.value);
        } else if name.eq_ignore_ascii_case("To") {
            let value = match to_tag {
                // Appending keeps the value as received; a parsed-and-printed name-addr
                // could differ in spelling.
                Some(tag) if !to_has_tag => format!("{};tag={tag}", h.value),
                _ => h.value.clone(),
            };
            resp.headers.push_owned(h.name.clone(), value);
        }
    }
    resp.headers.push("Content-Length", "0");
    resp
}

/// The CANCEL for an INVITE we sent (9.1): same Request-URI, Call-ID, To, From and CSeq
/// number with method CANCEL, a single Via equal to the INVITE's top Via (so that it
/// matches the INVITE's server transaction hop by hop), and the INVITE's Route headers.
///
/// ```
/// use siprtmp_core::sip::{cancel_for, parse_datagram, Method, SipMessage};
/// let SipMessage::Request(invite) = parse_datagram(b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
///     Route: <sip:p1.atlanta.com;lr>\r\nMax-Forwards: 70\r\n\
///     To: Bob <sip:bob@biloxi.com>\r\nFrom: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n\r\n").unwrap() else { unreachable!() };
/// let cancel = cancel_for(&invite).unwrap();
/// assert_eq!(cancel.method, Method::Cancel);
/// assert_eq!(cancel.headers.get("CSeq"), Some("314159 CANCEL"));
/// assert_eq!(cancel.headers.top_via().unwrap().branch(), Some("z9hG4bKnashds8"));
/// ```
pub fn cancel_for(invite: &Request) -> Result<Request, DialogError> {
    if invite.method != Method::Invite {
        return Err(DialogError::WrongMethod);
    }
    let h = &invite.headers;
    let top_via = h
        .get("Via")
        .map(|v| split_list(v)[0])
        .ok_or(SipError::MissingHeader("Via"))?;
    let seq = h.cseq()?.seq;
    let mut req = new_request_shell(Method::Cancel, invite.uri.clone());
    req.headers.push("Via", top_via);
    req.headers
        .push_owned("Max-Forwards".into(), MAX_FORWARDS.to_string());
    for r in h.get_all("Route") {
        req.headers.push("Route", r);
    }
    let required = |name: &'static str| h.get(name).ok_or(SipError::MissingHeader(name));
    req.headers.push("To", required("To")?);
    req.headers.push("From", required("From")?);
    req.headers.push("Call-ID", h.call_id()?);
    req.headers
        .push_owned("CSeq".into(), format!("{seq} CANCEL"));
    req.headers.push("Content-Length", "0");
    Ok(req)
}
