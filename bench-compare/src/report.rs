//! The written results: `report.md` (tables in the shape of the original project's: players
//! down, servers across, the original Python figures as the baseline), `results.csv` with
//! every point of every repeat, and one SVG plot per scenario and reader kind. The publisher
//! series (`--publishers`) has its own section, from [`crate::publisher_report`].

use std::fmt::Write as _;
use std::path::Path;

use crate::load::delay::DelayHistogram;
use crate::load::generator::{ReaderKind, BULK_LOW_WATER};
use crate::measure::PointResult;
use crate::publisher_report;
use crate::stats::{least_squares, median, Line};
use crate::svg::{self, Series};
use crate::RunInfo;

/// The original Python server under gevent on a 2.13 GHz Core 2 Duo: MHz per publisher and
/// per player.
const PYTHON_GEVENT: (f64, f64) = (34.0, 12.0);
/// The older "multitask" scheduler cost 1.5-2x as much.
const MULTITASK_FACTOR: (f64, f64) = (1.5, 2.0);

/// Median figures of one (scenario, reader, server) over the player counts.
struct Curve {
    /// (players, median server CPU %, median loader CPU %, median peak RSS KiB).
    points: Vec<(usize, f64, f64, f64)>,
    /// CPU % against players.
    fit: Option<Line>,
    /// Peak RSS KiB against players.
    rss_fit: Option<Line>,
}

/// Which CPU figure a table uses.
type CpuOf = fn(&PointResult) -> f64;

fn by_ticks(r: &PointResult) -> f64 {
    r.server_cpu
}

fn by_schedstat(r: &PointResult) -> f64 {
    r.server_cpu_ns
}

fn curve(results: &[&PointResult], players: &[usize], cpu_of: CpuOf) -> Curve {
    let mut points = Vec::new();
    for &n in players {
        let at: Vec<&&PointResult> = results.iter().filter(|r| r.players == n).collect();
        let cpu = median(&at.iter().map(|r| cpu_of(r)).collect::<Vec<_>>());
        let loader = median(&at.iter().map(|r| r.loader_cpu).collect::<Vec<_>>());
        let rss = median(&at.iter().map(|r| r.peak_rss_kib as f64).collect::<Vec<_>>());
        if let (Some(cpu), Some(loader), Some(rss)) = (cpu, loader, rss) {
            points.push((n, cpu, loader, rss));
        }
    }
    let fit = least_squares(&points.iter().map(|p| (p.0 as f64, p.1)).collect::<Vec<_>>());
    let rss_fit = least_squares(&points.iter().map(|p| (p.0 as f64, p.3)).collect::<Vec<_>>());
    Curve {
        points,
        fit,
        rss_fit,
    }
}

fn mhz(info: &RunInfo, pct: f64) -> String {
    match info.core_mhz {
        Some(m) => format!("{:.2}", pct / 100.0 * m),
        None => "-".into(),
    }
}

fn reader_text(reader: ReaderKind) -> String {
    match reader {
        ReaderKind::Eager => "players read every message as it arrives".into(),
        ReaderKind::Bulk => format!(
            "players set SO_RCVLOWAT {} KiB (woken once that much is queued)",
            BULK_LOW_WATER / 1024
        ),
    }
}

