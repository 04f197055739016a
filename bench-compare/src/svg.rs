//! Line plots as SVG, drawn with `plotters` (its SVG backend only): one line per server, players
//! on a log(1+N) axis (the counts run from 0 to 1000), CPU on a linear axis from zero; or, for
//! the soak, a time series (seconds on a linear axis, [`XAxis::Linear`]). The legend sits right
//! of the plot, never over the data.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

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
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const FONT: &str = "sans-serif";

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
    /// log(1 + x), a tick at every x of the data (player and call counts). plotters' own log
    /// scale cannot show 0 players, so x is mapped to ln(1 + x) here and the ticks are
    /// labelled with x.
    Log1p,
    /// x itself from zero, ticks at round steps (a time series); points are marked only
    /// when there are few.
    Linear,
}

impl XAxis {
    fn map(self, x: usize) -> f64 {
        match self {
            XAxis::Log1p => ((x + 1) as f64).ln(),
            XAxis::Linear => x as f64,
        }
    }

    fn unmap(self, v: f64) -> usize {
        match self {
            XAxis::Log1p => (v.exp() - 1.0).round().max(0.0) as usize,
            XAxis::Linear => v.round().max(0.0) as usize,
        }
    }
}

/// A linear f64 axis whose grid lines and labels are exactly `ticks` (plotters would otherwise
/// choose its own round values, and on the log(1+N) axis those are not player counts).
struct Ticked {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Self {
        Ticked {
            linear: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold lines: the light (minor) grid would be plotters' own values again.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
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
    let longest = series.iter().map(|s| s.label.chars().count()).max();
    let right = MIN_RIGHT.max(50.0 + CHAR_WIDTH * longest.unwrap_or(0) as f64);
    let width = LEFT + PLOT_WIDTH + right;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, HEIGHT as u32)).into_drawing_area();
        // Drawing into a String cannot fail but for a plotters bug; a plot is a by-product
        // of the report, so a failure leaves whatever was drawn rather than stopping a run.
        let _ = draw(&root, axis, title, x_label, y_label, series);
        let _ = root.present();
    }
    svg
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    axis: XAxis,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    root.fill(&WHITE)?;
    let (chart_area, legend_area) = root.split_horizontally((LEFT + PLOT_WIDTH) as u32 + 10);

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
    let y_step = tick_step(y_max);
    let y_top = (y_max / y_step).ceil() * y_step;
    let y_ticks: Vec<f64> = (0..)
        .map(|k| f64::from(k) * y_step)
        .take_while(|&v| v <= y_top + y_step / 2.0)
        .collect();
    let x_max = *xs.last().unwrap_or(&1);
    let (x_top, x_ticks): (f64, Vec<f64>) = match axis {
        XAxis::Log1p => (
            axis.map(x_max).max(1e-9),
            xs.iter().map(|&x| axis.map(x)).collect(),
        ),
        XAxis::Linear => {
            let step = tick_step((x_max as f64).max(1.0));
            let top = ((x_max as f64) / step).ceil().max(1.0) * step;
            let ticks = (0..)
                .map(|k| f64::from(k) * step)
                .take_while(|&x| x <= top + step / 2.0)
                .collect();
            (top, ticks)
        }
    };
    let x_desc = match axis {
        XAxis::Log1p => format!("{x_label} (log scale of 1+N)"),
        XAxis::Linear => x_label.to_owned(),
    };

    let mut chart = ChartBuilder::on(&chart_area)
        .caption(title, (FONT, 17))
        .margin_top(10)
        .margin_right(10)
        .x_label_area_size(BOTTOM as u32)
        .y_label_area_size(LEFT as u32)
        .build_cartesian_2d(
            Ticked::new(0.0..x_top, x_ticks),
            Ticked::new(0.0..y_top, y_ticks),
        )?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_desc(x_desc)
        .y_desc(y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .x_label_formatter(&|v| axis.unmap(*v).to_string())
        .y_label_formatter(&|v| format_tick(*v, y_step))
        .draw()?;

    for (i, line) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let style = colour.stroke_width(2);
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(x, v)| (axis.map(x), v)).collect();
        if i < COLOURS.len() {
            chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
        } else {
            chart.draw_series(DashedLineSeries::new(points.iter().copied(), 6, 3, style))?;
        }
        if line.points.len() <= MARKED_POINTS {
            chart.draw_series(PointSeries::of_element(
                points,
                3,
                colour.filled(),
                &|c, size, style| Circle::new(c, size, style),
            ))?;
        }
    }

    // The legend, right of the plot: a stroke of each line's colour (and dash) and its label.
    let font = (FONT, 15).into_font().color(&BLACK);
    for (i, line) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let style = colour.stroke_width(2);
        let y = (TOP + 10.0 + i as f64 * 20.0) as i32;
        let x = 4;
        let stroke = vec![(x, y), (x + 20, y)];
        if i < COLOURS.len() {
            legend_area.draw(&PathElement::new(stroke, style))?;
        } else {
            for dash in [(x, x + 6), (x + 9, x + 15), (x + 18, x + 20)] {
                legend_area.draw(&PathElement::new(vec![(dash.0, y), (dash.1, y)], style))?;
            }
        }
        legend_area.draw(&Text::new(
            line.label.clone(),
            (x + 26, y + 4),
            font.clone().pos(text_anchor_left()),
        ))?;
    }
    Ok(())
}

