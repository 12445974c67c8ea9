//! `proctor-bench lab [PART...]`: the lab service's speed goals (issue 4), each against a baseline measured in the
//! same run. The server, agents and client are the real libraries on 127.0.0.1, with SQLite in a temporary
//! directory.
//!
//! - `dispatch`: 10 idle agents long-polling; jobs submitted one at a time; latency from just before the submit to
//!   the moment the job's test process printed `$EPOCHREALTIME`. Baseline: one HTTP round trip to the same server
//!   plus spawning that `bash` directly.
//! - `throughput`: 50 agents, 500 jobs running `true` submitted at once; jobs per second from the first submit to
//!   the last job's end. Baseline: as many `bash -c true` spawned one after the other.
//! - `memory`: the server in a process of its own (`lab serve`), its resident memory holding 1 000 long-polling
//!   claims against the same server idle.
//! - `list`: `GET /api/v1/jobs` pages with 100 000 jobs stored. Baseline: the same pages with 100 jobs stored.
//! - `wait`: `proctor submit --wait` (and `--follow`) of a trivial job, as a process, against one idle agent; from
//!   the process's start to its exit. Baseline: the server's own queued → ended time of the same jobs.
//! - `ui`: the web UI's jobs list and job page with 10 000 jobs and 100 000 test results stored (baseline: the same
//!   pages with 100 jobs and 1 000 results); the overview with 500 agents on 20 queues (baseline: 25 agents on one
//!   queue); and a job's log line reaching its page open in headless Chromium (baselines: the tail part's API
//!   follower and pipe).
//! - `tail`: a job printing `$EPOCHREALTIME` every 50 ms, followed through the log endpoint; latency from the print
//!   to the follower's read.
//! - `scale-dispatch`, `scale-throughput`, `scale-idle` (issue 14): the dispatch and throughput parts on PostgreSQL,
//!   with one server and two, against SQLite in the same run; and one server (or two) holding 10 000 idle
//!   long-polling claims while it dispatches. Their PostgreSQL rows need `PROCTOR_TEST_POSTGRES` (the admin URL of
//!   a throwaway cluster, which `scripts/bench` starts); without it they are skipped with a line saying so.
//!
//! - `fanout` (issue 14): one `proctor run --lab` of a heavy-tailed suite of 48 sleep tests over 4 agents (real
//!   `proctor server` and `proctor agent` processes), its first and second run against the lower bound
//!   `max(total / 4, longest)`, against 1 agent, and against the same run here with `-j 4`.
//!
//! Every part runs when none is named.

mod dispatch;
mod fanout;
mod fixture;
mod list;
mod memory;
mod scale;
mod tail;
mod throughput;
mod ui;
mod wait;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proctor_agent::AgentError;
use proctor_api::JobState;
use proctor_client::ClientError;
use proctor_server::ServerError;
use thiserror::Error;

use crate::process::{ratio, ProcessError};
use crate::run::RunBenchError;

pub use memory::serve;

const USAGE: &str = "usage: proctor-bench lab \
    [dispatch|throughput|memory|tail|wait|list|ui|scale-dispatch|scale-throughput|scale-idle|fanout]...";

