//! The overview page (`GET /`) with 500 agents on 20 queues: per queue about 25 agents in a mix of states (busy on a
//! running job, idle, in maintenance, not heard from for two days), waiting jobs, and a history of jobs that passed
//! or failed, so the page's start estimate and wait chart have data. Baseline, in the same run: 25 agents on one
//! queue with the same jobs per queue. The store is filled through the [`Store`] trait, as a lab's life would have
//! left it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use proctor_store::{AgentRegistration, AgentState, FinalState, NewJob, Store};
use proctor_store_sqlite::SqliteStore;

use super::{measure, page_html, print_pages_table, store_error};
use crate::lab::LabBenchError;

/// Agents in the big store.
const AGENTS: usize = 500;
/// Queues in the big store.
const QUEUES: usize = 20;
/// Agents in the baseline's store, all on its one queue: as many as each queue of the big store has first.
const BASELINE_AGENTS: usize = 25;
/// Jobs per queue that passed or failed before the page is looked at.
const PAST_JOBS: usize = 200;
/// Jobs waiting per queue.
const WAITING: usize = 10;
/// How far back the first past job was submitted.
const HISTORY: SignedDuration = SignedDuration::from_hours(3);
/// How long ago the silent agents were last heard from.
const SILENT_FOR: SignedDuration = SignedDuration::from_hours(48);
/// The lease of the running jobs: longer than the bench, so the server's reaper leaves them running.
const LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// What an agent is doing when the page is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Running one job of its first queue.
    Busy,
    /// Waiting for work.
    Idle,
    /// Taken out of service by an operator.
    Maintenance,
    /// Not heard from for [`SILENT_FOR`]: offline.
    Silent,
}

/// One agent of the store to be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedAgent {
    id: String,
    /// Its queues, the first being the one it runs its job from.
    queues: Vec<String>,
    role: Role,
}

/// The agents of a store with `agents` agents over `queues` queues, dealt out round-robin. Of each queue's agents
/// (in the order dealt) six in ten are busy, two idle, one in maintenance and one silent; every fourth round also
/// serves the queue two further on. Idle agents are kept off the even queues, so that half the queues have none
/// available and the page estimates their next start from the past jobs (the "now" of an idle agent needs no
/// estimate).
fn plan(agents: usize, queues: usize) -> Vec<PlannedAgent> {
    (0..agents)
        .map(|index| {
            let (round, first) = (index / queues, index % queues);
            let role = match round % 10 {
                0..=5 => Role::Busy,
                6 | 7 if first % 2 == 0 => Role::Busy,
                6 | 7 => Role::Idle,
                8 => Role::Maintenance,
                _ => Role::Silent,
            };
            let mut served = vec![queue_name(first)];
            // Two further on keeps the queue's parity, so an idle agent never lands on an even queue.
            let second = (first + 2) % queues;
            if round % 4 == 3 && second != first {
                served.push(queue_name(second));
            }
            PlannedAgent {
                id: format!("agent-{index:03}"),
                queues: served,
                role,
            }
        })
        .collect()
}

/// The name of queue `index`.
fn queue_name(index: usize) -> String {
    format!("pool-{index:02}")
}

