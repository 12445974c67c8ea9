//! The run's hooks, through the runner's public API on real processes: `applicable` keeps tests off workers,
//! `fitness` orders what a free worker takes, `retry_if` picks which failures run again, and a [`Watch`] reads the
//! progress from another thread while the run goes on.

// A panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proctor_events::{Collect, Sink};
use proctor_runner::{Hook, RunConfig, Runner};
use proctor_subunit::Status;
use proctor_supervisor::{Supervisor, SupervisorConfig};
use tempfile::TempDir;

fn executable(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writes");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Runs the executables in `dir` with `config`; the events.
fn run(dir: &Path, config: RunConfig) -> Vec<proctor_subunit::Event> {
    let project = proctor_sources::discover(dir, Some(Path::new("."))).expect("a project");
    let tests = project.list().expect("lists");
    let supervisor = Supervisor::new(SupervisorConfig::default()).expect("a supervisor");
    let runner = Runner::new(&project, &supervisor, config);
    let mut collect = Collect::default();
    runner
        .run(tests, &HashMap::new(), &mut collect, &mut |_| {})
        .expect("runs");
    collect.flush().expect("flushes");
    collect.events
}

/// (test id, route, status) of each run that ended, in order.
fn ended(events: &[proctor_subunit::Event]) -> Vec<(String, String, Status)> {
    events
        .iter()
        .filter_map(|event| match (&event.test_id, event.status) {
            (Some(id), Some(status)) if status.is_final() && status != Status::Exists => Some((
                id.clone(),
                event.route_code.clone().unwrap_or_default(),
                status,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn applicable_keeps_tests_on_the_workers_it_allows() {
    let dir = TempDir::new().expect("tempdir");
    for name in ["a", "b", "c", "d"] {
        executable(dir.path(), name, "exit 0");
    }
    let config = RunConfig {
        concurrency: 3,
        applicable: Some(Hook(Arc::new(
            |test: &proctor_sources::TestCase, worker: &proctor_runner::WorkerInfo| {
                test.id.as_str() < "c" || worker.route == "2"
            },
        ))),
        ..RunConfig::default()
    };
    let runs = ended(&run(dir.path(), config));
    assert_eq!(runs.len(), 4, "{runs:?}");
    for (id, route, status) in &runs {
        assert_eq!(*status, Status::Success, "{runs:?}");
        if id.as_str() >= "c" {
            assert_eq!(
                route, "2",
                "{id} ran on a worker it does not allow: {runs:?}"
            );
        }
    }
}

#[test]
fn fitness_decides_what_a_free_worker_takes_first() {
    let dir = TempDir::new().expect("tempdir");
    for name in ["a", "b", "c", "z"] {
        executable(dir.path(), name, "exit 0");
    }
    let config = RunConfig {
        concurrency: 1,
        fitness: Some(Hook(Arc::new(
            |test: &proctor_sources::TestCase, _: &proctor_runner::WorkerInfo| {
                i64::from(test.id == "z")
            },
        ))),
        ..RunConfig::default()
    };
    let order: Vec<String> = ended(&run(dir.path(), config))
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(order[0], "z", "{order:?}");
}

#[test]
fn retry_if_picks_the_failures_that_run_again() {
    let dir = TempDir::new().expect("tempdir");
    executable(dir.path(), "network", "echo connection reset; exit 1");
    executable(dir.path(), "assertion", "echo 1 != 2; exit 1");
    let config = RunConfig {
        concurrency: 2,
        retries: 2,
        retry_if: Some(Hook(Arc::new(|run: &proctor_events::TestRecord| {
            run.test_id == "network"
        }))),
        ..RunConfig::default()
    };
    let runs = ended(&run(dir.path(), config));
    let count = |name: &str| runs.iter().filter(|(id, _, _)| id == name).count();
    assert_eq!((count("network"), count("assertion")), (3, 1), "{runs:?}");
}

#[test]
fn a_watch_reads_the_progress_from_another_thread() {
    let dir = TempDir::new().expect("tempdir");
    for name in ["a", "b", "c"] {
        executable(dir.path(), name, "sleep 0.4");
    }
    let project = proctor_sources::discover(dir.path(), Some(Path::new("."))).expect("a project");
    let tests = project.list().expect("lists");
    let supervisor = Supervisor::new(SupervisorConfig::default()).expect("a supervisor");
    let runner = Runner::new(
        &project,
        &supervisor,
        RunConfig {
            concurrency: 1,
            ..RunConfig::default()
        },
    );
    let watch = runner.watch();
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            for _ in 0..40 {
                let progress = watch.progress();
                seen.push((progress.done, progress.running.len(), progress.queued()));
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        let mut collect = Collect::default();
        runner
            .run(tests, &HashMap::new(), &mut collect, &mut |_| {})
            .expect("runs");
        watcher.join().expect("watched")
    });
    assert!(
        seen.contains(&(1, 1, 1)),
        "one done, one running, one queued at some point: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&(3, 0, 0)), "{seen:?}");
}
