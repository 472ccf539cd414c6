//! The engine's per-sensor state, found by sensor id once per reading.
//!
//! Rule evaluation itself is a few comparisons; what a reading costs is mostly finding its
//! sensor's state among thousands that do not fit in the CPU caches. So the slots sit in one
//! dense vector, and a small hash index of positions (a few bytes per sensor, cache-resident)
//! leads to them. The index hashes with Fx rather than SipHash: its keys are the registry's
//! ids, fixed when the engine is built, so there is nothing for a sender to flood it with. Ids
//! are compared by address before text: readings from the wire decoder carry the registry's
//! own `Arc`s, so the id text of the stored key is normally never read.

use riskwatch_core::SensorId;
use rustc_hash::FxBuildHasher;
use std::borrow::Borrow;
use std::hash::BuildHasher;

/// Per-sensor values `T`, by sensor id, in insertion order.
#[derive(Clone, Debug)]
pub(crate) struct SensorTable<T> {
    entries: Vec<(SensorId, T)>,
    index: hashbrown::HashTable<u32>,
}

impl<T> Default for SensorTable<T> {
    fn default() -> Self {
        SensorTable { entries: Vec::new(), index: hashbrown::HashTable::new() }
    }
}

fn same(a: &SensorId, b: &str) -> bool {
    let a = a.as_str();
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

impl<T> SensorTable<T> {
    /// Adds or replaces the value of `id`.
    pub(crate) fn insert(&mut self, id: SensorId, value: T) {
        if let Some(slot) = self.get_mut(id.as_str()) {
            *slot = value;
            return;
        }
        let position = u32::try_from(self.entries.len()).expect("fewer than 4 billion sensors");
        let entries = &self.entries;
        self.index.insert_unique(hash(id.as_str()), position, |p| hash(entries[*p as usize].0.as_str()));
        self.entries.push((id, value));
    }

    fn position(&self, id: &str) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(hash(id), |p| same(&entries[*p as usize].0, id)).map(|p| *p as usize)
    }

    /// The value of `id`.
    pub(crate) fn get<Q: Borrow<str> + ?Sized>(&self, id: &Q) -> Option<&T> {
        self.position(id.borrow()).map(|p| &self.entries[p].1)
    }

    /// The value of `id`, to change.
    pub(crate) fn get_mut<Q: Borrow<str> + ?Sized>(&mut self, id: &Q) -> Option<&mut T> {
        self.position(id.borrow()).map(|p| &mut self.entries[p].1)
    }

    /// Every (id, value), in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&SensorId, &T)> {
        self.entries.iter().map(|(id, v)| (id, v))
    }

    /// Every value, in insertion order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Drops spare capacity (the table is built once and kept for the engine's life).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        let entries = &self.entries;
        self.index.shrink_to_fit(|p| hash(entries[*p as usize].0.as_str()));
    }
}

impl<T: PartialEq> PartialEq for SensorTable<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len() && self.iter().all(|(id, v)| other.get(id.as_str()) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_id_whether_or_not_the_id_is_the_same_allocation() {
        let mut t = SensorTable::default();
        for i in 0..1000 {
            t.insert(SensorId::new(format!("s-{i}")), i);
        }
        t.insert(SensorId::new("s-7"), 70);
        t.shrink_to_fit();
        assert_eq!(t.get("s-7"), Some(&70));
        let stored = t.iter().nth(3).map(|(id, _)| id.clone()).unwrap();
        assert_eq!(t.get(stored.as_str()), Some(&3), "same allocation");
        assert_eq!(t.get(SensorId::new("s-3").as_str()), Some(&3), "equal text elsewhere");
        assert_eq!(t.get("s-1000"), None);
        *t.get_mut("s-999").unwrap() += 1;
        assert_eq!(t.values().copied().max(), Some(1000));
        assert_eq!(t.iter().count(), 1000);
        assert_eq!(t.clone(), t);
    }
}
