//! `--relay`: one measurement point of an origin and its edges. The load generator publishes
//! to a fresh siprtmp origin; `edges` fresh siprtmp edges pull the stream from it
//! (`[apps.live] pull`), and the players are spread over the edges in turn. Over the window
//! it samples the CPU of the origin and of every edge (and its own), then checks that every
//! player received every window frame, as a single-server point does.
//!
//! The point gives two results in the shape of a single server's ([`PointResult`]), so the
//! report's tables and plots put them beside the single siprtmp measured with the same
//! players: the edges' CPU summed (per player: the slope) and the origin's (per edge: see
//! `relay_report`).

use std::time::{Duration, Instant};

use crate::load::generator::{Load, ReaderKind};
use crate::load::WindowedLoad;
use crate::measure::{PointResult, Scenario, Timing};
use crate::procstat;
use crate::server::{self, Binaries, Running, ServerKind};

/// The series label of the edges of a relay of `kind`'s siprtmp: `mio-edges2`.
pub(crate) fn edges_label(kind: &ServerKind, edges: usize) -> String {
    format!("{}-edges{edges}", kind.label())
}

/// The series label of the origin of a relay of `kind`'s siprtmp: `mio-origin`.
pub(crate) fn origin_label(kind: &ServerKind) -> String {
    format!("{}-origin", kind.label())
}

/// An edge's configuration: the load's application `live` plays what nobody publishes here
/// from `origin`.
fn edge_config(origin: &Running) -> String {
    format!("\n[apps.live]\npull = \"rtmp://{}/live\"\n", origin.addr)
}

/// What one relay point measured: the edges (CPU summed, peak RSS summed) and the origin.
pub(crate) struct RelayPoint {
    /// The edges together, labelled [`edges_label`].
    pub edges: PointResult,
    /// The origin, labelled [`origin_label`].
    pub origin: PointResult,
}

/// How a relay point runs.
pub(crate) struct RelaySpec<'a> {
    /// The siprtmp build and options of the origin and of every edge.
    pub kind: &'a ServerKind,
    /// Where the binaries are.
    pub bins: &'a Binaries,
    /// The stream published.
    pub scenario: &'a Scenario,
    /// How the players read.
    pub reader: ReaderKind,
    /// Edge servers.
    pub edges: usize,
    /// Phase lengths.
    pub timing: Timing,
    /// Clock ticks per second.
    pub clk_tck: u64,
}

/// Runs one point with `players` players spread over the edges; `Err` if a server or the
/// setup failed (frames lost is in the result).
pub(crate) fn run_point(
    spec: &RelaySpec<'_>,
    players: usize,
    repeat: usize,
) -> Result<RelayPoint, String> {
    if spec.kind.siprtmp_options().is_none() {
        return Err(format!("--relay runs siprtmp, not {}", spec.kind.label()));
    }
    if spec.edges == 0 {
        return Err("--relay needs at least one edge".into());
    }
    let origin = server::start(spec.kind, spec.bins)?;
    let config = edge_config(&origin);
    let edges = (0..spec.edges)
        .map(|_| server::start_configured(spec.kind, spec.bins, &[], &config))
        .collect::<Result<Vec<_>, _>>()?;
    let mut load = Load::start_spread(
        origin.addr,
        edges.iter().map(|e| e.addr).collect(),
        false,
        spec.scenario.media.clone(),
        players,
        spec.reader,
        spec.timing.setup_timeout,
    )?;
    let io = |e: std::io::Error| format!("load generator: {e}");
    // Every player past its first keyframe (which came through its edge's pull) before the
    // window opens.
    let key_gap = spec
        .scenario
        .media
        .max_keyframe_gap()
        .map_or(Duration::ZERO, |ms| {
            Duration::from_millis(u64::from(ms) + 500)
        });
    load.run_until(Instant::now() + spec.timing.warmup.max(key_gap))
        .map_err(io)?;

    let pids: Vec<String> = edges.iter().map(Running::pid).collect();
    let sample_edges = || -> Result<(u64, u64), String> {
        let mut sum = (0, 0);
        for pid in &pids {
            let s = procstat::sample(pid)?;
            sum = (sum.0 + s.ticks, sum.1 + s.on_cpu_ns);
        }
        Ok(sum)
    };
    let o0 = procstat::sample(&origin.pid())?;
    let e0 = sample_edges()?;
    let l0 = procstat::sample("self")?;
    let t0 = Instant::now();
    load.run_window(t0 + spec.timing.window).map_err(io)?;
    let o1 = procstat::sample(&origin.pid())?;
    let e1 = sample_edges()?;
    let l1 = procstat::sample("self")?;
    let secs = t0.elapsed().as_secs_f64();

    let delivery = load.drain(spec.timing.drain_timeout).map_err(io)?;
    let origin_rss = procstat::peak_rss_kib(&origin.pid()).unwrap_or(0);
    let edges_rss = pids
        .iter()
        .map(|pid| procstat::peak_rss_kib(pid).unwrap_or(0))
        .sum();
    drop(load);
    for edge in edges {
        edge.stop();
    }
    origin.stop();

    let share = procstat::CoreShare {
        clk_tck: spec.clk_tck,
        secs,
    };
    let loader_cpu = share.ticks(l0.ticks, l1.ticks);
    let result = |server: String, cpu: f64, cpu_ns: f64, rss: u64| PointResult {
        scenario: spec.scenario.name.clone(),
        reader: spec.reader,
        players,
        publishers: None,
        server,
        repeat,
        server_cpu: cpu,
        server_cpu_ns: cpu_ns,
        loader_cpu,
        window_secs: secs,
        peak_rss_kib: rss,
        delivery: delivery.clone(),
    };
    Ok(RelayPoint {
        edges: result(
            edges_label(spec.kind, spec.edges),
            share.ticks(e0.0, e1.0),
            share.ns(e0.1, e1.1),
            edges_rss,
        ),
        origin: result(
            origin_label(spec.kind),
            share.ticks(o0.ticks, o1.ticks),
            share.ns(o0.on_cpu_ns, o1.on_cpu_ns),
            origin_rss,
        ),
    })
}
