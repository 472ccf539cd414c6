//! OASIS Common Alerting Protocol (CAP) 1.2 XML for alert events, for provincial
//! warning-publication platforms and anything else that speaks CAP.
//!
//! One `<alert>` per alert event, with two `<info>` blocks (zh-CN and en-US). The mapping from
//! riskwatch's four colours and changes to CAP's fixed vocabularies is documented in
//! `docs/wire-format.md` §8.6 and summarised here:
//!
//! | riskwatch | `severity` | `urgency` | `responseType` |
//! |---|---|---|---|
//! | red (红色, grade I) | Extreme | Immediate | Prepare |
//! | orange (橙色, II) | Severe | Immediate | Prepare |
//! | yellow (黄色, III) | Moderate | Expected | Monitor |
//! | blue (蓝色, IV) | Minor | Future | Monitor |
//! | cleared | (level it had) | Past | AllClear |
//!
//! `raised` is `msgType` Alert; every later event of the same alert is an Update whose
//! `references` names the alert's first message. A drill's alert has `status` Exercise, live
//! ones Actual. Data-quality alerts are `scope` Restricted (for the duty room, not the public).
//!
//! The document is written with quick-xml's `Writer`, which escapes text and attributes; text
//! first loses the characters XML 1.0 forbids (C0 controls other than tab and line ends,
//! U+FFFE, U+FFFF), which no escaping could carry.

use chrono::{FixedOffset, TimeZone};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use riskwatch_core::registry::Location;
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level, SensorKind, Site, Timestamp};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

/// `valueName` of the `<geocode>` carrying the site's administrative division code.
pub const GEOCODE_DIVISION: &str = "GB/T 2260";

/// The CAP 1.2 namespace.
pub const CAP_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Who publishes, and what is known about the alert's place.
#[derive(Clone, Debug, Default)]
pub struct CapContext<'a> {
    /// CAP `sender`: a unique id of the originator, e.g. `riskwatch@wuhan-emb.example` (no
    /// spaces, commas or `<` / `&`; those are replaced by `_`).
    pub sender: &'a str,
    /// Human name of the issuing office (`senderName`), e.g. `武汉市应急管理局`.
    pub sender_name: &'a str,
    /// The alert's site, from the registry (names, division code, position).
    pub site: Option<&'a Site>,
    /// Where the sensor is (WGS-84), for `<circle>`.
    pub location: Option<Location>,
}

/// CAP `severity` for a level.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Red => "Extreme",
        Level::Orange => "Severe",
        Level::Yellow => "Moderate",
        Level::Blue => "Minor",
    }
}

/// CAP `urgency` for a level (a cleared alert is `Past`).
pub fn urgency(level: Level, change: AlertChange) -> &'static str {
    if matches!(change, AlertChange::Cleared | AlertChange::Resolved) {
        return "Past";
    }
    match level {
        Level::Red | Level::Orange => "Immediate",
        Level::Yellow => "Expected",
        Level::Blue => "Future",
    }
}

/// CAP `category` for a sensor kind (and alert category).
pub fn category(kind: &SensorKind, cat: AlertCategory) -> &'static str {
    if cat == AlertCategory::DataQuality {
        return "Infra";
    }
    match kind {
        SensorKind::WaterLevel | SensorKind::Rainfall => "Met",
        SensorKind::GasCombustible | SensorKind::GasToxic => "CBRNE",
        SensorKind::GnssDisplacement | SensorKind::SeismicAcceleration => "Geo",
        SensorKind::Pressure | SensorKind::Temperature | SensorKind::Level | SensorKind::Flow => "Safety",
        SensorKind::Custom(_) => "Other",
    }
}

fn response_type(level: Level, change: AlertChange) -> &'static str {
    if matches!(change, AlertChange::Cleared | AlertChange::Resolved) {
        return "AllClear";
    }
    match level {
        Level::Red | Level::Orange => "Prepare",
        Level::Yellow | Level::Blue => "Monitor",
    }
}

/// CAP date-time: `YYYY-MM-DDThh:mm:ss+08:00` (China Standard Time; CAP forbids `Z`).
pub fn cap_time(ts: Timestamp) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    match cst.timestamp_millis_opt(ts.millis()).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        None => "1970-01-01T08:00:00+08:00".into(),
    }
}

/// A CAP identifier-safe token (no spaces, commas, `<` or `&`).
fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || matches!(c, ',' | '<' | '&') { '_' } else { c }).collect()
}

