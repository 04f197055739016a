//! [`parse`]: one HTTP/1.x request from the front of a buffer, within [`Limits`].
//!
//! The head (request line and headers) must end within [`Limits::max_head`] bytes, and a body
//! is accepted only with a `Content-Length` up to [`Limits::max_body`]: a peer can make the
//! server hold no more than the two together. Lines may end in CRLF or a bare LF (RFC 9112
//! 2.2); obsolete line folding, a space before a header's colon, a target not in origin form,
//! `Transfer-Encoding` and conflicting lengths are refused.

use bytes::Bytes;

/// Bounds on what one request may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the request line and headers, blank line included.
    pub max_head: usize,
    /// Header lines.
    pub max_headers: usize,
    /// Bytes of a body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 8 * 1024,
            max_headers: 64,
            max_body: 4 * 1024,
        }
    }
}

/// A request the parser refused; the server answers with [`Self::status`] and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No end of head within [`Limits::max_head`], or too many header lines.
    HeadTooLarge,
    /// A `Content-Length` past [`Limits::max_body`].
    BodyTooLarge,
    /// A body in a transfer coding (chunked): not supported.
    TransferEncoding,
    /// Not HTTP/1.0 or 1.1.
    Version,
    /// Anything else malformed; says what.
    Malformed(&'static str),
}

impl ParseError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::TransferEncoding => 501,
            Self::Version => 505,
            Self::Malformed(_) => 400,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HeadTooLarge => f.write_str("request head too large"),
            Self::BodyTooLarge => f.write_str("request body too large"),
            Self::TransferEncoding => f.write_str("transfer codings are not supported"),
            Self::Version => f.write_str("only HTTP/1.0 and HTTP/1.1 are supported"),
            Self::Malformed(what) => write!(f, "malformed request: {what}"),
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The target's path (before any `?`).
    pub path: String,
    /// The target's query (after `?`), if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names (as sent) and values (surrounding whitespace removed).
    pub headers: Vec<(String, String)>,
    /// The body (empty without a `Content-Length`).
    pub body: Bytes,
}

impl Request {
    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response: HTTP/1.1
    /// unless it says `Connection: close`, HTTP/1.0 only if it says `keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.minor_version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Parses one request from the front of `buf`: `Ok(None)` while it is incomplete (read more),
/// else the request and the bytes it took.
///
/// ```
/// use siprtmp_core::http::request::{parse, Limits};
/// let (request, used) = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET", &Limits::default())
///     .unwrap()
///     .unwrap();
/// assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/metrics"));
/// assert_eq!(request.query.as_deref(), Some("x=1"));
/// assert_eq!(request.header("host"), Some("a"));
/// assert_eq!(used, 38);
/// assert!(parse(b"GET / HTTP/1.1\r\nHost:", &Limits::default()).unwrap().is_none());
/// ```
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, ParseError> {
    let window = &buf[..buf.len().min(limits.max_head)];
    let Some(head_len) = head_end(window) else {
        return if buf.len() >= limits.max_head {
            Err(ParseError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let head = &buf[..head_len];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let (method, target, minor_version) = request_line_parts(request_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::HeadTooLarge);
        }
        headers.push(header_line(line)?);
    }
    let mut length: Option<usize> = None;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::TransferEncoding);
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Malformed("Content-Length"));
            }
            // Too many digits to fit is too large in any case.
            let n = value.parse::<usize>().unwrap_or(usize::MAX);
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body {
        return Err(ParseError::BodyTooLarge);
    }
    let Some(body) = buf.get(head_len..head_len + length) else {
        return Ok(None);
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };
    let request = Request {
        method: method.to_string(),
        path,
        query,
        minor_version,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    Ok(Some((request, head_len + length)))
}

