//! Runs a project's tests on this machine, in parallel, ad hoc.
//!
//! A [`Runner`] takes the tests a [`Project`] lists (already filtered by the
//! caller), orders them longest-expected first from the run history (see
//! [`expected_duration`]), and lets `concurrency` workers pull work from one
//! queue: a batch whose size shrinks as the queue drains for suites whose
//! processes have a start-up cost, one test at a time otherwise. A suite
//! whose start-up outweighs a worker's share of its tests (as the history's
//! [`ProcessCost`] says, or the run has measured so far) is split up front
//! into one balanced batch per worker instead. Each batch runs as one
//! supervised process ([`proctor_supervisor`]); its output becomes subunit
//! events as it arrives, tagged with the worker's route code, and every
//! event goes to the caller's [`Sink`] from the calling thread.
//!
//! A process that dies mid-batch fails the test it was running, with the
//! reason attached as [`REASON`]; the tests it never started go back to the
//! queue once. With retries, failed tests run again; one that passes on a
//! retry is reported [flaky](RunReport::flaky).

mod batch;
mod lab;
mod schedule;
mod ssh;
mod workers;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use proctor_events::{
    Aggregator, Outcome, RunStatus, Running, Sink, SinkError, TestRecord, TestVerdict,
    RETRY_TAG_PREFIX,
};
use proctor_pool::{Platform, Pool};
use proctor_sources::{Batching, Needs, Project, Suite, TestCase};
use proctor_subunit::{Event, Timestamp};
use proctor_supervisor::{StopHandle, Supervisor};

pub use batch::REASON;
pub use schedule::{expected_duration, ProcessCost};

use crate::batch::{BatchEnd, Launch, Measured};
pub use crate::lab::BatchClient;
use crate::schedule::{order, plan, Again, Queue, Unit};
pub use crate::workers::{check_pool, ProvisionerCheck};
use crate::workers::{Source, Sources, Worker};

/// How often the caller's progress callback runs while tests run.
const TICK: Duration = Duration::from_millis(100);

/// How a run goes.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// How many test processes run at once.
    pub concurrency: usize,
    /// How many times a failed test is run again.
    pub retries: u32,
    /// The most memory a test process tree may use, in bytes.
    pub memory_limit: Option<u64>,
    /// How long a stopped test gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Where the workers come from; without a pool, `concurrency` slots here (or the instances of the project's
    /// testrepository hooks).
    pub pool: Option<Pool>,
    /// Which workers may run a test, beyond what its metadata says of their platform.
    pub applicable: Option<Hook<Applicable>>,
    /// Which of the tests a free worker may run it takes first: the highest (ties keep the run's order).
    pub fitness: Option<Hook<Fitness>>,
    /// Which failed runs are retried (with retries left); without it, every failed run is.
    pub retry_if: Option<Hook<RetryIf>>,
}

/// A worker, as the run's hooks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its route code: a slot's number, an instance's id, `host/slot` on an ssh host.
    pub route: String,
    /// What it runs on.
    pub platform: Platform,
}

/// `applicable(test, worker)`: whether the worker may run the test.
pub type Applicable = dyn Fn(&TestCase, &WorkerInfo) -> bool + Send + Sync;
/// `fitness(test, worker)`: how well the test suits the worker; higher goes first.
pub type Fitness = dyn Fn(&TestCase, &WorkerInfo) -> i64 + Send + Sync;
/// `retry_if(run)`: whether a failed run is worth running again.
pub type RetryIf = dyn Fn(&TestRecord) -> bool + Send + Sync;

/// A function a run calls from its worker threads.
pub struct Hook<F: ?Sized>(pub Arc<F>);

impl<F: ?Sized> Clone for Hook<F> {
    fn clone(&self) -> Self {
        Hook(Arc::clone(&self.0))
    }
}

impl<F: ?Sized> std::fmt::Debug for Hook<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook(..)")
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            retries: 0,
            memory_limit: None,
            grace: Duration::from_secs(10),
            pool: None,
            applicable: None,
            fitness: None,
            retry_if: None,
        }
    }
}

/// Stops a run from another thread (Ctrl-C): no new batch starts and every
/// running process tree is stopped (SIGTERM, grace, SIGKILL).
#[derive(Clone, Default)]
pub struct Stopper(Arc<StopState>);

#[derive(Default)]
struct StopState {
    stopped: AtomicBool,
    running: Mutex<HashMap<usize, StopHandle>>,
}

