//! sipp (Debian `sip-tester`) as a far end: started with a global timeout that counts as an
//! error and its statistics file, killed on drop (it is a [`Peer`]), scenarios from the
//! repository's `tests/sipp/`.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::peers::Peer;

/// A free UDP port on loopback (bound and released; sipp binds it right after).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Owned command-line arguments from string slices.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// The scenario file `name` from `tests/sipp/` (see [`crate::locate::sipp_scenario`]).
pub use crate::locate::sipp_scenario as scenario;

/// Starts sipp on loopback in `dir` (its logs and `stats.csv` go there) with `args` after the
/// common ones (`-nostdin`, addresses, a 60 s global timeout that fails it, statistics).
/// When `port` is given (its `-p`), waits up to 5 s until sipp has bound it.
pub fn start(name: &str, dir: &Path, port: Option<u16>, args: &[String]) -> Peer {
    start_on(name, dir, port, args, false)
}

/// [`start`] with SIP over TCP (`-t t1`: one connection per peer, reused both ways); with
/// `port`, waits until sipp listens on that TCP port.
pub fn start_tcp(name: &str, dir: &Path, port: Option<u16>, args: &[String]) -> Peer {
    start_on(name, dir, port, args, true)
}

/// sipp answering `calls` calls on SIP port `port` with the first codec offered and echoing
/// every RTP packet back from `media_port` (`uas_echo_any.xml -rtp_echo`), over `transport`.
pub fn echo_uas(
    name: &str,
    dir: &Path,
    port: u16,
    media_port: u16,
    calls: u32,
    transport: siprtmp_core::sip::Transport,
) -> Peer {
    let args = args(&[
        "-sf",
        &scenario("uas_echo_any.xml").display().to_string(),
        "-p",
        &port.to_string(),
        "-mp",
        &media_port.to_string(),
        "-rtp_echo",
        "-m",
        &calls.to_string(),
    ]);
    start_on(
        name,
        dir,
        Some(port),
        &args,
        transport == siprtmp_core::sip::Transport::Tcp,
    )
}

/// sipp's log of unexpected messages and aborted calls (`-trace_err`), in its directory.
const ERROR_LOG: &str = "errors.log";
/// Every SIP message sipp sent and received (`-trace_msg`), in its directory.
const MESSAGE_LOG: &str = "messages.log";

/// The log of every SIP message that the sipp started in `dir` sent and received.
pub fn message_log(dir: &Path) -> PathBuf {
    dir.join(MESSAGE_LOG)
}

fn start_on(name: &str, dir: &Path, port: Option<u16>, args: &[String], tcp: bool) -> Peer {
    let transport: &[&str] = if tcp { &["-t", "t1"] } else { &[] };
    let peer = Peer::spawn_command(
        name,
        Command::new("sipp")
            .current_dir(dir)
            .args(["-nostdin", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-timeout", "60s", "-timeout_error"])
            .args(["-trace_stat", "-stf", "stats.csv", "-fd", "1"])
            .args([
                "-trace_err",
                "-error_file",
                ERROR_LOG,
                "-trace_msg",
                "-message_file",
                MESSAGE_LOG,
            ])
            .args(transport)
            .args(args),
    )
    .with_log_on_failure(dir.join(ERROR_LOG));
    if let Some(port) = port {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Bound by sipp once our own bind fails (a listening TCP port cannot be bound even
        // with SO_REUSEADDR, which std sets).
        let free = || match tcp {
            true => TcpListener::bind(("127.0.0.1", port)).is_ok(),
            false => UdpSocket::bind(("127.0.0.1", port)).is_ok(),
        };
        while free() {
            assert!(Instant::now() < deadline, "{name} did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    peer
}

/// (successful, failed) calls from the last line of sipp's statistics file in `dir`.
pub fn totals(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("stats.csv")).expect("sipp stats file");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stats header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("stats line").split(';').collect();
    let column = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"));
        last[i].trim().parse().unwrap()
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}
