//! RTMPS for the load generator (`R-tls` servers): a certificate made for the run, and the
//! client side of TLS for each connection (rustls, trusting that run's CA), so the measured
//! server does the TLS of every publisher and player. The load generator's own TLS costs its
//! process, not the server's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};

/// The CA of this run: its certificate, which the clients trust.
static CA: OnceLock<(rcgen::KeyPair, rcgen::Certificate)> = OnceLock::new();

fn ca() -> &'static (rcgen::KeyPair, rcgen::Certificate) {
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bench-compare CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        (key, cert)
    })
}

/// A certificate for 127.0.0.1 signed by the run's CA, written to `dir` as PEM; the paths of
/// the certificate and the key.
pub(crate) fn server_files(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (ca_key, ca_cert) = ca();
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).map_err(|e| e.to_string())?;
    let cert = params
        .signed_by(&key, ca_cert, ca_key)
        .map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, key.serialize_pem()).map_err(|e| e.to_string())?;
    Ok((cert_path, key_path))
}

/// A client connection to the server at 127.0.0.1, trusting the run's CA.
pub(crate) fn client() -> rustls::ClientConnection {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let ca: CertificateDer<'static> = ca().1.der().clone();
        roots.add(ca).expect("the run's CA");
        let config =
            rustls::ClientConfig::builder_with_provider(siprtmp_runtime_common::crypto_provider())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        Arc::new(config)
    });
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    rustls::ClientConnection::new(config.clone(), name).expect("a TLS client")
}
