//! Conversions from PostgreSQL rows to the store's records. Integers are BIGINT columns, range-checked into the
//! model's `u32` and `u64`; times are BIGINT microseconds; JSON values are TEXT.

use std::str::FromStr;

use jiff::Timestamp;
use postgres::Row;
use serde::de::DeserializeOwned;

use proctor_store::{
    Agent, Artifact, Job, JobAttempt, JobCursor, JobSummary, PhaseRecord, QueueInfo, Recipe,
    ResultsProgress, StreamChunk, TestHistoryRun, TestRun, Token,
};

/// The job columns every job query selects, as [`job_row`] reads them.
pub(crate) const JOB_COLUMNS: &str =
    "id, queue, name, priority, definition, state, reason, attempts, max_attempts, \
     submitter, held, cancel_requested, created_at, started_at, ended_at, lease_expires_at, agent_id";

/// The columns [`summary_row`] reads.
pub(crate) const SUMMARY_COLUMNS: &str =
    "seq, id, queue, name, priority, state, reason, attempts, max_attempts, \
     submitter, cancel_requested, created_at, started_at, ended_at, agent_id";

/// The columns [`test_run_row`] reads.
pub(crate) const TEST_RUN_COLUMNS: &str =
    "attempt, test_id, route_code, retry, status, reason, started_at, ended_at, duration_us, agent_id, tags";

/// [`TEST_RUN_COLUMNS`] of the table aliased `r`.
pub(crate) const TEST_RUN_COLUMNS_OF_R: &str =
    "r.attempt, r.test_id, r.route_code, r.retry, r.status, r.reason, r.started_at, r.ended_at, r.duration_us, \
     r.agent_id, r.tags";

