//! What agents call: register, claim (long-poll), heartbeat, phase starts and ends.

use std::pin::{pin, Pin};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::select_all;
use jiff::Timestamp;
use proctor_job::Phase;
use proctor_store::{AgentRegistration, HeartbeatReply, Role};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::convert::IntoView;
use super::{capped_wait, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use proctor_api::{
    AgentView, ClaimRequest, ClaimedJob, ErrorBody, HeartbeatRequest, HeartbeatView, PhaseEnd,
    RegisterAgent,
};

/// Registers an agent and the queues it serves (again after a restart; it keeps its running jobs).
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}",
    params(("id" = String, Path, description = "The agent id")),
    request_body = RegisterAgent,
    responses(
        (status = 200, description = "The agent as registered", body = AgentView),
        (status = 403, description = "Not an agent token, or limited to other queues", body = ErrorBody),
    ),
    tag = "agents"
)]
pub(crate) async fn register_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<RegisterAgent>,
) -> Result<Json<AgentView>, ApiError> {
    caller.require(&[Role::Agent])?;
    caller.require_queues(&request.queues)?;
    let registration = AgentRegistration {
        id,
        queues: request.queues,
        images: request.images,
    };
    let agent = state
        .store_call(move |store| store.register_agent(&registration, Timestamp::now()))
        .await?;
    Ok(Json(agent.into_view()))
}

/// Claims the next job on the agent's queues, by priority then age. When none waits, the request is held until one
/// is submitted (answered at once) or the hold ends (204).
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/claim",
    params(("id" = String, Path, description = "The agent id")),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "The claimed job, now running under the agent's lease", body = ClaimedJob),
        (status = 204, description = "Nothing to run within the hold"),
        (status = 400, description = "No queues named", body = ErrorBody),
        (status = 404, description = "The agent is not registered", body = ErrorBody),
    ),
    tag = "agents"
)]
pub(crate) async fn claim_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    Json(request): Json<ClaimRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Agent])?;
    caller.require_queues(&request.queues)?;
    if request.queues.is_empty() {
        return Err(ApiError::BadRequest(
            "a claim must name at least one queue".into(),
        ));
    }
    // A claim that does not say how long it may wait is held as long as the server holds claims.
    let hold = request.wait_seconds.map_or(state.claim_hold, |asked| {
        capped_wait(asked, state.claim_hold)
    });
    let deadline = Instant::now() + hold;
    let wakers = state.wakers.for_queues(&request.queues);
    loop {
        // Listening before trying the store means a submit between the try and the wait is not missed.
        let mut wake_ups: Vec<Pin<Box<Notified<'_>>>> = wakers
            .iter()
            .map(|notify| Box::pin(notify.notified()))
            .collect();
        for wake_up in &mut wake_ups {
            wake_up.as_mut().enable();
        }
        if let Some(claimed) = try_claim(&state, &agent_id, &request.queues).await? {
            return Ok(Json(claimed).into_response());
        }
        if tokio::time::timeout_at(deadline, select_all(wake_ups))
            .await
            .is_err()
        {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
}

/// Claims the best job on `queues` for the agent, with what the agent gets along with it: a token scoped to the
/// job, the recipe script it was started with, and whether it has attachments to fetch. One store call (one
/// transaction), so a claim costs one trip to the blocking pool on the dispatch path.
async fn try_claim(
    state: &AppState,
    agent_id: &str,
    queues: &[String],
) -> Result<Option<ClaimedJob>, ApiError> {
    let (agent_id, queues, lease) = (agent_id.to_owned(), queues.to_vec(), state.lease);
    let now = Timestamp::now();
    let claim = state
        .store_call(move |store| store.claim_job(&agent_id, &queues, now, lease))
        .await?;
    let Some(claim) = claim else {
        return Ok(None);
    };
    let job = claim.job;
    state.wakers.job_changed(&job.id);
    if job.attempts == 1 {
        let waited = now.duration_since(job.created_at);
        state
            .metrics
            .observe_claim_latency(waited.as_secs_f64().max(0.0));
    }
    Ok(Some(ClaimedJob {
        job: job.into_view(),
        job_token: Some(claim.job_token),
        recipe_script: claim.recipe_script,
        has_attachments: claim.has_attachments,
    }))
}

/// Renews the leases of the agent's running jobs at once and says which of them a user asked to cancel. With
/// `wait_seconds` (at most the server's claim hold) and no cancel pending, the answer waits until a cancel of one
/// of the agent's jobs is requested or the wait ends, so the agent learns of a cancel at once.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/heartbeat",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = Option<HeartbeatRequest>, description = "Optional: how long to wait for a cancel"),
    responses(
        (status = 200, description = "Renewed leases and cancel requests", body = HeartbeatView),
        (status = 404, description = "The agent is not registered", body = ErrorBody),
    ),
    tag = "agents"
)]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    request: Option<Json<HeartbeatRequest>>,
) -> Result<Json<HeartbeatView>, ApiError> {
    caller.require(&[Role::Agent])?;
    let wait = request
        .and_then(|Json(request)| request.wait_seconds)
        .map_or(Duration::ZERO, |asked| capped_wait(asked, state.claim_hold));
    let cancels = state.wakers.for_agent(&agent_id);
    // Listening before renewing means a cancel requested between the renewal and the wait still wakes it.
    let mut cancelled = pin!(cancels.notified());
    cancelled.as_mut().enable();
    let reply = renew_leases(&state, &agent_id).await?;
    if !reply.cancel_requested.is_empty() || wait.is_zero() {
        return Ok(Json(reply.into_view()));
    }
    if tokio::time::timeout(wait, cancelled).await.is_err() {
        return Ok(Json(reply.into_view()));
    }
    // Woken by a cancel: renewing again reads which job it was for.
    Ok(Json(renew_leases(&state, &agent_id).await?.into_view()))
}

