//! The RTMPS listener's certificate: loading a certificate chain and its private key from PEM
//! files with every check a start-up needs (the file is there, it holds what it should, the
//! certificate is within its validity period, the key belongs to it), a resolver that swaps
//! them on reload while connections run, and the rustls server configuration the node's
//! [`siprtmp_core::tls::TlsConfig`] is.
//!
//! The node does the TLS itself (see `siprtmp_core::tls`); what is here touches the file
//! system and the clock, which the node never does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use siprtmp_core::tls::rustls;
use siprtmp_core::tls::TlsConfig;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::cert_validity::{format_utc, validity};

/// Where the certificate chain and its private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then the intermediates.
    pub cert: PathBuf,
    /// The private key of the server's certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key cannot be used: the file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLoadError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong, in a sentence.
    pub problem: String,
}

impl TlsLoadError {
    pub(crate) fn new(file: &Path, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for TlsLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.problem)
    }
}

impl std::error::Error for TlsLoadError {}

/// The crypto provider of the binary's TLS: ring.
///
/// Why ring and its classical key exchanges: aws-lc-rs (rustls's default) builds a C library
/// with cmake, which the project's machines do not have; rustls 0.23.48 deprecates ring's
/// provider only because it lacks post-quantum key exchange, which RTMP clients (ffmpeg with
/// OpenSSL or GnuTLS, OBS) do not need to connect (they offer X25519 and P-256 too).
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `files` and checks them, as at `now`: both files readable, a certificate and a key
/// in them, every certificate of the chain within its validity period, the key supported and
/// the one the first certificate is for.
///
/// ```
/// use siprtmp_runtime_common::{load_certified_key, TlsFiles};
/// let files = TlsFiles { cert: "/nonexistent/cert.pem".into(), key: "/nonexistent/key.pem".into() };
/// let error = load_certified_key(&files, std::time::SystemTime::now()).unwrap_err();
/// assert_eq!(error.file, files.cert);
/// ```
pub fn load_certified_key(files: &TlsFiles, now: SystemTime) -> Result<CertifiedKey, TlsLoadError> {
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsLoadError::new(&files.cert, format!("not a PEM certificate chain ({e})"))
        })?;
    if chain.is_empty() {
        return Err(TlsLoadError::new(
            &files.cert,
            "no certificate in it (a PEM file with \"-----BEGIN CERTIFICATE-----\" is expected)",
        ));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for (i, cert) in chain.iter().enumerate() {
        let which = if i == 0 {
            "the certificate".to_owned()
        } else {
            format!("certificate {} of the chain", i + 1)
        };
        let period = validity(cert)
            .map_err(|e| TlsLoadError::new(&files.cert, format!("{which} is unreadable: {e}")))?;
        if now > period.not_after {
            return Err(TlsLoadError::new(
                &files.cert,
                format!("{which} expired on {}", format_utc(period.not_after)),
            ));
        }
        if now < period.not_before {
            return Err(TlsLoadError::new(
                &files.cert,
                format!(
                    "{which} is not valid before {}",
                    format_utc(period.not_before)
                ),
            ));
        }
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsLoadError::new(
            &files.key,
            format!("no private key in it (a PEM file with \"-----BEGIN PRIVATE KEY-----\" is expected: {e})"),
        )
    })?;
    let signer = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsLoadError::new(&files.key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsLoadError::new(
                &files.key,
                format!(
                    "this private key does not belong to the certificate in {}",
                    files.cert.display()
                ),
            ))
        }
        // A key type whose public half the provider cannot derive: rustls cannot tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsLoadError::new(&files.cert, e.to_string())),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsLoadError> {
    std::fs::read(path).map_err(|e| TlsLoadError::new(path, format!("cannot read it: {e}")))
}

