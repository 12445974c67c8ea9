//! Live log tail: one agent runs a job printing `tick $EPOCHREALTIME` every 50 ms while the bench follows its log
//! with `read_stream` and a wait (the server answers when bytes arrive); a line's latency runs from its print to
//! the follower's read. Baseline: the same script run directly, its output read through a pipe. The web UI's part
//! reuses the follower and the pipe as the baselines of its browser (with a script that waits before and after).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use proctor_api::{JobState, StreamKind};

use super::fixture::{require_passed, Lab, PATIENCE};
use super::{marked_times, millis, print_latency_table, since, verdict, LabBenchError, Latencies};
use crate::process::{check_exit, ProcessError};

/// Lines the job prints.
const LINES: usize = 100;
/// The word before each printed time.
pub(super) const MARKER: &str = "tick";
/// How long one read may wait for new bytes.
const WAIT: Duration = Duration::from_secs(5);
/// The goal of issue 4.
const GOAL: Duration = Duration::from_millis(250);

/// A job script printing `lines` lines `tick $EPOCHREALTIME`, one every 50 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticks {
    /// How many lines it prints.
    pub(super) lines: usize,
    /// How long it sleeps before the first, so a watcher can be ready (a browser opening the job's page).
    pub(super) before: Duration,
    /// How long it sleeps after the last, so a watcher can collect before the job ends (the page reloads then).
    pub(super) after: Duration,
}

impl Ticks {
    /// The tail part's job: the lines alone, at once.
    const TAIL: Ticks = Ticks {
        lines: LINES,
        before: Duration::ZERO,
        after: Duration::ZERO,
    };

    /// The bash script.
    pub(super) fn script(&self) -> String {
        let sleep = |pause: Duration| {
            if pause.is_zero() {
                String::new()
            } else {
                format!("sleep {}\n", pause.as_secs_f64())
            }
        };
        format!(
            "{}for i in $(seq {}); do\n  echo \"{MARKER} $EPOCHREALTIME\"\n  sleep 0.05\ndone\n{}",
            sleep(self.before),
            self.lines,
            sleep(self.after)
        )
    }
}

/// Measures and prints the tail table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\ntail: one agent, a job printing a line every 50 ms ({LINES} lines), followed live");
    let lab = Lab::start(1)?;
    let measured = follow(&lab, &Ticks::TAIL);
    lab.stop()?;
    let latencies = measured?;
    let baseline = read_through_pipe(&Ticks::TAIL)?;
    print_table(Latencies::of(latencies), Latencies::of(baseline));
    Ok(())
}

/// Submits the job and reads its log as it grows until the job ended and everything was read; each line's latency.
pub(super) fn follow(lab: &Lab, ticks: &Ticks) -> Result<Vec<Duration>, LabBenchError> {
    let job = lab.submit(&ticks.script())?;
    let deadline = Instant::now() + PATIENCE;
    let mut latencies = Vec::with_capacity(ticks.lines);
    let mut offset = 0;
    let mut partial_line = Vec::new();
    let mut saw_the_end = false;
    loop {
        let read = lab
            .client
            .read_stream(&job.id, StreamKind::Log, offset, None, Some(WAIT))?;
        let arrived = SystemTime::now();
        offset = read.next_offset;
        if !read.bytes.is_empty() {
            partial_line.extend_from_slice(&read.bytes);
            latencies.extend(
                complete_lines_times(&mut partial_line).map(|printed| since(printed, arrived)),
            );
            continue;
        }
        if read.job_state.is_some_and(JobState::is_final) {
            // One more read after the end was seen: bytes stored between the read and the state are not lost.
            if saw_the_end {
                break;
            }
            saw_the_end = true;
            continue;
        }
        if Instant::now() > deadline {
            return Err(LabBenchError::TimedOut {
                what: format!("job {}'s log to end", job.id),
                patience: PATIENCE,
            });
        }
    }
    require_passed(lab.client.job(&job.id)?.job)?;
    if latencies.len() != ticks.lines {
        return Err(LabBenchError::NoTimestamp {
            job_id: job.id.clone(),
            marker: MARKER,
            log: lab.log(&job.id)?,
        });
    }
    Ok(latencies)
}

/// The times on the complete lines at the start of `buffer`, which keeps only its unfinished last line.
fn complete_lines_times(buffer: &mut Vec<u8>) -> impl Iterator<Item = SystemTime> {
    let complete = match buffer.iter().rposition(|&byte| byte == b'\n') {
        Some(end) => buffer.drain(..=end).collect(),
        None => Vec::new(),
    };
    let text = String::from_utf8_lossy(&complete).into_owned();
    marked_times(&text, MARKER).collect::<Vec<_>>().into_iter()
}

/// The same script run directly, each line's latency from its print to the bench reading it from the pipe.
pub(super) fn read_through_pipe(ticks: &Ticks) -> Result<Vec<Duration>, LabBenchError> {
    let spawn_error = ProcessError::spawn("bash -c <the tail script>");
    let mut child = Command::new("bash")
        .args(["-c", &ticks.script()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(&spawn_error)?;
    let mut latencies = Vec::with_capacity(ticks.lines);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(&spawn_error)?;
            let arrived = SystemTime::now();
            latencies.extend(marked_times(&line, MARKER).map(|printed| since(printed, arrived)));
        }
    }
    let status = child.wait().map_err(&spawn_error)?;
    check_exit("bash -c <the tail script>", status)?;
    if latencies.len() != ticks.lines {
        return Err(LabBenchError::MissingLines {
            what: "the tail baseline printed",
            expected: ticks.lines,
            found: latencies.len(),
        });
    }
    Ok(latencies)
}

fn print_table(proctor: Latencies, baseline: Latencies) {
    print_latency_table(
        &format!("print → read by the follower ({LINES} lines)"),
        (
            "proctor: agent spool → upload → server → read_stream with a wait",
            proctor,
        ),
        (
            "baseline: the script's stdout read through a pipe",
            baseline,
        ),
    );
    println!(
        "goal p99 ≤ {}: {}",
        millis(GOAL),
        verdict(proctor.p99 <= GOAL)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_sleeps_only_when_asked() {
        assert!(!Ticks::TAIL.script().contains("sleep 0\n"));
        assert!(Ticks::TAIL.script().starts_with("for i in $(seq 100); do"));
        let waiting = Ticks {
            lines: 2,
            before: Duration::from_secs(2),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            waiting.script(),
            "sleep 2\nfor i in $(seq 2); do\n  echo \"tick $EPOCHREALTIME\"\n  sleep 0.05\ndone\nsleep 1.5\n"
        );
    }
}
