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

/// MQTT credentials for publishing tools (`simulate`, `replay --drill`) and the console from
/// `RISKWATCH_MQTT_USERNAME` and `RISKWATCH_MQTT_PASSWORD` or `RISKWATCH_MQTT_PASSWORD_FILE`, as
/// the services take them.
pub fn mqtt_credentials_from_env() -> Result<Option<(String, String)>> {
    mqtt_credentials(|k| std::env::var(k).ok())
}

/// [`mqtt_credentials_from_env`] over any variable source.
pub fn mqtt_credentials(get: impl Fn(&str) -> Option<String>) -> Result<Option<(String, String)>> {
    let Some(user) = get("RISKWATCH_MQTT_USERNAME").filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    Ok(Some((user, mqtt_password(get)?.unwrap_or_default())))
}

/// The MQTT password from `RISKWATCH_MQTT_PASSWORD`, or read from the file named by
/// `RISKWATCH_MQTT_PASSWORD_FILE` (trimmed; how container secrets are handed over).
pub fn mqtt_password(get: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    match (get("RISKWATCH_MQTT_PASSWORD"), get("RISKWATCH_MQTT_PASSWORD_FILE")) {
        (Some(_), Some(_)) => {
            anyhow::bail!("RISKWATCH_MQTT_PASSWORD and RISKWATCH_MQTT_PASSWORD_FILE are both set; keep one")
        }
        (Some(p), None) => Ok(Some(p)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim().to_string()))
            .with_context(|| format!("RISKWATCH_MQTT_PASSWORD_FILE: cannot read {path}")),
        (None, None) => Ok(None),
    }
}

/// `HOST:PORT` or `mqtt://HOST:PORT`.
pub fn parse_mqtt_address(s: &str) -> Result<(String, u16)> {
    let rest = s.strip_prefix("mqtt://").unwrap_or(s);
    let (h, p) = rest.rsplit_once(':').with_context(|| format!("{s:?}: expected HOST:PORT or mqtt://HOST:PORT"))?;
    Ok((h.to_string(), p.parse::<u16>().with_context(|| format!("{s:?}: the port must be a number"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mqtt_password_comes_from_the_variable_or_the_file_it_names() {
        let file = std::env::temp_dir().join(format!("rw-mqtt-pw-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.display().to_string();
        let env =
            |pairs: Vec<(&'static str, String)>| move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.clone());
        let user = ("RISKWATCH_MQTT_USERNAME", "riskwatch".to_string());
        assert_eq!(mqtt_credentials(env(vec![])).unwrap(), None);
        let c = mqtt_credentials(env(vec![user.clone(), ("RISKWATCH_MQTT_PASSWORD", "inline".into())])).unwrap();
        assert_eq!(c, Some(("riskwatch".into(), "inline".into())));
        let c = mqtt_credentials(env(vec![user.clone(), ("RISKWATCH_MQTT_PASSWORD_FILE", path.clone())])).unwrap();
        assert_eq!(c, Some(("riskwatch".into(), "from-file".into())), "read and trimmed");
        let both = vec![user.clone(), ("RISKWATCH_MQTT_PASSWORD", "x".into()), ("RISKWATCH_MQTT_PASSWORD_FILE", path)];
        assert!(mqtt_credentials(env(both)).unwrap_err().to_string().contains("both set"));
        let missing = vec![user, ("RISKWATCH_MQTT_PASSWORD_FILE", "/nonexistent/pw".to_string())];
        let err = format!("{:#}", mqtt_credentials(env(missing)).unwrap_err());
        assert!(err.contains("RISKWATCH_MQTT_PASSWORD_FILE") && err.contains("/nonexistent/pw"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
