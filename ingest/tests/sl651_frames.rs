//! The SL 651 parser against frames built byte by byte from the standard's layout — the
//! worked frame of docs/wire-format.md ("SL 651-2014") — and against broken ones: CRC errors,
//! truncated frames, garbage, length lies, unknown elements.

use riskwatch_core::{Registry, Timestamp, Value};
use riskwatch_ingest::sl651::frame::{encode, ESC, ETX, STX};
use riskwatch_ingest::sl651::readings::frame_events;
use riskwatch_ingest::sl651::report::{self, Element, Outgoing};
use riskwatch_ingest::sl651::{Decoded, Frame, FrameDecoder, FrameError};
use riskwatch_ingest::IngestEvent;

/// The worked timed report of docs/wire-format.md.
#[rustfmt::skip]
const TIMED: [u8; 55] = [
    0x7E, 0x7E,                         // start
    0x01,                               // centre address
    0x00, 0x12, 0x34, 0x56, 0x78,       // remote station address
    0x00, 0x00,                         // password
    0x32,                               // function: timed report
    0x00, 0x26,                         // up (0), body length 38
    0x02,                               // STX
    0x00, 0x01,                         // serial number 1
    0x20, 0x07, 0x12, 0x08, 0x00, 0x05, // sent 2020-07-12 08:00:05 (Beijing)
    0xF1, 0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x48, // station address, category 48 (river)
    0xF0, 0xF0, 0x20, 0x07, 0x12, 0x08, 0x00,       // observed 2020-07-12 08:00
    0x39, 0x23, 0x00, 0x02, 0x87, 0x70, // 39 water level, 4 bytes 3 decimals: 28.770 m
    0x26, 0x19, 0x00, 0x12, 0x34,       // 26 accumulated rainfall, 3 bytes 1 decimal: 123.4 mm
    0x38, 0x12, 0x12, 0x34,             // 38 supply voltage, 2 bytes 2 decimals: 12.34 V
    0x03,                               // ETX
    0xB8, 0x46,                         // CRC-16, high byte first
];

/// 2020-07-12T08:00+08:00.
const OBSERVED: Timestamp = Timestamp(1_594_512_000_000);

const REGISTRY: &str = r#"
[kinds.voltage]
shape = "scalar"
units = ["V"]
[kinds.counter]
shape = "scalar"
units = ["n"]
[[sites]]
id = "hankou"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
sl651 = { station = "0012345678", element = "39" }
[[sensors]]
id = "hankou-rain"
site = "hankou"
kind = "rainfall"
unit = "mm"
sl651 = { station = "0012345678", element = "F4" }
[[sensors]]
id = "odd"
site = "hankou"
kind = "counter"
unit = "n"
sl651 = { station = "0012345678", element = "99" }
[[sensors]]
id = "wrong"
site = "hankou"
kind = "water_level"
unit = "m"
sl651 = { station = "0012345678", element = "26" }
"#;

fn decode_all(bytes: &[u8]) -> Vec<Decoded> {
    let mut d = FrameDecoder::new();
    d.push(bytes);
    d.collect()
}

