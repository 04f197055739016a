//! Turning bytes into [`SipMessage`]s: [`parse_datagram`] for one UDP datagram and
//! [`StreamFramer`] for a TCP/TLS byte stream, both bounded by [`ParseLimits`].
//!
//! What the parser accepts (RFC 3261 section 7 and 25, with the leniencies RFC 4475 asks for):
//! leading CRLFs (keep-alives) are skipped; LF-only line ends are tolerated; folded header
//! lines are joined with a single space; header names are case-insensitive and may be
//! followed by whitespace before the colon. What it rejects: a malformed start line (extra
//! spaces, `<>` around the Request-URI, a Request-URI with headers, a status code that is not
//! three digits), a version other than `SIP/2.0`, a header section that is not UTF-8, and
//! malformed values of the headers the layers above depend on (Via, From, To, Call-ID, CSeq
//! including a method that differs from the request's, Contact, Route, Record-Route,
//! Max-Forwards, Content-Length). Other headers are kept verbatim and only parsed on demand.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{Limit, SipError};
use super::headers::Headers;
use super::lex::{is_token, is_ws};
use super::message::{Method, Request, Response, SipMessage};
use super::uri::Uri;

/// Bounds on what a peer can make the parser hold. Exceeding one is a typed error
/// ([`SipError::LimitExceeded`]), never a large allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Maximum number of header fields (folded continuation lines do not count).
    pub max_headers: usize,
    /// Maximum length of one physical line, start line included.
    pub max_line: usize,
    /// Maximum body length.
    pub max_body: usize,
    /// Maximum size of a whole message (start line, headers and body).
    pub max_message: usize,
}

impl Default for ParseLimits {
    /// 128 headers, 8 KiB lines, 1 MiB body, 1 MiB + 64 KiB message.
    fn default() -> ParseLimits {
        ParseLimits {
            max_headers: 128,
            max_line: 8192,
            max_body: 1 << 20,
            max_message: (1 << 20) + (64 << 10),
        }
    }
}

/// Parses one datagram with [`ParseLimits::default`].
///
/// Body framing follows RFC 3261 18.3: with Content-Length the body is exactly that many
/// octets and anything after it is discarded; without it the body is the rest of the
/// datagram. A Content-Length larger than what arrived is an error.
///
/// ```
/// use siprtmp_core::sip::{parse_datagram, SipError};
/// let msg = parse_datagram(b"SIP/2.0 180 Ringing\nCall-ID: x\nCSeq: 1 INVITE\nl: 3\n\nabcIGNORED").unwrap();
/// assert_eq!(msg.status(), Some(180));
/// assert_eq!(&msg.body()[..], b"abc");
/// assert!(matches!(
///     parse_datagram(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
///     Err(SipError::TruncatedBody { declared: 10, available: 5 })
/// ));
/// ```
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, SipError> {
    parse_datagram_with(data, &ParseLimits::default())
}

/// Parses one datagram with explicit limits (see [`parse_datagram`]). The message keeps a
/// copy of its bytes in `raw`; the body is a slice of that copy.
pub fn parse_datagram_with(data: &[u8], limits: &ParseLimits) -> Result<SipMessage, SipError> {
    let data = &data[leading_crlf(data)..];
    let mut scan = HeadScan::default();
    let head_len = scan.scan(data, limits)?.ok_or(SipError::Incomplete)?;
    let head = parse_head(&data[..head_len])?;
    let available = data.len() - head_len;
    let body_len = match head.headers.content_length()? {
        Some(n) if n > limits.max_body => return Err(SipError::LimitExceeded(Limit::Body)),
        Some(n) if n > available => {
            return Err(SipError::TruncatedBody {
                declared: n,
                available,
            })
        }
        Some(n) => n,
        None if available > limits.max_body => return Err(SipError::LimitExceeded(Limit::Body)),
        None => available,
    };
    if head_len + body_len > limits.max_message {
        return Err(SipError::LimitExceeded(Limit::Message));
    }
    let raw = Bytes::copy_from_slice(&data[..head_len + body_len]);
    head.into_message(raw, head_len)
}

