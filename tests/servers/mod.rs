//! Real servers for the production-path tests: Mosquitto, tansu (Kafka API, sqlite storage)
//! and victoria-metrics (InfluxDB line protocol, standing in for QuestDB's ILP endpoint). Each
//! test starts its own on free ports in its own directory, and can kill or restart them.
//! `scripts/install-test-servers.sh` installs the binaries (scripts/test.sh runs it).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Test binaries that include both `common` and `servers` get two copies of the port module;
// each reserves its own block of ports (see the module), so they never hand out the same one.
#[allow(clippy::duplicate_mod)]
#[path = "../ports/mod.rs"]
mod ports;
pub use ports::free_port;

/// Waits until something accepts connections on `port`.
pub fn wait_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find_binary(name: &str, candidates: &[PathBuf]) -> PathBuf {
    for c in candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{name} not found; run scripts/install-test-servers.sh (scripts/test.sh does) to install the test servers")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("RISKWATCH_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/riskwatch")
    })
}

/// A server process that can be killed and started again with the same data.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(name: &'static str, port: u16, program: PathBuf, args: Vec<String>, cwd: &Path) -> Server {
        let log = cwd.join(format!("{name}.log"));
        let mut s = Server { name, port, program, args, cwd: cwd.to_path_buf(), log, child: None };
        s.start();
        s
    }

    /// Starts the process and waits for its port.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(60), self.name);
    }

    /// Stops it the way an operator would (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
        // The port must be free before a restart.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Mosquitto with persistence and deliberate queue limits (as shipped in deploy/mosquitto).
pub fn mosquitto(dir: &Path) -> Server {
    mosquitto_with(dir, true)
}

/// Mosquitto, with or without persistence (without: a restart forgets every session).
pub fn mosquitto_with(dir: &Path, persistence: bool) -> Server {
    let port = free_port();
    let data = dir.join("mosquitto-data");
    std::fs::create_dir_all(&data).unwrap();
    // Started as root, Mosquitto drops to its own user; it must still be able to save sessions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {persistence}\npersistence_location {}/\n\
             max_queued_messages 100000\nmax_inflight_messages 100\nlog_dest stderr\nlog_type error\nlog_type warning\n",
            data.display()
        ),
    )
    .unwrap();
    let bin = find_binary("mosquitto", &[PathBuf::from("/usr/sbin/mosquitto")]);
    Server::new("mosquitto", port, bin, vec!["-c".into(), conf.display().to_string()], dir)
}

/// Mosquitto with a login and an ACL: `allow_anonymous false`, the given password and ACL
/// files (run as root so it can read the private password file the test wrote).
pub fn mosquitto_secured(dir: &Path, passwd: &Path, acl: &Path) -> Server {
    let port = free_port();
    let conf = dir.join("mosquitto-secured.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n",
            passwd.display(),
            acl.display()
        ),
    )
    .unwrap();
    let bin = find_binary("mosquitto", &[PathBuf::from("/usr/sbin/mosquitto")]);
    Server::new("mosquitto", port, bin, vec!["-c".into(), conf.display().to_string()], dir)
}

/// Mosquitto with a configuration file written by the test, which listens on 127.0.0.1:`port`.
pub fn mosquitto_with_config(dir: &Path, conf: &Path, port: u16) -> Server {
    let bin = find_binary("mosquitto", &[PathBuf::from("/usr/sbin/mosquitto")]);
    Server::new("mosquitto", port, bin, vec!["-c".into(), conf.display().to_string()], dir)
}

