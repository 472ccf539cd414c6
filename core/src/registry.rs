//! The sensor registry: which sites and sensors exist, what they measure, in which unit, and
//! the per-station attributes (warning level, gas set points, …) rules refer to.
//!
//! Loaded from TOML. Validation reports *every* problem, each naming the offending field
//! (`sensors[3].unit`) and its line, and a duplicate id where it first appeared, so a
//! configuration author fixes the file in one pass.

use crate::ids::is_valid_id;
use crate::kind::{canonical_unit, KindCatalog, KindSpec};
use crate::problem::{FieldLines, Problem};
use crate::{SensorId, SensorKind, SiteId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A place that groups sensors: a gauging station, a plant, a slope, a dam.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Unique id, used in MQTT topics.
    pub id: SiteId,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Display name in Chinese.
    #[serde(default)]
    pub name_zh: String,
    /// Administrative region, for routing and access control.
    #[serde(default)]
    pub region: String,
    /// Where it is (WGS-84), for the console's map. A site without one is drawn at the mean
    /// of its sensors' locations ([`Registry::site_locations`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Administrative division code (GB/T 2260, 6 digits: `420102` = 武汉市江岸区).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
}

impl Site {
    /// Problems with the site's map fields, each naming the field under `at` (`sites[2]`).
    fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        if let Some(l) = &self.location {
            l.check(&format!("{at}.location"), problems);
        }
        if let Some(d) = &self.division {
            if d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(Problem::new(
                    format!("{at}.division"),
                    format!("{d:?} must be a 6-digit GB/T 2260 administrative division code (e.g. \"420102\")"),
                ));
            }
        }
    }
}

/// The name a person reads: the Chinese name when `zh` and there is one, else the other
/// language's, else the id. Every output that shows a site or sensor uses this order.
pub fn display_name<'a>(zh: bool, name_zh: &'a str, name: &'a str, id: &'a str) -> &'a str {
    let (first, second) = if zh { (name_zh.trim(), name.trim()) } else { (name.trim(), name_zh.trim()) };
    [first, second].into_iter().find(|n| !n.is_empty()).unwrap_or(id)
}

impl Site {
    /// Its name for a reader of Chinese (`zh`) or English, falling back to the other, then the id.
    pub fn display_name(&self, zh: bool) -> &str {
        display_name(zh, &self.name_zh, &self.name, self.id.as_str())
    }
}

/// WGS-84 position of a sensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Elevation, metres (optional).
    #[serde(default)]
    pub elevation_m: Option<f64>,
}

impl Location {
    /// Problems with the coordinates, each naming the field under `at` (`sites[2].location`).
    fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            problems
                .push(Problem::new(format!("{at}.lat"), format!("{} is not a latitude (-90 to 90 degrees)", self.lat)));
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            problems.push(Problem::new(
                format!("{at}.lon"),
                format!("{} is not a longitude (-180 to 180 degrees)", self.lon),
            ));
        }
    }
}

/// One registered sensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    /// Unique id.
    pub id: SensorId,
    /// The site it belongs to.
    pub site: SiteId,
    /// What it measures.
    pub kind: SensorKind,
    /// The unit it publishes in (canonical spelling).
    pub unit: Arc<str>,
    /// Display name.
    pub name: String,
    /// Display name in Chinese (what duty officers read by default).
    pub name_zh: String,
    /// Where it is.
    pub location: Option<Location>,
    /// Expected reporting interval in seconds (for stale-sensor detection).
    pub interval_s: Option<f64>,
    /// Free tags for rule selection (`tailings`, `tank-farm-b`, …).
    pub tags: Vec<String>,
    /// Per-station numbers rules refer to by name (`warning_level`, `alarm_1`, …).
    pub attributes: Attributes,
}

impl Sensor {
    /// Its name for a reader of Chinese (`zh`) or English, falling back to the other, then the id.
    pub fn display_name(&self, zh: bool) -> &str {
        display_name(zh, &self.name_zh, &self.name, self.id.as_str())
    }
}

/// A sensor's attributes: numbers by name, sorted by name. One small slice per sensor, the
/// names shared with every other sensor of the registry that has them (a registry of 100 000
/// stations has a handful of distinct names): ~24 bytes per attribute instead of a map's
/// ~400 bytes per sensor.
#[derive(Clone, Default, PartialEq)]
pub struct Attributes(Box<[(Arc<str>, f64)]>);

