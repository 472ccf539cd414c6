//! Forecasts: what a hydrological model (or any forecaster) expects a sensor to read.
//!
//! A [`Forecast`] is issued at one time for one registered sensor and holds a series of valid
//! times with one value per time, for one member (a deterministic forecast) or for each member
//! of an ensemble. The wire shape and its checks are in [`crate::wire::forecast`]; the rule
//! engine raises `forecast` alerts from them (docs/rules.md, "Forecast rules").

use crate::{SensorId, SensorKind, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One validated forecast: every member has one finite value per valid time, valid times are
/// strictly increasing and after the issue time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The sensor forecast (registered).
    pub sensor: SensorId,
    /// Its site.
    pub site: SiteId,
    /// Its kind (a scalar kind).
    pub kind: SensorKind,
    /// Unit of the values (the sensor's registered unit).
    pub unit: Arc<str>,
    /// When the forecast was issued (its event time).
    pub issued: Timestamp,
    /// Valid times, strictly increasing, each after `issued`.
    pub valid: Vec<Timestamp>,
    /// Values per member, each as long as `valid` (one member for a deterministic forecast).
    pub members: Vec<Vec<f64>>,
}

impl Forecast {
    /// The last valid time (the forecast says nothing beyond it).
    pub fn horizon(&self) -> Timestamp {
        self.valid.last().copied().unwrap_or(self.issued)
    }

    /// Per valid time, the median over members (the member itself when deterministic).
    pub fn median(&self) -> Vec<f64> {
        let mut column = Vec::with_capacity(self.members.len());
        (0..self.valid.len())
            .map(|i| {
                column.clear();
                column.extend(self.members.iter().filter_map(|m| m.get(i).copied()));
                column.sort_by(f64::total_cmp);
                let n = column.len();
                match n {
                    0 => f64::NAN,
                    _ if n % 2 == 1 => column[n / 2],
                    _ => (column[n / 2 - 1] + column[n / 2]) / 2.0,
                }
            })
            .collect()
    }
}
