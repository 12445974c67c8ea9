//! Finding, signalling and reaping every process a command started, through `/proc`.
//!
//! A command's tree is found from several sources, because each can miss something:
//! - its cgroup, when it has one, which lists every live descendant;
//! - the descendants of its own process, following `/proc/<pid>/task/*/children`;
//! - the orphans this process (a child subreaper) adopted from it: an adopted child belongs to
//!   the command when it is in the command's process group, carries the command's
//!   `PROCTOR_SUPERVISOR_TOKEN` in its environment, or was seen in the tree before;
//!   and again their descendants.
//!
//! Processes are identified by pid and start time, so a reused pid is never mistaken for a
//! process of the tree.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use procfs::process::Process;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::cgroup::CommandCgroup;

/// A process's identity: pid plus start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcessId {
    pid: i32,
    start: u64,
}

/// What `/proc/<pid>/stat` said about a process at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    id: ProcessId,
    parent: i32,
    group: i32,
    zombie: bool,
}

fn snapshot(pid: i32) -> Option<Snapshot> {
    let stat = Process::new(pid).ok()?.stat().ok()?;
    Some(Snapshot {
        id: ProcessId {
            pid,
            start: stat.starttime,
        },
        parent: stat.ppid,
        group: stat.pgrp,
        zombie: stat.state == 'Z',
    })
}

/// The children of `pid`, over all of its threads (each thread has its own list).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = Process::new(pid).and_then(|process| process.tasks()) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| task.children().ok())
        .flatten()
        .filter_map(|child| i32::try_from(child).ok())
        .collect()
}

fn environment_contains(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(|e| e == entry))
}

fn resident_bytes(pid: i32) -> u64 {
    Process::new(pid)
        .and_then(|process| process.statm())
        .map_or(0, |statm| statm.resident * procfs::page_size())
}

/// Sends `signal` to one process, ignoring processes that are already gone.
fn send(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The pids of the commands currently running under one supervisor (their own processes,
/// which are this process's direct children), shared by all of its commands: one command's
/// search for adopted orphans must never take another command's own process.
#[derive(Debug, Default)]
pub(crate) struct Roots(Mutex<HashSet<i32>>);

impl Roots {
    pub(crate) fn insert(&self, pid: i32) {
        self.lock().insert(pid);
    }

    pub(crate) fn remove(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    fn contains(&self, pid: i32) -> bool {
        self.lock().contains(&pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        // The set stays consistent even if a holder panicked: every operation is one call.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The tree of one command.
#[derive(Debug)]
pub(crate) struct Tree {
    root: i32,
    root_running: bool,
    /// `PROCTOR_SUPERVISOR_TOKEN=<token>`, as it appears in `/proc/<pid>/environ`.
    token_entry: Vec<u8>,
    cgroup: Option<CommandCgroup>,
    roots: Arc<Roots>,
    own_pid: i32,
    /// Every process ever seen in the tree.
    known: HashSet<ProcessId>,
    /// Processes other than the root that were signalled.
    signalled: HashSet<ProcessId>,
}

impl Tree {
    pub(crate) fn new(
        root: i32,
        token_entry: Vec<u8>,
        cgroup: Option<CommandCgroup>,
        roots: Arc<Roots>,
    ) -> Self {
        Tree {
            root,
            root_running: true,
            token_entry,
            cgroup,
            roots,
            own_pid: std::process::id() as i32,
            known: HashSet::new(),
            signalled: HashSet::new(),
        }
    }

    pub(crate) fn cgroup(&self) -> Option<&CommandCgroup> {
        self.cgroup.as_ref()
    }

    /// Records that the command's own process has exited (it stays a zombie until the caller
    /// reaps it, which keeps its pid, and so the process group id, from being reused).
    pub(crate) fn root_exited(&mut self) {
        self.root_running = false;
    }

    /// How many processes other than the root were signalled so far.
    pub(crate) fn leftovers_signalled(&self) -> usize {
        self.signalled.len()
    }

    /// Every process of the tree other than the root, live or zombie.
    fn members(&mut self) -> Vec<Snapshot> {
        let mut pending: Vec<i32> = self
            .cgroup
            .as_ref()
            .map(CommandCgroup::pids)
            .unwrap_or_default();
        pending.extend(children_of(self.root));
        pending.extend(self.adopted_members());
        let mut seen = HashSet::from([self.root]);
        let mut members = Vec::new();
        while let Some(pid) = pending.pop() {
            if !seen.insert(pid) {
                continue;
            }
            let Some(process) = snapshot(pid) else {
                continue;
            };
            self.known.insert(process.id);
            members.push(process);
            pending.extend(children_of(pid));
        }
        members
    }

    /// This process's children that are orphans adopted from this tree.
    fn adopted_members(&self) -> Vec<i32> {
        // A child that exits while the list is read can hide others from that read (see
        // proc(5)), so the list is read twice.
        let mut children = children_of(self.own_pid);
        children.extend(children_of(self.own_pid));
        children.sort_unstable();
        children.dedup();
        children
            .into_iter()
            .filter(|&pid| pid != self.root && !self.roots.contains(pid))
            .filter(|&pid| snapshot(pid).is_some_and(|process| self.belongs(&process)))
            .collect()
    }

    fn belongs(&self, process: &Snapshot) -> bool {
        process.group == self.root
            || self.known.contains(&process.id)
            || environment_contains(process.id.pid, &self.token_entry)
    }

    /// Sends `signal` to every live process of the tree: the whole process group at once (the
    /// root, while unreaped, keeps its id from being reused), and each process outside the
    /// group on its own.
    pub(crate) fn signal_all(&mut self, signal: Signal) {
        let alive: Vec<Snapshot> = self.members().into_iter().filter(|p| !p.zombie).collect();
        if let Some(group) = Pid::from_raw(self.root) {
            let _ = rustix::process::kill_process_group(group, signal);
        }
        // A root that moved to another process group is not reached through its own.
        if self.root_running && snapshot(self.root).is_some_and(|root| root.group != self.root) {
            send(self.root, signal);
        }
        for process in &alive {
            if process.group != self.root {
                send(process.id.pid, signal);
            }
            self.signalled.insert(process.id);
        }
    }

    /// Reaps the zombies of the tree that are this process's children (adopted orphans), and
    /// says whether the tree is gone: the root has exited and no other process is alive or
    /// waiting to be reaped by this process.
    pub(crate) fn reap_and_check_gone(&mut self) -> bool {
        let mut gone = !self.root_running;
        for process in self.members() {
            if !process.zombie {
                gone = false;
            } else if process.parent == self.own_pid {
                reap(process.id.pid);
            }
        }
        gone
    }

    /// The resident memory of every live process of the tree, summed.
    pub(crate) fn resident_total(&mut self) -> u64 {
        let others: u64 = self
            .members()
            .iter()
            .filter(|process| !process.zombie)
            .map(|process| resident_bytes(process.id.pid))
            .sum();
        let root = if self.root_running {
            resident_bytes(self.root)
        } else {
            0
        };
        root + others
    }
}

/// Reaps one zombie child without blocking; waiting on its pid alone never takes another
/// child's exit status.
fn reap(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
    }
}
