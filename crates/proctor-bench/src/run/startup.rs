//! A `.testr.conf` project whose interpreter start-up dominates (issue 11):
//! 2 500 quick unittest tests in 25 modules, whose package takes
//! [`IMPORT_TIME`] to import, run by `proctor run -j 2` and by testrepository's
//! `testr run --parallel --concurrency 2`, both with `PYTHON` set to the
//! virtualenv's interpreter, writing only their subunit stream, and with
//! their history kept (one untimed run stores it first).
//!
//! Beside them, in the same run, the floor for two workers: the listing, then
//! one process per worker running half of the tests (the two at once), each
//! a plain `python -m subunit.run` timed from here. No runner can do with
//! fewer interpreters, so its time is what start-up and the tests cost alone.
//!
//! The import time is a sleep, as elsewhere in these benchmarks: the
//! machine has two cores, and the figures must not depend on the share of
//! them the benchmark gets. Every interpreter the package is imported in
//! writes a line to `starts` (`list` for a listing, `run` otherwise), which
//! is how the table counts the processes each runner started.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proctor_subunit::{EventReader, Status};

use super::{
    compile_to_bytecode, io_error, passed_tests, proctor_run, remove_dir_if_present, secs,
    time_run, write, RunBenchError,
};
use crate::median;
use crate::process::{check_exit, describe, output_checked, ratio, run_checked, ProcessError};

/// Modules in the suite.
const MODULES: usize = 25;
/// Tests in each module's one test case.
const TESTS_PER_MODULE: usize = 100;
/// Tests in the suite.
const TESTS: usize = MODULES * TESTS_PER_MODULE;
/// How long importing the package under test takes.
const IMPORT_TIME: Duration = Duration::from_millis(300);
/// The concurrency measured.
const WORKERS: usize = 2;
/// Timed runs of each command; the median is reported.
const RUNS: usize = 5;

const TESTR_CONF: &str = "[DEFAULT]
test_command=${PYTHON:-python3} -m subunit.run discover -t . tests $LISTOPT $IDOPTION
test_id_option=--load-list $IDFILE
test_list_option=--list
";

/// The commands measured, run in the project.
struct Tools<'a> {
    proctor: &'a Path,
    venv: &'a Path,
    project: &'a Path,
}

impl Tools<'_> {
    fn python(&self) -> PathBuf {
        self.venv.join("bin").join("python")
    }

    fn proctor(&self) -> Command {
        let jobs = WORKERS.to_string();
        let mut command = proctor_run(self.proctor, self.project, &["-j", &jobs]);
        command.env("PYTHON", self.python());
        command
    }

    fn testr(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.venv.join("bin").join("testr"));
        command
            .args(args)
            .current_dir(self.project)
            .env("PYTHON", self.python());
        command
    }

    fn testr_run(&self) -> Command {
        let jobs = WORKERS.to_string();
        self.testr(&["run", "--parallel", "--concurrency", &jobs, "--subunit"])
    }

    /// `python -m subunit.run discover` in the project, with `args`.
    fn subunit_run(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.python());
        command
            .args(["-m", "subunit.run", "discover", "-t", ".", "tests"])
            .args(args)
            .current_dir(self.project)
            .stdin(Stdio::null());
        command
    }

    /// The processes started since the last call, as (listings, others),
    /// from the `starts` file, which is removed.
    fn starts(&self) -> Result<(usize, usize), RunBenchError> {
        let path = self.project.join("starts");
        let text = fs::read_to_string(&path).map_err(io_error("reading", &path))?;
        fs::remove_file(&path).map_err(io_error("removing", &path))?;
        let lists = text.lines().filter(|line| *line == "list").count();
        Ok((lists, text.lines().count() - lists))
    }
}

/// One command's times over the runs, and the processes it started.
#[derive(Default)]
struct Measured {
    times: Vec<Duration>,
    /// Test processes (listing aside) of each run.
    processes: Vec<usize>,
}

