//! Call-response chains (叫应) as the rules file defines them: per level, optionally per site
//! and kind, an ordered list of tiers — who is called, through which notification channels,
//! and how long they have to answer before the next tier is called.
//!
//! ```toml
//! [[chains]]
//! id = "red-duty"
//! level = "red"
//! sites = ["tailings-01"]          # optional: only these sites
//! kinds = ["water_level"]          # optional: only these kinds ("site" for composites)
//! tiers = [
//!   { who = "值班员 duty officer", notify = ["sms-duty"], contacts = ["13800000001"], answer_within = "5m" },
//!   { who = "值班长 shift leader", notify = ["dingtalk-leaders"], answer_within = "10m" },
//!   { who = "局长 bureau chief", notify = ["sms-chief"] },
//! ]
//! ```
//!
//! Which chain an alert walks ([`ChainSpec::select`]): of the chains for its level that match
//! its site and kind, the most specific — one naming sites and kinds, then one naming sites,
//! then one naming kinds, then one naming neither; among equals, the first in the file.

use crate::condition::parse_window;
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{Level, Problem};
use serde::Deserialize;

/// One tier of a chain.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Who is called: a person, a post or a unit, as the duty room names them.
    pub who: String,
    /// Notification channels the call goes out on (channel ids of the notifications file).
    #[serde(default)]
    pub notify: Vec<String>,
    /// Phone numbers or user ids, passed on with the call (an SMS gateway, a robot's mention).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// How long the tier has to acknowledge before the next is called (`"5m"`); needed on every
    /// tier but the last.
    #[serde(default)]
    pub answer_within: Option<String>,
}

/// One chain as written, with each tier's answer time parsed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Unique chain id (named in every call).
    pub id: String,
    /// The alert level the chain is for.
    pub level: Level,
    /// Only alerts of these sites (empty: every site).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only alerts of these sensor kinds (empty: every kind).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// The tiers, called one after the other.
    pub tiers: Vec<TierSpec>,
    /// Each tier's answer time in ms (filled by [`ChainSpec::problems`]).
    #[serde(skip)]
    pub answer_ms: Vec<Option<i64>>,
}

impl ChainSpec {
    /// Checks the chain (fields relative to it: `tiers[1].answer_within: …`) and parses each
    /// tier's answer time.
    pub(crate) fn problems(&mut self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !is_valid_id(&self.id) {
            p.push(Problem::new("id", format!("{:?} must be 1-64 letters, digits, - _ .", self.id)));
        }
        if self.tiers.is_empty() {
            p.push(Problem::new("tiers", "give at least one tier"));
        }
        for (field, list) in [("sites", &self.sites), ("kinds", &self.kinds)] {
            if list.iter().any(|x| x.trim().is_empty()) {
                p.push(Problem::new(field, "must not hold an empty name"));
            }
        }
        let last = self.tiers.len().saturating_sub(1);
        self.answer_ms.clear();
        for (i, t) in self.tiers.iter().enumerate() {
            let at = format!("tiers[{i}]");
            if t.who.trim().is_empty() {
                p.push(Problem::new(format!("{at}.who"), "name who is called"));
            }
            if t.notify.iter().any(|c| c.trim().is_empty()) {
                p.push(Problem::new(format!("{at}.notify"), "must not hold an empty channel id"));
            }
            let ms = match t.answer_within.as_deref() {
                None if i < last => {
                    p.push(Problem::new(
                        format!("{at}.answer_within"),
                        "needed on every tier but the last (how long before the next tier is called)",
                    ));
                    None
                }
                None => None,
                Some(text) => match parse_window(text) {
                    Ok(ms) => Some(ms),
                    Err(e) => {
                        p.push(Problem::new(format!("{at}.answer_within"), e.replace("window", "time")));
                        None
                    }
                },
            };
            self.answer_ms.push(ms);
        }
        p
    }

    /// How specific the chain is: sites and kinds 3, sites 2, kinds 1, neither 0.
    fn specificity(&self) -> u8 {
        2 * u8::from(!self.sites.is_empty()) + u8::from(!self.kinds.is_empty())
    }

    /// Whether the chain applies to an alert of `level` at `site` of `kind`.
    pub(crate) fn matches(&self, level: Level, site: &str, kind: &str) -> bool {
        self.level == level
            && (self.sites.is_empty() || self.sites.iter().any(|s| s == site))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
    }

    /// The index of the chain an alert of `level` at `site` of `kind` walks (see the module
    /// documentation for the precedence), if any.
    pub(crate) fn select(chains: &[ChainSpec], level: Level, site: &str, kind: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, c) in chains.iter().enumerate() {
            if c.matches(level, site, kind) && best.is_none_or(|b| c.specificity() > chains[b].specificity()) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(id: &str, sites: &[&str], kinds: &[&str]) -> ChainSpec {
        ChainSpec {
            id: id.into(),
            level: Level::Red,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            tiers: vec![TierSpec { who: "duty".into(), notify: vec![], contacts: vec![], answer_within: None }],
            answer_ms: vec![None],
        }
    }

    #[test]
    fn the_most_specific_chain_wins_then_the_first() {
        let chains = [
            chain("any", &[], &[]),
            chain("kind", &[], &["water_level"]),
            chain("site", &["s1"], &[]),
            chain("both", &["s1"], &["water_level"]),
            chain("site-again", &["s1"], &[]),
        ];
        let pick = |site, kind| ChainSpec::select(&chains, Level::Red, site, kind).map(|i| chains[i].id.as_str());
        assert_eq!(pick("s1", "water_level"), Some("both"));
        assert_eq!(pick("s1", "rainfall"), Some("site"));
        assert_eq!(pick("s2", "water_level"), Some("kind"));
        assert_eq!(pick("s2", "rainfall"), Some("any"));
        assert_eq!(ChainSpec::select(&chains, Level::Orange, "s1", "water_level"), None);
    }

    #[test]
    fn problems_name_the_field() {
        let mut c = chain("bad id!", &[], &[]);
        c.tiers = vec![
            TierSpec { who: " ".into(), notify: vec!["".into()], contacts: vec![], answer_within: None },
            TierSpec { who: "b".into(), notify: vec![], contacts: vec![], answer_within: Some("5 parsecs".into()) },
        ];
        let fields: Vec<String> = c.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["id", "tiers[0].who", "tiers[0].notify", "tiers[0].answer_within", "tiers[1].answer_within"]
        );
    }
}
