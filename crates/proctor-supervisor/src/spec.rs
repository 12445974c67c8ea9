//! What to run: [`CommandSpec`] and its [`Limits`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// Limits the supervisor enforces on one command. A limit that fires stops the whole tree and
/// is reported in [`Outcome::limit`](crate::Outcome::limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from the start.
    pub time: Option<Duration>,
    /// Longest stretch with no byte on stdout or stderr.
    pub no_output: Option<Duration>,
    /// Memory of the whole tree, in bytes.
    pub memory: Option<u64>,
}

/// A command to supervise: program, arguments, working directory, environment, standard input,
/// limits and grace period. Built with chained setters:
///
/// ```
/// use std::time::Duration;
/// use proctor_supervisor::CommandSpec;
///
/// let spec = CommandSpec::new("sh")
///     .args(["-c", "echo hello"])
///     .env("LANG", "C")
///     .time_limit(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env_clear: bool,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) stdin: Stdin,
    pub(crate) limits: Limits,
    pub(crate) grace: Option<Duration>,
}

/// What a command reads on its standard input.
#[derive(Debug, Clone)]
pub(crate) enum Stdin {
    /// `/dev/null`.
    Null,
    /// These bytes, then end-of-file.
    Bytes(Bytes),
    /// A pipe kept open until the command's tree is gone.
    HeldOpen,
}

impl CommandSpec {
    /// A command running `program` (a path, or a name looked up on `PATH`) with no arguments,
    /// this process's working directory and environment, standard input from `/dev/null`, no
    /// limits and the supervisor's default grace period.
    pub fn new(program: impl Into<OsString>) -> Self {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env_clear: false,
            env: Vec::new(),
            stdin: Stdin::Null,
            limits: Limits::default(),
            grace: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the command in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable for the command.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Starts from an empty environment instead of this process's (variables set with
    /// [`env`](Self::env) are still passed).
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Feeds these bytes to the command's standard input, then closes it.
    pub fn stdin_bytes(mut self, bytes: impl Into<Bytes>) -> Self {
        self.stdin = Stdin::Bytes(bytes.into());
        self
    }

    /// Gives the command a standard input that stays open, with nothing written to it, until its whole tree is
    /// gone. A command that runs something elsewhere (`ssh host cmd`) can so tell the far side that the local end
    /// is gone: the far side reads end-of-file only once the local process has been killed.
    pub fn stdin_held_open(mut self) -> Self {
        self.stdin = Stdin::HeldOpen;
        self
    }

    /// Replaces all limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the time limit.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.limits.time = Some(limit);
        self
    }

    /// Sets the no-output limit.
    pub fn no_output_limit(mut self, limit: Duration) -> Self {
        self.limits.no_output = Some(limit);
        self
    }

    /// Sets the memory limit, in bytes, for the whole tree.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// How long processes get between SIGTERM and SIGKILL when the command is stopped (the
    /// "reprieve"); defaults to [`SupervisorConfig::grace`](crate::SupervisorConfig::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The program, for messages.
    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}
