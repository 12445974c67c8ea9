//! What can go wrong with a repository, saying what and where.

use std::io;
use std::path::PathBuf;

use crate::layout::FORMAT;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// `open` found no repository in the project.
    #[error(
        "no run repository at {path} (no format file); `proctor run` or `proctor load` creates one"
    )]
    NotFound {
        /// The `.proctor` directory looked for.
        path: PathBuf,
    },
    /// `init` found a repository already there.
    #[error("there is already a run repository at {path}")]
    AlreadyExists {
        /// The `.proctor` directory.
        path: PathBuf,
    },
    /// The repository was written by a version of Proctor that uses another
    /// on-disk format.
    #[error("{path} says the repository has format {found:?}; this version of proctor reads format {FORMAT}")]
    UnsupportedFormat {
        /// The format file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done (`read`, `create`, `lock`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A JSON file of the repository does not parse.
    #[error("{path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said, with line and column.
        source: serde_json::Error,
    },
    /// Data could not be turned into JSON for a file of the repository.
    #[error("cannot serialise the data for {path}")]
    Serialize {
        /// The file it was meant for.
        path: PathBuf,
        /// What the serialiser said.
        source: serde_json::Error,
    },
    /// The run counter holds something that is not a run id.
    #[error("the run counter {path} holds {content:?}, not a run id")]
    CorruptCounter {
        /// The counter file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// No run with this id is stored.
    #[error("no run {id} in the repository at {repository}")]
    NoSuchRun {
        /// The id asked for.
        id: u64,
        /// The `.proctor` directory.
        repository: PathBuf,
    },
    /// The run is still being written by a live writer, so it cannot be
    /// removed.
    #[error("run {id} is still being written (its stream {path} is locked by a running proctor)")]
    RunInProgress {
        /// The run.
        id: u64,
        /// Its stream file.
        path: PathBuf,
    },
    /// An event could not be written to a stream file.
    #[error("cannot write an event to {path}")]
    Encode {
        /// The stream file.
        path: PathBuf,
        /// What the encoder said.
        source: proctor_subunit::EncodeError,
    },
    /// Reading a stream being loaded failed; the run stored so far is kept
    /// and marked interrupted.
    #[error("reading the stream to load as run {id} failed")]
    LoadRead {
        /// The run the stream was being loaded into.
        id: u64,
        /// The reader's error.
        source: io::Error,
    },
}

impl RepoError {
    /// An I/O error on `path` while doing `action`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> RepoError {
        let path = path.into();
        move |source| RepoError::Io {
            action,
            path,
            source,
        }
    }
}
