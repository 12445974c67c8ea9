//! Test runs that have started and not yet ended, in the order they started.

use std::collections::{BTreeMap, HashMap};

/// What identifies a run: its test id and route code.
pub(crate) type RunKey = (String, Option<String>);

/// Open runs with per-run state `T`, kept in start order so that reports and
/// end-of-stream flushes are deterministic. Every operation is O(log n).
#[derive(Debug)]
pub(crate) struct OpenRuns<T> {
    open: HashMap<RunKey, (u64, T)>,
    order: BTreeMap<u64, RunKey>,
    next_sequence: u64,
}

impl<T> Default for OpenRuns<T> {
    fn default() -> Self {
        OpenRuns {
            open: HashMap::new(),
            order: BTreeMap::new(),
            next_sequence: 0,
        }
    }
}

impl<T> OpenRuns<T> {
    /// The state of the run `key`, opened with `start` if it was not open.
    pub(crate) fn entry(&mut self, key: RunKey, start: impl FnOnce(&RunKey) -> T) -> &mut T {
        let (_, state) = self.open.entry(key).or_insert_with_key(|key| {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            self.order.insert(sequence, key.clone());
            (sequence, start(key))
        });
        state
    }

    /// Closes the run `key`, returning its state.
    pub(crate) fn remove(&mut self, key: &RunKey) -> Option<T> {
        let (sequence, state) = self.open.remove(key)?;
        self.order.remove(&sequence);
        Some(state)
    }

    /// The open runs, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.order
            .values()
            .filter_map(|key| self.open.get(key).map(|(_, state)| state))
    }

    /// Closes every run, returning their states oldest first.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let order = std::mem::take(&mut self.order);
        order
            .into_values()
            .filter_map(|key| self.open.remove(&key).map(|(_, state)| state))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_start_order() {
        let mut runs = OpenRuns::default();
        for id in ["c", "a", "b"] {
            *runs.entry((id.to_owned(), None), |_| 0) += 1;
        }
        *runs.entry(("c".to_owned(), None), |_| 0) += 1;
        assert_eq!(runs.remove(&("a".to_owned(), None)), Some(1));
        assert_eq!(runs.iter().copied().collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(runs.drain(), vec![2, 1]);
        assert!(runs.iter().next().is_none());
    }
}
