//! `--soak`: the release `siprtmp` under a steady load for a long time, on loopback. N gateway
//! calls to an echoing sipp (as the gateway points place them) and a publisher with M
//! players (as the RTMP points do) run for the whole duration, each load on its own thread;
//! every second the server's resident memory (`VmRSS`), open descriptors (`/proc/PID/fd`) and
//! CPU are sampled. At the end every player must have received every frame published during
//! the run, in order, and every call must have every frame it sent echoed back.
//!
//! Output in `--out`: `soak.csv` (one row per second), `soak-rss.svg` and `soak-fds.svg`
//! (the two series over time), and `report.md` (the command, the machine and its load, the
//! delivery check, and the trend of each series after the settling time: least-squares slope
//! and max - min).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gateway::{start_sipp, GatewayCodec, RTP_PORTS};
use crate::load::calls::{CallLoad, EchoSummary};
use crate::load::echo_load::EchoLoad;
use crate::load::generator::{Delivery, Load, ReaderKind};
use crate::load::media::MediaLoop;
use crate::load::WindowedLoad;
use crate::measure::Scenario;
use crate::procstat;
use crate::progress::Progress;
use crate::server::{self, Binaries, ServerKind};
use crate::stats::least_squares;
use crate::svg::{plot_on, Series, XAxis};

/// What a soak runs.
pub(crate) struct SoakSpec<'a> {
    /// The server (a siprtmp runtime).
    pub kind: &'a ServerKind,
    /// Where the binaries are.
    pub bins: &'a Binaries,
    /// The far end's scenario (sipp, echoing RTP).
    pub sipp_scenario: &'a Path,
    /// The calls' codec and their looped frames.
    pub codec: GatewayCodec,
    /// The calls' media.
    pub call_media: Arc<MediaLoop>,
    /// The published stream.
    pub scenario: &'a Scenario,
    /// Concurrent calls.
    pub calls: usize,
    /// Players of the one stream.
    pub players: usize,
    /// How long the load runs once set up.
    pub duration: Duration,
    /// Longest set-up of each load.
    pub setup_timeout: Duration,
    /// Longest wait for the last frames after the run.
    pub drain_timeout: Duration,
    /// The kernel's clock ticks per second.
    pub clk_tck: u64,
}

/// One second's sample of the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the load was set up.
    pub at: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open descriptors.
    pub fds: u64,
    /// CPU (utime + stime) over the last second, % of one core.
    pub cpu: f64,
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub(crate) struct SoakResult {
    /// Every second.
    pub samples: Vec<Sample>,
    /// The calls' echo over the whole run.
    pub echo: EchoSummary,
    /// The players' delivery over the whole run.
    pub delivery: Delivery,
    /// Resident memory, descriptors right after the set-up (before the first sample).
    pub after_setup: (u64, u64),
    /// Peak resident memory (`VmHWM`) at the end, KiB.
    pub peak_rss_kib: u64,
    /// Load averages when the load was set up and when it ended.
    pub load_average: (String, String),
    /// Datagrams the kernel dropped for a full receive buffer on the server's sockets and on
    /// sipp's, at the end (`None`: unreadable).
    pub udp_drops: (Option<u64>, Option<u64>),
}

/// The trend of one series after the settling time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    /// Samples in the fit.
    pub samples: usize,
    /// Least-squares slope per minute.
    pub per_minute: f64,
    /// Least and largest value.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Minutes the fit spans.
    pub minutes: f64,
}

impl Trend {
    /// The trend of `(seconds, value)` points from `from` seconds on.
    pub(crate) fn of(points: impl Iterator<Item = (f64, f64)>, from: f64) -> Option<Trend> {
        let pts: Vec<(f64, f64)> = points
            .filter(|p| p.0 >= from)
            .map(|(t, v)| (t / 60.0, v))
            .collect();
        let line = least_squares(&pts)?;
        let values = pts.iter().map(|p| p.1);
        Some(Trend {
            samples: pts.len(),
            per_minute: line.slope,
            min: values.clone().fold(f64::INFINITY, f64::min),
            max: values.clone().fold(f64::NEG_INFINITY, f64::max),
            mean: values.sum::<f64>() / pts.len() as f64,
            minutes: pts.last()?.0 - pts.first()?.0,
        })
    }

    /// What the slope adds over the span.
    pub(crate) fn growth(&self) -> f64 {
        self.per_minute * self.minutes
    }
}

