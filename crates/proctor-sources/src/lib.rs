//! Test sources: where a project's tests are, how to list them, and how to
//! run a chosen batch of them.
//!
//! `proctor run` starts here. [`discover`] looks at a project directory and
//! returns a [`Project`] of [`Suite`]s; a suite [lists](Suite::list) its
//! [`TestCase`]s and describes, as an [`Invocation`], the process that runs
//! one test or a batch of them. This crate only *describes* test processes:
//! the supervisor spawns them and enforces their limits. The one thing it
//! runs itself is the short commands that list tests (and testrepository's
//! concurrency callout).
//!
//! # Sources
//!
//! In order of precedence (see [`discover`]):
//!
//! 1. **`proctor.toml`**: one or more suites, each with shell commands to
//!    list and run tests (schema below).
//! 2. **stestr and testrepository projects**, read as those tools read them,
//!    so an existing project runs unchanged: `.stestr.conf` (or stestr's
//!    fallbacks, `[tool.stestr]` in `pyproject.toml` and `[stestr]` in
//!    `tox.ini`), and `.testr.conf` with `test_command`, `test_id_option`,
//!    `test_list_option`, `test_id_list_default`, `group_regex`,
//!    `test_run_concurrency` and `filter_tags` (instance hooks are refused
//!    with a clear error for now). The INI files are read with Python
//!    `configparser` rules: multi-line values, `%(name)s` interpolation,
//!    case-insensitive option names.
//! 3. **FMF trees** (`.fmf/version`, tmt's test metadata): each enabled test
//!    runs as `bash -c TEST` in its `path`, with its `environment`, under its
//!    `duration` as time limit; exit 0 passes, 1 fails, anything else is an
//!    error, adjusted by its `result` key. `adjust` rules are decided on the
//!    context given with [`Project::set_fmf_context`].
//! 4. **pytest projects** (`pytest.ini`, `[tool.pytest.ini_options]`,
//!    `[pytest]` in `tox.ini`, `[tool:pytest]` in `setup.cfg`, or test files
//!    when the Python has pytest): pytest's node ids, run in batches through
//!    a plugin Proctor ships that writes subunit v2 (see `pytest.rs`).
//! 5. **Cargo projects** (`Cargo.toml`): the test binaries built once, each
//!    test run alone as nextest runs it (see `cargo.rs`).
//! 6. **A directory of executables**, given explicitly: each executable file
//!    below it (recursively, skipping hidden names) is a test whose id is
//!    its relative path; each runs in its own process, in that directory,
//!    and its exit status is its result: 0 pass, 77 skip, 99 error, anything
//!    else fail (automake's convention).
//!
//! # Commands and placeholders
//!
//! Commands are shell command lines, run with `/bin/sh -c` in the suite's
//! directory as testrepository runs them, so shell syntax and variables such
//! as `${PYTHON:-python}` work. Before that, testrepository's placeholders
//! are replaced:
//!
//! | placeholder | listing | running chosen tests |
//! |---|---|---|
//! | `$LISTOPT` | `list_option` | nothing |
//! | `$IDOPTION` | nothing | `id_option`, with its own placeholders replaced |
//! | `$IDFILE` | nothing | path of a temporary file with the ids, one per line |
//! | `$IDLIST` | nothing | the ids, separated by spaces |
//!
//! Unlike testrepository, the ids in `$IDLIST` (and the `$IDFILE` path) are
//! quoted for the shell where needed, so ids with spaces, brackets or
//! quotes arrive intact; ordinary ids are written as they are.
//!
//! A listing's output may be either one test id per line or a subunit v2
//! stream of `exists` events; which one is detected from the output.
//!
//! # `proctor.toml`
//!
//! Each `[[suite]]` table is a suite. Only `name` and `run` are required.
//!
//! ```toml
//! [[suite]]
//! name = "unit"                   # unique; names the suite in output and errors
//! directory = "."                 # where commands run, relative to proctor.toml
//! # Lists test ids: one per line, or a subunit v2 stream of `exists` events.
//! # Optional when `run` contains $LISTOPT: then `run` lists, with $LISTOPT
//! # replaced by `list_option`.
//! list = "python3 -m subunit.run discover -t . tests --list"
//! # Runs the chosen tests.
//! run = "python3 -m subunit.run discover -t . tests $IDOPTION"
//! id_option = "--load-list $IDFILE"   # what $IDOPTION becomes
//! list_option = ""                # what $LISTOPT becomes when listing
//! protocol = "subunit"            # how `run` reports: "subunit", "tap" or "exit-status"
//! batching = "batches"            # "batches": start-up is costly, run many tests per
//!                                 # process; "one-per-test": a process per test
//! group_regex = '([^.]+\.)+'      # ids this matches (at their start) to the same text
//!                                 # run in the same process
//! time_limit = "5m"               # the most one test may take (a batch gets the sum)
//! no_output_limit = "1m"          # kill a process silent for this long
//! concurrency = 4                 # how many processes the suite prefers at once
//! env = { PYTHONHASHSEED = "0" }  # added to the inherited environment
//!
//! # What tests need of the worker that runs them, in a pool of several platforms: each field given must
//! # match the worker's platform (tags: all among its tags). `tests` (a regex over ids) limits it to some.
//! [[suite.needs]]
//! tests = "^tests\\.kvm\\."
//! arch = "x86_64"
//! tags = ["kvm"]
//!
//! [[suite]]
//! name = "scripts"
//! directory = "scripts"
//! list = "ls *.sh"
//! run = "./$IDLIST"               # one id per process: $IDLIST is that id
//! protocol = "exit-status"        # the process's exit status is the test's result
//! exit_codes = "automake"         # "automake" (0 pass, 77 skip, 99 error, else fail,
//!                                 # the default) or "tmt" (0 pass, 1 fail, else error)
//! ```
//!
//! Suites reporting by exit status always run one test per process. Unknown
//! keys are errors, so a misspelt key is caught rather than ignored.
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> Result<(), proctor_sources::SourceError> {
//! let project = proctor_sources::discover(std::path::Path::new("."), None)?;
//! for suite in project.suites() {
//!     let tests = suite.list()?;
//!     let batch: Vec<_> = tests.iter().take(10).collect();
//!     let invocation = suite.invocation(&batch)?;
//!     // Hand `invocation` to the supervisor; keep it alive until the process exits.
//!     let status = invocation.command().status();
//! }
//! # Ok(())
//! # }
//! ```

mod cargo;
mod error;
mod executables;
mod fmf;
mod ini;
mod instances;
mod invocation;
mod proctor_toml;
mod project;
mod pytest;
mod shell;
mod stestr;
mod suite;
mod template;
mod testr;

pub use error::SourceError;
pub use instances::InstanceHooks;
pub use invocation::{ExitMapping, ExitOutcome, Invocation, Protocol};
pub use project::{discover, discover_with, Discovery, Project, Source, SourceKind};
pub use suite::{Batching, GroupRegex, Needs, Suite, TestCase};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The `proctor.toml` example in the crate documentation must stay valid.
    #[test]
    fn the_documented_example_parses() {
        let lib = include_str!("lib.rs");
        let example: String = lib
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| {
                format!(
                    "{}\n",
                    line.trim_start_matches("//!").trim_start_matches(' ')
                )
            })
            .collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        let path = dir.path().join("proctor.toml");
        let suites = crate::proctor_toml::parse(&example, &path)
            .unwrap_or_else(|error| panic!("the example is invalid: {error}\n{example}"));
        let names: Vec<&str> = suites.iter().map(|suite| suite.name()).collect();
        assert_eq!(names, ["unit", "scripts"]);
        assert_eq!(
            suites[1].directory(),
            Path::new(&dir.path().join("scripts"))
        );
    }
}
