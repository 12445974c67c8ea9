//! One run over the lab's agents (issue 14): `proctor run --executables t --lab URL --queue fanout` of a
//! heavy-tailed suite of 48 sleep scripts, timed from the process's start to its exit (holding the agents, sending
//! the tree and releasing the agents included), against:
//!
//! - the lower bound `max(total / 4, longest test)` of any schedule on 4 workers, for the first run (no history:
//!   the listing order, whose longest tests come last) and the second (longest first, from the first run's
//!   times);
//! - the same suite held on 1 agent (the speed-up of 4 agents);
//! - the same suite run here with `-j 4` (what going through the lab costs).
//!
//! Unlike the other lab parts, the server and agents are `proctor server` and `proctor agent` processes of the
//! release binary: a run's worker job starts `"$PROCTOR_BIN" lab-worker`, and `PROCTOR_BIN` is the agent's own
//! program, which for an agent inside this bench would be the bench. Each configuration is measured
//! [`REPEATS`] times, each time in a fresh project (a fresh `.proctor`, so the first run has no history), and the
//! median is reported. Sleeps stand in for work because the machine has two cores.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use proctor_api::AgentState;
use proctor_client::Client;

use super::fixture::PATIENCE;
use super::LabBenchError;
use crate::process::{describe, ratio, ProcessError};
use crate::run::makespan::{longest_last, lower_bound, shuffled, unit_interval};
use crate::run::{fresh_dir, proctor_run, secs, time_run, write_script};
use crate::{median, XorShift};

/// The queue the agents serve.
const QUEUE: &str = "fanout";
/// Agents in the lab, and workers of the measured run.
const AGENTS: usize = 4;
/// Tests in the suite.
const TESTS: usize = 48;
/// Runs of each configuration; the median is reported.
const REPEATS: usize = 3;
/// The shortest and the longest a test may sleep (the bounded Pareto's bounds).
const SHORTEST: f64 = 0.05;
const LONGEST: f64 = 4.0;
/// The bounded Pareto's shape: 0.5 on [0.05 s, 4 s] gives a median near 0.17 s, three quarters of the tests
/// under 0.5 s, two or three over 2 s, and about 22 s in all.
const ALPHA: f64 = 0.5;
/// How many of the longest tests the listing puts last: the worst order for a run without history (the makespan
/// part of `proctor-bench run` does the same).
const LONG_LAST: usize = 2;
/// The generator's seed, so every run benchmarks the same suite.
const SEED: u64 = 0x1319_8A2E_0370_7344;

/// The makespans of every repetition of each configuration.
#[derive(Default)]
struct Measured {
    first: Vec<Duration>,
    second: Vec<Duration>,
    one_agent: Vec<Duration>,
    local: Vec<Duration>,
}

/// Measures and prints the table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    let proctor = crate::sibling_binary("proctor").map_err(LabBenchError::MissingBinary)?;
    let scratch = super::scratch_dir()?;
    let durations = suite_durations(&mut XorShift(SEED));
    describe_suite(&durations);
    let lab = ProcessLab::start(&proctor, scratch.path())?;
    let measured = measure(&lab, &proctor, scratch.path(), &durations);
    // Stopped before the result is looked at, so that a failed run leaves no processes behind.
    drop(lab);
    print_table(&measured?, &durations);
    Ok(())
}

/// Runs every configuration [`REPEATS`] times, each repetition in a fresh project holding the same suite.
fn measure(
    lab: &ProcessLab,
    proctor: &Path,
    root: &Path,
    durations: &[Duration],
) -> Result<Measured, LabBenchError> {
    let mut measured = Measured::default();
    let stream = root.join("stream.subunit");
    let workers = AGENTS.to_string();
    for repeat in 0..REPEATS {
        let project = fresh_dir(&root.join(format!("project-{repeat}")))?;
        write_suite(&fresh_dir(&project.join("t"))?, durations)?;
        let time = |extra: &[&str]| -> Result<Duration, LabBenchError> {
            // Every agent back to claiming first, so that no run waits for the previous one's jobs to wind down.
            lab.wait_idle()?;
            let mut args = vec!["--executables", "t"];
            args.extend_from_slice(extra);
            Ok(time_run(
                &mut proctor_run(proctor, &project, &args),
                &stream,
                TESTS,
            )?)
        };
        let on_lab = |count| {
            [
                "--lab",
                lab.url.as_str(),
                "--queue",
                QUEUE,
                "--workers",
                count,
            ]
        };
        // In this order: the first run stores the times the second (and the ones after it) order by.
        let first = time(&on_lab(&workers))?;
        let second = time(&on_lab(&workers))?;
        let one_agent = time(&on_lab("1"))?;
        let local = time(&["-j", &workers])?;
        println!(
            "repeat {}: lab × {AGENTS} 1st {}, 2nd {}; lab × 1 {}; local -j {AGENTS} {}",
            repeat + 1,
            secs(first),
            secs(second),
            secs(one_agent),
            secs(local)
        );
        measured.first.push(first);
        measured.second.push(second);
        measured.one_agent.push(one_agent);
        measured.local.push(local);
    }
    Ok(measured)
}

