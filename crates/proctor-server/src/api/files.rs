//! A job's files: the attachments its submitter uploads for the agent, and the artifacts the agent uploads at the
//! end. Both are tar.gz archives, checked entry by entry before they are stored (see [`proctor_archive`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use proctor_store::{Artifact, Role};

use super::AppState;
use crate::auth::{Caller, JobToken};
use crate::error::ApiError;
use proctor_api::ErrorBody;
use proctor_archive::{check, Layout};

/// The name the packed artifacts are stored under among the job's artifacts.
const ARTIFACTS_ARCHIVE: &str = "artifacts.tar.gz";

/// Uploads a held job's attachments (a tar.gz of `<phase>/<path>` entries) and makes the job claimable. Submitter
/// or admin only; every entry must be a regular file or directory at a relative path without `..`.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/attachments",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses(
        (status = 204, description = "Stored; the job is now claimable"),
        (status = 403, description = "Neither the submitter nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job does not wait for attachments", body = ErrorBody),
        (status = 413, description = "The archive is too large, or expands past the server's caps", body = ErrorBody),
        (status = 422, description = "Not a tar.gz, or an entry that may not be unpacked", body = ErrorBody),
    ),
    tag = "files"
)]
pub(crate) async fn upload_attachments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::User])?;
    let job_id = id.clone();
    let job = state.store_call(move |store| store.job(&job_id)).await?;
    caller.require_submitter_or_admin(&job)?;
    let archive = body.clone();
    let limits = state.bundle_limits.attachments;
    tokio::task::spawn_blocking(move || check(&archive, Layout::UnderPhases, limits)).await??;
    state
        .store_call(move |store| store.store_attachments(&id, &body, Timestamp::now()))
        .await?;
    state.wakers.wake(&job.queue);
    state.wakers.job_changed(&job.id);
    Ok(StatusCode::NO_CONTENT)
}

/// The job's attachments as uploaded (tar.gz), for the agent running it (or the job's token).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/attachments",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The tar.gz", body = Vec<u8>, content_type = "application/gzip"),
        (status = 404, description = "No such job, or it has no attachments", body = ErrorBody),
    ),
    tag = "files"
)]
pub(crate) async fn download_attachments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller
        .require_on_job(&state, &id, &[Role::Agent], JobToken::Allowed)
        .await?;
    let job_id = id.clone();
    let attachments = state
        .store_call(move |store| store.attachments(&job_id))
        .await?;
    let bytes = attachments.ok_or(ApiError::NoAttachments(id))?;
    Ok(gzip_answer(bytes))
}

/// Uploads the job's artifacts (tar.gz), replacing earlier ones; from the agent running it or the job's token.
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/artifacts",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses(
        (status = 204, description = "Stored"),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 413, description = "The archive is too large, or expands past the server's caps", body = ErrorBody),
        (status = 422, description = "Not a tar.gz, or an entry that may not be unpacked", body = ErrorBody),
    ),
    tag = "files"
)]
pub(crate) async fn upload_artifacts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require_job_writer(&id)?;
    let archive = body.clone();
    let limits = state.bundle_limits.artifacts;
    tokio::task::spawn_blocking(move || check(&archive, Layout::Any, limits)).await??;
    let artifact = Artifact {
        name: ARTIFACTS_ARCHIVE.to_owned(),
        size: body.len() as u64,
        content: body.to_vec(),
    };
    state
        .store_call(move |store| store.put_artifact(&id, &artifact))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The job's artifacts as the agent packed them (tar.gz).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/artifacts",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The tar.gz", body = Vec<u8>, content_type = "application/gzip"),
        (status = 404, description = "No such job (not_found), or none were uploaded (no_artifacts)",
            body = ErrorBody),
    ),
    tag = "files"
)]
pub(crate) async fn download_artifacts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller
        .require_on_job(&state, &id, &[Role::User, Role::Agent], JobToken::Allowed)
        .await?;
    let job_id = id.clone();
    let artifacts = state
        .store_call(move |store| store.artifacts(&job_id))
        .await?;
    let packed = artifacts
        .into_iter()
        .find(|artifact| artifact.name == ARTIFACTS_ARCHIVE)
        .ok_or(ApiError::NoArtifacts(id))?;
    Ok(gzip_answer(packed.content))
}

/// An answer carrying a tar.gz.
fn gzip_answer(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response()
}
