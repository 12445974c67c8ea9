//! Cgroups left by a supervisor whose process died (SIGKILL) are cleaned up,
//! with whatever still runs in them, when the next supervisor starts.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use proctor_supervisor::{MemoryStrategy, Supervisor, SupervisorConfig};

/// This process's cgroup directory in the v1 memory hierarchy, where the
/// supervisor puts its command cgroups on this kind of machine.
fn own_memory_cgroup() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups
        .lines()
        .find_map(|line| line.split_once(":memory:").map(|(_, path)| path.to_owned()))?;
    Some(PathBuf::from(format!("/sys/fs/cgroup/memory{path}")))
}

#[test]
fn a_dead_supervisor_s_cgroups_and_processes_are_removed() {
    let probe = Supervisor::new(SupervisorConfig::default()).expect("a supervisor");
    let Some(parent) =
        own_memory_cgroup().filter(|_| probe.memory_strategy() == MemoryStrategy::CgroupV1)
    else {
        common::cannot_run_without("a v1 memory cgroup to leave stale cgroups in");
        return;
    };
    // A pid that no longer runs: a finished child's.
    let mut gone = Command::new("true").spawn().expect("true runs");
    let dead_pid = gone.id();
    gone.wait().expect("true exits");
    let stale = parent.join(format!("proctor-{dead_pid}-0"));
    std::fs::create_dir(&stale).expect("creates a stale cgroup");
    let mut orphan = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep runs");
    std::fs::write(stale.join("cgroup.procs"), orphan.id().to_string()).expect("moves sleep in");

    let _supervisor = Supervisor::new(SupervisorConfig::default()).expect("a supervisor");

    let status = orphan.wait().expect("sleep is reaped");
    assert!(
        !status.success(),
        "sleep should have been killed: {status:?}"
    );
    assert!(!stale.exists(), "{} is still there", stale.display());
}
