//! What people see while tests run: a line per finished test (failures with
//! their details, as they happen) and, on a terminal, a live progress bar
//! with the tests running now and an ETA.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proctor_events::{Aggregator, Outcome, Sink, SinkError, Summary, Tally, TestRecord};
use proctor_formats::text::indented_content;
use proctor_runner::{Progress, RunReport};
use proctor_subunit::{Event, Status};

/// How many running tests the bar lists.
const RUNNING_SHOWN: usize = 8;

/// Prints finished tests and keeps a progress bar when stdout is a terminal.
pub struct Display {
    aggregator: Aggregator,
    bar: Option<ProgressBar>,
}

impl Display {
    /// A display for a run of `total` tests; the bar appears only on a
    /// terminal.
    pub fn new(total: usize) -> Display {
        let bar = io::stdout().is_terminal().then(|| progress_bar(total));
        Display {
            aggregator: Aggregator::new(),
            bar,
        }
    }

    /// A display with no bar: for the example run.
    pub fn plain() -> Display {
        Display {
            aggregator: Aggregator::new(),
            bar: None,
        }
    }

    /// What updates the bar while the display sits in a sink chain.
    pub fn ticker(&self) -> Ticker {
        Ticker {
            bar: self.bar.clone(),
        }
    }

    /// Removes the bar, leaving the printed lines.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn print(&self, text: &str) -> io::Result<()> {
        match &self.bar {
            Some(bar) => {
                bar.println(text.trim_end_matches('\n'));
                Ok(())
            }
            None => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()
            }
        }
    }

    fn report(&self, record: &TestRecord) -> io::Result<()> {
        let failed = Outcome::of(record.status) == Outcome::Failed;
        self.print(&record_text(record, failed))
    }
}

/// Updates a [`Display`]'s progress bar (a no-op without one).
pub struct Ticker {
    bar: Option<ProgressBar>,
}

impl Ticker {
    /// Shows the runner's progress.
    pub fn tick(&self, progress: &Progress) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_length(progress.total as u64);
        bar.set_position(progress.done as u64);
        let eta = progress
            .eta
            .map(|eta| format!(" ETA {}", seconds(eta)))
            .unwrap_or_default();
        let mut message = format!("{} failed{eta}", progress.failed);
        for running in progress.running.iter().take(RUNNING_SHOWN) {
            let elapsed = running.elapsed.map(seconds).unwrap_or_default();
            message.push_str(&format!("\n  {elapsed:>7} {}", running.test_id));
        }
        bar.set_message(message);
    }
}

/// A finished test's line (with the worker it ran on, when that is a named one, and a skip's reason), followed by
/// its attachments when it failed.
pub fn record_text(record: &TestRecord, with_details: bool) -> String {
    let label = match record.status {
        Some(Status::Success) => "PASS",
        Some(Status::Skip) => "SKIP",
        Some(Status::XFail) => "XFAIL",
        Some(Status::UxSuccess) => "UXPASS",
        Some(Status::Fail) => "FAIL",
        Some(Status::InProgress | Status::Exists) | None => "INCOMPLETE",
    };
    let seconds = record.duration().unwrap_or_default().as_secs_f64();
    let mut text = format!("{label:>6} [{seconds:>7.3}s] {}", record.test_id);
    // Where it ran, when that is a named worker (an instance, a host) rather than a slot here.
    if let Some(worker) = record
        .route_code
        .as_deref()
        .filter(|route| !route.bytes().all(|b| b.is_ascii_digit()))
    {
        text.push_str(&format!(" on {worker}"));
    }
    if record.status == Some(Status::Skip) {
        if let Some(reason) = skip_reason(record) {
            text.push_str(&format!(" (reason: {reason})"));
        }
    }
    text.push('\n');
    if with_details {
        for attachment in &record.attachments {
            text.push_str(&format!("  --- {} ---\n", attachment.name));
            text.push_str(&indented_content(&attachment.content, "  "));
        }
    }
    text
}

/// How many characters of a skip's reason its line shows.
const REASON_SHOWN: usize = 200;

