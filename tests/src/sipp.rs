//! sipp (Debian `sip-tester`) as a far end: a [`Sipp`] says which scenario from the
//! repository's `tests/sipp/` it plays, over which transport and with which options, and starts
//! it on free ports of its own; the [`SippPeer`] it gives runs with a global timeout that counts
//! as an error, writes its statistics file and logs in the test's directory, and is killed on
//! drop (it is a [`Peer`]).

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use siprtmp_core::sip::Transport;

use crate::peers::Peer;
use crate::ports::{free_tcp_port, free_udp_block, free_udp_port, LOOPBACK};

/// The scenario file `name` from `tests/sipp/` (see [`crate::locate::sipp_scenario`]).
pub use crate::locate::sipp_scenario as scenario;

/// sipp's log of unexpected messages and aborted calls (`-trace_err`), in its directory.
const ERROR_LOG: &str = "errors.log";
/// Every SIP message sipp sent and received (`-trace_msg`), in its directory.
const MESSAGE_LOG: &str = "messages.log";
/// Its statistics (`-trace_stat`), read by [`totals`].
const STATS: &str = "stats.csv";

/// How long [`Sipp::start`] waits for a UAS to bind its SIP port.
const BIND_WITHIN: Duration = Duration::from_secs(5);

/// One sipp run being set up: a scenario, as UAS (it waits for calls on a free port) or as UAC
/// (it calls a target), and its options. Each option is a builder method; [`Sipp::start`]
/// starts it.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    /// The target and the user to call there (`-s`), for a UAC.
    target: Option<(SocketAddr, Option<String>)>,
    transport: Transport,
    ip: IpAddr,
    rtp_echo: bool,
    /// `-d`: the scenario's pauses, in ms.
    pause_ms: Option<u32>,
    /// `-key NAME VALUE`: values the scenario refers to by name.
    keys: Vec<(String, String)>,
    /// `-m`: sipp exits after this many calls.
    calls: u32,
    /// Further options, after all the others.
    extra: Vec<String>,
}

