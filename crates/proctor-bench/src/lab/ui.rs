//! The web UI's pages (issue 13), each against a baseline measured in the same run:
//!
//! - the jobs list and a job page through a real server on 127.0.0.1 over a SQLite store of 10 000 jobs with
//!   100 000 test results (10 per job); baseline: the same pages against a store of 100 jobs with 1 000 results;
//! - the overview with 500 agents on 20 queues ([`overview`]);
//! - a job's log line reaching its open page in a real browser ([`browser`]).
//!
//! A page's time is the request's round trip on loopback (the server's time plus a few tens of microseconds), the
//! whole HTML page read.

mod browser;
mod overview;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use proctor_events::RunStatus;
use proctor_server::{Server, ServerConfig, ServerError};
use proctor_store::{NewJob, ResultsProgress, Store, TestRun};
use proctor_store_sqlite::SqliteStore;

use super::{millis, verdict, LabBenchError, Latencies};
use crate::process::ratio;

/// Jobs in the big store.
const JOBS: usize = 10_000;
/// Test results per job.
const TESTS_PER_JOB: usize = 10;
/// Jobs in the baseline's store.
const BASELINE_JOBS: usize = 100;
/// Requests timed per page.
const REPEATS: usize = 100;
/// One job in this many is on the rare queue.
const RARE_EVERY: usize = 100;
/// The goal of issue 13: a page's server time at p95.
const GOAL: Duration = Duration::from_millis(50);
/// How long the measured servers wait before they mark a silent agent offline: longer than any measurement.
const KEEP_AGENTS: Duration = Duration::from_secs(24 * 60 * 60);

/// Measures and prints the tables of the three measurements.
pub(super) fn bench() -> Result<(), LabBenchError> {
    jobs_pages()?;
    overview::bench()?;
    browser::bench()
}

