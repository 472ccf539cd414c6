//! Station plots for replay reports, drawn with `plotters` as SVG: text stays text, so the
//! viewer's fonts show Chinese station names and no font ships with riskwatch.
//!
//! One chart per sensor: the value over time (last value per bucket as a line, min–max as a
//! light envelope, gaps left open), a dashed line per value threshold in its level's colour,
//! labelled in the right margin (labels pushed apart so they never overlap), background bands
//! in the level's colour while a baseline alert was active, a dated time axis in Beijing time
//! ([`crate::timeaxis`]). When a what-if was run, the same chart also carries the what-if's
//! thresholds that differ from the baseline's (dotted, labelled "what-if …") and, under the
//! time axis, one strip per run with its alert periods, so the two can be compared at a glance.

use crate::timeaxis::time_axis;
use crate::verify::Episode;
use crate::{Trace, TracePoint};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use riskwatch_core::{Level, Timestamp};

/// Warning colours (GB/T 27962-style blue / yellow / orange / red).
pub fn level_colour(l: Level) -> RGBColor {
    match l {
        Level::Blue => RGBColor(0x1f, 0x6f, 0xeb),
        Level::Yellow => RGBColor(0xf2, 0xc1, 0x1b),
        Level::Orange => RGBColor(0xf0, 0x7f, 0x13),
        Level::Red => RGBColor(0xd6, 0x1f, 0x1f),
    }
}

/// Opacity of alert bands over the white plot area.
pub const BAND_ALPHA: f64 = 0.28;
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
const ENVELOPE: RGBColor = RGBColor(0x9a, 0xb0, 0xc8);
const LINE: RGBColor = RGBColor(0x0b, 0x2e, 0x59);
/// Fonts with Chinese glyphs on common systems first; the viewer picks the first it has.
const FONTS: &str = "Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif";

/// A horizontal line to draw: label, value, optional level colour.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdLine {
    /// Label (e.g. `orange 28.50`).
    pub label: String,
    /// Value.
    pub value: f64,
    /// Level colour, if the threshold is a level's.
    pub level: Option<Level>,
}

/// What one run puts on the chart.
#[derive(Clone, Debug)]
pub struct RunMarks<'a> {
    /// "baseline" or "what-if".
    pub run: &'a str,
    /// Its threshold lines for the sensor.
    pub thresholds: Vec<ThresholdLine>,
    /// Its alert episodes of the sensor.
    pub episodes: Vec<&'a Episode>,
}

/// One chart: a sensor's trace with the marks of the baseline run and, optionally, a what-if.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    /// Title: the station's name as people know it.
    pub title: String,
    /// Smaller, after the title: sensor id and kind.
    pub subtitle: String,
    /// The values.
    pub trace: &'a Trace,
    /// Time span of the axis.
    pub span: (Timestamp, Timestamp),
    /// The baseline run first, then the what-if run if any.
    pub runs: Vec<RunMarks<'a>>,
}

/// Pixel layout of a chart.
const TOP: u32 = 58;
const RIGHT: u32 = 170;
const X_LABELS: u32 = 44;
const Y_LABELS: u32 = 64;
const STRIP_ROW: u32 = 18;

