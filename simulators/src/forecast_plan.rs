//! Forecast messages for a scenario's river gauges, merged into its plan by due time
//! (`riskwatch simulate --forecasts`).
//!
//! Every sensor of a `flood` group that the plan simulates (after `--sensors` scaling) gets the
//! forecasts of [`crate::flood_forecast`]: its own flood parameters, start (the group's offset)
//! and length (the scenario's duration, unless the parameters give `duration_h`), seeded from the
//! run's seed and the sensor id. Each forecast is one message on
//! `riskwatch/v1/forecasts/{site}/{sensor}` in the wire shape (wire-format.md §14), due at its
//! issue time and sent by the client `{client_prefix}-forecasts` (a forecasting office, not a
//! gateway). The messages are a pure function of the scenario, the options and the seed.

use crate::flood::RiverFloodParams;
use crate::flood_forecast::{flood_forecasts, FloodForecastParams};
use crate::plan::{fnv, merged, mix, params, Message, PlanOptions};
use crate::scenario::{parse_offset_ms, Model, Scenario};
use crate::SensorSpec;
use riskwatch_core::wire::encode_forecast;
use riskwatch_core::wire::forecast::forecast_topic;
use riskwatch_core::{SensorKind, Timestamp};
use std::iter::Peekable;
use std::sync::Arc;

/// The forecast messages of a scenario's flood gauges, in due order; an error names a bad
/// forecast parameter or scenario field.
pub fn forecast_messages(
    scenario: &Scenario,
    opts: &PlanOptions,
    fp: &FloodForecastParams,
) -> Result<Vec<Message>, String> {
    fp.validate()?;
    let start_ms = opts.start.millis();
    let span_h = scenario.duration_ms()? as f64 / 3_600_000.0;
    let client: Arc<str> = Arc::from(format!("{}-forecasts", opts.client_prefix));
    let total: usize = scenario.groups.iter().map(|g| g.sensors.len()).sum();
    let mut out = Vec::new();
    for g in scenario.groups.iter().filter(|g| g.model == Model::Flood) {
        let n = g.sensors.len();
        // The same sensors the plan simulates (plan::compile's scaling).
        let want = match opts.sensors {
            None => n,
            Some(target) => ((target as f64 * n as f64 / total.max(1) as f64).round() as usize).max(1),
        };
        let offset = g.offset.as_deref().map(parse_offset_ms).transpose()?.unwrap_or(0);
        let (kind, unit) = Model::Flood.kind_unit();
        let kind = g.kind.as_deref().unwrap_or(kind);
        let unit = g.unit.as_deref().unwrap_or(unit);
        let kind = SensorKind::builtin(kind).unwrap_or_else(|| SensorKind::Custom(Arc::from(kind)));
        for k in 0..want {
            let s = &g.sensors[k % n];
            let id = if k < n { s.id.clone() } else { format!("{}-x{}", s.id, k / n) };
            let site = s.site.clone().unwrap_or_else(|| g.site.clone());
            let mut t = merged(&g.params, &s.params);
            t.entry("duration_h".to_string())
                .or_insert(toml::Value::Float((span_h - offset as f64 / 3_600_000.0).max(0.0)));
            let flood: RiverFloodParams = params(t);
            let spec = SensorSpec::new(&id, &site, kind.clone(), unit);
            let start = Timestamp::from_millis(start_ms + offset);
            let seed = mix(opts.seed ^ 0x00f0_7eca_57ed, fnv(&id));
            for f in flood_forecasts(&flood, fp, &spec, start, seed).map_err(|e| format!("sensor {id}: {e}"))? {
                out.push(Message {
                    due_ms: f.issued.millis() - start_ms,
                    client: Arc::clone(&client),
                    topic: forecast_topic(&site, &id),
                    payload: encode_forecast(&f),
                    readings: 0,
                });
            }
        }
    }
    out.sort_by_key(|m| m.due_ms);
    Ok(out)
}

/// A plan and forecast messages merged by due time (a forecast goes before readings due at
/// the same moment).
pub struct WithForecasts<P: Iterator<Item = Message>> {
    plan: Peekable<P>,
    forecasts: Peekable<std::vec::IntoIter<Message>>,
}

/// Merges `forecasts` (in due order) into `plan`.
pub fn with_forecasts<P: Iterator<Item = Message>>(plan: P, forecasts: Vec<Message>) -> WithForecasts<P> {
    WithForecasts { plan: plan.peekable(), forecasts: forecasts.into_iter().peekable() }
}

impl<P: Iterator<Item = Message>> Iterator for WithForecasts<P> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        match (self.plan.peek(), self.forecasts.peek()) {
            (Some(p), Some(f)) if p.due_ms < f.due_ms => self.plan.next(),
            (_, Some(_)) => self.forecasts.next(),
            (Some(_), None) => self.plan.next(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile;

    const SCENARIO: &str = r#"
name = "two gauges"
start = "2020-07-01T00:00:00Z"
duration = "48h"
registry_toml = "[[sites]]\nid = \"a\"\n"
rules_toml = ""

[[group]]
id = "river"
model = "flood"
site = "a"
params = { interval_s = 3600.0 }
sensors = [{ id = "a-wl" }, { id = "b-wl", site = "b" }]

[[group]]
id = "rain"
model = "rain"
site = "a"
sensors = [{ id = "a-rain" }]
"#;

    #[test]
    fn each_flood_gauge_gets_forecasts_merged_in_due_order() {
        let scenario = Scenario::from_toml(SCENARIO, std::path::Path::new(".")).unwrap();
        let opts = PlanOptions::new(scenario.fixed_start().unwrap(), 3);
        let fp = FloodForecastParams { issue_every_h: 12.0, horizon_h: 24.0, members: 3, ..Default::default() };
        let fs = forecast_messages(&scenario, &opts, &fp).unwrap();
        // 0, 12, 24, 36, 48 h for each of the two gauges; none for the rain gauge.
        assert_eq!(fs.len(), 10);
        assert_eq!(fs.iter().filter(|m| m.topic == "riskwatch/v1/forecasts/b/b-wl").count(), 5);
        assert!(fs.iter().all(|m| m.readings == 0 && &*m.client == "sim-forecasts"));
        assert_eq!(fs, forecast_messages(&scenario, &opts, &fp).unwrap(), "deterministic");
        let registry = riskwatch_core::Registry::from_toml(
            "[[sites]]\nid = \"a\"\n[[sites]]\nid = \"b\"\n\
             [[sensors]]\nid = \"a-wl\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"m\"\n\
             [[sensors]]\nid = \"b-wl\"\nsite = \"b\"\nkind = \"water_level\"\nunit = \"m\"\n",
        )
        .unwrap();
        for m in &fs {
            let f = riskwatch_core::wire::decode_forecast(&m.topic, &m.payload, &registry, &Default::default())
                .unwrap_or_else(|e| panic!("{}: {e:?}", m.topic));
            assert_eq!((f.members.len(), f.valid.len()), (3, 24));
            assert_eq!(f.issued.millis() - opts.start.millis(), m.due_ms);
        }
        let plan = compile(&scenario, &opts).unwrap();
        let n = compile(&scenario, &opts).unwrap().count();
        let all: Vec<Message> = with_forecasts(plan, fs).collect();
        assert_eq!(all.len(), n + 10);
        assert!(all.windows(2).all(|w| w[0].due_ms <= w[1].due_ms), "merged in due order");
        let bad = FloodForecastParams { members: 0, ..Default::default() };
        assert!(forecast_messages(&scenario, &opts, &bad).unwrap_err().contains("members"));
    }
}
