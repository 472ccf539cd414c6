//! The v1 wire decoder as a gateway sees it: what it accepts, and for every rejection reason,
//! the reason code and a message that names the offending field.
//!
//! Each test decodes a real topic + payload pair against a small registry of two sites:
//! `hankou` (a water-level gauge and a strong-motion station) and `plant-a` (a toxic-gas
//! detector and a GNSS point on the slope behind the tank farm).

use riskwatch_core::wire::{decode, topic, DecodeError, Decoded, ItemRejection, Limits};
use riskwatch_core::{Displacement, Quality, Registry, SensorKind, Timestamp, Value};

const REGISTRY: &str = r#"
    [[sites]]
    id = "hankou"
    name = "Hankou gauging station"
    name_zh = "汉口水文站"

    [[sites]]
    id = "plant-a"
    name = "Plant A"

    [[sensors]]
    id = "hankou-wl"
    site = "hankou"
    kind = "water_level"
    unit = "m"

    [[sensors]]
    id = "hankou-seis"
    site = "hankou"
    kind = "seismic_acceleration"
    unit = "gal"

    [[sensors]]
    id = "plant-a-h2s"
    site = "plant-a"
    kind = "gas_toxic"
    unit = "mg/m3"

    [[sensors]]
    id = "plant-a-gnss"
    site = "plant-a"
    kind = "gnss_displacement"
    unit = "mm"
"#;

/// 2020-07-12T15:00:00Z, i.e. 23:00 in Wuhan.
const T0_MS: i64 = 1_594_566_000_000;

/// A valid water-level reading for `hankou`, used as the neighbour of a bad batch item.
const GOOD_WL: &str =
    r#"{"sensor":"hankou-wl","kind":"water_level","ts":"2020-07-12T23:00:00+08:00","unit":"m","value":27.1}"#;

/// A valid toxic-gas reading for `plant-a`.
const GOOD_H2S: &str = r#"{"sensor":"plant-a-h2s","kind":"gas_toxic","ts":1594566000000,"unit":"mg/m3","value":4.2}"#;

fn registry() -> Registry {
    Registry::from_toml(REGISTRY).expect("test registry is valid")
}

fn run(topic: &str, payload: &str) -> Result<Decoded, DecodeError> {
    decode(topic, payload.as_bytes(), &registry(), &Limits::default())
}

/// Decodes a message expected to fail whole.
fn whole_error(topic: &str, payload: &str) -> DecodeError {
    match run(topic, payload) {
        Err(e) => e,
        Ok(d) => panic!("expected the whole message to be rejected, got {d:?}"),
    }
}

/// Decodes a single reading on a sensor topic that is expected to be rejected on its own.
fn single_rejection(topic: &str, payload: &str) -> ItemRejection {
    let d = run(topic, payload).expect("message is readable");
    assert!(d.readings.is_empty(), "nothing should be accepted: {:?}", d.readings);
    assert_eq!(d.rejected.len(), 1, "{:?}", d.rejected);
    let r = d.rejected.into_iter().next().expect("one rejection");
    assert_eq!(r.index, None, "a single reading has no index");
    r
}

