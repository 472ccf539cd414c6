//! Sensor kinds: an open set.
//!
//! riskwatch knows the families it has detectors for (water, rainfall, gas, GNSS, seismic) and
//! the generic process tags a chemical-plant gateway publishes (pressure, temperature, level,
//! flow). A deployment adds its own kinds in the registry (`[kinds.<name>]`), so the set is
//! open without the decoder ever accepting a kind nobody declared.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a sensor measures.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensorKind {
    /// River, reservoir or tide gauge water level (m).
    WaterLevel,
    /// Rainfall accumulated over the reading interval (mm).
    Rainfall,
    /// Combustible gas concentration (%LEL).
    GasCombustible,
    /// Toxic gas concentration (mg/m³ or ppm).
    GasToxic,
    /// GNSS displacement of a monitoring point from its reference position, east/north/up (mm).
    GnssDisplacement,
    /// Strong-motion acceleration waveform packets (m/s² or gal).
    SeismicAcceleration,
    /// Process tag: vessel or line pressure.
    Pressure,
    /// Process tag: temperature.
    Temperature,
    /// Process tag: tank or vessel level.
    Level,
    /// Process tag: flow rate.
    Flow,
    /// A kind declared in the registry's `[kinds]` table.
    Custom(Arc<str>),
}

impl SensorKind {
    /// The kind's wire name (`water_level`, `gas_toxic`, …).
    pub fn as_str(&self) -> &str {
        match self {
            SensorKind::WaterLevel => "water_level",
            SensorKind::Rainfall => "rainfall",
            SensorKind::GasCombustible => "gas_combustible",
            SensorKind::GasToxic => "gas_toxic",
            SensorKind::GnssDisplacement => "gnss_displacement",
            SensorKind::SeismicAcceleration => "seismic_acceleration",
            SensorKind::Pressure => "pressure",
            SensorKind::Temperature => "temperature",
            SensorKind::Level => "level",
            SensorKind::Flow => "flow",
            SensorKind::Custom(name) => name,
        }
    }

    /// The built-in kind with this wire name, if any.
    pub fn builtin(name: &str) -> Option<SensorKind> {
        Some(match name {
            "water_level" => SensorKind::WaterLevel,
            "rainfall" => SensorKind::Rainfall,
            "gas_combustible" => SensorKind::GasCombustible,
            "gas_toxic" => SensorKind::GasToxic,
            "gnss_displacement" => SensorKind::GnssDisplacement,
            "seismic_acceleration" => SensorKind::SeismicAcceleration,
            "pressure" => SensorKind::Pressure,
            "temperature" => SensorKind::Temperature,
            "level" => SensorKind::Level,
            "flow" => SensorKind::Flow,
            _ => return None,
        })
    }

    /// A human name in Chinese, for messages.
    pub fn zh(&self) -> &str {
        match self {
            SensorKind::WaterLevel => "水位",
            SensorKind::Rainfall => "雨量",
            SensorKind::GasCombustible => "可燃气体浓度",
            SensorKind::GasToxic => "有毒气体浓度",
            SensorKind::GnssDisplacement => "GNSS位移",
            SensorKind::SeismicAcceleration => "地震动加速度",
            SensorKind::Pressure => "压力",
            SensorKind::Temperature => "温度",
            SensorKind::Level => "液位",
            SensorKind::Flow => "流量",
            SensorKind::Custom(name) => name,
        }
    }

    /// A human name in English, for messages.
    pub fn en(&self) -> &str {
        match self {
            SensorKind::WaterLevel => "water level",
            SensorKind::Rainfall => "rainfall",
            SensorKind::GasCombustible => "combustible gas",
            SensorKind::GasToxic => "toxic gas",
            SensorKind::GnssDisplacement => "GNSS displacement",
            SensorKind::SeismicAcceleration => "ground acceleration",
            SensorKind::Pressure => "pressure",
            SensorKind::Temperature => "temperature",
            SensorKind::Level => "level",
            SensorKind::Flow => "flow",
            SensorKind::Custom(name) => name,
        }
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SensorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SensorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(SensorKind::builtin(&name).unwrap_or_else(|| SensorKind::Custom(Arc::from(name))))
    }
}

/// The shape of a reading's `value` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueShape {
    /// One number.
    Scalar,
    /// East / north / up components.
    Displacement,
    /// Samples per channel at a sample rate.
    Waveform,
}

impl ValueShape {
    /// Name as used in error messages and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueShape::Scalar => "scalar",
            ValueShape::Displacement => "displacement",
            ValueShape::Waveform => "waveform",
        }
    }
}

/// What the wire accepts for one kind: its value shape and its units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    /// Shape of `value`.
    pub shape: ValueShape,
    /// Accepted unit spellings (canonical ones; see [`canonical_unit`] for aliases).
    pub units: Vec<String>,
}

/// Maps common alternative unit spellings to the canonical one riskwatch stores.
pub fn canonical_unit(unit: &str) -> &str {
    match unit {
        "mg/m³" => "mg/m3",
        "°C" | "℃" => "degC",
        "m/s²" => "m/s2",
        "m³/h" => "m3/h",
        "%lel" | "% LEL" => "%LEL",
        other => other,
    }
}

/// The kinds a deployment accepts: the built-ins plus those its registry declares.
#[derive(Clone, Debug)]
pub struct KindCatalog {
    specs: BTreeMap<String, KindSpec>,
}

impl Default for KindCatalog {
    fn default() -> Self {
        let mut specs = BTreeMap::new();
        let mut add = |name: &str, shape: ValueShape, units: &[&str]| {
            specs.insert(name.to_string(), KindSpec { shape, units: units.iter().map(|u| u.to_string()).collect() });
        };
        add("water_level", ValueShape::Scalar, &["m"]);
        add("rainfall", ValueShape::Scalar, &["mm"]);
        add("gas_combustible", ValueShape::Scalar, &["%LEL"]);
        add("gas_toxic", ValueShape::Scalar, &["mg/m3", "ppm"]);
        add("gnss_displacement", ValueShape::Displacement, &["mm"]);
        add("seismic_acceleration", ValueShape::Waveform, &["m/s2", "gal"]);
        add("pressure", ValueShape::Scalar, &["kPa", "MPa"]);
        add("temperature", ValueShape::Scalar, &["degC"]);
        add("level", ValueShape::Scalar, &["m", "mm", "%"]);
        add("flow", ValueShape::Scalar, &["m3/h", "t/h", "L/s"]);
        KindCatalog { specs }
    }
}

impl KindCatalog {
    /// Adds (or replaces) a kind declared by a deployment.
    pub fn declare(&mut self, name: &str, spec: KindSpec) {
        self.specs.insert(name.to_string(), spec);
    }

    /// The kind and its spec for a wire name, or `None` if nobody declared it.
    pub fn lookup(&self, name: &str) -> Option<(SensorKind, &KindSpec)> {
        let spec = self.specs.get(name)?;
        let kind = SensorKind::builtin(name).unwrap_or_else(|| SensorKind::Custom(Arc::from(name)));
        Some((kind, spec))
    }

    /// All kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }
}
