//! `riskwatch replay`: recorded readings through the production rule engine, in event time —
//! hindcasts with what-if thresholds, skill scores against observed events and a report with
//! plots; or, with `--drill`, the recording published into the live pipeline as an exercise.
//! The work is done by the `riskwatch-replay` crate; this is its command line (docs/replay.md).

use anyhow::{bail, Context, Result};
use riskwatch_core::{AlertChange, AlertEvent, Forecast, Level, Registry, Timestamp};
use riskwatch_replay::hindcast::{self, RunOptions};
use riskwatch_replay::input::{self, Format, InputOptions, Loaded};
use riskwatch_replay::names::{Lang, Names};
use riskwatch_replay::verify::{self, Observed, Skill};
use riskwatch_replay::whatif::{self, Applied, Override};
use riskwatch_replay::writeup::{self, ReportInput, RunReport};
use riskwatch_replay::{diff, Outcome};
use riskwatch_replay::{forecast_skill, questdb};
use riskwatch_rules::RuleSet;
use riskwatch_simulators::scenario::Scenario;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Trace bucket of the report's plots.
const TRACE_BUCKET: Duration = Duration::from_secs(3600);

/// Options of `riskwatch replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Recorded readings: a file (CSV, yearbook CSV, JSON lines, SQLite store) or QuestDB: an
    /// HTTP address (`http://HOST:9000`, `https://USER:PASSWORD@HOST:9000`), a questdb client
    /// string (`https::addr=HOST:9000;username=…;password=…;` or `…;token=…;`), or `env:NAME`
    /// to take either from an environment variable (e.g. `env:RISKWATCH_QUESTDB_CONF`).
    #[arg(long)]
    input: String,
    /// Input format: csv, yearbook, jsonl, sqlite or questdb (default: from the file name and
    /// header).
    #[arg(long)]
    format: Option<String>,
    /// Scenario file whose embedded registry and rules to use (instead of --registry/--rules).
    #[arg(long, conflicts_with_all = ["registry", "rules"])]
    scenario: Option<PathBuf>,
    /// Sensor registry (TOML).
    #[arg(long, required_unless_present = "scenario")]
    registry: Option<PathBuf>,
    /// Rules file (TOML): today's rules, or the rules being reviewed.
    #[arg(long, required_unless_present = "scenario")]
    rules: Option<PathBuf>,
    /// Only readings at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only readings before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// UTC offset of local times in yearbook files.
    #[arg(long, default_value = "+08:00")]
    tz: String,
    /// Event time per wall time (e.g. 3600 = an hour per second); default: as fast as possible.
    /// With --drill: default 1 (real time).
    #[arg(long)]
    speed: Option<f64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Split the sites over this many engines on their own threads (as the Kafka path splits
    /// them over partitions; rules combining sites see only their lane's).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// What-if: change a registry attribute for a second run, compared with the first
    /// (`warning_level-=0.3`, `hankou:warning_level=27.0`; repeatable).
    #[arg(long = "set", value_name = "OVERRIDE")]
    set: Vec<String>,
    /// What-if: a second rules file, compared with --rules on the same history.
    #[arg(long, value_name = "FILE")]
    what_if_rules: Option<PathBuf>,
    /// Observed events (flood crossings, incident log) to score the alerts against.
    #[arg(long)]
    observed: Option<PathBuf>,
    /// How long before an observed event an alert still counts as its warning.
    #[arg(long, default_value = "48h", value_parser = humantime::parse_duration)]
    lead_window: Duration,
    /// Forecasts issued during the period (JSON lines, one wire-format forecast per line naming
    /// its sensor and site; docs/wire-format.md §14): run with the readings at their issue
    /// times, and scored by lead time against the observed crossings.
    #[arg(long)]
    forecasts: Option<PathBuf>,
    /// Level the forecast skill is scored at (blue, yellow, orange, red).
    #[arg(long, default_value = "orange")]
    forecast_level: String,
    /// Write the report (Markdown, HTML, SVG plots, events.json) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Station names in the output and report: zh (the registry's `name_zh`, else `name`) or
    /// en (`name`, else `name_zh`); ids are shown beside them.
    #[arg(long, default_value = "zh", value_parser = |s: &str| s.parse::<Lang>())]
    names: Lang,
    /// Plot size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1200x480")]
    plot_size: String,
    /// Publish the recording into the live pipeline as an exercise instead of evaluating it
    /// here (needs --mqtt or --kafka).
    #[arg(long)]
    drill: bool,
    /// With --drill: the pipeline's MQTT broker, HOST:PORT or mqtt://HOST:PORT.
    #[arg(long, requires = "drill", conflicts_with = "kafka")]
    mqtt: Option<String>,
    /// With --drill: produce straight to the Kafka readings topic of these brokers.
    #[arg(long, requires = "drill")]
    kafka: Option<String>,
}

