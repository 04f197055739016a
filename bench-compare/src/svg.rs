//! Line plots as hand-written SVG: one line per server, players on a log(1+N) axis (the
//! counts run from 0 to 1000), CPU on a linear axis from zero; or, for the soak, a time series
//! (seconds on a linear axis, [`XAxis::Linear`]).

use std::fmt::Write as _;

/// One line of a plot.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// (players, value) points in increasing player order.
    pub points: Vec<(usize, f64)>,
}

const PLOT_WIDTH: f64 = 410.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
/// Room right of the plot for the legend: at least this, more for long labels.
const MIN_RIGHT: f64 = 160.0;
/// Legend characters are about this wide at font size 12.
const CHAR_WIDTH: f64 = 7.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Line colours; past the last one, lines start over dashed.
const COLOURS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XAxis {
    /// log(1 + x), a tick at every x of the data (player and call counts).
    Log1p,
    /// x itself from zero, ticks at round steps (a time series); points are marked only
    /// when there are few.
    Linear,
}

/// Past this many points a line's points are not marked with circles.
const MARKED_POINTS: usize = 60;

/// The SVG document for `series`, players (or calls) on a log(1+N) axis.
pub(crate) fn plot(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    plot_on(XAxis::Log1p, title, x_label, y_label, series)
}

/// The SVG document for `series` with the x axis `axis`.
pub(crate) fn plot_on(
    axis: XAxis,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let mut xs: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_unstable();
    xs.dedup();
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let step = tick_step(y_max);
    let y_top = (y_max / step).ceil() * step;
    let x_max = *xs.last().unwrap_or(&1);
    let (x_step, x_top) = match axis {
        XAxis::Log1p => (0.0, ((x_max + 1) as f64).ln().max(1e-9)),
        XAxis::Linear => {
            let step = tick_step((x_max as f64).max(1.0));
            (step, ((x_max as f64) / step).ceil().max(1.0) * step)
        }
    };
    let x_ticks: Vec<usize> = match axis {
        XAxis::Log1p => xs.clone(),
        XAxis::Linear => (0..)
            .map(|k| (k as f64 * x_step) as usize)
            .take_while(|&x| x as f64 <= x_top)
            .collect(),
    };
    let longest = series.iter().map(|s| s.label.chars().count()).max();
    let right = MIN_RIGHT.max(40.0 + CHAR_WIDTH * longest.unwrap_or(0) as f64);
    let plot_w = PLOT_WIDTH;
    let width = LEFT + plot_w + right;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |n: usize| match axis {
        XAxis::Log1p => LEFT + ((n + 1) as f64).ln() / x_top * plot_w,
        XAxis::Linear => LEFT + n as f64 / x_top * plot_w,
    };
    let py = |v: f64| TOP + plot_h - v / y_top * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    // Grid and y ticks.
    let mut v = 0.0;
    while v <= y_top + step / 2.0 {
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            format_tick(v, step)
        );
        v += step;
    }
    for &n in &x_ticks {
        let x = px(n);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let scale = match axis {
        XAxis::Log1p => " (log scale of 1+N)",
        XAxis::Linear => "",
    };
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}{scale}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, line) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if i >= COLOURS.len() {
            r#" stroke-dasharray="6,3""#
        } else {
            ""
        };
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(n, v)| format!("{:.1},{:.1}", px(n), py(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}"{dash} stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let marked = if line.points.len() <= MARKED_POINTS {
            &line.points[..]
        } else {
            &[]
        };
        for &(n, v) in marked {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(n),
                py(v)
            );
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}"{dash} stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn format_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(0.7), 0.2);
        assert_eq!(tick_step(48.0), 10.0);
        assert_eq!(format_tick(0.4, 0.2), "0.4");
    }

    #[test]
    fn a_plot_has_a_line_per_series_and_escapes_labels() {
        let series = vec![
            Series {
                label: "a<b".into(),
                points: vec![(0, 1.0), (5, 2.0), (1000, 9.0)],
            },
            Series {
                label: "nginx".into(),
                points: vec![(0, 0.5), (1000, 3.0)],
            },
        ];
        let svg = plot("t", "players", "%", &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn a_time_series_has_round_ticks_and_unmarked_dense_lines() {
        let series = vec![Series {
            label: "RSS".into(),
            points: (0..=1800).map(|t| (t, 40.0 + (t % 7) as f64)).collect(),
        }];
        let svg = plot_on(XAxis::Linear, "t", "seconds", "MiB", &series);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(
            svg.matches("<circle").count(),
            0,
            "1801 points are not marked"
        );
        assert!(!svg.contains("log scale"));
        // Ticks every 500 s up to 2000, not one per point.
        for tick in [">0</text>", ">500</text>", ">1000</text>", ">2000</text>"] {
            assert!(svg.contains(tick), "{tick}");
        }
        assert!(!svg.contains(">1</text>"));
        // The last point lies inside the plot, at 1800 of 2000 s.
        let x_last = LEFT + 1800.0 / 2000.0 * PLOT_WIDTH;
        assert!(svg.contains(&format!("{x_last:.1},")), "{x_last}");
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn long_labels_widen_the_legend_and_many_series_stay_distinct() {
        let series: Vec<Series> = (0..12)
            .map(|i| Series {
                label: format!("mio-merged-shared-tick20, Speex 16 kHz #{i}"),
                points: vec![(1, 1.0), (100, 2.0 + f64::from(i))],
            })
            .collect();
        let svg = plot("t", "calls", "%", &series);
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        // The longest label (41 characters) fits right of the plot.
        assert!(width >= LEFT + PLOT_WIDTH + 41.0 * CHAR_WIDTH, "{width}");
        // Ten colours, then the first two again, dashed (their line and legend entry).
        assert_eq!(svg.matches("stroke-dasharray").count(), 4);
    }
}
