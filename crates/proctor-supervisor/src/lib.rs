//! Process supervision for Proctor: runs commands (tests on this machine for `proctor run`, job
//! phases for the lab agent) and guarantees that each one, and everything it started, is gone
//! when it ends.
//!
//! A [`Supervisor`] makes this process a child subreaper, so that processes escaping with
//! `setsid` or a double fork are re-parented here instead of to init. Each command it
//! [spawns](Supervisor::spawn) runs in its own process group (and, when it has a memory limit, in its own memory cgroup where
//! one is usable), with stdout and stderr captured as timestamped [`Chunk`]s delivered as soon
//! as they are read. A monitor thread per command enforces its [`Limits`] (time, no output,
//! memory), carries out [`StopHandle::stop`] requests, and when the command ends, normally or
//! not, sends SIGTERM to whatever it left behind, waits the grace period, and SIGKILLs the rest.
//! The [`Outcome`] says how the command ended, which limit fired, how long it ran, and its peak
//! memory.
//!
//! ```no_run
//! use std::time::Duration;
//! use proctor_supervisor::{CommandSpec, Supervisor, SupervisorConfig};
//!
//! let supervisor = Supervisor::new(SupervisorConfig::default())?;
//! let running = supervisor.spawn(
//!     CommandSpec::new("sh").args(["-c", "echo hello"]).time_limit(Duration::from_secs(60)),
//! )?;
//! for chunk in running.output() {
//!     print!("{}", String::from_utf8_lossy(&chunk.data));
//! }
//! let outcome = running.wait()?;
//! assert!(outcome.exit.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Finding a command's processes
//! Its cgroup lists every live descendant. Without one, the supervisor follows
//! `/proc/<pid>/task/*/children` from the command's process and from the orphans this process
//! adopted, attributing an orphan to a command by process group, by the
//! [`TOKEN_VARIABLE`] in its environment, or by having seen it in the tree before. A process
//! that leaves the process group, clears its environment and is orphaned before the supervisor
//! ever saw it cannot be attributed without a cgroup, and is left alone: killing it might hit
//! another command's process. Processes are identified by pid and start time, so a reused pid
//! is never signalled.
//!
//! # Reaping
//! Orphans re-parented here become this process's children. The supervisor reaps only those it
//! attributed to one of its commands, each by its own pid, never with `waitpid(-1)`, so exit
//! statuses of children that other code in this process started are never taken. Zombies of
//! orphans that exited on their own before the supervisor saw them stay unreaped.
//!
//! # Memory
//! See [`MemoryStrategy`]. A tree over its memory limit is SIGKILLed at once, without a grace
//! period: it would only grow meanwhile. Under [`MemoryStrategy::RssWatch`] the limit applies
//! to the sum of resident memory over the tree (shared pages count once per process).
//!
//! Linux only: it relies on `/proc`, `prctl(PR_SET_CHILD_SUBREAPER)` and cgroups.

#[cfg(not(target_os = "linux"))]
compile_error!("proctor-supervisor supports Linux only (it needs /proc, subreapers and cgroups)");

mod cgroup;
mod config;
mod error;
mod monitor;
mod outcome;
mod signals;
mod spec;
mod supervisor;
mod tree;

pub use config::{MemoryPreference, MemoryStrategy, SupervisorConfig};
pub use error::{CgroupProbeError, SpawnError, SupervisorError, WaitError};
pub use outcome::{Chunk, Exit, Limit, Outcome, Stream};
pub use spec::{CommandSpec, Limits};
pub use supervisor::{Running, StopHandle, Supervisor, TOKEN_VARIABLE};
