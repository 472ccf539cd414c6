//! The body (正文) of the SL 651-2014 reports that carry water level and rainfall: test (30),
//! equal-interval (31), timed (32), added (33) and hourly (34) reports; and the centre's
//! acknowledgement.
//!
//! ```text
//! serial no (2, HEX) | send time (6, BCD YYMMDDhhmmss)
//! F1 F1 | station address (5) | station category (1)
//! F0 F0 | observation time (5, BCD YYMMDDhhmm)
//! element… (identifier, data definition, data), any number; F0 F0 + time again starts a
//! new observation time for the elements after it
//! ```
//!
//! An equal-interval report (31) has, after the observation time, a time step `04 18 DDHHmm`
//! and one element whose data are a series of values, one per step. All times are Beijing
//! time (UTC+08:00), the years 20YY.

use super::elements::{self, bcd_number, Shape};
use super::frame::{Frame, ESC, STX};
use chrono::{FixedOffset, TimeZone};
use riskwatch_core::Timestamp;

/// Keep-alive (链路维持报): serial number and send time only; no acknowledgement.
pub const KEEP_ALIVE: u8 = 0x2F;
/// Test report (测试报).
pub const TEST: u8 = 0x30;
/// Equal-interval report (均匀时段水文信息报).
pub const EQUAL_INTERVAL: u8 = 0x31;
/// Timed report (遥测站定时报).
pub const TIMED: u8 = 0x32;
/// Added report (遥测站加报报).
pub const ADDED: u8 = 0x33;
/// Hourly report (遥测站小时报).
pub const HOURLY: u8 = 0x34;

/// Whether reports of this function code carry elements and are acknowledged.
pub fn is_report(function: u8) -> bool {
    (TEST..=HOURLY).contains(&function)
}

/// A report's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Serial number (流水号), echoed in the acknowledgement.
    pub serial: u16,
    /// When the station sent it.
    pub sent_at: Timestamp,
    /// Station category (遥测站分类码): 50 rainfall, 48 river, 4B reservoir, …
    pub category: u8,
    /// Observed values, in body order.
    pub values: Vec<Observed>,
}

/// One element's value(s).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Identifier (`0xFFxx` for an extended one).
    pub element: u16,
    /// Byte offset of the identifier in the body (for error messages).
    pub at: usize,
    /// (time, value) pairs; `None` where the station sent no value (all FF).
    pub points: Vec<(Timestamp, Option<f64>)>,
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// Byte offset in the body.
    pub at: usize,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body byte {}: {}", self.at, self.what)
    }
}

fn err<T>(at: usize, what: impl Into<String>) -> Result<T, BodyError> {
    Err(BodyError { at, what: what.into() })
}

/// A reader over the body that names the offset of whatever is missing.
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BodyError> {
        match self.body.get(self.pos..self.pos + n) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => err(self.pos, format!("{what}: needs {n} bytes, the body has {} left", self.body.len() - self.pos)),
        }
    }

    fn expect(&mut self, marker: [u8; 2], what: &str) -> Result<(), BodyError> {
        let at = self.pos;
        let got = self.take(2, what)?;
        if got != marker {
            return err(
                at,
                format!("{what}: expected {:02X} {:02X}, found {:02X} {:02X}", marker[0], marker[1], got[0], got[1]),
            );
        }
        Ok(())
    }
}

/// The serial number of a report or keep-alive, if the body is long enough to carry one.
pub fn serial(frame: &Frame) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.body.first()?, *frame.body.get(1)?]))
}