/// Sends `[good neighbour, bad]` as a gateway batch for `site` and returns the error of the bad
/// item, after checking the neighbour went through and the bad one carries index 1.
fn batch_item_error(site: &str, bad: &str) -> DecodeError {
    let good = if site == "hankou" { GOOD_WL } else { GOOD_H2S };
    let payload = format!(r#"{{"readings":[{good},{bad}]}}"#);
    let d = run(&topic::batch_topic(site), &payload).expect("batch is readable");
    assert_eq!(d.readings.len(), 1, "the good neighbour is accepted: {d:?}");
    assert_eq!(d.rejected.len(), 1, "{:?}", d.rejected);
    assert_eq!(d.rejected[0].index, Some(1));
    d.rejected[0].error.clone()
}

/// Checks the reason code and that the message names `field` (a path such as `readings[1].unit`).
fn assert_reason(err: &DecodeError, code: &str, field: &str) {
    let text = err.to_string();
    assert_eq!(err.code(), code, "wrong reason for: {text}");
    assert!(text.contains(field), "message should name {field:?}: {text}");
}

fn wl_topic() -> String {
    topic::reading_topic("hankou", "hankou-wl")
}

// ---------------------------------------------------------------------------------------------
// Rejections: whole message
// ---------------------------------------------------------------------------------------------

#[test]
fn oversized_payload_is_refused_unparsed() {
    let limit = Limits::default().max_payload_bytes;
    let payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(limit));
    let err = whole_error(&wl_topic(), &payload);
    assert_reason(&err, "oversized", &format!("payload is {} bytes", payload.len()));
    assert!(err.to_string().contains(&format!("{limit}-byte limit")), "{err}");
}

