//! Where a run's batches run: the workers its sources make. Without a pool, a run has one source: the instances of
//! its suite's testrepository hooks when it has them, else `-j N` slots on this machine. A pool (`proctor run
//! --pool FILE`) gives one source per provisioner, one per host of an ssh provisioner, and one per held agent of a
//! lab provisioner.
//!
//! A source makes its workers when a slot first asks for one (so tests start on the first worker ready while the
//! others are still being provisioned), replaces a worker that was lost, gives up after its failure budget, and is
//! released as soon as its last slot is done with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proctor_pool::{Platform, Pool, Provisioner, ProvisionerKind, SshHost};
use proctor_sources::{InstanceHooks, Invocation, Project};

use crate::lab::{LabPlan, NoWorker, Reservation};
use crate::lock;
use crate::ssh::Connection;

/// One worker: where a batch's process runs, named by its route code.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    /// The route code its events carry: the slot's number, the instance's id, or `host/slot`.
    pub(crate) route: String,
    /// What it runs on.
    pub(crate) platform: Platform,
    /// Whether the tests were listed on it, so that their metadata (FMF `adjust`) already decided for it.
    pub(crate) listed_here: bool,
    place: Place,
}

#[derive(Clone, Debug)]
enum Place {
    Here,
    Instance(String, Arc<InstanceHooks>),
    Host(Arc<Connection>),
    Lab(Arc<Reservation>),
}

impl Worker {
    /// `invocation` as this worker runs it: as it is in a slot, through its hooks' `instance_execute` on an
    /// instance, through ssh on a host, through `proctor lab-batch` on a held agent.
    /// A host and an agent enforce `memory_limit` themselves; here the supervisor does.
    pub(crate) fn place(
        &self,
        invocation: Invocation,
        grace: Duration,
        memory_limit: Option<u64>,
    ) -> Invocation {
        match &self.place {
            Place::Here => invocation,
            Place::Instance(id, hooks) => hooks.execute_in(invocation, id),
            Place::Host(connection) => connection.place(invocation, grace, memory_limit),
            Place::Lab(reservation) => reservation.place(invocation, grace, memory_limit),
        }
    }

    /// Whether its command is a client of something elsewhere, whose input must stay open while it runs, and
    /// which enforces the run's memory limit there.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.place, Place::Host(_) | Place::Lab(_))
    }

    /// Why this worker is gone, judged from how a command on it exited (`code`), when it is.
    pub(crate) fn lost(&self, code: Option<i32>) -> Option<String> {
        match &self.place {
            Place::Host(connection) => connection.lost(code),
            Place::Lab(reservation) => reservation.lost(code),
            // A slot here cannot be lost, and `instance_execute`'s status is the test command's (as in testr).
            Place::Here | Place::Instance(..) => None,
        }
    }
}

/// What a source makes its workers from.
#[derive(Debug)]
enum Kind {
    Slots {
        first_route: usize,
        /// The run's own slots (no pool): the tests were listed here, under the run's context.
        listed_here: bool,
    },
    Instances {
        hooks: Arc<InstanceHooks>,
        directory: PathBuf,
    },
    Host(HostPlan),
    Lab(LabPlan),
}

#[derive(Debug)]
struct HostPlan {
    host: SshHost,
    identity_file: Option<PathBuf>,
    options: Vec<String>,
    control: PathBuf,
    tree: PathBuf,
}

/// One source of workers: a provisioner of the pool, or one host of an ssh provisioner.
#[derive(Debug)]
pub(crate) struct Source {
    /// How messages name it: `provisioner 1`, `host root@10.0.0.5`.
    pub(crate) name: String,
    kind: Kind,
    /// How many workers it makes at once: the run's slots on it.
    pub(crate) slots: usize,
    platform: Platform,
    budget: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// What went wrong last, when something did.
    last_failure: Option<String>,
    given_up: Option<String>,
    connection: Option<Arc<Connection>>,
    reservation: Option<Arc<Reservation>>,
    /// Instances made and not yet disposed of, and those of them no slot holds.
    instances: Vec<String>,
    free: Vec<String>,
    /// Slots still working from it; the last one releases it.
    live: usize,
    problems: Vec<String>,
}

