//! The names duty officers read: sites and sensors by their registry names (Chinese first), for
//! messages and for the `site_name` / `sensor_name` of every alert event.
//!
//! Built from the registry with the engine (a reload brings new names). Only names that differ
//! from the id are kept, so a registry without names costs nothing.

use riskwatch_core::registry::display_name;
use riskwatch_core::{AlertEvent, Registry, SensorId, SiteId};
use std::collections::HashMap;

/// Chinese and English names of sites and sensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Names {
    sites: HashMap<SiteId, Pair>,
    sensors: HashMap<SensorId, Pair>,
}

/// (Chinese, English) display names, each already falling back to the other.
#[derive(Clone, Debug, PartialEq)]
struct Pair(Box<str>, Box<str>);

impl Pair {
    fn of(name_zh: &str, name: &str, id: &str) -> Option<Pair> {
        let (zh, en) = (display_name(true, name_zh, name, id), display_name(false, name_zh, name, id));
        (zh != id || en != id).then(|| Pair(zh.into(), en.into()))
    }

    fn get(&self, zh: bool) -> &str {
        if zh {
            &self.0
        } else {
            &self.1
        }
    }
}

impl Names {
    /// The names of every site and sensor of `registry`.
    pub(crate) fn of(registry: &Registry) -> Names {
        let sites = registry
            .sites()
            .filter_map(|s| Some((s.id.clone(), Pair::of(&s.name_zh, &s.name, s.id.as_str())?)))
            .collect();
        let sensors = registry
            .sensors()
            .into_iter()
            .filter_map(|s| Some((s.id.clone(), Pair::of(&s.name_zh, &s.name, s.id.as_str())?)))
            .collect();
        Names { sites, sensors }
    }

    /// A site's name in Chinese (`zh`) or English, or its id.
    pub(crate) fn site<'a>(&'a self, id: &'a str, zh: bool) -> &'a str {
        self.sites.get(id).map_or(id, |p| p.get(zh))
    }

    /// A sensor's name in Chinese (`zh`) or English, or its id. A composite's subject (a site
    /// id) gets the site's name.
    pub(crate) fn sensor<'a>(&'a self, id: &'a str, zh: bool) -> &'a str {
        match self.sensors.get(id) {
            Some(p) => p.get(zh),
            None => self.site(id, zh),
        }
    }

    /// Fills the event's `site_name` and `sensor_name` (Chinese first) where they are empty.
    pub(crate) fn label(&self, ev: &mut AlertEvent) {
        if ev.site_name.is_empty() {
            ev.site_name = self.site(ev.site.as_str(), true).to_string();
        }
        if ev.sensor_name.is_empty() {
            ev.sensor_name = self.sensor(ev.subject.as_str(), true).to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_first_then_english_then_the_id() {
        let r = Registry::from_toml(
            r#"
            [[sites]]
            id = "plant-a"
            name = "Chemical plant A"
            name_zh = "A化工厂罐区"
            [[sites]]
            id = "bare"
            [[sensors]]
            id = "lel-01"
            site = "plant-a"
            kind = "gas_combustible"
            unit = "%LEL"
            name = "LEL detector 01"
            [[sensors]]
            id = "lel-02"
            site = "bare"
            kind = "gas_combustible"
            unit = "%LEL"
            name_zh = "可燃气体探测器 LEL-02"
            "#,
        )
        .unwrap();
        let n = Names::of(&r);
        assert_eq!(n.site("plant-a", true), "A化工厂罐区");
        assert_eq!(n.site("plant-a", false), "Chemical plant A");
        assert_eq!(n.site("bare", true), "bare");
        assert_eq!(n.sensor("lel-01", true), "LEL detector 01", "no Chinese name: the English one");
        assert_eq!(n.sensor("lel-02", false), "可燃气体探测器 LEL-02", "no English name: the Chinese one");
        assert_eq!(n.sensor("plant-a", true), "A化工厂罐区", "a composite's subject is its site");
        assert_eq!(n.sensor("unknown", true), "unknown");
        assert!(!n.sites.contains_key("bare"), "a site without names costs no entry");
    }
}
