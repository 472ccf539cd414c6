//! Out of service: a sensor, a site or a rule taken out of service for a planned window
//! (calibration, a dam's maintenance).
//!
//! During a window the readings of what it covers are still stored and evaluated — every
//! binding's ladder moves as usual — but a level change of a covered binding raises, moves or
//! clears no hazard alert: it is *withheld*. The first withheld level of a sensor raises instead
//! a data-quality note (`dq.out_of_service`, blue) saying what the reading would have raised;
//! it clears when no covered binding of the sensor holds a level any more, or when the window
//! closes. Composites count a covered binding as holding no level.
//!
//! The window itself is an alert (`oos.window`, data quality): raised blue when the window
//! opens, so the board shows what is out of service and why; escalated to yellow when its end
//! time passes while it is still open (an *overrun*: planned work that did not finish, or a
//! window nobody closed — either needs a person); cleared when it is closed. On closing, every
//! covered binding's alert is brought in line with its ladder at once: a level reached during
//! the window is raised then, an alert whose condition went away during it is cleared.
//!
//! Stale detection is covered too (a sensor's own window, its site's, or one on the rule
//! `dq.stale`): a covered sensor raises no `dq.stale` alert, however long it is silent, and a
//! stale alert open when the window opened stays as it is, as hazard alerts do. On closing, the
//! sensor's silence counts afresh from the return: an open stale alert clears, and the sensor is
//! stale again only after its whole limit without a reading.
//!
//! So are the data-quality tests (a sensor's own window, its site's, or one on the test's rule
//! id, `dq.spike`, `dq.flat_line` …): a gauge off its pole for calibration spikes and stands
//! still, which is what maintenance is expected to cause. The readings still get their flags
//! and every test's state (spike reference, flat-line run, its alert ladder) moves as usual, but
//! the test's alert is left as it is — none raised, an open one neither cleared nor raised
//! again — and no note is raised for it. On closing, each covered test's alert is brought in
//! line with its ladder, as hazard alerts are: raised then if the test still flags the data,
//! cleared if it passed `clear_after` readings meanwhile.
//!
//! A window is opened or closed by a command (wire-format.md §9.4), so it is an input like
//! any other: it survives restarts in the engine's snapshot and replays identically.

use crate::lifecycle::CommandError;
use crate::RuleSet;
use riskwatch_core::{SensorId, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rule id of a window's own alert.
pub const WINDOW_RULE_ID: &str = "oos.window";
/// Rule id of the data-quality note of a covered sensor whose readings would raise an alert.
pub const NOTE_RULE_ID: &str = "dq.out_of_service";
/// The longest window: 30 days.
pub const MAX_WINDOW_MINUTES: u32 = 30 * 24 * 60;

/// A command opening or closing a window (wire-format.md §9.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCommand {
    /// The sender's id for this command, echoed in the resulting event or error.
    #[serde(default)]
    pub command_id: Option<String>,
    /// What to do.
    pub action: ServiceAction,
    /// A sensor to take out of (or return to) service.
    #[serde(default)]
    pub sensor: Option<String>,
    /// A rule to take out of service (at `site` only, if given).
    #[serde(default)]
    pub rule: Option<String>,
    /// A site to take out of service (alone); with `sensor`, the sensor's site (for routing);
    /// with `rule`, the one site the rule is out of service at.
    #[serde(default)]
    pub site: Option<String>,
    /// For `out_of_service`: the window's length in minutes (or give `until`).
    #[serde(default)]
    pub minutes: Option<u32>,
    /// For `out_of_service`: the window's planned end, RFC 3339 (or give `minutes`).
    #[serde(default)]
    pub until: Option<String>,
    /// Operator name or id.
    pub by: String,
    /// Why (required for `out_of_service`).
    #[serde(default)]
    pub note: String,
}

/// Window actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// Open a window.
    OutOfService,
    /// Close it.
    ReturnToService,
}

impl ServiceAction {
    /// Whether a command's `action` text names a window action.
    pub fn is_one(action: &str) -> bool {
        matches!(action, "out_of_service" | "return_to_service")
    }
}

/// What a window covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Target {
    /// One sensor.
    Sensor {
        /// The sensor.
        id: SensorId,
    },
    /// Every sensor of a site.
    Site {
        /// The site.
        id: SiteId,
    },
    /// One rule, everywhere or at one site.
    Rule {
        /// The rule.
        id: String,
        /// The one site, if given.
        #[serde(default)]
        site: Option<SiteId>,
    },
}

impl Target {
    /// The target a command names, or why it names none.
    pub(crate) fn of(cmd: &ServiceCommand) -> Result<Target, CommandError> {
        let some = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        match (some(&cmd.sensor), some(&cmd.rule), some(&cmd.site)) {
            (Some(_), Some(_), _) => Err(CommandError::BadTarget),
            (Some(s), None, _) => Ok(Target::Sensor { id: SensorId::new(&s) }),
            (None, Some(r), site) => Ok(Target::Rule { id: r, site: site.map(|s| SiteId::new(&s)) }),
            (None, None, Some(site)) => Ok(Target::Site { id: SiteId::new(&site) }),
            (None, None, None) => Err(CommandError::BadTarget),
        }
    }

    /// Whether it covers the binding of `rule` on `sensor` at `site`.
    #[inline]
    pub(crate) fn covers(&self, sensor: &SensorId, site: &SiteId, rule: &str) -> bool {
        match self {
            Target::Sensor { id } => id == sensor,
            Target::Site { id } => id == site,
            Target::Rule { id, site: at } => id == rule && at.as_ref().is_none_or(|s| s == site),
        }
    }

