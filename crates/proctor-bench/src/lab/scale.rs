//! The scale-out parts (issue 14): the lab on PostgreSQL, with one server and several, against SQLite in the same
//! run.
//!
//! - `scale-dispatch`: the dispatch part's method (10 idle agents, jobs one at a time, submit → the test process
//!   printing `$EPOCHREALTIME`) on four labs running side by side, a job on each in turn so that the machine's
//!   drift hits them alike: SQLite with one server (the baseline), PostgreSQL with one server, PostgreSQL with two
//!   (agents spread over both, jobs submitted to each in turn), and PostgreSQL with two where every job reaches its
//!   agent through the other server (`LISTEN`/`NOTIFY`).
//! - `scale-throughput`: the throughput part's method (50 agents, 500 jobs running `true` at once) on SQLite, on
//!   PostgreSQL with one server and with two, one after the other, twice.
//! - `scale-idle` ([`idle`]): a server holding 10 000 idle long-polling claims while it dispatches.
//!
//! Each PostgreSQL lab gets a fresh database on the cluster `PROCTOR_TEST_POSTGRES` names; without it the
//! PostgreSQL rows are skipped with a line that says so.

pub(super) mod idle;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proctor_testkit::POSTGRES_ENV;

use super::dispatch::{baseline_once, dispatch_job};
use super::fixture::{Lab, LabStore, Placement};
use super::throughput::{run_jobs, AGENTS as THROUGHPUT_AGENTS, JOBS as THROUGHPUT_JOBS};
use super::{millis, ratio, verdict, LabBenchError, Latencies};

/// Idle agents of each dispatch lab.
const DISPATCH_AGENTS: usize = 10;
/// Jobs measured on each dispatch lab (after warm-up jobs).
const DISPATCH_JOBS: usize = 200;
/// Unmeasured jobs first, on each lab (two, so that both servers of a two-server lab have had one).
const WARM_UP_JOBS: usize = 2;
/// The dispatch goals of DESIGN.md.
const GOAL_P50: Duration = Duration::from_millis(5);
const GOAL_P99: Duration = Duration::from_millis(25);
/// How many times the throughput part runs each setup.
const THROUGHPUT_ROUNDS: usize = 2;

/// A lab's store and servers, as the tables name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// SQLite, one server: the baseline.
    Sqlite,
    /// PostgreSQL, one server.
    Postgres,
    /// PostgreSQL, two servers; agents spread over both, jobs to each in turn.
    PostgresTwo,
    /// PostgreSQL, two servers; agents on the second, jobs to the first.
    PostgresApart,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, one server (baseline)",
            Setup::Postgres => "PostgreSQL, one server",
            Setup::PostgresTwo => "PostgreSQL, two servers, agents and submits spread over both",
            Setup::PostgresApart => {
                "PostgreSQL, two servers, agents on B, jobs submitted to A (every job through NOTIFY)"
            }
        }
    }

    fn servers(self) -> usize {
        match self {
            Setup::Sqlite | Setup::Postgres => 1,
            Setup::PostgresTwo | Setup::PostgresApart => 2,
        }
    }

    fn placement(self) -> Placement {
        match self {
            Setup::PostgresApart => Placement::Apart,
            _ => Placement::Spread,
        }
    }

    /// Starts this setup's lab with `agents` agents; a PostgreSQL setup gets a fresh database on `cluster`, kept in
    /// `databases` (which must outlive the lab).
    fn start(
        self,
        agents: usize,
        cluster: Option<&str>,
        databases: &mut Vec<Database>,
    ) -> Result<Option<Lab>, LabBenchError> {
        let store = match (self, cluster) {
            (Setup::Sqlite, _) => LabStore::Sqlite,
            (_, None) => return Ok(None),
            (_, Some(cluster)) => {
                let database = Database::create(cluster)?;
                let store = LabStore::Postgres(database.url.clone());
                databases.push(database);
                store
            }
        };
        Lab::start_on(&store, self.servers(), agents, self.placement()).map(Some)
    }
}

