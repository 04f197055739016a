//! [`Response`]: a status, a few headers and a body, written as HTTP/1.1 bytes.

use bytes::{BufMut, Bytes, BytesMut};

/// One response.
///
/// ```
/// use siprtmp_core::http::response::Response;
/// let bytes = Response::text(404, "no such page\n").encode(false, false);
/// let text = std::str::from_utf8(&bytes).unwrap();
/// assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
/// assert!(text.contains("\r\nContent-Length: 13\r\n"));
/// assert!(text.contains("\r\nConnection: close\r\n"));
/// assert!(text.ends_with("\r\n\r\nno such page\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body's media type.
    pub content_type: &'static str,
    /// Other headers (names and values the server chose: no line breaks).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with a body of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON response.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "application/json", body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The response as bytes: status line, headers (`Content-Length` always, `Connection:
    /// close` unless `keep_alive`), then the body unless `head_only` (the answer to `HEAD`).
    pub fn encode(&self, keep_alive: bool, head_only: bool) -> Bytes {
        let mut out = BytesMut::with_capacity(160 + self.body.len());
        let status = self.status;
        let reason = reason(status);
        out.put_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
        out.put_slice(b"Content-Type: ");
        out.put_slice(self.content_type.as_bytes());
        out.put_slice(format!("\r\nContent-Length: {}\r\n", self.body.len()).as_bytes());
        out.put_slice(b"Cache-Control: no-store\r\n");
        if !keep_alive {
            out.put_slice(b"Connection: close\r\n");
        }
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        if !head_only {
            out.put_slice(&self.body);
        }
        out.freeze()
    }
}

/// The reason phrase of the status codes the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_only_keeps_the_length_and_drops_the_body() {
        let response = Response::json(200, "{}").with_header("Allow", "GET");
        let bytes = response.encode(true, true);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(!text.contains("Connection"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
