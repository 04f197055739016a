//! The gateway scenario's measurement point: a fresh `siprtmp` with its SIP-RTMP gateway on
//! loopback, a fresh sipp UAS that answers every call and echoes its RTP (with the client's
//! codec, or only the G.711 or Speex the gateway then transcodes to), N calls from the load
//! generator ([`CallLoad`]) in one codec ([`GatewayCodec`]), a warm-up, the CPU window of the
//! server (and of sipp and the loader), then the echo check and the server's peak RSS.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use crate::gateway_codec::GatewayCodec;
use crate::load::calls::{CallLoad, EchoSummary};
use crate::load::echo_load::EchoLoad;
use crate::load::media::MediaLoop;
use crate::measure::Timing;
use crate::procstat;
use crate::server::{self, Binaries, ServerKind};
use crate::syscalls::SyscallCounter;

/// Share of its window frames every call must get back.
pub(crate) const MIN_ECHO: f64 = 0.99;
/// The gateway's RTP ports (four per call), below the ephemeral range.
pub(crate) const RTP_PORTS: (u16, u16) = (26000, 29999);
/// Where sipp's media port is looked for (it needs two free ports: audio and video echo).
const SIPP_MEDIA_PORTS: std::ops::Range<u16> = 25000..25998;

/// What one gateway point measured.
#[derive(Debug, Clone)]
pub(crate) struct GatewayPoint {
    /// What the calls spoke.
    pub codec: GatewayCodec,
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
    /// The kernel's part of `server_cpu` (stime), in % of one core.
    pub server_sys_cpu: f64,
    /// The server's system calls per second over the window (`--syscalls`), all threads.
    pub server_syscalls_per_sec: Option<f64>,
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

impl GatewayPoint {
    /// The curve the point belongs to: runtime and codec.
    pub(crate) fn series(&self) -> String {
        format!("{}, {}", self.server, self.codec.label())
    }
}

/// sipp as the far end; killed when dropped.
pub(crate) struct Sipp {
    child: Child,
    /// Its SIP port on 127.0.0.1.
    port: u16,
    /// Its RTP echo port on 127.0.0.1.
    pub media_port: u16,
}

impl Sipp {
    /// Its SIP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The PID to measure.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }
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

/// Starts sipp with `scenario` on free ports of 127.0.0.1, echoing RTP (`-rtp_echo`: whatever
/// arrives on its media port goes back to its source, call or no call).
pub(crate) fn start_sipp(scenario: &Path) -> Result<Sipp, String> {
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
    let mut sipp = Sipp {
        child,
        port,
        media_port: media,
    };
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

/// Raises the soft limit of open files to the hard one (sipp, the server and the loader
/// inherit it: a call costs the server a TCP and five UDP sockets, the loader a TCP socket).
/// Returns a note when even the hard limit is below `needed`.
pub(crate) fn raise_fd_limit(needed: u64) -> Option<String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Some(format!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit(2) reads one `rlimit` from the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    (limit.rlim_cur < needed as libc::rlim_t).then(|| {
        format!(
            "open-file limit {} is below the {needed} the largest point needs (raise `ulimit -n`)",
            limit.rlim_cur
        )
    })
}

/// Checks that sipp is installed (for the run's notes).
pub(crate) fn sipp_available() -> Result<(), String> {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| format!("sipp is not installed ({e}); `apt-get install sip-tester`"))
}

/// What one gateway point runs, whichever server it measures (siprtmp or the floor).
pub(crate) struct PointSpec<'a> {
    /// The far end: sipp with this scenario (see [`GatewayCodec::far_end`]).
    pub sipp_scenario: &'a Path,
    pub codec: GatewayCodec,
    /// The codec's frames, looped.
    pub media: &'a Arc<MediaLoop>,
    pub calls: usize,
    /// Which repeat (for the label).
    pub repeat: usize,
    pub timing: Timing,
    /// The kernel's clock ticks per second (/proc CPU times).
    pub clk_tck: u64,
    /// Count the server's system calls over the window (`--syscalls`).
    pub count_syscalls: bool,
}

/// Runs one gateway point; `Err` if a process or the call setup failed (frames not echoed is
/// not an error here: it is in the result).
pub(crate) fn run_point(
    kind: &ServerKind,
    bins: &Binaries,
    spec: &PointSpec<'_>,
) -> Result<GatewayPoint, String> {
    let sipp = start_sipp(spec.sipp_scenario)?;
    let point = run_against(kind, bins, spec, sipp.port, &sipp.pid(), &[], kind.label());
    drop(sipp);
    point
}

/// Runs one gateway point against a far end already listening for SIP on 127.0.0.1:`far_port`
/// (process `far_pid`, measured as sipp is): siprtmp `kind` started with `server_args` beside
/// the gateway's own, the point labelled `label`.
pub(crate) fn run_against(
    kind: &ServerKind,
    bins: &Binaries,
    spec: &PointSpec<'_>,
    far_port: u16,
    far_pid: &str,
    server_args: &[&str],
    label: String,
) -> Result<GatewayPoint, String> {
    let &PointSpec {
        codec,
        media,
        calls,
        repeat,
        timing,
        clk_tck,
        count_syscalls,
        ..
    } = spec;
    let shared = kind.siprtmp_options().is_some_and(|o| o.shared_rtp_ports);
    if !shared && calls * 4 > usize::from(RTP_PORTS.1 - RTP_PORTS.0 + 1) {
        return Err(format!(
            "{calls} calls need more RTP ports than {}-{}",
            RTP_PORTS.0, RTP_PORTS.1
        ));
    }
    let extra: Vec<String> = [
        "--int-ip",
        "127.0.0.1",
        "--rtp-ports",
        &format!("{}-{}", RTP_PORTS.0, RTP_PORTS.1),
    ]
    .iter()
    .chain(server_args)
    .map(|s| s.to_string())
    .collect();
    let srv = server::start_with(kind, bins, &extra)?;
    let pid = srv.pid();
    let dest = format!("sip:echo@127.0.0.1:{far_port}");
    let mut load = CallLoad::start(
        srv.addr,
        &dest,
        &[codec.token()],
        media.clone(),
        codec.seq_plan(),
        codec.echo_match(),
        calls,
        timing.setup_timeout,
    )?;
    let window = measure_window(&mut load, &pid, far_pid, timing, clk_tck, count_syscalls)?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    srv.stop();
    Ok(window.point(codec, calls, label, repeat, peak_rss_kib))
}

/// What one window measured, before the point is labelled.
pub(crate) struct WindowMeasure {
    server_cpu: f64,
    server_cpu_ns: f64,
    server_sys_cpu: f64,
    server_syscalls_per_sec: Option<f64>,
    sipp_cpu: f64,
    loader_cpu: f64,
    window_secs: f64,
    echo: EchoSummary,
}

impl WindowMeasure {
    /// The point these figures belong to.
    pub(crate) fn point(
        self,
        codec: GatewayCodec,
        calls: usize,
        server: String,
        repeat: usize,
        peak_rss_kib: u64,
    ) -> GatewayPoint {
        GatewayPoint {
            codec,
            calls,
            server,
            repeat,
            server_cpu: self.server_cpu,
            server_cpu_ns: self.server_cpu_ns,
            server_sys_cpu: self.server_sys_cpu,
            server_syscalls_per_sec: self.server_syscalls_per_sec,
            sipp_cpu: self.sipp_cpu,
            loader_cpu: self.loader_cpu,
            window_secs: self.window_secs,
            peak_rss_kib,
            echo: self.echo,
        }
    }
}

/// The warm-up, then the CPU window of the server `pid`, of sipp and of this process (the
/// loader), with the server's system calls counted over it when `count_syscalls`, then the
/// echo check.
pub(crate) fn measure_window(
    load: &mut impl EchoLoad,
    pid: &str,
    sipp_pid: &str,
    timing: Timing,
    clk_tck: u64,
    count_syscalls: bool,
) -> Result<WindowMeasure, String> {
    let io = |e: std::io::Error| format!("load generator: {e}");
    load.run_until(Instant::now() + timing.warmup).map_err(io)?;
    let syscalls = count_syscalls
        .then(|| SyscallCounter::start(pid))
        .transpose()?;
    let s0 = procstat::sample(pid)?;
    let p0 = procstat::sample(sipp_pid)?;
    let l0 = procstat::sample("self")?;
    let t0 = Instant::now();
    load.open_window();
    load.run_until(t0 + timing.window).map_err(io)?;
    load.close_window();
    let s1 = procstat::sample(pid)?;
    let p1 = procstat::sample(sipp_pid)?;
    let l1 = procstat::sample("self")?;
    let secs = t0.elapsed().as_secs_f64();
    // perf's count runs from its start to here, a little longer than the window (its attach
    // before t0, the samples above): a rate over `secs` errs high by that much.
    let server_syscalls_per_sec = syscalls
        .map(SyscallCounter::finish)
        .transpose()?
        .map(|n| n as f64 / secs);
    let echo = load.drain(timing.drain_timeout).map_err(io)?;
    let share = procstat::CoreShare { clk_tck, secs };
    Ok(WindowMeasure {
        server_cpu: share.ticks(s0.ticks, s1.ticks),
        server_cpu_ns: share.ns(s0.on_cpu_ns, s1.on_cpu_ns),
        server_sys_cpu: share.ticks(s0.sys_ticks, s1.sys_ticks),
        server_syscalls_per_sec,
        sipp_cpu: share.ticks(p0.ticks, p1.ticks),
        loader_cpu: share.ticks(l0.ticks, l1.ticks),
        window_secs: secs,
        echo,
    })
}