/// Number of CR/LF bytes at the start (keep-alive pings and stray line ends before a message).
fn leading_crlf(data: &[u8]) -> usize {
    data.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Incremental search for the blank line ending the header section, enforcing line, header
/// count and size limits as it goes so that a stream peer cannot make us buffer without end.
#[derive(Debug, Default, Clone)]
struct HeadScan {
    /// Offset of the first line not yet scanned.
    pos: usize,
    /// Header lines (not continuations) seen so far, start line excluded.
    headers: usize,
}

impl HeadScan {
    /// `Some(head_len)` (blank line included) once the header section is complete.
    fn scan(&mut self, data: &[u8], limits: &ParseLimits) -> Result<Option<usize>, SipError> {
        loop {
            let rest = &data[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > limits.max_line {
                    return Err(SipError::LimitExceeded(Limit::Line));
                }
                if data.len() > limits.max_message {
                    return Err(SipError::LimitExceeded(Limit::Message));
                }
                return Ok(None);
            };
            let line = &rest[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > limits.max_line {
                return Err(SipError::LimitExceeded(Limit::Line));
            }
            let is_first = self.pos == 0;
            self.pos += nl + 1;
            if self.pos > limits.max_message {
                return Err(SipError::LimitExceeded(Limit::Message));
            }
            if line.is_empty() {
                if is_first {
                    return Err(SipError::BadStartLine("empty start line"));
                }
                return Ok(Some(self.pos));
            }
            if !is_first && !is_ws(line[0]) {
                self.headers += 1;
                if self.headers > limits.max_headers {
                    return Err(SipError::LimitExceeded(Limit::Headers));
                }
            }
        }
    }
}

/// The start line.
#[derive(Debug)]
enum StartLine {
    Request {
        method: Method,
        uri: Uri,
        version: String,
    },
    Response {
        version: String,
        status: u16,
        reason: String,
    },
}

/// A parsed and validated header section, waiting for its body.
#[derive(Debug)]
struct Head {
    start: StartLine,
    headers: Headers,
}

impl Head {
    /// Assembles the message; `raw` is the whole message and the body starts at `head_len`.
    fn into_message(self, raw: Bytes, head_len: usize) -> Result<SipMessage, SipError> {
        let body = raw.slice(head_len..);
        let raw = Some(raw);
        let headers = self.headers;
        Ok(match self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } => SipMessage::Request(Request {
                method,
                uri,
                version,
                headers,
                body,
                raw,
            }),
            StartLine::Response {
                version,
                status,
                reason,
            } => SipMessage::Response(Response {
                status,
                reason,
                version,
                headers,
                body,
                raw,
            }),
        })
    }
}

/// Parses and validates the header section (start line through the blank line).
fn parse_head(head: &[u8]) -> Result<Head, SipError> {
    let text = std::str::from_utf8(head).map_err(|_| SipError::InvalidUtf8)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start_line(lines.next().unwrap_or(""))?;

    let mut headers = Headers::with_capacity(16);
    let mut current: Option<(&str, String)> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.contains('\r') {
            return Err(SipError::BadHeaderLine);
        }
        if is_ws(line.as_bytes()[0]) {
            // Folded continuation: LWS = [*WSP CRLF] 1*WSP, equivalent to one space.
            let (_, value) = current.as_mut().ok_or(SipError::BadHeaderLine)?;
            let more = line.trim_matches([' ', '\t']);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            headers.push_owned(name.to_string(), value);
        }
        let colon = line.find(':').ok_or(SipError::BadHeaderLine)?;
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(SipError::BadHeaderLine);
        }
        let value = line[colon + 1..].trim_matches([' ', '\t']);
        current = Some((name, value.to_string()));
    }
    if let Some((name, value)) = current {
        headers.push_owned(name.to_string(), value);
    }
    let head = Head { start, headers };
    validate(&head)?;
    Ok(head)
}

/// Checks that `v` is `SIP/2.0` (literal strings are case-insensitive in the ABNF).
fn check_version(v: &str) -> Result<(), SipError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if well_formed {
        Err(SipError::UnsupportedVersion(v.to_string()))
    } else {
        Err(SipError::BadStartLine("bad SIP-Version"))
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    // Compare bytes: the line may hold multi-byte UTF-8 where a str slice would panic.
    if line.len() >= 4 && line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = line
            .split_once(' ')
            .ok_or(SipError::BadStartLine("no status code"))?;
        check_version(version)?;
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            // RFC 4475 3.1.1.13 notes a liberal receiver accepts a missing SP after the code.
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SipError::BadStartLine("status code is not three digits"));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| SipError::BadStartLine("bad status code"))?;
        if !(100..=699).contains(&status) {
            return Err(SipError::BadStartLine("status code outside 100..=699"));
        }
        if reason.bytes().any(|b| b < b' ' && b != b'\t') {
            return Err(SipError::BadStartLine("control character in reason phrase"));
        }
        return Ok(StartLine::Response {
            version: version.to_string(),
            status,
            reason: reason.to_string(),
        });
    }

    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::BadStartLine(
            "request line needs exactly three elements separated by single spaces",
        ));
    };
    if !is_token(method) {
        return Err(SipError::BadStartLine("method is not a token"));
    }
    let uri = Uri::parse(uri)?;
    if uri.as_sip().is_some_and(|u| !u.headers.is_empty()) {
        return Err(SipError::BadStartLine("Request-URI must not carry headers"));
    }
    check_version(version)?;
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
        version: version.to_string(),
    })
}

