//! The gateway's part of `/metrics` and `GET /api/v1/calls`: its clients, registrations, calls
//! by state and outcome, call setup times, RTP both ways with RTCP's loss, jitter and
//! round-trip times, and the far-end media it dropped (see `crate::gateway::stats` for where
//! each is counted).

use std::time::{Duration, Instant};

use crate::gateway::call_session::CallView;
use crate::gateway::host::ClientView;
use crate::gateway::stats::{
    LegView, CALL_OUTCOMES, JITTER_BOUNDS, REGISTER_OUTCOMES, RTT_BOUNDS, SETUP_BOUNDS,
};

use super::json::Json;
use super::metrics::Exposition;
use super::report::NodeStats;

/// Label values of the per-leg families, in the order of the counters' arrays.
const MEDIA: [&str; 2] = ["audio", "video"];
/// Label values of the call direction, in the order of `SessionStats::calls`.
const DIRECTIONS: [&str; 2] = ["outgoing", "incoming"];

/// The gateway's families (nothing without a gateway).
pub(crate) fn render(stats: &NodeStats, out: &mut Exposition) {
    let Some(gateway) = &stats.gateway else {
        return;
    };
    out.family(
        "siprtmp_gateway_clients",
        "gauge",
        "Gateway clients now, by state (binding: sockets being bound; active; lingering: gone, last SIP transactions running).",
    );
    for (state, n) in ["binding", "active", "lingering"]
        .iter()
        .zip(gateway.clients)
    {
        out.sample("siprtmp_gateway_clients", &[("state", state)], n);
    }
    out.single(
        "siprtmp_gateway_registered_clients",
        "gauge",
        "Gateway clients whose address of record is registered now.",
        gateway.registered,
    );
    let sessions = &gateway.sessions;
    out.single(
        "siprtmp_gateway_register_attempts_total",
        "counter",
        "REGISTERs sent asking for a binding (first ones and refreshes; a challenge's resend is not another attempt).",
        sessions.register_attempts,
    );
    out.family(
        "siprtmp_gateway_registrations_total",
        "counter",
        "REGISTERs ended, by outcome (registered; rejected_Nxx by the final status's class; timed_out; failed: no registrar, transport).",
    );
    for (outcome, n) in REGISTER_OUTCOMES.iter().zip(sessions.registrations) {
        out.sample(
            "siprtmp_gateway_registrations_total",
            &[("outcome", outcome)],
            n,
        );
    }
    out.family(
        "siprtmp_gateway_calls",
        "gauge",
        "Gateway calls now, by state (outgoing: INVITE sent; incoming: client told of an INVITE; established).",
    );
    for (state, n) in ["outgoing", "incoming", "established"]
        .iter()
        .zip(gateway.calls)
    {
        out.sample("siprtmp_gateway_calls", &[("state", state)], n);
    }
    out.family(
        "siprtmp_gateway_calls_total",
        "counter",
        "Gateway call attempts ended, by direction and outcome (answered, busy, rejected_Nxx, cancelled, timed_out, failed).",
    );
    for (direction, counts) in DIRECTIONS.iter().zip(sessions.calls) {
        for (outcome, n) in CALL_OUTCOMES.iter().zip(counts) {
            let labels = [("direction", *direction), ("outcome", *outcome)];
            out.sample("siprtmp_gateway_calls_total", &labels, n);
        }
    }
    out.family(
        "siprtmp_gateway_call_setup_seconds",
        "histogram",
        "Time from a call's INVITE (sent or received) to its establishment, ringing included.",
    )
    .histogram(
        "siprtmp_gateway_call_setup_seconds",
        &[],
        SETUP_BOUNDS,
        &sessions.setup,
    );
    let media = &sessions.media;
    out.family(
        "siprtmp_gateway_rtp_packets_total",
        "counter",
        "RTP packets of calls, by direction (received: from far ends and used; sent) and media.",
    );
    for (i, kind) in MEDIA.iter().enumerate() {
        let leg = &media.legs[i];
        for (direction, n) in [
            ("received", leg.received_packets),
            ("sent", leg.sent_packets),
        ] {
            let labels = [("direction", direction), ("media", *kind)];
            out.sample("siprtmp_gateway_rtp_packets_total", &labels, n);
        }
    }
    out.family(
        "siprtmp_gateway_rtp_bytes_total",
        "counter",
        "Bytes of those RTP packets (UDP payload: RTP header and payload), by direction and media.",
    );
    for (i, kind) in MEDIA.iter().enumerate() {
        let leg = &media.legs[i];
        for (direction, n) in [("received", leg.received_bytes), ("sent", leg.sent_bytes)] {
            let labels = [("direction", direction), ("media", *kind)];
            out.sample("siprtmp_gateway_rtp_bytes_total", &labels, n);
        }
    }
    out.family(
        "siprtmp_gateway_rtp_lost_packets_total",
        "counter",
        "RTP packets lost, by direction (received: of the far ends' streams, as we count; sent: of ours, as the far ends' RTCP reports say) and media.",
    );
    for (i, kind) in MEDIA.iter().enumerate() {
        for (direction, n) in [
            ("received", media.lost_received[i]),
            ("sent", media.lost_sent[i]),
        ] {
            let labels = [("direction", direction), ("media", *kind)];
            out.sample("siprtmp_gateway_rtp_lost_packets_total", &labels, n);
        }
    }
    out.family(
        "siprtmp_gateway_rtp_jitter_seconds",
        "histogram",
        "RTP interarrival jitter: received (the far ends' streams, one observation per report we send), sent (ours, one per far-end report).",
    );
    for (direction, histogram) in [
        ("received", &media.jitter_received),
        ("sent", &media.jitter_sent),
    ] {
        out.histogram(
            "siprtmp_gateway_rtp_jitter_seconds",
            &[("direction", direction)],
            JITTER_BOUNDS,
            histogram,
        );
    }
    out.family(
        "siprtmp_gateway_rtcp_round_trip_seconds",
        "histogram",
        "Round-trip times to the far ends, from their RTCP reports on our sender reports.",
    )
    .histogram(
        "siprtmp_gateway_rtcp_round_trip_seconds",
        &[],
        RTT_BOUNDS,
        &media.round_trip,
    );
    out.family(
        "siprtmp_gateway_rtp_dropped_total",
        "counter",
        "Datagrams on calls' RTP ports not used, by reason (unknown_source: not from the far end, on a call's or the shared ports; wrong_ssrc; undecodable: not RTP/RTCP; unexpected_payload; srtp_auth: SRTP/SRTCP that did not authenticate; srtp_replay: SRTP/SRTCP replayed).",
    );
    let drops = &media.drops;
    for (reason, n) in [
        ("unknown_source", drops.unknown_source + gateway.unrouted),
        ("wrong_ssrc", drops.unexpected_ssrc),
        ("undecodable", drops.undecodable),
        ("unexpected_payload", drops.unexpected_payload),
        ("srtp_auth", drops.srtp_auth),
        ("srtp_replay", drops.srtp_replay),
    ] {
        out.sample(
            "siprtmp_gateway_rtp_dropped_total",
            &[("reason", reason)],
            n,
        );
    }
    out.single(
        "siprtmp_gateway_far_media_dropped_total",
        "counter",
        "Far-end media frames dropped because their client was behind (past the soft backlog).",
        stats.far_media_dropped,
    );
}

