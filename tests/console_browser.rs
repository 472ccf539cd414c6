//! The duty console in a real headless Chromium (Debian `chromium` driven through
//! `chromedriver`, both installed by scripts/install-test-servers.sh): an officer logs in,
//! watches a red alert appear live (server-sent events, no reload), acknowledges it, sees its
//! state change and the audit entry, switches to English; and on the map (一张图) the sites
//! appear, a red alert turns its marker red live, a click lists the site's alerts; an admin adds
//! an operator and changes a role in the Operators tab; and on `riskwatch demo --console` itself
//! the demo's seven sites are on the map and the failing slope's marker turns red while watched,
//! and its alarm KPI page (报警指标) shows the figures `/api/kpi` computes. Screenshots are kept in
//! `target/test-artifacts/` (`console-board.png`, `console-audit.png`, `console-en.png`,
//! `console-map.png`, `console-map-site.png`, `console-map-cluster.png`, `console-operators.png`,
//! `console-demo-map.png`, `console-demo-map-red.png`, `console-kpi.png`, `console-kpi-charts.png`).
//!
//! Every browser is closed at the end (the WebDriver session is deleted, so chromedriver quits
//! Chromium), and chromedriver runs in its own process group, killed as a whole, so a failed
//! test leaves no Chromium behind either.

mod common;

use common::duty::{start_console, start_pipeline, write_files, OPERATORS};
use common::{free_port, TestClient};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(30);

/// A W3C WebDriver session on a chromedriver this test started.
struct Browser {
    http: reqwest::Client,
    base: String,
    port: u16,
    session: String,
    driver: Child,
}

