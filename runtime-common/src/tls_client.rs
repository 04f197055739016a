//! The TLS client side's trust: the roots the gateway's SIP over TLS connections verify the
//! registrar's or proxy's certificate against (the system's bundle, or a CA file the
//! operator names with `sip_tls_ca`), and the rustls client configuration built on them.
//!
//! The node does the TLS itself (see `siprtmp_core::tls`) and never reads a file: the roots
//! are read here, once, at start-up, with errors that name the file and what is wrong.
//!
//! Why the system's PEM bundle rather than a crate: the Linux distributions keep their roots
//! as one PEM file (updated with the system, with the administrator's own CAs added by
//! `update-ca-certificates`), which is what `rustls-native-certs` reads on Linux too; reading
//! it here needs no new dependency. A compiled-in snapshot (`webpki-roots`) would ignore a
//! local CA and go stale between releases.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use siprtmp_core::tls::rustls;
use siprtmp_core::tls::ClientTlsConfig;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::tls::{crypto_provider, TlsLoadError};

/// Where the system keeps its roots as one PEM bundle, the first that exists is read:
/// Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and the BSDs.
pub const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What server certificates are verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsRoots {
    /// The system's bundle ([`SYSTEM_BUNDLES`]; `SSL_CERT_FILE` names another, as OpenSSL
    /// reads it).
    System,
    /// The CA certificates (PEM) of this file only (`sip_tls_ca`).
    CaFile(PathBuf),
}

/// Reads the roots `source` names. An error names the file: missing, unreadable, not PEM,
/// or without one certificate rustls can use as a trust anchor.
///
/// ```
/// use siprtmp_runtime_common::{load_roots, TlsRoots};
/// let error = load_roots(&TlsRoots::CaFile("/nonexistent/ca.pem".into())).unwrap_err();
/// assert!(error.problem.starts_with("cannot read it"));
/// ```
pub fn load_roots(source: &TlsRoots) -> Result<RootCertStore, TlsLoadError> {
    let path = match source {
        TlsRoots::CaFile(path) => path.clone(),
        TlsRoots::System => system_bundle()?,
    };
    let pem = std::fs::read(&path)
        .map_err(|e| TlsLoadError::new(&path, format!("cannot read it: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsLoadError::new(&path, format!("not a PEM certificate file ({e})")))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsLoadError::new(
            &path,
            "no usable CA certificate in it (a PEM file with \"-----BEGIN CERTIFICATE-----\" is expected)",
        ));
    }
    Ok(roots)
}

/// The system's bundle: `SSL_CERT_FILE` if set, else the first of [`SYSTEM_BUNDLES`].
fn system_bundle() -> Result<PathBuf, TlsLoadError> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        return Ok(PathBuf::from(file));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            TlsLoadError::new(
                Path::new(SYSTEM_BUNDLES[0]),
                "no system CA bundle (install ca-certificates, or name a CA file with sip_tls_ca)",
            )
        })
}

/// The client configuration of the node's outgoing TLS connections, verifying servers
/// against `roots`: ring, TLS 1.2 and 1.3, no client certificate, and no session resumption
/// (nothing kept between connections, no ticket whose age needs the clock). The certificate
/// check itself reads the system clock (rustls's default time provider), here in the
/// embedder's configuration, not in the node.
pub fn client_config(roots: RootCertStore) -> ClientTlsConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("siprtmp-roots-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_ca_file_loads_and_each_fault_is_named() {
        let dir = scratch("faults");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        let roots = load_roots(&TlsRoots::CaFile(good)).expect("a CA loads");
        assert_eq!(roots.len(), 1);

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = load_roots(&TlsRoots::CaFile(empty.clone())).unwrap_err();
        assert_eq!(e.file, empty);
        assert!(e.problem.contains("no usable CA certificate"), "{e}");

        let missing = dir.join("missing.pem");
        let e = load_roots(&TlsRoots::CaFile(missing.clone())).unwrap_err();
        assert_eq!(e.file, missing);
        assert!(e.problem.starts_with("cannot read it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_system_bundle_of_this_machine_loads() {
        // Every machine the project builds on has ca-certificates (the package manager
        // needs it); the bundle holds the public roots.
        let roots = load_roots(&TlsRoots::System).expect("the system's roots");
        assert!(roots.len() > 10, "{} roots", roots.len());
        let _ = client_config(roots);
    }
}
