//! Proctor's one results model: what a test run came to ([`RunStatus`]), and how a test's runs combine into one
//! verdict per test ([`TestVerdict`]), counted by [`Tally`].
//!
//! Every reader of results uses these: the agent's verdict on a job, the server's per-test rows, `proctor results`,
//! the local runner's summary. So a test counts the same everywhere: a run the stream started and never finished
//! failed (with the reason it did not finish); a test failed anywhere in its latest try failed; a test that failed
//! and then passed on a rerun is flaky.

use std::fmt;
use std::str::FromStr;

use hashbrown::HashMap;
use proctor_subunit::Status;

use crate::{Outcome, TestRecord};

/// The tag the local runner puts on a retried run: `proctor-retry:N` for its Nth retry. A run without it is a
/// first try. It is how a stream says "this run is a rerun", which route codes cannot (a retry may run on any
/// worker).
pub const RETRY_TAG_PREFIX: &str = "proctor-retry:";

/// What one test run came to: a subunit status, or, for a run that never ended, that it is still running or that
/// it did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Started, and its stream goes on (`inprogress`).
    Running,
    /// `success`.
    Success,
    /// `fail`.
    Fail,
    /// `skip`.
    Skip,
    /// `xfail`: failed as expected, which passes.
    XFail,
    /// `uxsuccess`: passed against expectation, which fails.
    UxSuccess,
    /// Started, and its stream ended before it did: a failure, with the reason kept beside it.
    Unfinished,
}

