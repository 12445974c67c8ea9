//! Per-test overhead: 2 000 executables that exit 0 at once, run by `proctor
//! run --executables` and by a minimal runner (`std::process::Command` in N
//! threads pulling from one counter). The minimal runner's wall time is the
//! tests' own time at that concurrency; what proctor takes beyond it, per
//! test, is its overhead.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    fresh_dir, io_error, proctor_run, remove_dir_if_present, run_test, secs, time_run,
    RunBenchError,
};
use crate::median;

/// Tests in the suite.
const TESTS: usize = 2000;
/// The concurrencies measured (the machine has two cores).
const WORKERS: [usize; 2] = [2, 4];
/// Runs of each command; the median is reported.
const RUNS: usize = 5;
/// Where `true` may be.
const TRUE_PATHS: [&str; 2] = ["/bin/true", "/usr/bin/true"];

/// The times measured at one concurrency.
struct Overheads {
    workers: usize,
    direct: Duration,
    stored: Duration,
    unstored: Duration,
}

/// Measures and prints the overhead table.
pub(super) fn bench(proctor: &Path, root: &Path) -> Result<(), RunBenchError> {
    let tests = fresh_dir(&root.join("tests"))?;
    let executables = write_suite(&tests)?;
    let repository = root.join(".proctor");
    let stream = root.join("stream.subunit");
    let tests_arg = tests.to_string_lossy().into_owned();
    println!("\noverhead suite: {TESTS} links to `true` in {tests_arg}");
    let mut results = Vec::new();
    for workers in WORKERS {
        let jobs = workers.to_string();
        let proctor = |extra: &[&str]| {
            let mut args = vec!["--executables", &tests_arg, "-j", &jobs];
            args.extend(extra);
            let mut command = proctor_run(proctor, root, &args);
            time_run(&mut command, &stream, TESTS)
        };
        // Interleaved, so drift in the machine's load hits all three alike.
        let (mut direct, mut stored, mut unstored) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            direct.push(run_directly(&executables, workers)?);
            // Each stored run starts from an empty repository, so each
            // measures the same work.
            remove_dir_if_present(&repository)?;
            stored.push(proctor(&[])?);
            unstored.push(proctor(&["--no-store"])?);
        }
        results.push(Overheads {
            workers,
            direct: median(direct),
            stored: median(stored),
            unstored: median(unstored),
        });
    }
    print_table(&results);
    Ok(())
}

fn print_table(results: &[Overheads]) {
    println!(
        "\n| {TESTS} trivial tests (median of {RUNS}) | direct: Command in N threads | proctor run | \
         overhead per test | proctor run --no-store | overhead per test |\n|---|---|---|---|---|---|"
    );
    for o in results {
        println!(
            "| -j {} | {} | {} | {:.2} ms | {} | {:.2} ms |",
            o.workers,
            secs(o.direct),
            secs(o.stored),
            per_test_overhead_ms(o.stored, o.direct),
            secs(o.unstored),
            per_test_overhead_ms(o.unstored, o.direct),
        );
    }
}

/// `(runner - direct) / tests`, in milliseconds; negative when the runner
/// was faster than the baseline (noise).
fn per_test_overhead_ms(runner: Duration, direct: Duration) -> f64 {
    (runner.as_secs_f64() - direct.as_secs_f64()) * 1000.0 / TESTS as f64
}

/// [`TESTS`] symbolic links to `true`: executables that do nothing, so the
/// figures are all spawning and runner.
fn write_suite(dir: &Path) -> Result<Vec<PathBuf>, RunBenchError> {
    let target = TRUE_PATHS
        .iter()
        .map(Path::new)
        .find(|path| path.exists())
        .ok_or(RunBenchError::MissingProgram("true"))?;
    (0..TESTS)
        .map(|index| {
            let path = dir.join(format!("test_{index:04}"));
            symlink(target, &path).map_err(io_error("linking", &path))?;
            Ok(path)
        })
        .collect()
}

/// The minimal runner: `workers` threads, each taking the next executable
/// until none is left.
fn run_directly(executables: &[PathBuf], workers: usize) -> Result<Duration, RunBenchError> {
    let next = AtomicUsize::new(0);
    let take_and_run = || loop {
        match executables.get(next.fetch_add(1, Ordering::Relaxed)) {
            Some(executable) => run_test(executable)?,
            None => return Ok::<(), RunBenchError>(()),
        }
    };
    let started = Instant::now();
    thread::scope(|scope| {
        let threads: Vec<_> = (0..workers).map(|_| scope.spawn(take_and_run)).collect();
        threads
            .into_iter()
            .try_for_each(|thread| thread.join().map_err(|_| RunBenchError::WorkerPanicked)?)
    })?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::write_script;

    #[test]
    fn overhead_is_the_extra_time_per_test() {
        let overhead = per_test_overhead_ms(Duration::from_secs(3), Duration::from_secs(1));
        assert!((overhead - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_minimal_runner_runs_each_executable_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("log");
        let executables = (0..6)
            .map(|index| {
                let path = dir.path().join(format!("t{index}"));
                write_script(&path, &format!("echo {index} >> '{}'", log.display()))?;
                Ok(path)
            })
            .collect::<Result<Vec<_>, RunBenchError>>()?;
        run_directly(&executables, 4)?;
        let mut lines: Vec<String> = std::fs::read_to_string(&log)?
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(lines, ["0", "1", "2", "3", "4", "5"]);
        Ok(())
    }

    #[test]
    fn the_minimal_runner_reports_a_failing_executable() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fails = dir.path().join("fails");
        write_script(&fails, "exit 2")?;
        let result = run_directly(&[fails], 2);
        assert!(matches!(
            result,
            Err(RunBenchError::Process(
                crate::process::ProcessError::Failed { .. }
            ))
        ));
        Ok(())
    }
}
