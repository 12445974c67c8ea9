//! Commands that report on a stream: `stats` and `ls`.

use std::io::Write;
use std::path::PathBuf;

use proctor_events::{Aggregator, Sink, SinkError, Summary, Tee, TestRecord};
use proctor_subunit::{Event, EventRef, Status};
use serde_json::json;

use super::stdout;
use crate::error::CliError;
use crate::exit;
use crate::input::feed;

/// `stats`: totals as subunit-stats prints them (after any output that
/// belongs to no test, unless `passthrough` is off), or as JSON.
pub fn stats(files: &[PathBuf], as_json: bool, passthrough: bool) -> Result<u8, CliError> {
    let mut summary = Summary::runs_only();
    if as_json || !passthrough {
        feed(files, &mut summary)?;
    } else {
        feed(
            files,
            &mut Tee::new().with(&mut summary).with(GlobalOutput(stdout())),
        )?;
    }
    let mut out = stdout();
    if as_json {
        serde_json::to_writer_pretty(&mut out, &stats_json(&summary))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_stats_text(&mut out, &summary)?;
    }
    out.flush()?;
    let status = exit_status(&summary);
    // The process ends next: freeing every record one by one would only
    // delay it (a few percent of the command on a large stream).
    std::mem::forget(summary);
    Ok(status)
}

fn exit_status(summary: &Summary) -> u8 {
    if summary.was_successful() {
        exit::OK
    } else {
        exit::TESTS_FAILED
    }
}

fn stats_json(summary: &Summary) -> serde_json::Value {
    let counts = summary.statuses;
    json!({
        "total": summary.total,
        "passed": summary.passed,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "success": counts.success,
        "fail": counts.fail,
        "skip": counts.skip,
        "xfail": counts.xfail,
        "uxsuccess": counts.uxsuccess,
        "incomplete": counts.incomplete,
        "tags": summary.tags,
        "failures": summary.failures.iter().map(|r| &r.test_id).collect::<Vec<_>>(),
        "wall_time_seconds": summary.wall_time().map(|d| d.as_secs_f64()),
    })
}

/// The same lines as subunit-stats.
fn write_stats_text(out: &mut impl Write, summary: &Summary) -> std::io::Result<()> {
    writeln!(out, "Total tests:   {:5}", summary.total)?;
    writeln!(out, "Passed tests:  {:5}", summary.passed)?;
    writeln!(out, "Failed tests:  {:5}", summary.failed)?;
    writeln!(out, "Skipped tests: {:5}", summary.skipped)?;
    let tags: Vec<&str> = summary.tags.iter().map(String::as_str).collect();
    writeln!(out, "Seen tags: {}", tags.join(", "))
}

/// `ls`: test ids as their runs finish (unfinished ones at the end), with
/// output that belongs to no test passed through unless `passthrough` is off.
pub fn ls(files: &[PathBuf], times: bool, exists: bool, passthrough: bool) -> Result<u8, CliError> {
    let mut lister = Lister {
        out: stdout(),
        aggregator: Aggregator::new(),
        summary: Summary::runs_only(),
        times,
        exists,
        passthrough,
    };
    feed(files, &mut lister)?;
    Ok(exit_status(&lister.summary))
}

/// Writes the content of file events that belong to no test: what the
/// reference tools pass through.
struct GlobalOutput<W>(W);

impl<W: Write> Sink for GlobalOutput<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.event_ref(&event.view())
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        match (event.test_id, event.file) {
            (None, Some(file)) => Ok(self.0.write_all(file.content)?),
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.0.flush()?)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.0.flush()?)
    }
}

struct Lister<W> {
    out: W,
    aggregator: Aggregator,
    summary: Summary,
    times: bool,
    exists: bool,
    passthrough: bool,
}

impl<W: Write> Lister<W> {
    fn write_record(&mut self, record: &TestRecord) -> std::io::Result<()> {
        // subunit-ls skips empty test ids (subunit-stats counts them).
        if record.test_id.is_empty() {
            return Ok(());
        }
        if self.times {
            let seconds = record.duration().unwrap_or_default().as_secs_f64();
            writeln!(self.out, "{} {seconds:0.3}", record.test_id)
        } else {
            writeln!(self.out, "{}", record.test_id)
        }
    }
}

impl<W: Write> Sink for Lister<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.event_ref(&event.view())
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        self.summary.event_ref(event)?;
        if self.passthrough {
            GlobalOutput(&mut self.out).event_ref(event)?;
        }
        if let (Some(Status::Exists), Some(test_id)) = (event.status, event.test_id) {
            if self.exists && !test_id.is_empty() {
                let line = if self.times { " 0.000" } else { "" };
                writeln!(self.out, "{test_id}{line}")?;
            }
            return Ok(());
        }
        if let Some(record) = self.aggregator.push_ref(event) {
            self.write_record(&record)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.summary.finish()?;
        for record in self.aggregator.finish() {
            self.write_record(&record)?;
        }
        Ok(self.out.flush()?)
    }
}
