//! The web page served at `/` (streams and gateway calls at a glance, and a live player) and
//! the player library it uses, both built into the binary.
//!
//! They are embedded with `include_bytes!` rather than read from a configured directory: the
//! node does no file I/O of its own for HTTP (it is sans-IO: files would go through the
//! driver's file executor, for two small constant files), the binary stays the one thing to
//! deploy, and the page cannot drift from the API it reads. The cost is the library's size in
//! the binary (about 270 KiB). See `core/web/README.md` for the library's version and
//! license.

use crate::http::request::Request;
use crate::http::response::Response;

/// The page.
const INDEX: &[u8] = include_bytes!("../../web/index.html");
/// mpegts.js, minified, as published on the npm registry.
const MPEGTS: &[u8] = include_bytes!("../../web/vendor/mpegts.js");

/// The answer to `request` if it asks for the page or the library (`GET` or `HEAD`).
pub(super) fn respond(request: &Request) -> Option<Response> {
    let (content_type, body) = match request.path.as_str() {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/mpegts.js" => ("text/javascript; charset=utf-8", MPEGTS),
        _ => return None,
    };
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        return Some(Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD"));
    }
    Some(Response::new(
        200,
        content_type,
        bytes::Bytes::from_static(body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, Limits};

    fn get(path: &str) -> Option<Response> {
        let text = format!("GET {path} HTTP/1.1\r\n\r\n");
        respond(
            &parse(text.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap()
                .0,
        )
    }

    #[test]
    fn the_page_and_the_library_are_served_and_nothing_else() {
        let page = get("/").unwrap();
        assert_eq!(page.status, 200);
        let html = std::str::from_utf8(&page.body).unwrap();
        // The page loads the library from this server, not from a CDN.
        assert!(html.contains("src=\"/mpegts.js\""));
        assert!(
            !html.contains("://"),
            "the page must not fetch anything from elsewhere"
        );
        let js = get("/mpegts.js").unwrap();
        assert!(js.content_type.starts_with("text/javascript"));
        assert!(js.body.len() > 100_000);
        assert!(get("/api/v1/streams").is_none());
    }
}
