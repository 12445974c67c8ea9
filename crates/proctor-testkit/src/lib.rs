//! Test support shared by Proctor's crates (a dev-dependency only).
//!
//! Proctor's tests check it against real peers: python-subunit, junitxml and
//! stestr from PyPI, installed by `scripts/test` into a virtualenv at
//! `target/test-venv` (or wherever `PROCTOR_TEST_VENV` points). This crate finds
//! that virtualenv, its tools, and the helper scripts in `tests/python/` at the
//! workspace root, and runs them.
//!
//! A missing virtualenv is a test failure, never a skip: every helper panics
//! with a message saying to run `./scripts/test`.
//!
//! ```no_run
//! let output = proctor_testkit::run_script_ok("decode_json.py", &["run.subunit"], b"");
//! let stats = proctor_testkit::venv_command("subunit-stats").output().unwrap();
//! ```
// Test support: a panic is how a test fails, so it unwraps and expects like the tests it serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod netns;
mod postgres;
mod sshd;

pub use browser::{screenshot, screenshot_dir, Client, Driver, Element, Locator};
pub use netns::Netns;
pub use postgres::{PostgresDatabase, POSTGRES_ENV};
pub use sshd::Sshd;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The environment variable naming the virtualenv (set by `scripts/test`).
pub const VENV_VAR: &str = "PROCTOR_TEST_VENV";

/// The workspace's root directory: the nearest directory above the package
/// under test (`CARGO_MANIFEST_DIR`, which cargo and nextest set when they run
/// tests) whose `Cargo.toml` has a `[workspace]` table; failing that, the root
/// this crate was built in.
pub fn workspace_root() -> PathBuf {
    let built_in = || {
        // This crate lives at <root>/crates/proctor-testkit.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("proctor-testkit sits two levels below the workspace root")
            .to_path_buf()
    };
    let Some(package) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return built_in();
    };
    Path::new(&package)
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == "[workspace]"))
        })
        .map_or_else(built_in, Path::to_path_buf)
}

/// The virtualenv holding the Python peers: `$PROCTOR_TEST_VENV`, else
/// `<workspace root>/target/test-venv`. Panics when it has no Python.
pub fn venv() -> PathBuf {
    let venv = match std::env::var_os(VENV_VAR) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join("target").join("test-venv"),
    };
    if !venv.join("bin").join("python").is_file() {
        panic!(
            "python-subunit venv not found at {}; run ./scripts/test to create it \
             (or point {VENV_VAR} at one)",
            venv.display()
        );
    }
    venv
}

/// The real pytest project `scripts/test` fetched (toolz's sdist, `scripts/sdists.sh`):
/// `$PROCTOR_TEST_PYTEST_PROJECT`, else where that script puts it. Panics when it is not there.
pub fn pytest_project() -> PathBuf {
    let project = match std::env::var_os("PROCTOR_TEST_PYTEST_PROJECT") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join("target/test-sdists/toolz-1.0.0"),
    };
    if !project.join("setup.cfg").is_file() {
        panic!(
            "the pytest project is not at {}; run ./scripts/test to fetch it (scripts/sdists.sh)",
            project.display()
        );
    }
    project
}

/// The virtualenv's Python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin").join("python")
}

/// A program the virtualenv installed, such as `subunit-stats`, `subunit-ls`,
/// `subunit2junitxml` or `stestr`. Panics when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    if !path.is_file() {
        panic!(
            "{name} not found at {}; run ./scripts/test to (re)create the venv",
            path.display()
        );
    }
    path
}

/// A helper script from `tests/python/` at the workspace root. Panics when it
/// does not exist.
pub fn python_script(name: &str) -> PathBuf {
    let path = workspace_root().join("tests").join("python").join(name);
    if !path.is_file() {
        panic!("Python helper script {} not found", path.display());
    }
    path
}

/// A command for a virtualenv program, with the virtualenv's `bin` first on
/// `PATH` (as if it were activated), so the tools it runs are the venv's.
pub fn venv_command(name: &str) -> Command {
    command_in_venv(venv_bin(name))
}

/// A command running `python tests/python/<script>`, in the virtualenv.
pub fn script_command(script: &str) -> Command {
    let mut command = command_in_venv(python());
    command.arg(python_script(script));
    command
}

