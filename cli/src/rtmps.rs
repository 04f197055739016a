//! RTMPS: the TLS listener's settings (`rtmps_port`, `tls_cert`, `tls_key` and their flags),
//! the certificate checked before anything starts (a missing file, an expired certificate, a
//! key that is not the certificate's: one message naming the file), and its reload on SIGHUP
//! (new handshakes get the new certificate, connections keep theirs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use siprtmp_core::tls::TlsConfig;
use siprtmp_runtime_drivers::{server_config, ReloadableCert, TlsFiles};

use crate::config::FileConfig;
use crate::diagnostics::{pick, ConfigError, Origin};
use crate::flags::Flags;

/// The RTMPS listener, ready to start.
pub(crate) struct Rtmps {
    /// Where it listens (the RTMP host, the RTMPS port).
    pub listen: SocketAddr,
    /// The certificate, for the reload.
    pub cert: Arc<ReloadableCert>,
    /// The node's TLS configuration around it.
    pub config: TlsConfig,
}

/// The RTMPS settings of `flags` and `file`, the certificate loaded and checked; `None`
/// without `rtmps_port`.
pub(crate) fn setup(
    flags: &Flags,
    file: &FileConfig,
    host: IpAddr,
) -> Result<Option<Rtmps>, ConfigError> {
    let port = pick(
        flags.rtmps_port,
        "--rtmps-port",
        file.rtmps_port,
        "rtmps_port",
    );
    let cert = pick(
        flags.tls_cert.clone(),
        "--tls-cert",
        file.tls_cert.clone(),
        "tls_cert",
    );
    let key = pick(
        flags.tls_key.clone(),
        "--tls-key",
        file.tls_key.clone(),
        "tls_key",
    );
    let Some((port, port_origin)) = port else {
        if let Some((_, origin)) = cert.as_ref().or(key.as_ref()) {
            return Err(ConfigError::Combination(format!(
                "{} without {}: nothing listens for RTMPS; add it, or drop the certificate",
                origin_name(origin),
                both("--rtmps-port", "rtmps_port")
            )));
        }
        return Ok(None);
    };
    let (Some((cert, _)), Some((key, _))) = (cert, key) else {
        return Err(ConfigError::Combination(format!(
            "{} needs a certificate and its key: {} and {}",
            origin_name(&port_origin),
            both("--tls-cert", "tls_cert"),
            both("--tls-key", "tls_key")
        )));
    };
    let rtmp_port = flags.port.or(file.port).unwrap_or(1935);
    if port != 0 && port == rtmp_port {
        return Err(ConfigError::value(
            port_origin,
            port,
            "is the RTMP port too; RTMPS needs a port of its own (443 is usual)",
        ));
    }
    let files = TlsFiles { cert, key };
    let cert =
        ReloadableCert::load(files).map_err(|e| ConfigError::Combination(format!("RTMPS: {e}")))?;
    let config = server_config(cert.clone());
    Ok(Some(Rtmps {
        listen: SocketAddr::new(host, port),
        cert,
        config,
    }))
}

fn origin_name(origin: &Origin) -> String {
    match origin {
        Origin::Flag { flag, .. } => (*flag).to_owned(),
        Origin::Key { key, .. } => key.to_string(),
    }
}

fn both(flag: &str, key: &str) -> String {
    format!("{flag} (config: {key})")
}

/// Handles SIGHUP from a thread of its own: the RTMPS certificate, if there is one, is read
/// again (a reload that fails, a file being rewritten or a bad pair, keeps the certificate in
/// use and says why); without one there is nothing to reload, which the log says. Either way
/// the signal no longer ends the process (its default), so `systemctl reload` is safe.
pub(crate) fn reload_on_sighup(cert: Option<Arc<ReloadableCert>>) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("SIGHUP handler: {e}"))?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                let Some(cert) = &cert else {
                    tracing::info!("SIGHUP: nothing to reload (no RTMPS certificate)");
                    continue;
                };
                match cert.reload() {
                    Ok(()) => tracing::info!(
                        "SIGHUP: RTMPS certificate reloaded from {} (new connections get it)",
                        cert.files().cert.display()
                    ),
                    Err(e) => tracing::warn!(
                        "SIGHUP: RTMPS certificate not reloaded, the one in use stays: {e}"
                    ),
                }
            }
        })
        .map_err(|e| format!("SIGHUP thread: {e}"))?;
    Ok(())
}

/// The certificate file, for the log.
pub(crate) fn cert_path(rtmps: &Rtmps) -> PathBuf {
    rtmps.cert.files().cert.clone()
}
