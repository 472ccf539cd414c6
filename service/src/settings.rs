//! Reading the configuration files and the MQTT settings every command shares: the sensor
//! registry and rules file (with their texts, which the rules host records), and the broker
//! address and credentials tools take from the command line and the environment.

use anyhow::{Context, Result};
use riskwatch_core::{Problem, Registry, RegistryError};
use riskwatch_rules::{RuleError, RuleSet};
use std::path::{Path, PathBuf};

/// Reads and validates a registry file.
pub fn load_registry(path: &Path) -> Result<Registry> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading registry {}", path.display()))?;
    parse_registry(path, &text)
}

/// A registry's problems each as `FILE:LINE: field: message`.
fn parse_registry(path: &Path, text: &str) -> Result<Registry> {
    Registry::from_toml(text).map_err(|e| match e {
        RegistryError::Invalid(problems) => problems_error(path, "registry", &problems),
        e => anyhow::Error::new(e).context(format!("in {}", path.display())),
    })
}

/// A rules file's problems each as `FILE:LINE: field: message`.
fn parse_rules(path: &Path, text: &str) -> Result<RuleSet> {
    RuleSet::from_toml(text).map_err(|e| match e {
        RuleError::File(problems) => problems_error(path, "rules file", &problems),
        e => anyhow::Error::new(e).context(format!("in {}", path.display())),
    })
}

fn problems_error(path: &Path, what: &str, problems: &[Problem]) -> anyhow::Error {
    let file = path.display().to_string();
    let lines: Vec<String> = problems.iter().map(|p| p.render(&file)).collect();
    anyhow::anyhow!("{what} {file} has {} problem(s):\n  {}", problems.len(), lines.join("\n  "))
}

/// A registry and a rules file as read, with their texts (the rules host records which
/// versions its state was built with, and reloads them when they change).
pub struct ConfigFiles {
    /// The registry file.
    pub registry_path: PathBuf,
    /// Its text.
    pub registry_text: String,
    /// The registry it holds.
    pub registry: Registry,
    /// The rules file.
    pub rules_path: PathBuf,
    /// Its text (checked to parse).
    pub rules_text: String,
}

impl ConfigFiles {
    /// Reads and validates both files.
    pub fn load(registry_path: &Path, rules_path: &Path) -> Result<ConfigFiles> {
        let registry_text = std::fs::read_to_string(registry_path)
            .with_context(|| format!("reading registry {}", registry_path.display()))?;
        let registry = parse_registry(registry_path, &registry_text)?;
        let rules_text =
            std::fs::read_to_string(rules_path).with_context(|| format!("reading rules {}", rules_path.display()))?;
        parse_rules(rules_path, &rules_text)?;
        Ok(ConfigFiles {
            registry_path: registry_path.to_path_buf(),
            registry_text,
            registry,
            rules_path: rules_path.to_path_buf(),
            rules_text,
        })
    }
}

/// Reads and validates a rules file.
pub fn load_rules(path: &Path) -> Result<RuleSet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading rules {}", path.display()))?;
    parse_rules(path, &text)
}

/// MQTT credentials for publishing tools (`simulate`, `replay --drill`) from
/// `RISKWATCH_MQTT_USERNAME` / `RISKWATCH_MQTT_PASSWORD`, as the services take them.
pub fn mqtt_credentials_from_env() -> Option<(String, String)> {
    let user = std::env::var("RISKWATCH_MQTT_USERNAME").ok().filter(|u| !u.is_empty())?;
    Some((user, std::env::var("RISKWATCH_MQTT_PASSWORD").unwrap_or_default()))
}

/// `HOST:PORT` or `mqtt://HOST:PORT`.
pub fn parse_mqtt_address(s: &str) -> Result<(String, u16)> {
    let rest = s.strip_prefix("mqtt://").unwrap_or(s);
    let (h, p) = rest.rsplit_once(':').with_context(|| format!("{s:?}: expected HOST:PORT or mqtt://HOST:PORT"))?;
    Ok((h.to_string(), p.parse::<u16>().with_context(|| format!("{s:?}: the port must be a number"))?))
}
