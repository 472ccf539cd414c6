//! GB/T 17742 instrumental intensity checked against published tables rather than against
//! values worked out from the code's own formula.
//!
//! What the references are, honestly:
//! - **GB/T 17742-2008 《中国地震烈度表》, Table 1** (the same figures are in GB/T 17742-1999):
//!   the horizontal peak ground acceleration and velocity it lists for degrees VI to X,
//!   0.63 m/s² / 0.06 m/s, 1.25 / 0.13, 2.50 / 0.25, 5.00 / 0.50 and 10.00 / 1.00. That table
//!   predates the 2020 formulas (A.5, A.6) and the combination rule, so it is an independent
//!   check of formula, combination, rounding and degree mapping together. Its *ranges* were
//!   revised in 2020 and are not used (e.g. 2008's VI upper end 0.89 / 0.09 is VII in 2020).
//! - **GB/T 17742-2020, Table A.1**, lower boundary of degree VI: PGA 0.457 m/s² (4.57×10⁻¹),
//!   PGV 0.0381 m/s (3.81×10⁻²), which must give I = 5.5. These two figures are quoted from the
//!   table by an independent public implementation's test (a Go earthquake-alert service,
//!   `TestGBTInstrumentalIntensityMatchesStandardBoundaries`); the standard's text itself was not
//!   available to this project, so they are second-hand.
//!
//! No published station record (PGA, PGV and reported instrumental intensity of one station in
//! a named earthquake) could be found in the sources available; adding such records is the next
//! step (see rules/src/detectors/intensity.rs).

use riskwatch_rules::detectors::intensity::{instrumental_intensity, intensity_degree};

#[test]
fn the_2008_tables_ground_motion_for_degrees_vi_to_x_reads_those_degrees() {
    // GB/T 17742-2008 Table 1, horizontal ground motion: (degree, PGA m/s², PGV m/s).
    let table = [(6, 0.63, 0.06), (7, 1.25, 0.13), (8, 2.50, 0.25), (9, 5.00, 0.50), (10, 10.00, 1.00)];
    for (degree, pga, pgv) in table {
        let i = instrumental_intensity(pga, pgv);
        assert_eq!(intensity_degree(i), Some(degree), "PGA {pga} m/s², PGV {pgv} m/s gave I = {i}");
        // And the listed motion sits near the middle of the degree, not at an edge.
        assert!((i - f64::from(degree)).abs() <= 0.2, "I = {i} for degree {degree}");
    }
}

#[test]
fn the_2020_tables_lower_vi_boundary_is_intensity_5_5() {
    // GB/T 17742-2020 Table A.1 (as quoted second-hand, see the module docs).
    let i = instrumental_intensity(0.457, 0.0381);
    assert_eq!(i, 5.5);
    assert_eq!(intensity_degree(i), Some(6));
    // Just below it, degree V.
    assert_eq!(intensity_degree(instrumental_intensity(0.44, 0.036)), Some(5));
}
