//! Station plots for replay reports: the value over time (min–max envelope and last value per
//! bucket), threshold lines with labels and coloured bands while an alert was active, with time
//! and value axes. The layout is computed once as a list of drawing primitives; [`svg`] writes
//! them as SVG and [`png`] rasterises them (own rasteriser and bitmap font, so no system font
//! or graphics library is needed and the same input gives the same bytes).

use crate::verify::Episode;
use crate::Trace;
use chrono::{FixedOffset, TimeZone};
use riskwatch_core::{Level, Timestamp};
use std::fmt::Write as _;

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Warning colours (GB/T 27962-style blue / yellow / orange / red).
pub fn level_colour(l: Level) -> Rgb {
    match l {
        Level::Blue => Rgb(0x1f, 0x6f, 0xeb),
        Level::Yellow => Rgb(0xf2, 0xc1, 0x1b),
        Level::Orange => Rgb(0xf0, 0x7f, 0x13),
        Level::Red => Rgb(0xd6, 0x1f, 0x1f),
    }
}

/// Opacity of alert bands over the white plot area.
pub const BAND_ALPHA: f64 = 0.28;
const INK: Rgb = Rgb(0x22, 0x22, 0x22);
const GRID: Rgb = Rgb(0xdd, 0xdd, 0xdd);
const ENVELOPE: Rgb = Rgb(0x9a, 0xb0, 0xc8);
const LINE: Rgb = Rgb(0x0b, 0x2e, 0x59);

/// Text anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// Left edge at x.
    Start,
    /// Centred on x.
    Middle,
    /// Right edge at x.
    End,
}

/// A drawing primitive, in pixels from the top-left corner.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Filled rectangle.
    Rect { x: f64, y: f64, w: f64, h: f64, fill: Rgb, alpha: f64 },
    /// Straight line.
    Line { x1: f64, y1: f64, x2: f64, y2: f64, stroke: Rgb, width: f64, dashed: bool },
    /// Connected line.
    Polyline { points: Vec<(f64, f64)>, stroke: Rgb, width: f64 },
    /// Text; `size` is the cap height in pixels (≈ font size × 0.7).
    Text { x: f64, y: f64, text: String, size: f64, fill: Rgb, anchor: Anchor },
}

/// One plot, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Back to front.
    pub shapes: Vec<Shape>,
    /// Plot area (x, y, w, h).
    pub area: (f64, f64, f64, f64),
}

/// A horizontal line to draw: label, value, optional level colour.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdLine {
    /// Label (e.g. `warning_level 27.30`).
    pub label: String,
    /// Value.
    pub value: f64,
    /// Level colour, if the threshold is a level's.
    pub level: Option<Level>,
}

