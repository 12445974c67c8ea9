//! What a supervised command produced: output chunks as they arrive, and its outcome.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Which output stream a [`Chunk`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Bytes read from one output stream, delivered as soon as they were read (never held back
/// for a line end or for the process to exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The stream the bytes came from.
    pub stream: Stream,
    /// The bytes, in the order written.
    pub data: Bytes,
    /// When they were read.
    pub at: SystemTime,
}

/// How the command's own process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It exited with this status code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl Exit {
    /// Whether it exited with status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// A limit that stopped a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// It ran longer than its time limit.
    Time,
    /// It wrote nothing to stdout or stderr for longer than its no-output limit.
    NoOutput,
    /// Its process tree used more memory than its memory limit.
    Memory,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Time => "time limit",
            Limit::NoOutput => "no-output limit",
            Limit::Memory => "memory limit",
        })
    }
}

/// Everything known about a finished command, once its whole tree is gone and all of its
/// output was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How the command's own process ended.
    pub exit: Exit,
    /// The limit that made the supervisor stop it, if one did.
    pub limit: Option<Limit>,
    /// Whether it was stopped through a [`StopHandle`](crate::StopHandle) (and no limit had
    /// fired first).
    pub stopped: bool,
    /// From the start until the command's own process ended.
    pub duration: Duration,
    /// The most memory the tree used, in bytes: the cgroup's high-water mark, or, when memory is
    /// watched through `/proc`, the largest sum of resident memory over the tree seen by a
    /// sample (`None` if it ended before the first sample).
    pub peak_memory: Option<u64>,
    /// How many processes other than the command's own were still running when it ended or was
    /// stopped, and had to be signalled.
    pub leftovers_killed: usize,
}