/// Writes report.md, results.csv and the plots into `dir`.
pub(crate) fn write_all(
    dir: &Path,
    info: &RunInfo,
    results: &[PointResult],
    failures: &[String],
) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("results.csv", &csv(results))?;
    let mut md = String::new();
    header(&mut md, info);
    if !info.players.is_empty() {
        let players: Vec<PointResult> = results
            .iter()
            .filter(|r| r.publishers.is_none())
            .cloned()
            .collect();
        player_sections(&mut md, dir, info, &players)?;
    }
    md.push_str(&publisher_report::section(info, results));
    publisher_report::write_plots(dir, info, results)?;
    let _ = writeln!(md, "\n## Delivery\n");
    let checked = |publishers: bool| {
        let mine = results
            .iter()
            .filter(|r| r.publishers.is_some() == publishers);
        (
            mine.clone().filter(|r| r.is_complete()).count(),
            mine.count(),
        )
    };
    let (complete, points) = checked(false);
    if points > 0 {
        let sent: u64 = results
            .iter()
            .filter(|r| r.publishers.is_none())
            .map(|r| r.delivery.sent)
            .sum();
        let _ = writeln!(
            md,
            "{complete} of {points} player points delivered every window frame to every player, \
             in order ({sent} frames published in windows in total; per-point counts in \
             results.csv).",
        );
    }
    let (complete, points) = checked(true);
    if points > 0 {
        let _ = writeln!(
            md,
            "{complete} of {points} publisher points had every publisher publishing through the \
             window and the server reading every byte it sent (per-point counts in results.csv)."
        );
    }
    md.push_str(&failures_section(failures));
    write("report.md", &md)
}

/// The sections of the player series: a table and a plot per scenario and reader kind, the
/// summaries, memory and delay.
fn player_sections(
    md: &mut String,
    dir: &Path,
    info: &RunInfo,
    results: &[PointResult],
) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    for scenario in &info.scenarios {
        for &reader in &info.readers {
            let name = format!("{}-{}", scenario.name, reader.name());
            let _ = writeln!(
                md,
                "\n## {}, {}\n\n{}; {}. Server CPU in % of one core (MHz-equivalent), median of {} repeat(s).\n",
                scenario.name,
                reader.name(),
                scenario.description,
                reader_text(reader),
                info.repeats
            );
            let curves: Vec<(String, Curve)> = info
                .servers
                .iter()
                .map(|s| {
                    let mine: Vec<&PointResult> = results
                        .iter()
                        .filter(|r| {
                            &r.server == s && r.scenario == scenario.name && r.reader == reader
                        })
                        .collect();
                    (s.clone(), curve(&mine, &info.players, by_ticks))
                })
                .collect();
            table(md, info, &curves);
            let svg_name = format!("cpu-{name}.svg");
            let series: Vec<Series> = curves
                .iter()
                .map(|(s, c)| Series {
                    label: s.clone(),
                    points: c.points.iter().map(|p| (p.0, p.1)).collect(),
                })
                .collect();
            write(
                &svg_name,
                &svg::plot(
                    &format!(
                        "Server CPU vs players: {}, {}",
                        scenario.name,
                        reader.name()
                    ),
                    "players",
                    "% of one core",
                    &series,
                ),
            )?;
            let _ = writeln!(md, "\n![CPU vs players, {name}]({svg_name})");
        }
    }
    summary_table(
        md,
        info,
        results,
        "Summary: MHz per publisher / MHz per player",
        by_ticks,
    );
    ratio_table(md, info, results);
    summary_table(
        md,
        info,
        results,
        "Cross-check: the same from on-CPU nanoseconds (/proc/PID/task/*/schedstat)",
        by_schedstat,
    );
    memory_table(md, info, results);
    delay_table(md, info, results);
    Ok(())
}

