//! The pages: each reads through the API's own handlers with the visitor's caller, then renders a template.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use jiff::Timestamp;
use proctor_api::{
    AgentView, JobDetail, JobQuery, JobSummaryView, JobsQuery, QueueView, ReadQuery, RecipeView,
    StartRecipe, TestResultView, TestResultsView,
};
use proctor_job::{Job, JobFormat};
use proctor_store::{AgentState, JobState, StreamKind};
use serde::Deserialize;

use super::format::{age, between, duration, job_duration, log_html, time};
use super::session::Plain;
use super::{error_page, page, Frame, Visitor};
use crate::api::{self, AppState};
use crate::auth::Caller;
use crate::error::ApiError;

/// The most log a page shows at once (its end); the whole log is a download away.
const LOG_SHOWN: u64 = 512 * 1024;
/// How many of a queue's past jobs the start estimate averages.
const PAST_JOBS: u32 = 20;
/// How many jobs a text search looks through (newest first).
const SEARCHED: usize = 5000;
/// Jobs on a page of the list.
const PAGE: u32 = 50;

/// A page's result: the page, or the error as a page.
fn shown(visitor: &Visitor, result: Result<Response, ApiError>, here: &str) -> Response {
    result.unwrap_or_else(|error| error_page(visitor, &error, here))
}

// ---------------------------------------------------------------------------------------------------------------
// Overview

struct QueueRow {
    name: String,
    available: usize,
    busy: usize,
    offline: usize,
    maintenance: usize,
    waiting: u64,
    oldest_waiting: String,
    next_start: String,
    /// The waits of its last jobs to start, as an SVG chart.
    waits: String,
}

struct SilentAgent {
    id: String,
    heard: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    frame: Frame,
    queues: Vec<QueueRow>,
    silent: Vec<SilentAgent>,
}

#[derive(Template)]
#[template(path = "queues.html")]
pub(crate) struct QueuesTable {
    queues: Vec<QueueRow>,
}

/// The overview's queue table as HTML, as the live overview sends it.
pub(crate) async fn queues_table(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    let (queues, _) = queue_rows(state, caller).await?;
    partial(&QueuesTable { queues })
}

/// A part of a page as HTML, as a live stream sends it.
fn partial(template: &impl Template) -> Result<String, ApiError> {
    template
        .render()
        .map_err(|error| ApiError::BadRequest(format!("the page could not be rendered: {error}")))
}

/// `GET /`: every queue with its agents by state, what waits, and when the next job should start.
pub(crate) async fn overview(State(state): State<AppState>, visitor: Visitor) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let (queues, silent) = queue_rows(&state, &caller).await?;
        let template = Overview {
            frame: visitor.frame("overview"),
            queues,
            silent,
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, "/")
}

/// Every queue's row, and the agents not heard from.
async fn queue_rows(
    state: &AppState,
    caller: &Caller,
) -> Result<(Vec<QueueRow>, Vec<SilentAgent>), ApiError> {
    let Json(queues) = api::ops::list_queues(State(state.clone()), caller.clone()).await?;
    let Json(agents) = api::ops::list_agents(State(state.clone()), caller.clone()).await?;
    // The queues' reads overlap: each is a few store calls, and a lab has tens of queues.
    let rows = futures::future::try_join_all(
        queues
            .into_iter()
            .map(|queue| queue_row(state, caller, queue, &agents)),
    )
    .await?;
    let silent = agents
        .iter()
        .filter(|agent| agent.state == AgentState::Offline)
        .map(|agent| SilentAgent {
            id: agent.id.clone(),
            heard: age(agent.last_heartbeat),
        })
        .collect();
    Ok((rows, silent))
}