impl Drop for Browser {
    /// Ends the session (chromedriver then quits Chromium and its helpers), then kills
    /// chromedriver's process group: whatever is left of it, even after a panic mid-test.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            delete_session(self.port, &self.session);
        }
        // chromedriver leads its own process group (`process_group(0)` below): signal exactly
        // that group. (Not `kill -KILL -PGID`: procps-ng 4.0.2's kill reads that as "every
        // process", as found the hard way.)
        if let Ok(pgid) = libc::pid_t::try_from(self.driver.id()) {
            if pgid > 1 {
                // SAFETY: kill(2) takes no pointers; a negative pid names one process group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` with a plain blocking socket (a drop may run inside the async runtime,
/// where reqwest's blocking client may not), waiting up to 10 s for the answer.
fn delete_session(port: u16, session: &str) {
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_ok() {
        let _ = tcp.read_to_end(&mut Vec::new());
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
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
        let mut b = Browser { http, base: String::new(), port, session: String::new(), driver };
        let r: Value = b.http.post(format!("{root}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        b.session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        b.base = format!("{root}/session/{}", b.session);
        b
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

    /// Opens the console and logs in as `OPERATORS[0]` (the officer); waits for the live feed.
    async fn log_in(&self, console: &str) {
        self.log_in_as(console, OPERATORS[0]).await;
    }

    /// Opens the console and logs in as `who`; waits for the live feed.
    async fn log_in_as(&self, console: &str, who: (&str, &str, &str)) {
        self.goto(console).await;
        self.wait_js("login form", "return !document.querySelector('#login-view').hidden").await;
        let (name, _, password) = who;
        self.type_into("#login-name", name).await;
        self.type_into("#login-password", password).await;
        self.click("#login-submit").await;
        self.wait_js("board after login", "return !document.querySelector('#main-view').hidden").await;
        self.wait_js("live connection", "return document.querySelector('#live').classList.contains('on')").await;
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
    b.log_in(&base).await;
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
    // The row speaks in the registry's names, the id only on hover.
    let site_cell =
        b.js("return document.querySelector('#board tbody tr[data-level=red] td:nth-child(3)').textContent").await;
    assert_eq!(site_cell, "甲化工厂", "the site's name_zh, not its id");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_shelves_an_alert_with_a_reason_sees_it_in_the_shelved_list_and_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let b = Browser::start().await;
    b.log_in(&base).await;

    // A red alert on the board.
    let mut gw = TestClient::connect(port, "gw-plant-a", &[]).await;
    gw.publish_acked(
        "riskwatch/v1/readings/plant-a/a-gas-1",
        json!({"kind": "gas_combustible", "ts": 1_700_000_000_000_i64, "unit": "%LEL", "value": 46.0}).to_string(),
    )
    .await;
    b.wait_js("red alert row", "return document.querySelector('#board tbody tr[data-level=red]') !== null").await;
    assert!(
        b.js("return document.querySelector('#shelved-list').hidden").await.as_bool().unwrap(),
        "no shelved list yet"
    );
    b.click("#board tbody tr[data-level=red]").await;
    b.wait_js(
        "detail panel",
        "return !document.querySelector('#detail').hidden && document.querySelector('#d-events li') !== null",
    )
    .await;

    // Shelving without a reason is refused by the console, naming what is missing.
    b.js("document.querySelector('#d-note').value = ''; return true").await;
    b.click("#d-shelve").await;
    let refused = b
        .wait_js(
            "refusal",
            "const t = document.querySelector('#d-result'); return t.classList.contains('error') && t.textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("reason"), "{refused}");

    // With a reason and a time: shelved, off the board, in the shelved list.
    b.type_into("#d-note", "探头更换中，维修单 W-17").await;
    b.js("document.querySelector('#d-minutes').value = '45'; return true").await;
    b.click("#d-shelve").await;
    b.wait_js(
        "shelve applied",
        "const t = document.querySelector('#d-result'); return t.classList.contains('ok') && t.textContent",
    )
    .await;
    let listed = b
        .wait_js(
            "shelved list row",
            "const r = document.querySelector('#shelved tbody tr'); return !document.querySelector('#shelved-list').hidden && r && r.textContent",
        )
        .await;
    let listed = listed.as_str().unwrap();
    assert!(listed.contains("探头更换中，维修单 W-17") && listed.contains("li.wei"), "{listed}");
    assert!(
        b.js("return document.querySelector('#board tbody tr[data-level=red]') === null").await.as_bool().unwrap(),
        "a shelved alert leaves the board for the shelved list"
    );
    let timeline = b.js("return document.querySelector('#d-events').textContent").await;
    assert!(timeline.as_str().unwrap().contains("已搁置"), "the shelving is in the alert's own timeline: {timeline}");
    b.screenshot("console-shelved.png").await;

    // Audited, with the pipeline's answer, the time and the reason.
    b.click("#detail-close").await;
    b.click("#audit-tab").await;
    let row = b
        .wait_js(
            "audit entry",
            "const r = document.querySelector('#audit tbody tr[data-action=shelve]'); return r && r.querySelector('.outcome').textContent === 'ok' && r.textContent",
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(row.contains("li.wei") && row.contains("45 min") && row.contains("探头更换中"), "{row}");
}

/// An officer takes stale detection (the rule `dq.stale`) out of service at one site from the
/// form — picking the rule from what the engine accepts, not typing a raw command — sees the
/// window listed and the audit row, and returns it to service with the window's own button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_takes_stale_detection_out_of_service_at_a_site_from_the_form_and_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    // Stale detection for the plant's gas detector (it needs the sensor's reporting interval).
    let registry = common::duty::REGISTRY.replace("unit = \"%LEL\"\n", "unit = \"%LEL\"\ninterval_s = 60\n");
    std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
    let rules = format!(
        "{}\n[[quality]]\napplies_to = {{ kind = \"gas_combustible\" }}\nstale = {{ intervals = 30 }}\n",
        common::duty::RULES
    );
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &["--rules", "rules.toml"]);
    let b = Browser::start().await;
    b.log_in(&base).await;

    // A window on a rule: the form offers the rules the engine takes, `dq.stale` among them.
    b.js("const s = document.querySelector('#service-form [name=target]'); s.value = 'rule'; s.dispatchEvent(new Event('change')); return true").await;
    let offered = b
        .wait_js(
            "rule choices",
            "const o = [...document.querySelectorAll('#service-form [name=rule] option')].map((x) => x.value); \
             return !document.querySelector('#service-rule').hidden && o.length > 0 && o.join(',')",
        )
        .await;
    assert_eq!(offered.as_str().unwrap(), "water-level,gas,dq.stale");
    b.js("document.querySelector('#service-form [name=rule]').value = 'dq.stale'; return true").await;
    b.type_into("#service-form [name=site]", "plant-a").await;
    b.js("document.querySelector('#service-form [name=minutes]').value = '45'; return true").await;
    b.type_into("#service-form [name=note]", "探头标定，停报离线").await;
    b.click("#service-form button[type=submit]").await;
    b.wait_js(
        "window opened",
        "const t = document.querySelector('#service-result'); return t.classList.contains('ok') && t.textContent",
    )
    .await;
    let listed = b
        .wait_js(
            "window listed",
            "const li = document.querySelector('#windows li[data-subject=\"dq.stale\"][data-site=\"plant-a\"]'); return li && li.textContent",
        )
        .await;
    let listed = listed.as_str().unwrap();
    assert!(listed.contains("dq.stale") && listed.contains("探头标定，停报离线"), "{listed}");
    b.screenshot("console-out-of-service.png").await;

    // Audited with the pipeline's answer: the rule, the site, the time and the reason.
    b.click("#audit-tab").await;
    let row = b
        .wait_js(
            "audit entry",
            "const r = document.querySelector('#audit tbody tr[data-action=out_of_service]'); return r && r.querySelector('.outcome').textContent === 'ok' && r.textContent",
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("li.wei") && row.contains("rule dq.stale at plant-a: 45 min") && row.contains("探头标定"),
        "{row}"
    );

    // Back in service from the window's own button: the window leaves the list.
    b.click("nav button[data-tab=board]").await;
    b.click("#windows li[data-subject=\"dq.stale\"] .w-return").await;
    b.wait_js("window closed", "return document.querySelector('#windows li') === null").await;
}

/// The duty registry with the plant placed on the map (Nanjing, 六合区), Hankou placed by its
/// gauge's location only (the mean of its sensors), and a site with no coordinates at all.
fn map_registry() -> String {
    let registry = common::duty::REGISTRY.replace(
        "name_zh = \"甲化工厂\"\n",
        "name_zh = \"甲化工厂\"\nlocation = { lat = 32.26, lon = 118.82 }\ndivision = \"320116\"\n",
    );
    assert!(registry.contains("division = \"320116\""), "the duty registry changed: place plant-a again");
    format!("{registry}\n[[sites]]\nid = \"dam-x\"\nname_zh = \"无坐标水库\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_shows_the_sites_turns_a_marker_red_live_and_lists_its_alerts_on_click() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    std::fs::write(dir.path().join("registry.toml"), map_registry()).unwrap();
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let b = Browser::start().await;
    b.log_in(&base).await;

    // The map: both located sites, no alerts yet (grey), on the drawn province outlines.
    b.click("#map-tab").await;
    let marker = |site: &str, what: &str| {
        format!(
            "const m = document.querySelector('.map-marker.site[data-site={site}]'); return m && !m.hidden && {what}"
        )
    };
    for site in ["plant-a", "hankou"] {
        let level = b.wait_js(&format!("{site} marker"), &marker(site, "m.dataset.level")).await;
        assert_eq!(level, "none", "{site}");
    }
    let land = b
        .js("const c = document.querySelector('#map canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === 0xfb && d[i + 1] === 0xfa && d[i + 2] === 0xf6) n++; return n")
        .await;
    assert!(land.as_u64().unwrap() > 10_000, "the province outlines are drawn: {land} land pixels");
    let unlocated = b.js("return document.querySelector('#map-unlocated').textContent").await;
    assert!(unlocated.as_str().unwrap().contains("无坐标水库"), "a site without coordinates is named: {unlocated}");
    b.js("window.notReloaded = true; return true").await;

    // A gas detector at the plant goes over alarm 2: its marker turns red, unacknowledged.
    let mut gw = TestClient::connect(port, "gw-plant-a", &[]).await;
    gw.publish_acked(
        "riskwatch/v1/readings/plant-a/a-gas-1",
        json!({"kind": "gas_combustible", "ts": 1_700_000_000_000_i64, "unit": "%LEL", "value": 46.0}).to_string(),
    )
    .await;
    b.wait_js("plant-a marker red", &marker("plant-a", "m.dataset.level === 'red' && m.dataset.unacked === 'true'"))
        .await;
    assert_eq!(b.js(&marker("hankou", "m.dataset.level")).await, "none", "the other site stays grey");
    assert_eq!(b.js("return window.notReloaded === true").await, true, "updated live, without a reload");
    b.screenshot("console-map.png").await;

    // A click on the marker lists the site's alerts, under its Chinese name and division code.
    b.click(".map-marker.site[data-site=plant-a]").await;
    let item = b
        .wait_js(
            "the site's alerts",
            "const s = document.querySelector('#map-site section[data-site=plant-a]'); const li = s && s.querySelector('li[data-level=red]');
             return li && li.dataset.state === 'unacknowledged' && s.textContent",
        )
        .await;
    let item = item.as_str().unwrap();
    assert!(item.contains("甲化工厂") && item.contains("320116") && item.contains("a-gas-1"), "{item}");
    b.screenshot("console-map-site.png").await;

    // The list links to the alert's detail; the detail locates the site on the map; the site
    // links back to the board, filtered to it.
    b.click("#map-site li[data-level=red]").await;
    b.wait_js(
        "detail panel",
        "return !document.querySelector('#detail').hidden && document.querySelector('#d-events li') !== null",
    )
    .await;
    b.click("#d-locate").await;
    b.wait_js(
        "located on the map",
        &marker("plant-a", "m.classList.contains('selected') && !document.querySelector('#tab-map').hidden"),
    )
    .await;
    b.click("#map-site button[data-site=plant-a]").await;
    b.wait_js(
        "board filtered to the site",
        "return !document.querySelector('#tab-board').hidden && document.querySelector('#f-site').value === 'plant-a'
                && document.querySelectorAll('#board tbody tr').length === 1",
    )
    .await;

    // Zoomed out, the two sites merge into one cluster showing the worst level and the count.
    b.click("#map-tab").await;
    for _ in 0..8 {
        b.click("#map-out").await;
    }
    b.wait_js(
        "a red cluster of two",
        "const c = document.querySelector('.map-marker.cluster:not([hidden])'); return c && c.dataset.count === '2' && c.dataset.level === 'red' && c.dataset.unacked === 'true'",
    )
    .await;
    b.screenshot("console-map-cluster.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_an_operator_is_told_why_a_password_is_refused_and_changes_a_role() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let b = Browser::start().await;
    b.log_in_as(&base, OPERATORS[2]).await;
    b.click("#users-tab").await;
    b.wait_js("operator list", "return document.querySelectorAll('#users tbody tr').length === 3").await;

    // Too short a password: refused, and the page says why, in Chinese.
    b.type_into("#user-add [name=name]", "wang.fang").await;
    b.type_into("#user-add [name=display_name]", "王芳").await;
    b.js("document.querySelector('#user-add [name=password]').removeAttribute('minlength')").await;
    b.type_into("#user-add [name=password]", "short").await;
    b.click("#user-add button[type=submit]").await;
    let why = b
        .wait_js(
            "refusal",
            "const r = document.querySelector('#users-result'); return r.classList.contains('error') && r.textContent",
        )
        .await;
    assert!(why.as_str().unwrap().contains("10 个字符"), "{why}");

    // A proper one: the new officer is listed.
    b.type_into("#user-add [name=password]", "flood-season-2026").await;
    b.click("#user-add button[type=submit]").await;
    b.wait_js("new row", "return document.querySelector('#users tbody tr[data-name=\"wang.fang\"]') !== null").await;
    let role = b.js("return document.querySelector('#users tbody tr[data-name=\"wang.fang\"] .u-role').value").await;
    assert_eq!(role, "officer");
    assert!(std::fs::read_to_string(dir.path().join("users.toml")).unwrap().contains("wang.fang"));

    // Made a viewer from the row.
    b.js("document.querySelector('#users tbody tr[data-name=\"wang.fang\"] .u-role').value = 'viewer'").await;
    b.click("#users tbody tr[data-name=\"wang.fang\"] .u-save").await;
    b.wait_js("saved", "const r = document.querySelector('#users-result'); return r.classList.contains('ok') && r.textContent.includes('已保存')").await;
    b.wait_js(
        "role shown",
        "const s = document.querySelector('#users tbody tr[data-name=\"wang.fang\"] .u-role'); return s && s.value === 'viewer'",
    )
    .await;
    b.screenshot("console-operators.png").await;
}

/// The acceptance run on the demo itself: `riskwatch demo --console` with its real sites on the
/// map; the landslide point fails near the end of the run, and its site's marker turns red while
/// the officer watches (no reload); a click on it lists the site's alerts under its name.
/// `riskwatch demo --console` running for `duration` in `dir`, and a browser logged in to its
/// console as the one-off officer whose password the demo prints.
async fn demo_with_console(dir: &std::path::Path, duration: &str) -> (common::Riskwatch, Browser) {
    let mqtt_port = free_port().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut rw = common::Riskwatch::spawn(
        &["demo", "--duration", duration, "--no-color", "--port", &mqtt_port, "--db", "demo.db", "--console", &listen],
        dir,
    );
    let line = rw.wait_for_line("duty console:", Duration::from_secs(60));
    let password = line.split("password `").nth(1).and_then(|r| r.split('`').next()).expect("password printed");
    let b = Browser::start().await;
    b.log_in_as(&format!("http://{listen}"), ("duty", "", password)).await;
    (rw, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_the_map_a_failing_slope_turns_its_marker_red_live_and_a_click_lists_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (rw, b) = demo_with_console(dir.path(), "80s").await;
    b.js("window.loadedOnce = true; return true").await;
    b.click("#map-tab").await;
    // All seven demo sites are drawn: single markers and clusters (with their counts) add up.
    let drawn = b
        .wait_js(
            "the demo's seven sites on the map",
            "const ms = [...document.querySelectorAll('.map-marker')].filter((m) => !m.hidden);
             const n = ms.reduce((sum, m) => sum + Number(m.dataset.count || 0), 0);
             return n === 7 && n",
        )
        .await;
    assert_eq!(drawn, 7);
    b.screenshot("console-demo-map.png").await;
    // The officer zooms to the landslide site (as 地图定位 does), where it stands on its own.
    b.js("locateSite('slope-01'); return true").await;
    let marker = |site: &str| format!("document.querySelector('.map-marker.site[data-site={site}]')");
    b.wait_js("slope marker shown on its own", &format!("const m = {}; return m && !m.hidden", marker("slope-01")))
        .await;
    let before = b.js(&format!("return {}.dataset.level", marker("slope-01"))).await;
    assert_ne!(before, "red", "the slope has not failed yet when the officer opens the map");

    // The slope reaches red at ~93 % of the run: watch the marker, never reloading.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        if b.js(&format!("const m = {}; return m ? m.dataset.level : null", marker("slope-01"))).await == "red" {
            break;
        }
        assert!(Instant::now() < deadline, "the slope's marker never turned red");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(b.js("return window.loadedOnce === true").await, true, "the page was not reloaded");
    b.click(".map-marker.site[data-site=slope-01]").await;
    b.wait_js(
        "the slope's alerts listed under its name",
        "const s = document.querySelector('#map-site section[data-site=slope-01]');
         return s && s.textContent.includes('01号滑坡监测点') && s.querySelector('li[data-level=red]') !== null",
    )
    .await;
    b.screenshot("console-demo-map-red.png").await;
    drop(b);
    let (code, out) = rw.wait_exit(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", out.join("\n"));
}

/// A synchronous XHR from the page (WebDriver's synchronous scripts cannot await): the JSON of
/// a GET with the officer's session.
fn page_get(path: &str) -> String {
    format!(
        "const x = new XMLHttpRequest(); x.open('GET', {path:?}, false); x.send(); return JSON.parse(x.responseText)"
    )
}

/// The alarm KPI page (报警指标) of `riskwatch demo --console`: once the demo's alerts are in and
/// one is acknowledged, the page shows every KPI exactly as `/api/kpi` computes it for the
/// period (formatted as `riskwatch report` prints figures), with the rate chart's flood line
/// and the bad actors' bars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kpi_page_shows_the_demos_figures_as_the_kpi_endpoint_computes_them() {
    use riskwatch_replay::kpi_report::figure;
    let dir = tempfile::tempdir().unwrap();
    let start = riskwatch_core::Timestamp::now();
    let (rw, b) = demo_with_console(dir.path(), "45s").await;
    // The demo's clocks run from now to 30 days ahead (the landslide's creep): the period
    // covers them (the 2020 Hankou replay lies before it).
    let (from, to) = (start.plus_millis(-3_600_000).to_rfc3339(), start.plus_millis(31 * 86_400_000).to_rfc3339());
    let query = format!("/api/kpi?from={}&to={}", from.replace('+', "%2B"), to.replace('+', "%2B"));
    b.click("#kpi-tab").await;
    b.type_into("#kpi-from", &from).await;
    b.type_into("#kpi-to", &to).await;
    b.wait_js("the demo's alerts", &format!("return (() => {{ {} }})().raised >= 5", page_get(&query))).await;
    // The officer acknowledges an alert raised in the period, so time to acknowledge has a figure.
    let acked = b
        .js(&format!(
            "const a = board.find((a) => !a.acknowledged_by && Date.parse(a.first_ts) >= {});
             if (!a) return null;
             const x = new XMLHttpRequest(); x.open('POST', `/api/alerts/${{a.alert_id}}/acknowledge`, false);
             x.setRequestHeader('content-type', 'application/json'); x.send(JSON.stringify({{note: 'KPI test'}}));
             return x.status",
            start.plus_millis(-3_600_000).millis()
        ))
        .await;
    assert_eq!(acked, 200, "acknowledging an alert");

    // Render, then ask the endpoint again: when both agree (no alert came in between), the
    // page must show what the endpoint returns.
    let deadline = Instant::now() + WITHIN;
    let (page, json) = loop {
        b.js("kpi = null; document.querySelector('#kpi-submit').click(); return true").await;
        b.wait_js("the KPI page rendered", "return kpi !== null").await;
        let got = b
            .js(&format!(
                "const shown = JSON.stringify(kpi);
                 const fresh = (() => {{ {} }})();
                 const cells = Object.fromEntries([...document.querySelectorAll('#kpi-table tbody tr')]
                   .map((tr) => [tr.dataset.kpi, tr.querySelector('.kpi-value').textContent]));
                 const text = (k) => document.querySelector(`#kpi-summary [data-kpi=${{k}}]`).textContent;
                 return {{ same: shown === JSON.stringify(fresh), fresh, cells,
                   alerts: text('alerts'), raised: text('raised'), escalated: text('escalated'), peak: text('peak'),
                   floods: text('flood_windows'), windows: text('windows'),
                   rate_bars: document.querySelectorAll('#kpi-rate rect.kpi-bar').length,
                   flood_line: document.querySelectorAll('#kpi-rate .kpi-flood-line').length,
                   bad_bars: [...document.querySelectorAll('#kpi-bad rect.kpi-bar')].map((r) => Number(r.dataset.n)),
                   ack_bars: [...document.querySelectorAll('#kpi-ack rect.kpi-bar')].map((r) => Number(r.dataset.n)),
                   standing: document.querySelectorAll('#kpi-standing tbody tr[data-id]').length }}",
                page_get(&query)
            ))
            .await;
        if got["same"] == true {
            break (got.clone(), got["fresh"].clone());
        }
        assert!(Instant::now() < deadline, "the KPI page never settled");
    };
    b.screenshot("console-kpi.png").await;
    b.js("document.querySelector('#kpi-bad').scrollIntoView(); return true").await;
    b.screenshot("console-kpi-charts.png").await;
    assert!(json["raised"].as_u64().unwrap() >= 5, "{json}");
    for v in json["verdicts"].as_array().unwrap() {
        let key = v["key"].as_str().unwrap();
        assert_eq!(page["cells"][key], figure(v["value"].as_f64()), "KPI {key}: page vs /api/kpi {v}");
    }
    assert_ne!(page["cells"]["ack_median_s"], "–", "the acknowledgement is timed");
    for (shown, field) in [
        ("alerts", "alerts"),
        ("raised", "raised"),
        ("escalated", "escalated"),
        ("peak", "peak_10min"),
        ("floods", "flood_windows"),
        ("windows", "windows"),
    ] {
        assert_eq!(page[shown], json[field].to_string(), "{shown}");
    }
    let windows_with_alerts = json["series"].as_array().unwrap().iter().filter(|w| w["alerts"] != 0).count();
    assert_eq!(page["rate_bars"], windows_with_alerts, "one bar per window with alerts");
    assert_eq!(page["flood_line"], 1, "the flood threshold line");
    let bad: Vec<u64> = json["bad_actors"].as_array().unwrap().iter().map(|b| b["alerts"].as_u64().unwrap()).collect();
    assert_eq!(page["bad_bars"], json!(bad), "a bar per bad actor");
    let ack: Vec<u64> = json["ack"]["histogram"].as_array().unwrap().iter().map(|h| h[1].as_u64().unwrap()).collect();
    assert_eq!(page["ack_bars"], json!(ack), "a bar per time-to-acknowledge band");
    assert_eq!(page["standing"], json["standing"].as_array().unwrap().len(), "a row per standing alert");
    // The same module's figures of the last 24 h on /metrics.
    let metrics =
        b.js("const x = new XMLHttpRequest(); x.open('GET', '/metrics', false); x.send(); return x.responseText").await;
    let metrics = metrics.as_str().unwrap();
    for name in [
        "riskwatch_console_alarms_per_officer_10m",
        "riskwatch_console_alarms_per_officer_day",
        "riskwatch_console_alarm_peak_10m",
        "riskwatch_console_alarm_flood_ratio",
        "riskwatch_console_alarm_chattering_sources",
        "riskwatch_console_alarm_standing",
        "riskwatch_console_alarm_top10_ratio",
        "riskwatch_console_alarm_ack_median_seconds",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}:\n{metrics}"));
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    drop(b);
    let (code, out) = rw.wait_exit(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", out.join("\n"));
}
