//! A job's byte streams, uploaded idempotently by offset and read from an offset: its log and its subunit results,
//! and the conversation of a job serving a `proctor run --lab` as its worker: `work` (what the run asks, written by
//! the job's submitter) and `work-done` (what the worker reports, written by the job's holder). Who may write which
//! is [`Caller::require_stream_writer`]'s rule.

use std::pin::pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proctor_job::Phase;
use proctor_store::{JobState, Role, StreamChunk, StreamKind};
use tokio::time::Instant;

use super::agents::known_phase;
use super::{capped_wait, AppState};
use crate::auth::{Caller, JobToken};
use crate::error::ApiError;
use crate::results;
use proctor_api::{
    ErrorBody, ReadQuery, UploadAck, UploadQuery, JOB_STATE_HEADER, NEXT_OFFSET_HEADER,
};

/// Appends a chunk of output at `offset`; resending stored bytes is harmless. Answers the acknowledged end.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/log",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The chunk starts past the end: resend from expected_offset", body = ErrorBody),
        (status = 413, description = "The chunk is too large"),
    ),
    tag = "streams"
)]
pub(crate) async fn upload_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    upload(state, caller, id, StreamKind::Log, query, body).await
}

/// Appends a chunk of the subunit v2 results stream at `offset`, like the log, and parses the complete packets
/// that arrived into per-test results (`GET /jobs/{id}/tests`). A corrupt stream is still stored; its parsing
/// stops and the job shows why (`results_problem`).
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/results",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The chunk starts past the end: resend from expected_offset", body = ErrorBody),
        (status = 413, description = "The chunk is too large"),
    ),
    tag = "streams"
)]
pub(crate) async fn upload_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    upload(state, caller, id, StreamKind::Results, query, body).await
}

/// Appends JSON lines of `WorkRequest`s to the job's `work` stream at `offset`, like the log: what a local
/// `proctor run --lab` asks of the job serving it as a worker. Only the job's submitter or an admin writes it, while
/// the job is queued or running.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/work",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
        (status = 403, description = "Neither the job's submitter nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has ended, or the chunk starts past the end: resend from \
            expected_offset", body = ErrorBody),
        (status = 413, description = "The chunk is too large"),
    ),
    tag = "streams"
)]
pub(crate) async fn upload_work(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    upload(state, caller, id, StreamKind::Work, query, body).await
}

/// Appends JSON lines of `WorkReport`s to the job's `work-done` stream at `offset`, like the log: what the job's
/// worker reports to the run it serves. Written by the job's holder, as its log is.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/work-done",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The chunk starts past the end: resend from expected_offset", body = ErrorBody),
        (status = 413, description = "The chunk is too large"),
    ),
    tag = "streams"
)]
pub(crate) async fn upload_work_done(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    upload(state, caller, id, StreamKind::WorkDone, query, body).await
}

/// Stores a chunk of one stream and answers the acknowledged end offset.
async fn upload(
    state: AppState,
    caller: Caller,
    job_id: String,
    stream: StreamKind,
    query: UploadQuery,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    caller
        .require_stream_writer(&state, &job_id, stream)
        .await?;
    let phase = query.phase.as_deref().map(known_phase).transpose()?;
    let stored_job_id = job_id.clone();
    let end_offset = state
        .store_call(move |store| {
            let end_offset = store.append_stream(
                &stored_job_id,
                stream,
                query.offset,
                phase.map(|phase| phase.as_str()),
                &body,
            )?;
            // In the same trip to the blocking pool. The chunk is stored (its own transaction) whatever the parse
            // does, so the upload is acknowledged even when parsing fails; the next upload retries it.
            if stream == StreamKind::Results {
                results::parse_and_report(store, &stored_job_id, false);
            }
            Ok(end_offset)
        })
        .await?;
    state.wakers.wake_job(&job_id);
    Ok(Json(UploadAck { end_offset }))
}

/// The job's output from byte `from` (optionally one phase's), as stored so far.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log",
    params(("id" = String, Path, description = "The job id"), ReadQuery),
    responses(
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next, \
            proctor-job-state the job's state",
            body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "streams"
)]
pub(crate) async fn read_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read(state, caller, id, StreamKind::Log, query).await
}

/// The job's subunit v2 results stream from byte `from`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/results",
    params(("id" = String, Path, description = "The job id"), ReadQuery),
    responses(
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next, \
            proctor-job-state the job's state",
            body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "streams"
)]
pub(crate) async fn read_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read(state, caller, id, StreamKind::Results, query).await
}