/// [`TESTS`] durations from a bounded Pareto on [[`SHORTEST`], [`LONGEST`]], one from each of [`TESTS`] equal
/// slices of its quantiles (so that the tail is there whatever the seed: a plain sample of 48 may miss it or draw
/// a giant), rounded to milliseconds, shuffled, and the [`LONG_LAST`] longest listed last.
fn suite_durations(rng: &mut XorShift) -> Vec<Duration> {
    let floor = (SHORTEST / LONGEST).powf(ALPHA);
    let sorted: Vec<Duration> = (0..TESTS)
        .map(|slice| {
            let quantile = (slice as f64 + unit_interval(rng)) / TESTS as f64;
            // The inverse of the bounded Pareto's distribution function.
            let seconds = SHORTEST / (1.0 - quantile * (1.0 - floor)).powf(1.0 / ALPHA);
            Duration::from_millis((seconds * 1000.0).round() as u64)
        })
        .collect();
    longest_last(shuffled(&sorted, rng), LONG_LAST)
}

fn describe_suite(durations: &[Duration]) {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let total: Duration = durations.iter().sum();
    let under_half = sorted.iter().filter(|d| d.as_millis() <= 500).count();
    let over_two = sorted.iter().filter(|d| d.as_millis() >= 2000).count();
    let longest: Vec<String> = sorted[sorted.len().saturating_sub(4)..]
        .iter()
        .map(|duration| format!("{:.2}", duration.as_secs_f64()))
        .collect();
    println!(
        "\nfanout: {TESTS} sleep tests, bounded Pareto durations (α = {ALPHA} on [{SHORTEST} s, {LONGEST} s], \
         seed {SEED:#x}): {:.2} s in total, median {:.3} s, {under_half} ≤ 0.5 s, {over_two} ≥ 2 s; the 4 longest \
         {} s; lab: 1 `proctor server` (SQLite) + {AGENTS} `proctor agent` on queue {QUEUE}; {REPEATS} repeats",
        total.as_secs_f64(),
        sorted[sorted.len() / 2].as_secs_f64(),
        longest.join(", "),
    );
}

/// `t/tNN.sh`, one sleep script per duration, so that proctor's listing (by name) is the order given.
fn write_suite(dir: &Path, durations: &[Duration]) -> Result<(), LabBenchError> {
    for (index, duration) in durations.iter().enumerate() {
        let path = dir.join(format!("t{index:02}.sh"));
        write_script(&path, &format!("exec sleep {:.3}", duration.as_secs_f64()))?;
    }
    Ok(())
}

