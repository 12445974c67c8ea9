//! `scale-idle`: a lab whose servers hold 10 000 idle long-polling claims and still dispatch. The servers run as
//! processes of their own (`proctor-bench lab serve`, as in the memory part), so their memory can be read. This
//! process is the load: 10 000 agent ids registered on queue `idle`, each then claiming with a 25 s wait over a
//! connection of its own (async reqwest on tokio) and claiming again whenever answered. One real agent
//! ([`Lab::attach`]) serves queue `bench` and runs the measured jobs, submitted one at a time as in the dispatch
//! part, from the claims' arrival until every claim was answered and sent again (at least 100 jobs); the held
//! claims are load, never the consumer. Baseline: 100 jobs on the same servers before the claims are sent (the
//! 10 000 agents registered, nothing held) and 100 after they are gone. Memory per held claim: the servers' VmRSS
//! holding the claims minus idle, over the claims held. Three setups: SQLite with one server, PostgreSQL with one,
//! PostgreSQL with two (5 000 claims each; the real agent and the submits on both in turn).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use proctor_api::{ClaimRequest, RegisterAgent};
use proctor_server::StoreLocation;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::super::dispatch::dispatch_job;
use super::super::fixture::Lab;
use super::super::memory::{Memory, ServerProcess};
use super::super::{millis, ratio, verdict, LabBenchError, Latencies};
use super::{cluster, Database};

/// Claims held at once, over all the servers.
const HELD: usize = 10_000;
/// The queue the held claims wait on; no job is ever submitted to it.
const IDLE_QUEUE: &str = "idle";
/// Jobs measured with the claims held, and before and after them each (after warm-up jobs).
const JOBS: usize = 100;
/// Unmeasured jobs first (two, so that both servers of a two-server lab have had one).
const WARM_UP_JOBS: usize = 2;
/// How long each held claim asks the server to wait.
const CLAIM_WAIT: Duration = Duration::from_secs(25);
/// A claim answered 204 sooner than this was not held.
const HELD_AT_LEAST: Duration = Duration::from_secs(20);
/// Registrations in flight at once.
const REGISTERING: usize = 32;
/// Claims are sent [`PACED_BATCH`] every [`PACED_EVERY`] (10 000 in a second), within the servers' listen backlog.
const PACED_BATCH: usize = 100;
const PACED_EVERY: Duration = Duration::from_millis(10);
/// Time for the servers to settle before their memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the bench waits for the servers to accept every claim's connection.
const PATIENCE: Duration = Duration::from_secs(60);
/// The goal of DESIGN.md: dispatch p99 with 10 000 idle agents.
const GOAL_P99: Duration = Duration::from_millis(50);

/// A store and a number of server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    Postgres,
    PostgresTwo,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, one server",
            Setup::Postgres => "PostgreSQL, one server",
            Setup::PostgresTwo => "PostgreSQL, two servers (5 000 claims each)",
        }
    }

    fn servers(self) -> usize {
        match self {
            Setup::Sqlite | Setup::Postgres => 1,
            Setup::PostgresTwo => 2,
        }
    }
}

/// What one setup measured.
struct Row {
    setup: Setup,
    /// Dispatch with nothing held (the baseline: before and after the claims) and with the claims held.
    idle_dispatch: Latencies,
    held_dispatch: Latencies,
    /// How many jobs were measured with the claims held.
    held_jobs: usize,
    /// The servers' memory, summed, idle and holding the claims.
    idle_memory: Memory,
    held_memory: Memory,
    /// Connections the servers had accepted beyond their idle files when memory was read.
    connected: usize,
    claims: Arc<Tally>,
}

