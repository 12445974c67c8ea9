//! The behaviours every [`Store`] backend must show, written once and run against each (the SQLite file and
//! PostgreSQL), with the clock in the tests' hands. A backend's test suite calls [`conformance_tests!`] with an
//! expression that makes a fresh, empty [`TestDatabase`]; each behaviour becomes one `#[test]` there.
// A panic is how a conformance test fails: it unwraps and expects freely.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proctor_events::RunStatus;

use crate::copy::{self, TABLES};
use crate::{
    AgentRegistration, AgentState, Artifact, CancelOutcome, FinalState, JobFilter, JobState,
    JobTokenUse, NewJob, Recipe, ResultsProgress, Role, Store, StoreError, StreamKind, TestRun,
};

/// A database a conformance test runs on: empty when made, and open as often as the test asks.
pub trait TestDatabase {
    /// The store on it.
    fn store(&self) -> &dyn Store;
    /// Another store on the same database, with its own connections, as another server process would have.
    fn open_another(&self) -> Arc<dyn Store>;
    /// A second database of the same backend, empty: where a copy goes.
    fn empty_sibling(&self) -> Box<dyn TestDatabase>;
}

/// The lease the tests' claims take.
pub const LEASE: Duration = Duration::from_secs(20);

/// The tests' clock at its start.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("a valid timestamp")
}

/// The tests' clock `seconds` after [`t0`].
pub fn at(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

/// A job for `queue` at `priority`, submitted by alice.
pub fn job_on(queue: &str, priority: i64) -> NewJob {
    NewJob {
        queue: queue.into(),
        name: Some(format!("{queue} job")),
        priority,
        definition: serde_json::json!({ "job_queue": queue, "test_data": { "test_cmds": "true" } }),
        max_attempts: 1,
        submitter: Some("alice".into()),
        held: false,
        recipe_script: None,
    }
}

/// Registers `agent` on `queues`.
pub fn register(store: &dyn Store, agent: &str, queues: &[&str], now: Timestamp) {
    let registration = AgentRegistration {
        id: agent.into(),
        queues: queues.iter().map(|queue| queue.to_string()).collect(),
        images: vec!["noble".into()],
    };
    store
        .register_agent(&registration, now)
        .expect("the agent registers");
}

/// Queue names as the store takes them.
pub fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Claims one job for `agent` on `queue`; its id.
pub fn claim(store: &dyn Store, agent: &str, queue: &str, now: Timestamp) -> Option<String> {
    store
        .claim_job(agent, &queues(&[queue]), now, LEASE)
        .expect("the claim runs")
        .map(|claim| claim.job.id)
}

/// Claims until the queue is empty, returning what this claimer got.
fn drain(store: &dyn Store, agent: &str) -> Vec<String> {
    std::iter::from_fn(|| claim(store, agent, "lab", at(1))).collect()
}

fn run(test_id: &str, route: Option<&str>, status: RunStatus, seconds: (i64, i64)) -> TestRun {
    TestRun {
        attempt: 1,
        test_id: test_id.into(),
        route_code: route.map(str::to_owned),
        retry: 0,
        status,
        reason: None,
        started_at: Some(at(seconds.0)),
        ended_at: Some(at(seconds.1)),
        duration_us: (status != RunStatus::Running)
            .then(|| u64::try_from(seconds.1 - seconds.0).unwrap() * 1_000_000),
        agent_id: None,
        tags: vec!["worker-0".into()],
    }
}

fn progress(attempt: u32, parsed_offset: u64, problem: Option<&str>) -> ResultsProgress {
    ResultsProgress {
        attempt,
        parsed_offset,
        problem: problem.map(str::to_owned),
    }
}

/// Claims take the highest priority then the oldest job.
pub fn claims_take_the_highest_priority_then_the_oldest_job(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let low_old = store
        .submit_job(&job_on("lab", 0), at(1))
        .expect("submit")
        .id;
    let high_new = store
        .submit_job(&job_on("lab", 5), at(3))
        .expect("submit")
        .id;
    let high_old = store
        .submit_job(&job_on("lab", 5), at(2))
        .expect("submit")
        .id;
    let low_new = store
        .submit_job(&job_on("lab", 0), at(4))
        .expect("submit")
        .id;
    let order: Vec<_> = (0..5).map(|_| claim(store, "a1", "lab", at(10))).collect();
    assert_eq!(
        order,
        [
            Some(high_old),
            Some(high_new),
            Some(low_old),
            Some(low_new),
            None
        ]
    );
}

/// A claim sets running state agent lease and attempt.
pub fn a_claim_sets_running_state_agent_lease_and_attempt(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    store.submit_job(&job_on("lab", 0), t0()).expect("submit");
    let job = store
        .claim_job("a1", &queues(&["lab"]), at(5), LEASE)
        .expect("claim")
        .expect("a job")
        .job;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.agent_id.as_deref(), Some("a1"));
    assert_eq!(job.attempts, 1);
    assert_eq!(job.started_at, Some(at(5)));
    assert_eq!(job.lease_expires_at, Some(at(25)));
    assert_eq!(store.agents().expect("agents")[0].state, AgentState::Busy);
}

