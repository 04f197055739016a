//! [`parse_response`]: one HTTP/1.x response from the front of a buffer, within
//! [`ResponseLimits`], for the node's own HTTP client (the callbacks of `crate::admin`).
//!
//! The status line and headers must end within [`ResponseLimits::max_head`] bytes; the body is
//! delimited by `Content-Length`, by the chunked transfer coding, or by the server closing the
//! connection, and may be at most [`ResponseLimits::max_body`] bytes whichever way (chunk
//! framing included, so a peer cannot make the client hold more than the two limits
//! together). The caller re-parses the whole buffer as bytes arrive: a callback response is
//! small and the connection carries only one.

use super::request::head_end;
use bytes::Bytes;

/// Bounds on what one response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Bytes of the status line and headers, blank line included.
    pub max_head: usize,
    /// Header lines.
    pub max_headers: usize,
    /// Bytes of the body as sent (chunk framing included).
    pub max_body: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            max_head: 8 * 1024,
            max_headers: 64,
            max_body: 16 * 1024,
        }
    }
}

/// A response the parser refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// No end of head within [`ResponseLimits::max_head`], or too many header lines.
    HeadTooLarge,
    /// A body past [`ResponseLimits::max_body`].
    BodyTooLarge,
    /// The connection closed before the response was whole.
    Truncated,
    /// Anything else malformed; says what.
    Malformed(&'static str),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HeadTooLarge => f.write_str("response head too large"),
            Self::BodyTooLarge => f.write_str("response body too large"),
            Self::Truncated => f.write_str("connection closed before the response was whole"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    /// The status code (100-999).
    pub status: u16,
    /// Header names (as sent) and values (surrounding whitespace removed).
    pub headers: Vec<(String, String)>,
    /// The body, chunk framing removed.
    pub body: Bytes,
}

impl ParsedResponse {
    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the response at the front of `buf`. `closed` says the server has closed the
/// connection (no more bytes will come): a close-delimited body ends there, and an incomplete
/// response becomes [`ResponseError::Truncated`]. `Ok(None)`: read more.
///
/// ```
/// use siprtmp_core::http::response_parser::{parse_response, ResponseLimits};
/// let limits = ResponseLimits::default();
/// let raw = b"HTTP/1.1 302 Found\r\nLocation: other\r\nContent-Length: 2\r\n\r\nok";
/// let response = parse_response(raw, false, &limits).unwrap().unwrap();
/// assert_eq!(response.status, 302);
/// assert_eq!(response.header("location"), Some("other"));
/// assert_eq!(&response.body[..], b"ok");
/// assert!(parse_response(&raw[..20], false, &limits).unwrap().is_none());
/// ```
pub fn parse_response(
    buf: &[u8],
    closed: bool,
    limits: &ResponseLimits,
) -> Result<Option<ParsedResponse>, ResponseError> {
    let incomplete = || {
        if closed {
            Err(ResponseError::Truncated)
        } else {
            Ok(None)
        }
    };
    let window = &buf[..buf.len().min(limits.max_head)];
    let Some(head_len) = head_end(window) else {
        return if buf.len() >= limits.max_head {
            Err(ResponseError::HeadTooLarge)
        } else {
            incomplete()
        };
    };
    let mut lines = buf[..head_len]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let status = status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == limits.max_headers {
            return Err(ResponseError::HeadTooLarge);
        }
        headers.push(header_line(line)?);
    }
    let rest = &buf[head_len..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && v.rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
    });
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body, whatever the headers say (RFC 9112 6.3).
        Bytes::new()
    } else if chunked {
        match dechunk(rest, limits.max_body)? {
            Some(body) => body,
            None => return incomplete(),
        }
    } else if let Some(length) = content_length(&headers)? {
        if length > limits.max_body {
            return Err(ResponseError::BodyTooLarge);
        }
        match rest.get(..length) {
            Some(body) => Bytes::copy_from_slice(body),
            None => return incomplete(),
        }
    } else {
        if rest.len() > limits.max_body {
            return Err(ResponseError::BodyTooLarge);
        }
        if !closed {
            return Ok(None);
        }
        Bytes::copy_from_slice(rest)
    };
    Ok(Some(ParsedResponse {
        status,
        headers,
        body,
    }))
}

/// `HTTP/1.x NNN reason`: the status code.
fn status_line(line: &[u8]) -> Result<u16, ResponseError> {
    let malformed = ResponseError::Malformed("status line");
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(ResponseError::Malformed("not an HTTP/1.x response"))?;
    let (minor, rest) = rest.split_first().ok_or(malformed)?;
    if !minor.is_ascii_digit() {
        return Err(malformed);
    }
    let rest = rest.strip_prefix(b" ").ok_or(malformed)?;
    let code = rest.get(..3).ok_or(malformed)?;
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return Err(malformed);
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return Err(malformed);
    }
    Ok(code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
}