/// Measures and prints the scale-idle tables.
pub(in crate::lab) fn bench() -> Result<(), LabBenchError> {
    let limit = super::super::raise_open_files_limit()?;
    println!(
        "\nscale-idle: {HELD} idle agents long-polling (a connection each, claims of {} s, re-sent when answered), \
         {JOBS} jobs one at a time to one real agent on another queue; open-file limit {limit}",
        CLAIM_WAIT.as_secs()
    );
    let cluster = cluster("scale-idle");
    let runtime = load_runtime()?;
    let mut rows = Vec::new();
    for setup in [Setup::Sqlite, Setup::Postgres, Setup::PostgresTwo] {
        let database = match (setup, cluster.as_deref()) {
            (Setup::Sqlite, _) => None,
            (_, None) => continue,
            (_, Some(cluster)) => Some(Database::create(cluster)?),
        };
        let scratch = super::super::scratch_dir()?;
        let store = match &database {
            Some(database) => StoreLocation::Postgres(database.url.clone()),
            None => StoreLocation::Sqlite(scratch.path().join("server")),
        };
        rows.push(measure(&runtime, setup, &store)?);
    }
    print_tables(&rows);
    Ok(())
}

/// The runtime of the load: the registrations and the held claims.
fn load_runtime() -> Result<Runtime, LabBenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(LabBenchError::Runtime)
}

/// One setup: its servers, the real agent, the baseline dispatch, the claims held, the dispatch again.
fn measure(runtime: &Runtime, setup: Setup, store: &StoreLocation) -> Result<Row, LabBenchError> {
    let servers = (0..setup.servers())
        .map(|_| ServerProcess::start(store))
        .collect::<Result<Vec<_>, _>>()?;
    let bases: Vec<String> = servers.iter().map(|server| server.base.clone()).collect();
    let lab = Lab::attach(&bases, 1)?;
    let measured = measure_lab(runtime, setup, &servers, &bases, &lab);
    lab.stopping();
    drop(servers);
    lab.stop()?;
    measured
}

fn measure_lab(
    runtime: &Runtime,
    setup: Setup,
    servers: &[ServerProcess],
    bases: &[String],
    lab: &Lab,
) -> Result<Row, LabBenchError> {
    let registering = Instant::now();
    runtime.block_on(register_agents(bases))?;
    println!(
        "{}: {HELD} agents registered in {:.1} s",
        setup.label(),
        registering.elapsed().as_secs_f64()
    );
    let mut idle_dispatch = dispatch_jobs(lab)?;
    thread::sleep(SETTLE);
    let idle_memory = total_memory(servers)?;
    let idle_files = total_open_files(servers)?;
    // Measured until every claim was answered at the end of its wait and sent again, so that the jobs meet the
    // wave of re-claims too.
    let until = Instant::now() + CLAIM_WAIT + PACED_EVERY * (HELD / PACED_BATCH) as u32 + SETTLE;
    let claimers = Claimers::start(runtime, bases)?;
    let connected = runtime.block_on(wait_for_connections(servers, idle_files));
    let connected = match connected {
        Ok(connected) => connected,
        Err(error) => {
            claimers.stop(runtime);
            return Err(error);
        }
    };
    thread::sleep(SETTLE);
    let held_memory = total_memory(servers);
    let held_dispatch = dispatch_jobs_until(lab, until);
    let claims = claimers.stop(runtime);
    let held_dispatch = held_dispatch?;
    // The baseline again once the claims are gone, so that drift over the measurement hits both sides.
    thread::sleep(SETTLE);
    idle_dispatch.extend(dispatch_jobs(lab)?);
    Ok(Row {
        setup,
        idle_dispatch: Latencies::of(idle_dispatch),
        held_jobs: held_dispatch.len(),
        held_dispatch: Latencies::of(held_dispatch),
        idle_memory,
        held_memory: held_memory?,
        connected,
        claims,
    })
}

/// The dispatch part's measurement on this lab: warm-up jobs, then [`JOBS`] measured.
fn dispatch_jobs(lab: &Lab) -> Result<Vec<Duration>, LabBenchError> {
    dispatch_jobs_until(lab, Instant::now())
}

