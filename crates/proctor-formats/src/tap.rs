//! TAP (the Test Anything Protocol, versions 13 and 14) in both directions.
//!
//! - [`TapParser`] (and its shortcut [`tap_to_events`]) turns TAP text into
//!   subunit events for a [`Sink`].
//! - [`TapSink`] is a sink that writes the runs it receives as TAP.
//!
//! # From TAP to events
//!
//! Test ids and statuses follow python-subunit's `tap2subunit`
//! (`subunit.TAP2SubUnit`) so that results read either way compare:
//!
//! - a test line `ok 3 - adds up` becomes the test `test 3 - adds up`: `test`,
//!   the test's position, and the description exactly as written (`- ` and
//!   all); `ok 3` alone becomes `test 3`. Positions count from 1 in the order
//!   test lines arrive; a number ahead of that count first reports the tests
//!   skipped over as missing, a number behind it is ignored (as the reference
//!   does).
//! - `ok` is `success`, `not ok` is `fail`; a `# SKIP` directive makes either
//!   `skip` and a `# TODO` directive makes either `xfail`. The reference does
//!   this too: a TODO test that passes is not an unexpected success, because a
//!   TAP harness never fails a run for a TODO test and `uxsuccess` would.
//! - a planned test that never appeared is `fail`ed with a file `tap meta`
//!   saying `test missing from TAP output`; `1..0 # SKIP why` (any comment)
//!   is the skipped test `file skip`; `Bail out! why` is the failed test
//!   `Bail out! why`.
//! - comment lines after a test line (up to the next test line) are attached to
//!   that test as the file `tap comment`, as TAP producers write a failure's
//!   details after its `not ok` line; lines that are not TAP are forwarded at
//!   once as global `stdout` file events.
//! - test events carry no timestamps unless a clock is given (the reference
//!   writes none), and are not runnable (they are assertions of a script).
//!
//! Additions and deliberate differences:
//!
//! - each test gets an `inprogress` event when its line is read and its final
//!   status once everything that belongs to it has been read (at the next
//!   test line, plan, bail-out or the end), with its directive's reason as the
//!   file `reason` (the reference calls it `tap comment`) so that skip and
//!   expected-failure reasons reach testtools and JUnit the usual way. With a
//!   clock, a test starts when the previous test line (or the first line) was
//!   read and ends when its own line was, since TAP writes a line when its test
//!   is over.
//! - `TAP version N` lines are understood and dropped; the plan may come first
//!   or last; `1..0` without a comment (which the reference crashes on) is an
//!   empty run, not a skipped file; directives are matched case-insensitively
//!   (`# Skipped: x` too) and a `#` that starts no directive stays in the
//!   description; `\#` and `\\` in descriptions are unescaped (TAP 14).
//! - input that is not UTF-8 is an error naming the line (the reference
//!   crashes); nothing panics, whatever the input.
//! - a YAML diagnostic block (an indented `---` … `...` right after a test
//!   line) is attached to that test as the file `diagnostics`, MIME
//!   `text/x-yaml`, its lines un-indented; a block that is never closed ends at
//!   the first line indented less than its `---`.
//! - TAP 14 subtests: indented lines that are not a YAML block (a subtest's
//!   own test lines, plan and diagnostics), and `# Subtest:` comments, belong
//!   to the parent test line that follows them, which gets them verbatim as the
//!   file `subtests` (a `# Subtest:` comment alone, as `node --test` writes
//!   before every test, joins its `tap comment` instead). Subtests are not
//!   reported as tests of their own; the
//!   parent's line carries their overall result. Indented lines that no parent
//!   line claims are forwarded as `stdout` at the end.
//! - after `Bail out!` nothing is interpreted any more: later lines are
//!   forwarded as `stdout`. Planned tests that never ran are still reported
//!   missing.
//! - comments before the first test line are forwarded as `stdout` (the
//!   reference attaches them to the first test).
//! - a gap of more than [`MAX_MISSING_EXPANDED`] missing tests is reported as a
//!   single failed test named for the range (`test 5..99999`), so a bogus test
//!   number or plan cannot make the parser emit millions of events.
//!
//! # From events to TAP
//!
//! [`TapSink`] writes `TAP version 13` first, then a test line as each run
//! finishes, and the plan `1..N` at the end, where runs the stream left open
//! are reported as failed. Statuses map as TAP harnesses must count them:
//!
//! | subunit | TAP line |
//! |---|---|
//! | `success` | `ok N - id` |
//! | `skip` | `ok N - id # SKIP reason` |
//! | `xfail` | `not ok N - id # TODO reason` (a TODO never fails the run) |
//! | `fail` | `not ok N - id` and a YAML block with `message`, `severity`, `duration_ms` and the text attachments (`traceback` …) as block scalars |
//! | `uxsuccess` | `not ok N - id` with `message: unexpected success`, *not* `ok … # TODO`, which harnesses would count as a pass |
//! | never finished | `not ok N - id` with `message: test did not finish` |
//!
//! What the parser keeps goes back where it came from: a run's `diagnostics`
//! YAML attachment is written verbatim as its block (instead of the generated
//! one), its `subtests` before its test line, its `tap comment` lines after
//! it as comments. `stdout` and `stderr` output outside any test is written as
//! comment lines.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use proctor_events::{Aggregator, Sink, SinkError, TestRecord};
use proctor_subunit::{Event, Status, Timestamp};

use crate::junit::{attachment_text, failure_message, text_attachment};

/// The MIME type of the text files the parser attaches (as `tap2subunit`
/// writes it).
pub const TEXT_MIME: &str = "text/plain; charset=UTF8";
/// The MIME type of the `diagnostics` file holding a YAML block.
pub const YAML_MIME: &str = "text/x-yaml";
/// The name of the file holding a test's YAML diagnostic block.
pub const DIAGNOSTICS_FILE: &str = "diagnostics";
/// The largest run of missing tests reported one by one.
pub const MAX_MISSING_EXPANDED: u64 = 10_000;

/// Why TAP input could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Reading the input failed.
    #[error("cannot read TAP input at line {line}: {source}")]
    Io {
        /// The line being read (1-based).
        line: u64,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A line is not UTF-8.
    #[error("TAP line {line} is not valid UTF-8 (bad byte at column {column})")]
    InvalidUtf8 {
        /// The line (1-based).
        line: u64,
        /// The 1-based byte position of the first bad byte.
        column: usize,
    },
    /// The sink refused an event.
    #[error("cannot pass on the events of TAP line {line}: {source}")]
    Sink {
        /// The last line read (1-based).
        line: u64,
        /// What went wrong.
        #[source]
        source: SinkError,
    },
}

/// Reads a whole TAP stream into `sink` with no timestamps: shorthand for
/// [`TapParser::read`] on a new parser. Does not call the sink's
/// [`Sink::finish`]: the caller owns the sink.
pub fn tap_to_events(input: impl BufRead, sink: &mut dyn Sink) -> Result<(), TapError> {
    TapParser::new().read(input, sink)
}

type Clock = Box<dyn FnMut() -> Timestamp + Send>;

/// Turns TAP into subunit events, a line at a time (see the [module
/// documentation](self) for the mapping). Feed it with [`TapParser::read`],
/// or with [`TapParser::line`] and [`TapParser::finish`] when lines arrive
/// one by one; after `finish` it is ready for a new stream.
pub struct TapParser {
    clock: Option<Clock>,
    state: State,
}