/// One queue's row: its agents by state, what waits, and when the next job should start.
async fn queue_row(
    state: &AppState,
    caller: &Caller,
    queue: QueueView,
    agents: &[AgentView],
) -> Result<QueueRow, ApiError> {
    let serving: Vec<&AgentView> = agents
        .iter()
        .filter(|agent| agent.queues.contains(&queue.name))
        .collect();
    let count = |wanted: AgentState| serving.iter().filter(|a| a.state == wanted).count();
    let waiting = jobs_of(state, caller, &queue.name, JobState::Queued, 1000).await?;
    let running = jobs_of(state, caller, &queue.name, JobState::Running, 1000).await?;
    let (past, waits) = past_jobs(state, caller, &queue.name).await?;
    Ok(QueueRow {
        available: count(AgentState::Idle),
        busy: count(AgentState::Busy),
        offline: count(AgentState::Offline),
        maintenance: count(AgentState::Maintenance),
        waiting: queue.queued,
        oldest_waiting: waiting
            .last()
            .map(|job| age(job.created_at))
            .unwrap_or_default(),
        next_start: next_start(&waiting, &running, count(AgentState::Idle), &past),
        waits: if waits.is_empty() {
            String::new()
        } else {
            super::history::duration_chart(&waits, "Wait of each job before it started")
        },
        name: queue.name,
    })
}

/// Up to `limit` of a queue's jobs in `state`, newest first.
async fn jobs_of(
    state: &AppState,
    caller: &Caller,
    queue: &str,
    job_state: JobState,
    limit: u32,
) -> Result<Vec<JobSummaryView>, ApiError> {
    let query = JobsQuery {
        queue: Some(queue.to_owned()),
        state: Some(job_state.as_str().to_owned()),
        limit: Some(limit),
        ..JobsQuery::default()
    };
    let Json(page) =
        api::jobs::list_jobs(State(state.clone()), caller.clone(), Query(query)).await?;
    Ok(page.jobs)
}

/// How long the queue's last jobs that passed or failed ran, and how long they waited before they started (oldest
/// first, for a chart).
async fn past_jobs(
    state: &AppState,
    caller: &Caller,
    queue: &str,
) -> Result<(Vec<Duration>, Vec<Option<Duration>>), ApiError> {
    let mut durations = Vec::new();
    let mut started = Vec::new();
    for ended in [JobState::Passed, JobState::Failed] {
        for job in jobs_of(state, caller, queue, ended, PAST_JOBS).await? {
            if let (Some(began), Some(ended)) = (job.started_at, job.ended_at) {
                durations.push(between(began, ended));
                started.push((job.created_at, between(job.created_at, began)));
            }
        }
    }
    started.sort_by_key(|(created, _)| *created);
    Ok((
        durations,
        started.into_iter().map(|(_, wait)| Some(wait)).collect(),
    ))
}

