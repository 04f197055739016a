//! The gateway's SRTP echo far end (`--gateway --srtp`): what sipp is to the plain points,
//! for calls whose media is SRTP, which sipp cannot do. It answers each INVITE as the sipp
//! scenario does (the first audio codec offered), with RTP/SAVP and a key of its own when
//! the offer has `a=crypto` ([`answer`]), and sends every packet back to the gateway, under
//! its own key when SRTP ([`echo`]). The same far end answers plain offers with plain RTP, so
//! a run's plain and SRTP series differ in SRTP only.
//!
//! It is this binary started in a hidden mode (`--echo-server`, [`server`]): a process of its
//! own, so its CPU is measured apart from the server's (in the far end's column, where sipp's
//! is otherwise) and is not the loader's either.

pub(crate) mod answer;
pub(crate) mod echo;
pub(crate) mod server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::gateway::{self, GatewayPoint, PointSpec};
use crate::server::{Binaries, ServerKind};

/// What the series of an SRTP server is called: its runtime's label and this.
pub(crate) const SRTP_SUFFIX: &str = "-srtp";

/// The siprtmp options of an SRTP point: SRTP required, and keys sent over plain SIP (the
/// gateway otherwise refuses SDES keys outside SIPS/TLS; on loopback that is what we want).
pub(crate) const SRTP_ARGS: [&str; 3] = ["--srtp", "require", "--srtp-over-plain-sip"];

/// The echo far end's process; killed when dropped.
pub(crate) struct EchoProcess {
    child: Child,
    /// Its SIP port on 127.0.0.1.
    pub port: u16,
}

impl EchoProcess {
    /// The PID to measure.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary as the echo far end (`--echo-server`) and reads its SIP port.
pub(crate) fn start() -> Result<EchoProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--echo-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the echo far end: {e}"))?;
    let stdout = child.stdout.take().ok_or("echo far end: no stdout")?;
    let mut process = EchoProcess { child, port: 0 };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("echo far end: {e}"))?;
    process.port = line
        .strip_prefix("LISTEN ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("echo far end said {line:?}, not `LISTEN <port>`"))?;
    Ok(process)
}

/// Runs one gateway point of siprtmp `kind` against the echo far end: with SRTP required
/// (series `<label>-srtp`) when `srtp`, else plain (series `<label>`).
pub(crate) fn run_point(
    kind: &ServerKind,
    bins: &Binaries,
    spec: &PointSpec<'_>,
    srtp: bool,
) -> Result<GatewayPoint, String> {
    let far = start()?;
    let (label, args): (String, &[&str]) = if srtp {
        (format!("{}{SRTP_SUFFIX}", kind.label()), &SRTP_ARGS)
    } else {
        (kind.label(), &[])
    };
    let point = gateway::run_against(kind, bins, spec, far.port, &far.pid(), args, label);
    drop(far);
    point
}
