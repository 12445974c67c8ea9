//! What one test process is: a command line, where and how it runs, and how
//! its results come back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempPath;

/// How a test process reports its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A subunit v2 stream on standard output.
    Subunit,
    /// TAP (13 or 14) on standard output.
    Tap,
    /// Nothing but its exit status: one process per test.
    ExitStatus(ExitMapping),
}

/// What a test's outcome is, decided by its exit status alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// The test passed.
    Pass,
    /// The test was skipped.
    Skip,
    /// The test failed.
    Fail,
    /// The test could not be run properly (not the same as failing).
    Error,
}

/// Which exit codes mean what, for tests that report by exit status.
///
/// Exit code 0 always means [`ExitOutcome::Pass`]; each optional code below
/// is checked next, and any other code is [`ExitMapping::otherwise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitMapping {
    /// The code that means the test skipped itself.
    pub skip: Option<i32>,
    /// The code that means the test failed.
    pub fail: Option<i32>,
    /// The code that means a hard error.
    pub error: Option<i32>,
    /// What every other non-zero code means.
    pub otherwise: ExitOutcome,
}

impl ExitMapping {
    /// The automake test-harness convention: 0 pass, 77 skip, 99 hard error,
    /// any other code a failure.
    pub const AUTOMAKE: ExitMapping = ExitMapping {
        skip: Some(77),
        fail: None,
        error: Some(99),
        otherwise: ExitOutcome::Fail,
    };

    /// tmt's convention for shell tests: 0 pass, 1 fail, anything else an
    /// error.
    pub const TMT: ExitMapping = ExitMapping {
        skip: None,
        fail: Some(1),
        error: None,
        otherwise: ExitOutcome::Error,
    };

    /// The outcome a process's exit code means.
    pub fn outcome(&self, code: i32) -> ExitOutcome {
        if code == 0 {
            ExitOutcome::Pass
        } else if Some(code) == self.skip {
            ExitOutcome::Skip
        } else if Some(code) == self.fail {
            ExitOutcome::Fail
        } else if Some(code) == self.error {
            ExitOutcome::Error
        } else {
            self.otherwise
        }
    }
}

/// A description of one test process to start: Proctor's supervisor spawns
/// it, enforces its limits and reads its results in [`Invocation::protocol`].
///
/// An invocation may own a temporary file of test ids (testrepository's
/// `$IDFILE`); the file is deleted when the invocation is dropped, so keep
/// the invocation alive until its process has exited.
#[derive(Debug)]
pub struct Invocation {
    /// The program to execute (`/bin/sh` for shell commands).
    pub program: PathBuf,
    /// Its arguments (for shell commands, `-c` and the command line).
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables to set on top of the inherited environment.
    pub env: Vec<(String, String)>,
    /// How the process reports results.
    pub protocol: Protocol,
    /// The ids of the tests this process runs; empty when it runs the whole
    /// suite (whose ids it will report itself).
    pub tests: Vec<String>,
    /// Kill the process after this long; the sum of its tests' limits.
    pub time_limit: Option<Duration>,
    /// Kill the process when it has printed nothing for this long.
    pub no_output_limit: Option<Duration>,
    idfile: Option<TempPath>,
}

impl Invocation {
    /// An invocation of `program` with `args` in `cwd`, with no extra
    /// environment, tests, limits or id file.
    pub fn new(
        program: impl Into<PathBuf>,
        args: Vec<String>,
        cwd: impl Into<PathBuf>,
        protocol: Protocol,
    ) -> Invocation {
        Invocation {
            program: program.into(),
            args,
            cwd: cwd.into(),
            env: Vec::new(),
            protocol,
            tests: Vec::new(),
            time_limit: None,
            no_output_limit: None,
            idfile: None,
        }
    }

    /// An invocation running `command` with `/bin/sh -c`, as testrepository
    /// runs its commands (with `shell=True`).
    pub fn shell(command: String, cwd: impl Into<PathBuf>, protocol: Protocol) -> Invocation {
        Invocation::new(SHELL, vec!["-c".to_owned(), command], cwd, protocol)
    }

    /// The command line of a shell invocation ([`Invocation::shell`]); `None` for a program run directly.
    pub fn shell_command(&self) -> Option<&str> {
        match self.args.as_slice() {
            [flag, command] if flag == "-c" && self.program == Path::new(SHELL) => Some(command),
            _ => None,
        }
    }

    /// The same invocation with `command` as its shell command line instead.
    pub(crate) fn with_shell_command(mut self, command: String) -> Invocation {
        self.program = PathBuf::from(SHELL);
        self.args = vec!["-c".to_owned(), command];
        self
    }

    /// The temporary file holding the test ids, if the command uses one.
    pub fn idfile(&self) -> Option<&Path> {
        self.idfile.as_deref()
    }

    /// A [`std::process::Command`] for this invocation (program, arguments,
    /// directory and environment; limits are the supervisor's job).
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    pub(crate) fn with_idfile(mut self, idfile: Option<TempPath>) -> Invocation {
        self.idfile = idfile;
        self
    }
}

/// The shell testrepository's `shell=True` runs.
pub(crate) const SHELL: &str = "/bin/sh";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automake_codes() {
        let mapping = ExitMapping::AUTOMAKE;
        assert_eq!(mapping.outcome(0), ExitOutcome::Pass);
        assert_eq!(mapping.outcome(77), ExitOutcome::Skip);
        assert_eq!(mapping.outcome(99), ExitOutcome::Error);
        assert_eq!(mapping.outcome(1), ExitOutcome::Fail);
        assert_eq!(mapping.outcome(2), ExitOutcome::Fail);
    }

    #[test]
    fn tmt_codes() {
        let mapping = ExitMapping::TMT;
        assert_eq!(mapping.outcome(0), ExitOutcome::Pass);
        assert_eq!(mapping.outcome(1), ExitOutcome::Fail);
        assert_eq!(mapping.outcome(2), ExitOutcome::Error);
        assert_eq!(mapping.outcome(77), ExitOutcome::Error);
    }
}
