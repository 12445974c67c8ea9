//! What runs next: tests ordered longest-expected first, handed out ad hoc.
//!
//! Nothing is split up front. Whenever a worker is free it takes the next
//! unit from one shared queue; for suites whose processes have a start-up
//! cost it takes a batch whose size shrinks as the queue drains (guided
//! self-scheduling: about `remaining / (2 × workers)`, at least one unit), so
//! start-up is paid few times and workers still finish together.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use proctor_sources::{Batching, TestCase};

/// Tests that must run in one process (a `group_regex` group), or one test.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    pub(crate) tests: Vec<TestCase>,
    /// Expected duration of the whole unit, when every test has an estimate.
    pub(crate) expected: Option<Duration>,
}

impl Unit {
    fn suite(&self) -> usize {
        self.tests.first().map_or(0, |test| test.suite)
    }
}

/// How long each test is expected to take: its history first, then its
/// metadata; `None` when neither says.
pub fn expected_duration(test: &TestCase, history: &HashMap<String, Duration>) -> Option<Duration> {
    history.get(&test.id).copied().or(test.estimate)
}

/// Orders tests into units, longest expected first.
///
/// Tests with no estimate at all are placed as if they took the mean of the
/// known estimates: ahead of the tests known to be short, so that a slow new
/// test does not start last, and behind the known long ones. Ties keep the
/// order the source listed them in.
pub(crate) fn order(tests: Vec<TestCase>, history: &HashMap<String, Duration>) -> Vec<Unit> {
    let mut units = group(tests, history);
    let known: Vec<Duration> = units.iter().filter_map(|unit| unit.expected).collect();
    let unknown = mean(&known).unwrap_or_default();
    // A stable sort keeps listing order among equals.
    units.sort_by_key(|unit| std::cmp::Reverse(unit.expected.unwrap_or(unknown)));
    units
}

fn mean(durations: &[Duration]) -> Option<Duration> {
    let count = u32::try_from(durations.len()).ok().filter(|n| *n > 0)?;
    Some(durations.iter().sum::<Duration>() / count)
}

/// One unit per group (in the order groups first appear) and one per
/// ungrouped test. A test has a group only when its suite has a
/// `group_regex` (see `Suite::test_case`).
fn group(tests: Vec<TestCase>, history: &HashMap<String, Duration>) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut group_index: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for test in tests {
        let expected = expected_duration(&test, history);
        let key = test.group.clone().map(|group| (test.suite, group));
        match key.as_ref().and_then(|key| group_index.get(key).copied()) {
            Some(index) => {
                let unit = &mut units[index];
                unit.expected = unit.expected.zip(expected).map(|(a, b)| a + b);
                unit.tests.push(test);
            }
            None => {
                if let Some(key) = key {
                    group_index.insert(key, units.len());
                }
                units.push(Unit {
                    tests: vec![test],
                    expected,
                });
            }
        }
    }
    units
}

/// The shared queue workers take their next batch from.
#[derive(Debug)]
pub(crate) struct Queue {
    units: VecDeque<Unit>,
    workers: usize,
}

impl Queue {
    pub(crate) fn new(units: Vec<Unit>, workers: usize) -> Queue {
        Queue {
            units: units.into(),
            workers: workers.max(1),
        }
    }

    /// Puts tests back at the front (a crashed batch's unstarted tests),
    /// keeping each group's tests in one unit.
    pub(crate) fn requeue(&mut self, tests: Vec<TestCase>) {
        for unit in group(tests, &HashMap::new()).into_iter().rev() {
            self.units.push_front(unit);
        }
    }

    /// The next batch: the head unit, plus, for a batching suite, further
    /// units of the same suite up to the guided self-scheduling size, or up
    /// to `min_size(suite)` tests when that is larger.
    pub(crate) fn next_batch(
        &mut self,
        batching: impl Fn(usize) -> Batching,
        min_size: impl Fn(usize) -> usize,
    ) -> Vec<TestCase> {
        let Some(first) = self.units.pop_front() else {
            return Vec::new();
        };
        let suite = first.suite();
        let mut batch = first.tests;
        if batching(suite) == Batching::OnePerProcess {
            return batch;
        }
        let remaining = self.remaining_in(suite) + batch.len();
        let size = remaining.div_ceil(2 * self.workers).max(min_size(suite));
        while batch.len() < size {
            let Some(position) = self.units.iter().position(|unit| unit.suite() == suite) else {
                break;
            };
            match self.units.remove(position) {
                Some(unit) => batch.extend(unit.tests),
                None => break,
            }
        }
        batch
    }

