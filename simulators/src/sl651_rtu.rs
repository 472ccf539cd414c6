//! A simulated SL 651-2014 remote terminal unit (遥测站) at a river gauge during a flood: it
//! connects to the centre over TCP and sends, from a [`flood::RiverFloodParams`] hydrograph
//! and a [`rain::RainStormParams`] storm sampled every 5 minutes:
//!
//! - an hourly report (34) at each full hour: the 12 five-minute rainfall amounts of the
//!   hour (F4), the water level (39) and the accumulated rainfall (26);
//! - a timed report (32) at each half hour: water level and accumulated rainfall;
//! - an added report (33) in between whenever the level moved by `added_threshold_m` or more
//!   since the last report (加报).
//!
//! Each report waits for the centre's acknowledgement (a down frame echoing its serial
//! number) before the next is sent, as an RTU in self-report-with-confirmation mode does.

use crate::flood::RiverFloodParams;
use crate::rain::RainStormParams;
use riskwatch_core::Timestamp;
use riskwatch_ingest::sl651::frame::{encode, Decoded, Frame, FrameDecoder};
use riskwatch_ingest::sl651::report::{self, Element, Outgoing};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Who the RTU is.
#[derive(Clone, Debug, PartialEq)]
pub struct RtuIdentity {
    /// Remote station address (5 bytes; BCD digits for a numeric address).
    pub station: [u8; 5],
    /// Centre address it reports to.
    pub centre: u8,
    /// Password.
    pub password: u16,
    /// Station category (48: river).
    pub category: u8,
}

impl RtuIdentity {
    /// A river station with this 10-hex-digit address (`"0012345678"`), `None` if it is not one.
    pub fn river(station: &str) -> Option<Self> {
        if station.len() != 10 {
            return None;
        }
        let mut a = [0u8; 5];
        for (i, b) in a.iter_mut().enumerate() {
            *b = u8::from_str_radix(station.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(RtuIdentity { station: a, centre: 0x01, password: 0, category: 0x48 })
    }
}

/// One report of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedReport {
    /// Function code (32 timed, 33 added, 34 hourly).
    pub function: u8,
    /// Observation time.
    pub observed_at: Timestamp,
    /// Elements.
    pub elements: Vec<Element>,
}

/// The reports of a flood at one gauge, `hours` long from `start` (a full hour is best).
pub fn flood_reports(
    flood: &RiverFloodParams,
    storm: &RainStormParams,
    start: Timestamp,
    hours: u32,
    added_threshold_m: f64,
) -> Vec<PlannedReport> {
    const STEP_MS: i64 = 300_000;
    let mut out = Vec::new();
    let mut accumulated = 0.0;
    let mut hour_rain = [None; 12];
    let mut last_level: Option<f64> = None;
    let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
    for step in 1..=i64::from(hours) * 12 {
        let t_h = (step * STEP_MS) as f64 / 3_600_000.0;
        let rain = round(storm.intensity_at(t_h - 1.0 / 24.0) * 5.0 / 60.0, 1);
        accumulated += rain;
        hour_rain[((step - 1) % 12) as usize] = Some(rain);
        let level = round(flood.level_at(t_h * 3600.0), 3);
        let observed_at = start.plus_millis(step * STEP_MS);
        let level_el = || Element::number(0x39, Some(level), 4, 3);
        let rain_el = || Element::number(0x26, Some(round(accumulated, 1)), 3, 1);
        let planned = if step % 12 == 0 {
            let elements = [Some(Element::five_minute_rain(&hour_rain)), level_el(), rain_el()];
            Some((report::HOURLY, elements.into_iter().flatten().collect()))
        } else if step % 6 == 0 {
            Some((report::TIMED, [level_el(), rain_el()].into_iter().flatten().collect()))
        } else if last_level.is_none_or(|l| (level - l).abs() >= added_threshold_m) {
            Some((report::ADDED, level_el().into_iter().collect()))
        } else {
            None
        };
        if let Some((function, elements)) = planned {
            last_level = Some(level);
            out.push(PlannedReport { function, observed_at, elements });
        }
    }
    out
}

/// A connected RTU.
pub struct Rtu {
    stream: TcpStream,
    id: RtuIdentity,
    serial: u16,
    decoder: FrameDecoder,
}

impl Rtu {
    /// Connects to the centre at `addr` (`HOST:PORT`).
    pub async fn connect(addr: &str, id: RtuIdentity) -> io::Result<Rtu> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Rtu { stream, id, serial: 0, decoder: FrameDecoder::new() })
    }

    /// The frame of a report with the next serial number, sent at `sent_at`.
    pub fn frame(&mut self, r: &PlannedReport, sent_at: Timestamp) -> Frame {
        self.serial = self.serial.wrapping_add(1).max(1);
        let out = Outgoing {
            serial: self.serial,
            sent_at,
            station: self.id.station,
            category: self.id.category,
            observed_at: r.observed_at,
            elements: r.elements.clone(),
        };
        out.frame(self.id.centre, self.id.password, r.function)
    }

    /// Sends bytes as they are (a test's broken frame, say).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a report and waits up to `within` for its acknowledgement; returns the
    /// acknowledgement frame.
    pub async fn report(&mut self, r: &PlannedReport, within: Duration) -> io::Result<Frame> {
        let frame = self.frame(r, r.observed_at.plus_millis(2_000));
        let bytes = encode(&frame).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "report too long"))?;
        self.send_raw(&bytes).await?;
        self.acknowledgement(self.serial, within).await
    }

    /// Waits up to `within` for the acknowledgement of serial number `serial`; an
    /// acknowledgement of another serial number first is an error (the centre acknowledged
    /// something it should not have).
    pub async fn acknowledgement(&mut self, serial: u16, within: Duration) -> io::Result<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 512];
        loop {
            for d in self.decoder.by_ref() {
                if let Decoded::Frame(f, _) = d {
                    match report::serial(&f) {
                        Some(s) if f.down && s == serial => return Ok(f),
                        Some(s) if f.down => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("acknowledgement of serial {s} while waiting for {serial}"),
                            ))
                        }
                        _ => {}
                    }
                }
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("no acknowledgement of serial {serial}"))
            })??;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the centre closed the connection"));
            }
            self.decoder.push(&buf[..n]);
        }
    }
}
