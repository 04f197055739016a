//! Which request gets which answer: the token check, then `/metrics` and the JSON API
//! (`/api/v1/applications`, `/api/v1/streams`, `/api/v1/connections`, `/api/v1/calls`) and
//! the operator's actions (`POST /api/v1/connections/{id}/drop`,
//! `POST /api/v1/calls/{id}/end`, `POST /api/v1/streams/{app}/{name}/record/stop`), after the
//! web page (`admin::page`). What describes the server is rendered from its report
//! (`admin::report`), gathered from every worker first when there are several; an action on
//! what another worker holds is forwarded to it ([`Route::Forward`]). HTTP-FLV
//! (`/APP/NAME.flv`) never comes here: the front hands it to the server (`admin::flv_player`).

use std::sync::Arc;
use std::time::Instant;

use crate::gateway::host::EndCall;
use crate::http::percent::decode_segment;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::ids::{ConnId, WorkerId};
use crate::io::ProcessStats;
use crate::server::{AppView, ConnView, RecordPolicy, RtmpServer, StopRecording, StreamView};
use crate::worker_relay::RelayMessage;

use super::json::Json;
use super::metrics::{self, Exposition};
use super::report::{ReportKind, WorkerReport};

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Route {
    /// Answer this.
    Answer(Response),
    /// Answer from the whole server's report of this kind (asked of the other workers first,
    /// when there are any: see `super::HttpFront`'s gatherings).
    Report(ReportKind),
    /// An action on a connection or stream another worker holds: the front forwards it
    /// and answers 202 (404 when no such worker is in the group).
    Forward(Forward),
}

/// An operator's action for another worker ([`Route::Forward`]).
#[derive(Debug)]
pub(crate) struct Forward {
    /// The worker that holds the connection or publishes the stream.
    pub to: WorkerId,
    /// What it is asked to do.
    pub message: RelayMessage,
}

impl Forward {
    /// The answer once it is forwarded: 202 with what is being done.
    pub(crate) fn accepted(&self) -> Response {
        match &self.message {
            RelayMessage::Drop { conn } => id_answer(202, "dropping", *conn),
            RelayMessage::EndCall { conn } => id_answer(202, "ending", *conn),
            RelayMessage::StopRecording { stream } => stream_answer(202, "stopping", stream, None),
            _ => Response::text(202, "forwarded\n"),
        }
    }

    /// The answer when the worker it names is not in the group: 404, as for any unknown id.
    pub(crate) fn unknown(&self) -> Response {
        match &self.message {
            RelayMessage::EndCall { .. } => no_client(),
            RelayMessage::StopRecording { .. } => not_recorded(),
            _ => Response::text(404, "no such connection\n"),
        }
    }
}

