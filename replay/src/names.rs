//! The names people know stations by, for reports and plots: a subject (sensor or site id) as
//! its site's name — Chinese by default — followed by the sensor's own name if it has one. Ids
//! stay beside the name (smaller, or in brackets) so that a row is never ambiguous.

use riskwatch_core::registry::display_name;
use riskwatch_core::{Registry, Sensor, Site};

/// Which registry names to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// `name_zh`, else `name`.
    #[default]
    Zh,
    /// `name`, else `name_zh`.
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zh" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            other => Err(format!("--names {other:?}: expected zh or en")),
        }
    }
}

/// Display names of a registry's subjects.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    registry: &'a Registry,
    lang: Lang,
}

impl<'a> Names<'a> {
    /// Names from `registry` in `lang`.
    pub fn new(registry: &'a Registry, lang: Lang) -> Self {
        Names { registry, lang }
    }

    /// The name in the chosen language, else the other; empty when there is neither (the
    /// registry's own order, [`display_name`]).
    fn pick<'s>(&self, zh: &'s str, en: &'s str) -> &'s str {
        display_name(self.lang == Lang::Zh, zh, en, "")
    }

    fn site_name<'s>(&self, site: &'s Site) -> &'s str {
        self.pick(&site.name_zh, &site.name)
    }

    /// A sensor's own name, in the chosen language first.
    fn sensor_own_name<'s>(&self, sensor: &'s Sensor) -> &'s str {
        self.pick(&sensor.name_zh, &sensor.name)
    }

    /// The name of a sensor or site id: its site's name ("汉口"), followed by the sensor's own
    /// name if it has one ("汉口 backup gauge"); empty when the registry names neither.
    pub fn of(&self, subject: &str) -> String {
        if let Some(sensor) = self.registry.sensor(subject) {
            let site = self.registry.site(sensor.site.as_str()).map_or("", |s| self.site_name(s));
            let own = self.sensor_own_name(sensor);
            return match (site.is_empty(), own.is_empty()) {
                (_, true) => site.to_string(),
                (true, false) => own.to_string(),
                (false, false) => format!("{site} {own}"),
            };
        }
        self.registry.site(subject).map_or(String::new(), |s| self.site_name(s).to_string())
    }

    /// "汉口 (hankou-wl)", or the bare id when the registry has no name for it.
    pub fn with_id(&self, subject: &str) -> String {
        match self.of(subject) {
            n if n.is_empty() => subject.to_string(),
            n => format!("{n} ({subject})"),
        }
    }

    /// For a Markdown table cell: "汉口 `hankou-wl`" (the id as code, which the HTML report
    /// shows small), or the id alone as code; a `|` in a name is escaped.
    pub fn markdown(&self, subject: &str) -> String {
        match self.of(subject) {
            n if n.is_empty() => format!("`{subject}`"),
            n => format!("{} `{subject}`", n.replace('|', "\\|")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
        [[sites]]
        id = "hankou"
        name = "Hankou"
        name_zh = "汉口"
        [[sites]]
        id = "datang"
        name = "Datang"
        [[sites]]
        id = "bare"
        [[sensors]]
        id = "hankou-wl"
        site = "hankou"
        kind = "water_level"
        unit = "m"
        [[sensors]]
        id = "hankou-wl2"
        site = "hankou"
        kind = "water_level"
        unit = "m"
        name = "backup gauge"
        [[sensors]]
        id = "datang-wl"
        site = "datang"
        kind = "water_level"
        unit = "m"
        [[sensors]]
        id = "bare-wl"
        site = "bare"
        kind = "water_level"
        unit = "m"
    "#;

    #[test]
    fn subjects_are_named_in_chinese_by_default_with_the_id_beside_the_name() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        let zh = Names::new(&reg, Lang::Zh);
        assert_eq!(zh.of("hankou-wl"), "汉口");
        assert_eq!(zh.of("hankou"), "汉口");
        assert_eq!(zh.of("hankou-wl2"), "汉口 backup gauge");
        assert_eq!(zh.of("datang-wl"), "Datang", "no Chinese name: the English one");
        assert_eq!(zh.of("bare-wl"), "");
        assert_eq!(zh.with_id("hankou-wl"), "汉口 (hankou-wl)");
        assert_eq!(zh.with_id("bare-wl"), "bare-wl");
        assert_eq!(zh.with_id("unknown"), "unknown");
        assert_eq!(zh.markdown("hankou-wl"), "汉口 `hankou-wl`");
        assert_eq!(zh.markdown("bare-wl"), "`bare-wl`");
        let en = Names::new(&reg, Lang::En);
        assert_eq!(en.of("hankou-wl"), "Hankou");
        assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().is_err());
    }
}
