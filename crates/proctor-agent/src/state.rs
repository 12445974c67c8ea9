//! The record of a job in progress, kept in the agent's work directory while the job runs, so an agent started
//! after a crash knows which job it left behind and where its spooled output is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The directory in the agent's work directory holding one record per job in progress.
const IN_PROGRESS_DIR: &str = ".in-progress";

/// A job this agent was running, and its spooled streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InProgress {
    /// The job's id.
    pub(crate) job_id: String,
    /// The job token of the claim, without which the server refuses the job's uploads and its finish (absent in
    /// records written before job tokens were needed to write).
    #[serde(default)]
    pub(crate) job_token: Option<String>,
    /// The spooled log (the phases' output).
    pub(crate) log: PathBuf,
    /// The results file the phases wrote.
    pub(crate) results: PathBuf,
}

/// Where the agent with work directory `work_dir` keeps its records.
pub(crate) fn records_dir(work_dir: &Path) -> PathBuf {
    work_dir.join(IN_PROGRESS_DIR)
}

impl InProgress {
    /// Writes the record into `records`; the written file is its path.
    pub(crate) fn save(&self, records: &Path) -> Result<PathBuf, AgentError> {
        let io_error = |what, path: &Path| {
            let path = path.to_owned();
            move |source| AgentError::Io { what, path, source }
        };
        fs::create_dir_all(records).map_err(io_error("could not create the directory", records))?;
        let path = records.join(format!("{}.json", self.job_id));
        let text = serde_json::to_vec(self).map_err(io::Error::other);
        text.and_then(|text| fs::write(&path, text))
            .map_err(io_error("could not write the job's progress record", &path))?;
        Ok(path)
    }

    /// The records in `records` with their files; a file that is not a record is answered as an error with its
    /// path, so it can be reported and removed.
    pub(crate) fn load_all(records: &Path) -> Vec<(PathBuf, Result<InProgress, AgentError>)> {
        let Ok(entries) = fs::read_dir(records) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .map(|path| {
                let record = fs::read(&path)
                    .and_then(|text| serde_json::from_slice(&text).map_err(io::Error::other))
                    .map_err(|source| AgentError::Io {
                        what: "could not read the job's progress record",
                        path: path.clone(),
                        source,
                    });
                (path, record)
            })
            .collect()
    }
}

/// Removes a record once its job is settled. A record already gone (a phase deleted it) is settled too.
pub(crate) fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}
