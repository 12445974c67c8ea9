//! `proctor-bench run [--venv DIR] [PART...]`: the benchmarks of `proctor
//! run` (issue 3), each against a baseline measured in the same run.
//!
//! - `makespan`: a heavy-tailed suite of sleep tests against the lower bound
//!   `max(total / workers, longest test)`, and against stestr's static
//!   partitions (round-robin without history, longest-first with it).
//! - `overhead`: 2 000 trivial executables, proctor against a minimal runner
//!   (`std::process::Command` in N threads): the per-test overhead.
//! - `python`: a 2 000-test unittest suite, `proctor run` against `stestr run`.
//! - `startup`: a `.testr.conf` suite of 2 500 quick tests whose package takes
//!   0.3 s to import, `proctor run` against `testr run --parallel` and the
//!   floor (listing, then one process per worker).
//! - `pytest`: toolz's own pytest suite and a heavy-tailed one, `proctor run -j 2` against `pytest -n 2`
//!   (pytest-xdist), without history and with it (see `run/pytest.rs`).
//! - `ssh`: the makespan suite over an ssh pool of two loopback `sshd` × two
//!   workers against the lower bound and a static N/M split, and the per-test
//!   overhead of an ssh worker over a local slot (see `run/ssh.rs`).
//!
//! Every part runs when none is named. Sleeps stand in for work because the
//! machine has two cores: scheduling figures must not depend on CPU share.

pub(crate) mod makespan;
mod overhead;
mod pytest;
mod python;
mod ssh;
mod startup;

use std::collections::HashMap;
use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proctor_subunit::{EventReader, Status};
use thiserror::Error;

use crate::process::{check_exit, describe, run_checked, ProcessError};
use crate::sibling_binary;

const USAGE: &str =
    "usage: proctor-bench run [--venv DIR] [makespan|overhead|python|pytest|startup|ssh]...";

/// Why the `run` benchmark could not produce its figures.
#[derive(Debug, Error)]
pub enum RunBenchError {
    /// The command line was not understood.
    #[error("{USAGE}")]
    Usage,
    /// A part name that is not one of the benchmarks.
    #[error(
        "unknown part {0:?}: expected makespan, overhead, python, pytest, startup or ssh\n{USAGE}"
    )]
    UnknownPart(String),
    /// The Python parts need the test virtualenv.
    #[error(
        "give --venv DIR or set PROCTOR_TEST_VENV (the python and startup parts run its \
         stestr and testr)"
    )]
    NoVenv,
    /// The `proctor` binary is not built beside this one.
    #[error("{0}")]
    MissingBinary(String),
    /// A program a generated suite needs is not installed.
    #[error("{0} not found on this machine")]
    MissingProgram(&'static str),
    /// A file or directory of the generated suites could not be written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A measured command (or test) did not start or did not exit 0, so its time means nothing.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A measured command exited 0 but did not run every test.
    #[error("{command} passed {passed} tests, expected {expected}")]
    Incomplete {
        /// The command line.
        command: String,
        /// Tests whose last status in its stream was `success`.
        passed: usize,
        /// Tests in the generated suite.
        expected: usize,
    },
    /// A baseline worker thread died, so its run has no valid time.
    #[error("a baseline worker thread panicked")]
    WorkerPanicked,
}

/// One benchmark of this command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Makespan,
    Overhead,
    Python,
    Pytest,
    Startup,
    Ssh,
}

impl Part {
    const ALL: [Part; 6] = [
        Part::Makespan,
        Part::Overhead,
        Part::Python,
        Part::Pytest,
        Part::Startup,
        Part::Ssh,
    ];

    /// Whether it runs the Python tools of the test virtualenv.
    fn needs_venv(self) -> bool {
        matches!(self, Part::Python | Part::Pytest | Part::Startup)
    }

