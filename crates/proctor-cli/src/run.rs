//! `proctor run` and `proctor list`: find the project's tests, pick the ones
//! asked for, run them in parallel, and store the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proctor::config::{RunSettings, Setting, Workers};
use proctor_events::{Sink, Summary, Tee};
use proctor_formats::junit::JunitSink;
use proctor_pool::Pool;
use proctor_repository::{History, ProcessCost, Repository, RunMeta, RunWriter};
use proctor_runner::{RunConfig, RunReport, Runner, Stopper};
use proctor_sources::{Project, TestCase};
use proctor_subunit::EventWriter;
use proctor_supervisor::{Supervisor, SupervisorConfig};
use regex::Regex;

use crate::cli::{ListArgs, RunArgs, Selection};
use crate::display::{summary_text, Display};
use crate::error::CliError;
use crate::exit;

/// How many slow tests the closing summary names.
const SLOWEST_SHOWN: usize = 5;

/// `proctor list`: the selected tests' ids, one per line.
pub fn list(args: ListArgs) -> Result<u8, CliError> {
    let project = discover(&args.selection)?;
    let tests = select(&project, &args.selection, None)?;
    let mut out = io::stdout().lock();
    for test in tests {
        writeln!(out, "{}", test.id)?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// `proctor run`.
pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let project_dir = &args.selection.project.dir;
    let settings = settings(&args)?;
    let project = discover(&args.selection)?;
    let repository = open_repository(project_dir, *settings.no_store.get())?;
    let failing = match (&repository, *settings.failing.get()) {
        (Some(repository), true) => Some(repository.failing()?.into_iter().collect()),
        (None, true) => {
            return Err(CliError::Usage(format!(
                "`failing` ({}) needs a stored run",
                settings.failing.source()
            )))
        }
        (_, false) => None,
    };
    let tests = select(&project, &args.selection, failing.as_ref())?;
    if tests.is_empty() {
        if !*settings.subunit.get() {
            println!("No tests to run.");
        }
        return Ok(exit::OK);
    }
    // A damaged index only costs the schedule its hints; recording the run
    // rebuilds it.
    let history = repository
        .as_ref()
        .map(|repository| repository.history().unwrap_or_default())
        .unwrap_or_default();
    let config = run_config(&settings)?;
    let supervisor = Supervisor::new(SupervisorConfig {
        grace: config.grace,
        ..SupervisorConfig::default()
    })?;
    let runner = Runner::new(&project, &supervisor, config)
        .with_process_costs(&process_costs_from(&history));
    let history = history.expected_durations();
    stop_on_ctrl_c(runner.stopper());
    let partial = *settings.failing.get() || selects_subset(&args.selection);
    loop {
        let outcome = run_once(
            &settings,
            &args.selection.filters,
            &runner,
            tests.clone(),
            &history,
            repository.as_ref(),
            partial,
        )?;
        if outcome != exit::OK || !*settings.until_failure.get() {
            return Ok(outcome);
        }
    }
}

/// The run's settings: the project's layers (defaults, config files, environment) with the flags given on top. A
/// flag that is not given changes nothing, so it cannot hide what a file or the environment says.
fn settings(args: &RunArgs) -> Result<RunSettings, CliError> {
    let mut settings = RunSettings::load(&args.selection.project.dir)?;
    let s = &mut settings;
    given(&mut s.failing, args.failing.then_some(true));
    given(&mut s.concurrency, args.concurrency);
    given(&mut s.pool, args.pool.clone().map(Some));
    given(&mut s.serial, args.serial.then_some(true));
    given(&mut s.until_failure, args.until_failure.then_some(true));
    given(&mut s.retries, args.retries);
    given(&mut s.subunit, args.subunit.then_some(true));
    given(&mut s.junit, args.junit.clone().map(Some));
    given(&mut s.no_store, args.no_store.then_some(true));
    given(&mut s.memory_limit, args.memory_limit.map(Some));
    given(&mut s.grace, args.grace);
    Ok(settings)
}

/// A flag's value, when it was given, as the explicit layer of its setting.
fn given<T>(setting: &mut Setting<T>, flag: Option<T>) {
    if let Some(value) = flag {
        setting.set(value);
    }
}

/// One run of the selected tests, stored and reported; returns the exit status.
fn run_once(
    settings: &RunSettings,
    filters: &[String],
    runner: &Runner<'_>,
    tests: Vec<TestCase>,
    history: &HashMap<String, Duration>,
    repository: Option<&Repository>,
    partial: bool,
) -> Result<u8, CliError> {
    let meta = RunMeta {
        kind: if partial {
            proctor_repository::RunKind::Partial
        } else {
            proctor_repository::RunKind::Full
        },
        command: std::env::args().collect(),
        filters: filters.to_vec(),
    };
    let mut writer = repository.map(|r| r.begin_run(meta)).transpose()?;
    let mut summary = Summary::new();
    let subunit = *settings.subunit.get();
    let mut junit = settings
        .junit
        .get()
        .as_ref()
        .map(|_| JunitSink::new().group_retries(true));
    let mut display = (!subunit).then(|| Display::new(tests.len()));
    let ticker = display.as_ref().map(Display::ticker);
    let mut stdout_stream = subunit.then(|| EventWriter::new(io::stdout()));
    let report = {
        let mut tee = Tee::new().with(&mut summary);
        if let Some(writer) = writer.as_mut() {
            tee = tee.with(writer);
        }
        if let Some(junit) = junit.as_mut() {
            tee = tee.with(junit);
        }
        if let Some(display) = display.as_mut() {
            tee = tee.with(&mut *display);
        }
        if let Some(stream) = stdout_stream.as_mut() {
            tee = tee.with(stream);
        }
        let result = runner.run(tests, history, &mut tee, &mut |progress| {
            if let Some(ticker) = &ticker {
                ticker.tick(progress);
            }
        });
        let finished = tee.finish();
        result.and_then(|report| finished.map(|()| report))
    };
    if let Some(display) = &display {
        display.clear();
    }
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            // An output failed (a closed pipe, a full disk) and the run was
            // stopped: keep what it produced, marked interrupted.
            if let Some(writer) = writer {
                writer.interrupt()?;
            }
            return Err(error.into());
        }
    };
    if let Some(mut writer) = writer {
        writer.set_process_costs(process_costs_to_store(&report));
        store(writer, &report)?;
    }
    if let (Some(junit), Some(path)) = (&junit, settings.junit.get()) {
        write_junit(junit, path)?;
    }
    if display.is_some() {
        print!("{}", summary_text(&summary, &report, SLOWEST_SHOWN));
    }
    for given_up in &report.given_up {
        eprintln!("proctor: gave up on {given_up}; the run went on with the other workers");
    }
    for problem in &report.problems {
        eprintln!("proctor: {problem}");
    }
    Ok(exit_status(&report))
}