/// Reads the body of a report (function 30…34) of `frame`.
pub fn parse(frame: &Frame) -> Result<Report, BodyError> {
    let mut c = Cursor { body: &frame.body, pos: 0 };
    let serial = u16::from_be_bytes(c.take(2, "serial number")?.try_into().unwrap_or([0, 0]));
    let at = c.pos;
    let sent_at = bcd_time(c.take(6, "send time")?, true).or_else(|e| err(at, format!("send time: {e}")))?;
    c.expect([0xF1, 0xF1], "station address identifier")?;
    let at = c.pos;
    let station = c.take(5, "station address")?;
    if station != frame.station {
        return err(
            at,
            format!("station address {} differs from the header's {}", super::frame::hex(station), frame.station_hex()),
        );
    }
    let category = c.take(1, "station category")?[0];
    c.expect([0xF0, 0xF0], "observation time identifier")?;
    let at = c.pos;
    let mut observed =
        bcd_time(c.take(5, "observation time")?, false).or_else(|e| err(at, format!("observation time: {e}")))?;
    let mut values = Vec::new();
    let mut step: Option<i64> = None;
    while c.pos < c.body.len() {
        let at = c.pos;
        let first = c.take(1, "element identifier")?[0];
        if first == 0xF0 {
            c.pos = at;
            c.expect([0xF0, 0xF0], "observation time identifier")?;
            let t = c.pos;
            observed = bcd_time(c.take(5, "observation time")?, false)
                .or_else(|e| err(t, format!("observation time: {e}")))?;
            continue;
        }
        let element = if first == 0xFF {
            0xFF00 | u16::from(c.take(1, "extended element identifier")?[0])
        } else {
            u16::from(first)
        };
        let def = c.take(1, "data definition")?[0];
        let (n, decimals) = (usize::from(def >> 3), def & 0x07);
        if n == 0 {
            return err(
                at + 1,
                format!("element {}: data definition {def:02X} gives no data bytes", elements::id_hex(element)),
            );
        }
        let shape = elements::spec(element).map_or(Shape::Bcd, |s| s.shape);
        let name = elements::id_hex(element);
        if frame.function == EQUAL_INTERVAL && shape == Shape::Bcd {
            // A series to the end of the body, one value per time step.
            let Some(step) = step else {
                return err(
                    at,
                    format!("element {name}: an equal-interval report needs a time step (04) before its values"),
                );
            };
            let rest = c.body.len() - c.pos;
            if rest == 0 || rest % n != 0 {
                return err(
                    c.pos,
                    format!("element {name}: {rest} bytes left are not a whole number of {n}-byte values"),
                );
            }
            let mut points = Vec::with_capacity(rest / n);
            for i in 0..rest / n {
                let data = c.take(n, "value")?;
                let v = bcd_number(data, decimals).or_else(|e| err(c.pos - n, format!("element {name}: {e}")))?;
                points.push((observed.plus_millis(step * i as i64), v));
            }
            values.push(Observed { element, at, points });
            break;
        }
        let data_at = c.pos;
        let data = c.take(n, &format!("element {name}"))?;
        let points = match shape {
            Shape::Bcd => {
                vec![(observed, bcd_number(data, decimals).or_else(|e| err(data_at, format!("element {name}: {e}")))?)]
            }
            Shape::FiveMinuteRain => {
                five_minutes(observed, data.iter().map(|&b| (b != 0xFF).then(|| f64::from(b) / 10.0)))
            }
            Shape::FiveMinuteLevel => five_minutes(
                observed,
                data.chunks(2).map(|p| match p {
                    [0xFF, 0xFF] | [_] => None,
                    [h, l] => Some(f64::from(u16::from_be_bytes([*h, *l])) / 100.0),
                    _ => None,
                }),
            ),
            Shape::TimeStep => {
                let [d, h, m] = data else {
                    return err(data_at, format!("element 04 (time step): {n} bytes, expected 3 (DDHHmm)"));
                };
                let minutes = [*d, *h, *m]
                    .iter()
                    .map(|&b| bcd_number(&[b], 0).ok().flatten().map(|v| v as i64))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| (v[0] * 24 + v[1]) * 60 + v[2]);
                match minutes {
                    Some(m) if m > 0 => step = Some(m * 60_000),
                    _ => return err(data_at, "element 04 (time step): not a BCD DDHHmm step longer than zero"),
                }
                continue;
            }
            Shape::Raw => continue,
        };
        values.push(Observed { element, at, points });
    }
    Ok(Report { serial, sent_at, category, values })
}

/// Twelve values, one per 5 minutes of the hour ending at `end`.
fn five_minutes(end: Timestamp, values: impl Iterator<Item = Option<f64>>) -> Vec<(Timestamp, Option<f64>)> {
    values.enumerate().map(|(i, v)| (end.plus_millis((i as i64 - 11) * 300_000), v)).collect()
}

