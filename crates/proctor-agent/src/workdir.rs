//! Job work directories, made ahead of the jobs.
//!
//! Making a directory or file allocates an inode, which on a busy ext4 file system (many files deleted lately) can
//! take half a millisecond or more each; a job's work directory needs three (itself, `$PROCTOR_ARTIFACTS` and
//! `job.json`).
//! So while the agent is idle it makes the next job's directory under a fixed name, and a claimed job's directory
//! is that one renamed, with `job.json` written into the empty file already there: nothing is allocated between the
//! claim and the first phase's process (BENCHMARKS.md, dispatch).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// The work directory of the next job, made ahead.
const READY: &str = ".next-job";
/// Where the next job's directory is put together before it is renamed to [`READY`], so that a `READY` directory
/// is always whole.
const ASSEMBLING: &str = ".next-job.partial";

/// The job's file in its work directory.
pub(crate) const JOB_FILE: &str = "job.json";
/// The directory in the job's work directory whose files are uploaded as the job's artifacts. The agent does not
/// make it before the phases: jobs written for Testflinger begin with `mkdir artifacts` (often under `set -e`),
/// as Testflinger does not make it either. After the phases it is made if the job did not, and what phases left
/// in [`PROCTOR_ARTIFACTS_DIR`] is moved into it.
pub(crate) const ARTIFACTS_DIR: &str = "artifacts";
/// The directory `$PROCTOR_ARTIFACTS` names: there before every phase, so scripts written for Proctor can write
/// into it without making it; its files join [`ARTIFACTS_DIR`]'s after the phases.
pub(crate) const PROCTOR_ARTIFACTS_DIR: &str = ".proctor-artifacts";

/// The agent's job work directories, `<root>/<job id>`.
#[derive(Debug, Clone)]
pub(crate) struct WorkDirs {
    root: PathBuf,
}

impl WorkDirs {
    /// Work directories under `root`.
    pub(crate) fn new(root: PathBuf) -> WorkDirs {
        WorkDirs { root }
    }

    /// Where the agent's own files live (and job directories are made).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The work directory of `job_id`.
    pub(crate) fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    /// Makes the next job's directory ahead, unless it is ready already. A failure here only means the next job's
    /// directory is made when the job comes ([`take`](Self::take)), which reports the error if it persists.
    pub(crate) fn prepare(&self) {
        let ready = self.root.join(READY);
        if ready.is_dir() {
            return;
        }
        let assembling = self.root.join(ASSEMBLING);
        // Left by an agent that stopped while assembling it.
        let _ = fs::remove_dir_all(&assembling);
        let made = make_skeleton(&assembling).and_then(|()| fs::rename(&assembling, &ready));
        if made.is_err() {
            let _ = fs::remove_dir_all(&assembling);
        }
    }

    /// The work directory of `job_id`, with an empty [`PROCTOR_ARTIFACTS_DIR`] and `job.json` holding `definition`: the ready
    /// directory renamed when there is one, else made now. A directory an earlier attempt of the job left on this
    /// agent is emptied first, so its results and artifacts are not taken for this one's.
    pub(crate) fn take(&self, job_id: &str, definition: &[u8]) -> Result<PathBuf, AgentError> {
        let dir = self.job_dir(job_id);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|source| AgentError::Io {
                what: "could not empty the work directory an earlier attempt left",
                path: dir.clone(),
                source,
            })?;
        }
        if fs::rename(self.root.join(READY), &dir).is_err() {
            make_skeleton(&dir).map_err(|source| AgentError::Io {
                what: "could not create the work directory",
                path: dir.clone(),
                source,
            })?;
        }
        let job_file = dir.join(JOB_FILE);
        fs::write(&job_file, definition).map_err(|source| AgentError::Io {
            what: "could not write the job file",
            path: job_file,
            source,
        })?;
        Ok(dir)
    }
}

/// A work directory as a job finds it: an empty [`PROCTOR_ARTIFACTS_DIR`] and an empty `job.json`.
fn make_skeleton(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir.join(PROCTOR_ARTIFACTS_DIR))?;
    fs::File::create(dir.join(JOB_FILE)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).expect("readable")
    }

    #[test]
    fn a_claimed_job_gets_the_directory_made_ahead_and_the_next_one_is_made_again() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = WorkDirs::new(root.path().join("jobs"));
        dirs.prepare();
        let ready = dirs.root().join(READY);
        assert!(ready.join(PROCTOR_ARTIFACTS_DIR).is_dir());
        assert_eq!(read(&ready.join(JOB_FILE)), "");
        let marker = ready.join(PROCTOR_ARTIFACTS_DIR).join("made-ahead");
        fs::write(&marker, "").expect("writable");

        let job = dirs
            .take("job-1", b"{\"job_queue\": \"local\"}")
            .expect("taken");
        assert_eq!(job, dirs.job_dir("job-1"));
        assert!(
            job.join(PROCTOR_ARTIFACTS_DIR).join("made-ahead").exists(),
            "the ready directory was renamed"
        );
        assert_eq!(read(&job.join(JOB_FILE)), "{\"job_queue\": \"local\"}");
        assert!(!ready.exists());

        dirs.prepare();
        assert!(ready.join(PROCTOR_ARTIFACTS_DIR).is_dir());
        assert!(!dirs.root().join(ASSEMBLING).exists());
    }

    #[test]
    fn without_a_directory_made_ahead_one_is_made_when_the_job_comes() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = WorkDirs::new(root.path().to_owned());
        let job = dirs.take("job-1", b"{}").expect("taken");
        assert!(job.join(PROCTOR_ARTIFACTS_DIR).is_dir());
        assert_eq!(read(&job.join(JOB_FILE)), "{}");
    }

    #[test]
    fn an_earlier_attempts_directory_is_emptied_and_a_half_made_one_is_replaced() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = WorkDirs::new(root.path().to_owned());
        let left = dirs.job_dir("job-1");
        fs::create_dir_all(left.join(ARTIFACTS_DIR)).expect("made");
        fs::write(left.join(ARTIFACTS_DIR).join("stale.txt"), "old").expect("written");
        fs::write(left.join("results.subunit"), "old").expect("written");
        let partial = root.path().join(ASSEMBLING);
        fs::create_dir_all(partial.join("leftover")).expect("made");

        dirs.prepare();
        assert!(!partial.exists());
        let job = dirs.take("job-1", b"{}").expect("taken");
        let mut entries: Vec<_> = fs::read_dir(&job)
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        entries.sort();
        assert_eq!(entries, [PROCTOR_ARTIFACTS_DIR, JOB_FILE]);
        assert!(
            !job.join(ARTIFACTS_DIR).exists(),
            "a job makes artifacts/ itself"
        );
        assert_eq!(
            fs::read_dir(job.join(PROCTOR_ARTIFACTS_DIR))
                .expect("listed")
                .count(),
            0
        );
    }

    #[test]
    fn a_work_directory_that_cannot_be_made_is_an_error_naming_it() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let blocker = root.path().join("not-a-directory");
        fs::write(&blocker, "").expect("written");
        let dirs = WorkDirs::new(blocker.clone());
        dirs.prepare();
        let error = dirs.take("job-1", b"{}").expect_err("a file is in the way");
        assert!(
            error
                .with_causes()
                .contains(&blocker.join("job-1").display().to_string()),
            "{}",
            error.with_causes()
        );
    }
}
