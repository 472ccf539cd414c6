//! The duty console in a real headless Chromium (Debian `chromium` driven through
//! `chromedriver`, both installed by scripts/install-test-servers.sh): an officer logs in,
//! watches a red alert appear live (server-sent events, no reload), acknowledges it, sees its
//! state change and the audit entry, switches to English. Screenshots are kept in
//! `target/test-artifacts/` (`console-board.png`, `console-audit.png`, `console-en.png`).

mod common;

use common::duty::{start_console, start_pipeline, write_files, OPERATORS};
use common::{free_port, TestClient};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(30);

/// A W3C WebDriver session on a chromedriver this test started.
struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: run scripts/install-test-servers.sh (Debian chromium-driver)");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Ok(r) = http.get(format!("{root}/status")).send().await {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900", "--lang=zh-CN"],
            },
        }}});
        let r: Value = http.post(format!("{root}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Browser { http, base: format!("{root}/session/{id}"), driver }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        v.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/value"), json!({"text": text})).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Waits until `script` returns something truthy (and returns it).
    async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WITHIN;
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == false || v == "" || v == json!([])) {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot("console-failure.png").await;
                panic!("browser: {what} did not happen within {WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_logs_in_sees_a_live_alert_acknowledges_it_and_finds_the_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let b = Browser::start().await;

    // Log in as the officer.
    b.goto(&base).await;
    b.wait_js("login form", "return !document.querySelector('#login-view').hidden").await;
    let (name, _, password) = OPERATORS[0];
    b.type_into("#login-name", name).await;
    b.type_into("#login-password", password).await;
    b.click("#login-submit").await;
    b.wait_js("board after login", "return !document.querySelector('#main-view').hidden").await;
    b.wait_js("live connection", "return document.querySelector('#live').classList.contains('on')").await;
    let who = b.js("return document.querySelector('#who').textContent").await;
    assert!(who.as_str().unwrap().contains("li.wei"), "{who}");

    // A gas detector goes over alarm 2: a red alert appears on the open page by itself.
    let mut gw = TestClient::connect(port, "gw-plant-a", &[]).await;
    let ts = 1_700_000_000_000_i64;
    gw.publish_acked(
        "riskwatch/v1/readings/plant-a/a-gas-1",
        json!({"kind": "gas_combustible", "ts": ts, "unit": "%LEL", "value": 46.0}).to_string(),
    )
    .await;
    let row_state = b
        .wait_js(
            "red alert row",
            "const r = document.querySelector('#board tbody tr[data-level=red]'); return r && r.dataset.state",
        )
        .await;
    assert_eq!(row_state, "unacknowledged");
    let chip = b.js("return document.querySelector('#board tbody tr[data-level=red] .chip').textContent").await;
    assert_eq!(chip, "红色");

    // Open it, acknowledge with a note.
    b.click("#board tbody tr[data-level=red]").await;
    b.wait_js(
        "detail panel",
        "return !document.querySelector('#detail').hidden && document.querySelector('#d-events li') !== null",
    )
    .await;
    b.type_into("#d-note", "已通知现场关阀").await;
    b.click("#d-ack").await;
    let result = b
        .wait_js(
            "action result",
            "const t = document.querySelector('#d-result'); return t.classList.contains('ok') && t.textContent",
        )
        .await;
    assert!(result.as_str().unwrap().contains("确认"), "{result}");
    b.wait_js(
        "row shows acknowledged",
        "const r = document.querySelector('#board tbody tr[data-level=red]'); return r && r.dataset.state === 'acknowledged'",
    )
    .await;
    let facts = b.js("return document.querySelector('#d-facts').textContent").await;
    assert!(facts.as_str().unwrap().contains("li.wei"), "acknowledged by shows the officer: {facts}");

    b.screenshot("console-board.png").await;

    // The audit log shows it, with the pipeline's answer.
    b.click("#detail-close").await;
    b.click("#audit-tab").await;
    let outcome = b
        .wait_js(
            "audit entry",
            "const r = document.querySelector('#audit tbody tr[data-action=acknowledge]'); return r && r.querySelector('.outcome').textContent === 'ok' && r.textContent",
        )
        .await;
    let row = outcome.as_str().unwrap();
    assert!(row.contains("li.wei") && row.contains("已通知现场关阀"), "{row}");
    let shot = b.screenshot("console-audit.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
    println!("screenshot: {}", shot.display());

    // English on request.
    b.click("#lang").await;
    let tab = b.js("return document.querySelector('[data-tab=board]').textContent").await;
    assert_eq!(tab, "Live alerts");
    b.screenshot("console-en.png").await;
}