/// The length of the head, blank line included, if it ends within `buf` (requests and the
/// callbacks' responses alike).
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if (line.is_empty() || line == b"\r") && line_start > 0 {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn request_line_parts(line: &[u8]) -> Result<(&str, &str, u8), ParseError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed("request line"));
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(ParseError::Malformed("method"));
    }
    if target.first() != Some(&b'/') || !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(ParseError::Malformed("target"));
    }
    let minor_version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        v if v.starts_with(b"HTTP/") => return Err(ParseError::Version),
        _ => return Err(ParseError::Malformed("version")),
    };
    // Both were checked to be ASCII.
    let (Ok(method), Ok(target)) = (std::str::from_utf8(method), std::str::from_utf8(target))
    else {
        return Err(ParseError::Malformed("not ASCII"));
    };
    Ok((method, target, minor_version))
}

fn header_line(line: &[u8]) -> Result<(String, String), ParseError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(ParseError::Malformed("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::Malformed("header without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(ParseError::Malformed("header name"));
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::Malformed("control character in a header"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<(Request, usize)>, ParseError> {
        parse(bytes, &Limits::default())
    }

    #[test]
    fn a_post_with_a_body_waits_for_all_of_it() {
        let full = b"POST /api/v1/connections/7/drop HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        for cut in 0..full.len() {
            assert_eq!(parse_all(&full[..cut]), Ok(None), "cut at {cut}");
        }
        let (request, used) = parse_all(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(&request.body[..], b"abcd");
        assert!(request.keep_alive());
    }

    #[test]
    fn bare_line_feeds_and_http_1_0_keep_alive() {
        let (request, _) = parse_all(b"GET / HTTP/1.0\nConnection: Keep-Alive\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(request.minor_version, 0);
        assert!(request.keep_alive());
        let (request, _) = parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!request.keep_alive());
        let (request, _) = parse_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!request.keep_alive());
    }

    #[test]
    fn refusals_carry_their_status() {
        let cases: [(&[u8], u16); 9] = [
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET http://a/ HTTP/1.1\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA : b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            (b"GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ];
        for (bytes, status) in cases {
            let got = parse_all(bytes).map_err(ParseError::status);
            assert_eq!(got, Err(status), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_head_without_end_is_refused_at_the_limit() {
        let limits = Limits::default();
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(limits.max_head - 1, b'a');
        assert_eq!(parse(&long, &limits), Ok(None));
        long.push(b'a');
        assert_eq!(parse(&long, &limits), Err(ParseError::HeadTooLarge));
        let many: String = (0..=limits.max_headers)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let request = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse(request.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
    }

    proptest! {
        /// Whatever the bytes: no panic, a verdict once the limits are reached, and a request
        /// never claims more bytes than it was given or more than the limits allow.
        #[test]
        fn hostile_bytes_are_parsed_within_the_limits(
            bytes in proptest::collection::vec(any::<u8>(), 0..12_000),
        ) {
            let limits = Limits::default();
            match parse(&bytes, &limits) {
                Ok(Some((request, used))) => {
                    prop_assert!(used <= bytes.len());
                    prop_assert!(used <= limits.max_head + limits.max_body);
                    prop_assert!(request.body.len() <= limits.max_body);
                    prop_assert!(request.path.starts_with('/'));
                }
                Ok(None) => prop_assert!(bytes.len() < limits.max_head + limits.max_body),
                Err(_) => {}
            }
        }

        /// A valid request survives any split: each prefix is incomplete, the whole parses.
        #[test]
        fn well_formed_requests_parse_at_every_split(
            path in "/[a-z0-9/]{0,40}",
            value in "[ -~]{0,60}",
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = format!(
                "POST {path} HTTP/1.1\r\nX-Any: {value}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&body);
            for cut in 0..bytes.len() {
                prop_assert_eq!(parse(&bytes[..cut], &Limits::default()), Ok(None));
            }
            let (request, used) = parse(&bytes, &Limits::default()).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(&request.path, &path);
            prop_assert_eq!(request.header("x-any"), Some(value.trim()));
            prop_assert_eq!(&request.body[..], &body[..]);
        }
    }
}
