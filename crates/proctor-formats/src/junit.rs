//! JUnit XML reports, as GitLab, Jenkins and GitHub read them.
//!
//! [`JunitSink`] collects a stream's test runs (through
//! [`proctor_events::Aggregator`]) and renders them with the `quick-junit`
//! crate as one `<testsuite>` inside `<testsuites>`.
//!
//! # Mapping
//!
//! | subunit run | JUnit `<testcase>` |
//! |---|---|
//! | `success` | passed (no child element) |
//! | `xfail` | passed; `expected failure: <reason>` in `<system-out>` |
//! | `fail` | `<failure message=…>` with the `traceback` (else every text attachment) as its text |
//! | `uxsuccess` | `<failure message="unexpected success">` |
//! | `skip` | `<skipped message=…>` with the `reason` attachment as the message |
//! | never finished | `<error message="test did not finish">` |
//!
//! The class name is the test id up to its last `.` (not counting a `.` inside
//! the parameters in parentheses, nor a trailing one) and the name is the rest;
//! an id without such a dot gets an empty class name. This is exactly the split
//! python-subunit's `subunit2junitxml` (the `junitxml` package) makes. `time`
//! is the run's duration (`0.000` when the stream had no timestamps),
//! `timestamp` its start; `stdout` and `stderr` attachments become
//! `<system-out>` and `<system-err>`, and `stdout`/`stderr` files outside any
//! test become the suite's.
//!
//! Deliberate differences from `subunit2junitxml`: failures carry a `message`
//! attribute (the first line of a `reason` attachment, else the last line of
//! the traceback), a run the stream never finished is an `<error>` rather than
//! a `<failure>` (the test did not fail, the run broke), captured output is
//! kept, the suite is wrapped in `<testsuites>` and counts skipped tests in a
//! `skipped` attribute, and retried tests can be reported as flaky (below).
//!
//! # Retries
//!
//! [`JunitSink::add_attempts`] takes the runs of one test in the order they
//! happened and makes one `<testcase>` of them, with the status of the test's
//! verdict by Proctor's one results model (`proctor_events::TestVerdict`): a
//! failed run of its latest try (a run tagged `proctor-retry:N` is the Nth
//! retry) fails it, else its last run decides; when the case passed, its
//! other failed runs become `<flakyFailure>` / `<flakyError>` elements (a
//! flaky test), otherwise `<rerunFailure>` / `<rerunError>`. [`JunitSink::group_retries`] makes the sink do the same for
//! repeated runs of a test id within its own stream.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use proctor_events::{
    Aggregator, Attachment, Outcome, RunStatus, Sink, SinkError, TestRecord, TestVerdict, Try,
};
use proctor_subunit::{Event, Status, Timestamp};
use quick_junit::{
    NonSuccessKind, Report, SerializeError, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

/// The suite name used unless [`JunitSink::with_suite_name`] sets another.
pub const DEFAULT_SUITE_NAME: &str = "proctor";

/// Why a JUnit report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// Serializing or writing the XML failed.
    #[error("cannot write the JUnit XML report: {0}")]
    Serialize(#[from] SerializeError),
}

/// The runs of one `<testcase>`, oldest first, and whether each is a retry of the one before
/// ([`JunitSink::add_attempts`]) rather than a run whose tags say which try it was.
#[derive(Debug)]
struct Case {
    runs: Vec<TestRecord>,
    successive: bool,
}

impl Case {
    /// One run found in the stream.
    fn of(record: TestRecord) -> Case {
        Case {
            runs: vec![record],
            successive: false,
        }
    }

    /// Which try of its test the `index`th run was.
    fn try_of(&self, index: usize, record: &TestRecord) -> Try {
        if self.successive {
            Try {
                attempt: 0,
                retry: u32::try_from(index).unwrap_or(u32::MAX),
            }
        } else {
            Try::of(record, 0)
        }
    }
}

/// A sink that collects test runs and renders them as a JUnit XML report.
///
/// Feed it events, call [`Sink::finish`] (which records runs the stream left
/// open as errors), then [`JunitSink::write_report`] or
/// [`JunitSink::to_xml_string`].
#[derive(Debug)]
pub struct JunitSink {
    suite_name: String,
    group_retries: bool,
    aggregator: Aggregator,
    /// Each test case's runs, oldest first; never empty.
    cases: Vec<Case>,
    /// Where each test id's case is in `cases`, when grouping retries.
    case_of_test: HashMap<String, usize>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    system_out: Vec<u8>,
    system_err: Vec<u8>,
}

impl Default for JunitSink {
    fn default() -> Self {
        JunitSink::new()
    }
}

impl JunitSink {
    /// A sink with no runs, writing a suite named [`DEFAULT_SUITE_NAME`].
    pub fn new() -> JunitSink {
        JunitSink {
            suite_name: DEFAULT_SUITE_NAME.to_owned(),
            group_retries: false,
            aggregator: Aggregator::new(),
            cases: Vec::new(),
            case_of_test: HashMap::new(),
            first: None,
            last: None,
            system_out: Vec::new(),
            system_err: Vec::new(),
        }
    }

    /// Names the `<testsuite>` (and the `<testsuites>` around it).
    pub fn with_suite_name(mut self, name: impl Into<String>) -> JunitSink {
        self.suite_name = name.into();
        self
    }

    /// Whether repeated runs of the same test id in the stream make one test
    /// case (with the status of the test's verdict: failed when a run of its
    /// latest try failed, other failures as flaky or rerun elements) instead
    /// of one test case each. Off by default, as in `subunit2junitxml`.
    pub fn group_retries(mut self, group: bool) -> JunitSink {
        self.group_retries = group;
        self
    }

    /// Records one finished (or abandoned) run as it would arrive from the
    /// stream.
    pub fn add_record(&mut self, record: TestRecord) {
        if !self.group_retries {
            self.cases.push(Case::of(record));
            return;
        }
        match self.case_of_test.get(&record.test_id) {
            Some(&index) => self.cases[index].runs.push(record),
            None => {
                self.case_of_test
                    .insert(record.test_id.clone(), self.cases.len());
                self.cases.push(Case::of(record));
            }
        }
    }

    /// Records the runs of one test, oldest first, each a retry of the one
    /// before, as one test case: the last run decides its status; if it
    /// passed, earlier failed runs make the test flaky, otherwise they are
    /// listed as reruns. Runs that passed or were skipped before the last are
    /// not listed. Does nothing when `attempts` is empty.
    pub fn add_attempts(&mut self, attempts: impl IntoIterator<Item = TestRecord>) {
        let runs: Vec<TestRecord> = attempts.into_iter().collect();
        if !runs.is_empty() {
            self.cases.push(Case {
                runs,
                successive: true,
            });
        }
    }

    /// The report as `quick-junit`'s data model, for callers that want to
    /// add to it.
    pub fn report(&self) -> Report {
        let mut suite = TestSuite::new(self.suite_name.as_str());
        suite.add_test_cases(self.cases.iter().filter_map(test_case));
        suite.set_time(self.wall_time());
        if let Some(first) = self.first.and_then(date_time) {
            suite.set_timestamp(first);
        }
        suite
            .extra
            .insert("skipped".into(), suite.disabled.to_string().into());
        if !self.system_out.is_empty() {
            suite.set_system_out_lossy(&self.system_out);
        }
        if !self.system_err.is_empty() {
            suite.set_system_err_lossy(&self.system_err);
        }
        let mut report = Report::new(self.suite_name.as_str());
        report.set_time(self.wall_time());
        report.add_test_suite(suite);
        report
    }

    /// Writes the report as XML.
    pub fn write_report(&self, writer: impl Write) -> Result<(), JunitError> {
        Ok(self.report().serialize(writer)?)
    }

    /// The report as an XML string.
    pub fn to_xml_string(&self) -> Result<String, JunitError> {
        Ok(self.report().to_string()?)
    }

    fn wall_time(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last.saturating_since(first),
            _ => Duration::ZERO,
        }
    }

    fn note_global_output(&mut self, event: &Event) {
        if event.test_id.is_some() {
            return;
        }
        let Some(file) = &event.file else { return };
        match file.name.as_str() {
            "stdout" => self.system_out.extend_from_slice(&file.content),
            "stderr" => self.system_err.extend_from_slice(&file.content),
            _ => {}
        }
    }
}

