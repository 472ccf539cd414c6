//! Composite site rules: one alert for a site, decided by the levels of its per-sensor alerts.
//!
//! A single GNSS point turning blue is a reading worth watching; four of them on one tailings
//! dam is a dam worth a yellow warning. GB 50863-style roll-up (domain notes §4) counts points:
//! 4 blue ⇒ yellow, 3 yellow ⇒ orange, 2 orange ⇒ red. Other sites combine families instead —
//! a reservoir at orange *and* heavy rain upstream. A `[[composites]]` table states such
//! conditions per level; the engine binds it to each site, collects the site's *members* (the
//! per-sensor rule bindings selected by [`MemberFilter`]), asks [`CompositeLevels::highest`]
//! which level holds, and runs that through the same [`ThresholdBands`](crate::ThresholdBands)
//! state machine as a sensor, so on- and off-delays work exactly as they do for band rules.
//!
//! ```toml
//! [[composites]]
//! id = "tailings-dam-rollup"
//! description = "GB 50863-style roll-up of dam-face GNSS points"
//! members = { kinds = ["gnss_displacement"], tags = ["tailings"] }
//! levels.yellow = "count(>= blue) >= 4"
//! levels.orange = "count(>= yellow) >= 3"
//! levels.red = "count(>= orange) >= 2"
//! off_delay = { seconds = 1800 }
//!
//! [[composites]]
//! id = "reservoir-flood-and-rain"
//! sites = ["danjiangkou"]
//! levels.orange = "water-level-bands >= yellow and rainfall-accumulation >= yellow"
//! levels.red = "water-level-bands >= orange and (rainfall-accumulation >= orange or count(>= red) >= 2)"
//! ```
//!
//! # The condition language
//!
//! A condition is true or false for the members' *current* levels (a member without an active
//! alert has no level and satisfies no `>=` test):
//!
//! | form | true when |
//! |---|---|
//! | `count(>= blue) >= 4` | at least 4 distinct sensors among the members are at blue or above |
//! | `count(gnss-displacement >= yellow) >= 3` | the same, counting only members of that rule |
//! | `count(… ) > 2` | more than 2, i.e. at least 3 |
//! | `any(>= red)`, `any(gas >= red)` | at least one (same as `count(…) >= 1`) |
//! | `water-level-bands >= orange` | at least one member of that rule is at orange or above |
//! | `A and B`, `A && B` | both hold |
//! | `A or B`, `A \|\| B` | either holds |
//! | `( … )` | grouping; `and` binds tighter than `or` |
//!
//! Counts are of distinct *sensors* (monitoring points): a point watched by two rules at the
//! same site counts once. Levels compare with `>=` only and counts with `>=` or `>` only; there
//! is no `not`, `<` or `==`. That is deliberate: every condition is then monotone — a member
//! getting worse can never make a composite condition turn false — so a site alert cannot clear
//! because the situation deteriorated.
//!
//! Keywords (`and`, `or`, `count`, `any`) and level names are case-insensitive; rule ids are
//! case-sensitive words of letters, digits, `-`, `_` and `.`, and a rule whose id is a keyword
//! cannot be named in a condition. Errors say what was expected at which character (counting
//! from 1):
//!
//! ```
//! use riskwatch_core::Level;
//! use riskwatch_rules::composite::{CompositeExpr, Member};
//!
//! let red = CompositeExpr::parse("count(>= orange) >= 2").unwrap();
//! let points = [
//!     Member { rule: "gnss", sensor: "p1", level: Some(Level::Orange) },
//!     Member { rule: "gnss", sensor: "p2", level: Some(Level::Red) },
//!     Member { rule: "gnss", sensor: "p3", level: None },
//! ];
//! assert!(red.eval(&points));
//! assert_eq!(red.strength(&points), 2.0);
//!
//! let err = CompositeExpr::parse("count(>= green) >= 2").unwrap_err();
//! assert!(err.contains("character 10"), "{err}");
//! ```

pub use crate::composite_coincidence::CoincidenceSpec;
use crate::{BandSpec, Delay, Direction, MessageTemplate};
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{AlertChange, Level, Sensor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Placeholders a composite message template may use.
pub const COMPOSITE_PLACEHOLDERS: &[&str] = &[
    "site",
    "site_name",
    "rule",
    "description",
    "level",
    "level_zh",
    "grade",
    "change",
    "change_zh",
    "title",
    "title_zh",
    "condition",
    "strength",
];

/// Parentheses nested deeper than this are refused, so no configuration can exhaust the stack.
const MAX_NESTING: usize = 32;

/// One `[[composites]]` table of the rules file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeSpec {
    /// Unique id (part of every alert id the composite raises).
    pub id: String,
    /// What the composite is for, for people.
    #[serde(default)]
    pub description: String,
    /// Only these sites (empty = every site that has members).
    #[serde(default)]
    pub sites: Vec<String>,
    /// `site` (default): one alert per site, over that site's members. `network`: one alert
    /// over the members of all the selected sites together — multi-station coincidence of
    /// seismic terminals, a river basin — whose subject and site are the composite's id.
    #[serde(default)]
    pub scope: Scope,
    /// Which per-sensor rule bindings of a site count as members.
    #[serde(default)]
    pub members: MemberFilter,
    /// The condition for each level (leave out for a `coincidence` composite).
    #[serde(default)]
    pub levels: CompositeLevels,
    /// Weighted coincidence of triggered members instead of `levels` (see
    /// [`CoincidenceSpec`]): the seismic network trigger.
    #[serde(default)]
    pub coincidence: Option<CoincidenceSpec>,
    /// Confirmation before a level is entered.
    #[serde(default)]
    pub on_delay: Delay,
    /// Confirmation before a level is left downwards (de-escalation or clear).
    #[serde(default)]
    pub off_delay: Delay,
    /// Message templates, with the placeholders in [`COMPOSITE_PLACEHOLDERS`]. A half left out
    /// gets the site-level default, not the per-sensor one.
    #[serde(default = "default_message", deserialize_with = "composite_message")]
    pub message: MessageTemplate,
    /// Flood suppression: while the site alert holds a level, its members' alerts at or
    /// below that level are grouped under it (see [`crate::grouping`]).
    #[serde(default)]
    pub group_members: bool,
}