#[test]
fn payload_that_is_not_json_is_refused() {
    let err = whole_error(&wl_topic(), r#"{"kind":"water_level","value":27.1"#);
    assert_reason(&err, "not_json", "line 1 column");

    let err = decode(&wl_topic(), b"\xff\xfe27.1", &registry(), &Limits::default()).unwrap_err();
    assert_eq!(err.code(), "not_json", "{err}");
}

#[test]
fn payload_that_is_not_an_object_is_wrong_type() {
    let err = whole_error(&wl_topic(), "27.1");
    assert_reason(&err, "wrong_type", "(payload): expected a JSON object, found a number");
}

#[test]
fn bare_nan_literal_is_non_finite_at_its_position() {
    let payload = r#"{"kind":"water_level","ts":1594566000000,"unit":"m","value":NaN}"#;
    let column = payload.find("NaN").expect("has NaN") + 1;
    let err = whole_error(&wl_topic(), payload);
    assert_reason(&err, "non_finite", &format!("(payload, line 1 column {column})"));

    let err = whole_error(&wl_topic(), r#"{"readings":[{"value":-Infinity}]}"#);
    assert_eq!(err.code(), "non_finite", "{err}");
    let err = whole_error(&wl_topic(), "{\n  \"value\": Infinity\n}");
    assert_reason(&err, "non_finite", "line 2 column");
}

#[test]
fn number_beyond_f64_is_non_finite() {
    let err = whole_error(&wl_topic(), r#"{"kind":"water_level","ts":1594566000000,"unit":"m","value":1e999}"#);
    assert_reason(&err, "non_finite", "(payload, line 1 column");
}

#[test]
fn bad_topics_are_refused_and_named() {
    for (t, why) in [
        ("riskwatch/v1/alerts/red/hankou/hankou-wl", "must start with riskwatch/v1/readings/"),
        ("riskwatch/v2/readings/hankou/hankou-wl", "must start with riskwatch/v1/readings/"),
        ("riskwatch/v1/readings/hankou/hankou-wl/extra", "too many topic levels"),
        ("riskwatch/v1/readings/han kou/hankou-wl", "site level \"han kou\" is not a valid id"),
        ("riskwatch/v1/readings/hankou/", "sensor level \"\" is not a valid id"),
    ] {
        let err = whole_error(t, GOOD_WL);
        assert_reason(&err, "bad_topic", &format!("topic {t:?}"));
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[test]
fn unsupported_version_is_refused() {
    let err = whole_error(&wl_topic(), r#"{"v":2,"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#);
    assert_reason(&err, "unsupported_version", "v: unsupported wire version 2");
    let err = whole_error(&wl_topic(), r#"{"v":"1","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#);
    assert_reason(&err, "unsupported_version", "v: unsupported wire version \"1\"");
}

#[test]
fn batch_over_the_limit_is_refused_whole() {
    let limit = Limits::default().max_batch;
    let items = vec!["{}"; limit + 1].join(",");
    let err = whole_error(&topic::batch_topic("plant-a"), &format!(r#"{{"readings":[{items}]}}"#));
    assert_reason(&err, "batch_too_large", &format!("readings: batch of {} readings", limit + 1));
}

#[test]
fn empty_batch_is_refused() {
    let err = whole_error(&topic::batch_topic("plant-a"), r#"{"readings":[]}"#);
    assert_reason(&err, "empty_batch", "readings: batch is empty");
}

#[test]
fn site_topic_needs_a_readings_array() {
    let err = whole_error(&topic::batch_topic("hankou"), GOOD_WL);
    assert_reason(&err, "missing_field", "readings: required field is missing");
    let err = whole_error(&topic::batch_topic("hankou"), &format!(r#"{{"readings":{GOOD_WL}}}"#));
    assert_reason(&err, "wrong_type", "readings: expected an array of readings, found an object");
}

// ---------------------------------------------------------------------------------------------
// Rejections: one reading (the batch neighbour still goes through)
// ---------------------------------------------------------------------------------------------

#[test]
fn nan_as_a_string_is_non_finite_and_names_the_field() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"m","value":"NaN"}"#,
    );
    assert_reason(&err, "non_finite", "readings[1].value");
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-seis","kind":"seismic_acceleration","ts":1594566000000,"unit":"gal",
            "value":{"rate_hz":100,"channels":{"e":[0.1,"inf"],"n":[0.1,0.2],"z":[0.1,0.2]}}}"#,
    );
    assert_reason(&err, "non_finite", "readings[1].value.channels.e[1]");
}

#[test]
fn missing_fields_are_named() {
    let err = batch_item_error("hankou", r#"{"sensor":"hankou-wl","kind":"water_level","unit":"m","value":27.1}"#);
    assert_reason(&err, "missing_field", "readings[1].ts: required field is missing");
    let err = batch_item_error("hankou", r#"{"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#);
    assert_reason(&err, "missing_field", "readings[1].sensor");
    let err =
        batch_item_error("hankou", r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"m"}"#);
    assert_reason(&err, "missing_field", "readings[1].value");
    let err = batch_item_error(
        "plant-a",
        r#"{"sensor":"plant-a-gnss","kind":"gnss_displacement","ts":1594566000000,"unit":"mm","value":{"e":1.0,"n":2.0}}"#,
    );
    assert_reason(&err, "missing_field", "readings[1].value.u");
}

#[test]
fn wrong_json_types_are_named() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"m","value":"27.1"}"#,
    );
    assert_reason(&err, "wrong_type", "readings[1].value: expected a number, found a string");
    let err =
        batch_item_error("hankou", r#"{"sensor":"hankou-wl","kind":7,"ts":1594566000000,"unit":"m","value":27.1}"#);
    assert_reason(&err, "wrong_type", "readings[1].kind: expected a string, found a number");
    let err =
        batch_item_error("hankou", r#"{"sensor":"hankou-wl","kind":"water_level","ts":true,"unit":"m","value":27.1}"#);
    assert_reason(&err, "wrong_type", "readings[1].ts");
    let err = batch_item_error("hankou", "[27.1]");
    assert_reason(&err, "wrong_type", "readings[1]: expected a JSON object, found an array");
}

#[test]
fn unknown_kind_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"lava_flow","ts":1594566000000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "unknown_kind", "readings[1].kind: unknown kind \"lava_flow\"");
}

#[test]
fn kind_other_than_registered_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"rainfall","ts":1594566000000,"unit":"mm","value":12.0}"#,
    );
    assert_reason(
        &err,
        "kind_mismatch",
        "readings[1].kind: sensor hankou-wl is registered as water_level, not rainfall",
    );
}

#[test]
fn unit_not_of_the_kind_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"ft","value":89.0}"#,
    );
    assert_reason(&err, "unit_mismatch", "readings[1].unit: unit \"ft\" does not match; expected \"m\"");
}