impl Sink for JunitSink {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Some(timestamp) = event.timestamp {
            self.first = Some(self.first.map_or(timestamp, |t| t.min(timestamp)));
            self.last = Some(self.last.map_or(timestamp, |t| t.max(timestamp)));
        }
        self.note_global_output(event);
        if let Some(record) = self.aggregator.push(event) {
            self.add_record(record);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for record in self.aggregator.finish() {
            self.add_record(record);
        }
        Ok(())
    }
}

/// The class name and name `subunit2junitxml` gives a test id: split at the
/// last `.` before the first `(`, or before the last character when there is
/// no `(`.
pub fn split_test_id(test_id: &str) -> (&str, &str) {
    let end = match test_id.find('(') {
        Some(paren) => paren,
        None => test_id.char_indices().last().map_or(0, |(index, _)| index),
    };
    match test_id[..end].rfind('.') {
        Some(dot) => (&test_id[..dot], &test_id[dot + 1..]),
        None => ("", test_id),
    }
}

/// One `<testcase>` from the runs of a test. The case is its deciding run, by the one results model:
/// the last failed run of its latest try when the test failed, else its last run; its other failed runs are listed
/// under it, as flaky runs when the case passed, as reruns when it did not.
fn test_case(case: &Case) -> Option<TestCase> {
    let runs = &case.runs;
    let verdict = TestVerdict::combine(
        runs.iter()
            .enumerate()
            .map(|(i, record)| (case.try_of(i, record), RunStatus::of(record.status))),
    );
    let failed = |record: &TestRecord| Outcome::of(record.status) == Outcome::Failed;
    let deciding = match verdict {
        TestVerdict::Failed => runs.iter().rposition(failed),
        _ => None,
    }
    .unwrap_or(runs.len().checked_sub(1)?);
    let last = &runs[deciding];
    let earlier = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != deciding)
        .map(|(_, record)| record);
    let (classname, name) = split_test_id(&last.test_id);
    let mut case = TestCase::new(name, status(last));
    case.set_classname(classname);
    case.set_time(last.duration().unwrap_or_default());
    if let Some(start) = last.start.and_then(date_time) {
        case.set_timestamp(start);
    }
    if let Some(out) = system_out(last) {
        case.set_system_out(out);
    }
    if let Some(err) = text_attachment(last, "stderr") {
        case.set_system_err(err);
    }
    let failed_runs = earlier.filter_map(rerun);
    match &mut case.status {
        TestCaseStatus::Success { flaky_runs } => flaky_runs.extend(failed_runs),
        TestCaseStatus::NonSuccess { reruns, .. } => reruns.extend(failed_runs),
        TestCaseStatus::Skipped { .. } => {}
    }
    Some(case)
}

