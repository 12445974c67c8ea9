//! The JSON shapes of the API: what requests send and responses carry, with their OpenAPI schemas. They are kept
//! apart from the store's records so the stored form can change without changing the stable API.

use std::collections::BTreeMap;

use jiff::Timestamp;
use proctor_job::Problem;

use crate::{AgentState, FinalState, JobState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every error response: a stable code, a message for people, and details where they apply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable name: `unauthorized`, `forbidden`, `invalid_job`, `unknown_queue`, `bad_request`,
    /// `unsupported_media_type`, `not_found`, `no_artifacts`, `conflict`, `stream_gap`, `invalid_archive` or
    /// `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `invalid_job`: which field, where in the text, and what was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ProblemView>,
    /// For `stream_gap`: the offset the upload must resume from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_offset: Option<u64>,
}

/// What was wrong in a submitted job, and where.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemView {
    /// The field path, like `test_data.test_cmds[2]`; empty for the document as a whole.
    pub path: String,
    /// The 1-based line, when the parser knows it.
    pub line: Option<usize>,
    /// The 1-based column, when the parser knows it.
    pub column: Option<usize>,
    /// What was wrong.
    pub message: String,
}

impl From<&Problem> for ProblemView {
    fn from(problem: &Problem) -> Self {
        ProblemView {
            path: problem.path.clone(),
            line: problem.location.map(|at| at.line),
            column: problem.location.map(|at| at.column),
            message: problem.message.clone(),
        }
    }
}

/// A job and where it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// The queue it targets.
    pub queue: String,
    /// A name for people.
    pub name: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// `queued`, `running`, `passed`, `failed`, `error`, `killed` or `cancelled`.
    #[schema(value_type = String)]
    pub state: JobState,
    /// Why it is in its state (final states and requeues).
    pub reason: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many claims are allowed.
    pub max_attempts: u32,
    /// Whether a user asked to cancel it while it runs.
    pub cancel_requested: bool,
    /// The id of the token that submitted it, when one did.
    #[serde(default)]
    pub submitter: Option<String>,
    /// When it was submitted (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When its current or last attempt was claimed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// The agent that claimed it.
    pub agent_id: Option<String>,
    /// The job definition as submitted, normalised to JSON (timeouts in seconds).
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
}

/// A job with its phases, as `GET /jobs/{id}` shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its phases in the order they started.
    pub phases: Vec<PhaseView>,
    /// Why the server stopped parsing the job's subunit results into per-test results (the stream is corrupt
    /// there); the bytes are kept all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_problem: Option<String>,
}

/// One phase of a job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhaseView {
    /// The phase (`setup`, `provision`, `firmware_update`, `test`, `allocate`, `reserve`, `cleanup`).
    pub name: String,
    /// When it started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// Its exit status, once ended.
    pub exit_status: Option<i32>,
}

/// Options of `POST /jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Accept a queue that no agent has ever served (it is rejected otherwise, as a likely typo).
    #[serde(default)]
    pub allow_unknown_queue: bool,
}

/// Options of `GET /jobs/{id}`: wait for the job's state to change.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Answer once the job's state is no longer this one (the state the caller saw last): with `wait_seconds`, the
    /// request is held until then, so a waiter learns of the change at once instead of polling.
    pub changed_from: Option<String>,
    /// How long to hold the request for a change of state, at most the server's hold (as for claims).
    pub wait_seconds: Option<f64>,
}

/// Filters and paging of `GET /jobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs on this queue.
    pub queue: Option<String>,
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs submitted with this token id.
    pub submitter: Option<String>,
    /// At most this many (newest first): 100 unless asked, 1 000 at most.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: the list goes on after it.
    pub cursor: Option<String>,
}

/// A job as lists show it: everything but its definition (`GET /jobs/{id}` has that).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummaryView {
    /// Its id.
    pub id: String,
    /// The queue it targets.
    pub queue: String,
    /// A name for people.
    pub name: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// `queued`, `running`, `passed`, `failed`, `error`, `killed` or `cancelled`.
    #[schema(value_type = String)]
    pub state: JobState,
    /// Why it is in its state (final states and requeues).
    pub reason: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many claims are allowed.
    pub max_attempts: u32,
    /// The id of the token it was submitted with.
    pub submitter: Option<String>,
    /// Whether a user asked to cancel it while it runs.
    pub cancel_requested: bool,
    /// When it was submitted (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When its current or last attempt was claimed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// The agent that claimed it.
    pub agent_id: Option<String>,
}