impl Stopper {
    /// Stops the run.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        for handle in self.handles().values() {
            handle.stop();
        }
    }

    /// Whether [`Stopper::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<usize, StopHandle>> {
        self.0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, worker: usize, handle: StopHandle) {
        self.handles().insert(worker, handle.clone());
        // A stop that raced with the start must still reach this process.
        if self.is_stopped() {
            handle.stop();
        }
    }

    fn unregister(&self, worker: usize) {
        self.handles().remove(&worker);
    }
}

/// Where a run stands, for a live display.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Tests to run (retries included once they are scheduled).
    pub total: usize,
    /// Test runs finished.
    pub done: usize,
    /// Test runs that failed.
    pub failed: usize,
    /// Tests running now, oldest first.
    pub running: Vec<Running>,
    /// Expected time left, from the run history, when there is one.
    pub eta: Option<Duration>,
}

impl Progress {
    /// Test runs neither finished nor running: waiting for a worker.
    pub fn queued(&self) -> usize {
        self.total.saturating_sub(self.done + self.running.len())
    }
}

/// Reads a run's progress from another thread while it runs (updated about every 100 ms).
#[derive(Clone, Default)]
pub struct Watch(Arc<Mutex<Progress>>);

impl Watch {
    /// Where the run stands now.
    pub fn progress(&self) -> Progress {
        lock(&self.0).clone()
    }
}

/// What a run did, beyond its event stream.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Whether the run was stopped before it finished.
    pub interrupted: bool,
    /// Tests whose last run failed.
    pub failed: Vec<String>,
    /// Tests that failed and then passed on a retry.
    pub flaky: Vec<String>,
    /// What each suite's processes cost in this run, by suite name, for the
    /// suites that batch and finished a test: the mean start-up and the
    /// time per test over all its processes.
    pub process_costs: BTreeMap<String, ProcessCost>,
    /// What went wrong around the tests: no worker could be had, or
    /// workers could not be released (a hook failed: something may be left
    /// running), with what the hook printed.
    pub problems: Vec<String>,
    /// Provisioners given up on, and why, while others made the workers the
    /// run went on with.
    pub given_up: Vec<String>,
    /// Provisioners (or hosts) that failed to provision a worker or lost one, and were not given up, with what
    /// went wrong last.
    pub faltered: Vec<String>,
}

/// Runs tests of one project.
pub struct Runner<'a> {
    project: &'a Project,
    supervisor: &'a Supervisor,
    config: RunConfig,
    stopper: Stopper,
    /// What each suite's processes cost, as the history said and as
    /// measured since, by suite index.
    costs: Mutex<HashMap<usize, ProcessCost>>,
    /// Which tests each platform seen may run, by suite, as their metadata says.
    enabled: Mutex<HashMap<Platform, Enabled>>,
    /// What each worker the run had may run.
    seen: Mutex<Vec<Arc<Fits>>>,
    watch: Watch,
}

/// By suite, the ids of the tests a platform's metadata enables (`None`: all).
type Enabled = Arc<Vec<Option<HashSet<String>>>>;

/// What one run measured of each suite's processes, by suite index.
type Measurements = Mutex<HashMap<usize, Measured>>;

/// How long a slot waits before asking its source again after it failed to give a worker; doubled after each
/// failure in a row, up to eight times as long.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// How many times a test's worker may be lost under it before the test fails.
const MAX_LOSSES: u32 = 3;

/// Which tests one worker may run: those its platform's metadata enables and whose declared needs it meets, that
/// the run's `applicable` accepts.
#[derive(Debug)]
struct Fits {
    enabled: Enabled,
    /// By suite, the needs its tests declare that the worker does not meet.
    unmet: Vec<Vec<Needs>>,
    worker: WorkerInfo,
    applicable: Option<Hook<Applicable>>,
}

impl Fits {
    fn allows_platform(&self, test: &TestCase) -> bool {
        let enabled = match self.enabled.get(test.suite) {
            Some(Some(enabled)) => enabled.contains(&test.id),
            _ => true,
        };
        enabled && self.unmet_by(test).is_none()
    }

    /// A need of `test` the worker does not meet.
    fn unmet_by(&self, test: &TestCase) -> Option<&Needs> {
        self.unmet
            .get(test.suite)?
            .iter()
            .find(|needs| needs.applies_to(&test.id))
    }

