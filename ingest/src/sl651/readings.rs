//! From decoded SL 651 frames to what the pipeline takes: readings of the registry's sensors
//! bound to (station, element), or dead letters with the reason.
//!
//! - An element the registry binds to a sensor becomes readings of that sensor, one per value
//!   (a 5-minute series, twelve); absent values (all FF) are skipped.
//! - An element of a station with bindings, but not bound itself (battery voltage, say), is
//!   skipped: RTUs send more elements than a deployment watches.
//! - A frame whose password is not the one the registry gives its station (`sl651 = { …,
//!   password }`) is dead-lettered as a whole (`sl651_bad_password`), before anything else
//!   about it is looked at.
//! - A report of a station with no binding at all is dead-lettered (`sl651_unknown_station`).
//! - A bound element whose unit is not the sensor's (a rainfall element bound to a water-level
//!   sensor), or whose sensor's kind is not a scalar, is dead-lettered (`unit_mismatch`,
//!   `wrong_type`), as is a value outside the wire's time range (`bad_timestamp`).

use super::elements::{self, id_hex};
use super::frame::{Frame, Rejected};
use super::report::{self, Report};
use crate::IngestEvent;
use riskwatch_core::kind::ValueShape;
use riskwatch_core::time::{MAX_WIRE_MS, MIN_WIRE_MS};
use riskwatch_core::{DeadLetter, Quality, Reading, Registry, Timestamp, Value};

/// The dead-letter `topic` of frames from a station: `sl651/{station}`.
pub fn topic(station: &str) -> String {
    format!("sl651/{station}")
}

/// A dead letter for SL 651 input.
pub fn dead_letter(
    at: Timestamp,
    topic: String,
    reason: &'static str,
    error: String,
    sensor: Option<String>,
    raw: Vec<u8>,
) -> DeadLetter {
    DeadLetter { received_at: at, topic, reason, error, index: None, sensor, raw }
}

/// Bytes the frame decoder rejected, from the connection `peer`.
pub fn rejected(at: Timestamp, peer: &str, r: Rejected) -> IngestEvent {
    IngestEvent::DeadLetter(dead_letter(
        at,
        format!("sl651/peer/{peer}"),
        r.error.code(),
        r.error.to_string(),
        None,
        r.raw,
    ))
}

/// What one checked up frame (`raw`: its bytes) brings: readings and dead letters.
pub fn frame_events(at: Timestamp, frame: &Frame, raw: &[u8], registry: &Registry) -> Vec<IngestEvent> {
    let station = frame.station_hex();
    let dl = |reason: &'static str, error: String, sensor: Option<String>| {
        IngestEvent::DeadLetter(dead_letter(at, topic(&station), reason, error, sensor, raw.to_vec()))
    };
    if let Some(password) = registry.sl651_password(&station) {
        if frame.password != password {
            return vec![dl(
                "sl651_bad_password",
                format!(
                    "password {:04X} is not station {station}'s (registry: sensors[].sl651.password)",
                    frame.password
                ),
                None,
            )];
        }
    }
    if frame.start != super::frame::STX {
        return vec![dl("sl651_unsupported", "multi-packet messages (SYN 16 … ETB 17) are not supported".into(), None)];
    }
    if frame.function == report::KEEP_ALIVE {
        return Vec::new();
    }
    if !report::is_report(frame.function) {
        return vec![dl(
            "sl651_unsupported",
            format!("function code {:02X}: not a report riskwatch reads (30 to 34)", frame.function),
            None,
        )];
    }
    let report = match report::parse(frame) {
        Ok(r) => r,
        Err(e) => return vec![dl("sl651_body", format!("function {:02X}: {e}", frame.function), None)],
    };
    report_events(&report, &station, registry, &dl)
}

fn report_events(
    report: &Report,
    station: &str,
    registry: &Registry,
    dl: &dyn Fn(&'static str, String, Option<String>) -> IngestEvent,
) -> Vec<IngestEvent> {
    let mut out = Vec::new();
    let mut readings = Vec::new();
    let mut bound = false;
    for o in &report.values {
        let element = id_hex(o.element);
        let Some(sensor) = registry.sl651_sensor(station, &element) else { continue };
        bound = true;
        let sensor_id = Some(sensor.id.as_str().to_string());
        if let Some(unit) = elements::spec(o.element).and_then(|s| s.unit) {
            if unit != &*sensor.unit {
                out.push(dl(
                    "unit_mismatch",
                    format!(
                        "element {element} (body byte {}) is in {unit}; sensor {} is registered in {}",
                        o.at,
                        sensor.id.as_str(),
                        sensor.unit
                    ),
                    sensor_id,
                ));
                continue;
            }
        }
        let scalar =
            registry.catalog().lookup(sensor.kind.as_str()).is_some_and(|(_, s)| s.shape == ValueShape::Scalar);
        if !scalar {
            out.push(dl(
                "wrong_type",
                format!(
                    "element {element}: sensor {} is a {}, not a scalar kind",
                    sensor.id.as_str(),
                    sensor.kind.as_str()
                ),
                sensor_id,
            ));
            continue;
        }
        for &(ts, value) in &o.points {
            let Some(v) = value else { continue };
            if !(MIN_WIRE_MS..MAX_WIRE_MS).contains(&ts.millis()) {
                out.push(dl(
                    "bad_timestamp",
                    format!("element {element}: observation time {} is outside 2000–2100", ts.to_rfc3339()),
                    sensor_id.clone(),
                ));
                continue;
            }
            readings.push(Reading {
                sensor: sensor.id.clone(),
                site: sensor.site.clone(),
                kind: sensor.kind.clone(),
                ts,
                value: Value::Scalar(v),
                unit: sensor.unit.clone(),
                quality: Quality::NotEvaluated,
                exercise: false,
            });
        }
    }
    if !bound && !registry.has_sl651_station(station) {
        out.push(dl(
            "sl651_unknown_station",
            format!("station {station} is not bound to any sensor (registry: sensors[].sl651.station)"),
            None,
        ));
    }
    if !readings.is_empty() {
        out.push(IngestEvent::Readings(readings));
    }
    out
}