#[test]
fn unit_of_the_kind_but_not_the_registered_one_is_refused() {
    // ppm is a toxic-gas unit, but this detector is registered in mg/m3: converting would need
    // the gas's molar mass, so the decoder refuses rather than guesses.
    let err = batch_item_error(
        "plant-a",
        r#"{"sensor":"plant-a-h2s","kind":"gas_toxic","ts":1594566000000,"unit":"ppm","value":3.0}"#,
    );
    assert_reason(&err, "unit_mismatch", "readings[1].unit: unit \"ppm\" does not match; expected \"mg/m3\"");
}

#[test]
fn unparseable_timestamp_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":"yesterday 23:00","unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_timestamp", "readings[1].ts: bad timestamp \"yesterday 23:00\"");
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000.5,"unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_timestamp", "readings[1].ts");
    assert!(err.to_string().contains("integer number of milliseconds"), "{err}");
}

#[test]
fn timestamp_without_offset_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":"2020-07-12T23:00:00","unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_timestamp", "readings[1].ts");
    assert!(err.to_string().contains("not RFC 3339 with an offset"), "{err}");
}

#[test]
fn epoch_seconds_are_refused_with_a_hint() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":1594566000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_timestamp", "readings[1].ts: bad timestamp 1594566000");
    assert!(err.to_string().contains("looks like epoch seconds; send milliseconds"), "{err}");

    // A zeroed gateway clock is out of range too, but is not mistaken for seconds.
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":"1970-01-01T00:00:05Z","unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_timestamp", "outside 2000-01-01..2100-01-01");
    assert!(!err.to_string().contains("epoch seconds"), "{err}");
}

#[test]
fn number_for_a_gnss_point_is_a_bad_value() {
    let err = batch_item_error(
        "plant-a",
        r#"{"sensor":"plant-a-gnss","kind":"gnss_displacement","ts":1594566000000,"unit":"mm","value":12.5}"#,
    );
    assert_reason(&err, "bad_value", "readings[1].value");
    assert!(err.to_string().contains("found a number"), "{err}");
}

#[test]
fn waveform_channels_of_unequal_length_are_a_bad_value() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-seis","kind":"seismic_acceleration","ts":1594566000000,"unit":"gal",
            "value":{"rate_hz":100,"channels":{"e":[0.1,0.2,0.3],"n":[0.1,0.2,0.3],"z":[0.1,0.2]}}}"#,
    );
    assert_reason(&err, "bad_value", "readings[1].value.channels.z: has 2 samples but channel e has 3");
}

#[test]
fn waveform_with_too_many_samples_is_a_bad_value() {
    let max = Limits::default().max_samples;
    let samples = vec!["0.01"; max + 1].join(",");
    let bad = format!(
        r#"{{"sensor":"hankou-seis","kind":"seismic_acceleration","ts":1594566000000,"unit":"gal","value":{{"rate_hz":100,"channels":{{"z":[{samples}]}}}}}}"#
    );
    let err = batch_item_error("hankou", &bad);
    assert_reason(&err, "bad_value", &format!("readings[1].value.channels.z: must hold 1 to {max} samples"));
}

#[test]
fn waveform_rate_out_of_range_is_a_bad_value() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-seis","kind":"seismic_acceleration","ts":1594566000000,"unit":"gal","value":{"rate_hz":0,"channels":{"z":[0.1]}}}"#,
    );
    assert_reason(&err, "bad_value", "readings[1].value.rate_hz: sample rate must be in (0, 10000] Hz");
}

#[test]
fn quality_outside_the_qartod_flags_is_refused() {
    for q in ["5", "0", "\"1\"", "1.0", "-1", "true"] {
        let bad = format!(
            r#"{{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1,"quality":{q}}}"#
        );
        let err = batch_item_error("hankou", &bad);
        assert_reason(
            &err,
            "bad_quality",
            &format!("readings[1].quality: quality flag {q} is not one of 1, 2, 3, 4, 9"),
        );
    }
}

