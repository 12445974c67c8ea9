//! Commands over the run repository (`.proctor/`): `last`, `failing`,
//! `slowest`, `history` and `load`, shaped after stestr's commands of the
//! same names (same exit statuses, same failing set, same slowest order).

use std::io::{self, BufWriter, Read, StdoutLock, Write};
use std::path::{Path, PathBuf};

use proctor_events::{Outcome, Tally, TestRecord};
use proctor_repository::{
    RepoError, Repository, RunCounts, RunInfo, RunKind, RunMeta, RunState, WorkerTime,
};

use crate::cli::HistoryAction;
use crate::display::{record_text, results_line};
use crate::error::CliError;
use crate::exit;
use crate::input;

/// The name standard input goes by in messages (as in `input`).
const STDIN_NAME: &str = "<stdin>";

/// `proctor last`: the latest run's failures with their details, then its
/// totals, id and state; exit 1 if it had failures. With `subunit`, the
/// run's stored stream, byte for byte (exit 0 once written, as stestr).
pub fn last(project: &Path, subunit: bool) -> Result<u8, CliError> {
    let repository = Repository::open(project)?;
    let info = latest_run(&repository)?;
    let mut out = stdout();
    if subunit {
        copy_stream(&repository, info.id, &mut out)?;
        out.flush()?;
        return Ok(exit::OK);
    }
    let records = repository.records(info.id)?;
    let status = write_run(&mut out, &info, &records, Tests::Failed)?;
    out.flush()?;
    Ok(status)
}

/// `proctor failing`: the failing set. By default each test with the
/// details of its latest failure; `list` prints only the ids, `subunit` the
/// failing tests' events. Exit 1 when the set is not empty, except with
/// `subunit`, which exits 0 once the stream is written (as stestr does, so
/// that a pipeline's status says whether the stream got through).
pub fn failing(project: &Path, list: bool, subunit: bool) -> Result<u8, CliError> {
    let repository = Repository::open(project)?;
    let mut out = stdout();
    if subunit {
        // Through memory, so that a closed pipe is told apart from a
        // repository that cannot be read.
        let mut stream = Vec::new();
        repository.write_failing_stream(&mut stream)?;
        out.write_all(&stream)?;
        out.flush()?;
        return Ok(exit::OK);
    }
    let records = repository.failing_records()?;
    if list {
        for record in &records {
            writeln!(out, "{}", record.test_id)?;
        }
    } else {
        write_records(&mut out, &records.iter().collect::<Vec<_>>())?;
        writeln!(out, "{}", failing_count_line(records.len()))?;
    }
    out.flush()?;
    Ok(if records.is_empty() {
        exit::OK
    } else {
        exit::TESTS_FAILED
    })
}

