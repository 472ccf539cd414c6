//! Where replay reads QuestDB and how it logs in: an `http(s)://` address or a questdb client
//! string (`https::addr=HOST:9000;username=…;password=…;` or `…;token=…;`, the syntax of the
//! services' `RISKWATCH_QUESTDB_CONF`), and the `/exp` CSV export as a reader that hands on
//! the answer as it arrives — nothing is buffered whole.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::time::Duration;

/// How to log in to QuestDB's HTTP endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// HTTP basic (`username` / `password`).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer` (`token`, QuestDB Enterprise).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    // Secrets stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: <hidden> }}"),
            Auth::Bearer(_) => f.write_str("Bearer(<hidden>)"),
        }
    }
}

/// A QuestDB HTTP endpoint.
#[derive(Clone, Debug)]
pub struct Questdb {
    /// `http(s)://host:port[/prefix]`, without credentials or a trailing `/`.
    pub base: String,
    /// Credentials.
    pub auth: Auth,
    /// False with `tls_verify=unsafe_off` (test set-ups only).
    pub tls_verify: bool,
    /// Extra trusted roots (PEM file, `tls_roots=`).
    pub tls_roots: Option<String>,
}

/// Keys of the questdb client string that only the line-protocol writer uses; replay ignores
/// them so the services' string can be given as it is.
const WRITER_KEYS: &[&str] = &[
    "auto_flush",
    "auto_flush_rows",
    "auto_flush_bytes",
    "auto_flush_interval",
    "request_min_throughput",
    "request_timeout",
    "retry_timeout",
    "init_buf_size",
    "max_buf_size",
    "max_name_len",
    "protocol_version",
    "bind_interface",
];

/// Whether `input` names QuestDB rather than a file.
pub fn is_questdb(input: &str) -> bool {
    input.starts_with("http://")
        || input.starts_with("https://")
        || input.starts_with("http::")
        || input.starts_with("https::")
        || input.starts_with("env:")
}

/// `input` as it may be shown in output and reports: a QuestDB input as its address without
/// credentials (`env:NAME` as it is), anything else unchanged.
pub fn shown(input: &str) -> String {
    if !is_questdb(input) || input.starts_with("env:") {
        return input.to_string();
    }
    Questdb::parse(input).map_or_else(|_| "QuestDB (address not readable)".to_string(), |q| q.base)
}

impl Questdb {
    /// Parses `http(s)://[user:password@]host[:port][/prefix]`, a questdb client string, or
    /// `env:NAME` (either of those, from the environment variable `NAME`, so that passwords
    /// stay out of the process list).
    pub fn parse(input: &str) -> Result<Questdb> {
        if let Some(name) = input.strip_prefix("env:") {
            let value = std::env::var(name)
                .with_context(|| format!("--input {input}: the environment variable {name} is not set"))?;
            if value.starts_with("env:") {
                bail!("--input {input}: {name} names another variable; give the address or client string");
            }
            return Questdb::parse(&value).with_context(|| format!("--input {input}"));
        }
        if input.starts_with("http://") || input.starts_with("https://") {
            return Questdb::from_url(input);
        }
        if let Some((schema, rest)) = input.split_once("::") {
            return Questdb::from_conf(schema, rest);
        }
        bail!("{input:?} is not a QuestDB address: give http(s)://HOST:9000 or a client string http::addr=HOST:9000;")
    }

    fn from_url(input: &str) -> Result<Questdb> {
        // An address with credentials is not repeated in the error.
        let said = if input.contains('@') { "with credentials".to_string() } else { format!("{input:?}") };
        let mut url = reqwest::Url::parse(input).with_context(|| format!("QuestDB address {said}"))?;
        let auth = match (url.username(), url.password()) {
            ("", None) => Auth::None,
            (user, Some(password)) => Auth::Basic { user: decode(user)?, password: decode(password)? },
            (_, None) => bail!("QuestDB address: a user name needs a password (http://USER:PASSWORD@HOST:9000)"),
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if url.port().is_none() && !has_port(input) {
            let _ = url.set_port(Some(9000));
        }
        url.set_query(None);
        url.set_fragment(None);
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Questdb { base, auth, tls_verify: true, tls_roots: None })
    }

    fn from_conf(schema: &str, rest: &str) -> Result<Questdb> {
        let scheme = match schema {
            "http" | "https" => schema,
            "tcp" | "tcps" => bail!(
                "questdb client string: {schema}:: is the line-protocol port; replay reads the HTTP export, give http::addr=HOST:9000; (or https::)"
            ),
            other => bail!("questdb client string: schema {other:?} is not http or https"),
        };
        let mut addr = None;
        let (mut user, mut password, mut token) = (None, None, None);
        let mut tls_verify = true;
        let mut tls_roots = None;
        for (key, value) in conf_pairs(rest)? {
            match key.as_str() {
                "addr" => addr = Some(value),
                "username" | "user" => user = Some(value),
                "password" | "pass" => password = Some(value),
                "token" => token = Some(value),
                "tls_verify" => {
                    tls_verify = match value.as_str() {
                        "on" => true,
                        "unsafe_off" => false,
                        v => bail!("questdb client string: tls_verify={v:?}: expected on or unsafe_off"),
                    }
                }
                "tls_roots" => tls_roots = Some(value),
                "tls_ca" => match value.as_str() {
                    "webpki_roots" | "pem_file" => {}
                    v => bail!("questdb client string: tls_ca={v:?}: replay supports webpki_roots, or pem_file with tls_roots=PATH"),
                },
                k if WRITER_KEYS.contains(&k) => {}
                k => bail!("questdb client string: unknown key {k:?} (replay reads addr, username, password, token, tls_verify, tls_ca, tls_roots)"),
            }
        }
        let addr = addr.context("questdb client string: addr=HOST:PORT is missing")?;
        if addr.is_empty() || addr.contains('/') || addr.contains('@') {
            bail!("questdb client string: addr={addr:?}: expected HOST:PORT");
        }
        let auth = match (user, password, token) {
            (None, None, None) => Auth::None,
            (Some(user), Some(password), None) => Auth::Basic { user, password },
            (None, None, Some(t)) => Auth::Bearer(t),
            (_, _, Some(_)) => bail!("questdb client string: give username and password, or token, not both"),
            (Some(_), None, None) => bail!("questdb client string: username needs password"),
            (None, Some(_), None) => bail!("questdb client string: password needs username"),
        };
        let mut q = Questdb::from_url(&format!("{scheme}://{addr}"))?;
        q.auth = auth;
        q.tls_verify = tls_verify;
        q.tls_roots = tls_roots;
        Ok(q)
    }

