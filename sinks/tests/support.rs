//! Shared by the sink tests: real alert events from the real engine, and a real HTTP receiver.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use riskwatch_core::wire::{decode, Limits};
use riskwatch_core::{AlertEvent, Registry, Timestamp};
use riskwatch_rules::{Engine, RuleSet};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
name = "Hankou"
name_zh = "汉口"
region = "Hubei/Wuhan"
division = "420102"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
location = { lat = 30.58, lon = 114.29 }
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

pub const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
levels = { blue = "warning_level - 0.5", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
"#;

pub fn registry() -> Registry {
    Registry::from_toml(REGISTRY).unwrap()
}

/// A flood hydrograph through the production engine: raised blue, escalations to red, then
/// de-escalations and a clear. `exercise` marks the readings as a drill.
pub fn flood_events(exercise: bool) -> Vec<AlertEvent> {
    let registry = registry();
    let rules = RuleSet::from_toml(RULES).unwrap();
    let mut engine = Engine::new(&rules, &registry).unwrap();
    let mut drill = riskwatch_rules::Drill::new(&rules, Arc::new(registry.clone()));
    let t0 = 1_594_051_200_000_i64;
    let levels = [26.0, 26.9, 27.4, 28.6, 29.2, 29.3, 28.7, 27.6, 26.9, 26.0];
    let mut out = Vec::new();
    for (i, v) in levels.iter().enumerate() {
        let ts = t0 + i as i64 * 3_600_000;
        let payload =
            serde_json::json!({"kind": "water_level", "ts": ts, "unit": "m", "value": v, "exercise": exercise});
        let mut readings = decode(
            "riskwatch/v1/readings/hankou/hankou-wl",
            payload.to_string().as_bytes(),
            &registry,
            &Limits::default(),
        )
        .unwrap()
        .readings;
        drill.process_batch(&mut engine, &mut readings, Timestamp(ts), &mut out);
    }
    out
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A scripted answer: status, body, response headers.
type Answer = (u16, String, Vec<(String, String)>);

/// A scripted answer as the test writes it.
pub type Scripted<'a> = (u16, &'a str, Vec<(&'a str, &'a str)>);

#[derive(Default)]
struct Script {
    /// Answers to give, in order (status, body, headers); when empty, `fallback`.
    answers: VecDeque<Answer>,
    fallback: Answer,
    got: Vec<Received>,
}

/// A real HTTP server on a free local port that records every POST and answers from a script.
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Starts answering `fallback` to everything (after the scripted `answers`).
    pub async fn start(answers: Vec<(u16, &str)>, fallback: (u16, &str)) -> Receiver {
        Receiver::start_with_headers(answers.into_iter().map(|(s, b)| (s, b, vec![])).collect(), fallback).await
    }

    /// Like [`Receiver::start`], the scripted answers with response headers.
    pub async fn start_with_headers(answers: Vec<Scripted<'_>>, fallback: (u16, &str)) -> Receiver {
        let own = |h: Vec<(&str, &str)>| h.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into_iter().map(|(s, b, h)| (s, b.to_string(), own(h))).collect(),
            fallback: (fallback.0, fallback.1.to_string(), Vec::new()),
            got: Vec::new(),
        }));
        async fn handle(
            State(s): State<Arc<Mutex<Script>>>,
            Query(query): Query<HashMap<String, String>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, HeaderMap, String) {
            let at = Instant::now();
            let mut s = s.lock().unwrap();
            s.got.push(Received { query, headers, body: body.to_vec(), at });
            let (status, text, extra) = s.answers.pop_front().unwrap_or_else(|| s.fallback.clone());
            let mut out = HeaderMap::new();
            for (k, v) in extra {
                out.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    axum::http::HeaderValue::from_str(&v).unwrap(),
                );
            }
            (StatusCode::from_u16(status).unwrap(), out, text)
        }
        let app = Router::new().route("/hook", post(handle)).with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url: format!("http://{addr}/hook"), script }
    }

    pub fn got(&self) -> Vec<Received> {
        self.script.lock().unwrap().got.clone()
    }

    /// Waits until `done` holds for the requests received, or panics after `within`.
    pub async fn wait(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: condition not met within {within:?}; got {} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
