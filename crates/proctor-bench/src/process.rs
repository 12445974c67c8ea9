//! What every benchmark part does with the processes it times: run one and insist it did its work (a failed
//! baseline's time means nothing), name it in messages, and put two times side by side.

use std::io;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

/// A measured or baseline process that did not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started (or waited for).
    #[error("starting {program}: {source}")]
    Spawn {
        /// The command line.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// It did not exit 0.
    #[error("{command} exited with {status}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
    },
}

impl ProcessError {
    /// The error for `program` failing to start, to pass to `map_err`.
    pub fn spawn(program: &str) -> impl Fn(io::Error) -> ProcessError + '_ {
        move |source| ProcessError::Spawn {
            program: program.to_owned(),
            source,
        }
    }
}

/// `Ok` when `status` is success, else the failure of `command`.
pub fn check_exit(command: &str, status: ExitStatus) -> Result<(), ProcessError> {
    if status.success() {
        return Ok(());
    }
    Err(ProcessError::Failed {
        command: command.to_owned(),
        status,
    })
}

/// Runs `command` to its end; it must exit 0.
pub fn run_checked(command: &mut Command) -> Result<(), ProcessError> {
    let described = describe(command);
    let status = command.status().map_err(ProcessError::spawn(&described))?;
    check_exit(&described, status)
}

/// Runs `command` to its end, collecting its output; it must exit 0.
pub fn output_checked(command: &mut Command) -> Result<Output, ProcessError> {
    let described = describe(command);
    let output = command.output().map_err(ProcessError::spawn(&described))?;
    check_exit(&described, output.status)?;
    Ok(output)
}

/// A command line for messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// `a / b` as a ratio.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