/// How a composite groups its members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One composite alert per site.
    #[default]
    Site,
    /// One composite alert over all selected sites.
    Network,
}

/// Which per-sensor rule bindings are members of a composite. Every non-empty list must
/// match: the rule is one of `rules`, the sensor's kind one of `kinds`, and the sensor carries
/// all of `tags`. All empty = every binding at the site.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFilter {
    /// Only bindings of these rule ids.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only sensors of these kinds (wire names).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only sensors carrying all of these registry tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl MemberFilter {
    /// Whether the binding of rule `rule_id` to `sensor` is a member.
    pub fn matches(&self, rule_id: &str, sensor: &Sensor) -> bool {
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule_id))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == sensor.kind.as_str()))
            && self.tags.iter().all(|t| sensor.tags.contains(t))
    }
}

/// The condition per level; absent levels are never raised.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeLevels {
    /// Blue (IV) condition.
    pub blue: Option<CompositeExpr>,
    /// Yellow (III) condition.
    pub yellow: Option<CompositeExpr>,
    /// Orange (II) condition.
    pub orange: Option<CompositeExpr>,
    /// Red (I) condition.
    pub red: Option<CompositeExpr>,
}

impl CompositeLevels {
    /// The conditions, blue..red.
    pub fn as_array(&self) -> [Option<&CompositeExpr>; 4] {
        [self.blue.as_ref(), self.yellow.as_ref(), self.orange.as_ref(), self.red.as_ref()]
    }

    /// The condition of one level.
    pub fn get(&self, level: Level) -> Option<&CompositeExpr> {
        self.as_array()[level.index()]
    }

    /// The highest level whose condition holds. Conditions need not be nested (three yellow
    /// points make orange even where four blue ones, needed for yellow, are missing).
    pub fn highest(&self, members: &[Member<'_>]) -> Option<Level> {
        Level::ALL.into_iter().rev().find(|l| self.get(*l).is_some_and(|e| e.eval(members)))
    }

    /// The number to feed [`ThresholdBands`](crate::ThresholdBands) with the thresholds of
    /// [`CompositeSpec::band_spec`]: 0 when no level holds, 1 for blue … 4 for red.
    pub fn band_value(&self, members: &[Member<'_>]) -> f64 {
        self.highest(members).map_or(0.0, |l| (l.index() + 1) as f64)
    }
}

/// One member as seen at evaluation time: a per-sensor rule binding and its current level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Member<'a> {
    /// The per-sensor rule's id.
    pub rule: &'a str,
    /// The sensor's id.
    pub sensor: &'a str,
    /// The binding's current level (`None` = no active alert).
    pub level: Option<Level>,
}

/// A boolean condition over member levels (see the module docs for the syntax).
#[derive(Clone, Debug, PartialEq)]
pub enum CompositeExpr {
    /// At least `min` distinct sensors among the members — of `rule` only, when given — are at
    /// `at_least` or above. `rule >= level` and `any(…)` are this with `min` = 1.
    Count {
        /// Only members of this rule id.
        rule: Option<String>,
        /// The level a member must have reached.
        at_least: Level,
        /// How many sensors must have reached it.
        min: u32,
    },
    /// Every part holds.
    And(Vec<CompositeExpr>),
    /// At least one part holds.
    Or(Vec<CompositeExpr>),
}

impl CompositeExpr {
    /// Parses a condition; an error says what was expected at which character (from 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser { toks: lex(text)?, at: 0, depth: 0 };
        let e = p.or()?;
        let t = p.peek();
        match t.tok {
            Tok::End => Ok(e),
            Tok::RParen => Err(format!("unexpected `)` at character {}: no `(` is open", t.pos)),
            _ => Err(p.expected("`and`, `or` or the end of the condition")),
        }
    }

