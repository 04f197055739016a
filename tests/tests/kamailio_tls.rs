//! SIP over TLS against a real registrar and proxy: Kamailio with its tls module (Debian
//! `kamailio-tls-modules`), listening on `tls:` only, with a server certificate from a CA
//! made here and digest authentication on REGISTER (a fixed password checked by the config).
//! Two RTMP clients connect with credentials, so the gateway opens a TLS connection for each,
//! verifies Kamailio's certificate against the CA, answers the challenge and registers; one
//! calls the other through Kamailio (the INVITE reaches the callee over the connection its
//! REGISTER opened: Kamailio reuses it through the Via's `alias`), both hear each other, and
//! the hang-up reaches the other side. The connections are checked to be TLS (`ss` shows
//! them established to Kamailio's TLS port, the only port it listens on, and plaintext SIP
//! sent there gets no SIP answer). Once more with `sips:` URIs (a registrar configured as `sips:`).
//! A gateway trusting only the system's roots fails to register, with the
//! certificate named as the reason, and neither it nor Kamailio falls over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use siprtmp_core::node::Event;
use siprtmp_runtime_common::TlsRoots;
use siprtmp_tests::gateway::{
    accept_pcmu, assert_phones_hear_each_other, s, tls_gateway_node, Phone,
};
use siprtmp_tests::kamailio::{modules_dir, registrar_config, tls_cfg, Kamailio};
use siprtmp_tests::ports::{free_tcp_port, LOOPBACK};
use siprtmp_tests::rtmps::TestCa;
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;

const T: Duration = Duration::from_secs(10);

/// The password Kamailio checks every REGISTER against (whatever the user).
const PASSWORD: &str = "tls-secret";

/// Established TCP connections to local port `port`, as `ss` lists them.
fn established_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Plaintext SIP sent to Kamailio's TLS port gets no SIP answer (it is read as a broken TLS
/// handshake): what the port speaks is TLS.
fn assert_plaintext_gets_no_sip(port: u16) {
    let mut plain = TcpStream::connect((LOOPBACK, port)).expect("connect to Kamailio");
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let options = format!(
        "OPTIONS sip:nobody@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKplain\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:nobody@127.0.0.1>\r\n\
         Call-ID: plain@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    plain.write_all(options.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"SIP/2.0"),
        "Kamailio's port answered plaintext SIP: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn two_clients_register_over_tls_with_digest_auth_and_call_each_other_through_kamailio() {
    let dir = scratch_dir("gw-kamailio-tls");
    let ca = TestCa::new(&dir);
    let pair = ca.server(&dir, "kamailio", 2020, 2100);
    let cfg = dir.join("tls.cfg");
    std::fs::write(&cfg, tls_cfg(&pair.files.cert, &pair.files.key)).unwrap();
    let port = free_tcp_port(LOOPBACK);
    let listen = [format!("tls:127.0.0.1:{port}")];
    let config = registrar_config(modules_dir(), &listen, Some(&cfg), PASSWORD);
    let mut kamailio = Kamailio::start(&dir, &config);
    kamailio.wait_tcp(port);
    assert_plaintext_gets_no_sip(port);
    let proxy = SocketAddr::new(LOOPBACK, port);

    // Kamailio's certificate is verified against the test CA, for the name "localhost";
    // then again with sips: URIs (a registrar configured as sips:).
    let roots = TlsRoots::CaFile(ca.pem.clone());
    let server = TestServer::start(
        tls_gateway_node(proxy, roots.clone(), Some("localhost")),
        None,
    );
    call_over_tls(&server, port, "");
    drop(server);
    let mut node = tls_gateway_node(proxy, roots, Some("localhost"));
    node.server.gateway.as_mut().unwrap().session.sips = true;
    // Each test server has a seed of its own: the same one would make the same branches and
    // Call-IDs, which Kamailio would take for retransmissions of the first gateway's requests.
    let server = TestServer::start(node, None);
    call_over_tls(&server, port, "s");

    // A wrong password is refused by Kamailio, and the client is told.
    let wrong = vec![s("dave"), s("not the password"), s("dave")];
    let refused = Phone::connect(server.addr, "dave@127.0.0.1", wrong)
        .err()
        .expect("a wrong password does not register");
    assert!(
        refused.starts_with("403") || refused.starts_with("401"),
        "{refused}"
    );
    drop(server);

    // A gateway that trusts the system's roots (the default), which do not include the
    // test CA: Kamailio's certificate fails verification, the REGISTER fails with that
    // reason, and nothing falls over.
    let mut server = TestServer::start(tls_gateway_node(proxy, TlsRoots::System, None), None);
    let credentials = |user: &str| vec![s(user), s(PASSWORD), s(user)];
    let started = Instant::now();
    let error = Phone::connect(server.addr, "erin@127.0.0.1", credentials("erin"))
        .err()
        .expect("no registration with an untrusted certificate");
    assert!(
        error.starts_with("503 SIP over TLS to") && error.contains("invalid peer certificate"),
        "the rejection names the certificate: {error}"
    );
    assert!(started.elapsed() < T, "failed at once, not by a timeout");
    assert!(
        server.wait_for(1, T, |e| matches!(
            e,
            Event::Gateway { message, .. } if message.contains("invalid peer certificate")
        )),
        "the log says why"
    );
    // The server still serves a client (over a connection of its own) and Kamailio runs.
    let again = Phone::connect(server.addr, "erin@127.0.0.1", credentials("erin"));
    assert!(again.is_err(), "still refused, still answering");
    assert!(kamailio.running(), "Kamailio is still up");
    drop(server);
    drop(kamailio);
}

/// Alice and carol (`alice{suffix}`, `carol{suffix}`) register over TLS with the Kamailio on
/// `port` through `server`'s gateway, call, talk and hang up, on one TLS connection each.
fn call_over_tls(server: &TestServer, port: u16, suffix: &str) {
    let before = established_to(port);
    let alice_aor = format!("alice{suffix}@127.0.0.1");
    let carol_aor = format!("carol{suffix}@127.0.0.1");
    let credentials = |user: &str| vec![s(user), s(PASSWORD), s(user)];
    // With credentials the connect waits for the REGISTER's answer: a 401 challenge, then
    // Kamailio's 200 OK to the authorized REGISTER.
    let mut alice = Phone::connect(server.addr, &alice_aor, credentials("alice"))
        .expect("alice registered over TLS");
    let mut carol = Phone::connect(server.addr, &carol_aor, credentials("carol"))
        .expect("carol registered over TLS");
    assert_eq!(
        established_to(port),
        before + 2,
        "one TLS connection to Kamailio per client"
    );

    // By address of record: Kamailio's location table knows carol by the Contact she
    // registered, and reaches her over her own connection.
    alice.call("invite", vec![s(&format!("sip:{carol_aor}")), s("pcmu")]);
    let invited = carol.callback("invited", T).expect("carol is invited");
    assert!(
        format!("{invited:?}").contains(&alice_aor),
        "the caller is alice: {invited:?}"
    );
    accept_pcmu(&mut alice, &mut carol);
    assert_phones_hear_each_other(&mut alice, &mut carol);
    alice.call("bye", vec![]);
    carol
        .callback("byed", T)
        .expect("carol is told the call ended");
    assert_eq!(
        established_to(port),
        before + 2,
        "the call reused the clients' connections"
    );
}
