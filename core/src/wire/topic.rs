//! MQTT topic scheme, version 1.
//!
//! ```text
//! riskwatch/v1/readings/{site}/{sensor}     one sensor's reading(s)        gateway → riskwatch
//! riskwatch/v1/readings/{site}              a gateway batch for one site   gateway → riskwatch
//! riskwatch/v1/gateways/{gateway}/readings/{site}[/{sensor}]  the same, naming the gateway
//!                                           (authorised per site; docs/security.md)
//! riskwatch/v1/alerts/{level}/{site}/{sensor}   alert events               riskwatch → officers
//! riskwatch/v1/state/{site}/{subject}/{alert_id}  current state, retained  riskwatch → officers
//! riskwatch/v1/rejections/{site}            why a message was rejected     riskwatch → gateway
//! riskwatch/v1/commands                     acknowledge / assign / resolve officers → riskwatch
//! riskwatch/v1/commands/errors              why a command was refused      riskwatch → officers
//! ```

use crate::ids::is_valid_id;
use crate::{AlertEvent, Level};

/// Prefix of every v1 topic.
pub const PREFIX: &str = "riskwatch/v1";
/// Subscription filter covering every reading topic.
pub const READINGS_FILTER: &str = "riskwatch/v1/readings/#";
/// Subscription filter covering every gateway-named reading topic.
pub const GATEWAY_READINGS_FILTER: &str = "riskwatch/v1/gateways/+/readings/#";
/// Subscription filter covering every alert event.
pub const ALERTS_FILTER: &str = "riskwatch/v1/alerts/#";
/// Subscription filter covering every retained alert-state topic.
pub const STATE_FILTER: &str = "riskwatch/v1/state/#";
/// Topic duty officers' consoles and apps send lifecycle commands to (acknowledge, assign,
/// resolve).
pub const COMMANDS_TOPIC: &str = "riskwatch/v1/commands";
/// Topic refused commands are reported on, with the reason.
pub const COMMAND_ERRORS_TOPIC: &str = "riskwatch/v1/commands/errors";

/// Site and (optionally) sensor named by a reading topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingTopic<'a> {
    /// The `{site}` level.
    pub site: &'a str,
    /// The `{sensor}` level, absent on a gateway batch topic.
    pub sensor: Option<&'a str>,
    /// The `{gateway}` level of a `riskwatch/v1/gateways/{gateway}/readings/…` topic.
    pub gateway: Option<&'a str>,
}

/// Splits a reading topic, or says what is wrong with it.
pub fn parse_reading_topic(topic: &str) -> Result<ReadingTopic<'_>, String> {
    let (gateway, rest) = if let Some(rest) = topic.strip_prefix("riskwatch/v1/gateways/") {
        let (gw, rest) = rest.split_once('/').ok_or("expected riskwatch/v1/gateways/{gateway}/readings/{site}")?;
        if !is_valid_id(gw) {
            return Err(format!("gateway level {gw:?} is not a valid id"));
        }
        let rest = rest
            .strip_prefix("readings/")
            .ok_or("expected riskwatch/v1/gateways/{gateway}/readings/{site}[/{sensor}]")?;
        (Some(gw), rest)
    } else {
        let rest = topic
            .strip_prefix("riskwatch/v1/readings/")
            .ok_or_else(|| "topic must start with riskwatch/v1/readings/ or riskwatch/v1/gateways/".to_string())?;
        (None, rest)
    };
    let mut parts = rest.split('/');
    let site = parts.next().unwrap_or_default();
    let sensor = parts.next();
    if parts.next().is_some() {
        return Err("too many topic levels (expected readings/{site} or readings/{site}/{sensor})".into());
    }
    if !is_valid_id(site) {
        return Err(format!("site level {site:?} is not a valid id"));
    }
    if let Some(s) = sensor {
        if !is_valid_id(s) {
            return Err(format!("sensor level {s:?} is not a valid id"));
        }
    }
    Ok(ReadingTopic { site, sensor, gateway })
}

/// Topic a gateway publishes one sensor's readings on, naming itself.
pub fn gateway_reading_topic(gateway: &str, site: &str, sensor: &str) -> String {
    format!("{PREFIX}/gateways/{gateway}/readings/{site}/{sensor}")
}

/// Topic for a single sensor's readings.
pub fn reading_topic(site: &str, sensor: &str) -> String {
    format!("{PREFIX}/readings/{site}/{sensor}")
}

/// Topic for a gateway batch covering several sensors of one site.
pub fn batch_topic(site: &str) -> String {
    format!("{PREFIX}/readings/{site}")
}

/// Topic an alert event is published on. The level segment is the higher of the levels before
/// and after the change, so a subscriber to a colour sees an alert enter *and leave* it.
pub fn alert_topic(event: &AlertEvent) -> String {
    let level = event.previous_level.map_or(event.level, |p| p.max(event.level));
    alert_topic_for(level, event.site.as_str(), event.subject.as_str())
}

/// Topic for alert events of one level, site and subject.
pub fn alert_topic_for(level: Level, site: &str, subject: &str) -> String {
    format!("{PREFIX}/alerts/{level}/{site}/{subject}")
}

/// Retained topic holding an active alert's current state ([`crate::AlertState`]); emptied
/// (retained message removed) when the alert clears.
pub fn state_topic(site: &str, subject: &str, alert_id: &str) -> String {
    format!("{PREFIX}/state/{site}/{subject}/{alert_id}")
}

/// Topic rejections of a site's messages are published on.
pub fn rejection_topic(site: &str) -> String {
    format!("{PREFIX}/rejections/{site}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_reading_topic_forms() {
        assert_eq!(
            parse_reading_topic("riskwatch/v1/readings/hankou/hankou-wl"),
            Ok(ReadingTopic { site: "hankou", sensor: Some("hankou-wl"), gateway: None })
        );
        assert_eq!(
            parse_reading_topic("riskwatch/v1/readings/plant-a"),
            Ok(ReadingTopic { site: "plant-a", sensor: None, gateway: None })
        );
        assert_eq!(
            parse_reading_topic("riskwatch/v1/gateways/gw-7/readings/plant-a/h2s-1"),
            Ok(ReadingTopic { site: "plant-a", sensor: Some("h2s-1"), gateway: Some("gw-7") })
        );
        assert!(parse_reading_topic("riskwatch/v2/readings/a/b").is_err());
        assert!(parse_reading_topic("riskwatch/v1/readings/a/b/c").is_err());
        assert!(parse_reading_topic("riskwatch/v1/gateways/gw/alerts/a").is_err());
        assert!(parse_reading_topic("riskwatch/v1/gateways/g+w/readings/a").is_err());
        assert!(parse_reading_topic("riskwatch/v1/readings//b").is_err());
    }
}
