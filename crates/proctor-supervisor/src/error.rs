//! Typed errors: setting a supervisor up, starting a command, waiting for one.

use std::io;
use std::path::PathBuf;

/// Why a [`Supervisor`](crate::Supervisor) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// `prctl(PR_SET_CHILD_SUBREAPER)` failed, so escaped processes could not be found.
    #[error("could not make this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER)")]
    Subreaper(#[source] io::Error),
    /// `/proc` is not mounted or not readable, so process trees cannot be followed.
    #[error("cannot read {path}: the supervisor needs /proc to follow process trees")]
    NoProcfs {
        /// The file that could not be read.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: io::Error,
    },
    /// [`MemoryPreference::Cgroup`](crate::MemoryPreference::Cgroup) was asked for, but
    /// neither cgroup version can hold the supervisor's commands.
    #[error("a memory cgroup was required but none is usable (cgroup v2: {v2}; cgroup v1: {v1})")]
    CgroupUnavailable {
        /// Why the unified (v2) hierarchy cannot be used.
        v2: CgroupProbeError,
        /// Why the v1 `memory` hierarchy cannot be used.
        v1: CgroupProbeError,
    },
}

/// Why one cgroup hierarchy cannot hold the supervisor's commands.
#[derive(Debug, thiserror::Error)]
pub enum CgroupProbeError {
    /// No such hierarchy is mounted (per `/proc/self/mountinfo`).
    #[error("no {hierarchy} hierarchy is mounted")]
    NotMounted {
        /// `cgroup2`, or `cgroup v1 memory`.
        hierarchy: &'static str,
    },
    /// `/proc/self/cgroup` does not place this process in that hierarchy.
    #[error("this process has no {hierarchy} cgroup in /proc/self/cgroup")]
    NoOwnCgroup {
        /// `cgroup2`, or `cgroup v1 memory`.
        hierarchy: &'static str,
    },
    /// The memory controller is not available to this process's cgroup.
    #[error("the memory controller is not available in {path}")]
    NoMemoryController {
        /// The cgroup directory that lacks it.
        path: PathBuf,
    },
    /// A v2 cgroup whose memory controller is not enabled for its children, and which holds
    /// other processes besides this one, so it cannot be delegated without moving them.
    #[error("{path} does not delegate the memory controller and holds other processes")]
    NotDelegated {
        /// The cgroup directory.
        path: PathBuf,
    },
    /// Reading or writing a cgroup file failed (typically: not writable).
    #[error("cannot use {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program does not exist (or, for a bare name, is not on `PATH`).
    #[error("program `{program}` not found (no such file, or not on PATH)")]
    NotFound {
        /// The program as given.
        program: String,
    },
    /// The working directory given for the command is not a directory.
    #[error("working directory {path} for `{program}` is not a directory")]
    NoSuchDirectory {
        /// The program as given.
        program: String,
        /// The working directory as given.
        path: PathBuf,
    },
    /// The operating system refused to start the program.
    #[error("could not start `{program}`")]
    Start {
        /// The program as given.
        program: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The command's own cgroup could not be created or configured.
    #[error("could not set up the cgroup {path} for `{program}`")]
    Cgroup {
        /// The program as given.
        program: String,
        /// The cgroup file or directory that failed.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A supervision thread or its wake-up eventfd could not be created.
    #[error("could not set up supervision ({what}) for `{program}`")]
    Setup {
        /// The program as given.
        program: String,
        /// Which part failed.
        what: &'static str,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Why [`Running::wait`](crate::Running::wait) could not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The command's own process was reaped by other code in this process (a stray
    /// `waitpid(-1)`), so its exit status is lost. Its tree was still cleaned up.
    #[error("the exit status of `{program}` (pid {pid}) was taken by another waiter")]
    StatusLost {
        /// The program as given.
        program: String,
        /// Its process id.
        pid: u32,
        /// What `waitid` said.
        #[source]
        source: io::Error,
    },
    /// Waiting for output or events failed; the tree was killed.
    #[error("supervising `{program}` failed while polling its output")]
    Poll {
        /// The program as given.
        program: String,
        /// What `poll` said.
        #[source]
        source: io::Error,
    },
    /// The supervision thread panicked (a bug in this crate).
    #[error("the supervision thread of `{program}` panicked")]
    MonitorPanicked {
        /// The program as given.
        program: String,
    },
}
