//! Recorded readings for a replay: CSV, yearbook-style CSV, JSON lines, the embedded SQLite
//! store and QuestDB's HTTP CSV export, validated against the registry and put in event-time
//! order. Every line that cannot be used becomes a [`Rejection`] naming where and why; nothing
//! is dropped silently and nothing panics on bad input.

use crate::questdb::Questdb;
use anyhow::{bail, Context, Result};
use chrono::{FixedOffset, NaiveDateTime, TimeZone};
use riskwatch_core::kind::ValueShape;
use riskwatch_core::wire::{decode, topic, Limits};
use riskwatch_core::{Quality, Reading, Registry, Sensor, SensorKind, Timestamp, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// An input record that was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Where: file and line, or row number.
    pub at: String,
    /// Why.
    pub reason: String,
}

/// Input layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `sensor,ts,value[,unit][,quality]` with a header row.
    Csv,
    /// `station,time,level` with a header row (hydrological yearbook layout, local time).
    Yearbook,
    /// One wire-format reading or batch object per line.
    Jsonl,
    /// The embedded store (`riskwatch run --db`).
    Sqlite,
    /// QuestDB's `/exp` CSV export over HTTP.
    Questdb,
}

impl FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "csv" => Format::Csv,
            "yearbook" => Format::Yearbook,
            "jsonl" | "ndjson" => Format::Jsonl,
            "sqlite" => Format::Sqlite,
            "questdb" => Format::Questdb,
            other => bail!("--format {other:?}: expected csv, yearbook, jsonl, sqlite or questdb"),
        })
    }
}

impl Format {
    /// The format of `input` from its address, name and (for CSV) header row.
    pub fn guess(input: &str) -> Result<Format> {
        if crate::questdb::is_questdb(input) {
            return Ok(Format::Questdb);
        }
        let lower = input.to_ascii_lowercase();
        if [".jsonl", ".ndjson", ".json"].iter().any(|e| lower.ends_with(e)) {
            return Ok(Format::Jsonl);
        }
        if [".db", ".sqlite", ".sqlite3"].iter().any(|e| lower.ends_with(e)) {
            return Ok(Format::Sqlite);
        }
        let file = std::fs::File::open(input).with_context(|| format!("reading {input}"))?;
        let mut rdr = csv_reader(file);
        let header = first_record(&mut rdr, input)?.unwrap_or_default();
        let has = |name: &str| header.iter().any(|c| clean_header(c) == name);
        if has("station") {
            Ok(Format::Yearbook)
        } else if has("sensor") {
            Ok(Format::Csv)
        } else {
            bail!("{input}: cannot tell the format from the name or header; give --format")
        }
    }
}

/// Where to read and what to keep.
#[derive(Clone, Debug)]
pub struct InputOptions {
    /// Layout.
    pub format: Format,
    /// Keep readings at or after this time.
    pub from: Option<Timestamp>,
    /// Keep readings before this time.
    pub to: Option<Timestamp>,
    /// UTC offset of yearbook local times, in seconds (+08:00 = 28 800).
    pub utc_offset_s: i32,
}

impl InputOptions {
    /// Beijing time, no time window.
    pub fn new(format: Format) -> Self {
        InputOptions { format, from: None, to: None, utc_offset_s: 8 * 3600 }
    }

    fn keeps(&self, ts: Timestamp) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts < t)
    }
}

/// Readings in event-time order, and what was refused.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Valid readings, sorted by event time (stable: equal times keep input order).
    pub readings: Vec<Reading>,
    /// Refused lines or rows.
    pub rejected: Vec<Rejection>,
}

