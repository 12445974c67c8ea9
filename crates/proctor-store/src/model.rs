//! The records the store keeps and the values its operations take.

use std::collections::BTreeMap;

use jiff::Timestamp;
use proctor_api::{AgentState, JobState, Role};
use proctor_events::RunStatus;
use serde::{Deserialize, Serialize};

/// A job as submitted, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The queue it targets.
    pub queue: String,
    /// A human name, if the job has one.
    pub name: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// The validated job definition, kept verbatim for the agent.
    pub definition: serde_json::Value,
    /// How many times the job may be claimed before a lost agent makes it `error` (at least 1).
    pub max_attempts: u32,
    /// Who submitted it (a token id or user name), for cancel rights.
    pub submitter: Option<String>,
    /// Keep the job unclaimable until [`Store::store_attachments`](crate::Store::store_attachments) stores its
    /// attachments (they are still being uploaded).
    pub held: bool,
    /// The script of the recipe the job was started from, copied so later edits of the recipe do not change it.
    pub recipe_script: Option<String>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (a UUID string).
    pub id: String,
    /// The queue it targets.
    pub queue: String,
    /// A human name, if any.
    pub name: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// The job definition as submitted.
    pub definition: serde_json::Value,
    /// Its current state.
    pub state: JobState,
    /// Why it is in its state (set for final states and requeues).
    pub reason: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many claims are allowed.
    pub max_attempts: u32,
    /// Who submitted it.
    pub submitter: Option<String>,
    /// Whether it waits for its attachments.
    pub held: bool,
    /// Whether a user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When the current (or last) attempt was claimed.
    pub started_at: Option<Timestamp>,
    /// When it reached its final state.
    pub ended_at: Option<Timestamp>,
    /// When the running job's lease lapses unless renewed.
    pub lease_expires_at: Option<Timestamp>,
    /// The agent that claimed it.
    pub agent_id: Option<String>,
}

/// A job an agent just claimed, with what the agent needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The job, now `running` under the agent's lease.
    pub job: Job,
    /// The secret of a fresh token scoped to the job (replacing one an earlier attempt had).
    pub job_token: String,
    /// The script of the recipe the job was started from, if it was.
    pub recipe_script: Option<String>,
    /// Whether the job has attachments to fetch.
    pub has_attachments: bool,
}

/// What a job token stands for, as [`Store::verify_job_token`](crate::Store::verify_job_token) finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTokenUse {
    /// The job the token was issued for.
    pub job_id: String,
    /// The job's state now.
    pub job_state: JobState,
    /// Whether the token is the one of the job's current claim (a later claim supersedes it).
    pub current: bool,
}

/// A job as lists show it: everything but its definition, which may be large and is read one job at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Its id (a UUID string).
    pub id: String,
    /// The queue it targets.
    pub queue: String,
    /// A human name, if any.
    pub name: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// Its current state.
    pub state: JobState,
    /// Why it is in its state (set for final states and requeues).
    pub reason: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many claims are allowed.
    pub max_attempts: u32,
    /// Who submitted it.
    pub submitter: Option<String>,
    /// Whether a user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When the current (or last) attempt was claimed.
    pub started_at: Option<Timestamp>,
    /// When it reached its final state.
    pub ended_at: Option<Timestamp>,
    /// The agent that claimed it.
    pub agent_id: Option<String>,
}

/// Where a page of a job list ends: the list goes on with the jobs created before this one (a keyset cursor, so
/// pages neither skip nor repeat jobs while new ones arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCursor {
    /// When the page's last job was created.
    pub created_at: Timestamp,
    /// Its submission sequence number (ties in `created_at`).
    pub seq: i64,
}

/// Which jobs [`Store::list_jobs`](crate::Store::list_jobs) returns, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only jobs submitted with this token id.
    pub submitter: Option<String>,
    /// Only jobs after this cursor (the next page).
    pub after: Option<JobCursor>,
    /// At most this many.
    pub limit: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            queue: None,
            state: None,
            submitter: None,
            after: None,
            limit: 100,
        }
    }
}

/// One page of a job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// Where the next page starts, when there are more jobs.
    pub next: Option<JobCursor>,
}

/// What [`Store::request_cancel`](crate::Store::request_cancel) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job had not started: it is now `cancelled`.
    Cancelled,
    /// The job is running: its agent learns of the request at its next heartbeat.
    Requested,
    /// The job had already ended in this state: nothing changed.
    AlreadyEnded {
        /// Its final state.
        state: JobState,
    },
}

/// What a heartbeat tells the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The agent's running jobs whose leases were renewed. A job the agent runs that is missing here was taken
    /// from it (its lease lapsed) and must be abandoned.
    pub renewed: Vec<String>,
    /// The subset of `renewed` that a user asked to cancel.
    pub cancel_requested: Vec<String>,
}