/// The JUnit status of a run.
fn status(record: &TestRecord) -> TestCaseStatus {
    match record.status {
        Some(Status::Success | Status::XFail) => TestCaseStatus::success(),
        Some(Status::Skip) => {
            let mut status = TestCaseStatus::skipped();
            if let Some(reason) = text_attachment(record, "reason") {
                status.set_message(reason.trim());
            }
            status
        }
        _ => {
            let (kind, message, description) = failure(record);
            let mut status = TestCaseStatus::non_success(kind);
            status.set_message(message);
            if let Some(description) = description {
                status.set_description(description);
            }
            status
        }
    }
}

/// A failed earlier run as a flaky or rerun element; `None` for a run that
/// did not fail.
fn rerun(record: &TestRecord) -> Option<TestRerun> {
    if Outcome::of(record.status) != Outcome::Failed {
        return None;
    }
    let (kind, message, description) = failure(record);
    let mut rerun = TestRerun::new(kind);
    rerun.set_message(message);
    if let Some(description) = description {
        rerun.set_description(description);
    }
    if let Some(time) = record.duration() {
        rerun.set_time(time);
    }
    if let Some(start) = record.start.and_then(date_time) {
        rerun.set_timestamp(start);
    }
    if let Some(out) = text_attachment(record, "stdout") {
        rerun.set_system_out(out);
    }
    if let Some(err) = text_attachment(record, "stderr") {
        rerun.set_system_err(err);
    }
    Some(rerun)
}