/// Where `request` goes, at `now`. `token`: the bearer token every request must carry, if
/// any.
pub(crate) fn route(
    request: &Request,
    server: &mut RtmpServer,
    token: Option<&str>,
    now: Instant,
) -> Route {
    // The page and its player library hold no secret, and a browser cannot send a bearer
    // token when it navigates: they are served to anyone (the page asks for the token).
    if let Some(static_file) = super::page::respond(request) {
        return Route::Answer(static_file);
    }
    if let Some(token) = token {
        if !authorized(request, token) {
            return Route::Answer(
                Response::text(401, "a bearer token is required\n")
                    .with_header("WWW-Authenticate", "Bearer realm=\"siprtmp\""),
            );
        }
    }
    let read = matches!(request.method.as_str(), "GET" | "HEAD");
    let post = request.method == "POST";
    let path = request.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["metrics"] if read => Route::Report(ReportKind::Metrics),
        ["api", "v1", "applications"] if read => Route::Report(ReportKind::Applications),
        ["api", "v1", "streams"] if read => Route::Report(ReportKind::Streams),
        ["api", "v1", "connections"] if read => Route::Report(ReportKind::Connections),
        ["api", "v1", "calls"] if read => Route::Report(ReportKind::Calls),
        ["metrics"] | ["api", "v1", "applications" | "streams" | "connections" | "calls"] => {
            Route::Answer(method_not_allowed("GET, HEAD"))
        }
        ["api", "v1", "connections", _, "drop"]
        | ["api", "v1", "calls", _, "end"]
        | ["api", "v1", "streams", .., "record", "stop"]
            if !post =>
        {
            Route::Answer(method_not_allowed("POST"))
        }
        ["api", "v1", "connections", id, "drop"] => match id.parse::<u64>().map(ConnId) {
            Ok(conn) if server.drop_conn(conn) => Route::Answer(id_answer(200, "dropped", conn)),
            Ok(conn) if server.is_other_worker(conn) => Route::Forward(Forward {
                to: conn.worker(),
                message: RelayMessage::Drop { conn },
            }),
            _ => Route::Answer(Response::text(404, "no such connection\n")),
        },
        ["api", "v1", "calls", id, "end"] => {
            let Ok(conn) = id.parse::<u64>().map(ConnId) else {
                return Route::Answer(no_client());
            };
            match server.end_call(now, conn) {
                EndCall::Ended(state) => {
                    let mut json = Json::default();
                    json.open_object()
                        .key("ended")
                        .string(&conn.0.to_string())
                        .key("call")
                        .string(state)
                        .close_object();
                    Route::Answer(Response::json(200, json.finish()))
                }
                EndCall::NoCall => Route::Answer(Response::text(
                    409,
                    "the gateway client has no call to end\n",
                )),
                EndCall::NoClient if server.is_other_worker(conn) => Route::Forward(Forward {
                    to: conn.worker(),
                    message: RelayMessage::EndCall { conn },
                }),
                EndCall::NoClient => Route::Answer(no_client()),
            }
        }
        ["api", "v1", "streams", key @ .., "record", "stop"] => {
            // `{app}/{name}`: an application or a name may hold slashes of its own, and the
            // stream's key is the two joined with one, so the segments in between are the
            // key whatever the split.
            let Some(key) = key
                .iter()
                .map(|segment| decode_segment(segment))
                .collect::<Option<Vec<String>>>()
                .map(|segments| segments.join("/"))
            else {
                return Route::Answer(Response::text(400, "malformed percent-encoding\n"));
            };
            match server.stop_recording(&key) {
                StopRecording::Stopped { path } => {
                    Route::Answer(stream_answer(200, "stopped", &key, Some(path.as_deref())))
                }
                StopRecording::Elsewhere(to) => Route::Forward(Forward {
                    to,
                    message: RelayMessage::StopRecording {
                        stream: Arc::from(key),
                    },
                }),
                StopRecording::NotRecording | StopRecording::NoStream => {
                    Route::Answer(not_recorded())
                }
            }
        }
        _ => Route::Answer(Response::text(404, "not found\n")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::text(405, "method not allowed\n").with_header("Allow", allow)
}

fn no_client() -> Response {
    Response::text(404, "no such gateway client\n")
}

fn not_recorded() -> Response {
    Response::text(404, "no such stream being recorded\n")
}

/// `{"<key>": "<id>"}` with `status`.
fn id_answer(status: u16, key: &str, conn: ConnId) -> Response {
    let mut json = Json::default();
    json.open_object()
        .key(key)
        .string(&conn.0.to_string())
        .close_object();
    Response::json(status, json.finish())
}

/// `{"<key>": "app/name"}`, and `"path"` (the file, or null) when `path` is given.
fn stream_answer(status: u16, key: &str, stream: &str, path: Option<Option<&str>>) -> Response {
    let mut json = Json::default();
    json.open_object().key(key).string(stream);
    if let Some(path) = path {
        json.key("path").opt_string(path);
    }
    json.close_object();
    Response::json(status, json.finish())
}

/// The answer to a [`Route::Report`] from the whole server's `report` (and, for
/// `/metrics`, what the driver last read of the process).
pub(crate) fn render(
    kind: ReportKind,
    report: &WorkerReport,
    now: Instant,
    process: Option<&ProcessStats>,
) -> Response {
    match kind {
        ReportKind::Metrics => {
            let mut out = Exposition::default();
            metrics::render_server(report, &mut out);
            super::gateway_metrics::render(&report.stats, &mut out);
            super::relay_metrics::render(&report.stats, &report.streams, &mut out);
            metrics::render_process(process, &mut out);
            Response::new(200, metrics::CONTENT_TYPE, out.finish())
        }
        ReportKind::Streams => Response::json(200, streams(&report.streams, now)),
        ReportKind::Connections => Response::json(200, connections(&report.conns)),
        ReportKind::Calls => {
            let clients = report.clients.as_deref().unwrap_or_default();
            Response::json(200, super::gateway_metrics::calls_json(clients, now))
        }
        ReportKind::Applications => Response::json(200, applications(&report.apps)),
    }
}

/// The answer to `request` from this node alone (a node that is no worker of a group).
#[cfg(test)]
pub(crate) fn respond(
    request: &Request,
    server: &mut RtmpServer,
    now: Instant,
    token: Option<&str>,
) -> Response {
    match route(request, server, token, now) {
        Route::Answer(response) => response,
        Route::Report(kind) => render(kind, &WorkerReport::of(server, kind), now, None),
        Route::Forward(forward) => forward.accepted(),
    }
}

/// Whether `request` carries `Authorization: Bearer token`, compared in constant time.
fn authorized(request: &Request, token: &str) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    // Every byte compared whatever the first difference, so the time says nothing of where.
    let differ = given
        .iter()
        .zip(token)
        .fold(given.len() ^ token.len(), |acc, (a, b)| {
            acc | usize::from(a ^ b)
        });
    differ == 0
}