impl fmt::Debug for TapParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapParser")
            .field("clock", &self.clock.is_some())
            .field("state", &self.state)
            .finish()
    }
}

impl Default for TapParser {
    fn default() -> Self {
        TapParser::new()
    }
}

/// Everything the parser knows about the stream so far.
#[derive(Debug)]
struct State {
    /// Lines taken so far.
    line_number: u64,
    started: bool,
    /// The position the next test line gets (the reference's `plan_start`).
    next_number: u64,
    plan: Option<u64>,
    seen_test: bool,
    bailed_out: bool,
    /// The test whose line was read and whose final status is not yet sent.
    pending: Option<Pending>,
    /// Indented lines waiting for their parent test line.
    subtests: Vec<String>,
    /// When the previous test line was read.
    last_test_point: Option<Timestamp>,
}

impl Default for State {
    fn default() -> Self {
        State {
            line_number: 0,
            started: false,
            next_number: 1,
            plan: None,
            seen_test: false,
            bailed_out: false,
            pending: None,
            subtests: Vec::new(),
            last_test_point: None,
        }
    }
}

/// A test whose line has been read and whose final status is not yet sent.
#[derive(Debug)]
struct Pending {
    test_id: String,
    status: Status,
    at: Option<Timestamp>,
    reason: Option<String>,
    comments: Vec<String>,
    subtests: Vec<String>,
    yaml: Yaml,
}

/// The state of a test's YAML diagnostic block.
#[derive(Debug)]
enum Yaml {
    None,
    Open { indent: usize, lines: Vec<String> },
    Closed(Vec<String>),
}

impl TapParser {
    /// A parser that puts no timestamps on its events.
    pub fn new() -> TapParser {
        TapParser {
            clock: None,
            state: State::default(),
        }
    }

    /// Timestamps every event with `clock`'s time when its line was read.
    pub fn with_clock(mut self, clock: impl FnMut() -> Timestamp + Send + 'static) -> TapParser {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Timestamps every event with the system time its line was read.
    pub fn with_system_clock(self) -> TapParser {
        self.with_clock(Timestamp::now)
    }

    /// Reads `input` to its end and then [finishes](TapParser::finish).
    /// Errors name the line they happened at.
    pub fn read(&mut self, mut input: impl BufRead, sink: &mut dyn Sink) -> Result<(), TapError> {
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            let read = input
                .read_until(b'\n', &mut buffer)
                .map_err(|source| TapError::Io {
                    line: self.state.line_number + 1,
                    source,
                })?;
            if read == 0 {
                return self.finish(sink);
            }
            match std::str::from_utf8(&buffer) {
                Ok(line) => self.line(line, sink)?,
                Err(error) => {
                    self.state.line_number += 1;
                    return Err(TapError::InvalidUtf8 {
                        line: self.state.line_number,
                        column: error.valid_up_to() + 1,
                    });
                }
            }
        }
    }

    /// Takes one line of TAP (a trailing `\n` or `\r\n` is ignored). Lines
    /// are counted from 1 for error messages.
    pub fn line(&mut self, line: &str, sink: &mut dyn Sink) -> Result<(), TapError> {
        self.state.line_number += 1;
        let line_number = self.state.line_number;
        self.take_line(line, sink).map_err(|source| TapError::Sink {
            line: line_number,
            source,
        })
    }

