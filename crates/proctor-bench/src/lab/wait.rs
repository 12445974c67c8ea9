//! Waiting on a job through the CLI: `proctor submit --wait` of a trivial job (`test_cmds: "true"`), one at a time
//! against one idle agent, timed from just before the process starts to its exit, process start included; and the
//! same with `--follow`. Baseline: the server's own record of each job, from queued (`created_at`) to ended
//! (`ended_at`): what the CLI adds on top is its process, the submit and learning of the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture::{require_passed, Lab, QUEUE};
use super::{millis, print_latency_table, verdict, LabBenchError, Latencies};
use crate::process::output_checked;

/// Jobs measured per mode (after one warm-up job).
const JOBS: usize = 50;
/// The goal of issue 11 (item 6): a trivial job's submit → done through the CLI, median.
const GOAL_P50: Duration = Duration::from_millis(100);

/// Measures and prints the table of each mode.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\nwait: one idle agent, {JOBS} trivial jobs per mode submitted one at a time by `proctor submit`");
    let proctor = crate::sibling_binary("proctor").map_err(LabBenchError::MissingBinary)?;
    let lab = Lab::start(1)?;
    let measured = measure(&lab, &proctor);
    lab.stop()?;
    for (mode, cli, server) in measured? {
        let cli = Latencies::of(cli);
        print_latency_table(
            &format!("`proctor submit {mode}` of `true`"),
            ("CLI process, submit → exit", cli),
            ("server, queued → ended (baseline)", Latencies::of(server)),
        );
        println!(
            "\nGoal ({mode}): median CLI submit → done ≤ {} ms: {} ({}).",
            GOAL_P50.as_millis(),
            verdict(cli.p50 <= GOAL_P50),
            millis(cli.p50)
        );
    }
    Ok(())
}

/// For each mode, the CLI's times and the server's queued → ended times of the same jobs.
type Measured = Vec<(&'static str, Vec<Duration>, Vec<Duration>)>;

fn measure(lab: &Lab, proctor: &Path) -> Result<Measured, LabBenchError> {
    let job_file = lab.scratch_file(
        "true.yaml",
        &format!("job_queue: {QUEUE}\ntest_data:\n  test_cmds: \"true\"\n"),
    )?;
    let mut measured = Vec::new();
    for mode in ["--wait", "--follow"] {
        // The first job pays for cold caches in the store, the agent and the page cache of the binary.
        submit_once(lab, proctor, &job_file, mode)?;
        let (mut cli, mut server) = (Vec::with_capacity(JOBS), Vec::with_capacity(JOBS));
        for _ in 0..JOBS {
            let (by_cli, by_server) = submit_once(lab, proctor, &job_file, mode)?;
            cli.push(by_cli);
            server.push(by_server);
        }
        measured.push((mode, cli, server));
    }
    Ok(measured)
}

/// One `proctor submit MODE FILE`: its wall time, and the server's queued → ended time of the job it made.
fn submit_once(
    lab: &Lab,
    proctor: &Path,
    job_file: &Path,
    mode: &str,
) -> Result<(Duration, Duration), LabBenchError> {
    let began = Instant::now();
    let output = output_checked(
        Command::new(proctor)
            .args(["submit", mode])
            .arg(job_file)
            .env("PROCTOR_SERVER", lab.client.base())
            .stdin(Stdio::null()),
    )?;
    let by_cli = began.elapsed();
    let job_id = job_id(&String::from_utf8_lossy(&output.stdout))?;
    let job = require_passed(lab.client.job(&job_id)?.job)?;
    let ended = job.ended_at.unwrap_or(job.created_at);
    let by_server = Duration::try_from(ended.duration_since(job.created_at)).unwrap_or_default();
    Ok((by_cli, by_server))
}

/// The id of the job `proctor submit` made: the first line it prints (the log follows it with `--follow`).
fn job_id(stdout: &str) -> Result<String, LabBenchError> {
    stdout
        .lines()
        .next()
        .map(|line| line.trim().to_owned())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| LabBenchError::NoJobId(stdout.to_owned()))
}