    /// Whether the condition holds for these members.
    pub fn eval(&self, members: &[Member<'_>]) -> bool {
        match self {
            CompositeExpr::Count { rule, at_least, min } => count(rule.as_deref(), *at_least, members) >= *min as usize,
            CompositeExpr::And(xs) => xs.iter().all(|x| x.eval(members)),
            CompositeExpr::Or(xs) => xs.iter().any(|x| x.eval(members)),
        }
    }

    /// The rule ids the condition names, each once, in order of appearance.
    pub fn rules_referenced(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit(&mut |rule, _, _| {
            if let Some(r) = rule {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        });
        out
    }

    /// How strongly the condition holds, for messages: 0 when it does not hold, otherwise the
    /// largest number of sensors counted by a term that holds (for `count(>= blue) >= 4` with
    /// six points at blue or above, 6).
    pub fn strength(&self, members: &[Member<'_>]) -> f64 {
        if !self.eval(members) {
            return 0.0;
        }
        match self {
            CompositeExpr::Count { rule, at_least, .. } => count(rule.as_deref(), *at_least, members) as f64,
            CompositeExpr::And(xs) | CompositeExpr::Or(xs) => {
                xs.iter().map(|x| x.strength(members)).fold(0.0, f64::max)
            }
        }
    }

    /// Calls `f(rule, at_least, min)` for every count term.
    fn visit<'s>(&'s self, f: &mut impl FnMut(Option<&'s str>, Level, u32)) {
        match self {
            CompositeExpr::Count { rule, at_least, min } => f(rule.as_deref(), *at_least, *min),
            CompositeExpr::And(xs) | CompositeExpr::Or(xs) => xs.iter().for_each(|x| x.visit(f)),
        }
    }
}

/// Distinct sensors among `members` (of `rule`, if given) at `at_least` or above.
fn count(rule: Option<&str>, at_least: Level, members: &[Member<'_>]) -> usize {
    let hit = |m: &Member<'_>| rule.is_none_or(|r| r == m.rule) && m.level.is_some_and(|l| l >= at_least);
    if members.len() <= 32 {
        // A site's handful of members, counted without allocating (this runs every second for
        // composites with delays): a hit counts unless an earlier hit is the same sensor.
        return members
            .iter()
            .enumerate()
            .filter(|(i, m)| hit(m) && !members[..*i].iter().any(|e| hit(e) && e.sensor == m.sensor))
            .count();
    }
    let mut hits: Vec<&str> = members.iter().filter(|m| hit(m)).map(|m| m.sensor).collect();
    hits.sort_unstable();
    hits.dedup();
    hits.len()
}

/// Writes the condition back in the language (canonical spelling, minimal parentheses).
impl fmt::Display for CompositeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompositeExpr::Count { rule: Some(r), at_least, min: 1 } => write!(f, "{r} >= {at_least}"),
            CompositeExpr::Count { rule: None, at_least, min: 1 } => write!(f, "any(>= {at_least})"),
            CompositeExpr::Count { rule, at_least, min } => {
                write!(
                    f,
                    "count({}>= {at_least}) >= {min}",
                    rule.as_deref().map(|r| format!("{r} ")).unwrap_or_default()
                )
            }
            CompositeExpr::And(xs) => join(f, xs, " and ", |x| matches!(x, CompositeExpr::Or(_))),
            CompositeExpr::Or(xs) => join(f, xs, " or ", |_| false),
        }
    }
}

fn join(
    f: &mut fmt::Formatter<'_>,
    xs: &[CompositeExpr],
    sep: &str,
    paren: impl Fn(&CompositeExpr) -> bool,
) -> fmt::Result {
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if paren(x) {
            write!(f, "({x})")?;
        } else {
            write!(f, "{x}")?;
        }
    }
    Ok(())
}

impl std::str::FromStr for CompositeExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CompositeExpr::parse(s)
    }
}

impl<'de> Deserialize<'de> for CompositeExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CompositeExpr::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

/// What a composite alert message reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompositeFacts<'a> {
    /// The site the alert is about.
    pub site: &'a str,
    /// Its names, (Chinese, English), each falling back to the other and then the id.
    pub site_name: (&'a str, &'a str),
    /// Level after the change; for `cleared`, the level that cleared.
    pub level: Level,
    /// What changed.
    pub change: AlertChange,
    /// [`CompositeExpr::strength`] of that level's condition.
    pub strength: f64,
}