/// Why the `lab` benchmark could not produce its figures.
#[derive(Debug, Error)]
pub enum LabBenchError {
    /// The command line was not understood.
    #[error("{USAGE}")]
    Usage,
    /// A part name that is not one of the benchmarks.
    #[error(
        "unknown part {0:?}: expected dispatch, throughput, memory, tail, wait, list, ui, scale-dispatch, \
         scale-throughput, scale-idle or fanout\n{USAGE}"
    )]
    UnknownPart(String),
    /// The async runtime for the server (or the memory part's clients) could not be built.
    #[error("building the tokio runtime: {0}")]
    Runtime(io::Error),
    /// An agent or queue name the bench made was refused (a bug in the bench).
    #[error("a name the bench made was refused: {0}")]
    BadName(String),
    /// The server could not start or stopped with an error.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// An agent could not be set up or registered.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A request of the bench's own client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A request of the memory part's async clients failed.
    #[error("{what}: {source}")]
    Http {
        /// The request.
        what: String,
        /// reqwest's reason.
        source: reqwest::Error,
    },
    /// A scratch directory or file could not be made or read.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A tail baseline's script printed (or the browser saw) fewer marked lines than it should have.
    #[error("{what} {found} marked lines, expected {expected}")]
    MissingLines {
        /// Who printed or saw them.
        what: &'static str,
        /// Lines the script prints.
        expected: usize,
        /// Lines read.
        found: usize,
    },
    /// A baseline process did not start or did not exit 0, so its time means nothing.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A benchmark job ended other than `passed`, so its time means nothing.
    #[error("job {job_id} ended {state}: {}", reason.as_deref().unwrap_or("no reason given"))]
    JobFailed {
        /// The job.
        job_id: String,
        /// How it ended.
        state: JobState,
        /// The server's reason.
        reason: Option<String>,
    },
    /// The server lists fewer (or more) jobs than the bench submitted.
    #[error("the server lists {listed} jobs in the bench's queue, {submitted} were submitted")]
    JobsMissing {
        /// Jobs the server listed.
        listed: usize,
        /// Jobs the bench submitted.
        submitted: usize,
    },
    /// A job's log lacks the timestamp line its commands print.
    #[error("the log of job {job_id} has no {marker:?} line with a time: {log:?}")]
    NoTimestamp {
        /// The job.
        job_id: String,
        /// The word the line starts with.
        marker: &'static str,
        /// The log as read.
        log: String,
    },
    /// Something the bench waits for did not happen within its (generous) patience.
    #[error("gave up after {patience:?} waiting for {what}")]
    TimedOut {
        /// What was awaited.
        what: String,
        /// How long the bench waited.
        patience: Duration,
    },
    /// The server process of the memory part misbehaved.
    #[error("the server process: {0}")]
    ServeProcess(String),
    /// A line of `/proc/PID/status` was missing or unreadable.
    #[error("no {field} in {path}")]
    ProcStatus {
        /// The field, like `VmRSS`.
        field: &'static str,
        /// The status file.
        path: PathBuf,
    },
    /// A held claim was answered before its wait ended, so the server did not hold it.
    #[error(
        "claim {index} was answered {status} after {elapsed:?}, before its {wait:?} wait ended"
    )]
    ClaimNotHeld {
        /// Which of the claims.
        index: usize,
        /// The answer's status.
        status: u16,
        /// When it came.
        elapsed: Duration,
        /// What the claim asked for.
        wait: Duration,
    },
    /// A binary the bench runs is not built beside it.
    #[error("{0}")]
    MissingBinary(String),
    /// The store of the list part could not be filled.
    #[error("the store: {0}")]
    Store(String),
    /// `proctor submit` printed no job id.
    #[error("`proctor submit` printed no job id: {0:?}")]
    NoJobId(String),
    /// The browser of the ui part could not be driven, or its page did not behave.
    #[error("the browser: {0}")]
    Browser(String),
    /// A statement on the scale-out parts' PostgreSQL cluster failed.
    #[error("PostgreSQL, {doing}: {source}")]
    Postgres {
        /// What the bench was doing.
        doing: String,
        /// The client's reason.
        source: postgres::Error,
    },
    /// The open-file limit could not be read or raised.
    #[error("raising the open-file limit: {0}")]
    FileLimit(nix::errno::Errno),
    /// A `proctor run` the bench timed failed or lost tests, or its suite could not be written.
    #[error(transparent)]
    Run(#[from] RunBenchError),
    /// A bench thread or task died, so its figures are lost.
    #[error("a bench thread or task panicked")]
    WorkerPanicked,
}

/// One benchmark of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Dispatch,
    Throughput,
    Memory,
    Tail,
    Wait,
    List,
    Ui,
    ScaleDispatch,
    ScaleThroughput,
    ScaleIdle,
    Fanout,
}

impl Part {
    const ALL: [Part; 11] = [
        Part::Dispatch,
        Part::Throughput,
        Part::Memory,
        Part::Tail,
        Part::Wait,
        Part::List,
        Part::Ui,
        Part::ScaleDispatch,
        Part::ScaleThroughput,
        Part::ScaleIdle,
        Part::Fanout,
    ];

    fn parse(name: &str) -> Result<Part, LabBenchError> {
        match name {
            "dispatch" => Ok(Part::Dispatch),
            "throughput" => Ok(Part::Throughput),
            "memory" => Ok(Part::Memory),
            "tail" => Ok(Part::Tail),
            "wait" => Ok(Part::Wait),
            "list" => Ok(Part::List),
            "ui" => Ok(Part::Ui),
            "scale-dispatch" => Ok(Part::ScaleDispatch),
            "scale-throughput" => Ok(Part::ScaleThroughput),
            "scale-idle" => Ok(Part::ScaleIdle),
            "fanout" => Ok(Part::Fanout),
            _ if name.starts_with('-') => Err(LabBenchError::Usage),
            _ => Err(LabBenchError::UnknownPart(name.to_owned())),
        }
    }
}

fn parse_parts(args: &[String]) -> Result<Vec<Part>, LabBenchError> {
    let parts = args
        .iter()
        .map(|arg| Part::parse(arg))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if parts.is_empty() {
        Part::ALL.to_vec()
    } else {
        parts
    })
}

/// Runs the parts asked for, printing a Markdown table for each.
pub fn lab_bench(args: &[String]) -> Result<(), LabBenchError> {
    for part in parse_parts(args)? {
        match part {
            Part::Dispatch => dispatch::bench()?,
            Part::Throughput => throughput::bench()?,
            Part::Memory => memory::bench()?,
            Part::Tail => tail::bench()?,
            Part::Wait => wait::bench()?,
            Part::List => list::bench()?,
            Part::Ui => ui::bench()?,
            Part::ScaleDispatch => scale::dispatch_bench()?,
            Part::ScaleThroughput => scale::throughput_bench()?,
            Part::ScaleIdle => scale::idle::bench()?,
            Part::Fanout => fanout::bench()?,
        }
    }
    Ok(())
}

