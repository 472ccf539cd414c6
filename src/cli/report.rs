//! `riskwatch report`: the alarm KPIs (EEMUA 191 / ISA-18.2) of a period, from the alert events
//! of a riskwatch SQLite store or console database, as Markdown or HTML (docs/alarm-kpis.md).
//! The figures come from `riskwatch-kpi`, the page from `riskwatch_replay::kpi_report`.

use crate::topology::Topology;
use anyhow::{bail, Context, Result};
use riskwatch_core::Timestamp;
use riskwatch_kpi::{compute, Settings};
use riskwatch_replay::{alert_history, kpi_report};
use std::path::PathBuf;

/// Output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown (tables).
    Markdown,
    /// One self-contained HTML page with the rate chart.
    Html,
}

/// Options of `riskwatch report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The alert events: a riskwatch SQLite store (`riskwatch run --db`, `riskwatch demo --db`),
    /// a console database (`riskwatch console --db`), or a topology file (`.toml`) whose
    /// `[embedded] db` to read.
    #[arg(long)]
    store: PathBuf,
    /// Period start (RFC 3339, e.g. `2026-07-01T00:00:00+08:00`); default: 24 h before --to.
    #[arg(long)]
    from: Option<String>,
    /// Period end, exclusive (RFC 3339); default: now.
    #[arg(long)]
    to: Option<String>,
    /// Duty officers on watch at once: rates are per officer, and a flood is 10 alerts per
    /// officer in 10 minutes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    officers: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn time(flag: &str, text: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}"))
}

/// Runs `riskwatch report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let to = match &args.to {
        Some(t) => time("--to", t)?,
        None => Timestamp::now(),
    };
    let from = match &args.from {
        Some(t) => time("--from", t)?,
        None => to.plus_millis(-24 * 3_600_000),
    };
    if from >= to {
        bail!("--from {} is not before --to {}", from.to_rfc3339(), to.to_rfc3339());
    }
    if to.millis() - from.millis() > 3_660 * 24 * 3_600_000 {
        bail!("--from … --to spans more than ten years; report on a shorter period");
    }
    let store = if args.store.extension().is_some_and(|e| e == "toml") {
        let t = Topology::load(&args.store)?;
        if t.kafka.is_some() {
            bail!(
                "--store {}: a Kafka topology keeps its alert events in QuestDB; give the console's database \
                 (`riskwatch console --db`) instead",
                args.store.display()
            );
        }
        t.embedded.db
    } else {
        args.store.clone()
    };
    let (_, events) = alert_history::read(&store, from, to)?;
    let kpis = compute(&events, from, to, &Settings { officers: args.officers, ..Settings::default() });
    let shown = store.display().to_string();
    let text = match args.format {
        ReportFormat::Markdown => kpi_report::markdown(&kpis, &shown),
        ReportFormat::Html => kpi_report::html(&kpis, &shown)?,
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("--out {}: writing the report", path.display()))?;
            println!("report written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