impl Source {
    fn new(name: String, kind: Kind, slots: usize, platform: Platform, budget: u32) -> Source {
        Source {
            name,
            kind,
            slots,
            platform,
            budget: budget.max(1),
            state: Mutex::new(State {
                live: slots,
                ..State::default()
            }),
        }
    }

    /// A worker for slot `slot` (from 0), provisioned now when the source has none ready; a held agent is waited
    /// for while `wanted` says the run still needs it. The error says why there is none; [`Source::given_up`]
    /// then says whether asking again is of use.
    pub(crate) fn worker(&self, slot: usize, wanted: &dyn Fn() -> bool) -> Result<Worker, String> {
        let mut state = lock(&self.state);
        if let Some(why) = &state.given_up {
            return Err(why.clone());
        }
        let made = match &self.kind {
            Kind::Slots {
                first_route,
                listed_here,
            } => Ok(Worker {
                route: (first_route + slot).to_string(),
                platform: self.platform.clone(),
                listed_here: *listed_here,
                place: Place::Here,
            }),
            Kind::Instances { hooks, directory } => {
                instance(&mut state, hooks, directory, self.slots).map(|id| Worker {
                    route: id.clone(),
                    platform: self.platform.clone(),
                    listed_here: false,
                    place: Place::Instance(id, Arc::clone(hooks)),
                })
            }
            Kind::Host(plan) => {
                connect(&mut state, plan, &self.platform).map(|connection| Worker {
                    route: format!("{}/{slot}", plan.host),
                    platform: connection.platform.clone(),
                    listed_here: false,
                    place: Place::Host(connection),
                })
            }
            Kind::Lab(plan) => match hold(&mut state, plan, wanted) {
                Ok(reservation) => Ok(Worker {
                    route: reservation.agent.clone(),
                    platform: self.platform.clone().or(reservation.platform.clone()),
                    listed_here: false,
                    place: Place::Lab(reservation),
                }),
                // Not a failure of the source: the run ended before an agent came.
                Err(NoWorker::Unwanted) => return Err("no longer needed".to_owned()),
                Err(NoWorker::Failed(problem)) => Err(problem),
            },
        };
        made.map_err(|problem| self.fail(&mut state, problem))
    }

    /// Counts a failure, giving the source up once its budget is spent; the problem, said of this source.
    fn fail(&self, state: &mut State, problem: String) -> String {
        state.failures += 1;
        state.last_failure = Some(problem.clone());
        if state.failures >= self.budget {
            state.given_up = Some(format!(
                "{} given up after {} failure{}: {problem}",
                self.name,
                state.failures,
                if state.failures == 1 { "" } else { "s" }
            ));
        }
        problem
    }

    /// What went wrong with a source that failed and was not given up (the run ended first, or it came back).
    pub(crate) fn failed(&self) -> Option<String> {
        let state = lock(&self.state);
        if state.given_up.is_some() {
            return None;
        }
        let last = state.last_failure.as_ref()?;
        Some(format!(
            "{} failed {} time{}: {last}",
            self.name,
            state.failures,
            if state.failures == 1 { "" } else { "s" }
        ))
    }

    /// Whether the source has spent its failure budget.
    pub(crate) fn given_up(&self) -> Option<String> {
        lock(&self.state).given_up.clone()
    }