    fn test(&self, test: &TestCase) -> bool {
        self.allows_platform(test)
            && self
                .applicable
                .as_ref()
                .is_none_or(|hook| (hook.0)(test, &self.worker))
    }

    fn unit(&self, unit: &Unit) -> bool {
        unit.tests.iter().all(|test| self.test(test))
    }
}

/// What the slots of a run share.
struct Shared<'s> {
    board: Mutex<Board>,
    changed: Condvar,
    measured: &'s Measurements,
    /// How many workers the run has at most (batch sizes are shares of it).
    workers: usize,
}

/// The queue and what each slot is doing.
struct Board {
    queue: Queue,
    /// The tests of each slot's running batch.
    running: HashMap<usize, Vec<TestCase>>,
    /// The ready workers, by slot: route code and what they may run.
    ready: HashMap<usize, (String, Arc<Fits>)>,
    /// The slots waiting for their source to give them a worker, which a rerun waits for rather than run again
    /// on the worker it failed on.
    provisioning: HashSet<usize>,
    /// Tests put back once after their batch's process ended before starting them.
    requeued: HashSet<String>,
}

impl Board {
    /// Whether there is still something to run, or running that may come back.
    fn has_work(&self) -> bool {
        self.queue.any(|_| true) || !self.running.is_empty()
    }
}

/// What slots send the thread that forwards to the sink.
enum Message {
    Event(Event),
    /// This many more test runs were scheduled (retries).
    MoreRuns(usize),
}

/// Why a slot stopped working on a worker.
enum Stopped {
    /// Nothing is left that it may run, or the run was stopped.
    Done,
    /// The worker was lost, for this reason.
    Lost(String),
}

impl<'a> Runner<'a> {
    /// A runner for `project`'s tests, spawning through `supervisor`.
    pub fn new(project: &'a Project, supervisor: &'a Supervisor, config: RunConfig) -> Self {
        Runner {
            project,
            supervisor,
            config,
            stopper: Stopper::default(),
            costs: Mutex::default(),
            enabled: Mutex::default(),
            seen: Mutex::default(),
            watch: Watch::default(),
        }
    }

    /// Starts from what the run history knows of each suite's process cost
    /// (by suite name), so that the first batches are already sized by it
    /// and a suite whose start-up dominates is split once per worker.
    pub fn with_process_costs(mut self, known: &HashMap<String, ProcessCost>) -> Self {
        let costs = self.costs.get_mut().unwrap_or_else(PoisonError::into_inner);
        for suite in self.project.suites() {
            if let Some(cost) = known.get(suite.name()) {
                costs.insert(suite.index(), *cost);
            }
        }
        self
    }

    /// Stops through `stopper` and reports progress to `watch`: handles its caller made before the runner, so
    /// that they stay valid for every runner it makes (one per pass of a run).
    pub fn with_handles(mut self, stopper: Stopper, watch: Watch) -> Self {
        self.stopper = stopper;
        self.watch = watch;
        self
    }

    /// A handle that stops this runner's run.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// A handle that reads this runner's progress from another thread.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// Runs `tests`, ordered by `history` (expected durations by test id),
    /// sending every event to `sink` and calling `tick` with the progress
    /// about every 100 ms. A sink error stops the run and is returned.
    pub fn run(
        &self,
        tests: Vec<TestCase>,
        history: &HashMap<String, Duration>,
        sink: &mut dyn Sink,
        tick: &mut dyn FnMut(&Progress),
    ) -> Result<RunReport, SinkError> {
        let planned = Sources::plan(
            self.project,
            self.config.pool.as_ref(),
            self.config.concurrency,
        );
        let sources = match planned {
            Ok(sources) => sources,
            Err(problem) => return self.fail_unprovisioned(tests, problem, sink),
        };
        let workers = sources.slots().max(1);
        let mut tally = Tally::new(&tests, history, workers);
        let measured = Measurements::default();
        let costs = lock(&self.costs).clone();
        let units = plan(
            order(tests, history),
            workers,
            |suite| self.batching(suite),
            |suite| costs.get(&suite).copied(),
        );
        let (sender, messages) = mpsc::channel::<Message>();
        let shared = Shared {
            board: Mutex::new(Board {
                queue: Queue::new(units, workers),
                running: HashMap::new(),
                ready: HashMap::new(),
                provisioning: HashSet::new(),
                requeued: HashSet::new(),
            }),
            changed: Condvar::new(),
            measured: &measured,
            workers,
        };
        let forwarded = std::thread::scope(|scope| {
            let mut slot = 0;
            for source in &sources.sources {
                for on_source in 0..source.slots {
                    let shared = &shared;
                    let sender = sender.clone();
                    scope.spawn(move || {
                        self.slot(slot, on_source, source, shared, &mut |message| {
                            // The receiver outlives every slot in this scope.
                            let _ = sender.send(message);
                        });
                    });
                    slot += 1;
                }
            }
            drop(sender);
            self.forward(&messages, sink, &mut tally, tick)
        });
        forwarded?;
        let board = shared
            .board
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut report = RunReport::default();
        if !self.stopper.is_stopped() {
            report.problems = self.fail_left(board, &sources, sink, &mut tally)?;
        }
        let mut report = RunReport {
            problems: report.problems,
            ..tally.report(self.stopper.is_stopped())
        };
        report.process_costs = self.costs_by_name(measured);
        for source in &sources.sources {
            report.given_up.extend(source.given_up());
            report.faltered.extend(source.failed());
            report.problems.extend(source.problems());
        }
        Ok(report)
    }