/// Whether XML 1.0 allows `c` in a document (`Char` production: tab, line feed, carriage return,
/// U+0020 up, but not U+FFFE or U+FFFF; Rust strings hold no surrogates).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// `s` as XML 1.0 text can carry it: the characters XML forbids (other C0 controls, U+FFFE,
/// U+FFFF) dropped, and `\r\n` or a lone `\r` made `\n` (what a parser reads them back as).
/// Escaping `<`, `&` and the rest is the writer's.
fn xml_text(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| xml_char(c) && c != '\r') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push('\n');
            }
            c if xml_char(c) => out.push(c),
            _ => {}
        }
    }
    Cow::Owned(out)
}

/// The CAP document being written: elements indented by two spaces, one per line.
struct Doc(Writer<Vec<u8>>);

impl Doc {
    fn open(&mut self, name: &str) -> io::Result<()> {
        self.0.write_event(Event::Start(BytesStart::new(name)))
    }

    fn close(&mut self, name: &str) -> io::Result<()> {
        self.0.write_event(Event::End(BytesEnd::new(name)))
    }

    /// `<name>text</name>`, the text escaped by the writer.
    fn elem(&mut self, name: &str, text: &str) -> io::Result<()> {
        self.open(name)?;
        self.0.write_event(Event::Text(BytesText::new(&xml_text(text))))?;
        self.close(name)
    }
}

/// The headline a warning platform shows: area, event and what became of it — from names,
/// never ids or notes (`汉口水文站 水位红色预警`, `… 水位红色预警解除`).
fn headline(e: &AlertEvent, event: &str, area: &str, zh: bool) -> String {
    let h = match (zh, e.change) {
        (true, AlertChange::Cleared) => format!("{area} {event}解除"),
        (true, AlertChange::Escalated) => format!("{area} {event}（升级）"),
        (true, AlertChange::DeEscalated) => format!("{area} {event}（降级）"),
        (true, AlertChange::Resolved) => format!("{area} {event}处置完毕"),
        (true, _) => format!("{area} {event}"),
        (false, AlertChange::Cleared) => format!("{event} cleared: {area}"),
        (false, AlertChange::Escalated) => format!("{event} (escalated): {area}"),
        (false, AlertChange::DeEscalated) => format!("{event} (lowered): {area}"),
        (false, AlertChange::Resolved) => format!("{event} closed: {area}"),
        (false, _) => format!("{event}: {area}"),
    };
    h.chars().take(160).collect()
}

fn handling_zh(change: AlertChange) -> &'static str {
    match change {
        AlertChange::Acknowledged => "值班人员已确认，正在处置",
        AlertChange::Assigned => "已派责任单位处置",
        _ => "处置完毕",
    }
}

fn handling_en(change: AlertChange) -> &'static str {
    match change {
        AlertChange::Acknowledged => "acknowledged by the duty room, being handled",
        AlertChange::Assigned => "assigned to a responsible unit",
        _ => "handled and closed",
    }
}

/// The CAP 1.2 `<alert>` document for one alert event.
pub fn alert_xml(e: &AlertEvent, ctx: &CapContext<'_>) -> String {
    let mut doc = Doc(Writer::new_with_indent(Vec::with_capacity(4096), b' ', 2));
    // Writing to a Vec cannot fail.
    let _ = alert(&mut doc, e, ctx);
    let mut bytes = doc.0.into_inner();
    bytes.push(b'\n');
    // Only `&str`s went in, so this is UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn alert(x: &mut Doc, e: &AlertEvent, ctx: &CapContext<'_>) -> io::Result<()> {
    let sender = token(if ctx.sender.is_empty() { "riskwatch" } else { ctx.sender });
    x.0.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    x.0.write_event(Event::Start(BytesStart::new("alert").with_attributes([("xmlns", CAP_NS)])))?;
    x.elem("identifier", &token(&e.event_id))?;
    x.elem("sender", &sender)?;
    x.elem("sent", &cap_time(e.ts))?;
    x.elem("status", if e.exercise { "Exercise" } else { "Actual" })?;
    x.elem("msgType", if e.change == AlertChange::Raised { "Alert" } else { "Update" })?;
    x.elem("source", "riskwatch")?;
    if e.category == AlertCategory::DataQuality {
        x.elem("scope", "Restricted")?;
        x.elem("restriction", "duty room only: sensor data-quality alert / 仅限值班室：数据质量告警")?;
    } else {
        x.elem("scope", "Public")?;
    }
    if e.exercise {
        x.elem("note", "演习，非真实事件 / EXERCISE - not a real event")?;
    }
    if e.change != AlertChange::Raised {
        let first = format!("{sender},{},{}", token(&format!("{}-0", e.alert_id)), cap_time(e.first_ts));
        x.elem("references", &first)?;
    }
    x.elem("incidents", &token(&e.alert_id))?;
    info(x, e, ctx, true)?;
    info(x, e, ctx, false)?;
    x.close("alert")
}