/// Reads `input` (a path, or QuestDB: `http(s)://host:9000`, a questdb client string
/// `http::addr=host:9000;username=…;password=…;`, or `env:NAME` holding either; see
/// [`crate::questdb`]) as `opts` say.
pub fn load(input: &str, opts: &InputOptions, registry: &Registry) -> Result<Loaded> {
    let mut out = Loaded::default();
    let reg = Lookup::new(registry);
    match opts.format {
        Format::Csv | Format::Yearbook => {
            let file = std::fs::File::open(input).with_context(|| format!("reading {input}"))?;
            parse_csv(file, input, opts, &reg, &mut out)?;
        }
        Format::Questdb => {
            let q = Questdb::parse(input)?;
            let opts = InputOptions { format: Format::Csv, ..opts.clone() };
            // On a thread of its own: reqwest's blocking client must not run on an async
            // runtime's thread (the command line's). Rows are parsed as the answer arrives.
            std::thread::scope(|s| {
                s.spawn(|| parse_csv(q.export(&questdb_query(&opts))?, &q.base, &opts, &reg, &mut out))
                    .join()
                    .unwrap_or_else(|_| bail!("the reader thread of {} panicked", q.base))
            })?;
        }
        Format::Jsonl => {
            let text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
            parse_jsonl(&text, input, opts, registry, &mut out);
        }
        Format::Sqlite => read_sqlite(Path::new(input), opts, &reg, &mut out)?,
    }
    out.readings.sort_by_key(|r| r.ts);
    Ok(out)
}

/// Registry lookups for file inputs.
struct Lookup<'a> {
    registry: &'a Registry,
    /// Site id → its water-level sensors (yearbook stations may be named by site).
    gauges: HashMap<&'a str, Vec<&'a Sensor>>,
}

impl<'a> Lookup<'a> {
    fn new(registry: &'a Registry) -> Self {
        let mut gauges: HashMap<&str, Vec<&Sensor>> = HashMap::new();
        for s in registry.sensors() {
            if s.kind == SensorKind::WaterLevel {
                gauges.entry(s.site.as_str()).or_default().push(s);
            }
        }
        Lookup { registry, gauges }
    }

    fn sensor(&self, id: &str) -> Result<&'a Sensor, String> {
        self.registry.sensor(id).ok_or_else(|| format!("sensor {id:?} is not in the registry"))
    }

    fn station(&self, id: &str) -> Result<&'a Sensor, String> {
        if let Some(s) = self.registry.sensor(id) {
            return Ok(s);
        }
        match self.gauges.get(id).map(Vec::as_slice) {
            Some([one]) => Ok(one),
            Some(many) => Err(format!("station {id:?}: site has {} water-level sensors; name the sensor", many.len())),
            None => Err(format!("station {id:?} is neither a registered sensor nor a site with a water-level sensor")),
        }
    }

    fn scalar(&self, s: &Sensor, ts: Timestamp, value: f64, quality: Quality) -> Result<Reading, String> {
        let shape = self.registry.catalog().lookup(s.kind.as_str()).map(|(_, spec)| spec.shape);
        if shape != Some(ValueShape::Scalar) {
            return Err(format!("sensor {} measures {}, not a single number", s.id, s.kind.as_str()));
        }
        if !value.is_finite() {
            return Err(format!("value {value} is not a finite number"));
        }
        Ok(reading(s, ts, Value::Scalar(value), quality))
    }
}

fn reading(s: &Sensor, ts: Timestamp, value: Value, quality: Quality) -> Reading {
    Reading {
        sensor: s.id.clone(),
        site: s.site.clone(),
        kind: s.kind.clone(),
        ts,
        value,
        unit: Arc::clone(&s.unit),
        quality,
        exercise: false,
    }
}

/// The columns of a CSV layout, from its header row.
struct Columns {
    format: Format,
    id: usize,
    ts: usize,
    value: usize,
    unit: Option<usize>,
    quality: Option<usize>,
    names: (&'static str, &'static str, &'static str),
    offset: FixedOffset,
}

impl Columns {
    fn from_header(header: &csv::StringRecord, name: &str, opts: &InputOptions) -> Result<Self> {
        let header: Vec<String> = header.iter().map(clean_header).collect();
        let col = |n: &str| header.iter().position(|h| h == n);
        let names = match opts.format {
            Format::Yearbook => ("station", "time", "level"),
            _ => ("sensor", "ts", "value"),
        };
        let missing: Vec<&str> = [names.0, names.1, names.2].into_iter().filter(|c| col(c).is_none()).collect();
        if !missing.is_empty() {
            bail!("{name}: header {header:?} lacks column(s) {missing:?} (the {:?} layout)", opts.format);
        }
        Ok(Columns {
            format: opts.format,
            id: col(names.0).unwrap_or(0),
            ts: col(names.1).unwrap_or(0),
            value: col(names.2).unwrap_or(0),
            unit: col("unit"),
            quality: col("quality"),
            names,
            offset: FixedOffset::east_opt(opts.utc_offset_s).context("UTC offset out of range")?,
        })
    }