/// [`dispatch_jobs`], going on after [`JOBS`] jobs until `until`.
fn dispatch_jobs_until(lab: &Lab, until: Instant) -> Result<Vec<Duration>, LabBenchError> {
    for _ in 0..WARM_UP_JOBS {
        dispatch_job(lab)?;
    }
    let mut latencies = Vec::with_capacity(JOBS);
    while latencies.len() < JOBS || Instant::now() < until {
        latencies.push(dispatch_job(lab)?.latency);
    }
    Ok(latencies)
}

/// The servers' memory, summed.
fn total_memory(servers: &[ServerProcess]) -> Result<Memory, LabBenchError> {
    let mut total = Memory {
        rss: 0,
        hwm: 0,
        threads: 0,
    };
    for server in servers {
        let memory = server.memory()?;
        total.rss += memory.rss;
        total.hwm += memory.hwm;
        total.threads += memory.threads;
    }
    Ok(total)
}

fn total_open_files(servers: &[ServerProcess]) -> Result<usize, LabBenchError> {
    servers.iter().map(ServerProcess::open_files).sum()
}

/// The held claimer with index `index`: its agent id and the server it claims on.
fn claimer(bases: &[String], index: usize) -> (String, &str) {
    let base = bases
        .get(index % bases.len().max(1))
        .map_or("", String::as_str);
    (format!("idle-agent-{index}"), base)
}

fn http_client() -> Result<reqwest::Client, LabBenchError> {
    reqwest::Client::builder()
        .timeout(CLAIM_WAIT + PATIENCE)
        .build()
        .map_err(|source| LabBenchError::Http {
            what: "building the HTTP client".into(),
            source,
        })
}

/// Registers every held claimer's agent id for [`IDLE_QUEUE`], [`REGISTERING`] at a time, on a client dropped
/// afterwards so that its connections do not count.
async fn register_agents(bases: &[String]) -> Result<(), LabBenchError> {
    let http = http_client()?;
    let registration = RegisterAgent {
        queues: vec![IDLE_QUEUE.to_owned()],
        images: Vec::new(),
    };
    let mut next = 0;
    while next < HELD {
        let mut batch = JoinSet::new();
        for index in next..(next + REGISTERING).min(HELD) {
            let (agent, base) = claimer(bases, index);
            let request = http
                .post(format!("{base}/api/v1/agents/{agent}"))
                .json(&registration);
            batch.spawn(async move {
                request
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|source| LabBenchError::Http {
                        what: format!("registering {agent}"),
                        source,
                    })
            });
        }
        while let Some(done) = batch.join_next().await {
            done.map_err(|_| LabBenchError::WorkerPanicked)??;
        }
        next += REGISTERING;
    }
    Ok(())
}

/// How the held claims were answered, over the whole measurement.
#[derive(Debug, Default)]
struct Tally {
    /// Answered 204 after (nearly) their whole wait: held.
    held: AtomicUsize,
    /// Answered 204 well before their wait ended: not held.
    early: AtomicUsize,
    /// Answered another status.
    other_status: AtomicUsize,
    /// Failed without an answer (not counting the stop).
    failed: AtomicUsize,
    /// The first failure or unexpected status, to show.
    first_problem: Mutex<Option<String>>,
}

impl Tally {
    fn problem(&self, counter: &AtomicUsize, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.first_problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(what);
    }
}

/// The held claims: a task per claimer, each claiming again when answered, until stopped.
struct Claimers {
    tasks: JoinSet<()>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
}

impl Claimers {
    /// Starts every claimer, paced; answers once all were sent.
    fn start(runtime: &Runtime, bases: &[String]) -> Result<Claimers, LabBenchError> {
        let http = http_client()?;
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut tasks = JoinSet::new();
        for index in 0..HELD {
            if index > 0 && index % PACED_BATCH == 0 {
                thread::sleep(PACED_EVERY);
            }
            let (agent, base) = claimer(bases, index);
            let url = format!("{base}/api/v1/agents/{agent}/claim");
            let (http, stop, tally) = (http.clone(), Arc::clone(&stop), Arc::clone(&tally));
            tasks.spawn_on(hold_claims(http, url, stop, tally), runtime.handle());
        }
        Ok(Claimers { tasks, stop, tally })
    }

