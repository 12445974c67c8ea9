//! The lab service's storage: queues, agents, jobs, phases, log chunks, per-test results, artifacts, recipes and
//! tokens, behind the [`Store`] trait. Each backend is a crate of its own: `proctor-store-sqlite` (an embedded SQLite
//! file, the default) and `proctor-store-postgres` (one PostgreSQL database shared by several servers). The
//! behaviours every backend must show are one suite, `conformance` (feature `conformance`), that each backend's
//! tests run.
//!
//! Every operation is one transaction against the database and no state lives in the process, so several servers
//! can share one database; the current time is always a parameter (so the callers, and the tests, own the clock).
//! Methods are synchronous; an async server calls them through `spawn_blocking`.
//!
//! Byte streams (a job's log and its subunit results) are appended idempotently by offset: resending bytes the store
//! already holds changes nothing, a chunk overlapping the end stores only its new tail, and a chunk past the end is
//! refused with [`StoreError::StreamGap`] naming the offset to resend from.

mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod copy;
mod error;
mod model;
pub mod rules;
pub mod secret;

use std::time::Duration;

use jiff::Timestamp;

pub use changes::{Change, ChangeFeed};
pub use error::{DatabaseError, StoreError};
pub use model::{
    Agent, AgentRegistration, Artifact, CancelOutcome, Claim, HeartbeatReply, IssuedToken, Job,
    JobAttempt, JobCursor, JobFilter, JobPage, JobSummary, JobTokenUse, NewJob, PhaseRecord,
    QueueInfo, ReapedJob, Recipe, ResultsProgress, StreamChunk, TestHistoryRun, TestRun, Token,
};
/// The states the store keeps, from the lab's shared vocabulary.
pub use proctor_api::{AgentState, FinalState, JobState, Role, StreamKind, UnknownName};

/// Shorthand for the store's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The lab service's storage. Every method is one atomic operation; implementations are shared between threads.
pub trait Store: Send + Sync {
    // Queues and agents.

    /// Every queue that jobs or agents have named, by name.
    fn queues(&self) -> Result<Vec<QueueInfo>>;
    /// One queue, or `None` if nothing ever named it.
    fn queue(&self, name: &str) -> Result<Option<QueueInfo>>;
    /// Records an agent and the queues it serves (marking them served), or updates it; it becomes `idle`, or `busy`
    /// if it still holds running jobs. An agent in maintenance stays in maintenance.
    fn register_agent(&self, agent: &AgentRegistration, now: Timestamp) -> Result<Agent>;
    /// Sets an agent's state (an operator's `maintenance`, or back to `idle`).
    fn set_agent_state(&self, agent_id: &str, state: AgentState) -> Result<()>;
    /// Every agent, by id.
    fn agents(&self) -> Result<Vec<Agent>>;
    /// How many agents are not offline.
    fn online_agents(&self) -> Result<u64>;
    /// Marks agents not heard from since `silent_since` offline; returns their ids, sorted.
    fn mark_silent_agents_offline(&self, silent_since: Timestamp) -> Result<Vec<String>>;

    // Jobs.