/// The admin URL of the PostgreSQL cluster for the PostgreSQL rows, when `PROCTOR_TEST_POSTGRES` names one; else
/// prints why those rows are skipped.
fn cluster(part: &str) -> Option<String> {
    let cluster = std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|url| !url.is_empty());
    if cluster.is_none() {
        println!(
            "{part}: PostgreSQL rows skipped: {POSTGRES_ENV} is not set (./scripts/bench starts a cluster; by hand: \
             `root=$PWD; source scripts/postgres.sh; start_postgres bench`)"
        );
    }
    cluster
}

/// One lab's dispatch figures.
struct DispatchRow {
    setup: Setup,
    latencies: Vec<Duration>,
    /// Jobs whose agent's claim was held on another server than the one the job was submitted to.
    crossed: usize,
}

/// Measures and prints the scale-dispatch table.
pub(super) fn dispatch_bench() -> Result<(), LabBenchError> {
    println!(
        "\nscale-dispatch: {DISPATCH_AGENTS} idle agents per lab, {DISPATCH_JOBS} jobs one at a time on each, \
         the labs side by side and taken in turn"
    );
    let cluster = cluster("scale-dispatch");
    // Declared before the labs: dropped (the databases removed) after they stopped.
    let mut databases = Vec::new();
    let mut labs = Vec::new();
    for setup in [
        Setup::Sqlite,
        Setup::Postgres,
        Setup::PostgresTwo,
        Setup::PostgresApart,
    ] {
        if let Some(lab) = setup.start(DISPATCH_AGENTS, cluster.as_deref(), &mut databases)? {
            labs.push((setup, lab));
        }
    }
    let measured = measure_dispatch(&labs);
    for (setup, lab) in labs {
        let late = lab.late_reads();
        if late > 0 {
            println!(
                "{}: {late} jobs' last log bytes came only in the read after the one that saw the job ended",
                setup.label()
            );
        }
        lab.stop()?;
    }
    let (rows, baseline) = measured?;
    print_dispatch_table(&rows, &baseline);
    Ok(())
}

/// Runs the jobs on every lab in turn, with the dispatch part's baseline (a round trip and a `bash`) beside them.
fn measure_dispatch(
    labs: &[(Setup, Lab)],
) -> Result<(Vec<DispatchRow>, Vec<Duration>), LabBenchError> {
    for (_, lab) in labs {
        for _ in 0..WARM_UP_JOBS {
            dispatch_job(lab)?;
        }
    }
    let mut rows: Vec<DispatchRow> = labs
        .iter()
        .map(|(setup, _)| DispatchRow {
            setup: *setup,
            latencies: Vec::with_capacity(DISPATCH_JOBS),
            crossed: 0,
        })
        .collect();
    let mut baseline = Vec::with_capacity(DISPATCH_JOBS);
    for _ in 0..DISPATCH_JOBS {
        for ((_, lab), row) in labs.iter().zip(&mut rows) {
            let job = dispatch_job(lab)?;
            row.latencies.push(job.latency);
            row.crossed += usize::from(job.claimed_on != Some(job.submitted_to));
        }
        if let Some((_, lab)) = labs.first() {
            baseline.push(baseline_once(lab)?);
        }
    }
    Ok((rows, baseline))
}

