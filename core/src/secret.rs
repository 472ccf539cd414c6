//! Secrets in configuration: given as `env:NAME` (an environment variable) or `file:/path` (a
//! file's content, trimmed), never inline, so that configuration files can be shared, committed
//! and logged without leaking them. Also how settings that may hold secrets are shown in logs.

/// Resolves `env:NAME` / `file:/path` to the secret.
pub fn resolve(spec: &str) -> Result<String, String> {
    if let Some(name) = spec.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    } else if let Some(path) = spec.strip_prefix("file:") {
        std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| format!("cannot read {path}: {e}"))
    } else {
        Err("secret must be env:NAME or file:/path".into())
    }
}

/// Whether `spec` is a reference (`env:` / `file:`) rather than a value.
pub fn is_reference(spec: &str) -> bool {
    spec.starts_with("env:") || spec.starts_with("file:")
}

/// Whether a setting called `key` holds a secret (passwords, keys, tokens, JAAS configs):
/// its value must be a reference and is never shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "jaas", "key.pem", "private"].iter().any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_inline_values_are_refused() {
        std::env::set_var("RISKWATCH_TEST_SECRET_X", "s3cr3t");
        assert_eq!(resolve("env:RISKWATCH_TEST_SECRET_X").unwrap(), "s3cr3t");
        assert!(resolve("env:RISKWATCH_TEST_SECRET_UNSET").unwrap_err().contains("RISKWATCH_TEST_SECRET_UNSET"));
        let dir = std::env::temp_dir().join(format!("rw-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        assert_eq!(resolve(&format!("file:{}", dir.display())).unwrap(), "from-file");
        std::fs::remove_file(&dir).unwrap();
        let err = resolve("hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "the refusal does not echo the value: {err}");
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in
            ["sasl.password", "ssl.key.password", "sasl.jaas.config", "ssl.key.pem", "sasl.oauthbearer.client.secret"]
        {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["security.protocol", "sasl.mechanism", "sasl.username", "ssl.ca.location", "ssl.key.location"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
