//! A scenario compiled into a plan: the ordered, deterministic list of MQTT messages a fleet of
//! virtual gateways sends, each with the event time it is due at.
//!
//! [`compile`] builds one physics series per sensor (seeded from the run's seed and the sensor
//! id), wraps it with the scenario's failure modes, groups sensors into gateways and merges the
//! gateways' streams by due time. The plan is a lazy iterator (a 10 000-sensor fleet is never
//! held in memory), and a pure function of the scenario, the options and the seed: the same
//! inputs give byte-identical messages. [`crate::fleet::publish_plan`] paces it in wall-clock
//! time over MQTT; [`Message::json_line`] writes it out instead (`riskwatch simulate --dry-run`).
//!
//! Gateways batch as real ones do: each gateway sends, per tick, one site batch
//! (`riskwatch/v1/readings/{site}`) with the readings its sensors took at that moment — or, for
//! groups with `batch = false`, one message per reading on the sensor topic. Seismic readings are
//! 1-s packets of 100 Hz × 3 channels; gas 1 s; water level and rain 5 min; GNSS hourly or daily.

use crate::flood::{RiverFlood, RiverFloodParams};
use crate::gas::{GasLeak, GasLeakParams};
use crate::gnss::{SlopeCreep, SlopeCreepParams, Subsidence, SubsidenceParams};
use crate::params::Repair;
use crate::rain::{RainGauge, RainStormParams};
use crate::scenario::{parse_offset_ms, FailureMode, Model, Scenario};
use crate::seismic::{SeismicStation, SeismicStationParams};
use crate::SensorSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::wire::{encode_batch, encode_reading, topic};
use riskwatch_core::{Reading, SensorKind, Timestamp, Value};
use serde::de::DeserializeOwned;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Seed of all noise and failure draws.
    pub seed: u64,
    /// Event time of the scenario start.
    pub start: Timestamp,
    /// Scale the scenario's groups to this many sensors in total.
    pub sensors: Option<usize>,
    /// Readings per second per scalar sensor (water level, rain, gas), overriding the file.
    pub rate: Option<f64>,
    /// Gateway client ids are `{client_prefix}-{gateway}` (plus `-{n}` for big gateways).
    pub client_prefix: String,
    /// Most sensors one gateway connection serves. Default 100.
    pub sensors_per_gateway: usize,
    /// Most readings in one batch message (large ticks and back-fills are split). Default 500.
    pub max_batch: usize,
}

impl PlanOptions {
    /// Defaults for a run starting at `start` with `seed`.
    pub fn new(start: Timestamp, seed: u64) -> Self {
        PlanOptions {
            seed,
            start,
            sensors: None,
            rate: None,
            client_prefix: "sim".into(),
            sensors_per_gateway: 100,
            max_batch: 500,
        }
    }
}

/// One MQTT message of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// When to send it, ms of event time after the scenario start (wall time = this ÷ speed).
    pub due_ms: i64,
    /// Client id of the gateway sending it.
    pub client: Arc<str>,
    /// Topic.
    pub topic: String,
    /// Payload (wire-format JSON).
    pub payload: Vec<u8>,
    /// Readings in the payload.
    pub readings: u32,
}

impl Message {
    /// The message as one JSON line: `{"due_ms":…,"client":…,"topic":…,"payload":…}`, the
    /// payload embedded as JSON.
    pub fn json_line(&self) -> String {
        let payload = String::from_utf8_lossy(&self.payload);
        format!(
            "{{\"due_ms\":{},\"client\":{},\"topic\":{},\"payload\":{}}}",
            self.due_ms,
            serde_json::Value::from(&*self.client),
            serde_json::Value::from(self.topic.as_str()),
            payload
        )
    }
}