/// Records the agent's heartbeat and renews its leases.
async fn renew_leases(state: &AppState, agent_id: &str) -> Result<HeartbeatReply, ApiError> {
    let (agent_id, lease) = (agent_id.to_owned(), state.lease);
    state
        .store_call(move |store| store.heartbeat(&agent_id, Timestamp::now(), lease))
        .await
}

/// Records that a phase of the job started.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/phases/{phase}/start",
    params(
        ("id" = String, Path, description = "The job id"),
        ("phase" = String, Path, description = "setup, provision, firmware_update, test, allocate, reserve or cleanup"),
    ),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Not a phase", body = ErrorBody),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "phases"
)]
pub(crate) async fn start_phase(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, phase)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_job_writer(&id)?;
    let phase = known_phase(&phase)?;
    let job_id = id.clone();
    state
        .store_call(move |store| store.start_phase(&job_id, phase.as_str(), Timestamp::now()))
        .await?;
    state.wakers.phase_changed(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Records a phase's end and exit status.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/phases/{phase}/end",
    params(
        ("id" = String, Path, description = "The job id"),
        ("phase" = String, Path, description = "The phase that ended"),
    ),
    request_body = PhaseEnd,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Not a phase", body = ErrorBody),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job, or the phase never started", body = ErrorBody),
    ),
    tag = "phases"
)]
pub(crate) async fn end_phase(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, phase)): Path<(String, String)>,
    Json(end): Json<PhaseEnd>,
) -> Result<StatusCode, ApiError> {
    caller.require_job_writer(&id)?;
    let phase = known_phase(&phase)?;
    let job_id = id.clone();
    state
        .store_call(move |store| {
            store.end_phase(&job_id, phase.as_str(), end.exit_status, Timestamp::now())
        })
        .await?;
    state.wakers.phase_changed(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// The phase called `name`, or a 400 naming the phases there are.
pub(crate) fn known_phase(name: &str) -> Result<Phase, ApiError> {
    name.parse()
        .map_err(|error: proctor_job::UnknownPhase| ApiError::BadRequest(error.to_string()))
}