/// Eagerly checks the headers whose values the transaction and dialog layers read, so that
/// a message that gets past the parser has well-formed ones (when present: a request
/// missing From is an application-layer 400, RFC 4475 3.3.1, not a parse error).
fn validate(head: &Head) -> Result<(), SipError> {
    let h = &head.headers;
    h.content_length()?;
    h.vias()?;
    if h.get("From").is_some() {
        h.from()?;
    }
    if h.get("To").is_some() {
        h.to()?;
    }
    if h.get("Call-ID").is_some() {
        h.call_id()?;
    }
    if h.get("CSeq").is_some() {
        let cseq = h.cseq()?;
        if let StartLine::Request { method, .. } = &head.start {
            if cseq.method != *method {
                return Err(SipError::CSeqMethodMismatch);
            }
        }
    }
    h.contacts()?;
    h.routes()?;
    h.record_routes()?;
    h.max_forwards()?;
    Ok(())
}

/// Frames SIP messages out of a stream (TCP, TLS, WebSocket payloads): RFC 3261 18.3 makes
/// Content-Length mandatory there, and CRLF keep-alives (RFC 5626) may appear between
/// messages. After an error the stream is out of sync: close the connection.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::sip::StreamFramer;
/// let mut framer = StreamFramer::default();
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(b"\r\n\r\nMESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhel");
/// assert!(framer.push(&mut buf).unwrap().is_none()); // body incomplete
/// buf.extend_from_slice(b"loOPTIONS sip:c@d SIP/2.0\r\nl: 0\r\n\r\n");
/// let first = framer.push(&mut buf).unwrap().unwrap();
/// assert_eq!(&first.body()[..], b"hello");
/// let second = framer.push(&mut buf).unwrap().unwrap();
/// assert_eq!(second.method().unwrap().as_str(), "OPTIONS");
/// assert!(framer.push(&mut buf).unwrap().is_none());
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct StreamFramer {
    limits: ParseLimits,
    scan: HeadScan,
    /// Header section parsed, waiting for `body_len` bytes after `head_len`.
    pending: Option<(Head, usize, usize)>,
}

impl StreamFramer {
    /// A framer with the given limits.
    pub fn new(limits: ParseLimits) -> StreamFramer {
        StreamFramer {
            limits,
            scan: HeadScan::default(),
            pending: None,
        }
    }

    /// Takes the next complete message off the front of `buf`, if there is one. Call it in
    /// a loop after each read until it returns `Ok(None)`: one read may carry several
    /// messages. Consumed bytes (and keep-alive CRLFs) are removed from `buf`; a partial
    /// message stays there, and work already done on it is remembered.
    pub fn push(&mut self, buf: &mut BytesMut) -> Result<Option<SipMessage>, SipError> {
        if self.pending.is_none() {
            if self.scan.pos == 0 {
                let n = leading_crlf(buf);
                buf.advance(n);
            }
            let Some(head_len) = self.scan.scan(buf, &self.limits)? else {
                return Ok(None);
            };
            let head = parse_head(&buf[..head_len])?;
            let body_len = head
                .headers
                .content_length()?
                .ok_or(SipError::MissingContentLength)?;
            if body_len > self.limits.max_body {
                return Err(SipError::LimitExceeded(Limit::Body));
            }
            if head_len + body_len > self.limits.max_message {
                return Err(SipError::LimitExceeded(Limit::Message));
            }
            self.pending = Some((head, head_len, body_len));
        }
        let complete = matches!(&self.pending, Some((_, h, b)) if buf.len() >= h + b);
        if !complete {
            return Ok(None);
        }
        let Some((head, head_len, body_len)) = self.pending.take() else {
            return Ok(None);
        };
        self.scan = HeadScan::default();
        let raw = buf.split_to(head_len + body_len).freeze();
        head.into_message(raw, head_len).map(Some)
    }