    /// GET `{base}/exp?query=…`: the CSV answer, read as it arrives. Errors name the address,
    /// and for an answer other than 200 the HTTP status and QuestDB's own error text.
    ///
    /// This blocks (reqwest's blocking client): call it on a plain thread, not on an async
    /// runtime's (`input` does).
    pub fn export(&self, sql: &str) -> Result<impl Read> {
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read of the answer: QuestDB streams a long export but never goes quiet this long.
            .timeout(Duration::from_secs(300))
            .danger_accept_invalid_certs(!self.tls_verify);
        if let Some(path) = &self.tls_roots {
            let pem = std::fs::read(path).with_context(|| format!("questdb client string: tls_roots={path}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("questdb client string: tls_roots={path}: not PEM certificates"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().context("setting up the HTTP client for QuestDB")?;
        let url = format!("{}/exp?query={}", self.base, urlencode(sql));
        let mut request = client.get(&url).header("accept", "text/csv");
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let answer = request.send().map_err(|e| {
            anyhow::anyhow!("connecting to QuestDB at {}: {}", self.base, error_chain(&e.without_url()))
        })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        // The error answer is short JSON (`{"query":…,"error":"…","position":…}`); read a bounded part.
        let mut text = String::new();
        let _ = answer.take(4096).read_to_string(&mut text);
        let said = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        let hint = match (status.as_u16(), &self.auth) {
            (401 | 403, Auth::None) => {
                " (QuestDB wants credentials: username=…;password=… or token=… in the client string)"
            }
            (401 | 403, _) => " (check the username and password, or the token)",
            _ => "",
        };
        bail!("QuestDB at {} answered {status}{hint}: {said}", self.base)
    }
}

/// `key=value;` pairs of a questdb client string (`;;` is a `;` inside a value).
fn conf_pairs(rest: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim().to_string();
        if key.is_empty() || key.contains(';') {
            bail!("questdb client string: expected key=value; pairs, got {key:?}");
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some(';') if chars.peek() == Some(&';') => {
                    chars.next();
                    value.push(';');
                }
                Some(';') | None => break,
                Some(c) => value.push(c),
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

fn has_port(input: &str) -> bool {
    let authority = input.split_once("://").map_or(input, |(_, r)| r);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        host.contains("]:")
    } else {
        host.contains(':')
    }
}

/// Undoes the %-escapes of URL credentials.
fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("QuestDB address: bad %-escape in the credentials")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("QuestDB address: the credentials are not UTF-8")
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An error and its causes, `a: b: c` ("connection refused" is a cause of "error sending").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_client_strings_parse_with_their_credentials() {
        let q = Questdb::parse("http://localhost").unwrap();
        assert_eq!((q.base.as_str(), &q.auth), ("http://localhost:9000", &Auth::None));
        let q = Questdb::parse("https://ad%40min:p%3Bw@db.example:9443/q/").unwrap();
        assert_eq!(q.base, "https://db.example:9443/q");
        assert_eq!(q.auth, Auth::Basic { user: "ad@min".into(), password: "p;w".into() });
        let q = Questdb::parse("https::addr=db:9000;username=admin;password=a;;b;auto_flush=off;").unwrap();
        assert_eq!(q.base, "https://db:9000");
        assert_eq!(q.auth, Auth::Basic { user: "admin".into(), password: "a;b".into() });
        let q = Questdb::parse("http::addr=db:9000;token=tok;tls_verify=unsafe_off;").unwrap();
        assert_eq!((q.auth.clone(), q.tls_verify), (Auth::Bearer("tok".into()), false));
        assert!(!format!("{q:?}").contains("tok"), "the token is not in Debug output");
        assert_eq!(shown("http::addr=db:9000;username=a;password=secret;"), "http://db:9000");
        assert_eq!(shown("https://a:secret@db:9000"), "https://db:9000");
        assert_eq!(shown("env:RISKWATCH_QUESTDB_CONF"), "env:RISKWATCH_QUESTDB_CONF");
        assert_eq!(shown("levels.csv"), "levels.csv");
        for (bad, says) in [
            ("tcp::addr=db:9009;", "line-protocol"),
            ("http::username=a;password=b;", "addr"),
            ("http::addr=db:9000;username=a;", "needs password"),
            ("http::addr=db:9000;colour=red;", "colour"),
            ("http::addr=db:9000;username=a;password=b;token=c;", "not both"),
            ("env:RISKWATCH_TEST_SURELY_UNSET", "RISKWATCH_TEST_SURELY_UNSET is not set"),
        ] {
            let err = format!("{:#}", Questdb::parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