impl Measured {
    fn push(&mut self, time: Duration, (_, processes): (usize, usize)) {
        self.times.push(time);
        self.processes.push(processes);
    }

    fn median(&self) -> Duration {
        median(self.times.clone())
    }

    /// The test processes started, as a range when the runs differed.
    fn processes(&self) -> String {
        let least = self.processes.iter().min().copied().unwrap_or_default();
        let most = self.processes.iter().max().copied().unwrap_or_default();
        if least == most {
            least.to_string()
        } else {
            format!("{least}–{most}")
        }
    }
}

/// Measures and prints the comparison table.
pub(super) fn bench(proctor: &Path, venv: &Path, root: &Path) -> Result<(), RunBenchError> {
    let tools = Tools {
        proctor,
        venv,
        project: root,
    };
    write_project(root)?;
    compile_to_bytecode(&tools.python(), root)?;
    println!(
        "\nstart-up suite: {MODULES} modules × {TESTS_PER_MODULE} quick unittest tests, \
         {} s to import, .testr.conf, in {}, PYTHON={}",
        IMPORT_TIME.as_secs_f64(),
        root.display(),
        tools.python().display()
    );
    let stream = root.join("stream.subunit");
    run_checked(&mut tools.testr(&["init"]))?;
    // Untimed: store each runner's history, which the timed runs keep.
    time_run(&mut tools.proctor(), &stream, TESTS)?;
    time_run(&mut tools.testr_run(), &stream, TESTS)?;
    tools.starts()?;
    let mut floor = Measured::default();
    let (mut listing, mut halves) = (Vec::new(), Vec::new());
    let mut kept = Measured::default();
    let mut fresh = Measured::default();
    let mut testr = Measured::default();
    for _ in 0..RUNS {
        let (list, pair) = measure_floor(&tools)?;
        listing.push(list);
        halves.push(pair);
        floor.push(list + pair, tools.starts()?);
        kept.push(
            time_run(&mut tools.proctor(), &stream, TESTS)?,
            tools.starts()?,
        );
        testr.push(
            time_run(&mut tools.testr_run(), &stream, TESTS)?,
            tools.starts()?,
        );
        // Last, so the next kept run still has a history (this run's).
        remove_dir_if_present(&root.join(".proctor"))?;
        fresh.push(
            time_run(&mut tools.proctor(), &stream, TESTS)?,
            tools.starts()?,
        );
    }
    let floor_time = floor.median();
    let testr_time = testr.median();
    println!(
        "\n| {TESTS} tests, {} s of imports, -j {WORKERS} (median of {RUNS}) | time | test \
         processes | **/ floor** | testr / this |\n|---|---|---|---|---|",
        IMPORT_TIME.as_secs_f64()
    );
    println!(
        "| floor: listing ({}) + one process per worker with half the tests ({}) | {} | {} | \
         1.00 | {:.2}× |",
        secs(median(listing)),
        secs(median(halves)),
        secs(floor_time),
        floor.processes(),
        ratio(testr_time, floor_time),
    );
    for (name, measured) in [
        ("`proctor run`, history kept", &kept),
        ("`proctor run`, no history", &fresh),
        ("baseline: `testr run --parallel`, history kept", &testr),
    ] {
        let time = measured.median();
        println!(
            "| {name} | {} | {} | **{:.3}** | {:.2}× |",
            secs(time),
            measured.processes(),
            ratio(time, floor_time),
            ratio(testr_time, time),
        );
    }
    Ok(())
}