    fn remaining_in(&self, suite: usize) -> usize {
        self.units
            .iter()
            .filter(|unit| unit.suite() == suite)
            .map(|unit| unit.tests.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(id: &str, group: Option<&str>) -> TestCase {
        TestCase {
            id: id.to_owned(),
            suite: 0,
            estimate: None,
            time_limit: None,
            group: group.map(str::to_owned),
        }
    }

    fn ids(units: &[Unit]) -> Vec<Vec<&str>> {
        units
            .iter()
            .map(|unit| unit.tests.iter().map(|t| t.id.as_str()).collect())
            .collect()
    }

    #[test]
    fn longest_first_and_unknown_before_short() {
        let history = HashMap::from([
            ("short".to_owned(), Duration::from_secs(1)),
            ("long".to_owned(), Duration::from_secs(100)),
            ("mid".to_owned(), Duration::from_secs(20)),
        ]);
        let tests = ["short", "new", "mid", "long"].map(|id| test(id, None));
        let mut with_metadata = test("declared", None);
        with_metadata.estimate = Some(Duration::from_secs(50));
        let mut all = tests.to_vec();
        all.push(with_metadata);
        let units = order(all, &history);
        // Known mean is (1 + 100 + 20 + 50) / 4 = 42.75 s.
        assert_eq!(
            ids(&units),
            [["long"], ["declared"], ["new"], ["mid"], ["short"]]
        );
    }

    #[test]
    fn groups_stay_together() {
        let tests = vec![
            test("a.1", Some("a")),
            test("b.1", Some("b")),
            test("a.2", Some("a")),
        ];
        let units = order(tests, &HashMap::new());
        assert_eq!(ids(&units), [vec!["a.1", "a.2"], vec!["b.1"]]);
    }

    #[test]
    fn batches_shrink_as_the_queue_drains() {
        let units = order(
            (0..100).map(|i| test(&format!("t{i}"), None)).collect(),
            &HashMap::new(),
        );
        let mut queue = Queue::new(units, 4);
        let mut sizes = Vec::new();
        loop {
            let batch = queue.next_batch(|_| Batching::Batches, |_| 1);
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert_eq!(sizes[0], 13); // ceil(100 / 8)
        assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]));
        assert_eq!(sizes.last(), Some(&1));
    }

    #[test]
    fn a_minimum_size_keeps_costly_processes_few() {
        let units = order(
            (0..100).map(|i| test(&format!("t{i}"), None)).collect(),
            &HashMap::new(),
        );
        let mut queue = Queue::new(units, 4);
        assert_eq!(queue.next_batch(|_| Batching::Batches, |_| 60).len(), 60);
        assert_eq!(queue.next_batch(|_| Batching::Batches, |_| 60).len(), 40);
    }

    #[test]
    fn one_per_process_suites_take_one_unit() {
        let units = order(vec![test("a", None), test("b", None)], &HashMap::new());
        let mut queue = Queue::new(units, 1);
        assert_eq!(
            queue.next_batch(|_| Batching::OnePerProcess, |_| 1).len(),
            1
        );
        queue.requeue(vec![test("c", None)]);
        assert_eq!(queue.next_batch(|_| Batching::Batches, |_| 1)[0].id, "c");
    }

    #[test]
    fn requeued_groups_stay_together() {
        let mut queue = Queue::new(Vec::new(), 4);
        queue.requeue(vec![
            test("g.1", Some("g")),
            test("h.1", Some("h")),
            test("g.2", Some("g")),
        ]);
        let first = queue.next_batch(|_| Batching::OnePerProcess, |_| 1);
        let ids: Vec<_> = first.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["g.1", "g.2"]);
    }
}
