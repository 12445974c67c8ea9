//! The agent's typed errors.

use std::io;
use std::path::PathBuf;

/// What went wrong in the agent itself (never a job's own failure, which ends the job with a final state).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Process supervision could not be set up on this machine.
    #[error("could not set up process supervision for the agent")]
    Supervisor(#[from] proctor_supervisor::SupervisorError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A request to the server did not get an answer.
    #[error("{what}: request to {url} failed")]
    Request {
        /// What the agent was doing.
        what: String,
        /// The URL it called.
        url: String,
        /// Why the request failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("{what}: {url} answered {status}: {body}")]
    Status {
        /// What the agent was doing.
        what: String,
        /// The URL it called.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The response body, for the server's explanation.
        body: String,
    },
    /// The server's answer was not the JSON expected.
    #[error("{what}: the answer from {url} was not the expected JSON")]
    BadAnswer {
        /// What the agent was doing.
        what: String,
        /// The URL it called.
        url: String,
        /// Why it could not be read.
        #[source]
        source: reqwest::Error,
    },
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