    /// Stores a new `queued` job (creating its queue if new) and returns it with its id.
    fn submit_job(&self, job: &NewJob, now: Timestamp) -> Result<Job>;
    /// One job.
    fn job(&self, job_id: &str) -> Result<Job>;
    /// The queue a job is on (what a queue-limited token's check needs, without the rest of the job).
    fn job_queue(&self, job_id: &str) -> Result<String>;
    /// One page of the jobs matching the filter, newest first, without their definitions.
    fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage>;
    /// Atomically claims the highest-priority, then oldest, claimable queued job on one of `queues` for the agent:
    /// it becomes `running` with a lease until `now + lease`, and gets a fresh job token. `None` when nothing waits
    /// or the agent is in maintenance. The agent must be registered. One transaction, as the claim is on the
    /// dispatch path.
    fn claim_job(
        &self,
        agent_id: &str,
        queues: &[String],
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Claim>>;
    /// Records that the agent is alive and renews the leases of its running jobs until `now + lease`; says which
    /// of them a user asked to cancel.
    fn heartbeat(&self, agent_id: &str, now: Timestamp, lease: Duration) -> Result<HeartbeatReply>;
    /// Handles running jobs whose lease lapsed before `now`: back to `queued` while attempts remain, otherwise
    /// `error` ("agent lost"); `cancelled` if a cancel was pending.
    fn reap_expired_leases(&self, now: Timestamp) -> Result<Vec<ReapedJob>>;
    /// Cancels a queued job at once, or flags a running one for its agent. Who may cancel is the caller's check.
    fn request_cancel(&self, job_id: &str, now: Timestamp) -> Result<CancelOutcome>;
    /// Ends a running job with its result and reason. With `agent_id`, only that agent's claim may end it (a
    /// lost agent cannot end a job that moved on); without, the server ends it.
    fn finish_job(
        &self,
        job_id: &str,
        agent_id: Option<&str>,
        state: FinalState,
        reason: &str,
        now: Timestamp,
    ) -> Result<Job>;

    // Phases.

    /// Records that a phase of the job started (again, if it is restarted).
    fn start_phase(&self, job_id: &str, phase: &str, now: Timestamp) -> Result<()>;
    /// Records a phase's end and exit status.
    fn end_phase(&self, job_id: &str, phase: &str, exit_status: i32, now: Timestamp) -> Result<()>;
    /// The job's phases in the order they started.
    fn phases(&self, job_id: &str) -> Result<Vec<PhaseRecord>>;

    // Byte streams: the log and the subunit results.

    /// Appends `bytes` at `offset` to one of the job's streams, idempotently, and returns the acknowledged end
    /// offset: bytes already stored are skipped, and an `offset` past the end is a [`StoreError::StreamGap`].
    /// `phase` tags log chunks. Offsets count from the start of the job's current attempt (its uploader's own
    /// stream), so a requeued job's next attempt appends after the last one's bytes.
    fn append_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        offset: u64,
        phase: Option<&str>,
        bytes: &[u8],
    ) -> Result<u64>;
    /// The end of a stream, counted from its start (0 when empty).
    fn stream_end(&self, job_id: &str, stream: StreamKind) -> Result<u64>;
    /// The stored chunks of a stream that end after `from`, in order, optionally only one phase's. The first chunk
    /// may start before `from`.
    fn read_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        from: u64,
        phase: Option<&str>,
    ) -> Result<Vec<StreamChunk>>;

    // Results, artifacts.

    /// Every run of every test in the job, by test id, then attempt, then the order they were recorded.
    fn test_runs(&self, job_id: &str) -> Result<Vec<TestRun>>;

    /// The runs of test `test_id` in the newest `jobs` jobs that ran it, newest job first, each with its job.
    fn test_history(&self, test_id: &str, jobs: u32) -> Result<Vec<TestHistoryRun>>;
    /// The runs of the job's `attempt` that the parse left open ([`RunStatus::Running`]), in the order they
    /// started: the state to resume the parse from.
    ///
    /// [`RunStatus::Running`]: proctor_events::RunStatus::Running
    fn open_test_runs(&self, job_id: &str, attempt: u32) -> Result<Vec<TestRun>>;
    /// The job's attempts (one per claim), oldest first.
    fn job_attempts(&self, job_id: &str) -> Result<Vec<JobAttempt>>;
    /// How far the job's results stream has been parsed into test runs.
    fn results_progress(&self, job_id: &str) -> Result<ResultsProgress>;
    /// Records the runs a parse of the results stream from `from` found, in stream order, and moves the parse to
    /// `to`. A run replaces the open run of its attempt, test id and route code when there is one (it went on, or
    /// ended), else it is a new row. Does nothing and returns `false` when the parse is no longer at `from`
    /// (another upload parsed those bytes first), or when `to` runs past the start of a later attempt (claimed
    /// while the parse read the stream), so concurrent parsers never record a run twice nor in the wrong attempt.
    fn record_parsed_results(
        &self,
        job_id: &str,
        from: &ResultsProgress,
        to: &ResultsProgress,
        runs: &[TestRun],
    ) -> Result<bool>;
    /// Stores (or replaces) an artifact of the job.
    fn put_artifact(&self, job_id: &str, artifact: &Artifact) -> Result<()>;
    /// The job's artifacts, by name.
    fn artifacts(&self, job_id: &str) -> Result<Vec<Artifact>>;

    // Attachments.

    /// Stores a held job's attachments (a checked tar.gz) and makes the job claimable, in one step. A job that is
    /// not held and queued (it has none, they are stored already, or it was cancelled) is a
    /// [`StoreError::NotHeld`].
    fn store_attachments(&self, job_id: &str, tar_gz: &[u8], now: Timestamp) -> Result<()>;
    /// The job's attachments, or `None` when it has none.
    fn attachments(&self, job_id: &str) -> Result<Option<Vec<u8>>>;

    // Recipes.

    /// Stores a recipe, replacing one of the same name.
    fn put_recipe(&self, recipe: &Recipe, now: Timestamp) -> Result<()>;
    /// One recipe.
    fn recipe(&self, name: &str) -> Result<Recipe>;
    /// Every recipe, by name.
    fn recipes(&self) -> Result<Vec<Recipe>>;
    /// Removes a recipe.
    fn remove_recipe(&self, name: &str) -> Result<()>;

    // Tokens.

    /// Makes a token with a fresh random secret; only its hash is stored.
    fn create_token(&self, role: Role, queues: &[String], now: Timestamp) -> Result<IssuedToken>;
    /// The token a bearer secret belongs to, or `None` for an unknown (forged, revoked) secret.
    fn verify_token(&self, secret: &str) -> Result<Option<Token>>;
    /// Whether any token exists (without any, a loopback server runs open).
    fn has_tokens(&self) -> Result<bool>;
    /// Every token, by creation time.
    fn tokens(&self) -> Result<Vec<Token>>;
    /// Deletes a token; its secret stops working.
    fn revoke_token(&self, token_id: &str) -> Result<()>;
    /// The job a job-token secret belongs to, with the job's state (the token works only while it runs) and whether
    /// it is the token of the job's current claim, or `None` for an unknown secret. Job tokens are issued by
    /// [`claim_job`](Store::claim_job); they are not in [`tokens`](Store::tokens) and do not count for
    /// [`has_tokens`](Store::has_tokens).
    fn verify_job_token(&self, secret: &str) -> Result<Option<JobTokenUse>>;

    // Copying a lab (`proctor store copy`, see [`copy`]).

    /// Up to `limit` rows of `table` in its key order, after the first `offset`; each row's values in the table's
    /// column order.
    fn export_rows(
        &self,
        table: &copy::Table,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<Vec<copy::Value>>>;
    /// Adds rows to `table` as [`export_rows`](Store::export_rows) gave them, in one transaction.
    fn import_rows(&self, table: &copy::Table, rows: &[Vec<copy::Value>]) -> Result<()>;
    /// After the last rows of `table` were imported: whatever the backend keeps beside the rows catches up (the next
    /// number of a sequence column).
    fn finish_import(&self, _table: &copy::Table) -> Result<()> {
        Ok(())
    }

    // Changes.

    /// Follows the changes every process sharing this database commits ([`Change`]), where the backend can tell
    /// (PostgreSQL's `LISTEN`/`NOTIFY`). `None` for a backend that cannot: a server then learns of other processes'
    /// writes when its waits end.
    fn follow_changes(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }
}