    /// One data record: a reading, `None` if outside the time window, or why it is refused.
    fn row(&self, f: &csv::StringRecord, opts: &InputOptions, reg: &Lookup<'_>) -> Result<Option<Reading>, String> {
        let get = |c: usize, what: &str| f.get(c).map(|s| s.trim()).ok_or_else(|| format!("no {what} column"));
        let (id_col, ts_col, value_col) = self.names;
        let id = get(self.id, id_col)?;
        let sensor = if self.format == Format::Yearbook { reg.station(id)? } else { reg.sensor(id)? };
        let ts = parse_time(get(self.ts, ts_col)?, self.offset).map_err(|e| format!("{ts_col}: {e}"))?;
        if !opts.keeps(ts) {
            return Ok(None);
        }
        let raw = get(self.value, value_col)?;
        let value: f64 = raw.parse().map_err(|_| format!("{value_col}: {raw:?} is not a number"))?;
        if let Some(u) = self.unit.and_then(|c| f.get(c)).map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let unit = riskwatch_core::kind::canonical_unit(u);
            if unit != &*sensor.unit {
                return Err(format!("unit: {u:?} is not {}'s registered unit {:?}", sensor.id, sensor.unit));
            }
        }
        let quality = match self.quality.and_then(|c| f.get(c)).map(|q| q.trim()).filter(|q| !q.is_empty()) {
            None => Quality::NotEvaluated,
            Some(q) => q
                .parse::<u8>()
                .ok()
                .and_then(|n| Quality::try_from(n).ok())
                .ok_or_else(|| format!("quality: {q:?} is not a QARTOD flag (1, 2, 3, 4, 9)"))?,
        };
        reg.scalar(sensor, ts, value, quality).map(Some).map_err(|e| format!("{value_col}: {e}"))
    }
}

fn parse_csv(src: impl Read, name: &str, opts: &InputOptions, reg: &Lookup<'_>, out: &mut Loaded) -> Result<()> {
    read_csv(src, name, opts, reg, |item, _| {
        match item {
            Ok(r) => out.readings.push(r),
            Err(rej) => out.rejected.push(rej),
        }
        true
    })
}

/// What [`stream`] found.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Readings passed on.
    pub readings: u64,
    /// Refused lines.
    pub rejected: Vec<Rejection>,
    /// False if a reading was earlier than the one before it: the stream stopped there and the
    /// caller must [`load`] (and sort) instead.
    pub ordered: bool,
}

/// Whether [`stream`] can read this format (CSV layouts from a file, and QuestDB's export,
/// which is asked for in time order).
pub fn streamable(format: Format) -> bool {
    matches!(format, Format::Csv | Format::Yearbook | Format::Questdb)
}

/// What [`stream`] reads from.
enum Source {
    File(std::fs::File, f64),
    Questdb(Questdb),
}