/// The RTMPS certificate, swapped by [`Self::reload`] while the server runs: handshakes that
/// start afterwards present the new one, sessions already established go on with theirs.
///
/// It is shared by every node (every worker) through the [`TlsConfig`] from
/// [`server_config`]; each handshake takes the current certificate once, under a read lock
/// (never on the data path).
#[derive(Debug)]
pub struct ReloadableCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads `files` (see [`load_certified_key`]).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsLoadError> {
        let key = load_certified_key(&files, SystemTime::now())?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again and, if they pass every check, serves them from the next
    /// handshake on; otherwise the certificate in use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let key = load_certified_key(&self.files, SystemTime::now())?;
        // A poisoned lock only means a reader panicked: the value is still a whole one.
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The certificate chain served now (DER), the server's certificate first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The node's TLS configuration serving `cert`: ring, TLS 1.2 and 1.3, no client
/// certificates, and no session resumption (no tickets, no session cache: nothing shared
/// between connections but the certificate, and no clock read during a handshake).
pub fn server_config(cert: Arc<ReloadableCert>) -> TlsConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Made {
        dir: PathBuf,
    }

    impl Made {
        fn new(test: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("siprtmp-tls-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self { dir }
        }

        /// A self-signed certificate valid from `from` to `until` (years), and its key.
        fn pair(&self, name: &str, from: i32, until: i32) -> (TlsFiles, rcgen::KeyPair) {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(until, 1, 1);
            let cert = params.self_signed(&key).unwrap();
            let files = TlsFiles {
                cert: self.dir.join(format!("{name}.crt")),
                key: self.dir.join(format!("{name}.key")),
            };
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            (files, key)
        }
    }

    impl Drop for Made {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_good_pair_loads_and_each_fault_names_its_file() {
        let made = Made::new("faults");
        let now = SystemTime::now();
        let (good, _) = made.pair("good", 2020, 2090);
        assert!(load_certified_key(&good, now).is_ok());

        let missing = TlsFiles {
            cert: made.dir.join("none.crt"),
            key: good.key.clone(),
        };
        let e = load_certified_key(&missing, now).unwrap_err();
        assert_eq!(e.file, missing.cert);
        assert!(e.problem.starts_with("cannot read it"), "{e}");

        let (expired, _) = made.pair("expired", 2001, 2002);
        let e = load_certified_key(&expired, now).unwrap_err();
        assert_eq!(e.file, expired.cert);
        assert_eq!(
            e.problem,
            "the certificate expired on 2002-01-01 00:00:00 UTC"
        );

        let (future, _) = made.pair("future", 2080, 2090);
        let e = load_certified_key(&future, now).unwrap_err();
        assert!(e.problem.contains("not valid before 2080-01-01"), "{e}");

        let (other, _) = made.pair("other", 2020, 2090);
        let mismatched = TlsFiles {
            cert: good.cert.clone(),
            key: other.key.clone(),
        };
        let e = load_certified_key(&mismatched, now).unwrap_err();
        assert_eq!(e.file, other.key);
        assert!(
            e.problem.contains("does not belong to the certificate"),
            "{e}"
        );

        let swapped = TlsFiles {
            cert: good.key.clone(),
            key: good.cert.clone(),
        };
        let e = load_certified_key(&swapped, now).unwrap_err();
        assert_eq!(e.file, good.key);
        assert!(e.problem.starts_with("no certificate in it"), "{e}");
        let no_key = TlsFiles {
            cert: good.cert.clone(),
            key: good.cert.clone(),
        };
        let e = load_certified_key(&no_key, now).unwrap_err();
        assert!(e.problem.starts_with("no private key in it"), "{e}");
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
        let made = Made::new("reload");
        let (files, _) = made.pair("server", 2020, 2090);
        let cert = ReloadableCert::load(files.clone()).unwrap();
        let first = cert.chain();
        made.pair("server", 2021, 2091);
        cert.reload().unwrap();
        let second = cert.chain();
        assert_ne!(first, second);
        std::fs::write(&files.key, "garbage").unwrap();
        assert!(cert.reload().is_err());
        assert_eq!(cert.chain(), second, "the old certificate stays");
        let _config = server_config(cert);
    }
}