#[test]
fn overlong_strings_are_refused() {
    let unit = "m".repeat(65);
    let err = batch_item_error(
        "hankou",
        &format!(r#"{{"sensor":"hankou-wl","kind":"water_level","ts":1594566000000,"unit":"{unit}","value":27.1}}"#),
    );
    assert_reason(&err, "too_long", "readings[1].unit: longer than 64 characters");
    let sensor = "s".repeat(65);
    let err = batch_item_error(
        "hankou",
        &format!(r#"{{"sensor":"{sensor}","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}}"#),
    );
    assert_reason(&err, "too_long", "readings[1].sensor: longer than 64 characters");
}

#[test]
fn payload_sensor_contradicting_the_topic_is_refused() {
    let r = single_rejection(
        &wl_topic(),
        r#"{"sensor":"hankou-seis","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&r.error, "mismatch", "sensor: \"hankou-seis\" contradicts \"hankou-wl\" (topic)");
    assert_eq!(r.sensor.as_deref(), Some("hankou-seis"));
}

#[test]
fn payload_site_contradicting_the_topic_is_refused() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou-wl","site":"plant-a","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "mismatch", "readings[1].site: \"plant-a\" contradicts \"hankou\" (topic)");
}

#[test]
fn sensor_published_under_another_site_is_refused() {
    // The gateway of plant-a forwards a reading of a sensor the registry places at hankou.
    let err = batch_item_error("plant-a", GOOD_WL);
    assert_reason(&err, "mismatch", "readings[1].site: \"plant-a\" contradicts \"hankou\" (registry)");
    // Same on a sensor topic, and even when the payload's site agrees with the topic.
    let r = single_rejection(
        &topic::reading_topic("plant-a", "hankou-wl"),
        r#"{"site":"plant-a","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&r.error, "mismatch", "site: \"plant-a\" contradicts \"hankou\" (registry)");
}

#[test]
fn unregistered_sensor_is_refused() {
    let err = batch_item_error(
        "plant-a",
        r#"{"sensor":"plant-a-so2","kind":"gas_toxic","ts":1594566000000,"unit":"mg/m3","value":1.0}"#,
    );
    assert_reason(&err, "unknown_sensor", "readings[1].sensor: sensor \"plant-a-so2\" is not registered");
    let r = single_rejection(
        &topic::reading_topic("plant-a", "plant-a-so2"),
        r#"{"kind":"gas_toxic","ts":1594566000000,"unit":"mg/m3","value":1.0}"#,
    );
    assert_reason(&r.error, "unknown_sensor", "sensor: sensor \"plant-a-so2\" is not registered");
    assert_eq!(r.sensor.as_deref(), Some("plant-a-so2"), "the sensor comes from the topic");
}

#[test]
fn invalid_sensor_id_is_a_bad_value() {
    let err = batch_item_error(
        "hankou",
        r#"{"sensor":"hankou wl","kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#,
    );
    assert_reason(&err, "bad_value", "readings[1].sensor: \"hankou wl\" is not a valid id");
}

// ---------------------------------------------------------------------------------------------
// Accepted messages
// ---------------------------------------------------------------------------------------------

#[test]
fn single_reading_with_offset_time_is_stored_in_utc() {
    let d = run(
        &wl_topic(),
        r#"{"sensor":"hankou-wl","site":"hankou","kind":"water_level","ts":"2020-07-12T23:00:00+08:00","unit":"m","value":27.1,"quality":1,"v":1}"#,
    )
    .expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let r = &d.readings[0];
    assert_eq!(r.sensor.as_str(), "hankou-wl");
    assert_eq!(r.site.as_str(), "hankou");
    assert_eq!(r.kind, SensorKind::WaterLevel);
    assert_eq!(r.ts, Timestamp(T0_MS));
    assert_eq!(r.ts.to_rfc3339(), "2020-07-12T15:00:00.000Z");
    assert_eq!(r.value, Value::Scalar(27.1));
    assert_eq!(&*r.unit, "m");
    assert_eq!(r.quality, Quality::Good);
}

#[test]
fn single_reading_with_epoch_millis_and_minimal_fields() {
    // On a sensor topic, `sensor` and `site` may be left out: the topic names them.
    let d = run(&wl_topic(), r#"{"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1}"#).expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.readings[0].ts, Timestamp(T0_MS));
    assert_eq!(d.readings[0].sensor.as_str(), "hankou-wl");
}

#[test]
fn gateway_batch_rejects_only_the_bad_item() {
    let payload = format!(
        r#"{{"readings":[
            {GOOD_H2S},
            {{"sensor":"plant-a-h2s","kind":"gas_toxic","ts":1594566001000,"unit":"ppm","value":3.0}},
            {{"sensor":"plant-a-gnss","kind":"gnss_displacement","ts":"2020-07-12T15:00:00Z","unit":"mm","value":{{"e":1.5,"n":-0.5,"u":-2.0}}}}
        ]}}"#
    );
    let d = run(&topic::batch_topic("plant-a"), &payload).expect("readable");
    assert_eq!(d.readings.len(), 2);
    assert_eq!(d.readings[0].sensor.as_str(), "plant-a-h2s");
    assert_eq!(d.readings[1].sensor.as_str(), "plant-a-gnss");
    assert_eq!(d.rejected.len(), 1);
    let bad = &d.rejected[0];
    assert_eq!(bad.index, Some(1));
    assert_eq!(bad.sensor.as_deref(), Some("plant-a-h2s"));
    assert_reason(&bad.error, "unit_mismatch", "readings[1].unit");
    assert!(bad.raw.contains("\"ppm\""), "raw item kept for dead letter: {}", bad.raw);
}