impl Attributes {
    /// The number called `name`.
    pub fn get(&self, name: &str) -> Option<&f64> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    /// The number called `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut f64> {
        self.position(name).ok().map(|i| &mut self.0[i].1)
    }

    /// Every (name, number), by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name))
    }

    /// From (name, number) pairs; a later pair replaces an earlier one of the same name.
    /// `name` gives each name's shared text.
    fn build(pairs: impl IntoIterator<Item = (String, f64)>, mut name: impl FnMut(String) -> Arc<str>) -> Self {
        let map: BTreeMap<String, f64> = pairs.into_iter().collect();
        Attributes(map.into_iter().map(|(k, v)| (name(k), v)).collect())
    }
}

impl FromIterator<(String, f64)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(pairs: I) -> Self {
        Attributes::build(pairs, Arc::from)
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = f64;

    /// The number called `name`; panics if there is none (as a map's index does).
    fn index(&self, name: &str) -> &f64 {
        self.get(name).unwrap_or_else(|| panic!("no attribute {name:?}"))
    }
}

impl std::fmt::Debug for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One shared `Arc<str>` per distinct text (attribute names, units).
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(k) = self.0.get(text) {
            return Arc::clone(k);
        }
        let k: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&k));
        k
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorFile {
    id: String,
    site: String,
    kind: String,
    unit: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    name_zh: String,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    interval_s: Option<f64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, f64>,
    #[serde(default)]
    sl651: Option<Sl651Binding>,
}

/// Where an SL 651-2014 remote terminal unit reports a sensor: its station address and the
/// element (要素标识符) carrying the value (docs/wire-format.md, "SL 651-2014").
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sl651Binding {
    /// The remote station address (遥测站地址): its 5 bytes as 10 hexadecimal digits
    /// (`"0012345678"`; BCD addresses read as their decimal digits).
    pub station: String,
    /// The element identifier as 2 hexadecimal digits (`"39"`: instantaneous river level),
    /// or 4 for an extended `FF xx` identifier.
    pub element: String,
    /// The station's password (密码) as 4 hexadecimal digits (`"1234"`): frames from the
    /// station carrying another are dead-lettered. Every binding of a station gives the same
    /// password, or none does (then passwords are not checked for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl Sl651Binding {
    /// Problems with the binding, each naming its field under `at` (`sensors[3].sl651`).
    fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if self.station.len() != 10 || !hex(&self.station) {
            problems.push(Problem::new(
                format!("{at}.station"),
                format!("{:?} must be the 5-byte station address as 10 hex digits (e.g. \"0012345678\")", self.station),
            ));
        }
        if !(self.element.len() == 2 || (self.element.len() == 4 && self.element[..2].eq_ignore_ascii_case("FF")))
            || !hex(&self.element)
        {
            problems.push(Problem::new(
                format!("{at}.element"),
                format!("{:?} must be an element identifier as 2 hex digits (e.g. \"39\"), or FFxx", self.element),
            ));
        }
        if let Some(p) = &self.password {
            if p.len() != 4 || !hex(p) {
                problems.push(Problem::new(
                    format!("{at}.password"),
                    format!("{p:?} must be the station's 2-byte password as 4 hex digits (e.g. \"1234\")"),
                ));
            }
        }
    }

    /// The password as the frame carries it, if one is set and well-formed.
    fn password_value(&self) -> Option<u16> {
        self.password.as_deref().and_then(|p| u16::from_str_radix(p, 16).ok())
    }

    /// The key the registry looks bindings up by: upper-case hex digits.
    fn key(&self) -> (String, String) {
        (self.station.to_ascii_uppercase(), self.element.to_ascii_uppercase())
    }
}

/// A plant or station gateway: the MQTT identity that publishes readings, and the sites it
/// may publish for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Unique id: the gateway's MQTT username and the `{gateway}` level of its topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Sites it may publish readings for.
    pub sites: Vec<SiteId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    /// Refuse readings on topics that do not name a gateway (`riskwatch/v1/readings/…`).
    #[serde(default)]
    require_gateway_topics: bool,
    #[serde(default)]
    gateways: Vec<Gateway>,
    #[serde(default)]
    kinds: BTreeMap<String, KindSpec>,
    #[serde(default)]
    sites: Vec<Site>,
    #[serde(default)]
    sensors: Vec<SensorFile>,
}

