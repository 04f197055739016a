//! SIP dialogs (RFC 3261 sections 12, 13, 15 and 16.12 loose routing): [`Dialog`], the state
//! of one dialog (Call-ID, tags, URIs, CSeq numbers, remote target, route set, secure flag,
//! early/confirmed/terminated), created on the UAC side from the 1xx/2xx answering our INVITE
//! and on the UAS side from the INVITE we received; it builds in-dialog requests
//! ([`Dialog::request`], [`Dialog::ack_for_2xx`]) with the Request-URI and Route set per
//! 12.2.1.1, and checks incoming requests' CSeq order (12.2.2). Requests and responses outside
//! a dialog's state are built in [`super::request_build`] (re-exported here). The ACK for a
//! non-2xx final response belongs to the INVITE client transaction (17.1.1.3), not here.

use std::fmt;

use bytes::Bytes;

use super::error::SipError;
use super::headers::Contacts;
use super::message::{Method, Request, Response};
use super::name_addr::NameAddr;
use super::uri::{Scheme, Uri};
use crate::rng::SeededRng;

pub use super::request_build::{
    cancel_for, make_response, new_branch, new_request, new_tag, NewRequest, SentBy, BRANCH_MAGIC,
    MAX_FORWARDS,
};
use super::request_build::{creates_dialog, new_request_shell};

/// Why a dialog could not be created or a message does not fit it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogError {
    /// A header needed here is missing or malformed.
    Sip(SipError),
    /// The message cannot create a dialog (not an INVITE, or a response that is neither
    /// 2xx nor a tagged 101-199).
    NotDialogCreating,
    /// A 2xx to INVITE, or an INVITE, without a Contact (12.1.1, 12.1.2).
    MissingContact,
    /// The response carries no To tag, so it identifies no dialog.
    MissingToTag,
    /// Call-ID or tags do not match this dialog (a UAS answers 481).
    Mismatch,
    /// A request with a CSeq lower than the last one seen (12.2.2: answer 500).
    CSeqOutOfOrder {
        /// The CSeq received.
        received: u32,
        /// The dialog's remote CSeq.
        remote: u32,
    },
    /// The local CSeq would pass 2**32-1.
    CSeqExhausted,
    /// The dialog is terminated.
    Terminated,
    /// ACK and CANCEL are not built by [`Dialog::request`] (see [`Dialog::ack_for_2xx`] and
    /// [`cancel_for`]), and only an INVITE can be cancelled.
    WrongMethod,
}

impl DialogError {
    /// The response a UAS sends for a request rejected with this error.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            DialogError::Mismatch | DialogError::Terminated => {
                (481, "Call/Transaction Does Not Exist")
            }
            DialogError::CSeqOutOfOrder { .. } | DialogError::CSeqExhausted => {
                (500, "Server Internal Error")
            }
            _ => (400, "Bad Request"),
        }
    }
}

impl fmt::Display for DialogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialogError::Sip(e) => write!(f, "{e}"),
            DialogError::NotDialogCreating => write!(f, "message does not create a dialog"),
            DialogError::MissingContact => write!(f, "dialog-creating message lacks Contact"),
            DialogError::MissingToTag => write!(f, "response lacks a To tag"),
            DialogError::Mismatch => write!(f, "message does not belong to this dialog"),
            DialogError::CSeqOutOfOrder { received, remote } => {
                write!(f, "CSeq {received} is lower than the dialog's {remote}")
            }
            DialogError::CSeqExhausted => write!(f, "local CSeq exhausted"),
            DialogError::Terminated => write!(f, "dialog is terminated"),
            DialogError::WrongMethod => write!(f, "method not allowed here"),
        }
    }
}

impl std::error::Error for DialogError {}

impl From<SipError> for DialogError {
    fn from(e: SipError) -> DialogError {
        DialogError::Sip(e)
    }
}

/// Dialog state (RFC 3261 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended by BYE, or by a 481/408 to an in-dialog request.
    Terminated,
}

/// Identifies a dialog: Call-ID plus local and remote tag, as seen from this UA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag (empty for an RFC 2543 peer that sent none).
    pub remote_tag: String,
}

impl DialogId {
    /// The id an incoming request names: local tag from To, remote tag from From.
    pub fn of_incoming_request(request: &Request) -> Result<DialogId, SipError> {
        let h = &request.headers;
        Ok(DialogId {
            call_id: h.call_id()?.to_string(),
            local_tag: h.to()?.tag().unwrap_or("").to_string(),
            remote_tag: h.from()?.tag().unwrap_or("").to_string(),
        })
    }

    /// The id an incoming response names: local tag from From, remote tag from To.
    pub fn of_incoming_response(response: &Response) -> Result<DialogId, SipError> {
        let h = &response.headers;
        Ok(DialogId {
            call_id: h.call_id()?.to_string(),
            local_tag: h.from()?.tag().unwrap_or("").to_string(),
            remote_tag: h.to()?.tag().unwrap_or("").to_string(),
        })
    }
}