/// Runs the soak.
pub(crate) fn run(spec: &SoakSpec<'_>) -> Result<SoakResult, String> {
    let shared = spec
        .kind
        .siprtmp_options()
        .is_some_and(|o| o.shared_rtp_ports);
    if !shared && spec.calls * 4 > usize::from(RTP_PORTS.1 - RTP_PORTS.0 + 1) {
        return Err(format!(
            "{} calls need more RTP ports than {}-{}",
            spec.calls, RTP_PORTS.0, RTP_PORTS.1
        ));
    }
    let sipp = start_sipp(spec.sipp_scenario)?;
    let extra: Vec<String> = [
        "--int-ip",
        "127.0.0.1",
        "--rtp-ports",
        &format!("{}-{}", RTP_PORTS.0, RTP_PORTS.1),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let srv = server::start_with(spec.kind, spec.bins, &extra)?;
    let pid = srv.pid();
    let dest = format!("sip:echo@127.0.0.1:{}", sipp.port());
    let mut calls = CallLoad::start(
        srv.addr,
        &dest,
        &[spec.codec.token()],
        spec.call_media.clone(),
        spec.codec.seq_plan(),
        spec.codec.echo_match(),
        spec.calls,
        spec.setup_timeout,
    )?;
    let mut players = Load::start(
        srv.tls_addr.unwrap_or(srv.addr),
        srv.tls_addr.is_some(),
        spec.scenario.media.clone(),
        spec.players,
        ReaderKind::Eager,
        spec.setup_timeout,
    )?;
    let after_setup = (
        procstat::rss_kib(&pid).unwrap_or(0),
        procstat::open_fds(&pid).unwrap_or(0),
    );
    let load_start = procstat::load_average();

    let t0 = Instant::now();
    let end = t0 + spec.duration;
    let drain = spec.drain_timeout;
    let io = |e: std::io::Error| format!("load generator: {e}");
    // Each load on its own thread, its window the whole run.
    let call_thread = std::thread::spawn(move || -> Result<EchoSummary, String> {
        calls.open_window();
        calls.run_until(end).map_err(io)?;
        calls.close_window();
        calls.drain(drain).map_err(io)
    });
    let player_thread = std::thread::spawn(move || -> Result<Delivery, String> {
        players.run_window(end).map_err(io)?;
        players.drain(drain).map_err(io)
    });

    let mut samples = Vec::new();
    let progress = Progress::soak(spec.duration);
    let mut ticks = procstat::cpu_ticks(&pid)?;
    let mut last = t0;
    let mut next = t0 + Duration::from_secs(1);
    while next <= end {
        // Paced by the clock: each sample at its second, whatever the last one took.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let (Some(rss_kib), Some(fds), Ok(t)) = (
            procstat::rss_kib(&pid),
            procstat::open_fds(&pid),
            procstat::cpu_ticks(&pid),
        ) else {
            return Err(format!(
                "the server (pid {pid}) is gone after {:.0} s",
                t0.elapsed().as_secs_f64()
            ));
        };
        let secs = now.duration_since(last).as_secs_f64();
        samples.push(Sample {
            at: now.duration_since(t0).as_secs_f64(),
            rss_kib,
            fds,
            cpu: procstat::CoreShare {
                clk_tck: spec.clk_tck,
                secs,
            }
            .ticks(ticks, t),
        });
        progress.set_done(samples.len() as u64);
        if samples.len() % 10 == 1 {
            progress.note(format!(
                "{rss_kib} KiB resident, {fds} descriptors, {:.1} % of a core",
                samples.last().map_or(0.0, |s| s.cpu)
            ));
        }
        ticks = t;
        last = now;
        next += Duration::from_secs(1);
    }
    let load_end = procstat::load_average();
    let echo = call_thread
        .join()
        .map_err(|_| "the calls' thread panicked".to_string())??;
    let delivery = player_thread
        .join()
        .map_err(|_| "the players' thread panicked".to_string())??;
    let peak_rss_kib = procstat::peak_rss_kib(&pid).unwrap_or(0);
    let udp_drops = (procstat::udp_drops(&pid), procstat::udp_drops(&sipp.pid()));
    srv.stop();
    drop(sipp);
    progress.finish();
    Ok(SoakResult {
        samples,
        echo,
        delivery,
        after_setup,
        peak_rss_kib,
        load_average: (load_start, load_end),
        udp_drops,
    })
}

/// Whether the players got everything and every call got every frame back.
pub(crate) fn delivered_all(r: &SoakResult) -> bool {
    r.delivery.is_complete()
        && r.echo.failure.is_none()
        && r.echo.echoed() == r.echo.sent()
        && r.echo.sent() > 0
        && r.echo.calls.iter().all(|c| c.disorder == 0)
}

/// The share of its mean a series may grow by, as a trend, and still be flat.
pub(crate) const FLAT_SHARE: f64 = 0.05;

