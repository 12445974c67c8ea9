//! Listing jobs (issue 11, item 4): `GET /api/v1/jobs` pages against a store of 100 000 jobs, each with a realistic
//! definition, through a real server on 127.0.0.1: the newest page, a page filtered by a rare queue, by state and
//! submitter, and a page deep in the list (its cursor after 1 000 pages of 100). Baseline, in the same run: the same
//! requests against a server whose store holds 100 jobs of the same shape. The time is the request's round trip on
//! loopback, which is the server's time plus a few tens of microseconds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use proctor_api::JobsQuery;
use proctor_client::Client;
use proctor_server::{Server, ServerConfig};
use proctor_store::{NewJob, Store};
use proctor_store_sqlite::SqliteStore;

use super::{millis, LabBenchError, Latencies};
use crate::process::ratio;

/// Jobs in the big store.
const JOBS: usize = 100_000;
/// Jobs in the baseline's store.
const BASELINE_JOBS: usize = 100;
/// Requests timed per kind of page.
const REPEATS: usize = 50;
/// One job in this many is on the rare queue.
const RARE_EVERY: usize = 1_000;

/// Measures and prints the table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\nlist: GET /api/v1/jobs pages (100 jobs each) with {JOBS} jobs stored, against {BASELINE_JOBS} stored");
    let scratch = super::scratch_dir()?;
    let runtime = super::multi_thread_runtime()?;
    let filled = Instant::now();
    let big = scratch.path().join("big");
    fill(&big, JOBS)?;
    println!(
        "(stored {JOBS} jobs in {:.1} s)",
        filled.elapsed().as_secs_f64()
    );
    let small = scratch.path().join("small");
    fill(&small, BASELINE_JOBS)?;
    let big_times = measure(&runtime, &big)?;
    let small_times = measure(&runtime, &small)?;
    println!("\n| page (limit 100) | {JOBS} jobs p50 | p99 | {BASELINE_JOBS} jobs p50 (baseline) | p99 | **p50 ratio** |");
    println!("|---|---|---|---|---|---|");
    for ((kind, big), (_, small)) in big_times.into_iter().zip(small_times) {
        let (big, small) = (Latencies::of(big), Latencies::of(small));
        println!(
            "| {kind} | {} | {} | {} | {} | **{:.2}×** |",
            millis(big.p50),
            millis(big.p99),
            millis(small.p50),
            millis(small.p99),
            ratio(big.p50, small.p50)
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Stores `jobs` jobs in a store at `data_dir`, one second apart, spread over two submitters and two queues.
fn fill(data_dir: &Path, jobs: usize) -> Result<(), LabBenchError> {
    let store =
        SqliteStore::open(data_dir).map_err(|error| LabBenchError::Store(error.to_string()))?;
    let start = Timestamp::now() - SignedDuration::from_secs(jobs as i64);
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
                "provision_data": {"distro": "noble"},
                "test_data": {
                    "test_cmds": "set -ex\nmkdir artifacts\n./run-tests --junit artifacts/junit.xml\n",
                    "test_username": "ubuntu",
                },
                "reserve_data": {"ssh_keys": ["lp:someone"], "timeout": 3600},
            }),
            max_attempts: 1,
            submitter: Some(if index % 2 == 0 { "alice" } else { "bob" }.to_owned()),
            held: false,
            recipe_script: None,
        };
        let at = start + SignedDuration::from_secs(index as i64);
        store
            .submit_job(&job, at)
            .map_err(|error| LabBenchError::Store(error.to_string()))?;
    }
    Ok(())
}

/// The round trips of each kind of page against a server on the store at `data_dir`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    data_dir: &Path,
) -> Result<Vec<(&'static str, Vec<Duration>)>, LabBenchError> {
    let mut config = ServerConfig::new(data_dir.to_owned());
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = runtime.block_on(Server::bind(config))?;
    let client = Client::new(&format!("http://{}", server.local_addr()), None)?;
    let task = runtime.spawn(server.run(std::future::pending()));
    let deep = deep_cursor(&client)?;
    let kinds: [(&'static str, JobsQuery); 4] = [
        ("newest", JobsQuery::default()),
        (
            "queue with 1 job in 1 000",
            JobsQuery {
                queue: Some("rare".into()),
                ..JobsQuery::default()
            },
        ),
        (
            "state and submitter",
            JobsQuery {
                state: Some("queued".into()),
                submitter: Some("alice".into()),
                ..JobsQuery::default()
            },
        ),
        (
            "deep (cursor after 1 000 pages, or the last page)",
            JobsQuery {
                cursor: deep,
                ..JobsQuery::default()
            },
        ),
    ];
    let mut measured = Vec::new();
    for (kind, query) in kinds {
        client.jobs(&query)?;
        let mut times = Vec::with_capacity(REPEATS);
        for _ in 0..REPEATS {
            let began = Instant::now();
            let page = client.jobs(&query)?;
            times.push(began.elapsed());
            if page.jobs.is_empty() {
                return Err(LabBenchError::Store(format!("the {kind} page is empty")));
            }
        }
        measured.push((kind, times));
    }
    task.abort();
    Ok(measured)
}

/// The cursor after 1 000 pages of 100 (or of the last page, on a smaller store), followed page by page.
fn deep_cursor(client: &Client) -> Result<Option<String>, LabBenchError> {
    let mut cursor = None;
    for _ in 0..1_000 {
        let page = client.jobs(&JobsQuery {
            limit: Some(100),
            cursor: cursor.clone(),
            ..JobsQuery::default()
        })?;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(cursor)
}
