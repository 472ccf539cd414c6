//! How a rule turns a reading into the one number it compares with thresholds.

use riskwatch_core::{Reading, Value, ValueShape};
use serde::Deserialize;

/// The quantity a threshold rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// A scalar reading as it is.
    Value,
    /// GNSS horizontal displacement √(e² + n²), mm.
    Horizontal,
    /// GNSS settlement, −up, mm (positive = ground going down).
    Settlement,
    /// GNSS 3-D displacement magnitude, mm.
    Total,
    /// Peak of the vector-combined acceleration over a waveform packet, m/s² (unfiltered).
    Pga,
    /// Instrumental intensity from the unfiltered packet PGA with GB/T 17742-2020's
    /// I_A = 3.17·lg(PGA) + 6.59, clamped to 1.0–12.0 and rounded to 0.1. A first
    /// approximation: the full method (0.1–10 Hz band-pass, PGV term) is a separate detector.
    PgaIntensity,
}

impl Measure {
    /// The value shape this measure reads.
    pub fn shape(self) -> ValueShape {
        match self {
            Measure::Value => ValueShape::Scalar,
            Measure::Horizontal | Measure::Settlement | Measure::Total => ValueShape::Displacement,
            Measure::Pga | Measure::PgaIntensity => ValueShape::Waveform,
        }
    }

    /// Unit of the measured number, given the reading's unit.
    pub fn unit(self, reading_unit: &str) -> &str {
        match self {
            Measure::Value | Measure::Horizontal | Measure::Settlement | Measure::Total => reading_unit,
            Measure::Pga => "m/s2",
            Measure::PgaIntensity => "",
        }
    }

    /// The number for this reading, or `None` if the reading has another shape.
    pub fn of(self, r: &Reading) -> Option<f64> {
        match (self, &r.value) {
            (Measure::Value, Value::Scalar(v)) => Some(*v),
            (Measure::Horizontal, Value::Displacement(d)) => Some(d.horizontal()),
            (Measure::Settlement, Value::Displacement(d)) => Some(-d.u),
            (Measure::Total, Value::Displacement(d)) => Some(d.total()),
            (Measure::Pga, Value::Waveform(w)) => Some(pga_m_s2(w.peak_vector(), &r.unit)),
            (Measure::PgaIntensity, Value::Waveform(w)) => Some(intensity_from_pga(pga_m_s2(w.peak_vector(), &r.unit))),
            _ => None,
        }
    }
}

fn pga_m_s2(peak: f64, unit: &str) -> f64 {
    if unit == "gal" {
        peak / 100.0
    } else {
        peak
    }
}

/// GB/T 17742-2020 I_A from PGA in m/s², rounded to 0.1 and clamped to 1.0–12.0.
pub fn intensity_from_pga(pga: f64) -> f64 {
    if pga <= 0.0 {
        return 1.0;
    }
    let i = 3.17 * pga.log10() + 6.59;
    ((i * 10.0).round() / 10.0).clamp(1.0, 12.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_matches_the_standard_formula() {
        // lg(1.35) ≈ 0.1303 → 3.17·0.1303 + 6.59 ≈ 7.0
        assert_eq!(intensity_from_pga(1.35), 7.0);
        assert_eq!(intensity_from_pga(1e-9), 1.0);
        assert_eq!(intensity_from_pga(1e6), 12.0);
    }
}