/// Beijing time.
fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// A BCD time `YYMMDDhhmm` (`with_seconds`: `YYMMDDhhmmss`) in Beijing time.
pub fn bcd_time(b: &[u8], with_seconds: bool) -> Result<Timestamp, String> {
    let mut f = Vec::with_capacity(6);
    for &x in b {
        let (hi, lo) = (x >> 4, x & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(format!("{} is not BCD", super::frame::hex(b)));
        }
        f.push(u32::from(hi * 10 + lo));
    }
    if f.len() < 5 + usize::from(with_seconds) {
        return Err(format!("{} is too short for a time", super::frame::hex(b)));
    }
    let sec = if with_seconds { f.get(5).copied().unwrap_or(0) } else { 0 };
    cst()
        .with_ymd_and_hms(2000 + f[0] as i32, f[1], f[2], f[3], f[4], sec)
        .single()
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .ok_or_else(|| format!("{} is not a date and time", super::frame::hex(b)))
}

/// The BCD bytes of a time in Beijing time (`YYMMDDhhmm`, with `ss` if `with_seconds`).
pub fn time_bcd(t: Timestamp, with_seconds: bool) -> Vec<u8> {
    use chrono::{Datelike, Timelike};
    let dt = cst().timestamp_millis_opt(t.millis()).single().unwrap_or_else(|| cst().timestamp_millis_opt(0).unwrap());
    let mut f = vec![dt.year().rem_euclid(100) as u32, dt.month(), dt.day(), dt.hour(), dt.minute()];
    if with_seconds {
        f.push(dt.second());
    }
    f.into_iter().map(|v| (((v / 10) << 4) | (v % 10)) as u8).collect()
}

/// The centre's acknowledgement of an up frame: a down frame with the same addresses,
/// password and function code whose body echoes the serial number, with the centre's send
/// time, ending ESC (the station stays online).
pub fn acknowledgement(up: &Frame, serial: u16, now: Timestamp) -> Frame {
    let mut body = serial.to_be_bytes().to_vec();
    body.extend(time_bcd(now, true));
    Frame {
        centre: up.centre,
        station: up.station,
        password: up.password,
        function: up.function,
        down: true,
        start: STX,
        body,
        end: ESC,
    }
}

/// One element to send: identifier, data definition and data bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Identifier (`0xFFxx` for an extended one).
    pub id: u16,
    /// Data definition: data bytes << 3 | decimals.
    pub def: u8,
    /// Data bytes.
    pub data: Vec<u8>,
}

impl Element {
    /// A BCD number in `n` bytes with `decimals` decimals (`None`: an absent value, all FF);
    /// `None` if the value does not fit.
    pub fn number(id: u16, value: Option<f64>, n: usize, decimals: u8) -> Option<Element> {
        let data = match value {
            Some(v) => elements::encode_number(v, n, decimals)?,
            None => vec![0xFF; n],
        };
        if data.len() >= 32 {
            return None;
        }
        Some(Element { id, def: ((data.len() as u8) << 3) | (decimals & 7), data })
    }

    /// F4: the 5-minute rainfall amounts of the last hour (0.1 mm each; `None`: none sent).
    pub fn five_minute_rain(values: &[Option<f64>; 12]) -> Element {
        let data = values.iter().map(|v| v.map_or(0xFF, |mm| (mm * 10.0).round().clamp(0.0, 254.0) as u8)).collect();
        Element { id: 0xF4, def: 12 << 3, data }
    }

    fn write(&self, out: &mut Vec<u8>) {
        if self.id > 0xFF {
            out.extend_from_slice(&self.id.to_be_bytes());
        } else {
            out.push(self.id as u8);
        }
        out.push(self.def);
        out.extend_from_slice(&self.data);
    }
}

/// What a station puts in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Serial number.
    pub serial: u16,
    /// Send time.
    pub sent_at: Timestamp,
    /// Station address.
    pub station: [u8; 5],
    /// Station category (48: river).
    pub category: u8,
    /// Observation time.
    pub observed_at: Timestamp,
    /// Elements, in order.
    pub elements: Vec<Element>,
}

impl Outgoing {
    /// The report body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = self.serial.to_be_bytes().to_vec();
        out.extend(time_bcd(self.sent_at, true));
        out.extend_from_slice(&[0xF1, 0xF1]);
        out.extend_from_slice(&self.station);
        out.push(self.category);
        out.extend_from_slice(&[0xF0, 0xF0]);
        out.extend(time_bcd(self.observed_at, false));
        for e in &self.elements {
            e.write(&mut out);
        }
        out
    }

    /// The up frame of this report with function code `function`, to centre `centre`.
    pub fn frame(&self, centre: u8, password: u16, function: u8) -> Frame {
        Frame {
            centre,
            station: self.station,
            password,
            function,
            down: false,
            start: STX,
            body: self.body(),
            end: super::frame::ETX,
        }
    }
}
