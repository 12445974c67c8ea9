//! Jobs: submit, look at, list, cancel, finish, and their per-test results.

use std::pin::pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use proctor_events::RunStatus;
use proctor_job::{Job, JobFormat};
use proctor_store::{
    CancelOutcome, JobCursor, JobFilter, JobState, NewJob, Role, Store, StoreError,
};
use tokio::time::Instant;

use super::convert::IntoView;
use super::{capped_wait, AppState};
use crate::auth::{Caller, JobToken};
use crate::error::ApiError;
use crate::results;
use proctor_api::{
    CancelView, ErrorBody, FinishRequest, JobDetail, JobListView, JobQuery, JobView, JobsQuery,
    SubmitQuery, TestHistoryQuery, TestHistoryView, TestResultsView,
};

/// Submits a job, written in YAML or JSON (the content type decides; `text/plain` or none is sniffed). A job that
/// lists attachments waits, unclaimable, until they are uploaded (`PUT /jobs/{id}/attachments`).
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    params(SubmitQuery),
    request_body(
        description = "The job definition (Testflinger field names)",
        content((String = "application/yaml"), (String = "application/json"))
    ),
    responses(
        (status = 201, description = "Queued", body = JobView),
        (status = 400, description = "Not YAML or JSON", body = ErrorBody),
        (status = 413, description = "The definition is larger than the server's cap", body = ErrorBody),
        (status = 415, description = "Another content type", body = ErrorBody),
        (status = 422, description = "Invalid job, or a queue no agent ever served", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::User])?;
    let body = read_definition(body, state.max_definition_bytes).await?;
    let format = job_format(&headers, &body)?;
    let text = std::str::from_utf8(&body)
        .map_err(|error| ApiError::BadRequest(format!("the job is not UTF-8 text: {error}")))?;
    let job = Job::parse(text, format)?;
    let queues = if query.allow_unknown_queue {
        Queues::Any
    } else {
        Queues::Served
    };
    queue_job(&state, &caller, &job, None, queues).await
}

/// The body of a submit, read until it passes `cap`: a definition over the cap is refused as soon as the bytes
/// past it arrive, without buffering the rest.
async fn read_definition(body: Body, cap: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, cap).await.map_err(|error| {
        let over_cap = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if over_cap {
            ApiError::DefinitionTooLarge { cap }
        } else {
            ApiError::BadRequest(format!("the job definition could not be read: {error}"))
        }
    })
}

/// Which queues a job may be stored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queues {
    /// Any queue, even one nothing serves yet.
    Any,
    /// Only a queue some agent has served: another is most likely a typo that would leave the job waiting forever.
    Served,
}

/// Stores a validated job (with the script of the recipe it was started from, if any) and wakes the claims
/// waiting on its queue; answers 201 with the job and its location. The queue check and the insert are one store
/// call, as a submit is on the dispatch path.
pub(crate) async fn queue_job(
    state: &AppState,
    caller: &Caller,
    job: &Job,
    recipe_script: Option<String>,
    queues: Queues,
) -> Result<Response, ApiError> {
    let stored = store_job(state, caller, job, recipe_script, queues).await?;
    Ok(created(stored))
}

/// 201 with a new job and its location.
pub(crate) fn created(job: proctor_store::Job) -> Response {
    let location = format!("/api/v1/jobs/{}", job.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(job.into_view()),
    )
        .into_response()
}

/// What [`queue_job`] does before answering: the stored job.
pub(crate) async fn store_job(
    state: &AppState,
    caller: &Caller,
    job: &Job,
    recipe_script: Option<String>,
    queues: Queues,
) -> Result<proctor_store::Job, ApiError> {
    let queue = job.job_queue.as_str().to_owned();
    let new_job = NewJob {
        queue: queue.clone(),
        name: job.name.clone(),
        priority: i64::from(job.job_priority),
        definition: serde_json::to_value(job).map_err(|error| {
            ApiError::BadRequest(format!("the job cannot be stored as JSON: {error}"))
        })?,
        max_attempts: job.max_attempts.get(),
        submitter: caller.submitter(),
        held: job
            .test_data
            .as_ref()
            .is_some_and(|data| !data.attachments.is_empty()),
        recipe_script,
    };
    let stored = state
        .store_call(move |store| {
            if queues == Queues::Served && !is_served(store, &new_job.queue)? {
                return Ok(None);
            }
            store.submit_job(&new_job, Timestamp::now()).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::UnknownQueue(queue.clone()))?;
    state.wakers.wake(&queue);
    Ok(stored)
}

/// The format of a submitted job from its content type, or from its text when the type does not say.
fn job_format(headers: &HeaderMap, body: &[u8]) -> Result<JobFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(JobFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Ok(JobFormat::Yaml)
        }
        "" | "text/plain" | "application/octet-stream" => {
            Ok(JobFormat::detect(&String::from_utf8_lossy(body)))
        }
        _ => Err(ApiError::UnsupportedMediaType(content_type.to_owned())),
    }
}