    /// Stops every claimer (dropping their connections) and answers how their claims were answered.
    fn stop(mut self, runtime: &Runtime) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        runtime.block_on(self.tasks.shutdown());
        self.tally
    }
}

/// One claimer: claims on `url`, and again whenever answered, until `stop`.
async fn hold_claims(http: reqwest::Client, url: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let body = ClaimRequest {
        queues: vec![IDLE_QUEUE.to_owned()],
        wait_seconds: Some(CLAIM_WAIT.as_secs_f64()),
    };
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let answer = http.post(&url).json(&body).send().await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read to the end, so that the connection is reused for the next claim.
                let _ = response.bytes().await;
                let elapsed = sent.elapsed();
                match status {
                    204 if elapsed >= HELD_AT_LEAST => {
                        tally.held.fetch_add(1, Ordering::Relaxed);
                    }
                    204 => tally.problem(
                        &tally.early,
                        format!("{url}: answered 204 after {elapsed:?}, not held"),
                    ),
                    _ => {
                        tally.problem(&tally.other_status, format!("{url}: answered {status}"));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err(error) => {
                tally.problem(&tally.failed, format!("{url}: {error}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Waits until the servers have [`HELD`] more files open than `idle_files` (every claim's connection accepted), or
/// [`PATIENCE`] passed; answers how many more they have.
async fn wait_for_connections(
    servers: &[ServerProcess],
    idle_files: usize,
) -> Result<usize, LabBenchError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let connected = total_open_files(servers)?.saturating_sub(idle_files);
        if connected >= HELD || Instant::now() > deadline {
            return Ok(connected);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_tables(rows: &[Row]) {
    println!(
        "\n| submit → test process started (one agent on queue `bench`) | claims held | jobs | p50 | p99 | \
         max | baseline: no claims held ({} jobs) p50 | p99 | **p50 ratio** | **p99 ratio** |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        2 * JOBS
    );
    for row in rows {
        let (held, idle) = (row.held_dispatch, row.idle_dispatch);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | **{:.2}×** | **{:.2}×** |",
            row.setup.label(),
            row.connected.min(HELD),
            row.held_jobs,
            millis(held.p50),
            millis(held.p99),
            millis(held.max),
            millis(idle.p50),
            millis(idle.p99),
            ratio(held.p50, idle.p50),
            ratio(held.p99, idle.p99)
        );
    }
    println!(
        "\n| server memory (all its servers) | VmRSS idle ({HELD} agents registered) | VmRSS holding the claims | \
         VmHWM | threads idle → holding | **VmRSS / idle** | **per held claim** |\n\
         |---|---|---|---|---|---|---|"
    );
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    for row in rows {
        let (idle, held) = (row.idle_memory, row.held_memory);
        println!(
            "| {} | {} | {} | {} | {} → {} | **{:.2}×** | **{:.1} KiB** |",
            row.setup.label(),
            mib(idle.rss),
            mib(held.rss),
            mib(held.hwm),
            idle.threads,
            held.threads,
            held.rss as f64 / idle.rss.max(1) as f64,
            held.rss.saturating_sub(idle.rss) as f64 / row.connected.clamp(1, HELD) as f64
        );
    }
    for row in rows {
        let claims = &row.claims;
        let problem = claims
            .first_problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        println!(
            "{}: {} of {HELD} connections accepted; claims answered: {} held to their end, {} early, {} with \
             another status, {} failed{}; goal p99 ≤ {} with {HELD} held: {}",
            row.setup.label(),
            row.connected.min(HELD),
            claims.held.load(Ordering::Relaxed),
            claims.early.load(Ordering::Relaxed),
            claims.other_status.load(Ordering::Relaxed),
            claims.failed.load(Ordering::Relaxed),
            problem.map_or_else(String::new, |problem| format!(" (first: {problem})")),
            millis(GOAL_P99),
            verdict(row.connected >= HELD && row.held_dispatch.p99 <= GOAL_P99)
        );
    }
}
