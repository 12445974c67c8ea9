//! Everything that can go wrong while finding, listing or preparing tests.

use std::path::PathBuf;

/// Why a project's tests could not be found, listed or prepared to run.
///
/// Every variant names the file, suite or command involved, so the message
/// alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A configuration file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },

    /// A configuration file is not valid TOML, or not the schema's shape.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The TOML parser's description, with line and column.
        message: String,
    },

    /// A configuration file is not valid INI (Python `configparser`) syntax.
    #[error("{path}: {message}")]
    Ini {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where the parser could tell.
        message: String,
    },

    /// A key a source needs is not in its configuration file.
    #[error("{path}: no `{key}` in section [{section}]")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The section looked in.
        section: String,
        /// The key.
        key: String,
    },

    /// A key holds a value that cannot be used.
    #[error("{path}: bad value for `{key}`: {message}")]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key (for proctor.toml, `suite.<name>.<key>`).
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// An FMF (tmt) tree could not be read.
    #[error("cannot read the FMF tree at {root}: {reason}")]
    Fmf {
        /// The tree's root.
        root: PathBuf,
        /// What was wrong, naming the file and place.
        reason: String,
    },

    /// An FMF context argument is malformed.
    #[error("bad --context: {reason}")]
    FmfContext {
        /// What was wrong.
        reason: String,
    },

    /// The directory looks like a pytest project, but its interpreter has no pytest.
    #[error(
        "{dir} has pytest test files (conftest.py, test_*.py or *_test.py), but {python} cannot import pytest: \
         install pytest for it, name another interpreter with $PYTHON, or configure another source (proctor.toml, \
         .stestr.conf, …)"
    )]
    PytestMissing {
        /// The project.
        dir: PathBuf,
        /// The interpreter tried.
        python: PathBuf,
    },

    /// Nothing in the directory says how to find tests.
    #[error(
        "no tests found in {dir}: expected proctor.toml, .stestr.conf, .testr.conf, \
         pyproject.toml with [tool.stestr], tox.ini with [stestr], an FMF tree, a pytest project (pytest.ini, \
         [tool.pytest.ini_options], [pytest] in tox.ini, [tool:pytest] in setup.cfg, or test files and a Python \
         with pytest), Cargo.toml, or a directory of executables (--executables DIR)"
    )]
    NothingFound {
        /// The directory searched.
        dir: PathBuf,
    },

    /// A directory given to hold tests is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// Walking a directory of executables failed.
    #[error("cannot search {dir} for test executables: {source}")]
    Walk {
        /// The directory being walked.
        dir: PathBuf,
        /// Why the walk failed.
        source: walkdir::Error,
    },

    /// A file name cannot be a test id because it is not UTF-8.
    #[error("{path}: file name is not UTF-8, so it cannot be a test id")]
    NonUtf8Path {
        /// The file.
        path: PathBuf,
    },

    /// A helper command could not be started at all.
    #[error("suite `{suite}`: cannot start `{command}`: {source}")]
    Spawn {
        /// The suite.
        suite: String,
        /// The shell command line.
        command: String,
        /// Why it could not start.
        source: std::io::Error,
    },

    /// The command listing a suite's tests failed.
    #[error("suite `{suite}`: listing tests with `{command}` failed ({status}):\n{output}")]
    ListFailed {
        /// The suite.
        suite: String,
        /// The shell command line.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its standard error, and any text it printed or attached on standard output.
        output: String,
    },

    /// A listing printed plain text that is not UTF-8.
    #[error("suite `{suite}`: `{command}` listed test ids that are not UTF-8 text")]
    ListNotUtf8 {
        /// The suite.
        suite: String,
        /// The shell command line.
        command: String,
    },

    /// The command computing a suite's concurrency failed or printed no number.
    #[error("suite `{suite}`: test_run_concurrency command `{command}` {problem}")]
    Concurrency {
        /// The suite.
        suite: String,
        /// The shell command line.
        command: String,
        /// What went wrong: its exit status and stderr, or what it printed.
        problem: String,
    },

    /// The suite has no way to list its tests.
    #[error("suite `{suite}`: cannot list tests: {reason}")]
    CannotList {
        /// The suite.
        suite: String,
        /// Why (e.g. no `$LISTOPT` in the test command).
        reason: String,
    },

    /// The suite's command cannot be told which tests to run.
    #[error(
        "suite `{suite}`: the run command cannot select tests (it uses none of $IDOPTION, \
         $IDLIST or $IDFILE, or $IDOPTION has no test_id_option); only the whole suite can run"
    )]
    CannotSelect {
        /// The suite.
        suite: String,
    },

    /// A suite whose tests each run in their own process was asked to run
    /// several (or all) at once.
    #[error("suite `{suite}` runs one process per test, but {count} tests were asked for in one")]
    OnePerProcess {
        /// The suite.
        suite: String,
        /// How many tests were asked for (0 means all of them).
        count: usize,
    },

    /// An invocation was asked for with no tests.
    #[error("suite `{suite}`: an invocation needs at least one test")]
    EmptyBatch {
        /// The suite.
        suite: String,
    },

    /// A test from another suite was passed to this suite.
    #[error("suite `{suite}` (#{index}) was given test `{id}` of suite #{other}")]
    ForeignTest {
        /// The suite.
        suite: String,
        /// Its index in the project.
        index: usize,
        /// The test.
        id: String,
        /// The suite index the test carries.
        other: usize,
    },

    /// A test id cannot be passed to the runner.
    #[error("suite `{suite}`: test id {id:?} cannot be passed to the run command: {reason}")]
    UnusableId {
        /// The suite.
        suite: String,
        /// The id.
        id: String,
        /// Why.
        reason: &'static str,
    },

    /// A Cargo project's test binaries could not be built (`cargo test --no-run` failed).
    #[error("cannot build the tests of {manifest} (`cargo test --no-run` failed):\n{output}")]
    CargoBuild {
        /// The project's `Cargo.toml`.
        manifest: PathBuf,
        /// What cargo said: the compiler's diagnostics, as it renders them, and its own errors.
        output: String,
    },

    /// The temporary file for `$IDFILE` could not be written.
    #[error("suite `{suite}`: cannot write the $IDFILE list of test ids: {source}")]
    IdFile {
        /// The suite.
        suite: String,
        /// Why.
        source: std::io::Error,
    },
}
