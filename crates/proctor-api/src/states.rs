//! The lab's vocabulary of states, shared by the store, the server, the agent and the client: what a job, an agent
//! and a token can be, each stored and sent as lowercase text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored text value that is not one of an enum's names (only a damaged database holds one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}")]
pub struct UnknownName {
    /// What was being parsed, e.g. "job state".
    pub kind: &'static str,
    /// The text found.
    pub value: String,
}

/// Defines a fieldless enum stored as lowercase text, with `as_str`, `Display` and `FromStr`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name stored in the database and used in the API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(value: &str) -> Result<Self, UnknownName> {
                match value {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownName { kind: $kind, value: value.to_owned() }),
                }
            }
        }
    };
}

named_enum!(
    /// A job's state (DESIGN.md, "Job states"): queued, running, then one final result.
    JobState, "job state" {
        /// Waiting for an agent to claim it.
        Queued = "queued",
        /// Claimed by an agent that holds its lease.
        Running = "running",
        /// Every phase exited 0 and no test failed.
        Passed = "passed",
        /// A phase exited non-zero or a test failed.
        Failed = "failed",
        /// The system, not the test, broke (agent lost, bad data found late).
        Error = "error",
        /// A limit was hit (global or no-output timeout, memory).
        Killed = "killed",
        /// A user cancelled it.
        Cancelled = "cancelled",
    }
);

impl JobState {
    /// Whether the job has ended (no further state change happens).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

named_enum!(
    /// The result a job ends with.
    FinalState, "final job state" {
        /// See [`JobState::Passed`].
        Passed = "passed",
        /// See [`JobState::Failed`].
        Failed = "failed",
        /// See [`JobState::Error`].
        Error = "error",
        /// See [`JobState::Killed`].
        Killed = "killed",
        /// See [`JobState::Cancelled`].
        Cancelled = "cancelled",
    }
);

impl From<FinalState> for JobState {
    fn from(state: FinalState) -> Self {
        match state {
            FinalState::Passed => Self::Passed,
            FinalState::Failed => Self::Failed,
            FinalState::Error => Self::Error,
            FinalState::Killed => Self::Killed,
            FinalState::Cancelled => Self::Cancelled,
        }
    }
}

named_enum!(
    /// What an agent is doing.
    AgentState, "agent state" {
        /// Serving its queues, no job running.
        Idle = "idle",
        /// Running a job.
        Busy = "busy",
        /// Not heard from within the allowed silence.
        Offline = "offline",
        /// Taken out of service by an operator: it claims nothing.
        Maintenance = "maintenance",
    }
);

named_enum!(
    /// What a bearer token may do.
    Role, "token role" {
        /// Everything, including cancelling anyone's job.
        Admin = "admin",
        /// Submit jobs and manage their own.
        User = "user",
        /// Claim jobs and upload their output, possibly limited to some queues.
        Agent = "agent",
    }
);

named_enum!(
    /// One of a job's uploaded byte streams.
    StreamKind, "stream" {
        /// The job's output, each chunk tagged with the phase that produced it.
        Log = "log",
        /// The subunit v2 stream of per-test results.
        Results = "results",
        /// What a local run asks of the lab job that serves it as a worker (`proctor run --lab`): JSON lines of
        /// [`crate::WorkRequest`], written by the job's submitter.
        Work = "work",
        /// What that job's worker reports back: JSON lines of [`crate::WorkReport`], written by the job's holder.
        WorkDone = "work-done",
    }
);
