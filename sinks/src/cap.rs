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

use chrono::{FixedOffset, TimeZone};
use riskwatch_core::registry::Location;
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level, SensorKind, Site, Timestamp};
use std::fmt::Write;

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

fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
}

fn elem(out: &mut String, indent: &str, name: &str, text: &str) {
    let _ = write!(out, "{indent}<{name}>");
    esc(out, text);
    let _ = writeln!(out, "</{name}>");
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
    let sender = token(if ctx.sender.is_empty() { "riskwatch" } else { ctx.sender });
    let mut x = String::with_capacity(4096);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<alert xmlns=\"{CAP_NS}\">");
    elem(&mut x, "  ", "identifier", &token(&e.event_id));
    elem(&mut x, "  ", "sender", &sender);
    elem(&mut x, "  ", "sent", &cap_time(e.ts));
    elem(&mut x, "  ", "status", if e.exercise { "Exercise" } else { "Actual" });
    elem(&mut x, "  ", "msgType", if e.change == AlertChange::Raised { "Alert" } else { "Update" });
    elem(&mut x, "  ", "source", "riskwatch");
    if e.category == AlertCategory::DataQuality {
        elem(&mut x, "  ", "scope", "Restricted");
        elem(&mut x, "  ", "restriction", "duty room only: sensor data-quality alert / 仅限值班室：数据质量告警");
    } else {
        elem(&mut x, "  ", "scope", "Public");
    }
    if e.exercise {
        elem(&mut x, "  ", "note", "演习，非真实事件 / EXERCISE - not a real event");
    }
    if e.change != AlertChange::Raised {
        let first = format!("{sender},{},{}", token(&format!("{}-0", e.alert_id)), cap_time(e.first_ts));
        elem(&mut x, "  ", "references", &first);
    }
    elem(&mut x, "  ", "incidents", &token(&e.alert_id));
    info(&mut x, e, ctx, true);
    info(&mut x, e, ctx, false);
    x.push_str("</alert>\n");
    x
}

fn info(x: &mut String, e: &AlertEvent, ctx: &CapContext<'_>, zh: bool) {
    x.push_str("  <info>\n");
    let i = "    ";
    elem(x, i, "language", if zh { "zh-CN" } else { "en-US" });
    elem(x, i, "category", category(&e.kind, e.category));
    let event = match (zh, e.category) {
        (true, AlertCategory::DataQuality) => format!("{}监测数据质量告警", e.kind.zh()),
        (false, AlertCategory::DataQuality) => format!("{} data-quality alert", e.kind.en()),
        (true, AlertCategory::Composite) => format!("综合{}预警", e.level.zh()),
        (false, AlertCategory::Composite) => format!("{} site warning", e.level.as_str()),
        (true, _) => format!("{}{}预警", e.kind.zh(), e.level.zh()),
        (false, _) => format!("{} {} warning", e.kind.en(), e.level.as_str()),
    };
    elem(x, i, "event", &event);
    elem(x, i, "responseType", response_type(e.level, e.change));
    elem(x, i, "urgency", urgency(e.level, e.change));
    elem(x, i, "severity", if e.category == AlertCategory::DataQuality { "Minor" } else { severity(e.level) });
    elem(x, i, "certainty", "Observed");
    elem(x, i, "onset", &cap_time(e.first_ts));
    if !ctx.sender_name.is_empty() {
        elem(x, i, "senderName", ctx.sender_name);
    }
    // The registry's name in this block's language; else the one the event carries.
    let site_name = ctx.site.map(|s| s.display_name(zh)).unwrap_or_else(|| e.site_label());
    elem(x, i, "headline", &headline(e, &event, site_name, zh));
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
    elem(x, i, "description", &description);
    for (name, value) in [
        ("riskwatch:level", e.level.as_str().to_string()),
        ("riskwatch:change", e.change.as_str().to_string()),
        ("riskwatch:alert_id", e.alert_id.clone()),
        ("riskwatch:rule", e.rule_id.to_string()),
        ("riskwatch:subject", e.subject.as_str().to_string()),
        ("riskwatch:value", e.value_text()),
        ("riskwatch:threshold", e.threshold_text()),
    ] {
        x.push_str("    <parameter>\n");
        elem(x, "      ", "valueName", name);
        elem(x, "      ", "value", &value);
        x.push_str("    </parameter>\n");
    }
    x.push_str("    <area>\n");
    elem(x, "      ", "areaDesc", site_name);
    // The sensor's position, else the site's.
    if let Some(loc) = ctx.location.or_else(|| ctx.site.and_then(|s| s.location)) {
        if loc.lat.is_finite() && loc.lon.is_finite() {
            // A point: radius 0 km (CAP: "lat,lon radius").
            elem(x, "      ", "circle", &format!("{:.6},{:.6} 0", loc.lat, loc.lon));
        }
    }
    // The administrative division (GB/T 2260 code), which warning-publication platforms route
    // by; the registry checked it is 6 digits.
    if let Some(code) = ctx.site.and_then(|s| s.division.as_deref()).filter(|c| !c.is_empty()) {
        x.push_str("      <geocode>\n");
        elem(x, "        ", "valueName", GEOCODE_DIVISION);
        elem(x, "        ", "value", code);
        x.push_str("      </geocode>\n");
    }
    x.push_str("    </area>\n");
    x.push_str("  </info>\n");
}