    /// Fails every test with why no worker could be had: a run never leaves a test hanging.
    fn fail_unprovisioned(
        &self,
        tests: Vec<TestCase>,
        problem: String,
        sink: &mut dyn Sink,
    ) -> Result<RunReport, SinkError> {
        let mut tally = Tally::new(&tests, &HashMap::new(), 1);
        let reason = format!("not run: no worker to run it on: {problem}");
        for test in &tests {
            let event = batch::failure(&test.id, &reason);
            tally.see(&event);
            sink.event(&event)?;
        }
        let mut report = tally.report(false);
        report.problems.push(problem);
        Ok(report)
    }

    /// Fails the tests no slot took, each with why: no worker's platform lets it run, or the workers that could
    /// were lost or given up. The problems, one per reason.
    fn fail_left(
        &self,
        mut board: Board,
        sources: &Sources,
        sink: &mut dyn Sink,
        tally: &mut Tally,
    ) -> Result<Vec<String>, SinkError> {
        let left = board.queue.drain();
        if left.is_empty() {
            return Ok(Vec::new());
        }
        let seen = lock(&self.seen).clone();
        let given_up: Vec<String> = sources
            .sources
            .iter()
            .filter_map(Source::given_up)
            .collect();
        let mut problems: Vec<String> = Vec::new();
        for test in left.into_iter().flat_map(|unit| unit.tests) {
            let reason = if !seen.is_empty() && !seen.iter().any(|fits| fits.allows_platform(&test))
            {
                let mut platforms: Vec<String> = seen
                    .iter()
                    .map(|fits| fits.worker.platform.to_string())
                    .collect();
                platforms.sort();
                platforms.dedup();
                let why = match seen.iter().find_map(|fits| fits.unmet_by(&test)) {
                    Some(needs) => format!("it needs {needs}"),
                    None => "its metadata disables it".to_owned(),
                };
                format!(
                    "no worker's platform lets it run ({why}; workers: {})",
                    platforms.join("; ")
                )
            } else if !seen.is_empty() && !seen.iter().any(|fits| fits.test(&test)) {
                "no worker is applicable to it (the run's applicable rule refused each)".to_owned()
            } else if given_up.is_empty() {
                "every worker that could run it was lost".to_owned()
            } else {
                format!("no worker to run it on: {}", given_up.join("; "))
            };
            let event = batch::failure(&test.id, &format!("not run: {reason}"));
            tally.see(&event);
            sink.event(&event)?;
            if !problems.contains(&reason) {
                problems.push(reason);
            }
        }
        Ok(problems)
    }

    /// What a run measured, by suite name.
    fn costs_by_name(&self, measured: Measurements) -> BTreeMap<String, ProcessCost> {
        let suites = self.project.suites();
        measured
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .filter_map(|(index, measured)| {
                Some((suites.get(index)?.name().to_owned(), measured.cost()?))
            })
            .collect()
    }

    fn batching(&self, suite: usize) -> Batching {
        self.project
            .suites()
            .get(suite)
            .map_or(Batching::OnePerProcess, |s| s.batching())
    }