/// "No failures." or the list of failures.
pub(crate) fn failures_section(failures: &[String]) -> String {
    let mut md = String::new();
    if failures.is_empty() {
        let _ = writeln!(md, "\nNo failures.");
    } else {
        let _ = writeln!(md, "\nFailures:\n");
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

fn header(md: &mut String, info: &RunInfo) {
    let _ = writeln!(md, "# bench-compare: CPU per publisher and per player\n");
    let _ = writeln!(md, "Command: `{}`\n", info.command);
    let _ = writeln!(
        md,
        "Machine: {} logical CPU(s), {}, core clock {} (MHz-equivalent = % of one core x this clock).\n",
        info.cpus,
        info.cpu_model,
        info.core_mhz
            .map_or("unknown".into(), |m| format!("{m:.0} MHz"))
    );
    if !info.players.is_empty() {
        player_method(md, info);
    }
    if !info.notes.is_empty() {
        // The machine line ends in a blank line; the method's last paragraph does not.
        let gap = if info.players.is_empty() { "" } else { "\n" };
        let _ = writeln!(md, "{gap}Notes:\n");
        for n in &info.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
}

fn player_method(md: &mut String, info: &RunInfo) {
    let _ = writeln!(
        md,
        "Method: for each repeat, scenario, reader kind and player count N, each server in turn \
         is started fresh on a loopback port; one load-generator thread (mio) connects one \
         publisher (media paced in real time, looped) and N players; after {:.1} s of warm-up \
         the server's utime+stime (/proc/PID/stat) is read over a {:.1} s window. Every \
         player counts the frames of the window it received (a sequence number rides in each \
         frame) against the frames sent. Per publisher = CPU at N = 0; per player = slope of a \
         least-squares line through the medians over N (as the original did). With video, the \
         warm-up lasts at least one keyframe interval + 0.5 s, because nginx-rtmp holds a new \
         player's video until the next keyframe. Player counts: {:?}.\n",
        info.timing.warmup.as_secs_f64(),
        info.timing.window.as_secs_f64(),
        info.players
    );
    let _ = writeln!(
        md,
        "Baseline: the original Python server, {} MHz per publisher and {} MHz per player \
         under gevent on a 2.13 GHz Core 2 Duo ({}-{}x more under the older multitask \
         scheduler). MHz across CPU generations is a rough yardstick only; the comparison \
         with nginx-rtmp on this machine, in the same run, is the like-for-like one.",
        PYTHON_GEVENT.0, PYTHON_GEVENT.1, MULTITASK_FACTOR.0, MULTITASK_FACTOR.1
    );
}

fn table(md: &mut String, info: &RunInfo, curves: &[(String, Curve)]) {
    let _ = write!(md, "| players |");
    for (s, _) in curves {
        let _ = write!(md, " {s} |");
    }
    let _ = writeln!(md, " Python gevent (original, MHz) | loader CPU % (max) |");
    let _ = writeln!(md, "|---:|{}---:|---:|", "---:|".repeat(curves.len()));
    for &n in &info.players {
        let _ = write!(md, "| {n} |");
        let mut loader: f64 = 0.0;
        for (_, c) in curves {
            match c.points.iter().find(|p| p.0 == n) {
                Some(p) => {
                    loader = loader.max(p.2);
                    let _ = write!(md, " {:.2} % ({}) |", p.1, mhz(info, p.1));
                }
                None => {
                    let _ = write!(md, " - |");
                }
            }
        }
        let _ = writeln!(
            md,
            " {:.0} | {loader:.1} |",
            PYTHON_GEVENT.0 + PYTHON_GEVENT.1 * n as f64
        );
    }
    let _ = write!(md, "| fit: MHz at N=0 + MHz/player |");
    for (_, c) in curves {
        match c.fit {
            Some(f) => {
                let _ = write!(md, " {} + {} |", mhz(info, f.intercept), mhz(info, f.slope));
            }
            None => {
                let _ = write!(md, " - |");
            }
        }
    }
    let _ = writeln!(md, " {} + {} | |", PYTHON_GEVENT.0, PYTHON_GEVENT.1);
}

fn summary_table(
    md: &mut String,
    info: &RunInfo,
    results: &[PointResult],
    title: &str,
    cpu_of: CpuOf,
) {
    let _ = writeln!(
        md,
        "\n## {title}\n\nPublisher = measured at N = 0 (one publisher over a window is a tick \
         or two of /proc: `--publishers` measures the cost per publisher as a slope instead); \
         player = least-squares slope over N.\n"
    );
    let mut cols = Vec::new();
    for scenario in &info.scenarios {
        for reader in &info.readers {
            cols.push(format!("{} / {}", scenario.name, reader.name()));
        }
    }
    let _ = writeln!(md, "| server | {} |", cols.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(cols.len()));
    for server in &info.servers {
        let mut cells = Vec::new();
        for scenario in &info.scenarios {
            for &reader in &info.readers {
                let mine: Vec<&PointResult> = results
                    .iter()
                    .filter(|r| {
                        &r.server == server && r.scenario == scenario.name && r.reader == reader
                    })
                    .collect();
                let c = curve(&mine, &info.players, cpu_of);
                let publisher = c
                    .points
                    .iter()
                    .find(|p| p.0 == 0)
                    .map_or("-".into(), |p| mhz(info, p.1));
                let player = c.fit.map_or("-".into(), |f| mhz(info, f.slope));
                cells.push(format!("{publisher} / {player}"));
            }
        }
        let _ = writeln!(md, "| {server} | {} |", cells.join(" | "));
    }
    let gevent = format!("{} / {}", PYTHON_GEVENT.0, PYTHON_GEVENT.1);
    let multi = format!(
        "{:.0}-{:.0} / {:.0}-{:.0}",
        PYTHON_GEVENT.0 * MULTITASK_FACTOR.0,
        PYTHON_GEVENT.0 * MULTITASK_FACTOR.1,
        PYTHON_GEVENT.1 * MULTITASK_FACTOR.0,
        PYTHON_GEVENT.1 * MULTITASK_FACTOR.1
    );
    let _ = writeln!(
        md,
        "| Python gevent (original, Core 2 Duo 2.13 GHz) | {} |",
        vec![gevent; cols.len()].join(" | ")
    );
    let _ = writeln!(
        md,
        "| Python multitask (original) | {} |",
        vec![multi; cols.len()].join(" | ")
    );
}

/// CPU per player of each server as a multiple of nginx-rtmp's (tracker issue 7 asks for at
/// most 0.5x with merged writes); nothing without nginx-rtmp in the run.
fn ratio_table(md: &mut String, info: &RunInfo, results: &[PointResult]) {
    const NGINX: &str = "nginx-rtmp";
    if !info.servers.iter().any(|s| s == NGINX) {
        return;
    }
    let slope = |server: &str, scenario: &str, reader: ReaderKind| -> Option<f64> {
        let mine: Vec<&PointResult> = results
            .iter()
            .filter(|r| r.server == server && r.scenario == scenario && r.reader == reader)
            .collect();
        curve(&mine, &info.players, by_ticks).fit.map(|f| f.slope)
    };
    let _ = writeln!(
        md,
        "\n## CPU per player relative to nginx-rtmp\n\nEach server's per-player slope divided \
         by nginx-rtmp's in the same run (below 1: cheaper than nginx-rtmp).\n"
    );
    let mut cols = Vec::new();
    for scenario in &info.scenarios {
        for reader in &info.readers {
            cols.push(format!("{} / {}", scenario.name, reader.name()));
        }
    }
    let _ = writeln!(md, "| server | {} |", cols.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(cols.len()));
    for server in info.servers.iter().filter(|s| *s != NGINX) {
        let mut cells = Vec::new();
        for scenario in &info.scenarios {
            for &reader in &info.readers {
                let mine = slope(server, &scenario.name, reader);
                let theirs = slope(NGINX, &scenario.name, reader);
                cells.push(match (mine, theirs) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                    _ => "-".into(),
                });
            }
        }
        let _ = writeln!(md, "| {server} | {} |", cells.join(" | "));
    }
}

/// Publish-to-player delay at the largest player count: every window frame at every player,
/// all repeats merged.
fn delay_table(md: &mut String, info: &RunInfo, results: &[PointResult]) {
    let top = info.players.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        md,
        "\n## Publish-to-player delay at {top} players, ms (p50 / p99 / max)\n\n\
         From the loader's write of a frame as publisher to its read at each player, every \
         window frame at every player, all repeats merged. A bulk reader's figure includes \
         the wait for 16 KiB to be queued (SO_RCVLOWAT), whatever the server.\n"
    );
    let mut cols = Vec::new();
    for scenario in &info.scenarios {
        for reader in &info.readers {
            cols.push(format!("{} / {}", scenario.name, reader.name()));
        }
    }
    let _ = writeln!(md, "| server | {} |", cols.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(cols.len()));
    for server in &info.servers {
        let mut cells = Vec::new();
        for scenario in &info.scenarios {
            for &reader in &info.readers {
                let mut all = DelayHistogram::default();
                for r in results.iter().filter(|r| {
                    &r.server == server
                        && r.scenario == scenario.name
                        && r.reader == reader
                        && r.players == top
                }) {
                    all.merge(&r.delivery.delay);
                }
                cells.push(all.table_cell());
            }
        }
        let _ = writeln!(md, "| {server} | {} |", cells.join(" | "));
    }
}

fn memory_table(md: &mut String, info: &RunInfo, results: &[PointResult]) {
    let _ = writeln!(
        md,
        "\n## Peak RSS (VmHWM), MiB, median over repeats and reader kinds\n"
    );
    let _ = write!(md, "| scenario | players |");
    for s in &info.servers {
        let _ = write!(md, " {s} |");
    }
    let _ = writeln!(md, "\n|---|---:|{}", "---:|".repeat(info.servers.len()));
    for scenario in &info.scenarios {
        let curves: Vec<Curve> = info
            .servers
            .iter()
            .map(|s| {
                let mine: Vec<&PointResult> = results
                    .iter()
                    .filter(|r| &r.server == s && r.scenario == scenario.name)
                    .collect();
                curve(&mine, &info.players, by_ticks)
            })
            .collect();
        for &n in &info.players {
            let _ = write!(md, "| {} | {n} |", scenario.name);
            for c in &curves {
                match c.points.iter().find(|p| p.0 == n) {
                    Some(p) => {
                        let _ = write!(md, " {:.1} |", p.3 / 1024.0);
                    }
                    None => {
                        let _ = write!(md, " - |");
                    }
                }
            }
            let _ = writeln!(md);
        }
        let _ = write!(md, "| {} | KiB per player (slope) |", scenario.name);
        for c in &curves {
            match c.rss_fit {
                Some(f) => {
                    let _ = write!(md, " {:.1} |", f.slope);
                }
                None => {
                    let _ = write!(md, " - |");
                }
            }
        }
        let _ = writeln!(md);
    }
}

fn csv(results: &[PointResult]) -> String {
    let mut out = String::from(
        "scenario,reader,players,server,repeat,server_cpu_pct,server_cpu_pct_schedstat,\
         loader_cpu_pct,window_s,peak_rss_kib,frames_sent,min_frames_received,\
         players_complete,failure,delay_p50_ms,delay_p99_ms,delay_max_ms,series,publishers\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.4},{:.4},{:.3},{:.3},{},{},{},{},{},{},{},{}",
            r.scenario,
            // A publisher point has no player, so no reader kind.
            if r.publishers.is_some() {
                "-"
            } else {
                r.reader.name()
            },
            r.players,
            r.server,
            r.repeat + 1,
            r.server_cpu,
            r.server_cpu_ns,
            r.loader_cpu,
            r.window_secs,
            r.peak_rss_kib,
            r.delivery.sent,
            r.delivery.min_received,
            r.delivery.complete,
            r.delivery
                .failure
                .as_deref()
                .unwrap_or("")
                .replace([',', '\n'], ";"),
            r.delivery.delay.csv_fields(),
            if r.publishers.is_some() {
                "publishers"
            } else {
                "players"
            },
            r.publishers.unwrap_or(1),
        );
    }
    out
}
