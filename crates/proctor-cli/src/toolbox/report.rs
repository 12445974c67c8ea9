//! Commands that report on a stream: `stats` and `ls`.

use std::io::Write;
use std::path::PathBuf;

use proctor_events::{Aggregator, Sink, SinkError, Summary, TestRecord};
use proctor_subunit::{Event, Status};
use serde_json::json;

use super::stdout;
use crate::error::CliError;
use crate::exit;
use crate::input::feed;

/// `stats`: totals as subunit-stats prints them, or as JSON.
pub fn stats(files: &[PathBuf], as_json: bool) -> Result<u8, CliError> {
    let mut summary = Summary::new();
    feed(files, &mut summary)?;
    let mut out = stdout();
    if as_json {
        serde_json::to_writer_pretty(&mut out, &stats_json(&summary))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_stats_text(&mut out, &summary)?;
    }
    out.flush()?;
    Ok(exit_status(&summary))
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

/// `ls`: test ids as their runs finish (unfinished ones at the end).
pub fn ls(files: &[PathBuf], times: bool, exists: bool) -> Result<u8, CliError> {
    let mut lister = Lister {
        out: stdout(),
        aggregator: Aggregator::new(),
        summary: Summary::new(),
        times,
        exists,
    };
    feed(files, &mut lister)?;
    Ok(exit_status(&lister.summary))
}

struct Lister<W> {
    out: W,
    aggregator: Aggregator,
    summary: Summary,
    times: bool,
    exists: bool,
}

impl<W: Write> Lister<W> {
    fn write_record(&mut self, record: &TestRecord) -> std::io::Result<()> {
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
        self.summary.event(event)?;
        if let (Some(Status::Exists), Some(test_id)) = (event.status, &event.test_id) {
            if self.exists {
                let line = if self.times { " 0.000" } else { "" };
                writeln!(self.out, "{test_id}{line}")?;
            }
            return Ok(());
        }
        if let Some(record) = self.aggregator.push(event) {
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