    /// What `worker` may run: its platform's enabled tests are worked out once per platform.
    fn fits_for(&self, worker: &Worker) -> Arc<Fits> {
        let known = lock(&self.enabled).get(&worker.platform).cloned();
        let enabled = known.unwrap_or_else(|| {
            let platform = &worker.platform;
            let mut dimensions = Vec::new();
            dimensions.extend(platform.arch.as_deref().map(|arch| ("arch", arch)));
            dimensions.extend(platform.distro.as_deref().map(|distro| ("distro", distro)));
            let enabled: Enabled = Arc::new(
                self.project
                    .suites()
                    .iter()
                    // Without dimensions the tests were listed under the same context: all are enabled. A tree
                    // that fails to load now runs as listed.
                    .map(|suite| {
                        if dimensions.is_empty() || worker.listed_here {
                            None
                        } else {
                            suite.enabled_on(&dimensions).unwrap_or(None)
                        }
                    })
                    .collect(),
            );
            lock(&self.enabled).insert(platform.clone(), Arc::clone(&enabled));
            enabled
        });
        let platform = &worker.platform;
        let unmet = self
            .project
            .suites()
            .iter()
            .map(|suite| {
                let met = |needs: &&Needs| {
                    needs.met_by(
                        platform.arch.as_deref(),
                        platform.distro.as_deref(),
                        &platform.tags,
                    )
                };
                suite
                    .needs()
                    .iter()
                    .filter(|needs| !met(needs))
                    .cloned()
                    .collect()
            })
            .collect();
        let fits = Arc::new(Fits {
            enabled,
            unmet,
            worker: WorkerInfo {
                route: worker.route.clone(),
                platform: worker.platform.clone(),
            },
            applicable: self.config.applicable.clone(),
        });
        lock(&self.seen).push(Arc::clone(&fits));
        fits
    }

