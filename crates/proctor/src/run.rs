//! A run of a project's tests, as `proctor run` makes it: settings, selection, workers, outputs.
//!
//! [`Run`] holds a project and its [`RunSettings`]; [`Run::select`] resolves references into tests with the same
//! sources and rules as `proctor run`'s arguments; [`Run::run`] runs them through the orchestrator and writes the
//! outputs the settings ask for (the run repository, subunit on standard output, a JUnit report), as the CLI does,
//! because the CLI is a [`Run`] too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proctor_events::{Aggregator, Sink, SinkError, Summary, Tee, TestRecord, TestVerdict};
use proctor_formats::junit::JunitSink;
use proctor_pool::Pool;
use proctor_repository::{History, ProcessCost, Repository, RunKind, RunMeta, RunWriter};
use proctor_runner::{
    Applicable, Fitness, Hook, Progress, RetryIf, RunConfig, RunReport, Runner, Stopper, Watch,
    WorkerInfo,
};
use proctor_sources::{Project, TestCase};
use proctor_subunit::{Event, EventWriter};
use proctor_supervisor::{Supervisor, SupervisorConfig};
use regex::Regex;

use crate::config::{RunSettings, Workers};
use crate::Error;

/// One project's runs: its tests, its settings, and the hooks that steer the orchestrator.
pub struct Run {
    dir: PathBuf,
    project: Project,
    settings: RunSettings,
    pool: Option<Pool>,
    applicable: Option<Hook<Applicable>>,
    fitness: Option<Hook<Fitness>>,
    retry_if: Option<Hook<RetryIf>>,
    keep_runs: bool,
    stopper: Stopper,
    watch: Watch,
    /// Every test the project lists, listed once: a testr project's listing runs a process.
    listed: OnceLock<Vec<TestCase>>,
    /// The filters of the last selection, as the stored run records them.
    filters: Vec<String>,
    /// Whether the last selection left tests out: a partial run updates the failing set only for the tests it ran.
    partial: bool,
}

/// Which of a project's tests to take, as `proctor run`'s arguments pick them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Tests whose id matches one of these regular expressions (all tests when empty).
    pub filters: Vec<String>,
    /// Leave out tests whose id matches one of these regular expressions.
    pub exclude: Vec<String>,
    /// Only the test ids this file lists, one per line.
    pub include_list: Option<PathBuf>,
    /// Leave out the test ids this file lists, one per line.
    pub exclude_list: Option<PathBuf>,
}

impl Selection {
    /// The tests matching any of `filters` (regular expressions over test ids, as `proctor run FILTER…`).
    pub fn matching<S: Into<String>>(filters: impl IntoIterator<Item = S>) -> Selection {
        Selection {
            filters: filters.into_iter().map(Into::into).collect(),
            ..Selection::default()
        }
    }

    /// Whether it may leave tests out, whatever the project lists.
    pub fn leaves_out(&self) -> bool {
        !self.filters.is_empty()
            || !self.exclude.is_empty()
            || self.include_list.is_some()
            || self.exclude_list.is_some()
    }

    /// The tests of `tests` this selection (and `only`, when given) takes, in their order.
    pub fn pick(
        &self,
        tests: Vec<TestCase>,
        only: Option<&HashSet<String>>,
    ) -> Result<Vec<TestCase>, Error> {
        let include = regexes(&self.filters)?;
        let exclude = regexes(&self.exclude)?;
        let include_list = self.include_list.as_deref().map(read_ids).transpose()?;
        let exclude_list = self.exclude_list.as_deref().map(read_ids).transpose()?;
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
}

/// What a run did: its report, its summary, and the stored run that keeps it.
#[derive(Debug)]
pub struct Outcome {
    /// What the orchestrator reports beyond the events: failed and flaky tests, problems, provisioners given up.
    pub report: RunReport,
    /// Every test run's status, by test and by run, with the failures' details.
    pub summary: Summary,
    /// The stored run's id in the project's `.proctor/`, when the run was stored.
    pub stored: Option<u64>,
    /// Every test run with its attachments, in the order they ended, when [`Run::keep_runs`] asked for them.
    pub runs: Vec<TestRecord>,
}

impl Outcome {
    /// Whether every test passed (after its retries) and nothing went wrong around the tests.
    pub fn succeeded(&self) -> bool {
        !self.report.interrupted && self.report.problems.is_empty() && self.report.failed.is_empty()
    }

