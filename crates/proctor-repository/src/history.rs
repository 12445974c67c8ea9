//! Per-test history across runs, kept in `index.json`: counts over every run
//! and the last [`HISTORY_WINDOW`] outcomes and durations, from which the
//! scheduler's expected durations, "slowest" and "flaky" are computed; and
//! per suite, what its test processes cost in the last [`HISTORY_WINDOW`]
//! runs (start-up and time per test), from which the runner decides how
//! many processes a run is worth.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use proctor_events::{Outcome, RunStatus, TestRecord, TestVerdict, Try};
use serde::{Deserialize, Serialize};

use crate::layout::{read_optional, write_atomically};
use crate::RepoError;

/// How many of its most recent runs each test's history keeps in detail.
/// Bounding it keeps the index's size proportional to the number of tests,
/// not of runs (10 000 tests take about 4 MB), while ten samples are enough
/// for a median that shrugs off one slow run and for seeing a test flip.
pub const HISTORY_WINDOW: usize = 10;

/// [`Outcome`] on disk, in short words.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Outcome")]
enum OutcomeOnDisk {
    #[serde(rename = "pass")]
    Passed,
    #[serde(rename = "fail")]
    Failed,
    #[serde(rename = "skip")]
    Skipped,
}

/// Optional durations on disk as fractional seconds, which people can read.
mod seconds {
    use std::time::Duration;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        duration.map(|d| d.as_secs_f64()).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(D::Error::custom))
            .transpose()
    }

    /// Durations that are always there, in the same form.
    pub(super) mod always {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub(in crate::history) fn serialize<S: Serializer>(
            duration: &Duration,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            super::serialize(&Some(*duration), serializer)
        }

        pub(in crate::history) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Duration, D::Error> {
            use serde::de::Error;
            super::deserialize(deserializer)?
                .ok_or_else(|| D::Error::custom("a duration is missing"))
        }
    }
}

/// What one suite's test processes cost in a run: how long a process took
/// to start its first test, and then how long it took per test (the tests'
/// own time plus whatever the process spends between and after them), the
/// medians over the run's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCost {
    /// From the process's start to its first test.
    #[serde(with = "seconds::always")]
    pub startup: Duration,
    /// From its first test to its exit, per test it finished.
    #[serde(with = "seconds::always")]
    pub per_test: Duration,
}

/// One run's [`ProcessCost`] for a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// The run.
    pub run: u64,
    /// What its processes cost.
    #[serde(flatten)]
    pub cost: ProcessCost,
}

/// One suite's history: what its processes cost in its most recent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteHistory {
    /// Oldest first, at most [`HISTORY_WINDOW`].
    pub recent: VecDeque<ProcessSample>,
}

impl SuiteHistory {
    /// What the suite's processes are expected to cost: the median start-up
    /// and the median time per test of its recent runs, so that one run on
    /// a loaded machine does not change how the next one is split.
    pub fn expected_cost(&self) -> Option<ProcessCost> {
        let startup = median(self.recent.iter().map(|s| s.cost.startup).collect())?;
        let per_test = median(self.recent.iter().map(|s| s.cost.per_test).collect())?;
        Some(ProcessCost { startup, per_test })
    }

    fn add(&mut self, sample: ProcessSample) {
        if self.recent.len() == HISTORY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
    }
}

/// How one test did in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The run.
    pub run: u64,
    /// How its last attempt in that run ended.
    #[serde(rename = "o", with = "OutcomeOnDisk")]
    pub outcome: Outcome,
    /// How long its last attempt took, when the stream was timestamped.
    #[serde(
        rename = "s",
        with = "seconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    /// Whether it failed and then passed on a retry within that run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

/// One test's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestHistory {
    /// Finished runs that ran it (a run that retried it counts once).
    pub runs: u64,
    /// Of those, the runs whose last attempt passed.
    pub passed: u64,
    /// ... failed.
    pub failed: u64,
    /// ... was skipped.
    pub skipped: u64,
    /// Its most recent runs, oldest first, at most [`HISTORY_WINDOW`].
    pub recent: VecDeque<Sample>,
}