/// What the history knows of each suite's processes, as the runner plans with it.
fn process_costs_from(history: &History) -> HashMap<String, proctor_runner::ProcessCost> {
    history
        .process_costs()
        .into_iter()
        .map(|(suite, cost)| {
            let cost = proctor_runner::ProcessCost {
                startup: cost.startup,
                per_test: cost.per_test,
            };
            (suite, cost)
        })
        .collect()
}

/// What the run measured of each suite's processes, as the repository keeps it.
fn process_costs_to_store(report: &RunReport) -> BTreeMap<String, ProcessCost> {
    report
        .process_costs
        .iter()
        .map(|(suite, cost)| {
            let cost = ProcessCost {
                startup: cost.startup,
                per_test: cost.per_test,
            };
            (suite.clone(), cost)
        })
        .collect()
}

fn store(writer: RunWriter, report: &RunReport) -> Result<(), CliError> {
    if report.interrupted {
        writer.interrupt()?;
    } else {
        writer.complete()?;
    }
    Ok(())
}

fn write_junit(junit: &JunitSink, path: &Path) -> Result<(), CliError> {
    let file = std::fs::File::create(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    junit.write_report(file).map_err(|source| CliError::Parse {
        what: format!("the JUnit report for {}", path.display()),
        source: Box::new(source),
    })
}

/// 130 when stopped; 2 when a worker could not be had or released (a hook failed: something may be left running);
/// else 1 when a test failed.
fn exit_status(report: &RunReport) -> u8 {
    if report.interrupted {
        exit::INTERRUPTED
    } else if !report.problems.is_empty() {
        exit::ERROR
    } else if report.failed.is_empty() {
        exit::OK
    } else {
        exit::TESTS_FAILED
    }
}

/// The first Ctrl-C stops the run cleanly; a second one exits at once.
fn stop_on_ctrl_c(stopper: Stopper) {
    static PRESSES: AtomicUsize = AtomicUsize::new(0);
    // Without a handler Ctrl-C kills proctor and leaves the run unfinished,
    // which the repository still reads; nothing else to do on failure.
    let _ = ctrlc::set_handler(move || {
        if PRESSES.fetch_add(1, Ordering::SeqCst) > 0 {
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        eprintln!("\nInterrupted: stopping running tests (Ctrl-C again to quit now)");
        stopper.stop();
    });
}

fn run_config(settings: &RunSettings) -> Result<RunConfig, CliError> {
    let (concurrency, pool) = match settings.workers()? {
        Workers::Slots(slots) => (slots.get(), None),
        Workers::Pool(path) => {
            let pool = Pool::load(&path)?;
            (pool.max_workers(), Some(pool))
        }
    };
    Ok(RunConfig {
        concurrency,
        retries: *settings.retries.get(),
        memory_limit: settings.memory_limit.get().map(|limit| limit.0),
        grace: *settings.grace.get(),
        pool,
        ..RunConfig::default()
    })
}

/// `proctor pool check`: each provisioner provisioned once and released, with its workers' platforms and the
/// time it took. Exit 2 when a provisioner failed.
pub fn pool_check(file: &Path) -> Result<u8, CliError> {
    let pool = Pool::load(file)?;
    let directory = std::env::current_dir().map_err(|source| CliError::Input {
        path: PathBuf::from("."),
        source,
    })?;
    let mut failed = false;
    let mut out = io::stdout().lock();
    for check in proctor_runner::check_pool(&pool, &directory) {
        let kind = pool.provisioners[check.index].kind.name();
        writeln!(
            out,
            "provisioner {} ({kind}): {} worker(s) in {:.3}s",
            check.index,
            check.workers.len(),
            check.took.as_secs_f64()
        )?;
        for (route, platform) in &check.workers {
            writeln!(out, "  {route}: {platform}")?;
        }
        if let Some(problem) = &check.problem {
            failed = true;
            writeln!(out, "  failed: {problem}")?;
        }
    }
    out.flush()?;
    Ok(if failed { exit::ERROR } else { exit::OK })
}

fn open_repository(project: &Path, no_store: bool) -> Result<Option<Repository>, CliError> {
    if no_store {
        // History still orders the tests when a repository exists.
        return Ok(Repository::open(project).ok());
    }
    Ok(Some(Repository::open_or_init(project)?))
}

fn discover(selection: &Selection) -> Result<Project, CliError> {
    let mut project =
        proctor_sources::discover(&selection.project.dir, selection.executables.as_deref())?;
    project.set_fmf_context(&selection.context)?;
    Ok(project)
}

/// Whether the selection leaves tests out (making the run partial).
fn selects_subset(selection: &Selection) -> bool {
    !selection.filters.is_empty()
        || !selection.exclude.is_empty()
        || selection.include_list.is_some()
        || selection.exclude_list.is_some()
}

/// The project's tests that the selection (and `only`, the failing set)
/// picks, in listing order.
fn select(
    project: &Project,
    selection: &Selection,
    only: Option<&HashSet<String>>,
) -> Result<Vec<TestCase>, CliError> {
    let include = regexes(&selection.filters)?;
    let exclude = regexes(&selection.exclude)?;
    let include_list = selection
        .include_list
        .as_deref()
        .map(read_ids)
        .transpose()?;
    let exclude_list = selection
        .exclude_list
        .as_deref()
        .map(read_ids)
        .transpose()?;
    let tests = project.list()?;
    Ok(tests
        .into_iter()
        .filter(|test| include.is_empty() || include.iter().any(|r| r.is_match(&test.id)))
        .filter(|test| !exclude.iter().any(|r| r.is_match(&test.id)))
        .filter(|test| {
            include_list
                .as_ref()
                .is_none_or(|ids| ids.contains(&test.id))
        })
        .filter(|test| {
            !exclude_list
                .as_ref()
                .is_some_and(|ids| ids.contains(&test.id))
        })
        .filter(|test| only.is_none_or(|ids| ids.contains(&test.id)))
        .collect())
}

fn regexes(patterns: &[String]) -> Result<Vec<Regex>, CliError> {
    patterns
        .iter()
        .map(|pattern| {
            Regex::new(pattern).map_err(|source| CliError::Parse {
                what: format!("the test filter {pattern:?}"),
                source: Box::new(source),
            })
        })
        .collect()
}

fn read_ids(path: &Path) -> Result<HashSet<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}
