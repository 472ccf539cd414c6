//! Before the QuestDB sink writes a row: are its tables there, with the designated timestamp
//! and the dedup keys that make a re-delivered row land once?
//!
//! Over ILP, QuestDB creates a missing table on the first row — with a designated timestamp
//! called `timestamp` and no deduplication, so every reading re-delivered after a crash (Kafka
//! and MQTT deliver at least once) would be stored twice, silently. The sink therefore asks
//! QuestDB's SQL endpoint (`/exec`, on the same HTTP port as ILP over HTTP) at start-up, creates
//! what is missing from `deploy/questdb/schema.sql` (embedded here) or refuses to start, naming
//! the statement that fixes each table.

use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;

/// The DDL riskwatch's QuestDB tables are created with (docs/questdb.md).
pub const SCHEMA_SQL: &str = include_str!("../../deploy/questdb/schema.sql");

/// What the sink does about its tables at start-up (`[questdb] tables`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TablesPolicy {
    /// Create missing tables from the schema; refuse to start if one exists without the
    /// expected timestamp or dedup keys.
    #[default]
    Create,
    /// Refuse to start if a table is missing or lacks its dedup keys (tables are managed by
    /// the database's owners).
    Check,
    /// Do not look: for a line-protocol endpoint that is not QuestDB. A row delivered twice may
    /// then be stored twice.
    Unchecked,
}

/// One table of the schema, as the sink needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// Its designated timestamp column.
    pub timestamp: String,
    /// `DEDUP UPSERT KEYS(…)`, in the schema's order.
    pub upsert_keys: Vec<String>,
    /// The `CREATE TABLE IF NOT EXISTS` statement.
    pub create: String,
}

/// The tables of [`SCHEMA_SQL`] (or another schema text): one per `CREATE TABLE` statement.
pub fn tables_of(schema: &str) -> Vec<TableSpec> {
    let text: String =
        schema.lines().map(|l| l.split_once("--").map_or(l, |(code, _)| code)).collect::<Vec<_>>().join("\n");
    text.split(';')
        .map(str::trim)
        .filter_map(|stmt| {
            let rest = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS")?.trim_start();
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let timestamp = between(stmt, ") TIMESTAMP(", ")")?.trim().to_string();
            let upsert_keys =
                between(stmt, "DEDUP UPSERT KEYS(", ")")?.split(',').map(|k| k.trim().to_string()).collect();
            Some(TableSpec { name, timestamp, upsert_keys, create: stmt.to_string() })
        })
        .collect()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// Where QuestDB answers SQL, taken from the sink's questdb-rs configuration string.
#[derive(Debug, Clone)]
pub struct SqlEndpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub base: String,
    auth: Auth,
    insecure: bool,
    /// Extra trusted roots, a PEM file (`tls_roots=`), as the line-protocol writer trusts them.
    roots: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl SqlEndpoint {
    /// For `http::addr=HOST:PORT;…` and `https::…` (with `username`/`password` or `token`, and
    /// `tls_verify=unsafe_off`). ILP over TCP (`tcp::`, `tcps::`) has no HTTP port in its string:
    /// `sql_url` gives it (e.g. `http://questdb:9000`), else an error says so.
    pub fn from_conf(conf: &str, sql_url: Option<&str>) -> Result<Self, String> {
        let (scheme, params) = conf.split_once("::").ok_or_else(|| format!("{conf:?} has no \"SCHEME::\""))?;
        let get = |key: &str| {
            params.split(';').filter_map(|kv| kv.split_once('=')).find(|(k, _)| k.trim() == key).map(|(_, v)| v.trim())
        };
        let (addr, user, pass, token, verify) =
            (get("addr"), get("username"), get("password"), get("token"), get("tls_verify"));
        let roots = get("tls_roots").map(std::path::PathBuf::from);
        let http = matches!(scheme, "http" | "https");
        let base = match (sql_url, http, addr) {
            (Some(u), _, _) => u.trim_end_matches('/').to_string(),
            (None, true, Some(a)) => format!("{scheme}://{a}"),
            (None, true, None) => return Err("conf has no addr=HOST:PORT".into()),
            (None, false, _) => {
                return Err(format!(
                    "conf uses ILP over {scheme}, which has no HTTP address to check the tables on: set \
                     questdb.sql_url (e.g. \"http://questdb:9000\")"
                ))
            }
        };
        // Over TCP, `username`/`token` are the ILP ECDSA key, not HTTP credentials.
        let auth = match (http, user, pass, token) {
            (true, Some(u), Some(p), _) => Auth::Basic(u.into(), p.into()),
            (true, _, _, Some(t)) => Auth::Bearer(t.into()),
            _ => Auth::None,
        };
        Ok(SqlEndpoint { base, auth, insecure: verify == Some("unsafe_off"), roots })
    }
}

/// Why the tables could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// QuestDB answered, and tables are not as the sink needs them: one line per table, each
    /// with the statement that fixes it.
    #[error("QuestDB tables are not ready for the sink:\n  {}", .0.join("\n  "))]
    Unfit(Vec<String>),
    /// What answered is not QuestDB's SQL endpoint.
    #[error(
        "{0}: this does not look like QuestDB's SQL endpoint (/exec); if the line-protocol endpoint is not QuestDB, \
         set questdb.tables = \"unchecked\" (a reading delivered twice may then be stored twice)"
    )]
    NotQuestDb(String),
    /// QuestDB could not be reached before the deadline.
    #[error("QuestDB at {0} did not answer: {1}")]
    Unreachable(String, String),
    /// A statement (CREATE TABLE) failed.
    #[error("QuestDB refused {0}: {1}")]
    Refused(String, String),
}