/// Checks a model's parameters (group table merged with a sensor's) without building anything.
pub(crate) fn check_params(model: Model, group: &toml::Table, sensor: &toml::Table) -> Result<(), String> {
    fn check<P: DeserializeOwned + Repair>(t: toml::Table) -> Result<(), String> {
        let p: P = toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| e.message().to_string())?;
        p.check()
    }
    let t = merged(group, sensor);
    match model {
        Model::Flood => check::<RiverFloodParams>(t),
        Model::Rain => check::<RainStormParams>(t),
        Model::GasLeak => check::<GasLeakParams>(t),
        Model::SlopeCreep => check::<SlopeCreepParams>(t),
        Model::Subsidence => check::<SubsidenceParams>(t),
        Model::Seismic => check::<SeismicStationParams>(t),
    }
}

pub(crate) fn merged(group: &toml::Table, sensor: &toml::Table) -> toml::Table {
    let mut t = group.clone();
    for (k, v) in sensor {
        t.insert(k.clone(), v.clone());
    }
    t
}

pub(crate) fn params<P: DeserializeOwned + Default>(t: toml::Table) -> P {
    toml::Value::Table(t).try_into().unwrap_or_default()
}

/// 64-bit FNV-1a of a string, to derive per-sensor seeds.
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub(crate) fn mix(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser.
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A failure window as it applies to one sensor, in absolute event-time ms.
#[derive(Clone, Debug)]
struct Window {
    mode: FailureMode,
    from: i64,
    to: i64,
    probability: f64,
    magnitude: f64,
    skew_ms: i64,
}

impl Window {
    fn covers(&self, ts: i64) -> bool {
        (self.from..self.to).contains(&ts)
    }
}

/// What happened to one reading on its way out.
struct Out {
    reading: Reading,
    duplicate: bool,
}

/// One sensor: its series and the failures applied to it.
struct Source {
    readings: Box<dyn Iterator<Item = Reading> + Send>,
    next: Option<Reading>,
    end_ms: i64,
    windows: Vec<Window>,
    rng: ChaCha8Rng,
    scale: f64,
    last_value: Option<Value>,
    stuck: Option<Value>,
    held: Option<Reading>,
}

impl Source {
    fn peek_ts(&self) -> Option<i64> {
        self.next.as_ref().map(|r| r.ts.millis()).filter(|t| *t <= self.end_ms)
    }

    /// Takes the next reading and applies the failure windows; pushes what goes out.
    fn take(&mut self, out: &mut Vec<Out>) {
        let Some(mut r) = self.next.take() else { return };
        self.next = self.readings.next();
        round(&mut r.value, self.scale);
        let t = r.ts.millis();
        let mut duplicate = false;
        let mut drop = false;
        let mut hold = false;
        let mut stuck_now = false;
        for w in &self.windows {
            if !w.covers(t) {
                continue;
            }
            let hit = w.probability >= 1.0 || self.rng.gen::<f64>() < w.probability;
            match w.mode {
                FailureMode::Stuck => {
                    stuck_now = true;
                    let v = self.stuck.get_or_insert_with(|| self.last_value.clone().unwrap_or(r.value.clone()));
                    r.value = v.clone();
                }
                FailureMode::Dropout => drop |= hit,
                FailureMode::Spikes if hit => add(&mut r.value, w.magnitude),
                FailureMode::ClockSkew => r.ts = Timestamp::from_millis(t + w.skew_ms),
                FailureMode::Duplicates => duplicate |= hit,
                FailureMode::OutOfOrder => hold |= hit,
                FailureMode::Spikes | FailureMode::Offline => {}
            }
        }
        if !stuck_now {
            self.stuck = None;
            self.last_value = Some(r.value.clone());
        }
        if drop {
            return;
        }
        if hold && self.held.is_none() && self.peek_ts().is_some() {
            self.held = Some(r);
            return;
        }
        out.push(Out { reading: r, duplicate });
        if let Some(late) = self.held.take() {
            out.push(Out { reading: late, duplicate: false });
        }
    }

    /// A reading still held back when the series ends.
    fn flush(&mut self, out: &mut Vec<Out>) {
        if let Some(late) = self.held.take() {
            out.push(Out { reading: late, duplicate: false });
        }
    }
}

/// Rounds to the gateway's resolution (`scale` = 10^decimals); the division by a power of ten
/// gives the shortest decimal text in JSON (27.43, not 27.430000000000003).
fn round(v: &mut Value, scale: f64) {
    let r = |x: &mut f64| *x = (*x * scale).round() / scale;
    match v {
        Value::Scalar(x) => r(x),
        Value::Displacement(d) => {
            r(&mut d.e);
            r(&mut d.n);
            r(&mut d.u);
        }
        Value::Waveform(w) => w.channels.iter_mut().flat_map(|c| c.samples.iter_mut()).for_each(r),
    }
}

fn add(v: &mut Value, magnitude: f64) {
    match v {
        Value::Scalar(x) => *x += magnitude,
        Value::Displacement(d) => d.e += magnitude,
        Value::Waveform(w) => {
            if let Some(c) = w.channels.last_mut() {
                let mid = c.samples.len() / 2;
                if let Some(s) = c.samples.get_mut(mid) {
                    *s += magnitude;
                }
            }
        }
    }
}

/// One gateway connection and its sensors.
struct Gateway {
    client: Arc<str>,
    batch: bool,
    sources: Vec<Source>,
    offline: Vec<(i64, i64)>,
    buffered: Vec<Reading>,
    buffer_until: i64,
    out: VecDeque<Message>,
    start_ms: i64,
    max_batch: usize,
    done: bool,
}

impl Gateway {
    fn front_due(&self) -> Option<i64> {
        self.out.front().map(|m| m.due_ms)
    }

    /// Generates ticks until at least one message is queued or the sensors are exhausted.
    fn refill(&mut self) {
        while self.out.is_empty() && !self.done {
            let Some(t) = self.sources.iter().filter_map(Source::peek_ts).min() else {
                let mut late = Vec::new();
                for s in &mut self.sources {
                    s.flush(&mut late);
                }
                let due = late.iter().map(|o| o.reading.ts.millis() - self.start_ms).max().unwrap_or(0);
                self.emit(due, late);
                self.flush_buffer(self.buffer_until);
                self.done = true;
                break;
            };
            let mut outs = Vec::new();
            for s in &mut self.sources {
                if s.peek_ts() == Some(t) {
                    s.take(&mut outs);
                }
            }
            let due = t - self.start_ms;
            if let Some(&(_, to)) = self.offline.iter().find(|(from, to)| (*from..*to).contains(&t)) {
                self.buffered.extend(outs.into_iter().map(|o| o.reading));
                self.buffer_until = to - self.start_ms;
                continue;
            }
            self.flush_buffer(self.buffer_until.min(due));
            self.emit(due, outs);
        }
    }

    /// Sends the readings buffered while offline, oldest first, in batches, at `due`.
    fn flush_buffer(&mut self, due: i64) {
        if self.buffered.is_empty() {
            return;
        }
        let buffered = std::mem::take(&mut self.buffered);
        self.emit(due, buffered.into_iter().map(|reading| Out { reading, duplicate: false }).collect());
    }

    fn emit(&mut self, due: i64, outs: Vec<Out>) {
        if outs.is_empty() {
            return;
        }
        if !self.batch {
            for o in outs {
                let m = Message {
                    due_ms: due,
                    client: Arc::clone(&self.client),
                    topic: topic::reading_topic(o.reading.site.as_str(), o.reading.sensor.as_str()),
                    payload: encode_reading(&o.reading),
                    readings: 1,
                };
                if o.duplicate {
                    self.out.push_back(m.clone());
                }
                self.out.push_back(m);
            }
            return;
        }
        // One batch per site (a gateway normally serves one site), split at max_batch.
        let mut by_site: BTreeMap<String, Vec<Out>> = BTreeMap::new();
        for o in outs {
            by_site.entry(o.reading.site.to_string()).or_default().push(o);
        }
        for (site, outs) in by_site {
            for chunk in outs.chunks(self.max_batch.max(1)) {
                let m = Message {
                    due_ms: due,
                    client: Arc::clone(&self.client),
                    topic: topic::batch_topic(&site),
                    payload: encode_batch(chunk.iter().map(|o| &o.reading)),
                    readings: chunk.len() as u32,
                };
                if chunk.iter().any(|o| o.duplicate) {
                    self.out.push_back(m.clone());
                }
                self.out.push_back(m);
            }
        }
    }
}

/// A compiled scenario: iterate it for the messages in due order.
pub struct Plan {
    gateways: Vec<Gateway>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    sensors: usize,
    clients: Vec<Arc<str>>,
}

impl Plan {
    /// Number of simulated sensors.
    pub fn sensor_count(&self) -> usize {
        self.sensors
    }

    /// Client ids of the gateways, in plan order.
    pub fn clients(&self) -> &[Arc<str>] {
        &self.clients
    }
}

impl Iterator for Plan {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        let Reverse((_, g)) = self.heap.pop()?;
        let gw = &mut self.gateways[g];
        let m = gw.out.pop_front();
        gw.refill();
        if let Some(d) = gw.front_due() {
            self.heap.push(Reverse((d, g)));
        }
        m
    }
}

