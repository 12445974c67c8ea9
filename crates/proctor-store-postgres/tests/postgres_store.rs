//! The PostgreSQL store against real databases, one fresh database per test on the cluster `./scripts/test` starts
//! (`PROCTOR_TEST_POSTGRES`): the conformance suite every backend passes, and what only a database shared by
//! several servers has (migrations raced by servers starting together, claimers and reapers on several stores at
//! once, uploaders of one stream taking turns).
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use proctor_events::RunStatus;
use proctor_store::conformance::{at, job_on, queues, register, t0, TestDatabase, LEASE};
use proctor_store::{
    AgentState, JobState, NewJob, ResultsProgress, Role, Store, StoreError, StreamKind, TestRun,
};
use proctor_store_postgres::PostgresStore;
use proctor_testkit::PostgresDatabase as FreshDatabase;

/// A fresh database with a store on it.
struct PostgresDatabase {
    store: PostgresStore,
    database: FreshDatabase,
}

impl PostgresDatabase {
    fn new() -> PostgresDatabase {
        let database = FreshDatabase::create();
        let store = PostgresStore::connect(&database.url).expect("the store connects");
        PostgresDatabase { store, database }
    }

    /// A plain client on the database, to look at what the store wrote.
    fn raw(&self) -> Client {
        Client::connect(&self.database.url, NoTls).expect("a raw connection")
    }

    /// Another store on the database, as another server would have.
    fn another(&self) -> PostgresStore {
        PostgresStore::connect(&self.database.url).expect("another store connects")
    }
}

impl TestDatabase for PostgresDatabase {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn open_another(&self) -> Arc<dyn Store> {
        Arc::new(self.another())
    }

    fn empty_sibling(&self) -> Box<dyn TestDatabase> {
        Box::new(PostgresDatabase::new())
    }
}

proctor_store::conformance_tests!(PostgresDatabase::new());

/// How many migrations ship: one SQL file each.
fn shipped_migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::read_dir(dir).expect("the migrations").count() as i64
}

fn applied_migrations(client: &mut Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("schema_migrations is readable")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Runs `work` on `threads` threads that start together; their results in thread order.
fn together<T: Send + 'static>(
    threads: usize,
    work: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(threads));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let (barrier, work) = (Arc::clone(&barrier), Arc::clone(&work));
            std::thread::spawn(move || {
                barrier.wait();
                work(index)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().expect("a thread"))
        .collect()
}

#[test]
fn servers_starting_together_apply_each_migration_once() {
    let database = FreshDatabase::create();
    let url = database.url.clone();
    let stores = together(6, move |_| PostgresStore::connect(&url));
    for store in &stores {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let mut raw = Client::connect(&database.url, NoTls).expect("a raw connection");
    assert_eq!(
        applied_migrations(&mut raw),
        (1..=shipped_migrations()).collect::<Vec<_>>()
    );
    // Connecting again applies nothing.
    drop(PostgresStore::connect(&database.url).expect("connects again"));
    assert_eq!(
        applied_migrations(&mut raw).len() as i64,
        shipped_migrations()
    );
    let store = stores.into_iter().next().unwrap().unwrap();
    register(&store, "a1", &["lab"], t0());
    assert_eq!(store.agents().expect("agents")[0].queues, ["lab"]);
}

#[test]
fn a_database_from_a_newer_proctor_is_refused() {
    let database = PostgresDatabase::new();
    database
        .raw()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
            &[],
        )
        .expect("insert");
    let error =
        PostgresStore::connect(&database.database.url).expect_err("a newer schema is refused");
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew { found: 99, known } if known == shipped_migrations()
        ),
        "{error}"
    );
}

#[test]
fn an_unreachable_database_is_an_open_error_that_hides_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let error = PostgresStore::connect("postgres://lab:s3cret@127.0.0.1:1/proctor")
        .expect_err("nothing listens on port 1");
    match &error {
        StoreError::Open { location, .. } => {
            assert_eq!(location, "postgres://lab:***@127.0.0.1:1/proctor")
        }
        other => panic!("not an open error: {other}"),
    }
    let mut shown = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(source) = cause {
        shown.push_str(&format!(": {source}"));
        cause = source.source();
    }
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!error.is_storage_full());

    let database = PostgresDatabase::new();
    assert_eq!(database.store.location(), database.database.url);
}