    fn parse(name: &str) -> Result<Part, RunBenchError> {
        match name {
            "makespan" => Ok(Part::Makespan),
            "overhead" => Ok(Part::Overhead),
            "python" => Ok(Part::Python),
            "pytest" => Ok(Part::Pytest),
            "startup" => Ok(Part::Startup),
            "ssh" => Ok(Part::Ssh),
            _ => Err(RunBenchError::UnknownPart(name.to_owned())),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
struct Options {
    venv: Option<PathBuf>,
    parts: Vec<Part>,
}

fn parse_options(args: &[String]) -> Result<Options, RunBenchError> {
    let mut venv = None;
    let mut parts = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--venv" {
            venv = Some(PathBuf::from(args.next().ok_or(RunBenchError::Usage)?));
        } else if arg.starts_with('-') {
            return Err(RunBenchError::Usage);
        } else {
            parts.push(Part::parse(arg)?);
        }
    }
    if parts.is_empty() {
        parts = Part::ALL.to_vec();
    }
    let venv = venv.or_else(|| env::var_os("PROCTOR_TEST_VENV").map(PathBuf::from));
    Ok(Options { venv, parts })
}

/// Runs the parts asked for, printing a Markdown table for each.
pub fn run_bench(args: &[String]) -> Result<(), RunBenchError> {
    let options = parse_options(args)?;
    let proctor = sibling_binary("proctor").map_err(RunBenchError::MissingBinary)?;
    let venv = match (&options.venv, options.parts.iter().any(|p| p.needs_venv())) {
        // Absolute, because the tools run in the generated project's directory.
        (Some(venv), _) => Some(fs::canonicalize(venv).map_err(io_error("finding", venv))?),
        (None, true) => return Err(RunBenchError::NoVenv),
        (None, false) => None,
    };
    let root = env::temp_dir().join("proctor-bench").join("run");
    println!(
        "proctor: {}\nscratch: {}",
        proctor.display(),
        root.display()
    );
    for part in options.parts {
        let dir = fresh_dir(&root.join(format!("{part:?}").to_lowercase()))?;
        match (part, &venv) {
            (Part::Makespan, _) => makespan::bench(&proctor, &dir)?,
            (Part::Overhead, _) => overhead::bench(&proctor, &dir)?,
            (Part::Ssh, _) => ssh::bench(&proctor, &dir)?,
            (Part::Python, Some(venv)) => python::bench(&proctor, venv, &dir)?,
            (Part::Pytest, Some(venv)) => pytest::bench(&proctor, venv, &dir)?,
            (Part::Startup, Some(venv)) => startup::bench(&proctor, venv, &dir)?,
            (Part::Python | Part::Pytest | Part::Startup, None) => {
                return Err(RunBenchError::NoVenv)
            }
        }
    }
    Ok(())
}

/// `dir`, emptied (or created).
pub(crate) fn fresh_dir(dir: &Path) -> Result<PathBuf, RunBenchError> {
    remove_dir_if_present(dir)?;
    fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    Ok(dir.to_path_buf())
}

/// Removes a tool's run repository so the next run starts without history.
fn remove_dir_if_present(dir: &Path) -> Result<(), RunBenchError> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("removing", dir)(error))
        }
        _ => Ok(()),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RunBenchError {
    let path = path.to_path_buf();
    move |source| RunBenchError::Io {
        action,
        path,
        source,
    }
}

/// Writes a file of a generated project.
fn write(path: &Path, text: &str) -> Result<(), RunBenchError> {
    fs::write(path, text).map_err(io_error("writing", path))
}

/// `python -m compileall` over the project, so that no measured run pays
/// for compiling the test modules.
fn compile_to_bytecode(python: &Path, project: &Path) -> Result<(), RunBenchError> {
    let mut command = std::process::Command::new(python);
    command
        .args(["-m", "compileall", "-q", "."])
        .current_dir(project);
    Ok(crate::process::run_checked(&mut command)?)
}