    /// One test's verdict and runs in this run, when it ran.
    pub fn test(&self, id: &str) -> Option<TestResult> {
        Some(TestResult {
            verdict: self.summary.tests.verdict(id)?,
            runs: self
                .runs
                .iter()
                .filter(|run| run.test_id == id)
                .cloned()
                .collect(),
        })
    }
}

/// One test's result: its verdict over its runs, and the runs (retries and lost attempts included).
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Passed, failed, flaky (failed, then passed on a retry) or skipped.
    pub verdict: TestVerdict,
    /// Its runs, in the order they ended, each with its route code (the worker), status, times and attachments.
    pub runs: Vec<TestRecord>,
}

impl TestResult {
    /// Its last run: the one the verdict rests on.
    pub fn last(&self) -> Option<&TestRecord> {
        self.runs.last()
    }

    /// Where its last run ran: the worker's route code.
    pub fn worker(&self) -> Option<&str> {
        self.last()?.route_code.as_deref()
    }

    /// What its last run attached under `name` (`stdout`, `stderr`, `proctor-reason`), as text.
    pub fn attachment(&self, name: &str) -> Option<String> {
        let attachment = self.last()?.attachment(name)?;
        Some(String::from_utf8_lossy(&attachment.content).into_owned())
    }
}

/// What a caller sees of a run as it goes, beside the outputs the settings ask for: every event (it is a
/// [`Sink`]), the progress, and each pass's outcome (more than one with `until-failure`).
pub trait Observer: Sink {
    /// A pass of `tests` tests starts.
    fn started(&mut self, tests: usize) {
        let _ = tests;
    }

    /// Where the pass stands, about every 100 ms.
    fn progress(&mut self, progress: &Progress) {
        let _ = progress;
    }

    /// A pass ended with this outcome (its outputs are written).
    fn ended(&mut self, outcome: &Outcome) {
        let _ = outcome;
    }
}

/// Sees nothing: [`Run::run`]'s observer.
struct Unobserved;

impl Sink for Unobserved {
    fn event(&mut self, _: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

impl Observer for Unobserved {}

/// Keeps every finished test run.
#[derive(Default)]
struct Runs {
    aggregator: Aggregator,
    runs: Vec<TestRecord>,
}

impl Sink for Runs {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.runs.extend(self.aggregator.push(event));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.runs.extend(self.aggregator.finish());
        Ok(())
    }
}

impl Run {
    /// The project in `dir` with its settings as `proctor run` there reads them without flags.
    pub fn open(dir: impl AsRef<Path>) -> Result<Run, Error> {
        let dir = dir.as_ref();
        let settings = RunSettings::load(dir)?;
        let project = proctor_sources::discover(dir, None)?;
        Ok(Run::new(dir, project, settings))
    }

    /// A run of `project` (found in `dir`, where its `.proctor/` is) with `settings`.
    pub fn new(dir: impl Into<PathBuf>, project: Project, settings: RunSettings) -> Run {
        Run {
            dir: dir.into(),
            project,
            settings,
            pool: None,
            applicable: None,
            fitness: None,
            retry_if: None,
            keep_runs: false,
            stopper: Stopper::default(),
            watch: Watch::default(),
            listed: OnceLock::new(),
            filters: Vec::new(),
            partial: false,
        }
    }

    /// The run's settings, each with where its value came from.
    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    /// The settings to change in code: [`crate::config::Setting::set`] is the explicit layer.
    pub fn settings_mut(&mut self) -> &mut RunSettings {
        &mut self.settings
    }

    /// The project whose tests run.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// Runs on this pool's workers, made in code, whatever the `pool`, `concurrency` and `serial` settings say.
    pub fn with_pool(mut self, pool: Pool) -> Run {
        self.pool = Some(pool);
        self
    }