/// How a failed run is reported: failure or error, its message, its text.
fn failure(record: &TestRecord) -> (NonSuccessKind, String, Option<String>) {
    match record.status {
        Some(Status::Fail) => {
            let message = failure_message(record).unwrap_or_else(|| "failed".to_owned());
            let description = text_attachment(record, "traceback")
                .map(Cow::into_owned)
                .or_else(|| details(record));
            (NonSuccessKind::Failure, message, description)
        }
        Some(Status::UxSuccess) => (
            NonSuccessKind::Failure,
            "unexpected success".to_owned(),
            details(record),
        ),
        _ => (
            NonSuccessKind::Error,
            "test did not finish".to_owned(),
            details(record),
        ),
    }
}

/// A one-line message for a failure: the first line of its `reason`, else
/// the last line of its traceback (where Python puts the exception).
pub(crate) fn failure_message(record: &TestRecord) -> Option<String> {
    let first_line = |text: Cow<'_, str>| {
        let line = text.lines().map(str::trim).find(|line| !line.is_empty());
        line.map(str::to_owned)
    };
    let last_line = |text: Cow<'_, str>| {
        let line = text.lines().map(str::trim).rfind(|line| !line.is_empty());
        line.map(str::to_owned)
    };
    text_attachment(record, "reason")
        .and_then(first_line)
        .or_else(|| text_attachment(record, "traceback").and_then(last_line))
}

/// Every attachment but captured output, each under its name: text in full,
/// binary ones by size. `None` when there are none.
fn details(record: &TestRecord) -> Option<String> {
    let mut text = String::new();
    for attachment in &record.attachments {
        if matches!(attachment.name.as_str(), "stdout" | "stderr") {
            continue;
        }
        match attachment_text(attachment) {
            Some(content) => {
                text.push_str(&attachment.name);
                text.push_str(":\n");
                text.push_str(&content);
                if !content.ends_with('\n') {
                    text.push('\n');
                }
            }
            None => text.push_str(&format!(
                "{}: {} bytes of {}\n",
                attachment.name,
                attachment.content.len(),
                attachment
                    .mime_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            )),
        }
    }
    (!text.is_empty()).then_some(text)
}

/// A run's `<system-out>`: its `stdout`, and for an expected failure why it
/// was expected to fail.
fn system_out(record: &TestRecord) -> Option<String> {
    let stdout = text_attachment(record, "stdout");
    if record.status != Some(Status::XFail) {
        return stdout.map(Cow::into_owned);
    }
    let mut out = stdout.map(Cow::into_owned).unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("expected failure");
    let why = text_attachment(record, "reason").or_else(|| text_attachment(record, "traceback"));
    if let Some(why) = why {
        out.push_str(": ");
        out.push_str(why.trim_end());
    }
    out.push('\n');
    Some(out)
}

/// The named attachment's text, if the run has it and it is text.
pub(crate) fn text_attachment<'r>(record: &'r TestRecord, name: &str) -> Option<Cow<'r, str>> {
    attachment_text(record.attachment(name)?)
}

/// An attachment's content as text: anything with a textual MIME type
/// (decoded lossily), or valid UTF-8 with no MIME type. `None` for binary.
pub(crate) fn attachment_text(attachment: &Attachment) -> Option<Cow<'_, str>> {
    match attachment.mime_type.as_deref() {
        Some(mime) if is_text_mime(mime) => Some(String::from_utf8_lossy(&attachment.content)),
        Some(_) => None,
        None => std::str::from_utf8(&attachment.content)
            .ok()
            .map(Cow::Borrowed),
    }
}