/// Writes a shell script and makes it executable.
pub(crate) fn write_script(path: &Path, body: &str) -> Result<(), RunBenchError> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("#!/bin/sh\n{body}\n")).map_err(io_error("writing", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(io_error("making executable", path))
}

/// `proctor run -C project --subunit` with `extra` arguments: the subunit
/// stream is all it prints, so no terminal drawing is timed.
pub(crate) fn proctor_run(proctor: &Path, project: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(proctor);
    command
        .arg("run")
        .arg("-C")
        .arg(project)
        .arg("--subunit")
        .args(extra);
    command
}

/// Runs `command` with its standard output in the file `stream`, times it,
/// and checks that it exited 0 and that the subunit stream it wrote shows
/// `expected` passed tests.
pub(crate) fn time_run(
    command: &mut Command,
    stream: &Path,
    expected: usize,
) -> Result<Duration, RunBenchError> {
    let described = describe(command);
    let output = fs::File::create(stream).map_err(io_error("creating", stream))?;
    command.stdin(Stdio::null()).stdout(output);
    let started = Instant::now();
    let status = command.status().map_err(ProcessError::spawn(&described))?;
    let elapsed = started.elapsed();
    check_exit(&described, status)?;
    let passed = passed_tests(stream)?;
    if passed != expected {
        return Err(RunBenchError::Incomplete {
            command: described,
            passed,
            expected,
        });
    }
    Ok(elapsed)
}

/// The tests whose last status in the subunit stream in `path` is
/// `success`.
fn passed_tests(path: &Path) -> Result<usize, RunBenchError> {
    let file = fs::File::open(path).map_err(io_error("opening", path))?;
    let mut last_status: HashMap<String, Status> = HashMap::new();
    for event in EventReader::new(io::BufReader::new(file)) {
        let event = event.map_err(io_error("reading", path))?;
        if let (Some(id), Some(status)) = (event.test_id, event.status) {
            last_status.insert(id, status);
        }
    }
    Ok(last_status
        .values()
        .filter(|status| **status == Status::Success)
        .count())
}

/// Runs one test executable, as a baseline runner does: output discarded,
/// exit 0 required.
fn run_test(path: &Path) -> Result<(), RunBenchError> {
    Ok(run_checked(
        Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )?)
}

/// Seconds with two decimals, for tables.
pub(crate) fn secs(time: Duration) -> String {
    format!("{:.2} s", time.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_subunit::{encode, Event};

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn options_name_parts_and_venv() {
        let options = parse_options(&strings(&["--venv", "/v", "python", "makespan"]));
        assert_eq!(
            options.ok(),
            Some(Options {
                venv: Some(PathBuf::from("/v")),
                parts: vec![Part::Python, Part::Makespan],
            })
        );
    }

    #[test]
    fn no_part_means_every_part() {
        let options = parse_options(&strings(&["--venv", "/v"]));
        assert_eq!(options.map(|o| o.parts).ok(), Some(Part::ALL.to_vec()));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(matches!(
            parse_options(&strings(&["--venv"])),
            Err(RunBenchError::Usage)
        ));
        assert!(matches!(
            parse_options(&strings(&["--fast"])),
            Err(RunBenchError::Usage)
        ));
        assert!(matches!(
            parse_options(&strings(&["speed"])),
            Err(RunBenchError::UnknownPart(name)) if name == "speed"
        ));
    }

    #[test]
    fn a_test_counts_as_passed_by_its_last_status() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("stream.subunit");
        let mut stream = Vec::new();
        for (id, status) in [
            ("a", Status::InProgress),
            ("a", Status::Success),
            ("b", Status::Fail),
            ("c", Status::Fail),
            ("c", Status::Success),
            ("d", Status::Success),
            ("d", Status::Fail),
        ] {
            encode(&Event::test(id, status), &mut stream)?;
        }
        fs::write(&path, stream)?;
        assert_eq!(passed_tests(&path)?, 2);
        Ok(())
    }

    #[test]
    fn a_failing_command_is_an_error_not_a_time() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let result = time_run(&mut Command::new("false"), &dir.path().join("out"), 0);
        assert!(
            matches!(result, Err(RunBenchError::Process(ProcessError::Failed { command, .. })) if command == "false")
        );
        Ok(())
    }

    #[test]
    fn a_command_that_runs_too_few_tests_is_an_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let result = time_run(&mut Command::new("true"), &dir.path().join("out"), 3);
        assert!(matches!(
            result,
            Err(RunBenchError::Incomplete {
                passed: 0,
                expected: 3,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn baseline_tests_must_pass() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pass = dir.path().join("pass");
        let fail = dir.path().join("fail");
        write_script(&pass, "exit 0")?;
        write_script(&fail, "exit 3")?;
        run_test(&pass)?;
        assert!(matches!(
            run_test(&fail),
            Err(RunBenchError::Process(ProcessError::Failed { .. }))
        ));
        assert!(matches!(
            run_test(&dir.path().join("missing")),
            Err(RunBenchError::Process(ProcessError::Spawn { .. }))
        ));
        Ok(())
    }
}