/// The chart as an SVG document of `size` pixels.
pub fn svg(chart: &Chart<'_>, size: (u32, u32)) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root, chart, size).map_err(|e| anyhow!("drawing the plot of {}: {e}", chart.trace.sensor))?;
        root.present().map_err(|e| anyhow!("drawing the plot of {}: {e}", chart.trace.sensor))?;
    }
    Ok(out)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A font `px` pixels high (plotters' SVG backend writes a font size of size / 1.24).
fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONTS), px * 1.24, FontStyle::Normal)
}

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, chart: &Chart<'_>, (width, height): (u32, u32)) -> DrawResult {
    root.fill(&WHITE)?;
    let trace = chart.trace;
    let what_if = chart.runs.len() > 1;
    let strip = if what_if { STRIP_ROW * chart.runs.len() as u32 + 14 } else { 0 };
    // At least an hour wide; everything drawn is clipped to it (plotters' integer coordinates
    // overflow for points far outside the axis).
    let (t0, t1) = (chart.span.0.millis(), chart.span.1.millis().max(chart.span.0.millis().saturating_add(3_600_000)));
    let clip = |t: i64| t.clamp(t0, t1);

    // Value range: the readings and every threshold drawn.
    let mut lo = trace.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let mut hi = trace.points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
    for t in chart.runs.iter().flat_map(|r| &r.thresholds) {
        lo = lo.min(t.value);
        hi = hi.max(t.value);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(0.05);
    let (lo, hi) = (lo - pad, hi + pad);

    let plot_w = f64::from(width.saturating_sub(Y_LABELS + RIGHT + 10));
    let axis = time_axis(t0, t1, plot_w);
    let mut cc = ChartBuilder::on(root)
        .margin_top(TOP)
        .margin_right(RIGHT)
        .margin_left(10)
        .margin_bottom(strip + 6)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d((t0..t1).with_key_points(axis.ticks.clone()), lo..hi)?;
    let unit = if trace.unit.is_empty() { String::new() } else { format!(" ({})", trace.unit) };
    cc.configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|t| axis.label(*t))
        .y_label_formatter(&|v| trim_number(*v))
        .y_labels(7)
        .x_desc(axis.caption.as_str())
        .y_desc(format!("{}{unit}", trace.kind.as_str().replace('_', " ")))
        .label_style(font(12.0).color(&INK))
        .axis_desc_style(font(12.0).color(&INK))
        .draw()?;

    // Baseline alert periods as background bands.
    if let Some(base) = chart.runs.first() {
        cc.draw_series(
            periods(&base.episodes, t0, t1)
                .map(|(a, b, level)| Rectangle::new([(a, lo), (b, hi)], level_colour(level).mix(BAND_ALPHA).filled())),
        )?;
    }
    // Envelope and value line, one piece per stretch without gaps.
    let bucket = i64::try_from(trace.bucket.as_millis()).unwrap_or(i64::MAX).max(1);
    for piece in trace.points.chunk_by(|a, b| b.start.millis() - a.start.millis() <= bucket) {
        let from = |p: &TracePoint| clip(p.start.millis());
        let to = |p: &TracePoint| clip(p.start.millis().saturating_add(bucket));
        let upper = piece.iter().flat_map(|p| [(from(p), p.max), (to(p), p.max)]);
        let lower = piece.iter().rev().flat_map(|p| [(to(p), p.min), (from(p), p.min)]);
        let outline: Vec<(i64, f64)> = upper.chain(lower).collect();
        cc.draw_series(std::iter::once(Polygon::new(outline, ENVELOPE.mix(0.6).filled())))?;
        let line = piece.iter().map(|p| (clip(p.start.millis().saturating_add(bucket / 2)), p.last));
        cc.draw_series(LineSeries::new(line, LINE.stroke_width(2)))?;
    }
    // Threshold lines: the baseline's dashed; the what-if's that differ, dotted.
    let mut labels: Vec<(f64, String, RGBColor)> = Vec::new();
    for (i, run) in chart.runs.iter().enumerate() {
        for t in &run.thresholds {
            if i > 0 && chart.runs[0].thresholds.iter().any(|b| b.value == t.value && b.level == t.level) {
                continue;
            }
            let colour = t.level.map_or(INK, level_colour);
            let (dash, gap, label) =
                if i == 0 { (8, 5, t.label.clone()) } else { (2, 4, format!("{} {}", run.run, t.label)) };
            let style = colour.stroke_width(2);
            cc.draw_series(std::iter::once(DashedPathElement::new([(t0, t.value), (t1, t.value)], dash, gap, style)))?;
            labels.push((f64::from(cc.backend_coord(&(t1, t.value)).1), label, colour));
        }
    }
    let (px, py) = cc.plotting_area().get_pixel_range();
    let label_x = px.end + 8;
    for (y, label, colour) in spread(labels, 15.0, (f64::from(py.start) + 6.0, f64::from(py.end) - 6.0)) {
        let style = font(13.0).color(&colour).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(label, (label_x, y.round() as i32), style))?;
    }

    // Title, legend.
    let title = font(18.0).color(&INK).pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(chart.title.clone(), (px.start, 8), title))?;
    let sub_x = px.start + text_width(&chart.title, 18.0) + 12;
    let sub = font(13.0).color(&RGBColor(0x66, 0x66, 0x66)).pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(chart.subtitle.clone(), (sub_x, 12), sub))?;
    legend(root, px.start, 36, what_if, trace.bucket)?;

    // Alert periods per run, under the time axis.
    if what_if {
        let top = i32::try_from(height - strip).unwrap_or(0) + 4;
        let row_h = STRIP_ROW as i32;
        for (i, run) in chart.runs.iter().enumerate() {
            let y = top + i as i32 * row_h;
            let name = font(12.0).color(&INK).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(run.run.to_string(), (px.start - 6, y + row_h / 2), name))?;
            root.draw(&Rectangle::new([(px.start, y + 2), (px.end, y + row_h - 2)], GRID.mix(0.5).filled()))?;
            for (a, b, level) in periods(&run.episodes, t0, t1) {
                let (xa, xb) =
                    (cc.backend_coord(&(a, lo)).0, cc.backend_coord(&(b, lo)).0.max(cc.backend_coord(&(a, lo)).0 + 1));
                root.draw(&Rectangle::new([(xa, y + 2), (xb, y + row_h - 2)], level_colour(level).filled()))?;
            }
        }
        let caption = font(12.0).color(&INK).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new("alert periods 预警时段", (px.end + 8, top + row_h / 2), caption))?;
    }
    Ok(())
}

