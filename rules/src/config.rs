//! The rules file (TOML): hazard rules, data-quality checks and composite site rules.
//!
//! ```toml
//! [[rules]]
//! id = "water-level"
//! applies_to = { kind = "water_level" }
//! deadband = 0.05
//! on_delay = { samples = 2 }
//! off_delay = { seconds = 900 }
//! levels = { blue = "warning_level - 0.3", yellow = ["warning_level", "rate(1h) >= 0.3"], orange = "guaranteed_level", red = "record_level" }
//!
//! [[quality]]
//! applies_to = { kind = "water_level" }
//! flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }
//!
//! [[composites]]
//! id = "tailings-rollup"
//! levels = { yellow = "count(>= blue) >= 4", orange = "count(>= yellow) >= 3", red = "count(>= orange) >= 2" }
//! ```
//!
//! Parsing checks everything that can be checked without a registry (literal thresholds in
//! level order included) and reports every problem as a [`Problem`] with its field and line;
//! [`RuleSet::from_toml_for`] adds the kinds against a catalog, [`RuleSet::problems_against`]
//! the registry checks (attributes, their order per sensor).

use crate::bands::{Delay, Direction};
use crate::composite::CompositeSpec;
use crate::condition::{parse_window, Condition, Feature, LevelConditions};
use crate::measure::Measure;
use crate::message::MessageTemplate;
use crate::quality::QualitySpec;
use crate::threshold::ThresholdExpr;
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{FieldLines, KindCatalog, Level, Problem, Registry, Sensor};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use toml::Spanned;

/// Which sensors a rule applies to. Every given criterion must match.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Sensor kind (wire name).
    pub kind: String,
    /// Only these sites (empty = all).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only these sensors (empty = all).
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Only sensors carrying all of these registry tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Selector {
    /// Whether a registered sensor is selected.
    pub fn matches(&self, s: &Sensor) -> bool {
        s.kind.as_str() == self.kind
            && (self.sites.is_empty() || self.sites.iter().any(|x| x == s.site.as_str()))
            && (self.sensors.is_empty() || self.sensors.iter().any(|x| x == s.id.as_str()))
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// Conditions per level as written; absent levels are not used by the rule.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSpecs {
    /// Blue (IV).
    pub blue: Option<LevelConditions>,
    /// Yellow (III).
    pub yellow: Option<LevelConditions>,
    /// Orange (II).
    pub orange: Option<LevelConditions>,
    /// Red (I).
    pub red: Option<LevelConditions>,
}

impl LevelSpecs {
    /// The entries, blue..red.
    pub fn as_array(&self) -> [Option<&LevelConditions>; 4] {
        [self.blue.as_ref(), self.yellow.as_ref(), self.orange.as_ref(), self.red.as_ref()]
    }
}

/// Re-notification intervals for unacknowledged alerts, per level (`"5m"`, `"15m"`, `"off"`).
/// A level left out keeps its default (red 5 min, orange 15 min).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remind {
    /// Interval at red.
    #[serde(default = "default_remind_red")]
    pub red: Option<String>,
    /// Interval at orange.
    #[serde(default = "default_remind_orange")]
    pub orange: Option<String>,
}

fn default_remind_red() -> Option<String> {
    Some("5m".into())
}

fn default_remind_orange() -> Option<String> {
    Some("15m".into())
}

impl Default for Remind {
    fn default() -> Self {
        Remind { red: default_remind_red(), orange: default_remind_orange() }
    }
}

fn default_precision() -> usize {
    2
}

fn default_measure() -> Measure {
    Measure::Value
}

fn default_direction() -> Direction {
    Direction::Rising
}

