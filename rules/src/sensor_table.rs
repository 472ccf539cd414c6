//! The engine's per-sensor state, found by sensor id once per reading.
//!
//! Rule evaluation itself is a few comparisons; what a reading costs is mostly finding its
//! sensor's state among thousands that do not fit in the CPU caches. So the slots sit in one
//! dense vector, and a small hash index of positions (a few bytes per sensor, cache-resident)
//! leads to them. The index hashes with Fx rather than SipHash: its keys are the registry's
//! ids, fixed when the engine is built, so there is nothing for a sender to flood it with. Ids
//! are compared by address before text: readings from the wire decoder carry the registry's
//! own `Arc`s, so the id text of the stored key is normally never read.
//!
//! Readings that do carry the registry's `Arc`s are found without reading the id text at all:
//! a second, open-addressed index is keyed by the address of the id's text. The table holds a
//! clone of every key's `Arc`, so no other id can live at one of those addresses while the
//! table exists; an address hit is therefore the same id. Anything else (an id decoded into a
//! fresh allocation) falls back to the text index.

use riskwatch_core::SensorId;
use rustc_hash::FxBuildHasher;
use std::borrow::Borrow;
use std::hash::BuildHasher;

/// Per-sensor values `T`, by sensor id, in insertion order.
#[derive(Debug)]
pub(crate) struct SensorTable<T> {
    entries: Vec<(SensorId, T)>,
    index: hashbrown::HashTable<u32>,
    by_address: AddressIndex,
}

impl<T: Clone> Clone for SensorTable<T> {
    fn clone(&self) -> Self {
        // The clone holds clones of the same `Arc`s: the same addresses.
        SensorTable { entries: self.entries.clone(), index: self.index.clone(), by_address: self.by_address.clone() }
    }
}

impl<T> Default for SensorTable<T> {
    fn default() -> Self {
        SensorTable { entries: Vec::new(), index: hashbrown::HashTable::new(), by_address: AddressIndex::default() }
    }
}

/// Positions by the address of the id text: linear probing in a power-of-two table of
/// (address, position) pairs, address 0 marking an empty slot. 16 bytes a slot, at most 8/9
/// full: 18–36 bytes per sensor, usually one cache line per lookup.
#[derive(Clone, Debug, Default)]
struct AddressIndex {
    slots: Box<[(usize, u32)]>,
}

impl AddressIndex {
    fn start(&self, address: usize) -> usize {
        // Fibonacci hashing: the high bits of the product are well mixed.
        let bits = self.slots.len().trailing_zeros();
        if bits == 0 {
            return 0;
        }
        ((address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    fn rebuild<'a>(&mut self, keys: impl ExactSizeIterator<Item = &'a SensorId>) {
        let capacity = (keys.len() + keys.len() / 8 + 1).next_power_of_two();
        self.slots = vec![(0usize, 0u32); capacity].into_boxed_slice();
        let mask = capacity - 1;
        for (position, id) in keys.enumerate() {
            let address = id.as_str().as_ptr() as usize;
            let mut i = self.start(address);
            while self.slots[i].0 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (address, u32::try_from(position).expect("fewer than 4 billion sensors"));
        }
    }

    #[inline]
    fn find(&self, address: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.start(address);
        loop {
            let (a, p) = self.slots[i];
            if a == address {
                return Some(p as usize);
            }
            if a == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn prefetch(&self, address: usize) {
        if !self.slots.is_empty() {
            crate::prefetch::line(&self.slots[self.start(address)]);
        }
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
        // Built in full by `shrink_to_fit`, once the table is complete; until then the text
        // index alone answers.
        self.by_address = AddressIndex::default();
    }

    /// Where `id`'s value is (for [`SensorTable::at_mut`]).
    #[inline]
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        if let Some(p) = self.by_address.find(id.as_ptr() as usize) {
            return Some(p);
        }
        let entries = &self.entries;
        self.index.find(hash(id), |p| same(&entries[*p as usize].0, id)).map(|p| *p as usize)
    }

    /// Starts loading the index entry `position(id)` will read (a hint; no effect on results).
    #[inline]
    pub(crate) fn prefetch_position(&self, id: &str) {
        self.by_address.prefetch(id.as_ptr() as usize);
    }

    /// The id and value at `position`.
    #[inline]
    pub(crate) fn at_mut(&mut self, position: usize) -> (&SensorId, &mut T) {
        let (id, v) = &mut self.entries[position];
        (id, v)
    }

    /// The id and value at `position`.
    pub(crate) fn entry(&self, position: usize) -> (&SensorId, &T) {
        let (id, v) = &self.entries[position];
        (id, v)
    }

    /// The value at `position`.
    #[inline]
    pub(crate) fn at(&self, position: usize) -> &T {
        &self.entries[position].1
    }

    /// The value of `id`.
    pub(crate) fn get<Q: Borrow<str> + ?Sized>(&self, id: &Q) -> Option<&T> {
        self.position(id.borrow()).map(|p| &self.entries[p].1)
    }

    /// The value of `id`, to change.
    pub(crate) fn get_mut<Q: Borrow<str> + ?Sized>(&mut self, id: &Q) -> Option<&mut T> {
        self.position(id.borrow()).map(|p| &mut self.entries[p].1)
    }

    /// Number of sensors.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
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
        self.by_address.rebuild(self.entries.iter().map(|(id, _)| id));
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
        let clone = t.clone();
        assert_eq!(clone.position(stored.as_str()), Some(3), "a clone finds the same allocations");
        assert_eq!(t.position(SensorId::new("s-999").as_str()), Some(999), "text fallback");
    }
}