/// A job whose lease lapsed, and what the reaper made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapedJob {
    /// The job.
    pub job_id: String,
    /// The agent that lost it.
    pub agent_id: Option<String>,
    /// The queue it ran from, which it is back on when requeued.
    pub queue: String,
    /// `queued` (attempts remain), `error` (agent lost) or `cancelled` (a cancel was pending).
    pub new_state: JobState,
}

/// An agent announcing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRegistration {
    /// Its unique id (Testflinger's `agent_id`).
    pub id: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// The images it can provision.
    pub images: Vec<String>,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Its id.
    pub id: String,
    /// The queues it serves, sorted.
    pub queues: Vec<String>,
    /// Its state.
    pub state: AgentState,
    /// When it was last heard from.
    pub last_heartbeat: Timestamp,
    /// The images it advertised.
    pub images: Vec<String>,
}

/// A queue and what waits on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Whether any agent has ever served it; a queue none has is probably a typo.
    pub ever_served: bool,
    /// Jobs waiting (held ones included).
    pub queued: u64,
    /// Jobs running.
    pub running: u64,
    /// Agents serving it now that are not offline.
    pub agents_online: u64,
}

/// One phase of a job on its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase name (`setup`, `provision`, `test`, …).
    pub name: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended, once it has.
    pub ended_at: Option<Timestamp>,
    /// Its exit status, once it has ended.
    pub exit_status: Option<i32>,
}

/// One run of a test in its history across jobs ([`Store::test_history`](crate::Store::test_history)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestHistoryRun {
    /// The job it ran in.
    pub job_id: String,
    /// That job's name.
    pub job_name: Option<String>,
    /// When that job was submitted.
    pub job_created_at: Timestamp,
    /// The run.
    pub run: TestRun,
}

/// A chunk of a job's byte stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// Where the chunk starts in the stream.
    pub offset: u64,
    /// The phase that produced it (log chunks).
    pub phase: Option<String>,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One run of one test in a job, as stored: a test id may run on several route codes, be retried by the runner and
/// run again in a later attempt of the job, and every run is its own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The job's attempt it ran in (from 1).
    pub attempt: u32,
    /// The test id.
    pub test_id: String,
    /// The route code it ran on, when the stream gave one.
    pub route_code: Option<String>,
    /// The runner's retry it was (0 for a first run).
    pub retry: u32,
    /// What it came to; [`RunStatus::Running`] while its stream goes on.
    pub status: RunStatus,
    /// Why it did not finish ([`RunStatus::Unfinished`]).
    pub reason: Option<String>,
    /// The first timestamp its stream gave.
    pub started_at: Option<Timestamp>,
    /// The last timestamp its stream gave.
    pub ended_at: Option<Timestamp>,
    /// How long it ran, in microseconds: from its first timestamp to its last (0 when it had one); none for a run
    /// that did not end or had no timestamp.
    pub duration_us: Option<u64>,
    /// The agent that ran it: the attempt's (the store fills it in as it records the run).
    pub agent_id: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// One claim of a job: who ran it, and where its streams start in the job's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAttempt {
    /// Its number, from 1.
    pub attempt: u32,
    /// The agent that claimed the job.
    pub agent_id: Option<String>,
    /// When.
    pub claimed_at: Timestamp,
    /// Where the attempt's log starts in the job's log.
    pub log_base: u64,
    /// Where the attempt's results start in the job's results stream.
    pub results_base: u64,
    /// Why it ended, when its agent was lost (the job requeued, or ended `error`); `None` while it runs or when
    /// its agent ended it.
    pub end_reason: Option<String>,
}

/// How far the server has parsed a job's results stream into test runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsProgress {
    /// The attempt whose part of the stream the parse is in.
    pub attempt: u32,
    /// Bytes before this offset are parsed; the next parse starts here.
    pub parsed_offset: u64,
    /// Why parsing stopped for good in this attempt (its stream is corrupt at `parsed_offset`); `None` while it
    /// goes on.
    pub problem: Option<String>,
}

impl Default for ResultsProgress {
    fn default() -> ResultsProgress {
        ResultsProgress {
            attempt: 1,
            parsed_offset: 0,
            problem: None,
        }
    }
}

/// A file a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its name within the job.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes, kept in the database.
    pub content: Vec<u8>,
}

/// A named, stored job template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// Its name.
    pub name: String,
    /// The script (any interpreter, by its `#!` line).
    pub script: String,
    /// Options passed as `--key value` unless a start overrides them.
    pub default_options: BTreeMap<String, String>,
    /// The queue its jobs go to.
    pub queue: String,
}

/// A stored bearer token (its secret is only kept hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Its id, safe to show and log.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The queues it is limited to; empty means all.
    pub queues: Vec<String>,
    /// When it was made.
    pub created_at: Timestamp,
}

impl Token {
    /// Whether the token may act on `queue`.
    pub fn allows_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|allowed| allowed == queue)
    }
}

/// A token just made, with the secret shown this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The stored token.
    pub token: Token,
    /// The bearer secret to hand to its user.
    pub secret: String,
}
