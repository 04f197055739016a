//! The publisher series in the written results (`--publishers`): per scenario, server CPU
//! against N publishers (each on its own stream, no player) with its least-squares line, the
//! "per publisher" summary (the slope, MHz per publisher, and its ratio to nginx-rtmp's in
//! the same run) and one SVG plot per scenario.

use std::fmt::Write as _;
use std::path::Path;

use crate::measure::PointResult;
use crate::stats::{least_squares, median, Line};
use crate::svg::{self, Series};
use crate::RunInfo;

/// The server every ratio is taken against.
const NGINX: &str = "nginx-rtmp";

/// Median figures of one (scenario, server) over the publisher counts.
#[derive(Debug)]
pub(crate) struct PublisherCurve {
    /// (publishers, median server CPU %, median loader CPU %).
    pub points: Vec<(usize, f64, f64)>,
    /// Server CPU % against publishers: the slope is the CPU per publisher.
    pub fit: Option<Line>,
}

/// The curve of `server` in `scenario` over `counts`, from the publisher points of `results`
/// (player points are left out), with the CPU from utime+stime.
pub(crate) fn curve(
    results: &[PointResult],
    server: &str,
    scenario: &str,
    counts: &[usize],
) -> PublisherCurve {
    curve_of(results, server, scenario, counts, |r| r.server_cpu)
}

/// [`curve`] with the CPU figure `cpu_of` takes from a point.
fn curve_of(
    results: &[PointResult],
    server: &str,
    scenario: &str,
    counts: &[usize],
    cpu_of: fn(&PointResult) -> f64,
) -> PublisherCurve {
    let mut points = Vec::new();
    for &n in counts {
        let at: Vec<&PointResult> = results
            .iter()
            .filter(|r| r.publishers == Some(n) && r.server == server && r.scenario == scenario)
            .collect();
        let cpu = median(&at.iter().map(|r| cpu_of(r)).collect::<Vec<_>>());
        let loader = median(&at.iter().map(|r| r.loader_cpu).collect::<Vec<_>>());
        if let (Some(cpu), Some(loader)) = (cpu, loader) {
            points.push((n, cpu, loader));
        }
    }
    let fit = least_squares(&points.iter().map(|p| (p.0 as f64, p.1)).collect::<Vec<_>>());
    PublisherCurve { points, fit }
}

fn mhz(info: &RunInfo, pct: f64) -> String {
    match info.core_mhz {
        Some(m) => format!("{:.2}", pct / 100.0 * m),
        None => "-".into(),
    }
}

/// CPU per publisher of `server` as a multiple of nginx-rtmp's; `None` without both slopes
/// or with nginx-rtmp's not above zero.
pub(crate) fn ratio_to_nginx(
    results: &[PointResult],
    server: &str,
    scenario: &str,
    counts: &[usize],
) -> Option<f64> {
    let mine = curve(results, server, scenario, counts).fit?.slope;
    let theirs = curve(results, NGINX, scenario, counts).fit?.slope;
    (theirs > 0.0).then(|| mine / theirs)
}