fn info(x: &mut Doc, e: &AlertEvent, ctx: &CapContext<'_>, zh: bool) -> io::Result<()> {
    x.open("info")?;
    x.elem("language", if zh { "zh-CN" } else { "en-US" })?;
    x.elem("category", category(&e.kind, e.category))?;
    let event = match (zh, e.category) {
        (true, AlertCategory::DataQuality) => format!("{}监测数据质量告警", e.kind.zh()),
        (false, AlertCategory::DataQuality) => format!("{} data-quality alert", e.kind.en()),
        (true, AlertCategory::Composite) => format!("综合{}预警", e.level.zh()),
        (false, AlertCategory::Composite) => format!("{} site warning", e.level.as_str()),
        (true, _) => format!("{}{}预警", e.kind.zh(), e.level.zh()),
        (false, _) => format!("{} {} warning", e.kind.en(), e.level.as_str()),
    };
    x.elem("event", &event)?;
    x.elem("responseType", response_type(e.level, e.change))?;
    x.elem("urgency", urgency(e.level, e.change))?;
    x.elem("severity", if e.category == AlertCategory::DataQuality { "Minor" } else { severity(e.level) })?;
    x.elem("certainty", "Observed")?;
    x.elem("onset", &cap_time(e.first_ts))?;
    if !ctx.sender_name.is_empty() {
        x.elem("senderName", ctx.sender_name)?;
    }
    // The registry's name in this block's language; else the one the event carries.
    let site_name = ctx.site.map(|s| s.display_name(zh)).unwrap_or_else(|| e.site_label());
    x.elem("headline", &headline(e, &event, site_name, zh))?;
    // Public messages carry what happened, never an officer's name or note: those stay in the
    // duty room (the console's timeline). A restricted (data-quality) message keeps them.
    let public = e.category != AlertCategory::DataQuality;
    let lifecycle = matches!(e.change, AlertChange::Acknowledged | AlertChange::Assigned | AlertChange::Resolved);
    let mut description = if lifecycle && public {
        let v = e.value_text();
        if zh {
            format!("{site_name}{event}，{}（最近读数 {v}）", handling_zh(e.change))
        } else {
            format!("{event} at {site_name}: {} (latest reading {v})", handling_en(e.change))
        }
    } else {
        (if zh { &e.message_zh } else { &e.message_en }).clone()
    };
    if !public {
        if let (Some(by), Some(note)) = (&e.by, &e.note) {
            let _ = write!(description, "\n{} {by}: {note}", if zh { e.change.zh() } else { e.change.as_str() });
        }
    }
    x.elem("description", &description)?;
    for (name, value) in [
        ("riskwatch:level", e.level.as_str().to_string()),
        ("riskwatch:change", e.change.as_str().to_string()),
        ("riskwatch:alert_id", e.alert_id.clone()),
        ("riskwatch:rule", e.rule_id.to_string()),
        ("riskwatch:subject", e.subject.as_str().to_string()),
        ("riskwatch:value", e.value_text()),
        ("riskwatch:threshold", e.threshold_text()),
    ] {
        x.open("parameter")?;
        x.elem("valueName", name)?;
        x.elem("value", &value)?;
        x.close("parameter")?;
    }
    x.open("area")?;
    x.elem("areaDesc", site_name)?;
    // The sensor's position, else the site's.
    if let Some(loc) = ctx.location.or_else(|| ctx.site.and_then(|s| s.location)) {
        if loc.lat.is_finite() && loc.lon.is_finite() {
            // A point: radius 0 km (CAP: "lat,lon radius").
            x.elem("circle", &format!("{:.6},{:.6} 0", loc.lat, loc.lon))?;
        }
    }
    // The administrative division (GB/T 2260 code), which warning-publication platforms route
    // by; the registry checked it is 6 digits.
    if let Some(code) = ctx.site.and_then(|s| s.division.as_deref()).filter(|c| !c.is_empty()) {
        x.open("geocode")?;
        x.elem("valueName", GEOCODE_DIVISION)?;
        x.elem("value", code)?;
        x.close("geocode")?;
    }
    x.close("area")?;
    x.close("info")
}
