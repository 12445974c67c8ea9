//! [`Supervisor`], the commands it runs ([`Running`]) and their [`StopHandle`]s.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustix::process::{Pid, Signal};

use crate::cgroup::{CgroupParent, CommandCgroup, Version};
use crate::config::{MemoryPreference, MemoryStrategy, SupervisorConfig};
use crate::error::{SpawnError, SupervisorError, WaitError};
use crate::monitor::{MemoryWatch, Monitor, MonitorSetup};
use crate::outcome::{Chunk, Outcome};
use crate::signals::{watch_for_exit, Signals};
use crate::spec::{CommandSpec, Stdin};
use crate::tree::{Roots, Tree};

/// The environment variable that marks every process of a supervised command (its value is
/// unique to the command), so that processes which left its process group and were orphaned
/// can still be told apart from other commands' processes.
pub const TOKEN_VARIABLE: &str = "PROCTOR_SUPERVISOR_TOKEN";

/// Numbers the commands of every supervisor in this process, so that their cgroups (named after
/// this process and the number) never collide.
static COMMAND_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Runs commands under supervision. One per process is enough (it can be cloned and shared
/// between threads); creating it makes this process a child subreaper, so that processes a
/// command orphans (a `setsid` daemon, a double fork) are re-parented here and can be found and
/// killed, and chooses once how memory limits are enforced.
#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: SupervisorConfig,
    strategy: MemoryStrategy,
    cgroups: Option<CgroupParent>,
    roots: Arc<Roots>,
    /// Unique to this supervisor; each command's token adds its sequence number.
    token_base: String,
}

