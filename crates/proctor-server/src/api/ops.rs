//! What operators look at: queues, agents and the Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proctor_store::Role;

use super::convert::IntoView;
use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use proctor_api::{AgentView, QueueView};

/// Every queue that jobs or agents named, with what waits and runs on it.
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    responses((status = 200, description = "The queues, by name", body = Vec<QueueView>)),
    tag = "operations"
)]
pub(crate) async fn list_queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let queues = state.store_call(|store| store.queues()).await?;
    Ok(Json(queues.into_iter().map(IntoView::into_view).collect()))
}

/// Every agent with its state and queues.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    responses((status = 200, description = "The agents, by id", body = Vec<AgentView>)),
    tag = "operations"
)]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let agents = state.store_call(|store| store.agents()).await?;
    Ok(Json(agents.into_iter().map(IntoView::into_view).collect()))
}

/// The Prometheus text exposition (any valid token when authentication is on).
pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let (queues, agents_online) = state
        .store_call(|store| Ok((store.queues()?, store.online_agents()?)))
        .await?;
    let text = state.metrics.render(&queues, agents_online)?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}