/// The floor's two parts: the listing, then the two halves of the tests in
/// one process each, at once; both checked to have done their work.
fn measure_floor(tools: &Tools<'_>) -> Result<(Duration, Duration), RunBenchError> {
    let started = Instant::now();
    let listing = output_checked(&mut tools.subunit_run(&["--list"]))?;
    let list_time = started.elapsed();
    let ids: Vec<String> = EventReader::new(&listing.stdout[..])
        .filter_map(Result::ok)
        .filter(|event| event.status == Some(Status::Exists))
        .filter_map(|event| event.test_id)
        .collect();
    let halves: Vec<PathBuf> = (0..WORKERS)
        .map(|half| tools.project.join(format!("half-{half}")))
        .collect();
    for (half, path) in halves.iter().enumerate() {
        let mine: Vec<&str> = ids
            .iter()
            .skip(half)
            .step_by(WORKERS)
            .map(String::as_str)
            .collect();
        fs::write(path, mine.join("\n") + "\n").map_err(io_error("writing", path))?;
    }
    let started = Instant::now();
    let children = halves
        .iter()
        .map(|path| spawn_half(tools, path))
        .collect::<Result<Vec<_>, _>>()?;
    for (mut child, described) in children {
        let status = child.wait().map_err(ProcessError::spawn(&described))?;
        check_exit(&described, status)?;
    }
    let pair_time = started.elapsed();
    let mut passed = 0;
    for path in &halves {
        passed += passed_tests(&path.with_extension("subunit"))?;
    }
    if passed != TESTS {
        return Err(RunBenchError::Incomplete {
            command: "the floor's two processes".to_owned(),
            passed,
            expected: TESTS,
        });
    }
    Ok((list_time, pair_time))
}

/// Starts one floor process on the tests listed in `list`, its stream
/// going to `list` with the extension `.subunit`.
fn spawn_half(tools: &Tools<'_>, list: &Path) -> Result<(Child, String), RunBenchError> {
    let stream = list.with_extension("subunit");
    let output = fs::File::create(&stream).map_err(io_error("creating", &stream))?;
    let list = list.to_string_lossy();
    let mut command = tools.subunit_run(&["--load-list", &list]);
    command.stdout(output);
    let described = describe(&command);
    let child = command.spawn().map_err(ProcessError::spawn(&described))?;
    Ok((child, described))
}

/// The project: `.testr.conf`, the `app` package whose import takes
/// [`IMPORT_TIME`], and the `tests` package, which imports it.
fn write_project(root: &Path) -> Result<(), RunBenchError> {
    let app = root.join("app");
    let tests = root.join("tests");
    for dir in [&app, &tests] {
        fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    write(&root.join(".testr.conf"), TESTR_CONF)?;
    write(&app.join("__init__.py"), &app_source())?;
    write(&tests.join("__init__.py"), "import app  # noqa: F401\n")?;
    for module in 0..MODULES {
        write(
            &tests.join(format!("test_module_{module:02}.py")),
            &module_source(),
        )?;
    }
    Ok(())
}

/// The package under test: logs the process's start, then takes
/// [`IMPORT_TIME`] as a large package's imports do.
fn app_source() -> String {
    format!(
        "import os\nimport sys\nimport time\n\n\
         _starts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), \
         'starts')\n\
         with open(_starts, 'a') as log:\n    \
         log.write('list\\n' if '--list' in sys.argv else 'run\\n')\n\
         time.sleep({})\n",
        IMPORT_TIME.as_secs_f64()
    )
}

/// A module of one test case with [`TESTS_PER_MODULE`] quick tests that pass.
fn module_source() -> String {
    let mut source = String::from("import unittest\n\n\nclass TestQuick(unittest.TestCase):\n");
    for test in 0..TESTS_PER_MODULE {
        // Writing to a String cannot fail.
        let _ = write!(
            source,
            "\n    def test_{test:03}(self):\n        \
             self.assertEqual(sum(range({test})), {})\n",
            test * test.saturating_sub(1) / 2
        );
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated project must be valid Python with the promised tests,
    /// and every interpreter that imports it must log its start: checked by
    /// the real interpreter from the test virtualenv.
    #[test]
    fn the_generated_project_runs_and_logs_its_starts() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write_project(dir.path())?;
        let output = Command::new(proctor_testkit::python())
            .args(["-m", "unittest", "discover", "-t", ".", "-s", "tests"])
            .current_dir(dir.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("Ran {TESTS} tests")), "{stderr}");
        assert_eq!(fs::read_to_string(dir.path().join("starts"))?, "run\n");
        Ok(())
    }
}