fn print_dispatch_table(rows: &[DispatchRow], baseline: &[Duration]) {
    let summaries: Vec<(Setup, Latencies, usize)> = rows
        .iter()
        .map(|row| (row.setup, Latencies::of(row.latencies.clone()), row.crossed))
        .collect();
    let Some(&(_, sqlite, _)) = summaries.first() else {
        return;
    };
    println!(
        "\n| submit → test process started ({DISPATCH_JOBS} jobs each, {DISPATCH_AGENTS} idle agents) | p50 | p99 \
         | max | jobs claimed on the other server | **p50 / SQLite** | **p99 / SQLite** |\n\
         |---|---|---|---|---|---|---|"
    );
    for (setup, summary, crossed) in &summaries {
        let crossed = if setup.servers() > 1 {
            format!("{crossed} of {DISPATCH_JOBS}")
        } else {
            "—".to_owned()
        };
        println!(
            "| {} | {} | {} | {} | {crossed} | **{:.2}×** | **{:.2}×** |",
            setup.label(),
            millis(summary.p50),
            millis(summary.p99),
            millis(summary.max),
            ratio(summary.p50, sqlite.p50),
            ratio(summary.p99, sqlite.p99)
        );
    }
    let floor = Latencies::of(baseline.to_vec());
    println!(
        "| floor: GET /api/v1/queues + `bash -c` spawned directly (interleaved) | {} | {} | {} | — \
         | {:.2}× | {:.2}× |",
        millis(floor.p50),
        millis(floor.p99),
        millis(floor.max),
        ratio(floor.p50, sqlite.p50),
        ratio(floor.p99, sqlite.p99)
    );
    for (setup, summary, _) in &summaries {
        println!(
            "{}: goal p50 ≤ {}: {}; goal p99 ≤ {}: {}",
            setup.label(),
            millis(GOAL_P50),
            verdict(summary.p50 <= GOAL_P50),
            millis(GOAL_P99),
            verdict(summary.p99 <= GOAL_P99)
        );
    }
}

/// Measures and prints the scale-throughput table.
pub(super) fn throughput_bench() -> Result<(), LabBenchError> {
    println!(
        "\nscale-throughput: {THROUGHPUT_AGENTS} agents, {THROUGHPUT_JOBS} jobs running `true` submitted at once, \
         each setup in turn, {THROUGHPUT_ROUNDS} rounds"
    );
    let cluster = cluster("scale-throughput");
    println!(
        "\n| round | {THROUGHPUT_JOBS} jobs running `true`, {THROUGHPUT_AGENTS} agents | wall time | jobs/s \
         | **jobs/s / SQLite (same round)** |\n|---|---|---|---|---|"
    );
    for round in 1..=THROUGHPUT_ROUNDS {
        let mut sqlite_rate = None;
        for setup in [Setup::Sqlite, Setup::Postgres, Setup::PostgresTwo] {
            let mut databases = Vec::new();
            let Some(lab) = setup.start(THROUGHPUT_AGENTS, cluster.as_deref(), &mut databases)?
            else {
                continue;
            };
            let measured = run_jobs(&lab);
            lab.stop()?;
            let wall = measured?;
            let rate = THROUGHPUT_JOBS as f64 / wall.as_secs_f64();
            let baseline = *sqlite_rate.get_or_insert(rate);
            println!(
                "| {round} | {} | {:.2} s | {rate:.1} | **{:.2}×** |",
                setup.label(),
                wall.as_secs_f64(),
                rate / baseline
            );
        }
    }
    Ok(())
}

/// An empty database of its own on the bench's cluster, dropped (with any connection still open to it) when this
/// is dropped.
pub(super) struct Database {
    cluster: String,
    name: String,
    /// Its URL, for a server's store.
    pub(super) url: String,
}

impl Database {
    /// Creates a database no other of this run has, on the cluster whose admin URL is `cluster`.
    pub(super) fn create(cluster: &str) -> Result<Database, LabBenchError> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "proctor_bench_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        admin(cluster, &format!("CREATE DATABASE {name}"))?;
        let base = cluster.rsplit_once('/').map_or(cluster, |(base, _)| base);
        Ok(Database {
            url: format!("{base}/{name}"),
            cluster: cluster.to_owned(),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = admin(&self.cluster, &statement) {
            eprintln!("proctor-bench lab: {error}");
        }
    }
}

/// Runs one statement on the cluster's admin database, from a thread of its own: the blocking client runs a
/// runtime of its own, which cannot start (or stop) inside an async runtime's thread.
fn admin(cluster: &str, statement: &str) -> Result<(), LabBenchError> {
    let (cluster, statement) = (cluster.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&cluster, postgres::NoTls).map_err(|source| {
                LabBenchError::Postgres {
                    doing: format!("connecting to the cluster {POSTGRES_ENV} names"),
                    source,
                }
            })?;
        client
            .batch_execute(&statement)
            .map_err(|source| LabBenchError::Postgres {
                doing: statement.clone(),
                source,
            })
    })
    .join()
    .map_err(|_| LabBenchError::WorkerPanicked)?
}
