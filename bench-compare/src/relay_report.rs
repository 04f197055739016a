//! The `--relay` section of report.md: per scenario and reader kind, the CPU an edge spends
//! per player against the single siprtmp's per player (both slopes over the player counts,
//! measured in the same run), and the CPU the origin spends per edge that pulls from it.
//!
//! The origin's cost per edge is a difference, not a slope: at 0 players no edge pulls (a
//! pull opens at an edge's first player), so the origin carries the publisher alone; at every
//! count of at least one player per edge, each edge plays the stream once upstream whatever
//! its players, so the origin's CPU there, less the 0-player figure, divided by the edges, is
//! what one edge costs it.
//!
//! The figures come from on-CPU nanoseconds (schedstat) rather than clock ticks: an edge's
//! pull costs the origin less than a tick per window.

use std::fmt::Write as _;

use crate::measure::PointResult;
use crate::stats::{least_squares, median};
use crate::RunInfo;

/// The labels of a relay run's three series.
pub(crate) struct RelayLabels {
    /// The single siprtmp with the same players.
    pub single: String,
    /// The edges, CPU summed.
    pub edges: String,
    /// The origin.
    pub origin: String,
    /// How many edges.
    pub edge_count: usize,
}

/// Median CPU (% of one core, from on-CPU nanoseconds: an origin's cost per edge is below a
/// clock tick a window) of `server`'s points of one scenario and reader, per player
/// count, in `players` order (counts without a point left out).
fn medians(
    results: &[PointResult],
    server: &str,
    scenario: &str,
    reader: crate::load::generator::ReaderKind,
    players: &[usize],
) -> Vec<(usize, f64)> {
    players
        .iter()
        .filter_map(|&n| {
            let cpu: Vec<f64> = results
                .iter()
                .filter(|r| {
                    r.server == server
                        && r.scenario == scenario
                        && r.reader == reader
                        && r.players == n
                })
                .map(|r| r.server_cpu_ns)
                .collect();
            median(&cpu).map(|m| (n, m))
        })
        .collect()
}

/// The figures of one scenario and reader kind, % of one core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RelayFigures {
    /// The single server's CPU per player (slope).
    pub single_per_player: Option<f64>,
    /// The edges' CPU per player (slope of their sum).
    pub edge_per_player: Option<f64>,
    /// The origin's CPU with the publisher alone (0 players).
    pub origin_alone: Option<f64>,
    /// The origin's CPU with every edge pulling (median over the counts with a player per
    /// edge at least).
    pub origin_pulled: Option<f64>,
    /// (`origin_pulled` - `origin_alone`) / edges.
    pub origin_per_edge: Option<f64>,
}

/// The figures of `results` for one scenario and reader kind.
pub(crate) fn figures(
    results: &[PointResult],
    labels: &RelayLabels,
    scenario: &str,
    reader: crate::load::generator::ReaderKind,
    players: &[usize],
) -> RelayFigures {
    let slope = |server: &str| {
        let points: Vec<(f64, f64)> = medians(results, server, scenario, reader, players)
            .into_iter()
            .map(|(n, cpu)| (n as f64, cpu))
            .collect();
        least_squares(&points).map(|line| line.slope)
    };
    let origin = medians(results, &labels.origin, scenario, reader, players);
    let origin_alone = origin.iter().find(|(n, _)| *n == 0).map(|p| p.1);
    let pulled: Vec<f64> = origin
        .iter()
        .filter(|(n, _)| *n >= labels.edge_count.max(1))
        .map(|p| p.1)
        .collect();
    let origin_pulled = median(&pulled);
    let origin_per_edge = match (origin_alone, origin_pulled) {
        (Some(alone), Some(pulled)) => Some((pulled - alone) / labels.edge_count.max(1) as f64),
        _ => None,
    };
    RelayFigures {
        single_per_player: slope(&labels.single),
        edge_per_player: slope(&labels.edges),
        origin_alone,
        origin_pulled,
        origin_per_edge,
    }
}

/// `pct` as "MHz (pct %)", or "-".
fn cell(info: &RunInfo, pct: Option<f64>) -> String {
    match (pct, info.core_mhz) {
        (Some(p), Some(mhz)) => format!("{:.2} MHz ({p:.3} %)", p / 100.0 * mhz),
        (Some(p), None) => format!("{p:.3} %"),
        (None, _) => "-".into(),
    }
}

