//! What runs next: tests ordered longest-expected first, handed out ad hoc.
//!
//! Whenever a worker is free it takes the next unit from one shared queue;
//! for suites whose processes have a start-up cost it takes a batch whose
//! size shrinks as the queue drains (guided self-scheduling: about
//! `remaining / (2 × workers)`, at least one unit, and at least
//! [`STARTUP_SHARE`] start-ups' worth of tests when the cost is known), so
//! start-up is paid few times and workers still finish together.
//!
//! A suite whose start-up is so costly that a worker's share of its tests is
//! worth fewer than [`STARTUP_SHARE`] start-ups is split up front instead
//! ([`plan`]): one batch per worker, balanced by expected time, since every
//! further batch would cost a start-up more than the balance it could win.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use proctor_sources::{Batching, TestCase};

/// What a suite's test processes cost: the start-up (until the first test
/// began) and then the time per test, as the runner measures it and the run
/// history remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessCost {
    /// From the process's start to its first test.
    pub startup: Duration,
    /// From its first test to its exit, per test it finished: the tests' own
    /// time plus what the process spends between and after them.
    pub per_test: Duration,
}

/// A batch should take at least this many times its process's start-up, so
/// start-up stays a small share of the run: guided self-scheduling alone
/// hands out ever smaller batches, and for a Python suite of quick tests each
/// of those paid ~0.3 s of interpreter start and imports for milliseconds of
/// tests (BENCHMARKS.md, the stestr comparison).
pub(crate) const STARTUP_SHARE: u32 = 10;

impl ProcessCost {
    /// The least test time a batch should hold.
    pub(crate) fn min_batch_time(&self) -> Duration {
        self.startup * STARTUP_SHARE
    }

    /// The fewest tests a batch should hold.
    pub(crate) fn min_batch_size(&self) -> usize {
        let per_test = self.per_test.max(Duration::from_micros(1));
        usize::try_from(
            self.min_batch_time()
                .as_nanos()
                .div_ceil(per_test.as_nanos()),
        )
        .unwrap_or(usize::MAX)
        .max(1)
    }
}

/// Tests that must run in one process (a `group_regex` group), or one test;
/// or a batch [`plan`] made up front.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    pub(crate) tests: Vec<TestCase>,
    /// Expected duration of the whole unit, when every test has an estimate.
    pub(crate) expected: Option<Duration>,
    /// Whether this is a planned batch, which runs as it is.
    planned: bool,
    /// Which try of its tests it is, when it is back in the queue.
    pub(crate) again: Again,
}

/// What makes a unit back in the queue differ from a first run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Again {
    /// The runner's retry (0 on the first try): a test that failed, or was lost with its worker, runs again as a
    /// new try.
    pub(crate) retry: u32,
    /// How many times its tests' workers were lost under them.
    pub(crate) losses: u32,
    /// The worker (route code) it last ran on, which a rerun avoids when another can take it.
    pub(crate) avoid: Option<String>,
}

impl Unit {
    fn suite(&self) -> usize {
        self.tests.first().map_or(0, |test| test.suite)
    }