impl TestHistory {
    /// How long the test is expected to take: the median duration of its
    /// recent passing runs, or of all its recent timed runs when none passed.
    ///
    /// The median, not the mean, so that one run slowed by a loaded machine
    /// does not reorder the schedule; recent runs only, so that a test that
    /// became slower (or faster) is rescheduled within a few runs. Passing
    /// runs first, as a failure can take any time (an early assertion, or a
    /// time limit).
    pub fn expected_duration(&self) -> Option<Duration> {
        let durations = |passed_only: bool| {
            self.recent
                .iter()
                .filter(|sample| !passed_only || sample.outcome == Outcome::Passed)
                .filter_map(|sample| sample.duration)
                .collect::<Vec<_>>()
        };
        median(durations(true)).or_else(|| median(durations(false)))
    }

    /// How often its outcome changed between pass and fail over its recent
    /// runs (skips are not a verdict and are passed over).
    pub fn flips(&self) -> usize {
        let verdicts: Vec<Outcome> = self
            .recent
            .iter()
            .map(|sample| sample.outcome)
            .filter(|outcome| *outcome != Outcome::Skipped)
            .collect();
        verdicts
            .windows(2)
            .filter(|pair| pair[0] != pair[1])
            .count()
    }

    /// In how many of its recent runs it failed and then passed on a retry.
    pub fn retried(&self) -> usize {
        self.recent.iter().filter(|sample| sample.retried).count()
    }

    fn add(&mut self, sample: Sample) {
        self.runs += 1;
        match sample.outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped => self.skipped += 1,
        }
        if self.recent.len() == HISTORY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
    }
}

fn median(mut durations: Vec<Duration>) -> Option<Duration> {
    durations.sort_unstable();
    let middle = durations.len() / 2;
    match durations.len() {
        0 => None,
        n if n % 2 == 1 => Some(durations[middle]),
        _ => Some((durations[middle - 1] + durations[middle]) / 2),
    }
}

/// A test whose results are not to be trusted, as [`History::flaky`] finds
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlakyTest {
    /// The test.
    pub test_id: String,
    /// Recent runs in which it failed and then passed on a retry.
    pub retried: usize,
    /// Changes between pass and fail over its recent runs.
    pub flips: usize,
    /// How many recent runs these are counted over.
    pub runs: usize,
}

/// Every test's and every suite's history: what `index.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    tests: BTreeMap<String, TestHistory>,
    /// By suite name; absent from indexes written before it was kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    suites: BTreeMap<String, SuiteHistory>,
}

impl History {
    /// The history of one test.
    pub fn test(&self, test_id: &str) -> Option<&TestHistory> {
        self.tests.get(test_id)
    }

    /// Every test with a history, by id.
    pub fn tests(&self) -> impl Iterator<Item = (&str, &TestHistory)> {
        self.tests
            .iter()
            .map(|(id, history)| (id.as_str(), history))
    }

    /// How many tests have a history.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    /// Whether no test has a history yet.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Each test's [expected duration](TestHistory::expected_duration), for
    /// the scheduler; tests never timed are left out.
    pub fn expected_durations(&self) -> HashMap<String, Duration> {
        self.tests
            .iter()
            .filter_map(|(id, history)| Some((id.clone(), history.expected_duration()?)))
            .collect()
    }

    /// The history of one suite's processes, by the suite's name.
    pub fn suite(&self, name: &str) -> Option<&SuiteHistory> {
        self.suites.get(name)
    }

    /// Each suite's [expected process cost](SuiteHistory::expected_cost),
    /// by suite name, for the runner; suites never measured are left out.
    pub fn process_costs(&self) -> HashMap<String, ProcessCost> {
        self.suites
            .iter()
            .filter_map(|(name, history)| Some((name.clone(), history.expected_cost()?)))
            .collect()
    }

