//! The gateway's kernel floor: what the same traffic costs a server that does nothing but
//! the gateway's system calls. `--gateway --runtimes floor,floor-merged` measures it beside
//! siprtmp, in the same run, against the same sipp echo, so a gateway figure reads as a
//! distance from what the kernel takes on this machine.
//!
//! The floor server ([`server`], a hidden mode of this binary: a separate process, measured
//! as the gateway is) takes one TCP connection per call from its clients ([`load`]), which
//! send each Speex frame of the codec file as a record (two length bytes, then the FLV audio
//! body, the size of the RTMP message the gateway's clients send) in real time; it sends each
//! record's payload as RTP to sipp from one UDP socket with `sendmmsg`, drains the echo with
//! `recvmmsg`, hands each datagram to its client by SSRC and writes it back as a record, per
//! wake-up or merged (`floor-merged`: each client's oldest record waits at most 100 ms, as
//! `--merge-writes 100`). That is the I/O of `mio-shared` and `mio-merged-shared`.
//!
//! What it leaves out is everything that is protocol or bookkeeping: the RTMP handshake and
//! chunk stream, AMF, SIP and SDP (calls set up and kept up), RTCP, the translation between
//! RTMP and RTP, timers and per-call state machines. Its CPU per call is therefore the cost of
//! the system calls and of the kernel work they do on loopback (both ends' TCP and UDP
//! processing, waking the peers), which no user-space design with this I/O removes.

pub(crate) mod load;
pub(crate) mod server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::gateway::{self, GatewayPoint, PointSpec};
use crate::procstat;
use crate::server::{strip_tick, GSO_SUFFIX, MERGED_SUFFIX, MERGED_WINDOW_MS, TICK_SUFFIX};

/// Bytes before each record's payload: its length, big-endian.
pub(crate) const RECORD_HEADER: usize = 2;
/// Bytes of the RTP header the floor puts before a payload (no CSRC, no extension).
pub(crate) const RTP_HEADER: usize = 12;
/// The server name of the floor.
pub(crate) const FLOOR: &str = "floor";

/// A floor to measure: `floor` (written per wake-up) or `floor-merged[N]` (N ms, default
/// 100, as siprtmp's `-merged` servers), either with `-gso` (UDP GSO sends) and then
/// `-tickM` (polls at most every M ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FloorKind {
    /// The merge window, when merged.
    pub merge_ms: Option<u64>,
    /// The poll interval, when ticking.
    pub tick_ms: Option<u64>,
    /// Whether datagrams of equal length leave as UDP GSO messages (`-gso`).
    pub gso: bool,
}

impl FloorKind {
    /// From a `--runtimes` name; `None` when the name is not a floor's.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(FLOOR)?;
        let (rest, tick_ms) = strip_tick(rest)?;
        let (rest, gso) = match rest.strip_suffix(GSO_SUFFIX) {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        if rest.is_empty() {
            return Some(Self {
                merge_ms: None,
                tick_ms,
                gso,
            });
        }
        let window = rest.strip_prefix(MERGED_SUFFIX)?;
        let merge_ms = match window {
            "" => MERGED_WINDOW_MS,
            digits => digits.parse().ok()?,
        };
        Some(Self {
            merge_ms: Some(merge_ms),
            tick_ms,
            gso,
        })
    }

    /// The name in tables and plots.
    pub(crate) fn label(self) -> String {
        let merged = match self.merge_ms {
            None => String::new(),
            Some(MERGED_WINDOW_MS) => MERGED_SUFFIX.into(),
            Some(ms) => format!("{MERGED_SUFFIX}{ms}"),
        };
        let tick = self
            .tick_ms
            .map(|ms| format!("{TICK_SUFFIX}{ms}"))
            .unwrap_or_default();
        let gso = if self.gso { GSO_SUFFIX } else { "" };
        format!("{FLOOR}{merged}{gso}{tick}")
    }
}

/// The floor server process; killed when dropped.
struct FloorProcess {
    child: Child,
    port: u16,
}

impl Drop for FloorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary as a floor server sending to `far_end` (its hidden `--floor-server`
/// mode) and reads the port it listens on.
fn start_server(kind: FloorKind, far_end: std::net::SocketAddr) -> Result<FloorProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let mut command = Command::new(exe);
    command.arg("--floor-server").arg(far_end.to_string());
    if let Some(ms) = kind.merge_ms {
        command.arg("--floor-merge-ms").arg(ms.to_string());
    }
    if let Some(ms) = kind.tick_ms {
        command.arg("--floor-tick-ms").arg(ms.to_string());
    }
    if kind.gso {
        command.arg("--floor-gso");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the floor server: {e}"))?;
    let stdout = child.stdout.take().ok_or("floor server: no stdout")?;
    let mut process = FloorProcess { child, port: 0 };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("floor server: {e}"))?;
    process.port = line
        .strip_prefix("LISTEN ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("floor server said {line:?}, not `LISTEN <port>`"))?;
    Ok(process)
}

/// Runs one floor point: sipp echoing, the floor server, `calls` clients sending `media`.
pub(crate) fn run_point(kind: FloorKind, spec: &PointSpec<'_>) -> Result<GatewayPoint, String> {
    let &PointSpec {
        sipp_scenario,
        codec,
        media,
        calls,
        repeat,
        timing,
        clk_tck,
        count_syscalls,
    } = spec;
    let sipp = gateway::start_sipp(sipp_scenario)?;
    let far_end = ([127, 0, 0, 1], sipp.media_port).into();
    let srv = start_server(kind, far_end)?;
    let pid = srv.child.id().to_string();
    let addr = ([127, 0, 0, 1], srv.port).into();
    let mut load = load::FloorLoad::start(addr, media.clone(), codec.seq_plan(), calls)?;
    let window = gateway::measure_window(
        &mut load,
        &pid,
        &sipp.pid(),
        timing,
        clk_tck,
        count_syscalls,
    )?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    drop(srv);
    drop(sipp);
    Ok(window.point(codec, calls, kind.label(), repeat, peak_rss_kib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_names_parse_and_print_back() {
        for (name, merge_ms, tick_ms) in [
            ("floor", None, None),
            ("floor-merged", Some(100), None),
            ("floor-merged20", Some(20), None),
            ("floor-tick10", None, Some(10)),
            ("floor-merged-tick20", Some(100), Some(20)),
            ("floor-merged-gso-tick20", Some(100), Some(20)),
            ("floor-gso", None, None),
        ] {
            let kind = FloorKind::parse(name).unwrap();
            assert_eq!((kind.merge_ms, kind.tick_ms), (merge_ms, tick_ms), "{name}");
            assert_eq!(kind.gso, name.contains("-gso"), "{name}");
            assert_eq!(kind.label(), name);
        }
        for name in [
            "mio",
            "floorx",
            "floor-merged-x",
            "mio-merged",
            "floor-tick",
            "floor-tickx",
            "floor-tick20-gso",
        ] {
            assert_eq!(FloorKind::parse(name), None, "{name}");
        }
    }
}