impl Supervisor {
    /// Sets up supervision for this process: makes it a child subreaper and picks the memory
    /// strategy `config.memory` asks for.
    pub fn new(config: SupervisorConfig) -> Result<Self, SupervisorError> {
        check_procfs()?;
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|errno| SupervisorError::Subreaper(errno.into()))?;
        let cgroups = choose_cgroups(config.memory)?;
        if let Some(parent) = &cgroups {
            parent.remove_stale();
        }
        let strategy = match cgroups.as_ref().map(CgroupParent::version) {
            Some(Version::V2) => MemoryStrategy::CgroupV2,
            Some(Version::V1) => MemoryStrategy::CgroupV1,
            None => MemoryStrategy::RssWatch,
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Supervisor {
            shared: Arc::new(Shared {
                config,
                strategy,
                cgroups,
                roots: Arc::default(),
                token_base: format!("{}-{}", std::process::id(), started.as_nanos()),
            }),
        })
    }

    /// How memory limits are enforced.
    pub fn memory_strategy(&self) -> MemoryStrategy {
        self.shared.strategy
    }

    /// Starts `spec` in its own process group (and cgroup, when memory is enforced by cgroups)
    /// with stdout and stderr captured, and starts supervising it.
    pub fn spawn(&self, spec: CommandSpec) -> Result<Running, SpawnError> {
        let program = spec.program_name();
        if let Some(dir) = spec.cwd.as_ref().filter(|dir| !dir.is_dir()) {
            return Err(SpawnError::NoSuchDirectory {
                program,
                path: dir.clone(),
            });
        }
        let sequence = COMMAND_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}-{sequence}", self.shared.token_base);
        let cgroup = self.create_cgroup(&spec, &program, sequence)?;
        let signals = Signals::new()
            .map(Arc::new)
            .map_err(|source| SpawnError::Setup {
                program: program.clone(),
                what: "eventfd",
                source,
            })?;
        let mut command = build_command(&spec, &token);
        if let Some(cgroup) = &cgroup {
            join_cgroup_before_exec(&mut command, cgroup);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound {
                program: program.clone(),
            },
            _ => SpawnError::Start {
                program: program.clone(),
                source,
            },
        })?;
        let pid = child.id();
        self.shared.roots.insert(pid as i32);
        let setup_error = |what, source| SpawnError::Setup {
            program: program.clone(),
            what,
            source,
        };
        let Some(pipes) = take_pipes(&mut child) else {
            self.abandon(child);
            return Err(setup_error(
                "output pipes",
                io::Error::other("stdout or stderr not piped"),
            ));
        };
        let memory_watch = self.memory_watch(&spec);
        let held_stdin = match spec.stdin {
            Stdin::HeldOpen => pipes.stdin,
            Stdin::Bytes(bytes) => {
                if let Err(source) = start_stdin_writer(pipes.stdin, bytes) {
                    self.abandon(child);
                    return Err(setup_error("stdin writer thread", source));
                }
                None
            }
            Stdin::Null => None,
        };
        if let Err(source) = start_exit_watcher(pid, &signals) {
            self.abandon(child);
            return Err(setup_error("exit watcher thread", source));
        }
        let (sender, output) = mpsc::channel();
        let tree = Tree::new(
            pid as i32,
            format!("{TOKEN_VARIABLE}={token}").into_bytes(),
            cgroup,
            Arc::clone(&self.shared.roots),
        );
        let setup = MonitorSetup {
            program: program.clone(),
            child,
            tree,
            roots: Arc::clone(&self.shared.roots),
            signals: Arc::clone(&signals),
            output: sender,
            limits: spec.limits,
            grace: spec.grace.unwrap_or(self.shared.config.grace),
            memory_watch,
            started,
        };
        let monitor = Monitor::new(setup, pipes.stdout, pipes.stderr);
        let monitor = thread::Builder::new()
            .name(format!("proctor-supervise-{pid}"))
            .spawn(move || {
                let outcome = monitor.run();
                drop(held_stdin);
                outcome
            })
            // The monitor (with the child) is gone with the failed closure; the exit watcher
            // still tells the stop handle, and the tree is killed by its process group.
            .map_err(|source| {
                kill_group(pid);
                setup_error("monitor thread", source)
            })?;
        Ok(Running {
            pid,
            program,
            output,
            stop: StopHandle { signals },
            monitor,
        })
    }

    fn create_cgroup(
        &self,
        spec: &CommandSpec,
        program: &str,
        sequence: u64,
    ) -> Result<Option<CommandCgroup>, SpawnError> {
        let Some(parent) = &self.shared.cgroups else {
            return Ok(None);
        };
        // Joining a cgroup takes a pre_exec hook, which makes std fork the
        // whole process instead of using posix_spawn: ~1.5 ms more per command
        // (BENCHMARKS.md, runner overhead). Without a memory limit to enforce,
        // the process group, the token and the subreaper find the tree.
        if spec.limits.memory.is_none() {
            return Ok(None);
        }
        let name = format!("proctor-{}-{sequence}", std::process::id());
        parent
            .create(&name, spec.limits.memory)
            .map(Some)
            .map_err(|(path, source)| SpawnError::Cgroup {
                program: program.to_owned(),
                path,
                source,
            })
    }

    fn memory_watch(&self, spec: &CommandSpec) -> MemoryWatch {
        let every = self.shared.config.sample_interval;
        match (self.shared.strategy, spec.limits.memory) {
            // Without a limit there is no cgroup (see `create_cgroup`): the
            // peak comes from samples of the tree's resident memory.
            (MemoryStrategy::RssWatch, _) | (_, None) => MemoryWatch::Rss(every),
            (_, Some(_)) => MemoryWatch::CgroupOomKills(every),
        }
    }

    /// Kills a command that could not be put under supervision, and reaps it.
    fn abandon(&self, mut child: Child) {
        kill_group(child.id());
        let _ = child.wait();
        self.shared.roots.remove(child.id() as i32);
    }
}

fn check_procfs() -> Result<(), SupervisorError> {
    let path = "/proc/self/stat";
    std::fs::metadata(path)
        .map(drop)
        .map_err(|source| SupervisorError::NoProcfs {
            path: path.into(),
            source,
        })
}

fn choose_cgroups(preference: MemoryPreference) -> Result<Option<CgroupParent>, SupervisorError> {
    if preference == MemoryPreference::RssWatch {
        return Ok(None);
    }
    let v2 = match CgroupParent::probe_v2() {
        Ok(parent) => return Ok(Some(parent)),
        Err(why) => why,
    };
    let v1 = match CgroupParent::probe_v1() {
        Ok(parent) => return Ok(Some(parent)),
        Err(why) => why,
    };
    match preference {
        MemoryPreference::Cgroup => Err(SupervisorError::CgroupUnavailable { v2, v1 }),
        _ => Ok(None),
    }
}