    /// Ends the stream: sends the last test's status, forwards unclaimed
    /// subtest lines, and fails the planned tests that never appeared. The
    /// parser is then ready for a new stream.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), TapError> {
        let line_number = self.state.line_number;
        let result = self.flush(sink);
        self.state = State::default();
        result.map_err(|source| TapError::Sink {
            line: line_number,
            source,
        })
    }

    fn take_line(&mut self, line: &str, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !self.state.started {
            self.state.started = true;
            self.state.last_test_point = self.now();
        }
        if self.state.bailed_out {
            return self.stdout(&[line], sink);
        }
        if self.continue_yaml(line) {
            return Ok(());
        }
        if indentation(line) > 0 && !line.trim().is_empty() {
            return self.indented(line, sink);
        }
        if let Some(test) = TestLine::parse(line) {
            return self.test_line(test, sink);
        }
        if let (Some(plan), None) = (Plan::parse(line), self.state.plan) {
            return self.plan(plan, sink);
        }
        if let Some(reason) = line.strip_prefix("Bail out!") {
            return self.bail_out(reason.trim(), sink);
        }
        if is_version_line(line) {
            return Ok(());
        }
        if line.starts_with('#') {
            return self.comment(line, sink);
        }
        self.stdout(&[line], sink)
    }

    /// Everything still held back, at the end of the stream.
    fn flush(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.close_pending(sink)?;
        self.flush_subtests(sink)?;
        if let Some(plan) = self.state.plan {
            let next = self.state.next_number;
            if next <= plan {
                self.missing(next, plan.saturating_add(1), sink)?;
            }
        }
        Ok(())
    }

    fn now(&mut self) -> Option<Timestamp> {
        self.clock.as_mut().map(|clock| clock())
    }

    /// Sends an event, timestamped now unless it has a timestamp.
    fn send(&mut self, mut event: Event, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if event.timestamp.is_none() {
            event.timestamp = self.now();
        }
        sink.event(&event)
    }

    /// Takes a line of an open YAML block; false when no block is open or the
    /// line is not part of it.
    fn continue_yaml(&mut self, line: &str) -> bool {
        let Some(pending) = &mut self.state.pending else {
            return false;
        };
        let Yaml::Open { indent, lines } = &mut pending.yaml else {
            return false;
        };
        let depth = indentation(line);
        if depth == *indent && line[depth..].trim_end() == "..." {
            pending.yaml = Yaml::Closed(std::mem::take(lines));
            return true;
        }
        if line.trim().is_empty() {
            lines.push(String::new());
            return true;
        }
        if depth >= *indent {
            lines.push(line[*indent..].to_owned());
            return true;
        }
        pending.yaml = Yaml::Closed(std::mem::take(lines));
        false
    }

    /// An indented line: the start of a YAML block, or subtest output.
    fn indented(&mut self, line: &str, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if let Some(pending) = &mut self.state.pending {
            if matches!(pending.yaml, Yaml::None) && line.trim() == "---" {
                pending.yaml = Yaml::Open {
                    indent: indentation(line),
                    lines: Vec::new(),
                };
                return Ok(());
            }
        }
        self.close_pending(sink)?;
        self.state.subtests.push(line.to_owned());
        Ok(())
    }

    fn test_line(&mut self, test: TestLine, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.close_pending(sink)?;
        let at = self.now();
        let next = self.state.next_number;
        if let Some(number) = test.number.filter(|&number| number > next) {
            self.missing(next, number, sink)?;
            self.state.next_number = number;
        }
        let number = self.state.next_number;
        self.state.next_number = number.saturating_add(1);
        self.state.seen_test = true;
        let test_id = match test.description.as_str() {
            "" => format!("test {number}"),
            description => format!("test {number} {description}"),
        };
        let start = self.state.last_test_point.or(at);
        self.state.last_test_point = at;
        self.send(tap_test(&test_id, Status::InProgress, start), sink)?;
        let (subtests, comments) = self.take_subtests();
        self.state.pending = Some(Pending {
            test_id,
            status: test.status(),
            at,
            reason: test.directive.map(|(_, reason)| reason),
            comments,
            subtests,
            yaml: Yaml::None,
        });
        Ok(())
    }

    /// The lines a test line claims as its subtests; when none of them is
    /// indented they are only `# Subtest:` comments (as `node --test` writes
    /// before every test), and are returned as comments instead.
    fn take_subtests(&mut self) -> (Vec<String>, Vec<String>) {
        let lines = std::mem::take(&mut self.state.subtests);
        if lines.iter().any(|line| indentation(line) > 0) {
            (lines, Vec::new())
        } else {
            (Vec::new(), lines)
        }
    }

    fn plan(&mut self, plan: Plan, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.close_pending(sink)?;
        self.flush_subtests(sink)?;
        self.state.plan = Some(plan.count);
        let Some(reason) = plan.skip_reason else {
            return Ok(());
        };
        if plan.count > 0 || self.state.seen_test {
            return Ok(());
        }
        let files = (!reason.is_empty()).then(|| ("reason", TEXT_MIME, reason.into_bytes()));
        self.one_shot_test("file skip", Status::Skip, files, sink)
    }

    fn bail_out(&mut self, reason: &str, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.close_pending(sink)?;
        self.flush_subtests(sink)?;
        self.state.bailed_out = true;
        let test_id = match reason {
            "" => "Bail out!".to_owned(),
            reason => format!("Bail out! {reason}"),
        };
        self.one_shot_test(&test_id, Status::Fail, None, sink)
    }

    fn comment(&mut self, line: &str, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let is_subtest_header = line
            .strip_prefix('#')
            .is_some_and(|rest| rest.trim_start().starts_with("Subtest"));
        if is_subtest_header || !self.state.subtests.is_empty() {
            self.close_pending(sink)?;
            self.state.subtests.push(line.to_owned());
            return Ok(());
        }
        match &mut self.state.pending {
            Some(pending) => {
                pending.comments.push(line.to_owned());
                Ok(())
            }
            None => self.stdout(&[line], sink),
        }
    }

    /// Forwards lines as one global `stdout` file event.
    fn stdout(&mut self, lines: &[&str], sink: &mut dyn Sink) -> Result<(), SinkError> {
        let mut content = String::new();
        for line in lines {
            content.push_str(line);
            content.push('\n');
        }
        let event =
            Event::file(None, "stdout", Bytes::from(content), false).with_mime_type(TEXT_MIME);
        self.send(event, sink)
    }

    fn flush_subtests(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if self.state.subtests.is_empty() {
            return Ok(());
        }
        let subtests = std::mem::take(&mut self.state.subtests);
        let lines: Vec<&str> = subtests.iter().map(String::as_str).collect();
        self.stdout(&lines, sink)
    }

    /// Sends the pending test's files and final status.
    fn close_pending(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let Some(pending) = self.state.pending.take() else {
            return Ok(());
        };
        for event in pending_files(&pending) {
            self.send(event, sink)?;
        }
        self.send(tap_test(&pending.test_id, pending.status, pending.at), sink)
    }

    /// Fails the tests numbered `from` up to (not including) `to`.
    fn missing(&mut self, from: u64, to: u64, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let count = to.saturating_sub(from);
        if count > MAX_MISSING_EXPANDED {
            let test_id = format!("test {from}..{}", to - 1);
            let note = format!("{count} tests missing from TAP output");
            let file = ("tap meta", TEXT_MIME, note.into_bytes());
            return self.one_shot_test(&test_id, Status::Fail, Some(file), sink);
        }
        for number in from..to {
            let file = (
                "tap meta",
                TEXT_MIME,
                b"test missing from TAP output".to_vec(),
            );
            self.one_shot_test(&format!("test {number}"), Status::Fail, Some(file), sink)?;
        }
        Ok(())
    }

    /// Sends a whole test at once: `inprogress`, a file, the final status.
    fn one_shot_test(
        &mut self,
        test_id: &str,
        status: Status,
        file: Option<(&str, &str, Vec<u8>)>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        self.send(tap_test(test_id, Status::InProgress, None), sink)?;
        if let Some((name, mime_type, content)) = file {
            let template = tap_test_file(test_id, mime_type);
            for event in Event::file_chunks(&template, name, Bytes::from(content)) {
                self.send(event, sink)?;
            }
        }
        self.send(tap_test(test_id, status, None), sink)
    }
}

/// A status event for a test read from TAP (not runnable on its own).
fn tap_test(test_id: &str, status: Status, at: Option<Timestamp>) -> Event {
    Event {
        runnable: false,
        timestamp: at,
        ..Event::test(test_id, status)
    }
}

/// The template of a file event for a test read from TAP.
fn tap_test_file(test_id: &str, mime_type: &str) -> Event {
    Event {
        test_id: Some(test_id.to_owned()),
        mime_type: Some(mime_type.to_owned()),
        ..Event::default()
    }
}

/// The file events of a pending test: reason, diagnostics, subtests,
/// comments.
fn pending_files(pending: &Pending) -> Vec<Event> {
    let mut files: Vec<(&str, &str, String)> = Vec::new();
    if let Some(reason) = pending.reason.as_ref().filter(|r| !r.is_empty()) {
        files.push(("reason", TEXT_MIME, reason.clone()));
    }
    match &pending.yaml {
        Yaml::Open { lines, .. } | Yaml::Closed(lines) => {
            files.push((DIAGNOSTICS_FILE, YAML_MIME, joined_lines(lines)));
        }
        Yaml::None => {}
    }
    if !pending.subtests.is_empty() {
        files.push(("subtests", TEXT_MIME, joined_lines(&pending.subtests)));
    }
    if !pending.comments.is_empty() {
        files.push(("tap comment", TEXT_MIME, pending.comments.join("\n")));
    }
    files
        .into_iter()
        .flat_map(|(name, mime_type, content)| {
            let template = tap_test_file(&pending.test_id, mime_type);
            Event::file_chunks(&template, name, Bytes::from(content))
        })
        .collect()
}

/// Lines, each ended by a newline.
fn joined_lines(lines: &[String]) -> String {
    lines.iter().fold(String::new(), |mut text, line| {
        text.push_str(line);
        text.push('\n');
        text
    })
}

/// The number of spaces and tabs a line starts with.
fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// Whether a line is `TAP version N`.
fn is_version_line(line: &str) -> bool {
    line.strip_prefix("TAP version ").is_some_and(|version| {
        !version.is_empty() && version.trim().bytes().all(|b| b.is_ascii_digit())
    })
}

/// A TAP directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Skip,
    Todo,
}

/// A parsed test line: `ok 3 - description # SKIP reason`.
#[derive(Debug, PartialEq, Eq)]
struct TestLine {
    ok: bool,
    number: Option<u64>,
    description: String,
    directive: Option<(Directive, String)>,
}

impl TestLine {
    fn parse(line: &str) -> Option<TestLine> {
        let (ok, rest) = match line.strip_prefix("not ok") {
            Some(rest) => (false, rest),
            None => (true, line.strip_prefix("ok")?),
        };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            return None;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let (number, rest) = split_number(rest);
        let (description, directive) = split_directive(rest);
        Some(TestLine {
            ok,
            number,
            description: unescape(description.trim()),
            directive,
        })
    }

    fn status(&self) -> Status {
        match (&self.directive, self.ok) {
            (Some((Directive::Skip, _)), _) => Status::Skip,
            (Some((Directive::Todo, _)), _) => Status::XFail,
            (None, true) => Status::Success,
            (None, false) => Status::Fail,
        }
    }
}