/// The legend line under the title.
fn legend(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    x: i32,
    y: i32,
    what_if: bool,
    bucket: std::time::Duration,
) -> DrawResult {
    let text = font(12.0).color(&INK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = x;
    let item = |x: &mut i32, label: &str| -> DrawResult {
        root.draw(&Text::new(label.to_string(), (*x + 26, y), text.clone()))?;
        *x += 26 + text_width(label, 12.0) + 18;
        Ok(())
    };
    root.draw(&PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(2)))?;
    let per = match bucket.as_secs() {
        3600 => "hour".to_string(),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} min", (s / 60).max(1)),
    };
    item(&mut x, &format!("last value per {per}"))?;
    root.draw(&Rectangle::new([(x, y - 5), (x + 20, y + 5)], ENVELOPE.mix(0.6).filled()))?;
    item(&mut x, "min–max")?;
    root.draw(&DashedPathElement::new([(x, y), (x + 20, y)], 8, 5, INK.stroke_width(2)))?;
    item(&mut x, "thresholds")?;
    if what_if {
        root.draw(&DashedPathElement::new([(x, y), (x + 20, y)], 2, 4, INK.stroke_width(2)))?;
        item(&mut x, "what-if thresholds")?;
    }
    root.draw(&Rectangle::new([(x, y - 6), (x + 20, y + 6)], RGBColor(0xbb, 0xbb, 0xbb).mix(BAND_ALPHA).filled()))?;
    item(&mut x, "shaded: alert active (level colour)")?;
    Ok(())
}

/// A rough width of `text` in pixels at `size` (CJK characters are about twice as wide).
fn text_width(text: &str, size: f64) -> i32 {
    let em: f64 = text.chars().map(|c| if c.is_ascii() { 0.56 } else { 1.0 }).sum();
    (em * size).round() as i32
}