/// The report section.
pub(crate) fn section(info: &RunInfo, labels: &RelayLabels, results: &[PointResult]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## Relay: edges and origin against a single server\n\n\
         The load generator publishes to a siprtmp origin (`{origin}`); {e} siprtmp edge(s) \
         pull the stream from it (`[apps.live] pull`), and the players are spread over the \
         edges in turn (`{edges}`: the edges' CPU summed). In the same run, alternating with \
         it, the single siprtmp (`{single}`) serves the same players itself. Per player: the \
         slope of CPU over the player counts. Origin per edge: its CPU at the counts where \
         every edge has a player (so every edge pulls, once), less its CPU at 0 players (no \
         edge pulls), divided by {e}. CPU from on-CPU nanoseconds (schedstat), medians over the repeats.\n",
        origin = labels.origin,
        e = labels.edge_count,
        edges = labels.edges,
        single = labels.single,
    );
    let _ = writeln!(
        md,
        "| scenario | reader | single: per player | edge: per player | edge / single | origin, publisher alone | origin, {} edge(s) pulling | origin per edge |",
        labels.edge_count
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for scenario in &info.scenarios {
        for &reader in &info.readers {
            let f = figures(results, labels, &scenario.name, reader, &info.players);
            let ratio = match (f.edge_per_player, f.single_per_player) {
                (Some(e), Some(s)) if s > 0.0 => format!("{:.2}", e / s),
                _ => "-".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {ratio} | {} | {} | {} |",
                scenario.name,
                reader.name(),
                cell(info, f.single_per_player),
                cell(info, f.edge_per_player),
                cell(info, f.origin_alone),
                cell(info, f.origin_pulled),
                cell(info, f.origin_per_edge),
            );
        }
    }
    md
}

/// One line per scenario and reader kind for stderr.
pub(crate) fn summary_lines(
    info: &RunInfo,
    labels: &RelayLabels,
    results: &[PointResult],
) -> Vec<String> {
    let mut lines = Vec::new();
    for scenario in &info.scenarios {
        for &reader in &info.readers {
            let f = figures(results, labels, &scenario.name, reader, &info.players);
            lines.push(format!(
                "relay {} {}: per player single {}, edge {}; origin per edge {} (alone {}, pulled {})",
                scenario.name,
                reader.name(),
                cell(info, f.single_per_player),
                cell(info, f.edge_per_player),
                cell(info, f.origin_per_edge),
                cell(info, f.origin_alone),
                cell(info, f.origin_pulled),
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::generator::{Delivery, ReaderKind};

    fn point(server: &str, players: usize, cpu: f64) -> PointResult {
        PointResult {
            scenario: "av".into(),
            reader: ReaderKind::Eager,
            players,
            publishers: None,
            server: server.into(),
            repeat: 0,
            server_cpu: cpu,
            server_cpu_ns: cpu,
            loader_cpu: 0.0,
            window_secs: 1.0,
            peak_rss_kib: 0,
            delivery: Delivery::default(),
        }
    }

    #[test]
    fn per_player_is_the_slope_and_per_edge_the_origin_difference() {
        let labels = RelayLabels {
            single: "mio".into(),
            edges: "mio-edges2".into(),
            origin: "mio-origin".into(),
            edge_count: 2,
        };
        let players = [0, 20, 100];
        let mut results = Vec::new();
        for &n in &players {
            results.push(point("mio", n, 1.0 + 0.1 * n as f64));
            // Two edges: twice the fixed cost, a bit more per player.
            results.push(point("mio-edges2", n, 2.0 + 0.12 * n as f64));
            // 1 % with the publisher alone; 0.5 % more per pulling edge.
            let origin = if n == 0 { 1.0 } else { 2.0 };
            results.push(point("mio-origin", n, origin));
        }
        let f = figures(&results, &labels, "av", ReaderKind::Eager, &players);
        assert!((f.single_per_player.unwrap() - 0.1).abs() < 1e-9);
        assert!((f.edge_per_player.unwrap() - 0.12).abs() < 1e-9);
        assert_eq!(f.origin_alone, Some(1.0));
        assert_eq!(f.origin_pulled, Some(2.0));
        assert!((f.origin_per_edge.unwrap() - 0.5).abs() < 1e-9);
        // Without a 0-player point there is no figure per edge.
        let f = figures(&results, &labels, "av", ReaderKind::Eager, &[20, 100]);
        assert_eq!(f.origin_per_edge, None);
    }
}
