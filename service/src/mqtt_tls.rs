//! TLS for riskwatch's own MQTT connections (rustls): the broker's CA, and optionally a client
//! certificate and key, as PEM files.
//!
//! `RISKWATCH_MQTT_CA` (path to the CA certificate, PEM) switches TLS on;
//! `RISKWATCH_MQTT_CLIENT_CERT` and `RISKWATCH_MQTT_CLIENT_KEY` add a client certificate for
//! brokers that require one (`require_certificate true`). The topology file's `[mqtt] tls_ca`,
//! `tls_cert`, `tls_key` do the same for the production path.

use anyhow::{bail, Context, Result};
use rumqttc::{TlsConfiguration, Transport};
use std::path::Path;

/// A TLS transport from PEM files.
pub fn transport(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Transport> {
    let read =
        |p: &Path, what: &str| std::fs::read(p).with_context(|| format!("reading the MQTT {what} {}", p.display()));
    let ca = read(ca, "CA certificate")?;
    let client_auth = match client {
        Some((cert, key)) => Some((read(cert, "client certificate")?, read(key, "client key")?)),
        None => None,
    };
    Ok(Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth }))
}

/// TLS settings from the environment, if `RISKWATCH_MQTT_CA` is set.
pub fn from_env() -> Result<Option<Transport>> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (ca, cert, key) =
        (var("RISKWATCH_MQTT_CA"), var("RISKWATCH_MQTT_CLIENT_CERT"), var("RISKWATCH_MQTT_CLIENT_KEY"));
    from_paths(ca.as_deref(), cert.as_deref(), key.as_deref())
}

/// TLS settings from optional paths; a client certificate needs its key and a CA.
pub fn from_paths(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> Result<Option<Transport>> {
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((Path::new(c), Path::new(k))),
        (None, None) => None,
        _ => bail!("a client certificate needs both RISKWATCH_MQTT_CLIENT_CERT and RISKWATCH_MQTT_CLIENT_KEY (tls_cert and tls_key)"),
    };
    match ca {
        Some(ca) => Ok(Some(transport(Path::new(ca), client)?)),
        None if client.is_some() => {
            bail!("a client certificate needs the broker's CA too (RISKWATCH_MQTT_CA or tls_ca)")
        }
        None => Ok(None),
    }
}