    /// Takes back `worker` after it was lost (`why`): counted against the budget, and its connection dropped so
    /// that the next worker connects afresh.
    pub(crate) fn lose(&self, worker: &Worker, why: &str) {
        let mut state = lock(&self.state);
        if let Place::Host(connection) = &worker.place {
            let same = state
                .connection
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, connection));
            if same {
                state.connection = None;
                // The host may be gone: what is left there cannot be removed now.
                let _ = connection.close();
            }
        }
        if let Place::Lab(_) = &worker.place {
            // Its job has ended: the next worker is another job.
            state.reservation = None;
        }
        self.fail(&mut state, why.to_owned());
    }

    /// Gives back the instance a slot held, for the next worker.
    pub(crate) fn give_back(&self, worker: Worker) {
        if let Place::Instance(id, _) = worker.place {
            lock(&self.state).free.push(id);
        }
    }

    /// Says that one slot is done with this source; the last one releases what it made.
    pub(crate) fn slot_done(&self) {
        let mut state = lock(&self.state);
        state.live = state.live.saturating_sub(1);
        if state.live == 0 {
            self.release(&mut state);
        }
    }

    fn release(&self, state: &mut State) {
        if let Some(connection) = state.connection.take() {
            state.problems.extend(connection.close().err());
        }
        if let Some(reservation) = state.reservation.take() {
            state.problems.extend(reservation.end().err());
        }
        if let Kind::Instances { hooks, directory } = &self.kind {
            let ids = std::mem::take(&mut state.instances);
            state.free.clear();
            state.problems.extend(dispose(hooks, directory, &ids).err());
        }
    }

    /// What failed while releasing it.
    pub(crate) fn problems(&self) -> Vec<String> {
        lock(&self.state).problems.clone()
    }
}

/// A free instance, provisioning `count` of them when none is left (as `testr` does, asking again until the hook
/// has printed that many ids). On failure, the ones it did make are disposed of.
fn instance(
    state: &mut State,
    hooks: &InstanceHooks,
    directory: &Path,
    count: usize,
) -> Result<String, String> {
    if let Some(id) = state.free.pop() {
        return Ok(id);
    }
    let mut ids: Vec<String> = Vec::new();
    while ids.len() < count {
        let command = hooks.provision_command(count - ids.len());
        let made = shell(&command, directory, "instance_provision").and_then(|printed| {
            let new: Vec<String> = printed
                .split_whitespace()
                .filter(|id| !ids.iter().chain(&state.instances).any(|known| known == id))
                .map(str::to_owned)
                .collect();
            if new.is_empty() {
                Err(format!(
                    "instance_provision (`{command}`) printed no new instance id"
                ))
            } else {
                Ok(new)
            }
        });
        match made {
            Ok(new) => ids.extend(new),
            Err(problem) => {
                return Err(match dispose(hooks, directory, &ids).err() {
                    Some(also) => format!("{problem}; {also}"),
                    None => problem,
                });
            }
        }
    }
    state.instances.extend(ids.iter().cloned());
    let first = ids.remove(0);
    state.free.extend(ids);
    Ok(first)
}

/// The host's connection, opened (and the tree copied) by the first slot that asks.
fn connect(
    state: &mut State,
    plan: &HostPlan,
    platform: &Platform,
) -> Result<Arc<Connection>, String> {
    if let Some(connection) = &state.connection {
        return Ok(Arc::clone(connection));
    }
    let connection = Arc::new(Connection::open(
        &plan.host,
        plan.identity_file.as_deref(),
        &plan.options,
        &plan.control,
        &plan.tree,
        platform,
    )?);
    state.connection = Some(Arc::clone(&connection));
    Ok(connection)
}

/// The agent a lab source holds, held now (the job submitted, and waited for) by the first slot that asks.
fn hold(
    state: &mut State,
    plan: &LabPlan,
    wanted: &dyn Fn() -> bool,
) -> Result<Arc<Reservation>, NoWorker> {
    if let Some(reservation) = &state.reservation {
        return Ok(Arc::clone(reservation));
    }
    let reservation = Arc::new(Reservation::open(plan, wanted)?);
    state.reservation = Some(Arc::clone(&reservation));
    Ok(reservation)
}

/// A run's sources of workers, and the directory their ssh control sockets live in.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) sources: Vec<Source>,
    _sockets: Option<tempfile::TempDir>,
}