/// Why a row could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowError {
    /// The column is missing or of another type.
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// The column's value does not decode (only a damaged database holds one).
    #[error("the column {column} holds a value the store cannot read")]
    Decode {
        /// The column.
        column: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

type RowResult<T> = Result<T, RowError>;

fn decode_error(
    column: &'static str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> RowError {
    RowError::Decode {
        column,
        source: source.into(),
    }
}

/// A BIGINT column as a `u32` (attempts, retries).
pub(crate) fn small(row: &Row, column: &'static str) -> RowResult<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|error| decode_error(column, error))
}

/// A BIGINT column as a `u64` (sizes, offsets, counts).
pub(crate) fn unsigned(row: &Row, column: &'static str) -> RowResult<u64> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|error| decode_error(column, error))
}

pub(crate) fn optional_unsigned(row: &Row, column: &'static str) -> RowResult<Option<u64>> {
    row.try_get::<_, Option<i64>>(column)?
        .map(|value| u64::try_from(value).map_err(|error| decode_error(column, error)))
        .transpose()
}

fn timestamp(row: &Row, column: &'static str) -> RowResult<Timestamp> {
    let value: i64 = row.try_get(column)?;
    Timestamp::from_microsecond(value).map_err(|error| decode_error(column, error))
}

fn optional_timestamp(row: &Row, column: &'static str) -> RowResult<Option<Timestamp>> {
    row.try_get::<_, Option<i64>>(column)?
        .map(|value| {
            Timestamp::from_microsecond(value).map_err(|error| decode_error(column, error))
        })
        .transpose()
}

/// A text column parsed into `T`, such as a state by its name.
pub(crate) fn parsed<T>(row: &Row, column: &'static str) -> RowResult<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: &str = row.try_get(column)?;
    text.parse().map_err(|error| decode_error(column, error))
}

fn json<T: DeserializeOwned>(row: &Row, column: &'static str) -> RowResult<T> {
    let text: &str = row.try_get(column)?;
    serde_json::from_str(text).map_err(|error| decode_error(column, error))
}

/// A job from a row of [`JOB_COLUMNS`].
pub(crate) fn job_row(row: &Row) -> RowResult<Job> {
    Ok(Job {
        id: row.try_get("id")?,
        queue: row.try_get("queue")?,
        name: row.try_get("name")?,
        priority: row.try_get("priority")?,
        definition: json(row, "definition")?,
        state: parsed(row, "state")?,
        reason: row.try_get("reason")?,
        attempts: small(row, "attempts")?,
        max_attempts: small(row, "max_attempts")?,
        submitter: row.try_get("submitter")?,
        held: row.try_get("held")?,
        cancel_requested: row.try_get("cancel_requested")?,
        created_at: timestamp(row, "created_at")?,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        lease_expires_at: optional_timestamp(row, "lease_expires_at")?,
        agent_id: row.try_get("agent_id")?,
    })
}

/// A claimed job with what its agent gets besides, from `JOB_COLUMNS, recipe_script, has_attachments`.
pub(crate) fn claimed_row(row: &Row) -> RowResult<(Job, Option<String>, bool)> {
    Ok((
        job_row(row)?,
        row.try_get("recipe_script")?,
        row.try_get("has_attachments")?,
    ))
}

/// A job as lists show it, from [`SUMMARY_COLUMNS`], with the cursor that continues a list after it.
pub(crate) fn summary_row(row: &Row) -> RowResult<(JobSummary, JobCursor)> {
    let created_at = timestamp(row, "created_at")?;
    let summary = JobSummary {
        id: row.try_get("id")?,
        queue: row.try_get("queue")?,
        name: row.try_get("name")?,
        priority: row.try_get("priority")?,
        state: parsed(row, "state")?,
        reason: row.try_get("reason")?,
        attempts: small(row, "attempts")?,
        max_attempts: small(row, "max_attempts")?,
        submitter: row.try_get("submitter")?,
        cancel_requested: row.try_get("cancel_requested")?,
        created_at,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        agent_id: row.try_get("agent_id")?,
    };
    let cursor = JobCursor {
        created_at,
        seq: row.try_get("seq")?,
    };
    Ok((summary, cursor))
}

/// An agent from `id, state, images, last_heartbeat, queues` (its queues an array, sorted).
pub(crate) fn agent_row(row: &Row) -> RowResult<Agent> {
    Ok(Agent {
        id: row.try_get("id")?,
        queues: row.try_get("queues")?,
        state: parsed(row, "state")?,
        last_heartbeat: timestamp(row, "last_heartbeat")?,
        images: json(row, "images")?,
    })
}

/// A queue from `name, ever_served, queued, running, agents_online`.
pub(crate) fn queue_row(row: &Row) -> RowResult<QueueInfo> {
    Ok(QueueInfo {
        name: row.try_get("name")?,
        ever_served: row.try_get("ever_served")?,
        queued: unsigned(row, "queued")?,
        running: unsigned(row, "running")?,
        agents_online: unsigned(row, "agents_online")?,
    })
}

/// A phase from `name, started_at, ended_at, exit_status`.
pub(crate) fn phase_row(row: &Row) -> RowResult<PhaseRecord> {
    Ok(PhaseRecord {
        name: row.try_get("name")?,
        started_at: timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        exit_status: row.try_get("exit_status")?,
    })
}

/// A chunk of a stream from `start_offset, phase, bytes`.
pub(crate) fn chunk_row(row: &Row) -> RowResult<StreamChunk> {
    Ok(StreamChunk {
        offset: unsigned(row, "start_offset")?,
        phase: row.try_get("phase")?,
        bytes: row.try_get("bytes")?,
    })
}

/// A test run from a row of [`TEST_RUN_COLUMNS`].
pub(crate) fn test_run_row(row: &Row) -> RowResult<TestRun> {
    Ok(TestRun {
        attempt: small(row, "attempt")?,
        test_id: row.try_get("test_id")?,
        route_code: row.try_get("route_code")?,
        retry: small(row, "retry")?,
        status: parsed(row, "status")?,
        reason: row.try_get("reason")?,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        duration_us: optional_unsigned(row, "duration_us")?,
        agent_id: row.try_get("agent_id")?,
        tags: json(row, "tags")?,
    })
}

/// A run of a test's history: [`TEST_RUN_COLUMNS`] with `job_id`, `job_name` and `job_created_at`.
pub(crate) fn test_history_row(row: &Row) -> RowResult<TestHistoryRun> {
    Ok(TestHistoryRun {
        job_id: row.try_get("job_id")?,
        job_name: row.try_get("job_name")?,
        job_created_at: timestamp(row, "job_created_at")?,
        run: test_run_row(row)?,
    })
}

/// An attempt from `attempt, agent_id, claimed_at, log_base, results_base, end_reason`.
pub(crate) fn attempt_row(row: &Row) -> RowResult<JobAttempt> {
    Ok(JobAttempt {
        attempt: small(row, "attempt")?,
        agent_id: row.try_get("agent_id")?,
        claimed_at: timestamp(row, "claimed_at")?,
        log_base: unsigned(row, "log_base")?,
        results_base: unsigned(row, "results_base")?,
        end_reason: row.try_get("end_reason")?,
    })
}

/// How far a job's results are parsed, from `attempt, parsed_offset, problem` of a left join (no parse row yet:
/// nothing parsed, in the first attempt).
pub(crate) fn progress_row(row: &Row) -> RowResult<ResultsProgress> {
    let attempt: Option<i64> = row.try_get("attempt")?;
    Ok(ResultsProgress {
        attempt: attempt
            .map(|value| u32::try_from(value).map_err(|error| decode_error("attempt", error)))
            .transpose()?
            .unwrap_or(1),
        parsed_offset: optional_unsigned(row, "parsed_offset")?.unwrap_or_default(),
        problem: row.try_get("problem")?,
    })
}

/// An artifact from `name, size, blob`.
pub(crate) fn artifact_row(row: &Row) -> RowResult<Artifact> {
    Ok(Artifact {
        name: row.try_get("name")?,
        size: unsigned(row, "size")?,
        content: row.try_get("blob")?,
    })
}

/// A recipe from `name, script, default_options, queue`.
pub(crate) fn recipe_row(row: &Row) -> RowResult<Recipe> {
    Ok(Recipe {
        name: row.try_get("name")?,
        script: row.try_get("script")?,
        default_options: json(row, "default_options")?,
        queue: row.try_get("queue")?,
    })
}

/// A token from `id, role, queues, created_at`.
pub(crate) fn token_row(row: &Row) -> RowResult<Token> {
    Ok(Token {
        id: row.try_get("id")?,
        role: parsed(row, "role")?,
        queues: json(row, "queues")?,
        created_at: timestamp(row, "created_at")?,
    })
}