/// `GET /api/v1/calls`: every gateway client and its call.
pub(crate) fn calls_json(clients: &[ClientView], now: Instant) -> String {
    let mut json = Json::default();
    json.open_object().key("clients").open_array();
    for client in clients {
        json.open_object();
        json.key("id").string(&client.conn.0.to_string());
        json.key("aor").string(&client.aor);
        json.key("state").string(client.state);
        json.key("registered").boolean(client.registered);
        json.key("call").opt_string(client.call);
        json.key("far_end")
            .opt_string(client.far_end.map(|a| a.to_string()).as_deref());
        json.key("call_details");
        match &client.call_view {
            Some(call) => call_json(&mut json, call, now),
            None => {
                json.null();
            }
        }
        json.close_object();
    }
    json.close_array().close_object();
    json.finish()
}

/// One call: direction, times, codecs and each leg's RTP.
fn call_json(json: &mut Json, call: &CallView, now: Instant) {
    let age = now.saturating_duration_since(call.since).as_secs_f64();
    json.open_object();
    json.key("direction")
        .string(DIRECTIONS[call.direction as usize]);
    json.key("established").boolean(call.established);
    // Seconds established, or (before) seconds since the INVITE.
    json.key(if call.established {
        "duration_seconds"
    } else {
        "setup_seconds"
    })
    .number(age);
    json.key("audio_codec").opt_string(call.audio_codec);
    json.key("video_codec").opt_string(call.video_codec);
    for (name, leg) in [("audio", &call.audio), ("video", &call.video)] {
        json.key(name);
        match leg {
            Some(leg) => leg_json(json, leg),
            None => {
                json.null();
            }
        }
    }
    json.close_object();
}

/// One leg's counters and RTCP figures (times in milliseconds; `null` before a report).
fn leg_json(json: &mut Json, leg: &LegView) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let c = &leg.counters;
    let q = &leg.quality;
    json.open_object();
    json.key("received_packets").integer(c.received_packets);
    json.key("received_bytes").integer(c.received_bytes);
    json.key("sent_packets").integer(c.sent_packets);
    json.key("sent_bytes").integer(c.sent_bytes);
    json.key("lost").number(q.lost as f64);
    json.key("jitter_ms").number(ms(q.jitter));
    json.key("far_lost");
    match q.far_lost {
        Some(lost) => json.number(lost as f64),
        None => json.null(),
    };
    json.key("far_jitter_ms");
    match q.far_jitter {
        Some(jitter) => json.number(ms(jitter)),
        None => json.null(),
    };
    json.key("round_trip_ms");
    match q.round_trip {
        Some(rtt) => json.number(ms(rtt)),
        None => json.null(),
    };
    json.close_object();
}