fn one_frame(bytes: &[u8]) -> Frame {
    match decode_all(bytes).as_slice() {
        [Decoded::Frame(f, raw)] => {
            assert_eq!(raw, bytes);
            f.clone()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_worked_timed_report_decodes_field_by_field() {
    let f = one_frame(&TIMED);
    assert_eq!((f.centre, f.station, f.password, f.function), (0x01, [0x00, 0x12, 0x34, 0x56, 0x78], 0, 0x32));
    assert_eq!((f.down, f.start, f.end, f.body.len()), (false, STX, ETX, 38));
    assert_eq!(f.station_hex(), "0012345678");
    let r = report::parse(&f).unwrap();
    assert_eq!(r.serial, 1);
    assert_eq!(r.sent_at, OBSERVED.plus_millis(5_000));
    assert_eq!(r.category, 0x48);
    let values: Vec<(u16, Timestamp, Option<f64>)> =
        r.values.iter().flat_map(|o| o.points.iter().map(move |(t, v)| (o.element, *t, *v))).collect();
    assert_eq!(values, [(0x39, OBSERVED, Some(28.77)), (0x26, OBSERVED, Some(123.4)), (0x38, OBSERVED, Some(12.34))]);
    assert_eq!(encode(&f).unwrap(), TIMED, "encoding gives the same bytes back");
}

#[test]
fn the_acknowledgement_is_a_down_frame_echoing_the_serial_number() {
    let f = one_frame(&TIMED);
    let ack = encode(&report::acknowledgement(&f, 1, OBSERVED.plus_millis(7_000))).unwrap();
    #[rustfmt::skip]
    let expected_head = [
        0x7E, 0x7E,
        0x00, 0x12, 0x34, 0x56, 0x78,       // station first in a down frame
        0x01,                               // then the centre
        0x00, 0x00, 0x32,                   // password, function echoed
        0x80, 0x08,                         // down (8), body length 8
        0x02,
        0x00, 0x01,                         // the report's serial number
        0x20, 0x07, 0x12, 0x08, 0x00, 0x07, // the centre's send time
        ESC,                                // station stays online
    ];
    assert_eq!(ack[..expected_head.len()], expected_head);
    assert_eq!(ack.len(), expected_head.len() + 2);
    let back = one_frame(&ack);
    assert!(back.down);
    assert_eq!((back.centre, back.station), (f.centre, f.station), "addresses read back in down order");
}

#[test]
fn a_crc_error_is_rejected_with_both_values_and_the_next_frame_still_decodes() {
    let mut bad = TIMED;
    bad[40] ^= 0x01; // inside the water level
    let mut stream = bad.to_vec();
    stream.extend_from_slice(&TIMED);
    match decode_all(&stream).as_slice() {
        [Decoded::Rejected(r), Decoded::Frame(f, _)] => {
            assert_eq!(r.raw, bad);
            assert!(matches!(r.error, FrameError::Crc { sent: 0xB846, .. }), "{:?}", r.error);
            assert_eq!(r.error.code(), "sl651_crc");
            assert!(r.error.to_string().contains("B846"), "{}", r.error);
            assert_eq!(f.function, 0x32);
        }
        other => panic!("{other:?}"),
    }
    let mut bad_crc = TIMED;
    bad_crc[54] ^= 0xFF;
    assert!(matches!(decode_all(&bad_crc)[0], Decoded::Rejected(ref r) if r.error.code() == "sl651_crc"));
}

#[test]
fn a_frame_arriving_in_pieces_waits_and_a_cut_one_is_rejected_at_close() {
    let mut d = FrameDecoder::new();
    for (i, b) in TIMED.iter().enumerate() {
        assert_eq!(d.next(), None, "nothing before byte {i}");
        d.push(&[*b]);
    }
    assert!(matches!(d.next(), Some(Decoded::Frame(..))));
    assert_eq!((d.next(), d.finish()), (None, None));
    for cut in [1, 13, 14, 30, 54] {
        let mut d = FrameDecoder::new();
        d.push(&TIMED[..cut]);
        assert_eq!(d.next(), None, "{cut} bytes: wait for more");
        let r = d.finish().unwrap();
        let expected = if cut == 1 { FrameError::Garbage } else { FrameError::Truncated };
        assert_eq!((r.error, r.raw.as_slice()), (expected, &TIMED[..cut]));
    }
}

#[test]
fn garbage_before_a_frame_is_rejected_and_decoding_resynchronises() {
    let mut stream = vec![0x41, 0x54, 0x0D, 0x0A, 0x7E, 0x00];
    stream.extend_from_slice(&TIMED);
    match decode_all(&stream).as_slice() {
        [Decoded::Rejected(r), Decoded::Frame(..)] => {
            assert_eq!((r.error.clone(), r.raw.as_slice()), (FrameError::Garbage, &stream[..6]));
            assert_eq!(r.error.code(), "sl651_framing");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn length_lies_and_bad_markers_are_named_and_the_next_frame_decodes() {
    for (at, value, expect) in [
        (12, 0x20, "end marker"),     // shorter than the body
        (12, 0x2A, "end marker"),     // longer, runs into the next frame
        (11, 0x40, "up/down flag 4"), // neither up nor down
        (13, 0x05, "start marker 05"),
    ] {
        let mut bad = TIMED;
        bad[at] = value;
        let mut stream = bad.to_vec();
        stream.extend_from_slice(&TIMED);
        let out = decode_all(&stream);
        let (Some(Decoded::Rejected(r)), Some(Decoded::Frame(..))) = (out.first(), out.last()) else {
            panic!("byte {at} = {value:02X}: {out:?}")
        };
        assert!(r.error.to_string().contains(expect), "byte {at} = {value:02X}: {}", r.error);
        assert_eq!(r.error.code(), "sl651_framing");
    }
}

#[test]
fn unknown_elements_read_by_their_data_definition_and_bad_bcd_is_named() {
    let station = [0x00, 0x12, 0x34, 0x56, 0x78];
    let report = |elements: Vec<Element>| Outgoing {
        serial: 7,
        sent_at: OBSERVED,
        station,
        category: 0x48,
        observed_at: OBSERVED,
        elements,
    };
    let odd = Element { id: 0x99, def: 0x12, data: vec![0x04, 0x56] }; // not in the table: 4.56
    let unbound = Element { id: 0xFF0A, def: 0x08, data: vec![0x07] };
    let f = report(vec![odd.clone(), unbound]).frame(1, 0, 0x33);
    let r = report::parse(&one_frame(&encode(&f).unwrap())).unwrap();
    assert_eq!(
        r.values.iter().map(|o| (o.element, o.points[0].1)).collect::<Vec<_>>(),
        [(0x99, Some(4.56)), (0xFF0A, Some(7.0))]
    );
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let raw = encode(&f).unwrap();
    let events = frame_events(OBSERVED, &f, &raw, &registry);
    let [IngestEvent::Readings(rs)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(rs.len(), 1, "the bound unknown element is read; the unbound one is skipped");
    assert_eq!((rs[0].sensor.as_str(), &rs[0].value), ("odd", &Value::Scalar(4.56)));

    let bad_bcd = Element { id: 0x39, def: 0x23, data: vec![0x00, 0x02, 0x8A, 0x70] };
    let f = report(vec![bad_bcd]).frame(1, 0, 0x32);
    let e = report::parse(&f).unwrap_err();
    assert!(e.to_string().contains("element 39: data byte 2 is 8A"), "{e}");
    let zero_len = Element { id: 0x39, def: 0x03, data: vec![] };
    let e = report::parse(&report(vec![zero_len]).frame(1, 0, 0x32)).unwrap_err();
    assert!(e.to_string().contains("gives no data bytes"), "{e}");
    let mut cut = report(vec![odd]).frame(1, 0, 0x32);
    cut.body.pop();
    let e = report::parse(&cut).unwrap_err();
    assert!(e.to_string().contains("needs 2 bytes, the body has 1 left"), "{e}");
}

#[test]
fn readings_follow_the_registry_bindings_and_misfits_are_dead_lettered() {
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let f = one_frame(&TIMED);
    let events = frame_events(OBSERVED, &f, &TIMED, &registry);
    let (mut readings, mut dead) = (Vec::new(), Vec::new());
    for e in events {
        match e {
            IngestEvent::Readings(r) => readings.extend(r),
            IngestEvent::DeadLetter(d) => dead.push(d),
            IngestEvent::Command(_) | IngestEvent::Forecast(_) => {
                unreachable!("an SL 651 frame makes readings and dead letters only")
            }
        }
    }
    assert_eq!(readings.len(), 1, "{readings:?}");
    let r = &readings[0];
    assert_eq!(
        (r.sensor.as_str(), r.site.as_str(), r.ts, &r.value),
        ("hankou-wl", "hankou", OBSERVED, &Value::Scalar(28.77))
    );
    assert_eq!(&*r.unit, "m");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].reason, dead[0].sensor.as_deref(), dead[0].topic.as_str()),
        ("unit_mismatch", Some("wrong"), "sl651/0012345678")
    );
    assert!(dead[0].error.contains("element 26 (body byte 29) is in mm"), "{}", dead[0].error);
    assert_eq!(dead[0].raw, TIMED, "the frame's bytes are kept");

    let mut other = f.clone();
    other.station = [0, 0, 0, 0, 9];
    other.body[10..15].copy_from_slice(&other.station);
    let events = frame_events(OBSERVED, &other, &[], &registry);
    let [IngestEvent::DeadLetter(d)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(d.reason, "sl651_unknown_station");
    assert!(d.error.contains("station 0000000009"), "{}", d.error);

    let mut mismatch = f.clone();
    mismatch.body[14] = 0x79;
    let events = frame_events(OBSERVED, &mismatch, &[], &registry);
    let [IngestEvent::DeadLetter(d)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(d.reason, "sl651_body");
    assert!(d.error.contains("station address 0012345679 differs from the header's 0012345678"), "{}", d.error);

    let mut keep_alive = f.clone();
    keep_alive.function = 0x2F;
    assert!(frame_events(OBSERVED, &keep_alive, &[], &registry).is_empty());
    keep_alive.function = 0x36;
    let events = frame_events(OBSERVED, &keep_alive, &[], &registry);
    assert!(matches!(events.as_slice(), [IngestEvent::DeadLetter(d)] if d.reason == "sl651_unsupported"));
}

#[test]
fn a_frame_without_the_station_password_the_registry_gives_is_dead_lettered_whole() {
    let registry = Registry::from_toml(
        &REGISTRY.replace("station = \"0012345678\"", "station = \"0012345678\", password = \"A1B2\""),
    )
    .unwrap();
    let f = one_frame(&TIMED);
    assert_eq!(f.password, 0, "the worked frame carries password 0000");
    let events = frame_events(OBSERVED, &f, &TIMED, &registry);
    let [IngestEvent::DeadLetter(d)] = events.as_slice() else { panic!("no readings from a bad password: {events:?}") };
    assert_eq!((d.reason, d.topic.as_str(), d.sensor.as_deref()), ("sl651_bad_password", "sl651/0012345678", None));
    assert!(d.error.contains("password 0000 is not station 0012345678's"), "{}", d.error);
    assert!(!d.error.contains("A1B2"), "the station's password is not written into the dead letter: {}", d.error);
    assert_eq!(d.raw, TIMED, "the frame's bytes are kept");
    let mut keep_alive = f.clone();
    keep_alive.function = 0x2F;
    let events = frame_events(OBSERVED, &keep_alive, &[], &registry);
    assert!(
        matches!(events.as_slice(), [IngestEvent::DeadLetter(d)] if d.reason == "sl651_bad_password"),
        "{events:?}"
    );

    // The right password: read as without one.
    let mut good = f.clone();
    good.password = 0xA1B2;
    let events = frame_events(OBSERVED, &good, &[], &registry);
    assert!(
        events.iter().any(|e| matches!(e, IngestEvent::Readings(r) if r[0].sensor.as_str() == "hankou-wl")),
        "{events:?}"
    );
    keep_alive.password = 0xA1B2;
    assert!(frame_events(OBSERVED, &keep_alive, &[], &registry).is_empty());
}

#[test]
fn an_hourly_report_carries_twelve_five_minute_rainfall_amounts() {
    let mut rain = [Some(0.5); 12];
    rain[3] = None;
    rain[11] = Some(12.7);
    let out = Outgoing {
        serial: 9,
        sent_at: OBSERVED,
        station: [0x00, 0x12, 0x34, 0x56, 0x78],
        category: 0x48,
        observed_at: OBSERVED,
        elements: vec![Element::five_minute_rain(&rain), Element::number(0x39, Some(28.8), 4, 3).unwrap()],
    };
    let f = out.frame(1, 0, 0x34);
    let bytes = encode(&f).unwrap();
    // F4, 12 bytes and no decimals (0x60), then the amounts in 0.1 mm.
    let at = bytes.windows(2).position(|w| w == [0xF4, 0x60]).unwrap();
    assert_eq!(bytes[at + 2..at + 14], [5, 5, 5, 0xFF, 5, 5, 5, 5, 5, 5, 5, 127]);
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let events = frame_events(OBSERVED, &one_frame(&bytes), &bytes, &registry);
    let [IngestEvent::Readings(rs)] = events.as_slice() else { panic!("{events:?}") };
    let rain: Vec<_> = rs.iter().filter(|r| r.sensor.as_str() == "hankou-rain").collect();
    assert_eq!(rain.len(), 11, "the absent amount is skipped");
    assert_eq!(rain[0].ts, OBSERVED.plus_millis(-55 * 60_000), "the first 5 minutes of the hour");
    assert_eq!((rain[10].ts, &rain[10].value), (OBSERVED, &Value::Scalar(12.7)));
    assert!(rs.iter().any(|r| r.sensor.as_str() == "hankou-wl" && r.value == Value::Scalar(28.8)));
}

#[test]
fn an_equal_interval_report_is_a_series_one_value_per_step() {
    let mut body = Outgoing {
        serial: 3,
        sent_at: OBSERVED,
        station: [0x00, 0x12, 0x34, 0x56, 0x78],
        category: 0x48,
        observed_at: OBSERVED,
        elements: vec![Element { id: 0x04, def: 0x18, data: vec![0x00, 0x00, 0x05] }],
    }
    .body();
    // 39, 4 bytes 3 decimals, three values 5 minutes apart.
    body.extend_from_slice(&[0x39, 0x23, 0x00, 0x02, 0x80, 0x00, 0x00, 0x02, 0x81, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
    let f = Frame {
        centre: 1,
        station: [0x00, 0x12, 0x34, 0x56, 0x78],
        password: 0,
        function: 0x31,
        down: false,
        start: STX,
        body,
        end: ETX,
    };
    let r = report::parse(&f).unwrap();
    assert_eq!(
        r.values[0].points,
        [(OBSERVED, Some(28.0)), (OBSERVED.plus_millis(300_000), Some(28.1)), (OBSERVED.plus_millis(600_000), None)]
    );
}