/// The report's section on the publisher series; empty when the run had none.
pub(crate) fn section(info: &RunInfo, results: &[PointResult]) -> String {
    let mut md = String::new();
    if info.publishers.is_empty() {
        return md;
    }
    let counts = &info.publishers;
    let _ = writeln!(
        md,
        "\n## CPU per publisher\n\nEach point: N publishers, each publishing its own stream \
         (`bench-0`, `bench-1`, ...) with the scenario's media paced in real time, and no \
         player; server CPU in % of one core (MHz-equivalent), median of {} repeat(s); per \
         publisher = the slope of a least-squares line through the medians over N = {:?}. \
         A point passes only if every publisher got NetStream.Publish.Start, was neither \
         dropped nor sent an error status through the window and the drain, and the server \
         read every byte it sent (after the window the publishers stop, and the publisher's \
         send queue and the server's receive queue of each connection in /proc/net/tcp must \
         reach 0).",
        info.repeats, counts
    );
    for scenario in &info.scenarios {
        let curves: Vec<(&String, PublisherCurve)> = info
            .servers
            .iter()
            .map(|s| (s, curve(results, s, &scenario.name, counts)))
            .collect();
        let _ = writeln!(
            md,
            "\n### {}, publishers\n\n{}.\n",
            scenario.name, scenario.description
        );
        let _ = write!(md, "| publishers |");
        for (s, _) in &curves {
            let _ = write!(md, " {s} |");
        }
        let _ = writeln!(md, " loader CPU % (max) |");
        let _ = writeln!(md, "|---:|{}---:|", "---:|".repeat(curves.len()));
        for &n in counts {
            let _ = write!(md, "| {n} |");
            let mut loader: f64 = 0.0;
            for (_, c) in &curves {
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
            let _ = writeln!(md, " {loader:.1} |");
        }
        let _ = write!(md, "| fit: MHz at N=0 + MHz/publisher |");
        for (_, c) in &curves {
            match c.fit {
                Some(f) => {
                    let _ = write!(md, " {} + {} |", mhz(info, f.intercept), mhz(info, f.slope));
                }
                None => {
                    let _ = write!(md, " - |");
                }
            }
        }
        let _ = writeln!(md, " |");
        let svg_name = format!("cpu-{}-publishers.svg", scenario.name);
        let _ = writeln!(md, "\n![CPU vs publishers, {}]({svg_name})", scenario.name);
    }
    per_publisher_table(&mut md, info, results);
    cross_check_table(&mut md, info, results);
    md
}

/// The slopes again from on-CPU nanoseconds (schedstat), finer than the ticks of utime+stime.
fn cross_check_table(md: &mut String, info: &RunInfo, results: &[PointResult]) {
    let _ = writeln!(
        md,
        "\nCross-check: MHz per publisher from on-CPU nanoseconds \
         (/proc/PID/task/*/schedstat), same points.\n"
    );
    let names: Vec<&str> = info.scenarios.iter().map(|s| s.name.as_str()).collect();
    let _ = writeln!(md, "| server | {} |", names.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(names.len()));
    for server in &info.servers {
        let cells: Vec<String> = names
            .iter()
            .map(|scenario| {
                curve_of(results, server, scenario, &info.publishers, |r| {
                    r.server_cpu_ns
                })
                .fit
                .map_or("-".into(), |f| mhz(info, f.slope))
            })
            .collect();
        let _ = writeln!(md, "| {server} | {} |", cells.join(" | "));
    }
}

/// "Per publisher": MHz per publisher of each server in each scenario, and its ratio to
/// nginx-rtmp's (tracker issue 26 asks siprtmp for at most 0.5x).
fn per_publisher_table(md: &mut String, info: &RunInfo, results: &[PointResult]) {
    let counts = &info.publishers;
    let with_nginx = info.servers.iter().any(|s| s == NGINX);
    let _ = writeln!(
        md,
        "\n## Per publisher\n\nMHz per publisher (least-squares slope over N publishers){}.\n",
        if with_nginx {
            " and, in brackets, the slope as a multiple of nginx-rtmp's in the same run \
             (below 1: cheaper than nginx-rtmp)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| server | {} |",
        info.scenarios
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---:|".repeat(info.scenarios.len()));
    for server in &info.servers {
        let cells: Vec<String> = info
            .scenarios
            .iter()
            .map(|scenario| {
                let c = curve(results, server, &scenario.name, counts);
                let Some(fit) = c.fit else {
                    return "-".into();
                };
                let per = mhz(info, fit.slope);
                match ratio_to_nginx(results, server, &scenario.name, counts) {
                    Some(r) if with_nginx && server != NGINX => format!("{per} ({r:.2}x)"),
                    _ => per,
                }
            })
            .collect();
        let _ = writeln!(md, "| {server} | {} |", cells.join(" | "));
    }
}

/// Writes one plot per scenario of server CPU against publishers.
pub(crate) fn write_plots(
    dir: &Path,
    info: &RunInfo,
    results: &[PointResult],
) -> Result<(), String> {
    if info.publishers.is_empty() {
        return Ok(());
    }
    for scenario in &info.scenarios {
        let series: Vec<Series> = info
            .servers
            .iter()
            .map(|s| Series {
                label: s.clone(),
                points: curve(results, s, &scenario.name, &info.publishers)
                    .points
                    .iter()
                    .map(|p| (p.0, p.1))
                    .collect(),
            })
            .collect();
        let name = format!("cpu-{}-publishers.svg", scenario.name);
        let svg = svg::plot(
            &format!("Server CPU vs publishers: {}", scenario.name),
            "publishers",
            "% of one core",
            &series,
        );
        std::fs::write(dir.join(&name), svg).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// One line per server and scenario for the end of the run: MHz per publisher and the ratio
/// to nginx-rtmp.
pub(crate) fn summary_lines(info: &RunInfo, results: &[PointResult]) -> Vec<String> {
    let mut lines = Vec::new();
    for scenario in &info.scenarios {
        for server in &info.servers {
            let c = curve(results, server, &scenario.name, &info.publishers);
            let Some(fit) = c.fit else { continue };
            let ratio = match ratio_to_nginx(results, server, &scenario.name, &info.publishers) {
                Some(r) if server != NGINX => format!(" ({r:.2}x nginx-rtmp)"),
                _ => String::new(),
            };
            lines.push(format!(
                "{} {server}: {} MHz per publisher{ratio}",
                scenario.name,
                mhz(info, fit.slope)
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::generator::{Delivery, ReaderKind};
    use crate::load::media::MediaLoop;
    use crate::measure::{Scenario, Timing};
    use std::sync::Arc;
    use std::time::Duration;

    fn point(server: &str, publishers: Option<usize>, players: usize, cpu: f64) -> PointResult {
        PointResult {
            scenario: "audio".into(),
            reader: ReaderKind::Eager,
            players,
            publishers,
            server: server.into(),
            repeat: 0,
            server_cpu: cpu,
            // schedstat reads twice the ticks here, to tell the two tables apart.
            server_cpu_ns: cpu * 2.0,
            loader_cpu: 1.0,
            window_secs: 5.0,
            peak_rss_kib: 4096,
            delivery: Delivery::default(),
        }
    }

    fn info(publishers: Vec<usize>) -> RunInfo {
        // A one-frame audio loop: the report reads only the scenario's name and description.
        let tag = crate::flv::FlvTag {
            type_id: 8,
            timestamp: 0,
            body: vec![0xb2; 40].into(),
        };
        RunInfo {
            command: "bench-compare --publishers 0,20,100".into(),
            servers: vec!["mio".into(), NGINX.into()],
            notes: Vec::new(),
            scenarios: vec![Scenario {
                name: "audio".into(),
                description: "Speex".into(),
                media: Arc::new(MediaLoop::new(vec![tag]).unwrap()),
            }],
            readers: vec![ReaderKind::Eager],
            players: Vec::new(),
            publishers,
            repeats: 3,
            timing: Timing {
                warmup: Duration::from_secs(3),
                window: Duration::from_secs(5),
                setup_timeout: Duration::from_secs(30),
                drain_timeout: Duration::from_secs(5),
            },
            core_mhz: Some(2000.0),
            cpu_model: "test".into(),
            cpus: 2,
            sipp_scenario: String::new(),
        }
    }

    /// mio: 0.2 % + 0.01 % per publisher, nginx-rtmp: 0.3 % + 0.04 %, three repeats each
    /// with one outlier the median drops; a player point of mio at N=0 that must be ignored.
    fn results() -> Vec<PointResult> {
        let mut all = Vec::new();
        for n in [0, 20, 100] {
            for (server, base, per) in [("mio", 0.2, 0.01), (NGINX, 0.3, 0.04)] {
                let cpu = base + per * n as f64;
                all.push(point(server, Some(n), 0, cpu));
                all.push(point(server, Some(n), 0, cpu));
                all.push(point(server, Some(n), 0, cpu * 5.0));
            }
        }
        all.push(point("mio", None, 0, 50.0));
        all
    }

    #[test]
    fn the_slope_over_publishers_is_the_cost_per_publisher() {
        let c = curve(&results(), "mio", "audio", &[0, 20, 100]);
        assert_eq!(c.points.len(), 3);
        let fit = c.fit.unwrap();
        assert!((fit.slope - 0.01).abs() < 1e-9, "{fit:?}");
        assert!((fit.intercept - 0.2).abs() < 1e-9, "{fit:?}");
        let r = ratio_to_nginx(&results(), "mio", "audio", &[0, 20, 100]).unwrap();
        assert!((r - 0.25).abs() < 1e-9, "{r}");
    }

    #[test]
    fn the_section_gives_mhz_per_publisher_and_the_ratio() {
        let md = section(&info(vec![0, 20, 100]), &results());
        // 0.01 % of a 2000 MHz core = 0.20 MHz per publisher, a quarter of nginx-rtmp's 0.80.
        assert!(md.contains("## Per publisher"), "{md}");
        assert!(md.contains("| mio | 0.20 (0.25x) |"), "{md}");
        assert!(md.contains("| nginx-rtmp | 0.80 |"), "{md}");
        assert!(
            md.contains("| 100 | 1.20 % (24.00) | 4.30 % (86.00) | 1.0 |"),
            "{md}"
        );
        assert!(md.contains("| fit: MHz at N=0 + MHz/publisher | 4.00 + 0.20 | 6.00 + 0.80 |"));
        let cross = md.split("Cross-check").nth(1).expect("a cross-check table");
        assert!(cross.contains("| mio | 0.40 |"), "{cross}");
        assert!(cross.contains("| nginx-rtmp | 1.60 |"), "{cross}");
        assert_eq!(
            summary_lines(&info(vec![0, 20, 100]), &results()),
            vec![
                "audio mio: 0.20 MHz per publisher (0.25x nginx-rtmp)".to_owned(),
                "audio nginx-rtmp: 0.80 MHz per publisher".to_owned(),
            ]
        );
    }

    #[test]
    fn no_publisher_series_no_section() {
        assert_eq!(section(&info(Vec::new()), &results()), "");
    }

    #[test]
    fn one_publisher_count_gives_no_slope() {
        let md = section(&info(vec![20]), &results());
        assert!(md.contains("| mio | - |"), "{md}");
    }
}