    /// The subject and site of its window alert.
    pub(crate) fn subject(&self) -> (SensorId, Option<SiteId>) {
        match self {
            Target::Sensor { id } => (id.clone(), None),
            Target::Site { id } => (SensorId::new(id.as_str()), Some(id.clone())),
            Target::Rule { id, site } => (SensorId::new(id), Some(site.clone().unwrap_or_else(|| SiteId::new(id)))),
        }
    }

    /// In words, (Chinese, English).
    pub(crate) fn describe(&self) -> (String, String) {
        match self {
            Target::Sensor { id } => (format!("测点 {id}"), format!("sensor {id}")),
            Target::Site { id } => (format!("站点 {id}"), format!("site {id}")),
            Target::Rule { id, site: None } => (format!("规则 {id}"), format!("rule {id}")),
            Target::Rule { id, site: Some(s) } => (format!("规则 {id}（站点 {s}）"), format!("rule {id} at site {s}")),
        }
    }
}

impl RuleSet {
    /// The rule ids a window on a rule can name with these rules: every hazard rule, each
    /// data-quality test's id (`dq.gross_range`, `dq.spike`, `dq.flat_line`,
    /// `dq.rate_of_change`, `dq.timing`) where a data-quality table configures that test, and
    /// `dq.stale` where one has a stale check (the engine refuses others as `unknown_target`).
    /// For the console's out-of-service form.
    pub fn window_rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.rules.iter().map(|r| r.spec.id.clone()).collect();
        for (test, id) in crate::quality::QcTest::ALL.into_iter().zip(crate::engine::DQ_RULE_IDS) {
            let configured = |q: &crate::quality::QualitySpec| match test {
                crate::quality::QcTest::GrossRange => q.gross_range.is_some(),
                crate::quality::QcTest::Spike => q.spike.is_some(),
                crate::quality::QcTest::FlatLine => q.flat_line.is_some(),
                crate::quality::QcTest::RateOfChange => q.rate_of_change.is_some(),
                crate::quality::QcTest::Timing => q.timing.is_some(),
            };
            if self.quality.iter().any(|(q, _)| configured(q)) {
                ids.push(id.to_string());
            }
        }
        if self.quality.iter().any(|(q, _)| q.stale.is_some()) {
            ids.push(crate::engine::STALE_RULE_ID.to_string());
        }
        ids
    }
}

/// One open window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceWindow {
    /// What it covers.
    pub target: Target,
    /// Who opened it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Processing time it opened.
    pub since: Timestamp,
    /// Processing time it was planned to end.
    pub until: Timestamp,
    /// Its alert (`oos.window`).
    pub alert: Option<String>,
    /// Whether its end passed while open (its alert is yellow).
    #[serde(default)]
    pub overrun: bool,
}

/// Open windows and the notes of covered sensors: the engine's out-of-service state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutOfService {
    /// Open windows, in target order.
    #[serde(default)]
    pub(crate) windows: Vec<ServiceWindow>,
    /// Per covered sensor with a withheld level: its note alert's id.
    #[serde(default)]
    pub(crate) notes: BTreeMap<SensorId, String>,
}

impl OutOfService {
    /// Whether nothing is out of service (the per-reading fast path).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether there is nothing to save (no window, no note).
    pub fn is_unused(&self) -> bool {
        self.windows.is_empty() && self.notes.is_empty()
    }

    /// Whether an open window covers the binding of `rule` on `sensor` at `site`.
    #[inline]
    pub(crate) fn covers(&self, sensor: &SensorId, site: &SiteId, rule: &str) -> bool {
        !self.windows.is_empty() && self.windows.iter().any(|w| w.target.covers(sensor, site, rule))
    }

    /// The open windows.
    pub fn windows(&self) -> &[ServiceWindow] {
        &self.windows
    }

    /// The index of the open window on `target`.
    pub(crate) fn find(&self, target: &Target) -> Option<usize> {
        self.windows.iter().position(|w| &w.target == target)
    }

    /// Indices of open windows whose end passed at `now` and that are not yet marked overrun.
    pub(crate) fn overrun_at(&self, now: Timestamp) -> Vec<usize> {
        (0..self.windows.len()).filter(|i| !self.windows[*i].overrun && self.windows[*i].until <= now).collect()
    }
}

/// The window's planned end for a command at `now`, or why it has none.
pub(crate) fn window_end(cmd: &ServiceCommand, now: Timestamp) -> Result<Timestamp, CommandError> {
    let until = match (cmd.minutes, cmd.until.as_deref()) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(CommandError::BadWindow("give either minutes or until".into()))
        }
        (Some(m), None) => {
            if m == 0 || m > MAX_WINDOW_MINUTES {
                return Err(CommandError::BadWindow(format!("minutes must be 1 to {MAX_WINDOW_MINUTES} (got {m})")));
            }
            now.plus_millis(i64::from(m) * 60_000)
        }
        (None, Some(t)) => {
            let t = Timestamp::parse_rfc3339(t).map_err(|e| CommandError::BadWindow(format!("until: {e}")))?;
            if t <= now {
                return Err(CommandError::BadWindow(format!("until: {} is not in the future", t.to_rfc3339())));
            }
            if t.millis() - now.millis() > i64::from(MAX_WINDOW_MINUTES) * 60_000 {
                return Err(CommandError::BadWindow(format!(
                    "until: a window lasts at most {MAX_WINDOW_MINUTES} minutes"
                )));
            }
            t
        }
    };
    Ok(until)
}