fn print_table(measured: &Measured, durations: &[Duration]) {
    let bound = lower_bound(durations, AGENTS);
    let total: Duration = durations.iter().sum();
    let runs = |times: &[Duration]| {
        times
            .iter()
            .map(|time| format!("{:.2}", time.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let first = median(measured.first.clone());
    let second = median(measured.second.clone());
    let one_agent = median(measured.one_agent.clone());
    let local = median(measured.local.clone());
    println!(
        "\n| makespan, {TESTS} tests ({:.2} s serial) | median of {REPEATS} | runs (s) | ratio |\n|---|---|---|---|",
        total.as_secs_f64()
    );
    println!(
        "| lower bound, max(total / {AGENTS}, longest) | {} | | |",
        secs(bound)
    );
    println!(
        "| lab, {AGENTS} agents, 1st run (no history) | {} | {} | **{:.2}×** the lower bound |",
        secs(first),
        runs(&measured.first),
        ratio(first, bound)
    );
    println!(
        "| lab, {AGENTS} agents, 2nd run (with history) | {} | {} | **{:.2}×** the lower bound |",
        secs(second),
        runs(&measured.second),
        ratio(second, bound)
    );
    println!(
        "| lab, 1 agent (with history) | {} | {} | **{:.2}×** speed-up of {AGENTS} agents (2nd run) over 1 |",
        secs(one_agent),
        runs(&measured.one_agent),
        ratio(one_agent, second)
    );
    println!(
        "| local, `-j {AGENTS}` (with history) | {} | {} | lab {AGENTS} agents (2nd run) **{:.2}×** local |",
        secs(local),
        runs(&measured.local),
        ratio(second, local)
    );
}

/// A `proctor server` and [`AGENTS`] `proctor agent` processes, each agent with its own work directory under the
/// scratch directory; killed when dropped.
struct ProcessLab {
    url: String,
    client: Client,
    children: Vec<Child>,
    /// Kept open so that the server never writes to a closed pipe.
    _server_out: BufReader<ChildStdout>,
}

impl ProcessLab {
    /// Starts the server (SQLite in `root/data`, an ephemeral loopback port) and the agents, and waits until every
    /// agent is registered and idle.
    fn start(proctor: &Path, root: &Path) -> Result<ProcessLab, LabBenchError> {
        let mut server = Command::new(proctor);
        server
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(root.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&root.join("server.log"))?);
        let mut child = spawn(&mut server)?;
        let stdout = child.stdout.take();
        let mut children = vec![child];
        let Some(stdout) = stdout else {
            kill_all(&mut children);
            return Err(LabBenchError::ServeProcess("no standard output".into()));
        };
        let mut out = BufReader::new(stdout);
        // Its first line names the address it bound: `proctor server listening on http://127.0.0.1:PORT (…)`.
        let mut line = String::new();
        let url = match out.read_line(&mut line) {
            Ok(_) => line
                .split_whitespace()
                .find(|word| word.starts_with("http://"))
                .map(str::to_owned),
            Err(_) => None,
        };
        let Some(url) = url else {
            kill_all(&mut children);
            return Err(LabBenchError::ServeProcess(format!(
                "no URL in its first line {line:?}"
            )));
        };
        let mut lab = ProcessLab {
            client: Client::new(&url, None)?,
            url,
            children,
            _server_out: out,
        };
        for index in 0..AGENTS {
            let id = format!("fanout-{index}");
            let mut agent = Command::new(proctor);
            agent
                .args(["agent", "--server", &lab.url, "--id", &id, "--queue", QUEUE])
                // A short claim wait, as the end-to-end tests use: an agent back from a job claims again at once
                // either way, and stopping does not wait for a long hold.
                .args(["--heartbeat", "1", "--grace", "1", "--claim-wait", "2"])
                .arg("--work-dir")
                .arg(root.join("work").join(&id))
                .env_remove("PROCTOR_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&root.join(format!("{id}.log")))?);
            lab.children.push(spawn(&mut agent)?);
        }
        lab.wait_idle()?;
        Ok(lab)
    }

    /// Waits until [`AGENTS`] agents are registered and idle.
    fn wait_idle(&self) -> Result<(), LabBenchError> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let idle = self.client.agents().map(|agents| {
                agents
                    .iter()
                    .filter(|agent| agent.state == AgentState::Idle)
                    .count()
            });
            if idle.is_ok_and(|idle| idle >= AGENTS) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabBenchError::TimedOut {
                    what: format!("{AGENTS} idle agents of {}", self.url),
                    patience: PATIENCE,
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ProcessLab {
    fn drop(&mut self) {
        kill_all(&mut self.children);
    }
}

/// Kills and reaps each of `children` (agents first, the server last: they are listed in the order started).
fn kill_all(children: &mut Vec<Child>) {
    while let Some(mut child) = children.pop() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn spawn(command: &mut Command) -> Result<Child, LabBenchError> {
    let described = describe(command);
    Ok(command.spawn().map_err(ProcessError::spawn(&described))?)
}

/// A log file for a lab process's standard error, so that a failure can be looked into.
fn log_file(path: &Path) -> Result<File, LabBenchError> {
    File::create(path).map_err(|source| LabBenchError::Io {
        action: "creating",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_heavy_tailed_and_about_22_seconds() {
        let durations = suite_durations(&mut XorShift(SEED));
        assert_eq!(durations.len(), TESTS);
        let total: Duration = durations.iter().sum();
        assert!((20.0..=25.0).contains(&total.as_secs_f64()), "{total:?}");
        let longest = durations.iter().max().copied().unwrap_or_default();
        assert!((2.0..=4.0).contains(&longest.as_secs_f64()), "{longest:?}");
        assert_eq!(durations.last(), Some(&longest));
        let short = durations.iter().filter(|d| d.as_millis() <= 500).count();
        assert!(short * 4 >= TESTS * 3, "{short} of {TESTS} ≤ 0.5 s");
    }
}
