//! Conversions between the records and SQLite rows.

use std::str::FromStr;

use jiff::Timestamp;
use rusqlite::types::Type;
use rusqlite::Row;
use serde::de::DeserializeOwned;

use proctor_store::{
    Agent, Artifact, Job, JobAttempt, JobCursor, JobSummary, PhaseRecord, QueueInfo, Recipe,
    TestHistoryRun, TestRun, Token,
};

/// The job columns every job query selects, in the order [`job_row`] reads them by name.
pub(super) const JOB_COLUMNS: &str = "id, queue, name, priority, definition, state, reason, attempts, max_attempts, \
     submitter, held, cancel_requested, created_at, started_at, ended_at, lease_expires_at, agent_id";

/// The columns [`summary_row`] reads.
pub(super) const SUMMARY_COLUMNS: &str =
    "seq, id, queue, name, priority, state, reason, attempts, max_attempts, \
     submitter, cancel_requested, created_at, started_at, ended_at, agent_id";

/// The columns [`test_run_row`] reads.
pub(super) const TEST_RUN_COLUMNS: &str =
    "attempt, test_id, route_code, retry, status, reason, started_at, ended_at, duration_us, agent_id, tags";

/// A test run from a row of [`TEST_RUN_COLUMNS`].
pub(super) fn test_run_row(row: &Row) -> rusqlite::Result<TestRun> {
    let status: String = row.get("status")?;
    let tags: String = row.get("tags")?;
    Ok(TestRun {
        attempt: row.get("attempt")?,
        test_id: row.get("test_id")?,
        route_code: row.get("route_code")?,
        retry: row.get("retry")?,
        status: status
            .parse()
            .map_err(|error| conversion_error(row, "status", error))?,
        reason: row.get("reason")?,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        duration_us: row.get("duration_us")?,
        agent_id: row.get("agent_id")?,
        tags: serde_json::from_str(&tags).map_err(|error| conversion_error(row, "tags", error))?,
    })
}

/// A run of a test's history: [`TEST_RUN_COLUMNS`] with `job_id`, `job_name` and `job_created_at`.
pub(super) fn test_history_row(row: &Row) -> rusqlite::Result<TestHistoryRun> {
    Ok(TestHistoryRun {
        job_id: row.get("job_id")?,
        job_name: row.get("job_name")?,
        job_created_at: timestamp(row, "job_created_at")?,
        run: test_run_row(row)?,
    })
}

/// An attempt from a row of `attempt, agent_id, claimed_at, log_base, results_base, end_reason`.
pub(super) fn attempt_row(row: &Row) -> rusqlite::Result<JobAttempt> {
    Ok(JobAttempt {
        attempt: row.get("attempt")?,
        agent_id: row.get("agent_id")?,
        claimed_at: timestamp(row, "claimed_at")?,
        log_base: row.get("log_base")?,
        results_base: row.get("results_base")?,
        end_reason: row.get("end_reason")?,
    })
}

/// A timestamp as stored: microseconds since the Unix epoch.
pub(super) fn micros(timestamp: Timestamp) -> i64 {
    timestamp.as_microsecond()
}

/// Reports a stored value that does not decode, naming its column (only a damaged database holds one).
fn conversion_error(
    row: &Row,
    column: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    let index = row.as_ref().column_index(column).unwrap_or_default();
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, source.into())
}

fn timestamp(row: &Row, column: &str) -> rusqlite::Result<Timestamp> {
    let value: i64 = row.get(column)?;
    Timestamp::from_microsecond(value).map_err(|error| conversion_error(row, column, error))
}

fn optional_timestamp(row: &Row, column: &str) -> rusqlite::Result<Option<Timestamp>> {
    match row.get::<_, Option<i64>>(column)? {
        None => Ok(None),
        Some(value) => Timestamp::from_microsecond(value)
            .map(Some)
            .map_err(|error| conversion_error(row, column, error)),
    }
}

