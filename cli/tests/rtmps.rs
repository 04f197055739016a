//! RTMPS through the binary as an operator runs it: a certificate that cannot be used stops
//! the start with exit status 1 and one message naming the file and the problem (missing,
//! expired, a key that is not the certificate's, a port without a certificate); and SIGHUP
//! swaps the certificate: a new connection is shown the new one while a player that connected
//! before keeps playing to the end, every frame. Without RTMPS, SIGHUP is harmless.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use common::{refused, LoggingServer};
use siprtmp_tests::probe::{assert_receives_everything, packets};
use siprtmp_tests::rtmps::{clip, presented_certificate, Ffmpeg, TestCa};
use siprtmp_tests::{media, scratch_dir};

/// The refusal's one line (status 1, nothing else on stderr).
fn one_line(code: i32, stderr: &str) -> String {
    assert_eq!(code, 1, "exit status; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.trim_end().to_owned()
}

fn tls_args<'a>(cert: &'a OsStr, key: &'a OsStr) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("--rtmps-port"),
        OsStr::new("0"),
        OsStr::new("--tls-cert"),
        cert,
        OsStr::new("--tls-key"),
        key,
    ]
}

fn refused_os(args: &[&OsStr]) -> (i32, String) {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().expect("UTF-8 path"))
        .collect();
    refused(&args, None)
}

#[test]
fn an_unusable_certificate_stops_the_start_with_one_message_naming_the_file() {
    let dir = scratch_dir("cli_rtmps_refusals");
    let ca = TestCa::new(&dir);
    let good = ca.server(&dir, "good", 2020, 2090);
    let expired = ca.server(&dir, "expired", 2001, 2002);
    let other = ca.server(&dir, "other", 2020, 2090);
    let missing = dir.join("missing.crt");

    let (code, stderr) = refused_os(&tls_args(missing.as_os_str(), good.files.key.as_os_str()));
    let line = one_line(code, &stderr);
    assert!(
        line.starts_with(&format!(
            "siprtmp: RTMPS: {}: cannot read it: ",
            missing.display()
        )),
        "{line}"
    );

    let (code, stderr) = refused_os(&tls_args(
        expired.files.cert.as_os_str(),
        expired.files.key.as_os_str(),
    ));
    assert_eq!(
        one_line(code, &stderr),
        format!(
            "siprtmp: RTMPS: {}: the certificate expired on 2002-01-01 00:00:00 UTC",
            expired.files.cert.display()
        )
    );

    let (code, stderr) = refused_os(&tls_args(
        good.files.cert.as_os_str(),
        other.files.key.as_os_str(),
    ));
    assert_eq!(
        one_line(code, &stderr),
        format!(
            "siprtmp: RTMPS: {}: this private key does not belong to the certificate in {}",
            other.files.key.display(),
            good.files.cert.display()
        )
    );

    let (code, stderr) = refused(&["--rtmps-port", "1936"], None);
    assert_eq!(
        one_line(code, &stderr),
        "siprtmp: --rtmps-port needs a certificate and its key: --tls-cert (config: tls_cert) \
         and --tls-key (config: tls_key)"
    );
}

/// A player connected over RTMPS before a SIGHUP keeps playing to the end; connections after
/// it are shown the new certificate.
#[test]
fn sighup_serves_the_new_certificate_to_new_connections_and_keeps_the_old_ones() {
    let dir = scratch_dir("cli_rtmps_sighup");
    let ca = TestCa::new(&dir);
    let first = ca.server(&dir, "server", 2020, 2090);
    let cert = first.files.cert.clone();
    let key = first.files.key.clone();
    let root = dir.join("media");
    let server = LoggingServer::start_with(&root, &tls_args(cert.as_os_str(), key.as_os_str()));
    let line = server.wait_line("RTMPS listening on ");
    let tls_addr: std::net::SocketAddr = line
        .split("RTMPS listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(presented_certificate(tls_addr), first.der);

    let source_path = clip(&media("h264_aac_320x240_12fps_20s.flv"), 8, &dir);
    let source = packets(&source_path);
    let url = format!("rtmps://{tls_addr}/live/reload");
    let out = dir.join("player.flv");
    let player = Ffmpeg::Nine.play(&url, &ca.pem, &out);
    server.wait_line("play started");
    let publisher = Ffmpeg::Debian.publish(&source_path, &url, &ca.pem);
    server.wait_line("publish started");

    // The new pair replaces the files (written under the same names), then the signal.
    let second = ca.server(&dir, "server", 2021, 2091);
    assert_ne!(second.der, first.der);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    server.wait_line("RTMPS certificate reloaded");
    assert_eq!(presented_certificate(tls_addr), second.der);

    publisher.finish(Duration::from_secs(40));
    player.finish(Duration::from_secs(20));
    assert_receives_everything("the player from before the reload", &source, &packets(&out));
}

/// Without RTMPS there is nothing to reload: SIGHUP is logged and the server serves on (the
/// example unit's `systemctl reload` sends it whatever the configuration).
#[test]
fn sighup_without_rtmps_does_not_stop_the_server() {
    let dir = scratch_dir("cli_rtmps_sighup_plain");
    let server = LoggingServer::start(&dir.join("media"));
    let addr = server.rtmp_addr();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    server.wait_line("SIGHUP: nothing to reload");
    // Still serving: a client connects and gets a stream (each step answered in time).
    let (_client, stream) =
        siprtmp_tests::tcp_client::TcpRtmpClient::with_stream(addr, "live", None);
    assert!(stream > 0);
}