/// Whether some agent has ever served `queue`.
fn is_served(store: &dyn Store, queue: &str) -> Result<bool, StoreError> {
    Ok(store.queue(queue)?.is_some_and(|info| info.ever_served))
}

/// One job, with its phases (and why its results stopped being parsed, if they did). With `changed_from` and
/// `wait_seconds`, the answer waits until the job's state is no longer `changed_from` or the wait ends.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    params(("id" = String, Path, description = "The job id"), JobQuery),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "`changed_from` is not a state", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Json<JobDetail>, ApiError> {
    caller
        .require_on_job(&state, &id, &[Role::User, Role::Agent], JobToken::Allowed)
        .await?;
    let changed_from = query.changed_from.as_deref().map(parse_state).transpose()?;
    let wait = query
        .wait_seconds
        .map_or(Duration::ZERO, |asked| capped_wait(asked, state.claim_hold));
    let Some(changed_from) = changed_from.filter(|_| !wait.is_zero()) else {
        // A plain read (the common one) takes no wake-up.
        return Ok(Json(job_detail(&state, &id).await?));
    };
    let deadline = Instant::now() + wait;
    let changes = state.wakers.for_job_state(&id);
    loop {
        // Listening before reading means a change between the read and the wait still wakes it.
        let mut changed = pin!(changes.notified());
        changed.as_mut().enable();
        let detail = job_detail(&state, &id).await?;
        if detail.job.state != changed_from || Instant::now() >= deadline {
            return Ok(Json(detail));
        }
        // At the deadline the loop reads once more and answers with whatever is there.
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// Job `id` with its phases, as the store has it now.
async fn job_detail(state: &AppState, id: &str) -> Result<JobDetail, ApiError> {
    let id = id.to_owned();
    let (job, phases, progress) = state
        .store_call(move |store| {
            Ok((
                store.job(&id)?,
                store.phases(&id)?,
                store.results_progress(&id)?,
            ))
        })
        .await?;
    Ok(JobDetail {
        job: job.into_view(),
        phases: phases.into_iter().map(IntoView::into_view).collect(),
        results_problem: progress.problem,
    })
}

/// A job state named in a query, or a 400 naming the states there are.
fn parse_state(name: &str) -> Result<JobState, ApiError> {
    name.parse()
        .map_err(|error: proctor_store::UnknownName| ApiError::BadRequest(error.to_string()))
}

/// The job's test results as parsed from its subunit results so far: one row per test (by id) with its verdict and
/// every run (each attempt, route code and retry), and the totals counted as runs and as tests.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/tests",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The tests, each with its runs", body = TestResultsView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn list_tests(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TestResultsView>, ApiError> {
    caller
        .require_on_job(&state, &id, &[Role::User, Role::Agent], JobToken::Allowed)
        .await?;
    let runs = state
        .store_call(move |store| {
            let runs = store.test_runs(&id)?;
            // An ended job's runs have all ended. One still open means the parse at its end did not happen (the
            // server stopped in between, or the store failed then), or bytes came after it: parse now.
            let open = runs.iter().any(|run| run.status == RunStatus::Running);
            if open && store.job(&id)?.state.is_final() {
                results::parse_and_report(store, &id, true);
                return store.test_runs(&id);
            }
            Ok(runs)
        })
        .await?;
    Ok(Json(runs.into_view()))
}

/// One page of jobs, newest first, without their definitions, optionally of one queue, state and submitter. The
/// filters and the paging are the store's (by index), so a page costs the same with a hundred or a million jobs.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobListView),
        (status = 400, description = "An unknown state, a bad cursor or a limit over 1 000", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobListView>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "a page holds 1 to {MAX_PAGE} jobs, not {limit}"
        )));
    }
    let filter = JobFilter {
        queue: query.queue,
        state: query.state.as_deref().map(parse_state).transpose()?,
        submitter: query.submitter,
        after: query.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let page = state
        .store_call(move |store| store.list_jobs(&filter))
        .await?;
    Ok(Json(JobListView {
        jobs: page.jobs.into_iter().map(IntoView::into_view).collect(),
        next_cursor: page.next.map(format_cursor),
    }))
}