impl RunStatus {
    /// Every status, in the order reports list them.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Fail,
        RunStatus::Skip,
        RunStatus::XFail,
        RunStatus::UxSuccess,
        RunStatus::Unfinished,
    ];

    /// The status of a run that ended (or whose stream did) with `status` as its last subunit status: a run left
    /// `inprogress`, or with no status at all, did not finish. ([`RunStatus::Running`] is for a run whose stream
    /// goes on, which only the reader of a live stream knows.)
    pub fn of(status: Option<Status>) -> RunStatus {
        match status {
            Some(Status::Success) => RunStatus::Success,
            Some(Status::Fail) => RunStatus::Fail,
            Some(Status::Skip) => RunStatus::Skip,
            Some(Status::XFail) => RunStatus::XFail,
            Some(Status::UxSuccess) => RunStatus::UxSuccess,
            Some(Status::InProgress | Status::Exists) | None => RunStatus::Unfinished,
        }
    }

    /// The name stored and shown: the subunit status's (`inprogress` while running), or `unfinished`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "inprogress",
            RunStatus::Success => "success",
            RunStatus::Fail => "fail",
            RunStatus::Skip => "skip",
            RunStatus::XFail => "xfail",
            RunStatus::UxSuccess => "uxsuccess",
            RunStatus::Unfinished => "unfinished",
        }
    }

    /// How the run counts in totals; `None` while it runs.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            RunStatus::Running => None,
            RunStatus::Success | RunStatus::XFail => Some(Outcome::Passed),
            RunStatus::Skip => Some(Outcome::Skipped),
            RunStatus::Fail | RunStatus::UxSuccess | RunStatus::Unfinished => Some(Outcome::Failed),
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`RunStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a test run status (inprogress, success, fail, skip, xfail, uxsuccess or unfinished)")]
pub struct UnknownRunStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownRunStatus;

    fn from_str(name: &str) -> Result<RunStatus, UnknownRunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownRunStatus(name.to_owned()))
    }
}

/// Which try of a test a run was: the job's attempt (a requeued job runs everything again) and, within it, the
/// runner's retry. Later tries are reruns of earlier ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Try {
    /// The job's attempt, from 1 (0 outside a lab job).
    pub attempt: u32,
    /// The retry within the attempt: 0 for the first run, N for a run tagged `proctor-retry:N`.
    pub retry: u32,
}

impl Try {
    /// The try of `record` within the job's `attempt`.
    pub fn of(record: &TestRecord, attempt: u32) -> Try {
        Try {
            attempt,
            retry: retry_of(record.tags.iter().map(String::as_str)),
        }
    }
}

/// The retry a run's tags say it is (the largest `proctor-retry:N`), 0 when none does.
pub fn retry_of<'a>(tags: impl IntoIterator<Item = &'a str>) -> u32 {
    tags.into_iter()
        .filter_map(|tag| tag.strip_prefix(RETRY_TAG_PREFIX)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// How a test's runs combine into one verdict.
///
/// Runs of the latest try decide; skipped runs decide nothing (a test only skipped is skipped):
/// - a run of the latest try still running: running;
/// - a run of the latest try failed (fail, uxsuccess, unfinished) — on any route, on any worker: failed;
/// - the latest try passed and an earlier try failed: flaky (it passed only on a rerun);
/// - otherwise: passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestVerdict {
    /// Every deciding run passed.
    Passed,
    /// A run of its latest try failed.
    Failed,
    /// It failed, then passed on a rerun.
    Flaky,
    /// Every run was skipped.
    Skipped,
    /// A run of its latest try has not ended.
    Running,
}

impl TestVerdict {
    /// The verdict of a test with these runs, in any order.
    pub fn combine(runs: impl IntoIterator<Item = (Try, RunStatus)>) -> TestVerdict {
        let mut combined = Combined::default();
        for (at, status) in runs {
            combined.add(at, status);
        }
        combined.verdict()
    }

    /// The name shown: `passed`, `failed`, `flaky`, `skipped` or `running`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestVerdict::Passed => "passed",
            TestVerdict::Failed => "failed",
            TestVerdict::Flaky => "flaky",
            TestVerdict::Skipped => "skipped",
            TestVerdict::Running => "running",
        }
    }
}

impl fmt::Display for TestVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a test's runs so far say, folded run by run in any order (constant size, so a tally of a million tests
/// keeps no runs).
#[derive(Clone, Copy, Debug, Default)]
struct Combined {
    /// The latest try with a deciding (not skipped) run.
    latest: Option<Try>,
    latest_failed: bool,
    latest_running: bool,
    earlier_failed: bool,
}

impl Combined {
    fn add(&mut self, at: Try, status: RunStatus) {
        let (failed, running) = match status.outcome() {
            Some(Outcome::Skipped) => return,
            Some(outcome) => (outcome == Outcome::Failed, false),
            None => (false, true),
        };
        match self.latest {
            Some(latest) if at < latest => self.earlier_failed |= failed,
            Some(latest) if at == latest => {
                self.latest_failed |= failed;
                self.latest_running |= running;
            }
            _ => {
                self.earlier_failed |= self.latest_failed;
                *self = Combined {
                    latest: Some(at),
                    latest_failed: failed,
                    latest_running: running,
                    earlier_failed: self.earlier_failed,
                };
            }
        }
    }

    fn verdict(&self) -> TestVerdict {
        if self.latest.is_none() {
            TestVerdict::Skipped
        } else if self.latest_running {
            TestVerdict::Running
        } else if self.latest_failed {
            TestVerdict::Failed
        } else if self.earlier_failed {
            TestVerdict::Flaky
        } else {
            TestVerdict::Passed
        }
    }
}

/// Counts of runs by how they count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Every run.
    pub total: usize,
    /// Runs that passed (`success`, `xfail`).
    pub passed: usize,
    /// Runs that failed (`fail`, `uxsuccess`, unfinished).
    pub failed: usize,
    /// Runs that were skipped.
    pub skipped: usize,
    /// Runs still going.
    pub running: usize,
}

/// Counts of tests by their [`TestVerdict`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    /// Distinct test ids.
    pub total: usize,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that failed, then passed on a rerun.
    pub flaky: usize,
    /// Tests only skipped.
    pub skipped: usize,
    /// Tests still running.
    pub running: usize,
}

/// Runs counted as runs (the way `subunit-stats` counts them) and as tests (one verdict per test id).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    runs: RunCounts,
    tests: HashMap<String, Combined>,
}

impl Tally {
    /// A tally of nothing.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Counts one run of `test_id`.
    pub fn add(&mut self, test_id: &str, at: Try, status: RunStatus) {
        self.runs.total += 1;
        match status.outcome() {
            Some(Outcome::Passed) => self.runs.passed += 1,
            Some(Outcome::Failed) => self.runs.failed += 1,
            Some(Outcome::Skipped) => self.runs.skipped += 1,
            None => self.runs.running += 1,
        }
        // Looked up by the borrowed id: the id is copied only for a test not seen before.
        self.tests.entry_ref(test_id).or_default().add(at, status);
    }

    /// Counts a run the fold ended (or whose stream ended first), in the job's `attempt` (0 outside a lab job).
    pub fn add_record(&mut self, record: &TestRecord, attempt: u32) {
        self.add(
            &record.test_id,
            Try::of(record, attempt),
            RunStatus::of(record.status),
        );
    }

    /// The runs' counts.
    pub fn runs(&self) -> RunCounts {
        self.runs
    }

    /// The tests' counts.
    pub fn tests(&self) -> TestCounts {
        let mut counts = TestCounts {
            total: self.tests.len(),
            ..TestCounts::default()
        };
        for combined in self.tests.values() {
            match combined.verdict() {
                TestVerdict::Passed => counts.passed += 1,
                TestVerdict::Failed => counts.failed += 1,
                TestVerdict::Flaky => counts.flaky += 1,
                TestVerdict::Skipped => counts.skipped += 1,
                TestVerdict::Running => counts.running += 1,
            }
        }
        counts
    }

    /// The verdict on `test_id`, when it ran.
    pub fn verdict(&self, test_id: &str) -> Option<TestVerdict> {
        self.tests.get(test_id).map(Combined::verdict)
    }

    /// The ids of the tests with `verdict`, sorted.
    pub fn with_verdict(&self, verdict: TestVerdict) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .tests
            .iter()
            .filter(|(_, combined)| combined.verdict() == verdict)
            .map(|(id, _)| id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// A tally of the runs of one stream (no lab attempt).
impl<'a> FromIterator<&'a TestRecord> for Tally {
    fn from_iter<I: IntoIterator<Item = &'a TestRecord>>(records: I) -> Tally {
        let mut tally = Tally::new();
        for record in records {
            tally.add_record(record, 0);
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(retry: u32) -> Try {
        Try { attempt: 1, retry }
    }

    #[test]
    fn a_failure_on_any_route_of_the_latest_try_fails_the_test() {
        use RunStatus::*;
        let verdict = |runs: &[(Try, RunStatus)]| TestVerdict::combine(runs.iter().copied());
        assert_eq!(
            verdict(&[(first(0), Fail), (first(0), Success)]),
            TestVerdict::Failed
        );
        assert_eq!(
            verdict(&[(first(0), Success), (first(0), Unfinished)]),
            TestVerdict::Failed
        );
        assert_eq!(
            verdict(&[(first(0), Fail), (first(1), Success)]),
            TestVerdict::Flaky
        );
        assert_eq!(
            verdict(&[(first(1), Success), (first(0), Fail)]),
            TestVerdict::Flaky
        );
        assert_eq!(
            verdict(&[(first(0), Fail), (first(1), Skip)]),
            TestVerdict::Failed
        );
        assert_eq!(
            verdict(&[(first(0), Skip), (first(0), Skip)]),
            TestVerdict::Skipped
        );
        assert_eq!(
            verdict(&[(first(0), XFail), (first(0), Skip)]),
            TestVerdict::Passed
        );
        assert_eq!(verdict(&[(first(0), UxSuccess)]), TestVerdict::Failed);
        assert_eq!(
            verdict(&[(first(0), Fail), (first(1), Running)]),
            TestVerdict::Running
        );
        let requeued = Try {
            attempt: 2,
            retry: 0,
        };
        assert_eq!(
            verdict(&[(first(3), Unfinished), (requeued, Success)]),
            TestVerdict::Flaky
        );
        assert_eq!(verdict(&[]), TestVerdict::Skipped);
    }

    #[test]
    fn a_tally_counts_runs_and_tests() {
        let mut tally = Tally::new();
        tally.add("a.ok", first(0), RunStatus::Success);
        tally.add("a.hang", first(0), RunStatus::Unfinished);
        tally.add("a.dup", first(0), RunStatus::Fail);
        tally.add("a.dup", first(0), RunStatus::Success);
        let runs = tally.runs();
        assert_eq!((runs.total, runs.passed, runs.failed), (4, 2, 2));
        let tests = tally.tests();
        assert_eq!((tests.total, tests.passed, tests.failed), (3, 1, 2));
        assert_eq!(tally.with_verdict(TestVerdict::Failed), ["a.dup", "a.hang"]);
    }

    #[test]
    fn statuses_round_trip_by_name() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert!("passed".parse::<RunStatus>().is_err());
        assert_eq!(
            retry_of(["worker-0", "proctor-retry:2", "proctor-retry:x"]),
            2
        );
    }
}