/// Runs `riskwatch replay`.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let (registry, rules, rules_name) = load_setup(&args)?;
    let overrides: Vec<Override> =
        args.set.iter().map(|s| s.parse::<Override>()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    if args.drill {
        if !overrides.is_empty() || args.what_if_rules.is_some() || args.observed.is_some() || args.report.is_some() {
            bail!("--drill publishes the recording to the live pipeline; --set, --what-if-rules, --observed and --report are for hindcasts");
        }
        return drill(&args, &registry).await;
    }
    let mut source = Source::open(&args)?;
    let forecasts: Vec<Forecast> = match &args.forecasts {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            forecast_skill::read_forecasts(&text, &p.display().to_string(), &registry)?
        }
        None => Vec::new(),
    };
    let forecast_level = match args.forecast_level.as_str() {
        "blue" => Level::Blue,
        "yellow" => Level::Yellow,
        "orange" => Level::Orange,
        "red" => Level::Red,
        other => bail!("--forecast-level {other:?}: expected blue, yellow, orange or red"),
    };
    source.forecasts = forecasts.clone();
    let observed: Option<Vec<Observed>> = match &args.observed {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(verify::parse_observed(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let opts = RunOptions {
        speed: args.speed,
        progress: !args.quiet && std::io::stderr().is_terminal(),
        trace_bucket: args.report.is_some().then_some(TRACE_BUCKET),
        jobs: args.jobs,
    };
    let what_if = !overrides.is_empty() || args.what_if_rules.is_some();
    let base = Run::go("baseline", rules_name, rules, registry, Vec::new(), &mut source, &opts, &observed, &args)?;
    let alt = if what_if {
        let (rules, name) = match &args.what_if_rules {
            Some(p) => (crate::settings::load_rules(p)?, p.display().to_string()),
            None => (base.rules.clone(), base.rules_name.clone()),
        };
        let (registry, applied) = whatif::apply(&base.registry, &overrides).map_err(anyhow::Error::msg)?;
        Some(Run::go("what-if", name, rules, registry, applied, &mut source, &opts, &observed, &args)?)
    } else {
        None
    };
    let forecast_skill = (!forecasts.is_empty()).then(|| {
        let k = forecast_skill::lead_skill(
            &forecasts,
            &base.outcome.events,
            &base.rules,
            &base.registry,
            forecast_level,
            &forecast_skill::DEFAULT_BUCKETS_H,
        );
        println!("forecast skill at {} ({} forecasts judged):", k.level, k.forecasts);
        for b in &k.buckets {
            println!(
                "  lead {:>2}–{:<2} h  hits {} misses {} false alarms {}  POD {}  FAR {}  CSI {}",
                b.from_h,
                b.to_h,
                b.hits,
                b.misses,
                b.false_alarms,
                verify::show(b.pod),
                verify::show(b.far),
                verify::show(b.csi)
            );
        }
        println!("  mean lead time gained {} h", verify::show(k.mean_lead_gained_h));
        k
    });
    let comparison = alt.as_ref().map(|a| diff::compare(&base.episodes, &a.episodes));
    if let Some(c) = &comparison {
        let names = Names::new(&base.registry, args.names);
        let name = |subject: &str| names.with_id(subject);
        println!(
            "baseline vs what-if: {} alert(s) gained, {} lost, {} changed",
            c.gained.len(),
            c.lost.len(),
            c.changed().count()
        );
        for e in &c.gained {
            println!(
                "  gained  {} {:<6} raised {}",
                name(&e.subject),
                e.highest().as_str(),
                e.start().to_rfc3339_cst()
            );
        }
        for e in &c.lost {
            println!(
                "  lost    {} {:<6} raised {}",
                name(&e.subject),
                e.highest().as_str(),
                e.start().to_rfc3339_cst()
            );
        }
        for m in c.changed() {
            for sh in m.shifts.iter().filter(|s| s.earlier_by_hours != Some(0.0)) {
                println!(
                    "  changed {} {:<6} baseline {} what-if {} (what-if earlier by {} h)",
                    name(&m.subject),
                    sh.level.as_str(),
                    sh.baseline.map_or("never".into(), |t| t.to_rfc3339_cst()),
                    sh.what_if.map_or("never".into(), |t| t.to_rfc3339_cst()),
                    verify::show(sh.earlier_by_hours)
                );
            }
        }
    }
    if let Some(dir) = &args.report {
        let plot_size = parse_size(&args.plot_size)?;
        let shown_input = questdb::shown(&args.input);
        let runs: Vec<RunReport<'_>> = std::iter::once(&base).chain(alt.as_ref()).map(Run::report).collect();
        let report =
            ReportInput { input: &shown_input, runs, comparison: comparison.as_ref(), plot_size, lang: args.names };
        let files = writeup::write(dir, &report)?;
        if let Some(k) = &forecast_skill {
            let written = riskwatch_replay::forecast_report::write(
                dir,
                k,
                &forecasts,
                &base.outcome.traces,
                &base.rules,
                &base.registry,
                plot_size,
            )?;
            println!("forecast report: {} file(s), section in {}", written.len(), files.markdown.display());
        }
        println!(
            "report: {} ({} plot files, {}x{} px), {}, {}",
            files.markdown.display(),
            files.plots.len(),
            plot_size.0,
            plot_size.1,
            files.html.display(),
            files.events.display()
        );
    }
    Ok(())
}

/// One evaluated run and what it needs for the report.
struct Run {
    name: &'static str,
    rules_name: String,
    rules: RuleSet,
    registry: Registry,
    applied: Vec<Applied>,
    outcome: Outcome,
    episodes: Vec<verify::Episode>,
    skill: Option<Skill>,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    fn go(
        name: &'static str,
        rules_name: String,
        rules: RuleSet,
        registry: Registry,
        applied: Vec<Applied>,
        source: &mut Source,
        opts: &RunOptions,
        observed: &Option<Vec<Observed>>,
        args: &ReplayArgs,
    ) -> Result<Run> {
        let outcome = source.run(&rules, &registry, opts)?;
        let names = Names::new(&registry, args.names);
        println!("{name} ({rules_name}): {}", summary_line(&outcome));
        for a in &applied {
            println!("  {} {}: {} → {}", names.with_id(&a.sensor), a.attribute, a.before, a.after);
        }
        let reminders = outcome.events.iter().filter(|e| e.change == AlertChange::Reminder).count();
        for e in outcome.events.iter().filter(|e| e.change != AlertChange::Reminder) {
            println!("{}", timeline_line(e, &names));
        }
        if reminders > 0 {
            println!("  (and {reminders} reminder(s) of unacknowledged alerts, in events.json)");
        }
        let end = outcome.span.map_or(Timestamp(0), |s| s.1);
        let episodes = verify::episodes(&outcome.events, end);
        let skill = observed.as_ref().map(|o| verify::score(&episodes, o, args.lead_window));
        if let Some(k) = &skill {
            println!(
                "{name} skill vs {}: hits {} misses {} false alarms {}  POD {}  FAR {}  CSI {}  mean lead {} h",
                args.observed.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                k.hits,
                k.misses,
                k.false_alarms,
                verify::show(k.pod),
                verify::show(k.far),
                verify::show(k.csi),
                verify::show(k.mean_lead_hours)
            );
        }
        Ok(Run { name, rules_name, rules, registry, applied, outcome, episodes, skill })
    }

    fn report(&self) -> RunReport<'_> {
        RunReport {
            name: self.name,
            rules: &self.rules_name,
            rule_set: &self.rules,
            registry: &self.registry,
            applied: &self.applied,
            outcome: &self.outcome,
            skill: self.skill.as_ref(),
        }
    }
}

/// The recorded readings: streamed from a time-ordered CSV file on every run, or loaded (and
/// sorted) once.
struct Source {
    input: String,
    opts: InputOptions,
    loaded: Option<Loaded>,
    reported: bool,
    /// Forecasts to run with the readings.
    forecasts: Vec<Forecast>,
}

impl Source {
    fn open(args: &ReplayArgs) -> Result<Source> {
        let format = match &args.format {
            Some(f) => f.parse::<Format>()?,
            None => Format::guess(&args.input)?,
        };
        let mut opts = InputOptions::new(format);
        opts.from = parse_time(args.from.as_deref(), "from")?;
        opts.to = parse_time(args.to.as_deref(), "to")?;
        opts.utc_offset_s = parse_offset(&args.tz)?;
        Ok(Source { input: args.input.clone(), opts, loaded: None, reported: false, forecasts: Vec::new() })
    }

    /// All readings in memory, sorted (loaded on first use).
    fn loaded(&mut self, registry: &Registry) -> Result<&Loaded> {
        if self.loaded.is_none() {
            self.loaded = Some(input::load(&self.input, &self.opts, registry)?);
        }
        Ok(self.loaded.as_ref().expect("just loaded"))
    }

    /// One run over the readings.
    fn run(&mut self, rules: &RuleSet, registry: &Registry, opts: &RunOptions) -> Result<Outcome> {
        if self.loaded.is_none() && input::streamable(self.opts.format) {
            let mut h = hindcast::Hindcast::new(rules, registry, opts)?.with_forecasts(self.forecasts.clone())?;
            let streamed = input::stream(&self.input, &self.opts, registry, 4096, |b, done| {
                h.done = done;
                h.feed(b)
            })?;
            if streamed.ordered {
                let mut outcome = h.finish()?;
                outcome.rejected = streamed.rejected;
                self.report(&outcome.rejected);
                return Ok(outcome);
            }
            // Not in time order (e.g. a yearbook file station by station): load and sort.
            drop(h);
        }
        let forecasts = self.forecasts.clone();
        let loaded = self.loaded(registry)?;
        let mut outcome = hindcast::run_with(&loaded.readings, forecasts, rules, registry, opts)?;
        outcome.rejected = loaded.rejected.clone();
        self.report(&outcome.rejected);
        Ok(outcome)
    }

    /// Lists refused input records once.
    fn report(&mut self, rejected: &[input::Rejection]) {
        if std::mem::replace(&mut self.reported, true) || rejected.is_empty() {
            return;
        }
        eprintln!("{} input record(s) refused:", rejected.len());
        for r in rejected.iter().take(20) {
            eprintln!("  {}: {}", r.at, r.reason);
        }
        if rejected.len() > 20 {
            eprintln!("  … and {} more", rejected.len() - 20);
        }
    }
}

fn parse_offset(s: &str) -> Result<i32> {
    let bad = || anyhow::anyhow!("--tz {s:?}: expected an offset like +08:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || anyhow::anyhow!("--plot-size {s:?}: expected WIDTHxHEIGHT, e.g. 1200x480 (each 200–8000)");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(200..=8000).contains(&w) || !(200..=8000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Registry and rules from --scenario or --registry/--rules, with a name for the rules.
fn load_setup(args: &ReplayArgs) -> Result<(Registry, RuleSet, String)> {
    match (&args.scenario, &args.registry, &args.rules) {
        (Some(path), _, _) => {
            let s = Scenario::load(path).map_err(anyhow::Error::msg)?;
            let registry = Registry::from_toml(&s.registry_text().map_err(anyhow::Error::msg)?)
                .with_context(|| format!("registry of {}", path.display()))?;
            let rules = RuleSet::from_toml(&s.rules_text().map_err(anyhow::Error::msg)?)
                .with_context(|| format!("rules of {}", path.display()))?;
            Ok((registry, rules, path.display().to_string()))
        }
        (None, Some(reg), Some(rules)) => {
            Ok((crate::settings::load_registry(reg)?, crate::settings::load_rules(rules)?, rules.display().to_string()))
        }
        _ => bail!("give --scenario, or --registry and --rules"),
    }
}

async fn drill(args: &ReplayArgs, registry: &Registry) -> Result<()> {
    let mut source = Source::open(args)?;
    let rejected = source.loaded(registry)?.rejected.clone();
    source.report(&rejected);
    let loaded = source.loaded(registry)?;
    let speed = args.speed.unwrap_or(1.0);
    let readings = loaded.readings.len();
    let batches: Vec<Vec<riskwatch_core::Reading>> = loaded.readings.chunks(4096).map(<[_]>::to_vec).collect();
    let published = match (&args.mqtt, &args.kafka) {
        (Some(mqtt), _) => {
            let (host, port) = crate::settings::parse_mqtt_address(mqtt)?;
            println!(
                "drill: publishing {readings} readings of {} as an exercise to {host}:{port}, speed {speed}",
                questdb::shown(&args.input)
            );
            crate::cli::drill::publish(batches, host, port, speed).await?
        }
        (None, Some(brokers)) => {
            let k: riskwatch_bus::KafkaConfig = toml::from_str(&format!("brokers = {brokers:?}"))?;
            println!(
                "drill: producing {readings} readings of {} as an exercise to {}, speed {speed}",
                questdb::shown(&args.input),
                k.readings_topic
            );
            crate::cli::drill::produce(batches, &k, speed).await?
        }
        (None, None) => bail!("--drill needs --mqtt HOST:PORT or --kafka BROKERS"),
    };
    println!(
        "drill: published {} messages ({} readings), {} acknowledged",
        published.messages, published.readings, published.acked
    );
    if published.acked < published.messages {
        bail!("{} drill message(s) were not acknowledged", published.messages - published.acked);
    }
    Ok(())
}

fn summary_line(o: &Outcome) -> String {
    let span = o
        .span
        .map(|(a, b)| format!("{} – {}", a.to_rfc3339_cst(), b.to_rfc3339_cst()))
        .unwrap_or_else(|| "no readings".into());
    format!(
        "{} readings, {span}, {} rejected, {} alert events, {:.2} s ({:.0} readings/s)",
        o.readings,
        o.rejected.len(),
        o.events.len(),
        o.wall.as_secs_f64(),
        o.readings as f64 / o.wall.as_secs_f64().max(1e-9)
    )
}

fn timeline_line(e: &AlertEvent, names: &Names<'_>) -> String {
    format!(
        "  {}  {:<12} {:<6} {}  {}",
        e.ts.to_rfc3339_cst(),
        e.change.as_str(),
        e.level.as_str(),
        names.with_id(e.subject.as_str()),
        e.message_en
    )
}

fn parse_time(s: Option<&str>, field: &str) -> Result<Option<Timestamp>> {
    s.map(|s| Timestamp::parse_rfc3339(s).map_err(anyhow::Error::msg).with_context(|| format!("--{field}"))).transpose()
}
