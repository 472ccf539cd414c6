//! The demo's simulated fleet: one series per sensor of the demo registry
//! (`config/demo/registry.toml`) — a reconstructed river flood and a flashy creek, a gas leak
//! reaching three detectors, a GNSS point on a slope creeping to failure, and an earthquake
//! recorded by three strong-motion terminals. Used by `riskwatch demo` and `riskwatch simulate`.

use crate::flood::{RiverFlood, RiverFloodParams};
use crate::gas::{GasLeak, GasLeakParams};
use crate::gnss::{SlopeCreep, SlopeCreepParams};
use crate::seismic::{SeismicStation, SeismicStationParams};
use crate::{SensorSpec, Track};
use riskwatch_core::{SensorKind, Timestamp};

/// The demo fleet: one series per sensor of `config/demo/registry.toml`.
pub fn tracks(now: Timestamp, seed: u64) -> Vec<Track> {
    let mut tracks = Vec::new();
    // Hankou, 2020 (reconstructed): warning 27.30 m crossed on 07-07, crest 28.77 m on 07-12 23:00.
    let hankou_start = Timestamp::parse_rfc3339("2020-07-04T00:00:00+08:00").expect("valid constant");
    tracks.push(RiverFlood::track(
        RiverFloodParams {
            base_level_m: 26.2,
            peak_level_m: 28.77,
            time_to_peak_h: 215.0,
            rise_shape: 2.5,
            recession_h: 120.0,
            duration_h: 14.0 * 24.0,
            ..Default::default()
        },
        SensorSpec::new("hankou-wl", "hankou", SensorKind::WaterLevel, "m"),
        hankou_start,
        seed,
    ));
    // A small flashy creek: a cloudburst takes it past its record within a day.
    tracks.push(RiverFlood::track(
        RiverFloodParams {
            base_level_m: 6.2,
            peak_level_m: 9.45,
            time_to_peak_h: 16.0,
            recession_h: 10.0,
            duration_h: 48.0,
            ..Default::default()
        },
        SensorSpec::new("shahe-wl", "shahe", SensorKind::WaterLevel, "m"),
        now,
        seed + 1,
    ));
    // A flange leak at pump P-101 in a westerly breeze: detectors at 15 m and 45 m downwind,
    // one 30 m crosswind.
    let leak =
        GasLeakParams { source_strength_lel: 200.0, leak_start_s: 240.0, leak_end_s: 1200.0, ..Default::default() };
    for (i, (id, distance, bearing)) in
        [("plant-a-lel-01", 15.0, 90.0), ("plant-a-lel-02", 45.0, 90.0), ("plant-a-lel-03", 30.0, 0.0)]
            .into_iter()
            .enumerate()
    {
        tracks.push(GasLeak::track(
            leak.clone().at(distance, bearing),
            SensorSpec::new(id, "plant-a", SensorKind::GasCombustible, "%LEL"),
            now,
            seed + 10 + i as u64,
        ));
    }
    // A slope creeping at 2 mm/day that starts to accelerate on day 15 and fails just after
    // day 30 (the series stops an hour before).
    tracks.push(SlopeCreep::track(
        SlopeCreepParams {
            creep_velocity_mm_per_day: 2.0,
            acceleration_onset_days: 15.0,
            failure_after_days: 30.05,
            ..Default::default()
        },
        SensorSpec::new("slope-01-gnss-01", "slope-01", SensorKind::GnssDisplacement, "mm"),
        now,
        seed + 20,
    ));
    // A shallow earthquake 12, 35 and 80 km from the three terminals.
    for (i, (id, site, km)) in
        [("eq-a-acc", "eq-a", 12.0), ("eq-b-acc", "eq-b", 35.0), ("eq-c-acc", "eq-c", 80.0)].into_iter().enumerate()
    {
        tracks.push(SeismicStation::track(
            SeismicStationParams { distance_km: km, ..Default::default() },
            SensorSpec::new(id, site, SensorKind::SeismicAcceleration, "m/s2"),
            now,
            seed + 30 + i as u64,
        ));
    }
    tracks
}