/// Methods whose requests (and 2xx) replace the remote target (RFC 3261 12.2, RFC 3311,
/// RFC 6665, RFC 3515), and which therefore carry a Contact.
fn is_target_refresh(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

/// A name-addr with its `tag` removed: the dialog's local or remote URI.
fn without_tag(mut a: NameAddr) -> NameAddr {
    a.params.remove("tag");
    a
}

fn with_tag(a: &NameAddr, tag: &str) -> String {
    let mut a = a.clone();
    if !tag.is_empty() {
        a.params.set("tag", Some(tag));
    }
    a.to_string()
}

/// The first Contact URI, if any.
fn first_contact(h: &super::Headers) -> Result<Option<NameAddr>, DialogError> {
    Ok(match h.contacts()? {
        Contacts::List(mut l) if !l.is_empty() => Some(l.swap_remove(0)),
        _ => None,
    })
}

/// A URI as it may appear as a Request-URI: the `method` parameter and URI headers are
/// not allowed there (RFC 3261 19.1.1 table 1, 12.2.1.1).
fn as_request_uri(uri: &Uri) -> Uri {
    match uri {
        Uri::Sip(u) => {
            let mut u = u.clone();
            u.params.remove("method");
            u.headers.clear();
            Uri::Sip(u)
        }
        other => other.clone(),
    }
}

fn is_loose(uri: &Uri) -> bool {
    uri.as_sip().is_some_and(|u| u.params.contains("lr"))
}

/// The state of one dialog, and the in-dialog requests built from it.
///
/// ```
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::sip::{parse_datagram, Dialog, DialogState, Host, Method, SentBy, SipMessage};
/// let msg = |b: &[u8]| parse_datagram(b).unwrap();
/// let SipMessage::Request(invite) = msg(b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
///     To: Bob <sip:bob@biloxi.com>\r\n\
///     From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n\
///     Contact: <sip:alice@pc33.atlanta.com>\r\n\r\n") else { unreachable!() };
/// let SipMessage::Response(ok) = msg(b"SIP/2.0 200 OK\r\n\
///     Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
///     Record-Route: <sip:p2.biloxi.com;lr>, <sip:p1.atlanta.com;lr>\r\n\
///     To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
///     From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n\
///     Contact: <sip:bob@192.0.2.4>\r\n\r\n") else { unreachable!() };
///
/// let mut dialog = Dialog::uac(&invite, &ok).unwrap();
/// assert_eq!(dialog.state(), DialogState::Confirmed);
/// let mut rng = SeededRng::new(1);
/// let from = SentBy::new("UDP", Host::Domain("pc33.atlanta.com".into()), None);
/// let bye = dialog.request(Method::Bye, &from, &mut rng).unwrap();
/// // Loose routing: Request-URI is the remote target, Route the reversed Record-Route.
/// assert_eq!(bye.uri.to_string(), "sip:bob@192.0.2.4");
/// let routes: Vec<String> =
///     bye.headers.routes().unwrap().iter().map(|r| r.uri.to_string()).collect();
/// assert_eq!(routes, ["sip:p1.atlanta.com;lr", "sip:p2.biloxi.com;lr"]);
/// assert_eq!(bye.headers.cseq().unwrap().seq, 314160);
/// assert_eq!(bye.headers.to().unwrap().tag(), Some("a6c85cf"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    state: DialogState,
    is_uac: bool,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    local_uri: NameAddr,
    remote_uri: NameAddr,
    local_cseq: Option<u32>,
    remote_cseq: Option<u32>,
    remote_target: Uri,
    route_set: Vec<Uri>,
    secure: bool,
    local_contact: NameAddr,
}