/// What [`ensure_tables`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TablesReport {
    /// Tables found as expected.
    pub ok: Vec<String>,
    /// Tables created.
    pub created: Vec<String>,
}

/// One answer of `/exec`: column names and rows.
#[derive(Debug, Deserialize)]
struct ExecAnswer {
    #[serde(default)]
    columns: Vec<Column>,
    #[serde(default)]
    dataset: Vec<Vec<serde_json::Value>>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Column {
    name: String,
}

impl ExecAnswer {
    fn column(&self, names: &[&str]) -> Option<usize> {
        self.columns.iter().position(|c| names.contains(&c.name.as_str()))
    }
}

struct Client {
    http: reqwest::Client,
    at: SqlEndpoint,
}

impl Client {
    async fn exec(&self, query: &str) -> Result<Result<ExecAnswer, String>, TablesError> {
        let url = format!("{}/exec", self.at.base);
        let req = self.http.get(&url).query(&[("query", query)]);
        let req = match &self.at.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Bearer(t) => req.bearer_auth(t),
        };
        let resp = req.send().await.map_err(|e| TablesError::Unreachable(self.at.base.clone(), e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(TablesError::Unreachable(
                self.at.base.clone(),
                format!("HTTP {status}: check the username/password or token in questdb.conf"),
            ));
        }
        if status.is_server_error() {
            return Err(TablesError::Unreachable(self.at.base.clone(), format!("HTTP {status}")));
        }
        let body = resp.text().await.map_err(|e| TablesError::Unreachable(self.at.base.clone(), e.to_string()))?;
        match serde_json::from_str::<ExecAnswer>(&body) {
            // QuestDB answers a failed statement with HTTP 400 and {"error": …}.
            Ok(a) => Ok(match a.error.clone() {
                Some(e) => Err(e),
                None => Ok(a),
            }),
            Err(_) => Err(TablesError::NotQuestDb(format!("{url} answered HTTP {status} without QuestDB's JSON"))),
        }
    }
}

/// Checks (and with [`TablesPolicy::Create`], creates) every table of `tables` on `at`.
/// Connection failures and server errors are retried until `wait` has passed (QuestDB may
/// still be starting); everything else is answered at once.
pub async fn ensure_tables(
    at: &SqlEndpoint,
    tables: &[TableSpec],
    policy: TablesPolicy,
    wait: Duration,
) -> Result<TablesReport, TablesError> {
    let mut builder =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).danger_accept_invalid_certs(at.insecure);
    if let Some(path) = &at.roots {
        // The CA the writer is told to trust (a private CA on QuestDB's HTTPS port) is needed
        // here too, or the check would refuse a server the writer accepts.
        let unusable = |e: &dyn std::fmt::Display| {
            TablesError::Unreachable(at.base.clone(), format!("tls_roots={}: {e}", path.display()))
        };
        let pem = std::fs::read(path).map_err(|e| unusable(&e))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(&e))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder.build().map_err(|e| TablesError::Unreachable(at.base.clone(), e.to_string()))?;
    let client = Client { http, at: at.clone() };
    let deadline = tokio::time::Instant::now() + wait;
    let mut delays = crate::retry::delays(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        match check_once(&client, tables, policy).await {
            Err(TablesError::Unreachable(a, why)) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(questdb = %a, error = %why, retry_in_ms = delay.as_millis() as u64, "QuestDB not answering yet");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

async fn check_once(client: &Client, tables: &[TableSpec], policy: TablesPolicy) -> Result<TablesReport, TablesError> {
    let listing =
        client.exec("SELECT * FROM tables()").await?.map_err(|e| TablesError::NotQuestDb(format!("tables(): {e}")))?;
    let name_col = listing
        .column(&["table_name", "name"])
        .ok_or_else(|| TablesError::NotQuestDb("tables() has no table_name column".into()))?;
    let existing: Vec<&str> = listing.dataset.iter().filter_map(|row| row.get(name_col)?.as_str()).collect();
    let mut report = TablesReport::default();
    let mut problems = Vec::new();
    for t in tables {
        if !existing.iter().any(|e| e.eq_ignore_ascii_case(&t.name)) {
            if policy == TablesPolicy::Create {
                client
                    .exec(&t.create)
                    .await?
                    .map_err(|e| TablesError::Refused(format!("CREATE TABLE {}", t.name), e))?;
                report.created.push(t.name.clone());
            } else {
                problems.push(format!(
                    "{}: missing; create it with its statement in deploy/questdb/schema.sql (or set questdb.tables = \
                     \"create\" to let the sink create it)",
                    t.name
                ));
            }
            continue;
        }
        let cols = client
            .exec(&format!("SELECT * FROM table_columns('{}')", t.name))
            .await?
            .map_err(|e| TablesError::NotQuestDb(format!("table_columns('{}'): {e}", t.name)))?;
        match table_problem(t, &cols) {
            Some(p) => problems.push(p),
            None => report.ok.push(t.name.clone()),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(TablesError::Unfit(problems))
    }
}

/// What is wrong with an existing table, from its `table_columns()` answer.
fn table_problem(t: &TableSpec, cols: &ExecAnswer) -> Option<String> {
    let (Some(name), Some(designated), Some(upsert)) =
        (cols.column(&["column"]), cols.column(&["designated"]), cols.column(&["upsertKey"]))
    else {
        return Some(format!("{}: table_columns() did not list column, designated and upsertKey", t.name));
    };
    let flag = |row: &[serde_json::Value], i: usize| row.get(i).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let named = |row: &[serde_json::Value]| row.get(name).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let ts: Vec<String> = cols.dataset.iter().filter(|r| flag(r, designated)).map(|r| named(r)).collect();
    let keys: Vec<String> = cols.dataset.iter().filter(|r| flag(r, upsert)).map(|r| named(r)).collect();
    if ts != [t.timestamp.clone()] {
        return Some(format!(
            "{}: its designated timestamp is {} instead of {} (created by a line-protocol write before the schema \
             was applied?); rename it aside and create it again with its statement in deploy/questdb/schema.sql, \
             then copy the rows over (INSERT INTO {} SELECT …)",
            t.name,
            ts.first().map_or("missing".to_string(), |c| format!("`{c}`")),
            t.timestamp,
            t.name
        ));
    }
    let mut want = t.upsert_keys.clone();
    let mut have = keys.clone();
    want.sort();
    have.sort();
    if want != have {
        let expected = t.upsert_keys.join(", ");
        return Some(format!(
            "{}: deduplication keys are [{}], not [{expected}], so a row delivered twice is stored twice; fix: \
             ALTER TABLE {} DEDUP ENABLE UPSERT KEYS({expected});",
            t.name,
            keys_list(&keys),
            t.name
        ));
    }
    None
}

fn keys_list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_names_every_table_the_sink_writes_with_its_keys() {
        let tables = tables_of(SCHEMA_SQL);
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        for written in crate::questdb::TABLES {
            assert!(names.contains(written), "{written} is written by the sink but not in schema.sql: {names:?}");
        }
        let readings = tables.iter().find(|t| t.name == "readings").unwrap();
        assert_eq!(readings.timestamp, "ts");
        assert_eq!(readings.upsert_keys, ["ts", "sensor"]);
        let events = tables.iter().find(|t| t.name == "alert_events").unwrap();
        assert_eq!(events.upsert_keys, ["ts", "alert_id", "seq"]);
        assert!(events.create.starts_with("CREATE TABLE IF NOT EXISTS alert_events"), "{}", events.create);
        assert!(!events.create.contains("--"), "comments are stripped");
    }

    #[test]
    fn the_sql_address_comes_from_the_ilp_string() {
        let e = SqlEndpoint::from_conf("https::addr=q.example:9000;username=rw;password=pw;", None).unwrap();
        assert_eq!(e.base, "https://q.example:9000");
        assert!(matches!(e.auth, Auth::Basic(ref u, ref p) if u == "rw" && p == "pw"));
        assert_eq!(e.roots, None);
        let e = SqlEndpoint::from_conf("https::addr=q:9000;tls_roots=/etc/ca.pem;", None).unwrap();
        assert_eq!(e.roots.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let e = SqlEndpoint::from_conf("http::addr=q:9000;token=abc;", None).unwrap();
        assert!(matches!(e.auth, Auth::Bearer(ref t) if t == "abc"));
        let err = SqlEndpoint::from_conf("tcp::addr=q:9009;username=k;token=ecdsa;", None).unwrap_err();
        assert!(err.contains("questdb.sql_url"), "{err}");
        let e = SqlEndpoint::from_conf("tcp::addr=q:9009;username=k;token=ecdsa;", Some("http://q:9000/")).unwrap();
        assert_eq!(e.base, "http://q:9000");
        assert!(matches!(e.auth, Auth::None), "an ILP/TCP key is not an HTTP credential");
    }
}