/// Text anchored at its left end, on the baseline.
fn text_anchor_left() -> plotters::style::text_anchor::Pos {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    Pos::new(HPos::Left, VPos::Bottom)
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

    /// The points of each 2-pixel polyline drawn in `colour` (a series' line and its legend
    /// stroke; the axes are black and 1 pixel wide), in document order.
    fn strokes(svg: &str, colour: RGBColor) -> Vec<Vec<(f64, f64)>> {
        let attrs = format!(
            r##"stroke="#{:02X}{:02X}{:02X}" stroke-width="2" points=""##,
            colour.0, colour.1, colour.2
        );
        svg.split(attrs.as_str())
            .skip(1)
            .map(|rest| {
                rest.split('"')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    /// The x of the x axis's tick label `text` (centred under its tick; the y axis's labels
    /// are right-aligned), if there is one.
    fn label_x(svg: &str, text: &str) -> Option<f64> {
        svg.split("<text ").skip(1).find_map(|element| {
            let (attrs, rest) = element.split_once('>')?;
            if rest.trim_start().split('<').next()?.trim() != text
                || !attrs.contains(r#"text-anchor="middle""#)
            {
                return None;
            }
            attrs.strip_prefix("x=\"")?.split('"').next()?.parse().ok()
        })
    }

    #[test]
    fn a_plot_has_a_line_per_series_on_a_log1p_axis_and_a_legend_beside_it() {
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
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("players (log scale of 1+N)"));
        assert!(!svg.contains("NaN"));
        // A line and a legend stroke per series, a marker per point.
        let first = strokes(&svg, COLOURS[0]);
        let second = strokes(&svg, COLOURS[1]);
        assert_eq!((first.len(), second.len()), (2, 2));
        assert_eq!(svg.matches("<circle").count(), 5);
        // Ticks at the data's player counts, 0 included, and 5 players at ln(6)/ln(1001) of
        // the way from 0 to 1000.
        let (x0, x5, x1000) = (first[0][0].0, first[0][1].0, first[0][2].0);
        for (n, x) in [("0", x0), ("5", x5), ("1000", x1000)] {
            let label = label_x(&svg, n).unwrap_or_else(|| panic!("no tick {n}"));
            assert!(
                (label - x).abs() <= 1.0,
                "tick {n} at {label}, point at {x}"
            );
        }
        let share = (x5 - x0) / (x1000 - x0);
        let expected = 6f64.ln() / 1001f64.ln();
        assert!((share - expected).abs() < 0.01, "{share} vs {expected}");
        // Higher values are drawn higher.
        assert!(first[0][2].1 < first[0][0].1);
        // The legend lies right of every data point.
        let data_right = first[0]
            .iter()
            .chain(&second[0])
            .map(|p| p.0)
            .fold(0.0, f64::max);
        for legend in [&first[1], &second[1]] {
            assert!(legend.iter().all(|p| p.0 > data_right + 5.0), "{legend:?}");
        }
    }

    #[test]
    fn a_time_series_has_round_ticks_and_unmarked_dense_lines() {
        let series = vec![Series {
            label: "RSS".into(),
            points: (0..=1800).map(|t| (t, 40.0 + (t % 7) as f64)).collect(),
        }];
        let svg = plot_on(XAxis::Linear, "t", "seconds", "MiB", &series);
        let lines = strokes(&svg, COLOURS[0]);
        assert_eq!(lines.len(), 2, "the line and its legend stroke");
        assert_eq!(
            svg.matches("<circle").count(),
            0,
            "1801 points are not marked"
        );
        assert!(!svg.contains("log scale"));
        // Ticks every 500 s up to 2000, not one per point.
        let ticks: Vec<f64> = ["0", "500", "1000", "1500", "2000"]
            .iter()
            .map(|t| label_x(&svg, t).unwrap_or_else(|| panic!("no tick {t}")))
            .collect();
        assert!(label_x(&svg, "1").is_none());
        // The last point lies inside the plot, at 1800 of 2000 s.
        let x_last = lines[0].last().unwrap().0;
        let share = (x_last - ticks[0]) / (ticks[4] - ticks[0]);
        assert!((share - 0.9).abs() < 0.01, "{share}");
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
        // Ten colours, then the first two again, dashed (their line and legend entry in
        // pieces): more strokes of the first colour than of the third, used once.
        let once = strokes(&svg, COLOURS[2]).len();
        assert_eq!(once, 2);
        assert!(strokes(&svg, COLOURS[0]).len() > once + 3);
        assert!(strokes(&svg, COLOURS[1]).len() > once + 3);
    }
}