/// A leading test number (followed by whitespace or nothing) and the rest.
fn split_number(text: &str) -> (Option<u64>, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let after = &text[digits..];
    if digits == 0 || !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return (None, text);
    }
    match text[..digits].parse() {
        Ok(number) => (Some(number), after),
        Err(_) => (None, text),
    }
}

/// Splits a description at the first unescaped `#` that starts a SKIP or
/// TODO directive; a `#` that starts none stays in the description.
fn split_directive(text: &str) -> (&str, Option<(Directive, String)>) {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match (c, escaped) {
            ('\\', false) => escaped = true,
            ('#', false) => {
                if let Some(directive) = parse_directive(&text[index + 1..]) {
                    return (&text[..index], Some(directive));
                }
            }
            _ => escaped = false,
        }
    }
    (text, None)
}

/// `SKIP reason` or `TODO reason` (case-insensitive; `SKIP` may run on, as
/// in `Skipped:`).
fn parse_directive(text: &str) -> Option<(Directive, String)> {
    let text = text.trim_start();
    let word_end = text.find(char::is_whitespace).unwrap_or(text.len());
    let word = text[..word_end].to_ascii_lowercase();
    let directive = if word.starts_with("skip") {
        Directive::Skip
    } else if word.trim_end_matches(':') == "todo" {
        Directive::Todo
    } else {
        return None;
    };
    Some((directive, unescape(text[word_end..].trim())))
}

/// Undoes TAP 14's `\#` and `\\` escapes.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ ('#' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// A plan line: `1..N`, optionally `# SKIP reason`.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    count: u64,
    skip_reason: Option<String>,
}

impl Plan {
    fn parse(line: &str) -> Option<Plan> {
        let (range, comment) = match line.split_once('#') {
            Some((range, comment)) => (range, Some(comment)),
            None => (line, None),
        };
        let (first, last) = range.trim_end().split_once("..")?;
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let count = last.parse().ok()?;
        let skip_reason = comment.map(|comment| plan_skip_reason(comment.trim()));
        Some(Plan { count, skip_reason })
    }
}

/// The reason in a plan's comment, without its `SKIP` word.
fn plan_skip_reason(comment: &str) -> String {
    let word_end = comment.find(char::is_whitespace).unwrap_or(comment.len());
    if comment[..word_end].to_ascii_lowercase().starts_with("skip") {
        comment[word_end..].trim().to_owned()
    } else {
        comment.to_owned()
    }
}

/// A sink that writes test runs as TAP 13 as they finish (see the [module
/// documentation](self) for the mapping). The plan comes at the end, from
/// [`Sink::finish`], which also reports the runs the stream left open.
#[derive(Debug)]
pub struct TapSink<W: Write> {
    writer: W,
    aggregator: Aggregator,
    count: u64,
    started: bool,
    finished: bool,
    /// Global output not yet ended by a newline.
    partial_output: Vec<u8>,
}

impl<W: Write> TapSink<W> {
    /// A sink writing to `writer`. Nothing is written before the first event.
    pub fn new(writer: W) -> TapSink<W> {
        TapSink {
            writer,
            aggregator: Aggregator::new(),
            count: 0,
            started: false,
            finished: false,
            partial_output: Vec::new(),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
    }

    /// How many test lines have been written.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.writer.write_all(b"TAP version 13\n")?;
        }
        Ok(())
    }

    /// Writes complete lines of global output as comments.
    fn global_output(&mut self, content: &[u8]) -> io::Result<()> {
        self.partial_output.extend_from_slice(content);
        let Some(end) = self.partial_output.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.partial_output.drain(..=end).collect();
        let text = String::from_utf8_lossy(&lines);
        write_comments(&mut self.writer, &text)
    }

    fn record(&mut self, record: &TestRecord) -> io::Result<()> {
        self.count += 1;
        let mut text = subtest_lines(record);
        text.push_str(&test_line(self.count, record));
        text.push('\n');
        text.push_str(&yaml_block(record));
        self.writer.write_all(text.as_bytes())?;
        if let Some(comments) = text_attachment(record, "tap comment") {
            write_comments(&mut self.writer, &comments)?;
        }
        Ok(())
    }
}

impl<W: Write> Sink for TapSink<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.start()?;
        if let (None, Some(file)) = (&event.test_id, &event.file) {
            if matches!(file.name.as_str(), "stdout" | "stderr") {
                self.global_output(&file.content)?;
            }
        }
        if let Some(record) = self.aggregator.push(event) {
            self.record(&record)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.start()?;
        if !self.partial_output.is_empty() {
            self.global_output(b"\n")?;
        }
        for record in self.aggregator.finish() {
            self.record(&record)?;
        }
        writeln!(self.writer, "1..{}", self.count)?;
        Ok(self.writer.flush()?)
    }
}