/// One page of `GET /jobs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobListView {
    /// The jobs, newest first.
    pub jobs: Vec<JobSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What `POST /jobs/{id}/cancel` did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    /// `cancelled` (it had not started), `requested` (its agent learns at its next heartbeat) or `already_ended`.
    pub outcome: String,
    /// The job's state now.
    #[schema(value_type = String)]
    pub state: JobState,
}

/// An agent announcing itself (`POST /agents/{id}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisterAgent {
    /// The queues it serves.
    pub queues: Vec<String>,
    /// The images it can provision.
    #[serde(default)]
    pub images: Vec<String>,
}

/// An agent as the server knows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// Its id.
    pub id: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// `idle`, `busy`, `offline` or `maintenance`.
    #[schema(value_type = String)]
    pub state: AgentState,
    /// When it was last heard from.
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat: Timestamp,
    /// The images it advertised.
    pub images: Vec<String>,
}

/// A long-polling claim (`POST /agents/{id}/claim`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// The queues to claim from (at least one).
    pub queues: Vec<String>,
    /// How long to hold the request when nothing waits, in seconds; capped by the server's hold (30 s by default),
    /// which also applies when it is absent. A negative one answers at once.
    pub wait_seconds: Option<f64>,
}

/// The reply to a heartbeat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatView {
    /// The agent's running jobs whose leases were renewed; a job it runs that is missing was taken from it.
    pub renewed: Vec<String>,
    /// The jobs among them that a user asked to cancel: kill the phase, run cleanup, finish as `cancelled`.
    pub cancel_requested: Vec<String>,
}

/// The end of a phase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhaseEnd {
    /// The phase command's exit status.
    pub exit_status: i32,
}

/// Where an upload is acknowledged to (`PUT /jobs/{id}/log`, `/results`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadAck {
    /// The stream's end offset: everything before it is stored; the next chunk starts here.
    pub end_offset: u64,
}

/// Where an uploaded chunk goes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The chunk's offset in the stream. Bytes before the acknowledged end are skipped; beyond it is a 409.
    pub offset: u64,
    /// The phase that produced the chunk (log only).
    pub phase: Option<String>,
}

/// What part of a stream to read.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Start at this byte offset (0 by default).
    #[serde(default)]
    pub from: u64,
    /// When nothing is stored past `from` yet and the job has not ended, wait up to this many seconds for more
    /// (a live tail); the reply is sent the moment bytes arrive.
    pub wait_seconds: Option<f64>,
    /// Only this phase's chunks (log only).
    pub phase: Option<String>,
}

/// How a job ends (`POST /jobs/{id}/finish`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FinishRequest {
    /// `passed`, `failed`, `error`, `killed` or `cancelled`.
    #[schema(value_type = String)]
    pub state: FinalState,
    /// Why, for people (which limit fired, which phase failed).
    pub reason: String,
    /// The agent finishing it: only the agent holding the job's claim may end it. Without, the server ends it.
    pub agent_id: Option<String>,
}

/// A queue and what waits on it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Whether any agent has ever served it.
    pub ever_served: bool,
    /// Jobs waiting.
    pub queued: u64,
    /// Jobs running.
    pub running: u64,
    /// Agents serving it that are not offline.
    pub agents_online: u64,
}

/// A job handed to an agent by a claim: the job, and what the agent needs to run it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimedJob {
    /// The job as stored (its definition included).
    #[serde(flatten)]
    pub job: JobView,
    /// A bearer secret scoped to this job (read it and its tests, read and upload its log, results and artifacts,
    /// fetch its attachments), valid while it runs; phases get it as `PROCTOR_TOKEN`. The server always issues
    /// one, also on an open lab, so scripts talk back the same way everywhere.
    pub job_token: Option<String>,
    /// The recipe's script when the job was made by starting a recipe: run as the test phase.
    pub recipe_script: Option<String>,
    /// Whether the job has attachments to fetch from `GET /jobs/{id}/attachments`.
    #[serde(default)]
    pub has_attachments: bool,
}