/// Reads a CSV or yearbook file, or QuestDB's export, that is in event-time order without
/// holding it in memory: a reader thread parses it as it arrives into batches of `batch`
/// readings and hands them to `f` on the calling thread, with the fraction of a file read so
/// far (for a progress bar; `None` for QuestDB, whose answer has no known length). Stops
/// (with `ordered = false`) at the first reading earlier than its predecessor.
pub fn stream(
    input: &str,
    opts: &InputOptions,
    registry: &Registry,
    batch: usize,
    mut f: impl FnMut(Vec<Reading>, Option<f64>),
) -> Result<Streamed> {
    let (source, name, opts) = if opts.format == Format::Questdb {
        let q = Questdb::parse(input)?;
        let name = q.base.clone();
        (Source::Questdb(q), name, InputOptions { format: Format::Csv, ..opts.clone() })
    } else {
        let file = std::fs::File::open(input).with_context(|| format!("reading {input}"))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0).max(1) as f64;
        (Source::File(file, size), input.to_string(), opts.clone())
    };
    let (name, opts) = (name.as_str(), &opts);
    let reg = Lookup::new(registry);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Reading>, Option<f64>)>(8);
    std::thread::scope(|scope| {
        // The reader is a plain thread, so reqwest's blocking client may run on it.
        let parser = scope.spawn(move || -> Result<Streamed> {
            let (src, size): (Box<dyn Read>, Option<f64>) = match source {
                Source::File(file, size) => (Box::new(file), Some(size)),
                Source::Questdb(q) => (Box::new(q.export(&questdb_query(opts))?), None),
            };
            let mut out = Streamed { ordered: true, ..Streamed::default() };
            let mut last = i64::MIN;
            let mut buf = Vec::with_capacity(batch);
            let mut stopped = false;
            read_csv(src, name, opts, &reg, |item, read| {
                let r = match item {
                    Ok(r) => r,
                    Err(rej) => {
                        out.rejected.push(rej);
                        return true;
                    }
                };
                if r.ts.millis() < last {
                    out.ordered = false;
                    return false;
                }
                last = r.ts.millis();
                buf.push(r);
                if buf.len() >= batch {
                    out.readings += buf.len() as u64;
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(batch));
                    if tx.send((full, size.map(|s| read as f64 / s))).is_err() {
                        stopped = true;
                        return false;
                    }
                }
                true
            })?;
            if out.ordered && !stopped && !buf.is_empty() {
                out.readings += buf.len() as u64;
                let _ = tx.send((buf, size.map(|_| 1.0)));
            }
            Ok(out)
        });
        for (b, done) in rx {
            f(b, done);
        }
        parser.join().unwrap_or_else(|_| bail!("the reader thread of {name} panicked"))
    })
}

/// A CSV reader (RFC 4180: quoted fields may hold commas, line breaks and `""` for a quote)
/// that leaves the header row to the caller and allows records of different lengths.
fn csv_reader<R: Read>(src: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(1 << 20).from_reader(src)
}

/// A header cell as matched against column names: trimmed, lower case. (The byte-order mark
/// Excel puts at the start of a "CSV UTF-8" file is dropped by the csv reader.)
fn clean_header(cell: &str) -> String {
    cell.trim().to_ascii_lowercase()
}

/// `text` cut to at most `max` characters, with "…" if it was longer.
fn shorten(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

fn blank(rec: &csv::StringRecord) -> bool {
    rec.iter().all(|f| f.trim().is_empty())
}

/// The first record that is not blank (the header), `None` for an empty file.
fn first_record<R: Read>(rdr: &mut csv::Reader<R>, name: &str) -> Result<Option<csv::StringRecord>> {
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => return Ok(None),
            Ok(true) if blank(&rec) => continue,
            Ok(true) => return Ok(Some(rec)),
            Err(e) => bail!("{name}: header: {}", csv_problem(&e)),
        }
    }
}

/// A CSV reading error in words, with the line it is on if the reader knows it.
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not UTF-8 text (save the file as \"CSV UTF-8\")", err.field() + 1)
        }
        _ => e.to_string(),
    }
}

/// Reads a CSV layout: the header row, then each record as a reading or a refusal naming
/// `name:line`, handed to `f` with the number of bytes read so far; `f` returns false to stop.
/// Records outside the time window and blank lines are skipped.
fn read_csv(
    src: impl Read,
    name: &str,
    opts: &InputOptions,
    reg: &Lookup<'_>,
    mut f: impl FnMut(Result<Reading, Rejection>, u64) -> bool,
) -> Result<()> {
    let mut rdr = csv_reader(src);
    let Some(header) = first_record(&mut rdr, name)? else { return Ok(()) };
    let cols = Columns::from_header(&header, name, opts)?;
    let mut rec = csv::StringRecord::new();
    loop {
        let item = match rdr.read_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) if blank(&rec) => continue,
            Ok(true) => {
                let line = rec.position().map_or(0, csv::Position::line);
                match cols.row(&rec, opts, reg) {
                    Ok(Some(r)) => Ok(r),
                    Ok(None) => continue,
                    Err(reason) => {
                        // An unclosed quote runs on to the end of the file: say how far, and
                        // don't quote all of it.
                        let breaks: usize = rec.iter().map(|f| f.trim_end().matches('\n').count()).sum();
                        let mut reason = shorten(reason, 200);
                        if breaks > 0 {
                            let end = line + breaks as u64;
                            reason += &format!(" (a quoted field runs on to line {end}: a quote not closed?)");
                        }
                        Err(Rejection { at: format!("{name}:{line}"), reason })
                    }
                }
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { pos, .. } => {
                    let line = pos.as_ref().map_or(0, csv::Position::line);
                    Err(Rejection { at: format!("{name}:{line}"), reason: csv_problem(&e) })
                }
                _ => return Err(anyhow::anyhow!("reading {name}: {}", csv_problem(&e))),
            },
        };
        if !f(item, rdr.position().byte()) {
            return Ok(());
        }
    }
}