/// One hazard rule as written in the file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique rule id (part of every alert id it raises).
    pub id: String,
    /// What the rule is for, for people.
    #[serde(default)]
    pub description: String,
    /// Which sensors it applies to.
    pub applies_to: Selector,
    /// What number it watches.
    #[serde(default = "default_measure")]
    pub measure: Measure,
    /// Which side is dangerous (decides the comparison of bare thresholds).
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Hysteresis width, in the unit of each condition's feature.
    #[serde(default)]
    pub deadband: f64,
    /// Confirmation before a level is entered.
    #[serde(default)]
    pub on_delay: Delay,
    /// Confirmation (hold time) before a level is left downwards.
    #[serde(default)]
    pub off_delay: Delay,
    /// Conditions per level; any one raises the level.
    pub levels: LevelSpecs,
    /// Reminders while red or orange stays unacknowledged.
    #[serde(default)]
    pub remind: Remind,
    /// Decimal places for values in messages.
    #[serde(default = "default_precision")]
    pub precision: usize,
    /// Message templates.
    #[serde(default)]
    pub message: MessageTemplate,
    /// Parameters of the GNSS detector (measures `tangent_angle`, `gnss_velocity`,
    /// `subsidence_rate`).
    #[serde(default)]
    pub gnss: Option<crate::detectors::gnss::GnssParams>,
    /// STA/LTA windows (measure `sta_lta`).
    #[serde(default)]
    pub sta_lta: Option<crate::StaLtaParams>,
}

/// A rule ready to bind: its spec plus parsed conditions and derived window sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledRule {
    /// As written.
    pub spec: RuleSpec,
    /// Parsed conditions per level, blue..red (empty = level unused).
    pub conditions: [Vec<Condition>; 4],
    /// Reminder interval per level in ms (only orange and red are used).
    pub remind_ms: [Option<i64>; 4],
    /// History the windowed conditions need (0 = none), and its slot resolution.
    pub window_keep_ms: i64,
    /// Slot width of the history.
    pub window_resolution_ms: i64,
    /// 1-based line of the rule in its file.
    pub line: usize,
    /// GNSS detector parameters in force (the rule's, or the defaults).
    pub gnss: crate::detectors::gnss::GnssParams,
    /// STA/LTA windows in force.
    pub sta_lta: crate::StaLtaParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    quality: Vec<Spanned<QualitySpec>>,
    #[serde(default)]
    composites: Vec<Spanned<CompositeSpec>>,
    #[serde(default)]
    chains: Vec<Spanned<crate::chain_spec::ChainSpec>>,
    #[serde(default)]
    forecasts: Vec<Spanned<crate::forecast_rule::ForecastSpec>>,
}

/// A parsed, statically valid rules file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// Hazard rules, in file order.
    pub rules: Vec<CompiledRule>,
    /// Data-quality checks, in file order, with their lines.
    pub quality: Vec<(QualitySpec, usize)>,
    /// Composite site rules, in file order, with their lines.
    pub composites: Vec<(CompositeSpec, usize)>,
    /// Call-response chains (叫应), in file order.
    pub chains: Vec<crate::chain_spec::ChainSpec>,
    /// Forecast rules, in file order ([`crate::forecast_rule`]).
    pub forecasts: Vec<crate::forecast_rule::CompiledForecast>,
    /// Where each field was written, for problems found later (against a registry).
    pub lines: FieldLines,
}

/// Why a rules file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Not valid TOML, or a field of the wrong type (the message has line and column).
    #[error("rules file is not valid: {0}")]
    Parse(String),
    /// Every problem found in the file, each with its field and line.
    #[error("rules file has {} problem(s):\n  {}", .0.len(), .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    File(Vec<Problem>),
    /// The rules cannot run on this registry or state (each message names what and where).
    #[error("rules file has {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// `field: message` from a part's own check (`flat_line.tolerance: must be …`) as a problem
/// of `prefix` (`quality[2]`).
fn sub_problem(prefix: &str, p: &str) -> Problem {
    match p.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => Problem::new(format!("{prefix}.{field}"), message),
        _ => Problem::new(prefix, p),
    }
}

