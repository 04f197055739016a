//! SIP over TLS, the gateway's client side (`testkit::SipTlsClient`: the client TLS layer the
//! gateway puts on each connection, then the SIP stream framing over what it decrypts):
//! arbitrary bytes where the server's handshake should be, cut into pieces of a fuzzed size,
//! never panic. These bytes cannot finish a handshake (no server key, no trusted root), so
//! nothing ever becomes plaintext; what the TLS library holds never exceeds what was fed;
//! once the client has failed the connection, it stays failed.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use siprtmp_core::testkit::SipTlsClient;
use siprtmp_core::tls::ClientTlsConfig;

/// A client configuration trusting nothing (ring, TLS 1.2 and 1.3, as the binary's).
fn config() -> &'static ClientTlsConfig {
    static CONFIG: OnceLock<ClientTlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(config)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let name = ServerName::try_from("sip.example.net").unwrap();
    let mut client = SipTlsClient::new(config(), name).unwrap();
    let hello = client.take_records().expect("a ClientHello at once");
    assert_eq!(hello[0], 22, "a handshake record");
    let mut fed = 0;
    let mut failed = false;
    for chunk in stream.chunks(piece) {
        fed += chunk.len();
        match client.receive(chunk) {
            Ok(messages) => {
                assert!(!failed, "bytes accepted after a failure");
                assert!(messages.is_empty(), "plaintext without a handshake");
                assert_eq!(client.pending(), 0);
                assert!(client.held() <= fed, "held {} of {fed}", client.held());
            }
            Err(_) => failed = true,
        }
        let _ = client.take_records();
        if failed {
            break;
        }
    }
});
