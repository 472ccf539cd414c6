//! Which sensors' state changed since the engine's state was last saved.
//!
//! Saving every sensor's state on every save pauses the rules stage for ~1 µs per sensor
//! (100 ms at 100 000 sensors). Saving only the sensors that changed bounds the pause by
//! activity instead: a reading marks its sensor, the stale sweep marks a sensor whose stale
//! state it stepped, and whatever touches every sensor (restore, resume, reload) marks all.

/// The set of changed sensor positions (see [`crate::sensor_table::SensorTable`]).
#[derive(Clone, Debug)]
pub(crate) struct Changes {
    /// One bit per position: set while the position is in `list`.
    marked: Vec<u64>,
    /// Changed positions, in the order first changed.
    list: Vec<u32>,
    /// Everything changed (a new engine, a restore): the next save is a full one.
    all: bool,
}

impl Changes {
    /// Everything counts as changed.
    pub(crate) fn everything() -> Self {
        Changes { marked: Vec::new(), list: Vec::new(), all: true }
    }

    /// Notes that the sensor at `position` changed.
    #[inline]
    pub(crate) fn mark(&mut self, position: usize) {
        if self.all {
            return;
        }
        let (word, bit) = (position / 64, 1u64 << (position % 64));
        if word >= self.marked.len() {
            self.marked.resize(word + 1, 0);
        }
        if self.marked[word] & bit == 0 {
            self.marked[word] |= bit;
            self.list.push(position as u32);
        }
    }

    /// Notes that every sensor changed.
    pub(crate) fn mark_all(&mut self) {
        *self = Changes::everything();
    }

    /// Sensors changed so far (`total` when everything did).
    pub(crate) fn count(&self, total: usize) -> usize {
        if self.all {
            total
        } else {
            self.list.len()
        }
    }

    /// The changed positions (`None`: all), and starts afresh with nothing changed.
    pub(crate) fn take(&mut self) -> Option<Vec<u32>> {
        let all = std::mem::replace(&mut self.all, false);
        for p in &self.list {
            self.marked[*p as usize / 64] = 0;
        }
        let list = std::mem::take(&mut self.list);
        (!all).then_some(list)
    }
}