/// `GET /api/v1/streams`.
fn streams(views: &[StreamView], now: Instant) -> String {
    let mut json = Json::default();
    json.open_object().key("streams").open_array();
    for stream in views {
        let (app, name) = stream.key.split_once('/').unwrap_or(("", &stream.key));
        json.open_object();
        json.key("app").string(app).key("name").string(name);
        json.key("publisher");
        match stream.publisher {
            Some((conn, peer)) => {
                json.open_object()
                    .key("id")
                    .string(&conn.0.to_string())
                    .key("address")
                    .string(&peer.to_string())
                    .close_object();
            }
            None => {
                json.null();
            }
        }
        json.key("remote").boolean(stream.remote);
        json.key("video_codec").opt_string(stream.video.as_deref());
        json.key("audio_codec").opt_string(stream.audio.as_deref());
        json.key("players").integer(stream.players as u64);
        json.key("recording").boolean(stream.recording);
        json.key("live_seconds");
        match stream.since {
            Some(since) => json.number(now.saturating_duration_since(since).as_secs_f64()),
            None => json.null(),
        };
        super::relay_metrics::relays_json(&mut json, &stream.relays, now);
        json.close_object();
    }
    json.close_array().close_object();
    json.finish()
}

/// `GET /api/v1/applications`.
fn applications(views: &[AppView]) -> String {
    let mut json = Json::default();
    json.open_object().key("applications").open_array();
    for app in views {
        json.open_object();
        json.key("name").string(&app.name);
        json.key("configured").boolean(app.configured);
        json.key("record").string(match app.record {
            RecordPolicy::All => "all",
            RecordPolicy::Off => "off",
        });
        json.key("gateway").boolean(app.gateway);
        json.key("connections").integer(app.connections);
        json.key("publishers").integer(app.publishers);
        json.key("players").integer(app.players);
        json.key("calls");
        match app.calls {
            Some(calls) => json.integer(calls),
            None => json.null(),
        };
        json.close_object();
    }
    json.close_array().close_object();
    json.finish()
}

