//! Event time: milliseconds since the Unix epoch, UTC.
//!
//! Rules run on the time a reading was *measured*, never on arrival time, so replays and
//! back-filled readings give the same alerts as live data.

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Earliest event time the wire accepts: 2000-01-01T00:00:00Z. Catches epoch *seconds* sent
/// where milliseconds are expected, and zeroed gateway clocks.
pub const MIN_WIRE_MS: i64 = 946_684_800_000;
/// Latest event time the wire accepts: 2100-01-01T00:00:00Z.
pub const MAX_WIRE_MS: i64 = 4_102_444_800_000;

impl Timestamp {
    /// From epoch milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Epoch milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0 + ms)
    }

    /// The wall clock now (only binaries and simulators call this; the rule engine never does).
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Parses RFC 3339 text that carries an explicit offset (`Z` or `+08:00`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|dt| Timestamp(dt.timestamp_millis()))
            .map_err(|e| format!("not RFC 3339 with an offset ({e})"))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2020-07-12T15:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// `2026-12-08 14:05` in China Standard Time (UTC+08:00): the minute, as a message says it.
    pub fn to_cst_minute(self) -> String {
        let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        match cst.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.format("%Y-%m-%d %H:%M").to_string(),
            None => format!("@{}ms", self.0),
        }
    }

    /// RFC 3339 in China Standard Time (UTC+08:00), as duty officers read it.
    pub fn to_rfc3339_cst(self) -> String {
        let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        match cst.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Secs, false),
            None => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_applied() {
        let a = Timestamp::parse_rfc3339("2020-07-12T23:00:00+08:00").unwrap();
        let b = Timestamp::parse_rfc3339("2020-07-12T15:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_rfc3339(), "2020-07-12T15:00:00.000Z");
        assert_eq!(b.to_rfc3339_cst(), "2020-07-12T23:00:00+08:00");
    }

    #[test]
    fn missing_offset_is_rejected() {
        assert!(Timestamp::parse_rfc3339("2020-07-12T23:00:00").is_err());
    }
}

/// Serde adapter: writes a [`Timestamp`] as RFC 3339 UTC text and reads either RFC 3339 text or
/// epoch milliseconds. Used for alert payloads, which people read.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Serialises as RFC 3339.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_rfc3339())
    }

    /// Deserialises from RFC 3339 text or epoch milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Millis(i64),
        }
        match Either::deserialize(d)? {
            Either::Text(s) => Timestamp::parse_rfc3339(&s).map_err(D::Error::custom),
            Either::Millis(ms) => Ok(Timestamp(ms)),
        }
    }
}

/// [`rfc3339`] for an optional time (`None` written as nothing, with `skip_serializing_if`).
pub mod opt_rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as RFC 3339, or null.
    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => super::rfc3339::serialize(ts, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises from RFC 3339 text, epoch milliseconds or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::rfc3339")] Timestamp);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(t)| t))
    }
}
