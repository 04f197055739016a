//! The gateway as an operator watches it, against real peers on loopback: a phone (the
//! project's RTMP client) calls a sipp UAS that echoes RTP, and `curl` scrapes `/metrics`
//! while the call runs (`promtool check metrics` must accept every family, the gateway's
//! and the process's included) and reads `GET /api/v1/calls`; the figures move as the call
//! does. The gateway's HTTP callbacks (`on_connect` deciding a gateway client, `on_register`,
//! `on_call`, `on_call_done`) reach a small HTTP backend written here. With two workers,
//! `/metrics` and the API describe the whole server.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use siprtmp_core::node::{CallbacksConfig, FailurePolicy, HttpConfig, NodeConfig};
use siprtmp_core::sip::Transport;
use siprtmp_tests::callback_backend::{Backend, Got, FORBIDDEN, OK};
use siprtmp_tests::gateway::{gateway_node, gateway_sip, s, EchoMedia, Phone};
use siprtmp_tests::scrape::{curl, promtool_check, sample};
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};
use siprtmp_tests::{scratch_dir, wait};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";

fn with_http(mut node: NodeConfig) -> NodeConfig {
    node.server.http = Some(HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    });
    node
}

fn scrape(addr: &str) -> String {
    let (status, body) = curl(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    if let Err(complaints) = promtool_check(&body) {
        panic!("promtool check metrics:\n{complaints}\n{body}");
    }
    body
}

fn value(exposition: &str, name: &str) -> f64 {
    sample(exposition, name).unwrap_or_else(|| panic!("no {name} in\n{exposition}"))
}

#[test]
fn a_scrape_during_an_echo_call_passes_promtool_and_its_figures_move_with_the_call() {
    let dir = scratch_dir("gw-metrics-echo");
    let mut server =
        TestServer::start_on(Runtime::Mio, with_http(gateway_node(Transport::Udp)), None);
    let http = server.http_listening(T).expect("the HTTP listener");
    let sipp = Sipp::echo_uas(1).start("sipp uas (echo)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(EchoMedia::Pcmu.tokens());
    phone.call("invite", invite);
    phone.callback("accepted", T).expect("accepted");
    phone.open_streams();
    let frames = EchoMedia::Pcmu.frames(200);
    phone.stream_audio_part(&frames[..100], 0, Duration::from_millis(400));

    let sent = "siprtmp_gateway_rtp_packets_total{direction=\"sent\",media=\"audio\"}";
    let received = "siprtmp_gateway_rtp_packets_total{direction=\"received\",media=\"audio\"}";
    let first = scrape(&http);
    assert_eq!(
        value(&first, "siprtmp_gateway_calls{state=\"established\"}"),
        1.0
    );
    assert_eq!(
        value(
            &first,
            "siprtmp_gateway_calls_total{direction=\"outgoing\",outcome=\"answered\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&first, "siprtmp_gateway_call_setup_seconds_count"),
        1.0
    );
    assert!(value(&first, sent) >= 100.0, "{first}");
    assert!(value(&first, received) >= 99.0, "sipp echoes: {first}");
    assert!(value(&first, "process_open_fds") >= 5.0, "{first}");
    assert!(
        value(&first, "process_resident_memory_bytes") > 1e6,
        "{first}"
    );

    let (status, calls) = curl(&http, "GET", "/api/v1/calls", None);
    assert_eq!(status, 200);
    for expected in [
        "\"aor\":\"alice@127.0.0.1\"",
        "\"call\":\"established\"",
        "\"direction\":\"outgoing\"",
        "\"audio_codec\":\"pcmu\"",
        "\"received_packets\":",
    ] {
        assert!(calls.contains(expected), "{expected} not in {calls}");
    }

    phone.stream_audio_part(&frames[100..], 0, Duration::from_millis(400));
    let second = scrape(&http);
    assert!(
        value(&second, sent) - value(&first, sent) >= 100.0,
        "{second}"
    );
    assert!(
        value(&second, received) - value(&first, received) >= 99.0,
        "{second}"
    );
    let bytes = "siprtmp_gateway_rtp_bytes_total{direction=\"received\",media=\"audio\"}";
    assert!(value(&second, bytes) >= 199.0 * 172.0, "{second}");

    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0));
    let ended = |m: &str| sample(m, "siprtmp_gateway_calls{state=\"established\"}") == Some(0.0);
    assert!(wait::until(T, || ended(&scrape(&http))), "the call ended");
    let last = scrape(&http);
    assert!(
        value(&last, sent) >= value(&second, sent),
        "counters never go back"
    );
    drop(server);
}

/// The backend's answers: refuses the connect of `mallory`'s gateway application and answers
/// every `on_call` 403 (a notification: it must change nothing); allows the rest.
fn answer(got: &Got) -> &'static str {
    let refuse = match got.path.as_str() {
        "/connect" => got.field("app").is_some_and(|a| a.contains("mallory")),
        "/call" => true,
        _ => false,
    };
    if refuse {
        FORBIDDEN
    } else {
        OK
    }
}

