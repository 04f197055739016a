//! [`SipMessage`] (a [`Request`] or a [`Response`]), [`Method`], and serialisation back to
//! bytes with a Content-Length that always matches the body.

use std::fmt;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::headers::{same_header, Headers};
use super::uri::Uri;

/// A SIP request method. Methods are case-sensitive (RFC 3261 7.1): `invite` is an extension
/// method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// REGISTER (RFC 3261)
    Register,
    /// OPTIONS (RFC 3261)
    Options,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// Any other token.
    Extension(String),
}

impl Method {
    /// Maps a method token (already checked to be a `token`) to a method.
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            other => Method::Extension(other.to_string()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request: `Method SP Request-URI SP SIP-Version CRLF headers CRLF body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// SIP-Version as received (always `SIP/2.0` from the parser, any case).
    pub version: String,
    /// Header fields.
    pub headers: Headers,
    /// Body octets.
    pub body: Bytes,
    /// The exact bytes this request was parsed from, for forwarding unchanged. `None` for a
    /// built message. Whoever edits the fields above must clear it (see
    /// [`SipMessage::headers_mut`]), or [`SipMessage::wire_bytes`] would send stale bytes.
    pub raw: Option<Bytes>,
}

/// A response: `SIP-Version SP Status-Code SP Reason-Phrase CRLF headers CRLF body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// SIP-Version as received.
    pub version: String,
    /// Header fields.
    pub headers: Headers,
    /// Body octets.
    pub body: Bytes,
    /// The exact bytes this response was parsed from (see [`Request::raw`]).
    pub raw: Option<Bytes>,
}

/// A SIP request or response.
///
/// ```
/// use siprtmp_core::sip::{parse_datagram, Method, SipMessage};
/// let wire = b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877\r\n\
///     To: <sip:carol@chicago.example.com>\r\n\
///     From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\n\
///     CSeq: 63104 OPTIONS\r\n\
///     Content-Length: 0\r\n\r\n";
/// let msg = parse_datagram(wire).unwrap();
/// assert_eq!(msg.method(), Some(&Method::Options));
/// // Unchanged messages are forwarded byte for byte.
/// assert_eq!(&msg.wire_bytes()[..], &wire[..]);
///
/// // Building one: Content-Length is written from the body.
/// let mut reply = SipMessage::response(200, "OK");
/// reply.headers_mut().push("Call-ID", "a84b4c76e66710");
/// assert_eq!(&reply.to_bytes()[..], b"SIP/2.0 200 OK\r\nCall-ID: a84b4c76e66710\r\nContent-Length: 0\r\n\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl SipMessage {
    /// A new `SIP/2.0` request with no headers and an empty body.
    pub fn request(method: Method, uri: Uri) -> SipMessage {
        SipMessage::Request(Request {
            method,
            uri,
            version: "SIP/2.0".into(),
            headers: Headers::new(),
            body: Bytes::new(),
            raw: None,
        })
    }

    /// A new `SIP/2.0` response with no headers and an empty body.
    pub fn response(status: u16, reason: &str) -> SipMessage {
        SipMessage::Response(Response {
            status,
            reason: reason.into(),
            version: "SIP/2.0".into(),
            headers: Headers::new(),
            body: Bytes::new(),
            raw: None,
        })
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self, SipMessage::Request(_))
    }

    /// The request method (`None` for responses).
    pub fn method(&self) -> Option<&Method> {
        match self {
            SipMessage::Request(r) => Some(&r.method),
            SipMessage::Response(_) => None,
        }
    }

    /// The status code (`None` for requests).
    pub fn status(&self) -> Option<u16> {
        match self {
            SipMessage::Request(_) => None,
            SipMessage::Response(r) => Some(r.status),
        }
    }

    /// Header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    /// Header fields for editing; drops the original bytes, which no longer match.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            SipMessage::Request(r) => {
                r.raw = None;
                &mut r.headers
            }
            SipMessage::Response(r) => {
                r.raw = None;
                &mut r.headers
            }
        }
    }

    /// Body octets.
    pub fn body(&self) -> &Bytes {
        match self {
            SipMessage::Request(r) => &r.body,
            SipMessage::Response(r) => &r.body,
        }
    }

    /// Replaces the body (Content-Length follows on serialisation); drops the original bytes.
    pub fn set_body(&mut self, body: Bytes) {
        match self {
            SipMessage::Request(r) => {
                r.raw = None;
                r.body = body;
            }
            SipMessage::Response(r) => {
                r.raw = None;
                r.body = body;
            }
        }
    }

    /// The bytes the message was parsed from, if it was parsed and not edited since.
    pub fn raw(&self) -> Option<&Bytes> {
        match self {
            SipMessage::Request(r) => r.raw.as_ref(),
            SipMessage::Response(r) => r.raw.as_ref(),
        }
    }

    /// The original bytes when available (cheap clone), else a fresh serialisation.
    pub fn wire_bytes(&self) -> Bytes {
        match self.raw() {
            Some(raw) => raw.clone(),
            None => self.to_bytes(),
        }
    }

    /// Serialises the message. Header names and values are written as stored; the first
    /// Content-Length header (in whatever form it had) is rewritten to the body length and
    /// later ones dropped, or one is appended if there was none.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(256 + self.body().len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the serialisation to `out` (see [`SipMessage::to_bytes`]).
    pub fn encode_into(&self, out: &mut BytesMut) {
        let mut head = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = match self {
            SipMessage::Request(r) => write!(head, "{} {} {}\r\n", r.method, r.uri, r.version),
            SipMessage::Response(r) => {
                write!(head, "{} {:03} {}\r\n", r.version, r.status, r.reason)
            }
        };
        let body_len = self.body().len();
        let mut wrote_length = false;
        for h in self.headers() {
            if same_header(&h.name, "Content-Length") {
                if !wrote_length {
                    let _ = write!(head, "{}: {}\r\n", h.name, body_len);
                    wrote_length = true;
                }
                continue;
            }
            push_line_safe(&mut head, &h.name);
            head.push_str(": ");
            push_line_safe(&mut head, &h.value);
            head.push_str("\r\n");
        }
        if !wrote_length {
            let _ = write!(head, "Content-Length: {body_len}\r\n");
        }
        head.push_str("\r\n");
        out.reserve(head.len() + body_len);
        out.put_slice(head.as_bytes());
        out.put_slice(self.body());
    }
}

/// Appends `s` with any CR or LF replaced by a space: parsed values never contain line
/// breaks, and a value set by the application must not be able to inject header lines.
fn push_line_safe(out: &mut String, s: &str) {
    if s.contains(['\r', '\n']) {
        out.extend(
            s.chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
        );
    } else {
        out.push_str(s);
    }
}