/// When the next waiting job should start: now with an agent available, else when the first running job should
/// end by the queue's mean past duration. A position in the queue is not shown: it misleads when priorities and
/// agents change.
fn next_start(
    waiting: &[JobSummaryView],
    running: &[JobSummaryView],
    available: usize,
    past: &[Duration],
) -> String {
    if waiting.is_empty() {
        return String::new();
    }
    if available > 0 {
        return "now".to_owned();
    }
    if past.is_empty() {
        return "unknown (no past jobs)".to_owned();
    }
    let mean = past.iter().sum::<Duration>() / u32::try_from(past.len()).unwrap_or(u32::MAX);
    let now = Timestamp::now();
    let soonest = running
        .iter()
        .filter_map(|job| job.started_at)
        .map(|started| mean.saturating_sub(between(started, now)))
        .min();
    match soonest {
        Some(left) if left.is_zero() => "any moment".to_owned(),
        Some(left) => format!("in about {}", duration(left)),
        None => "when an agent comes back".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs

/// The list's filters, as the URL carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobFilters {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    submitter: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

struct JobRow {
    id: String,
    title: String,
    state: &'static str,
    queue: String,
    agent: String,
    submitter: String,
    created: String,
    duration: String,
}

impl JobRow {
    fn of(job: JobSummaryView) -> JobRow {
        JobRow {
            title: title(job.name.as_deref(), &job.id),
            state: job.state.as_str(),
            queue: job.queue,
            agent: job.agent_id.unwrap_or_default(),
            submitter: job.submitter.unwrap_or_default(),
            created: time(job.created_at),
            duration: job_duration(job.started_at, job.ended_at),
            id: job.id,
        }
    }
}

/// What a job is called on a page: its name and the start of its id.
fn title(name: Option<&str>, id: &str) -> String {
    let short = id.get(..8).unwrap_or(id);
    match name {
        Some(name) => format!("{name} ({short})"),
        None => short.to_owned(),
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct Jobs {
    frame: Frame,
    filter: JobFilters,
    states: Vec<&'static str>,
    jobs: Vec<JobRow>,
    next: Option<String>,
}

/// `GET /jobs?queue=&state=&submitter=&q=`: newest first, a page at a time.
pub(crate) async fn jobs(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(filter): Query<JobFilters>,
) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let nonempty = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        let mut query = JobsQuery {
            queue: nonempty(&filter.queue),
            state: nonempty(&filter.state),
            submitter: nonempty(&filter.submitter),
            limit: Some(PAGE),
            cursor: nonempty(&filter.cursor),
        };
        let needle = filter.q.trim().to_lowercase();
        let mut rows = Vec::new();
        let mut looked = 0;
        let next = loop {
            let Json(page) =
                api::jobs::list_jobs(State(state.clone()), caller.clone(), Query(query.clone()))
                    .await?;
            looked += page.jobs.len();
            rows.extend(
                page.jobs
                    .into_iter()
                    .filter(|job| needle.is_empty() || matches_text(job, &needle))
                    .map(JobRow::of),
            );
            match page.next_cursor {
                Some(cursor) if rows.len() < PAGE as usize && looked < SEARCHED => {
                    query.cursor = Some(cursor);
                }
                next => break next,
            }
        };
        let next = next.map(|cursor| {
            let mut pairs = form_urlencoded::Serializer::new(String::new());
            for (key, value) in [
                ("queue", &filter.queue),
                ("state", &filter.state),
                ("submitter", &filter.submitter),
                ("q", &filter.q),
            ] {
                if !value.is_empty() {
                    pairs.append_pair(key, value);
                }
            }
            pairs.append_pair("cursor", &cursor);
            format!("/jobs?{}", pairs.finish())
        });
        let template = Jobs {
            frame: visitor.frame("jobs"),
            filter,
            states: JobState::ALL.iter().map(|state| state.as_str()).collect(),
            jobs: rows,
            next,
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, "/jobs")
}

/// Whether a job's name, id, reason or submitter contains `needle` (lower case).
fn matches_text(job: &JobSummaryView, needle: &str) -> bool {
    [
        job.name.as_deref(),
        Some(job.id.as_str()),
        job.reason.as_deref(),
        job.submitter.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|text| text.to_lowercase().contains(needle))
}

// ---------------------------------------------------------------------------------------------------------------
// Job

struct JobFacts {
    id: String,
    title: String,
    state: &'static str,
    reason: String,
    queue: String,
    agent: String,
    submitter: String,
    created: String,
    duration: String,
    attempts: String,
    cancel_requested: bool,
}

struct PhaseRow {
    name: String,
    started: String,
    duration: String,
    exit: String,
    class: &'static str,
    weight: u64,
}

struct TestRow {
    id: String,
    verdict: String,
    duration: String,
    runs: String,
    details: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    frame: Frame,
    job: JobFacts,
    reservation: String,
    can_cancel: bool,
    can_resubmit: bool,
    has_artifacts: bool,
    notice: String,
    phases: Vec<PhaseRow>,
    phase: String,
    live: String,
    log: String,
    counts: String,
    verdicts: Vec<&'static str>,
    verdict_filter: String,
    tests: Vec<TestRow>,
    definition: String,
}

#[derive(Template)]
#[template(path = "job_summary.html")]
struct JobSummary {
    job: JobFacts,
    reservation: String,
    phases: Vec<PhaseRow>,
}

/// The job page's facts and phases as HTML, as the live job page sends them when they change.
pub(crate) async fn job_summary(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<String, ApiError> {
    let Json(detail) = api::jobs::get_job(
        State(state.clone()),
        caller.clone(),
        Path(id.to_owned()),
        Query(JobQuery::default()),
    )
    .await?;
    partial(&JobSummary {
        reservation: reservation(&detail),
        phases: phase_rows(&detail),
        job: facts(detail),
    })
}

/// The job page's options.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobOptions {
    #[serde(default)]
    phase: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    notice: String,
}

/// `GET /jobs/{id}`: state, phases, the log (live while it runs), tests, downloads and actions.
pub(crate) async fn job(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(options): Query<JobOptions>,
) -> Response {
    let here = format!("/jobs/{id}");
    let result = async {
        let caller = visitor.reader()?;
        let Json(detail) = api::jobs::get_job(
            State(state.clone()),
            caller.clone(),
            Path(id.clone()),
            Query(JobQuery::default()),
        )
        .await?;
        let Json(tests) =
            api::jobs::list_tests(State(state.clone()), caller.clone(), Path(id.clone())).await?;
        let failures = failure_details(&state, &id, &tests).await?;
        let phase = options.phase.parse::<proctor_job::Phase>().ok();
        let (log, next_offset) = log_tail(&state, &id, phase).await?;
        let job_state = detail.job.state;
        let live = if job_state.is_final() {
            String::new()
        } else {
            let phase = phase
                .map(|phase| format!("&phase={}", phase.as_str()))
                .unwrap_or_default();
            format!("/jobs/{id}/live?from={next_offset}{phase}")
        };
        let artifacts_id = id.clone();
        let has_artifacts = state
            .store_call(move |store| Ok(!store.artifacts(&artifacts_id)?.is_empty()))
            .await?;
        let template = JobPage {
            frame: visitor.frame("jobs"),
            reservation: reservation(&detail),
            can_cancel: visitor.may_write() && !job_state.is_final(),
            can_resubmit: visitor.may_write(),
            has_artifacts,
            notice: options.notice.clone(),
            phases: phase_rows(&detail),
            phase: phase
                .map(|phase| phase.as_str().to_owned())
                .unwrap_or_default(),
            live,
            log,
            counts: counts(&tests),
            verdicts: vec!["passed", "failed", "flaky", "skipped", "running"],
            tests: test_rows(&tests, &options.verdict, &failures),
            verdict_filter: options.verdict.clone(),
            definition: serde_json::to_string_pretty(&detail.job.definition)
                .unwrap_or_else(|_| detail.job.definition.to_string()),
            job: facts(detail),
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, &here)
}

/// The end of the job's log (one phase's, with `phase`) as HTML, and the offset after it.
async fn log_tail(
    state: &AppState,
    id: &str,
    phase: Option<proctor_job::Phase>,
) -> Result<(String, u64), ApiError> {
    let job_id = id.to_owned();
    let end = state
        .store_call(move |store| store.stream_end(&job_id, StreamKind::Log))
        .await?;
    let from = end.saturating_sub(LOG_SHOWN);
    let (bytes, next, _) = api::streams::next_bytes(
        state,
        id,
        StreamKind::Log,
        from,
        phase,
        tokio::time::Instant::now(),
    )
    .await?;
    let mut html = String::new();
    if from > 0 {
        html.push_str(&format!(
            "[the first {} bytes are left out: the whole log is a download away]\n",
            from
        ));
    }
    html.push_str(&log_html(&bytes));
    Ok((html, next))
}

fn facts(detail: JobDetail) -> JobFacts {
    let job = detail.job;
    JobFacts {
        title: title(job.name.as_deref(), &job.id),
        state: job.state.as_str(),
        reason: job.reason.unwrap_or_default(),
        queue: job.queue,
        agent: job.agent_id.unwrap_or_default(),
        submitter: job.submitter.unwrap_or_default(),
        created: time(job.created_at),
        duration: job_duration(job.started_at, job.ended_at),
        attempts: format!("{} of {}", job.attempts, job.max_attempts),
        cancel_requested: job.cancel_requested,
        id: job.id,
    }
}

/// A job in its reserve phase: until when the machine is held.
fn reservation(detail: &JobDetail) -> String {
    let Some(reserve) = detail
        .phases
        .iter()
        .find(|phase| phase.name == "reserve" && phase.ended_at.is_none())
    else {
        return String::new();
    };
    let timeout = detail
        .job
        .definition
        .pointer("/reserve_data/timeout")
        .and_then(serde_json::Value::as_u64);
    match timeout {
        Some(seconds) => {
            let held = between(reserve.started_at, Timestamp::now());
            let left = Duration::from_secs(seconds).saturating_sub(held);
            format!(
                "reserved since {}, {} left",
                time(reserve.started_at),
                duration(left)
            )
        }
        None => format!("reserved since {}", time(reserve.started_at)),
    }
}

fn phase_rows(detail: &JobDetail) -> Vec<PhaseRow> {
    let now = Timestamp::now();
    detail
        .phases
        .iter()
        .map(|phase| {
            let took = between(phase.started_at, phase.ended_at.unwrap_or(now));
            PhaseRow {
                name: phase.name.clone(),
                started: time(phase.started_at),
                duration: duration(took),
                exit: phase
                    .exit_status
                    .map(|status| status.to_string())
                    .unwrap_or_else(|| "running".to_owned()),
                class: match phase.exit_status {
                    None => "going",
                    Some(0) => "ok",
                    Some(_) => "bad",
                },
                weight: took.as_millis().max(1).try_into().unwrap_or(u64::MAX),
            }
        })
        .collect()
}

fn counts(tests: &TestResultsView) -> String {
    let t = tests.tests;
    format!(
        "{} tests: {} passed, {} failed, {} flaky, {} skipped, {} running",
        t.total, t.passed, t.failed, t.flaky, t.skipped, t.running
    )
}

/// The largest results stream whose failures' attachments a job page shows (beyond it, the stream is a download).
const RESULTS_READ: u64 = 8 * 1024 * 1024;

/// What the failed runs of the job's tests attached (tracebacks, output), by test id, read from its results stream
/// when some test failed and the stream is not too large to read for a page.
async fn failure_details(
    state: &AppState,
    id: &str,
    tests: &TestResultsView,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let failed = tests
        .results
        .iter()
        .any(|test| test.verdict == "failed" || test.verdict == "flaky");
    if !failed {
        return Ok(Default::default());
    }
    let job_id = id.to_owned();
    state
        .store_call(move |store| {
            if store.stream_end(&job_id, StreamKind::Results)? > RESULTS_READ {
                return Ok(Default::default());
            }
            let chunks = store.read_stream(&job_id, StreamKind::Results, 0, None)?;
            let (bytes, _) = api::bytes_from(chunks, 0);
            Ok(crate::results::failure_attachments(&bytes))
        })
        .await
}

fn test_rows(
    tests: &TestResultsView,
    verdict: &str,
    failures: &std::collections::HashMap<String, String>,
) -> Vec<TestRow> {
    tests
        .results
        .iter()
        .filter(|test| verdict.is_empty() || test.verdict == verdict)
        .map(|test| test_row(test, failures.get(&test.test_id)))
        .collect()
}

fn test_row(test: &TestResultView, attached: Option<&String>) -> TestRow {
    let took = test
        .runs
        .last()
        .and_then(|run| run.duration_us)
        .map(|micros| duration(Duration::from_micros(micros)))
        .unwrap_or_default();
    let details: Vec<String> = test
        .runs
        .iter()
        .map(|run| {
            let mut line = format!(
                "attempt {}, retry {}, on {}: {}",
                run.attempt,
                run.retry,
                run.route_code
                    .as_deref()
                    .or(run.agent_id.as_deref())
                    .unwrap_or("?"),
                run.status
            );
            if let Some(reason) = &run.reason {
                line.push_str(&format!(" ({reason})"));
            }
            line
        })
        .collect();
    TestRow {
        id: test.test_id.clone(),
        verdict: test.verdict.clone(),
        duration: took,
        runs: format!(
            "{} run{}",
            test.runs.len(),
            if test.runs.len() == 1 { "" } else { "s" }
        ),
        details: {
            let mut shown =
                if test.runs.len() > 1 || test.runs.iter().any(|run| run.reason.is_some()) {
                    details.join("\n")
                } else {
                    String::new()
                };
            if let Some(attached) = attached {
                if !shown.is_empty() {
                    shown.push_str("\n\n");
                }
                shown.push_str(attached);
            }
            shown
        },
    }
}

/// `GET /jobs/{id}/junit.xml`: the job's results as JUnit XML.
pub(crate) async fn junit(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/jobs/{id}");
    let result = async {
        let caller = visitor.reader()?;
        caller
            .require_on_job(
                &state,
                &id,
                &[proctor_store::Role::User, proctor_store::Role::Agent],
                crate::auth::JobToken::Allowed,
            )
            .await?;
        let job_id = id.clone();
        let xml = state
            .store_call(move |store| {
                let chunks = store.read_stream(&job_id, StreamKind::Results, 0, None)?;
                let (bytes, _) = api::bytes_from(chunks, 0);
                Ok(crate::results::junit_xml(&bytes))
            })
            .await?
            .map_err(ApiError::BadRequest)?;
        Ok((
            [
                (header::CONTENT_TYPE, "application/xml".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.xml\""),
                ),
            ],
            xml,
        )
            .into_response())
    }
    .await;
    shown(&visitor, result, &here)
}

/// A download through the API's handler `read`, as the visitor (whose browser has no bearer token), saved as
/// `filename`.
async fn download<F, R>(visitor: &Visitor, id: &str, filename: String, read: F) -> Response
where
    F: FnOnce(Caller) -> R,
    R: std::future::Future<Output = Result<Response, ApiError>>,
{
    let here = format!("/jobs/{id}");
    let result = async {
        let mut response = read(visitor.reader()?).await?;
        if let Ok(value) =
            header::HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
        Ok(response)
    }
    .await;
    shown(visitor, result, &here)
}

/// `GET /jobs/{id}/results.subunit`: the job's subunit v2 results stream.
pub(crate) async fn results_stream(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let name = format!("{id}.subunit");
    download(&visitor, &id.clone(), name, |caller| {
        api::streams::read_results(State(state), caller, Path(id), Query(ReadQuery::default()))
    })
    .await
}

/// `GET /jobs/{id}/log.txt`: the job's whole log.
pub(crate) async fn log_text(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let name = format!("{id}.log");
    download(&visitor, &id.clone(), name, |caller| {
        api::streams::read_log(State(state), caller, Path(id), Query(ReadQuery::default()))
    })
    .await
}

/// `GET /jobs/{id}/artifacts.tar.gz`: the job's artifacts.
pub(crate) async fn artifacts(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let name = format!("{id}-artifacts.tar.gz");
    download(&visitor, &id.clone(), name, |caller| {
        api::files::download_artifacts(State(state), caller, Path(id))
    })
    .await
}

/// `POST /jobs/{id}/cancel`: the API's cancel, as the visitor.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    let here = format!("/jobs/{id}");
    let result = async {
        let caller = visitor.writer(&form.csrf)?;
        let Json(outcome) =
            api::jobs::cancel_job(State(state.clone()), caller, Path(id.clone())).await?;
        let notice = match outcome.outcome.as_str() {
            "requested" => "Cancel requested: the agent stops the job.",
            "cancelled" => "Cancelled.",
            _ => "The job had already ended.",
        };
        Ok(back_to_job(&id, notice))
    }
    .await;
    shown(&visitor, result, &here)
}

/// The job page, saying `notice`.
fn back_to_job(id: &str, notice: &str) -> Response {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    Redirect::to(&format!("/jobs/{id}?{query}")).into_response()
}

/// `POST /jobs/{id}/again`: the same definition submitted as a new job (a recipe's job starts the recipe again
/// with the same options); lands on the new job.
pub(crate) async fn submit_again(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    let here = format!("/jobs/{id}");
    let result = async {
        let caller = visitor.writer(&form.csrf)?;
        let Json(detail) = api::jobs::get_job(
            State(state.clone()),
            caller.clone(),
            Path(id.clone()),
            Query(JobQuery::default()),
        )
        .await?;
        let definition = detail.job.definition;
        let job = match definition.get("recipe").and_then(|name| name.as_str()) {
            Some(recipe) => {
                let options =
                    serde_json::from_value(definition.get("options").cloned().unwrap_or_default())
                        .unwrap_or_default();
                api::recipes::recipe_job(
                    &state,
                    &caller,
                    recipe.to_owned(),
                    StartRecipe { options },
                )
                .await?
            }
            None => {
                let job = Job::parse(&definition.to_string(), JobFormat::Json)?;
                api::jobs::store_job(&state, &caller, &job, None, api::jobs::Queues::Any).await?
            }
        };
        Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response())
    }
    .await;
    shown(&visitor, result, &here)
}

// ---------------------------------------------------------------------------------------------------------------
// Agents

struct AgentRow {
    id: String,
    state: &'static str,
    queues: String,
    job: String,
    job_title: String,
    heard: String,
    silent: bool,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct Agents {
    frame: Frame,
    agents: Vec<AgentRow>,
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    frame: Frame,
    agent: AgentRow,
    jobs: Vec<JobRow>,
}

/// Every agent's row, with its current job from the running jobs.
async fn agent_rows(state: &AppState, caller: &Caller) -> Result<Vec<AgentRow>, ApiError> {
    let Json(agents) = api::ops::list_agents(State(state.clone()), caller.clone()).await?;
    let query = JobsQuery {
        state: Some(JobState::Running.as_str().to_owned()),
        limit: Some(1000),
        ..JobsQuery::default()
    };
    let Json(running) =
        api::jobs::list_jobs(State(state.clone()), caller.clone(), Query(query)).await?;
    Ok(agents
        .into_iter()
        .map(|agent| {
            let current = running
                .jobs
                .iter()
                .find(|job| job.agent_id.as_deref() == Some(agent.id.as_str()));
            AgentRow {
                state: agent.state.as_str(),
                queues: agent.queues.join(", "),
                job: current.map(|job| job.id.clone()).unwrap_or_default(),
                job_title: current
                    .map(|job| title(job.name.as_deref(), &job.id))
                    .unwrap_or_default(),
                heard: age(agent.last_heartbeat),
                silent: agent.state == AgentState::Offline,
                id: agent.id,
            }
        })
        .collect())
}

/// `GET /agents`.
pub(crate) async fn agents(State(state): State<AppState>, visitor: Visitor) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let template = Agents {
            frame: visitor.frame("agents"),
            agents: agent_rows(&state, &caller).await?,
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, "/agents")
}

/// `GET /agents/{id}`: its state and its recent jobs with their outcomes.
pub(crate) async fn agent(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/agents/{id}");
    let result = async {
        let caller = visitor.reader()?;
        let agent = agent_rows(&state, &caller)
            .await?
            .into_iter()
            .find(|agent| agent.id == id)
            .ok_or_else(|| ApiError::Store(proctor_store::StoreError::AgentNotFound(id.clone())))?;
        // The store lists jobs by queue, not by agent: the agent's queues' recent jobs, kept when it ran them.
        let mut jobs = Vec::new();
        for queue in agent.queues.split(", ").filter(|queue| !queue.is_empty()) {
            let query = JobsQuery {
                queue: Some(queue.to_owned()),
                limit: Some(200),
                ..JobsQuery::default()
            };
            let Json(page) =
                api::jobs::list_jobs(State(state.clone()), caller.clone(), Query(query)).await?;
            jobs.extend(
                page.jobs
                    .into_iter()
                    .filter(|job| job.agent_id.as_deref() == Some(id.as_str())),
            );
        }
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_at));
        jobs.truncate(20);
        let template = AgentPage {
            frame: visitor.frame("agents"),
            agent,
            jobs: jobs.into_iter().map(JobRow::of).collect(),
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, &here)
}