    /// Lets a worker run a test only when `applicable(test, worker)` says so, beyond what the test's metadata says
    /// of the worker's platform.
    pub fn applicable(
        mut self,
        applicable: impl Fn(&TestCase, &WorkerInfo) -> bool + Send + Sync + 'static,
    ) -> Run {
        self.applicable = Some(Hook(Arc::new(applicable)));
        self
    }

    /// Among the tests a free worker may run, it takes the one `fitness(test, worker)` ranks highest first.
    pub fn fitness(
        mut self,
        fitness: impl Fn(&TestCase, &WorkerInfo) -> i64 + Send + Sync + 'static,
    ) -> Run {
        self.fitness = Some(Hook(Arc::new(fitness)));
        self
    }

    /// Retries (up to the `retries` setting) only the failed runs `retry_if(run)` accepts.
    pub fn retry_if(
        mut self,
        retry_if: impl Fn(&TestRecord) -> bool + Send + Sync + 'static,
    ) -> Run {
        self.retry_if = Some(Hook(Arc::new(retry_if)));
        self
    }

    /// Keeps every test run with its attachments in [`Outcome::runs`] (memory grows with the run's output).
    pub fn keep_runs(mut self, keep: bool) -> Run {
        self.keep_runs = keep;
        self
    }

    /// A handle that stops the run from another thread: no new test starts, running ones are stopped.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// A handle that reads the run's progress (done, running, queued) from another thread.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// Every test the project lists, in listing order.
    pub fn tests(&self) -> Result<&[TestCase], Error> {
        if let Some(listed) = self.listed.get() {
            return Ok(listed);
        }
        let listed = self.project.list()?;
        Ok(self.listed.get_or_init(|| listed))
    }

    /// The tests `selection` takes; with the `failing` setting, only those of the stored failing set.
    pub fn select(&mut self, selection: &Selection) -> Result<Vec<TestCase>, Error> {
        let failing = match *self.settings.failing.get() {
            true => Some(self.failing()?),
            false => None,
        };
        let mut tests = selection.pick(self.tests()?.to_vec(), failing.as_ref())?;
        if let Some(limit) = *self.settings.time_limit.get() {
            for test in &mut tests {
                test.time_limit = Some(test.time_limit.map_or(limit, |own| own.min(limit)));
            }
        }
        self.filters.clone_from(&selection.filters);
        self.partial = failing.is_some() || selection.leaves_out();
        Ok(tests)
    }

    /// The test with this id.
    pub fn find(&self, id: &str) -> Result<TestCase, Error> {
        self.tests()?
            .iter()
            .find(|test| test.id == id)
            .cloned()
            .ok_or_else(|| Error::NoSuchTest(id.to_owned()))
    }

    /// Runs `tests` through the orchestrator, writing the outputs the settings ask for.
    pub fn run(&self, tests: &[TestCase]) -> Result<Outcome, Error> {
        self.run_observed(tests, &mut Unobserved)
    }

    /// [`Run::run`], with `observer` seeing every event, the progress, and each pass's outcome.
    pub fn run_observed(
        &self,
        tests: &[TestCase],
        observer: &mut dyn Observer,
    ) -> Result<Outcome, Error> {
        self.run_where(tests, None, observer, self.keep_runs)
    }

    /// Runs `tests` only on the workers `worker` accepts (a chosen host, a chosen slot); a test none of them may
    /// run fails with the reason.
    pub fn run_on(
        &self,
        tests: &[TestCase],
        worker: impl Fn(&WorkerInfo) -> bool + Send + Sync + 'static,
    ) -> Result<Outcome, Error> {
        self.run_where(tests, Some(only(worker)), &mut Unobserved, self.keep_runs)
    }

    /// Runs the test with this id through the orchestrator and gives its result.
    pub fn run_test(&self, id: &str) -> Result<TestResult, Error> {
        let test = self.find(id)?;
        let outcome = self.run_where(std::slice::from_ref(&test), None, &mut Unobserved, true)?;
        result_of(&outcome, id)
    }

