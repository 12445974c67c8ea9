//! `proctor run` and `proctor list`: find the project's tests, pick the ones
//! asked for, run them in parallel, and store the run.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proctor::config::{RunSettings, Setting};
use proctor::Run;
use proctor::{Observer, Outcome, Progress, RunReport, Stopper};
use proctor_api::AgentState;
use proctor_events::{Sink, SinkError};
use proctor_pool::{Platform, Pool, Provisioner, ProvisionerKind, DEFAULT_FAILURE_BUDGET};
use proctor_sources::Project;
use proctor_subunit::Event;

use crate::cli::{ListArgs, RunArgs, Selection, SourceArg};
use crate::display::{summary_text, Display, Ticker};
use crate::error::CliError;
use crate::exit;

/// How many slow tests the closing summary names.
const SLOWEST_SHOWN: usize = 5;

/// `proctor list`: the selected tests' ids, one per line.
pub fn list(args: ListArgs) -> Result<u8, CliError> {
    let project = discover(&args.selection, None)?;
    let tests = selection(&args.selection).pick(project.list()?, None)?;
    let mut out = io::stdout().lock();
    for test in tests {
        writeln!(out, "{}", test.id)?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// `proctor run`: the facade's [`Run`] with the flags as its explicit settings, shown as it goes.
pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let project_dir = &args.selection.project.dir;
    let settings = settings(&args)?;
    // What sources learn between runs (a pytest project's collection) lives with the runs, and not at all when
    // the run is not stored.
    let cache = (!*settings.no_store.get()).then(|| {
        project_dir
            .join(proctor_repository::DIRECTORY)
            .join("cache")
    });
    let project = discover(&args.selection, cache)?;
    let mut run = Run::new(project_dir, project, settings);
    if let Some(pool) = lab_pool(&args)? {
        run = run.with_pool(pool);
    }
    let tests = run.select(&selection(&args.selection))?;
    if tests.is_empty() {
        if !*run.settings().subunit.get() {
            println!("No tests to run.");
        }
        return Ok(exit::OK);
    }
    stop_on_ctrl_c(run.stopper());
    let mut shown = Shown {
        display: None,
        ticker: None,
        quiet: *run.settings().subunit.get(),
        status: exit::OK,
    };
    let outcome = run.run_observed(&tests, &mut shown);
    if let Some(display) = &shown.display {
        display.clear();
    }
    outcome?;
    Ok(shown.status)
}

/// With `--lab URL --queue Q`: a pool of one lab provisioner holding `--workers` agents of the queue, by default
/// every one of them that is not offline or in maintenance. A queue with none is an error saying so.
fn lab_pool(args: &RunArgs) -> Result<Option<Pool>, CliError> {
    let (Some(server), Some(queue)) = (&args.lab, &args.queue) else {
        return Ok(None);
    };
    let token = std::env::var("PROCTOR_TOKEN").ok();
    let workers = match args.workers {
        Some(workers) => workers,
        None => {
            let client = proctor_client::Client::new(server, token.as_deref())?;
            let serving = client
                .agents()?
                .into_iter()
                .filter(|agent| agent.queues.iter().any(|served| served == queue))
                .filter(|agent| matches!(agent.state, AgentState::Idle | AgentState::Busy))
                .count();
            NonZeroUsize::new(serving).ok_or_else(|| {
                CliError::Usage(format!(
                    "no agent of queue {queue} is online at {server}: start one, or say how many to wait for with --workers"
                ))
            })?
        }
    };
    Ok(Some(Pool {
        provisioners: vec![Provisioner {
            kind: ProvisionerKind::Lab {
                server: server.clone(),
                queue: queue.clone(),
                token,
            },
            max_workers: workers,
            platform: Platform::default(),
            failure_budget: DEFAULT_FAILURE_BUDGET,
        }],
    }))
}

/// What `proctor run` shows of a run: the live display and each pass's summary, unless the stream is the output.
struct Shown {
    display: Option<Display>,
    ticker: Option<Ticker>,
    quiet: bool,
    status: u8,
}

impl Sink for Shown {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        match &mut self.display {
            Some(display) => display.event(event),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        match &mut self.display {
            Some(display) => display.finish(),
            None => Ok(()),
        }
    }
}

impl Observer for Shown {
    fn started(&mut self, tests: usize) {
        if !self.quiet {
            let display = Display::new(tests);
            self.ticker = Some(display.ticker());
            self.display = Some(display);
        }
    }

    fn progress(&mut self, progress: &Progress) {
        if let Some(ticker) = &self.ticker {
            ticker.tick(progress);
        }
    }

    fn ended(&mut self, outcome: &Outcome) {
        if let Some(display) = self.display.take() {
            display.clear();
            print!(
                "{}",
                summary_text(&outcome.summary, &outcome.report, SLOWEST_SHOWN)
            );
        }
        for given_up in &outcome.report.given_up {
            eprintln!("proctor: gave up on {given_up}; the run went on with the other workers");
        }
        for faltered in &outcome.report.faltered {
            eprintln!("proctor: {faltered}; the run went on with the other workers");
        }
        for problem in &outcome.report.problems {
            eprintln!("proctor: {problem}");
        }
        self.status = exit_status(&outcome.report);
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
    given(&mut s.time_limit, args.time_limit.map(Some));
    Ok(settings)
}

/// A flag's value, when it was given, as the explicit layer of its setting.
fn given<T>(setting: &mut Setting<T>, flag: Option<T>) {
    if let Some(value) = flag {
        setting.set(value);
    }
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

/// The project's sources as `selection` picks them, keeping what they learn between runs in `cache` when given.
fn discover(selection: &Selection, cache: Option<PathBuf>) -> Result<Project, CliError> {
    let discovery = proctor_sources::Discovery {
        cache,
        executables: selection.executables.clone(),
        source: selection.source.map(|source| match source {
            SourceArg::Pytest => proctor_sources::SourceKind::Pytest,
            SourceArg::Cargo => proctor_sources::SourceKind::Cargo,
        }),
        cargo_args: selection.cargo.cargo_args(),
    };
    let mut project = proctor_sources::discover_with(&selection.project.dir, &discovery)?;
    project.set_fmf_context(&selection.context)?;
    Ok(project)
}

/// The library's selection, from the arguments.
fn selection(selection: &Selection) -> proctor::Selection {
    proctor::Selection {
        filters: selection.filters.clone(),
        exclude: selection.exclude.clone(),
        include_list: selection.include_list.clone(),
        exclude_list: selection.exclude_list.clone(),
    }
}