/// One sensor to build, after scaling.
struct Planned {
    id: String,
    site: String,
    template: String,
    group: usize,
    params: toml::Table,
}

/// Compiles a scenario into its plan.
pub fn compile(scenario: &Scenario, opts: &PlanOptions) -> Result<Plan, String> {
    let start_ms = opts.start.millis();
    let end_ms = start_ms + scenario.duration_ms()?;
    let mut planned: Vec<Planned> = Vec::new();
    let total: usize = scenario.groups.iter().map(|g| g.sensors.len()).sum();
    for (gi, g) in scenario.groups.iter().enumerate() {
        let n = g.sensors.len();
        let want = match opts.sensors {
            None => n,
            Some(target) => ((target as f64 * n as f64 / total.max(1) as f64).round() as usize).max(1),
        };
        for k in 0..want {
            let s = &g.sensors[k % n];
            let id = if k < n { s.id.clone() } else { format!("{}-x{}", s.id, k / n) };
            planned.push(Planned {
                id,
                site: s.site.clone().unwrap_or_else(|| g.site.clone()),
                template: s.id.clone(),
                group: gi,
                params: merged(&g.params, &s.params),
            });
        }
    }
    // Gateways: per group's gateway (default: site), split into connections of at most
    // sensors_per_gateway sensors.
    let mut by_gateway: BTreeMap<String, Vec<Planned>> = BTreeMap::new();
    for p in planned {
        let g = &scenario.groups[p.group];
        let name = g.gateway.clone().unwrap_or_else(|| p.site.clone());
        by_gateway.entry(name).or_default().push(p);
    }
    let per = opts.sensors_per_gateway.max(1);
    let mut gateways = Vec::new();
    let mut sensors = 0;
    for (name, members) in by_gateway {
        let chunks = members.len().div_ceil(per);
        let mut members = members.into_iter().peekable();
        for c in 0..chunks {
            let client: Arc<str> = if chunks == 1 {
                Arc::from(format!("{}-{name}", opts.client_prefix))
            } else {
                Arc::from(format!("{}-{name}-{c}", opts.client_prefix))
            };
            let mut sources = Vec::new();
            let mut offline = Vec::new();
            let mut batch = true;
            for p in members.by_ref().take(per) {
                let g = &scenario.groups[p.group];
                batch &= g.batch;
                sensors += 1;
                let offset = g.offset.as_deref().map(parse_offset_ms).transpose()?.unwrap_or(0);
                let mut windows = Vec::new();
                for f in &scenario.failures {
                    let applies = f.sensors.contains(&p.template) || f.group.as_deref() == Some(&g.id);
                    if !applies {
                        continue;
                    }
                    let from = start_ms + f.from.as_deref().map(parse_offset_ms).transpose()?.unwrap_or(0);
                    let to = f.to.as_deref().map(parse_offset_ms).transpose()?.map_or(i64::MAX, |t| start_ms + t);
                    if f.mode == FailureMode::Offline {
                        offline.push((from, to));
                        continue;
                    }
                    let default_p = if f.mode == FailureMode::OutOfOrder { 0.2 } else { 1.0 };
                    windows.push(Window {
                        mode: f.mode,
                        from,
                        to,
                        probability: f.probability.unwrap_or(default_p),
                        magnitude: f.magnitude.unwrap_or(10.0),
                        skew_ms: f.skew.as_deref().map(parse_offset_ms).transpose()?.unwrap_or(0),
                    });
                }
                let readings = series(g.model, g, &p, opts, start_ms + offset, end_ms - start_ms - offset)?;
                let mut readings = readings;
                let next = readings.next();
                sources.push(Source {
                    readings,
                    next,
                    end_ms,
                    windows,
                    rng: ChaCha8Rng::seed_from_u64(mix(opts.seed ^ 0xfa11_fa11, fnv(&p.id))),
                    scale: 10f64.powi(g.decimals.unwrap_or(g.model.default_decimals()).min(12) as i32),
                    last_value: None,
                    stuck: None,
                    held: None,
                });
            }
            offline.sort_unstable();
            offline.dedup();
            let mut gw = Gateway {
                client: Arc::clone(&client),
                batch,
                sources,
                offline,
                buffered: Vec::new(),
                buffer_until: 0,
                out: VecDeque::new(),
                start_ms,
                max_batch: opts.max_batch,
                done: false,
            };
            gw.refill();
            gateways.push(gw);
        }
    }
    let clients = gateways.iter().map(|g| Arc::clone(&g.client)).collect();
    let heap = gateways.iter().enumerate().filter_map(|(i, g)| g.front_due().map(|d| Reverse((d, i)))).collect();
    Ok(Plan { gateways, heap, sensors, clients })
}