/// The jobs list and job page with [`JOBS`] jobs stored, against [`BASELINE_JOBS`].
fn jobs_pages() -> Result<(), LabBenchError> {
    println!(
        "\nui: web UI pages with {JOBS} jobs and {} test results stored, against {BASELINE_JOBS} jobs and {}",
        JOBS * TESTS_PER_JOB,
        BASELINE_JOBS * TESTS_PER_JOB
    );
    let scratch = super::scratch_dir()?;
    let runtime = super::multi_thread_runtime()?;
    let filled = Instant::now();
    let big = scratch.path().join("big");
    let big_job = fill(&big, JOBS)?;
    println!("(stored in {:.1} s)", filled.elapsed().as_secs_f64());
    let small = scratch.path().join("small");
    let small_job = fill(&small, BASELINE_JOBS)?;
    let big_times = measure(&runtime, &big, &jobs_paths(&big_job))?;
    let small_times = measure(&runtime, &small, &jobs_paths(&small_job))?;
    print_pages_table(
        (&format!("{JOBS} jobs"), &format!("{BASELINE_JOBS} jobs")),
        big_times,
        small_times,
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// The jobs part's pages, by what each shows; `job` is the one whose page is fetched.
fn jobs_paths(job: &str) -> Vec<(&'static str, String)> {
    vec![
        ("jobs list, newest", "/jobs".to_owned()),
        (
            "jobs list, queue with 1 job in 100",
            "/jobs?queue=rare".to_owned(),
        ),
        (
            "jobs list, state and submitter",
            "/jobs?state=queued&submitter=alice".to_owned(),
        ),
        (
            "jobs list, text search (one match)",
            "/jobs?q=nightly+run+9990".to_owned(),
        ),
        ("job page (10 tests)", format!("/jobs/{job}")),
    ]
}

/// Prints a table of each page's times against the big store and against the baseline's, named by `stores`, and
/// whether every page met [`GOAL`] with the big store.
fn print_pages_table(
    stores: (&str, &str),
    big_times: Vec<(&'static str, Vec<Duration>)>,
    small_times: Vec<(&'static str, Vec<Duration>)>,
) {
    let (big_store, small_store) = stores;
    println!("\n| page | {big_store} p50 | p95 | p99 | {small_store} p50 (baseline) | p95 | **p95 ratio** |");
    println!("|---|---|---|---|---|---|---|");
    let mut slowest = Duration::ZERO;
    for ((page, big), (_, small)) in big_times.into_iter().zip(small_times) {
        let (big, small) = (Latencies::of(big), Latencies::of(small));
        println!(
            "| {page} | {} | {} | {} | {} | {} | **{:.2}×** |",
            millis(big.p50),
            millis(big.p95),
            millis(big.p99),
            millis(small.p50),
            millis(small.p95),
            ratio(big.p95, small.p95)
        );
        slowest = slowest.max(big.p95);
    }
    println!(
        "goal p95 ≤ {} with {big_store}: {} (slowest page p95 {})",
        millis(GOAL),
        verdict(slowest <= GOAL),
        millis(slowest)
    );
}

/// The store's error as the bench's.
fn store_error(error: proctor_store::StoreError) -> LabBenchError {
    LabBenchError::Store(error.to_string())
}

/// Stores `jobs` jobs, one second apart, each with [`TESTS_PER_JOB`] test results (one failing); the id of the
/// job in the middle.
fn fill(data_dir: &Path, jobs: usize) -> Result<String, LabBenchError> {
    let store = SqliteStore::open(data_dir).map_err(store_error)?;
    let start = Timestamp::now() - SignedDuration::from_secs(jobs as i64);
    let mut middle = String::new();
    for index in 0..jobs {
        let queue = if index % RARE_EVERY == 0 {
            "rare"
        } else {
            "bench"
        };
        let job = NewJob {
            queue: queue.to_owned(),
            name: Some(format!("nightly run {index}")),
            priority: 0,
            definition: serde_json::json!({
                "job_queue": queue,
                "test_data": {"test_cmds": "./run-tests --subunit >> \"$PROCTOR_RESULTS\""},
            }),
            max_attempts: 1,
            submitter: Some(if index % 2 == 0 { "alice" } else { "bob" }.to_owned()),
            held: false,
            recipe_script: None,
        };
        let at = start + SignedDuration::from_secs(index as i64);
        let stored = store.submit_job(&job, at).map_err(store_error)?;
        let runs: Vec<TestRun> = (0..TESTS_PER_JOB)
            .map(|test| TestRun {
                attempt: 1,
                test_id: format!("suite.module.test_{test:03}"),
                route_code: Some("0".to_owned()),
                retry: 0,
                status: if test == 3 {
                    RunStatus::Fail
                } else {
                    RunStatus::Success
                },
                reason: None,
                started_at: Some(at),
                ended_at: Some(at + SignedDuration::from_millis(120)),
                duration_us: Some(120_000),
                agent_id: Some("agent-1".to_owned()),
                tags: Vec::new(),
            })
            .collect();
        let parsed = ResultsProgress {
            parsed_offset: 1,
            ..ResultsProgress::default()
        };
        store
            .record_parsed_results(&stored.id, &ResultsProgress::default(), &parsed, &runs)
            .map_err(store_error)?;
        if index == jobs / 2 {
            middle = stored.id;
        }
    }
    Ok(middle)
}

/// The round trips of each page (a name and a path) against a server on the store at `data_dir`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    data_dir: &Path,
    pages: &[(&'static str, String)],
) -> Result<Vec<(&'static str, Vec<Duration>)>, LabBenchError> {
    let (base, task) = serve(runtime, data_dir)?;
    let client = reqwest::Client::new();
    let measured = runtime.block_on(async {
        let mut measured = Vec::new();
        for (page, path) in pages {
            let url = format!("{base}{path}");
            fetch(&client, &url).await?;
            let mut times = Vec::with_capacity(REPEATS);
            for _ in 0..REPEATS {
                let began = Instant::now();
                fetch(&client, &url).await?;
                times.push(began.elapsed());
            }
            measured.push((*page, times));
        }
        Ok::<_, LabBenchError>(measured)
    })?;
    task.abort();
    Ok(measured)
}

/// The HTML of the page at `path` of a server on the store at `data_dir`.
fn page_html(
    runtime: &tokio::runtime::Runtime,
    data_dir: &Path,
    path: &str,
) -> Result<String, LabBenchError> {
    let (base, task) = serve(runtime, data_dir)?;
    let html = runtime.block_on(fetch(&reqwest::Client::new(), &format!("{base}{path}")));
    task.abort();
    html
}

/// Starts a server on the store at `data_dir` on a free loopback port: its address and its task, to abort.
fn serve(
    runtime: &tokio::runtime::Runtime,
    data_dir: &Path,
) -> Result<(String, tokio::task::JoinHandle<Result<(), ServerError>>), LabBenchError> {
    let mut config = ServerConfig::new(data_dir.to_owned());
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    // The overview's agents were heard from when the store was filled, not since: the reaper must not mark them
    // offline while their pages are timed (no agent's lease runs out here, so nothing else changes).
    config.agent_offline_after = KEEP_AGENTS;
    let server = runtime.block_on(Server::bind(config))?;
    let base = format!("http://{}", server.local_addr());
    Ok((base, runtime.spawn(server.run(std::future::pending()))))
}

/// Reads a whole page, which must be a 200; answers its HTML.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, LabBenchError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| LabBenchError::Store(format!("{url}: {error}")))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|error| LabBenchError::Store(format!("{url}: {error}")))?;
    if !status.is_success() || !body.contains("</html>") {
        return Err(LabBenchError::Store(format!("{url} answered {status}")));
    }
    Ok(body)
}
