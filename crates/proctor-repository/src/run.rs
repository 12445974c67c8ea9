//! What the repository records about each run, kept in `runs/<id>.json`
//! beside the run's stream.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::Duration;

use proctor_events::{Outcome, TestRecord};
use serde::{Deserialize, Serialize};

use crate::layout::{read_optional, write_atomically};
use crate::{ProcessCost, RepoError};

/// Whether a run ran every test of the project or a subset. It decides how
/// the run changes the failing set, as in testrepository and stestr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Every test: the run's failures replace the failing set.
    Full,
    /// A subset (filters, `--failing`): tests that passed leave the failing
    /// set, new failures join it, the rest stay as they were.
    Partial,
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// A writer is still adding events to it.
    Running,
    /// It ended normally.
    Complete,
    /// It was stopped (Ctrl-C, a time limit) and ended cleanly: what ran is
    /// recorded, and it changed the failing set as a partial run would.
    Interrupted,
    /// Its writer went away without ending it (a crash, a kill, a writer
    /// dropped): the stream holds what was produced until then, and the run
    /// changed neither the history nor the failing set.
    Unfinished,
}

/// How a run's tests ended, counted as testtools counts them: `xfail` passes,
/// `uxsuccess` and tests the stream never finished fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Test runs seen (a test retried counts once per attempt).
    pub total: usize,
    /// `success` and `xfail`.
    pub passed: usize,
    /// `fail`, `uxsuccess` and unfinished tests.
    pub failed: usize,
    /// `skip`.
    pub skipped: usize,
}

impl RunCounts {
    /// Counts finished records.
    pub fn of(records: &[TestRecord]) -> RunCounts {
        let mut counts = RunCounts {
            total: records.len(),
            ..RunCounts::default()
        };
        for record in records {
            match Outcome::of(record.status) {
                Outcome::Passed => counts.passed += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Skipped => counts.skipped += 1,
            }
        }
        counts
    }
}

/// What the caller says about a run when it begins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    /// A full run or a partial one.
    pub kind: RunKind,
    /// The command line that made the run, if the caller gives it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The filters that selected its tests, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
}

impl RunMeta {
    /// A run of every test, with nothing else said.
    pub fn full() -> RunMeta {
        RunMeta::of_kind(RunKind::Full)
    }

    /// A run of a subset, with nothing else said.
    pub fn partial() -> RunMeta {
        RunMeta::of_kind(RunKind::Partial)
    }

    /// A run of this kind, with nothing else said.
    pub fn of_kind(kind: RunKind) -> RunMeta {
        RunMeta {
            kind,
            command: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// Records the command line that made the run.
    pub fn with_command<S: Into<String>>(
        mut self,
        command: impl IntoIterator<Item = S>,
    ) -> RunMeta {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Records the filters that selected the run's tests.
    pub fn with_filters<S: Into<String>>(
        mut self,
        filters: impl IntoIterator<Item = S>,
    ) -> RunMeta {
        self.filters = filters.into_iter().map(Into::into).collect();
        self
    }
}

/// One stored run, as [`Repository::runs`](crate::Repository::runs) lists
/// it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Its id: runs are numbered 0, 1, 2, ... in the order they began.
    pub id: u64,
    /// When it began (for a loaded stream: its first timestamp, if any).
    pub started: jiff::Timestamp,
    /// How long it took; for a run that did not end cleanly, the span of its
    /// stream's timestamps, if any.
    pub duration: Option<Duration>,
    /// Where it is in its life.
    pub state: RunState,
    /// How its tests ended; `None` while it is running.
    pub counts: Option<RunCounts>,
    /// What each suite's test processes cost, by suite name, when the
    /// runner measured it (runs imported from a stream have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, ProcessCost>,
    /// What the caller said when it began.
    #[serde(flatten)]
    pub meta: RunMeta,
}

impl RunInfo {
    /// A full or a partial run.
    pub fn kind(&self) -> RunKind {
        self.meta.kind
    }

    /// Whether it was stopped before its tests were all run.
    pub fn is_interrupted(&self) -> bool {
        self.state == RunState::Interrupted
    }

    /// Whether it ended, cleanly or interrupted, and so counts in the
    /// history and the failing set.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, RunState::Complete | RunState::Interrupted)
    }
}

/// Reads `runs/<id>.json`, `None` if it is missing (a crash right after the
/// stream was created leaves a run without one).
pub(crate) fn read_meta(path: &Path) -> Result<Option<RunInfo>, RepoError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RepoError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Replaces `runs/<id>.json`.
pub(crate) fn write_meta(path: &Path, info: &RunInfo) -> Result<(), RepoError> {
    let mut json = serde_json::to_vec_pretty(info).map_err(|source| RepoError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    write_atomically(path, &json)
}

/// Whether a live writer holds the stream's lock. A stream that cannot be
/// opened is not being written.
pub(crate) fn is_being_written(stream: &Path) -> Result<bool, RepoError> {
    let Ok(file) = File::open(stream) else {
        return Ok(false);
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(source)) => Err(RepoError::Io {
            action: "check the lock on",
            path: stream.to_path_buf(),
            source,
        }),
    }
}