impl Sources {
    /// The sources of a run of `project`: `pool`'s provisioners when there is one (an ssh provisioner giving one
    /// source per host), else the project's instance hooks or `concurrency` slots. Nothing is provisioned yet.
    pub(crate) fn plan(
        project: &Project,
        pool: Option<&Pool>,
        concurrency: usize,
    ) -> Result<Sources, String> {
        let tree = project
            .suites()
            .first()
            .map(|suite| suite.directory().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let mut sockets = None;
        let mut sources = Vec::new();
        match pool {
            Some(pool) => {
                let mut next_route = 0;
                let dir = control_sockets()?;
                for (index, provisioner) in pool.provisioners.iter().enumerate() {
                    sources.extend(of_provisioner(
                        index,
                        provisioner,
                        &tree,
                        dir.path(),
                        &mut next_route,
                    )?);
                }
                sockets = Some(dir);
            }
            None => {
                let slots = concurrency.max(1);
                let hooks = project.suites().iter().find_map(|suite| {
                    Some((
                        suite.instance_hooks()?.clone(),
                        suite.directory().to_path_buf(),
                    ))
                });
                let kind = match hooks {
                    Some((hooks, directory)) => Kind::Instances {
                        hooks: Arc::new(hooks),
                        directory,
                    },
                    None => Kind::Slots {
                        first_route: 0,
                        listed_here: true,
                    },
                };
                // The instances' platform is unknown; slots here have this machine's, for needs and hooks.
                let (name, platform) = match kind {
                    Kind::Instances { .. } => ("the instance hooks", Platform::default()),
                    _ => ("this machine", Platform::of_this_machine()),
                };
                sources.push(Source::new(name.to_owned(), kind, slots, platform, 1));
            }
        }
        Ok(Sources {
            sources,
            _sockets: sockets,
        })
    }

    /// How many workers the sources make at most.
    pub(crate) fn slots(&self) -> usize {
        self.sources.iter().map(|source| source.slots).sum()
    }
}

/// A directory for ssh's control sockets, removed with the value (short: a socket's path has ~100 bytes at most).
fn control_sockets() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("proctor-ssh.")
        .tempdir()
        .map_err(|error| format!("cannot make a directory for ssh's control sockets: {error}"))
}

/// The sources of one provisioner of a pool, its ssh hosts' control sockets in `sockets`; an error when a lab's
/// address is not one.
fn of_provisioner(
    index: usize,
    provisioner: &Provisioner,
    tree: &Path,
    sockets: &Path,
    next_route: &mut usize,
) -> Result<Vec<Source>, String> {
    let name = format!("provisioner {index}");
    let count = provisioner.max_workers.get();
    let budget = provisioner.failure_budget;
    match &provisioner.kind {
        ProvisionerKind::Local => {
            let kind = Kind::Slots {
                first_route: *next_route,
                listed_here: false,
            };
            *next_route += count;
            let platform = provisioner.platform.clone().or(Platform::of_this_machine());
            Ok(vec![Source::new(name, kind, count, platform, budget)])
        }
        ProvisionerKind::Hooks {
            provision,
            execute,
            dispose,
        } => {
            let hooks = InstanceHooks {
                provision: provision.clone(),
                execute: Some(execute.clone()),
                dispose: dispose.clone(),
            };
            let kind = Kind::Instances {
                hooks: Arc::new(hooks),
                directory: tree.to_path_buf(),
            };
            Ok(vec![Source::new(
                name,
                kind,
                count,
                provisioner.platform.clone(),
                budget,
            )])
        }
        ProvisionerKind::Ssh {
            hosts,
            identity_file,
            workers_per_host,
            options,
        } => {
            let mut left = count;
            Ok(hosts
                .iter()
                .enumerate()
                .map(|(number, host)| {
                    let slots = workers_per_host.get().min(left);
                    left -= slots;
                    let plan = HostPlan {
                        host: host.clone(),
                        identity_file: identity_file.clone(),
                        options: options.clone(),
                        control: sockets.join(format!("{index}.{number}")),
                        tree: tree.to_path_buf(),
                    };
                    Source::new(
                        format!("host {host} ({name})"),
                        Kind::Host(plan),
                        slots,
                        provisioner.platform.clone(),
                        budget,
                    )
                })
                .filter(|source| source.slots > 0)
                .collect())
        }
        ProvisionerKind::Lab {
            server,
            queue,
            token,
        } => {
            // One source per held agent, so that each waits for its own job without holding up the others.
            let bundle = Arc::new(OnceLock::new());
            (0..count)
                .map(|number| {
                    let plan = LabPlan::new(
                        server,
                        token.as_deref(),
                        queue,
                        tree,
                        Arc::clone(&bundle),
                        number,
                    )?;
                    Ok(Source::new(
                        format!("lab worker {number} of queue {queue} ({name})"),
                        Kind::Lab(plan),
                        1,
                        provisioner.platform.clone(),
                        budget,
                    ))
                })
                .collect()
        }
    }
}

