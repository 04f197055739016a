//! The gateway scenario's measurement point: a fresh `siprtmp` with its SIP-RTMP gateway on
//! loopback, a fresh sipp UAS that answers every call and echoes its RTP, N calls from the
//! load generator ([`CallLoad`]), a warm-up, the CPU window of the server (and of sipp and
//! the loader), then the echo check and the server's peak RSS.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::calls::{CallLoad, EchoSummary};
use crate::load::media::MediaLoop;
use crate::measure::Timing;
use crate::procstat;
use crate::server::{self, Binaries, ServerKind};

/// Codec tokens every call offers: Speex 16 kHz only.
pub const CODECS: [&str; 1] = ["wideband"];
/// Share of its window frames every call must get back.
pub const MIN_ECHO: f64 = 0.99;
/// The gateway's RTP ports (four per call), below the ephemeral range.
const RTP_PORTS: (u16, u16) = (26000, 29999);
/// Where sipp's media port is looked for (it needs two free ports: audio and video echo).
const SIPP_MEDIA_PORTS: std::ops::Range<u16> = 25000..25998;

/// What one gateway point measured.
#[derive(Debug, Clone)]
pub struct GatewayPoint {
    /// Number of concurrent calls.
    pub calls: usize,
    /// Server label (the runtime).
    pub server: String,
    /// Repeat index (0-based).
    pub repeat: usize,
    /// Server CPU in % of one core from utime+stime.
    pub server_cpu: f64,
    /// Server CPU in % of one core from schedstat on-CPU time.
    pub server_cpu_ns: f64,
    /// The far end's (sipp's) CPU in % of one core.
    pub sipp_cpu: f64,
    /// The load generator's own CPU in % of one core.
    pub loader_cpu: f64,
    /// Actual window length in seconds.
    pub window_secs: f64,
    /// Server peak RSS (VmHWM) at the end, KiB.
    pub peak_rss_kib: u64,
    /// Frames sent and echoed, per call.
    pub echo: EchoSummary,
}

/// sipp as the far end; killed when dropped.
struct Sipp {
    child: Child,
    port: u16,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port on 127.0.0.1 that is free now.
fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

/// An even port `p` with `p..p+4` free (sipp echoes audio on `p` and video on `p + 2`).
fn free_media_port() -> Result<u16, String> {
    SIPP_MEDIA_PORTS
        .step_by(4)
        .find(|&p| (p..p + 4).all(|q| UdpSocket::bind(("127.0.0.1", q)).is_ok()))
        .ok_or_else(|| "no free sipp media port in 25000-25999".into())
}

fn start_sipp(scenario: &Path) -> Result<Sipp, String> {
    let port = free_udp_port()?;
    let media = free_media_port()?;
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media.to_string()])
        .args(["-rtp_echo", "-nostdin"])
        // Its log files (if any) go to a scratch directory, not ours.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start sipp: {e}"))?;
    let mut sipp = Sipp { child, port };
    // Up once its SIP port is taken.
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if let Ok(Some(status)) = sipp.child.try_wait() {
            return Err(format!("sipp exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("sipp did not bind 127.0.0.1:{port} within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Once bound it still reads the scenario's rest; a moment more before the first INVITE.
    std::thread::sleep(Duration::from_millis(100));
    Ok(sipp)
}

/// Checks that sipp is installed (for the run's notes).
pub fn sipp_available() -> Result<(), String> {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| format!("sipp is not installed ({e}); `apt-get install sip-tester`"))
}

/// Runs one gateway point; `Err` if a process or the call setup failed (frames not echoed is
/// not an error here: it is in the result).
#[allow(clippy::too_many_arguments)]
pub fn run_point(
    kind: &ServerKind,
    bins: &Binaries,
    sipp_scenario: &Path,
    media: &Arc<MediaLoop>,
    calls: usize,
    repeat: usize,
    timing: Timing,
    clk_tck: u64,
) -> Result<GatewayPoint, String> {
    if calls * 4 > usize::from(RTP_PORTS.1 - RTP_PORTS.0 + 1) {
        return Err(format!(
            "{calls} calls need more RTP ports than {}-{}",
            RTP_PORTS.0, RTP_PORTS.1
        ));
    }
    let sipp = start_sipp(sipp_scenario)?;
    let extra: Vec<String> = [
        "--int-ip",
        "127.0.0.1",
        "--rtp-ports",
        &format!("{}-{}", RTP_PORTS.0, RTP_PORTS.1),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let srv = server::start_with(kind, bins, &extra)?;
    let pid = srv.pid();
    let sipp_pid = sipp.child.id().to_string();
    let dest = format!("sip:echo@127.0.0.1:{}", sipp.port);
    let mut load = CallLoad::start(
        srv.addr,
        &dest,
        &CODECS,
        media.clone(),
        calls,
        timing.setup_timeout,
    )?;
    let io = |e: std::io::Error| format!("load generator: {e}");
    load.run_until(Instant::now() + timing.warmup).map_err(io)?;

    let s0 = procstat::sample(&pid)?;
    let p0 = procstat::sample(&sipp_pid)?;
    let l0 = procstat::sample("self")?;
    let t0 = Instant::now();
    load.open_window();
    load.run_until(t0 + timing.window).map_err(io)?;
    load.close_window();
    let s1 = procstat::sample(&pid)?;
    let p1 = procstat::sample(&sipp_pid)?;
    let l1 = procstat::sample("self")?;
    let secs = t0.elapsed().as_secs_f64();

    let echo = load.drain(timing.drain_timeout).map_err(io)?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    srv.stop();
    drop(sipp);

    let pct_ticks = |a: u64, b: u64| (b - a) as f64 / clk_tck as f64 / secs * 100.0;
    let pct_ns = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9 / secs * 100.0;
    Ok(GatewayPoint {
        calls,
        server: kind.label(),
        repeat,
        server_cpu: pct_ticks(s0.ticks, s1.ticks),
        server_cpu_ns: pct_ns(s0.on_cpu_ns, s1.on_cpu_ns),
        sipp_cpu: pct_ticks(p0.ticks, p1.ticks),
        loader_cpu: pct_ticks(l0.ticks, l1.ticks),
        window_secs: secs,
        peak_rss_kib,
        echo,
    })
}
