//! The agent's typed errors.

use std::io;
use std::path::PathBuf;

/// What went wrong in the agent itself (never a job's own failure, which ends the job with a final state).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Process supervision could not be set up on this machine.
    #[error("could not set up process supervision for the agent")]
    Supervisor(#[from] proctor_supervisor::SupervisorError),
    /// The server refused a request or could not be reached.
    #[error(transparent)]
    Server(#[from] proctor_client::ClientError),
    /// A file or directory the agent needs could not be made or written.
    #[error("{what} {path}")]
    Io {
        /// What the agent was doing.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl AgentError {
    /// The error and its causes on one line (for a job's reason, or the agent's own log).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        text
    }
}