/// How long `proctor pool check` waits for a lab's agents to take its jobs.
const CHECK_WAIT: Duration = Duration::from_secs(60);

/// What provisioning one provisioner of a pool once gave ([`check_pool`]).
#[derive(Debug, Clone)]
pub struct ProvisionerCheck {
    /// Its place in the pool file, from 0.
    pub index: usize,
    /// The route codes of the workers it made, each with its platform.
    pub workers: Vec<(String, Platform)>,
    /// How long provisioning took.
    pub took: Duration,
    /// Why provisioning or releasing failed, with what the hook or ssh said.
    pub problem: Option<String>,
}

/// Provisions each provisioner of `pool` once, with hooks run (and the tree copied from) `directory`, and releases
/// what each made: the workers it gave and their platforms (a local worker's and an ssh host's found where the file
/// says nothing), how long it took, and what failed.
pub fn check_pool(pool: &Pool, directory: &Path) -> Vec<ProvisionerCheck> {
    let sockets = match control_sockets() {
        Ok(sockets) => sockets,
        Err(problem) => {
            return (0..pool.provisioners.len())
                .map(|index| ProvisionerCheck {
                    index,
                    workers: Vec::new(),
                    took: Duration::ZERO,
                    problem: Some(problem.clone()),
                })
                .collect()
        }
    };
    pool.provisioners
        .iter()
        .enumerate()
        .map(|(index, provisioner)| {
            let started = Instant::now();
            let mut problems = Vec::new();
            let sources = of_provisioner(index, provisioner, directory, sockets.path(), &mut 0)
                .unwrap_or_else(|problem| {
                    problems.push(problem);
                    Vec::new()
                });
            let mut workers = Vec::new();
            // A held agent is waited for as long as a check should take.
            let wanted = || started.elapsed() < CHECK_WAIT;
            for source in &sources {
                for slot in 0..source.slots {
                    match source.worker(slot, &wanted) {
                        Ok(worker) => workers.push(worker),
                        Err(problem) => {
                            problems.push(problem);
                            break;
                        }
                    }
                }
            }
            let took = started.elapsed();
            let made = workers
                .iter()
                .map(|worker| (worker.route.clone(), worker.platform.clone()))
                .collect();
            for source in &sources {
                for _ in 0..source.slots {
                    source.slot_done();
                }
                problems.extend(source.problems());
            }
            ProvisionerCheck {
                index,
                workers: made,
                took,
                problem: (!problems.is_empty()).then(|| problems.join("; ")),
            }
        })
        .collect()
}

fn dispose(hooks: &InstanceHooks, directory: &Path, ids: &[String]) -> Result<(), String> {
    match hooks.dispose_command(ids) {
        Some(command) if !ids.is_empty() => {
            shell(&command, directory, "instance_dispose").map(drop)
        }
        _ => Ok(()),
    }
}

/// Runs a hook's command line with the shell in `directory`; its standard output, or why it failed.
fn shell(command: &str, directory: &Path, hook: &str) -> Result<String, String> {
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{hook} (`{command}`) could not start: {error}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{hook} (`{command}`) failed ({}){}",
            output.status,
            match said.trim() {
                "" => String::new(),
                said => format!(": {said}"),
            }
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