// ---------------------------------------------------------------------------------------------------------------
// Recipes

struct RecipeRow {
    name: String,
    queue: String,
    options: String,
}

#[derive(Template)]
#[template(path = "recipes.html")]
struct Recipes {
    frame: Frame,
    recipes: Vec<RecipeRow>,
}

struct OptionField {
    key: String,
    value: String,
}

#[derive(Template)]
#[template(path = "recipe.html")]
struct RecipePage {
    frame: Frame,
    name: String,
    queue: String,
    script: String,
    options: Vec<OptionField>,
    error: String,
}

/// `GET /recipes`.
pub(crate) async fn recipes(State(state): State<AppState>, visitor: Visitor) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let Json(recipes) = api::recipes::list_recipes(State(state.clone()), caller).await?;
        let template = Recipes {
            frame: visitor.frame("recipes"),
            recipes: recipes
                .into_iter()
                .map(|recipe| RecipeRow {
                    options: recipe
                        .options
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    name: recipe.name,
                    queue: recipe.queue,
                })
                .collect(),
        };
        Ok(page(&visitor, &template))
    }
    .await;
    shown(&visitor, result, "/recipes")
}

fn recipe_page(visitor: &Visitor, recipe: RecipeView, error: String) -> Response {
    let template = RecipePage {
        frame: visitor.frame("recipes"),
        options: recipe
            .options
            .into_iter()
            .map(|(key, value)| OptionField { key, value })
            .collect(),
        name: recipe.name,
        queue: recipe.queue,
        script: recipe.script,
        error,
    };
    page(visitor, &template)
}