/// The job's `work` stream (JSON lines of `WorkRequest`s) from byte `from`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/work",
    params(("id" = String, Path, description = "The job id"), ReadQuery),
    responses(
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next, \
            proctor-job-state the job's state",
            body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "streams"
)]
pub(crate) async fn read_work(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read(state, caller, id, StreamKind::Work, query).await
}

/// The job's `work-done` stream (JSON lines of `WorkReport`s) from byte `from`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/work-done",
    params(("id" = String, Path, description = "The job id"), ReadQuery),
    responses(
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next, \
            proctor-job-state the job's state",
            body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "streams"
)]
pub(crate) async fn read_work_done(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read(state, caller, id, StreamKind::WorkDone, query).await
}

/// Reads one stream from `query.from`. With `wait_seconds` (at most the server's claim hold), when nothing is
/// stored past `from` and the job has not ended, the answer waits until bytes arrive, the job ends or the wait
/// does.
pub(crate) async fn read(
    state: AppState,
    caller: Caller,
    job_id: String,
    stream: StreamKind,
    query: ReadQuery,
) -> Result<Response, ApiError> {
    caller
        .require_on_job(
            &state,
            &job_id,
            &[Role::User, Role::Agent],
            JobToken::Allowed,
        )
        .await?;
    let phase = query.phase.as_deref().map(known_phase).transpose()?;
    let wait = query
        .wait_seconds
        .map_or(Duration::ZERO, |asked| capped_wait(asked, state.claim_hold));
    let deadline = Instant::now() + wait;
    let (bytes, next_offset, job_state) =
        next_bytes(&state, &job_id, stream, query.from, phase, deadline).await?;
    Ok(read_answer(bytes, next_offset, job_state))
}

/// What one stream of a job holds from `from` (one phase's, with `phase`), waiting until `deadline` while it holds
/// nothing new and the job runs: the bytes, where to read next, and the job's state. The caller has checked that
/// its caller may read the job.
pub(crate) async fn next_bytes(
    state: &AppState,
    job_id: &str,
    stream: StreamKind,
    from: u64,
    phase: Option<Phase>,
    deadline: Instant,
) -> Result<(Vec<u8>, u64, JobState), ApiError> {
    let arrivals = state.wakers.for_job(job_id);
    loop {
        // Listening before reading means bytes stored between the read and the wait still wake it.
        let mut arrived = pin!(arrivals.notified());
        arrived.as_mut().enable();
        let id = job_id.to_owned();
        let (chunks, job_state) = state
            .store_call(move |store| {
                // The state first: an agent ends its job only after its last upload, so when the state read is
                // final, the stream read after it holds every byte. Read the other way round, an upload and the end
                // landing between the two reads would answer "ended" without the stream's tail.
                let job_state = store.job(&id)?.state;
                let chunks =
                    store.read_stream(&id, stream, from, phase.map(|phase| phase.as_str()))?;
                Ok((chunks, job_state))
            })
            .await?;
        let (bytes, next_offset) = bytes_from(chunks, from);
        if !bytes.is_empty() || job_state.is_final() || Instant::now() >= deadline {
            return Ok((bytes, next_offset, job_state));
        }
        // At the deadline the loop reads once more and answers with whatever is there.
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

/// The bytes of `chunks` from `from` on (the first chunk may start before it) and the offset after them.
pub(crate) fn bytes_from(chunks: Vec<StreamChunk>, from: u64) -> (Vec<u8>, u64) {
    let mut bytes = Vec::new();
    let mut next_offset = from;
    for chunk in chunks {
        let skip = usize::try_from(from.saturating_sub(chunk.offset)).unwrap_or(usize::MAX);
        if let Some(tail) = chunk.bytes.get(skip..) {
            bytes.extend_from_slice(tail);
        }
        next_offset = next_offset.max(chunk.offset + chunk.bytes.len() as u64);
    }
    (bytes, next_offset)
}

/// A read's answer: the bytes, with where to read next and the job's state in headers.
fn read_answer(bytes: Vec<u8>, next_offset: u64, job_state: JobState) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (
            header::HeaderName::from_static(NEXT_OFFSET_HEADER),
            next_offset.to_string(),
        ),
        (
            header::HeaderName::from_static(JOB_STATE_HEADER),
            job_state.as_str().to_owned(),
        ),
    ];
    (headers, bytes).into_response()
}
