//! The gateway scenario's written results: a markdown section (CPU by number of calls per
//! runtime and codec, MHz per call as the least-squares slope beside the original's 66 MHz per Speex
//! call, peak RSS per call, frames sent vs echoed), `gateway.csv` with every point of every
//! repeat, and `cpu-gateway.svg` (CPU vs calls).

use std::fmt::Write as _;
use std::path::Path;

use crate::gateway::{GatewayPoint, MIN_ECHO};
use crate::load::delay::DelayHistogram;
use crate::stats::{least_squares, median};
use crate::svg::{self, Series};
use crate::RunInfo;

/// The original gateway (Python, gevent, 2.13 GHz Core 2 Duo): MHz per Speex call.
const PYTHON_GEVENT_CALL: f64 = 66.0;
/// The older "multitask" scheduler cost 1.5-2x as much.
const MULTITASK_FACTOR: (f64, f64) = (1.5, 2.0);

/// Medians over repeats of one server at each call count: (calls, CPU %, RSS KiB, sipp %,
/// loader %, schedstat CPU %, whether every call of every repeat got [`MIN_ECHO`] of its
/// frames back).
type Medians = (usize, f64, f64, f64, f64, f64, bool);

fn medians(points: &[&GatewayPoint], calls: &[usize]) -> Vec<Medians> {
    calls
        .iter()
        .filter_map(|&n| {
            let at: Vec<&&GatewayPoint> = points.iter().filter(|p| p.calls == n).collect();
            let m =
                |f: fn(&GatewayPoint) -> f64| median(&at.iter().map(|p| f(p)).collect::<Vec<_>>());
            Some((
                n,
                m(|p| p.server_cpu)?,
                m(|p| p.peak_rss_kib as f64)?,
                m(|p| p.sipp_cpu)?,
                m(|p| p.loader_cpu)?,
                m(|p| p.server_cpu_ns)?,
                at.iter().all(|p| p.echo.all_at_least(MIN_ECHO)),
            ))
        })
        .collect()
}

fn mhz(info: &RunInfo, pct: f64) -> String {
    info.core_mhz
        .map_or("-".into(), |m| format!("{:.1}", pct / 100.0 * m))
}

