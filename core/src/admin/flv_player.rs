//! Which requests are HTTP-FLV plays (`GET /APP/NAME.flv[?query]`), and handing them to the
//! server, which answers them from the live fan-out (`server::http_flv`).
//!
//! A `.flv` play is not behind the listener's bearer token: it is a play like an RTMP one, so
//! the same access rules decide it (the application's play decision, with the URL's query
//! string as the play's, e.g. `?token=...`), and players (ffplay, VLC, a browser's media
//! element) could not send a bearer header anyway without extra configuration.

use std::net::SocketAddr;

use crate::http::request::Request;
use crate::server::RtmpServer;
use crate::tcp::StreamId;

/// The application and stream name (with the query string, if any) an HTTP-FLV request
/// asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FlvTarget {
    pub app: String,
    pub name: String,
}

/// The play `request` asks for, if it is an HTTP-FLV request: a path of two non-empty
/// segments, the second ending in `.flv`, whatever the method (a method other than `GET` is
/// refused by the server's answer, not routed elsewhere).
pub(super) fn target(request: &Request) -> Option<FlvTarget> {
    let path = request.path.strip_prefix('/')?;
    let (app, file) = path.split_once('/')?;
    let name = file.strip_suffix(".flv")?;
    if app.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    let name = match &request.query {
        Some(query) => format!("{name}?{query}"),
        None => name.to_owned(),
    };
    Some(FlvTarget {
        app: app.to_owned(),
        name,
    })
}

/// Hands the request on HTTP stream `stream` to the server (which answers even a refusal).
pub(super) fn hand_over(
    stream: StreamId,
    peer: SocketAddr,
    target: FlvTarget,
    request: &Request,
    server: &mut RtmpServer,
) {
    let chunked = request.minor_version >= 1;
    if request.method != "GET" {
        return server.flv_refuse_now(stream, peer, chunked, 405, "only GET plays a stream\n");
    }
    server.flv_request(stream, peer, &target.app, &target.name, chunked);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, Limits};

    fn target_of(text: &str) -> Option<FlvTarget> {
        let (request, _) = parse(text.as_bytes(), &Limits::default()).unwrap().unwrap();
        target(&request)
    }

    proptest::proptest! {
        /// Whatever the path and query: no panic, and a play names one application and one
        /// stream, neither empty nor holding a slash.
        #[test]
        fn any_target_is_a_play_of_one_app_and_one_name_or_none(
            path in "/[ -~]{0,60}",
            query in proptest::option::of("[!-~]{0,20}"),
        ) {
            let path: String = path.chars().filter(|c| *c != ' ' && *c != '?').collect();
            let line = match &query {
                Some(q) => format!("GET {path}?{q} HTTP/1.1\r\n\r\n"),
                None => format!("GET {path} HTTP/1.1\r\n\r\n"),
            };
            let Ok(Some((request, _))) = parse(line.as_bytes(), &Limits::default()) else {
                return Ok(());
            };
            if let Some(t) = target(&request) {
                proptest::prop_assert!(!t.app.is_empty() && !t.app.contains('/'));
                let bare = t.name.split_once('?').map_or(t.name.as_str(), |(n, _)| n);
                proptest::prop_assert!(!bare.is_empty() && !bare.contains('/'));
                proptest::prop_assert!(request.path.ends_with(".flv"));
            }
        }
    }

    #[test]
    fn only_app_slash_name_dot_flv_is_a_play() {
        let t = target_of("GET /live/cam.flv?token=x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((t.app.as_str(), t.name.as_str()), ("live", "cam?token=x"));
        for path in [
            "/cam.flv",
            "/live/.flv",
            "//cam.flv",
            "/a/b/c.flv",
            "/live/cam",
            "/api/v1/streams",
        ] {
            assert_eq!(
                target_of(&format!("GET {path} HTTP/1.1\r\n\r\n")),
                None,
                "{path}"
            );
        }
    }
}