/// Claims respect queues holds maintenance and registration.
pub fn claims_respect_queues_holds_maintenance_and_registration(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab", "other"], t0());
    let held = store
        .submit_job(
            &NewJob {
                held: true,
                ..job_on("lab", 9)
            },
            t0(),
        )
        .expect("submit")
        .id;
    let other = store
        .submit_job(&job_on("other", 0), t0())
        .expect("submit")
        .id;
    assert_eq!(
        claim(store, "a1", "lab", at(1)),
        None,
        "a held job is not claimable"
    );
    store
        .store_attachments(&held, b"tar", at(1))
        .expect("attachments release the job");
    store
        .set_agent_state("a1", AgentState::Maintenance)
        .expect("maintenance");
    assert_eq!(
        claim(store, "a1", "lab", at(2)),
        None,
        "an agent in maintenance claims nothing"
    );
    store
        .set_agent_state("a1", AgentState::Idle)
        .expect("back in service");
    assert_eq!(claim(store, "a1", "lab", at(3)), Some(held));
    assert_eq!(claim(store, "a1", "other", at(3)), Some(other));
    let error = store
        .claim_job("ghost", &queues(&["lab"]), at(4), LEASE)
        .expect_err("unregistered agents fail");
    assert!(
        matches!(&error, StoreError::AgentNotFound(id) if id == "ghost"),
        "{error}"
    );
}

/// Concurrent claimers on two store instances never share a job.
pub fn concurrent_claimers_on_two_store_instances_never_share_a_job(database: &dyn TestDatabase) {
    let first = database.open_another();
    let second = database.open_another();
    let submitted: BTreeSet<String> = (0..60)
        .map(|_| {
            first
                .submit_job(&job_on("lab", 0), t0())
                .expect("submit")
                .id
        })
        .collect();
    let claimers: Vec<_> = (0..4)
        .map(|index| {
            let store = if index % 2 == 0 {
                Arc::clone(&first)
            } else {
                Arc::clone(&second)
            };
            let agent = format!("agent-{index}");
            register(&*store, &agent, &["lab"], t0());
            std::thread::spawn(move || drain(&*store, &agent))
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.join().expect("a claimer thread"));
    }
    let distinct: BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), distinct.len(), "a job was claimed twice");
    assert_eq!(distinct, submitted, "every job was claimed once");
}

/// Heartbeats renew leases so the reaper leaves the job alone.
pub fn heartbeats_renew_leases_so_the_reaper_leaves_the_job_alone(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    claim(store, "a1", "lab", t0());
    let reply = store.heartbeat("a1", at(15), LEASE).expect("heartbeat");
    assert_eq!(reply.renewed, std::slice::from_ref(&job));
    assert!(reply.cancel_requested.is_empty());
    assert!(
        store.reap_expired_leases(at(30)).expect("reap").is_empty(),
        "the renewed lease runs to 35 s"
    );
    assert_eq!(store.job(&job).expect("job").lease_expires_at, Some(at(35)));
    let error = store
        .heartbeat("ghost", at(16), LEASE)
        .expect_err("unknown agent");
    assert!(matches!(error, StoreError::AgentNotFound(_)), "{error}");
}