    /// True if part of a message is buffered (useful to tell a clean close from a cut one).
    pub fn in_progress(&self) -> bool {
        self.pending.is_some() || self.scan.pos > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_lf_only() {
        let m = parse_datagram(
            b"INVITE sip:a@b SIP/2.0\nSubject: I know you're there,\n  pick up the phone\n\tand talk to me!\nX-Empty:\n  \nCSeq:\n 1\n INVITE\nl:0\n\n",
        )
        .unwrap();
        let h = m.headers();
        assert_eq!(
            h.get("subject"),
            Some("I know you're there, pick up the phone and talk to me!")
        );
        assert_eq!(h.get("X-Empty"), Some(""));
        assert_eq!(h.get("CSeq"), Some("1 INVITE"));
    }

    #[test]
    fn start_line_errors() {
        let cases: [(&[u8], SipError); 8] = [
            (
                b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
                SipError::BadStartLine(""),
            ),
            (
                b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
                SipError::BadStartLine(""),
            ),
            (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", SipError::BadUri("")),
            (
                b"OPTIONS sip:a@b SIP/7.0\r\n\r\n",
                SipError::UnsupportedVersion("SIP/7.0".into()),
            ),
            (
                b"SIP/2.0 4294967301 big\r\n\r\n",
                SipError::BadStartLine(""),
            ),
            (b"SIP/2.0 099 low\r\n\r\n", SipError::BadStartLine("")),
            (
                b"INVITE sip:a@b?Route=x SIP/2.0\r\n\r\n",
                SipError::BadStartLine(""),
            ),
            (
                b"INVITE sip:a@b HTTP/1.1\r\n\r\n",
                SipError::BadStartLine(""),
            ),
        ];
        for (input, want) in cases {
            let got = parse_datagram(input).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(parse_datagram(b""), Err(SipError::Incomplete));
        assert_eq!(parse_datagram(b"\r\n\r\n"), Err(SipError::Incomplete));
        assert_eq!(
            parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n"),
            Err(SipError::Incomplete)
        );
    }

    #[test]
    fn multibyte_start_line_is_an_error_not_a_panic() {
        // Found by proptest: byte 4 falls inside a two-byte character.
        for input in [
            "o~_\u{5af} folded\r\n\r\n",
            "SIP\u{5af}/2.0 200 OK\r\n\r\n",
            "\u{e9}\u{e9} x SIP/2.0\r\n\r\n",
        ] {
            assert!(parse_datagram(input.as_bytes()).is_err(), "{input:?}");
        }
    }

    #[test]
    fn header_line_errors() {
        for bad in [
            &b"OPTIONS sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(parse_datagram(bad).unwrap_err(), SipError::BadHeaderLine);
        }
        assert_eq!(
            parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n").unwrap_err(),
            SipError::InvalidUtf8
        );
    }

    #[test]
    fn limits_are_enforced() {
        let small = ParseLimits {
            max_headers: 2,
            max_line: 40,
            max_body: 4,
            max_message: 100,
        };
        let p = |b: &[u8]| parse_datagram_with(b, &small).unwrap_err();
        assert_eq!(
            p(b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            SipError::LimitExceeded(Limit::Headers)
        );
        assert_eq!(
            p(b"OPTIONS sip:a@b SIP/2.0\r\nA: 0123456789012345678901234567890123456789\r\n\r\n"),
            SipError::LimitExceeded(Limit::Line)
        );
        assert_eq!(
            p(b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\n12345"),
            SipError::LimitExceeded(Limit::Body)
        );
        assert_eq!(
            p(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n12345"),
            SipError::LimitExceeded(Limit::Body)
        );
        // A stream peer that never sends a newline is cut off at max_line.
        let mut f = StreamFramer::new(small);
        let mut buf = BytesMut::from(&[b'A'; 41][..]);
        assert_eq!(
            f.push(&mut buf).unwrap_err(),
            SipError::LimitExceeded(Limit::Line)
        );
    }

    #[test]
    fn stream_requires_content_length() {
        let mut f = StreamFramer::default();
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"[..]);
        assert_eq!(
            f.push(&mut buf).unwrap_err(),
            SipError::MissingContentLength
        );
    }

    #[test]
    fn stream_byte_by_byte() {
        let wire = b"\r\nSIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nSIP/2.0 100 Trying\r\nl: 0\r\n\r\n";
        let mut f = StreamFramer::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in wire.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(m) = f.push(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].status(), Some(200));
        assert_eq!(&got[0].body()[..], b"hi");
        assert_eq!(got[1].status(), Some(100));
        assert!(!f.in_progress());
        assert!(buf.is_empty());
    }
}