/// Why a skipped test was skipped, as one line for its line on screen: the first non-blank line of its `reason`
/// attachment (what python-subunit, testtools and stestr, the pytest plugin and TAP's `# SKIP` send). A test whose
/// exit status said it skipped (77) sends no `reason`, only what it printed: then the last non-blank line of its
/// stdout, else of its stderr (where `echo "no GPU"; exit 77` puts its why, and where a Cargo project's ignored
/// tests and doctests say theirs). pytest's `Skipped: ` prefix is left out, as its `-rs` summary does. Control
/// characters become spaces; more than [`REASON_SHOWN`] characters are cut with an ellipsis. `None` when there is
/// nothing to show.
fn skip_reason(record: &TestRecord) -> Option<String> {
    let given = record.attachment("reason").and_then(|reason| {
        String::from_utf8_lossy(&reason.content)
            .lines()
            .find(|line| !line.trim().is_empty())
            .map(str::to_owned)
    });
    let line = given.or_else(|| {
        ["stdout", "stderr"].into_iter().find_map(|name| {
            let output = std::str::from_utf8(&record.attachment(name)?.content).ok()?;
            output
                .lines()
                .rfind(|line| !line.trim().is_empty())
                .map(str::to_owned)
        })
    })?;
    // pytest's skip reason starts `Skipped: `, which its own `-rs` summary leaves out.
    let line = line.trim_start();
    let line = line.strip_prefix("Skipped: ").unwrap_or(line);
    Some(one_line(line, REASON_SHOWN))
}

/// `text` trimmed, its control characters as spaces, cut to `limit` characters with `…` when longer.
fn one_line(text: &str, limit: usize) -> String {
    let text = text.trim();
    let mut shown: String = text
        .chars()
        .take(limit)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(limit).is_some() {
        shown.push('…');
    }
    shown
}

