//! The gateway with SIP over TLS, in memory and virtual time (`support/gateway_world.rs`,
//! with the registrar replaced by a peer that never answers): what the gateway sends its
//! registrar is TLS from the first byte (a ClientHello; the REGISTER waits for the
//! handshake); a server that never finishes the handshake is given up when the handshake
//! timeout passes, the client refused with that reason and the connection closed, long
//! before the transaction's own timeout; a gateway without TLS settings refuses at once; and
//! a connection from outside to a client's listener is closed (the gateway has no
//! certificate to serve TLS with). The real handshake, certificate checks and calls are
//! tested against Kamailio (tests/tests/kamailio_tls.rs) and the TLS layer's own tests.

mod support;

use std::sync::Arc;
use std::time::Duration;

use siprtmp_core::node::SipTlsSettings;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::sip::Transport;
use siprtmp_core::tls::rustls;
use support::gateway_world::registrar::PASSWORD;
use support::gateway_world::{a, gateway, World, FAR_OUT, REGISTRAR, RTP_PORTS};

/// ring (the binary's provider; its deprecation is explained in runtime-common).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS settings trusting a CA of their own (no server here gets that far).
fn settings() -> SipTlsSettings {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    SipTlsSettings::new(Arc::new(config))
}

/// A TLS gateway whose registrar takes connections and bytes and never answers.
fn world(tls: Option<SipTlsSettings>) -> World {
    let mut w = World::configured(Transport::Tls, RTP_PORTS, |config| {
        let g = gateway(config);
        g.session.registrar = Some(a(REGISTRAR));
        g.sip_tls = tls;
    });
    w.silent.push(a(REGISTRAR));
    w.net.tcp.listen(a(REGISTRAR));
    w
}

fn rejected(w: &World, c: usize) -> bool {
    w.net
        .events(c)
        .iter()
        .any(|e| matches!(e, ClientEvent::ConnectRejected(_)))
}

#[test]
fn a_server_that_never_finishes_the_handshake_is_given_up_at_the_timeout() {
    let mut w = world(Some(settings()));
    let c = w.client("alice", Some(PASSWORD));
    let streams = w.net.tcp.open_streams();
    assert_eq!(streams.len(), 1, "one connection to the registrar");
    let sent = w.silent_inbox.get(&streams[0]).cloned().unwrap_or_default();
    assert_eq!(sent.first(), Some(&22), "a TLS handshake record first");
    assert!(
        !String::from_utf8_lossy(&sent).contains("REGISTER"),
        "no SIP in the clear"
    );

    w.advance(Duration::from_secs(9));
    assert!(!rejected(&w, c), "still within the handshake timeout");
    w.advance(Duration::from_secs(2));
    assert!(rejected(&w, c), "{:?}", w.net.events(c));
    let why = w.connect_description(c);
    assert!(
        why.starts_with(&format!("503 SIP over TLS to {REGISTRAR}"))
            && why.contains("TLS handshake not done within 10 s"),
        "{why}"
    );
    assert_eq!(w.net.tcp.open_streams(), vec![], "the connection is closed");
    assert_eq!(w.net.tcp.node_listeners(), vec![]);
}

#[test]
fn without_tls_settings_a_client_is_refused_at_once() {
    let mut w = world(None);
    let c = w.client("alice", Some(PASSWORD));
    assert!(rejected(&w, c), "{:?}", w.net.events(c));
    let why = w.connect_description(c);
    assert!(
        why.starts_with("503") && why.contains("SIP over TLS is not configured"),
        "{why}"
    );
    assert_eq!(w.net.tcp.open_streams(), vec![], "nothing was opened");
}

#[test]
fn a_connection_to_a_clients_listener_is_closed() {
    let mut w = world(Some(settings()));
    let c = w.client("alice", None);
    assert!(w.net.events(c).contains(&ClientEvent::Connected));
    let listener = w.net.tcp.node_listeners()[0];
    let stream = w.net.tcp.connect(a(FAR_OUT), listener).unwrap();
    w.pump();
    assert!(
        !w.net.tcp.open_streams().contains(&stream),
        "the gateway closed it"
    );
    // The client is unharmed: still connected, its listener still there.
    assert!(!rejected(&w, c));
    assert_eq!(w.net.tcp.node_listeners(), vec![listener]);
}