/// Measures and prints the overview table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!(
        "\nui overview: GET / with {AGENTS} agents on {QUEUES} queues, against {BASELINE_AGENTS} agents on 1 queue \
         ({PAST_JOBS} past and {WAITING} waiting jobs per queue, one running job per busy agent)"
    );
    let scratch = crate::lab::scratch_dir()?;
    let runtime = crate::lab::multi_thread_runtime()?;
    let filled = Instant::now();
    let big = scratch.path().join("big");
    let big_agents = fill(&big, &plan(AGENTS, QUEUES), QUEUES)?;
    println!("(stored in {:.1} s)", filled.elapsed().as_secs_f64());
    let small = scratch.path().join("small");
    let small_agents = fill(&small, &plan(BASELINE_AGENTS, 1), 1)?;
    let (big_html, small_html) = (
        page_html(&runtime, &big, "/")?,
        page_html(&runtime, &small, "/")?,
    );
    check(&big_html, QUEUES, &big_agents)?;
    check(&small_html, 1, &small_agents)?;
    println!(
        "(pages of {:.1} KiB and {:.1} KiB, each with a row per queue and every offline agent listed)",
        big_html.len() as f64 / 1024.0,
        small_html.len() as f64 / 1024.0
    );
    let pages = [("overview", "/".to_owned())];
    let big_times = measure(&runtime, &big, &pages)?;
    let small_times = measure(&runtime, &small, &pages)?;
    print_pages_table(
        (
            &format!("{AGENTS} agents, {QUEUES} queues"),
            &format!("{BASELINE_AGENTS} agents, 1 queue"),
        ),
        big_times,
        small_times,
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// How many of a store's agents are in each state, as the store says.
type StateCounts = BTreeMap<&'static str, usize>;

/// Fills a store at `data_dir` with the `agents` over `queues` queues and their jobs; answers how many agents the
/// store holds in each state, which it prints.
fn fill(
    data_dir: &Path,
    agents: &[PlannedAgent],
    queues: usize,
) -> Result<StateCounts, LabBenchError> {
    let store = SqliteStore::open(data_dir).map_err(store_error)?;
    let now = Timestamp::now();
    for agent in agents {
        let registered = match agent.role {
            Role::Silent => now - SILENT_FOR,
            _ => now - HISTORY,
        };
        let registration = AgentRegistration {
            id: agent.id.clone(),
            queues: agent.queues.clone(),
            images: Vec::new(),
        };
        store
            .register_agent(&registration, registered)
            .map_err(store_error)?;
    }
    for queue in 0..queues {
        let name = queue_name(queue);
        // The past jobs ran on the queue's agents still in service: a claim counts as being heard from.
        let runners: Vec<&str> = agents
            .iter()
            .filter(|agent| agent.role != Role::Silent && agent.queues.contains(&name))
            .map(|agent| agent.id.as_str())
            .collect();
        store_history(&store, &name, &runners, now)?;
    }
    store_running(&store, agents, now)?;
    for queue in 0..queues {
        store_waiting(&store, &queue_name(queue), now)?;
    }
    settle_agents(&store, agents, now)?;
    let mut counts = StateCounts::new();
    for agent in store.agents().map_err(store_error)? {
        *counts.entry(agent.state.as_str()).or_default() += 1;
    }
    println!("({} agents by state: {counts:?})", agents.len());
    Ok(counts)
}

/// Insists the overview's `html` shows what the store holds, so its time is that of the whole page: a row for each
/// of the `queues`, and each offline agent in the list of those not heard from.
fn check(html: &str, queues: usize, counts: &StateCounts) -> Result<(), LabBenchError> {
    if let Some(missing) = (0..queues)
        .map(queue_name)
        .find(|name| !html.contains(&format!(">{name}</a></td>")))
    {
        return Err(LabBenchError::Store(format!(
            "the overview has no row for queue {missing}"
        )));
    }
    let offline = counts
        .get(AgentState::Offline.as_str())
        .copied()
        .unwrap_or_default();
    let listed = html.matches("last heard").count();
    if listed != offline {
        return Err(LabBenchError::Store(format!(
            "the overview lists {listed} agents not heard from, the store has {offline} offline"
        )));
    }
    Ok(())
}

/// A job for `queue` named `name`.
fn new_job(queue: &str, name: String) -> NewJob {
    NewJob {
        queue: queue.to_owned(),
        name: Some(name),
        priority: 0,
        definition: serde_json::json!({
            "job_queue": queue,
            "test_data": {"test_cmds": "./run-tests --subunit >> \"$PROCTOR_RESULTS\""},
        }),
        max_attempts: 1,
        submitter: Some("alice".to_owned()),
        held: false,
        recipe_script: None,
    }
}

/// [`PAST_JOBS`] jobs of `queue` over the last [`HISTORY`], each submitted, claimed by one of `runners` after a
/// wait of up to a minute, and ended after one to five minutes; one in five failed.
fn store_history(
    store: &dyn Store,
    queue: &str,
    runners: &[&str],
    now: Timestamp,
) -> Result<(), LabBenchError> {
    if runners.is_empty() {
        return Err(LabBenchError::Store(format!(
            "queue {queue} has no agent in service"
        )));
    }
    let spacing = HISTORY.as_secs() / PAST_JOBS as i64;
    let queues = [queue.to_owned()];
    for index in 0..PAST_JOBS {
        let step = index as i64;
        let submitted = now - HISTORY + SignedDuration::from_secs(step * spacing);
        let started = submitted + SignedDuration::from_secs(step * 7 % 60);
        let ended = started + SignedDuration::from_secs(60 + step * 13 % 240);
        let runner = runners[index % runners.len()];
        let job = store
            .submit_job(&new_job(queue, format!("past run {index}")), submitted)
            .map_err(store_error)?;
        // Nothing else waits on the queue yet, so the claim takes this job.
        claim(store, runner, &queues, started, &job.id)?;
        let (state, reason) = if index % 5 == 4 {
            (FinalState::Failed, "tests failed")
        } else {
            (FinalState::Passed, "")
        };
        store
            .finish_job(&job.id, Some(runner), state, reason, ended)
            .map_err(store_error)?;
    }
    Ok(())
}

/// One running job for each busy agent, from its first queue, started some minutes ago.
fn store_running(
    store: &dyn Store,
    agents: &[PlannedAgent],
    now: Timestamp,
) -> Result<(), LabBenchError> {
    for (index, agent) in agents
        .iter()
        .filter(|agent| agent.role == Role::Busy)
        .enumerate()
    {
        let queues = &agent.queues[..1];
        let started = now - SignedDuration::from_secs(30 + (index as i64 * 17) % 240);
        let submitted = started - SignedDuration::from_secs(20);
        let job = store
            .submit_job(
                &new_job(&queues[0], format!("running for {}", agent.id)),
                submitted,
            )
            .map_err(store_error)?;
        claim(store, &agent.id, queues, started, &job.id)?;
    }
    Ok(())
}

/// Claims the job waiting on `queues` for `agent`, which must be `job_id`.
fn claim(
    store: &dyn Store,
    agent: &str,
    queues: &[String],
    at: Timestamp,
    job_id: &str,
) -> Result<(), LabBenchError> {
    let claimed = store
        .claim_job(agent, queues, at, LEASE)
        .map_err(store_error)?;
    match claimed {
        Some(claim) if claim.job.id == job_id => Ok(()),
        other => Err(LabBenchError::Store(format!(
            "{agent} claimed {:?}, not job {job_id}",
            other.map(|claim| claim.job.id)
        ))),
    }
}

/// [`WAITING`] jobs waiting on `queue`, the oldest for ten minutes.
fn store_waiting(store: &dyn Store, queue: &str, now: Timestamp) -> Result<(), LabBenchError> {
    for index in 0..WAITING {
        let submitted = now - SignedDuration::from_secs(600 - 60 * index as i64);
        store
            .submit_job(&new_job(queue, format!("waiting run {index}")), submitted)
            .map_err(store_error)?;
    }
    Ok(())
}

/// Brings the agents to their states: those in service heard from now (which renews their jobs' leases), the
/// maintenance ones taken out of service, the silent ones marked offline as the server's reaper would.
fn settle_agents(
    store: &dyn Store,
    agents: &[PlannedAgent],
    now: Timestamp,
) -> Result<(), LabBenchError> {
    for agent in agents.iter().filter(|agent| agent.role != Role::Silent) {
        store
            .heartbeat(&agent.id, now, LEASE)
            .map_err(store_error)?;
    }
    for agent in agents
        .iter()
        .filter(|agent| agent.role == Role::Maintenance)
    {
        store
            .set_agent_state(&agent.id, AgentState::Maintenance)
            .map_err(store_error)?;
    }
    store
        .mark_silent_agents_offline(now - SignedDuration::from_hours(1))
        .map_err(store_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(agents: &[PlannedAgent], role: Role) -> usize {
        agents.iter().filter(|agent| agent.role == role).count()
    }

    #[test]
    fn the_big_plan_mixes_states_and_keeps_even_queues_without_idle_agents() {
        let agents = plan(AGENTS, QUEUES);
        assert_eq!(count(&agents, Role::Busy), 380);
        assert_eq!(count(&agents, Role::Idle), 40);
        assert_eq!(count(&agents, Role::Maintenance), 40);
        assert_eq!(count(&agents, Role::Silent), 40);
        for agent in agents.iter().filter(|agent| agent.role == Role::Idle) {
            for queue in &agent.queues {
                let index: usize = queue["pool-".len()..].parse().unwrap_or(0);
                assert_eq!(index % 2, 1, "{agent:?}");
            }
        }
        let on_first = |queue: &str| {
            agents
                .iter()
                .filter(|a| a.queues.contains(&queue.to_owned()))
                .count()
        };
        assert_eq!(on_first("pool-00"), 31);
    }

    #[test]
    fn the_baseline_plan_is_one_queue_of_the_big_one() {
        let agents = plan(BASELINE_AGENTS, 1);
        assert!(agents.iter().all(|agent| agent.queues == ["pool-00"]));
        assert_eq!(count(&agents, Role::Busy), 21);
        assert_eq!(count(&agents, Role::Maintenance), 2);
        assert_eq!(count(&agents, Role::Silent), 2);
    }
}
