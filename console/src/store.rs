//! The console's own SQLite file: every alert event it has seen (history search), the board's
//! unresolved alerts (so a restart keeps cleared alerts awaiting closure) and the audit log.

use anyhow::{Context, Result};
use riskwatch_core::{AlertEvent, AlertState, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One audit-log entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Operator login name (or the name tried, for a failed login).
    pub user: String,
    /// Their role, if logged in.
    pub role: String,
    /// `login`, `login_failed`, `logout`, `acknowledge`, `assign`, `resolve`.
    pub action: String,
    /// Alert concerned.
    pub alert_id: Option<String>,
    /// Note, unit, or other detail.
    pub detail: String,
    /// `ok`, `refused: …`, `no answer`.
    pub outcome: String,
    /// Client address.
    pub remote: String,
}

/// History search criteria (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    /// Site id.
    pub site: Option<String>,
    /// Sensor kind.
    pub kind: Option<String>,
    /// Level.
    pub level: Option<String>,
    /// Change.
    pub change: Option<String>,
    /// Alert id.
    pub alert_id: Option<String>,
    /// Event time from (RFC 3339).
    pub from: Option<String>,
    /// Event time to (RFC 3339).
    pub to: Option<String>,
    /// Text in either message.
    pub q: Option<String>,
    /// Most rows (default 200, at most 2 000).
    pub limit: Option<u32>,
}

/// The console database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating) the file.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).with_context(|| format!("opening console store {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS events (
               event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
               site TEXT NOT NULL, subject TEXT NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL,
               change TEXT NOT NULL, category TEXT NOT NULL, exercise INTEGER NOT NULL,
               message_zh TEXT NOT NULL, message_en TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
             CREATE INDEX IF NOT EXISTS events_alert ON events(alert_id, seq);
             CREATE TABLE IF NOT EXISTS board (alert_id TEXT PRIMARY KEY, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (
               id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,
               action TEXT NOT NULL, alert_id TEXT, detail TEXT NOT NULL, outcome TEXT NOT NULL,
               remote TEXT NOT NULL);",
        )
        .context("creating console tables")?;
        Ok(Store { conn })
    }

    /// Records an event (a repeat of a known `event_id` changes nothing) and the alert's state
    /// after it (`None`: unchanged).
    pub fn record(&self, e: &AlertEvent, state: Option<&AlertState>) -> Result<()> {
        let json = serde_json::to_string(e)?;
        self.conn.execute(
            "INSERT OR IGNORE INTO events VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
            params![
                e.event_id,
                e.alert_id,
                e.seq,
                e.ts.millis(),
                e.site.as_str(),
                e.subject.as_str(),
                e.kind.as_str(),
                e.level.as_str(),
                e.change.as_str(),
                e.category.as_str(),
                e.exercise,
                e.message_zh,
                e.message_en,
                json
            ],
        )?;
        if let Some(s) = state {
            if s.resolved {
                self.conn.execute("DELETE FROM board WHERE alert_id = ?1", params![s.alert_id])?;
            } else {
                self.conn.execute(
                    "INSERT OR REPLACE INTO board VALUES (?1, ?2)",
                    params![s.alert_id, serde_json::to_string(s)?],
                )?;
            }
        }
        Ok(())
    }

    /// The unresolved alerts saved by earlier runs.
    pub fn board(&self) -> Result<Vec<AlertState>> {
        let mut st = self.conn.prepare("SELECT json FROM board")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            if let Ok(s) = serde_json::from_str(&json?) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Events of one alert, oldest first.
    pub fn alert_events(&self, alert_id: &str) -> Result<Vec<AlertEvent>> {
        let mut st = self.conn.prepare("SELECT json FROM events WHERE alert_id = ?1 ORDER BY seq")?;
        let rows = st.query_map(params![alert_id], |r| r.get::<_, String>(0))?;
        rows.filter_map(|j| j.ok()).map(|j| serde_json::from_str(&j).map_err(Into::into)).collect()
    }

    /// The latest event of an alert.
    pub fn latest_event(&self, alert_id: &str) -> Result<Option<AlertEvent>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM events WHERE alert_id = ?1 ORDER BY seq DESC LIMIT 1",
                params![alert_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match json {
            Some(j) => Some(serde_json::from_str(&j)?),
            None => None,
        })
    }

    /// The events the alarm KPIs of `[from_ms, to_ms)` need (`riskwatch_kpi::events_needed_sql`),
    /// oldest first.
    pub fn kpi_events(&self, from_ms: i64, to_ms: i64) -> Result<Vec<AlertEvent>> {
        let sql = format!(
            "SELECT json FROM events WHERE {} ORDER BY ts, alert_id, seq",
            riskwatch_kpi::events_needed_sql("events")
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![from_ms, to_ms], |r| r.get::<_, String>(0))?;
        rows.filter_map(|j| j.ok()).map(|j| serde_json::from_str(&j).map_err(Into::into)).collect()
    }

    /// History search, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<AlertEvent>> {
        let mut sql = String::from("SELECT json FROM events WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut eq = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                args.push(v.clone().into());
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            }
        };
        eq("site", &q.site, &mut sql);
        eq("kind", &q.kind, &mut sql);
        eq("level", &q.level, &mut sql);
        eq("change", &q.change, &mut sql);
        eq("alert_id", &q.alert_id, &mut sql);
        for (col, op, v) in [("ts", ">=", &q.from), ("ts", "<=", &q.to)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                let t = Timestamp::parse_rfc3339(v).map_err(|e| anyhow::anyhow!("{v:?}: {e}"))?;
                args.push(t.millis().into());
                sql.push_str(&format!(" AND {col} {op} ?{}", args.len()));
            }
        }
        if let Some(text) = q.q.as_ref().filter(|v| !v.is_empty()) {
            args.push(format!("%{text}%").into());
            let n = args.len();
            sql.push_str(&format!(" AND (message_zh LIKE ?{n} OR message_en LIKE ?{n} OR subject LIKE ?{n})"));
        }
        let limit = q.limit.unwrap_or(200).clamp(1, 2000);
        sql.push_str(&format!(" ORDER BY ts DESC, seq DESC LIMIT {limit}"));
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
        rows.filter_map(|j| j.ok()).map(|j| serde_json::from_str(&j).map_err(Into::into)).collect()
    }

    /// Appends to the audit log; returns the entry.
    pub fn audit(&self, mut entry: AuditEntry) -> Result<AuditEntry> {
        entry.at = Timestamp::now().to_rfc3339();
        self.conn.execute(
            "INSERT INTO audit (at, user, role, action, alert_id, detail, outcome, remote) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            params![entry.at, entry.user, entry.role, entry.action, entry.alert_id, entry.detail, entry.outcome, entry.remote],
        )?;
        entry.id = self.conn.last_insert_rowid();
        Ok(entry)
    }

    /// Sets the outcome of an audit entry once the pipeline answered.
    pub fn audit_outcome(&self, id: i64, outcome: &str) -> Result<()> {
        self.conn.execute("UPDATE audit SET outcome = ?1 WHERE id = ?2", params![outcome, id])?;
        Ok(())
    }

    /// The latest audit entries, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let mut st = self.conn.prepare(
            "SELECT id, at, user, role, action, alert_id, detail, outcome, remote FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit.clamp(1, 5000)], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                user: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                alert_id: r.get(5)?,
                detail: r.get(6)?,
                outcome: r.get(7)?,
                remote: r.get(8)?,
            })
        })?;
        Ok(rows.filter_map(|r| r.ok()).collect())
    }
}