/// Whether resident memory and descriptors stayed flat after `settle` seconds: the
/// trend's growth within [`FLAT_SHARE`] of the mean, and not a descriptor more at the end
/// than at the start of the fit.
pub(crate) fn flat(r: &SoakResult, settle: f64) -> (Option<Trend>, Option<Trend>, bool) {
    let rss = Trend::of(r.samples.iter().map(|s| (s.at, s.rss_kib as f64)), settle);
    let fds = Trend::of(r.samples.iter().map(|s| (s.at, s.fds as f64)), settle);
    let ok = rss.is_some_and(|t| t.growth() <= FLAT_SHARE * t.mean)
        && fds.is_some_and(|t| t.growth() <= FLAT_SHARE * t.mean);
    (rss, fds, ok)
}

/// Writes `soak.csv`, `soak-rss.svg`, `soak-fds.svg` and `report.md` into `out`.
pub(crate) fn write_files(
    out: &Path,
    command: &str,
    spec: &SoakSpec<'_>,
    settle: f64,
    r: &SoakResult,
) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    let mut csv = String::from("second,rss_kib,open_fds,cpu_percent\n");
    for s in &r.samples {
        let _ = writeln!(csv, "{:.1},{},{},{:.2}", s.at, s.rss_kib, s.fds, s.cpu);
    }
    write("soak.csv", &csv)?;
    let label = format!(
        "{}: {} calls + {} players",
        spec.kind.label(),
        spec.calls,
        spec.players
    );
    let series = |f: &dyn Fn(&Sample) -> f64| {
        vec![Series {
            label: label.clone(),
            points: r.samples.iter().map(|s| (s.at as usize, f(s))).collect(),
        }]
    };
    let rss = plot_on(
        XAxis::Linear,
        "siprtmp soak: resident memory",
        "seconds",
        "VmRSS, MiB",
        &series(&|s| s.rss_kib as f64 / 1024.0),
    );
    write("soak-rss.svg", &rss)?;
    let fds = plot_on(
        XAxis::Linear,
        "siprtmp soak: open descriptors",
        "seconds",
        "descriptors",
        &series(&|s| s.fds as f64),
    );
    write("soak-fds.svg", &fds)?;
    write("report.md", &report(command, spec, settle, r))
}

