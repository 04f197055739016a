//! One measurement point: a fresh server, the load set up, a warm-up, the CPU window of the
//! server and of the loader, then the delivery check and the server's peak RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::generator::{Delivery, Load, ReaderKind};
use crate::load::media::MediaLoop;
use crate::procstat;
use crate::server::{self, Binaries, ServerKind};

/// A published stream to measure with.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name ("audio", "av").
    pub name: String,
    /// What it is, for the report.
    pub description: String,
    /// The looped media.
    pub media: Arc<MediaLoop>,
}

/// Phase lengths.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Steady-state running before the window opens.
    pub warmup: Duration,
    /// The CPU measurement window.
    pub window: Duration,
    /// Longest setup (all players playing).
    pub setup_timeout: Duration,
    /// Longest wait for the window's last frames after it closes.
    pub drain_timeout: Duration,
}

/// What one point measured.
#[derive(Debug, Clone)]
pub(crate) struct PointResult {
    /// Scenario name.
    pub scenario: String,
    /// How the players read.
    pub reader: ReaderKind,
    /// Number of players.
    pub players: usize,
    /// Server label.
    pub server: String,
    /// Repeat index (0-based).
    pub repeat: usize,
    /// Server CPU in % of one core from utime+stime.
    pub server_cpu: f64,
    /// Server CPU in % of one core from schedstat on-CPU time.
    pub server_cpu_ns: f64,
    /// The load generator's own CPU in % of one core.
    pub loader_cpu: f64,
    /// Actual window length in seconds.
    pub window_secs: f64,
    /// Server peak RSS (VmHWM) at the end, KiB.
    pub peak_rss_kib: u64,
    /// The delivery check.
    pub delivery: Delivery,
}

/// Runs one point; `Err` if the server or the setup failed (frames lost is not an error
/// here: it is in the result).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_point(
    kind: &ServerKind,
    bins: &Binaries,
    scenario: &Scenario,
    reader: ReaderKind,
    players: usize,
    repeat: usize,
    timing: Timing,
    clk_tck: u64,
) -> Result<PointResult, String> {
    let srv = server::start(kind, bins)?;
    let pid = srv.pid();
    let mut load = Load::start(
        srv.tls_addr.unwrap_or(srv.addr),
        srv.tls_addr.is_some(),
        scenario.media.clone(),
        players,
        reader,
        timing.setup_timeout,
    )?;
    let io = |e: std::io::Error| format!("load generator: {e}");
    // Every player must be past its first video keyframe before the window opens.
    let key_gap = scenario
        .media
        .max_keyframe_gap()
        .map_or(Duration::ZERO, |ms| {
            Duration::from_millis(u64::from(ms) + 500)
        });
    let warmup = timing.warmup.max(key_gap);
    load.run_until(Instant::now() + warmup).map_err(io)?;

    let s0 = procstat::sample(&pid)?;
    let l0 = procstat::sample("self")?;
    let t0 = Instant::now();
    load.open_window();
    load.run_until(t0 + timing.window).map_err(io)?;
    load.close_window();
    let s1 = procstat::sample(&pid)?;
    let l1 = procstat::sample("self")?;
    let secs = t0.elapsed().as_secs_f64();

    let delivery = load.drain(timing.drain_timeout).map_err(io)?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    srv.stop();

    let pct_ticks = |a: u64, b: u64| (b - a) as f64 / clk_tck as f64 / secs * 100.0;
    let pct_ns = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9 / secs * 100.0;
    Ok(PointResult {
        scenario: scenario.name.clone(),
        reader,
        players,
        server: kind.label(),
        repeat,
        server_cpu: pct_ticks(s0.ticks, s1.ticks),
        server_cpu_ns: pct_ns(s0.on_cpu_ns, s1.on_cpu_ns),
        loader_cpu: pct_ticks(l0.ticks, l1.ticks),
        window_secs: secs,
        peak_rss_kib,
        delivery,
    })
}