/// (from, to, level) of every level period of the episodes, clipped to `[t0, t1]`.
fn periods<'e>(episodes: &'e [&'e Episode], t0: i64, t1: i64) -> impl Iterator<Item = (i64, i64, Level)> + 'e {
    episodes.iter().flat_map(move |ep| {
        ep.levels.iter().enumerate().filter_map(move |(i, (from, level))| {
            let to = ep.levels.get(i + 1).map_or(ep.end, |n| n.0);
            let (a, b) = (from.millis().max(t0), to.millis().min(t1));
            (b > a).then_some((a, b, *level))
        })
    })
}

/// Label positions: each at its line's height, pushed apart to at least `gap` pixels and kept
/// within `bounds`, in the order of the lines.
fn spread<T>(mut labels: Vec<(f64, String, T)>, gap: f64, bounds: (f64, f64)) -> Vec<(f64, String, T)> {
    labels.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = labels.len();
    for i in 0..n {
        let min = if i == 0 { bounds.0 } else { labels[i - 1].0 + gap };
        labels[i].0 = labels[i].0.max(min);
    }
    // Back up from the bottom if the stack ran past it.
    for i in (0..n).rev() {
        let max = if i + 1 == n { bounds.1 } else { labels[i + 1].0 - gap };
        labels[i].0 = labels[i].0.min(max);
    }
    labels
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::{SensorId, SensorKind, SiteId};
    use std::time::Duration;

    fn trace(from: &str, hours: i64) -> Trace {
        let t0 = Timestamp::parse_rfc3339(from).unwrap().millis();
        let points = (0..hours)
            .map(|h| {
                let v = 20.0 + (h as f64 / 24.0).sin();
                TracePoint { start: Timestamp(t0 + h * 3_600_000), min: v - 0.1, max: v + 0.1, last: v }
            })
            .collect();
        Trace {
            sensor: SensorId::new("hankou-wl"),
            site: SiteId::new("hankou"),
            kind: SensorKind::WaterLevel,
            unit: "m".into(),
            bucket: Duration::from_secs(3600),
            points,
        }
    }

    fn episode(from: i64, to: i64, level: Level) -> Episode {
        Episode {
            alert_id: "a".into(),
            rule_id: "r".into(),
            subject: "hankou-wl".into(),
            site: "hankou".into(),
            levels: vec![(Timestamp(from), level)],
            end: Timestamp(to),
            open_at_end: false,
        }
    }

    fn chart<'a>(trace: &'a Trace, runs: Vec<RunMarks<'a>>) -> Chart<'a> {
        let span = (trace.points[0].start, trace.points.last().unwrap().start);
        Chart { title: "汉口 <&>".into(), subtitle: "hankou-wl · water_level".into(), trace, span, runs }
    }

    /// The texts of an SVG, trimmed.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim())).collect()
    }

    /// Filled rectangles of a colour and opacity.
    fn rects(svg: &str, fill: &str, opacity: &str) -> usize {
        svg.lines()
            .filter(|l| l.starts_with("<rect") && l.contains(&format!("opacity=\"{opacity}\" fill=\"{fill}\"")))
            .count()
    }

    fn line(level: Level, value: f64) -> ThresholdLine {
        ThresholdLine { label: format!("{} {value:.2}", level.as_str()), value, level: Some(level) }
    }

    #[test]
    fn a_winter_across_new_year_has_the_year_on_its_dates_and_the_title_as_text() {
        let t = trace("2020-12-01T00:00:00+08:00", 24 * 75);
        let marks = RunMarks { run: "baseline", thresholds: vec![line(Level::Yellow, 20.5)], episodes: vec![] };
        let svg = svg(&chart(&t, vec![marks]), (1200, 480)).unwrap();
        let tx = texts(&svg);
        assert!(tx.contains(&"汉口 &lt;&amp;&gt;"), "the title is text, escaped: {tx:?}");
        assert!(tx.iter().any(|l| l.starts_with("2020-12-")), "December labelled with its year: {tx:?}");
        assert!(tx.iter().any(|l| l.starts_with("2021-01-")), "and January with its: {tx:?}");
        assert!(tx.contains(&"北京时间 Beijing time (UTC+8)"), "no single year in the caption: {tx:?}");
        assert!(tx.contains(&"yellow 20.50"));
        // Gaps stay gaps: two stretches of readings give two value lines.
        let mut gappy = t.clone();
        gappy.points.drain(100..200);
        let marks = RunMarks { run: "baseline", thresholds: vec![], episodes: vec![] };
        let lines = |svg: &str| svg.matches("stroke=\"#0B2E59\" stroke-width=\"2\"").count();
        let one = lines(&svg);
        let two = lines(&super::svg(&chart(&gappy, vec![marks]), (1200, 480)).unwrap());
        assert_eq!(two, one + 1, "a gap splits the line");
    }

    #[test]
    fn a_what_if_adds_its_own_thresholds_and_a_strip_per_run() {
        let t = trace("2020-07-01T00:00:00+08:00", 24 * 20);
        let t0 = t.points[0].start.millis();
        let (day, hour) = (86_400_000, 3_600_000);
        let base_eps = [episode(t0 + 2 * day, t0 + 3 * day, Level::Yellow)];
        let alt_eps = [episode(t0 + 2 * day - 5 * hour, t0 + 3 * day, Level::Orange)];
        let runs = vec![
            RunMarks {
                run: "baseline",
                thresholds: vec![line(Level::Yellow, 20.5), line(Level::Orange, 20.9)],
                episodes: base_eps.iter().collect(),
            },
            RunMarks {
                run: "what-if",
                thresholds: vec![line(Level::Yellow, 20.5), line(Level::Orange, 20.6)],
                episodes: alt_eps.iter().collect(),
            },
        ];
        let svg = svg(&chart(&t, runs), (1200, 480)).unwrap();
        let t = texts(&svg);
        assert!(t.contains(&"what-if orange 20.60") && t.contains(&"orange 20.90"), "{t:?}");
        assert!(!t.contains(&"what-if yellow 20.50"), "an unchanged threshold is drawn once");
        assert!(t.contains(&"baseline") && t.contains(&"what-if"), "a strip per run");
        assert_eq!(rects(&svg, "#F07F13", "1"), 1, "the what-if's orange period");
        assert_eq!(rects(&svg, "#F2C11B", "1"), 1, "the baseline's yellow period");
        assert_eq!(rects(&svg, "#F2C11B", "0.28"), 1, "the baseline's yellow band");
        assert_eq!(rects(&svg, "#F07F13", "0.28"), 0, "no baseline orange band");
    }

    #[test]
    fn the_smallest_plot_size_and_a_single_reading_still_draw() {
        let t = trace("2020-07-01T00:00:00+08:00", 1);
        let eps = [episode(t.points[0].start.millis(), t.points[0].start.millis(), Level::Red)];
        let marks = |run| RunMarks { run, thresholds: vec![line(Level::Red, 30.0)], episodes: eps.iter().collect() };
        for size in [(200, 200), (8000, 200)] {
            let svg = svg(&chart(&t, vec![marks("baseline"), marks("what-if")]), size).unwrap();
            assert!(texts(&svg).contains(&"red 30.00"), "{size:?}");
        }
    }

    #[test]
    fn threshold_labels_close_together_are_pushed_apart_within_the_plot() {
        let labels =
            vec![(100.0, "a".into(), ()), (101.0, "b".into(), ()), (99.0, "c".into(), ()), (5.0, "d".into(), ())];
        let out = spread(labels, 15.0, (10.0, 300.0));
        let ys: Vec<f64> = out.iter().map(|l| l.0).collect();
        assert_eq!(ys, [10.0, 99.0, 114.0, 129.0]);
        let names: Vec<&str> = out.iter().map(|l| l.1.as_str()).collect();
        assert_eq!(names, ["d", "c", "a", "b"], "in the order of their lines");
        let crowded = spread(vec![(290.0, "a".into(), ()), (295.0, "b".into(), ())], 15.0, (10.0, 300.0));
        assert_eq!(crowded.iter().map(|l| l.0).collect::<Vec<_>>(), [285.0, 300.0]);
    }
}