/// `GET /api/v1/connections`.
fn connections(views: &[ConnView]) -> String {
    let mut json = Json::default();
    json.open_object().key("connections").open_array();
    for conn in views {
        json.open_object();
        json.key("id").string(&conn.id.0.to_string());
        json.key("name").string(&conn.id.to_string());
        json.key("address").string(&conn.peer.to_string());
        json.key("state").string(conn.state);
        json.key("app").opt_string(conn.app.as_deref());
        json.key("streams").open_array();
        for role in &conn.streams {
            json.string(role);
        }
        json.close_array();
        json.key("received_bytes").integer(conn.bytes_received);
        json.key("queued_bytes").integer(conn.queued_bytes as u64);
        json.key("tls").boolean(conn.tls);
        let millis = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
        json.key("merge_window_ms")
            .opt_integer(millis(conn.merge_window));
        json.key("read_lag_ms").opt_integer(millis(conn.read_lag));
        json.key("reads").integer(conn.reads);
        json.key("read_every_ms")
            .opt_integer(millis(conn.read_every));
        json.close_object();
    }
    json.close_array().close_object();
    json.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close_reason::CloseReason;
    use crate::http::request::{parse, Limits};
    use crate::node::ServerConfig;

    fn request(text: &str) -> Request {
        parse(text.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn answer(text: &str, token: Option<&str>) -> Response {
        let now = Instant::now();
        let mut server = RtmpServer::new(ServerConfig::default(), now, 1);
        respond(&request(text), &mut server, now, token)
    }

    #[test]
    fn the_token_is_required_when_configured() {
        let get = "GET /metrics HTTP/1.1\r\n";
        assert_eq!(answer(&format!("{get}\r\n"), Some("s3cret")).status, 401);
        let wrong = format!("{get}Authorization: Bearer s3cre\r\n\r\n");
        assert_eq!(answer(&wrong, Some("s3cret")).status, 401);
        let basic = format!("{get}Authorization: Basic s3cret\r\n\r\n");
        assert_eq!(answer(&basic, Some("s3cret")).status, 401);
        let right = format!("{get}Authorization: bearer s3cret\r\n\r\n");
        assert_eq!(answer(&right, Some("s3cret")).status, 200);
        assert_eq!(answer(&format!("{get}\r\n"), None).status, 200);
    }

    #[test]
    fn routes_and_methods() {
        let status = |text: &str| answer(text, None).status;
        assert_eq!(status("GET /api/v1/streams HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("HEAD /api/v1/connections HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("GET /api/v1/calls HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(
            status("GET /api/v1/connections/1/drop HTTP/1.1\r\n\r\n"),
            405
        );
        assert_eq!(
            status("POST /api/v1/connections/1/drop HTTP/1.1\r\n\r\n"),
            404
        );
        assert_eq!(
            status("POST /api/v1/connections/x/drop HTTP/1.1\r\n\r\n"),
            404
        );
        assert_eq!(status("GET /nothing HTTP/1.1\r\n\r\n"), 404);
    }

    #[test]
    fn the_new_routes_and_their_methods() {
        let status = |text: &str| answer(text, None).status;
        assert_eq!(status("GET /api/v1/applications HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("HEAD /api/v1/applications HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("POST /api/v1/applications HTTP/1.1\r\n\r\n"), 405);
        // Ending a call: POST only; no gateway, no client: 404.
        assert_eq!(status("GET /api/v1/calls/1/end HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("DELETE /api/v1/calls/1/end HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("POST /api/v1/calls/1/end HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST /api/v1/calls/-1/end HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST /api/v1/calls//end HTTP/1.1\r\n\r\n"), 404);
        // Stopping a recording: POST only; nothing published: 404; a bad escape: 400.
        let stop = "/api/v1/streams/live/cam/record/stop";
        assert_eq!(status(&format!("GET {stop} HTTP/1.1\r\n\r\n")), 405);
        assert_eq!(status(&format!("POST {stop} HTTP/1.1\r\n\r\n")), 404);
        let nested = "/api/v1/streams/live/sub/cam/record/stop";
        assert_eq!(status(&format!("POST {nested} HTTP/1.1\r\n\r\n")), 404);
        let bad = "/api/v1/streams/live/c%zzam/record/stop";
        assert_eq!(status(&format!("POST {bad} HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(
            status("POST /api/v1/streams/record/stop HTTP/1.1\r\n\r\n"),
            404
        );
        assert_eq!(
            status("POST /api/v1/streams/x/record/go HTTP/1.1\r\n\r\n"),
            404
        );
    }

    proptest::proptest! {
        /// Whatever path a client sends under the API, with whatever method: an answer, never
        /// a panic, and never a success for something that is not there (the server has no
        /// connection, call or stream).
        #[test]
        fn any_api_path_gets_an_answer(
            method in "(GET|HEAD|POST|PUT|DELETE)",
            segments in proptest::collection::vec(
                "(api|v1|streams|calls|connections|applications|record|stop|end|drop|[0-9]{1,20}|[a-z%0-9]{0,6})",
                0..9,
            ),
        ) {
            let path = format!("/api/v1/{}", segments.join("/"));
            let response = answer(&format!("{method} {path} HTTP/1.1\r\n\r\n"), None);
            let listing = response.status == 200 && method != "POST";
            proptest::prop_assert!(
                listing || [400, 404, 405].contains(&response.status),
                "{} {} -> {}", method, path, response.status
            );
        }
    }

    #[test]
    fn the_token_guards_the_actions_too() {
        let token = Some("s3cret");
        for path in [
            "/api/v1/applications",
            "/api/v1/calls/1/end",
            "/api/v1/streams/live/cam/record/stop",
        ] {
            let method = if path.ends_with("applications") {
                "GET"
            } else {
                "POST"
            };
            let bare = format!("{method} {path} HTTP/1.1\r\n\r\n");
            assert_eq!(answer(&bare, token).status, 401, "{path}");
            let wrong = format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n");
            assert_eq!(answer(&wrong, token).status, 401, "{path}");
            let right = format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n");
            assert_ne!(answer(&right, token).status, 401, "{path}");
        }
    }

    #[test]
    fn dropping_a_connection_closes_it_with_the_operators_reason() {
        let now = Instant::now();
        let mut server = RtmpServer::new(ServerConfig::default(), now, 1);
        let conn = server.accept(now, "127.0.0.1:5000".parse().unwrap());
        while server.poll_output().is_some() {}
        let text = format!("POST /api/v1/connections/{}/drop HTTP/1.1\r\n\r\n", conn.0);
        let response = respond(&request(&text), &mut server, now, None);
        assert_eq!(response.status, 200);
        let outputs: Vec<_> = std::iter::from_fn(|| server.poll_output()).collect();
        assert!(outputs.contains(&crate::io::Output::Close { conn }));
        assert!(
            outputs.contains(&crate::io::Output::Event(crate::io::Event::Closing {
                conn,
                reason: CloseReason::DroppedByOperator
            }))
        );
        assert_eq!(server.counters().closed_by("dropped_by_operator"), 1);
    }
}
