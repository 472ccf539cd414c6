//! Which site's partition an officer's command goes to on the Kafka path, or why it goes
//! nowhere (architecture.md, "Commands").
//!
//! Each rules host serves the sites of one readings partition, so a command must name a site
//! whose host has what it concerns: an alert command names its alert's site. Out-of-service
//! commands (rules.md §4.3): a `site` target is its own site; a `sensor` goes to its registry
//! site (the command's `site` is not needed, and a wrong one does not misroute it); a `rule` at a
//! `site` goes to that site. A rule *without* a site — a rule-wide window — is refused: no one
//! host has every site, and a window is one alert with one owner, so it cannot be opened on
//! every partition at once; the officer opens one window per site instead.

use riskwatch_core::Registry;
use riskwatch_rules::Refused;
use serde_json::Value;

/// The site whose partition `raw` goes to, or the refusal to report on the command error topic.
pub fn route(raw: &[u8], registry: &Registry) -> Result<String, Refused> {
    let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let text = |field: &str| v.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let refused = |code: &'static str, error: String| Refused {
        code,
        error,
        command_id: text("command_id").map(str::to_string),
        alert_id: text("alert_id").map(str::to_string),
    };
    let site = text("site").filter(|s| s.len() <= 64);
    let window = text("action").is_some_and(riskwatch_rules::out_of_service::ServiceAction::is_one);
    if window {
        if let Some(sensor) = text("sensor") {
            if let Some(s) = registry.sensor(sensor) {
                return Ok(s.site.as_str().to_string());
            }
        }
        if let (Some(rule), None) = (text("rule"), site) {
            return Err(refused(
                "site_required",
                format!(
                    "site: a window on rule {rule:?} needs the site it applies at — each rules worker \
                     owns only some sites, so a rule-wide window is not supported on the Kafka path; \
                     send one command per site"
                ),
            ));
        }
        if let (Some(sensor), None) = (text("sensor"), site) {
            return Err(refused("unknown_target", format!("sensor: no sensor {sensor:?} in the registry")));
        }
    }
    match site {
        Some(site) => Ok(site.to_string()),
        None if window => Err(refused("bad_target", "say what goes out of service: sensor, site or rule".into())),
        None => Err(refused(
            "site_required",
            "site: name the alert's site (its events carry it) so the command reaches the worker that owns the alert"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::from_toml(
            "[[sites]]\nid = \"hankou\"\n[[sensors]]\nid = \"hk-wl\"\nsite = \"hankou\"\nkind = \"water_level\"\nunit = \"m\"\n",
        )
        .unwrap()
    }

    fn go(cmd: &str) -> Result<String, (&'static str, String)> {
        route(cmd.as_bytes(), &registry()).map_err(|r| (r.code, r.error))
    }

    #[test]
    fn a_sensor_goes_to_its_registry_site_whatever_site_the_command_names() {
        assert_eq!(go(r#"{"action":"out_of_service","sensor":"hk-wl"}"#), Ok("hankou".into()));
        assert_eq!(go(r#"{"action":"return_to_service","sensor":"hk-wl","site":"elsewhere"}"#), Ok("hankou".into()));
        let (code, error) = go(r#"{"action":"out_of_service","sensor":"nope"}"#).unwrap_err();
        assert_eq!(code, "unknown_target");
        assert!(error.contains("nope"), "{error}");
    }

    #[test]
    fn a_rule_goes_to_the_site_it_names_and_a_rule_wide_window_is_refused_with_the_reason() {
        // Stale detection and the data-quality tests (rules.md §4.3) go as any rule does.
        for rule in ["dq.stale", "dq.spike", "dq.flat_line", "water-level"] {
            let cmd = format!(r#"{{"action":"out_of_service","rule":"{rule}","site":"hankou"}}"#);
            assert_eq!(go(&cmd), Ok("hankou".into()), "{rule}");
            for action in ["out_of_service", "return_to_service"] {
                let cmd = format!(r#"{{"command_id":"c-9","action":"{action}","rule":"{rule}"}}"#);
                let r = route(cmd.as_bytes(), &registry()).unwrap_err();
                assert_eq!(r.code, "site_required");
                assert_eq!(r.command_id.as_deref(), Some("c-9"));
                assert!(r.error.contains(rule) && r.error.contains("rule-wide"), "{}", r.error);
            }
        }
    }

    #[test]
    fn a_site_goes_to_itself_and_an_alert_command_needs_its_site() {
        assert_eq!(go(r#"{"action":"out_of_service","site":"hankou"}"#), Ok("hankou".into()));
        assert_eq!(go(r#"{"action":"out_of_service"}"#).unwrap_err().0, "bad_target");
        assert_eq!(go(r#"{"action":"acknowledge","alert_id":"a","site":"hankou"}"#), Ok("hankou".into()));
        assert_eq!(go(r#"{"action":"acknowledge","alert_id":"a"}"#).unwrap_err().0, "site_required");
        assert_eq!(go("not json").unwrap_err().0, "site_required");
    }
}