/// Agents `a1` and `a2` on queue `lab`, and a job there that may be claimed twice; its id.
fn two_agents_and_a_job_of_two_attempts(store: &dyn Store) -> String {
    register(store, "a1", &["lab"], t0());
    register(store, "a2", &["lab"], t0());
    store
        .submit_job(
            &NewJob {
                max_attempts: 2,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id
}

/// A lapsed lease requeues while attempts remain then errors with agent lost.
pub fn a_lapsed_lease_requeues_while_attempts_remain_then_errors_with_agent_lost(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    let job = two_agents_and_a_job_of_two_attempts(store);
    assert_eq!(claim(store, "a1", "lab", t0()), Some(job.clone()));
    assert!(
        store.reap_expired_leases(at(20)).expect("reap").is_empty(),
        "the lease lapses after 20 s, not at"
    );

    let reaped = store.reap_expired_leases(at(21)).expect("reap");
    assert_eq!(
        (
            reaped[0].new_state,
            reaped[0].agent_id.as_deref(),
            reaped[0].queue.as_str()
        ),
        (JobState::Queued, Some("a1"), "lab")
    );
    let requeued = store.job(&job).expect("job");
    assert_eq!(
        (requeued.state, requeued.agent_id.clone(), requeued.attempts),
        (JobState::Queued, None, 1)
    );
    assert!(
        requeued
            .reason
            .as_deref()
            .is_some_and(|reason| reason.contains("a1 lost")),
        "{requeued:?}"
    );
    assert!(
        store
            .heartbeat("a1", at(22), LEASE)
            .expect("heartbeat")
            .renewed
            .is_empty(),
        "a1 lost the job"
    );

    assert_eq!(claim(store, "a2", "lab", at(30)), Some(job.clone()));
    let reaped = store.reap_expired_leases(at(51)).expect("reap");
    assert_eq!(reaped[0].new_state, JobState::Error);
    let failed = store.job(&job).expect("job");
    assert_eq!(
        (failed.state, failed.attempts, failed.ended_at),
        (JobState::Error, 2, Some(at(51)))
    );
    assert!(
        failed
            .reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with("agent lost")),
        "{failed:?}"
    );
    assert_eq!(
        store.agents().expect("agents")[1].state,
        AgentState::Idle,
        "a2 holds no job any more"
    );
    let error = store
        .finish_job(&job, Some("a2"), FinalState::Passed, "done", at(52))
        .expect_err("too late");
    assert!(
        matches!(
            error,
            StoreError::JobNotRunning {
                state: JobState::Error,
                ..
            }
        ),
        "{error}"
    );
}

/// Only the holding agent finishes a job and the result is kept.
pub fn only_the_holding_agent_finishes_a_job_and_the_result_is_kept(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    register(store, "a2", &["lab"], t0());
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    claim(store, "a1", "lab", t0());
    let error = store
        .finish_job(&job, Some("a2"), FinalState::Passed, "ok", at(1))
        .expect_err("not a2's job");
    assert!(
        matches!(&error, StoreError::NotJobHolder { holder, .. } if holder == "a1"),
        "{error}"
    );
    let finished = store
        .finish_job(&job, Some("a1"), FinalState::Failed, "test exited 1", at(2))
        .expect("finish");
    assert_eq!(finished.state, JobState::Failed);
    assert_eq!(finished.reason.as_deref(), Some("test exited 1"));
    assert_eq!(
        (finished.ended_at, finished.lease_expires_at),
        (Some(at(2)), None)
    );
    assert_eq!(store.agents().expect("agents")[0].state, AgentState::Idle);
    assert!(matches!(store.job("nope"), Err(StoreError::JobNotFound(_))));
}

/// Cancelling a queued job ends it and a running one tells its agent.
pub fn cancelling_a_queued_job_ends_it_and_a_running_one_tells_its_agent(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let waiting = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    assert_eq!(
        store.request_cancel(&waiting, at(1)).expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert_eq!(store.job(&waiting).expect("job").state, JobState::Cancelled);
    assert_eq!(
        claim(store, "a1", "lab", at(2)),
        None,
        "a cancelled job is never claimed"
    );

    let running = store
        .submit_job(&job_on("lab", 0), at(3))
        .expect("submit")
        .id;
    claim(store, "a1", "lab", at(3));
    assert_eq!(
        store.request_cancel(&running, at(4)).expect("cancel"),
        CancelOutcome::Requested
    );
    let reply = store.heartbeat("a1", at(5), LEASE).expect("heartbeat");
    assert_eq!(reply.cancel_requested, std::slice::from_ref(&running));
    store
        .finish_job(
            &running,
            Some("a1"),
            FinalState::Cancelled,
            "cancelled by alice",
            at(6),
        )
        .expect("finish");
    assert_eq!(
        store.request_cancel(&running, at(7)).expect("cancel"),
        CancelOutcome::AlreadyEnded {
            state: JobState::Cancelled
        }
    );
}

/// A pending cancel whose agent is lost ends cancelled not requeued.
pub fn a_pending_cancel_whose_agent_is_lost_ends_cancelled_not_requeued(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(
            &NewJob {
                max_attempts: 3,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id;
    claim(store, "a1", "lab", t0());
    store.request_cancel(&job, at(1)).expect("cancel");
    let reaped = store.reap_expired_leases(at(60)).expect("reap");
    assert_eq!(reaped[0].new_state, JobState::Cancelled);
}

/// Log appends are idempotent and a gap names the expected offset.
pub fn log_appends_are_idempotent_and_a_gap_names_the_expected_offset(database: &dyn TestDatabase) {
    let store = database.store();
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    let append = |offset, phase, bytes: &[u8]| {
        store.append_stream(&job, StreamKind::Log, offset, Some(phase), bytes)
    };
    assert_eq!(append(0, "setup", b"hello ").expect("first chunk"), 6);
    assert_eq!(append(0, "setup", b"hello ").expect("exact duplicate"), 6);
    assert_eq!(append(2, "setup", b"llo").expect("duplicate inside"), 6);
    assert_eq!(
        append(3, "test", b"lo world").expect("overlap keeps the tail"),
        11
    );
    assert_eq!(append(11, "test", b"").expect("empty chunk"), 11);
    let error = append(15, "test", b"!!").expect_err("a gap is refused");
    assert!(
        matches!(
            error,
            StoreError::StreamGap {
                expected: 11,
                got: 15,
                stream: StreamKind::Log,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("ends at offset 11"), "{error}");
    assert_eq!(append(11, "test", b"!\n").expect("resend from the end"), 13);

    let whole: Vec<u8> = store
        .read_stream(&job, StreamKind::Log, 0, None)
        .expect("read")
        .into_iter()
        .flat_map(|chunk| chunk.bytes)
        .collect();
    assert_eq!(whole, b"hello world!\n");
    let test_phase = store
        .read_stream(&job, StreamKind::Log, 0, Some("test"))
        .expect("read");
    assert_eq!(
        test_phase
            .iter()
            .map(|chunk| chunk.offset)
            .collect::<Vec<_>>(),
        [6, 11]
    );
    let tail = store
        .read_stream(&job, StreamKind::Log, 11, None)
        .expect("read from 11");
    assert_eq!((tail.len(), tail[0].offset), (1, 11));
    assert_eq!(
        store
            .stream_end(&job, StreamKind::Results)
            .expect("results end"),
        0,
        "streams are separate"
    );
    let error = store
        .append_stream("nope", StreamKind::Log, 0, None, b"x")
        .expect_err("unknown job");
    assert!(matches!(error, StoreError::JobNotFound(_)), "{error}");
}

/// Queues report depth and whether any agent ever served them.
pub fn queues_report_depth_and_whether_any_agent_ever_served_them(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    store.submit_job(&job_on("lab", 0), t0()).expect("submit");
    store.submit_job(&job_on("lab", 0), t0()).expect("submit");
    store.submit_job(&job_on("typo", 0), t0()).expect("submit");
    claim(store, "a1", "lab", at(1));
    let lab = store.queue("lab").expect("query").expect("lab is known");
    assert_eq!(
        (lab.ever_served, lab.queued, lab.running, lab.agents_online),
        (true, 1, 1, 1)
    );
    let typo = store
        .queue("typo")
        .expect("query")
        .expect("typo was named by a job");
    assert!(!typo.ever_served);
    assert_eq!(store.queue("never").expect("query"), None);
    assert_eq!(
        store
            .queues()
            .expect("queues")
            .iter()
            .map(|queue| &queue.name[..])
            .collect::<Vec<_>>(),
        ["lab", "typo"]
    );

    assert_eq!(store.online_agents().expect("count"), 1);
    let offline = store.mark_silent_agents_offline(at(100)).expect("mark");
    assert_eq!(offline, ["a1"]);
    assert_eq!(store.online_agents().expect("count"), 0);
    let lab = store.queue("lab").expect("query").expect("lab is known");
    assert_eq!(
        (lab.ever_served, lab.agents_online),
        (true, 0),
        "served once stays served"
    );
    store.heartbeat("a1", at(101), LEASE).expect("heartbeat");
    assert_eq!(
        store.agents().expect("agents")[0].state,
        AgentState::Busy,
        "back, and still holding its job"
    );
}

/// Jobs are listed newest first by queue and state.
pub fn jobs_are_listed_newest_first_by_queue_and_state(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let first = store
        .submit_job(&job_on("lab", 0), at(1))
        .expect("submit")
        .id;
    let second = store
        .submit_job(&job_on("lab", 0), at(2))
        .expect("submit")
        .id;
    let elsewhere = store
        .submit_job(&job_on("other", 0), at(3))
        .expect("submit")
        .id;
    claim(store, "a1", "lab", at(4));
    let ids = |filter: JobFilter| -> Vec<String> {
        store
            .list_jobs(&filter)
            .expect("list")
            .jobs
            .into_iter()
            .map(|job| job.id)
            .collect()
    };
    assert_eq!(
        ids(JobFilter::default()),
        [elsewhere.clone(), second.clone(), first.clone()]
    );
    assert_eq!(
        ids(JobFilter {
            queue: Some("lab".into()),
            ..JobFilter::default()
        }),
        [second.clone(), first.clone()]
    );
    assert_eq!(
        ids(JobFilter {
            state: Some(JobState::Running),
            ..JobFilter::default()
        }),
        std::slice::from_ref(&first)
    );
    assert_eq!(
        ids(JobFilter {
            limit: 1,
            ..JobFilter::default()
        }),
        std::slice::from_ref(&elsewhere)
    );
    let by_someone = store
        .submit_job(
            &NewJob {
                submitter: Some("someone".into()),
                ..job_on("lab", 0)
            },
            at(5),
        )
        .expect("submit")
        .id;
    assert_eq!(
        ids(JobFilter {
            submitter: Some("someone".into()),
            ..JobFilter::default()
        }),
        std::slice::from_ref(&by_someone)
    );
    // Pages of two follow each other by their cursor, neither skipping nor repeating a job, even when a job is
    // submitted between two pages (it is newer, so it belongs before the first page).
    let page = |after| {
        store
            .list_jobs(&JobFilter {
                limit: 2,
                after,
                ..JobFilter::default()
            })
            .expect("list")
    };
    let first_page = page(None);
    store.submit_job(&job_on("lab", 0), at(6)).expect("submit");
    let second_page = page(first_page.next);
    let listed: Vec<String> = [&first_page, &second_page]
        .iter()
        .flat_map(|page| page.jobs.iter().map(|job| job.id.clone()))
        .collect();
    assert_eq!(listed, [by_someone, elsewhere, second, first]);
    assert!(first_page.next.is_some());
    assert_eq!(second_page.next, None, "the last page says so");
    let error = store
        .submit_job(
            &NewJob {
                max_attempts: 0,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect_err("no attempts");
    assert!(matches!(error, StoreError::NoAttempts), "{error}");
}

/// Tokens verify their own secret and deny forged or revoked ones.
pub fn tokens_verify_their_own_secret_and_deny_forged_or_revoked_ones(database: &dyn TestDatabase) {
    let store = database.store();
    assert!(!store.has_tokens().expect("has tokens"));
    let agent = store
        .create_token(Role::Agent, &queues(&["lab"]), t0())
        .expect("create");
    let admin = store.create_token(Role::Admin, &[], t0()).expect("create");
    assert!(store.has_tokens().expect("has tokens"));
    assert_ne!(agent.secret, admin.secret);
    assert!(
        agent.secret.starts_with("proctor_") && agent.secret.len() > 60,
        "{}",
        agent.secret
    );

    let verified = store
        .verify_token(&agent.secret)
        .expect("verify")
        .expect("a valid secret");
    assert_eq!(verified, agent.token);
    assert!(verified.allows_queue("lab") && !verified.allows_queue("other"));
    assert!(store
        .verify_token(&admin.secret)
        .expect("verify")
        .expect("valid")
        .allows_queue("anything"));
    // The last hex digit changed (to one it is not: a fixed replacement would equal it one time in sixteen).
    let last = if agent.secret.ends_with('0') {
        '1'
    } else {
        '0'
    };
    let forged = format!("{}{last}", &agent.secret[..agent.secret.len() - 1]);
    assert_eq!(store.verify_token(&forged).expect("verify"), None);
    assert_eq!(store.verify_token("").expect("verify"), None);

    store.revoke_token(&agent.token.id).expect("revoke");
    assert_eq!(store.verify_token(&agent.secret).expect("verify"), None);
    assert_eq!(store.tokens().expect("tokens"), [admin.token]);
    assert!(matches!(
        store.revoke_token(&agent.token.id),
        Err(StoreError::TokenNotFound(_))
    ));
}

/// Phases artifacts and recipes round trip.
pub fn phases_artifacts_and_recipes_round_trip(database: &dyn TestDatabase) {
    let store = database.store();
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    store.start_phase(&job, "setup", at(1)).expect("start");
    store.end_phase(&job, "setup", 0, at(2)).expect("end");
    store.start_phase(&job, "test", at(3)).expect("start");
    store.end_phase(&job, "test", 3, at(5)).expect("end");
    let phases = store.phases(&job).expect("phases");
    assert_eq!(
        phases
            .iter()
            .map(|phase| (&phase.name[..], phase.exit_status))
            .collect::<Vec<_>>(),
        [("setup", Some(0)), ("test", Some(3))]
    );
    assert!(matches!(
        store.end_phase(&job, "reserve", 0, at(6)),
        Err(StoreError::PhaseNotFound { .. })
    ));

    let logs = Artifact {
        name: "logs.tar.gz".into(),
        size: 3,
        content: vec![1, 2, 3],
    };
    let report = Artifact {
        name: "report.tar.gz".into(),
        size: 1,
        content: vec![4],
    };
    store.put_artifact(&job, &report).expect("report");
    store.put_artifact(&job, &logs).expect("logs");
    let replaced = Artifact {
        size: 2,
        content: vec![5, 6],
        ..report
    };
    store.put_artifact(&job, &replaced).expect("replace");
    assert_eq!(store.artifacts(&job).expect("artifacts"), [logs, replaced]);

    let recipe = Recipe {
        name: "smoke".into(),
        script: "#!/bin/sh\necho \"$@\"\n".into(),
        default_options: BTreeMap::from([("level".into(), "1".into())]),
        queue: "lab".into(),
    };
    store.put_recipe(&recipe, t0()).expect("put");
    let changed = Recipe {
        queue: "other".into(),
        ..recipe
    };
    store.put_recipe(&changed, at(1)).expect("replace");
    assert_eq!(store.recipe("smoke").expect("recipe"), changed);
    assert_eq!(store.recipes().expect("recipes"), [changed]);
    store.remove_recipe("smoke").expect("remove");
    assert!(matches!(
        store.recipe("smoke"),
        Err(StoreError::RecipeNotFound(_))
    ));
    assert!(matches!(
        store.remove_recipe("smoke"),
        Err(StoreError::RecipeNotFound(_))
    ));
}

/// Parsed runs end their open run keep routes and reruns apart and a stale parse changes nothing.
pub fn parsed_runs_end_their_open_run_keep_routes_and_reruns_apart_and_a_stale_parse_changes_nothing(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    claim(store, "a1", "lab", t0());
    let first = [
        run("t.b", None, RunStatus::Success, (0, 1)),
        run("t.a", Some("0"), RunStatus::Running, (1, 1)),
        run("t.a", Some("1"), RunStatus::Running, (1, 2)),
    ];
    assert!(store
        .record_parsed_results(&job, &progress(1, 0, None), &progress(1, 10, None), &first)
        .expect("record"));
    let open = store.open_test_runs(&job, 1).expect("open runs");
    assert_eq!(
        open,
        first[1..]
            .iter()
            .map(|r| TestRun {
                agent_id: Some("a1".into()),
                ..r.clone()
            })
            .collect::<Vec<_>>()
    );
    // A second parser that read from 0 too lost the race: nothing it saw is recorded again.
    assert!(!store
        .record_parsed_results(&job, &progress(1, 0, None), &progress(1, 10, None), &first)
        .expect("record"));
    let second = [
        run("t.a", Some("0"), RunStatus::Fail, (1, 4)),
        run("t.a", Some("1"), RunStatus::Success, (1, 5)),
        run("t.a", Some("0"), RunStatus::Success, (6, 7)),
    ];
    assert!(store
        .record_parsed_results(
            &job,
            &progress(1, 10, None),
            &progress(1, 25, None),
            &second
        )
        .expect("record"));
    let runs = store.test_runs(&job).expect("runs");
    let seen: Vec<_> = runs
        .iter()
        .map(|r| {
            (
                r.test_id.as_str(),
                r.route_code.as_deref(),
                r.status,
                r.duration_us,
                r.agent_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "t.a",
                Some("0"),
                RunStatus::Fail,
                Some(3_000_000),
                Some("a1")
            ),
            (
                "t.a",
                Some("1"),
                RunStatus::Success,
                Some(4_000_000),
                Some("a1")
            ),
            (
                "t.a",
                Some("0"),
                RunStatus::Success,
                Some(1_000_000),
                Some("a1")
            ),
            ("t.b", None, RunStatus::Success, Some(1_000_000), Some("a1")),
        ],
        "runs come by test id, then in the order they were recorded"
    );
    assert!(store.open_test_runs(&job, 1).expect("open runs").is_empty());
    assert!(store
        .record_parsed_results(
            &job,
            &progress(1, 25, None),
            &progress(1, 25, Some("corrupt at 25")),
            &[]
        )
        .expect("record"));
    assert_eq!(
        store.results_progress(&job).expect("progress"),
        progress(1, 25, Some("corrupt at 25"))
    );
}

/// A requeued job's next attempt uploads from its own offset 0: its bytes go after the first attempt's instead of
/// being taken for a resend of them, and the attempt records where it starts and who ran it.
pub fn a_requeued_jobs_next_attempt_appends_after_the_last_ones_streams(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    let job = two_agents_and_a_job_of_two_attempts(store);
    claim(store, "a1", "lab", t0());
    for stream in [StreamKind::Log, StreamKind::Results] {
        assert_eq!(
            store
                .append_stream(&job, stream, 0, None, b"first ")
                .expect("append"),
            6
        );
    }
    store.reap_expired_leases(at(21)).expect("reap");
    claim(store, "a2", "lab", at(30));
    for stream in [StreamKind::Log, StreamKind::Results] {
        assert_eq!(
            store
                .append_stream(&job, stream, 0, None, b"second")
                .expect("append"),
            6
        );
        assert_eq!(
            store
                .append_stream(&job, stream, 2, None, b"cond")
                .expect("a resend"),
            6
        );
        let gap = store
            .append_stream(&job, stream, 7, None, b"x")
            .expect_err("a gap");
        assert!(
            matches!(
                gap,
                StoreError::StreamGap {
                    expected: 6,
                    got: 7,
                    ..
                }
            ),
            "{gap}"
        );
        let bytes: Vec<u8> = store
            .read_stream(&job, stream, 0, None)
            .expect("read")
            .into_iter()
            .flat_map(|chunk| chunk.bytes)
            .collect();
        assert_eq!(bytes, b"first second");
    }
    let attempts = store.job_attempts(&job).expect("attempts");
    let seen: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.agent_id.as_deref(),
                a.results_base,
                a.end_reason.is_some(),
            )
        })
        .collect();
    assert_eq!(seen, [(1, Some("a1"), 0, true), (2, Some("a2"), 6, false)]);
    assert!(attempts[0]
        .end_reason
        .as_deref()
        .unwrap()
        .contains("a1 lost"));
    // A parse of attempt 1 that read on into attempt 2's bytes (the claim came while it read) is refused: those
    // bytes are attempt 2's. Stopping at attempt 2's start is recorded.
    let past = progress(1, 8, None);
    assert!(!store
        .record_parsed_results(&job, &progress(1, 0, None), &past, &[])
        .expect("record"));
    let at_start = progress(1, 6, None);
    assert!(store
        .record_parsed_results(&job, &progress(1, 0, None), &at_start, &[])
        .expect("record"));
}

/// The `work` and `work-done` streams (a `proctor run --lab` and the job serving it as a worker) append and read
/// apart from the log, the results and each other, from the job's offset 0 in every attempt, idempotently (a resend
/// of stored bytes is harmless, a gap is a [`StoreError::StreamGap`]), and a copy keeps them.
pub fn work_streams_count_from_the_jobs_start_apart_from_log_results_and_each_other(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    let job = two_agents_and_a_job_of_two_attempts(store);
    // The submitter may ask before any claim.
    assert_eq!(
        store
            .append_stream(&job, StreamKind::Work, 0, None, b"{\"batch\":0}\n")
            .expect("work before the claim"),
        12
    );
    claim(store, "a1", "lab", t0());
    store
        .append_stream(&job, StreamKind::Log, 0, Some("test"), b"log ")
        .expect("log");
    store
        .append_stream(&job, StreamKind::Results, 0, None, b"results ")
        .expect("results");
    assert_eq!(
        store
            .append_stream(&job, StreamKind::WorkDone, 0, None, b"ready\n")
            .expect("work-done"),
        6
    );
    // A later attempt's log and results start at their own offset 0; work and work-done go on from the job's.
    store.reap_expired_leases(at(21)).expect("reap");
    claim(store, "a2", "lab", at(30));
    for (stream, stored, more) in [
        (StreamKind::Work, &b"{\"batch\":0}\n"[..], &b"end\n"[..]),
        (StreamKind::WorkDone, &b"ready\n"[..], &b"done\n"[..]),
    ] {
        let end = stored.len() as u64;
        assert_eq!(
            store
                .append_stream(&job, stream, 0, None, stored)
                .expect("a resend from the job's start"),
            end,
            "{stream}: offset 0 is the job's start in every attempt"
        );
        let gap = store
            .append_stream(&job, stream, end + 1, None, b"x")
            .expect_err("a gap");
        assert!(
            matches!(
                gap,
                StoreError::StreamGap {
                    stream: found,
                    expected,
                    got,
                    ..
                } if found == stream && expected == end && got == end + 1
            ),
            "{gap}"
        );
        assert_eq!(
            store
                .append_stream(&job, stream, end, None, more)
                .expect("append at the end"),
            end + more.len() as u64
        );
        assert_eq!(
            store
                .append_stream(&job, stream, end, None, more)
                .expect("a resend"),
            end + more.len() as u64
        );
    }
    assert_eq!(
        store
            .append_stream(&job, StreamKind::Log, 0, Some("test"), b"again")
            .expect("log of attempt 2"),
        5
    );
    let bytes = |stream| -> Vec<u8> {
        store
            .read_stream(&job, stream, 0, None)
            .expect("read")
            .into_iter()
            .flat_map(|chunk| chunk.bytes)
            .collect()
    };
    assert_eq!(bytes(StreamKind::Work), b"{\"batch\":0}\nend\n");
    assert_eq!(bytes(StreamKind::WorkDone), b"ready\ndone\n");
    assert_eq!(bytes(StreamKind::Log), b"log again");
    assert_eq!(bytes(StreamKind::Results), b"results ");
    let tail = store
        .read_stream(&job, StreamKind::WorkDone, 6, None)
        .expect("read from 6");
    assert_eq!(
        tail.iter()
            .map(|chunk| (chunk.offset, chunk.bytes.as_slice()))
            .collect::<Vec<_>>(),
        [(6, &b"done\n"[..])]
    );
    assert_eq!(store.stream_end(&job, StreamKind::Work).expect("end"), 16);
    assert_eq!(
        store.stream_end(&job, StreamKind::WorkDone).expect("end"),
        11
    );

    let target = database.empty_sibling();
    let to = target.store();
    copy::copy(store, to, &mut |_, _| {}).expect("copy");
    for stream in [StreamKind::Work, StreamKind::WorkDone] {
        assert_eq!(
            to.read_stream(&job, stream, 0, None).expect("copied"),
            store.read_stream(&job, stream, 0, None).expect("original"),
            "{stream}"
        );
    }
    let unknown = store
        .append_stream("nope", StreamKind::Work, 0, None, b"x")
        .expect_err("unknown job");
    assert!(matches!(unknown, StoreError::JobNotFound(_)), "{unknown}");
}

/// The stream and results-parsing reads answer from the job's row, so an unknown job is `JobNotFound` and a known
/// job with nothing stored yet is an empty stream, not parsed.
pub fn streams_and_results_parsing_of_an_unknown_job_are_job_not_found(
    database: &dyn TestDatabase,
) {
    let store = database.store();
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    assert_eq!(store.stream_end(&job, StreamKind::Results).expect("end"), 0);
    assert!(store
        .read_stream(&job, StreamKind::Results, 0, None)
        .expect("read")
        .is_empty());
    let parsed = store.results_progress(&job).expect("progress");
    assert_eq!((parsed.parsed_offset, parsed.problem), (0, None));
    let unknown = [
        store.stream_end("nope", StreamKind::Results).map(drop),
        store
            .read_stream("nope", StreamKind::Results, 0, None)
            .map(drop),
        store.results_progress("nope").map(drop),
        store
            .record_parsed_results("nope", &progress(1, 0, None), &progress(1, 0, None), &[])
            .map(drop),
        store.test_runs("nope").map(drop),
        store.job_attempts("nope").map(drop),
    ];
    for answer in unknown {
        assert!(
            matches!(answer, Err(StoreError::JobNotFound(ref id)) if id == "nope"),
            "{answer:?}"
        );
    }
}

/// Attachments release a held job once.
pub fn attachments_release_a_held_job_once(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(
            &NewJob {
                held: true,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id;
    assert_eq!(claim(store, "a1", "lab", t0()), None);
    assert_eq!(store.attachments(&job).expect("read"), None);
    store.store_attachments(&job, b"tar", t0()).expect("store");
    assert_eq!(
        store.attachments(&job).expect("read"),
        Some(b"tar".to_vec())
    );
    let again = store
        .store_attachments(&job, b"tar", t0())
        .expect_err("not held any more");
    assert!(matches!(again, StoreError::NotHeld { .. }), "{again}");
    let claimed = store
        .claim_job("a1", &queues(&["lab"]), t0(), LEASE)
        .expect("claim")
        .expect("the released job");
    assert_eq!(claimed.job.id, job);
    assert!(claimed.has_attachments);
}

/// Each claim hands over a fresh job token and the recipe script.
pub fn each_claim_hands_over_a_fresh_job_token_and_the_recipe_script(database: &dyn TestDatabase) {
    let store = database.store();
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(
            &NewJob {
                recipe_script: Some("#!/bin/sh\n".into()),
                max_attempts: 2,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id;
    let take = |now| {
        store
            .claim_job("a1", &queues(&["lab"]), now, LEASE)
            .expect("claim")
            .expect("the job")
    };
    let first = take(t0());
    assert_eq!(first.recipe_script.as_deref(), Some("#!/bin/sh\n"));
    assert!(!first.has_attachments);
    let token_use = |state, current| JobTokenUse {
        job_id: job.clone(),
        job_state: state,
        current,
    };
    assert_eq!(
        store.verify_job_token(&first.job_token).expect("verify"),
        Some(token_use(JobState::Running, true))
    );
    assert_eq!(store.job_queue(&job).expect("its queue"), "lab");
    assert!(matches!(
        store.job_queue("nope"),
        Err(StoreError::JobNotFound(_))
    ));
    // The lease lapses and the job is requeued: the next attempt's token replaces the first, which is still known
    // as superseded (so its holder can be told why it is refused).
    let requeued = store.reap_expired_leases(at(60)).expect("reap");
    assert_eq!(requeued.len(), 1);
    let second = take(at(61));
    assert_eq!(second.job.attempts, 2);
    assert_eq!(
        store.verify_job_token(&first.job_token).expect("verify"),
        Some(token_use(JobState::Running, false))
    );
    assert_eq!(
        store.verify_job_token(&second.job_token).expect("verify"),
        Some(token_use(JobState::Running, true))
    );
    assert_eq!(store.verify_job_token("forged").expect("verify"), None);
    // The token outlives its job's run; its answer says the job ended, so the server refuses it.
    store
        .finish_job(&job, Some("a1"), FinalState::Passed, "done", at(62))
        .expect("finish");
    assert_eq!(
        store.verify_job_token(&second.job_token).expect("verify"),
        Some(token_use(JobState::Passed, true))
    );
    assert!(!store.has_tokens().expect("has tokens"));
    assert_eq!(store.verify_token(&second.job_token).expect("verify"), None);
}

/// Every row of every table, as a copy sees them.
fn every_row(store: &dyn Store) -> Vec<(&'static str, Vec<Vec<copy::Value>>)> {
    TABLES
        .iter()
        .map(|table| {
            (
                table.name,
                store.export_rows(table, 0, u32::MAX).expect("export"),
            )
        })
        .collect()
}

/// A copy moves every table whole, the copy works as the original did, and a second copy is refused.
pub fn a_copy_moves_every_row_and_a_second_copy_is_refused(database: &dyn TestDatabase) {
    let from = database.store();
    register(from, "a1", &["lab"], t0());
    let admin = from.create_token(Role::Admin, &[], t0()).expect("token");
    from.put_recipe(
        &Recipe {
            name: "nightly".into(),
            script: "#!/bin/sh\necho nightly\n".into(),
            default_options: BTreeMap::from([("lines".to_owned(), "3".to_owned())]),
            queue: "lab".into(),
        },
        t0(),
    )
    .expect("recipe");
    let held = from
        .submit_job(
            &NewJob {
                held: true,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id;
    from.store_attachments(&held, b"attached tar", at(1))
        .expect("attach");
    let ran = from
        .submit_job(&job_on("lab", 5), at(2))
        .expect("submit")
        .id;
    let claimed = from
        .claim_job("a1", &queues(&["lab"]), at(3), LEASE)
        .expect("claim")
        .expect("the job");
    assert_eq!(claimed.job.id, ran);
    from.start_phase(&ran, "test", at(3)).expect("phase");
    from.append_stream(&ran, StreamKind::Log, 0, Some("test"), b"hello\n")
        .expect("log");
    from.append_stream(&ran, StreamKind::Results, 0, None, b"\xb3subunit")
        .expect("results");
    let parsed = progress(1, 9, None);
    assert!(from
        .record_parsed_results(
            &ran,
            &ResultsProgress::default(),
            &parsed,
            &[run("t.one", Some("0"), RunStatus::Success, (3, 4))],
        )
        .expect("runs"));
    from.put_artifact(
        &ran,
        &Artifact {
            name: "out.tar.gz".into(),
            size: 3,
            content: b"art".to_vec(),
        },
    )
    .expect("artifact");
    from.end_phase(&ran, "test", 0, at(4)).expect("phase end");
    from.finish_job(&ran, Some("a1"), FinalState::Passed, "", at(5))
        .expect("finish");

    let target = database.empty_sibling();
    let to = target.store();
    let mut tables = Vec::new();
    let report = copy::copy(from, to, &mut |table, _| tables.push(table)).expect("copy");
    assert_eq!(tables.len(), TABLES.len());
    assert!(report
        .rows
        .iter()
        .any(|(table, rows)| *table == "jobs" && *rows == 2));
    assert_eq!(every_row(to), every_row(from), "every row moved as it was");
    assert_eq!(to.job(&ran).expect("job"), from.job(&ran).expect("job"));
    assert_eq!(
        to.verify_token(&admin.secret).expect("verify"),
        Some(admin.token.clone())
    );
    assert_eq!(
        to.read_stream(&ran, StreamKind::Log, 0, None).expect("log"),
        from.read_stream(&ran, StreamKind::Log, 0, None)
            .expect("log")
    );
    // The copy goes on where the original was: a new job is the newest, and the held job is claimable.
    let next = to.submit_job(&job_on("lab", 0), at(6)).expect("submit").id;
    let listed = to.list_jobs(&JobFilter::default()).expect("list");
    assert_eq!(listed.jobs.first().map(|job| job.id.clone()), Some(next));
    assert_eq!(claim(to, "a1", "lab", at(7)), Some(held));

    let again = copy::copy(from, to, &mut |_, _| {}).expect_err("a second copy");
    assert!(matches!(again, StoreError::NotEmpty { .. }), "{again}");
}

/// One `#[test]` per behaviour, each on a fresh database made by the expression given (a [`TestDatabase`]).
#[macro_export]
macro_rules! conformance_tests {
    ($database:expr) => {
        $crate::conformance_tests!(@each $database; claims_take_the_highest_priority_then_the_oldest_job, a_claim_sets_running_state_agent_lease_and_attempt, claims_respect_queues_holds_maintenance_and_registration, concurrent_claimers_on_two_store_instances_never_share_a_job, heartbeats_renew_leases_so_the_reaper_leaves_the_job_alone, a_lapsed_lease_requeues_while_attempts_remain_then_errors_with_agent_lost, only_the_holding_agent_finishes_a_job_and_the_result_is_kept, cancelling_a_queued_job_ends_it_and_a_running_one_tells_its_agent, a_pending_cancel_whose_agent_is_lost_ends_cancelled_not_requeued, log_appends_are_idempotent_and_a_gap_names_the_expected_offset, queues_report_depth_and_whether_any_agent_ever_served_them, jobs_are_listed_newest_first_by_queue_and_state, tokens_verify_their_own_secret_and_deny_forged_or_revoked_ones, phases_artifacts_and_recipes_round_trip, parsed_runs_end_their_open_run_keep_routes_and_reruns_apart_and_a_stale_parse_changes_nothing, a_requeued_jobs_next_attempt_appends_after_the_last_ones_streams, work_streams_count_from_the_jobs_start_apart_from_log_results_and_each_other, streams_and_results_parsing_of_an_unknown_job_are_job_not_found, attachments_release_a_held_job_once, each_claim_hands_over_a_fresh_job_token_and_the_recipe_script, a_copy_moves_every_row_and_a_second_copy_is_refused);
    };
    (@each $database:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let database = $database;
                $crate::conformance::$name(&database);
            }
        )*
    };
}