/// `proctor slowest`: the `count` slowest tests of the latest run, slowest
/// first, as a table like stestr's.
pub fn slowest(project: &Path, count: usize) -> Result<u8, CliError> {
    let repository = Repository::open(project)?;
    let info = latest_run(&repository)?;
    let slowest = repository.slowest(count)?;
    let mut out = stdout();
    if slowest.is_empty() {
        writeln!(out, "Run {} has no timed tests.", info.id)?;
    } else {
        let rows: Vec<Vec<String>> = slowest
            .into_iter()
            .map(|(test_id, duration)| vec![test_id, format!("{:.3}", duration.as_secs_f64())])
            .collect();
        write_table(&mut out, &["Test id", "Runtime (s)"], &rows)?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// `proctor slowest --by-worker`: the latest run's time by worker, the busiest first.
pub fn time_by_worker(project: &Path) -> Result<u8, CliError> {
    let repository = Repository::open(project)?;
    let info = latest_run(&repository)?;
    let workers = repository.time_by_worker()?;
    let mut out = stdout();
    if workers.is_empty() {
        writeln!(out, "Run {} has no timed tests.", info.id)?;
    } else {
        write_workers(&mut out, workers)?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// `proctor history workers [TEST]`: every stored run's test runs (or one test's) by worker.
fn history_by_worker(
    repository: &Repository,
    test: Option<&str>,
    out: &mut impl Write,
) -> Result<u8, CliError> {
    let workers = repository.history_by_worker(test)?;
    match (workers.is_empty(), test) {
        (true, Some(test)) => writeln!(out, "No stored run has a timed run of {test}.")?,
        (true, None) => writeln!(out, "No stored run has timed tests.")?,
        (false, _) => write_workers(out, workers)?,
    }
    Ok(exit::OK)
}

/// A table of test runs by worker.
fn write_workers(out: &mut impl Write, workers: Vec<WorkerTime>) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = workers
        .into_iter()
        .map(|worker| {
            vec![
                match worker.worker.as_str() {
                    "" => "-".to_owned(),
                    route => route.to_owned(),
                },
                worker.runs.to_string(),
                worker.failed.to_string(),
                format!("{:.3}", worker.total.as_secs_f64()),
                worker.slowest.0,
                format!("{:.3}", worker.slowest.1.as_secs_f64()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "Worker",
            "Runs",
            "Failed",
            "Total (s)",
            "Slowest test",
            "Its time (s)",
        ],
        &rows,
    )?;
    Ok(())
}

/// `proctor history`: list, show, remove or prune stored runs.
pub fn history(project: &Path, action: HistoryAction) -> Result<u8, CliError> {
    let repository = Repository::open(project)?;
    let mut out = stdout();
    let status = match action {
        HistoryAction::List => list_runs(&repository, &mut out)?,
        HistoryAction::Show { id } => show_run(&repository, id, &mut out)?,
        HistoryAction::Remove { id } => {
            repository.remove(id)?;
            writeln!(out, "Removed run {id}.")?;
            exit::OK
        }
        HistoryAction::Prune { keep } => prune_runs(&repository, keep, &mut out)?,
        HistoryAction::Workers { test } => {
            history_by_worker(&repository, test.as_deref(), &mut out)?
        }
    };
    out.flush()?;
    Ok(status)
}

/// `proctor load`: stores each stream (standard input when no files are
/// given) as a new run, creating the repository if needed, and prints each
/// run's failures and totals. Exit 1 if a loaded run had failures.
pub fn load(project: &Path, files: &[PathBuf], partial: bool) -> Result<u8, CliError> {
    // Every file is opened before anything is stored, so that a mistyped
    // name does not leave half of the streams loaded.
    let inputs = open_inputs(files)?;
    let repository = Repository::open_or_init(project)?;
    let meta = load_meta(partial);
    let mut out = stdout();
    let mut status = exit::OK;
    for input in inputs {
        let info = load_one(&repository, input, meta.clone())?;
        let records = repository.records(info.id)?;
        status = status.max(write_run(&mut out, &info, &records, Tests::Failed)?);
    }
    out.flush()?;
    Ok(status)
}

/// Standard output, buffered.
fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// The newest run, or an error saying there is none yet.
fn latest_run(repository: &Repository) -> Result<RunInfo, CliError> {
    repository.latest()?.ok_or_else(|| CliError::NoRuns {
        path: repository.path().to_path_buf(),
    })
}

/// Whether a test run counts as failed (`fail`, `uxsuccess`, or cut off).
fn failed(record: &TestRecord) -> bool {
    Outcome::of(record.status) == Outcome::Failed
}

/// Which of a run's tests [`write_run`] lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tests {
    /// Every test run, failures with their details (`history show`).
    All,
    /// Only the failures, with their details (`last`, `load`).
    Failed,
}

/// A run's tests, then its totals, id and state; returns the exit status it
/// calls for (1 if any test failed).
fn write_run(
    out: &mut impl Write,
    info: &RunInfo,
    records: &[TestRecord],
    shown: Tests,
) -> io::Result<u8> {
    let listed: Vec<&TestRecord> = records
        .iter()
        .filter(|record| shown == Tests::All || failed(record))
        .collect();
    write_records(out, &listed)?;
    // The same totals and verdicts `proctor run` closed the run with: a test that passed on a retry is flaky.
    let tally: Tally = records.iter().collect();
    write_totals(out, info, &tally)?;
    Ok(if tally.tests().failed > 0 {
        exit::TESTS_FAILED
    } else {
        exit::OK
    })
}

/// Each test run as `proctor run` prints it, with details for failures.
fn write_records(out: &mut impl Write, records: &[&TestRecord]) -> io::Result<()> {
    for record in records {
        out.write_all(record_text(record, failed(record)).as_bytes())?;
    }
    Ok(())
}

fn failing_count_line(count: usize) -> String {
    match count {
        0 => "No failing tests.".to_owned(),
        1 => "1 failing test.".to_owned(),
        n => format!("{n} failing tests."),
    }
}

/// A run's closing lines: the totals, then which run it is and how it
/// ended.
fn write_totals(out: &mut impl Write, info: &RunInfo, tally: &Tally) -> io::Result<()> {
    writeln!(out, "\n{}", results_line(tally, info.duration))?;
    writeln!(
        out,
        "Run {}: {} ({} run), started {}",
        info.id,
        state_name(info.state),
        kind_name(info.kind()),
        started(info)
    )
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Complete => "complete",
        RunState::Interrupted => "interrupted",
        RunState::Unfinished => "unfinished",
    }
}

fn kind_name(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Full => "full",
        RunKind::Partial => "partial",
    }
}

/// When a run began, to the second, in UTC.
fn started(info: &RunInfo) -> String {
    info.started.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `history list`: a table with a row per run, oldest first.
fn list_runs(repository: &Repository, out: &mut impl Write) -> Result<u8, CliError> {
    let runs = repository.runs()?;
    if runs.is_empty() {
        writeln!(out, "No runs stored.")?;
        return Ok(exit::OK);
    }
    let header = [
        "Run", "Started", "Duration", "Tests", "Passed", "Failed", "Skipped", "State", "Kind",
        "Command",
    ];
    let rows: Vec<Vec<String>> = runs.iter().map(run_row).collect();
    write_table(out, &header, &rows)?;
    Ok(exit::OK)
}

fn run_row(info: &RunInfo) -> Vec<String> {
    let count = |pick: fn(&RunCounts) -> usize| {
        info.counts
            .as_ref()
            .map_or_else(|| "-".to_owned(), |counts| pick(counts).to_string())
    };
    vec![
        info.id.to_string(),
        started(info),
        info.duration
            .map_or_else(|| "-".to_owned(), |d| format!("{:.3}s", d.as_secs_f64())),
        count(|c| c.total),
        count(|c| c.passed),
        count(|c| c.failed),
        count(|c| c.skipped),
        state_name(info.state).to_owned(),
        kind_name(info.kind()).to_owned(),
        info.meta.command.join(" "),
    ]
}

/// `history show`: every test of the run and how it ended, failures with
/// their details, then the totals; exit 1 if the run had failures.
fn show_run(repository: &Repository, id: u64, out: &mut impl Write) -> Result<u8, CliError> {
    let info = repository.run(id)?;
    let records = repository.records(id)?;
    Ok(write_run(out, &info, &records, Tests::All)?)
}

fn prune_runs(repository: &Repository, keep: usize, out: &mut impl Write) -> Result<u8, CliError> {
    let removed = repository.prune(keep)?;
    if removed.is_empty() {
        writeln!(out, "No runs removed.")?;
    }
    for id in removed {
        writeln!(out, "Removed run {id}.")?;
    }
    Ok(exit::OK)
}

/// Writes left-aligned columns two spaces apart under a header and a rule,
/// the layout of stestr's tables; lines are trimmed, so none ends in
/// spaces.
fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let header: Vec<String> = header.iter().map(|&h| h.to_owned()).collect();
    write_row(out, &widths, &header)?;
    write_row(out, &widths, &rule)?;
    for row in rows {
        write_row(out, &widths, row)?;
    }
    Ok(())
}

fn write_row(out: &mut impl Write, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, &width)| format!("{cell:width$}"))
        .collect();
    writeln!(out, "{}", padded.join("  ").trim_end())
}

