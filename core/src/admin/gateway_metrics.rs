//! The gateway's part of `/metrics` and `GET /api/v1/calls`: its clients, their calls and the
//! far-end media it dropped.

use std::time::Instant;

use crate::server::RtmpServer;

use super::json::Json;
use super::metrics::Exposition;

/// The gateway's families (nothing without a gateway).
pub(crate) fn render(server: &RtmpServer, out: &mut Exposition) {
    let Some(clients) = server.gateway_clients() else {
        return;
    };
    out.family(
        "siprtmp_gateway_clients",
        "gauge",
        "Gateway clients now, by state (binding: sockets being bound; active; lingering: gone, last SIP transactions running).",
    );
    for state in ["binding", "active", "lingering"] {
        let n = clients.iter().filter(|c| c.state == state).count();
        out.sample("siprtmp_gateway_clients", &[("state", state)], n as u64);
    }
    out.family(
        "siprtmp_gateway_calls",
        "gauge",
        "Gateway calls now, by state (outgoing: INVITE sent; incoming: client told of an INVITE; established).",
    );
    for state in ["outgoing", "incoming", "established"] {
        let n = clients.iter().filter(|c| c.call == Some(state)).count();
        out.sample("siprtmp_gateway_calls", &[("state", state)], n as u64);
    }
    out.single(
        "siprtmp_gateway_far_media_dropped_total",
        "counter",
        "Far-end media frames dropped because their client was behind (past the soft backlog).",
        server.far_media_dropped(),
    );
    out.single(
        "siprtmp_gateway_rtp_unknown_source_dropped_total",
        "counter",
        "Datagrams on the shared RTP ports dropped because no call expects their source.",
        server.gateway_unrouted_dropped(),
    );
}

/// `GET /api/v1/calls`: every gateway client and its call.
pub(crate) fn calls_json(server: &RtmpServer, _now: Instant) -> String {
    let mut json = Json::default();
    json.open_object().key("clients").open_array();
    for client in server.gateway_clients().unwrap_or_default() {
        json.open_object();
        json.key("id").string(&client.conn.0.to_string());
        json.key("aor").string(&client.aor);
        json.key("state").string(client.state);
        json.key("call").opt_string(client.call);
        json.key("far_end")
            .opt_string(client.far_end.map(|a| a.to_string()).as_deref());
        json.close_object();
    }
    json.close_array().close_object();
    json.finish()
}