#[test]
fn batch_on_a_sensor_topic_is_accepted() {
    let payload = r#"{"readings":[
        {"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1},
        {"kind":"water_level","ts":1594566300000,"unit":"m","value":27.2}
    ]}"#;
    let d = run(&wl_topic(), payload).expect("readable");
    assert_eq!(d.readings.len(), 2, "{:?}", d.rejected);
    assert_eq!(d.readings[1].ts, Timestamp(T0_MS + 300_000));
}

#[test]
fn unit_aliases_are_stored_canonically() {
    let d = run(
        &topic::reading_topic("plant-a", "plant-a-h2s"),
        r#"{"kind":"gas_toxic","ts":1594566000000,"unit":"mg/m³","value":4.2}"#,
    )
    .expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(&*d.readings[0].unit, "mg/m3");
}

#[test]
fn gnss_value_decodes_to_displacement() {
    let d = run(
        &topic::reading_topic("plant-a", "plant-a-gnss"),
        r#"{"kind":"gnss_displacement","ts":1594566000000,"unit":"mm","value":{"e":12.4,"n":-3.1,"u":-8.0}}"#,
    )
    .expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.readings[0].value, Value::Displacement(Displacement { e: 12.4, n: -3.1, u: -8.0 }));
}

#[test]
fn waveform_packet_decodes_to_channels() {
    // A 1-second packet at 100 Hz on three components; ts is the first sample.
    let ch = |k: f64| (0..100).map(|i| format!("{}", k * f64::from(i) / 100.0)).collect::<Vec<_>>().join(",");
    let payload = format!(
        r#"{{"kind":"seismic_acceleration","ts":"2020-07-12T23:00:00.000+08:00","unit":"gal",
            "value":{{"rate_hz":100,"channels":{{"e":[{}],"n":[{}],"z":[{}]}}}}}}"#,
        ch(1.0),
        ch(2.0),
        ch(3.0)
    );
    let d = run(&topic::reading_topic("hankou", "hankou-seis"), &payload).expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let Value::Waveform(w) = &d.readings[0].value else { panic!("expected a waveform, got {:?}", d.readings[0].value) };
    assert_eq!(w.rate_hz, 100.0);
    let names: Vec<&str> = w.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["e", "n", "z"]);
    assert_eq!(w.len(), 100);
    assert_eq!(w.duration_ms(), 1000);
    assert_eq!(w.channels[2].samples[99], 3.0 * 99.0 / 100.0);
    assert_eq!(d.readings[0].ts, Timestamp(T0_MS));
}