/// Whether a MIME type names text.
fn is_text_mime(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json" | "application/xml" | "application/yaml" | "application/x-yaml"
        )
}

/// A subunit timestamp as the UTC date-time `quick-junit` writes.
fn date_time(timestamp: Timestamp) -> Option<DateTime<FixedOffset>> {
    DateTime::from_timestamp(i64::from(timestamp.seconds), timestamp.nanos)
        .map(|utc| utc.fixed_offset())
}

#[cfg(test)]
mod tests {

    use super::*;

    fn at(millis: u64) -> Timestamp {
        Timestamp::new(1_700_000_000, 0).saturating_add(Duration::from_millis(millis))
    }

    fn text(test_id: &str, name: &str, content: &str) -> Event {
        Event::text(Some(test_id.to_owned()), name, content)
    }

    /// Runs `events` through a sink and returns its one suite's cases.
    fn cases(events: &[Event]) -> Vec<TestCase> {
        let mut sink = JunitSink::new();
        for event in events {
            sink.event(event).expect("takes events");
        }
        sink.finish().expect("finishes");
        let mut report = sink.report();
        report.test_suites.remove(0).test_cases
    }

    fn one_case(events: &[Event]) -> TestCase {
        let mut all = cases(events);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn run(test_id: &str, status: Status) -> TestRecord {
        TestRecord {
            test_id: test_id.to_owned(),
            route_code: None,
            status: Some(status),
            start: None,
            end: None,
            tags: Default::default(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn splits_ids_like_subunit2junitxml() {
        assert_eq!(
            split_test_id("pkg.mod.Class.test"),
            ("pkg.mod.Class", "test")
        );
        assert_eq!(split_test_id("noclass"), ("", "noclass"));
        assert_eq!(split_test_id("pkg."), ("", "pkg."));
        assert_eq!(split_test_id("a.b.c."), ("a.b", "c."));
        assert_eq!(split_test_id("pkg.T.test(x.y)"), ("pkg.T", "test(x.y)"));
        assert_eq!(split_test_id("(x.y)"), ("", "(x.y)"));
        assert_eq!(split_test_id(""), ("", ""));
        assert_eq!(split_test_id("é.ü"), ("é", "ü"));
    }

    #[test]
    fn success_passes_with_time_and_timestamp() {
        let case = one_case(&[
            Event::test("pkg.T.test_ok", Status::InProgress).at(at(0)),
            Event::test("pkg.T.test_ok", Status::Success).at(at(1500)),
        ]);
        assert_eq!(case.classname.as_deref(), Some("pkg.T"));
        assert_eq!(case.name.as_str(), "test_ok");
        assert_eq!(case.status, TestCaseStatus::success());
        assert_eq!(case.time, Some(Duration::from_millis(1500)));
        let timestamp = case.timestamp.expect("timestamped");
        assert_eq!(timestamp.timestamp(), 1_700_000_000);
    }

    #[test]
    fn failure_has_message_and_traceback() {
        let traceback =
            "Traceback (most recent call last):\n  File \"x\"\nAssertionError: 1 != 2\n";
        let case = one_case(&[
            Event::test("t.fails", Status::InProgress),
            text("t.fails", "traceback", traceback),
            Event::test("t.fails", Status::Fail),
        ]);
        let TestCaseStatus::NonSuccess {
            kind,
            message,
            description,
            ..
        } = case.status
        else {
            panic!("not a failure: {:?}", case.status);
        };
        assert_eq!(kind, NonSuccessKind::Failure);
        assert_eq!(message.as_deref(), Some("AssertionError: 1 != 2"));
        assert_eq!(description.as_deref(), Some(traceback));
        assert_eq!(case.time, Some(Duration::ZERO));
    }

    #[test]
    fn failure_without_traceback_lists_every_attachment() {
        let case = one_case(&[
            text("t", "log", "line"),
            Event::file(Some("t".into()), "core", &b"\x00\xff"[..], true)
                .with_mime_type("application/octet-stream"),
            text("t", "stdout", "printed\n"),
            Event::test("t", Status::Fail),
        ]);
        let TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        } = &case.status
        else {
            panic!("not a failure");
        };
        assert_eq!(message.as_deref(), Some("failed"));
        assert_eq!(
            description.as_deref(),
            Some("log:\nline\ncore: 2 bytes of application/octet-stream\n")
        );
        assert_eq!(case.system_out.as_deref(), Some("printed\n"));
    }

    #[test]
    fn reason_gives_the_failure_message() {
        let case = one_case(&[
            text("t", "reason", "\nboom happened\nmore"),
            Event::test("t", Status::Fail),
        ]);
        let TestCaseStatus::NonSuccess { message, .. } = &case.status else {
            panic!("not a failure");
        };
        assert_eq!(message.as_deref(), Some("boom happened"));
    }

    #[test]
    fn unexpected_success_is_a_failure() {
        let case = one_case(&[Event::test("t", Status::UxSuccess)]);
        let TestCaseStatus::NonSuccess { kind, message, .. } = &case.status else {
            panic!("not a failure");
        };
        assert_eq!(*kind, NonSuccessKind::Failure);
        assert_eq!(message.as_deref(), Some("unexpected success"));
    }

    #[test]
    fn expected_failure_passes_with_reason_in_system_out() {
        let case = one_case(&[
            text("t", "stdout", "out"),
            text("t", "reason", "bug 12\n"),
            Event::test("t", Status::XFail),
        ]);
        assert_eq!(case.status, TestCaseStatus::success());
        assert_eq!(
            case.system_out.as_deref(),
            Some("out\nexpected failure: bug 12\n")
        );
        let bare = one_case(&[Event::test("u", Status::XFail)]);
        assert_eq!(bare.system_out.as_deref(), Some("expected failure\n"));
    }

    #[test]
    fn skip_uses_the_reason_as_message() {
        let case = one_case(&[
            text("t", "reason", "no network\n"),
            Event::test("t", Status::Skip),
        ]);
        let TestCaseStatus::Skipped { message, .. } = &case.status else {
            panic!("not skipped");
        };
        assert_eq!(message.as_deref(), Some("no network"));
        let bare = one_case(&[Event::test("u", Status::Skip)]);
        assert_eq!(bare.status, TestCaseStatus::skipped());
    }

    #[test]
    fn unfinished_runs_are_errors_after_finish() {
        let case = one_case(&[
            Event::test("slow", Status::InProgress),
            text("slow", "stderr", "still going"),
        ]);
        let TestCaseStatus::NonSuccess { kind, message, .. } = &case.status else {
            panic!("not an error");
        };
        assert_eq!(*kind, NonSuccessKind::Error);
        assert_eq!(message.as_deref(), Some("test did not finish"));
        assert_eq!(case.system_err.as_deref(), Some("still going"));
    }

    #[test]
    fn listings_and_global_output() {
        let mut sink = JunitSink::new().with_suite_name("unit");
        sink.event(&Event::test("listed", Status::Exists))
            .expect("takes");
        sink.event(&Event::file(None, "stdout", &b"hello\n"[..], false))
            .expect("takes");
        sink.event(&Event::file(None, "stderr", &b"warn\n"[..], false))
            .expect("takes");
        sink.finish().expect("finishes");
        let report = sink.report();
        let suite = &report.test_suites[0];
        assert_eq!(suite.name.as_str(), "unit");
        assert_eq!(suite.tests, 0);
        assert_eq!(suite.system_out.as_deref(), Some("hello\n"));
        assert_eq!(suite.system_err.as_deref(), Some("warn\n"));
    }

    #[test]
    fn suite_counts_and_wall_time() {
        let mut sink = JunitSink::new();
        let events = [
            Event::test("a", Status::Success).at(at(0)),
            Event::test("b", Status::Fail).at(at(100)),
            Event::test("c", Status::Skip).at(at(200)),
            Event::test("d", Status::UxSuccess).at(at(300)),
            Event::test("e", Status::InProgress).at(at(2500)),
        ];
        for event in &events {
            sink.event(event).expect("takes");
        }
        sink.finish().expect("finishes");
        let report = sink.report();
        let suite = &report.test_suites[0];
        assert_eq!(
            (suite.tests, suite.failures, suite.errors, suite.disabled),
            (5, 2, 1, 1)
        );
        assert_eq!(suite.extra.get("skipped").map(|v| v.as_str()), Some("1"));
        assert_eq!(suite.time, Some(Duration::from_millis(2500)));
        assert_eq!((report.tests, report.failures, report.errors), (5, 2, 1));
    }

    #[test]
    fn retried_then_passed_is_flaky() {
        let mut sink = JunitSink::new();
        let mut first = run("pkg.t", Status::Fail);
        first.start = Some(at(0));
        first.end = Some(at(250));
        sink.add_attempts([
            first,
            run("pkg.t", Status::Fail),
            run("pkg.t", Status::Success),
        ]);
        let case = sink.report().test_suites.remove(0).test_cases.remove(0);
        let TestCaseStatus::Success { flaky_runs } = &case.status else {
            panic!("not a pass: {:?}", case.status);
        };
        assert_eq!(flaky_runs.len(), 2);
        assert_eq!(flaky_runs[0].kind, NonSuccessKind::Failure);
        assert_eq!(flaky_runs[0].time, Some(Duration::from_millis(250)));
    }

    #[test]
    fn retried_and_still_failing_lists_reruns() {
        let mut sink = JunitSink::new();
        sink.add_attempts([
            run("t", Status::Success),
            run("t", Status::InProgress),
            run("t", Status::Fail),
        ]);
        sink.add_attempts(Vec::new());
        let report = sink.report();
        let suite = &report.test_suites[0];
        assert_eq!((suite.tests, suite.failures), (1, 1));
        let TestCaseStatus::NonSuccess { reruns, .. } = &suite.test_cases[0].status else {
            panic!("not a failure");
        };
        assert_eq!(reruns.len(), 1);
        assert_eq!(reruns[0].kind, NonSuccessKind::Error);
    }

    /// Grouped runs of a test take the test's verdict: a pass on a retry (tagged `proctor-retry:1`) is flaky; a
    /// pass on another route in the same try does not undo the failure.
    #[test]
    fn grouping_retries_from_the_stream() {
        let retry = format!("{}1", proctor_events::RETRY_TAG_PREFIX);
        let events = [
            Event::test("t", Status::Fail).routed("0"),
            Event::test("u", Status::Success),
            Event::test("t", Status::Success).routed("1").tagged(retry),
            Event::test("v", Status::Fail).routed("0"),
            Event::test("v", Status::Success).routed("1"),
        ];
        let mut grouped = JunitSink::new().group_retries(true);
        let mut separate = JunitSink::new();
        for event in &events {
            grouped.event(event).expect("takes");
            separate.event(event).expect("takes");
        }
        let grouped = grouped.report().test_suites.remove(0);
        assert_eq!((grouped.tests, grouped.failures), (3, 1));
        assert!(matches!(
            &grouped.test_cases[0].status,
            TestCaseStatus::Success { flaky_runs } if flaky_runs.len() == 1
        ));
        assert!(matches!(
            &grouped.test_cases[2].status,
            TestCaseStatus::NonSuccess { reruns, .. } if reruns.is_empty()
        ));
        let separate = separate.report().test_suites.remove(0);
        assert_eq!((separate.tests, separate.failures), (5, 2));
    }

    #[test]
    fn writes_xml() {
        let mut sink = JunitSink::new();
        sink.event(&Event::test("a.b", Status::Success))
            .expect("takes");
        let xml = sink.to_xml_string().expect("serializes");
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(
            xml.contains(r#"<testcase name="b" classname="a" time="0.000">"#)
                || xml.contains(r#"<testcase name="b" classname="a" time="0.000"/>"#),
            "{xml}"
        );
        let mut bytes = Vec::new();
        sink.write_report(&mut bytes).expect("writes");
        assert_eq!(String::from_utf8(bytes).ok(), Some(xml));
    }
}
