//! What can go wrong in a command, as the user sees it.

use std::io;
use std::path::PathBuf;

use proctor_events::SinkError;

/// A command's failure: printed by miette, exit status 2.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CliError {
    /// An input file could not be opened or read.
    #[error("cannot read {path}")]
    #[diagnostic(code(proctor::input))]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    #[diagnostic(code(proctor::output))]
    Output(#[source] io::Error),
    /// An event could not be written as subunit.
    #[error("cannot encode an event")]
    #[diagnostic(code(proctor::encode))]
    Encode(#[source] proctor_subunit::EncodeError),
    /// The arguments make no sense together.
    #[error("{0}")]
    #[diagnostic(code(proctor::usage))]
    Usage(String),
    /// The input was in a format we could not read.
    #[error("cannot parse {what}")]
    #[diagnostic(code(proctor::parse))]
    Parse {
        /// What was being parsed.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The project's tests could not be found or listed.
    #[error(transparent)]
    #[diagnostic(code(proctor::sources))]
    Sources(#[from] proctor_sources::SourceError),
    /// The run repository (.proctor/) could not be read or written.
    #[error(transparent)]
    #[diagnostic(code(proctor::repository))]
    Repository(#[from] proctor_repository::RepoError),
    /// The repository exists but holds no run to show.
    #[error("no runs stored in {path} yet; `proctor run` or `proctor load` stores one")]
    #[diagnostic(code(proctor::no_runs))]
    NoRuns {
        /// The `.proctor` directory.
        path: PathBuf,
    },
    /// A stream being loaded could not be read to its end.
    #[error(
        "cannot read {path} to its end; what was read is stored as run {id}, marked interrupted"
    )]
    #[diagnostic(code(proctor::load))]
    LoadInterrupted {
        /// The stream's file (`<stdin>` for standard input).
        path: PathBuf,
        /// The run that keeps what was read.
        id: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Test processes cannot be supervised here.
    #[error(transparent)]
    #[diagnostic(code(proctor::supervisor))]
    Supervisor(#[from] proctor_supervisor::SupervisorError),
    /// Whoever reads our output went away; not an error worth reporting.
    #[error("broken pipe")]
    BrokenPipe,
}

impl From<SinkError> for CliError {
    fn from(error: SinkError) -> Self {
        match error {
            SinkError::Io(error) => CliError::from(error),
            SinkError::Encode(proctor_subunit::EncodeError::Io(error)) => CliError::from(error),
            SinkError::Encode(error) => CliError::Encode(error),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Output(error)
        }
    }
}