#[test]
fn quality_defaults_to_not_evaluated() {
    for extra in ["", r#","quality":null"#] {
        let payload = format!(r#"{{"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1{extra}}}"#);
        let d = run(&wl_topic(), &payload).expect("readable");
        assert_eq!(d.readings[0].quality, Quality::NotEvaluated, "{payload}");
    }
    for (flag, q) in [
        (1, Quality::Good),
        (2, Quality::NotEvaluated),
        (3, Quality::Suspect),
        (4, Quality::Fail),
        (9, Quality::Missing),
    ] {
        let payload =
            format!(r#"{{"kind":"water_level","ts":1594566000000,"unit":"m","value":27.1,"quality":{flag}}}"#);
        let d = run(&wl_topic(), &payload).expect("readable");
        assert_eq!(d.readings[0].quality, q, "{payload}");
    }
}

#[test]
fn unknown_extra_fields_are_ignored() {
    // Forward compatibility: fields added in a later v1 revision, or vendor extras, are skipped.
    let payload = r#"{"v":1,"gateway":"gw-07","firmware":"3.2.1","readings":[
        {"sensor":"plant-a-h2s","kind":"gas_toxic","ts":1594566000000,"unit":"mg/m3","value":4.2,
         "battery_v":3.61,"rssi":-71,"meta":{"cal_due":"2021-01-01"},"tags":["north"]}
    ]}"#;
    let d = run(&topic::batch_topic("plant-a"), payload).expect("readable");
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.readings[0].value, Value::Scalar(4.2));
}

// ---------------------------------------------------------------------------------------------
// Exercise (drill) marks
// ---------------------------------------------------------------------------------------------

#[test]
fn exercise_marks_are_read_per_reading_and_per_message() {
    let marked = GOOD_WL.replace("\"value\"", "\"exercise\":true,\"value\"");
    let d = run(&topic::batch_topic("hankou"), &format!(r#"{{"readings":[{GOOD_WL},{marked}]}}"#)).unwrap();
    assert_eq!(d.readings.iter().map(|r| r.exercise).collect::<Vec<_>>(), [false, true]);
    let d = run(&topic::batch_topic("hankou"), &format!(r#"{{"exercise":true,"readings":[{GOOD_WL}]}}"#)).unwrap();
    assert!(d.readings[0].exercise, "the message's mark applies to its readings");
    let d = run(&wl_topic(), &marked).unwrap();
    assert!(d.readings[0].exercise, "a single reading");
    let d = run(&wl_topic(), GOOD_WL).unwrap();
    assert!(!d.readings[0].exercise, "unmarked is live");
}

#[test]
fn an_exercise_mark_must_be_a_boolean_and_a_marked_batch_cannot_hold_live_readings() {
    let e = whole_error(&topic::batch_topic("hankou"), &format!(r#"{{"exercise":"yes","readings":[{GOOD_WL}]}}"#));
    assert_reason(&e, "wrong_type", "exercise");
    let live = GOOD_WL.replace("\"value\"", "\"exercise\":false,\"value\"");
    let d =
        run(&topic::batch_topic("hankou"), &format!(r#"{{"exercise":true,"readings":[{GOOD_WL},{live}]}}"#)).unwrap();
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.rejected[0].index, Some(1));
    assert_reason(&d.rejected[0].error, "bad_value", "readings[1].exercise");
}