/// Mosquitto with a TLS-only listener that requires a client certificate signed by `ca`
/// (the certificate's CN becomes the username).
pub fn mosquitto_tls(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Server {
    let port = free_port();
    let conf = dir.join("mosquitto-tls.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             use_identity_as_username true\nallow_anonymous false\npersistence false\nlog_dest stderr\n\
             log_type error\nlog_type warning\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let bin = find_binary("mosquitto", &[PathBuf::from("/usr/sbin/mosquitto")]);
    Server::new("mosquitto", port, bin, vec!["-c".into(), conf.display().to_string()], dir)
}

/// tansu 0.6.0 with its sqlite storage engine (file in `dir`).
pub fn tansu(dir: &Path) -> Server {
    let port = free_port();
    let bin = find_binary("tansu", &[cache_dir().join("tools/tansu-0.6.0/bin/tansu")]);
    let url = format!("tcp://127.0.0.1:{port}");
    Server::new(
        "tansu",
        port,
        bin,
        vec![
            "broker".into(),
            "--listener-url".into(),
            url.clone(),
            "--advertised-listener-url".into(),
            url,
            "--storage-engine".into(),
            "sqlite://tansu.db".into(),
        ],
        dir,
    )
}

/// tansu reachable only through TLS with a client certificate: tansu listens on a private
/// port and advertises the TLS port, where Debian's stunnel terminates TLS (server.pem, and
/// `verify = 2`: client certificates signed by ca.pem are required) — how a plaintext broker
/// is put behind TLS in production. Certificates come from [`make_certs`] in `dir`.
/// Returns (tansu, stunnel); connect to the stunnel's port.
pub fn tansu_behind_tls(dir: &Path) -> (Server, Server) {
    let (inner, outer) = (free_port(), free_port());
    let bin = find_binary("tansu", &[cache_dir().join("tools/tansu-0.6.0/bin/tansu")]);
    let tansu = Server::new(
        "tansu",
        inner,
        bin,
        vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://127.0.0.1:{inner}"),
            "--advertised-listener-url".into(),
            format!("tcp://127.0.0.1:{outer}"),
            "--storage-engine".into(),
            "sqlite://tansu.db".into(),
        ],
        dir,
    );
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{outer}\nconnect = 127.0.0.1:{inner}\n\
             cert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\nverify = 2\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let bin = find_binary("stunnel", &[PathBuf::from("/usr/bin/stunnel4")]);
    let stunnel = Server::new("stunnel", outer, bin, vec![conf.display().to_string()], dir);
    (tansu, stunnel)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (Debian package) is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes, in `dir`, a CA (ca.pem), a server certificate for 127.0.0.1 (server.pem/.key) and a
/// client certificate for each of `clients` (NAME.pem/.key, CN = name), with openssl.
pub fn make_certs(dir: &Path, clients: &[&str]) {
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"];
    openssl(dir, &[&ca[..], &["-days", "2", "-subj", "/CN=riskwatch test CA"]].concat());
    let leaf = |name: &str, usage: &str, san: &str| {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        let subj = format!("/CN={name}");
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
        std::fs::write(
            dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n{san}"
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    };
    leaf("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    for c in clients {
        leaf(c, "clientAuth", "");
    }
}

/// victoria-metrics accepting line protocol over HTTP, deduplicating samples with the same
/// series and timestamp (as QuestDB's DEDUP UPSERT KEYS does for its tables).
pub fn victoria_metrics(dir: &Path) -> Server {
    let port = free_port();
    let bin = find_binary("victoria-metrics", &[]);
    Server::new(
        "victoria-metrics",
        port,
        bin,
        vec![
            format!("-storageDataPath={}", dir.join("vm-data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-dedup.minScrapeInterval=1ms".into(),
            "-retentionPeriod=100y".into(),
            "-search.latencyOffset=0s".into(),
            "-search.disableCache".into(),
            "-loggerLevel=ERROR".into(),
        ],
        dir,
    )
}

/// A blocking HTTP GET on 127.0.0.1 (no client library needed for a test).
pub fn http_get(port: u16, path_and_query: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => text,
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET http://{addr}{path}`: status and body (empty body and status 0 if nothing answers).
pub fn http_get_status(addr: &str, path: &str) -> (u16, String) {
    match reqwest::blocking::get(format!("http://{addr}{path}")) {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Metric names documented in docs/operations.md's metrics table.
pub fn documented_metrics() -> std::collections::BTreeSet<String> {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("riskwatch_") || name.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Families (names without `_bucket`, `_sum`, `_count`) in a Prometheus exposition that the
/// docs do not list.
pub fn undocumented_metrics(exposition: &str) -> Vec<String> {
    let documented = documented_metrics();
    let mut missing: Vec<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !documented.contains(*name))
        .map(str::to_string)
        .collect();
    missing.dedup();
    missing
}

/// The value of the sample `series` (metric name with its labels, as exposed) in a Prometheus
/// exposition.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Resident memory of a process, in KiB (from /proc; 0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