/// A heartbeat: renews the agent's leases, then waits up to `wait_seconds` for a cancel of one of its jobs.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    /// How long to wait for a cancel before answering; none answers at once.
    pub wait_seconds: Option<f64>,
}

/// A job's test results, parsed by the server from the job's subunit results as they arrive: every run of every
/// test, one row per test combining its runs, and the totals counted both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestResultsView {
    /// The runs, counted as runs (as `subunit-stats` counts them).
    pub runs: RunCountsView,
    /// The tests, counted by their verdicts.
    pub tests: TestCountsView,
    /// One row per test id, sorted by id.
    pub results: Vec<TestResultView>,
}

/// Counts of test runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunCountsView {
    /// Every run.
    pub total: usize,
    /// Runs that passed (`success`, `xfail`).
    pub passed: usize,
    /// Runs that failed (`fail`, `uxsuccess`, `unfinished`).
    pub failed: usize,
    /// Runs that were skipped.
    pub skipped: usize,
    /// Runs still going (`inprogress`).
    pub running: usize,
}

/// Counts of tests by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestCountsView {
    /// Distinct test ids.
    pub total: usize,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that failed, then passed on a rerun.
    pub flaky: usize,
    /// Tests only skipped.
    pub skipped: usize,
    /// Tests still running.
    pub running: usize,
}

/// One test in a job: its verdict over all its runs, and the runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestResultView {
    /// The test id.
    pub test_id: String,
    /// How its runs combine: `failed` when a run of its latest try failed (on any route, any worker), `flaky` when
    /// that try passed after an earlier try (a retry, or an earlier attempt of the job) failed, `skipped` when
    /// every run was skipped, `running` while a run of its latest try goes on, else `passed`.
    pub verdict: String,
    /// Its runs: by attempt, then in the order they were recorded.
    pub runs: Vec<TestRunView>,
}

/// One run of a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestRunView {
    /// The job's attempt it ran in, from 1.
    pub attempt: u32,
    /// The route code it ran on, when the stream gave one.
    pub route_code: Option<String>,
    /// The runner's retry it was (0 for a first run).
    pub retry: u32,
    /// `inprogress` while it runs, then `success`, `fail`, `skip`, `xfail`, `uxsuccess`, or `unfinished` when its
    /// stream ended before it did.
    pub status: String,
    /// Why it did not finish.
    pub reason: Option<String>,
    /// When it started, by the stream's clock (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// How long it ran, in microseconds: from its first timestamp to its last (0 when it had one); none for a run
    /// that did not end or had no timestamp.
    pub duration_us: Option<u64>,
    /// The agent it ran on.
    pub agent_id: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A recipe as stored or sent: a named script with a queue and default options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecipeView {
    /// Its name.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The script (any interpreter, by its `#!` line).
    pub script: String,
    /// Options given to the script as `--key value` unless a start overrides them.
    pub options: BTreeMap<String, String>,
}

/// What `PUT /recipes/{name}` stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewRecipe {
    /// The queue its jobs go to.
    pub queue: String,
    /// The script.
    pub script: String,
    /// Default options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What `POST /recipes/{name}/start` makes a job of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartRecipe {
    /// Options overriding (or adding to) the recipe's defaults.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Options of `GET /test-history`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TestHistoryQuery {
    /// The test id.
    pub test_id: String,
    /// How many of the newest jobs that ran it to look at: 50 unless asked, 500 at most.
    pub jobs: Option<u32>,
}

/// One test's runs across jobs, newest job first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestHistoryView {
    /// The test id.
    pub test_id: String,
    /// Its runs, newest job first, then by attempt and the order recorded.
    pub runs: Vec<TestHistoryRunView>,
}

/// One run of a test in its history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestHistoryRunView {
    /// The job it ran in.
    pub job_id: String,
    /// That job's name.
    pub job_name: Option<String>,
    /// When that job was submitted (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub job_created_at: Timestamp,
    /// The run.
    pub run: TestRunView,
}