    /// The `n` tests with the longest expected durations, longest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, Duration)> {
        let mut durations: Vec<_> = self.expected_durations().into_iter().collect();
        durations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        durations.truncate(n);
        durations
    }

    /// The flaky tests: those that passed on a retry after failing within a
    /// run, or whose outcome went back and forth across recent runs (at
    /// least two flips: one flip is a test that broke or was fixed). Most
    /// suspicious first.
    pub fn flaky(&self) -> Vec<FlakyTest> {
        let mut flaky: Vec<FlakyTest> = self
            .tests
            .iter()
            .map(|(id, history)| FlakyTest {
                test_id: id.clone(),
                retried: history.retried(),
                flips: history.flips(),
                runs: history.recent.len(),
            })
            .filter(|test| test.retried > 0 || test.flips >= 2)
            .collect();
        flaky.sort_by(|a, b| {
            (b.retried + b.flips)
                .cmp(&(a.retried + a.flips))
                .then_with(|| a.test_id.cmp(&b.test_id))
        });
        flaky
    }

    /// Adds a finished run's records (in the order they ended) and what its
    /// suites' processes cost. Tests the run left unfinished are not a
    /// verdict and are not recorded.
    pub(crate) fn record_run(
        &mut self,
        run: u64,
        records: &[TestRecord],
        processes: &BTreeMap<String, ProcessCost>,
    ) {
        for (suite, cost) in processes {
            self.suites
                .entry(suite.clone())
                .or_default()
                .add(ProcessSample { run, cost: *cost });
        }
        let mut attempts: BTreeMap<&str, Vec<&TestRecord>> = BTreeMap::new();
        for record in records.iter().filter(|record| record.is_complete()) {
            attempts.entry(&record.test_id).or_default().push(record);
        }
        for (test_id, attempts) in attempts {
            if let Some(sample) = sample_of(run, &attempts) {
                self.tests
                    .entry(test_id.to_owned())
                    .or_default()
                    .add(sample);
            }
        }
    }

    /// Reads `index.json`; a repository without one has no history yet.
    pub(crate) fn read(path: &Path) -> Result<History, RepoError> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(History::default());
        };
        serde_json::from_slice(&bytes).map_err(|source| RepoError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Replaces `index.json`.
    pub(crate) fn write(&self, path: &Path) -> Result<(), RepoError> {
        let json = serde_json::to_vec(self).map_err(|source| RepoError::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomically(path, &json)
    }
}

/// One test's sample from its attempts in one run, in the order they ended: its verdict by the one results model
/// (flaky is a pass that needed a retry), and the duration of its last attempt.
fn sample_of(run: u64, attempts: &[&TestRecord]) -> Option<Sample> {
    let last = attempts.last()?;
    let verdict = TestVerdict::combine(
        attempts
            .iter()
            .map(|record| (Try::of(record, 0), RunStatus::of(record.status))),
    );
    let (outcome, retried) = match verdict {
        TestVerdict::Passed => (Outcome::Passed, false),
        TestVerdict::Flaky => (Outcome::Passed, true),
        TestVerdict::Skipped => (Outcome::Skipped, false),
        TestVerdict::Failed | TestVerdict::Running => (Outcome::Failed, false),
    };
    Some(Sample {
        run,
        outcome,
        duration: last.duration(),
        retried,
    })
}

#[cfg(test)]
mod tests {
    use proctor_subunit::{Event, Status, Timestamp};

    use super::*;

    fn record(id: &str, status: Status, seconds: u32) -> TestRecord {
        let mut aggregator = proctor_events::Aggregator::new();
        aggregator.push(&Event::test(id, Status::InProgress).at(Timestamp::new(100, 0)));
        aggregator
            .push(&Event::test(id, status).at(Timestamp::new(100 + seconds, 0)))
            .unwrap_or_else(|| panic!("{id} finished"))
    }

    #[test]
    fn expected_duration_is_the_median_of_recent_passes() {
        let mut history = History::default();
        for (run, seconds) in [(0, 1), (1, 100), (2, 3), (3, 2)] {
            history.record_run(
                run,
                &[record("t", Status::Success, seconds)],
                &BTreeMap::new(),
            );
        }
        history.record_run(4, &[record("t", Status::Fail, 500)], &BTreeMap::new());
        let test = history.test("t").expect("recorded");
        assert_eq!(test.expected_duration(), Some(Duration::from_millis(2500)));
        assert_eq!((test.runs, test.passed, test.failed), (5, 4, 1));
    }

    #[test]
    fn failures_count_when_nothing_passed() {
        let mut history = History::default();
        history.record_run(0, &[record("t", Status::Fail, 7)], &BTreeMap::new());
        assert_eq!(
            history.slowest(1),
            vec![("t".to_owned(), Duration::from_secs(7))]
        );
    }

    #[test]
    fn window_keeps_the_most_recent_runs() {
        let mut history = History::default();
        for run in 0..(HISTORY_WINDOW as u64 + 5) {
            history.record_run(run, &[record("t", Status::Success, 1)], &BTreeMap::new());
        }
        let test = history.test("t").expect("recorded");
        assert_eq!(test.recent.len(), HISTORY_WINDOW);
        assert_eq!(test.recent.front().map(|s| s.run), Some(5));
        assert_eq!(test.runs, HISTORY_WINDOW as u64 + 5);
    }

    #[test]
    fn flaky_by_retry_or_by_flipping() {
        let mut history = History::default();
        let (s, f, k) = (Status::Success, Status::Fail, Status::Skip);
        let tests = [
            ("broke_then_fixed", [f, f, f, s]),
            ("flips", [s, f, s, f]),
            ("skipped_between", [f, k, s, f]),
        ];
        for run in 0..4 {
            let records: Vec<_> = tests
                .iter()
                .map(|(id, statuses)| record(id, statuses[run], 1))
                .collect();
            history.record_run(run as u64, &records, &BTreeMap::new());
        }
        // The runner tags a retry's run, which is how a rerun is told from a second run of the same test.
        let mut rerun = record("retried", Status::Success, 1);
        rerun.tags = std::sync::Arc::new(std::collections::BTreeSet::from([format!(
            "{}1",
            proctor_events::RETRY_TAG_PREFIX
        )]));
        history.record_run(
            9,
            &[record("retried", Status::Fail, 1), rerun],
            &BTreeMap::new(),
        );
        let flaky: Vec<(String, usize, usize)> = history
            .flaky()
            .into_iter()
            .map(|t| (t.test_id, t.retried, t.flips))
            .collect();
        assert_eq!(
            flaky,
            vec![
                ("flips".to_owned(), 0, 3),
                ("skipped_between".to_owned(), 0, 2),
                ("retried".to_owned(), 1, 0),
            ]
        );
        let retried = history.test("retried").expect("recorded");
        assert_eq!((retried.runs, retried.passed), (1, 1));
    }

    #[test]
    fn unfinished_tests_are_not_recorded() {
        let mut aggregator = proctor_events::Aggregator::new();
        aggregator.push(&Event::test("cut", Status::InProgress));
        let records = aggregator.finish();
        let mut history = History::default();
        history.record_run(0, &records, &BTreeMap::new());
        assert!(history.is_empty());
    }

    #[test]
    fn process_costs_are_the_medians_of_recent_runs() {
        let mut history = History::default();
        let cost = |startup_ms, per_test_us| ProcessCost {
            startup: Duration::from_millis(startup_ms),
            per_test: Duration::from_micros(per_test_us),
        };
        for (run, startup, per_test) in [(0, 900, 1), (1, 300, 300), (2, 310, 280)] {
            let processes = BTreeMap::from([("unit".to_owned(), cost(startup, per_test))]);
            history.record_run(run, &[], &processes);
        }
        assert_eq!(history.process_costs()["unit"], cost(310, 280));
        for run in 3..(HISTORY_WINDOW as u64 + 5) {
            let processes = BTreeMap::from([("unit".to_owned(), cost(20, 5))]);
            history.record_run(run, &[], &processes);
        }
        let suite = history.suite("unit").expect("recorded");
        assert_eq!(suite.recent.len(), HISTORY_WINDOW);
        assert_eq!(suite.expected_cost(), Some(cost(20, 5)));
        assert!(history.suite("other").is_none());
    }

    #[test]
    fn round_trips_through_json() {
        let mut history = History::default();
        history.record_run(0, &[record("t", Status::Success, 2)], &BTreeMap::new());
        let json = serde_json::to_string(&history).expect("serialises");
        assert_eq!(
            json,
            r#"{"tests":{"t":{"runs":1,"passed":1,"failed":0,"skipped":0,"recent":[{"run":0,"o":"pass","s":2.0}]}}}"#
        );
        let back: History = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, history);
        let processes = BTreeMap::from([(
            "unit".to_owned(),
            ProcessCost {
                startup: Duration::from_millis(250),
                per_test: Duration::from_micros(500),
            },
        )]);
        history.record_run(1, &[], &processes);
        let json = serde_json::to_string(&history).expect("serialises");
        assert!(
            json.ends_with(
                r#","suites":{"unit":{"recent":[{"run":1,"startup":0.25,"per_test":0.0005}]}}}"#
            ),
            "{json}"
        );
        let back: History = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, history);
        let negative = json.replace("2.0", "-1.0");
        assert!(serde_json::from_str::<History>(&negative).is_err());
    }
}