    /// Whether it may join a batch of `suite` handed out as the queue
    /// drains (planned batches run as they are).
    fn batches_with(&self, suite: usize) -> bool {
        !self.planned && self.suite() == suite
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
    longest_first(&mut units);
    units
}

/// Sorts units longest expected first, those without an estimate as if they
/// took the mean of the estimated tests' units (planned batches, which are
/// whole shares of a suite, left out of that mean).
fn longest_first(units: &mut [Unit]) {
    let known: Vec<Duration> = units
        .iter()
        .filter(|unit| !unit.planned)
        .filter_map(|unit| unit.expected)
        .collect();
    let unknown = mean(&known).unwrap_or_default();
    // A stable sort keeps listing order among equals.
    units.sort_by_key(|unit| Reverse(unit.expected.unwrap_or(unknown)));
}

/// Splits up front the suites whose processes cost too much to start for
/// batches handed out as the queue drains: those that batch, whose cost is
/// known, and in which a worker's share of the expected time is less than
/// [`STARTUP_SHARE`] start-ups, so that no batch after the first could be
/// as large as a batch should be. Each becomes one batch per worker (fewer
/// when it has fewer units), balanced by longest processing time first:
/// every unit, longest first, joins the batch expected to end soonest.
/// Every other unit is left as it was, and the queue is ordered longest
/// first again.
pub(crate) fn plan(
    units: Vec<Unit>,
    workers: usize,
    batching: impl Fn(usize) -> Batching,
    cost: impl Fn(usize) -> Option<ProcessCost>,
) -> Vec<Unit> {
    let workers = workers.max(1);
    let weighers: HashMap<usize, Weigher> = suites_of(&units)
        .into_iter()
        .filter(|suite| batching(*suite) == Batching::Batches)
        .filter_map(|suite| Some((suite, Weigher::new(&units, suite, cost(suite)?))))
        .filter(|(suite, weigher)| {
            let total: Duration = units
                .iter()
                .filter(|unit| unit.suite() == *suite)
                .map(|unit| weigher.weigh(unit))
                .sum();
            total / u32::try_from(workers).unwrap_or(u32::MAX) < weigher.cost.min_batch_time()
        })
        .collect();
    if weighers.is_empty() {
        return units;
    }
    let mut planned: BTreeMap<usize, Vec<Unit>> = BTreeMap::new();
    let mut queue = Vec::new();
    for unit in units {
        if weighers.contains_key(&unit.suite()) {
            planned.entry(unit.suite()).or_default().push(unit);
        } else {
            queue.push(unit);
        }
    }
    for (suite, units) in planned {
        queue.extend(balance(units, workers, &weighers[&suite]));
    }
    longest_first(&mut queue);
    queue
}

/// The suites units belong to, each once.
fn suites_of(units: &[Unit]) -> HashSet<usize> {
    units.iter().map(Unit::suite).collect()
}

/// How long a unit of one suite is expected to keep its process busy.
struct Weigher {
    cost: ProcessCost,
    /// What a test without an estimate is expected to take.
    unknown: Duration,
    /// What the process spends per test beyond the tests' own estimated
    /// time (reporting, set-up and tear-down, the process's exit): the
    /// measured time per test less the mean estimate, as estimates come
    /// from the tests' own timestamps.
    overhead: Duration,
}

impl Weigher {
    fn new(units: &[Unit], suite: usize, cost: ProcessCost) -> Weigher {
        let (time, tests) = units
            .iter()
            .filter(|unit| unit.suite() == suite)
            .filter_map(|unit| Some((unit.expected?, unit.tests.len())))
            .fold((Duration::ZERO, 0usize), |(time, tests), (t, n)| {
                (time + t, tests + n)
            });
        let unknown = match u32::try_from(tests) {
            Ok(tests) if tests > 0 => time / tests,
            _ => cost.per_test,
        };
        Weigher {
            cost,
            unknown,
            overhead: cost.per_test.saturating_sub(unknown),
        }
    }

    fn weigh(&self, unit: &Unit) -> Duration {
        let tests = u32::try_from(unit.tests.len()).unwrap_or(u32::MAX);
        unit.expected.unwrap_or(self.unknown * tests) + self.overhead * tests
    }
}

/// One suite's units as at most `batches` planned batches, balanced by
/// longest processing time first.
fn balance(mut units: Vec<Unit>, batches: usize, weigher: &Weigher) -> Vec<Unit> {
    units.sort_by_key(|unit| Reverse(weigher.weigh(unit)));
    let mut planned: Vec<(Duration, Vec<TestCase>)> =
        vec![(Duration::ZERO, Vec::new()); batches.min(units.len())];
    for unit in units {
        let weight = weigher.weigh(&unit);
        // The first of the least loaded, so that ties fill batches in order.
        if let Some(lightest) = planned.iter_mut().min_by_key(|(load, _)| *load) {
            lightest.0 += weight;
            lightest.1.extend(unit.tests);
        }
    }
    planned
        .into_iter()
        .map(|(load, tests)| Unit {
            tests,
            expected: Some(load),
            planned: true,
            again: Again::default(),
        })
        .collect()
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
                    planned: false,
                    again: Again::default(),
                });
            }
        }
    }
    units
}