fn report(command: &str, spec: &SoakSpec<'_>, settle: f64, r: &SoakResult) -> String {
    let (cpus, (mhz, model)) = (
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        procstat::core_mhz(),
    );
    let mut md = String::from("# bench-compare --soak\n\n");
    let _ = writeln!(md, "Command: `{command}`\n");
    let _ = writeln!(
        md,
        "Machine: {cpus} logical CPU(s), {model}{}; load averages (1, 5, 15 min) {} when the load was set up, {} at the end.\n",
        mhz.map_or(String::new(), |m| format!(" at {m:.0} MHz")),
        r.load_average.0,
        r.load_average.1
    );
    let _ = writeln!(
        md,
        "Load: {} (siprtmp --int-ip 127.0.0.1 --rtp-ports {}-{}), {} gateway calls ({}, `{}` to an echoing sipp) and one publisher with {} players ({}), for {:.0} s after the set-up.\n",
        spec.kind.label(),
        RTP_PORTS.0,
        RTP_PORTS.1,
        spec.calls,
        spec.codec.label(),
        spec.codec.token(),
        spec.players,
        spec.scenario.description,
        spec.duration.as_secs_f64()
    );
    let d = &r.delivery;
    let e = &r.echo;
    let _ = writeln!(md, "## Delivery\n");
    let _ = writeln!(
        md,
        "- Players: {} of {} received every one of the {} frames published during the run, in order (fewest: {}){}.",
        d.complete,
        d.players,
        d.sent,
        d.min_received,
        d.failure.as_ref().map(|f| format!("; failure: {f}")).unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "- Calls: {} of the {} frames the {} calls sent during the run came back (worst call {:.3} %), {} out of order{}.",
        e.echoed(),
        e.sent(),
        e.calls.len(),
        e.worst_ratio() * 100.0,
        e.calls.iter().map(|c| c.disorder).sum::<u64>(),
        e.failure.as_ref().map(|f| format!("; failure: {f}")).unwrap_or_default()
    );
    let count = |n: Option<u64>| n.map_or("unknown".to_string(), |n| n.to_string());
    let _ = writeln!(
        md,
        "- UDP datagrams the kernel dropped for a full receive buffer (`/proc/net/udp`): {} on the server's sockets, {} on sipp's.",
        count(r.udp_drops.0),
        count(r.udp_drops.1)
    );
    let _ = writeln!(
        md,
        "- Verdict: {}.\n",
        if delivered_all(r) {
            "every frame delivered"
        } else {
            "FRAMES MISSING"
        }
    );
    let (rss, fds, ok) = flat(r, settle);
    let _ = writeln!(md, "## Resident memory and descriptors\n");
    let _ = writeln!(
        md,
        "After the set-up: {} KiB resident, {} descriptors. Peak resident (VmHWM) at the end: {} KiB.\n",
        r.after_setup.0, r.after_setup.1, r.peak_rss_kib
    );
    let _ = writeln!(
        md,
        "From {settle:.0} s on ({} samples, one a second):\n",
        rss.map_or(0, |t| t.samples)
    );
    let _ = writeln!(
        md,
        "| series | slope per minute | max - min | min | max | mean |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    if let Some(t) = rss {
        let _ = writeln!(
            md,
            "| VmRSS (KiB) | {:+.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            t.per_minute,
            t.max - t.min,
            t.min,
            t.max,
            t.mean
        );
    }
    if let Some(t) = fds {
        let _ = writeln!(
            md,
            "| open descriptors | {:+.3} | {:.0} | {:.0} | {:.0} | {:.1} |",
            t.per_minute,
            t.max - t.min,
            t.min,
            t.max,
            t.mean
        );
    }
    let _ = writeln!(
        md,
        "\nVerdict: {} (flat: the slope over the span adds at most {:.0} % of the mean).\n",
        if ok { "flat" } else { "NOT FLAT" },
        FLAT_SHARE * 100.0
    );
    let cpu: Vec<f64> = r.samples.iter().map(|s| s.cpu).collect();
    if let Some(m) = crate::stats::median(&cpu) {
        let _ = writeln!(
            md,
            "Server CPU: median {m:.1} % of one core over the run's seconds.\n"
        );
    }
    md.push_str("Files: [`soak.csv`](soak.csv) (every second), [`soak-rss.svg`](soak-rss.svg), [`soak-fds.svg`](soak-fds.svg).\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(f: impl Fn(f64) -> (u64, u64)) -> Vec<Sample> {
        (1..=1800)
            .map(|t| {
                let (rss_kib, fds) = f(f64::from(t));
                Sample {
                    at: f64::from(t),
                    rss_kib,
                    fds,
                    cpu: 10.0,
                }
            })
            .collect()
    }

    fn result(samples: Vec<Sample>) -> SoakResult {
        SoakResult {
            samples,
            echo: EchoSummary::default(),
            delivery: Delivery::default(),
            after_setup: (0, 0),
            peak_rss_kib: 0,
            load_average: (String::new(), String::new()),
            udp_drops: (None, None),
        }
    }

    #[test]
    fn a_trend_is_the_slope_after_the_settling_time() {
        // 1 MiB a minute for the first five minutes, then level with a saw-tooth.
        let r = result(samples(|t| {
            let rss = 40_000 + (t.min(300.0) / 60.0 * 1024.0) as u64 + (t as u64 % 10);
            (rss, 2300)
        }));
        let (rss, fds, ok) = flat(&r, 300.0);
        let rss = rss.unwrap();
        assert!(rss.per_minute.abs() < 1.0, "{rss:?}");
        assert_eq!(rss.max - rss.min, 9.0);
        assert_eq!(rss.samples, 1501);
        assert!((rss.minutes - 25.0).abs() < 1e-9);
        assert_eq!(fds.unwrap().per_minute, 0.0);
        assert!(ok);
        // Fitted from the start, the warm-up's climb shows.
        assert!(
            Trend::of(r.samples.iter().map(|s| (s.at, s.rss_kib as f64)), 0.0)
                .unwrap()
                .per_minute
                > 50.0
        );
    }

    #[test]
    fn a_leak_is_not_flat() {
        // 200 KiB a minute on 40 MiB: 5 MiB over 25 minutes, 12 % of the mean.
        let r = result(samples(|t| (40_000 + (t / 60.0 * 200.0) as u64, 2300)));
        let (rss, _, ok) = flat(&r, 300.0);
        assert!((rss.unwrap().per_minute - 200.0).abs() < 1.0);
        assert!(!ok);
        // A descriptor a minute is a leak too.
        let r = result(samples(|t| (40_000, 2300 + (t / 60.0) as u64 * 10)));
        assert!(!flat(&r, 300.0).2);
    }

    #[test]
    fn delivery_needs_every_frame_of_every_call_and_player() {
        use crate::load::calls::CallCount;
        let mut r = result(Vec::new());
        r.delivery = Delivery {
            sent: 100,
            min_received: 100,
            complete: 2,
            players: 2,
            failure: None,
            delay: Default::default(),
        };
        r.echo.calls = vec![CallCount {
            sent: 50,
            echoed: 50,
            disorder: 0,
            unmatched: 0,
        }];
        assert!(delivered_all(&r));
        r.echo.calls[0].echoed = 49;
        assert!(!delivered_all(&r));
        r.echo.calls[0].echoed = 50;
        r.delivery.complete = 1;
        assert!(!delivered_all(&r));
    }
}