/// Why a registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file is not valid TOML or has a field of the wrong type (message has line/column).
    #[error("registry is not valid: {0}")]
    Parse(String),
    /// The file parsed but its content is inconsistent; every problem is listed, with its line.
    #[error("registry has {} problem(s):\n  {}", .0.len(), .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

/// All sites and sensors a deployment knows.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    catalog: KindCatalog,
    sites: BTreeMap<SiteId, Site>,
    sensors: SensorTable,
    gateways: BTreeMap<String, Gateway>,
    require_gateway_topics: bool,
    /// SL 651 (station, element) → sensor, keys in upper-case hex.
    sl651: HashMap<(String, String), SensorId>,
    /// SL 651 station → the password its frames must carry (stations whose bindings set one).
    sl651_passwords: HashMap<String, u16>,
}

impl Registry {
    /// Parses and validates registry TOML.
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse(e.to_string()))?;
        let mut problems = Vec::new();
        let mut catalog = KindCatalog::default();
        for (name, spec) in &file.kinds {
            if SensorKind::builtin(name).is_some() {
                problems.push(Problem::new(format!("kinds.{name}"), "redefines a built-in kind"));
            } else if !is_valid_id(name) {
                problems.push(Problem::new(format!("kinds.{name}"), "name must be letters, digits, - _ ."));
            } else if spec.units.is_empty() {
                problems.push(Problem::new(format!("kinds.{name}.units"), "at least one unit is required"));
            } else {
                catalog.declare(name, spec.clone());
            }
        }
        let mut sites = BTreeMap::new();
        let mut first_site: HashMap<SiteId, usize> = HashMap::new();
        for (i, site) in file.sites.into_iter().enumerate() {
            if !is_valid_id(site.id.as_str()) {
                problems.push(Problem::new(
                    format!("sites[{i}].id"),
                    format!("{:?} must be 1-64 letters, digits, - _ .", site.id.as_str()),
                ));
            }
            if let Some(first) = first_site.get(&site.id) {
                problems.push(duplicate(
                    &format!("sites[{i}].id"),
                    "site",
                    site.id.as_str(),
                    &format!("sites[{first}].id"),
                ));
            } else {
                first_site.insert(site.id.clone(), i);
            }
            site.check(&format!("sites[{i}]"), &mut problems);
            sites.insert(site.id.clone(), site);
        }
        let mut sensors = HashMap::new();
        let mut first_sensor: HashMap<String, usize> = HashMap::new();
        let mut texts = Interner::default();
        let mut sl651: HashMap<(String, String), SensorId> = HashMap::new();
        let mut first_binding: HashMap<(String, String), usize> = HashMap::new();
        // Station → the first binding of it, and the password that one gives.
        let mut station_password: HashMap<String, (usize, Option<String>)> = HashMap::new();
        let mut sl651_passwords: HashMap<String, u16> = HashMap::new();
        for (i, s) in file.sensors.into_iter().enumerate() {
            let at = format!("sensors[{i}]");
            if !is_valid_id(&s.id) {
                problems
                    .push(Problem::new(format!("{at}.id"), format!("{:?} must be 1-64 letters, digits, - _ .", s.id)));
            }
            if let Some(first) = first_sensor.get(&s.id) {
                problems.push(duplicate(&format!("{at}.id"), "sensor", &s.id, &format!("sensors[{first}].id")));
            } else {
                first_sensor.insert(s.id.clone(), i);
            }
            if !sites.contains_key(s.site.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.site"),
                    format!("unknown site {:?} (declare it under [[sites]])", s.site),
                ));
            }
            let Some((kind, spec)) = catalog.lookup(&s.kind) else {
                problems.push(Problem::new(
                    format!("{at}.kind"),
                    format!(
                        "unknown kind {:?} (known: {}; or declare it under [kinds])",
                        s.kind,
                        catalog.names().collect::<Vec<_>>().join(", ")
                    ),
                ));
                continue;
            };
            let unit = canonical_unit(&s.unit);
            if !spec.units.iter().any(|u| u == unit) {
                problems.push(Problem::new(
                    format!("{at}.unit"),
                    format!("{:?} is not a unit of {} (expected one of {})", s.unit, s.kind, spec.units.join(", ")),
                ));
            }
            if let Some(l) = &s.location {
                l.check(&format!("{at}.location"), &mut problems);
            }
            if let Some(iv) = s.interval_s {
                if !(iv.is_finite() && iv > 0.0) {
                    problems.push(Problem::new(format!("{at}.interval_s"), "must be a positive number of seconds"));
                }
            }
            for (name, v) in &s.attributes {
                if !v.is_finite() {
                    problems.push(Problem::new(format!("{at}.attributes.{name}"), "must be a finite number"));
                }
            }
            if let Some(b) = &s.sl651 {
                b.check(&format!("{at}.sl651"), &mut problems);
                let key = b.key();
                if let Some(first) = first_binding.get(&key) {
                    problems.push(Problem::duplicate(
                        format!("{at}.sl651"),
                        format!("station {} element {} is bound twice", key.0, key.1),
                        format!("sensors[{first}].sl651"),
                    ));
                } else {
                    first_binding.insert(key.clone(), i);
                    sl651.insert(key.clone(), SensorId::new(&s.id));
                }
                let password = b.password.as_ref().map(|p| p.to_ascii_uppercase());
                match station_password.get(&key.0) {
                    Some((first, p)) if *p != password => problems.push(Problem::duplicate(
                        format!("{at}.sl651.password"),
                        format!(
                            "station {} is given {} here and {} before; every binding of a station gives the same password, or none does",
                            key.0,
                            password.as_deref().map_or("no password".into(), |p| format!("password {p}")),
                            p.as_deref().map_or("no password".into(), |p| format!("password {p}")),
                        ),
                        format!("sensors[{first}].sl651"),
                    )),
                    Some(_) => {}
                    None => {
                        station_password.insert(key.0.clone(), (i, password));
                        if let Some(v) = b.password_value() {
                            sl651_passwords.insert(key.0, v);
                        }
                    }
                }
            }
            let sensor = Sensor {
                id: SensorId::new(&s.id),
                // The site's own id (one allocation per site, not per sensor).
                site: sites.get_key_value(s.site.as_str()).map_or_else(|| SiteId::new(&s.site), |(k, _)| k.clone()),
                kind,
                unit: texts.get(unit),
                name: s.name,
                name_zh: s.name_zh,
                location: s.location,
                interval_s: s.interval_s,
                tags: s.tags,
                attributes: Attributes::build(s.attributes, |k| texts.get(&k)),
            };
            sensors.insert(sensor.id.clone(), sensor);
        }
        let mut gateways = BTreeMap::new();
        let mut first_gateway: HashMap<String, usize> = HashMap::new();
        for (i, g) in file.gateways.into_iter().enumerate() {
            let at = format!("gateways[{i}]");
            if !is_valid_id(&g.id) {
                problems
                    .push(Problem::new(format!("{at}.id"), format!("{:?} must be 1-64 letters, digits, - _ .", g.id)));
            }
            if g.sites.is_empty() {
                problems.push(Problem::new(format!("{at}.sites"), "name at least one site"));
            }
            for s in &g.sites {
                if !sites.contains_key(s) {
                    problems.push(Problem::new(format!("{at}.sites"), format!("unknown site {:?}", s.as_str())));
                }
            }
            if let Some(first) = first_gateway.get(&g.id) {
                problems.push(duplicate(&format!("{at}.id"), "gateway", &g.id, &format!("gateways[{first}].id")));
            } else {
                first_gateway.insert(g.id.clone(), i);
            }
            gateways.insert(g.id.clone(), g);
        }
        if file.require_gateway_topics && gateways.is_empty() {
            problems.push(Problem::new("require_gateway_topics", "true, but no [[gateways]] are declared"));
        }
        if !problems.is_empty() {
            // Lines are looked up only when something is wrong (a second parse of the text).
            FieldLines::new(text).locate(&mut problems);
        }
        if problems.is_empty() {
            Ok(Registry {
                catalog,
                sites,
                sensors: SensorTable::new(sensors.into_values().collect()),
                gateways,
                require_gateway_topics: file.require_gateway_topics,
                sl651,
                sl651_passwords,
            })
        } else {
            Err(RegistryError::Invalid(problems))
        }
    }

    /// The registered sensor with this id.
    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.sensors.get(id)
    }

    /// The sensor an SL 651 station reports under `element` (both as upper-case hex digits:
    /// `"0012345678"`, `"39"`).
    pub fn sl651_sensor(&self, station: &str, element: &str) -> Option<&Sensor> {
        self.sl651.get(&(station.to_string(), element.to_string())).and_then(|id| self.sensors.get(id.as_str()))
    }

    /// Whether any sensor is bound to this SL 651 station.
    pub fn has_sl651_station(&self, station: &str) -> bool {
        self.sl651.keys().any(|(s, _)| s == station)
    }

    /// The password an SL 651 station's frames must carry (station as upper-case hex digits),
    /// if its bindings set one.
    pub fn sl651_password(&self, station: &str) -> Option<u16> {
        self.sl651_passwords.get(station).copied()
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.get(id)
    }

    /// All sensors, in id order.
    pub fn sensors(&self) -> Vec<&Sensor> {
        self.sensors.all.iter().collect()
    }

    /// All sites, in id order.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.values()
    }

    /// Where every site is, for a map: its own `location`, or else the mean of its sensors'
    /// locations (`None` if neither is known). Elevation is left out.
    pub fn site_locations(&self) -> BTreeMap<SiteId, Location> {
        let mut sums: HashMap<&SiteId, (f64, f64, usize)> = HashMap::new();
        for s in &self.sensors.all {
            if let Some(l) = s.location {
                let e = sums.entry(&s.site).or_default();
                *e = (e.0 + l.lat, e.1 + l.lon, e.2 + 1);
            }
        }
        self.sites
            .values()
            .filter_map(|site| {
                let at = site.location.or_else(|| {
                    sums.get(&site.id).map(|&(lat, lon, n)| Location {
                        lat: lat / n as f64,
                        lon: lon / n as f64,
                        elevation_m: None,
                    })
                })?;
                Some((site.id.clone(), at))
            })
            .collect()
    }

    /// The kinds this registry accepts.
    pub fn catalog(&self) -> &KindCatalog {
        &self.catalog
    }

    /// Every sensor, for changing attributes in place (what-if replays). Ids, sites, kinds and
    /// units must not be changed through this: lookups rely on them.
    pub fn sensors_mut(&mut self) -> impl Iterator<Item = &mut Sensor> {
        self.sensors.all.iter_mut()
    }

    /// The gateway with this id.
    pub fn gateway(&self, id: &str) -> Option<&Gateway> {
        self.gateways.get(id)
    }

    /// All gateways, in id order.
    pub fn gateways(&self) -> impl Iterator<Item = &Gateway> {
        self.gateways.values()
    }

    /// Whether readings must arrive on gateway topics.
    pub fn requires_gateway_topics(&self) -> bool {
        self.require_gateway_topics
    }

    /// Whether a message on a topic naming `gateway` (or none) may carry readings of `site`;
    /// `Err` says why not.
    pub fn authorise(&self, gateway: Option<&str>, site: &str) -> Result<(), String> {
        match gateway {
            None if self.require_gateway_topics => Err(format!(
                "readings must be published on riskwatch/v1/gateways/{{gateway}}/readings/{site}/… in this deployment"
            )),
            None => Ok(()),
            Some(id) => match self.gateways.get(id) {
                None => Err(format!("unknown gateway {id:?} (not in the registry's [[gateways]])")),
                Some(g) if g.sites.iter().any(|s| s.as_str() == site) => Ok(()),
                Some(g) => Err(format!(
                    "gateway {id:?} may not publish for site {site:?} (its sites: {})",
                    g.sites.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }

    /// The part of the registry whose sites pass `keep` (e.g. the sites of one Kafka
    /// partition, which one rules worker watches).
    pub fn retain_sites(&self, keep: impl Fn(&SiteId) -> bool) -> Registry {
        Registry {
            catalog: self.catalog.clone(),
            sites: self.sites.iter().filter(|(id, _)| keep(id)).map(|(k, v)| (k.clone(), v.clone())).collect(),
            sensors: SensorTable::new(self.sensors.all.iter().filter(|s| keep(&s.site)).cloned().collect()),
            gateways: self.gateways.clone(),
            require_gateway_topics: self.require_gateway_topics,
            sl651: self
                .sl651
                .iter()
                .filter(|(_, id)| self.sensors.get(id.as_str()).is_some_and(|s| keep(&s.site)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sl651_passwords: self.sl651_passwords.clone(),
        }
    }
}

/// The registered sensors, in id order, with an index by id. Decoding looks a sensor up for every
/// reading: the index's entries are a key and a position (24 bytes, hashed with FxHash), where a
/// map holding the sensors themselves had ~220-byte entries and SipHash, so a lookup among
/// 10 000 sensors missed the cache more often (docs/benchmarks.md, fourteenth round).
#[derive(Debug, Clone, Default)]
struct SensorTable {
    all: Vec<Sensor>,
    index: rustc_hash::FxHashMap<SensorId, u32>,
}

impl SensorTable {
    fn new(mut all: Vec<Sensor>) -> Self {
        all.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let index = all.iter().enumerate().map(|(i, s)| (s.id.clone(), i as u32)).collect();
        SensorTable { all, index }
    }

    fn get(&self, id: &str) -> Option<&Sensor> {
        self.index.get(id).map(|&i| &self.all[i as usize])
    }
}

/// `field` repeats the id of `first` (e.g. `sensors[3].id`).
fn duplicate(field: &str, what: &str, id: &str, first: &str) -> Problem {
    Problem::duplicate(field, format!("{what} id {id:?} is used twice"), first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [kinds.oxygen]
        shape = "scalar"
        units = ["%vol"]

        [[sites]]
        id = "hankou"
        name = "Hankou"

        [[sensors]]
        id = "hankou-wl"
        site = "hankou"
        kind = "water_level"
        unit = "m"
        attributes = { warning_level = 27.3 }

        [[sensors]]
        id = "o2-1"
        site = "hankou"
        kind = "oxygen"
        unit = "%vol"
    "#;

    #[test]
    fn attributes_are_found_by_name_and_share_names_units_and_sites_across_sensors() {
        let text = r#"
            [[sites]]
            id = "hankou"
            [[sensors]]
            id = "a"
            site = "hankou"
            kind = "water_level"
            unit = "m"
            attributes = { warning_level = 27.3, guaranteed_level = 29.73, record_level = 29.73 }
            [[sensors]]
            id = "b"
            site = "hankou"
            kind = "water_level"
            unit = "m"
            attributes = { warning_level = 8.7 }
        "#;
        let mut r = Registry::from_toml(text).unwrap();
        let (a, b) = (r.sensor("a").unwrap(), r.sensor("b").unwrap());
        assert_eq!(a.attributes.get("guaranteed_level"), Some(&29.73));
        assert_eq!(a.attributes["warning_level"], 27.3);
        assert_eq!(b.attributes["warning_level"], 8.7);
        assert_eq!(b.attributes.get("guaranteed_level"), None);
        assert_eq!(b.attributes.get(""), None);
        assert_eq!(
            a.attributes.iter().collect::<Vec<_>>(),
            [("guaranteed_level", 29.73), ("record_level", 29.73), ("warning_level", 27.3)],
            "by name"
        );
        assert_eq!((a.attributes.len(), b.attributes.len()), (3, 1));
        // One copy of each name, unit and site id for the whole registry.
        let name = |s: &Sensor| Arc::clone(&s.attributes.0.iter().find(|(k, _)| &**k == "warning_level").unwrap().0);
        assert!(Arc::ptr_eq(&name(a), &name(b)));
        assert!(Arc::ptr_eq(&a.unit, &b.unit));
        assert!(std::ptr::eq(a.site.as_str(), b.site.as_str()));
        assert!(std::ptr::eq(a.site.as_str(), r.site("hankou").unwrap().id.as_str()));
        // What-if edits change one sensor's number only.
        *r.sensors_mut().find(|s| s.id.as_str() == "b").unwrap().attributes.get_mut("warning_level").unwrap() = 9.0;
        assert_eq!(r.sensor("b").unwrap().attributes["warning_level"], 9.0);
        assert_eq!(r.sensor("a").unwrap().attributes["warning_level"], 27.3);
        let built: Attributes =
            [("x".to_string(), 1.0), ("a".to_string(), 2.0), ("x".to_string(), 3.0)].into_iter().collect();
        assert_eq!(built.iter().collect::<Vec<_>>(), [("a", 2.0), ("x", 3.0)], "sorted, the later of two equal names");
    }

    #[test]
    fn loads_sensors_and_custom_kinds() {
        let r = Registry::from_toml(GOOD).unwrap();
        let s = r.sensor("hankou-wl").unwrap();
        assert_eq!(s.kind, SensorKind::WaterLevel);
        assert_eq!(s.attributes["warning_level"], 27.3);
        assert_eq!(r.sensor("o2-1").unwrap().kind.as_str(), "oxygen");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let bad = r#"
            [[sites]]
            id = "a"
            [[sensors]]
            id = "s1"
            site = "nowhere"
            kind = "water_level"
            unit = "ft"
            [[sensors]]
            id = "s1"
            site = "a"
            kind = "lava"
            unit = "m"
        "#;
        let RegistryError::Invalid(problems) = Registry::from_toml(bad).unwrap_err() else {
            panic!("expected Invalid")
        };
        let all = problems.iter().map(|p| p.render("reg.toml")).collect::<Vec<_>>().join("\n");
        assert!(all.contains("reg.toml:6: sensors[0].site: unknown site \"nowhere\""), "{all}");
        assert!(all.contains("reg.toml:8: sensors[0].unit: \"ft\""), "{all}");
        assert!(
            all.contains("reg.toml:10: sensors[1].id: sensor id \"s1\" is used twice (first at line 5, sensors[0].id)"),
            "{all}"
        );
        assert!(all.contains("reg.toml:12: sensors[1].kind: unknown kind \"lava\""), "{all}");
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Registry::from_toml("[[sites]]\nid = \"a\"\ncolour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn sites_have_a_location_and_a_division_code_or_else_the_mean_of_their_sensors() {
        let text = r#"
            [[sites]]
            id = "hankou"
            location = { lat = 30.58, lon = 114.29 }
            division = "420102"
            [[sites]]
            id = "plant"
            [[sites]]
            id = "nowhere"
            [[sensors]]
            id = "p1"
            site = "plant"
            kind = "water_level"
            unit = "m"
            location = { lat = 32.0, lon = 118.0 }
            [[sensors]]
            id = "p2"
            site = "plant"
            kind = "water_level"
            unit = "m"
            location = { lat = 33.0, lon = 119.0, elevation_m = 10.0 }
            [[sensors]]
            id = "p3"
            site = "plant"
            kind = "water_level"
            unit = "m"
        "#;
        let r = Registry::from_toml(text).unwrap();
        let hankou = r.site("hankou").unwrap();
        assert_eq!(hankou.division.as_deref(), Some("420102"));
        let at = r.site_locations();
        assert_eq!((at["hankou"].lat, at["hankou"].lon), (30.58, 114.29), "its own location");
        assert_eq!((at["plant"].lat, at["plant"].lon), (32.5, 118.5), "the mean of its located sensors");
        assert!(!at.contains_key("nowhere"), "no location at all: not on the map");
        assert_eq!(r.site("plant").unwrap().division, None);
    }

    #[test]
    fn a_bad_division_code_or_coordinate_is_named() {
        let bad = r#"
            [[sites]]
            id = "ok"
            division = "110101"
            [[sites]]
            id = "short"
            division = "4201"
            [[sites]]
            id = "letters"
            division = "42010x"
            location = { lat = 91.0, lon = 114.29 }
            [[sites]]
            id = "west"
            location = { lat = 30.0, lon = -181.0 }
        "#;
        let RegistryError::Invalid(problems) = Registry::from_toml(bad).unwrap_err() else {
            panic!("expected Invalid")
        };
        let all = problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("sites[1].division: \"4201\" must be a 6-digit"), "{all}");
        assert!(all.contains("sites[2].division: \"42010x\""), "{all}");
        assert!(all.contains("sites[2].location.lat: 91 is not a latitude"), "{all}");
        assert!(all.contains("sites[3].location.lon: -181 is not a longitude"), "{all}");
        assert!(!all.contains("sites[0]"), "a good site is not reported: {all}");
        assert_eq!(problems.len(), 4, "{all}");
        let err = Registry::from_toml("[[sites]]\nid = \"a\"\nlocation = { lat = 1.0 }\n").unwrap_err();
        assert!(err.to_string().contains("lon"), "a missing longitude is named: {err}");
        let sensor = "[[sites]]\nid = \"a\"\n[[sensors]]\nid = \"s\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"m\"\nlocation = { lat = 30.0, lon = 214.0 }\n";
        let err = Registry::from_toml(sensor).unwrap_err().to_string();
        assert!(
            err.contains("line 8: sensors[0].location.lon: 214 is not a longitude"),
            "sensors too, at their line: {err}"
        );
    }

    #[test]
    fn sl651_bindings_map_station_and_element_to_a_sensor_and_bad_ones_are_named() {
        let text = r#"
            [[sites]]
            id = "hankou"
            [[sensors]]
            id = "hankou-wl"
            site = "hankou"
            kind = "water_level"
            unit = "m"
            sl651 = { station = "0012345678", element = "39" }
            [[sensors]]
            id = "hankou-rain"
            site = "hankou"
            kind = "rainfall"
            unit = "mm"
            sl651 = { station = "00123456ab", element = "f4" }
        "#;
        let r = Registry::from_toml(text).unwrap();
        assert_eq!(r.sl651_sensor("0012345678", "39").unwrap().id.as_str(), "hankou-wl");
        assert_eq!(r.sl651_sensor("00123456AB", "F4").unwrap().id.as_str(), "hankou-rain", "keys are upper case");
        assert!(r.sl651_sensor("0012345678", "26").is_none());
        assert!(r.has_sl651_station("0012345678") && !r.has_sl651_station("0000000001"));
        assert!(r.retain_sites(|_| false).sl651_sensor("0012345678", "39").is_none());
        let bad = r#"
            [[sites]]
            id = "a"
            [[sensors]]
            id = "s1"
            site = "a"
            kind = "water_level"
            unit = "m"
            sl651 = { station = "12345", element = "39" }
            [[sensors]]
            id = "s2"
            site = "a"
            kind = "water_level"
            unit = "m"
            sl651 = { station = "0012345678", element = "3Z" }
            [[sensors]]
            id = "s3"
            site = "a"
            kind = "water_level"
            unit = "m"
            sl651 = { station = "0012345678", element = "39" }
            [[sensors]]
            id = "s4"
            site = "a"
            kind = "water_level"
            unit = "m"
            sl651 = { station = "0012345678", element = "39" }
        "#;
        let err = Registry::from_toml(bad).unwrap_err().to_string();
        assert!(err.contains("sensors[0].sl651.station: \"12345\""), "{err}");
        assert!(err.contains("sensors[1].sl651.element: \"3Z\""), "{err}");
        assert!(err.contains("sensors[3].sl651: station 0012345678 element 39 is bound twice"), "{err}");
        let err = Registry::from_toml(&bad.replace("element = \"3Z\"", "element = \"39\", port = 1")).unwrap_err();
        assert!(err.to_string().contains("port"), "unknown keys are named: {err}");
    }

    #[test]
    fn sl651_passwords_are_per_station_and_bad_or_disagreeing_ones_are_named() {
        let sensor = |id: &str, station: &str, element: &str, password: &str| {
            format!(
                "[[sensors]]\nid = \"{id}\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"m\"\n\
                 sl651 = {{ station = \"{station}\", element = \"{element}\"{password} }}\n"
            )
        };
        let text = format!(
            "[[sites]]\nid = \"a\"\n{}{}{}",
            sensor("s1", "0012345678", "39", ", password = \"12ab\""),
            sensor("s2", "0012345678", "3A", ", password = \"12AB\""),
            sensor("s3", "0087654321", "39", ""),
        );
        let r = Registry::from_toml(&text).unwrap();
        assert_eq!(r.sl651_password("0012345678"), Some(0x12AB));
        assert_eq!(r.sl651_password("0087654321"), None, "no password: not checked");
        assert_eq!(r.retain_sites(|_| true).sl651_password("0012345678"), Some(0x12AB));
        let bad = format!(
            "[[sites]]\nid = \"a\"\n{}{}{}{}",
            sensor("s1", "0012345678", "39", ", password = \"12345\""),
            sensor("s2", "0087654321", "39", ", password = \"1234\""),
            sensor("s3", "0087654321", "3A", ", password = \"4321\""),
            sensor("s4", "0087654321", "3B", ""),
        );
        let err = Registry::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("sensors[0].sl651.password: \"12345\" must be the station's 2-byte password"), "{err}");
        assert!(
            err.contains(
                "sensors[2].sl651.password: station 0087654321 is given password 4321 here and password 1234 before"
            ),
            "{err}"
        );
        assert!(err.contains("sensors[3].sl651.password: station 0087654321 is given no password here"), "{err}");
        assert!(err.contains("(first at line"), "{err}");
    }
}