/// How much of the queue a batch takes: a share of the expected time left, or of the tests left.
enum Share {
    Time { target: Duration, taken: Duration },
    Tests { target: usize, taken: usize },
}

impl Share {
    fn full(&self) -> bool {
        match self {
            Share::Time { target, taken } => taken >= target,
            Share::Tests { target, taken } => taken >= target,
        }
    }

    fn add(&mut self, unit: &Unit) {
        match self {
            Share::Time { taken, .. } => *taken += unit.expected.unwrap_or_default(),
            Share::Tests { taken, .. } => *taken += unit.tests.len(),
        }
    }
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

    /// Plans again what is left (see [`plan`]), as `plan` says: when a
    /// suite's cost is first measured mid-run.
    pub(crate) fn replan(&mut self, plan: impl FnOnce(Vec<Unit>) -> Vec<Unit>) {
        let units = std::mem::take(&mut self.units);
        self.units = plan(units.into()).into();
    }

    /// Puts tests back at the front (a crashed batch's unstarted tests, a failed test's retry, a lost worker's
    /// tests), keeping each group's tests in one unit.
    pub(crate) fn requeue(&mut self, tests: Vec<TestCase>, again: Again) {
        for mut unit in group(tests, &HashMap::new()).into_iter().rev() {
            unit.again = again.clone();
            self.units.push_front(unit);
        }
    }

    /// Whether any unit in the queue satisfies `takes`.
    pub(crate) fn any(&self, takes: impl Fn(&Unit) -> bool) -> bool {
        self.units.iter().any(takes)
    }

    /// The units left, taken out of the queue.
    pub(crate) fn drain(&mut self) -> Vec<Unit> {
        self.units.drain(..).collect()
    }

