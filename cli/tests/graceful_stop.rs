//! SIGTERM to the binary with a registered gateway client, on every runtime: the client's
//! address of record is unregistered at the registrar (a REGISTER with Expires: 0) before
//! the process exits, the RTMP client is told the connection closed, and the process exits
//! as soon as the registrar has answered; with a registrar that never answers the
//! un-REGISTER, it exits once `--shutdown-grace` is over, not before and not much after.
//!
//! The registrar is a UDP socket of the test's that answers REGISTERs with 200 OK.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{sigterm, siprtmp, wait_exit, ChildLog};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_tests::gateway::{s, Phone};
use siprtmp_tests::ports::{free_udp_range, LOOPBACK};

/// The gateway's shutdown grace in these tests.
const GRACE: Duration = Duration::from_secs(3);

/// A registrar that answers every REGISTER with 200 OK, un-REGISTERs (Expires: 0) too when
/// told to; every REGISTER it got goes to `seen`.
struct Registrar {
    addr: SocketAddr,
    seen: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Registrar {
    fn start(answer_unregister: bool) -> Self {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, seen) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stopped.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !request.starts_with("REGISTER ") {
                    continue;
                }
                let unregister = header(&request, "Expires").as_deref() == Some("0");
                let _ = tx.send(request.clone());
                if !unregister || answer_unregister {
                    let _ = socket.send_to(ok(&request).as_bytes(), from);
                }
            }
        });
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The next REGISTER within `within`.
    fn next(&self, within: Duration) -> Option<String> {
        self.seen.recv_timeout(within).ok()
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The value of the first header `name` of a SIP message (case-insensitive name).
fn header(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// 200 OK to `request` (its Via, From, To with a tag, Call-ID, CSeq; the Contact with the
/// lifetime asked for).
fn ok(request: &str) -> String {
    let mut response = String::from("SIP/2.0 200 OK\r\n");
    for line in request.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:") || lower.starts_with("from:") || lower.starts_with("call-id:")
        {
            response.push_str(line);
            response.push_str("\r\n");
        }
    }
    let to = header(request, "To").unwrap_or_default();
    let expires = header(request, "Expires").unwrap_or_else(|| "300".into());
    response.push_str(&format!("To: {to};tag=reg\r\n"));
    response.push_str(&format!(
        "CSeq: {}\r\n",
        header(request, "CSeq").unwrap_or_default()
    ));
    if let Some(contact) = header(request, "Contact") {
        response.push_str(&format!("Contact: {contact};expires={expires}\r\n"));
    }
    response.push_str("Content-Length: 0\r\n\r\n");
    response
}

/// The binary on `runtime` with its gateway registering at `registrar`, logging at info.
fn gateway(runtime: &str, registrar: SocketAddr) -> (Child, ChildLog, SocketAddr) {
    let (lo, hi) = free_udp_range(LOOPBACK, 8);
    let mut child = siprtmp()
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "--gateway",
            "--int-ip",
            "127.0.0.1",
        ])
        .args(["--runtime", runtime])
        .args(["--registrar", &registrar.to_string()])
        .args(["--rtp-ports", &format!("{lo}-{hi}")])
        .args(["--shutdown-grace", &GRACE.as_secs().to_string()])
        .arg("-r")
        .arg(siprtmp_tests::scratch_dir(&format!(
            "graceful_stop_{runtime}"
        )))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siprtmp");
    let mut log = ChildLog::of(&mut child);
    let marker = "RTMP listening on ";
    let line = log.line(marker);
    let addr = line
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, log, addr)
}

/// Alice connects with credentials: registered (the registrar saw her REGISTER).
fn registered_alice(addr: SocketAddr, registrar: &Registrar) -> Phone {
    let args = vec![s("alice"), s("secret"), s("alice")];
    let phone = Phone::connect(addr, "alice@127.0.0.1", args).expect("alice registered");
    let register = registrar.next(Duration::from_secs(5)).expect("a REGISTER");
    assert_ne!(header(&register, "Expires").as_deref(), Some("0"));
    phone
}

#[test]
fn sigterm_unregisters_the_clients_then_exits_on_every_runtime() {
    for runtime in ["mio", "tokio", "threads", "async-std", "io-uring"] {
        let registrar = Registrar::start(true);
        let (child, _log, addr) = gateway(runtime, registrar.addr);
        let mut alice = registered_alice(addr, &registrar);

        let start = Instant::now();
        sigterm(&child);
        let unregister = registrar
            .next(GRACE)
            .unwrap_or_else(|| panic!("{runtime}: no un-REGISTER"));
        assert_eq!(
            header(&unregister, "Expires").as_deref(),
            Some("0"),
            "{runtime}: {unregister}"
        );
        assert!(
            alice
                .wait(GRACE, |e| matches!(
                    e,
                    ClientEvent::Status(0, code) if code == "NetConnection.Connect.Closed"
                ))
                .is_some(),
            "{runtime}: the RTMP client was told the connection closed"
        );
        let output = wait_exit(child, GRACE + Duration::from_secs(5), runtime);
        let took = start.elapsed();
        assert!(output.status.success(), "{runtime}: {:?}", output.status);
        assert!(
            took < GRACE,
            "{runtime}: the answer ended the wait, not the grace ({took:?})"
        );
    }
}

#[test]
fn without_an_answer_the_grace_bounds_the_stop() {
    let registrar = Registrar::start(false);
    let (child, _log, addr) = gateway("mio", registrar.addr);
    let _alice = registered_alice(addr, &registrar);

    let start = Instant::now();
    sigterm(&child);
    let unregister = registrar.next(GRACE).expect("an un-REGISTER");
    assert_eq!(header(&unregister, "Expires").as_deref(), Some("0"));
    let output = wait_exit(child, GRACE + Duration::from_secs(5), "mio");
    let took = start.elapsed();
    assert!(output.status.success(), "{:?}", output.status);
    assert!(
        took >= GRACE && took < GRACE + Duration::from_secs(2),
        "the stop waited the grace out, and no longer: {took:?}"
    );
}
