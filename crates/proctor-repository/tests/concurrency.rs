//! Several writers at once, in threads and in processes, and writers that
//! die mid-run: every run is stored under its own id and the index and the
//! failing set take every run in.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use common::{events, project, stream};
use proctor_events::Sink;
use proctor_repository::{Repository, RunMeta, RunState};
use proctor_subunit::Status::{Fail, InProgress, Success};

/// Set in a child process started by these tests: the project to write to.
const CHILD_PROJECT: &str = "PROCTOR_REPOSITORY_TEST_PROJECT";
/// Set in a child process: a name for what it writes.
const CHILD_NAME: &str = "PROCTOR_REPOSITORY_TEST_NAME";
const RUNS_PER_WRITER: usize = 3;

/// One writer's runs: each has a test every writer runs, and a failure of
/// its own, so that a lost update of the index or the failing set shows.
/// They are all open at once and end newest first, so that runs overlap
/// even within one writer.
fn write_runs(repository: &Repository, name: &str) {
    let mut writers: Vec<_> = (0..RUNS_PER_WRITER)
        .map(|_| {
            repository
                .begin_run(RunMeta::partial().with_command([name]))
                .expect("begins")
        })
        .collect();
    for (run, writer) in writers.iter_mut().enumerate() {
        let own = format!("{name}.{run}");
        for event in events(&[("shared", Success, 10), (&own, Fail, 5)]) {
            writer.event(&event).expect("takes the event");
        }
    }
    for writer in writers.into_iter().rev() {
        writer.complete().expect("completes");
    }
}

/// Checks that `writers` writers' runs are all there, each whole.
fn assert_all_stored(repository: &Repository, writers: &[String]) {
    let runs = repository.runs().expect("lists");
    let expected = writers.len() * RUNS_PER_WRITER;
    let ids: Vec<u64> = runs.iter().map(|run| run.id).collect();
    assert_eq!(ids, (0..expected as u64).collect::<Vec<_>>());
    for run in &runs {
        assert_eq!(run.state, RunState::Complete, "run {}", run.id);
        let records = repository.records(run.id).expect("reads");
        let tests: Vec<&str> = records.iter().map(|r| r.test_id.as_str()).collect();
        assert_eq!(tests.len(), 2, "run {}: {tests:?}", run.id);
        assert_eq!(tests[0], "shared");
        assert!(
            tests[1].starts_with(&run.meta.command[0]),
            "run {}: {tests:?}",
            run.id
        );
    }
    let history = repository.history().expect("reads");
    assert_eq!(
        history.test("shared").map(|t| t.runs),
        Some(expected as u64)
    );
    let mut failing = repository.failing().expect("reads");
    failing.sort();
    let mut own: Vec<String> = writers
        .iter()
        .flat_map(|name| (0..RUNS_PER_WRITER).map(move |run| format!("{name}.{run}")))
        .collect();
    own.sort();
    assert_eq!(failing, own);
}

#[test]
fn threads_writing_at_once_each_get_their_runs() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let writers: Vec<String> = (0..4).map(|n| format!("thread{n}")).collect();
    thread::scope(|scope| {
        for name in &writers {
            let repository = repository.clone();
            scope.spawn(move || write_runs(&repository, name));
        }
    });
    assert_all_stored(&repository, &writers);
}

#[test]
fn processes_writing_at_once_each_get_their_runs() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let writers: Vec<String> = (0..3).map(|n| format!("process{n}")).collect();
    let children: Vec<_> = writers
        .iter()
        .map(|name| {
            child("child_writes_runs", dir.path(), name)
                .spawn()
                .expect("starts a writer process")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("waits");
        assert!(
            output.status.success(),
            "writer: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_all_stored(&repository, &writers);
}

#[test]
fn a_process_that_dies_mid_run_leaves_it_unfinished() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(&stream(&[("before", Fail, 1)])[..], RunMeta::full())
        .expect("loads");
    let output = child("child_crashes_mid_run", dir.path(), "crasher")
        .output()
        .expect("runs the crashing process");
    assert!(!output.status.success(), "the child was meant to abort");

    let info = repository.run(1).expect("readable");
    assert_eq!(info.state, RunState::Unfinished);
    let tests: Vec<_> = repository
        .records(1)
        .expect("reads")
        .into_iter()
        .map(|r| (r.test_id, r.status))
        .collect();
    assert_eq!(
        tests,
        [
            ("done".to_owned(), Some(Success)),
            ("cut_off".to_owned(), Some(InProgress))
        ]
    );
    assert_eq!(repository.failing().expect("reads"), ["before"]);
    // The repository goes on: the lock died with the process.
    let next = repository
        .load(&stream(&[("before", Success, 1)])[..], RunMeta::full())
        .expect("loads");
    assert_eq!(next.id, 2);
    assert!(repository.failing().expect("reads").is_empty());
}

/// This test binary, running only the test `name`, as a child writer.
fn child(name: &str, project: &Path, writer: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("knows its own path"));
    command
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PROJECT, project)
        .env(CHILD_NAME, writer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The child's side of `processes_writing_at_once_each_get_their_runs`,
/// run only by that test (ignored otherwise).
#[test]
#[ignore = "a child process of processes_writing_at_once_each_get_their_runs"]
fn child_writes_runs() {
    let (Some(project), Some(name)) = (
        std::env::var_os(CHILD_PROJECT),
        std::env::var(CHILD_NAME).ok(),
    ) else {
        return;
    };
    let repository = Repository::open(Path::new(&project)).expect("opens");
    write_runs(&repository, &name);
}

/// The child's side of `a_process_that_dies_mid_run_leaves_it_unfinished`:
/// one test done, one running, then the process aborts, running no
/// destructors. Run only by that test (ignored otherwise).
#[test]
#[ignore = "a child process of a_process_that_dies_mid_run_leaves_it_unfinished"]
fn child_crashes_mid_run() {
    let Some(project) = std::env::var_os(CHILD_PROJECT) else {
        return;
    };
    let repository = Repository::open(Path::new(&project)).expect("opens");
    let mut writer = repository.begin_run(RunMeta::full()).expect("begins");
    for event in events(&[("done", Success, 1), ("cut_off", InProgress, 1)]) {
        writer.event(&event).expect("takes the event");
    }
    writer.flush().expect("flushes");
    std::process::abort();
}
