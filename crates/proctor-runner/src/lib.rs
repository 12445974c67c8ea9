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
mod schedule;
mod workers;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use proctor_events::{
    Aggregator, Outcome, RunStatus, Running, Sink, SinkError, TestRecord, TestVerdict,
    RETRY_TAG_PREFIX,
};
use proctor_pool::Pool;
use proctor_sources::{Batching, Project, TestCase};
use proctor_subunit::{Event, Timestamp};
use proctor_supervisor::{StopHandle, Supervisor};

pub use batch::REASON;
pub use schedule::{expected_duration, ProcessCost};

use crate::batch::{BatchEnd, Launch, Measured};
use crate::schedule::{order, plan, Queue};
pub use crate::workers::{check_pool, ProvisionerCheck};
use crate::workers::{Worker, Workers};

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
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            retries: 0,
            memory_limit: None,
            grace: Duration::from_secs(10),
            pool: None,
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
}

/// What one run measured of each suite's processes, by suite index.
type Measurements = Mutex<HashMap<usize, Measured>>;

impl<'a> Runner<'a> {
    /// A runner for `project`'s tests, spawning through `supervisor`.
    pub fn new(project: &'a Project, supervisor: &'a Supervisor, config: RunConfig) -> Self {
        Runner {
            project,
            supervisor,
            config,
            stopper: Stopper::default(),
            costs: Mutex::default(),
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

    /// A handle that stops this runner's run.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
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
        let provisioned = Workers::provision(
            self.project,
            self.config.pool.as_ref(),
            self.config.concurrency,
        );
        let pool = match provisioned {
            Ok(pool) => pool,
            Err(problem) => return self.fail_unprovisioned(tests, problem, sink),
        };
        let mut tally = Tally::new(&tests, history, pool.workers.len());
        let measured = Measurements::default();
        let mut round = tests;
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tally.progress.total += round.len();
            }
            let ran = self.run_round(
                round, attempt, history, &measured, &pool, sink, &mut tally, tick,
            );
            if let Err(error) = ran {
                // The sink failed; the instances go all the same.
                let _ = pool.release();
                return Err(error);
            }
            if self.stopper.is_stopped() {
                break;
            }
            round = tally.failed_cases();
            if round.is_empty() {
                break;
            }
        }
        let mut report = tally.report(self.stopper.is_stopped());
        report.process_costs = self.costs_by_name(measured);
        report.given_up = pool.given_up.clone();
        report.problems.extend(pool.release().err());
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

    /// Runs one round: the tests, or (`retry` > 0) the retry of the ones that failed.
    #[allow(clippy::too_many_arguments)]
    fn run_round(
        &self,
        tests: Vec<TestCase>,
        retry: u32,
        history: &HashMap<String, Duration>,
        measured: &Measurements,
        pool: &Workers,
        sink: &mut dyn Sink,
        tally: &mut Tally,
        tick: &mut dyn FnMut(&Progress),
    ) -> Result<(), SinkError> {
        let workers = pool.workers.len();
        let costs = lock(&self.costs).clone();
        let units = plan(
            order(tests, history),
            workers,
            |suite| self.batching(suite),
            |suite| costs.get(&suite).copied(),
        );
        let queue = Mutex::new(Queue::new(units, workers));
        let requeued = Mutex::new(HashSet::new());
        let (sender, events) = mpsc::channel::<Event>();
        std::thread::scope(|scope| {
            for (index, worker) in pool.workers.iter().enumerate() {
                let sender = sender.clone();
                let queue = &queue;
                let requeued = &requeued;
                scope.spawn(move || {
                    self.work(index, worker, queue, requeued, measured, &mut |event| {
                        // The receiver outlives every worker in this scope.
                        let _ = sender.send(event);
                    });
                });
            }
            drop(sender);
            self.forward(&events, retry, sink, tally, tick)
        })
    }