/// Builds one sensor's physics series, cut to `span_ms` of event time.
fn series(
    model: Model,
    g: &crate::scenario::Group,
    p: &Planned,
    opts: &PlanOptions,
    start_ms: i64,
    span_ms: i64,
) -> Result<Box<dyn Iterator<Item = Reading> + Send>, String> {
    let (kind, unit) = model.kind_unit();
    let kind = g.kind.as_deref().unwrap_or(kind);
    let unit = g.unit.as_deref().unwrap_or(unit);
    let kind = SensorKind::builtin(kind).unwrap_or_else(|| SensorKind::Custom(Arc::from(kind)));
    let spec = SensorSpec::new(&p.id, &p.site, kind, unit);
    let seed = mix(opts.seed, fnv(&p.id));
    let start = Timestamp::from_millis(start_ms);
    let mut t = p.params.clone();
    let span_s = span_ms.max(0) as f64 / 1000.0;
    if let (Some(rate), true) = (opts.rate, model.is_scalar()) {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be a positive number".into());
        }
        t.insert("interval_s".into(), toml::Value::Float(1.0 / rate));
    }
    // The scenario's duration bounds every series (the plan also cuts at the end).
    let mut set_len = |key: &str, v: f64| {
        t.entry(key.to_string()).or_insert(toml::Value::Float(v));
    };
    let it: Box<dyn Iterator<Item = Reading> + Send> = match model {
        Model::Flood => {
            set_len("duration_h", span_s / 3600.0);
            Box::new(RiverFlood::new(params(t), spec, start, seed))
        }
        Model::Rain => {
            set_len("duration_h", span_s / 3600.0);
            Box::new(RainGauge::new(params(t), spec, start, seed))
        }
        Model::GasLeak => {
            set_len("duration_s", span_s);
            Box::new(GasLeak::new(params(t), spec, start, seed))
        }
        Model::SlopeCreep => {
            set_len("duration_days", span_s / 86_400.0);
            Box::new(SlopeCreep::new(params(t), spec, start, seed))
        }
        Model::Subsidence => {
            set_len("duration_days", span_s / 86_400.0);
            Box::new(Subsidence::new(params(t), spec, start, seed))
        }
        Model::Seismic => {
            t.entry("duration_s".to_string()).or_insert(toml::Value::Integer((span_s.floor() as i64).max(0)));
            Box::new(SeismicStation::new(params(t), spec, start, seed))
        }
    };
    Ok(it)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            r#"
