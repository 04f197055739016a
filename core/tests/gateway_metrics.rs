//! The gateway's figures as an operator reads them: `/metrics` and `GET /api/v1/calls` of a
//! node whose gateway calls bob (the in-memory far end that answers and echoes every RTP
//! datagram), in virtual time. A call counts once by its outcome, its setup time is observed
//! once, RTP counters move with the media both ways, and datagrams that are not the call's
//! media count as dropped by reason.

mod support;

use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::node::HttpConfig;
use siprtmp_core::sip::Transport;
use support::gateway_world::{call_as, World, FAR_RTP, FAR_SIP, NOBODY, RTP_PORTS};

/// A gateway node with the HTTP listener on.
fn world() -> World {
    World::configured(Transport::Udp, RTP_PORTS, |c| {
        c.server.http = Some(HttpConfig {
            listen: "10.0.0.1:8080".parse().unwrap(),
            ..HttpConfig::default()
        });
    })
}

/// The value of the sample `name` (labels as written) in an exposition; 0 when absent.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

fn metrics(w: &mut World) -> String {
    let (status, body) = w.http_get("/metrics");
    assert_eq!(status, 200);
    body
}

#[test]
fn an_echo_call_counts_once_and_its_rtp_moves_both_ways() {
    let mut w = world();
    let before = metrics(&mut w);
    assert_eq!(
        sample(
            &before,
            "siprtmp_gateway_calls_total{direction=\"outgoing\",outcome=\"answered\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(&before, "siprtmp_gateway_call_setup_seconds_count"),
        0.0
    );

    let c = call_as(&mut w, "alice");
    let sent = "siprtmp_gateway_rtp_packets_total{direction=\"sent\",media=\"audio\"}";
    let received = "siprtmp_gateway_rtp_packets_total{direction=\"received\",media=\"audio\"}";
    let during = metrics(&mut w);
    assert_eq!(
        sample(&during, "siprtmp_gateway_calls{state=\"established\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &during,
            "siprtmp_gateway_calls_total{direction=\"outgoing\",outcome=\"answered\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&during, "siprtmp_gateway_call_setup_seconds_count"),
        1.0
    );
    let (sent_before, received_before) = (sample(&during, sent), sample(&during, received));

    for i in 0..50 {
        w.now += Duration::from_millis(20);
        w.net.clients[c]
            .client
            .send_media(&support::gateway_world::frame(i));
        w.pump();
    }
    let after = metrics(&mut w);
    assert_eq!(sample(&after, sent) - sent_before, 50.0, "{after}");
    assert_eq!(
        sample(&after, received) - received_before,
        50.0,
        "bob echoes each"
    );
    // 12-byte RTP header + the 160 bytes of each frame's G.711 payload, both ways.
    let bytes = "siprtmp_gateway_rtp_bytes_total{direction=\"sent\",media=\"audio\"}";
    assert_eq!(sample(&after, bytes) - sample(&during, bytes), 50.0 * 172.0);

    // The API shows the call: outgoing, established, PCMU, the same counters.
    let (status, calls) = w.http_get("/api/v1/calls");
    assert_eq!(status, 200);
    assert!(calls.contains("\"direction\":\"outgoing\""), "{calls}");
    assert!(calls.contains("\"established\":true"), "{calls}");
    assert!(calls.contains("\"audio_codec\":\"pcmu\""), "{calls}");
    let packets = format!("\"sent_packets\":{}", sample(&after, sent));
    assert!(calls.contains(&packets), "{calls} has no {packets}");

    // Time passes (RTCP reports go out); the counters hold still without media.
    w.advance(Duration::from_secs(15));
    let later = metrics(&mut w);
    assert_eq!(sample(&later, sent), sample(&after, sent));

    // The call ends: its counters stay (folded into the totals), the gauge goes to 0.
    w.net.clients[c].client.call(0, "bye", vec![]);
    w.pump();
    let ended = metrics(&mut w);
    assert_eq!(
        sample(&ended, "siprtmp_gateway_calls{state=\"established\"}"),
        0.0
    );
    assert_eq!(sample(&ended, sent), sample(&later, sent));
    assert_eq!(sample(&ended, received), sample(&later, received));
    assert_eq!(
        sample(&ended, "siprtmp_gateway_call_setup_seconds_count"),
        1.0
    );
}

#[test]
fn outcomes_other_than_answered_count_by_kind() {
    let mut w = world();
    w.far_answers = false;
    let c = w.client("alice", None);
    // Bob lets it ring; the client hangs up: cancelled.
    let args = vec![
        Value::string(format!("bob@{FAR_SIP}")),
        Value::string("pcmu"),
    ];
    w.net.clients[c].client.call(0, "invite", args);
    w.pump();
    assert!(w.callback(c, "ringing").is_some());
    w.net.clients[c].client.call(0, "bye", vec![]);
    w.pump();
    // Nobody answers at all: timed out (Timer B, 64·T1).
    let args = vec![
        Value::string(format!("bob@{NOBODY}")),
        Value::string("pcmu"),
    ];
    w.net.clients[c].client.call(0, "invite", args);
    w.pump();
    w.advance(Duration::from_secs(40));
    // An address that is no SIP URI: the gateway cannot place it.
    let args = vec![Value::string("sip:"), Value::string("pcmu")];
    w.net.clients[c].client.call(0, "invite", args);
    w.pump();

    let m = metrics(&mut w);
    let outcome = |o: &str| {
        sample(
            &m,
            &format!("siprtmp_gateway_calls_total{{direction=\"outgoing\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("cancelled"), 1.0, "{m}");
    assert_eq!(outcome("timed_out"), 1.0, "{m}");
    assert_eq!(outcome("failed"), 1.0, "{m}");
    assert_eq!(outcome("answered"), 0.0, "{m}");
    assert_eq!(sample(&m, "siprtmp_gateway_call_setup_seconds_count"), 0.0);
}

#[test]
fn datagrams_that_are_not_the_calls_media_count_as_dropped_by_reason() {
    let mut w = world();
    let c = call_as(&mut w, "alice");
    w.net.clients[c]
        .client
        .send_media(&support::gateway_world::frame(0));
    w.pump();
    let node_rtp = w.node_rtp.expect("the node sent bob RTP");
    // From bob's address but not RTP; then RTP from a stranger once the call has latched.
    w.net.udp.send(
        FAR_RTP.parse().unwrap(),
        node_rtp,
        Bytes::from_static(b"\x00junk"),
    );
    let stranger = "10.0.0.66:7000".parse().unwrap();
    let rtp = Bytes::from_static(&[0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xff]);
    w.net.udp.send(stranger, node_rtp, rtp);
    w.pump();
    let m = metrics(&mut w);
    assert_eq!(
        sample(
            &m,
            "siprtmp_gateway_rtp_dropped_total{reason=\"undecodable\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "siprtmp_gateway_rtp_dropped_total{reason=\"unknown_source\"}"
        ),
        1.0,
        "{m}"
    );
}
