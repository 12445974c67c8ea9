//! The failing set, kept in `failing.subunit` as the failing tests' events,
//! updated exactly as stestr's file repository updates its `failing` file.

use std::collections::HashMap;
use std::path::Path;

use proctor_events::TestRecord;
use proctor_subunit::{encode, Status};

use crate::layout::write_atomically;
use crate::records::{read_records, record_events};
use crate::{RepoError, RunKind};

/// Whether a test run puts its test in the failing set. stestr's rule: the
/// status `fail`, or a run the stream never finished (stestr stores those as
/// failures). `uxsuccess` does not: stestr keeps only `fail`, although the
/// run's totals count `uxsuccess` as failed. Skips and `xfail` take a test
/// out of the set like a pass does.
pub(crate) fn counts_as_failing(record: &TestRecord) -> bool {
    !record.is_complete() || record.status == Some(Status::Fail)
}

/// The failing tests, each with the record of its latest failure, in the
/// order stestr keeps them: a test keeps its place when it fails again, a new
/// failure goes last.
#[derive(Debug, Default)]
pub(crate) struct FailingSet {
    /// Test id to (place, record).
    tests: HashMap<String, (u64, TestRecord)>,
    next_place: u64,
}

impl FailingSet {
    /// Reads `failing.subunit`; none means nothing is failing.
    pub(crate) fn read(path: &Path) -> Result<FailingSet, RepoError> {
        let mut set = FailingSet::default();
        if path.exists() {
            set.apply(RunKind::Partial, read_records(path)?);
        }
        Ok(set)
    }

    /// Takes in a finished run's records (in the order they ended): a full
    /// run starts the set afresh; then each test run's outcome adds its test
    /// or takes it out, the last attempt deciding.
    pub(crate) fn apply(&mut self, kind: RunKind, records: impl IntoIterator<Item = TestRecord>) {
        if kind == RunKind::Full {
            self.tests.clear();
        }
        for record in records {
            if !counts_as_failing(&record) {
                self.tests.remove(&record.test_id);
                continue;
            }
            match self.tests.get_mut(&record.test_id) {
                Some((_, kept)) => *kept = record,
                None => {
                    let place = self.next_place;
                    self.next_place += 1;
                    self.tests.insert(record.test_id.clone(), (place, record));
                }
            }
        }
    }

    /// The failing tests' records, in order.
    pub(crate) fn records(&self) -> Vec<&TestRecord> {
        let mut placed: Vec<_> = self.tests.values().collect();
        placed.sort_by_key(|(place, _)| *place);
        placed.into_iter().map(|(_, record)| record).collect()
    }

    /// Replaces `failing.subunit` with the set's events.
    pub(crate) fn write(&self, path: &Path) -> Result<(), RepoError> {
        let mut bytes = Vec::new();
        for event in self.records().into_iter().flat_map(record_events) {
            encode(&event, &mut bytes).map_err(|source| RepoError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        }
        write_atomically(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use proctor_events::Aggregator;
    use proctor_subunit::Event;

    use super::*;

    fn run(results: &[(&str, Status)]) -> Vec<TestRecord> {
        let mut aggregator = Aggregator::new();
        results
            .iter()
            .filter_map(|(id, status)| aggregator.push(&Event::test(*id, *status)))
            .collect()
    }

    fn ids(set: &FailingSet) -> Vec<&str> {
        set.records().iter().map(|r| r.test_id.as_str()).collect()
    }

    #[test]
    fn full_runs_replace_partial_runs_merge() {
        use Status::*;
        let mut set = FailingSet::default();
        set.apply(
            RunKind::Full,
            run(&[("a", Fail), ("b", Fail), ("c", Success), ("d", Fail)]),
        );
        assert_eq!(ids(&set), ["a", "b", "d"]);
        set.apply(
            RunKind::Partial,
            run(&[("e", Fail), ("a", Success), ("d", UxSuccess), ("b", Fail)]),
        );
        assert_eq!(ids(&set), ["b", "e"]);
        set.apply(RunKind::Partial, run(&[("x", Skip), ("e", XFail)]));
        assert_eq!(ids(&set), ["b"]);
        set.apply(RunKind::Full, run(&[("z", Fail), ("b", Success)]));
        assert_eq!(ids(&set), ["z"]);
    }

    #[test]
    fn round_trips_through_its_file() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("failing.subunit");
        let mut set = FailingSet::default();
        set.apply(
            RunKind::Full,
            run(&[("b", Status::Fail), ("a", Status::Fail)]),
        );
        set.write(&path).expect("writes");
        assert_eq!(ids(&FailingSet::read(&path).expect("reads")), ["b", "a"]);
    }
}