/// `Name: value`.
fn header_line(line: &[u8]) -> Result<(String, String), ResponseError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ResponseError::Malformed("header without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(ResponseError::Malformed("header name"));
    }
    let value = String::from_utf8_lossy(&line[colon + 1..]);
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        value.trim().to_string(),
    ))
}

/// The `Content-Length`, if any (conflicting values are refused).
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ResponseError> {
    let mut length = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ResponseError::Malformed("Content-Length"));
            }
            let n = value.parse::<usize>().unwrap_or(usize::MAX);
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The body of a chunked message, once its last chunk and trailers have arrived. Everything
/// read, framing included, counts against `max`.
fn dechunk(buf: &[u8], max: usize) -> Result<Option<Bytes>, ResponseError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        if at > max {
            return Err(ResponseError::BodyTooLarge);
        }
        let Some(eol) = buf[at..].iter().position(|&b| b == b'\n') else {
            return if buf.len() - at > 32 + max.saturating_sub(at) {
                Err(ResponseError::BodyTooLarge)
            } else {
                Ok(None)
            };
        };
        let line = &buf[at..at + eol];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Chunk extensions after `;` are ignored.
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 8)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(ResponseError::Malformed("chunk size"))?;
        at += eol + 1;
        if size == 0 {
            // Trailers until a blank line.
            loop {
                if at > max {
                    return Err(ResponseError::BodyTooLarge);
                }
                let Some(eol) = buf[at..].iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                let line = &buf[at..at + eol];
                at += eol + 1;
                if line.is_empty() || line == b"\r" {
                    return Ok(Some(Bytes::from(body)));
                }
            }
        }
        if at + size > max {
            return Err(ResponseError::BodyTooLarge);
        }
        let Some(data) = buf.get(at..at + size) else {
            return Ok(None);
        };
        body.extend_from_slice(data);
        at += size;
        match buf.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some([b'\n', _]) => at += 1,
            Some(_) => return Err(ResponseError::Malformed("chunk not followed by CRLF")),
            None if buf.get(at) == Some(&b'\n') => at += 1,
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(raw: &[u8], closed: bool) -> Result<Option<ParsedResponse>, ResponseError> {
        parse_response(raw, closed, &ResponseLimits::default())
    }

    #[test]
    fn a_chunked_body_is_reassembled_and_needs_its_last_chunk() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        let response = parse(raw, false).unwrap().unwrap();
        assert_eq!(&response.body[..], b"Wikipedia");
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut], false), Ok(None), "cut at {cut}");
            assert_eq!(parse(&raw[..cut], true), Err(ResponseError::Truncated));
        }
    }

    #[test]
    fn a_close_delimited_body_ends_with_the_connection() {
        let raw = b"HTTP/1.0 403 Forbidden\r\n\r\nno";
        assert_eq!(parse(raw, false), Ok(None));
        let response = parse(raw, true).unwrap().unwrap();
        assert_eq!((response.status, &response.body[..]), (403, &b"no"[..]));
    }

    #[test]
    fn bodies_past_the_limit_are_refused_however_framed() {
        let limits = ResponseLimits {
            max_body: 10,
            ..ResponseLimits::default()
        };
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse_response(long, false, &limits),
            Err(ResponseError::BodyTooLarge)
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n";
        assert_eq!(
            parse_response(chunked, false, &limits),
            Err(ResponseError::BodyTooLarge)
        );
        let endless = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 11]].concat();
        assert_eq!(
            parse_response(&endless, false, &limits),
            Err(ResponseError::BodyTooLarge)
        );
    }

    #[test]
    fn malformed_status_lines_are_refused() {
        for raw in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, true), Err(ResponseError::Malformed(_))),
                "{raw:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..40_000),
            closed in any::<bool>(),
        ) {
            let limits = ResponseLimits::default();
            if let Ok(Some(response)) = parse_response(&bytes, closed, &limits) {
                prop_assert!(response.body.len() <= limits.max_body);
                prop_assert!(response.headers.len() <= limits.max_headers);
                prop_assert!((100..1000).contains(&response.status));
            }
        }

        #[test]
        fn a_valid_response_parses_at_any_split(
            status in 200u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..200),
            chunk in 1usize..50,
            chunked in any::<bool>(),
        ) {
            // 204 and 304 have no body whatever the headers say.
            prop_assume!(status != 204 && status != 304);
            let mut raw = format!("HTTP/1.1 {status} X\r\nServer: t\r\n").into_bytes();
            if chunked {
                raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(chunk) {
                    raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    raw.extend_from_slice(piece);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
            } else {
                raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                raw.extend_from_slice(&body);
            }
            for cut in 0..raw.len() {
                prop_assert_eq!(parse(&raw[..cut], false), Ok(None));
            }
            let response = parse(&raw, false).unwrap().unwrap();
            prop_assert_eq!(response.status, status);
            prop_assert_eq!(&response.body[..], &body[..]);
        }
    }
}