/// The curves (runtime and codec, [`GatewayPoint::series`]) in the order they were measured.
fn series(points: &[GatewayPoint]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for p in points {
        let s = p.series();
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all
}

/// Each curve's medians, in measuring order (curves without a point left out).
fn per_server(
    _info: &RunInfo,
    calls: &[usize],
    points: &[GatewayPoint],
) -> Vec<(String, Vec<Medians>)> {
    series(points)
        .into_iter()
        .map(|s| {
            let mine: Vec<&GatewayPoint> = points.iter().filter(|p| p.series() == s).collect();
            let m = medians(&mine, calls);
            (s, m)
        })
        .filter(|(_, m)| !m.is_empty())
        .collect()
}

/// Least-squares fit of CPU (`y`) over the call counts the server kept up with: where calls
/// lost frames, the machine was saturated (server, loader and sipp share two cores), CPU
/// cannot grow with the load, and fitting it would flatten the slope.
fn cpu_fit(m: &[Medians], y: fn(&Medians) -> f64) -> Option<crate::stats::Line> {
    let kept: Vec<(f64, f64)> = m
        .iter()
        .filter(|p| p.6)
        .map(|p| (p.0 as f64, y(p)))
        .collect();
    least_squares(&kept)
}

/// The slope of [`cpu_fit`].
fn slope(m: &[Medians], y: fn(&Medians) -> f64) -> Option<f64> {
    cpu_fit(m, y).map(|l| l.slope)
}

/// Call counts left out of the fit, for the report.
fn saturated(m: &[Medians]) -> Vec<usize> {
    m.iter().filter(|p| !p.6).map(|p| p.0).collect()
}

/// One line per server for the terminal: MHz per call beside the original's figure.
pub(crate) fn summary_lines(
    info: &RunInfo,
    calls: &[usize],
    points: &[GatewayPoint],
) -> Vec<String> {
    per_server(info, calls, points)
        .iter()
        .map(|(s, m)| match slope(m, |p| p.1) {
            Some(k) => format!(
                "gateway {s}: {} MHz per call ({k:.3} % of a core{}), round trip p50/p99/max {} ms at {} calls; original: {PYTHON_GEVENT_CALL:.0} MHz under gevent, {:.0}-{:.0} under multitask",
                mhz(info, k),
                match saturated(m).as_slice() {
                    [] => String::new(),
                    lost => format!("; {lost:?} calls lost frames, not fitted"),
                },
                merged_delay(points, s, m.last().map_or(0, |p| p.0)).table_cell(),
                m.last().map_or(0, |p| p.0),
                PYTHON_GEVENT_CALL * MULTITASK_FACTOR.0,
                PYTHON_GEVENT_CALL * MULTITASK_FACTOR.1
            ),
            None => format!("gateway {s}: one call count only, no per-call slope"),
        })
        .collect()
}

/// The markdown section for `points` (servers in `info.servers` order, `calls` as measured).
pub(crate) fn section(info: &RunInfo, calls: &[usize], points: &[GatewayPoint]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## SIP-RTMP gateway: CPU per call\n\n\
         Each point: a fresh `siprtmp --int-ip 127.0.0.1 --rtp-ports 26000-29999` and a fresh \
         sipp UAS with `-rtp_echo` (it sends every RTP packet back), answering with the \
         client's codec (`{}`: the first offered) or, for a transcoded codec, only the codec \
         named after the dash (`uas_echo_pcmu_only.xml`, `uas_echo_pcma_only.xml`, \
         `uas_echo_speex_only.xml`). The load generator (one mio thread) places N \
         calls, each its own RTMP client `rtmp://127.0.0.1/sip/callerI@127.0.0.1`: \
         `invite(\"sip:echo@127.0.0.1:PORT\", CODEC)`, `accepted`, publish `local`, \
         play `remote`, then the frames of the codec's file, one message per 20 ms, looped \
         (the codecs: {}). Passed through, each frame carries a sequence number in its last 8 \
         bytes; transcoded, the frames go out as the file has them and an echoed frame is told \
         by its RTMP timestamp, which the gateway gives back as the frame's own plus a constant \
         of the call (learnt from the call's first frame, sent alone). After {:.1} s of \
         warm-up the server's utime+stime is read over a {:.1} s window; every call counts \
         which of its window's frames came back on `remote` (RTMP -> RTP -> sipp -> RTP -> \
         RTMP) and must get at least {:.0} % of them. MHz per call = least-squares slope of \
         the medians (of {} repeat(s)) over N = {:?}, leaving out the call counts where a call \
         got less back (the two cores were saturated: see the last table).\n",
        info.sipp_scenario,
        codecs_described(info),
        info.timing.warmup.as_secs_f64(),
        info.timing.window.as_secs_f64(),
        MIN_ECHO * 100.0,
        info.repeats,
        calls
    );
    let per_server = per_server(info, calls, points);

    // Server CPU by calls.
    let _ = write!(md, "| calls |");
    for (s, _) in &per_server {
        let _ = write!(md, " {s}: % core (MHz) |");
    }
    let _ = write!(md, " Python gevent (original), MHz |\n|---:|");
    for _ in &per_server {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md, "---:|");
    for &n in calls {
        let _ = write!(md, "| {n} |");
        for (_, m) in &per_server {
            match m.iter().find(|p| p.0 == n) {
                Some(p) => {
                    let _ = write!(md, " {:.2} ({}) |", p.1, mhz(info, p.1));
                }
                None => {
                    let _ = write!(md, " - |");
                }
            }
        }
        let _ = writeln!(md, " {:.0} |", PYTHON_GEVENT_CALL * n as f64);
    }

    // Summary: slope per call, RSS per call.
    let _ = writeln!(
        md,
        "\n| server | MHz per call | % core per call | (schedstat cross-check) | fixed part, % core | peak RSS per call, KiB | peak RSS at {} call(s), MiB |\n|---|---:|---:|---:|---:|---:|---:|",
        calls.iter().max().copied().unwrap_or(0)
    );
    for (s, m) in &per_server {
        // The floor's rows are not siprtmp: they are what the kernel takes (crate::floor).
        let name = if s.starts_with(crate::floor::FLOOR) {
            format!("kernel floor ({s})")
        } else {
            format!("siprtmp ({s})")
        };
        let fit = cpu_fit(m, |p| p.1);
        let rss = least_squares(&m.iter().map(|p| (p.0 as f64, p.2)).collect::<Vec<_>>());
        let top = m.last().map_or(0.0, |p| p.2 / 1024.0);
        match fit {
            Some(f) => {
                let _ = writeln!(
                    md,
                    "| {name}{} | {} | {:.3} | {} | {:.2} | {} | {top:.1} |",
                    match saturated(m).as_slice() {
                        [] => String::new(),
                        lost => format!(", {lost:?} calls not fitted"),
                    },
                    mhz(info, f.slope),
                    f.slope,
                    slope(m, |p| p.5).map_or("-".into(), |k| format!("{k:.3}")),
                    f.intercept,
                    rss.map_or("-".into(), |r| format!("{:.1}", r.slope)),
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {name} | - (needs two call counts) | - | - | - | - | {top:.1} |"
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "| Python, gevent (original, Core 2 Duo 2.13 GHz) | {PYTHON_GEVENT_CALL:.0} | | | | | |\n\
         | Python, multitask (original) | {:.0}-{:.0} | | | | | |",
        PYTHON_GEVENT_CALL * MULTITASK_FACTOR.0,
        PYTHON_GEVENT_CALL * MULTITASK_FACTOR.1
    );

    // Delay: the round trip of every window frame, all repeats of a point merged.
    let _ = write!(
        md,
        "\nRound trip of the window frames (the loader's write to its read of the echo: \
         client -> gateway -> sipp -> gateway -> client), ms, p50 / p99 / max over every frame \
         of every repeat; the kernel floor's rows are what the same path costs with no \
         gateway work, so a server's added delay is its figure minus the floor's:\n\n| calls |"
    );
    for (s, _) in &per_server {
        let _ = write!(md, " {s} |");
    }
    let _ = write!(md, "\n|---:|");
    for _ in &per_server {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for &n in calls {
        let _ = write!(md, "| {n} |");
        for (s, _) in &per_server {
            let _ = write!(md, " {} |", merged_delay(points, s, n).table_cell());
        }
        let _ = writeln!(md);
    }

    where_the_time_goes(&mut md, points, calls);

    // Echo check and the other processes' CPU.
    let _ = writeln!(
        md,
        "\nFrames sent vs echoed back in the window (all calls of each point and repeat; \
         unmatched: frames that came back, window or not, as the echo of no frame sent), and \
         the CPU of the far end (sipp) and of the loader, % of one core:\n\n\
         | series | calls | repeat | sent | echoed | worst call | out of order | unmatched | sipp % | loader % |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in points {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1} % | {} | {} | {:.1} | {:.1} |",
            p.series(),
            p.calls,
            p.repeat + 1,
            p.echo.sent(),
            p.echo.echoed(),
            p.echo.worst_ratio() * 100.0,
            p.echo.calls.iter().map(|c| c.disorder).sum::<u64>(),
            p.echo.unmatched(),
            p.sipp_cpu,
            p.loader_cpu
        );
    }
    let _ = writeln!(md, "\n![Server CPU vs calls](cpu-gateway.svg)");
    md
}

/// The codecs of the run, each with its file and far end, for the section's text.
fn codecs_described(info: &RunInfo) -> String {
    info.scenarios
        .iter()
        .map(|s| format!("`{}`: {}", s.name, s.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The kernel's share of each server's CPU and, with `--syscalls`, its system calls per
/// call-second: medians over the repeats of each point.
fn where_the_time_goes(md: &mut String, points: &[GatewayPoint], calls: &[usize]) {
    let counted = points.iter().any(|p| p.server_syscalls_per_sec.is_some());
    let _ = writeln!(
        md,
        "\nWhere the server's time goes (medians over the repeats): its CPU, the part of it \
         spent in the kernel (stime){}:\n\n\
         | server | calls | % core | of which kernel | system calls per second | per call-second |\n\
         |---|---:|---:|---:|---:|---:|",
        if counted {
            ", and its system calls (perf stat, raw_syscalls:sys_enter, every thread)"
        } else {
            "; run with --syscalls for its system calls"
        }
    );
    for s in series(points) {
        for &n in calls {
            let at: Vec<&GatewayPoint> = points
                .iter()
                .filter(|p| p.calls == n && p.series() == s)
                .collect();
            if at.is_empty() {
                continue;
            }
            let cpu = median(&at.iter().map(|p| p.server_cpu).collect::<Vec<_>>()).unwrap_or(0.0);
            let sys =
                median(&at.iter().map(|p| p.server_sys_cpu).collect::<Vec<_>>()).unwrap_or(0.0);
            let rates: Vec<f64> = at
                .iter()
                .filter_map(|p| p.server_syscalls_per_sec)
                .collect();
            let (rate, per_call) = match median(&rates) {
                Some(r) => (format!("{r:.0}"), format!("{:.1}", r / n.max(1) as f64)),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let share = if cpu > 0.0 { sys / cpu * 100.0 } else { 0.0 };
            let _ = writeln!(
                md,
                "| {s} | {n} | {cpu:.2} | {share:.0} % | {rate} | {per_call} |"
            );
        }
    }
}

/// The delays of every repeat of `series` at `calls` calls, merged.
fn merged_delay(points: &[GatewayPoint], series: &str, calls: usize) -> DelayHistogram {
    let mut all = DelayHistogram::default();
    for p in points
        .iter()
        .filter(|p| p.calls == calls && p.series() == series)
    {
        all.merge(&p.echo.delay);
    }
    all
}

/// Every point of every repeat.
fn csv(points: &[GatewayPoint]) -> String {
    let mut out = String::from(
        "server,calls,repeat,window_secs,server_cpu_pct,server_cpu_schedstat_pct,sipp_cpu_pct,loader_cpu_pct,peak_rss_kib,frames_sent,frames_echoed,worst_call_ratio,failure,codec,delay_p50_ms,delay_p99_ms,delay_max_ms,server_sys_cpu_pct,server_syscalls_per_sec,frames_unmatched\n",
    );
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{:.4},{},{},{},{:.3},{},{}",
            p.server,
            p.calls,
            p.repeat + 1,
            p.window_secs,
            p.server_cpu,
            p.server_cpu_ns,
            p.sipp_cpu,
            p.loader_cpu,
            p.peak_rss_kib,
            p.echo.sent(),
            p.echo.echoed(),
            p.echo.worst_ratio(),
            p.echo.failure.as_deref().unwrap_or("").replace(',', ";"),
            p.codec.name(),
            p.echo.delay.csv_fields(),
            p.server_sys_cpu,
            p.server_syscalls_per_sec
                .map_or(String::new(), |r| format!("{r:.0}")),
            p.echo.unmatched(),
        );
    }
    out
}

/// Writes gateway.csv and cpu-gateway.svg into `dir`.
pub(crate) fn write_files(
    dir: &Path,
    info: &RunInfo,
    calls: &[usize],
    points: &[GatewayPoint],
) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("gateway.csv", &csv(points))?;
    let series: Vec<Series> = per_server(info, calls, points)
        .into_iter()
        .map(|(label, m)| Series {
            label,
            points: m.iter().map(|p| (p.0, p.1)).collect(),
        })
        .collect();
    write(
        "cpu-gateway.svg",
        &svg::plot(
            "Server CPU vs concurrent calls: SIP-RTMP gateway, echo",
            "calls",
            "% of one core",
            &series,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_counts_that_lost_frames_stay_out_of_the_cpu_fit() {
        // 0.2 % of a core per call up to 100 calls, then saturated at 1000.
        let m: Vec<Medians> = vec![
            (1, 1.0, 0.0, 0.0, 0.0, 1.0, true),
            (10, 2.8, 0.0, 0.0, 0.0, 2.8, true),
            (100, 20.8, 0.0, 0.0, 0.0, 20.8, true),
            (1000, 92.0, 0.0, 0.0, 0.0, 92.0, false),
        ];
        let k = slope(&m, |p| p.1).unwrap();
        assert!((k - 0.2).abs() < 1e-9, "{k}");
        assert_eq!(saturated(&m), vec![1000]);
        // Fitting the saturated point too would have flattened it to less than half.
        let all: Vec<(f64, f64)> = m.iter().map(|p| (p.0 as f64, p.1)).collect();
        assert!(least_squares(&all).unwrap().slope < 0.1);
    }
}