    /// Passes events to the sink as they come, ticking while none do.
    fn forward(
        &self,
        messages: &mpsc::Receiver<Message>,
        sink: &mut dyn Sink,
        tally: &mut Tally,
        tick: &mut dyn FnMut(&Progress),
    ) -> Result<(), SinkError> {
        let mut failure = None;
        loop {
            match messages.recv_timeout(TICK) {
                Ok(Message::Event(event)) => {
                    tally.see(&event);
                    if failure.is_none() {
                        if let Err(error) = sink.event(&event) {
                            self.stopper.stop();
                            failure = Some(error);
                        }
                    }
                }
                Ok(Message::MoreRuns(runs)) => tally.progress.total += runs,
                Err(RecvTimeoutError::Timeout) => {
                    if failure.is_none() {
                        if let Err(error) = sink.flush() {
                            self.stopper.stop();
                            failure = Some(error);
                        }
                    }
                    self.show(tally, tick);
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.show(tally, tick);
        failure.map_or(Ok(()), Err)
    }

    /// Gives the progress to the caller's callback and to [`Watch`]ers.
    fn show(&self, tally: &mut Tally, tick: &mut dyn FnMut(&Progress)) {
        let progress = tally.progress_now();
        tick(&progress);
        *lock(&self.watch.0) = progress;
    }

    /// One slot of a source: gets a worker from it and works on it until nothing is left that it may run,
    /// replacing it when it is lost, until the source is given up.
    fn slot(
        &self,
        slot: usize,
        on_source: usize,
        source: &Source,
        shared: &Shared<'_>,
        send: &mut dyn FnMut(Message),
    ) {
        let mut failures = 0;
        while !self.stopper.is_stopped() && lock(&shared.board).has_work() {
            lock(&shared.board).provisioning.insert(slot);
            let wanted = || !self.stopper.is_stopped() && lock(&shared.board).has_work();
            let worker = match source.worker(on_source, &wanted) {
                Ok(worker) => worker,
                Err(_) => {
                    lock(&shared.board).provisioning.remove(&slot);
                    shared.changed.notify_all();
                    if source.given_up().is_some() {
                        break;
                    }
                    // A host restarting gets a moment before the next try spends the budget.
                    failures += 1;
                    self.pause(RECONNECT_PAUSE * 2u32.pow(failures.min(4) - 1));
                    continue;
                }
            };
            failures = 0;
            let fits = self.fits_for(&worker);
            let mut board = lock(&shared.board);
            board.provisioning.remove(&slot);
            board
                .ready
                .insert(slot, (worker.route.clone(), Arc::clone(&fits)));
            drop(board);
            let stopped = self.work(slot, &worker, &fits, shared, send);
            lock(&shared.board).ready.remove(&slot);
            match stopped {
                Stopped::Done => {
                    source.give_back(worker);
                    break;
                }
                Stopped::Lost(why) => source.lose(&worker, &why),
            }
        }
        shared.changed.notify_all();
        source.slot_done();
    }

    /// Waits `pause`, or less when the run is stopped.
    fn pause(&self, pause: Duration) {
        let until = std::time::Instant::now() + pause;
        while !self.stopper.is_stopped() && std::time::Instant::now() < until {
            std::thread::sleep(
                TICK.min(until.saturating_duration_since(std::time::Instant::now())),
            );
        }
    }

    /// Takes batches for `worker` until nothing is left that it may run (or may come back to it), the run
    /// stops, or the worker is lost.
    fn work(
        &self,
        slot: usize,
        worker: &Worker,
        fits: &Fits,
        shared: &Shared<'_>,
        send: &mut dyn FnMut(Message),
    ) -> Stopped {
        let suites = self.project.suites();
        loop {
            let Some((batch, again)) = self.take(slot, worker, fits, shared) else {
                return Stopped::Done;
            };
            let Some(suite) = batch.first().and_then(|test| suites.get(test.suite)) else {
                return Stopped::Done;
            };
            let retry_tag = (again.retry > 0).then(|| format!("{RETRY_TAG_PREFIX}{}", again.retry));
            let mut runs = Aggregator::new();
            let mut failed = Vec::new();
            let mut emit = |mut event: Event| {
                if let Some(tag) = retry_tag.as_ref().filter(|_| event.test_id.is_some()) {
                    event.tags.insert(tag.clone());
                }
                let ended = runs.push(&event);
                failed.extend(ended.filter(|record| {
                    RunStatus::of(record.status).outcome() == Some(Outcome::Failed)
                }));
                send(Message::Event(event));
            };
            let launch = Launch {
                supervisor: self.supervisor,
                suite,
                worker,
                route: &worker.route,
                memory_limit: self.config.memory_limit,
                grace: self.config.grace,
            };
            let ran = batch.clone();
            let end = match batch::start(&launch, &batch, &mut emit) {
                Some((running, invocation)) => {
                    self.stopper.register(slot, running.stop_handle());
                    let end = batch::finish(running, &invocation, batch, worker, &mut emit);
                    self.stopper.unregister(slot);
                    end
                }
                None => BatchEnd::default(),
            };
            self.measure(suite, &end, shared);
            let lost = end.lost.clone();
            let mut more = self.settle(end, &again, &worker.route, shared, &mut emit);
            more += self.retry(&ran, &failed, again, &worker.route, shared);
            // Only now, with its retries queued, is the batch no longer running: a slot waiting for what may come
            // back of it must not end in between.
            lock(&shared.board).running.remove(&slot);
            shared.changed.notify_all();
            if more > 0 {
                send(Message::MoreRuns(more));
            }
            if let Some(why) = lost {
                return Stopped::Lost(why);
            }
        }
    }

    /// The next batch `worker` may run, waiting while there is none but running batches may yet give one back;
    /// `None` when nothing left is for it or the run stopped.
    fn take(
        &self,
        slot: usize,
        worker: &Worker,
        fits: &Fits,
        shared: &Shared<'_>,
    ) -> Option<(Vec<TestCase>, Again)> {
        let mut board = lock(&shared.board);
        loop {
            if self.stopper.is_stopped() {
                return None;
            }
            let costs = lock(&self.costs).clone();
            let Board {
                queue,
                ready,
                running,
                provisioning,
                ..
            } = &mut *board;
            // Another worker that may take it, or one still coming that may.
            let someone_else = |unit: &Unit, avoid: &String| {
                !provisioning.is_empty()
                    || ready.iter().any(|(other, (route, other_fits))| {
                        *other != slot && route != avoid && other_fits.unit(unit)
                    })
            };
            let takes =
                |unit: &Unit| {
                    fits.unit(unit)
                        && !unit.again.avoid.as_ref().is_some_and(|avoid| {
                            *avoid == worker.route && someone_else(unit, avoid)
                        })
                };
            let rank = |unit: &Unit| {
                self.config.fitness.as_ref().map_or(0, |hook| {
                    unit.tests
                        .iter()
                        .map(|test| (hook.0)(test, &fits.worker))
                        .sum()
                })
            };
            let (batch, again) = queue.next_batch(
                takes,
                rank,
                |suite| self.batching(suite),
                |suite| costs.get(&suite).copied(),
            );
            if !batch.is_empty() {
                running.insert(slot, batch.clone());
                return Some((batch, again));
            }
            let may_come_back = running.values().flatten().any(|test| fits.test(test));
            // A rerun it left for another worker comes back to it if that one goes.
            let left_for_another = queue.any(|unit| fits.unit(unit));
            if !may_come_back && !left_for_another {
                return None;
            }
            board = shared
                .changed
                .wait(board)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Keeps what a batch's process cost, for a suite that batches (a process per test has no start-up to weigh
    /// against its tests).
    fn measure(&self, suite: &Suite, end: &BatchEnd, shared: &Shared<'_>) {
        let Some(process) = end
            .measured
            .filter(|_| suite.batching() == Batching::Batches)
        else {
            return;
        };
        if let Some(cost) = process.cost() {
            self.learn(suite.index(), cost, shared);
        }
        lock(shared.measured)
            .entry(suite.index())
            .or_default()
            .add(process);
    }

    /// Keeps a process's cost for the suite's next batches. The first cost
    /// known of a suite (one the history did not give) may show that its
    /// start-up outweighs what is left of it: the rest is then planned at
    /// once as one batch per worker, before one worker takes it all.
    fn learn(&self, suite: usize, cost: ProcessCost, shared: &Shared<'_>) {
        if remember_cost(&mut lock(&self.costs), suite, cost) {
            lock(&shared.board).queue.replan(|units| {
                plan(
                    units,
                    shared.workers,
                    |other| self.batching(other),
                    |other| (other == suite).then_some(cost),
                )
            });
        }
    }

    /// Puts back what a batch leaves to do: the tests a lost worker had started (as a new try) and never started;
    /// a crashed batch's unstarted tests once (a test whose process crashes again before starting it fails).
    /// How many runs that adds.
    fn settle(
        &self,
        end: BatchEnd,
        again: &Again,
        route: &str,
        shared: &Shared<'_>,
        emit: &mut dyn FnMut(Event),
    ) -> usize {
        let mut more = 0;
        let mut board = lock(&shared.board);
        let stopped = self.stopper.is_stopped();
        let avoid = Some(route.to_owned());
        let fail = |emit: &mut dyn FnMut(Event), test: &TestCase, reason: &str| {
            let mut event = batch::failure(&test.id, reason);
            event.prefix_route(route);
            emit(event);
        };
        if let Some(why) = end.lost.as_ref().filter(|_| !stopped) {
            let losses = again.losses + 1;
            let (again_later, lost_too_often): (Vec<TestCase>, Vec<TestCase>) = end
                .interrupted
                .into_iter()
                .partition(|_| losses < MAX_LOSSES);
            for test in &lost_too_often {
                fail(
                    emit,
                    test,
                    &format!("its worker was lost under it {losses} times; last: {why}"),
                );
            }
            more += again_later.len();
            board.queue.requeue(
                again_later,
                Again {
                    retry: again.retry + 1,
                    losses,
                    avoid: avoid.clone(),
                },
            );
            board.queue.requeue(
                end.unstarted,
                Again {
                    avoid: avoid.clone(),
                    ..again.clone()
                },
            );
        } else if !stopped {
            let mut back = Vec::new();
            for test in end.unstarted {
                if board.requeued.insert(test.id.clone()) {
                    back.push(test);
                } else {
                    fail(
                        emit,
                        &test,
                        "not run: its batch's process ended before starting it, twice",
                    );
                }
            }
            board.queue.requeue(back, again.clone());
        }
        drop(board);
        shared.changed.notify_all();
        more
    }

    /// Puts back the tests of `ran` whose runs in `failed` the run's `retry_if` accepts, while they have retries
    /// left, as a new try that prefers another worker. How many runs that adds.
    fn retry(
        &self,
        ran: &[TestCase],
        failed: &[TestRecord],
        again: Again,
        route: &str,
        shared: &Shared<'_>,
    ) -> usize {
        let retries_used = again.retry - again.losses;
        if self.stopper.is_stopped() || retries_used >= self.config.retries {
            return 0;
        }
        let worth = |record: &&TestRecord| {
            self.config
                .retry_if
                .as_ref()
                .is_none_or(|hook| (hook.0)(record))
        };
        let again_ids: HashSet<&str> = failed
            .iter()
            .filter(worth)
            .map(|r| r.test_id.as_str())
            .collect();
        let tests: Vec<TestCase> = ran
            .iter()
            .filter(|test| again_ids.contains(test.id.as_str()))
            .cloned()
            .collect();
        let more = tests.len();
        lock(&shared.board).queue.requeue(
            tests,
            Again {
                retry: again.retry + 1,
                losses: again.losses,
                avoid: Some(route.to_owned()),
            },
        );
        shared.changed.notify_all();
        more
    }
}

/// Keeps the latest measurement of a suite's process cost, its start-up
/// never below the worst seen (a loaded machine makes it vary); says
/// whether it is the first cost known of the suite.
fn remember_cost(costs: &mut HashMap<usize, ProcessCost>, suite: usize, cost: ProcessCost) -> bool {
    match costs.entry(suite) {
        Entry::Vacant(entry) => {
            entry.insert(cost);
            true
        }
        Entry::Occupied(mut entry) => {
            let known = entry.get_mut();
            known.startup = known.startup.max(cost.startup);
            known.per_test = cost.per_test;
            false
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the runner learns from the events as they pass.
struct Tally {
    aggregator: Aggregator,
    progress: Progress,
    cases: HashMap<String, TestCase>,
    expected: HashMap<String, Duration>,
    unknown: Duration,
    workers: u32,
    /// The tests that have ended at least once.
    ended: HashSet<String>,
    /// Their runs by the one results model: which failed, which are flaky.
    results: proctor_events::Tally,
}

impl Tally {
    fn new(tests: &[TestCase], history: &HashMap<String, Duration>, workers: usize) -> Tally {
        let expected: HashMap<String, Duration> = tests
            .iter()
            .filter_map(|test| Some((test.id.clone(), expected_duration(test, history)?)))
            .collect();
        let known = u32::try_from(expected.len()).unwrap_or(u32::MAX).max(1);
        Tally {
            aggregator: Aggregator::new(),
            progress: Progress {
                total: tests.len(),
                ..Progress::default()
            },
            cases: tests.iter().map(|t| (t.id.clone(), t.clone())).collect(),
            unknown: expected.values().sum::<Duration>() / known,
            expected,
            workers: u32::try_from(workers.max(1)).unwrap_or(u32::MAX),
            ended: HashSet::new(),
            results: proctor_events::Tally::new(),
        }
    }

    fn see(&mut self, event: &Event) {
        if let Some(record) = self.aggregator.push(event) {
            self.record(&record);
        }
    }

    fn record(&mut self, record: &TestRecord) {
        if record.status.is_none() || !self.cases.contains_key(&record.test_id) {
            return;
        }
        self.progress.done += 1;
        let status = RunStatus::of(record.status);
        if status.outcome() == Some(Outcome::Failed) {
            self.progress.failed += 1;
        }
        self.results.add_record(record, 0);
        self.ended.insert(record.test_id.clone());
    }

    fn progress_now(&mut self) -> Progress {
        let mut progress = self.progress.clone();
        progress.running = self.aggregator.running(Timestamp::now());
        let left: Duration = self
            .cases
            .keys()
            .filter(|id| !self.ended.contains(*id))
            .map(|id| self.expected.get(id).copied().unwrap_or(self.unknown))
            .sum();
        progress.eta = (!self.expected.is_empty()).then(|| left / self.workers);
        progress
    }

    fn report(&self, interrupted: bool) -> RunReport {
        let ids = |verdict| -> Vec<String> {
            self.results
                .with_verdict(verdict)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        RunReport {
            interrupted,
            failed: ids(TestVerdict::Failed),
            flaky: ids(TestVerdict::Flaky),
            process_costs: BTreeMap::new(),
            problems: Vec::new(),
            given_up: Vec::new(),
            faltered: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_outweigh_start_up() {
        let cost = |startup_ms, per_test_us| ProcessCost {
            startup: Duration::from_millis(startup_ms),
            per_test: Duration::from_micros(per_test_us),
        };
        // 300 ms to start, 1 ms a test: 10 × 300 ms of tests.
        assert_eq!(cost(300, 1000).min_batch_size(), 3000);
        // Slow tests need no padding.
        assert_eq!(cost(300, 10_000_000).min_batch_size(), 1);
        let mut costs = HashMap::new();
        assert!(remember_cost(&mut costs, 0, cost(300, 5)));
        assert!(!remember_cost(&mut costs, 0, cost(100, 7)));
        assert_eq!(costs[&0].startup, Duration::from_millis(300));
        assert_eq!(costs[&0].per_test, Duration::from_micros(7));
    }
}
