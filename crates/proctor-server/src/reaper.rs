//! The background reaper: every interval it hands jobs whose lease lapsed back to their queue (or ends them as
//! `error`, "agent lost", with the last of its results parsed) and marks agents that fell silent offline.

use std::time::Duration;

use jiff::Timestamp;
use proctor_store::{JobState, ReapedJob};

use crate::api::AppState;
use crate::results;

/// Runs reaper rounds every `interval` until the task is aborted.
pub(crate) async fn run(state: AppState, interval: Duration, agent_offline_after: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A failed round (a locked or unreachable database) is retried at the next tick; it is counted so an
        // operator sees it in the metrics.
        if reap_once(&state, agent_offline_after).await.is_err() {
            state.metrics.count_reaper_error();
        }
    }
}

/// One round: reap lapsed leases, then mark silent agents offline. Skipped while the store was full within the last
/// lease: the leases that lapsed then are the server's failure to store heartbeats, not their agents' silence.
async fn reap_once(
    state: &AppState,
    agent_offline_after: Duration,
) -> Result<(), crate::error::ApiError> {
    if state.storage.full_within(state.lease) {
        return Ok(());
    }
    let reaped: Vec<ReapedJob> = state
        .store_call(move |store| {
            let now = Timestamp::now();
            let reaped = store.reap_expired_leases(now)?;
            // The lost agent's attempt is over, whether the job ended or was requeued: its part of the stream is
            // complete (a packet it cut short is the results' problem) and the runs it left open did not finish.
            for job in &reaped {
                results::parse_and_report(store, &job.job_id, true);
            }
            let silent_since = now.checked_sub(agent_offline_after).unwrap_or(now);
            store.mark_silent_agents_offline(silent_since)?;
            Ok(reaped)
        })
        .await?;
    for job in &reaped {
        if job.new_state == JobState::Queued {
            state.wakers.wake(&job.queue);
        } else {
            state.metrics.count_job_ended(job.new_state.as_str());
        }
        // Followers of the job's output learn that this attempt is over.
        state.wakers.job_changed(&job.job_id);
    }
    Ok(())
}
