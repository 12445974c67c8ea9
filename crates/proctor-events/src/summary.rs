//! Counting what happened in a stream.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proctor_subunit::{Event, EventRef, Status, Timestamp};

use crate::{Aggregator, Sink, SinkError, Tally, TestRecord};

/// How a finished test run counts in totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `success` or `xfail`.
    Passed,
    /// `fail`, `uxsuccess`, or a run the stream never finished.
    Failed,
    /// `skip`.
    Skipped,
}

impl Outcome {
    /// The outcome of a run that ended with `status` (`None` or `inprogress`
    /// when the stream ended first, which testtools counts as a failure).
    pub fn of(status: Option<Status>) -> Outcome {
        match status {
            Some(Status::Success | Status::XFail) => Outcome::Passed,
            Some(Status::Skip) => Outcome::Skipped,
            _ => Outcome::Failed,
        }
    }
}

/// Per-status counts of finished runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `success`.
    pub success: usize,
    /// `fail`.
    pub fail: usize,
    /// `skip`.
    pub skip: usize,
    /// `xfail` (counted as passed).
    pub xfail: usize,
    /// `uxsuccess` (counted as failed).
    pub uxsuccess: usize,
    /// Runs the stream never finished (counted as failed).
    pub incomplete: usize,
}

/// Totals of a stream: counts by outcome, the failures with their details,
/// durations. Runs are counted as testtools counts them (so `total` matches
/// `subunit-stats`): listings (`exists`) are not runs, and runs left open at
/// the end of the stream count as failures.
#[derive(Debug, Default)]
pub struct Summary {
    aggregator: Aggregator,
    /// The tag set last merged into `tags`, so repeats are skipped.
    last_tags: Arc<BTreeSet<String>>,
    /// Test runs seen.
    pub total: usize,
    /// Runs that passed (`success`, `xfail`).
    pub passed: usize,
    /// Runs that failed (`fail`, `uxsuccess`, unfinished).
    pub failed: usize,
    /// Runs that were skipped.
    pub skipped: usize,
    /// The same runs by status.
    pub statuses: StatusCounts,
    /// The same runs by test: one verdict per test id (retries tagged by the runner are reruns). Empty in a
    /// [`Summary::runs_only`].
    pub tests: Tally,
    /// Whether runs are tallied by test too.
    runs_only: bool,
    /// Every tag the runs ended with.
    pub tags: BTreeSet<String>,
    /// The failed runs, with their attachments, in the order they ended.
    pub failures: Vec<TestRecord>,
    /// Each run's test id and duration (when timestamped), in the order
    /// they ended.
    pub durations: Vec<(String, Duration)>,
    /// The earliest timestamp in the stream.
    pub first: Option<Timestamp>,
    /// The latest timestamp in the stream.
    pub last: Option<Timestamp>,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// An empty summary that counts runs only, as `subunit-stats` does, and leaves [`Summary::tests`] empty: a
    /// tally by test keeps every test id, a third of the cost of summing up a large stream.
    pub fn runs_only() -> Summary {
        Summary {
            runs_only: true,
            ..Summary::default()
        }
    }

    /// Whether no run failed.
    pub fn was_successful(&self) -> bool {
        self.failed == 0
    }

    /// The time from the first timestamp to the last.
    pub fn wall_time(&self) -> Option<Duration> {
        Some(self.last?.saturating_since(self.first?))
    }

    /// The `n` slowest runs, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, Duration)> {
        let mut durations = self.durations.clone();
        durations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        durations.truncate(n);
        durations
    }

    /// Counts one finished (or abandoned) run.
    pub fn add(&mut self, record: TestRecord) {
        self.total += 1;
        // A summary sees a run when it ends, or at the end of the stream when it never did.
        if !self.runs_only {
            self.tests.add_record(&record, 0);
        }
        let counts = &mut self.statuses;
        match record.status {
            Some(Status::Success) => counts.success += 1,
            Some(Status::Fail) => counts.fail += 1,
            Some(Status::Skip) => counts.skip += 1,
            Some(Status::XFail) => counts.xfail += 1,
            Some(Status::UxSuccess) => counts.uxsuccess += 1,
            Some(Status::InProgress | Status::Exists) | None => counts.incomplete += 1,
        }
        if !Arc::ptr_eq(&record.tags, &self.last_tags) {
            for tag in record.tags.iter() {
                if !self.tags.contains(tag) {
                    self.tags.insert(tag.clone());
                }
            }
            self.last_tags = Arc::clone(&record.tags);
        }
        let duration = record.duration();
        let test_id = match Outcome::of(record.status) {
            Outcome::Passed => {
                self.passed += 1;
                record.test_id
            }
            Outcome::Skipped => {
                self.skipped += 1;
                record.test_id
            }
            Outcome::Failed => {
                self.failed += 1;
                let test_id = record.test_id.clone();
                self.failures.push(record);
                test_id
            }
        };
        if let Some(duration) = duration {
            self.durations.push((test_id, duration));
        }
    }
}

impl Sink for Summary {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.event_ref(&event.view())
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        if let Some(timestamp) = event.timestamp {
            self.first = Some(self.first.map_or(timestamp, |t| t.min(timestamp)));
            self.last = Some(self.last.map_or(timestamp, |t| t.max(timestamp)));
        }
        if let Some(record) = self.aggregator.push_ref(event) {
            self.add(record);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for record in self.aggregator.finish() {
            self.add(record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same stream as the reference check: subunit-stats reports total 8,
    /// 4 failed, 1 skipped for it (it counts uxsuccess as passed, we count it
    /// as failed, as testtools' wasSuccessful does).
    #[test]
    fn counts_like_the_reference() {
        let mut summary = Summary::new();
        let statuses = [
            Status::Success,
            Status::Fail,
            Status::XFail,
            Status::UxSuccess,
            Status::Skip,
            Status::Exists,
        ];
        for (i, status) in statuses.into_iter().enumerate() {
            let id = format!("t{i}");
            summary
                .event(&Event::test(&id, Status::InProgress).tagged(format!("a{i}")))
                .expect("counts");
            summary
                .event(&Event::test(&id, status).tagged(format!("b{i}")))
                .expect("counts");
        }
        summary
            .event(&Event::test("onlyinprog", Status::InProgress))
            .expect("counts");
        summary
            .event(&Event::file(Some("onlyfile".into()), "x", &b"y"[..], false))
            .expect("counts");
        summary.finish().expect("finishes");
        assert_eq!(
            (
                summary.total,
                summary.passed,
                summary.failed,
                summary.skipped
            ),
            (8, 2, 5, 1)
        );
        assert_eq!(summary.statuses.uxsuccess, 1);
        assert_eq!(summary.statuses.incomplete, 3);
        let tags: Vec<_> = summary.tags.iter().map(String::as_str).collect();
        assert_eq!(tags, ["a5", "b0", "b1", "b2", "b3", "b4"]);
        assert!(!summary.was_successful());
    }
}
