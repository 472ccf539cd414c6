//! The forecast part of the replay report: skill by lead time (a table in `report.md` and
//! `forecast-skill.json`) and a forecast fan per forecast station (`plots/forecast-{sensor}.svg`:
//! the observed series against the forecasts' member spread and median).

use crate::forecast_plot::fan_svg;
use crate::forecast_skill::LeadSkill;
use crate::verify::show;
use crate::Trace;
use anyhow::{Context, Result};
use riskwatch_core::{Forecast, Level, Registry};
use riskwatch_rules::RuleSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes the forecast part into `dir` (where the report was written) and appends its
/// section to `dir/report.md`; the files written.
pub fn write(
    dir: &Path,
    skill: &LeadSkill,
    forecasts: &[Forecast],
    traces: &[Trace],
    rules: &RuleSet,
    registry: &Registry,
    size: (u32, u32),
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut md = String::new();
    let _ = writeln!(md, "\n## Forecast skill by lead time\n");
    let _ = writeln!(
        md,
        "{} forecasts judged at level {} against the observed crossings; a forecast warns in a bucket when its expected crossing lies that many hours after its issue.\n",
        skill.forecasts,
        skill.level
    );
    let _ =
        writeln!(md, "| lead (h) | hits | misses | false alarms | POD | FAR | CSI |\n|---|---|---|---|---|---|---|");
    for b in &skill.buckets {
        let _ = writeln!(
            md,
            "| {}–{} | {} | {} | {} | {} | {} | {} |",
            b.from_h,
            b.to_h,
            b.hits,
            b.misses,
            b.false_alarms,
            show(b.pod),
            show(b.far),
            show(b.csi)
        );
    }
    let _ = writeln!(
        md,
        "\nLead time gained by observed alerts linked to a forecast alert: {} (mean {} h).\n",
        if skill.lead_gained_h.is_empty() {
            "none".to_string()
        } else {
            skill.lead_gained_h.iter().map(|h| format!("{h:.0} h")).collect::<Vec<_>>().join(", ")
        },
        show(skill.mean_lead_gained_h)
    );
    std::fs::create_dir_all(dir.join("plots")).with_context(|| format!("creating {}", dir.display()))?;
    let mut sensors: Vec<&str> = forecasts.iter().map(|f| f.sensor.as_str()).collect();
    sensors.sort_unstable();
    sensors.dedup();
    for sensor in sensors {
        let fs: Vec<&Forecast> = forecasts.iter().filter(|f| f.sensor.as_str() == sensor).collect();
        let observed: Vec<(i64, f64)> = traces
            .iter()
            .filter(|t| t.sensor.as_str() == sensor)
            .flat_map(|t| {
                let half = i64::try_from(t.bucket.as_millis() / 2).unwrap_or(0);
                t.points.iter().map(move |p| (p.start.millis() + half, p.last))
            })
            .collect();
        let threshold = registry.sensor(sensor).and_then(|s| {
            rules.forecasts.iter().filter(|r| r.spec.applies_to.matches(s)).find_map(|r| {
                let t = r.thresholds(s).ok()?;
                Level::ALL.iter().rev().find_map(|l| t[l.index()].map(|v| (v, *l)))
            })
        });
        let svg = fan_svg(&format!("{sensor}: forecasts vs observed"), &observed, &fs, 4, threshold, size)?;
        let path = dir.join("plots").join(format!("forecast-{sensor}.svg"));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(md, "![forecasts of {sensor}](plots/forecast-{sensor}.svg)\n");
        files.push(path);
    }
    let json = dir.join("forecast-skill.json");
    std::fs::write(&json, serde_json::to_vec_pretty(skill)?).with_context(|| format!("writing {}", json.display()))?;
    files.push(json);
    let report = dir.join("report.md");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .with_context(|| format!("opening {}", report.display()))?;
    f.write_all(md.as_bytes()).with_context(|| format!("writing {}", report.display()))?;
    Ok(files)
}