#[test]
fn tokens_are_stored_only_as_hashes() {
    let database = PostgresDatabase::new();
    let store = &database.store;
    let issued = store.create_token(Role::Agent, &[], t0()).expect("create");
    register(store, "a1", &["lab"], t0());
    store
        .submit_job(
            &NewJob {
                max_attempts: 2,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit");
    let first = store
        .claim_job("a1", &queues(&["lab"]), t0(), LEASE)
        .expect("claim")
        .expect("a job");
    store.reap_expired_leases(at(60)).expect("reap");
    let second = store
        .claim_job("a1", &queues(&["lab"]), at(61), LEASE)
        .expect("claim")
        .expect("the job again");
    let mut raw = database.raw();
    let stored: Vec<String> = raw
        .query(
            "SELECT secret_hash FROM tokens UNION ALL SELECT secret_hash FROM job_tokens
             UNION ALL SELECT secret_hash FROM superseded_job_tokens",
            &[],
        )
        .expect("hashes")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        stored.len(),
        3,
        "the token, the current job token and the superseded one"
    );
    for secret in [&issued.secret, &first.job_token, &second.job_token] {
        let random_part = &secret["proctor_".len()..];
        assert!(
            stored.iter().all(|hash| !hash.contains(random_part)),
            "only hashes are stored"
        );
        assert!(stored.contains(&proctor_store::secret::hash(secret)));
    }
}

#[test]
fn claimers_on_four_stores_claim_500_jobs_each_once() {
    let database = PostgresDatabase::new();
    let submitted: BTreeSet<String> = (0..500)
        .map(|index| {
            database
                .store
                .submit_job(&job_on("lab", index % 3), at(index))
                .expect("submit")
                .id
        })
        .collect();
    let stores: Vec<Arc<PostgresStore>> = (0..4).map(|_| Arc::new(database.another())).collect();
    // Three claimers per store, as three agents' claims on each of four servers.
    let claimers = 12;
    for index in 0..claimers {
        register(
            &*stores[index % 4],
            &format!("agent-{index}"),
            &["lab"],
            t0(),
        );
    }
    let claimed = together(claimers, {
        let stores = stores.clone();
        move |index| {
            let store = &stores[index % 4];
            let agent = format!("agent-{index}");
            let mut got = Vec::new();
            while let Some(claim) = store
                .claim_job(&agent, &queues(&["lab"]), at(600), LEASE)
                .expect("the claim runs")
            {
                assert_eq!(claim.job.agent_id.as_deref(), Some(agent.as_str()));
                got.push(claim.job.id);
            }
            got
        }
    });
    let all: Vec<String> = claimed.iter().flatten().cloned().collect();
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), distinct.len(), "a job was claimed twice");
    assert_eq!(distinct, submitted, "every job was claimed");
    assert!(
        claimed.iter().filter(|got| !got.is_empty()).count() > 1,
        "the claimers ran side by side"
    );
    let mut raw = database.raw();
    let row = raw
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE state = 'running' AND attempts = 1),
                    (SELECT COUNT(*) FROM job_attempts), (SELECT COUNT(*) FROM job_tokens)
             FROM jobs",
            &[],
        )
        .expect("counts");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (500, 500, 500)
    );
    for agent in database.store.agents().expect("agents") {
        assert_eq!(agent.state, AgentState::Busy, "{agent:?}");
    }
}

