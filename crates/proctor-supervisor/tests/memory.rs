//! Memory limits, enforced by a cgroup and by watching resident memory, against a real Python
//! process that allocates in a loop.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cannot_run_without, finish, supervisor_with, PATIENCE};
use proctor_supervisor::{
    CommandSpec, Exit, Limit, MemoryPreference, MemoryStrategy, Supervisor, SupervisorConfig,
};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 100 * MIB;

/// Allocates (and touches) 10 MiB every 20 ms, up to 2 GiB, then reports it got there.
const HOG: &str = r#"
import time
kept = []
for _ in range(200):
    kept.append(b"x" * (10 << 20))
    time.sleep(0.02)
print("allocated everything", flush=True)
"#;

fn hog() -> CommandSpec {
    CommandSpec::new(proctor_testkit::python())
        .args(["-c", HOG])
        .memory_limit(LIMIT)
        .time_limit(PATIENCE)
        .grace(PATIENCE)
}

#[test]
fn a_cgroup_enforces_the_memory_limit() {
    let supervisor = match Supervisor::new(SupervisorConfig {
        memory: MemoryPreference::Cgroup,
        ..SupervisorConfig::default()
    }) {
        Ok(supervisor) => supervisor,
        Err(error) => {
            cannot_run_without(&format!("a writable memory cgroup ({error})"));
            return;
        }
    };
    assert_ne!(supervisor.memory_strategy(), MemoryStrategy::RssWatch);
    let (outcome, stdout) = finish(supervisor.spawn(hog()).unwrap());
    assert_eq!(outcome.limit, Some(Limit::Memory), "{outcome:?}");
    assert_eq!(outcome.exit, Exit::Signal(9));
    assert_eq!(stdout, "");
    let peak = outcome.peak_memory.expect("the cgroup keeps a peak");
    assert!(
        (LIMIT * 9 / 10..=LIMIT + MIB).contains(&peak),
        "peak {peak}"
    );
}

#[test]
fn watching_resident_memory_enforces_the_memory_limit() {
    let supervisor = supervisor_with(MemoryPreference::RssWatch);
    assert_eq!(supervisor.memory_strategy(), MemoryStrategy::RssWatch);
    let (outcome, stdout) = finish(supervisor.spawn(hog()).unwrap());
    assert_eq!(outcome.limit, Some(Limit::Memory), "{outcome:?}");
    assert_eq!(outcome.exit, Exit::Signal(9));
    assert_eq!(stdout, "");
    let peak = outcome.peak_memory.expect("samples were taken");
    assert!(peak > LIMIT, "peak {peak}");
}

#[test]
fn peak_memory_is_reported_without_a_limit() {
    for memory in [MemoryPreference::Auto, MemoryPreference::RssWatch] {
        let spec = CommandSpec::new(proctor_testkit::python())
            .args([
                "-c",
                "import time; data = b'x' * (50 << 20); time.sleep(0.5)",
            ])
            .time_limit(PATIENCE);
        let (outcome, _) = finish(supervisor_with(memory).spawn(spec).unwrap());
        assert!(outcome.exit.success());
        assert_eq!(outcome.limit, None);
        let peak = outcome.peak_memory.expect("a peak");
        assert!(peak >= 50 * MIB, "{memory:?}: peak {peak}");
    }
}
