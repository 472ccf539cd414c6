//! The JSON tree the wire decoder reads payloads into.
//!
//! `serde_json::Value` allocates a `String` for every key and every string value and a
//! `BTreeMap` node per object; for a 100-reading batch that is well over a thousand
//! allocations, most of the decoder's time. This tree borrows strings from the payload when they
//! have no escapes, keeps the members a reading can have in fixed slots (no key is stored), and
//! keeps any other member (waveform channel names, fields a newer gateway adds) by name. It is
//! built by serde_json's own parser, so what is valid JSON, the recursion limit and the
//! "number out of range" error are serde_json's, exactly as before.
//!
//! Duplicate members: the last one wins, as in `serde_json::Value`. [`Obj::members`] and the
//! text of [`Json`] (for error messages and dead-letter records) list members sorted by name,
//! as `serde_json::Value`'s map does.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// A JSON value borrowing from the payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Box<Obj<'a>>),
}

/// Member names the decoder looks up, each with its own slot in [`Obj`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    V,
    Exercise,
    Readings,
    Sensor,
    Site,
    Kind,
    Ts,
    Unit,
    Value,
    Quality,
    E,
    N,
    U,
    RateHz,
    Channels,
}

const KEYS: [(&str, Key); 15] = [
    ("v", Key::V),
    ("exercise", Key::Exercise),
    ("readings", Key::Readings),
    ("sensor", Key::Sensor),
    ("site", Key::Site),
    ("kind", Key::Kind),
    ("ts", Key::Ts),
    ("unit", Key::Unit),
    ("value", Key::Value),
    ("quality", Key::Quality),
    ("e", Key::E),
    ("n", Key::N),
    ("u", Key::U),
    ("rate_hz", Key::RateHz),
    ("channels", Key::Channels),
];

impl Key {
    fn of(name: &str) -> Option<Key> {
        // A match compiles to a dispatch on length and bytes; a scan of KEYS would compare
        // every member name against up to fifteen names.
        Some(match name {
            "v" => Key::V,
            "exercise" => Key::Exercise,
            "readings" => Key::Readings,
            "sensor" => Key::Sensor,
            "site" => Key::Site,
            "kind" => Key::Kind,
            "ts" => Key::Ts,
            "unit" => Key::Unit,
            "value" => Key::Value,
            "quality" => Key::Quality,
            "e" => Key::E,
            "n" => Key::N,
            "u" => Key::U,
            "rate_hz" => Key::RateHz,
            "channels" => Key::Channels,
            _ => return None,
        })
    }

    /// The member's name in the payload.
    pub(crate) fn name(self) -> &'static str {
        KEYS[self as usize].0
    }
}

/// A JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Obj<'a> {
    known: [Option<Json<'a>>; KEYS.len()],
    other: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Obj<'a> {
    pub(crate) fn get(&self, key: Key) -> Option<&Json<'a>> {
        self.known[key as usize].as_ref()
    }

    /// Every member, sorted by name.
    pub(crate) fn members(&self) -> Vec<(&str, &Json<'a>)> {
        let mut all: Vec<(&str, &Json<'a>)> = KEYS
            .iter()
            .filter_map(|(name, key)| self.get(*key).map(|v| (*name, v)))
            .chain(self.other.iter().map(|(k, v)| (k.as_ref(), v)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    fn insert(&mut self, name: Cow<'a, str>, value: Json<'a>) {
        if let Some(key) = Key::of(&name) {
            self.known[key as usize] = Some(value);
        } else if let Some(slot) = self.other.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.other.push((name, value));
        }
    }

    fn to_value(&self) -> serde_json::Value {
        serde_json::Value::Object(self.members().into_iter().map(|(k, v)| (k.to_string(), v.to_value())).collect())
    }
}

impl<'a> Json<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.as_u64(),
            _ => None,
        }
    }

    /// "a number", "an object", … for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    fn to_value(&self) -> serde_json::Value {
        use serde_json::Value as V;
        match self {
            Json::Null => V::Null,
            Json::Bool(b) => V::Bool(*b),
            Json::Num(n) => V::Number(n.clone()),
            Json::Str(s) => V::String(s.to_string()),
            Json::Array(a) => V::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(o) => o.to_value(),
        }
    }
}

/// Compact JSON text (members sorted by name); used for error messages and dead-letter items,
/// never on the path of an accepted reading.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl fmt::Display for Obj<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Num(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Num(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json itself refuses numbers beyond f64 with this text; the decoder reports it as
        // a non-finite value.
        Number::from_f64(v).map(Json::Num).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut obj = Box::<Obj<'de>>::default();
        while let Some(MemberName(name)) = map.next_key()? {
            let value = map.next_value()?;
            obj.insert(name, value);
        }
        Ok(Json::Object(obj))
    }
}

/// A member name, borrowed from the payload when it has no escapes.
struct MemberName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v)))
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn text_matches_serde_json_value() {
        for text in [
            r#"{"z":1,"sensor":"a\"b","value":{"e":1.5,"n":-2,"u":0},"extra":[1,null,true,"x"],"v":1}"#,
            r#"{"channels":{"z":[1,2],"e":[3,4],"HHN":[5,6]},"rate_hz":100}"#,
            r#"[{"ts":"2026-06-01T00:00:00Z"},18446744073709551615,-9223372036854775808,1e300]"#,
            r#"{"a":1,"a":2,"ts":1,"ts":2}"#,
        ] {
            let expected: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text).to_string(), expected.to_string(), "{text}");
        }
    }

    #[test]
    fn every_key_is_found_by_its_name() {
        for (name, key) in KEYS {
            assert_eq!(Key::of(name), Some(key));
            assert_eq!(key.name(), name);
        }
        assert_eq!(Key::of("valu"), None);
    }

    #[test]
    fn known_members_are_found_and_the_last_duplicate_wins() {
        let Json::Object(o) = parse(r#"{"ts":1,"sensor":"s1","ts":2,"x":1,"x":3}"#) else { panic!("object") };
        assert_eq!(o.get(Key::Ts), Some(&Json::Num(2.into())));
        assert_eq!(o.get(Key::Sensor).and_then(Json::as_str), Some("s1"));
        assert_eq!(o.get(Key::Unit), None);
        let members: Vec<_> = o.members().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(members, ["sensor=\"s1\"", "ts=2", "x=3"]);
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let Json::Object(o) = parse(r#"{"sensor":"plain","unit":"m\u00b3"}"#) else { panic!("object") };
        assert!(matches!(o.get(Key::Sensor), Some(Json::Str(Cow::Borrowed("plain")))));
        assert!(matches!(o.get(Key::Unit), Some(Json::Str(Cow::Owned(u))) if u == "m³"));
    }

    #[test]
    fn numbers_beyond_f64_are_refused_as_serde_json_does() {
        let e = serde_json::from_str::<Json<'_>>(r#"{"value":1e999}"#).unwrap_err();
        assert!(e.to_string().contains("number out of range"), "{e}");
    }
}