/// A run's `subtests` attachment, as the lines before its test line: as
/// they were, except that a line neither indented nor a comment is indented
/// so that it cannot pass for a test line of this level.
fn subtest_lines(record: &TestRecord) -> String {
    let Some(subtests) = text_attachment(record, "subtests") else {
        return String::new();
    };
    let mut out = String::new();
    for line in subtests.lines() {
        if indentation(line) == 0 && !line.starts_with('#') {
            out.push_str("    ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes each line of `text` as a TAP comment.
fn write_comments(writer: &mut impl Write, text: &str) -> io::Result<()> {
    for line in text.lines() {
        if line.starts_with('#') {
            writeln!(writer, "{line}")?;
        } else {
            writeln!(writer, "# {line}")?;
        }
    }
    Ok(())
}

/// `ok N - id`, `not ok N - id # TODO reason`, ... without a newline.
fn test_line(number: u64, record: &TestRecord) -> String {
    let description = escape_description(&record.test_id);
    let reason = || {
        text_attachment(record, "reason")
            .map(|reason| escape_description(reason.trim()))
            .filter(|reason| !reason.is_empty())
    };
    match record.status {
        Some(Status::Success) => format!("ok {number} - {description}"),
        Some(Status::Skip) => match reason() {
            Some(reason) => format!("ok {number} - {description} # SKIP {reason}"),
            None => format!("ok {number} - {description} # SKIP"),
        },
        Some(Status::XFail) => {
            let reason = reason().unwrap_or_else(|| "expected failure".to_owned());
            format!("not ok {number} - {description} # TODO {reason}")
        }
        _ => format!("not ok {number} - {description}"),
    }
}

/// Text made safe for a test line: one line, `#` and `\` escaped.
fn escape_description(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '#' => out.push_str("\\#"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The YAML diagnostic block for a run (ending with a newline), or nothing.
fn yaml_block(record: &TestRecord) -> String {
    if let Some(diagnostics) = record
        .attachment(DIAGNOSTICS_FILE)
        .and_then(attachment_text)
    {
        return wrap_yaml(&diagnostics);
    }
    let message = match record.status {
        Some(Status::Fail) => failure_message(record).unwrap_or_else(|| "failed".to_owned()),
        Some(Status::UxSuccess) => "unexpected success".to_owned(),
        Some(Status::Success | Status::Skip | Status::XFail) => return String::new(),
        _ => "test did not finish".to_owned(),
    };
    let mut yaml = String::new();
    yaml_scalar(&mut yaml, "message", &message);
    yaml.push_str("severity: fail\n");
    if let Some(duration) = record.duration() {
        yaml.push_str(&format!("duration_ms: {}\n", duration_ms(duration)));
    }
    for attachment in &record.attachments {
        if attachment.name == "tap comment" {
            continue;
        }
        if let Some(text) = attachment_text(attachment) {
            yaml_scalar(&mut yaml, &attachment.name, &text);
        }
    }
    wrap_yaml(&yaml)
}

/// Milliseconds with up to microsecond precision.
fn duration_ms(duration: Duration) -> String {
    let micros = duration.as_micros();
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

/// A YAML document indented under a test line, between `---` and `...`.
fn wrap_yaml(yaml: &str) -> String {
    let mut out = String::from("  ---\n");
    for line in yaml.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("  ...\n");
    out
}

/// Appends `key: value` to a YAML mapping: a block scalar (`|`) for lines of
/// text that can be one, else a double-quoted string.
fn yaml_scalar(yaml: &mut String, key: &str, value: &str) {
    let key = yaml_key(key);
    if !value.contains('\n') || !block_scalar_safe(value) {
        yaml.push_str(&format!("{key}: {}\n", yaml_quoted(value)));
        return;
    }
    let first_line = value.split('\n').next().unwrap_or_default();
    let indicator = if first_line.is_empty() || first_line.starts_with(' ') {
        "2"
    } else {
        ""
    };
    let chomping = if value.ends_with("\n\n") || value == "\n" {
        "+"
    } else if value.ends_with('\n') {
        ""
    } else {
        "-"
    };
    yaml.push_str(&format!("{key}: |{indicator}{chomping}\n"));
    let body = value.strip_suffix('\n').unwrap_or(value);
    for line in body.split('\n') {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
}

/// A mapping key: plain when it is a simple word, else quoted.
fn yaml_key(key: &str) -> Cow<'_, str> {
    let simple = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if simple {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(yaml_quoted(key))
    }
}

/// A YAML double-quoted string, escaping everything not printable.
fn yaml_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if yaml_printable(c) => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// Whether text can be a YAML block scalar: printable, with `\n` line
/// breaks only.
fn block_scalar_safe(text: &str) -> bool {
    text.chars().all(|c| c == '\n' || yaml_printable(c))
}

/// Whether YAML (1.1 and 1.2) takes a character as it is, in content that is
/// not a line break.
fn yaml_printable(c: char) -> bool {
    matches!(c,
        '\t' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use proctor_events::{Collect, Summary};
    use proptest::prelude::*;

    use super::*;

    fn events(tap: &str) -> Vec<Event> {
        let mut sink = Collect::default();
        tap_to_events(tap.as_bytes(), &mut sink).expect("converts");
        sink.events
    }

    fn records(tap: &str) -> Vec<TestRecord> {
        records_from(&events(tap))
    }

    fn records_from(events: &[Event]) -> Vec<TestRecord> {
        let mut aggregator = Aggregator::new();
        let mut records: Vec<TestRecord> = events
            .iter()
            .filter_map(|event| aggregator.push(event))
            .collect();
        records.extend(aggregator.finish());
        records
    }

    fn outcomes(tap: &str) -> Vec<(String, Status)> {
        records(tap)
            .into_iter()
            .map(|r| (r.test_id, r.status.unwrap_or(Status::InProgress)))
            .collect()
    }

    fn owned(pairs: &[(&str, Status)]) -> Vec<(String, Status)> {
        pairs.iter().map(|(id, s)| ((*id).to_owned(), *s)).collect()
    }

    fn file_text(record: &TestRecord, name: &str) -> Option<String> {
        record
            .attachment(name)
            .map(|a| String::from_utf8_lossy(&a.content).into_owned())
    }

    fn global_stdout(events: &[Event]) -> String {
        events
            .iter()
            .filter(|e| e.test_id.is_none())
            .filter_map(|e| e.file.as_ref())
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .collect()
    }

    #[test]
    fn ids_and_statuses_follow_tap2subunit() {
        let tap = "TAP version 13\n1..6\nok 1 - foo bar\nnot ok 2 baz # TODO not done\n\
                   ok 3 # skip no net\nok\nok 5 - passing todo # TODO x\nnot ok 6 - broken\n";
        assert_eq!(
            outcomes(tap),
            owned(&[
                ("test 1 - foo bar", Status::Success),
                ("test 2 baz", Status::XFail),
                ("test 3", Status::Skip),
                ("test 4", Status::Success),
                ("test 5 - passing todo", Status::XFail),
                ("test 6 - broken", Status::Fail),
            ])
        );
        let records = records(tap);
        assert_eq!(
            file_text(&records[1], "reason").as_deref(),
            Some("not done")
        );
        assert_eq!(file_text(&records[2], "reason").as_deref(), Some("no net"));
    }

    #[test]
    fn each_test_is_inprogress_then_final_not_runnable_untimed() {
        let events = events("ok 1 - a\n");
        let statuses: Vec<_> = events.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [Some(Status::InProgress), Some(Status::Success)]);
        assert!(events.iter().all(|e| !e.runnable && e.timestamp.is_none()));
        assert!(events
            .iter()
            .all(|e| e.test_id.as_deref() == Some("test 1 - a")));
    }

    #[test]
    fn a_clock_times_tests_from_the_previous_test_line() {
        let ticks = Arc::new(AtomicU32::new(100));
        let clock_ticks = Arc::clone(&ticks);
        let mut parser = TapParser::new()
            .with_clock(move || Timestamp::new(clock_ticks.fetch_add(1, Ordering::SeqCst), 0));
        let mut sink = Collect::default();
        parser
            .read(&b"# starting\nok 1\nok 2\n"[..], &mut sink)
            .expect("converts");
        assert!(sink.events.iter().all(|e| e.timestamp.is_some()));
        let mut aggregator = Aggregator::new();
        let durations: Vec<_> = sink
            .events
            .iter()
            .filter_map(|e| aggregator.push(e))
            .map(|r| r.duration())
            .collect();
        // First line read at 100; `ok 1` at 102 (101 went to the comment);
        // `ok 2` at 103.
        assert_eq!(
            durations,
            [Some(Duration::from_secs(2)), Some(Duration::from_secs(1))]
        );
    }

    #[test]
    fn planned_tests_that_never_ran_fail() {
        let records = records("1..4\nok 1\nok 3 - c\n");
        let ids: Vec<_> = records
            .iter()
            .map(|r| (r.test_id.as_str(), r.status))
            .collect();
        assert_eq!(
            ids,
            [
                ("test 1", Some(Status::Success)),
                ("test 2", Some(Status::Fail)),
                ("test 3 - c", Some(Status::Success)),
                ("test 4", Some(Status::Fail)),
            ]
        );
        assert_eq!(
            file_text(&records[1], "tap meta").as_deref(),
            Some("test missing from TAP output")
        );
        assert_eq!(
            records[1]
                .attachment("tap meta")
                .and_then(|a| a.mime_type.as_deref()),
            Some(TEXT_MIME)
        );
    }

    #[test]
    fn plan_may_come_last_and_numbers_behind_are_ignored() {
        assert_eq!(
            outcomes("ok 3 - x\nok 2 - y\nnot ok - z\n1..6\n"),
            owned(&[
                ("test 1", Status::Fail),
                ("test 2", Status::Fail),
                ("test 3 - x", Status::Success),
                ("test 4 - y", Status::Success),
                ("test 5 - z", Status::Fail),
                ("test 6", Status::Fail),
            ])
        );
    }

    #[test]
    fn huge_numbers_and_plans_do_not_flood() {
        let records = records("1..99999999999\nok 99999999990\n");
        assert_eq!(records.len(), 11);
        assert_eq!(records[0].test_id, "test 1..99999999989");
        assert_eq!(records[1].test_id, "test 99999999990");
        assert_eq!(records[2].test_id, "test 99999999991");
        let gap = self::records("1..20001\n");
        let ids: Vec<_> = gap.iter().map(|r| r.test_id.as_str()).collect();
        assert_eq!(ids, ["test 1..20001"]);
        assert_eq!(
            file_text(&gap[0], "tap meta").as_deref(),
            Some("20001 tests missing from TAP output")
        );
        let overflow =
            self::records("ok 99999999999999999999999 - big\nok 18446744073709551615\nok\n");
        let ids: Vec<_> = overflow.iter().map(|r| r.test_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "test 1 99999999999999999999999 - big",
                "test 2..18446744073709551614",
                "test 18446744073709551615",
                "test 18446744073709551615",
            ]
        );
    }

    #[test]
    fn skipped_file_plan() {
        let records = records("1..0 # SKIP no database\n");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].test_id, "file skip");
        assert_eq!(records[0].status, Some(Status::Skip));
        assert_eq!(
            file_text(&records[0], "reason").as_deref(),
            Some("no database")
        );
        let bare = self::records("1..0 #\n");
        assert_eq!(bare.len(), 1);
        assert!(bare[0].attachments.is_empty());
        assert!(self::records("1..0\n").is_empty());
        assert_eq!(
            outcomes("ok 1\n1..0 # SKIP\n"),
            owned(&[("test 1", Status::Success)])
        );
    }

    #[test]
    fn bail_out_fails_and_stops_interpreting() {
        let tap = "1..4\nok 1\nBail out! db gone\nok 2\n# tail\n";
        let events = events(tap);
        assert_eq!(global_stdout(&events), "ok 2\n# tail\n");
        assert_eq!(
            outcomes(tap),
            owned(&[
                ("test 1", Status::Success),
                ("Bail out! db gone", Status::Fail),
                ("test 2", Status::Fail),
                ("test 3", Status::Fail),
                ("test 4", Status::Fail),
            ])
        );
        assert_eq!(
            outcomes("Bail out!\n"),
            owned(&[("Bail out!", Status::Fail)])
        );
    }

    #[test]
    fn yaml_block_is_attached_before_the_final_status() {
        let tap = "not ok 1 - parses\n  ---\n  message: \"boom\"\n  data:\n    - 1\n\n    - ...\n  ...\nok 2\n";
        let events = events(tap);
        let diagnostics = events
            .iter()
            .position(|e| e.file.as_ref().is_some_and(|f| f.name == DIAGNOSTICS_FILE))
            .expect("attached");
        let fail = events
            .iter()
            .position(|e| e.status == Some(Status::Fail))
            .expect("failed");
        assert!(diagnostics < fail);
        assert_eq!(events[diagnostics].mime_type.as_deref(), Some(YAML_MIME));
        assert!(events[diagnostics].eof);
        let records = records(tap);
        assert_eq!(records.len(), 2);
        assert_eq!(
            file_text(&records[0], DIAGNOSTICS_FILE).as_deref(),
            Some("message: \"boom\"\ndata:\n  - 1\n\n  - ...\n")
        );
        assert!(global_stdout(&events).is_empty());
    }

    #[test]
    fn unterminated_yaml_ends_at_a_dedented_line() {
        let tap = "not ok 1\n  ---\n  message: x\nok 2\n";
        let records = records(tap);
        assert_eq!(records.len(), 2);
        assert_eq!(
            file_text(&records[0], DIAGNOSTICS_FILE).as_deref(),
            Some("message: x\n")
        );
        let at_end = self::records("not ok 1\n  ---\n  message: y\n");
        assert_eq!(
            file_text(&at_end[0], DIAGNOSTICS_FILE).as_deref(),
            Some("message: y\n")
        );
    }

    #[test]
    fn comments_attach_to_the_test_before_them() {
        let tap = "# header\nnot ok 1 - x\n#   Failed test 'x'\n#   at t.t line 5.\nok 2\n";
        let events = events(tap);
        assert_eq!(global_stdout(&events), "# header\n");
        let records = records(tap);
        assert_eq!(
            file_text(&records[0], "tap comment").as_deref(),
            Some("#   Failed test 'x'\n#   at t.t line 5.")
        );
        assert!(records[1].attachments.is_empty());
    }

    #[test]
    fn other_lines_are_forwarded_as_stdout() {
        let tap = "TAP version 14\nhello\n\nok 1\npragma +strict\n";
        let events = events(tap);
        assert_eq!(global_stdout(&events), "hello\n\npragma +strict\n");
        let stdout = events.iter().find(|e| e.file.is_some()).expect("forwarded");
        assert_eq!(stdout.mime_type.as_deref(), Some(TEXT_MIME));
        assert!(!stdout.eof);
    }

    #[test]
    fn subtests_belong_to_the_parent_line_after_them() {
        let tap = "TAP version 14\n\
                   # Subtest: parent\n\
                   \x20   # Subtest: inner\n\
                   \x20   ok 1 - inner\n\
                   \x20     ---\n\
                   \x20     duration_ms: 0.5\n\
                   \x20     ...\n\
                   \x20   not ok 2 - other # TODO later\n\
                   \x20   1..2\n\
                   ok 1 - parent\n\
                   \x20 ---\n\
                   \x20 duration_ms: 2\n\
                   \x20 ...\n\
                   ok 2 - next\n\
                   1..2\n";
        let records = records(tap);
        let ids: Vec<_> = records.iter().map(|r| r.test_id.as_str()).collect();
        assert_eq!(ids, ["test 1 - parent", "test 2 - next"]);
        let subtests = file_text(&records[0], "subtests").expect("subtests kept");
        assert!(subtests.starts_with("# Subtest: parent\n    # Subtest: inner\n"));
        assert!(subtests.ends_with("    1..2\n"));
        assert_eq!(
            file_text(&records[0], DIAGNOSTICS_FILE).as_deref(),
            Some("duration_ms: 2\n")
        );
        assert!(global_stdout(&events(tap)).is_empty());

        let mut sink = TapSink::new(Vec::new());
        tap_to_events(tap.as_bytes(), &mut sink).expect("converts");
        sink.finish().expect("finishes");
        let again = String::from_utf8(sink.into_inner()).expect("UTF-8");
        let body = tap.lines().skip(1).take(12).collect::<Vec<_>>().join("\n");
        let body = body.replace("ok 1 - parent", "ok 1 - test 1 - parent");
        assert!(again.contains(&body), "{again}");
    }

    #[test]
    fn a_subtest_header_alone_is_a_comment() {
        let records = records("# Subtest: fails\nnot ok 1 - fails\n# detail\n");
        assert_eq!(records[0].attachment("subtests"), None);
        assert_eq!(
            file_text(&records[0], "tap comment").as_deref(),
            Some("# Subtest: fails\n# detail")
        );
    }

    #[test]
    fn unclaimed_indented_lines_are_forwarded_at_the_end() {
        let tap = "ok 1\n    ok 1 - orphan\n";
        let events = events(tap);
        assert_eq!(global_stdout(&events), "    ok 1 - orphan\n");
        assert_eq!(outcomes(tap), owned(&[("test 1", Status::Success)]));
    }

    #[test]
    fn test_lines_parse_like_tap_14() {
        let line = |text| TestLine::parse(text).expect("a test line");
        assert_eq!(
            line("not ok 12 - a \\# b \\\\ c # todo: later \\# x"),
            TestLine {
                ok: false,
                number: Some(12),
                description: "- a # b \\ c".to_owned(),
                directive: Some((Directive::Todo, "later # x".to_owned())),
            }
        );
        assert_eq!(line("ok 3 # Skipped: nope").status(), Status::Skip);
        assert_eq!(
            line("ok 3 # SKIP").directive,
            Some((Directive::Skip, String::new()))
        );
        assert_eq!(
            line("ok - # not a directive").description,
            "- # not a directive"
        );
        assert_eq!(line("ok 1foo").number, None);
        assert_eq!(line("ok\t7\t- tabbed").number, Some(7));
        assert_eq!(line("ok 4 # todos are fine").status(), Status::Success);
        for not_a_test in ["okay", "ok#", "not okay", " ok 1", "OK 1", ""] {
            assert_eq!(TestLine::parse(not_a_test), None, "{not_a_test:?}");
        }
    }

    #[test]
    fn plans_parse() {
        assert_eq!(
            Plan::parse("1..3"),
            Some(Plan {
                count: 3,
                skip_reason: None
            })
        );
        assert_eq!(
            Plan::parse("1..0 # Skipped: no x"),
            Some(Plan {
                count: 0,
                skip_reason: Some("no x".to_owned())
            })
        );
        for not_a_plan in [
            "1..",
            "..3",
            "1..3 tests",
            "a..3",
            "1..99999999999999999999999",
        ] {
            assert_eq!(Plan::parse(not_a_plan), None, "{not_a_plan:?}");
        }
    }

    #[test]
    fn crlf_lines_and_missing_final_newline() {
        assert_eq!(
            outcomes("1..2\r\nok 1 - a\r\nnot ok 2 - b"),
            owned(&[
                ("test 1 - a", Status::Success),
                ("test 2 - b", Status::Fail)
            ])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let mut sink = Collect::default();
        let error =
            tap_to_events(&b"ok 1\nok 2\nok \xff 3\n"[..], &mut sink).expect_err("bad UTF-8");
        assert!(
            matches!(error, TapError::InvalidUtf8 { line: 3, column: 4 }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "TAP line 3 is not valid UTF-8 (bad byte at column 4)"
        );

        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let error = tap_to_events(io::BufReader::new(Failing), &mut sink).expect_err("I/O");
        assert!(matches!(error, TapError::Io { line: 1, .. }), "{error}");

        struct Refusing;
        impl Sink for Refusing {
            fn event(&mut self, _: &Event) -> Result<(), SinkError> {
                Err(io::Error::other("full").into())
            }
        }
        let error = tap_to_events(&b"1..1\nhello\n"[..], &mut Refusing).expect_err("sink");
        assert!(matches!(error, TapError::Sink { line: 2, .. }), "{error}");
    }

    #[test]
    fn parser_is_reusable_after_finish() {
        let mut parser = TapParser::new();
        let mut sink = Collect::default();
        parser.read(&b"1..2\nok 1\n"[..], &mut sink).expect("first");
        parser.read(&b"ok 1\n"[..], &mut sink).expect("second");
        let ids: Vec<_> = sink
            .events
            .iter()
            .filter(|e| e.status.is_some_and(Status::is_final))
            .filter_map(|e| e.test_id.as_deref())
            .collect();
        assert_eq!(ids, ["test 1", "test 2", "test 1"]);
    }

    #[test]
    fn lines_can_be_fed_one_by_one() {
        let mut parser = TapParser::new();
        let mut sink = Collect::default();
        for line in [
            "1..2\n",
            "not ok 1 - a\r\n",
            "  ---\n",
            "  x: 1\n",
            "  ...\n",
        ] {
            parser.line(line, &mut sink).expect("takes the line");
        }
        assert_eq!(
            sink.events.len(),
            1,
            "the final status waits: {:?}",
            sink.events
        );
        parser.finish(&mut sink).expect("finishes");
        let records = records_from(&sink.events);
        let ids: Vec<_> = records
            .iter()
            .map(|r| (r.test_id.as_str(), r.status))
            .collect();
        assert_eq!(
            ids,
            [
                ("test 1 - a", Some(Status::Fail)),
                ("test 2", Some(Status::Fail))
            ]
        );
        assert_eq!(
            file_text(&records[0], DIAGNOSTICS_FILE).as_deref(),
            Some("x: 1\n")
        );

        struct Refusing;
        impl Sink for Refusing {
            fn event(&mut self, _: &Event) -> Result<(), SinkError> {
                Err(io::Error::other("full").into())
            }
        }
        parser.line("1..1", &mut Refusing).expect("nothing to send");
        let error = parser.finish(&mut Refusing).expect_err("sink refuses");
        assert!(matches!(error, TapError::Sink { line: 1, .. }), "{error}");
    }

    // ---- events to TAP ----

    fn text(test_id: &str, name: &str, content: &str) -> Event {
        Event::text(Some(test_id.to_owned()), name, content)
    }

    fn tap_of(events: &[Event]) -> String {
        let mut sink = TapSink::new(Vec::new());
        for event in events {
            sink.event(event).expect("writes");
        }
        sink.finish().expect("finishes");
        String::from_utf8(sink.into_inner()).expect("UTF-8")
    }

    /// The YAML documents in TAP text, parsed.
    fn yaml_documents(tap: &str) -> Vec<yaml_rust2::Yaml> {
        let mut documents = Vec::new();
        let mut current: Option<String> = None;
        for line in tap.lines() {
            match (line, current.as_mut()) {
                ("  ---", None) => current = Some(String::new()),
                ("  ...", Some(_)) => {
                    let text = current.take().expect("open");
                    let mut parsed = yaml_rust2::YamlLoader::load_from_str(&text)
                        .unwrap_or_else(|e| panic!("bad YAML {e}:\n{text}"));
                    documents.push(parsed.remove(0));
                }
                (line, Some(text)) => {
                    text.push_str(line.strip_prefix("  ").expect("indented"));
                    text.push('\n');
                }
                _ => {}
            }
        }
        documents
    }

    #[test]
    fn statuses_map_to_tap_lines() {
        let tap = tap_of(&[
            Event::test("pkg.ok", Status::Success),
            text("pkg.skip", "reason", "no net\n"),
            Event::test("pkg.skip", Status::Skip),
            Event::test("pkg.bare_skip", Status::Skip),
            text("pkg.xfail", "reason", "bug #12"),
            Event::test("pkg.xfail", Status::XFail),
            Event::test("pkg.bare_xfail", Status::XFail),
            Event::test("pkg.ux", Status::UxSuccess),
            Event::test("pkg.listed", Status::Exists),
            Event::test("pkg.open", Status::InProgress),
        ]);
        let lines: Vec<_> = tap.lines().filter(|l| !l.starts_with("  ")).collect();
        assert_eq!(
            lines,
            [
                "TAP version 13",
                "ok 1 - pkg.ok",
                "ok 2 - pkg.skip # SKIP no net",
                "ok 3 - pkg.bare_skip # SKIP",
                "not ok 4 - pkg.xfail # TODO bug \\#12",
                "not ok 5 - pkg.bare_xfail # TODO expected failure",
                "not ok 6 - pkg.ux",
                "not ok 7 - pkg.open",
                "1..7",
            ]
        );
        let messages: Vec<_> = yaml_documents(&tap)
            .iter()
            .map(|doc| doc["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(messages, ["unexpected success", "test did not finish"]);
    }

    #[test]
    fn failures_get_a_yaml_block() {
        let traceback = "Traceback (most recent call last):\n  File \"x\", line 1\n...\n---\n\nAssertionError: 1 != 2\n";
        let start = Timestamp::new(1_700_000_000, 0);
        let tap = tap_of(&[
            Event::test("t.fails", Status::InProgress).at(start),
            text("t.fails", "traceback", traceback),
            text("t.fails", "stderr", "  leading spaces\nno newline"),
            text("t.fails", "weird: key", "tab\there\u{7}bell\r\n"),
            text("t.fails", "empty", ""),
            Event::test("t.fails", Status::Fail)
                .at(start.saturating_add(Duration::from_micros(12_345_678))),
        ]);
        let documents = yaml_documents(&tap);
        assert_eq!(documents.len(), 1, "{tap}");
        let doc = &documents[0];
        assert_eq!(doc["message"].as_str(), Some("AssertionError: 1 != 2"));
        assert_eq!(doc["severity"].as_str(), Some("fail"));
        assert_eq!(doc["duration_ms"].as_f64(), Some(12345.678));
        assert_eq!(doc["traceback"].as_str(), Some(traceback));
        assert_eq!(doc["stderr"].as_str(), Some("  leading spaces\nno newline"));
        assert_eq!(doc["weird: key"].as_str(), Some("tab\there\u{7}bell\r\n"));
        assert_eq!(doc["empty"].as_str(), Some(""));
        assert!(tap.contains("  traceback: |\n    Traceback"), "{tap}");
    }

    #[test]
    fn block_scalars_survive_awkward_text() {
        for value in [
            "\n",
            "a\n\n",
            "\n\nb",
            "  x\n y",
            "\u{85}",
            "é\u{2028}",
            "a\tb",
            "- a\n# b",
        ] {
            let mut yaml = String::new();
            yaml_scalar(&mut yaml, "v", value);
            let parsed = yaml_rust2::YamlLoader::load_from_str(&yaml)
                .unwrap_or_else(|e| panic!("{value:?} gave bad YAML {e}:\n{yaml}"));
            assert_eq!(parsed[0]["v"].as_str(), Some(value), "{yaml}");
        }
    }

    #[test]
    fn foreign_subtests_cannot_pass_for_test_lines() {
        let tap = tap_of(&[
            text("t", "subtests", "ok 1 - inner\n  1..1\n# note"),
            Event::test("t", Status::Success),
        ]);
        assert_eq!(
            tap,
            "TAP version 13\n    ok 1 - inner\n  1..1\n# note\nok 1 - t\n1..1\n"
        );
    }

    #[test]
    fn lines_are_written_as_runs_finish() {
        let mut sink = TapSink::new(Vec::new());
        sink.event(&Event::test("a", Status::InProgress))
            .expect("writes");
        sink.event(&Event::test("a", Status::Success))
            .expect("writes");
        assert_eq!(sink.count(), 1);
        let written = String::from_utf8(sink.into_inner()).expect("UTF-8");
        assert_eq!(written, "TAP version 13\nok 1 - a\n");
    }

    #[test]
    fn empty_stream_and_global_output() {
        assert_eq!(tap_of(&[]), "TAP version 13\n1..0\n");
        let tap = tap_of(&[
            Event::file(None, "stdout", &b"hello\nwor"[..], false),
            Event::file(None, "stdout", &b"ld\n# already\npartial"[..], false),
            Event::file(None, "other", &b"ignored\n"[..], false),
        ]);
        assert_eq!(
            tap,
            "TAP version 13\n# hello\n# world\n# already\n# partial\n1..0\n"
        );
    }

    #[test]
    fn descriptions_are_escaped() {
        let tap = tap_of(&[Event::test("a#b\\c\nd", Status::Success)]);
        assert!(tap.contains("ok 1 - a\\#b\\\\c d\n"), "{tap}");
        let parsed = TestLine::parse("ok 1 - a\\#b\\\\c d").expect("parses");
        assert_eq!(parsed.description, "- a#b\\c d");
    }

    #[test]
    fn round_trip_keeps_counts_and_statuses() {
        let tap = "TAP version 13\n1..8\n# header\nok 1 - a\nnot ok 2 - b\n  ---\n  message: boom\n  ...\n\
                   # after b\nok 3 - c # SKIP later\nnot ok 4 - d # TODO soon\nok 5 - e # TODO done\n\
                   random\nok 7\n";
        let first = outcomes(tap);
        let mut sink = TapSink::new(Vec::new());
        tap_to_events(tap.as_bytes(), &mut sink).expect("converts");
        sink.finish().expect("finishes");
        let again = String::from_utf8(sink.into_inner()).expect("UTF-8");
        let second = outcomes(&again);
        assert_eq!(first.len(), 8);
        assert_eq!(second.len(), first.len(), "{again}");
        let statuses = |o: &[(String, Status)]| o.iter().map(|(_, s)| *s).collect::<Vec<_>>();
        assert_eq!(statuses(&second), statuses(&first), "{again}");
        assert!(
            again.contains("not ok 2 - test 2 - b\n  ---\n  message: boom\n  ...\n# after b\n"),
            "{again}"
        );
        assert!(
            again.contains("ok 3 - test 3 - c # SKIP later\n"),
            "{again}"
        );
        assert!(again.ends_with("1..8\n"), "{again}");

        let summarise = |text: &str| {
            let mut summary = Summary::new();
            tap_to_events(text.as_bytes(), &mut summary).expect("converts");
            summary.finish().expect("finishes");
            (
                summary.total,
                summary.passed,
                summary.failed,
                summary.skipped,
            )
        };
        assert_eq!(summarise(&again), summarise(tap));
    }

    const FRAGMENTS: &[&str] = &[
        "ok",
        "not ok",
        " ",
        "  ",
        "\t",
        "1",
        "99999999999999999999",
        "..",
        "1..",
        "#",
        "# SKIP",
        "# TODO",
        "\\",
        "\\#",
        "-",
        "---",
        "...",
        "Bail out!",
        "TAP version 13",
        "# Subtest: x",
        "é",
        "\r",
        "pragma +strict",
        "0",
        "18446744073709551615",
    ];

    fn tap_line() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
                "[ -~]{0,6}",
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn never_panics_on_tap_like_lines(lines in prop::collection::vec(tap_line(), 0..40)) {
            let input = lines.join("\n");
            let mut summary = Summary::new();
            tap_to_events(input.as_bytes(), &mut summary).expect("any UTF-8 converts");
            summary.finish().expect("finishes");
            let mut sink = TapSink::new(Vec::new());
            tap_to_events(input.as_bytes(), &mut sink).expect("any UTF-8 converts");
            sink.finish().expect("finishes");
            let again = String::from_utf8(sink.into_inner()).expect("TAP is UTF-8");
            let mut resummary = Summary::new();
            tap_to_events(again.as_bytes(), &mut resummary).expect("converts again");
            resummary.finish().expect("finishes");
            prop_assert_eq!(resummary.total, summary.total);
            prop_assert_eq!(resummary.failed, summary.failed);
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut sink = Collect::default();
            let _ = tap_to_events(&bytes[..], &mut sink);
        }
    }
}
