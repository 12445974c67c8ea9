//! Dispatch latency: 10 idle agents long-polling, jobs submitted one at a time (each after the previous ended).
//! A job's latency runs from just before its submit to the moment its test process printed `$EPOCHREALTIME`, read
//! back from the job's log. Baseline, interleaved with the jobs: what that path cannot avoid, one HTTP round trip
//! to the same server and spawning the same `bash` directly.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use super::fixture::Lab;
use super::{marked_times, millis, print_latency_table, since, verdict, LabBenchError, Latencies};
use crate::process::output_checked;

/// Idle agents waiting on the queue.
const AGENTS: usize = 10;
/// Jobs measured (after one warm-up job).
const JOBS: usize = 200;
/// The word before the time the test process prints.
const MARKER: &str = "started";
/// The goals of issue 4.
const GOAL_P50: Duration = Duration::from_millis(5);
const GOAL_P99: Duration = Duration::from_millis(25);

/// Measures and prints the dispatch table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\ndispatch: {AGENTS} idle agents, {JOBS} jobs submitted one at a time");
    let lab = Lab::start(AGENTS)?;
    let measured = measure(&lab);
    lab.stop()?;
    let (dispatch, baseline) = measured?;
    print_table(Latencies::of(dispatch), Latencies::of(baseline));
    Ok(())
}

/// The latencies of the jobs and of the baseline, interleaved so drift in the machine's load hits both alike.
fn measure(lab: &Lab) -> Result<(Vec<Duration>, Vec<Duration>), LabBenchError> {
    // The first job pays for cold caches in the store and the agent; it is not what dispatch costs.
    dispatch_once(lab)?;
    let mut dispatch = Vec::with_capacity(JOBS);
    let mut baseline = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        dispatch.push(dispatch_once(lab)?);
        baseline.push(baseline_once(lab)?);
    }
    Ok((dispatch, baseline))
}

/// One job: submit, wait for its end, read when its test process started.
fn dispatch_once(lab: &Lab) -> Result<Duration, LabBenchError> {
    Ok(dispatch_job(lab)?.latency)
}

/// One job's dispatch latency, and which servers it went through.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dispatched {
    /// From just before the submit to the moment its test process printed the time.
    pub(super) latency: Duration,
    /// The server it was submitted to.
    pub(super) submitted_to: usize,
    /// The first server of the agent that ran it (where that agent's claim was held).
    pub(super) claimed_on: Option<usize>,
}

/// One job as [`bench()`] measures it: submitted (to the lab's servers in turn), followed to its end, its test
/// process's start read from its log.
pub(super) fn dispatch_job(lab: &Lab) -> Result<Dispatched, LabBenchError> {
    let submitted = SystemTime::now();
    let (job, submitted_to) = lab.submit_counted(&format!("echo {MARKER} $EPOCHREALTIME"))?;
    let (job, log) = lab.follow_job_to_end(&job.id)?;
    let started = marked_times(&log, MARKER).next();
    let Some(started) = started else {
        return Err(LabBenchError::NoTimestamp {
            job_id: job.id,
            marker: MARKER,
            log,
        });
    };
    Ok(Dispatched {
        latency: since(submitted, started),
        submitted_to,
        claimed_on: job.agent_id.as_deref().and_then(|agent| lab.home_of(agent)),
    })
}

/// One HTTP round trip to the same server, then the job's command spawned directly.
pub(super) fn baseline_once(lab: &Lab) -> Result<Duration, LabBenchError> {
    let script = format!("echo {MARKER} $EPOCHREALTIME");
    let began = SystemTime::now();
    lab.client.queues()?;
    let output = output_checked(
        Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null()),
    )?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let started =
        marked_times(&printed, MARKER)
            .next()
            .ok_or_else(|| LabBenchError::NoTimestamp {
                job_id: "(baseline)".into(),
                marker: MARKER,
                log: printed.clone().into_owned(),
            })?;
    Ok(since(began, started))
}

fn print_table(dispatch: Latencies, baseline: Latencies) {
    print_latency_table(
        &format!("submit → test process started ({JOBS} jobs)"),
        (
            "proctor: submit, held claim woken, agent starts the phase",
            dispatch,
        ),
        (
            "baseline: GET /api/v1/queues + `bash -c` spawned directly",
            baseline,
        ),
    );
    println!(
        "goal p50 ≤ {}: {}; goal p99 ≤ {}: {}",
        millis(GOAL_P50),
        verdict(dispatch.p50 <= GOAL_P50),
        millis(GOAL_P99),
        verdict(dispatch.p99 <= GOAL_P99)
    );
}