/// `GET /recipes/{name}`: its script, and the Start plan form built from its options with their defaults.
pub(crate) async fn recipe(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Response {
    let here = format!("/recipes/{name}");
    let result = async {
        let caller = visitor.reader()?;
        let Json(recipe) = api::recipes::get_recipe(State(state), caller, Path(name)).await?;
        Ok(recipe_page(&visitor, recipe, String::new()))
    }
    .await;
    shown(&visitor, result, &here)
}

/// `POST /recipes/{name}/start`: the form's `option.KEY` fields as the start's options; lands on the new job's
/// live page. A refusal shows the form again with the reason.
pub(crate) async fn start_plan(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(name): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let here = format!("/recipes/{name}");
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let csrf = fields
        .iter()
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let options: BTreeMap<String, String> = fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("option.")?.to_owned(), value)))
        .collect();
    let result = async {
        let caller = visitor.writer(&csrf)?;
        match api::recipes::recipe_job(&state, &caller, name.clone(), StartRecipe { options }).await
        {
            Ok(job) => Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response()),
            Err(error)
                if error.status() == StatusCode::BAD_REQUEST
                    || error.status() == StatusCode::UNPROCESSABLE_ENTITY =>
            {
                let reader = visitor.reader()?;
                let Json(recipe) =
                    api::recipes::get_recipe(State(state.clone()), reader, Path(name.clone()))
                        .await?;
                let mut response = recipe_page(&visitor, recipe, error.full_message());
                *response.status_mut() = error.status();
                Ok(response)
            }
            Err(error) => Err(error),
        }
    }
    .await;
    shown(&visitor, result, &here)
}

pub(crate) use super::history::{compare, test_history};