    /// The next batch among the units `takes` accepts, and which try it is: a planned batch as it is; otherwise
    /// the first such unit of the highest `rank`, plus, for a batching suite, further ones of the same suite and
    /// try up to the guided self-scheduling share. The share is of the expected time left when every unit left
    /// has an expected duration (so the longest tests, first in the queue, do not go out as one batch holding most
    /// of the run), else of the tests left; and at least the suite's `cost` says a batch should hold. Empty when
    /// `takes` accepts none.
    pub(crate) fn next_batch(
        &mut self,
        takes: impl Fn(&Unit) -> bool,
        rank: impl Fn(&Unit) -> i64,
        batching: impl Fn(usize) -> Batching,
        cost: impl Fn(usize) -> Option<ProcessCost>,
    ) -> (Vec<TestCase>, Again) {
        let best = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, unit)| takes(unit))
            // The first of the highest rank: max_by_key keeps the last of equals, so compare reversed positions.
            .max_by_key(|(position, unit)| (rank(unit), std::cmp::Reverse(*position)))
            .map(|(position, _)| position);
        let Some(first) = best.and_then(|position| self.units.remove(position)) else {
            return (Vec::new(), Again::default());
        };
        let suite = first.suite();
        if first.planned || batching(suite) == Batching::OnePerProcess {
            return (first.tests, first.again);
        }
        let cost = cost(suite);
        let mut share = match self.expected_left(suite, &first) {
            Some(left) => Share::Time {
                target: (left / (2 * self.workers) as u32)
                    .max(cost.map_or(Duration::ZERO, |cost| cost.min_batch_time())),
                taken: first.expected.unwrap_or_default(),
            },
            None => Share::Tests {
                target: (self.remaining_in(suite) + first.tests.len())
                    .div_ceil(2 * self.workers)
                    .max(cost.map_or(1, |cost| cost.min_batch_size())),
                taken: first.tests.len(),
            },
        };
        let again = first.again;
        let mut batch = first.tests;
        while !share.full() {
            let joins =
                |unit: &Unit| unit.batches_with(suite) && unit.again == again && takes(unit);
            let Some(position) = self.units.iter().position(joins) else {
                break;
            };
            let Some(unit) = self.units.remove(position) else {
                break;
            };
            share.add(&unit);
            batch.extend(unit.tests);
        }
        (batch, again)
    }

    /// The expected time of `first` and every unit left of `suite`, when each has an expected duration.
    fn expected_left(&self, suite: usize, first: &Unit) -> Option<Duration> {
        self.units
            .iter()
            .filter(|unit| unit.batches_with(suite))
            .chain(std::iter::once(first))
            .map(|unit| unit.expected)
            .sum()
    }

    fn remaining_in(&self, suite: usize) -> usize {
        self.units
            .iter()
            .filter(|unit| unit.batches_with(suite))
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
            let batch = queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0;
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
        assert_eq!(
            queue
                .next_batch(
                    |_| true,
                    |_| 0,
                    |_| Batching::Batches,
                    |_| Some(cost(6, 1000))
                )
                .0
                .len(),
            60
        );
        assert_eq!(
            queue
                .next_batch(
                    |_| true,
                    |_| 0,
                    |_| Batching::Batches,
                    |_| Some(cost(6, 1000))
                )
                .0
                .len(),
            40
        );
    }

    #[test]
    fn with_history_a_batch_takes_a_share_of_the_time_left_not_of_the_tests() {
        // Heavy-tailed: 10 tests of 5 s, then 90 of 0.1 s; longest first.
        let tests: Vec<TestCase> = (0..100).map(|i| test(&format!("t{i:02}"), None)).collect();
        let history = tests
            .iter()
            .enumerate()
            .map(|(i, test)| {
                (
                    test.id.clone(),
                    Duration::from_millis(if i < 10 { 5000 } else { 100 }),
                )
            })
            .collect();
        let mut queue = Queue::new(order(tests, &history), 2);
        // 59 s left over 2 workers: a quarter is 14.75 s, three of the long tests, where a quarter of the tests
        // (25) would have been every long test: 50 s of the 59 in one batch.
        let first = queue
            .next_batch(
                |_| true,
                |_| 0,
                |_| Batching::Batches,
                |_| Some(cost(100, 100_000)),
            )
            .0;
        assert_eq!(first.len(), 3, "{first:?}");
        // Later batches hold at least ten start-ups' worth (1 s) until the queue runs dry.
        let mut times = Vec::new();
        let mut taken = first.len();
        loop {
            let batch = queue
                .next_batch(
                    |_| true,
                    |_| 0,
                    |_| Batching::Batches,
                    |_| Some(cost(100, 100_000)),
                )
                .0;
            if batch.is_empty() {
                break;
            }
            taken += batch.len();
            times.push(batch.iter().map(|test| history[&test.id]).sum::<Duration>());
        }
        assert_eq!(taken, 100);
        assert!(
            times[..times.len() - 1]
                .iter()
                .all(|&time| time >= Duration::from_secs(1)),
            "{times:?}"
        );
    }

    #[test]
    fn a_cost_learned_mid_run_splits_what_is_left() {
        let units = order(
            (0..100).map(|i| test(&format!("t{i}"), None)).collect(),
            &HashMap::new(),
        );
        let mut queue = Queue::new(units, 2);
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            25
        );
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            19
        );
        // The first batch ends: its start-up dwarfs the 56 tests left,
        // which become one batch per worker rather than one for whichever
        // worker comes first.
        queue.replan(|units| plan(units, 2, |_| Batching::Batches, |_| Some(cost(300, 1000))));
        let sizes: Vec<usize> = drain(&mut queue).iter().map(Vec::len).collect();
        assert_eq!(sizes, [28, 28]);
    }

    fn cost(startup_ms: u64, per_test_us: u64) -> ProcessCost {
        ProcessCost {
            startup: Duration::from_millis(startup_ms),
            per_test: Duration::from_micros(per_test_us),
        }
    }

    /// 2 500 quick tests with times in the history (0.1 ms, one in ten
    /// 0.5 ms, one 200 ms), in processes that take 300 ms to start and
    /// 0.3 ms a test.
    fn startup_bound_suite() -> (Vec<TestCase>, HashMap<String, Duration>) {
        let tests: Vec<TestCase> = (0..2500).map(|i| test(&format!("t{i:04}"), None)).collect();
        let history = tests
            .iter()
            .enumerate()
            .map(|(i, test)| {
                let micros = match i {
                    1234 => 200_000,
                    i if i % 10 == 0 => 500,
                    _ => 100,
                };
                (test.id.clone(), Duration::from_micros(micros))
            })
            .collect();
        (tests, history)
    }

    fn drain(queue: &mut Queue) -> Vec<Vec<TestCase>> {
        std::iter::from_fn(|| {
            let batch = queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0;
            (!batch.is_empty()).then_some(batch)
        })
        .collect()
    }

    #[test]
    fn costly_start_up_gets_one_balanced_batch_per_worker() {
        let (tests, history) = startup_bound_suite();
        let units = plan(
            order(tests, &history),
            2,
            |_| Batching::Batches,
            |_| Some(cost(300, 300)),
        );
        let mut queue = Queue::new(units, 2);
        let batches = drain(&mut queue);
        assert_eq!(batches.len(), 2);
        let mut ids: Vec<&str> = batches.iter().flatten().map(|t| t.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 2500);
        // Each test weighs its history plus what a test costs beyond the
        // mean history (0.3 ms - 0.22 ms): the batch with the 200 ms test
        // has that many fewer quick ones.
        let overhead = Duration::from_micros(300) - history.values().sum::<Duration>() / 2500;
        let load = |batch: &[TestCase]| -> Duration {
            batch.iter().map(|t| history[&t.id] + overhead).sum()
        };
        let (first, second) = (load(&batches[0]), load(&batches[1]));
        let gap = first.abs_diff(second);
        assert!(gap <= Duration::from_micros(700), "{first:?} vs {second:?}");
        let with_long = batches
            .iter()
            .find(|batch| batch.iter().any(|t| t.id == "t1234"))
            .map_or(0, Vec::len);
        assert!(
            with_long < 2500 - with_long,
            "{with_long} tests beside the long one"
        );
    }

    #[test]
    fn costly_start_up_without_test_times_splits_by_count() {
        let tests: Vec<TestCase> = (0..101).map(|i| test(&format!("t{i}"), None)).collect();
        let units = plan(
            order(tests, &HashMap::new()),
            3,
            |_| Batching::Batches,
            |_| Some(cost(300, 1000)),
        );
        let sizes: Vec<usize> = units.iter().map(|unit| unit.tests.len()).collect();
        assert_eq!(sizes, [34, 34, 33]);
    }

    #[test]
    fn cheap_start_up_keeps_batches_shrinking() {
        let (tests, history) = startup_bound_suite();
        // 0.3 ms to start: a worker's 1.2 s share is worth 4 000 start-ups.
        let planned = plan(
            order(tests.clone(), &history),
            2,
            |_| Batching::Batches,
            |_| {
                Some(ProcessCost {
                    startup: Duration::from_micros(300),
                    per_test: Duration::from_micros(300),
                })
            },
        );
        let ordered = order(tests, &history);
        assert_eq!(ids(&planned), ids(&ordered));
        let mut queue = Queue::new(planned, 2);
        let batches = drain(&mut queue);
        assert!(batches.len() > 10, "{}", batches.len());
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 2500);
        // The 200 ms test is over a quarter of the expected time left: it goes out alone, then the quick tests
        // in batches whose expected time shrinks (to within one test's).
        assert_eq!(batches[0].len(), 1);
        let times: Vec<Duration> = batches
            .iter()
            .map(|batch| batch.iter().map(|test| history[&test.id]).sum())
            .collect();
        let slack = Duration::from_micros(500);
        assert!(
            times[1..].windows(2).all(|pair| pair[0] + slack >= pair[1]),
            "{times:?}"
        );
    }

    #[test]
    fn nothing_is_planned_without_a_cost_or_for_one_test_per_process() {
        let (tests, history) = startup_bound_suite();
        let ordered = order(tests.clone(), &history);
        let ordered = ids(&ordered);
        let unknown = plan(
            order(tests.clone(), &history),
            2,
            |_| Batching::Batches,
            |_| None,
        );
        assert_eq!(ids(&unknown), ordered);
        let alone = plan(
            order(tests, &history),
            2,
            |_| Batching::OnePerProcess,
            |_| Some(cost(300, 300)),
        );
        assert_eq!(ids(&alone), ordered);
    }

    #[test]
    fn groups_stay_whole_and_few_units_make_few_batches() {
        let tests = vec![
            test("a.1", Some("a")),
            test("b.1", Some("b")),
            test("a.2", Some("a")),
        ];
        let units = plan(
            order(tests, &HashMap::new()),
            4,
            |_| Batching::Batches,
            |_| Some(cost(300, 1000)),
        );
        assert_eq!(ids(&units), [vec!["a.1", "a.2"], vec!["b.1"]]);
    }

    #[test]
    fn only_the_costly_suite_is_planned() {
        let mut tests: Vec<TestCase> = (0..10).map(|i| test(&format!("slow{i}"), None)).collect();
        tests.extend((0..10).map(|i| TestCase {
            suite: 1,
            ..test(&format!("cheap{i}"), None)
        }));
        let history: HashMap<String, Duration> = tests
            .iter()
            .map(|t| (t.id.clone(), Duration::from_millis(10)))
            .collect();
        let units = plan(
            order(tests, &history),
            2,
            |_| Batching::Batches,
            |suite| {
                Some(if suite == 0 {
                    cost(300, 10_000)
                } else {
                    cost(0, 10_000)
                })
            },
        );
        // The two planned batches (50 ms each) go ahead of the 10 ms tests.
        let sizes: Vec<usize> = units.iter().map(|unit| unit.tests.len()).collect();
        assert_eq!(sizes, [5, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert!(units[..2].iter().all(|unit| unit.tests[0].suite == 0));
        let mut queue = Queue::new(units, 2);
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            5
        );
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            5
        );
        // The cheap suite is batched as the queue drains.
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            3
        );
    }

    #[test]
    fn a_crashed_planned_batch_is_batched_as_the_queue_drains() {
        let tests: Vec<TestCase> = (0..40).map(|i| test(&format!("t{i}"), None)).collect();
        let units = plan(
            order(tests, &HashMap::new()),
            2,
            |_| Batching::Batches,
            |_| Some(cost(300, 1000)),
        );
        let mut queue = Queue::new(units, 2);
        let first = queue
            .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
            .0;
        assert_eq!(first.len(), 20);
        queue.requeue(first[5..].to_vec(), Again::default());
        // The requeued tests do not swallow the other planned batch.
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0
                .len(),
            4
        );
        let rest: Vec<usize> = drain(&mut queue).iter().map(Vec::len).collect();
        assert_eq!(rest.iter().sum::<usize>(), 31);
        assert!(rest.contains(&20), "{rest:?}");
    }

    #[test]
    fn one_per_process_suites_take_one_unit() {
        let units = order(vec![test("a", None), test("b", None)], &HashMap::new());
        let mut queue = Queue::new(units, 1);
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::OnePerProcess, |_| None)
                .0
                .len(),
            1
        );
        queue.requeue(vec![test("c", None)], Again::default());
        assert_eq!(
            queue
                .next_batch(|_| true, |_| 0, |_| Batching::Batches, |_| None)
                .0[0]
                .id,
            "c"
        );
    }

    #[test]
    fn requeued_groups_stay_together() {
        let mut queue = Queue::new(Vec::new(), 4);
        queue.requeue(
            vec![
                test("g.1", Some("g")),
                test("h.1", Some("h")),
                test("g.2", Some("g")),
            ],
            Again::default(),
        );
        let first = queue
            .next_batch(|_| true, |_| 0, |_| Batching::OnePerProcess, |_| None)
            .0;
        let ids: Vec<_> = first.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["g.1", "g.2"]);
    }
}
