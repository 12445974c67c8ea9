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