    /// Runs the test with this id on a worker `worker` accepts, and gives its result.
    pub fn run_test_on(
        &self,
        id: &str,
        worker: impl Fn(&WorkerInfo) -> bool + Send + Sync + 'static,
    ) -> Result<TestResult, Error> {
        let test = self.find(id)?;
        let outcome = self.run_where(
            std::slice::from_ref(&test),
            Some(only(worker)),
            &mut Unobserved,
            true,
        )?;
        result_of(&outcome, id)
    }

    fn run_where(
        &self,
        tests: &[TestCase],
        only: Option<Hook<Applicable>>,
        observer: &mut dyn Observer,
        keep_runs: bool,
    ) -> Result<Outcome, Error> {
        let repository = self.repository()?;
        // A damaged index only costs the schedule its hints; recording the run rebuilds it.
        let history = repository
            .as_ref()
            .map(|repository| repository.history().unwrap_or_default())
            .unwrap_or_default();
        let config = self.config(only)?;
        let supervisor = Supervisor::new(SupervisorConfig {
            grace: config.grace,
            ..SupervisorConfig::default()
        })?;
        let runner = Runner::new(&self.project, &supervisor, config)
            .with_process_costs(&process_costs_from(&history))
            .with_handles(self.stopper.clone(), self.watch.clone());
        let expected = history.expected_durations();
        let kind = match self.partial || tests.len() < self.tests()?.len() {
            true => RunKind::Partial,
            false => RunKind::Full,
        };
        loop {
            let stored = repository.as_ref().map(|repository| (repository, kind));
            let outcome = self.pass(&runner, tests, &expected, stored, keep_runs, observer)?;
            observer.ended(&outcome);
            if !outcome.succeeded() || !*self.settings.until_failure.get() || tests.is_empty() {
                return Ok(outcome);
            }
        }
    }

    /// One pass over `tests`: run, stored, reported.
    fn pass(
        &self,
        runner: &Runner<'_>,
        tests: &[TestCase],
        history: &HashMap<String, Duration>,
        stored: Option<(&Repository, RunKind)>,
        keep_runs: bool,
        observer: &mut dyn Observer,
    ) -> Result<Outcome, Error> {
        let mut writer = stored
            .map(|(repository, kind)| {
                repository.begin_run(RunMeta {
                    kind,
                    command: std::env::args().collect(),
                    filters: self.filters.clone(),
                })
            })
            .transpose()?;
        let mut summary = Summary::new();
        let mut junit = self
            .settings
            .junit
            .get()
            .as_ref()
            .map(|_| JunitSink::new().group_retries(true));
        let mut stdout = self
            .settings
            .subunit
            .get()
            .then(|| EventWriter::new(io::stdout()));
        let mut runs = keep_runs.then(Runs::default);
        observer.started(tests.len());
        let report = {
            let mut tee = Tee::new().with(&mut summary);
            if let Some(writer) = writer.as_mut() {
                tee = tee.with(writer);
            }
            if let Some(junit) = junit.as_mut() {
                tee = tee.with(junit);
            }
            if let Some(stream) = stdout.as_mut() {
                tee = tee.with(stream);
            }
            if let Some(runs) = runs.as_mut() {
                tee = tee.with(runs);
            }
            let progress = std::cell::RefCell::new(&mut *observer);
            let result = {
                let mut events = ObserverEvents(&progress);
                let mut tee = tee.with(&mut events);
                let result = runner.run(tests.to_vec(), history, &mut tee, &mut |now| {
                    progress.borrow_mut().progress(now);
                });
                let finished = tee.finish();
                result.and_then(|report| finished.map(|()| report))
            };
            result
        };
        let report = match report {
            Ok(report) => report,
            Err(error) => {
                // An output failed (a closed pipe, a full disk) and the run was stopped: keep what it produced,
                // marked interrupted.
                if let Some(writer) = writer {
                    writer.interrupt()?;
                }
                return Err(error.into());
            }
        };
        let stored = writer.as_ref().map(RunWriter::id);
        if let Some(mut writer) = writer {
            writer.set_process_costs(process_costs_to_store(&report));
            match report.interrupted {
                true => writer.interrupt()?,
                false => writer.complete()?,
            };
        }
        if let (Some(junit), Some(path)) = (&junit, self.settings.junit.get()) {
            write_junit(junit, path)?;
        }
        Ok(Outcome {
            report,
            summary,
            stored,
            runs: runs.map(|runs| runs.runs).unwrap_or_default(),
        })
    }

