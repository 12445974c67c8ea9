//! The HTTP API: the shared request state, the router with every endpoint, and the OpenAPI document made from the
//! handlers' annotations.

mod agents;
mod convert;
pub(crate) mod files;
pub(crate) mod jobs;
pub(crate) mod ops;
pub(crate) mod recipes;
pub(crate) mod streams;

pub(crate) use streams::bytes_from;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use proctor_store::{Store, StoreError};
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dispatch::Wakers;
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use crate::server::BundleLimits;

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Where everything lives.
    pub(crate) store: Arc<dyn Store>,
    /// Wake-ups for long-polling claims.
    pub(crate) wakers: Arc<Wakers>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// How long a claim is held when nothing waits.
    pub(crate) claim_hold: Duration,
    /// How long a claim or heartbeat leases a job for.
    pub(crate) lease: Duration,
    /// Whether the API may run open when no token exists (the server listens on loopback).
    pub(crate) allow_open: bool,
    /// Whether the web UI's read-only pages are open to visitors who have not signed in.
    pub(crate) pages_open: bool,
    /// Store calls allowed on the blocking pool at once (see [`STORE_SLOTS`]).
    pub(crate) store_slots: Arc<Semaphore>,
    /// The largest job definition accepted.
    pub(crate) max_definition_bytes: usize,
    /// What bundles may expand to.
    pub(crate) bundle_limits: BundleLimits,
    /// When a write last failed for lack of space.
    pub(crate) storage: Arc<StorageHealth>,
}

/// When the store last failed a write because its filesystem was full. A lease must not lapse because the server
/// could not store the heartbeats of an agent that kept reaching it: the reaper waits until writes have worked for
/// a whole lease, which gives every live agent heartbeats enough to renew before anything is reaped.
#[derive(Debug, Default)]
pub(crate) struct StorageHealth {
    last_full: Mutex<Option<Instant>>,
}

impl StorageHealth {
    /// Notes a write that failed for lack of space.
    fn record_full(&self) {
        *self
            .last_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether a write failed for lack of space within the last `period`.
    pub(crate) fn full_within(&self, period: Duration) -> bool {
        self.last_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < period)
    }
}

/// How many store calls run at once. The store serialises its writes anyway; without a bound, a thousand
/// long-polling claims arriving together each took a blocking thread (tokio makes up to 512), and the server kept
/// their memory.
pub(crate) const STORE_SLOTS: usize = 8;

impl AppState {
    /// Runs a store operation on the blocking pool (the store is synchronous).
    pub(crate) async fn store_call<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        // The semaphore is never closed, so acquiring only fails if that changes; then run unbounded.
        let _slot = self.store_slots.acquire().await.ok();
        match tokio::task::spawn_blocking(move || work(store.as_ref())).await? {
            Ok(value) => Ok(value),
            Err(error) if error.is_storage_full() => {
                self.storage.record_full();
                Err(ApiError::StorageFull(error))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// How long a long-polling request that asked to wait `asked_seconds` may wait: at most `limit`. A negative or NaN
/// wait answers at once, so a bad value never holds a request; one too large to represent is the limit.
pub(crate) fn capped_wait(asked_seconds: f64, limit: Duration) -> Duration {
    if asked_seconds.is_nan() || asked_seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(asked_seconds).map_or(limit, |asked| asked.min(limit))
}

/// The OpenAPI description's frame; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Proctor lab API", description = "Submit jobs to queues; agents claim and run them."),
    components(schemas(proctor_api::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer-token scheme the API uses when tokens exist.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Every API route with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::submit_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::finish_job))
        .routes(routes!(jobs::list_tests))
        .routes(routes!(jobs::test_history))
        .routes(routes!(
            files::upload_attachments,
            files::download_attachments
        ))
        .routes(routes!(files::upload_artifacts, files::download_artifacts))
        .routes(routes!(recipes::list_recipes))
        .routes(routes!(
            recipes::put_recipe,
            recipes::get_recipe,
            recipes::remove_recipe
        ))
        .routes(routes!(recipes::start_recipe))
        .routes(routes!(agents::register_agent))
        .routes(routes!(agents::claim_job))
        .routes(routes!(agents::heartbeat))
        .routes(routes!(agents::start_phase))
        .routes(routes!(agents::end_phase))
        .routes(routes!(streams::upload_log, streams::read_log))
        .routes(routes!(streams::upload_results, streams::read_results))
        .routes(routes!(streams::upload_work, streams::read_work))
        .routes(routes!(streams::upload_work_done, streams::read_work_done))
        .routes(routes!(ops::list_queues))
        .routes(routes!(ops::list_agents))
}

/// The OpenAPI document of the HTTP API, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The whole service: the API, its OpenAPI document and `/metrics`, with bodies limited to `max_body_bytes`.
pub(crate) fn router(state: AppState, max_body_bytes: usize) -> Result<Router, ServerError> {
    let (api, document) = api_routes().split_for_parts();
    // The document never changes while the server runs: serialized once, each request gets a cheap handle on the
    // same bytes.
    let document = Bytes::from(serde_json::to_vec(&document).map_err(ServerError::OpenApi)?);
    let serve_document = move || {
        let document = document.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], document) }
    };
    Ok(api
        .merge(crate::ui::routes())
        .route("/api/v1/openapi.json", get(serve_document))
        .route("/metrics", get(ops::metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_capped_and_a_bad_one_is_none() {
        let limit = Duration::from_secs(30);
        assert_eq!(capped_wait(2.5, limit), Duration::from_millis(2500));
        assert_eq!(capped_wait(60.0, limit), limit);
        assert_eq!(capped_wait(1e30, limit), limit);
        assert_eq!(capped_wait(f64::INFINITY, limit), limit);
        assert_eq!(capped_wait(-1.0, limit), Duration::ZERO);
        assert_eq!(capped_wait(f64::NEG_INFINITY, limit), Duration::ZERO);
        assert_eq!(capped_wait(f64::NAN, limit), Duration::ZERO);
    }
}
