//! A Python unittest suite of 2 000 trivial tests (20 modules × 100) in an
//! stestr project, run by `proctor run` and by `stestr run` at the same
//! concurrency, both with `PYTHON` set to the virtualenv's interpreter and
//! both writing only their subunit stream (`--subunit`).
//!
//! The modules are compiled to bytecode before any run, as a developer's
//! checkout has them after its first run: otherwise every test process
//! compiles all 20 modules again whenever `PYTHONDONTWRITEBYTECODE` is set
//! (as in this container), which taxes the runner starting more processes.
//!
//! Each is measured twice over: from an empty run repository every time
//! (listing, partitioning or ordering without history, storing), and with
//! the history kept (after one untimed run that stores it).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{
    compile_to_bytecode, io_error, proctor_run, remove_dir_if_present, secs, time_run, write,
    RunBenchError,
};
use crate::median;
use crate::process::ratio;

/// Modules in the suite.
const MODULES: usize = 20;
/// Tests in each module's one test case.
const TESTS_PER_MODULE: usize = 100;
/// Tests in the suite.
const TESTS: usize = MODULES * TESTS_PER_MODULE;
/// The concurrencies measured.
const WORKERS: [usize; 2] = [2, 4];
/// Timed runs of each tool per configuration; the median is reported.
const RUNS: usize = 3;

/// Whether the tools' run repositories survive between timed runs.
#[derive(Clone, Copy, Debug)]
enum History {
    /// Removed before every run.
    Fresh,
    /// Stored by an untimed first run and kept.
    Kept,
}

/// One configuration's medians.
struct Comparison {
    workers: usize,
    history: History,
    stestr: Duration,
    proctor: Duration,
}

/// The two runners, as commands to run in the project.
struct Tools<'a> {
    proctor: &'a Path,
    venv: &'a Path,
    project: &'a Path,
}

impl Tools<'_> {
    fn python(&self) -> std::path::PathBuf {
        self.venv.join("bin").join("python")
    }

    fn proctor(&self, workers: usize) -> Command {
        let jobs = workers.to_string();
        let mut command = proctor_run(self.proctor, self.project, &["-j", &jobs]);
        command.env("PYTHON", self.python());
        command
    }

    fn stestr(&self, workers: usize) -> Command {
        let mut command = Command::new(self.venv.join("bin").join("stestr"));
        command
            .args(["run", "--subunit", "--concurrency", &workers.to_string()])
            .current_dir(self.project)
            .env("PYTHON", self.python());
        command
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
        "\npython suite: {MODULES} modules × {TESTS_PER_MODULE} trivial unittest tests in {}, \
         PYTHON={}",
        root.display(),
        tools.python().display()
    );
    let mut results = Vec::new();
    for workers in WORKERS {
        for history in [History::Fresh, History::Kept] {
            results.push(compare(&tools, workers, history)?);
        }
    }
    print_table(&results);
    Ok(())
}

/// Runs both tools [`RUNS`] times, interleaved so that drift in the
/// machine's load hits both alike.
fn compare(
    tools: &Tools<'_>,
    workers: usize,
    history: History,
) -> Result<Comparison, RunBenchError> {
    let proctor_repository = tools.project.join(".proctor");
    let stestr_repository = tools.project.join(".stestr");
    let stream = tools.project.join("stream.subunit");
    remove_dir_if_present(&proctor_repository)?;
    remove_dir_if_present(&stestr_repository)?;
    if let History::Kept = history {
        time_run(&mut tools.proctor(workers), &stream, TESTS)?;
        time_run(&mut tools.stestr(workers), &stream, TESTS)?;
    }
    let (mut proctor, mut stestr) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        if let History::Fresh = history {
            remove_dir_if_present(&proctor_repository)?;
            remove_dir_if_present(&stestr_repository)?;
        }
        proctor.push(time_run(&mut tools.proctor(workers), &stream, TESTS)?);
        stestr.push(time_run(&mut tools.stestr(workers), &stream, TESTS)?);
    }
    Ok(Comparison {
        workers,
        history,
        stestr: median(stestr),
        proctor: median(proctor),
    })
}

fn print_table(results: &[Comparison]) {
    println!(
        "\n| {TESTS} unittest tests (median of {RUNS}) | history | stestr run | proctor run | \
         stestr / proctor |\n|---|---|---|---|---|"
    );
    for c in results {
        let history = match c.history {
            History::Fresh => "none (repositories removed)",
            History::Kept => "kept",
        };
        println!(
            "| --concurrency {} | {history} | {} | {} | {:.2}× |",
            c.workers,
            secs(c.stestr),
            secs(c.proctor),
            ratio(c.stestr, c.proctor),
        );
    }
}

/// The stestr project: `.stestr.conf` and the `tests` package.
fn write_project(root: &Path) -> Result<(), RunBenchError> {
    let tests = root.join("tests");
    fs::create_dir_all(&tests).map_err(io_error("creating", &tests))?;
    write(
        &root.join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\ntop_dir=./\n",
    )?;
    write(&tests.join("__init__.py"), "")?;
    for module in 0..MODULES {
        write(
            &tests.join(format!("test_module_{module:02}.py")),
            &module_source(),
        )?;
    }
    Ok(())
}

/// A module of one test case with [`TESTS_PER_MODULE`] tests that pass.
fn module_source() -> String {
    let mut source = String::from("import unittest\n\n\nclass TestTrivial(unittest.TestCase):\n");
    for test in 0..TESTS_PER_MODULE {
        // Writing to a String cannot fail.
        let _ = write!(
            source,
            "\n    def test_{test:03}(self):\n        self.assertTrue(True)\n"
        );
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated module must be valid Python with the promised tests:
    /// checked by the real interpreter from the test virtualenv.
    #[test]
    fn the_generated_project_lists_every_test() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write_project(dir.path())?;
        let output = Command::new(proctor_testkit::python())
            .args(["-m", "unittest", "discover", "-t", ".", "-s", "tests"])
            .current_dir(dir.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("Ran {TESTS} tests")), "{stderr}");
        Ok(())
    }

    #[test]
    fn the_project_is_compiled_to_bytecode() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write_project(dir.path())?;
        compile_to_bytecode(&proctor_testkit::python(), dir.path())?;
        let cached = fs::read_dir(dir.path().join("tests").join("__pycache__"))?.count();
        // The 20 modules and the package's __init__.
        assert_eq!(cached, MODULES + 1);
        Ok(())
    }

    #[test]
    fn a_missing_interpreter_is_reported() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let result = compile_to_bytecode(&dir.path().join("no-python"), dir.path());
        assert!(matches!(
            result,
            Err(RunBenchError::Process(
                crate::process::ProcessError::Spawn { .. }
            ))
        ));
        Ok(())
    }
}