/// Jobs on a page unless the request says.
const DEFAULT_PAGE: u32 = 100;
/// The most jobs a page may hold.
const MAX_PAGE: u32 = 1000;

/// A cursor as the API hands it out: `<created_at in µs>.<seq>`, opaque to clients.
fn format_cursor(cursor: JobCursor) -> String {
    format!("{}.{}", cursor.created_at.as_microsecond(), cursor.seq)
}

/// A cursor from [`format_cursor`], or a 400 saying it is not one.
fn parse_cursor(text: &str) -> Result<JobCursor, ApiError> {
    let bad = || ApiError::BadRequest(format!("{text:?} is not a cursor this server handed out"));
    let (micros, seq) = text.split_once('.').ok_or_else(bad)?;
    let micros = micros.parse().map_err(|_| bad())?;
    Ok(JobCursor {
        created_at: Timestamp::from_microsecond(micros).map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

/// Cancels a job: at once if it waits, through its agent (heartbeat reply) if it runs. Submitter or admin only.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "What happened", body = CancelView),
        (status = 403, description = "Neither the submitter nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CancelView>, ApiError> {
    caller.require(&[Role::User])?;
    let job_id = id.clone();
    let job = state.store_call(move |store| store.job(&job_id)).await?;
    caller.require_submitter_or_admin(&job)?;
    let outcome = state
        .store_call(move |store| store.request_cancel(&id, Timestamp::now()))
        .await?;
    match &outcome {
        CancelOutcome::Cancelled => {
            state.metrics.count_job_ended(JobState::Cancelled.as_str());
            state.wakers.job_changed(&job.id);
        }
        // The agent's waiting heartbeat answers at once, so it learns within the second.
        CancelOutcome::Requested => {
            if let Some(agent) = &job.agent_id {
                state.wakers.wake_agent(agent);
            }
        }
        CancelOutcome::AlreadyEnded { .. } => {}
    }
    Ok(Json(outcome.into_view()))
}

/// Ends a running job with its result and reason (the agent, when it has run every phase).
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/finish",
    params(("id" = String, Path, description = "The job id")),
    request_body = FinishRequest,
    responses(
        (status = 200, description = "The ended job", body = JobView),
        (status = 403, description = "Not the job token of the job's current claim, nor an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Not running, or held by another agent", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn finish_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<FinishRequest>,
) -> Result<Json<JobView>, ApiError> {
    caller.require_job_writer(&id)?;
    let final_state = request.state;
    let job = state
        .store_call(move |store| {
            let job = store.finish_job(
                &id,
                request.agent_id.as_deref(),
                final_state,
                &request.reason,
                Timestamp::now(),
            )?;
            // The stream is complete now: a packet cut short at its end is recorded as the results' problem.
            results::parse_and_report(store, &job.id, true);
            Ok(job)
        })
        .await?;
    state.metrics.count_job_ended(final_state.as_str());
    state.wakers.job_changed(&job.id);
    Ok(Json(job.into_view()))
}

/// Jobs a test history looks at unless asked.
const HISTORY_JOBS: u32 = 50;
/// The most jobs a test history looks at.
const MAX_HISTORY_JOBS: u32 = 500;

/// One test's runs across the newest jobs that ran it: where and when it passed or failed, and how long it took.
#[utoipa::path(
    get,
    path = "/api/v1/test-history",
    params(TestHistoryQuery),
    responses(
        (status = 200, description = "The test's runs, newest job first", body = TestHistoryView),
        (status = 400, description = "No test id, or more than 500 jobs asked for", body = ErrorBody),
    ),
    tag = "jobs"
)]
pub(crate) async fn test_history(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TestHistoryQuery>,
) -> Result<Json<TestHistoryView>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let jobs = query.jobs.unwrap_or(HISTORY_JOBS);
    if query.test_id.is_empty() || !(1..=MAX_HISTORY_JOBS).contains(&jobs) {
        return Err(ApiError::BadRequest(format!(
            "a test history needs a test_id and looks at 1 to {MAX_HISTORY_JOBS} jobs, not {jobs}"
        )));
    }
    let test_id = query.test_id.clone();
    let runs = state
        .store_call(move |store| store.test_history(&test_id, jobs))
        .await?;
    Ok(Json(TestHistoryView {
        test_id: query.test_id,
        runs: runs.into_iter().map(IntoView::into_view).collect(),
    }))
}
