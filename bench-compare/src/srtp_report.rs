//! The `--gateway --srtp` section of the report: for each runtime and codec, the server's CPU
//! per call plain and with SRTP (least-squares slopes of the medians over the call counts, as
//! the gateway section fits them), their ratio, the round trips, and what SRTP costs per
//! packet: the extra CPU per call divided by the SRTP operations per second of a call (each
//! frame is protected once on its way out and unprotected once on its way back).

use std::fmt::Write as _;

use crate::gateway::{GatewayPoint, MIN_ECHO};
use crate::load::delay::DelayHistogram;
use crate::srtp_echo::SRTP_SUFFIX;
use crate::stats::{least_squares, median};

/// One series' figures: slopes in % of a core per call (utime+stime, schedstat), frames per
/// second per call, and the round trip at the largest count.
#[derive(Debug, Clone, PartialEq)]
struct Fit {
    ticks: Option<f64>,
    schedstat: Option<f64>,
    frames_per_sec: Option<f64>,
    delay: DelayHistogram,
}

/// The slope of `y`'s medians over the call counts where every repeat got its frames back.
fn slope(points: &[&GatewayPoint], calls: &[usize], y: fn(&GatewayPoint) -> f64) -> Option<f64> {
    let xy: Vec<(f64, f64)> = calls
        .iter()
        .filter_map(|&n| {
            let at: Vec<&&GatewayPoint> = points.iter().filter(|p| p.calls == n).collect();
            if at.is_empty() || !at.iter().all(|p| p.echo.all_at_least(MIN_ECHO)) {
                return None;
            }
            let m = median(&at.iter().map(|p| y(p)).collect::<Vec<_>>())?;
            Some((n as f64, m))
        })
        .collect();
    least_squares(&xy).map(|l| l.slope)
}

fn fit(points: &[&GatewayPoint], calls: &[usize]) -> Fit {
    let rates: Vec<f64> = points
        .iter()
        .filter(|p| p.calls > 0 && p.window_secs > 0.0)
        .map(|p| p.echo.sent() as f64 / p.calls as f64 / p.window_secs)
        .collect();
    let most = calls.iter().copied().max().unwrap_or(0);
    let mut delay = DelayHistogram::default();
    for p in points.iter().filter(|p| p.calls == most) {
        delay.merge(&p.echo.delay);
    }
    Fit {
        ticks: slope(points, calls, |p| p.server_cpu),
        schedstat: slope(points, calls, |p| p.server_cpu_ns),
        frames_per_sec: median(&rates),
        delay,
    }
}