/// RFC 3339, epoch milliseconds, or a local `YYYY-MM-DD HH:MM[:SS]` in `offset`.
fn parse_time(s: &str, offset: FixedOffset) -> Result<Timestamp, String> {
    if let Some(t) = fast_time(s.as_bytes(), offset.local_minus_utc()) {
        return Ok(t);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Timestamp(ms));
    }
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, f) {
            return offset
                .from_local_datetime(&naive)
                .single()
                .map(|dt| Timestamp(dt.timestamp_millis()))
                .ok_or_else(|| format!("{s:?} is not a valid local time"));
        }
    }
    Err(format!("{s:?} is not a time (RFC 3339, epoch ms, or YYYY-MM-DD HH:MM[:SS] local)"))
}

/// `YYYY-MM-DD HH:MM[:SS]` (local, `offset_s` east of UTC) and `YYYY-MM-DDTHH:MM:SS` followed
/// by `Z` or `±HH:MM`, without allocating; anything else (fractions, other layouts, invalid
/// dates) is left to the general parser.
fn fast_time(b: &[u8], offset_s: i32) -> Option<Timestamp> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let (y, mo, d, h, mi) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?);
    let (sec, rest) = if b.get(16) == Some(&b':') { (num(17..19)?, b.get(19..)?) } else { (0, &b[16..]) };
    let offset_ms = match rest {
        [] if b[10] == b' ' => i64::from(offset_s) * 1000,
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = i64::from(h1.checked_sub(b'0')?) * 10 + i64::from(h2.checked_sub(b'0')?);
            let mm = i64::from(m1.checked_sub(b'0')?) * 10 + i64::from(m2.checked_sub(b'0')?);
            if hh > 23 || mm > 59 {
                return None;
            }
            (if *sign == b'-' { -1 } else { 1 }) * (hh * 3600 + mm * 60) * 1000
        }
        _ => return None,
    };
    let days_in = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 - offset_ms))
}

fn parse_jsonl(text: &str, name: &str, opts: &InputOptions, registry: &Registry, out: &mut Loaded) {
    let limits = Limits::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{name}:{}", i + 1);
        let json: serde_json::Value = match serde_json::from_str(line) {
            Ok(j) => j,
            Err(e) => {
                out.rejected.push(Rejection { at: at(), reason: format!("not JSON: {e}") });
                continue;
            }
        };
        // A recorded MQTT message (`{"topic":…,"payload":{…}}`, as `riskwatch simulate --dry-run`
        // writes its plan) keeps its own topic; a bare reading or batch gets the topic its
        // gateway would have used, from the (first) sensor's registered site.
        let recorded = json.get("topic").and_then(|t| t.as_str()).zip(json.get("payload"));
        let (topic, payload) = match recorded {
            Some((t, p)) => (t.to_string(), p.to_string()),
            None => {
                let first = json.get("readings").and_then(|r| r.get(0)).unwrap_or(&json);
                let Some(sensor) = first.get("sensor").and_then(|s| s.as_str()).and_then(|s| registry.sensor(s)) else {
                    out.rejected.push(Rejection { at: at(), reason: "sensor: missing or not in the registry".into() });
                    continue;
                };
                let topic = if json.get("readings").is_some() {
                    topic::batch_topic(sensor.site.as_str())
                } else {
                    topic::reading_topic(sensor.site.as_str(), sensor.id.as_str())
                };
                (topic, line.to_string())
            }
        };
        match decode(&topic, payload.as_bytes(), registry, &limits) {
            Ok(d) => {
                out.readings.extend(d.readings.into_iter().filter(|r| opts.keeps(r.ts)));
                for rej in d.rejected {
                    let item = rej.index.map(|i| format!(" readings[{i}]")).unwrap_or_default();
                    out.rejected.push(Rejection { at: format!("{}{item}", at()), reason: rej.error.to_string() });
                }
            }
            Err(e) => out.rejected.push(Rejection { at: at(), reason: e.to_string() }),
        }
    }
}

