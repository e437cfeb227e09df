//! The report's charts, drawn by `plotters` as SVG text that the page holds
//! inline: no script, no image file, no font to fetch (the browser draws the
//! text with its own sans-serif).

use plotters::prelude::*;

use super::model::{Latency, Timeline};

/// The chart's colours; the page's legend uses the same (see `page`).
pub const OK: RGBColor = RGBColor(46, 125, 50);
pub const FAILED: RGBColor = RGBColor(198, 40, 40);
pub const RETRY: RGBColor = RGBColor(239, 108, 0);
pub const THROTTLED: RGBColor = RGBColor(106, 27, 154);
pub const ASKED: RGBColor = RGBColor(21, 101, 192);
pub const LIMIT: RGBColor = RGBColor(96, 96, 96);
pub const REQUESTS: RGBColor = RGBColor(13, 71, 161);
const BAR: RGBColor = RGBColor(69, 90, 100);
const GRID: RGBColor = RGBColor(225, 229, 231);

/// `#rrggbb`, for the page's legend.
pub fn css(color: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", color.0, color.1, color.2)
}

/// Drawn at this size and scaled by the page: wide enough for a desktop,
/// small enough that the text still reads on a phone (where the figure
/// scrolls sideways rather than shrink below 520 px).
const WIDTH: u32 = 760;
const HEIGHT: u32 = 320;

/// "90 s", "12 min", "2.5 h": a time since the start, for an axis.
fn offset_label(seconds: f64) -> String {
    if seconds < 20.0 && seconds.fract() != 0.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// A round upper bound for an axis.
fn nice_max(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Successes and failures per second over the run (bars), the requests
/// they took (a line: the asked rate and the learned limit count requests,
/// and a row that reads first takes two), retries and 429s marked where
/// the rows that had them ended, the rate asked for and the server limit.
pub fn timeline(t: &Timeline, asked: Option<f64>, limit: Option<f64>) -> Result<String, String> {
    let width = t.bucket_ms as f64 / 1000.0;
    let x_max = (t.buckets.len() as f64 * width).max(1.0);
    let per_second = |n: u64| n as f64 / width;
    let highest = t
        .buckets
        .iter()
        .map(|b| per_second((b.ok + b.failed).max(b.requests)))
        .fold(0.0, f64::max)
        .max(asked.unwrap_or(0.0))
        .max(limit.unwrap_or(0.0));
    let y_max = nice_max(highest * 1.15);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .x_desc("time since the first row")
            .y_desc("per second")
            .x_label_formatter(&|x| offset_label(*x))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        let bar = |i: usize, from: f64, to: f64, color: RGBColor| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, from), (x0 + width, to)], color.filled())
        };
        chart
            .draw_series(
                t.buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.ok > 0)
                    .map(|(i, b)| bar(i, 0.0, per_second(b.ok), OK)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                t.buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.failed > 0)
                    .map(|(i, b)| bar(i, per_second(b.ok), per_second(b.ok + b.failed), FAILED)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                t.buckets
                    .iter()
                    .enumerate()
                    .map(|(i, b)| ((i as f64 + 0.5) * width, per_second(b.requests))),
                REQUESTS.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        let mark_row = |share: f64| y_max * share;
        chart
            .draw_series(
                t.buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.retries > 0)
                    .map(|(i, _)| {
                        TriangleMarker::new(
                            ((i as f64 + 0.5) * width, mark_row(0.93)),
                            5,
                            RETRY.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                t.buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.throttled > 0)
                    .map(|(i, _)| {
                        Cross::new(
                            ((i as f64 + 0.5) * width, mark_row(0.86)),
                            5,
                            THROTTLED.stroke_width(2),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        if let Some(rate) = asked {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, rate), (x_max, rate)],
                    8,
                    5,
                    ASKED.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        if let Some(limit) = limit {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, limit), (x_max, limit)],
                    3,
                    4,
                    LIMIT.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// How long rows took: a histogram of `duration_ms`, the slowest 1 % in the
/// last bar so that one outlier does not squash the rest.
pub fn latency_histogram(l: &Latency) -> Result<String, String> {
    const BARS: u64 = 30;
    let top = nice_max(l.p99.max(1) as f64) as u64;
    let step = top.div_ceil(BARS).max(1);
    let mut counts = vec![0u64; (top / step + 1) as usize];
    for d in &l.sorted {
        let i = ((d / step) as usize).min(counts.len() - 1);
        counts[i] += 1;
    }
    let y_max = nice_max(counts.iter().copied().max().unwrap_or(1) as f64 * 1.1);
    let x_max = counts.len() as f64 * step as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .x_desc("time per row (ms; the last bar holds everything slower)")
            .y_desc("rows")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| {
                        let x0 = i as f64 * step as f64;
                        Rectangle::new(
                            [(x0, 0.0), (x0 + step as f64 * 0.92, *n as f64)],
                            BAR.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        for (q, value) in [("p50", l.p50), ("p99", l.p99)] {
            let x = (value as f64).min(x_max);
            chart
                .draw_series(DashedLineSeries::new(
                    [(x, 0.0), (x, y_max)],
                    4,
                    4,
                    ASKED.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{q} {value} ms"),
                    (x, y_max * 0.97),
                    ("sans-serif", 14).into_font().color(&ASKED),
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html_report::model::Bucket;

    #[test]
    fn axes_round_up() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 8.0);
        assert_eq!(nice_max(23.0), 25.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(offset_label(90.0), "90 s");
        assert_eq!(offset_label(2.5), "2.5 s");
        assert_eq!(offset_label(600.0), "10 min");
        assert_eq!(offset_label(9000.0), "2.5 h");
    }

    #[test]
    fn charts_are_svg_with_their_marks() {
        let t = Timeline {
            start_ms: 0,
            bucket_ms: 1000,
            buckets: vec![
                Bucket {
                    ok: 5,
                    failed: 1,
                    retries: 2,
                    throttled: 1,
                    requests: 9,
                },
                Bucket::default(),
                Bucket {
                    ok: 3,
                    ..Bucket::default()
                },
            ],
        };
        let svg = timeline(&t, Some(5.0), Some(4.2)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(svg.matches("<polygon").count(), 1, "one bucket retried");
        assert!(
            svg.contains("stroke-dasharray") || svg.contains("<line"),
            "dashed lines"
        );
        let l = Latency {
            count: 3,
            p50: 20,
            p90: 40,
            p99: 40,
            max: 5000,
            mean: 1686.7,
            sorted: vec![20, 40, 5000],
        };
        let svg = latency_histogram(&l).unwrap();
        assert!(svg.contains("p50 20 ms"));
    }
}