impl Dialog {
    /// UAC side (12.1.2): from the INVITE (or SUBSCRIBE/REFER) we sent and a response to it
    /// carrying a To tag: a 101-199 gives an early dialog, a 2xx a confirmed one. The route
    /// set is the response's Record-Route reversed; the remote target its Contact (a 1xx
    /// without Contact falls back to the Request-URI until a later response supplies one).
    pub fn uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = match response.status {
            101..=199 => DialogState::Early,
            200..=299 => DialogState::Confirmed,
            _ => return Err(DialogError::NotDialogCreating),
        };
        if !creates_dialog(&request.method) {
            return Err(DialogError::NotDialogCreating);
        }
        let (req, resp) = (&request.headers, &response.headers);
        let call_id = req.call_id()?;
        let from = req.from()?;
        if resp.call_id()? != call_id
            || resp.from()?.tag() != from.tag()
            || resp.cseq()?.seq != req.cseq()?.seq
        {
            return Err(DialogError::Mismatch);
        }
        let to = resp.to()?;
        let remote_tag = to.tag().ok_or(DialogError::MissingToTag)?.to_string();
        let local_contact = first_contact(req)?.ok_or(DialogError::MissingContact)?;
        let remote_target = match first_contact(resp)? {
            Some(c) => c.uri,
            None if state == DialogState::Early => request.uri.clone(),
            None => return Err(DialogError::MissingContact),
        };
        let mut route_set: Vec<Uri> = resp.record_routes()?.into_iter().map(|r| r.uri).collect();
        route_set.reverse();
        Ok(Dialog {
            state,
            is_uac: true,
            call_id: call_id.to_string(),
            local_tag: from.tag().unwrap_or("").to_string(),
            remote_tag,
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            local_cseq: Some(req.cseq()?.seq),
            remote_cseq: None,
            remote_target,
            route_set,
            secure: is_sips(&request.uri),
            local_contact,
        })
    }

    /// UAS side (12.1.1): from the dialog-creating request we received, the To tag we chose
    /// and the Contact we answer with. `state` is [`DialogState::Early`] when the dialog is
    /// created by a 101-199 we send, [`DialogState::Confirmed`] for a 2xx. The route set is
    /// the request's Record-Route in order; the local CSeq stays empty until our first
    /// request.
    pub fn uas(
        request: &Request,
        local_tag: &str,
        local_contact: NameAddr,
        state: DialogState,
    ) -> Result<Dialog, DialogError> {
        if !creates_dialog(&request.method) {
            return Err(DialogError::NotDialogCreating);
        }
        let h = &request.headers;
        let remote_target = first_contact(h)?.ok_or(DialogError::MissingContact)?.uri;
        let from = h.from()?;
        Ok(Dialog {
            state,
            is_uac: false,
            call_id: h.call_id()?.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: from.tag().unwrap_or("").to_string(),
            local_uri: without_tag(h.to()?),
            remote_uri: without_tag(from),
            local_cseq: None,
            remote_cseq: Some(h.cseq()?.seq),
            remote_target,
            route_set: h.record_routes()?.into_iter().map(|r| r.uri).collect(),
            secure: is_sips(&request.uri),
            local_contact,
        })
    }

    /// The dialog id.
    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
        }
    }

    /// Early, confirmed or terminated.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// True if we created the dialog by sending the request (UAC side).
    pub fn is_uac(&self) -> bool {
        self.is_uac
    }

    /// Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Our tag.
    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    /// The peer's tag.
    pub fn remote_tag(&self) -> &str {
        &self.remote_tag
    }

    /// Our address (From of our requests), without tag.
    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }

    /// The peer's address (To of our requests), without tag.
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }

    /// CSeq of our last request (`None` before the first one on the UAS side).
    pub fn local_cseq(&self) -> Option<u32> {
        self.local_cseq
    }

    /// Sets the CSeq of "our last request": the next request uses `seq + 1`.
    pub fn set_local_cseq(&mut self, seq: u32) {
        self.local_cseq = Some(seq);
    }

    /// Highest CSeq received from the peer.
    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }

    /// Where our requests go (the peer's Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The route set, in the order our requests visit it.
    pub fn route_set(&self) -> &[Uri] {
        &self.route_set
    }

    /// True if the dialog was created with a SIPS Request-URI (12.1.1): every request must
    /// then go over TLS.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Our Contact.
    pub fn local_contact(&self) -> &NameAddr {
        &self.local_contact
    }

    /// Replaces our Contact (the next target refresh carries it).
    pub fn set_local_contact(&mut self, contact: NameAddr) {
        self.local_contact = contact;
    }

    /// Moves an early dialog to confirmed (UAS side, when sending the 2xx).
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// Marks the dialog terminated (after BYE, or a final non-2xx ending an early dialog).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// True if `response` belongs to this dialog (Call-ID, From tag = ours, To tag = theirs).
    pub fn matches_response(&self, response: &Response) -> bool {
        DialogId::of_incoming_response(response).is_ok_and(|id| id == self.id())
    }

    /// True if `request` belongs to this dialog (Call-ID, To tag = ours, From tag = theirs).
    pub fn matches_request(&self, request: &Request) -> bool {
        DialogId::of_incoming_request(request).is_ok_and(|id| id == self.id())
    }

    /// UAC side: a response to a request we sent in this dialog (or to the INVITE that
    /// created it). A 2xx to INVITE confirms an early dialog and recomputes its route set
    /// (13.2.2.4); a 1xx/2xx to a target refresh with a Contact replaces the remote target
    /// (12.2.1.2); a 481 or 408 terminates the dialog.
    pub fn on_response(&mut self, response: &Response) -> Result<(), DialogError> {
        if !self.matches_response(response) {
            return Err(DialogError::Mismatch);
        }
        let h = &response.headers;
        let method = h.cseq()?.method;
        match response.status {
            408 | 481 => self.state = DialogState::Terminated,
            101..=299 if is_target_refresh(&method) => {
                if let Some(c) = first_contact(h)? {
                    self.remote_target = c.uri;
                }
                if response.status >= 200 && self.state == DialogState::Early && self.is_uac {
                    let mut routes: Vec<Uri> =
                        h.record_routes()?.into_iter().map(|r| r.uri).collect();
                    routes.reverse();
                    self.route_set = routes;
                    self.state = DialogState::Confirmed;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// UAS side: a request the peer sent in this dialog (12.2.2). A CSeq lower than the last
    /// one is rejected with [`DialogError::CSeqOutOfOrder`] (answer 500); ACK and CANCEL
    /// repeat the CSeq of the request they refer to and are not ordered. A target refresh
    /// with a Contact replaces the remote target; BYE terminates the dialog.
    pub fn on_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if !self.matches_request(request) {
            return Err(DialogError::Mismatch);
        }
        let seq = request.headers.cseq()?.seq;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(remote) = self.remote_cseq {
                if seq < remote {
                    return Err(DialogError::CSeqOutOfOrder {
                        received: seq,
                        remote,
                    });
                }
            }
            self.remote_cseq = Some(seq);
        }
        if is_target_refresh(&request.method) {
            if let Some(c) = first_contact(&request.headers)? {
                self.remote_target = c.uri;
            }
        }
        if request.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// Request-URI and Route entries for the next request (12.2.1.1 / 16.12.1.1).
    /// Loose first hop (`;lr`): Request-URI is the remote target and Route is the route
    /// set. Strict first hop: Request-URI is that hop, Route is the rest of the route set
    /// followed by the remote target.
    pub fn request_target(&self) -> (Uri, Vec<Uri>) {
        match self.route_set.first() {
            None => (as_request_uri(&self.remote_target), Vec::new()),
            Some(first) if is_loose(first) => {
                (as_request_uri(&self.remote_target), self.route_set.clone())
            }
            Some(first) => {
                let mut routes: Vec<Uri> = self.route_set[1..].to_vec();
                routes.push(self.remote_target.clone());
                (as_request_uri(first), routes)
            }
        }
    }

    /// Builds the common part of an in-dialog request.
    fn build(&self, method: Method, seq: u32, sent_by: &SentBy, rng: &mut SeededRng) -> Request {
        let (uri, routes) = self.request_target();
        let mut req = new_request_shell(method, uri);
        let h = &mut req.headers;
        h.push_owned("Via".into(), sent_by.via(rng).to_string());
        h.push_owned("Max-Forwards".into(), MAX_FORWARDS.to_string());
        for r in routes {
            h.push_owned("Route".into(), format!("<{r}>"));
        }
        h.push_owned("To".into(), with_tag(&self.remote_uri, &self.remote_tag));
        h.push_owned("From".into(), with_tag(&self.local_uri, &self.local_tag));
        h.push("Call-ID", &self.call_id);
        h.push_owned("CSeq".into(), format!("{seq} {}", req.method));
        if is_target_refresh(&req.method) {
            req.headers
                .push_owned("Contact".into(), self.local_contact.to_string());
        }
        req
    }

    /// A new request in this dialog (BYE, re-INVITE, INFO, UPDATE, ...): next local CSeq
    /// (random below 2**31 for the first one on the UAS side), Request-URI and Route per
    /// [`Dialog::request_target`], Via placeholder from `sent_by`, Max-Forwards 70,
    /// From/To with tags, Contact for target refreshes. Body empty; the caller adds one
    /// with its Content-Type. ACK and CANCEL are refused (see [`Dialog::ack_for_2xx`],
    /// [`cancel_for`]), as is any request on a terminated dialog.
    pub fn request(
        &mut self,
        method: Method,
        sent_by: &SentBy,
        rng: &mut SeededRng,
    ) -> Result<Request, DialogError> {
        if matches!(method, Method::Ack | Method::Cancel) {
            return Err(DialogError::WrongMethod);
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        let seq = match self.local_cseq {
            // 8.1.1.5: the initial value must be below 2**31.
            None => 1 + rng.below((1 << 31) - 1) as u32,
            Some(s) => s.checked_add(1).ok_or(DialogError::CSeqExhausted)?,
        };
        self.local_cseq = Some(seq);
        let mut req = self.build(method, seq, sent_by, rng);
        req.headers.push("Content-Length", "0");
        Ok(req)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (13.2.2.4): a new transaction
    /// (fresh branch), built like any in-dialog request but with the INVITE's CSeq number
    /// and method ACK, and the local CSeq left alone. `sdp` becomes the body (an answer to
    /// an offer made in the 2xx). Credentials the INVITE carried must be copied by the
    /// caller.
    pub fn ack_for_2xx(
        &self,
        invite_cseq: u32,
        sdp: Option<Bytes>,
        sent_by: &SentBy,
        rng: &mut SeededRng,
    ) -> Request {
        let mut ack = self.build(Method::Ack, invite_cseq, sent_by, rng);
        if let Some(body) = sdp {
            ack.headers.push("Content-Type", "application/sdp");
            ack.body = body;
        }
        ack.headers.push("Content-Length", "0");
        ack
    }
}

fn is_sips(uri: &Uri) -> bool {
    uri.as_sip().is_some_and(|u| u.scheme == Scheme::Sips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{expand_compact, parse_datagram, same_header, Headers, Host, SipMessage};

    /// Parses a fixture written with `\n` line ends (folded lines allowed).
    fn parse(text: &str) -> SipMessage {
        parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    fn req(text: &str) -> Request {
        match parse(text) {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => panic!("expected a request"),
        }
    }

    fn resp(text: &str) -> Response {
        match parse(text) {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => panic!("expected a response"),
        }
    }

    /// Every header but Via as (full lower-case name, value), sorted: RFC 3261 does not
    /// give header order any meaning apart from Via/Route/Record-Route among themselves.
    fn header_set(h: &Headers) -> Vec<(String, String)> {
        let mut v: Vec<_> = h
            .iter()
            .filter(|x| !same_header(&x.name, "Via"))
            .map(|x| {
                (
                    expand_compact(&x.name).to_ascii_lowercase(),
                    x.value.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Serialises `built`, re-parses it and compares it with the RFC message `expected`:
    /// same start line, same non-Via headers, Vias equal but for a fresh branch and rport
    /// (when `fresh_branch`).
    fn assert_matches_rfc(built: SipMessage, expected: &str, fresh_branch: bool) {
        let wire = built.to_bytes();
        let got = parse_datagram(&wire).unwrap();
        let want = parse(expected);
        let start = |m: &SipMessage| {
            String::from_utf8_lossy(&m.to_bytes())
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(start(&got), start(&want));
        assert_eq!(header_set(got.headers()), header_set(want.headers()));
        let (mut gv, wv) = (
            got.headers().vias().unwrap(),
            want.headers().vias().unwrap(),
        );
        if fresh_branch {
            assert_eq!(gv.len(), 1);
            let branch = gv[0].branch().unwrap().to_string();
            assert!(branch.starts_with(BRANCH_MAGIC) && branch != wv[0].branch().unwrap());
            assert_eq!(gv[0].rport(), Some(crate::sip::RPort::Requested));
            gv[0].params = wv[0].params.clone();
        }
        assert_eq!(gv, wv);
    }

    // RFC 3261 section 24.2 (session setup through two proxies). SDP bodies are elided,
    // so Content-Length is 0 where the RFC shows 142 or 131.
    const F1: &str = include_str!("fixtures/rfc3261-24.2-f1-invite.sip");
    const F2: &str = include_str!("fixtures/rfc3261-24.2-f2-trying.sip");
    const F5: &str = include_str!("fixtures/rfc3261-24.2-f5-invite.sip");
    const F6: &str = include_str!("fixtures/rfc3261-24.2-f6-ringing.sip");
    const F9: &str = include_str!("fixtures/rfc3261-24.2-f9-ok.sip");
    const F11: &str = include_str!("fixtures/rfc3261-24.2-f11-ok.sip");
    const F12: &str = include_str!("fixtures/rfc3261-24.2-f12-ack.sip");
    const F13: &str = include_str!("fixtures/rfc3261-24.2-f13-bye.sip");
    const F14: &str = include_str!("fixtures/rfc3261-24.2-f14-ok.sip");
    // RFC 3261 section 24.1, registration.
    const REGISTER_F1: &str = include_str!("fixtures/rfc3261-24.1-f1-register.sip");

    /// What a server transport does on receipt (18.2.1): `received` on the top Via.
    fn stamp_received(r: &mut Request, addr: &str) {
        let first = r
            .headers
            .iter()
            .position(|h| same_header(&h.name, "Via"))
            .unwrap();
        let mut h: Vec<_> = r.headers.iter().cloned().collect();
        h[first].value.push_str(&format!(";received={addr}"));
        let mut hs = Headers::new();
        for x in h {
            hs.push_owned(x.name, x.value);
        }
        r.headers = hs;
        r.raw = None;
    }

    fn udp(host: &str) -> SentBy {
        SentBy::new("UDP", Host::parse(host).unwrap(), None)
    }

    #[test]
    fn responses_match_rfc3261_24_2() {
        // F2: the atlanta proxy's 100 to Alice's INVITE.
        let mut f1 = req(F1);
        stamp_received(&mut f1, "192.0.2.1");
        assert_matches_rfc(
            SipMessage::Response(make_response(&f1, 100, "Trying", None)),
            F2,
            false,
        );
        // F6 and F9: Bob answers F5.
        let mut f5 = req(F5);
        stamp_received(&mut f5, "192.0.2.3");
        let mut ringing = make_response(&f5, 180, "Ringing", Some("a6c85cf"));
        ringing.headers.push("Contact", "<sip:bob@192.0.2.4>");
        assert_matches_rfc(SipMessage::Response(ringing), F6, false);
        let mut ok = make_response(&f5, 200, "OK", Some("a6c85cf"));
        ok.headers.push("Contact", "<sip:bob@192.0.2.4>");
        ok.headers.push("Content-Type", "application/sdp");
        assert_matches_rfc(SipMessage::Response(ok), F9, false);
        // F14, byte for byte.
        let ok = make_response(&req(F13), 200, "OK", None);
        assert_eq!(SipMessage::Response(ok).to_bytes(), parse(F14).to_bytes());
    }

    #[test]
    fn uac_dialog_from_f11_builds_ack_f12_and_accepts_bye_f13() {
        let mut alice = Dialog::uac(&req(F1), &resp(F11)).unwrap();
        assert_eq!(alice.state(), DialogState::Confirmed);
        assert!(alice.is_uac() && !alice.secure());
        assert_eq!(
            alice.id(),
            DialogId {
                call_id: "a84b4c76e66710".into(),
                local_tag: "1928301774".into(),
                remote_tag: "a6c85cf".into()
            }
        );
        assert_eq!(alice.remote_target().to_string(), "sip:bob@192.0.2.4");
        assert_eq!(
            alice.local_uri().to_string(),
            "\"Alice\" <sip:alice@atlanta.com>"
        );
        assert_eq!(
            alice.local_contact().to_string(),
            "<sip:alice@pc33.atlanta.com>"
        );
        assert!(alice.route_set().is_empty());
        assert_eq!(
            (alice.local_cseq(), alice.remote_cseq()),
            (Some(314159), None)
        );

        let mut rng = SeededRng::new(11);
        let ack = alice.ack_for_2xx(314159, None, &udp("pc33.atlanta.com"), &mut rng);
        // The RFC writes `Alice` unquoted; we quote display names, which is equivalent.
        let f12 = F12
            .replace("Alice <", "\"Alice\" <")
            .replace("Bob <", "\"Bob\" <");
        assert_matches_rfc(SipMessage::Request(ack), &f12, true);
        assert_eq!(alice.local_cseq(), Some(314159));

        // Bob hangs up (F13): in order (first remote CSeq), and it ends the dialog.
        alice.on_request(&req(F13)).unwrap();
        assert_eq!(alice.remote_cseq(), Some(231));
        assert_eq!(alice.state(), DialogState::Terminated);
        assert_eq!(
            alice.request(Method::Bye, &udp("pc33.atlanta.com"), &mut rng),
            Err(DialogError::Terminated)
        );
    }

    #[test]
    fn uas_dialog_from_f5_builds_bye_f13() {
        let mut bob = Dialog::uas(
            &req(F5),
            "a6c85cf",
            "<sip:bob@192.0.2.4>".parse().unwrap(),
            DialogState::Confirmed,
        )
        .unwrap();
        assert!(!bob.is_uac());
        assert_eq!(
            bob.remote_target().to_string(),
            "sip:alice@pc33.atlanta.com"
        );
        assert_eq!((bob.local_cseq(), bob.remote_cseq()), (None, Some(314159)));
        // Bob's CSeq space starts at 231 in the RFC.
        bob.set_local_cseq(230);
        let mut rng = SeededRng::new(12);
        let bye = bob
            .request(Method::Bye, &udp("192.0.2.4"), &mut rng)
            .unwrap();
        let f13 = F13
            .replace("Alice <", "\"Alice\" <")
            .replace("Bob <", "\"Bob\" <");
        assert_matches_rfc(SipMessage::Request(bye), &f13, true);
        assert_eq!(bob.local_cseq(), Some(231));
    }

    #[test]
    fn register_matches_rfc3261_24_1() {
        let mut rng = SeededRng::new(13);
        let mut spec = NewRequest::new(
            Method::Register,
            "sip:registrar.biloxi.com".parse().unwrap(),
            "Bob <sip:bob@biloxi.com>;tag=456248".parse().unwrap(),
            "Bob <sip:bob@biloxi.com>".parse().unwrap(),
            1826,
        );
        spec.call_id = Some("843817637684230@998sdasdh09".into());
        spec.contact = Some("<sip:bob@192.0.2.4>".parse().unwrap());
        let sent_by = SentBy::new("UDP", Host::Domain("bobspc.biloxi.com".into()), Some(5060));
        let mut r = new_request(spec, &sent_by, &mut rng);
        r.headers.push("Expires", "7200");
        let expected = REGISTER_F1.replace("Bob <", "\"Bob\" <");
        assert_matches_rfc(SipMessage::Request(r), &expected, true);

        // Defaults: generated Call-ID and From tag, distinct per request.
        let spec = NewRequest::new(
            Method::Options,
            "sip:carol@chicago.com".parse().unwrap(),
            "<sip:alice@atlanta.com>".parse().unwrap(),
            "<sip:carol@chicago.com>".parse().unwrap(),
            1,
        );
        let a = new_request(spec.clone(), &udp("192.0.2.1"), &mut rng);
        let b = new_request(spec, &udp("192.0.2.1"), &mut rng);
        assert!(a.headers.call_id().unwrap().ends_with("@192.0.2.1"));
        assert_ne!(a.headers.call_id().unwrap(), b.headers.call_id().unwrap());
        assert_ne!(
            a.headers.from().unwrap().tag(),
            b.headers.from().unwrap().tag()
        );
        assert_eq!(a.headers.to().unwrap().tag(), None);
    }

    /// The RFC 3261 16.12.1.1 topology: U1 -> P1 -> P2 -> U2, both proxies record-route.
    const RR_INVITE: &str = include_str!("fixtures/record-route-invite.sip");

    #[test]
    fn route_set_order_uas_versus_uac() {
        let mut rng = SeededRng::new(14);
        let invite = req(RR_INVITE);
        let mut callee = Dialog::uas(
            &invite,
            "u2tag",
            "<sip:callee@u2.domain.com>".parse().unwrap(),
            DialogState::Confirmed,
        )
        .unwrap();
        let names = |r: &[Uri]| r.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(callee.route_set()),
            ["sip:p2.domain.com;lr", "sip:p1.example.com;lr"]
        );
        let bye = callee
            .request(Method::Bye, &udp("u2.domain.com"), &mut rng)
            .unwrap();
        assert_eq!(bye.uri.to_string(), "sip:caller@u1.example.com");
        let routes: Vec<_> = bye
            .headers
            .routes()
            .unwrap()
            .into_iter()
            .map(|r| r.uri)
            .collect();
        assert_eq!(
            names(&routes),
            ["sip:p2.domain.com;lr", "sip:p1.example.com;lr"]
        );
        let first = bye.headers.cseq().unwrap().seq;
        assert!((1..1 << 31).contains(&first), "{first}");

        // The 200 carries the Record-Route back; the caller reverses it.
        let mut ok = make_response(&invite, 200, "OK", Some("u2tag"));
        ok.headers.push("Contact", "<sip:callee@u2.domain.com>");
        assert_eq!(ok.headers.record_routes().unwrap().len(), 2);
        // The caller's own INVITE had one Via and no Record-Route.
        let mut sent = invite.clone();
        sent.headers.remove("Record-Route");
        let caller = Dialog::uac(&sent, &ok).unwrap();
        assert_eq!(
            names(caller.route_set()),
            ["sip:p1.example.com;lr", "sip:p2.domain.com;lr"]
        );
        assert_eq!(
            caller.remote_target().to_string(),
            "sip:callee@u2.domain.com"
        );
    }

    #[test]
    fn strict_routing_per_rfc3261_12_2_1_1() {
        // "if the remote target is sip:user@remoteua and the route set contains
        //  <sip:proxy1>,<sip:proxy2>,<sip:proxy3;lr>,<sip:proxy4>" the request is
        // "METHOD sip:proxy1" with "Route: <sip:proxy2>,<sip:proxy3;lr>,<sip:proxy4>,
        //  <sip:user@remoteua>".
        let invite = req(&RR_INVITE
            .replace(
                "Record-Route: <sip:p2.domain.com;lr>\nRecord-Route: <sip:p1.example.com;lr>",
                "Record-Route: <sip:proxy1;method=INVITE?x=y>,<sip:proxy2>,<sip:proxy3;lr>,<sip:proxy4>",
            )
            .replace("Contact: <sip:caller@u1.example.com>", "Contact: <sip:user@remoteua>"));
        let mut d = Dialog::uas(
            &invite,
            "t",
            "<sip:me@here>".parse().unwrap(),
            DialogState::Confirmed,
        )
        .unwrap();
        let mut rng = SeededRng::new(15);
        let r = d.request(Method::Info, &udp("here"), &mut rng).unwrap();
        // method parameter and URI headers are not allowed in a Request-URI.
        assert_eq!(r.uri.to_string(), "sip:proxy1");
        let routes: Vec<String> = r
            .headers
            .routes()
            .unwrap()
            .iter()
            .map(|x| x.uri.to_string())
            .collect();
        assert_eq!(
            routes,
            [
                "sip:proxy2",
                "sip:proxy3;lr",
                "sip:proxy4",
                "sip:user@remoteua"
            ]
        );
        // INFO is not a target refresh: no Contact.
        assert!(r.headers.get("Contact").is_none());
        let reinvite = d.request(Method::Invite, &udp("here"), &mut rng).unwrap();
        assert_eq!(reinvite.headers.get("Contact"), Some("<sip:me@here>"));
        assert_eq!(
            reinvite.headers.cseq().unwrap().seq,
            r.headers.cseq().unwrap().seq + 1
        );
    }

    #[test]
    fn cseq_ordering_and_target_refresh_on_the_uas_side() {
        let mut bob = Dialog::uas(
            &req(F5),
            "a6c85cf",
            "<sip:bob@192.0.2.4>".parse().unwrap(),
            DialogState::Confirmed,
        )
        .unwrap();
        let in_dialog = |method: &str, seq: u32, extra: &str| {
            req(&format!(
                "{method} sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK{seq}{method}
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: {seq} {method}
{extra}Content-Length: 0

"
            ))
        };
        // The ACK for the 2xx repeats the INVITE's number; not an ordering violation.
        bob.on_request(&in_dialog("ACK", 314159, "")).unwrap();
        let old = bob.on_request(&in_dialog("INFO", 314158, "")).unwrap_err();
        assert_eq!(
            old,
            DialogError::CSeqOutOfOrder {
                received: 314158,
                remote: 314159
            }
        );
        assert_eq!(old.status(), (500, "Server Internal Error"));
        bob.on_request(&in_dialog("INFO", 314160, "")).unwrap();
        assert_eq!(bob.remote_cseq(), Some(314160));
        // A re-INVITE with a new Contact moves the remote target.
        bob.on_request(&in_dialog(
            "INVITE",
            314161,
            "Contact: <sip:alice@192.0.2.99:5070>\n",
        ))
        .unwrap();
        assert_eq!(bob.remote_target().to_string(), "sip:alice@192.0.2.99:5070");
        // An INFO with a Contact does not.
        bob.on_request(&in_dialog(
            "INFO",
            314162,
            "Contact: <sip:elsewhere@192.0.2.1>\n",
        ))
        .unwrap();
        assert_eq!(bob.remote_target().to_string(), "sip:alice@192.0.2.99:5070");
        assert_eq!(
            bob.on_request(&in_dialog("INFO", 314161, ""))
                .unwrap_err()
                .status()
                .0,
            500
        );
        // A request of another dialog: 481.
        let other = req(&F13.replace("tag=a6c85cf", "tag=zzz"));
        let e = bob.on_request(&other).unwrap_err();
        assert_eq!((e.clone(), e.status().0), (DialogError::Mismatch, 481));
        assert_eq!(bob.state(), DialogState::Confirmed);
    }

    #[test]
    fn uac_local_cseq_and_method_rules() {
        let mut alice = Dialog::uac(&req(F1), &resp(F11)).unwrap();
        let mut rng = SeededRng::new(16);
        let s = udp("pc33.atlanta.com");
        let seqs: Vec<u32> = [Method::Info, Method::Update, Method::Invite]
            .into_iter()
            .map(|m| {
                alice
                    .request(m, &s, &mut rng)
                    .unwrap()
                    .headers
                    .cseq()
                    .unwrap()
                    .seq
            })
            .collect();
        assert_eq!(seqs, [314160, 314161, 314162]);
        assert_eq!(
            alice.request(Method::Ack, &s, &mut rng),
            Err(DialogError::WrongMethod)
        );
        assert_eq!(
            alice.request(Method::Cancel, &s, &mut rng),
            Err(DialogError::WrongMethod)
        );
        // ACK for the re-INVITE's 2xx: its CSeq number, body carried, local CSeq unchanged.
        let ack = alice.ack_for_2xx(314162, Some(Bytes::from_static(b"v=0\r\n")), &s, &mut rng);
        assert_eq!(ack.headers.get("CSeq"), Some("314162 ACK"));
        assert_eq!(ack.headers.content_type(), Some("application/sdp"));
        let wire = SipMessage::Request(ack).to_bytes();
        let back = parse_datagram(&wire).unwrap();
        assert_eq!(&back.body()[..], b"v=0\r\n");
        assert_eq!(alice.local_cseq(), Some(314162));
        alice.set_local_cseq(u32::MAX);
        assert_eq!(
            alice.request(Method::Bye, &s, &mut rng),
            Err(DialogError::CSeqExhausted)
        );
        // 2xx to a re-INVITE with a new Contact refreshes the target; 481 ends the dialog.
        let refreshed = F11
            .replace("314159 INVITE", "314162 INVITE")
            .replace("<sip:bob@192.0.2.4>", "<sip:bob@192.0.2.44>");
        alice.on_response(&resp(&refreshed)).unwrap();
        assert_eq!(alice.remote_target().to_string(), "sip:bob@192.0.2.44");
        let gone = F11
            .replace("200 OK", "481 Call/Transaction Does Not Exist")
            .replace("INVITE", "BYE");
        alice.on_response(&resp(&gone)).unwrap();
        assert_eq!(alice.state(), DialogState::Terminated);
    }

    #[test]
    fn early_dialog_confirmed_by_2xx_with_recomputed_route_set() {
        let f1 = req(F1);
        let ringing = resp(
            &F11.replace("200 OK", "180 Ringing")
                .replace("Contact: <sip:bob@192.0.2.4>\n", "")
                .replace("Call-ID", "Record-Route: <sip:p1.atlanta.com;lr>\nCall-ID"),
        );
        let mut d = Dialog::uac(&f1, &ringing).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        // No Contact in the 180: the Request-URI stands in as remote target.
        assert_eq!(d.remote_target().to_string(), "sip:bob@biloxi.com");
        assert_eq!(d.route_set().len(), 1);
        // A fork answering with another tag is another dialog.
        let forked = resp(&F11.replace("a6c85cf", "f0rk"));
        assert_eq!(d.on_response(&forked), Err(DialogError::Mismatch));
        assert!(Dialog::uac(&f1, &forked).is_ok());
        // The 200 confirms and recomputes the route set from its own Record-Route.
        let ok = resp(&F11.replace(
            "Call-ID",
            "Record-Route: <sip:p2.biloxi.com;lr>, <sip:p1.atlanta.com;lr>\nCall-ID",
        ));
        d.on_response(&ok).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        let routes: Vec<String> = d.route_set().iter().map(|u| u.to_string()).collect();
        assert_eq!(routes, ["sip:p1.atlanta.com;lr", "sip:p2.biloxi.com;lr"]);
        assert_eq!(d.remote_target().to_string(), "sip:bob@192.0.2.4");
    }

    #[test]
    fn dialog_creation_errors_and_secure_flag() {
        let f1 = req(F1);
        assert_eq!(
            Dialog::uac(&f1, &resp(&F11.replace("200 OK", "486 Busy Here"))),
            Err(DialogError::NotDialogCreating)
        );
        assert_eq!(
            Dialog::uac(&f1, &resp(F2)),
            Err(DialogError::NotDialogCreating)
        );
        assert_eq!(
            Dialog::uac(&f1, &resp(&F11.replace(";tag=a6c85cf", ""))),
            Err(DialogError::MissingToTag)
        );
        assert_eq!(
            Dialog::uac(
                &f1,
                &resp(&F11.replace("Contact: <sip:bob@192.0.2.4>\n", ""))
            ),
            Err(DialogError::MissingContact)
        );
        assert_eq!(
            Dialog::uac(&f1, &resp(&F11.replace("a84b4c76e66710", "other"))),
            Err(DialogError::Mismatch)
        );
        assert_eq!(
            Dialog::uac(&req(F13), &resp(F14)),
            Err(DialogError::NotDialogCreating)
        );
        let contact: NameAddr = "<sip:bob@192.0.2.4>".parse().unwrap();
        assert_eq!(
            Dialog::uas(
                &req(&F5.replace("Contact: <sip:alice@pc33.atlanta.com>\n", "")),
                "t",
                contact.clone(),
                DialogState::Early
            ),
            Err(DialogError::MissingContact)
        );
        let sips = req(&F5.replace("INVITE sip:bob@192.0.2.4", "INVITE sips:bob@192.0.2.4"));
        let mut d = Dialog::uas(&sips, "t", contact, DialogState::Early).unwrap();
        assert!(d.secure());
        assert_eq!(d.state(), DialogState::Early);
        d.confirm();
        assert_eq!(d.state(), DialogState::Confirmed);
    }

    #[test]
    fn cancel_construction() {
        let invite = req(&F1.replace(
            "Max-Forwards: 70",
            "Route: <sip:p1.atlanta.com;lr>\nRoute: <sip:p2.biloxi.com;lr>\nMax-Forwards: 70\nProxy-Authorization: Digest username=\"a\"",
        ));
        let cancel = cancel_for(&invite).unwrap();
        let expected = "CANCEL sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
Max-Forwards: 70
Route: <sip:p1.atlanta.com;lr>
Route: <sip:p2.biloxi.com;lr>
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 CANCEL
Content-Length: 0

";
        assert_eq!(
            SipMessage::Request(cancel).to_bytes(),
            parse(expected).to_bytes()
        );
        // Only the top Via, even when the INVITE (as a proxy would hold it) has several.
        let cancel = cancel_for(&req(F5)).unwrap();
        assert_eq!(cancel.headers.vias().unwrap().len(), 1);
        assert_eq!(
            cancel.headers.top_via().unwrap().branch(),
            Some("z9hG4bK4b43c2ff8.1")
        );
        assert_eq!(cancel_for(&req(F13)), Err(DialogError::WrongMethod));
    }

    #[test]
    fn make_response_rules() {
        let invite = req(RR_INVITE);
        // 100: no tag, no Record-Route; Timestamp echoed.
        let mut with_ts = invite.clone();
        with_ts.headers.push("Timestamp", "54");
        let trying = make_response(&with_ts, 100, "Trying", None);
        assert_eq!(trying.headers.get("Timestamp"), Some("54"));
        assert!(trying.headers.get("Record-Route").is_none());
        assert_eq!(trying.headers.to().unwrap().tag(), None);
        // 180 and 200 copy Record-Route in order; a 486 does not.
        for status in [180, 200] {
            let r = make_response(&invite, status, "x", Some("t1"));
            let rr: Vec<String> = r
                .headers
                .record_routes()
                .unwrap()
                .iter()
                .map(|x| x.uri.to_string())
                .collect();
            assert_eq!(rr, ["sip:p2.domain.com;lr", "sip:p1.example.com;lr"]);
            assert_eq!(r.headers.to().unwrap().tag(), Some("t1"));
            assert_eq!(r.headers.vias().unwrap().len(), 3);
        }
        assert!(make_response(&invite, 486, "Busy Here", Some("t1"))
            .headers
            .get("Record-Route")
            .is_none());
        // In-dialog: the existing To tag is kept, Record-Route not copied.
        let reinvite = req(&RR_INVITE.replace(
            "To: <sip:callee@domain.com>",
            "To: <sip:callee@domain.com>;tag=old",
        ));
        let r = make_response(&reinvite, 200, "OK", Some("new"));
        assert_eq!(r.headers.to().unwrap().tag(), Some("old"));
        assert!(r.headers.get("Record-Route").is_none());
        // Compact forms survive, with their order.
        let compact = req("OPTIONS sip:x@y SIP/2.0
v: SIP/2.0/UDP a;branch=z9hG4bK1
v: SIP/2.0/UDP b;branch=z9hG4bK2
t: <sip:x@y>
f: <sip:me@z>;tag=1
i: abc
CSeq: 7 OPTIONS
l: 0

");
        let r = make_response(&compact, 200, "OK", Some("9"));
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["v", "v", "t", "f", "i", "CSeq", "Content-Length"]);
        assert_eq!(r.headers.get("To"), Some("<sip:x@y>;tag=9"));
    }

    proptest::proptest! {
        #[test]
        fn generated_dialog_requests_reparse(
            seed in proptest::num::u64::ANY,
            caller_tag in "[a-zA-Z0-9]{1,12}",
            callee_tag in "[a-zA-Z0-9.!~*-]{1,12}",
            call_id in "[a-zA-Z0-9]{1,16}(@[a-z0-9.]{1,12})?",
            hops in proptest::collection::vec(("[a-z]{1,8}", proptest::bool::ANY), 0..4),
            methods in proptest::collection::vec(0usize..4, 1..6),
            start in 0u32..(1 << 31),
        ) {
            let mut rng = SeededRng::new(seed);
            let rr: String = hops
                .iter()
                .map(|(h, lr)| format!("Record-Route: <sip:{h}.example.net{}>\n", if *lr { ";lr" } else { "" }))
                .collect();
            let invite = req(&format!(
                "INVITE sip:callee@example.org SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx
{rr}To: <sip:callee@example.org>
From: \"Caller\" <sip:caller@example.com>;tag={caller_tag}
Call-ID: {call_id}
CSeq: {start} INVITE
Contact: <sip:caller@192.0.2.1>
Content-Length: 0

"));
            let mut uas = Dialog::uas(&invite, &callee_tag, "<sip:callee@192.0.2.2>".parse().unwrap(), DialogState::Confirmed).unwrap();
            let mut ok = make_response(&invite, 200, "OK", Some(&callee_tag));
            ok.headers.push("Contact", "<sip:callee@192.0.2.2>");
            // Round trip the 200 through bytes, as the caller would receive it.
            let SipMessage::Response(ok) = parse_datagram(&SipMessage::Response(ok).to_bytes()).unwrap() else { unreachable!() };
            let mut uac = Dialog::uac(&invite, &ok).unwrap();
            let mut reversed = uas.route_set().to_vec();
            reversed.reverse();
            proptest::prop_assert_eq!(uac.route_set(), &reversed[..]);

            let all = [Method::Bye, Method::Invite, Method::Info, Method::Update];
            let mut last = start;
            for &m in &methods {
                let r = uac.request(all[m].clone(), &udp("192.0.2.1"), &mut rng).unwrap();
                let SipMessage::Request(back) = parse_datagram(&SipMessage::Request(r.clone()).to_bytes()).unwrap() else { unreachable!() };
                proptest::prop_assert_eq!(back.headers.call_id().unwrap(), call_id.as_str());
                let (from, to) = (back.headers.from().unwrap(), back.headers.to().unwrap());
                proptest::prop_assert_eq!(from.tag(), Some(caller_tag.as_str()));
                proptest::prop_assert_eq!(to.tag(), Some(callee_tag.as_str()));
                let cseq = back.headers.cseq().unwrap();
                proptest::prop_assert_eq!(cseq.seq, last + 1);
                proptest::prop_assert_eq!(&cseq.method, &all[m]);
                last = cseq.seq;
                // Loose or strict, the route plus Request-URI visit the same hops.
                let mut visited: Vec<String> = back.headers.routes().unwrap().iter().map(|x| x.uri.to_string()).collect();
                let loose = uac.route_set().first().filter(|u| !u.as_sip().unwrap().params.contains("lr")).is_none();
                if loose {
                    visited.push(back.uri.to_string());
                } else {
                    visited.insert(0, back.uri.to_string());
                }
                let mut expected: Vec<String> = uac.route_set().iter().map(|u| u.to_string()).collect();
                expected.push("sip:callee@192.0.2.2".into());
                proptest::prop_assert_eq!(visited, expected);
                // And the callee accepts it in order.
                proptest::prop_assert!(uas.on_request(&back).is_ok());
                if all[m] == Method::Bye {
                    break;
                }
            }
        }
    }
}
