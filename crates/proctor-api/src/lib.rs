//! The lab service's wire vocabulary, shared by everything that speaks `/api/v1`: the states a job, an agent and a
//! token can be in ([`JobState`], [`AgentState`], [`Role`], …) and the JSON bodies of every request and response,
//! with their OpenAPI schemas. The server turns its stored records into these; the agent and the client read them.
//!
//! The paths themselves are in the server's OpenAPI document (`/api/v1/openapi.json`).

mod states;
mod views;
mod work;

pub use states::{AgentState, FinalState, JobState, Role, StreamKind, UnknownName};
pub use views::*;
pub use work::{
    take_lines, to_line, BatchRequest, OutputStream, WorkReport, WorkRequest, MAX_WORK_LINE,
    MEMORY_EXCEEDED_EXIT, WORKER_LOST_EXIT,
};

/// The largest request body a server takes by default (a log chunk, a job, a bundle of attachments or artifacts),
/// and so the largest artifacts bundle an agent packs by default: 64 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// The largest job definition a server takes by default: 1 MiB. Large data belongs in attachments.
pub const DEFAULT_MAX_DEFINITION_BYTES: u64 = 1024 * 1024;

/// The header a stream read carries with the offset to read from next.
pub const NEXT_OFFSET_HEADER: &str = "proctor-next-offset";

/// The header a stream read carries with the job's state when the read was answered: once it is final and no bytes
/// came, the stream is complete.
pub const JOB_STATE_HEADER: &str = "proctor-job-state";
