//! RTMPS peers and certificates: a CA and server certificates made in the test (rcgen) and
//! written as PEM files, the two ffmpeg builds told to trust that CA (Debian's, built with
//! GnuTLS, and ffmpeg 9, built with OpenSSL, both verify it with `-tls_verify 1 -ca_file`),
//! and a TLS client that reports the certificate a server presents.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use siprtmp_core::tls::TlsConfig;
use siprtmp_runtime_drivers::{server_config, ReloadableCert, TlsFiles};

use crate::locate::ffmpeg9;
use crate::peers::Peer;

/// A test CA, kept to sign server certificates.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    /// The CA certificate as a PEM file (what clients are told to trust).
    pub pem: PathBuf,
}

/// A server certificate and key written as PEM files, with the DER the server presents.
pub struct ServerPair {
    /// The files the server loads.
    pub files: TlsFiles,
    /// The certificate (DER).
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A fresh CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "siprtmp test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Self { key, cert, pem }
    }

    /// A certificate for 127.0.0.1 (and localhost) named `name` in its subject, signed by this
    /// CA, valid from `from` to `until` (years, 1 January), written as `dir/NAME.crt` and
    /// `dir/NAME.key`.
    pub fn server(&self, dir: &Path, name: &str, from: i32, until: i32) -> ServerPair {
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        ServerPair {
            files,
            der: cert.der().clone(),
        }
    }
}

/// A CA in `dir` and a server certificate for 127.0.0.1 valid now; the CA's PEM file and the
/// node's TLS configuration serving the certificate.
pub fn test_tls(dir: &Path) -> (PathBuf, TlsConfig) {
    let ca = TestCa::new(dir);
    let pair = ca.server(dir, "server", 2020, 2090);
    let cert = ReloadableCert::load(pair.files).expect("load the test certificate");
    (ca.pem.clone(), server_config(cert))
}

/// Which ffmpeg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ffmpeg {
    /// Debian's ffmpeg 5.1 (GnuTLS).
    Debian,
    /// ffmpeg 9, imageio-ffmpeg's static build (OpenSSL).
    Nine,
}

impl Ffmpeg {
    /// Both builds.
    pub const BOTH: [Ffmpeg; 2] = [Ffmpeg::Debian, Ffmpeg::Nine];

    fn command(self) -> Command {
        match self {
            Ffmpeg::Debian => Command::new("ffmpeg"),
            Ffmpeg::Nine => Command::new(ffmpeg9()),
        }
    }

    /// A short name for messages and file names.
    pub fn name(self) -> &'static str {
        match self {
            Ffmpeg::Debian => "ffmpeg5",
            Ffmpeg::Nine => "ffmpeg9",
        }
    }

    /// The options that make this build verify the server against `ca` (protocol options,
    /// given before the URL they apply to).
    fn trust(self, ca: &Path) -> Vec<String> {
        vec![
            "-tls_verify".into(),
            "1".into(),
            "-ca_file".into(),
            ca.display().to_string(),
        ]
    }

    /// Publishes `file` in real time to `url`, trusting `ca`.
    pub fn publish(self, file: &Path, url: &str, ca: &Path) -> Peer {
        Peer::spawn_command(
            &format!("{} RTMPS publisher", self.name()),
            self.command()
                .args([
                    "-nostdin",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-re",
                    "-i",
                ])
                .arg(file)
                .args(["-map", "0", "-c", "copy"])
                .args(self.trust(ca))
                .args(["-f", "flv", url]),
        )
    }

    /// Plays `url` into `out` (stream-copied, timestamps kept), trusting `ca`.
    pub fn play(self, url: &str, ca: &Path, out: &Path) -> Peer {
        Peer::spawn_command(
            &format!("{} RTMPS player", self.name()),
            self.command()
                .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
                .args(self.trust(ca))
                .args(["-i", url, "-map", "0", "-c", "copy", "-copyts", "-f", "flv"])
                .arg(out),
        )
    }
}

/// `source` cut to its first `seconds` (stream copy) as `dir/clip.flv`: a short publish whose
/// every packet the players must receive.
pub fn clip(source: &Path, seconds: u32, dir: &Path) -> PathBuf {
    let out = dir.join("clip.flv");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(source)
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "cutting the clip");
    out
}

/// A TLS client that accepts any certificate and remembers the one it was shown.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Completes a TLS handshake with the server at `addr` and returns the certificate it
/// presented (its chain's first); panics if the handshake fails within 10 s.
pub fn presented_certificate(addr: SocketAddr) -> CertificateDer<'static> {
    let provider = siprtmp_runtime_drivers::crypto_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let mut socket = TcpStream::connect(addr).expect("connect to the RTMPS port");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut socket).expect("TLS handshake");
    }
    let chain = conn.peer_certificates().expect("a certificate").to_vec();
    // Leave politely (the socket closes as it drops).
    conn.send_close_notify();
    let _ = conn.write_tls(&mut socket);
    let _ = socket.flush();
    chain[0].clone().into_owned()
}
