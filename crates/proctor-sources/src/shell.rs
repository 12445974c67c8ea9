//! Running a suite's helper commands (listing, concurrency) ourselves.
//!
//! These are short commands run once per `proctor run`, so they use plain
//! `std::process` rather than the supervisor: no limits, output collected
//! whole.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use proctor_subunit::{EventReader, Status, SIGNATURE};

use crate::invocation::SHELL;
use crate::SourceError;

/// The most of a failed command's output an error message quotes.
const OUTPUT_EXCERPT: usize = 8 * 1024;

/// A shell command line to run for a suite.
pub(crate) struct ShellCommand<'a> {
    pub suite: &'a str,
    pub command: &'a str,
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
}

/// Runs `command` (shown as `shown` in errors) to completion with empty standard input, for a listing of
/// `suite`: its output, or why it could not start or did not exit 0, with what it said.
pub(crate) fn listing_output(
    suite: &str,
    shown: &str,
    command: &mut Command,
) -> Result<Output, SourceError> {
    let output = run(suite, shown, command)?;
    if !output.status.success() {
        return Err(SourceError::ListFailed {
            suite: suite.to_owned(),
            command: shown.to_owned(),
            status: output.status,
            output: describe_output(&output),
        });
    }
    Ok(output)
}

fn run(suite: &str, shown: &str, command: &mut Command) -> Result<Output, SourceError> {
    command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SourceError::Spawn {
            suite: suite.to_owned(),
            command: shown.to_owned(),
            source,
        })
}

impl ShellCommand<'_> {
    fn command(&self) -> Command {
        let mut command = Command::new(SHELL);
        command
            .arg("-c")
            .arg(self.command)
            .current_dir(self.cwd)
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    /// Runs the command to completion with empty standard input.
    fn output(&self) -> Result<Output, SourceError> {
        run(self.suite, self.command, &mut self.command())
    }

    /// Runs a listing command and returns the test ids it printed, in order,
    /// each once.
    pub fn list_ids(&self) -> Result<Vec<String>, SourceError> {
        let output = listing_output(self.suite, self.command, &mut self.command())?;
        parse_listing(&output.stdout).ok_or_else(|| SourceError::ListNotUtf8 {
            suite: self.suite.to_owned(),
            command: self.command.to_owned(),
        })
    }

    /// Runs testrepository's `test_run_concurrency` callout: its output,
    /// stripped, is the number of processes to run.
    pub fn concurrency(&self) -> Result<usize, SourceError> {
        let output = self.output()?;
        let problem = |problem: String| SourceError::Concurrency {
            suite: self.suite.to_owned(),
            command: self.command.to_owned(),
            problem,
        };
        if !output.status.success() {
            return Err(problem(format!(
                "failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse::<usize>()
            .map_err(|_| problem(format!("printed {:?}, not a number", text.trim())))
    }
}

/// The ids a listing holds: the `exists` events of a subunit v2 stream, or
/// else one id per non-blank line of text (`None` if that text is not
/// UTF-8). Like testrepository, it decides per listing rather than by
/// configuration.
fn parse_listing(stdout: &[u8]) -> Option<Vec<String>> {
    let ids = match subunit_listing(stdout) {
        Some(ids) => ids,
        None => text_listing(stdout)?,
    };
    let mut seen = HashSet::with_capacity(ids.len());
    Some(
        ids.into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect(),
    )
}

/// The `exists` ids, or `None` when the output is not a subunit stream: it
/// neither starts with a packet nor enumerates anything (plain text decodes
/// to nothing but `stdout` file events).
fn subunit_listing(stdout: &[u8]) -> Option<Vec<String>> {
    let mut reader = EventReader::new(stdout);
    let mut ids = Vec::new();
    // Reading from a slice cannot fail; an error just ends the stream.
    while let Ok(Some(event)) = reader.next_event() {
        if event.status == Some(Status::Exists) {
            ids.extend(event.test_id);
        }
    }
    let is_subunit = !ids.is_empty() || stdout.first() == Some(&SIGNATURE);
    is_subunit.then_some(ids)
}

/// testrepository's v1 list format: ids one per line, blank space stripped.
fn text_listing(stdout: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(stdout).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// What a failed command said: its stderr, then the text it printed or
/// attached on stdout (Python runners put import tracebacks in a subunit
/// attachment), cut to the last [`OUTPUT_EXCERPT`] bytes.
fn describe_output(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut reader = EventReader::new(output.stdout.as_slice());
    while let Ok(Some(event)) = reader.next_event() {
        if let Some(file) = event.file {
            text.push_str(&String::from_utf8_lossy(&file.content));
        }
    }
    let text = text.trim();
    if text.is_empty() {
        return "(it printed nothing)".to_owned();
    }
    match text.char_indices().rev().nth(OUTPUT_EXCERPT) {
        Some((cut, _)) => format!("…{}", &text[cut..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_subunit::{encode, Event};

    fn subunit(events: &[Event]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for event in events {
            encode(event, &mut bytes).expect("small events encode");
        }
        bytes
    }

    #[test]
    fn text_listings_are_stripped_lines() {
        assert_eq!(
            parse_listing(b"  a.b \n\nc d\r\na.b\n").expect("utf-8"),
            ["a.b", "c d"]
        );
    }

    #[test]
    fn subunit_listings_are_exists_events() {
        let mut stream = b"noise before\n".to_vec();
        stream.extend(subunit(&[
            Event::test("x.one", Status::Exists),
            Event::text(None, "stdout", "chatter"),
            Event::test("x.two", Status::Success),
            Event::test("x three", Status::Exists),
        ]));
        assert_eq!(
            parse_listing(&stream).expect("decodes"),
            ["x.one", "x three"]
        );
    }

    #[test]
    fn an_empty_subunit_listing_is_empty() {
        let stream = subunit(&[Event::text(None, "stdout", "nothing here")]);
        assert_eq!(
            parse_listing(&stream).expect("decodes"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn binary_text_is_refused() {
        assert_eq!(parse_listing(b"ok\n\xff\xfe\n"), None);
    }
}