/// A temporary directory for one benchmark's servers and agents, removed when dropped.
fn scratch_dir() -> Result<tempfile::TempDir, LabBenchError> {
    tempfile::tempdir().map_err(|source| LabBenchError::Io {
        action: "creating a scratch directory in",
        path: std::env::temp_dir(),
        source,
    })
}

/// The runtime a benchmark's in-process server runs on.
fn multi_thread_runtime() -> Result<tokio::runtime::Runtime, LabBenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LabBenchError::Runtime)
}

/// Raises this process's soft limit of open files to its hard limit (children inherit it); answers the limit now.
fn raise_open_files_limit() -> Result<u64, LabBenchError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(LabBenchError::FileLimit)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(LabBenchError::FileLimit)?;
    }
    Ok(hard)
}

/// Parses a `$EPOCHREALTIME` value (seconds, a `.` or `,` as the locale has it, microseconds) as a time.
fn parse_epoch(text: &str) -> Option<SystemTime> {
    let (seconds, fraction) = text.trim().split_once(['.', ','])?;
    let seconds: u64 = seconds.parse().ok()?;
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// The times printed on lines `<marker> <$EPOCHREALTIME>` in `output`, in order.
fn marked_times<'a>(output: &'a str, marker: &'a str) -> impl Iterator<Item = SystemTime> + 'a {
    output.lines().filter_map(move |line| {
        let (word, time) = line.split_once(' ')?;
        (word == marker).then(|| parse_epoch(time)).flatten()
    })
}

/// `later - earlier`, zero when the clock says the later came first.
fn since(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// The `q` quantile (0..=1) of sorted `times`, by the nearest rank; zero when there are none.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// The summary a latency table prints.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latencies {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl Latencies {
    fn of(mut times: Vec<Duration>) -> Latencies {
        times.sort();
        Latencies {
            p50: quantile(&times, 0.50),
            p95: quantile(&times, 0.95),
            p99: quantile(&times, 0.99),
            max: times.last().copied().unwrap_or_default(),
        }
    }
}

/// Prints a latency table: its heading, the proctor row, the baseline row and their ratios.
fn print_latency_table(heading: &str, proctor: (&str, Latencies), baseline: (&str, Latencies)) {
    let ((proctor_label, proctor), (baseline_label, baseline)) = (proctor, baseline);
    println!("\n| {heading} | p50 | p99 | max |\n|---|---|---|---|");
    for (label, row) in [(proctor_label, proctor), (baseline_label, baseline)] {
        println!(
            "| {label} | {} | {} | {} |",
            millis(row.p50),
            millis(row.p99),
            millis(row.max)
        );
    }
    println!(
        "| **proctor / baseline** | **{:.1}×** | **{:.1}×** | {:.1}× |",
        ratio(proctor.p50, baseline.p50),
        ratio(proctor.p99, baseline.p99),
        ratio(proctor.max, baseline.max)
    );
}

/// Milliseconds with two decimals, for tables.
fn millis(time: Duration) -> String {
    format!("{:.2} ms", time.as_secs_f64() * 1000.0)
}

/// How a goal line reads.
fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn parts_are_named_or_all() {
        assert_eq!(
            parse_parts(&strings(&["tail", "dispatch"])).ok(),
            Some(vec![Part::Tail, Part::Dispatch])
        );
        assert_eq!(parse_parts(&[]).ok(), Some(Part::ALL.to_vec()));
        assert!(matches!(
            parse_parts(&strings(&["speed"])),
            Err(LabBenchError::UnknownPart(name)) if name == "speed"
        ));
        assert!(matches!(
            parse_parts(&strings(&["--fast"])),
            Err(LabBenchError::Usage)
        ));
    }

    #[test]
    fn epoch_times_parse_in_either_locale() {
        let expected = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        assert_eq!(parse_epoch("1700000000.123456"), Some(expected));
        assert_eq!(parse_epoch("1700000000,123456\n"), Some(expected));
        for bad in [
            "",
            "1700000000",
            "1700000000.",
            "x.1",
            "1.2e3",
            "1.1234567890",
        ] {
            assert_eq!(parse_epoch(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_marked_lines_with_a_time_count() {
        let output = "proctor-agent: phase test\nat 1.5\nat nonsense\nother 2.0\nat 3.25\n";
        let times: Vec<_> = marked_times(output, "at").collect();
        assert_eq!(
            times,
            vec![
                UNIX_EPOCH + Duration::from_millis(1500),
                UNIX_EPOCH + Duration::from_millis(3250)
            ]
        );
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let times: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let summary = Latencies::of(times.into_iter().rev().collect());
        assert_eq!(summary.p50, Duration::from_millis(100));
        assert_eq!(summary.p99, Duration::from_millis(198));
        assert_eq!(summary.max, Duration::from_millis(200));
        assert_eq!(Latencies::of(Vec::new()).max, Duration::ZERO);
    }
}