/// A text column parsed into `T`, such as a state by its name.
pub(super) fn parsed<T>(row: &Row, column: &str) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(column)?;
    text.parse()
        .map_err(|error| conversion_error(row, column, error))
}

fn json<T: DeserializeOwned>(row: &Row, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|error| conversion_error(row, column, error))
}

/// A job from a row of [`JOB_COLUMNS`].
pub(super) fn job_row(row: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get("id")?,
        queue: row.get("queue")?,
        name: row.get("name")?,
        priority: row.get("priority")?,
        definition: json(row, "definition")?,
        state: parsed(row, "state")?,
        reason: row.get("reason")?,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        submitter: row.get("submitter")?,
        held: row.get("held")?,
        cancel_requested: row.get("cancel_requested")?,
        created_at: timestamp(row, "created_at")?,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        lease_expires_at: optional_timestamp(row, "lease_expires_at")?,
        agent_id: row.get("agent_id")?,
    })
}

/// A job as lists show it, from [`SUMMARY_COLUMNS`], with the cursor that continues a list after it.
pub(super) fn summary_row(row: &Row) -> rusqlite::Result<(JobSummary, JobCursor)> {
    let created_at = timestamp(row, "created_at")?;
    let summary = JobSummary {
        id: row.get("id")?,
        queue: row.get("queue")?,
        name: row.get("name")?,
        priority: row.get("priority")?,
        state: parsed(row, "state")?,
        reason: row.get("reason")?,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        submitter: row.get("submitter")?,
        cancel_requested: row.get("cancel_requested")?,
        created_at,
        started_at: optional_timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        agent_id: row.get("agent_id")?,
    };
    let cursor = JobCursor {
        created_at,
        seq: row.get("seq")?,
    };
    Ok((summary, cursor))
}

/// A claimed job with what its agent gets besides, from `JOB_COLUMNS, recipe_script, has_attachments`.
pub(super) fn claimed_row(row: &Row) -> rusqlite::Result<(Job, Option<String>, bool)> {
    Ok((
        job_row(row)?,
        row.get("recipe_script")?,
        row.get("has_attachments")?,
    ))
}

/// An agent (without its queues) from `id, state, images, last_heartbeat`.
pub(super) fn agent_row(row: &Row) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: row.get("id")?,
        queues: Vec::new(),
        state: parsed(row, "state")?,
        last_heartbeat: timestamp(row, "last_heartbeat")?,
        images: json(row, "images")?,
    })
}

/// A queue from `name, served, queued, running, agents online`, by position.
pub(super) fn queue_row(row: &Row) -> rusqlite::Result<QueueInfo> {
    Ok(QueueInfo {
        name: row.get(0)?,
        ever_served: row.get(1)?,
        queued: row.get(2)?,
        running: row.get(3)?,
        agents_online: row.get(4)?,
    })
}

/// A phase from `name, started_at, ended_at, exit_status`.
pub(super) fn phase_row(row: &Row) -> rusqlite::Result<PhaseRecord> {
    Ok(PhaseRecord {
        name: row.get("name")?,
        started_at: timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        exit_status: row.get("exit_status")?,
    })
}

/// An artifact from `name, size, blob`.
pub(super) fn artifact_row(row: &Row) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        name: row.get("name")?,
        size: row.get("size")?,
        content: row.get("blob")?,
    })
}

/// A recipe from `name, script, default_options, queue`.
pub(super) fn recipe_row(row: &Row) -> rusqlite::Result<Recipe> {
    Ok(Recipe {
        name: row.get("name")?,
        script: row.get("script")?,
        default_options: json(row, "default_options")?,
        queue: row.get("queue")?,
    })
}

/// A token from `id, role, queues, created_at`.
pub(super) fn token_row(row: &Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: row.get("id")?,
        role: parsed(row, "role")?,
        queues: json(row, "queues")?,
        created_at: timestamp(row, "created_at")?,
    })
}