#[test]
fn the_gateway_callbacks_reach_the_backend_and_its_refusals_do_what_they_say() {
    let dir = scratch_dir("gw-callbacks");
    let backend = Backend::answering(answer);
    let url = |path: &str| Some(backend.url(path));
    let mut node = gateway_node(Transport::Udp);
    node.server.callbacks = Some(CallbacksConfig {
        on_connect: url("/connect"),
        on_register: url("/register"),
        on_call: url("/call"),
        on_call_done: url("/call_done"),
        timeout: Duration::from_secs(5),
        on_failure: FailurePolicy::Refuse,
        ..CallbacksConfig::default()
    });
    let mut server = TestServer::start_on(Runtime::Mio, node, None);
    let requests = |path: &str| backend.requests(path);

    // Refused: the backend says no to mallory's connect; nothing is bound for it.
    let refused = Phone::connect(server.addr, "mallory@127.0.0.1", vec![]);
    assert!(refused.is_err(), "mallory's connect is refused");
    assert_eq!(requests("/connect").len(), 1);

    // Allowed: alice connects, and her SIP identity's binding is told.
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("alice connects");
    let sip = gateway_sip(&mut server, AOR);
    assert!(wait::until(T, || !requests("/register").is_empty()));
    let register = &requests("/register")[0];
    assert_eq!(register.field("call"), Some("register"));
    assert_eq!(register.field("aor"), Some(AOR));
    assert_eq!(register.field("sip"), Some(sip.to_string().as_str()));
    assert!(
        requests("/register")
            .iter()
            .all(|r| r.field("aor") == Some(AOR)),
        "mallory was never bound"
    );

    // A call: on_call once established; its 403 is only a notification's answer, so the
    // call goes on (alice hears her echo after it), and on_call_done follows its end.
    let sipp = Sipp::echo_uas(1).start("sipp uas (echo)", &dir);
    let mut invite = vec![s(&sipp.uri("service"))];
    invite.extend(EchoMedia::Pcmu.tokens());
    phone.call("invite", invite);
    phone.callback("accepted", T).expect("accepted");
    assert!(wait::until(T, || !requests("/call").is_empty()));
    let call = &requests("/call")[0];
    assert_eq!(call.field("call"), Some("call"));
    assert_eq!(call.field("direction"), Some("out"));
    assert!(call.field("clientid").is_some());
    phone.open_streams();
    let frames = EchoMedia::Pcmu.frames(100);
    phone.stream_audio(&frames, Duration::from_millis(400));
    let heard = phone.remote_audio().len();
    assert!(
        heard >= 99,
        "the refused on_call ended nothing: {heard} of 100 heard"
    );
    assert!(requests("/call_done").is_empty(), "no end before the bye");

    phone.call("bye", vec![]);
    assert!(wait::until(T, || !requests("/call_done").is_empty()));
    let done = &requests("/call_done")[0];
    assert_eq!(done.field("call"), Some("call_done"));
    assert_eq!(done.field("direction"), Some("out"));
    assert_eq!(done.field("reason"), Some("bye from client"));
    let duration: u64 = done.field("duration").unwrap().parse().unwrap();
    assert!(
        (1..=30).contains(&duration),
        "established 2 s or so: {duration}"
    );
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0));
}

/// With two workers, connections land on either (the kernel's choice): `/metrics` and
/// `/api/v1/connections` count every one, whichever worker holds it, and a drop through the
/// API of a connection another worker holds closes it.
#[test]
fn with_two_workers_the_metrics_and_the_api_describe_the_whole_server() {
    let node = with_http(NodeConfig::default());
    let mut server = TestServer::start_workers(Runtime::Mio, node, 2);
    let http = server.http_listening(T).expect("the HTTP listener");
    // Eight connections that stay in the handshake (nothing sent).
    let mut sockets: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let handshakes = "siprtmp_connections{state=\"handshake\"}";
    let all_in = || sample(&scrape(&http), handshakes) == Some(8.0);
    assert!(wait::until(T, all_in), "{}", scrape(&http));
    let metrics = scrape(&http);
    assert_eq!(value(&metrics, "siprtmp_connections_accepted_total"), 8.0);

    let (status, list) = curl(&http, "GET", "/api/v1/connections", None);
    assert_eq!(status, 200);
    let ids: Vec<u64> = list
        .split("\"id\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 8, "{list}");

    // Drop one on worker 1 if the kernel put one there (with 8 connections and 2 workers it
    // almost always does), else one on worker 0.
    let id = ids
        .iter()
        .copied()
        .find(|id| id >> 56 == 1)
        .unwrap_or(ids[0]);
    let (status, body) = curl(
        &http,
        "POST",
        &format!("/api/v1/connections/{id}/drop"),
        None,
    );
    assert!(status == 200 || status == 202, "{status} {body}");
    let closed = |m: &str| {
        sample(
            m,
            "siprtmp_connections_closed_total{reason=\"dropped_by_operator\"}",
        ) == Some(1.0)
    };
    assert!(
        wait::until(T, || closed(&scrape(&http))),
        "{}",
        scrape(&http)
    );
    // One of the sockets reads the end of its connection.
    let mut ended = 0;
    for socket in &mut sockets {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 16];
        if matches!(socket.read(&mut buf), Ok(0)) {
            ended += 1;
        }
    }
    assert_eq!(ended, 1);
}
