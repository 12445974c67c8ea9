//! Throughput: 50 agents, 500 jobs running `true` submitted at once; jobs per second from the first submit to the
//! end of the last job (its `ended_at` as the server recorded it). Baseline: as many `bash -c true` spawned one
//! after the other by the bench, the raw process work of the jobs.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use proctor_api::{JobState, JobSummaryView, JobsQuery};

use super::fixture::{Lab, PATIENCE, QUEUE};
use super::{since, LabBenchError};
use crate::process::run_checked;

/// Agents serving the queue.
pub(super) const AGENTS: usize = 50;
/// Jobs submitted.
pub(super) const JOBS: usize = 500;
/// How often the bench looks whether the queue has drained; the end time comes from the jobs, not from this.
const POLL: Duration = Duration::from_millis(50);

/// Measures and prints the throughput table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\nthroughput: {AGENTS} agents, {JOBS} jobs running `true` submitted at once");
    let lab = Lab::start(AGENTS)?;
    let measured = run_jobs(&lab);
    lab.stop()?;
    let proctor = measured?;
    let baseline = spawn_serially()?;
    print_table(proctor, baseline);
    Ok(())
}

/// Submits every job, waits for the queue to drain, and answers the time from the first submit to the last end.
pub(super) fn run_jobs(lab: &Lab) -> Result<Duration, LabBenchError> {
    let first_submit = SystemTime::now();
    for _ in 0..JOBS {
        lab.submit("true")?;
    }
    wait_for_drained_queue(lab)?;
    let jobs = lab
        .client
        .jobs(&JobsQuery {
            queue: Some(QUEUE.to_owned()),
            limit: Some(JOBS as u32 + 1),
            ..JobsQuery::default()
        })?
        .jobs;
    if jobs.len() != JOBS {
        return Err(LabBenchError::JobsMissing {
            listed: jobs.len(),
            submitted: JOBS,
        });
    }
    let last_end = jobs
        .into_iter()
        .map(passed_at)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(first_submit);
    Ok(since(first_submit, last_end))
}

/// When the job ended, if it passed (a passed job always has an end; the submit time stands in otherwise, counting
/// as zero); otherwise the error that says how it ended.
fn passed_at(job: JobSummaryView) -> Result<SystemTime, LabBenchError> {
    if job.state != JobState::Passed {
        return Err(LabBenchError::JobFailed {
            job_id: job.id,
            state: job.state,
            reason: job.reason,
        });
    }
    Ok(job.ended_at.unwrap_or(job.created_at).into())
}

fn wait_for_drained_queue(lab: &Lab) -> Result<(), LabBenchError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let queues = lab.client.queues()?;
        let busy = queues
            .iter()
            .filter(|queue| queue.name == QUEUE)
            .any(|queue| queue.queued + queue.running > 0);
        if !busy {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabBenchError::TimedOut {
                what: format!("queue {QUEUE} to drain"),
                patience: PATIENCE,
            });
        }
        thread::sleep(POLL);
    }
}

/// The jobs' process work alone: `bash -c true`, one after the other.
fn spawn_serially() -> Result<Duration, LabBenchError> {
    let started = Instant::now();
    for _ in 0..JOBS {
        run_checked(
            Command::new("bash")
                .args(["-c", "true"])
                .stdin(Stdio::null()),
        )?;
    }
    Ok(started.elapsed())
}

fn print_table(proctor: Duration, baseline: Duration) {
    let rate = |time: Duration| JOBS as f64 / time.as_secs_f64();
    println!("\n| {JOBS} jobs running `true` | wall time | jobs/s |\n|---|---|---|");
    println!(
        "| proctor: {AGENTS} agents, first submit to last job ended | {:.2} s | {:.1} |",
        proctor.as_secs_f64(),
        rate(proctor)
    );
    println!(
        "| baseline: `bash -c true` spawned serially | {:.2} s | {:.1} |",
        baseline.as_secs_f64(),
        rate(baseline)
    );
    println!(
        "| **proctor / baseline** | | **{:.2}×** |",
        rate(proctor) / rate(baseline)
    );
}