impl CompositeSpec {
    /// Static checks, each naming its field relative to this composite (`levels.red: …`); the
    /// caller prefixes the composite's position. Rule ids are checked against the rule set by
    /// the caller, with [`CompositeExpr::rules_referenced`].
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !is_valid_id(&self.id) {
            p.push(format!("id: {:?} must be 1-64 letters, digits, - _ .", self.id));
        }
        for (j, s) in self.sites.iter().enumerate() {
            if !is_valid_id(s) {
                p.push(format!("sites[{j}]: {s:?} is not a valid site id"));
            }
        }
        match &self.coincidence {
            Some(c) => {
                if self.levels.as_array().iter().any(Option::is_some) {
                    p.push(
                        "levels: a coincidence composite takes its level from coincidence.level; leave levels out"
                            .into(),
                    );
                }
                p.extend(c.problems());
            }
            None if self.levels.as_array().iter().all(Option::is_none) => {
                p.push("levels: give at least one of blue, yellow, orange, red (or a coincidence table)".into());
            }
            None => {}
        }
        for level in Level::ALL {
            let Some(e) = self.levels.get(level) else { continue };
            e.visit(&mut |rule, at_least, min| {
                if min == 0 {
                    let term = CompositeExpr::Count { rule: rule.map(str::to_string), at_least, min };
                    p.push(format!("levels.{level}: `{term}` always holds; the count must be at least 1"));
                }
            });
            if !self.members.rules.is_empty() {
                for r in e.rules_referenced() {
                    if !self.members.rules.iter().any(|m| m == r) {
                        p.push(format!(
                            "levels.{level}: rule {r:?} is not in members.rules, so its terms can never hold"
                        ));
                    }
                }
            }
        }
        for t in [&self.message.zh, &self.message.en] {
            for name in placeholders(t).filter(|n| !COMPOSITE_PLACEHOLDERS.contains(n)) {
                p.push(format!(
                    "message: unknown placeholder {{{name}}} (known: {})",
                    COMPOSITE_PLACEHOLDERS.join(", ")
                ));
            }
        }
        p
    }

    /// The conditions this composite has, blue..red.
    pub fn levels_exprs(&self) -> impl Iterator<Item = &CompositeExpr> {
        self.levels.as_array().into_iter().flatten()
    }

    /// Band parameters for [`ThresholdBands`](crate::ThresholdBands), fed with
    /// [`CompositeLevels::band_value`]: level *n* (blue = 1) starts at *n*, only for levels that
    /// have a condition; no deadband (the value is already a level); this composite's delays.
    pub fn band_spec(&self) -> BandSpec {
        let mut thresholds = [None; 4];
        for (i, e) in self.levels.as_array().into_iter().enumerate() {
            thresholds[i] = e.map(|_| (i + 1) as f64);
        }
        if let Some(c) = &self.coincidence {
            thresholds[c.level.index()] = Some((c.level.index() + 1) as f64);
        }
        BandSpec {
            direction: Direction::Rising,
            thresholds,
            deadband: 0.0,
            on_delay: self.on_delay,
            off_delay: self.off_delay,
        }
    }

    /// The highest level that holds for these members (the coincidence level, for a
    /// coincidence composite).
    pub fn highest(&self, members: &[Member<'_>]) -> Option<Level> {
        match &self.coincidence {
            Some(c) => c.highest(members),
            None => self.levels.highest(members),
        }
    }

    /// The number to feed [`ThresholdBands`](crate::ThresholdBands) with [`Self::band_spec`]:
    /// 0 when no level holds, 1 for blue … 4 for red.
    pub fn band_value(&self, members: &[Member<'_>]) -> f64 {
        self.highest(members).map_or(0.0, |l| (l.index() + 1) as f64)
    }

    /// How strongly `level`'s condition holds, for messages and the alert's value: the
    /// coincidence sum, or [`CompositeExpr::strength`].
    pub fn strength(&self, level: Level, members: &[Member<'_>]) -> f64 {
        match &self.coincidence {
            Some(c) => c.sum_of(members),
            None => self.levels.get(level).map_or(0.0, |e| e.strength(members)),
        }
    }

    /// The Chinese and English messages for a change of this composite's alert.
    pub fn render_message(&self, facts: &CompositeFacts<'_>) -> (String, String) {
        let lookup = |zh: bool| {
            move |name: &str| -> Option<String> {
                Some(match name {
                    "site" => facts.site.to_string(),
                    "site_name" => (if zh { facts.site_name.0 } else { facts.site_name.1 }).to_string(),
                    "rule" => self.id.clone(),
                    // What a person reads: the description, or the rule's id when it has none.
                    "description" if self.description.trim().is_empty() => self.id.clone(),
                    "description" => self.description.clone(),
                    "title" | "title_zh" => {
                        let mut out = String::new();
                        crate::message::title(&mut out, facts.level, facts.change, name == "title_zh");
                        out
                    }
                    "level" => facts.level.as_str().to_string(),
                    "level_zh" => facts.level.zh().to_string(),
                    "grade" => facts.level.grade().to_string(),
                    "change" => facts.change.as_str().replace('_', "-"),
                    "change_zh" => facts.change.zh().to_string(),
                    "condition" => match &self.coincidence {
                        Some(c) => c.describe(),
                        None => self.levels.get(facts.level).map(|e| e.to_string()).unwrap_or_default(),
                    },
                    "strength" if facts.strength.fract() == 0.0 => format!("{:.0}", facts.strength),
                    "strength" => format!("{:.2}", facts.strength),
                    _ => return None,
                })
            }
        };
        (
            MessageTemplate::render(&self.message.zh, lookup(true)),
            MessageTemplate::render(&self.message.en, lookup(false)),
        )
    }
}

fn default_message() -> MessageTemplate {
    MessageTemplate {
        zh: "【{title_zh}】{site_name} 综合研判：{description}（{condition}）".into(),
        en: "{title} at {site_name}: {description} ({condition})".into(),
    }
}

/// Like `MessageTemplate`'s own deserialisation, but a missing half gets the site-level default.
fn composite_message<'de, D: Deserializer<'de>>(d: D) -> Result<MessageTemplate, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Partial {
        zh: Option<String>,
        en: Option<String>,
    }
    let p = Partial::deserialize(d)?;
    let def = default_message();
    Ok(MessageTemplate { zh: p.zh.unwrap_or(def.zh), en: p.en.unwrap_or(def.en) })
}

fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

// ---- lexer and recursive-descent parser ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    /// Any comparison operator, supported or not, so that errors can name it.
    Cmp(&'static str),
    And,
    Or,
    Word(String),
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// 1-based character position of the token's first character.
    pos: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('>', Some('=')) => (Tok::Cmp(">="), 2),
            ('>', _) => (Tok::Cmp(">"), 1),
            ('<', Some('=')) => (Tok::Cmp("<="), 2),
            ('<', _) => (Tok::Cmp("<"), 1),
            ('=', Some('=')) => (Tok::Cmp("=="), 2),
            ('=', _) => (Tok::Cmp("="), 1),
            ('!', Some('=')) => (Tok::Cmp("!="), 2),
            ('&', Some('&')) => (Tok::And, 2),
            ('|', Some('|')) => (Tok::Or, 2),
            ('&', _) => return Err(format!("expected `&&` at character {pos}, found a single `&`")),
            ('|', _) => return Err(format!("expected `||` at character {pos}, found a single `|`")),
            (c, _) if is_word_char(c) => {
                let len = chars[i..].iter().take_while(|c| is_word_char(**c)).count();
                let w: String = chars[i..i + len].iter().collect();
                let tok = if w.eq_ignore_ascii_case("and") {
                    Tok::And
                } else if w.eq_ignore_ascii_case("or") {
                    Tok::Or
                } else {
                    Tok::Word(w)
                };
                (tok, len)
            }
            (c, _) => return Err(format!("unexpected character `{c}` at character {pos}")),
        };
        toks.push(Token { tok, pos });
        i += len;
    }
    toks.push(Token { tok: Tok::End, pos: chars.len() + 1 });
    Ok(toks)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    /// "expected X at character N, found Y" about the next token.
    fn expected(&self, what: &str) -> String {
        let t = self.peek();
        let found = match &t.tok {
            Tok::LParen => "`(`".to_string(),
            Tok::RParen => "`)`".to_string(),
            Tok::Cmp(c) => format!("`{c}`"),
            Tok::And => "`and`".to_string(),
            Tok::Or => "`or`".to_string(),
            Tok::Word(w) => format!("`{w}`"),
            Tok::End => "the end of the condition".to_string(),
        };
        format!("expected {what} at character {}, found {found}", t.pos)
    }

    fn or(&mut self) -> Result<CompositeExpr, String> {
        let first = self.and()?;
        let mut rest = Vec::new();
        while self.peek().tok == Tok::Or {
            self.bump();
            rest.push(self.and()?);
        }
        Ok(if rest.is_empty() { first } else { CompositeExpr::Or([vec![first], rest].concat()) })
    }

    fn and(&mut self) -> Result<CompositeExpr, String> {
        let first = self.primary()?;
        let mut rest = Vec::new();
        while self.peek().tok == Tok::And {
            self.bump();
            rest.push(self.primary()?);
        }
        Ok(if rest.is_empty() { first } else { CompositeExpr::And([vec![first], rest].concat()) })
    }

    fn primary(&mut self) -> Result<CompositeExpr, String> {
        const WHAT: &str = "a condition (`count(…) >= n`, `any(…)`, `<rule> >= <level>` or `(`)";
        let open = self.peek().clone();
        match &open.tok {
            Tok::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(format!("parentheses nested deeper than {MAX_NESTING} at character {}", open.pos));
                }
                self.bump();
                self.depth += 1;
                let e = self.or()?;
                self.depth -= 1;
                if self.peek().tok != Tok::RParen {
                    return Err(self.expected(&format!("`)` (to close the `(` at character {})", open.pos)));
                }
                self.bump();
                Ok(e)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("count") || w.eq_ignore_ascii_case("any") => {
                let is_count = w.eq_ignore_ascii_case("count");
                self.bump();
                let (rule, at_least) = self.filter(if is_count { "count" } else { "any" })?;
                let min = if is_count { self.count_bound()? } else { 1 };
                Ok(CompositeExpr::Count { rule, at_least, min })
            }
            Tok::Word(_) => {
                let rule = self.rule_id()?;
                let at_least = self.level()?;
                Ok(CompositeExpr::Count { rule: Some(rule), at_least, min: 1 })
            }
            _ => Err(self.expected(WHAT)),
        }
    }

    /// `( [rule] >= level )` after `count` or `any`.
    fn filter(&mut self, keyword: &str) -> Result<(Option<String>, Level), String> {
        if self.peek().tok != Tok::LParen {
            return Err(self.expected(&format!("`(` after `{keyword}`")));
        }
        self.bump();
        let rule = match self.peek().tok {
            Tok::Word(_) => Some(self.rule_id()?),
            Tok::Cmp(_) => None,
            _ => return Err(self.expected("a rule id or `>=`")),
        };
        let level = self.level()?;
        if self.peek().tok != Tok::RParen {
            return Err(self.expected(&format!("`)` to close `{keyword}(`")));
        }
        self.bump();
        Ok((rule, level))
    }

    fn rule_id(&mut self) -> Result<String, String> {
        match self.peek().tok.clone() {
            Tok::Word(w) if is_valid_id(&w) => {
                self.bump();
                Ok(w)
            }
            Tok::Word(w) => Err(format!("rule id `{w}` at character {} is longer than 64 characters", self.peek().pos)),
            _ => Err(self.expected("a rule id")),
        }
    }

    /// `>= level`.
    fn level(&mut self) -> Result<Level, String> {
        if self.peek().tok != Tok::Cmp(">=") {
            let hint = if matches!(self.peek().tok, Tok::Cmp(_)) { " (levels compare with `>=` only)" } else { "" };
            return Err(self.expected("`>=`") + hint);
        }
        self.bump();
        let level = match &self.peek().tok {
            Tok::Word(w) => w.to_ascii_lowercase().parse::<Level>().ok(),
            _ => None,
        };
        let Some(level) = level else {
            return Err(self.expected("a level (blue, yellow, orange or red)"));
        };
        self.bump();
        Ok(level)
    }

    /// `>= k` or `> k` after `count(…)`, as the least number that satisfies it.
    fn count_bound(&mut self) -> Result<u32, String> {
        let strict = match self.peek().tok {
            Tok::Cmp(">=") => false,
            Tok::Cmp(">") => true,
            Tok::Cmp(_) => {
                return Err(self.expected("`>=` or `>`") + " (a count may only be bounded from below, so that more members getting worse never ends a site alert)")
            }
            _ => return Err(self.expected("`>= <number>` after `count(…)`")),
        };
        self.bump();
        let k = match &self.peek().tok {
            Tok::Word(w) => w.parse::<u32>().ok(),
            _ => None,
        };
        let Some(k) = k else {
            return Err(self.expected("a whole number of members"));
        };
        let pos = self.bump().pos;
        if strict {
            k.checked_add(1).ok_or_else(|| format!("count bound at character {pos} is too large"))
        } else {
            Ok(k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BandState, ThresholdBands};
    use riskwatch_core::{SensorId, SensorKind, SiteId, Timestamp};
    use std::sync::Arc;
    use Level::*;

    fn expr(text: &str) -> CompositeExpr {
        CompositeExpr::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The tailings-dam roll-up of domain notes §4.
    fn rollup() -> CompositeLevels {
        CompositeLevels {
            blue: None,
            yellow: Some(expr("count(>= blue) >= 4")),
            orange: Some(expr("count(>= yellow) >= 3")),
            red: Some(expr("count(>= orange) >= 2")),
        }
    }

    /// GNSS points p1, p2, … of one rule with these levels.
    fn points(levels: &[Option<Level>]) -> Vec<(String, Option<Level>)> {
        levels.iter().enumerate().map(|(i, l)| (format!("p{}", i + 1), *l)).collect()
    }

    fn members<'a>(rule: &'a str, pts: &'a [(String, Option<Level>)]) -> Vec<Member<'a>> {
        pts.iter().map(|(s, l)| Member { rule, sensor: s, level: *l }).collect()
    }

    #[test]
    fn tailings_dam_rollup_counts_points_per_level() {
        let b = Some(Blue);
        let y = Some(Yellow);
        let o = Some(Orange);
        let r = Some(Red);
        let table: &[(&[Option<Level>], Option<Level>)] = &[
            (&[], None),
            (&[None, None, None, None, None], None),
            (&[b, b, b], None),
            (&[b, b, b, None], None),
            (&[b, b, b, b], Some(Yellow)),
            (&[y, b, b, b, None], Some(Yellow)),
            (&[o, b, b, b], Some(Yellow)),
            (&[y, y, b], None),
            (&[y, y, y], Some(Orange)),
            (&[y, y, y, b, b, b], Some(Orange)),
            (&[o, y, y, None], Some(Orange)),
            (&[r], None),
            (&[o, o], Some(Red)),
            (&[r, o, None, None], Some(Red)),
            (&[r, y, y, b, b], Some(Orange)),
        ];
        let levels = rollup();
        for (row, want) in table {
            let pts = points(row);
            assert_eq!(levels.highest(&members("gnss-displacement", &pts)), *want, "points {row:?}");
        }
    }

    #[test]
    fn rollup_never_drops_when_a_point_gets_worse() {
        let levels = rollup();
        let ladder = [None, Some(Blue), Some(Yellow), Some(Orange), Some(Red)];
        for n in 0..ladder.len().pow(4) {
            let row: Vec<Option<Level>> = (0..4).map(|d| ladder[n / ladder.len().pow(d) % ladder.len()]).collect();
            let before = levels.highest(&members("g", &points(&row)));
            for i in 0..4 {
                let Some(pos) = ladder.iter().position(|l| *l == row[i]).filter(|p| p + 1 < ladder.len()) else {
                    continue;
                };
                let mut worse = row.clone();
                worse[i] = ladder[pos + 1];
                assert!(levels.highest(&members("g", &points(&worse))) >= before, "{row:?} → {worse:?}");
            }
        }
    }

    #[test]
    fn a_point_watched_by_two_rules_counts_once() {
        let e = expr("count(>= blue) >= 2");
        let one_point = [
            Member { rule: "gnss-horizontal", sensor: "p1", level: Some(Yellow) },
            Member { rule: "gnss-settlement", sensor: "p1", level: Some(Blue) },
        ];
        assert!(!e.eval(&one_point));
        let two_points = [one_point[0], Member { rule: "gnss-horizontal", sensor: "p2", level: Some(Blue) }];
        assert!(e.eval(&two_points));
    }

    #[test]
    fn count_of_one_rule_ignores_other_rules() {
        let e = expr("count(gnss-displacement >= yellow) >= 3");
        let mut m = vec![
            Member { rule: "gnss-displacement", sensor: "p1", level: Some(Yellow) },
            Member { rule: "gnss-displacement", sensor: "p2", level: Some(Red) },
            Member { rule: "piezometer", sensor: "z1", level: Some(Red) },
        ];
        assert!(!e.eval(&m));
        m.push(Member { rule: "gnss-displacement", sensor: "p3", level: Some(Orange) });
        assert!(e.eval(&m));
        assert_eq!(e.strength(&m), 3.0);
    }

    fn site(water: Option<Level>, rain: Option<Level>) -> [Member<'static>; 3] {
        [
            Member { rule: "water-level-bands", sensor: "dam-wl", level: water },
            Member { rule: "rainfall-accumulation", sensor: "rg-1", level: rain },
            Member { rule: "gnss-displacement", sensor: "p1", level: Some(Red) },
        ]
    }

    #[test]
    fn and_across_kinds_needs_both() {
        let e = expr("water-level-bands >= orange and rainfall-accumulation >= yellow");
        let table = [
            (None, None, false),
            (Some(Red), None, false),
            (Some(Orange), Some(Blue), false),
            (Some(Yellow), Some(Red), false),
            (Some(Orange), Some(Yellow), true),
            (Some(Red), Some(Orange), true),
        ];
        for (water, rain, want) in table {
            assert_eq!(e.eval(&site(water, rain)), want, "water {water:?}, rain {rain:?}");
        }
        assert_eq!(e.rules_referenced(), vec!["water-level-bands", "rainfall-accumulation"]);
    }

    #[test]
    fn or_needs_either() {
        let e = expr("water-level-bands >= red OR rainfall-accumulation >= orange");
        assert!(!e.eval(&site(Some(Orange), Some(Yellow))));
        assert!(e.eval(&site(Some(Red), None)));
        assert!(e.eval(&site(None, Some(Orange))));
        assert!(expr("any(>= red)").eval(&site(None, None)), "the GNSS point is red");
        assert!(!expr("any(water-level-bands >= blue)").eval(&site(None, Some(Red))));
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_regroup() {
        let a = |l| CompositeExpr::Count { rule: Some("a".into()), at_least: l, min: 1 };
        let b = |l| CompositeExpr::Count { rule: Some("b".into()), at_least: l, min: 1 };
        let c = |l| CompositeExpr::Count { rule: Some("c".into()), at_least: l, min: 1 };
        let flat = expr("a >= red or b >= red and c >= red");
        assert_eq!(flat, CompositeExpr::Or(vec![a(Red), CompositeExpr::And(vec![b(Red), c(Red)])]));
        let grouped = expr("(a >= red or b >= red) and c >= red");
        assert_eq!(grouped, CompositeExpr::And(vec![CompositeExpr::Or(vec![a(Red), b(Red)]), c(Red)]));
        let only_a = [Member { rule: "a", sensor: "s1", level: Some(Red) }];
        assert!(flat.eval(&only_a));
        assert!(!grouped.eval(&only_a));
        // Spellings: keyword case, symbols, spacing, redundant parentheses.
        assert_eq!(expr("A >= RED || b >= Red && c >= red").to_string(), "A >= red or b >= red and c >= red");
        assert_eq!(expr("((a>=red)) Or (b >= red AND c >= red)"), flat);
        assert_eq!(expr("COUNT(>=blue)>=4"), expr("count( >= blue ) >= 4"));
        assert_eq!(expr("count(>= blue) > 3"), expr("count(>= blue) >= 4"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "count(>= blue) >= 4",
            "count(gnss.v2_horizontal >= yellow) >= 3",
            "any(>= red)",
            "water-level-bands >= orange and (rainfall-accumulation >= orange or count(>= red) >= 2)",
            "(a >= red or b >= red) and (c >= blue or d >= blue)",
        ] {
            let e = expr(text);
            assert_eq!(expr(&e.to_string()), e, "{text} → {e}");
        }
        assert_eq!(expr("any(x >= red)").to_string(), "x >= red");
    }

    #[test]
    fn strength_is_the_largest_count_of_a_term_that_holds() {
        let e = expr("count(>= blue) >= 4 or count(>= orange) >= 1");
        let pts = points(&[Some(Blue), Some(Blue), Some(Yellow), Some(Red), Some(Blue), None]);
        let m = members("g", &pts);
        assert_eq!(e.strength(&m), 5.0);
        assert_eq!(expr("count(>= blue) >= 6").strength(&m), 0.0, "a condition that fails has no strength");
        assert_eq!(expr("count(>= blue) >= 9 or any(>= red)").strength(&m), 1.0, "failed branches do not count");
    }

    fn parse_err(text: &str) -> String {
        match CompositeExpr::parse(text) {
            Ok(e) => panic!("{text:?} parsed as {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parse_errors_say_what_was_expected_where() {
        let cases = [
            ("count(>= green) >= 2", "expected a level (blue, yellow, orange or red) at character 10, found `green`"),
            (
                "water-level-bands >= crimson",
                "expected a level (blue, yellow, orange or red) at character 22, found `crimson`",
            ),
            (
                "count(>= blue)",
                "expected `>= <number>` after `count(…)` at character 15, found the end of the condition",
            ),
            ("count(>= blue) >=", "expected a whole number of members at character 18, found the end of the condition"),
            ("count(>= blue) >= four", "expected a whole number of members at character 19, found `four`"),
            (
                "(a >= red or b >= red",
                "expected `)` (to close the `(` at character 1) at character 22, found the end of the condition",
            ),
            ("a >= red)", "unexpected `)` at character 9: no `(` is open"),
            (
                "any(>= red) sometimes",
                "expected `and`, `or` or the end of the condition at character 13, found `sometimes`",
            ),
            ("a >= red and", "expected a condition"),
            ("", "at character 1, found the end of the condition"),
            ("a orange", "expected `>=` at character 3, found `orange`"),
            ("a > orange", "(levels compare with `>=` only)"),
            ("count(>= red) == 2", "expected `>=` or `>` at character 15, found `==`"),
            ("count >= red", "expected `(` after `count` at character 7, found `>=`"),
            ("any(>= red", "expected `)` to close `any(` at character 11"),
            ("a >= red & b >= red", "expected `&&` at character 10"),
            ("水位 >= red", "unexpected character `水` at character 1"),
            ("count(>= red) >= 99999999999", "expected a whole number"),
        ];
        for (text, want) in cases {
            let got = parse_err(text);
            assert!(got.contains(want), "{text:?}: got {got:?}, want it to contain {want:?}");
        }
        let deep = format!("{}a >= red{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse_err(&deep).contains("nested deeper than"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        composites: Vec<CompositeSpec>,
    }

    const DAM: &str = r#"
        [[composites]]
        id = "tailings-dam-rollup"
        description = "GB 50863-style roll-up"
        sites = ["dam-3"]
        members = { kinds = ["gnss_displacement"], tags = ["tailings"] }
        on_delay = { samples = 2 }
        off_delay = { seconds = 1800 }
        message.en = "{level} roll-up {change} at {site}: {strength} points ({condition})"

        [composites.levels]
        yellow = "count(>= blue) >= 4"
        orange = "count(>= yellow) >= 3"
        red = "count(>= orange) >= 2"

        [[composites]]
        id = "reservoir-flood-and-rain"
        levels.red = "water-level-bands >= orange and rainfall-accumulation >= yellow"
    "#;

    #[test]
    fn composites_deserialise_from_toml() {
        let f: File = toml::from_str(DAM).unwrap_or_else(|e| panic!("{e}"));
        let dam = &f.composites[0];
        assert_eq!(dam.id, "tailings-dam-rollup");
        assert_eq!(dam.sites, vec!["dam-3".to_string()]);
        assert_eq!(
            dam.members,
            MemberFilter { rules: vec![], kinds: vec!["gnss_displacement".into()], tags: vec!["tailings".into()] }
        );
        assert_eq!(dam.levels, rollup());
        assert_eq!(
            (dam.on_delay, dam.off_delay),
            (Delay { samples: 2, seconds: 0 }, Delay { samples: 0, seconds: 1800 })
        );
        assert_eq!(dam.message.zh, default_message().zh, "the missing half is the site-level default");
        assert!(dam.problems().is_empty(), "{:?}", dam.problems());

        let reservoir = &f.composites[1];
        assert_eq!(reservoir.levels.as_array().map(|e| e.is_some()), [false, false, false, true]);
        assert_eq!((reservoir.sites.len(), reservoir.members.clone()), (0, MemberFilter::default()));
        assert_eq!(reservoir.message, default_message());
        assert!(reservoir.problems().is_empty());
    }

    #[test]
    fn toml_errors_name_the_bad_expression_and_field() {
        let bad = "[[composites]]\nid = \"x\"\nlevels.red = \"count(>= blue)\"\n";
        let err = toml::from_str::<File>(bad).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("expected `>= <number>`"), "{err}");
        let unknown = "[[composites]]\nid = \"x\"\nlevels.purple = \"any(>= red)\"\n";
        assert!(toml::from_str::<File>(unknown).unwrap_err().to_string().contains("purple"));
        let typo = "[[composites]]\nid = \"x\"\nlevels.red = \"any(>= red)\"\nmembers = { rule = [\"a\"] }\n";
        assert!(toml::from_str::<File>(typo).unwrap_err().to_string().contains("rule"));
    }

    #[test]
    fn problems_name_the_field() {
        let spec = |id: &str, levels: CompositeLevels| CompositeSpec {
            id: id.into(),
            description: String::new(),
            sites: vec!["ok".into(), "not ok".into()],
            scope: Scope::Site,
            members: MemberFilter { rules: vec!["gnss".into()], ..MemberFilter::default() },
            levels,
            coincidence: None,
            on_delay: Delay::default(),
            off_delay: Delay::default(),
            message: MessageTemplate { zh: "{site}{value}".into(), en: default_message().en },
            group_members: false,
        };
        let p = spec("bad id!", CompositeLevels::default()).problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("id: \"bad id!\""));
        assert!(p[1].starts_with("sites[1]: \"not ok\""));
        assert!(p[2].starts_with("levels: give at least one"));
        assert!(p[3].starts_with("message: unknown placeholder {value}"));

        let levels = CompositeLevels {
            red: Some(expr("count(gnss >= blue) >= 0 or water >= red")),
            ..CompositeLevels::default()
        };
        let p = spec("ok", levels).problems();
        assert!(
            p.iter().any(|m| m == "levels.red: `count(gnss >= blue) >= 0` always holds; the count must be at least 1"),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.starts_with("levels.red: rule \"water\" is not in members.rules")), "{p:?}");
    }

    #[test]
    fn member_filter_selects_rule_kind_and_tags() {
        let sensor = Sensor {
            id: SensorId::new("dam3-p1"),
            site: SiteId::new("dam-3"),
            kind: SensorKind::GnssDisplacement,
            unit: Arc::from("mm"),
            name: String::new(),
            name_zh: String::new(),
            location: None,
            interval_s: None,
            tags: vec!["tailings".into(), "crest".into()],
            attributes: Default::default(),
        };
        assert!(MemberFilter::default().matches("anything", &sensor));
        let f = MemberFilter {
            rules: vec!["gnss-h".into(), "gnss-v".into()],
            kinds: vec!["gnss_displacement".into()],
            tags: vec!["tailings".into()],
        };
        assert!(f.matches("gnss-v", &sensor));
        assert!(!f.matches("water", &sensor));
        assert!(
            !MemberFilter { kinds: vec!["water_level".into()], ..MemberFilter::default() }.matches("gnss-v", &sensor)
        );
        assert!(!MemberFilter { tags: vec!["tailings".into(), "toe".into()], ..MemberFilter::default() }
            .matches("gnss-v", &sensor));
    }

    #[test]
    fn band_state_machine_confirms_and_holds_site_levels() {
        let f: File = toml::from_str(DAM).unwrap_or_else(|e| panic!("{e}"));
        let dam = &f.composites[0];
        let spec = dam.band_spec();
        assert_eq!(spec.thresholds, [None, Some(2.0), Some(3.0), Some(4.0)]);
        let b = Some(Blue);
        let o = Some(Orange);
        // Minute by minute: four blue points twice (on-delay of two samples), then two orange
        // points twice, then calm — held for the 30-minute off-delay.
        let minutes: Vec<Vec<Option<Level>>> =
            [vec![vec![b, b, b, b]; 2], vec![vec![o, o, b, b]; 2], vec![vec![None; 4]; 31]].concat();
        let mut state = BandState::default();
        let levels: Vec<Option<Level>> = minutes
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let pts = points(row);
                ThresholdBands::step(
                    &spec,
                    &mut state,
                    Timestamp(i as i64 * 60_000),
                    dam.levels.band_value(&members("g", &pts)),
                );
                state.level
            })
            .collect();
        assert_eq!(&levels[..5], &[None, Some(Yellow), Some(Yellow), Some(Red), Some(Red)]);
        assert_eq!(levels[33], Some(Red), "30 min off-delay not yet over");
        assert_eq!(levels[34], None);
    }

    #[test]
    fn messages_use_site_level_placeholders() {
        let f: File = toml::from_str(DAM).unwrap_or_else(|e| panic!("{e}"));
        let facts = CompositeFacts {
            site: "dam-3",
            site_name: ("3号尾矿库", "Tailings dam 3"),
            level: Orange,
            change: AlertChange::Escalated,
            strength: 3.0,
        };
        let (zh, en) = f.composites[0].render_message(&facts);
        assert_eq!(en, "orange roll-up escalated at dam-3: 3 points (count(>= yellow) >= 3)");
        // The default Chinese half: the site's name, the description, no internal ids.
        assert_eq!(zh, "【橙色预警】3号尾矿库 综合研判：GB 50863-style roll-up（count(>= yellow) >= 3）");
    }
}
