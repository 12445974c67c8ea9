//! Helpers shared by the supervisor's integration tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::{Duration, Instant};

use proctor_supervisor::{
    Chunk, CommandSpec, MemoryPreference, Outcome, Running, Stream, Supervisor, SupervisorConfig,
};

/// A correctness timeout: long enough never to fire on a loaded 2-core CI machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn supervisor() -> Supervisor {
    supervisor_with(MemoryPreference::Auto)
}

pub fn supervisor_with(memory: MemoryPreference) -> Supervisor {
    Supervisor::new(SupervisorConfig {
        memory,
        ..SupervisorConfig::default()
    })
    .expect("supervisor set-up")
}

/// A test that cannot run here for want of `missing`: a failure on CI (`CI` set and not `false`), where a skipped
/// test would be counted as passed and prove nothing, and a loud skip on a developer's machine.
pub fn cannot_run_without(missing: &str) {
    let on_ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
    assert!(
        !on_ci,
        "this test needs {missing}, which this CI machine lacks"
    );
    eprintln!("\n*** SKIPPED LOUDLY: this test needs {missing}, which this machine lacks ***\n");
}

/// `sh -c script`.
pub fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("sh").arg("-c").arg(script)
}

/// Waits for the command and returns its outcome and everything it wrote to `stream`.
pub fn finish(running: Running) -> (Outcome, String) {
    let (outcome, chunks) = running.wait_with_output().expect("outcome");
    (outcome, text(&chunks, Stream::Stdout))
}

pub fn text(chunks: &[Chunk], stream: Stream) -> String {
    let bytes: Vec<u8> = chunks
        .iter()
        .filter(|c| c.stream == stream)
        .flat_map(|c| c.data.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Receives chunks until stdout so far contains `needle`; returns that stdout.
pub fn read_until(running: &Running, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = running
            .output()
            .recv_timeout(left)
            .expect("output before the timeout");
        if chunk.stream == Stream::Stdout {
            seen.extend_from_slice(&chunk.data);
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The numbers on lines `<label> <pid>` in `output`.
pub fn pids(output: &str, label: &str) -> Vec<i32> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix(label)?.trim().parse().ok())
        .collect()
}

/// Whether process `pid` is running (not gone, and not a zombie) as the program `comm`.
pub fn running_as(pid: i32, comm: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((name, rest)) = stat.split_once(") ") else {
        return false;
    };
    name.ends_with(&format!("({comm}")) && !rest.starts_with('Z')
}

/// Whether `pid` no longer exists as the program `comm` (gone or reaped; a zombie still
/// exists, so it does not count as gone).
pub fn gone(pid: i32, comm: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    !stat.contains(&format!("({comm})"))
}

pub fn read_pid_file(path: &Path) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} was never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