impl Sipp {
    /// sipp as UAS playing `scenario` (a file of `tests/sipp/`): it waits for calls on a free
    /// SIP port of its own, which [`Sipp::start`] waits for it to bind.
    pub fn uas(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            target: None,
            transport: Transport::Udp,
            ip: LOOPBACK,
            rtp_echo: false,
            pause_ms: None,
            keys: Vec::new(),
            calls: 1,
            extra: Vec::new(),
        }
    }

    /// sipp as UAS answering `calls` calls with the first codec offered and echoing every RTP
    /// packet back (`uas_echo_any.xml -rtp_echo`).
    pub fn echo_uas(calls: u32) -> Self {
        Self::uas("uas_echo_any.xml").rtp_echo().calls(calls)
    }

    /// sipp as UAC playing `scenario`: it calls `target`, as sipp's default user `service`
    /// unless [`Sipp::user`] names another.
    pub fn uac(scenario: &str, target: SocketAddr) -> Self {
        Self {
            target: Some((target, None)),
            ..Self::uas(scenario)
        }
    }

    /// The user a UAC calls (`-s`): a gateway client's AOR user.
    pub fn user(mut self, user: &str) -> Self {
        if let Some((_, who)) = self.target.as_mut() {
            *who = Some(user.to_owned());
        }
        self
    }

    /// SIP over `transport` (`-t t1` for TCP: one connection per peer, reused both ways; RTP
    /// stays UDP).
    pub fn over(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// SIP and media on `ip` instead of 127.0.0.1.
    pub fn on(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Every RTP packet arriving on sipp's media ports goes back to its sender (`-rtp_echo`).
    pub fn rtp_echo(mut self) -> Self {
        self.rtp_echo = true;
        self
    }

    /// The scenario's pauses last `ms` (`-d`).
    pub fn pause_ms(mut self, ms: u32) -> Self {
        self.pause_ms = Some(ms);
        self
    }

    /// The scenario's `[name]` is `value` (`-key`).
    pub fn key(mut self, name: &str, value: impl ToString) -> Self {
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }

    /// sipp exits after `calls` calls (`-m`; 1 unless set).
    pub fn calls(mut self, calls: u32) -> Self {
        self.calls = calls;
        self
    }

    /// Further command-line options (`-r 20`...), after all the others.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts sipp, named `name` in failures, in `dir` (its logs and statistics go there), on a
    /// free SIP port and a block of four free media ports of its own (`-mp`: sipp binds audio
    /// there and video two above; it binds them even when it does not echo, 6000 and 6002
    /// unless told); a UAS is listening once this returns.
    ///
    /// The ports are found free, released, then bound by sipp: another program can take one in
    /// between, and sipp then exits ("Unable to bind audio RTP socket"). A UAS that exits
    /// before it listens is started again on other ports, up to [`START_ATTEMPTS`] times.
    pub fn start(self, name: &str, dir: &Path) -> SippPeer {
        let tcp = self.transport == Transport::Tcp;
        let mut attempt = 1;
        loop {
            let port = if tcp {
                free_tcp_port(self.ip)
            } else {
                free_udp_port(self.ip)
            };
            let media_port = free_udp_block(self.ip, 4);
            let mut peer = self.spawn(name, dir, port, media_port);
            let sip = SocketAddr::new(self.ip, port);
            if self.target.is_none() && !wait_bound(name, sip, tcp, &mut peer) {
                if attempt == START_ATTEMPTS {
                    // Panics with sipp's stderr and the end of its error log.
                    peer.finish(Duration::ZERO);
                    panic!("{name} exited before it bound {sip}, {START_ATTEMPTS} times");
                }
                attempt += 1;
                continue;
            }
            return SippPeer {
                peer,
                sip,
                media_port,
            };
        }
    }

    /// Spawns sipp on SIP port `port` and media ports from `media_port`.
    fn spawn(&self, name: &str, dir: &Path, port: u16, media_port: u16) -> Peer {
        let tcp = self.transport == Transport::Tcp;
        let mut command = Command::new("sipp");
        command.current_dir(dir);
        if let Some((target, user)) = &self.target {
            command.arg(target.to_string());
            if let Some(user) = user {
                command.args(["-s", user]);
            }
        }
        let ip = self.ip.to_string();
        command
            .args(["-nostdin", "-i", &ip, "-mi", &ip])
            .arg("-sf")
            .arg(scenario(&self.scenario))
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", "60s", "-timeout_error"])
            .args(["-trace_stat", "-stf", STATS, "-fd", "1"])
            .args(["-trace_err", "-error_file", ERROR_LOG])
            .args(["-trace_msg", "-message_file", MESSAGE_LOG]);
        if tcp {
            command.args(["-t", "t1"]);
        }
        if self.rtp_echo {
            command.arg("-rtp_echo");
        }
        if let Some(ms) = self.pause_ms {
            command.args(["-d", &ms.to_string()]);
        }
        for (name, value) in &self.keys {
            command.args(["-key", name, value]);
        }
        command.args(&self.extra);
        Peer::spawn_command(name, &mut command).with_log_on_failure(dir.join(ERROR_LOG))
    }
}

/// Times a UAS is started on fresh ports when it exits before it listens.
const START_ATTEMPTS: u32 = 3;

/// Waits until `peer` (sipp) has bound `addr`: until our own bind there fails (a listening TCP
/// port cannot be bound even with SO_REUSEADDR, which std sets). False if the peer exited
/// first.
fn wait_bound(name: &str, addr: SocketAddr, tcp: bool, peer: &mut Peer) -> bool {
    let deadline = Instant::now() + BIND_WITHIN;
    let free = || match tcp {
        true => TcpListener::bind(addr).is_ok(),
        false => UdpSocket::bind(addr).is_ok(),
    };
    while free() {
        if peer.wait(Duration::ZERO).is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "{name} did not bind {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A running sipp (see [`Sipp::start`]).
pub struct SippPeer {
    peer: Peer,
    /// Its SIP address (`-i`, `-p`).
    pub sip: SocketAddr,
    /// Its first media port (`-mp`).
    pub media_port: u16,
}

impl SippPeer {
    /// The SIP URI of `user` at this sipp (`sip:user@host:port`, `[v6]:port` for IPv6).
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip)
    }

    /// Waits up to `timeout` for sipp to exit; its stderr, or a panic quoting its error log if
    /// it failed (a call failed, or its global timeout passed) or hung.
    pub fn finish(self, timeout: Duration) -> String {
        self.peer.finish(timeout)
    }
}

/// The log of every SIP message that the sipp started in `dir` sent and received.
pub fn message_log(dir: &Path) -> PathBuf {
    dir.join(MESSAGE_LOG)
}

/// (successful, failed) calls from the last line of sipp's statistics file in `dir`.
pub fn totals(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join(STATS)).expect("sipp stats file");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_bind_ends_when_the_peer_exits_first() {
        // A peer that exits at once ("false"), and a port nobody binds.
        let mut peer = Peer::spawn_command("false", &mut Command::new("false"));
        let addr = SocketAddr::new(LOOPBACK, free_udp_port(LOOPBACK));
        let started = Instant::now();
        assert!(!wait_bound("false", addr, false, &mut peer));
        assert!(
            started.elapsed() < BIND_WITHIN,
            "did not wait out the deadline"
        );
    }
}
