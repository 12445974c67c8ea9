//! The web UI's pages (issue 13): the jobs list and a job page through a real server on 127.0.0.1 over a SQLite
//! store of 10 000 jobs with 100 000 test results (10 per job). Baseline, in the same run: the same pages against a
//! store of 100 jobs with 1 000 results. The time is the request's round trip on loopback (the server's time plus a
//! few tens of microseconds), the whole HTML page read.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use proctor_events::RunStatus;
use proctor_server::{Server, ServerConfig};
use proctor_store::{NewJob, ResultsProgress, SqliteStore, Store, TestRun};

use super::{millis, LabBenchError, Latencies};
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

/// Measures and prints the table.
pub(super) fn bench() -> Result<(), LabBenchError> {
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
    let big_times = measure(&runtime, &big, &big_job)?;
    let small_times = measure(&runtime, &small, &small_job)?;
    println!(
        "\n| page | {JOBS} jobs p50 | p95 | p99 | {BASELINE_JOBS} jobs p50 (baseline) | p95 | **p95 ratio** |"
    );
    println!("|---|---|---|---|---|---|---|");
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
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Stores `jobs` jobs, one second apart, each with [`TESTS_PER_JOB`] test results (one failing); the id of the
/// job in the middle.
fn fill(data_dir: &Path, jobs: usize) -> Result<String, LabBenchError> {
    let store_error = |error: proctor_store::StoreError| LabBenchError::Store(error.to_string());
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

/// The round trips of each page against a server on the store at `data_dir`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    data_dir: &Path,
    job: &str,
) -> Result<Vec<(&'static str, Vec<Duration>)>, LabBenchError> {
    let mut config = ServerConfig::new(data_dir.to_owned());
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = runtime.block_on(Server::bind(config))?;
    let base = format!("http://{}", server.local_addr());
    let task = runtime.spawn(server.run(std::future::pending()));
    let client = reqwest::Client::new();
    let pages: [(&'static str, String); 5] = [
        ("jobs list, newest", format!("{base}/jobs")),
        (
            "jobs list, queue with 1 job in 100",
            format!("{base}/jobs?queue=rare"),
        ),
        (
            "jobs list, state and submitter",
            format!("{base}/jobs?state=queued&submitter=alice"),
        ),
        (
            "jobs list, text search (one match)",
            format!("{base}/jobs?q=nightly+run+9990"),
        ),
        ("job page (10 tests)", format!("{base}/jobs/{job}")),
    ];
    let measured = runtime.block_on(async {
        let mut measured = Vec::new();
        for (page, url) in pages {
            fetch(&client, &url).await?;
            let mut times = Vec::with_capacity(REPEATS);
            for _ in 0..REPEATS {
                let began = Instant::now();
                fetch(&client, &url).await?;
                times.push(began.elapsed());
            }
            measured.push((page, times));
        }
        Ok::<_, LabBenchError>(measured)
    })?;
    task.abort();
    Ok(measured)
}

/// Reads a whole page, which must be a 200.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<(), LabBenchError> {
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
    Ok(())
}