impl RuleSet {
    /// Parses a rules file and checks what can be checked without a registry: ids, numbers,
    /// conditions, and the order of literal thresholds (`red` above `orange` … for a rising
    /// rule). Kinds need a catalog ([`RuleSet::kind_problems`]); thresholds that name sensor
    /// attributes need a registry ([`RuleSet::problems_against`]).
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let (set, problems) = Self::parse(text)?;
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(RuleError::File(problems))
        }
    }

    /// [`RuleSet::from_toml`] plus the kinds against `catalog` ([`RuleSet::kind_problems`]),
    /// every problem reported at once. Without a registry, `KindCatalog::default()` knows the
    /// built-in kinds only.
    pub fn from_toml_for(text: &str, catalog: &KindCatalog) -> Result<Self, RuleError> {
        let (set, mut problems) = Self::parse(text)?;
        problems.extend(set.kind_problems(catalog));
        if problems.is_empty() {
            Ok(set)
        } else {
            set.lines.locate(&mut problems);
            Err(RuleError::File(problems))
        }
    }

    /// The rule set as far as it could be built, and every problem found.
    fn parse(text: &str) -> Result<(Self, Vec<Problem>), RuleError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        let lines = FieldLines::new(text);
        let mut problems = Vec::new();
        let mut first_id: HashMap<String, String> = HashMap::new();
        let mut rules = Vec::new();
        for (i, spanned) in file.rules.into_iter().enumerate() {
            let line = lines.line(&format!("rules[{i}]")).unwrap_or(1);
            let r = spanned.into_inner();
            let at = format!("rules[{i}]");
            if !is_valid_id(&r.id) {
                problems
                    .push(Problem::new(format!("{at}.id"), format!("{:?} must be 1-64 letters, digits, - _ .", r.id)));
            }
            match first_id.get(&r.id) {
                Some(first) => problems.push(Problem::duplicate(
                    format!("{at}.id"),
                    format!("id {:?} is used twice", r.id),
                    first.clone(),
                )),
                None => {
                    first_id.insert(r.id.clone(), format!("{at}.id"));
                }
            }
            if !(r.deadband.is_finite() && r.deadband >= 0.0) {
                problems.push(Problem::new(format!("{at}.deadband"), "must be a finite number ≥ 0"));
            }
            if r.levels.as_array().iter().all(Option::is_none) {
                problems.push(Problem::new(format!("{at}.levels"), "give at least one of blue, yellow, orange, red"));
            }
            if r.precision > 9 {
                problems.push(Problem::new(format!("{at}.precision"), "at most 9 decimal places"));
            }
            for p in r.message.unknown_placeholders() {
                problems.push(Problem::new(format!("{at}.message"), format!("unknown placeholder {{{p}}}")));
            }
            if let Some(g) = &r.gnss {
                problems.extend(g.problems().iter().map(|p| sub_problem(&format!("{at}.gnss"), p)));
            }
            if let Some(s) = &r.sta_lta {
                problems.extend(s.problems().iter().map(|p| sub_problem(&at, p)));
            }
            let mut conditions: [Vec<Condition>; 4] = Default::default();
            for (li, entry) in r.levels.as_array().into_iter().enumerate() {
                if let Some(entry) = entry {
                    match entry.parse(r.direction) {
                        Ok(cs) => conditions[li] = cs,
                        Err(e) => problems.push(Problem::new(format!("{at}.levels.{}", Level::ALL[li]), e)),
                    }
                }
            }
            let literal = conditions.clone().map(|cs| {
                cs.iter()
                    .map(|c| match c.threshold {
                        ThresholdExpr::Const(v) => Some(v),
                        ThresholdExpr::Attr { .. } => None,
                    })
                    .collect::<Vec<_>>()
            });
            if let Some((level, p)) = ordering_problem(&conditions, &literal) {
                problems.push(Problem::new(format!("{at}.levels.{level}"), p));
            }
            let mut remind_ms = [None; 4];
            for (level, text) in [(Level::Orange, &r.remind.orange), (Level::Red, &r.remind.red)] {
                match text.as_deref() {
                    None | Some("off") => {}
                    Some(t) => match parse_window(t) {
                        Ok(ms) => remind_ms[level.index()] = Some(ms),
                        Err(e) => problems.push(Problem::new(format!("{at}.remind.{level}"), e)),
                    },
                }
            }
            let windows: Vec<i64> = conditions.iter().flatten().filter_map(|c| c.feature.window_ms()).collect();
            let keep = windows.iter().copied().max().unwrap_or(0);
            let resolution = windows.iter().copied().min().map_or(1, |w| (w / 24).max(1));
            let gnss = r.gnss.clone().unwrap_or_default();
            let sta_lta = r.sta_lta.unwrap_or_default();
            rules.push(CompiledRule {
                spec: r,
                conditions,
                remind_ms,
                window_keep_ms: keep,
                window_resolution_ms: resolution,
                line,
                gnss,
                sta_lta,
            });
        }
        let mut quality = Vec::new();
        for (i, spanned) in file.quality.into_iter().enumerate() {
            let line = lines.line(&format!("quality[{i}]")).unwrap_or(1);
            let q = spanned.into_inner();
            problems.extend(q.problems().iter().map(|p| sub_problem(&format!("quality[{i}]"), p)));
            quality.push((q, line));
        }
        let mut composites = Vec::new();
        for (i, spanned) in file.composites.into_iter().enumerate() {
            let line = lines.line(&format!("composites[{i}]")).unwrap_or(1);
            let c = spanned.into_inner();
            let at = format!("composites[{i}]");
            problems.extend(c.problems().iter().map(|p| sub_problem(&at, p)));
            match first_id.get(&c.id) {
                Some(first) => problems.push(Problem::duplicate(
                    format!("{at}.id"),
                    format!("id {:?} is used twice (rule and composite ids share one namespace)", c.id),
                    first.clone(),
                )),
                None => {
                    first_id.insert(c.id.clone(), format!("{at}.id"));
                }
            }
            composites.push((c, line));
        }
        let mut forecasts = Vec::new();
        for (i, spanned) in file.forecasts.into_iter().enumerate() {
            let at = format!("forecasts[{i}]");
            let line = lines.line(&at).unwrap_or(1);
            let f = crate::forecast_rule::CompiledForecast::compile(spanned.into_inner(), &at, line, &mut problems);
            match first_id.get(&f.spec.id) {
                Some(first) => problems.push(Problem::duplicate(
                    format!("{at}.id"),
                    format!("id {:?} is used twice (rule, composite and forecast ids share one namespace)", f.spec.id),
                    first.clone(),
                )),
                None => {
                    first_id.insert(f.spec.id.clone(), format!("{at}.id"));
                }
            }
            forecasts.push(f);
        }
        let rule_ids: HashSet<&str> = rules.iter().map(|r| r.spec.id.as_str()).collect();
        for (i, (c, _)) in composites.iter().enumerate() {
            let in_levels = c.levels.as_array().into_iter().zip(Level::ALL).flat_map(|(e, level)| {
                e.into_iter().flat_map(|e| e.rules_referenced()).map(move |r| (format!("levels.{level}"), r))
            });
            let in_members = c.members.rules.iter().map(|r| ("members.rules".to_string(), r.as_str()));
            for (field, r) in in_levels.chain(in_members) {
                if !rule_ids.contains(r) {
                    problems.push(Problem::new(
                        format!("composites[{i}].{field}"),
                        format!("refers to unknown rule {r:?}"),
                    ));
                }
            }
        }
        let mut chains: Vec<crate::chain_spec::ChainSpec> = Vec::new();
        for (i, spanned) in file.chains.into_iter().enumerate() {
            let mut c = spanned.into_inner();
            let at = format!("chains[{i}]");
            problems.extend(c.problems().into_iter().map(|p| Problem::new(format!("{at}.{}", p.field), p.message)));
            if let Some(first) = chains.iter().position(|earlier| earlier.id == c.id) {
                problems.push(Problem::duplicate(
                    format!("{at}.id"),
                    format!("chain id {:?} is used twice", c.id),
                    format!("chains[{first}].id"),
                ));
            }
            chains.push(c);
        }
        lines.locate(&mut problems);
        Ok((RuleSet { rules, quality, composites, chains, forecasts, lines }, problems))
    }

    /// Kinds the rules and quality tables apply to that `catalog` does not know. Without a
    /// registry, check against [`KindCatalog::default`] (the built-in kinds): a kind a
    /// registry declares under `[kinds]` is then reported too.
    pub fn kind_problems(&self, catalog: &KindCatalog) -> Vec<Problem> {
        let known = || catalog.names().collect::<Vec<_>>().join(", ");
        let mut problems = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            match catalog.lookup(&r.spec.applies_to.kind) {
                None => problems.push(Problem::new(
                    format!("{at}.applies_to.kind"),
                    format!("unknown kind {:?} (known: {})", r.spec.applies_to.kind, known()),
                )),
                Some((_, spec)) if spec.shape != r.spec.measure.shape() => problems.push(Problem::new(
                    format!("{at}.measure"),
                    format!(
                        "{:?} reads {} values but {} readings are {}",
                        r.spec.measure,
                        r.spec.measure.shape().as_str(),
                        r.spec.applies_to.kind,
                        spec.shape.as_str()
                    ),
                )),
                Some(_) => {}
            }
        }
        for (i, (q, _)) in self.quality.iter().enumerate() {
            match catalog.lookup(&q.applies_to.kind) {
                None => problems.push(Problem::new(
                    format!("quality[{i}].applies_to.kind"),
                    format!("unknown kind {:?} (known: {})", q.applies_to.kind, known()),
                )),
                Some((_, spec)) if spec.shape != q.measure.shape() => problems.push(Problem::new(
                    format!("quality[{i}].measure"),
                    format!(
                        "{:?} reads {} values but {} readings are {}",
                        q.measure,
                        q.measure.shape().as_str(),
                        q.applies_to.kind,
                        spec.shape.as_str()
                    ),
                )),
                Some(_) => {}
            }
        }
        for (i, f) in self.forecasts.iter().enumerate() {
            problems.extend(f.kind_problems(&format!("forecasts[{i}]"), catalog));
        }
        self.lines.locate(&mut problems);
        problems
    }

    /// How many thresholds name a sensor attribute (`warning_level`): their values, and so
    /// their order, are known only against a registry.
    pub fn attribute_thresholds(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| r.conditions.iter().flatten())
            .filter(|c| matches!(c.threshold, ThresholdExpr::Attr { .. }))
            .count()
    }

    /// Checks the rules against a registry: kinds exist and fit the measure, every selected
    /// sensor has the attributes its thresholds name, and thresholds are ordered by level.
    pub fn problems_against(&self, registry: &Registry) -> Vec<Problem> {
        let mut problems = self.kind_problems(registry.catalog());
        let sensors = registry.sensors();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            for s in sensors.iter().filter(|s| r.spec.applies_to.matches(s)) {
                match resolve_levels(r, s) {
                    Ok(t) => {
                        let t = t.map(|ts| ts.into_iter().map(Some).collect());
                        if let Some((level, p)) = ordering_problem(&r.conditions, &t) {
                            problems
                                .push(Problem::new(format!("{at}.levels.{level}"), format!("sensor {}: {p}", s.id)));
                        }
                    }
                    Err((level, p)) => {
                        problems.push(Problem::new(format!("{at}.levels.{level}"), format!("sensor {}: {p}", s.id)))
                    }
                }
            }
        }
        for (i, f) in self.forecasts.iter().enumerate() {
            for s in sensors.iter().filter(|s| f.spec.applies_to.matches(s)) {
                if let Err((level, p)) = f.thresholds(s) {
                    problems.push(Problem::new(
                        format!("forecasts[{i}].levels.{level}.threshold"),
                        format!("sensor {}: {p}", s.id),
                    ));
                }
            }
        }
        for (i, (q, _)) in self.quality.iter().enumerate() {
            for s in sensors.iter().filter(|s| q.applies_to.matches(s)) {
                if let Err(p) = q.resolve(s) {
                    let mut p = sub_problem(&format!("quality[{i}]"), &p);
                    p.message = format!("sensor {}: {}", s.id, p.message);
                    problems.push(p);
                }
            }
        }
        self.lines.locate(&mut problems);
        problems
    }

    /// [`RuleSet::problems_against`], as text (`line N: field: message`).
    pub fn check_against(&self, registry: &Registry) -> Vec<String> {
        self.problems_against(registry).iter().map(Problem::to_string).collect()
    }
}