/// Lays out the plot of one trace.
pub fn layout(
    trace: &Trace,
    title: &str,
    thresholds: &[ThresholdLine],
    episodes: &[&Episode],
    span: (Timestamp, Timestamp),
    (width, height): (u32, u32),
) -> Plot {
    let (left, right, top, bottom) = (72.0, 150.0, 36.0, 44.0);
    let (w, h) = (f64::from(width), f64::from(height));
    let area = (left, top, (w - left - right).max(10.0), (h - top - bottom).max(10.0));
    let (t0, t1) = (span.0.millis() as f64, (span.1.millis().max(span.0.millis() + 1)) as f64);
    let mut lo = trace.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let mut hi = trace.points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
    for t in thresholds {
        lo = lo.min(t.value);
        hi = hi.max(t.value);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(0.05);
    let (lo, hi) = (lo - pad, hi + pad);
    let x_of = |t: f64| area.0 + (t - t0) / (t1 - t0) * area.2;
    let y_of = |v: f64| area.1 + (hi - v) / (hi - lo) * area.3;
    let mut shapes = vec![Shape::Rect { x: 0.0, y: 0.0, w, h, fill: Rgb(255, 255, 255), alpha: 1.0 }];

    // Alert bands.
    for ep in episodes {
        for (i, (from, level)) in ep.levels.iter().enumerate() {
            let to = ep.levels.get(i + 1).map_or(ep.end, |n| n.0);
            let (xa, xb) = (x_of(from.millis() as f64).max(area.0), x_of(to.millis() as f64).min(area.0 + area.2));
            if xb > xa {
                shapes.push(Shape::Rect {
                    x: xa,
                    y: area.1,
                    w: (xb - xa).max(1.0),
                    h: area.3,
                    fill: level_colour(*level),
                    alpha: BAND_ALPHA,
                });
            }
        }
    }
    // Value grid and labels.
    for v in ticks(lo, hi, 6) {
        let y = y_of(v);
        shapes.push(Shape::Line {
            x1: area.0,
            y1: y,
            x2: area.0 + area.2,
            y2: y,
            stroke: GRID,
            width: 1.0,
            dashed: false,
        });
        shapes.push(Shape::Text {
            x: area.0 - 8.0,
            y: y + 4.0,
            text: trim_number(v),
            size: 9.0,
            fill: INK,
            anchor: Anchor::End,
        });
    }
    // Time axis: one tick per day, or per n days so that labels don't collide.
    let day = 86_400_000.0;
    let cst = 8.0 * 3_600_000.0;
    let days = ((t1 - t0) / day).ceil().max(1.0);
    let every = (days / (area.2 / 70.0)).ceil().max(1.0);
    let mut t = ((t0 + cst) / day).ceil() * day - cst;
    let mut n = 0.0_f64;
    while t <= t1 {
        if n % every == 0.0 {
            let x = x_of(t);
            shapes.push(Shape::Line {
                x1: x,
                y1: area.1 + area.3,
                x2: x,
                y2: area.1 + area.3 + 5.0,
                stroke: INK,
                width: 1.0,
                dashed: false,
            });
            shapes.push(Shape::Text {
                x,
                y: area.1 + area.3 + 20.0,
                text: date_label(t as i64),
                size: 9.0,
                fill: INK,
                anchor: Anchor::Middle,
            });
        }
        t += day;
        n += 1.0;
    }
    // Envelope and value line.
    let bucket_w = (trace.bucket.as_millis() as f64 / (t1 - t0) * area.2).max(1.0);
    for p in &trace.points {
        let x = x_of(p.start.millis() as f64);
        let (ya, yb) = (y_of(p.max), y_of(p.min));
        shapes.push(Shape::Rect { x, y: ya, w: bucket_w, h: (yb - ya).max(1.0), fill: ENVELOPE, alpha: 0.6 });
    }
    let half = trace.bucket.as_millis() as f64 / 2.0;
    let points: Vec<(f64, f64)> =
        trace.points.iter().map(|p| (x_of(p.start.millis() as f64 + half), y_of(p.last))).collect();
    shapes.push(Shape::Polyline { points, stroke: LINE, width: 2.0 });
    // Thresholds, labelled in the right margin.
    for t in thresholds {
        let y = y_of(t.value);
        let colour = t.level.map_or(INK, level_colour);
        shapes.push(Shape::Line {
            x1: area.0,
            y1: y,
            x2: area.0 + area.2,
            y2: y,
            stroke: colour,
            width: 2.0,
            dashed: true,
        });
        shapes.push(Shape::Text {
            x: area.0 + area.2 + 6.0,
            y: y + 4.0,
            text: t.label.clone(),
            size: 9.0,
            fill: colour,
            anchor: Anchor::Start,
        });
    }
    // Frame, title, unit.
    for (x1, y1, x2, y2) in [
        (area.0, area.1, area.0 + area.2, area.1),
        (area.0, area.1 + area.3, area.0 + area.2, area.1 + area.3),
        (area.0, area.1, area.0, area.1 + area.3),
        (area.0 + area.2, area.1, area.0 + area.2, area.1 + area.3),
    ] {
        shapes.push(Shape::Line { x1, y1, x2, y2, stroke: INK, width: 1.0, dashed: false });
    }
    shapes.push(Shape::Text {
        x: area.0,
        y: 22.0,
        text: title.to_string(),
        size: 12.0,
        fill: INK,
        anchor: Anchor::Start,
    });
    shapes.push(Shape::Text {
        x: 8.0,
        y: area.1 - 8.0,
        text: format!("({})", trace.unit),
        size: 9.0,
        fill: INK,
        anchor: Anchor::Start,
    });
    shapes.push(Shape::Text {
        x: area.0 + area.2,
        y: h - 6.0,
        text: "Beijing time (UTC+8)".into(),
        size: 8.0,
        fill: INK,
        anchor: Anchor::End,
    });
    Plot { width, height, shapes, area }
}

fn date_label(ms: i64) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    cst.timestamp_millis_opt(ms).single().map(|d| d.format("%m-%d").to_string()).unwrap_or_default()
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

/// About `n` round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 && out.len() < 50 {
        out.push(v);
        v += step;
    }
    out
}

