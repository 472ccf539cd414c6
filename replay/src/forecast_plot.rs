//! The forecast fan of one station: the observed series with, for a selection of forecasts,
//! the spread of their members (min–max band) and their median, and the forecast rule's
//! threshold — how the forecasts closed in on the crossing as it approached.

use crate::timeaxis::time_axis;
use anyhow::{anyhow, Result};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use riskwatch_core::Forecast;

const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const OBSERVED: RGBColor = RGBColor(0x0b, 0x2e, 0x59);
const FAN: RGBColor = RGBColor(0xd9, 0x6a, 0x1f);

/// An SVG of the observed series (time ms, value) and every `every`-th of the forecasts, with
/// `threshold` dashed in its level's colour, titled `title`.
pub fn fan_svg(
    title: &str,
    observed: &[(i64, f64)],
    forecasts: &[&Forecast],
    every: usize,
    threshold: Option<(f64, riskwatch_core::Level)>,
    size: (u32, u32),
) -> Result<String> {
    let shown: Vec<&Forecast> = forecasts.iter().copied().step_by(every.max(1)).collect();
    let times = observed.iter().map(|p| p.0).chain(shown.iter().flat_map(|f| f.valid.iter().map(|t| t.millis())));
    let (t0, t1) = times.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    if t0 >= t1 {
        return Err(anyhow!("{title}: nothing to plot"));
    }
    let values = observed
        .iter()
        .map(|p| p.1)
        .chain(shown.iter().flat_map(|f| f.members.iter().flatten().copied()))
        .chain(threshold.map(|t| t.0));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.06).max(0.05);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let draw =
            || -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
                root.fill(&WHITE)?;
                let axis = time_axis(t0, t1, f64::from(size.0.saturating_sub(120)));
                let mut cc = ChartBuilder::on(&root)
                    .caption(title, ("sans-serif", 18).into_font().color(&INK))
                    .margin(10)
                    .x_label_area_size(40)
                    .y_label_area_size(60)
                    .build_cartesian_2d((t0..t1).with_key_points(axis.ticks.clone()), (lo - pad)..(hi + pad))?;
                cc.configure_mesh()
                    .light_line_style(TRANSPARENT)
                    .x_label_formatter(&|t| axis.label(*t))
                    .x_desc(axis.caption.as_str())
                    .draw()?;
                for f in &shown {
                    let lower = f
                        .valid
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t.millis(), f.members.iter().map(|m| m[i]).fold(f64::INFINITY, f64::min)));
                    let upper =
                        f.valid.iter().enumerate().rev().map(|(i, t)| {
                            (t.millis(), f.members.iter().map(|m| m[i]).fold(f64::NEG_INFINITY, f64::max))
                        });
                    let outline: Vec<(i64, f64)> = lower.chain(upper).collect();
                    cc.draw_series(std::iter::once(Polygon::new(outline, FAN.mix(0.15).filled())))?;
                    let median = f.median();
                    cc.draw_series(LineSeries::new(
                        f.valid.iter().map(|t| t.millis()).zip(median),
                        FAN.mix(0.8).stroke_width(1),
                    ))?;
                }
                cc.draw_series(LineSeries::new(observed.iter().copied(), OBSERVED.stroke_width(2)))?;
                if let Some((t, level)) = threshold {
                    cc.draw_series(std::iter::once(DashedPathElement::new(
                        [(t0, t), (t1, t)],
                        8,
                        5,
                        crate::plot::level_colour(level).stroke_width(2),
                    )))?;
                }
                root.present()?;
                Ok(())
            };
        draw().map_err(|e| anyhow!("drawing {title}: {e}"))?;
    }
    Ok(out)
}