impl RuleSet {
    /// Things that are legal but probably not what the author meant: rules, quality tables
    /// and composites that select nothing, and quality tables hidden by an earlier one.
    pub fn warnings_against(&self, registry: &Registry) -> Vec<Problem> {
        let mut w = Vec::new();
        let sensors = registry.sensors();
        for (i, r) in self.rules.iter().enumerate() {
            if !sensors.iter().any(|s| r.spec.applies_to.matches(s)) {
                w.push(Problem::new(
                    format!("rules[{i}].applies_to"),
                    format!("rule {:?} applies to no registered sensor", r.spec.id),
                ));
            }
        }
        for (i, (q, _)) in self.quality.iter().enumerate() {
            let selected: Vec<_> = sensors.iter().filter(|s| q.applies_to.matches(s)).collect();
            if selected.is_empty() {
                w.push(Problem::new(format!("quality[{i}].applies_to"), "applies to no registered sensor"));
            } else if selected
                .iter()
                .all(|s| self.quality[..i].iter().any(|(earlier, _)| earlier.applies_to.matches(s)))
            {
                w.push(Problem::new(
                    format!("quality[{i}]"),
                    "is hidden: an earlier [[quality]] table already applies to all its sensors (the first match wins)",
                ));
            }
        }
        for (i, f) in self.forecasts.iter().enumerate() {
            if !sensors.iter().any(|s| f.spec.applies_to.matches(s)) {
                w.push(Problem::new(
                    format!("forecasts[{i}].applies_to"),
                    format!("forecast rule {:?} applies to no registered sensor", f.spec.id),
                ));
            }
        }
        for (i, (c, _)) in self.composites.iter().enumerate() {
            for site in &c.sites {
                if registry.site(site).is_none() {
                    w.push(Problem::new(format!("composites[{i}].sites"), format!("unknown site {site:?}")));
                }
            }
        }
        for (i, c) in self.chains.iter().enumerate() {
            for site in &c.sites {
                if registry.site(site).is_none() {
                    w.push(Problem::new(format!("chains[{i}].sites"), format!("unknown site {site:?}")));
                }
            }
            for kind in &c.kinds {
                if kind != "site" && registry.catalog().lookup(kind).is_none() {
                    w.push(Problem::new(
                        format!("chains[{i}].kinds"),
                        format!("unknown kind {kind:?} (composite alerts have kind \"site\")"),
                    ));
                }
            }
        }
        self.lines.locate(&mut w);
        w
    }
}