impl Sink for Display {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Some(record) = self.aggregator.push(event) {
            self.report(&record)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for record in self.aggregator.finish() {
            self.report(&record)?;
        }
        Ok(())
    }
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stdout());
    let style = ProgressStyle::with_template("{elapsed:>5} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The totals line every command that reports a run ends with:
/// `N tests in T: P passed, F failed, S skipped` (without ` in T` when the
/// run's time is unknown).
pub fn totals_line([total, passed, failed, skipped]: [usize; 4], time: Option<Duration>) -> String {
    let time = time
        .map(|time| format!(" in {:.3}s", time.as_secs_f64()))
        .unwrap_or_default();
    format!("{total} tests{time}: {passed} passed, {failed} failed, {skipped} skipped")
}

/// The totals line of results counted by the one results model: [`totals_line`] of the tests when each ran once;
/// else the tests by verdict (`, K flaky` and `, K running` when some are), then their runs as `subunit-stats`
/// counts them: `N tests: P passed, F failed, S skipped, K flaky; R runs: P passed, F failed, S skipped`.
pub fn results_line(tally: &Tally, time: Option<Duration>) -> String {
    let runs = tally.runs();
    let tests = tally.tests();
    let mut line = totals_line(
        [tests.total, tests.passed, tests.failed, tests.skipped],
        time,
    );
    if tests.flaky > 0 {
        line.push_str(&format!(", {} flaky", tests.flaky));
    }
    if tests.running > 0 {
        line.push_str(&format!(", {} running", tests.running));
    }
    if runs.total != tests.total || runs.running > 0 {
        line.push_str(&format!(
            "; {} runs: {} passed, {} failed, {} skipped",
            runs.total, runs.passed, runs.failed, runs.skipped
        ));
        if runs.running > 0 {
            line.push_str(&format!(", {} running", runs.running));
        }
    }
    line
}

/// The closing summary: totals, the slowest tests and the flaky ones.
pub fn summary_text(summary: &Summary, report: &RunReport, slowest: usize) -> String {
    let mut text = format!("\n{}", results_line(&summary.tests, summary.wall_time()));
    if report.interrupted {
        text.push_str(" (interrupted)");
    }
    text.push('\n');
    let slow = summary.slowest(slowest);
    if !slow.is_empty() {
        text.push_str("Slowest:\n");
        for (test_id, duration) in slow {
            text.push_str(&format!("  {:>8.3}s {test_id}\n", duration.as_secs_f64()));
        }
    }
    if !report.flaky.is_empty() {
        text.push_str("Flaky (failed, then passed on a retry):\n");
        for test_id in &report.flaky {
            text.push_str(&format!("  {test_id}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use proctor_subunit::Timestamp;

    use super::*;

    /// The record of one test that ended with `status` after sending `files` (name, content, MIME type).
    fn record(status: Status, files: &[(&str, &str, Option<&str>)]) -> TestRecord {
        let mut aggregator = Aggregator::new();
        let id = "pkg.t".to_owned();
        let at = Timestamp::from_system_time(std::time::UNIX_EPOCH);
        assert!(aggregator
            .push(&Event::test(&id, Status::InProgress).at(at))
            .is_none());
        for (name, content, mime) in files {
            let mut event = Event::file(Some(id.clone()), *name, content.as_bytes().to_vec(), true);
            if let Some(mime) = mime {
                event = event.with_mime_type(*mime);
            }
            assert!(aggregator.push(&event).is_none());
        }
        aggregator
            .push(&Event::test(&id, status).at(at))
            .expect("the test ended")
    }

    const TEXT: Option<&str> = Some("text/plain;charset=utf8");

    #[test]
    fn a_skip_shows_the_first_line_of_its_reason() {
        let skipped = record(
            Status::Skip,
            &[
                ("stdout", "chatter\n", None),
                ("reason", "\n  needs a GPU \nmore detail\n", TEXT),
            ],
        );
        assert_eq!(
            record_text(&skipped, false),
            "  SKIP [  0.000s] pkg.t (reason: needs a GPU)\n"
        );
    }

    #[test]
    fn a_skip_without_a_reason_shows_the_last_line_it_printed() {
        let skipped = record(
            Status::Skip,
            &[
                ("stdout", "checking\nno docker here\n\n", None),
                ("stderr", "warning\n", None),
            ],
        );
        assert_eq!(skip_reason(&skipped).as_deref(), Some("no docker here"));
        let quiet = record(Status::Skip, &[("stderr", "only stderr\n", None)]);
        assert_eq!(skip_reason(&quiet).as_deref(), Some("only stderr"));
        let silent = record(Status::Skip, &[]);
        assert_eq!(record_text(&silent, false), "  SKIP [  0.000s] pkg.t\n");
    }

    #[test]
    fn a_long_reason_is_cut_and_control_characters_are_spaces() {
        let long = "x".repeat(REASON_SHOWN + 50);
        let skipped = record(Status::Skip, &[("reason", &format!("a\tb {long}"), TEXT)]);
        let reason = skip_reason(&skipped).expect("a reason");
        assert!(reason.starts_with("a b x"), "{reason}");
        assert_eq!(reason.chars().count(), REASON_SHOWN + 1);
        assert!(reason.ends_with('…'), "{reason}");
        assert_eq!(
            skip_reason(&record(Status::Skip, &[("reason", "short", TEXT)])).as_deref(),
            Some("short")
        );
        // pytest's reasons read as its `-rs` summary shows them.
        let pytest = record(Status::Skip, &[("reason", "Skipped: needs a GPU", TEXT)]);
        assert_eq!(skip_reason(&pytest).as_deref(), Some("needs a GPU"));
    }

    #[test]
    fn other_outcomes_show_no_reason() {
        let passed = record(
            Status::Success,
            &[("reason", "not shown", TEXT), ("stdout", "fine\n", None)],
        );
        assert_eq!(record_text(&passed, false), "  PASS [  0.000s] pkg.t\n");
        let xfail = record(Status::XFail, &[("reason", "bug 12", TEXT)]);
        assert_eq!(record_text(&xfail, false), " XFAIL [  0.000s] pkg.t\n");
    }
}
