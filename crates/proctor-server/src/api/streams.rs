//! A job's byte streams: its log and its subunit results, uploaded idempotently by offset and read from an offset.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proctor_store::{Role, StreamKind};

use super::agents::known_phase;
use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use proctor_api::{ErrorBody, ReadQuery, UploadAck, UploadQuery};

/// The response header giving the offset after the bytes returned, where the next read starts.
const NEXT_OFFSET_HEADER: &str = "proctor-next-offset";

/// Appends a chunk of output at `offset`; resending stored bytes is harmless. Answers the acknowledged end.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/log",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
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

/// Appends a chunk of the subunit v2 results stream at `offset`, like the log.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/results",
    params(("id" = String, Path, description = "The job id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored up to end_offset", body = UploadAck),
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

/// Stores a chunk of one stream and answers the acknowledged end offset.
async fn upload(
    state: AppState,
    caller: Caller,
    job_id: String,
    stream: StreamKind,
    query: UploadQuery,
    body: Bytes,
) -> Result<Json<UploadAck>, ApiError> {
    caller.require(&[Role::Agent])?;
    let phase = query.phase.as_deref().map(known_phase).transpose()?;
    let end_offset = state
        .store_call(move |store| {
            store.append_stream(
                &job_id,
                stream,
                query.offset,
                phase.map(|phase| phase.as_str()),
                &body,
            )
        })
        .await?;
    Ok(Json(UploadAck { end_offset }))
}

/// The job's output from byte `from` (optionally one phase's), as stored so far.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log",
    params(("id" = String, Path, description = "The job id"), ReadQuery),
    responses(
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next",
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
        (status = 200, description = "The bytes; header proctor-next-offset says where to read next",
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

/// Reads one stream from `query.from`, trimming the first chunk where it starts before it.
async fn read(
    state: AppState,
    caller: Caller,
    job_id: String,
    stream: StreamKind,
    query: ReadQuery,
) -> Result<Response, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let from = query.from;
    let phase = query.phase.as_deref().map(known_phase).transpose()?;
    let chunks = state
        .store_call(move |store| {
            store.read_stream(&job_id, stream, from, phase.map(|phase| phase.as_str()))
        })
        .await?;
    let mut bytes = Vec::new();
    let mut next_offset = from;
    for chunk in chunks {
        let skip = usize::try_from(from.saturating_sub(chunk.offset)).unwrap_or(usize::MAX);
        if let Some(tail) = chunk.bytes.get(skip..) {
            bytes.extend_from_slice(tail);
        }
        next_offset = next_offset.max(chunk.offset + chunk.bytes.len() as u64);
    }
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (
            header::HeaderName::from_static(NEXT_OFFSET_HEADER),
            next_offset.to_string(),
        ),
    ];
    Ok((headers, bytes).into_response())
}