/// The plot as an SVG document.
pub fn svg(plot: &Plot) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n",
        w = plot.width,
        h = plot.height
    );
    for shape in &plot.shapes {
        let _ = match shape {
            Shape::Rect { x, y, w, h, fill, alpha } => writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\" fill-opacity=\"{alpha}\"/>",
                fill.hex()
            ),
            Shape::Line { x1, y1, x2, y2, stroke, width, dashed } => writeln!(
                s,
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\" stroke-width=\"{width}\"{}/>",
                stroke.hex(),
                if *dashed { " stroke-dasharray=\"8 5\"" } else { "" }
            ),
            Shape::Polyline { points, stroke, width } => {
                let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" stroke-linejoin=\"round\"/>",
                    pts.join(" "),
                    stroke.hex()
                )
            }
            Shape::Text { x, y, text, size, fill, anchor } => writeln!(
                s,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{:.0}\" fill=\"{}\" text-anchor=\"{}\">{}</text>",
                size / 0.7,
                fill.hex(),
                match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                },
                esc(text)
            ),
        };
    }
    s + "</svg>\n"
}

/// The plot rasterised as a PNG file (8-bit RGB).
pub fn png(plot: &Plot) -> Vec<u8> {
    let mut c = Canvas::new(plot.width, plot.height);
    for shape in &plot.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill, alpha } => c.rect(*x, *y, *w, *h, *fill, *alpha),
            Shape::Line { x1, y1, x2, y2, stroke, width, dashed } => {
                c.line(*x1, *y1, *x2, *y2, *stroke, *width, *dashed)
            }
            Shape::Polyline { points, stroke, width } => {
                for pair in points.windows(2) {
                    c.line(pair[0].0, pair[0].1, pair[1].0, pair[1].1, *stroke, *width, false);
                }
            }
            Shape::Text { x, y, text, size, fill, anchor } => c.text(*x, *y, text, *size, *fill, *anchor),
        }
    }
    c.encode()
}

struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Canvas { w, h, px: vec![255; (w * h * 3) as usize] }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f64) {
        if x < 0 || y < 0 || x >= i64::from(self.w) || y >= i64::from(self.h) {
            return;
        }
        let i = ((y as u32 * self.w + x as u32) * 3) as usize;
        for (k, v) in [c.0, c.1, c.2].into_iter().enumerate() {
            let old = f64::from(self.px[i + k]);
            self.px[i + k] = (old + (f64::from(v) - old) * a).round() as u8;
        }
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb, a: f64) {
        let (xa, ya) = (x.round() as i64, y.round() as i64);
        let (xb, yb) = ((x + w).round() as i64, (y + h).round() as i64);
        for py in ya.max(0)..yb.min(i64::from(self.h)) {
            for px in xa.max(0)..xb.min(i64::from(self.w)) {
                self.blend(px, py, c, a);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, c: Rgb, width: f64, dashed: bool) {
        let len = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt();
        let steps = len.ceil().max(1.0) as i64;
        let half = (width / 2.0).max(0.5);
        for i in 0..=steps {
            if dashed && (i % 13) >= 8 {
                continue;
            }
            let t = i as f64 / steps as f64;
            let (x, y) = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
            let r = (half - 0.5).ceil() as i64;
            for dy in -r..=r.max(0) {
                for dx in -r..=r.max(0) {
                    self.plot_once(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    fn plot_once(&mut self, x: i64, y: i64, c: Rgb) {
        self.blend(x, y, c, 1.0);
    }

    /// Bitmap text: 5×7 glyphs scaled to the cap height, baseline at y.
    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, c: Rgb, anchor: Anchor) {
        let scale = (size / 7.0).round().max(1.0) as i64;
        let advance = 6 * scale;
        let n = text.chars().count() as i64;
        let width = n * advance - scale;
        let left = match anchor {
            Anchor::Start => x.round() as i64,
            Anchor::Middle => x.round() as i64 - width / 2,
            Anchor::End => x.round() as i64 - width,
        };
        let top = y.round() as i64 - 7 * scale;
        for (i, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.blend(
                                    left + i as i64 * advance + col * scale + sx,
                                    top + r as i64 * scale + sy,
                                    c,
                                    1.0,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        use flate2::{write::ZlibEncoder, Compression};
        use std::io::Write as _;
        let mut raw = Vec::with_capacity(self.px.len() + self.h as usize);
        for row in self.px.chunks(self.w as usize * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        let _ = z.write_all(&raw);
        let idat = z.finish().unwrap_or_default();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&self.w.to_be_bytes());
        ihdr.extend_from_slice(&self.h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
        for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        out
    }
}

/// 5×7 glyphs (rows top to bottom, bit 4 = leftmost column). Lower case is drawn as upper
/// case; characters without a glyph (e.g. Chinese, which the SVG keeps) as a small box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ' ' => [0; 7],
        _ => [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0],
    }
}
