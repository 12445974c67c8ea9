//! The store's rules that do not depend on the database, which every backend applies the same way: what the reaper
//! makes of a lapsed job, what part of an upload a stream keeps, when a job may be finished, when a parse may be
//! recorded, how a list is cut into pages.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::copy::Value;
use crate::{
    HeartbeatReply, Job, JobCursor, JobFilter, JobPage, JobState, JobSummary, Result,
    ResultsProgress, StoreError, StreamKind,
};

/// What becomes of a job whose agent's lease lapsed, and why (the reason the job and its attempt record).
pub fn reaped_state(
    cancel_requested: bool,
    attempts: u32,
    max_attempts: u32,
    agent: &str,
) -> (JobState, String) {
    if cancel_requested {
        (
            JobState::Cancelled,
            format!("cancelled; agent {agent} was lost before it confirmed"),
        )
    } else if attempts < max_attempts {
        (
            JobState::Queued,
            format!("agent {agent} lost during attempt {attempts} of {max_attempts}; requeued"),
        )
    } else {
        (
            JobState::Error,
            format!(
                "agent lost: {agent} stopped renewing its lease (attempt {attempts} of {max_attempts})"
            ),
        )
    }
}

/// `now + lease` in microseconds since the epoch, saturating (a lease too long to represent never lapses).
pub fn lease_expiry(now: Timestamp, lease: Duration) -> i64 {
    now.as_microsecond()
        .saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

/// What an append to a stream stores, worked out from where the stream ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Append<'a> {
    /// Every byte is stored already (a resend, or an empty chunk): the acknowledged end, in the attempt's offsets.
    Stored(u64),
    /// Store `bytes` at `at` (the stream's end, in the job's offsets); the acknowledged end is then `acknowledged`.
    Insert {
        /// Where the new bytes go in the job's stream.
        at: u64,
        /// The chunk's tail that is not stored yet.
        bytes: &'a [u8],
        /// The end to acknowledge once they are, in the attempt's offsets.
        acknowledged: u64,
    },
}

/// The `job_attempts` column that records where the job's current attempt starts in `stream`, or `None` for a
/// stream whose offsets count from the job's start in every attempt (base 0): `work` and `work-done`, the
/// conversation of a job serving a `proctor run --lab` as its worker, which has one attempt.
pub fn attempt_base_column(stream: StreamKind) -> Option<&'static str> {
    match stream {
        StreamKind::Log => Some("log_base"),
        StreamKind::Results => Some("results_base"),
        StreamKind::Work | StreamKind::WorkDone => None,
    }
}

/// Works out an append of `bytes` at `offset` (counted from the attempt's start, `base` in the job's stream) to a
/// stream that ends at `end` (in the job's stream): bytes already stored are skipped, and an offset past the end is
/// a [`StoreError::StreamGap`].
pub fn plan_append<'a>(
    job_id: &str,
    stream: StreamKind,
    base: u64,
    end: u64,
    offset: u64,
    bytes: &'a [u8],
) -> Result<Append<'a>> {
    let expected = end.saturating_sub(base);
    if offset > expected {
        return Err(StoreError::StreamGap {
            job: job_id.to_owned(),
            stream,
            expected,
            got: offset,
        });
    }
    // Bytes before `end` are already stored (a resend after a lost acknowledgement): keep only the tail.
    let already_stored = usize::try_from(end.saturating_sub(base + offset)).unwrap_or(usize::MAX);
    match bytes.get(already_stored..).filter(|tail| !tail.is_empty()) {
        None => Ok(Append::Stored(expected)),
        Some(tail) => Ok(Append::Insert {
            at: end,
            bytes: tail,
            acknowledged: expected + tail.len() as u64,
        }),
    }
}

/// Checks that `agent_id` (or the server, with `None`) may end `job`, and returns the agent that holds it.
pub fn finishing_holder(job: &Job, agent_id: Option<&str>) -> Result<String> {
    if job.state != JobState::Running {
        return Err(StoreError::JobNotRunning {
            job: job.id.clone(),
            state: job.state,
        });
    }
    let holder = job.agent_id.clone().unwrap_or_default();
    if let Some(agent) = agent_id.filter(|agent| *agent != holder) {
        return Err(StoreError::NotJobHolder {
            job: job.id.clone(),
            holder,
            agent: agent.to_owned(),
        });
    }
    Ok(holder)
}

/// Whether a parse from `from` to `to` may be recorded: the parse is still at `from` (`current`), and `to` does not
/// run past the start of a later attempt (`later_start`, claimed while the parse read the stream).
pub fn parse_applies(
    current: &ResultsProgress,
    from: &ResultsProgress,
    to: &ResultsProgress,
    later_start: Option<u64>,
) -> bool {
    current == from && later_start.is_none_or(|start| to.parsed_offset <= start)
}

