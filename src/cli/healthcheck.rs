//! `riskwatch healthcheck`: one GET of a riskwatch process's `/readyz` (or `/healthz`), exit 0 on
//! a 2xx answer. The containers' healthcheck: the runtime image has neither curl nor wget.

use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Options of `riskwatch healthcheck`.
#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// Endpoint to probe: `/readyz` (ready: connected and subscribed) or `/healthz` (alive) of
    /// RISKWATCH_METRICS_LISTEN, or of the console's --listen.
    #[arg(long, default_value = "http://127.0.0.1:9464/readyz")]
    url: String,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Runs `riskwatch healthcheck`.
pub async fn run(args: HealthcheckArgs) -> Result<()> {
    // Never through a proxy from the environment: the process is on this host.
    let client = reqwest::Client::builder().no_proxy().timeout(args.timeout).build().context("HTTP client")?;
    let response = client.get(&args.url).send().await.with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(300).collect();
    if !status.is_success() {
        bail!("{} answered {status}: {body}", args.url);
    }
    println!("{} answered {status}", args.url);
    Ok(())
}
