//! The console's login and request checks against the real binaries (`riskwatch run` and
//! `riskwatch console`) over HTTP: throttling per address and per (name, address) instead of a
//! lock an outsider can trigger for a name; bounded memory for a flood of logins; the Origin
//! check on state-changing requests; the absolute session lifetime and the `Secure` cookie.
//! Clients bind other loopback addresses (127.0.0.2, 127.0.1.x) to be other hosts.

mod common;

use common::duty::{start_console, start_pipeline, write_files};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn client_from(addr: &str) -> reqwest::Client {
    let ip: IpAddr = addr.parse().unwrap();
    reqwest::Client::builder().cookie_store(true).local_address(ip).build().unwrap()
}

async fn login(http: &reqwest::Client, base: &str, name: &str, password: &str) -> reqwest::Response {
    http.post(format!("{base}/api/login")).json(&json!({"name": name, "password": password})).send().await.unwrap()
}

async fn audit(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let r = http.get(format!("{base}/api/audit?limit=1000")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_for_an_officer_from_one_address_slow_that_address_not_the_officer() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);

    // Someone at 127.0.0.2 who read `li.wei` in an alert event guesses 20 passwords.
    let attacker = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for i in 0..20 {
        let r = login(&attacker, &base, "li.wei", &format!("guess-{i}")).await;
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            retry_after.push(secs);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "throttled", "{body}");
        }
    }
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert_eq!(&statuses[..3], [401, 401, 401], "the first few are checked: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 17, "then throttled: {statuses:?}");
    assert!(retry_after.iter().all(|s| *s >= 1), "{retry_after:?}");

    // An unknown name gets the very same answer as a wrong password.
    let other = client_from("127.0.0.3");
    let wrong = login(&other, &base, "li.wei", "guess").await;
    let (wrong_status, wrong_body) = (wrong.status(), wrong.text().await.unwrap());
    let unknown = login(&other, &base, "no.such.officer", "guess").await;
    assert_eq!((unknown.status(), unknown.text().await.unwrap()), (wrong_status, wrong_body));
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);

    // The officer, at the console's own machine, logs in at once.
    let officer = client_from("127.0.0.1");
    let started = Instant::now();
    let r = login(&officer, &base, "li.wei", "duty-officer-1").await;
    assert_eq!(r.status(), StatusCode::OK, "the officer is kept out: {:?}", r.text().await);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // The attacker's address is still throttled, also for the right password.
    let r = login(&attacker, &base, "li.wei", "duty-officer-1").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));

    // All of it audited, with the address.
    let log = audit(&officer, &base).await;
    let throttled = log
        .iter()
        .filter(|e| {
            e["action"] == "login_failed"
                && e["remote"] == "127.0.0.2"
                && e["outcome"].as_str().is_some_and(|o| o.starts_with("throttled"))
        })
        .count();
    assert_eq!(throttled, 18, "{log:#?}");
    assert!(log.iter().any(|e| e["action"] == "login" && e["user"] == "li.wei" && e["remote"] == "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_parallel_logins_with_unknown_names_are_answered_in_seconds_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (console, base) = start_console(dir.path(), port, &[]);
    let pid = console.child.id();

    // One login first: the allocator and the dummy hash are in place.
    let warm = client_from("127.0.0.1");
    assert_eq!(login(&warm, &base, "nobody", "x").await.status(), StatusCode::UNAUTHORIZED);
    let before = status_kb(pid, "VmRSS:");

    // A hundred hosts (127.0.1.1 … 127.0.1.100), one unknown name each, all at once: each
    // address is within its budget, so only the bound on password checks holds memory down.
    let mut tasks = Vec::new();
    for i in 1..=100 {
        let (http, base) = (client_from(&format!("127.0.1.{i}")), base.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = login(&http, &base, &format!("intruder-{i}"), "password").await;
            let status = r.status().as_u16();
            let retry = r.headers().contains_key("retry-after");
            (status, retry, started.elapsed())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let peak = status_kb(pid, "VmHWM:");
    let growth_mb = peak.saturating_sub(before) / 1024;
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    let mut by_status = std::collections::BTreeMap::new();
    for (s, _, _) in &answers {
        *by_status.entry(*s).or_insert(0) += 1;
    }
    eprintln!("RSS {before} kB before, peak {peak} kB: +{growth_mb} MB; answers {by_status:?}; slowest {slowest:?}");
    assert!(answers.iter().all(|(s, _, _)| [401, 429, 503].contains(s)), "{answers:?}");
    assert!(answers.iter().all(|(s, retry, _)| *s == 401 || *retry), "refusals say when to retry: {answers:?}");
    assert!(by_status.get(&401).copied().unwrap_or(0) >= 2, "some were checked: {by_status:?}");
    assert!(slowest < Duration::from_secs(5), "slowest answer {slowest:?}");
    assert!(growth_mb <= 100, "the console grew by {growth_mb} MB");

    // And the console still lets the officer in.
    let officer = client_from("127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = login(&officer, &base, "li.wei", "duty-officer-1").await.status();
        if st == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "officer not let in: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_a_foreign_origin_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let li = client_from("127.0.0.1");

    // Another site's page logging someone in (login CSRF): refused, right password or not.
    let r = li
        .post(format!("{base}/api/login"))
        .header("origin", "http://evil.example")
        .json(&json!({"name": "li.wei", "password": "duty-officer-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "foreign_origin", "{body}");
    assert!(r_me(&li, &base).await == StatusCode::UNAUTHORIZED, "no session from the refused login");

    // From the console's own page: in.
    let r = li
        .post(format!("{base}/api/login"))
        .header("origin", &base)
        .json(&json!({"name": "li.wei", "password": "duty-officer-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A logged-in officer's browser made to log out from elsewhere (Referer only): refused.
    let r = li
        .post(format!("{base}/api/logout"))
        .header("referer", "http://evil.example/page?x=1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r_me(&li, &base).await, StatusCode::OK, "still logged in");

    let log = audit(&li, &base).await;
    let refused: Vec<&Value> = log.iter().filter(|e| e["action"] == "foreign_origin").collect();
    assert_eq!(refused.len(), 2, "{log:#?}");
    let login_csrf = refused.iter().find(|e| e["detail"].as_str().unwrap_or("").contains("/api/login")).unwrap();
    assert!(login_csrf["detail"].as_str().unwrap().contains("http://evil.example"), "{login_csrf}");
    assert_eq!(login_csrf["remote"], "127.0.0.1");
    assert_eq!(login_csrf["outcome"], "refused: foreign origin");
    let logout = refused.iter().find(|e| e["detail"].as_str().unwrap_or("").contains("/api/logout")).unwrap();
    assert_eq!(logout["user"], "li.wei", "who, when known: {logout}");

    // The same logout from the console's own origin works.
    let r = li.post(format!("{base}/api/logout")).header("origin", &base).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r_me(&li, &base).await, StatusCode::UNAUTHORIZED);
}

async fn r_me(http: &reqwest::Client, base: &str) -> StatusCode {
    http.get(format!("{base}/api/me")).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_absolute_lifetime_however_busy_and_the_cookie_can_be_secure() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &["--session-lifetime", "3s", "--secure-cookie"]);
    // A `Secure` cookie is not sent over plain HTTP by a cookie store: carry it by hand.
    let http = client_from("127.0.0.1");
    let r = login(&http, &base, "li.wei", "duty-officer-1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("; Secure") && set.contains("HttpOnly") && set.contains("Max-Age=3"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let me = |c: String| {
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}/api/me")).header("cookie", c).send().await.unwrap().status() }
    };
    let started = Instant::now();
    let ended = loop {
        let st = me(cookie.clone()).await;
        if st == StatusCode::UNAUTHORIZED {
            break started.elapsed();
        }
        assert_eq!(st, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(15), "the session never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ended >= Duration::from_millis(2500), "ended after {ended:?}, before its lifetime");

    // Audited: log in again and read the log.
    let r = login(&http, &base, "li.wei", "duty-officer-1").await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let r = http.get(format!("{base}/api/audit")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let log: Value = r.json().await.unwrap();
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "session_expired" && e["user"] == "li.wei"), "{entries:#?}");
}