    /// Passes events to the sink as they come, ticking while none do. A retry's test events are tagged with it
    /// (`proctor-retry:N`), so the stream itself says which runs are reruns.
    fn forward(
        &self,
        events: &mpsc::Receiver<Event>,
        retry: u32,
        sink: &mut dyn Sink,
        tally: &mut Tally,
        tick: &mut dyn FnMut(&Progress),
    ) -> Result<(), SinkError> {
        let mut failure = None;
        let retry_tag = (retry > 0).then(|| format!("{RETRY_TAG_PREFIX}{retry}"));
        loop {
            match events.recv_timeout(TICK) {
                Ok(mut event) => {
                    if let Some(tag) = retry_tag.as_ref().filter(|_| event.test_id.is_some()) {
                        event.tags.insert(tag.clone());
                    }
                    tally.see(&event);
                    if failure.is_none() {
                        if let Err(error) = sink.event(&event) {
                            self.stopper.stop();
                            failure = Some(error);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if failure.is_none() {
                        if let Err(error) = sink.flush() {
                            self.stopper.stop();
                            failure = Some(error);
                        }
                    }
                    tick(&tally.progress_now());
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        tick(&tally.progress_now());
        failure.map_or(Ok(()), Err)
    }

    /// One worker: takes batches until the queue is empty or the run stops.
    fn work(
        &self,
        index: usize,
        worker: &Worker,
        queue: &Mutex<Queue>,
        requeued: &Mutex<HashSet<String>>,
        measured: &Measurements,
        emit: &mut dyn FnMut(Event),
    ) {
        let route = worker.route.clone();
        let suites = self.project.suites();
        loop {
            if self.stopper.is_stopped() {
                return;
            }
            let costs = lock(&self.costs).clone();
            let batch = lock(queue).next_batch(
                |suite| self.batching(suite),
                |suite| costs.get(&suite).map_or(1, ProcessCost::min_batch_size),
            );
            let Some(suite) = batch.first().and_then(|test| suites.get(test.suite)) else {
                return;
            };
            let launch = Launch {
                supervisor: self.supervisor,
                suite,
                worker,
                route: &route,
                memory_limit: self.config.memory_limit,
                grace: self.config.grace,
            };
            let Some((running, invocation)) = batch::start(&launch, &batch, emit) else {
                continue;
            };
            self.stopper.register(index, running.stop_handle());
            let suite_index = suite.index();
            let end = batch::finish(running, &invocation, batch, &route, emit);
            self.stopper.unregister(index);
            // A process per test has no start-up to weigh against its tests.
            if let Some(process) = end
                .measured
                .filter(|_| suite.batching() == Batching::Batches)
            {
                if let Some(cost) = process.cost() {
                    self.learn(suite_index, cost, queue);
                }
                lock(measured).entry(suite_index).or_default().add(process);
            }
            self.requeue(end, queue, requeued, &route, emit);
        }
    }

    /// Keeps a process's cost for the suite's next batches. The first cost
    /// known of a suite (one the history did not give) may show that its
    /// start-up outweighs what is left of it: the rest is then planned at
    /// once as one batch per worker, before one worker takes it all.
    fn learn(&self, suite: usize, cost: ProcessCost, queue: &Mutex<Queue>) {
        if remember_cost(&mut lock(&self.costs), suite, cost) {
            let workers = self.config.concurrency.max(1);
            lock(queue).replan(|units| {
                plan(
                    units,
                    workers,
                    |other| self.batching(other),
                    |other| (other == suite).then_some(cost),
                )
            });
        }
    }

    /// Puts a crashed batch's unstarted tests back once; a test whose process
    /// crashes again before starting it fails.
    fn requeue(
        &self,
        end: BatchEnd,
        queue: &Mutex<Queue>,
        requeued: &Mutex<HashSet<String>>,
        route: &str,
        emit: &mut dyn FnMut(Event),
    ) {
        let mut again = Vec::new();
        for test in end.unstarted {
            if self.stopper.is_stopped() || !lock(requeued).insert(test.id.clone()) {
                let mut event = batch::failure(
                    &test.id,
                    "not run: its batch's process ended before starting it, twice",
                );
                if self.stopper.is_stopped() {
                    continue;
                }
                event.prefix_route(route);
                emit(event);
            } else {
                again.push(test);
            }
        }
        debug_assert!(end.crashed || again.is_empty());
        lock(queue).requeue(again);
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

    /// The tests that failed in their latest try, sorted by id: the ones to retry.
    fn failed_cases(&self) -> Vec<TestCase> {
        self.results
            .with_verdict(TestVerdict::Failed)
            .into_iter()
            .filter_map(|id| self.cases.get(id).cloned())
            .collect()
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
