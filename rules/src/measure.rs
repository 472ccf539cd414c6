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
    /// approximation: the full method is `intensity`.
    PgaIntensity,
    /// Improved tangent angle of a GNSS point, degrees (Xu Qiang et al., 2009), from smoothed
    /// velocity over the constant-stage velocity. Stateful (detector).
    TangentAngle,
    /// Smoothed GNSS velocity along the direction of motion, mm/day. Stateful.
    GnssVelocity,
    /// Vertical rate of a GNSS point, mm/yr, positive when sinking. Stateful.
    SubsidenceRate,
    /// GB/T 17742-2020 instrumental intensity (0.1–10 Hz band-pass, vector PGA and PGV).
    /// Stateful (filter state carried across packets).
    Intensity,
    /// Peak ground velocity of the packet after band-pass and integration, m/s. Stateful.
    Pgv,
    /// Peak recursive STA/LTA ratio of the packet's vertical channel. Stateful.
    StaLta,
}

impl Measure {
    /// The value shape this measure reads.
    pub fn shape(self) -> ValueShape {
        match self {
            Measure::Value => ValueShape::Scalar,
            Measure::Horizontal | Measure::Settlement | Measure::Total => ValueShape::Displacement,
            Measure::TangentAngle | Measure::GnssVelocity | Measure::SubsidenceRate => ValueShape::Displacement,
            Measure::Pga | Measure::PgaIntensity | Measure::Intensity | Measure::Pgv | Measure::StaLta => {
                ValueShape::Waveform
            }
        }
    }

    /// Whether the measure needs a per-binding detector (see `detector_measure`).
    pub fn is_detector(self) -> bool {
        matches!(
            self,
            Measure::TangentAngle
                | Measure::GnssVelocity
                | Measure::SubsidenceRate
                | Measure::Intensity
                | Measure::Pgv
                | Measure::StaLta
        )
    }

    /// Unit of the measured number, given the reading's unit.
    pub fn unit(self, reading_unit: &str) -> &str {
        match self {
            Measure::Value | Measure::Horizontal | Measure::Settlement | Measure::Total => reading_unit,
            Measure::Pga => "m/s2",
            Measure::PgaIntensity | Measure::Intensity | Measure::StaLta => "",
            Measure::TangentAngle => "deg",
            Measure::GnssVelocity => "mm/d",
            Measure::SubsidenceRate => "mm/yr",
            Measure::Pgv => "m/s",
        }
    }

    /// The number for this reading, or `None` if the reading has another shape.
    #[inline]
    pub fn of(self, r: &Reading) -> Option<f64> {
        if let (Measure::Value, Value::Scalar(v)) = (self, &r.value) {
            return Some(*v);
        }
        self.of_other(r)
    }

    fn of_other(self, r: &Reading) -> Option<f64> {
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