/// A page of a job list from the rows read for it: one row more than `limit` was asked for, and whether it came
/// says whether there is a next page.
pub fn job_page(mut rows: Vec<(JobSummary, JobCursor)>, limit: u32) -> JobPage {
    let limit = limit as usize;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|(_, cursor)| *cursor)
    });
    JobPage {
        jobs: rows.into_iter().map(|(job, _)| job).collect(),
        next: next.flatten(),
    }
}

/// A heartbeat's reply from the renewed jobs and whether a cancel is pending for each, both lists sorted.
pub fn heartbeat_reply(renewed: Vec<(String, bool)>) -> HeartbeatReply {
    let mut reply = HeartbeatReply::default();
    for (job_id, cancel_requested) in renewed {
        if cancel_requested {
            reply.cancel_requested.push(job_id.clone());
        }
        reply.renewed.push(job_id);
    }
    reply.renewed.sort();
    reply.cancel_requested.sort();
    reply
}

/// The SQL of one page of a job list (`SELECT columns FROM jobs WHERE … ORDER BY … LIMIT`, one row more than the
/// page, see [`job_page`]) and its parameters in order. `marker` is the backend's parameter prefix: `?` for `?1`,
/// `$` for `$1`.
pub fn job_list_query(filter: &JobFilter, columns: &str, marker: char) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut condition = |sql: &str, value: Value| {
        values.push(value);
        conditions.push(format!("{sql}{marker}{}", values.len()));
    };
    if let Some(queue) = &filter.queue {
        condition("queue = ", Value::Text(queue.clone()));
    }
    if let Some(state) = filter.state {
        condition("state = ", Value::Text(state.as_str().to_owned()));
    }
    if let Some(submitter) = &filter.submitter {
        condition("submitter = ", Value::Text(submitter.clone()));
    }
    if let Some(after) = filter.after {
        values.push(Value::Integer(after.created_at.as_microsecond()));
        values.push(Value::Integer(after.seq));
        let (created, seq) = (values.len() - 1, values.len());
        conditions.push(format!(
            "(created_at, seq) < ({marker}{created}, {marker}{seq})"
        ));
    }
    let filters = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push(Value::Integer(i64::from(filter.limit) + 1));
    let sql = format!(
        "SELECT {columns} FROM jobs {filters} ORDER BY created_at DESC, seq DESC LIMIT {marker}{}",
        values.len()
    );
    (sql, values)
}

/// Converts a count or offset to the database's 64-bit signed integers.
pub fn to_i64(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// Encodes a value for a JSON text column.
pub fn to_json(what: &'static str, value: &(impl Serialize + ?Sized)) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_keeps_only_the_bytes_not_stored_yet() {
        let plan =
            |base, end, offset, bytes| plan_append("j", StreamKind::Log, base, end, offset, bytes);
        assert_eq!(
            plan(0, 0, 0, b"abc").ok(),
            Some(Append::Insert {
                at: 0,
                bytes: b"abc",
                acknowledged: 3
            })
        );
        assert_eq!(plan(0, 3, 0, b"abc").ok(), Some(Append::Stored(3)));
        assert_eq!(
            plan(0, 3, 1, b"bcde").ok(),
            Some(Append::Insert {
                at: 3,
                bytes: b"de",
                acknowledged: 5
            })
        );
        // A later attempt's offsets start at its base.
        assert_eq!(
            plan(6, 8, 2, b"xy").ok(),
            Some(Append::Insert {
                at: 8,
                bytes: b"xy",
                acknowledged: 4
            })
        );
        assert!(matches!(
            plan(6, 8, 3, b"x"),
            Err(StoreError::StreamGap {
                expected: 2,
                got: 3,
                ..
            })
        ));
    }

    #[test]
    fn only_log_and_results_count_from_the_attempt() {
        assert_eq!(attempt_base_column(StreamKind::Log), Some("log_base"));
        assert_eq!(
            attempt_base_column(StreamKind::Results),
            Some("results_base")
        );
        assert_eq!(attempt_base_column(StreamKind::Work), None);
        assert_eq!(attempt_base_column(StreamKind::WorkDone), None);
    }

    #[test]
    fn a_lease_too_long_to_represent_never_lapses() {
        let now = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(lease_expiry(now, Duration::MAX), i64::MAX);
        assert_eq!(
            lease_expiry(now, Duration::from_secs(1)),
            now.as_microsecond() + 1_000_000
        );
    }
}