fn read_sqlite(path: &Path, opts: &InputOptions, reg: &Lookup<'_>, out: &mut Loaded) -> Result<()> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening store {}", path.display()))?;
    let mut st = conn
        .prepare(
            "SELECT rowid, sensor, ts, value, value_json, quality FROM readings WHERE ts >= ?1 AND ts < ?2 ORDER BY ts",
        )
        .or_else(|_| {
            // WITHOUT ROWID tables have no rowid: number rows as they come.
            conn.prepare(
                "SELECT 0, sensor, ts, value, value_json, quality FROM readings WHERE ts >= ?1 AND ts < ?2 ORDER BY ts",
            )
        })
        .with_context(|| format!("{}: not a riskwatch store (no readings table)", path.display()))?;
    let from = opts.from.map_or(i64::MIN, Timestamp::millis);
    let to = opts.to.map_or(i64::MAX, Timestamp::millis);
    let rows = st.query_map([from, to], |r| {
        Ok((
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<f64>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for (n, row) in rows.enumerate() {
        let (sensor, ts, value, json, quality) = row?;
        let parsed = (|| -> Result<Reading, String> {
            let s = reg.sensor(&sensor)?;
            let quality = u8::try_from(quality)
                .ok()
                .and_then(|q| Quality::try_from(q).ok())
                .ok_or_else(|| format!("quality {quality} is not a QARTOD flag"))?;
            match (value, json) {
                (Some(v), _) => reg.scalar(s, Timestamp(ts), v, quality),
                (None, Some(j)) => serde_json::from_str::<Value>(&j)
                    .map(|v| reading(s, Timestamp(ts), v, quality))
                    .map_err(|e| format!("value_json: {e}")),
                (None, None) => Err("no value".into()),
            }
        })();
        match parsed {
            Ok(r) => out.readings.push(r),
            Err(reason) => out.rejected.push(Rejection { at: format!("{}: row {}", path.display(), n + 1), reason }),
        }
    }
    Ok(())
}

/// The SQL sent to QuestDB's `/exp` endpoint for the time window.
pub fn questdb_query(opts: &InputOptions) -> String {
    let mut q = String::from("SELECT sensor, ts, value, quality FROM readings");
    let mut conds = Vec::new();
    if let Some(f) = opts.from {
        conds.push(format!("ts >= '{}'", f.to_rfc3339()));
    }
    if let Some(t) = opts.to {
        conds.push(format!("ts < '{}'", t.to_rfc3339()));
    }
    if !conds.is_empty() {
        q += &format!(" WHERE {}", conds.join(" AND "));
    }
    q + " ORDER BY ts"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_time_parser_agrees_with_chrono() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let mut t = Timestamp::parse_rfc3339("1999-12-31T23:59:00Z").unwrap().millis();
        // Every 7 h 13 min 17 s over ~30 years: leap days, month ends, offsets.
        while t < Timestamp::parse_rfc3339("2031-03-01T00:00:00Z").unwrap().millis() {
            let dt = cst.timestamp_millis_opt(t).unwrap();
            for (text, offset) in [
                (dt.format("%Y-%m-%d %H:%M:%S").to_string(), 8 * 3600),
                (dt.to_rfc3339(), 0),
                (dt.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string(), 0),
            ] {
                assert_eq!(fast_time(text.as_bytes(), offset), Some(Timestamp(t)), "{text}");
            }
            t += 26_000_000 - 3_000;
        }
        let minute = fast_time(b"2020-07-12 08:00", 8 * 3600).unwrap();
        assert_eq!(minute, Timestamp::parse_rfc3339("2020-07-12T08:00:00+08:00").unwrap());
        for bad in
            ["2020-02-30 00:00", "2021-02-29 00:00", "2020-13-01 00:00", "2020-07-12 24:00", "2020-07-12T08:00:00.5Z"]
        {
            assert_eq!(fast_time(bad.as_bytes(), 0), None, "{bad}");
        }
        assert!(parse_time("2020-02-30 00:00", cst).is_err());
        assert_eq!(parse_time("2020-07-12T08:00:00.500Z", cst).unwrap().millis() % 1000, 500);
    }
}
