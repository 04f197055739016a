//! The relays' part of `/metrics` and of `GET /api/v1/streams`: sessions by direction and
//! state, what their attempts came to, bytes both ways, and each push's backlog (in bytes and
//! in media time), read off the server's relay sessions (`crate::server`'s `relay`).

use std::time::Instant;

use crate::server::{RelayView, StreamView, RELAY_FAILURE_KINDS, RELAY_SESSION_STATES};

use super::json::Json;
use super::metrics::Exposition;
use super::report::NodeStats;

/// Label values of the direction, in the order of the counters' arrays.
const DIRECTIONS: [&str; 2] = ["push", "pull"];

/// The relays' families: the node's counters and sessions, and each push's backlog.
pub(crate) fn render(stats: &NodeStats, streams: &[StreamView], out: &mut Exposition) {
    let relay = &stats.relay;
    out.family(
        "siprtmp_relay_sessions",
        "gauge",
        "Relay sessions now, by direction (push, pull) and state (waiting: to retry; connecting; live).",
    );
    for (direction, states) in DIRECTIONS.iter().zip(stats.relay_sessions) {
        for (state, n) in RELAY_SESSION_STATES.iter().zip(states) {
            out.sample(
                "siprtmp_relay_sessions",
                &[("direction", direction), ("state", state)],
                n,
            );
        }
    }
    let per_direction = |out: &mut Exposition, name: &str, help: &str, values: [u64; 2]| {
        out.family(name, "counter", help);
        for (direction, n) in DIRECTIONS.iter().zip(values) {
            out.sample(name, &[("direction", direction)], n);
        }
    };
    per_direction(
        out,
        "siprtmp_relay_started_total",
        "Relay sessions the upstream took (Publish.Start or Play.Start), each reconnection counted.",
        relay.started,
    );
    out.family(
        "siprtmp_relay_failures_total",
        "counter",
        "Relay attempts that failed or broke, by direction and reason.",
    );
    for (direction, failures) in DIRECTIONS.iter().zip(relay.failures) {
        for (reason, n) in RELAY_FAILURE_KINDS.iter().zip(failures) {
            out.sample(
                "siprtmp_relay_failures_total",
                &[("direction", direction), ("reason", reason)],
                n,
            );
        }
    }
    per_direction(
        out,
        "siprtmp_relay_refused_total",
        "Relay sessions not started because of the relay session limits.",
        relay.refused_by_limits,
    );
    per_direction(
        out,
        "siprtmp_relay_sent_bytes_total",
        "Bytes written to upstreams.",
        relay.sent_bytes,
    );
    per_direction(
        out,
        "siprtmp_relay_received_bytes_total",
        "Bytes read from upstreams.",
        relay.received_bytes,
    );
    out.single(
        "siprtmp_relay_push_dropped_messages_total",
        "counter",
        "Video messages a push left out because its backlog was past the soft limit.",
        relay.dropped,
    );
    let pushes = || {
        streams.iter().flat_map(|stream| {
            let (app, name) = stream.key.split_once('/').unwrap_or(("", &stream.key));
            stream
                .relays
                .iter()
                .filter(|r| r.direction == crate::io::RelayDirection::Push)
                .map(move |r| (app, name, r))
        })
    };
    out.family(
        "siprtmp_relay_push_backlog_bytes",
        "gauge",
        "Bytes of each push handed to the driver and not yet written to its upstream.",
    );
    for (app, name, push) in pushes() {
        out.sample(
            "siprtmp_relay_push_backlog_bytes",
            &[("app", app), ("stream", name), ("upstream", &push.upstream)],
            push.backlog_bytes,
        );
    }
    out.family(
        "siprtmp_relay_push_behind_seconds",
        "gauge",
        "Media time each push's backlog spans: from its oldest message not yet written to its newest.",
    );
    for (app, name, push) in pushes() {
        out.sample_f64(
            "siprtmp_relay_push_behind_seconds",
            &[("app", app), ("stream", name), ("upstream", &push.upstream)],
            f64::from(push.behind_ms) / 1000.0,
        );
    }
}

/// A stream's relay sessions in `GET /api/v1/streams` (the key `relays` is written).
pub(crate) fn relays_json(json: &mut Json, relays: &[RelayView], now: Instant) {
    json.key("relays").open_array();
    for relay in relays {
        json.open_object();
        json.key("direction").string(relay.direction.as_str());
        json.key("upstream").string(&relay.upstream);
        json.key("state").string(relay.state);
        json.key("backlog_bytes").integer(relay.backlog_bytes);
        json.key("behind_ms").integer(u64::from(relay.behind_ms));
        json.key("failures").integer(relay.failures);
        json.key("live_seconds");
        match relay.since {
            Some(since) => json.number(now.saturating_duration_since(since).as_secs_f64()),
            None => json.null(),
        };
        json.close_object();
    }
    json.close_array();
}
