//! pytest projects (issue 15): `proctor run -j N` against `pytest -n N` (pytest-xdist) on the same suite, at the
//! same concurrency, with the test virtualenv's interpreter. Two suites:
//!
//! - toolz 1.0.0's own suite (its sdist, fetched by `scripts/sdists.sh`): 180 quick tests, where start-up and
//!   collection are most of the time;
//! - a generated suite of 200 tests that sleep for the makespan part's heavy-tailed durations, scaled to 12 s in
//!   all, in 10 modules, longest last: where the order matters.
//!
//! Proctor is timed without history (its run repository removed before each run) and with it (kept after one
//! untimed run); pytest-xdist has no history. Each figure is the median of [`RUNS`].

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::makespan::{heavy_tailed_durations, SEED};
use super::{
    compile_to_bytecode, io_error, proctor_run, remove_dir_if_present, secs, time_run, write,
    RunBenchError,
};
use crate::process::{check_exit, describe, ratio, run_checked, ProcessError};
use crate::{median, XorShift};

/// The concurrency measured (the machine has two cores).
const WORKERS: usize = 2;
/// Timed runs per configuration.
const RUNS: usize = 3;
/// The generated suite's total sleep.
const SLEEP_TOTAL: Duration = Duration::from_secs(12);
/// Modules the generated suite's tests are dealt into.
const MODULES: usize = 10;

/// One suite's medians.
struct Figures {
    suite: &'static str,
    tests: usize,
    xdist: Duration,
    fresh: Duration,
    kept: Duration,
}

/// Runs both suites and prints the table.
pub(super) fn bench(proctor: &Path, venv: &Path, root: &Path) -> Result<(), RunBenchError> {
    let python = venv.join("bin/python");
    let toolz = copy_toolz(root)?;
    compile_to_bytecode(&python, &toolz)?;
    let sleeps = root.join("sleeps");
    let tests = write_sleep_suite(&sleeps)?;
    compile_to_bytecode(&python, &sleeps)?;
    let figures = [
        measure(proctor, &python, "toolz 1.0.0", &toolz, 180)?,
        measure(proctor, &python, "heavy-tailed sleeps", &sleeps, tests)?,
    ];
    print_table(&figures);
    Ok(())
}

/// A copy of the toolz project `scripts/sdists.sh` fetched, so runs leave nothing in it.
fn copy_toolz(root: &Path) -> Result<PathBuf, RunBenchError> {
    let source = std::env::var_os("PROCTOR_TEST_PYTEST_PROJECT")
        .map(PathBuf::from)
        .ok_or(RunBenchError::MissingProgram(
            "toolz's sdist (PROCTOR_TEST_PYTEST_PROJECT; scripts/bench fetches it)",
        ))?;
    let copy = root.join("toolz");
    let mut command = Command::new("cp");
    command.arg("-a").arg(&source).arg(&copy);
    run_checked(&mut command)?;
    Ok(copy)
}

/// The generated suite: `tests/test_mNN.py` modules of sleeping tests; how many tests.
fn write_sleep_suite(project: &Path) -> Result<usize, RunBenchError> {
    let tests_dir = project.join("tests");
    fs::create_dir_all(&tests_dir).map_err(io_error("creating", &tests_dir))?;
    write(&project.join("pytest.ini"), "[pytest]\n")?;
    let mut rng = XorShift(SEED);
    let durations = heavy_tailed_durations(&mut rng);
    let scale =
        SLEEP_TOTAL.as_secs_f64() / durations.iter().map(Duration::as_secs_f64).sum::<f64>();
    let mut modules = vec![String::from("import time\n"); MODULES];
    for (index, duration) in durations.iter().enumerate() {
        // Dealt in turn, so the longest (listed last) land in the last modules' tails.
        let module = &mut modules[index % MODULES];
        let _ = write!(
            module,
            "\n\ndef test_{index:03}():\n    time.sleep({:.4})\n",
            duration.as_secs_f64() * scale
        );
    }
    for (number, text) in modules.iter().enumerate() {
        write(&tests_dir.join(format!("test_m{number:02}.py")), text)?;
    }
    Ok(durations.len())
}

/// The medians of pytest-xdist and of proctor without and with history on one suite of `tests` tests.
fn measure(
    proctor: &Path,
    python: &Path,
    suite: &'static str,
    project: &Path,
    tests: usize,
) -> Result<Figures, RunBenchError> {
    // Beside the project, not in it: a file of the project that changes is a change Proctor's kept collection
    // must notice.
    let stream = project.with_extension("subunit");
    let repository = project.join(".proctor");
    let jobs = WORKERS.to_string();
    let proctor_command = || {
        let mut command = proctor_run(proctor, project, &["-j", &jobs]);
        command.env("PYTHON", python);
        command
    };
    let mut xdist = Vec::new();
    let mut fresh = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..RUNS {
        xdist.push(time_xdist(python, project)?);
        remove_dir_if_present(&repository)?;
        fresh.push(time_run(&mut proctor_command(), &stream, tests)?);
    }
    // The last fresh run's history stays for the runs with history.
    for _ in 0..RUNS {
        kept.push(time_run(&mut proctor_command(), &stream, tests)?);
    }
    Ok(Figures {
        suite,
        tests,
        xdist: median(xdist),
        fresh: median(fresh),
        kept: median(kept),
    })
}

/// `python -m pytest -n N -q` in `project`: its wall time, once it exited 0.
fn time_xdist(python: &Path, project: &Path) -> Result<Duration, RunBenchError> {
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n"])
        .arg(WORKERS.to_string())
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let described = describe(&command);
    let started = Instant::now();
    let status = command.status().map_err(ProcessError::spawn(&described))?;
    let elapsed = started.elapsed();
    check_exit(&described, status)?;
    Ok(elapsed)
}

fn print_table(figures: &[Figures]) {
    println!(
        "\n### pytest projects, -j {WORKERS} against pytest -n {WORKERS} (medians of {RUNS})\n\n\
         | suite | tests | pytest -n {WORKERS} | proctor, no history | ratio | proctor, with history | ratio |\n\
         |---|---|---|---|---|---|---|"
    );
    for f in figures {
        println!(
            "| {} | {} | {} | {} | {:.2}× | {} | {:.2}× |",
            f.suite,
            f.tests,
            secs(f.xdist),
            secs(f.fresh),
            ratio(f.fresh, f.xdist),
            secs(f.kept),
            ratio(f.kept, f.xdist),
        );
    }
}