#[test]
fn a_claim_passes_over_a_job_another_claimer_holds_without_waiting() {
    let database = PostgresDatabase::new();
    let store = &database.store;
    register(store, "a1", &["lab"], t0());
    let best = store
        .submit_job(&job_on("lab", 9), t0())
        .expect("submit")
        .id;
    let next = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    // Another server's claim, midway: it holds the best job's row.
    let mut raw = database.raw();
    let mut taking = raw.transaction().expect("a transaction");
    taking
        .execute(
            "SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE",
            &[&best],
        )
        .expect("lock");
    let started = Instant::now();
    let claimed = store
        .claim_job("a1", &queues(&["lab"]), at(1), LEASE)
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.job.id, next, "the held job is passed over");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the claim did not wait for the held row"
    );
    taking.rollback().expect("rollback");
    assert_eq!(
        store
            .claim_job("a1", &queues(&["lab"]), at(2), LEASE)
            .expect("claim")
            .map(|claim| claim.job.id),
        Some(best),
        "released, it is claimable"
    );
}

#[test]
fn reapers_on_four_stores_handle_each_lapsed_job_once() {
    let database = PostgresDatabase::new();
    let store = &database.store;
    let jobs: BTreeSet<String> = (0..200)
        .map(|_| {
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
        })
        .collect();
    for agent in ["a1", "a2", "a3", "a4"] {
        register(store, agent, &["lab"], t0());
    }
    let stores: Vec<Arc<PostgresStore>> = (0..4).map(|_| Arc::new(database.another())).collect();
    let claim_all = |now| {
        for index in 0.. {
            let agent = format!("a{}", index % 4 + 1);
            if store
                .claim_job(&agent, &queues(&["lab"]), now, LEASE)
                .expect("claim")
                .is_none()
            {
                break;
            }
        }
    };
    // Every replica reaps at once, three rounds each, after every lease lapsed.
    let reap_everywhere = |now| -> Vec<proctor_store::ReapedJob> {
        let stores = stores.clone();
        together(4, move |index| {
            (0..3)
                .flat_map(|_| stores[index].reap_expired_leases(now).expect("reap"))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    };
    let mut raw = database.raw();
    let states = |raw: &mut Client| -> BTreeMap<(String, i64), i64> {
        raw.query(
            "SELECT state, attempts, COUNT(*) FROM jobs GROUP BY state, attempts",
            &[],
        )
        .expect("states")
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect()
    };

    claim_all(t0());
    let reaped = reap_everywhere(at(60));
    let ids: Vec<&String> = reaped.iter().map(|job| &job.job_id).collect();
    assert_eq!(ids.len(), jobs.len(), "each lapsed job was reaped once");
    assert_eq!(ids.into_iter().cloned().collect::<BTreeSet<_>>(), jobs);
    assert!(reaped.iter().all(|job| job.new_state == JobState::Queued));
    assert_eq!(
        states(&mut raw),
        BTreeMap::from([(("queued".to_owned(), 1), 200)])
    );
    let ended_attempts: i64 = raw
        .query_one(
            "SELECT COUNT(*) FROM job_attempts WHERE attempt = 1 AND end_reason LIKE '%lost during attempt 1 of 2%'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(ended_attempts, 200);
    for agent in store.agents().expect("agents") {
        assert_eq!(agent.state, AgentState::Idle, "{agent:?}");
    }

    claim_all(at(61));
    let reaped = reap_everywhere(at(200));
    assert_eq!(reaped.len(), jobs.len(), "each lapsed job was reaped once");
    assert!(reaped.iter().all(|job| job.new_state == JobState::Error));
    assert_eq!(
        states(&mut raw),
        BTreeMap::from([(("error".to_owned(), 2), 200)])
    );
}

#[test]
fn uploaders_of_one_stream_on_four_stores_store_every_byte_once() {
    let database = PostgresDatabase::new();
    let job = database
        .store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    let data: Arc<Vec<u8>> = Arc::new((0..40_000u32).map(|i| (i * 7 % 251) as u8).collect());
    let stores: Vec<Arc<PostgresStore>> = (0..4).map(|_| Arc::new(database.another())).collect();
    // Eight uploaders send the same stream, each in chunks of its own size (as resends after lost
    // acknowledgements would), going on from the end each append acknowledges.
    together(8, {
        let (job, data) = (job.clone(), Arc::clone(&data));
        move |index| {
            let store = &stores[index % 4];
            let chunk = 700 + 331 * index;
            let mut offset = 0u64;
            while (offset as usize) < data.len() {
                let start = offset as usize;
                let end = (start + chunk).min(data.len());
                match store.append_stream(
                    &job,
                    StreamKind::Log,
                    offset,
                    Some("test"),
                    &data[start..end],
                ) {
                    Ok(acknowledged) => {
                        assert!(acknowledged >= end as u64, "{acknowledged} < {end}");
                        offset = end as u64;
                    }
                    Err(error) => panic!("{error}"),
                }
            }
        }
    });
    let chunks = database
        .store
        .read_stream(&job, StreamKind::Log, 0, None)
        .expect("read");
    let mut expected_offset = 0;
    for chunk in &chunks {
        assert_eq!(chunk.offset, expected_offset, "chunks are contiguous");
        expected_offset += chunk.bytes.len() as u64;
    }
    let stored: Vec<u8> = chunks.into_iter().flat_map(|chunk| chunk.bytes).collect();
    assert_eq!(stored, *data);
    assert_eq!(
        database
            .store
            .stream_end(&job, StreamKind::Log)
            .expect("end"),
        data.len() as u64
    );
    // Reading from the middle starts at the chunk holding that offset.
    let tail = database
        .store
        .read_stream(&job, StreamKind::Log, 20_000, None)
        .expect("read");
    assert!(tail[0].offset <= 20_000 && tail[0].offset + tail[0].bytes.len() as u64 > 20_000);
    let tail_bytes: Vec<u8> = tail.into_iter().flat_map(|chunk| chunk.bytes).collect();
    assert!(data.ends_with(&tail_bytes));
}

#[test]
fn parsers_on_four_stores_record_one_parse_once() {
    let database = PostgresDatabase::new();
    let store = &database.store;
    register(store, "a1", &["lab"], t0());
    let job = store
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    store
        .claim_job("a1", &queues(&["lab"]), t0(), LEASE)
        .expect("claim")
        .expect("a job");
    let stores: Vec<Arc<PostgresStore>> = (0..4).map(|_| Arc::new(database.another())).collect();
    let recorded = together(8, {
        let job = job.clone();
        move |index| {
            let run = TestRun {
                attempt: 1,
                test_id: "t.one".into(),
                route_code: None,
                retry: 0,
                status: RunStatus::Success,
                reason: None,
                started_at: Some(at(1)),
                ended_at: Some(at(2)),
                duration_us: Some(1_000_000),
                agent_id: None,
                tags: vec![],
            };
            let to = ResultsProgress {
                attempt: 1,
                parsed_offset: 10,
                problem: None,
            };
            stores[index % 4]
                .record_parsed_results(&job, &ResultsProgress::default(), &to, &[run])
                .expect("record")
        }
    });
    assert_eq!(
        recorded.iter().filter(|won| **won).count(),
        1,
        "{recorded:?}"
    );
    let runs = store.test_runs(&job).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].agent_id.as_deref(), Some("a1"));
    assert_eq!(
        store
            .results_progress(&job)
            .expect("progress")
            .parsed_offset,
        10
    );
}

/// Dropping the last handle on a thread that runs async tasks closes its connections elsewhere, instead of
/// panicking (the client blocks on a runtime of its own as it closes).
#[test]
fn a_store_dropped_in_async_code_does_not_panic() {
    let database = PostgresDatabase::new();
    let store = database.another();
    register(&store, "a1", &["lab"], t0());
    assert_eq!(store.agents().expect("agents").len(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async move { drop(store) });
}

/// A small deterministic random source for the mixed workload (a test needs no better).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Agents, reapers and the offline marker on four stores at once, as four servers would run them, with agents that
/// sometimes stop heartbeating: nothing fails but the refusals the model has (a job that moved on cannot be
/// finished), no deadlock happens, and at the end each agent's busy or idle state matches the jobs it holds.
#[test]
fn a_mixed_workload_on_four_stores_keeps_agents_and_jobs_consistent() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    let database = PostgresDatabase::new();
    for _ in 0..150 {
        database
            .store
            .submit_job(
                &NewJob {
                    max_attempts: 3,
                    ..job_on("lab", 0)
                },
                t0(),
            )
            .expect("submit");
    }
    let stores: Vec<Arc<PostgresStore>> = (0..4).map(|_| Arc::new(database.another())).collect();
    for index in 0..8 {
        register(
            &*stores[index % 4],
            &format!("agent-{index}"),
            &["lab"],
            t0(),
        );
    }
    // The lab's clock: four agent operations move it on a second, so an agent that skips heartbeats for a while
    // loses its jobs.
    let clock = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let tick = {
        let clock = Arc::clone(&clock);
        move || at(clock.fetch_add(1, Ordering::SeqCst) / 4)
    };
    let mut threads = Vec::new();
    for index in 0..8usize {
        let (store, tick) = (Arc::clone(&stores[index % 4]), tick.clone());
        threads.push(std::thread::spawn(move || {
            let agent = format!("agent-{index}");
            let mut random = Lcg(index as u64 + 1);
            let mut held: Vec<(String, u64)> = Vec::new();
            for _ in 0..150 {
                match random.below(10) {
                    0..=2 if held.len() < 2 => {
                        if let Some(claim) = store
                            .claim_job(&agent, &queues(&["lab"]), tick(), LEASE)
                            .expect("claim")
                        {
                            held.push((claim.job.id, 0));
                        }
                    }
                    3..=5 => {
                        let reply = store.heartbeat(&agent, tick(), LEASE).expect("heartbeat");
                        held.retain(|(job, _)| reply.renewed.contains(job));
                    }
                    6 | 7 if !held.is_empty() => {
                        let slot = random.below(held.len() as u64) as usize;
                        let (job, offset) = &mut held[slot];
                        *offset = store
                            .append_stream(job, StreamKind::Log, *offset, Some("test"), b"line\n")
                            .expect("append");
                    }
                    8 if !held.is_empty() => {
                        let (job, _) = held.remove(0);
                        match store.finish_job(
                            &job,
                            Some(&agent),
                            proctor_store::FinalState::Passed,
                            "ok",
                            tick(),
                        ) {
                            Ok(_)
                            | Err(StoreError::NotJobHolder { .. })
                            | Err(StoreError::JobNotRunning { .. }) => {}
                            Err(error) => panic!("finish: {error}"),
                        }
                    }
                    // Silence: the agent sends nothing this round.
                    _ => {}
                }
            }
        }));
    }
    // The reapers read the clock without moving it: the lab's time is the agents'.
    for (index, store) in stores.iter().enumerate() {
        let (store, clock, done) = (Arc::clone(store), Arc::clone(&clock), Arc::clone(&done));
        threads.push(std::thread::spawn(move || {
            let now = || at(clock.load(Ordering::SeqCst) / 4);
            while !done.load(Ordering::SeqCst) {
                store.reap_expired_leases(now()).expect("reap");
                if index == 0 {
                    let now = now();
                    store
                        .mark_silent_agents_offline(now - jiff::SignedDuration::from_secs(30))
                        .expect("mark offline");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    let (reapers, agents) = (threads.split_off(8), threads);
    for agent in agents {
        agent.join().expect("an agent thread");
    }
    done.store(true, Ordering::SeqCst);
    for reaper in reapers {
        reaper.join().expect("a reaper thread");
    }

    let mut raw = database.raw();
    let inconsistent: Vec<(String, String, i64)> = raw
        .query(
            "SELECT a.id, a.state, (SELECT COUNT(*) FROM jobs j WHERE j.agent_id = a.id AND j.state = 'running')
             FROM agents a",
            &[],
        )
        .expect("agents")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .filter(|(_, state, running): &(String, String, i64)| {
            (state == "busy" && *running == 0) || (state == "idle" && *running > 0)
        })
        .collect();
    assert!(inconsistent.is_empty(), "{inconsistent:?}");
    let wrong_attempts: i64 = raw
        .query_one(
            "SELECT COUNT(*) FROM jobs j
             WHERE j.attempts <> (SELECT COUNT(*) FROM job_attempts a WHERE a.job_id = j.id)
                OR j.attempts > j.max_attempts
                OR (j.state = 'running') <> (j.lease_expires_at IS NOT NULL)",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(wrong_attempts, 0);
    let states: Vec<(String, i64)> = raw
        .query(
            "SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state",
            &[],
        )
        .expect("states")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    eprintln!("jobs by state: {states:?}");
    // Every connection closed, so every backend's counters reached the statistics.
    drop(stores);
    std::thread::sleep(Duration::from_millis(1500));
    let deadlocks: i64 = raw
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .expect("statistics")
        .get(0);
    assert_eq!(deadlocks, 0, "transactions deadlocked (and were run again)");
}

/// Every change the feed heard within a short while, in order.
fn heard(feed: &mut dyn proctor_store::ChangeFeed) -> Vec<proctor_store::Change> {
    let mut changes = Vec::new();
    loop {
        let more = feed
            .next_changes(Duration::from_millis(300))
            .expect("the feed");
        if more.is_empty() {
            return changes;
        }
        changes.extend(more);
    }
}

/// A server's feed hears what another server's store commits, in commit order: each write that a waiter may wait
/// for, once, and nothing for writes that changed nothing or failed.
#[test]
fn a_change_feed_hears_other_servers_commits() {
    use proctor_store::{Change, FinalState};

    let database = PostgresDatabase::new();
    let mut feed = database
        .store
        .follow_changes()
        .expect("follow")
        .expect("PostgreSQL has a feed");
    let other = database.another();
    register(&other, "a1", &["lab"], t0());
    let job = other
        .submit_job(&job_on("lab", 0), t0())
        .expect("submit")
        .id;
    other
        .claim_job("a1", &queues(&["lab"]), t0(), LEASE)
        .expect("claim")
        .expect("a job");
    other.heartbeat("a1", at(1), LEASE).expect("heartbeat");
    other.start_phase(&job, "test", at(1)).expect("phase");
    other
        .append_stream(&job, StreamKind::Log, 0, Some("test"), b"hello\n")
        .expect("append");
    other
        .append_stream(&job, StreamKind::Log, 0, Some("test"), b"hello\n")
        .expect("a resend stores nothing");
    other
        .append_stream(&job, StreamKind::Log, 99, Some("test"), b"x")
        .expect_err("a gap");
    other.request_cancel(&job, at(2)).expect("cancel");
    other.end_phase(&job, "test", 0, at(3)).expect("phase end");
    other
        .finish_job(&job, Some("a1"), FinalState::Cancelled, "cancelled", at(4))
        .expect("finish");
    assert_eq!(
        heard(&mut *feed),
        [
            Change::Queue("lab".into()),
            Change::Job(job.clone()),
            Change::Phase(job.clone()),
            Change::Stream(job.clone()),
            Change::Agent("a1".into()),
            Change::Phase(job.clone()),
            Change::Job(job.clone()),
        ]
    );
    assert!(heard(&mut *feed).is_empty());
}

/// A feed whose connection is lost says so (an error: follow again) instead of going quiet.
#[test]
fn a_change_feed_whose_connection_is_lost_is_an_error() {
    let database = PostgresDatabase::new();
    let mut feed = database
        .store
        .follow_changes()
        .expect("follow")
        .expect("PostgreSQL has a feed");
    let ended: i64 = database
        .raw()
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN proctor_changes'",
            &[],
        )
        .expect("terminate")
        .get(0);
    assert_eq!(ended, 1);
    let started = Instant::now();
    let outcome = loop {
        match feed.next_changes(Duration::from_millis(200)) {
            Ok(changes) if started.elapsed() < Duration::from_secs(5) => {
                assert!(changes.is_empty())
            }
            outcome => break outcome,
        }
    };
    assert!(outcome.is_err(), "{outcome:?}");
    // Following again works.
    assert!(database.store.follow_changes().expect("follow").is_some());
}

/// A lab moves from the embedded SQLite store to PostgreSQL and back row for row (`proctor store copy`): every
/// value keeps its meaning across the two backends (flags, times, JSON, bytes), and the copy goes on working.
#[test]
fn a_lab_copies_from_sqlite_to_postgres_and_back_row_for_row() {
    use proctor_store::copy::{self, TABLES};
    use proctor_store::{Artifact, FinalState, JobFilter};

    let every_row = |store: &dyn Store| -> Vec<Vec<Vec<proctor_store::copy::Value>>> {
        TABLES
            .iter()
            .map(|table| store.export_rows(table, 0, u32::MAX).expect("export"))
            .collect()
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = proctor_store_sqlite::SqliteStore::open(dir.path()).expect("sqlite");
    register(&sqlite, "a1", &["lab"], t0());
    let admin = sqlite.create_token(Role::Admin, &[], t0()).expect("token");
    let held = sqlite
        .submit_job(
            &NewJob {
                held: true,
                ..job_on("lab", 0)
            },
            t0(),
        )
        .expect("submit")
        .id;
    sqlite
        .store_attachments(&held, b"tar", at(1))
        .expect("attach");
    let ran = sqlite
        .submit_job(&job_on("lab", 5), at(2))
        .expect("submit")
        .id;
    sqlite
        .claim_job("a1", &queues(&["lab"]), at(3), LEASE)
        .expect("claim")
        .expect("a job");
    sqlite.start_phase(&ran, "test", at(3)).expect("phase");
    sqlite
        .append_stream(&ran, StreamKind::Log, 0, Some("test"), b"hello\n")
        .expect("log");
    sqlite.request_cancel(&ran, at(4)).expect("cancel");
    sqlite
        .put_artifact(
            &ran,
            &Artifact {
                name: "out".into(),
                size: 2,
                content: b"ok".to_vec(),
            },
        )
        .expect("artifact");
    sqlite.end_phase(&ran, "test", 3, at(4)).expect("phase end");
    sqlite
        .finish_job(&ran, Some("a1"), FinalState::Cancelled, "cancelled", at(5))
        .expect("finish");

    let postgres = PostgresDatabase::new();
    copy::copy(&sqlite, &postgres.store, &mut |_, _| {}).expect("copy to PostgreSQL");
    assert_eq!(every_row(&postgres.store), every_row(&sqlite));
    assert_eq!(
        postgres.store.job(&ran).expect("job"),
        sqlite.job(&ran).expect("job")
    );
    assert!(postgres.store.job(&ran).expect("job").cancel_requested);
    assert_eq!(
        postgres.store.phases(&ran).expect("phases"),
        sqlite.phases(&ran).expect("phases")
    );
    assert_eq!(
        postgres.store.verify_token(&admin.secret).expect("verify"),
        Some(admin.token)
    );

    let back = tempfile::tempdir().expect("a temporary directory");
    let sqlite_again = proctor_store_sqlite::SqliteStore::open(back.path()).expect("sqlite");
    copy::copy(&postgres.store, &sqlite_again, &mut |_, _| {}).expect("copy back");
    assert_eq!(every_row(&sqlite_again), every_row(&sqlite));

    // The PostgreSQL copy goes on: a new job is the newest, and the held job is claimable.
    let next = postgres
        .store
        .submit_job(&job_on("lab", 0), at(6))
        .expect("submit")
        .id;
    let listed = postgres
        .store
        .list_jobs(&JobFilter::default())
        .expect("list");
    assert_eq!(listed.jobs.first().map(|job| job.id.clone()), Some(next));
    assert_eq!(
        postgres
            .store
            .claim_job("a1", &queues(&["lab"]), at(7), LEASE)
            .expect("claim")
            .map(|claim| claim.job.id),
        Some(held)
    );
}
