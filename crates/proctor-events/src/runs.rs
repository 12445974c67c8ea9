//! Test runs that have started and not yet ended, in the order they started.

use std::hash::Hash;

use hashbrown::{Equivalent, HashMap};
use proctor_subunit::EventRef;

/// What identifies a run: its test id and route code.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RunKey {
    pub(crate) test_id: String,
    pub(crate) route_code: Option<String>,
}

/// A [`RunKey`] borrowed from an event, so looking up a run allocates
/// nothing. Its derived `Hash` matches `RunKey`'s (`String` hashes as `str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RunKeyRef<'a> {
    test_id: &'a str,
    route_code: Option<&'a str>,
}

impl<'a> RunKeyRef<'a> {
    /// The run an event with a test id belongs to.
    pub(crate) fn of(event: &EventRef<'a>) -> Option<RunKeyRef<'a>> {
        Some(RunKeyRef {
            test_id: event.test_id?,
            route_code: event.route_code,
        })
    }
}

impl Equivalent<RunKey> for RunKeyRef<'_> {
    fn equivalent(&self, key: &RunKey) -> bool {
        self.test_id == key.test_id && self.route_code == key.route_code.as_deref()
    }
}

impl From<&RunKeyRef<'_>> for RunKey {
    fn from(key: &RunKeyRef<'_>) -> RunKey {
        RunKey {
            test_id: key.test_id.to_owned(),
            route_code: key.route_code.map(str::to_owned),
        }
    }
}

/// Open runs with per-run state `T`. Each run remembers when it opened, so
/// reports and end-of-stream flushes list runs in start order.
///
/// The run opened last sits outside the hash table: in the usual stream,
/// where a test's events come together, every lookup hits it with one string
/// comparison and the table is never touched (this halved the aggregator's
/// cost on the benchmark stream). Interleaved runs fall back to the table.
#[derive(Debug)]
pub(crate) struct OpenRuns<T> {
    latest: Option<(RunKey, (u64, T))>,
    open: HashMap<RunKey, (u64, T)>,
    next_sequence: u64,
}

impl<T> Default for OpenRuns<T> {
    fn default() -> Self {
        OpenRuns {
            latest: None,
            open: HashMap::new(),
            next_sequence: 0,
        }
    }
}

impl<T> OpenRuns<T> {
    /// The state of the run `key`, opened with `start` if it was not open.
    /// The run becomes the latest.
    pub(crate) fn entry(&mut self, key: RunKeyRef<'_>, start: impl FnOnce() -> T) -> &mut T {
        let run = match self.latest.take() {
            Some(latest) if key.equivalent(&latest.0) => latest,
            previous => {
                if let Some((previous_key, state)) = previous {
                    self.open.insert(previous_key, state);
                }
                // Most streams have nothing else open: skip hashing then.
                let reopened = if self.open.is_empty() {
                    None
                } else {
                    self.open.remove_entry(&key)
                };
                match reopened {
                    Some(run) => run,
                    None => {
                        self.next_sequence += 1;
                        (RunKey::from(&key), (self.next_sequence, start()))
                    }
                }
            }
        };
        let (_, (_, state)) = self.latest.insert(run);
        state
    }

    /// Opens the run `key` with `state`, after every run open now (a run resumed from a saved stream).
    pub(crate) fn insert(&mut self, key: RunKey, state: T) {
        self.next_sequence += 1;
        if let Some((previous_key, previous)) = self.latest.take() {
            self.open.insert(previous_key, previous);
        }
        self.latest = Some((key, (self.next_sequence, state)));
    }

    /// Closes the run `key`, returning its key and state.
    pub(crate) fn remove(&mut self, key: RunKeyRef<'_>) -> Option<(RunKey, T)> {
        if self
            .latest
            .as_ref()
            .is_some_and(|(latest, _)| key.equivalent(latest))
        {
            return self.latest.take().map(|(key, (_, state))| (key, state));
        }
        self.open
            .remove_entry(&key)
            .map(|(key, (_, state))| (key, state))
    }

    /// The open runs, oldest first.
    pub(crate) fn iter(&self) -> Vec<(&RunKey, &T)> {
        let latest = self.latest.as_ref().map(|(key, state)| (key, state));
        let mut runs: Vec<_> = self.open.iter().chain(latest).collect();
        runs.sort_unstable_by_key(|(_, (sequence, _))| *sequence);
        runs.into_iter()
            .map(|(key, (_, state))| (key, state))
            .collect()
    }

    /// Closes every run, returning them oldest first.
    pub(crate) fn drain(&mut self) -> Vec<(RunKey, T)> {
        let mut runs: Vec<_> = self.open.drain().chain(self.latest.take()).collect();
        runs.sort_unstable_by_key(|(_, (sequence, _))| *sequence);
        runs.into_iter()
            .map(|(key, (_, state))| (key, state))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(test_id: &str) -> RunKeyRef<'_> {
        RunKeyRef {
            test_id,
            route_code: None,
        }
    }

    #[test]
    fn keeps_start_order() {
        let mut runs = OpenRuns::default();
        for id in ["c", "a", "b"] {
            *runs.entry(key(id), || 0) += 1;
        }
        *runs.entry(key("c"), || 0) += 1;
        let removed = runs
            .remove(key("a"))
            .map(|(key, state)| (key.test_id, state));
        assert_eq!(removed, Some(("a".to_owned(), 1)));
        let states: Vec<i32> = runs.iter().into_iter().map(|(_, state)| *state).collect();
        assert_eq!(states, vec![2, 1]);
        let ids: Vec<String> = runs
            .drain()
            .into_iter()
            .map(|(key, _)| key.test_id)
            .collect();
        assert_eq!(ids, ["c", "b"]);
        assert!(runs.iter().is_empty());
    }

    #[test]
    fn routes_keep_runs_apart() {
        let mut runs = OpenRuns::default();
        let routed = RunKeyRef {
            test_id: "t",
            route_code: Some("0"),
        };
        *runs.entry(key("t"), || 0) += 1;
        *runs.entry(routed, || 10) += 1;
        assert_eq!(runs.remove(routed).map(|(_, state)| state), Some(11));
        assert_eq!(runs.remove(key("t")).map(|(_, state)| state), Some(1));
    }
}