/// Copies a run's stream file to `out` unchanged, telling a file that
/// cannot be read from output that cannot be written.
fn copy_stream(repository: &Repository, id: u64, out: &mut impl Write) -> Result<(), CliError> {
    let path = repository.stream_path(id)?;
    let mut file = input::open(&path)?;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(|source| CliError::Input {
            path: path.clone(),
            source,
        })?;
        if read == 0 {
            return Ok(());
        }
        out.write_all(&buffer[..read])?;
    }
}

/// A stream to load, with the name errors give it.
struct Input {
    name: PathBuf,
    stream: Box<dyn Read>,
}

/// The streams to load: the files, or standard input when there are none.
fn open_inputs(files: &[PathBuf]) -> Result<Vec<Input>, CliError> {
    if files.is_empty() {
        return Ok(vec![Input {
            name: PathBuf::from(STDIN_NAME),
            stream: Box::new(io::stdin().lock()),
        }]);
    }
    files
        .iter()
        .map(|path| {
            Ok(Input {
                name: path.clone(),
                stream: Box::new(input::open(path)?),
            })
        })
        .collect()
}

/// What a loaded run records about itself: its kind, and this command line
/// (so that `history` tells loaded runs from ones proctor ran).
fn load_meta(partial: bool) -> RunMeta {
    let kind = if partial {
        RunKind::Partial
    } else {
        RunKind::Full
    };
    let command: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    RunMeta::of_kind(kind).with_command(command)
}

/// Loads one stream; a read error names the file and the run that keeps
/// what was read.
fn load_one(repository: &Repository, input: Input, meta: RunMeta) -> Result<RunInfo, CliError> {
    repository
        .load(input.stream, meta)
        .map_err(|error| match error {
            RepoError::LoadRead { id, source } => CliError::LoadInterrupted {
                path: input.name,
                id,
                source,
            },
            other => CliError::from(other),
        })
}
