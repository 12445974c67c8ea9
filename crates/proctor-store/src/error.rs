//! The store's error type.

use std::path::PathBuf;

use crate::{JobState, StreamKind};

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    CreateDataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or set up.
    #[error("cannot open the database {location}")]
    Open {
        /// The database: a file, or a server's address (without its password).
        location: String,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// A schema migration failed; the database keeps the schema it had before it.
    #[error("schema migration {version} ({name}) failed")]
    Migration {
        /// The migration's number.
        version: i64,
        /// Its name.
        name: &'static str,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// The database was written by a newer Proctor.
    #[error("the database has schema version {found}, newer than the {known} this Proctor knows; upgrade Proctor")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A database operation failed.
    #[error("database error while {doing}")]
    Database {
        /// The operation, e.g. "claiming a job".
        doing: &'static str,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// A value to store could not be encoded.
    #[error("cannot encode {what} for storage")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A number is too large for the database's 64-bit signed integers.
    #[error("{what} {value} is too large to store")]
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// The number.
        value: u64,
    },
    /// A job must be allowed at least one attempt.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// The operating system gave no randomness for a token secret.
    #[error("cannot get random bytes for a token secret: {0}")]
    Randomness(getrandom::Error),
    /// No job has this id.
    #[error("no job with id {0}")]
    JobNotFound(String),
    /// No agent has this id.
    #[error("no agent with id {0}; it must register first")]
    AgentNotFound(String),
    /// No recipe has this name.
    #[error("no recipe named {0}")]
    RecipeNotFound(String),
    /// No token has this id.
    #[error("no token with id {0}")]
    TokenNotFound(String),
    /// The job has no artifact of this name.
    #[error("job {job} has no artifact named {name}")]
    ArtifactNotFound {
        /// The job.
        job: String,
        /// The artifact name.
        name: String,
    },
    /// The job has no phase of this name.
    #[error("job {job} has no phase {phase}")]
    PhaseNotFound {
        /// The job.
        job: String,
        /// The phase name.
        phase: String,
    },
    /// The operation needs a running job.
    #[error("job {job} is {state}, not running")]
    JobNotRunning {
        /// The job.
        job: String,
        /// Its state.
        state: JobState,
    },
    /// The job does not wait for attachments (it has none, or they were stored already).
    #[error("job {job} is not waiting for attachments")]
    NotHeld {
        /// The job.
        job: String,
    },
    /// The job is running on another agent (this one's lease lapsed and the job moved on).
    #[error("job {job} is held by agent {holder}, not by {agent}")]
    NotJobHolder {
        /// The job.
        job: String,
        /// The agent that holds it.
        holder: String,
        /// The agent that asked.
        agent: String,
    },
    /// A copy's target store already holds data: copying again would double it.
    #[error("the target store already holds data (its {table} table has rows); copy into an empty database")]
    NotEmpty {
        /// The first table found with rows.
        table: &'static str,
    },
    /// A copied row does not fit the table's columns.
    #[error("a row of {table} does not fit: {detail}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A chunk would leave a hole in a stream: the uploader must resend from `expected`.
    #[error("the {stream} stream of job {job} ends at offset {expected}; a chunk at offset {got} would leave a gap")]
    StreamGap {
        /// The job.
        job: String,
        /// Which stream.
        stream: StreamKind,
        /// The offset the next chunk must start at (or before).
        expected: u64,
        /// The offset the chunk started at.
        got: u64,
    },
}

/// An error of the database underneath, from whichever backend, and whether it means the database's disk is full.
#[derive(Debug)]
pub struct DatabaseError {
    source: Box<dyn std::error::Error + Send + Sync>,
    storage_full: bool,
}

impl DatabaseError {
    /// A backend's error; `storage_full` when the backend says its disk is full.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static, storage_full: bool) -> Self {
        DatabaseError {
            source: Box::new(source),
            storage_full,
        }
    }
}

// Transparent: it shows as the backend's error, whose causes follow it.
impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl StoreError {
    /// Whether the database could not be written because its filesystem is full: the store is fine, and writes
    /// succeed again once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Migration { source, .. }
            | StoreError::Database { source, .. } => source.storage_full,
            _ => false,
        }
    }
}