/// Microseconds of CPU per SRTP operation: the extra share of a core per call (`extra_pct`)
/// over the protect and unprotect operations of a call per second (two per frame).
fn us_per_packet(extra_pct: f64, frames_per_sec: f64) -> f64 {
    extra_pct / 100.0 / (2.0 * frames_per_sec) * 1e6
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn ms(d: &DelayHistogram, q: f64) -> String {
    d.quantile_ms(q).map_or("-".into(), |v| format!("{v:.2}"))
}

/// The markdown section; empty when no series has an SRTP twin.
pub(crate) fn section(calls: &[usize], points: &[GatewayPoint]) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for p in points {
        let Some(plain) = p.server.strip_suffix(SRTP_SUFFIX) else {
            continue;
        };
        let pair = (plain.to_owned(), p.codec.name());
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    if pairs.is_empty() {
        return String::new();
    }
    let most = calls.iter().copied().max().unwrap_or(0);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## SRTP against plain RTP (`--srtp`)\n\n\
         Both series of a runtime ran against the same far end, bench-compare's own echo (the \
         far end's column above is its CPU, not sipp's): plain calls, and calls with \
         `--srtp require --srtp-over-plain-sip`, where the echo unprotects every packet with \
         the gateway's key and protects it with its own. Per call: least-squares slope of the \
         medians over N = {calls:?} (counts where a call lost frames left out), % of one core, \
         from utime+stime and from schedstat. Per packet: the extra CPU per call over the \
         SRTP operations of a call per second (each frame protected going out, unprotected \
         coming back). Round trip at {most} calls, ms.\n\n\
         | runtime, codec | plain % per call | SRTP % per call | ratio | plain (schedstat) | SRTP (schedstat) | frames/s per call | us per SRTP packet | us (schedstat) | plain p50 / p99 | SRTP p50 / p99 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (plain, codec) in pairs {
        let srtp = format!("{plain}{SRTP_SUFFIX}");
        let of = |server: &str| -> Vec<&GatewayPoint> {
            points
                .iter()
                .filter(|p| p.server == server && p.codec.name() == codec)
                .collect()
        };
        let (a, b) = (fit(&of(&plain), calls), fit(&of(&srtp), calls));
        let ratio = match (a.ticks, b.ticks) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        let per_packet = |x: Option<f64>, y: Option<f64>| match (x, y, b.frames_per_sec) {
            (Some(x), Some(y), Some(f)) if f > 0.0 => format!("{:.2}", us_per_packet(y - x, f)),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {plain}, {codec} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} / {} | {} / {} |",
            pct(a.ticks),
            pct(b.ticks),
            pct(a.schedstat),
            pct(b.schedstat),
            b.frames_per_sec.map_or("-".into(), |f| format!("{f:.1}")),
            per_packet(a.ticks, b.ticks),
            per_packet(a.schedstat, b.schedstat),
            ms(&a.delay, 0.5),
            ms(&a.delay, 0.99),
            ms(&b.delay, 0.5),
            ms(&b.delay, 0.99),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packets_cost_is_the_extra_cpu_over_two_operations_per_frame() {
        // 0.01 % of a core more per call at 50 frames/s: 1e-4 s/s over 100 operations/s.
        assert!((us_per_packet(0.01, 50.0) - 1.0).abs() < 1e-9);
        assert!((us_per_packet(0.05, 50.0) - 5.0).abs() < 1e-9);
        assert_eq!(section(&[1, 10], &[]), "");
    }

    fn point(server: &str, calls: usize, cpu: f64, echoed: u64) -> GatewayPoint {
        use crate::load::calls::{CallCount, EchoSummary};
        let mut delay = DelayHistogram::default();
        delay.record(std::time::Duration::from_millis(2));
        GatewayPoint {
            codec: crate::gateway::GatewayCodec::WIDEBAND,
            calls,
            server: server.into(),
            repeat: 0,
            server_cpu: cpu,
            server_cpu_ns: cpu,
            server_sys_cpu: 0.0,
            server_syscalls_per_sec: None,
            sipp_cpu: 0.0,
            loader_cpu: 0.0,
            window_secs: 10.0,
            peak_rss_kib: 0,
            echo: EchoSummary {
                calls: vec![
                    CallCount {
                        sent: 500,
                        echoed,
                        disorder: 0,
                        unmatched: 0,
                    };
                    calls
                ],
                failure: None,
                delay,
            },
        }
    }

    #[test]
    fn the_section_compares_each_runtime_with_its_srtp_twin() {
        let calls = [1, 10, 100, 1000];
        let mut points = Vec::new();
        for &n in &calls {
            let x = n as f64;
            points.push(point("mio", n, 1.0 + 0.1 * x, 500));
            // At 1000 calls SRTP lost frames: that count is left out of its fit.
            let echoed = if n == 1000 { 400 } else { 500 };
            points.push(point("mio-srtp", n, 1.0 + 0.12 * x, echoed));
        }
        let md = section(&calls, &points);
        // 0.02 % of a core more per call at 50 frames/s: 2 us per protect or unprotect.
        assert!(
            md.contains("| mio, wideband | 0.1000 | 0.1200 | 1.20x | 0.1000 | 0.1200 | 50.0 | 2.00 | 2.00 |"),
            "{md}"
        );
        assert_eq!(md.matches("| mio, wideband |").count(), 1, "{md}");
    }
}