    /// The stored failing set; the `failing` setting needs one.
    fn failing(&self) -> Result<HashSet<String>, Error> {
        match self.repository()? {
            Some(repository) => Ok(repository.failing()?.into_iter().collect()),
            None => Err(Error::FailingNeedsStore(
                self.settings.failing.source().clone(),
            )),
        }
    }

    /// The run repository: made when missing, unless the run is not stored (history still orders the tests when
    /// one exists).
    fn repository(&self) -> Result<Option<Repository>, Error> {
        if *self.settings.no_store.get() {
            return Ok(Repository::open(&self.dir).ok());
        }
        Ok(Some(Repository::open_or_init(&self.dir)?))
    }

    fn config(&self, only: Option<Hook<Applicable>>) -> Result<RunConfig, Error> {
        let pool = match (&self.pool, self.settings.workers()?) {
            (Some(pool), _) => Some(pool.clone()),
            (None, Workers::Pool(path)) => Some(Pool::load(&path)?),
            (None, Workers::Slots(_)) => None,
        };
        let concurrency = match (&pool, self.settings.workers()?) {
            (Some(pool), _) => pool.max_workers(),
            (None, Workers::Slots(slots)) => slots.get(),
            (None, Workers::Pool(_)) => unreachable!("a pool setting loads a pool"),
        };
        Ok(RunConfig {
            concurrency,
            retries: *self.settings.retries.get(),
            memory_limit: self.settings.memory_limit.get().map(|limit| limit.0),
            grace: *self.settings.grace.get(),
            pool,
            applicable: both(self.applicable.clone(), only),
            fitness: self.fitness.clone(),
            retry_if: self.retry_if.clone(),
        })
    }
}

/// The events of a pass, to the observer that also sees its progress.
struct ObserverEvents<'o, 'r>(&'r std::cell::RefCell<&'o mut dyn Observer>);

impl Sink for ObserverEvents<'_, '_> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.0.borrow_mut().event(event)
    }

    fn event_ref(&mut self, event: &proctor_subunit::EventRef<'_>) -> Result<(), SinkError> {
        self.0.borrow_mut().event_ref(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.borrow_mut().flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.0.borrow_mut().finish()
    }
}

/// An `applicable` hook that accepts the workers `worker` accepts, for any test.
fn only(worker: impl Fn(&WorkerInfo) -> bool + Send + Sync + 'static) -> Hook<Applicable> {
    Hook(Arc::new(move |_: &TestCase, info: &WorkerInfo| {
        worker(info)
    }))
}

/// A hook that accepts what both accept.
fn both(a: Option<Hook<Applicable>>, b: Option<Hook<Applicable>>) -> Option<Hook<Applicable>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Hook(Arc::new(
            move |test: &TestCase, worker: &WorkerInfo| (a.0)(test, worker) && (b.0)(test, worker),
        ))),
        (a, b) => a.or(b),
    }
}

fn result_of(outcome: &Outcome, id: &str) -> Result<TestResult, Error> {
    match outcome.test(id) {
        Some(result) => Ok(result),
        // The run was stopped before the test ended, or no worker could be had (the problems say why).
        None => Err(Error::NotRun {
            id: id.to_owned(),
            why: match outcome.report.problems.is_empty() {
                true => "the run was stopped".to_owned(),
                false => outcome.report.problems.join("; "),
            },
        }),
    }
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

fn write_junit(junit: &JunitSink, path: &Path) -> Result<(), Error> {
    let file = std::fs::File::create(path).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })?;
    junit.write_report(file).map_err(|source| Error::Junit {
        path: path.to_owned(),
        source,
    })
}

fn regexes(patterns: &[String]) -> Result<Vec<Regex>, Error> {
    patterns
        .iter()
        .map(|pattern| {
            Regex::new(pattern).map_err(|source| Error::Filter {
                pattern: pattern.clone(),
                source,
            })
        })
        .collect()
}

fn read_ids(path: &Path) -> Result<HashSet<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
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