fn build_command(spec: &CommandSpec, token: &str) -> Command {
    let mut command = Command::new(&spec.program);
    command.args(&spec.args);
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    if spec.env_clear {
        command.env_clear();
    }
    for (key, value) in &spec.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env(TOKEN_VARIABLE, token)
        .stdin(match spec.stdin {
            Stdin::Null => Stdio::null(),
            Stdin::Bytes(_) | Stdin::HeldOpen => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the whole group can be signalled at once.
        .process_group(0);
    command
}

/// Makes the child move itself into `cgroup` between fork and exec, so that everything it
/// starts is in the cgroup from the first instruction on.
#[allow(unsafe_code)]
fn join_cgroup_before_exec(command: &mut Command, cgroup: &CommandCgroup) {
    let procs = cgroup.procs_fd().as_raw_fd();
    let join = move || {
        // SAFETY: `procs` stays open until `spawn` returns: the cgroup (which owns it) outlives
        // the command.
        let procs = unsafe { BorrowedFd::borrow_raw(procs) };
        rustix::io::write(procs, b"0")?;
        Ok(())
    };
    // SAFETY: the closure only makes one write(2) call, which is async-signal-safe, and
    // allocates nothing.
    unsafe {
        command.pre_exec(join);
    }
}

struct Pipes {
    stdin: Option<ChildStdin>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// The child's pipes; `None` cannot happen, as `build_command` always pipes stdout and stderr.
fn take_pipes(child: &mut Child) -> Option<Pipes> {
    let (stdout, stderr) = (child.stdout.take()?, child.stderr.take()?);
    Some(Pipes {
        stdin: child.stdin.take(),
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

/// Writes `bytes` to the command's standard input from a thread of its own (the command may
/// read slowly, or not at all), then closes it.
fn start_stdin_writer(stdin: Option<ChildStdin>, bytes: Bytes) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    thread::Builder::new()
        .name("proctor-stdin".into())
        .spawn(move || {
            // A command that exits without reading all of its input is not an error.
            let _ = stdin.write_all(&bytes);
        })?;
    Ok(())
}

fn start_exit_watcher(pid: u32, signals: &Arc<Signals>) -> io::Result<()> {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Err(io::Error::other("the child has pid 0"));
    };
    let signals = Arc::clone(signals);
    thread::Builder::new()
        .name(format!("proctor-wait-{pid}"))
        .spawn(move || watch_for_exit(pid, signals))?;
    Ok(())
}

fn kill_group(pid: u32) {
    if let Some(group) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
}

/// A command being supervised. Its output can be read while it runs; [`wait`](Self::wait)
/// gives its outcome. Dropping it without waiting leaves the command running under the same
/// supervision (limits, stop handles, clean-up), with its output discarded.
#[derive(Debug)]
pub struct Running {
    pid: u32,
    program: String,
    output: Receiver<Chunk>,
    stop: StopHandle,
    monitor: JoinHandle<Result<Outcome, WaitError>>,
}

impl Running {
    /// The process id of the command's own process (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command's output, chunk by chunk, as soon as it is read. The channel closes (its
    /// iterator ends) once the tree is gone and every chunk has been delivered.
    pub fn output(&self) -> &Receiver<Chunk> {
        &self.output
    }

    /// A handle that stops the command from anywhere (SIGTERM, grace period, SIGKILL).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Waits until the command has ended, its whole tree is gone and all output was delivered
    /// to [`output`](Self::output); chunks not yet received are dropped.
    pub fn wait(self) -> Result<Outcome, WaitError> {
        let program = self.program;
        self.monitor
            .join()
            .unwrap_or(Err(WaitError::MonitorPanicked { program }))
    }

    /// Like [`wait`](Self::wait), also returning the chunks not received yet, in order.
    pub fn wait_with_output(self) -> Result<(Outcome, Vec<Chunk>), WaitError> {
        let chunks = self.output.iter().collect();
        let program = self.program;
        let outcome = self
            .monitor
            .join()
            .unwrap_or(Err(WaitError::MonitorPanicked { program }))?;
        Ok((outcome, chunks))
    }
}

/// Stops a running command from any thread: SIGTERM to its whole tree, then SIGKILL to whatever
/// is left after the grace period. Stopping a command that already ended does nothing.
#[derive(Clone)]
pub struct StopHandle {
    signals: Arc<Signals>,
}

impl StopHandle {
    /// Asks for the command to be stopped; returns at once.
    pub fn stop(&self) {
        self.signals.request_stop();
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle").finish_non_exhaustive()
    }
}