/// Thresholds of a rule's conditions resolved for one sensor, per level.
pub(crate) fn resolve(r: &CompiledRule, s: &Sensor) -> Result<[Vec<f64>; 4], String> {
    resolve_levels(r, s).map_err(|(level, m)| format!("{level}: {m}"))
}

/// [`resolve`], the error naming the level whose threshold cannot be resolved.
fn resolve_levels(r: &CompiledRule, s: &Sensor) -> Result<[Vec<f64>; 4], (Level, String)> {
    let mut out: [Vec<f64>; 4] = Default::default();
    for (i, cs) in r.conditions.iter().enumerate() {
        for c in cs {
            out[i].push(c.threshold.resolve(&s.attributes).map_err(|m| (Level::ALL[i], m))?);
        }
    }
    Ok(out)
}

/// For each feature used on several levels, thresholds must not contradict the ladder (a
/// rising rule's red at or above its orange, …). `t` gives each condition's threshold, `None`
/// where it is not known (an attribute, without a registry). `Err` names the higher level.
fn ordering_problem(conditions: &[Vec<Condition>; 4], t: &[Vec<Option<f64>>; 4]) -> Option<(Level, String)> {
    let mut features: Vec<(Feature, crate::condition::Cmp)> = Vec::new();
    for c in conditions.iter().flatten() {
        if !features.contains(&(c.feature, c.cmp)) {
            features.push((c.feature, c.cmp));
        }
    }
    for (feature, cmp) in features {
        let present: Vec<(Level, f64)> = Level::ALL
            .iter()
            .zip(conditions.iter().zip(t))
            .filter_map(|(l, (cs, ts))| {
                cs.iter()
                    .zip(ts)
                    .find_map(|(c, v)| if c.feature == feature && c.cmp == cmp { *v } else { None })
                    .map(|v| (*l, v))
            })
            .collect();
        for w in present.windows(2) {
            let ((la, a), (lb, b)) = (w[0], w[1]);
            let ok = if cmp == crate::condition::Cmp::Ge { a <= b } else { a >= b };
            if !ok {
                let sym = if cmp == crate::condition::Cmp::Ge { "≤" } else { "≥" };
                return Some((lb, format!("{feature}: {la} threshold {a} must be {sym} {lb} threshold {b}")));
            }
        }
    }
    None
}
