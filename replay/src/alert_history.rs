//! Alert events out of a riskwatch SQLite file, for the alarm KPIs (`riskwatch report`): the
//! pipeline's store (`riskwatch run --db`, table `alert_events`) or the duty console's database
//! (`riskwatch console --db`, table `events`), opened read-only (the writer may go on).

use anyhow::{bail, Context, Result};
use riskwatch_core::{AlertEvent, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// Which kind of file it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The pipeline's store.
    Store,
    /// The console's database.
    Console,
}

/// The alert events the KPIs of `[from, to)` need ([`riskwatch_kpi::events_needed_sql`]: the
/// period's, and those of alerts raised before it and still open at its start), oldest first.
/// Rows the store wrote before it kept each event's JSON are rebuilt from their columns.
pub fn read(path: &Path, from: Timestamp, to: Timestamp) -> Result<(Kind, Vec<AlertEvent>)> {
    if !path.exists() {
        bail!("--store {}: no such file", path.display());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening {}", path.display()))?;
    let has = |table: &str| -> Result<bool> {
        Ok(conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |_| Ok(()))
            .optional()
            .with_context(|| format!("reading {}", path.display()))?
            .is_some())
    };
    if has("alert_events")? {
        Ok((
            Kind::Store,
            from_store(&conn, from, to).with_context(|| format!("reading alert_events of {}", path.display()))?,
        ))
    } else if has("events")? {
        Ok((
            Kind::Console,
            from_console(&conn, from, to).with_context(|| format!("reading events of {}", path.display()))?,
        ))
    } else {
        bail!(
            "--store {}: not a riskwatch store (no alert_events table) nor a console database (no events table)",
            path.display()
        )
    }
}

fn from_console(conn: &Connection, from: Timestamp, to: Timestamp) -> Result<Vec<AlertEvent>> {
    let mut st = conn.prepare(&format!(
        "SELECT json FROM events WHERE {} ORDER BY ts, alert_id, seq",
        riskwatch_kpi::events_needed_sql("events")
    ))?;
    let rows = st.query_map([from.millis(), to.millis()], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        let json = json?;
        out.push(serde_json::from_str(&json).with_context(|| format!("an event that is not an alert event: {json}"))?);
    }
    Ok(out)
}

fn from_store(conn: &Connection, from: Timestamp, to: Timestamp) -> Result<Vec<AlertEvent>> {
    let json_column =
        conn.prepare("SELECT 1 FROM pragma_table_info('alert_events') WHERE name = 'event_json'")?.exists([])?;
    let json = if json_column { "event_json" } else { "NULL" };
    let mut st = conn.prepare(&format!(
        "SELECT {json}, event_id, alert_id, seq, rule_id, subject, site, kind, change, level, previous_level, \
         highest_level, first_ts, ts, value, threshold, unit, message_zh, message_en, exercise, category, actor, note, \
         assignee FROM alert_events WHERE {} ORDER BY ts, alert_id, seq",
        riskwatch_kpi::events_needed_sql("alert_events")
    ))?;
    let mut rows = st.query([from.millis(), to.millis()])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let event_id: String = r.get(1)?;
        let value = match r.get::<_, Option<String>>(0)? {
            Some(j) => serde_json::from_str(&j).with_context(|| format!("event {event_id}: its JSON"))?,
            None => serde_json::json!({
                "event_id": event_id, "alert_id": r.get::<_, String>(2)?, "seq": r.get::<_, u32>(3)?,
                "rule_id": r.get::<_, String>(4)?, "subject": r.get::<_, String>(5)?, "site": r.get::<_, String>(6)?,
                "kind": r.get::<_, String>(7)?, "change": r.get::<_, String>(8)?, "level": r.get::<_, String>(9)?,
                "previous_level": r.get::<_, Option<String>>(10)?, "highest_level": r.get::<_, String>(11)?,
                "first_ts": Timestamp(r.get(12)?).to_rfc3339(), "ts": Timestamp(r.get(13)?).to_rfc3339(),
                "value": r.get::<_, f64>(14)?, "threshold": r.get::<_, f64>(15)?, "unit": r.get::<_, String>(16)?,
                "message_zh": r.get::<_, String>(17)?, "message_en": r.get::<_, String>(18)?,
                "exercise": r.get::<_, bool>(19)?, "category": r.get::<_, String>(20)?,
                "by": r.get::<_, Option<String>>(21)?, "note": r.get::<_, Option<String>>(22)?,
                "assignee": r.get::<_, Option<String>>(23)?,
            }),
        };
        out.push(serde_json::from_value(value).with_context(|| format!("event {event_id}: not an alert event"))?);
    }
    Ok(out)
}