fn command_in_venv(program: PathBuf) -> Command {
    let bin = venv().join("bin");
    let mut path = OsString::from(&bin);
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    let mut command = Command::new(program);
    command
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUTF8", "1");
    command
}

/// Runs `command` with `stdin` as its standard input and collects its output.
/// Panics if it cannot be started.
pub fn run_with_stdin(mut command: Command, stdin: &[u8]) -> Output {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
    let mut pipe = child.stdin.take().expect("stdin was piped");
    let input = stdin.to_vec();
    // Feed stdin from a thread so a child that writes a lot before reading
    // everything cannot deadlock against us.
    let feeder = std::thread::spawn(move || {
        // A child that exits without reading all of stdin is not our error.
        let _ = pipe.write_all(&input);
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("cannot wait for {description}: {error}"));
    feeder.join().expect("stdin feeder thread panicked");
    output
}

/// Runs `python tests/python/<script> <args>` with `stdin`, returning its
/// output whatever its exit status.
pub fn run_script<S: AsRef<OsStr>>(script: &str, args: &[S], stdin: &[u8]) -> Output {
    let mut command = script_command(script);
    command.args(args);
    run_with_stdin(command, stdin)
}

/// Like [`run_script`], but panics (showing stderr) unless the script
/// succeeds, and returns its standard output.
pub fn run_script_ok<S: AsRef<OsStr>>(script: &str, args: &[S], stdin: &[u8]) -> Vec<u8> {
    let output = run_script(script, args, stdin);
    expect_success(script, output)
}

/// Runs `python -c <code> <args>` in the virtualenv with `stdin`.
pub fn run_python_code<S: AsRef<OsStr>>(code: &str, args: &[S], stdin: &[u8]) -> Output {
    let mut command = command_in_venv(python());
    command.arg("-c").arg(code).args(args);
    run_with_stdin(command, stdin)
}

/// Returns a successful command's standard output; panics with its exit
/// status and standard error otherwise. `what` names it in the message.
pub fn expect_success(what: &str, output: Output) -> Vec<u8> {
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
    }
    output.stdout
}

/// Runs the virtualenv's `stestr` in `project` with `stdin`. stestr exits 1
/// when tests failed, which callers compare, so only exit statuses above 1
/// (and signals) fail the test.
pub fn stestr(project: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = venv_command("stestr");
    command.current_dir(project).args(args);
    let output = run_with_stdin(command, stdin);
    assert!(
        output.status.code().is_some_and(|code| code <= 1),
        "stestr {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The fuzz regression inputs a crate keeps in `tests/fuzz-regressions`
/// under `crate_dir` (its `CARGO_MANIFEST_DIR`): (file name, bytes), sorted by
/// name. Panics when there are fewer than `at_least`, so a test replaying them
/// cannot pass on an empty directory.
pub fn fuzz_regressions(crate_dir: &Path, at_least: usize) -> Vec<(String, Vec<u8>)> {
    let dir = crate_dir.join("tests").join("fuzz-regressions");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
                .path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{name}: {error}"));
            (name, bytes)
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= at_least,
        "only {} regression inputs in {}",
        inputs.len(),
        dir.display()
    );
    inputs
}

/// A real bundle bomb: a tar.gz of one file at `path` holding `size` zero bytes, which packs to a few KiB per MiB.
pub fn bundle_of_zeros(path: &str, size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, path, std::io::repeat(0).take(size as u64))
        .expect("writing to memory");
    builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .expect("writing to memory")
}

/// A bundle bomb in miniature: a tar.gz of one file at `path` whose header claims `size` bytes, with none of them
/// present. A bundle check that counts sizes from the headers refuses it before reading content; one that unpacked
/// it would try to write `size` bytes.
pub fn bundle_claiming(path: &str, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(path).expect("a path a tar header holds");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(header.as_bytes())
        .expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_root() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("crates").join("proctor-testkit").is_dir());
    }

    #[test]
    fn venv_python_runs_the_reference() {
        let output = run_python_code(
            "import subunit.v2, sys; sys.stdout.write(sys.stdin.read().upper())",
            &[] as &[&str],
            b"ok",
        );
        assert_eq!(expect_success("python -c", output), b"OK");
    }

    #[test]
    fn venv_tools_are_installed() {
        for tool in ["subunit-stats", "subunit-ls", "subunit2junitxml", "stestr"] {
            assert!(venv_bin(tool).is_file());
        }
    }
}
