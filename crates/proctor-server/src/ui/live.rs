//! A running job's page, live: its log as the agent uploads it, and its facts and phases as they change, as
//! Server-Sent Events woken by the same per-job wake-ups as the API's waiting reads.

use std::convert::Infallible;
use std::pin::pin;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use proctor_job::Phase;
use proctor_store::{JobState, Role, StreamKind};
use serde::Deserialize;

use super::format::log_html;
use super::{error_page, pages, Visitor};
use crate::api::{streams, AppState};
use crate::auth::{Caller, JobToken};
use crate::error::ApiError;

/// How often a running job's summary is rendered again while its log grows (its duration goes on).
const SUMMARY_EVERY: Duration = Duration::from_secs(1);
/// How long one wait for new bytes lasts before the stream looks again (a keep-alive goes out meanwhile).
const WAIT: Duration = Duration::from_secs(15);

/// Where the page's log ended, and which phase it shows.
#[derive(Debug, Deserialize)]
pub(crate) struct Live {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    phase: String,
}

/// `GET /jobs/{id}/live`: events `log` (complete lines as escaped, coloured HTML), `summary` (the page's facts and
/// phases, when they change) and `end` (the job ended; the page reloads).
pub(crate) async fn job_events(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(live): Query<Live>,
) -> Response {
    let allowed = async {
        let caller = visitor.reader()?;
        caller
            .require_on_job(&state, &id, &[Role::User, Role::Agent], JobToken::Allowed)
            .await?;
        let phase = match live.phase.as_str() {
            "" => None,
            name => Some(
                name.parse::<Phase>()
                    .map_err(|error| ApiError::BadRequest(error.to_string()))?,
            ),
        };
        Ok::<_, ApiError>((caller, phase))
    }
    .await;
    match allowed {
        Ok((caller, phase)) => Sse::new(events(state, caller, id, live.from, phase))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(error) => error_page(&visitor, &error, "/"),
    }
}

/// Where the event stream is.
struct Tail {
    state: AppState,
    caller: Caller,
    job_id: String,
    phase: Option<Phase>,
    offset: u64,
    /// Bytes after the last complete line, sent with the next one.
    partial: Vec<u8>,
    /// The facts and phases last sent.
    shown_summary: String,
    /// When the summary was last rendered, and whether it is due again (the job changed).
    summary_at: tokio::time::Instant,
    summary_due: bool,
    /// The job's state at the last read.
    last_state: Option<JobState>,
    ended: bool,
}

fn events(
    state: AppState,
    caller: Caller,
    job_id: String,
    from: u64,
    phase: Option<Phase>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let tail = Tail {
        state,
        caller,
        job_id,
        phase,
        offset: from,
        partial: Vec::new(),
        shown_summary: String::new(),
        summary_at: tokio::time::Instant::now(),
        summary_due: false,
        last_state: None,
        ended: false,
    };
    stream::unfold(tail, |mut tail| async move {
        if tail.ended {
            return None;
        }
        let batch = tail.next_events().await;
        Some((stream::iter(batch.into_iter().map(Ok)), tail))
    })
    .flatten()
}

impl Tail {
    /// The events of what arrived next (waiting for it), ending with `end` once the job has ended. New log lines go
    /// out at once; the summary they made due follows in the next batch, so its render never delays a line.
    async fn next_events(&mut self) -> Vec<Event> {
        if self.summary_due {
            return self.summary_events().await;
        }
        let Ok((bytes, next, job_state, changed)) = self.next_read().await else {
            return self.end();
        };
        self.summary_due = changed
            || job_state.is_final()
            || self.last_state != Some(job_state)
            || self.summary_at.elapsed() >= SUMMARY_EVERY;
        self.last_state = Some(job_state);
        self.offset = next;
        self.partial.extend_from_slice(&bytes);
        let mut events = Vec::new();
        let complete = match job_state.is_final() {
            true => self.partial.len(),
            false => self
                .partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |at| at + 1),
        };
        if complete > 0 {
            let lines: Vec<u8> = self.partial.drain(..complete).collect();
            events.push(Event::default().event("log").data(log_html(&lines)));
        }
        events
    }

    /// The facts and phases when they changed, and `end` after them once the job has ended.
    async fn summary_events(&mut self) -> Vec<Event> {
        self.summary_due = false;
        self.summary_at = tokio::time::Instant::now();
        let Ok(summary) = pages::job_summary(&self.state, &self.caller, &self.job_id).await else {
            return self.end();
        };
        let mut events = Vec::new();
        if summary != self.shown_summary {
            events.push(Event::default().event("summary").data(&summary));
            self.shown_summary = summary;
        }
        if self.last_state.is_some_and(JobState::is_final) {
            events.extend(self.end());
        }
        events
    }

    /// The log's next bytes, waiting for them, for the job's end, or for a change of its state or phases (then
    /// `true`).
    async fn next_read(&self) -> Result<(Vec<u8>, u64, JobState, bool), ApiError> {
        let changes = self.state.wakers.for_job_state(&self.job_id);
        let mut changed = pin!(changes.notified());
        changed.as_mut().enable();
        let read = |deadline| {
            streams::next_bytes(
                &self.state,
                &self.job_id,
                StreamKind::Log,
                self.offset,
                self.phase,
                deadline,
            )
        };
        let (answer, changed) = tokio::select! {
            answer = read(tokio::time::Instant::now() + WAIT) => (answer, false),
            () = changed => (read(tokio::time::Instant::now()).await, true),
        };
        answer.map(|(bytes, next, job_state)| (bytes, next, job_state, changed))
    }

    /// The stream's last event: the job ended, or the store failed (the page keeps what it has and reloads).
    fn end(&mut self) -> Vec<Event> {
        self.ended = true;
        vec![Event::default().event("end").data("")]
    }
}

/// How often the live overview re-renders without a change (agents' states change without a job changing).
const QUEUES_REFRESH: Duration = Duration::from_secs(10);
/// How long after a change the overview waits for the next, so a burst of changes is one render.
const QUEUES_SETTLE: Duration = Duration::from_millis(250);

/// `GET /live/queues`: event `queues` with the overview's queue table as HTML, whenever a job is queued, claimed or
/// ends (and every 10 s), woken by the same change notification as the API's waiting reads.
pub(crate) async fn queue_events(State(state): State<AppState>, visitor: Visitor) -> Response {
    let caller = match visitor.reader() {
        Ok(caller) => caller,
        Err(error) => return error_page(&visitor, &error, "/"),
    };
    let changes = state.wakers.lab_changes();
    let events = stream::unfold(
        (state, caller, changes),
        |(state, caller, mut changes)| async move {
            let changed = tokio::time::timeout(QUEUES_REFRESH, changes.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                // The server is going away.
                return None;
            }
            tokio::time::sleep(QUEUES_SETTLE).await;
            changes.mark_unchanged();
            let table = pages::queues_table(&state, &caller).await.ok()?;
            let event: Result<Event, Infallible> = Ok(Event::default().event("queues").data(table));
            Some((event, (state, caller, changes)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