name = "t"
duration = "20m"
registry_toml = ""
rules_toml = ""
[[group]]
id = "gas"
model = "gas_leak"
site = "plant"
params = {{ leak_start_s = 60, leak_end_s = 600, source_strength_lel = 60 }}
sensors = [{{ id = "d1", params = {{ detector_distance_m = 10 }} }}, {{ id = "d2", params = {{ detector_distance_m = 40 }} }}]
[[group]]
id = "river"
model = "flood"
site = "gauge"
batch = false
sensors = [{{ id = "wl" }}]
{extra}
"#
        );
        Scenario::from_toml(&text, Path::new(".")).unwrap()
    }

    fn plan(s: &Scenario, seed: u64) -> Vec<Message> {
        compile(s, &PlanOptions::new(START, seed)).unwrap().collect()
    }

    fn readings(ms: &[Message]) -> Vec<serde_json::Value> {
        ms.iter()
            .flat_map(|m| {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                match v.get("readings") {
                    Some(serde_json::Value::Array(items)) => items.clone(),
                    _ => vec![v],
                }
            })
            .collect()
    }

    fn of(rs: &[serde_json::Value], sensor: &str) -> Vec<(i64, f64)> {
        rs.iter()
            .filter(|r| r["sensor"] == sensor)
            .map(|r| (r["ts"].as_i64().unwrap() - START.millis(), r["value"].as_f64().unwrap_or(f64::NAN)))
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_differs_and_due_order_holds() {
        let s = scenario("");
        let a = plan(&s, 1);
        assert_eq!(a, plan(&s, 1));
        assert_ne!(a, plan(&s, 2));
        assert!(a.windows(2).all(|w| w[0].due_ms <= w[1].due_ms));
        // Gas: one batch per second with both detectors; river: single 5-min readings.
        let gas: Vec<&Message> = a.iter().filter(|m| m.topic == "riskwatch/v1/readings/plant").collect();
        assert_eq!(gas.len(), 1201);
        assert!(gas.iter().all(|m| m.readings == 2 && &*m.client == "sim-plant"));
        let river: Vec<&Message> = a.iter().filter(|m| m.topic == "riskwatch/v1/readings/gauge/wl").collect();
        assert_eq!(river.len(), 5);
        assert!(a[0].json_line().starts_with("{\"due_ms\":0,\"client\":"));
        // Values at the gateway's resolution: 0.1 %LEL, 1 cm.
        let rs = readings(&a);
        assert!(of(&rs, "d1").iter().all(|(_, v)| ((v * 10.0).round() - v * 10.0).abs() < 1e-9));
        assert!(of(&rs, "wl").iter().all(|(_, v)| ((v * 100.0).round() - v * 100.0).abs() < 1e-9));
        let decimals = |v: f64| format!("{v}").split('.').nth(1).map_or(0, str::len);
        assert!(of(&rs, "wl").iter().all(|(_, v)| decimals(*v) <= 2), "short decimals in JSON");
    }

    #[test]
    fn scaling_and_rate_change_the_fleet() {
        let s = scenario("");
        let mut o = PlanOptions::new(START, 1);
        o.sensors = Some(300);
        o.rate = Some(2.0);
        let p = compile(&s, &o).unwrap();
        assert_eq!(p.sensor_count(), 300);
        assert_eq!(p.clients().len(), 3, "{:?}", p.clients()); // 200 gas sensors on 2 connections, 100 gauges on 1
        let first: Vec<Message> = p.take_while(|m| m.due_ms < 1000).collect();
        let n: u32 = first.iter().map(|m| m.readings).sum();
        assert_eq!(n, 600, "two readings per sensor in the first second at --rate 2");
    }

    #[test]
    fn stuck_dropout_spikes_and_skew_change_values_and_times() {
        let s = scenario(
            r#"
[[failure]]
mode = "stuck"
sensors = ["d1"]
from = "5m"
to = "10m"
[[failure]]
mode = "dropout"
sensors = ["d2"]
from = "2m"
to = "3m"
[[failure]]
mode = "spikes"
sensors = ["wl"]
from = "9m"
to = "11m"
magnitude = 2.0
[[failure]]
mode = "clock_skew"
sensors = ["d2"]
from = "15m"
skew = "+1h"
"#,
        );
        let rs = readings(&plan(&s, 3));
        let d1 = of(&rs, "d1");
        let stuck: Vec<f64> = d1.iter().filter(|(t, _)| (300_000..600_000).contains(t)).map(|x| x.1).collect();
        assert_eq!(stuck.len(), 300);
        assert!(stuck.iter().all(|v| *v == stuck[0]) && stuck[0] == d1[299].1, "frozen at the value before");
        assert!(d1[600..660].iter().any(|x| x.1 != stuck[0]), "moves again after the window");
        let d2 = of(&rs, "d2");
        assert!(!d2.iter().any(|(t, _)| (120_000..180_000).contains(t)), "gap");
        assert!(d2.iter().any(|(t, _)| *t == 15 * 60_000 + 3_600_000), "skewed clock");
        let clean = of(&readings(&plan(&scenario(""), 3)), "wl");
        let wl = of(&rs, "wl");
        assert_eq!(wl.len(), clean.len());
        assert!((wl[2].1 - clean[2].1 - 2.0).abs() < 1e-9, "spike at 10 min: {:?} vs {:?}", wl[2], clean[2]);
        assert_eq!(wl[1], clean[1]);
    }

    #[test]
    fn duplicates_out_of_order_and_offline_backfill() {
        let s = scenario(
            r#"
[[failure]]
mode = "duplicates"
sensors = ["wl"]
[[failure]]
mode = "out_of_order"
sensors = ["d1"]
probability = 0.1
[[failure]]
mode = "offline"
group = "gas"
from = "4m"
to = "6m"
"#,
        );
        let ms = plan(&s, 4);
        let wl: Vec<&Message> = ms.iter().filter(|m| m.topic.ends_with("/wl")).collect();
        assert_eq!(wl.len(), 10);
        assert!(wl.chunks(2).all(|p| p[0] == p[1]), "every river message twice");
        let d1 = of(&readings(&ms), "d1");
        assert_eq!(d1.len(), 1201, "nothing lost");
        let swaps = d1.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!((60..200).contains(&swaps), "{swaps} late readings");
        // Offline 4..6 min: nothing due in the window; at 6 min the buffered 120 s come first.
        let gas: Vec<&Message> = ms.iter().filter(|m| m.topic == "riskwatch/v1/readings/plant").collect();
        assert!(!gas.iter().any(|m| (240_000..360_000).contains(&m.due_ms)));
        let backfill = gas.iter().find(|m| m.due_ms == 360_000).unwrap();
        assert!((238..=240).contains(&backfill.readings), "{}", backfill.readings);
        let first: serde_json::Value = serde_json::from_slice(&backfill.payload).unwrap();
        assert_eq!(first["readings"][0]["ts"].as_i64().unwrap() - START.millis(), 240_000, "original timestamps");
    }
}
