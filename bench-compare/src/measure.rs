//! One measurement point: a fresh server, the load set up, a warm-up, the CPU window of the
//! server and of the loader, then the delivery check and the server's peak RSS. A player
//! point has one publisher and N players ([`run_point`]); a publisher point N publishers,
//! each on its own stream, and no player ([`run_publishers_point`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::generator::{Delivery, Load, ReaderKind};
use crate::load::media::MediaLoop;
use crate::load::publishers::{PublishCheck, PublisherLoad};
use crate::load::WindowedLoad;
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
    /// A publisher point: its number of publishers (and no player); `None` for a player
    /// point (one publisher).
    pub publishers: Option<usize>,
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
    /// The delivery check. For a publisher point: `players` is the publishers, `complete`
    /// those verified (see [`PublishCheck`]), `sent` the window frames of all publishers and
    /// `min_received` those of the verified ones.
    pub delivery: Delivery,
}

impl PointResult {
    /// Whether the point passed its check: every player got every window frame, or, for a
    /// publisher point, every publisher published through the window and the server read
    /// every byte of it.
    pub(crate) fn is_complete(&self) -> bool {
        match self.publishers {
            None => self.delivery.is_complete(),
            Some(n) => {
                self.delivery.failure.is_none()
                    && self.delivery.complete == n
                    && (n == 0 || self.delivery.sent > 0)
            }
        }
    }
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
    let warmup = timing.warmup.max(key_gap(scenario));
    load.run_until(Instant::now() + warmup).map_err(io)?;

    let cpu = WindowCpu::measure(&pid, clk_tck, || {
        load.run_window(Instant::now() + timing.window).map_err(io)
    })?;

    let delivery = load.drain(timing.drain_timeout).map_err(io)?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    srv.stop();

    Ok(PointResult {
        scenario: scenario.name.clone(),
        reader,
        players,
        publishers: None,
        server: kind.label(),
        repeat,
        server_cpu: cpu.server,
        server_cpu_ns: cpu.server_ns,
        loader_cpu: cpu.loader,
        window_secs: cpu.secs,
        peak_rss_kib,
        delivery,
    })
}

/// The server's and the loader's CPU over a measurement window, in % of one core.
struct WindowCpu {
    /// From /proc ticks (utime + stime).
    server: f64,
    /// From on-CPU nanoseconds (schedstat), the finer cross-check.
    server_ns: f64,
    loader: f64,
    secs: f64,
}

impl WindowCpu {
    /// Samples the server `pid` and this process around `window` (which runs the load
    /// through the window).
    fn measure(
        pid: &str,
        clk_tck: u64,
        window: impl FnOnce() -> Result<(), String>,
    ) -> Result<Self, String> {
        let s0 = procstat::sample(pid)?;
        let l0 = procstat::sample("self")?;
        let t0 = Instant::now();
        window()?;
        let s1 = procstat::sample(pid)?;
        let l1 = procstat::sample("self")?;
        let secs = t0.elapsed().as_secs_f64();
        let share = procstat::CoreShare { clk_tck, secs };
        Ok(Self {
            server: share.ticks(s0.ticks, s1.ticks),
            server_ns: share.ns(s0.on_cpu_ns, s1.on_cpu_ns),
            loader: share.ticks(l0.ticks, l1.ticks),
            secs,
        })
    }
}

/// The shortest warm-up the scenario needs: every player must be past its first video
/// keyframe before the window opens (nginx-rtmp holds a new player's video until the next
/// one), and a server's per-stream state (a cached group of pictures) is steady only after
/// one.
fn key_gap(scenario: &Scenario) -> Duration {
    scenario
        .media
        .max_keyframe_gap()
        .map_or(Duration::ZERO, |ms| {
            Duration::from_millis(u64::from(ms) + 500)
        })
}

/// Runs one publisher point: `publishers` publishers, each on its own stream, no player.
/// `Err` if the server or the setup failed (a publisher refused during setup names itself);
/// a publisher dropped later, or bytes the server did not read, fail the result's check.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_publishers_point(
    kind: &ServerKind,
    bins: &Binaries,
    scenario: &Scenario,
    publishers: usize,
    repeat: usize,
    timing: Timing,
    clk_tck: u64,
) -> Result<PointResult, String> {
    let srv = server::start(kind, bins)?;
    let pid = srv.pid();
    let mut load = PublisherLoad::start(
        srv.tls_addr.unwrap_or(srv.addr),
        srv.tls_addr.is_some(),
        scenario.media.clone(),
        publishers,
        timing.setup_timeout,
    )?;
    let io = |e: std::io::Error| format!("load generator: {e}");
    load.run_until(Instant::now() + timing.warmup.max(key_gap(scenario)))
        .map_err(io)?;

    let cpu = WindowCpu::measure(&pid, clk_tck, || {
        load.run_window(Instant::now() + timing.window).map_err(io)
    })?;

    let check = load.drain(timing.drain_timeout)?;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    drop(load);
    srv.stop();

    Ok(PointResult {
        scenario: scenario.name.clone(),
        reader: ReaderKind::Eager,
        players: 0,
        publishers: Some(publishers),
        server: kind.label(),
        repeat,
        server_cpu: cpu.server,
        server_cpu_ns: cpu.server_ns,
        loader_cpu: cpu.loader,
        window_secs: cpu.secs,
        peak_rss_kib,
        delivery: publish_delivery(&check),
    })
}

/// A publisher point's check in the shape of a player point's delivery (see
/// [`PointResult::delivery`]).
fn publish_delivery(check: &PublishCheck) -> Delivery {
    Delivery {
        sent: check.frames_sent,
        min_received: check.verified_frames,
        complete: check.verified,
        players: check.publishers,
        failure: check.failure.clone(),
        delay: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher_point(publishers: usize, check: &PublishCheck) -> PointResult {
        PointResult {
            scenario: "audio".into(),
            reader: ReaderKind::Eager,
            players: 0,
            publishers: Some(publishers),
            server: "mio".into(),
            repeat: 0,
            server_cpu: 1.0,
            server_cpu_ns: 1.0,
            loader_cpu: 1.0,
            window_secs: 5.0,
            peak_rss_kib: 0,
            delivery: publish_delivery(check),
        }
    }

    #[test]
    fn a_publisher_point_passes_only_when_every_publisher_is_verified() {
        let all = PublishCheck {
            publishers: 3,
            frames_sent: 750,
            verified: 3,
            verified_frames: 750,
            ..PublishCheck::default()
        };
        assert!(publisher_point(3, &all).is_complete());
        let one_short = PublishCheck {
            verified: 2,
            verified_frames: 500,
            ..all.clone()
        };
        assert!(!publisher_point(3, &one_short).is_complete());
        let dropped = PublishCheck {
            failure: Some("publisher bench-1: closed by the server".into()),
            ..all.clone()
        };
        assert!(!publisher_point(3, &dropped).is_complete());
        // Publishers that sent nothing in the window measured nothing.
        let silent = PublishCheck {
            frames_sent: 0,
            verified_frames: 0,
            ..all
        };
        assert!(!publisher_point(3, &silent).is_complete());
        // The idle server (no publisher) passes: it is the series' N = 0.
        assert!(publisher_point(0, &PublishCheck::default()).is_complete());
    }

    #[test]
    fn a_player_point_keeps_its_own_check() {
        let mut p = publisher_point(0, &PublishCheck::default());
        p.publishers = None;
        // No frame sent in the window: a player point at N = 0 fails, as before.
        assert!(!p.is_complete());
        p.delivery.sent = 60;
        assert!(p.is_complete());
    }
}
