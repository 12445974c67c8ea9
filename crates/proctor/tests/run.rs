//! The library's `Run` on real projects: FMF trees of shell tests, run on this machine's slots.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use proctor::{Run, Selection, TestVerdict};
use tempfile::TempDir;

/// An FMF tree in `root` whose tests are `(name, shell)`.
fn fmf_tree(root: &Path, tests: &[(&str, &str)]) {
    fs::create_dir_all(root.join(".fmf")).expect("mkdir");
    fs::write(root.join(".fmf/version"), "1\n").expect("version");
    let mut main = String::new();
    for (name, shell) in tests {
        main.push_str(&format!("/{name}:\n    test: {shell}\n"));
    }
    fs::write(root.join("main.fmf"), main).expect("main.fmf");
}

fn slots(run: &mut Run, count: usize) {
    run.settings_mut()
        .concurrency
        .set(NonZeroUsize::new(count).unwrap());
}

#[test]
fn a_run_is_watched_and_stopped_from_another_thread() {
    let dir = TempDir::new().expect("tempdir");
    fmf_tree(
        dir.path(),
        &[("a", "sleep 30"), ("b", "sleep 30"), ("c", "sleep 30")],
    );
    let mut run = Run::open(dir.path()).expect("a project");
    slots(&mut run, 1);
    let tests = run.select(&Selection::default()).expect("tests");
    let (watch, stopper) = (run.watch(), run.stopper());
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let progress = watch.progress();
            if progress.running.len() == 1 {
                stopper.stop();
                return progress;
            }
            assert!(Instant::now() < deadline, "no test started: {progress:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let started = Instant::now();
    let outcome = run.run(&tests).expect("a run");
    let seen = watcher.join().expect("the watcher");
    assert_eq!(
        (seen.total, seen.done, seen.queued()),
        (3, 0, 2),
        "{seen:?}"
    );
    assert!(outcome.report.interrupted, "{outcome:?}");
    assert!(!outcome.succeeded());
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the stop did not stop the test"
    );
    assert!(
        outcome.stored.is_some(),
        "an interrupted run is still stored"
    );
}

#[test]
fn one_test_runs_on_the_chosen_worker_or_fails_saying_no_worker_may_run_it() {
    let dir = TempDir::new().expect("tempdir");
    fmf_tree(dir.path(), &[("one", "echo hello"), ("two", "exit 1")]);
    let mut run = Run::open(dir.path()).expect("a project");
    slots(&mut run, 2);
    let result = run
        .run_test_on("/one", |worker| worker.route == "1")
        .expect("a result");
    assert_eq!(result.verdict, TestVerdict::Passed);
    assert_eq!(result.worker(), Some("1"));
    assert_eq!(result.attachment("stdout").as_deref(), Some("hello\n"));

    let nowhere = run
        .run_test_on("/one", |worker| worker.route == "7")
        .expect("a result");
    assert_eq!(nowhere.verdict, TestVerdict::Failed);
    let reason = nowhere.attachment("proctor-reason").unwrap_or_default();
    assert!(reason.contains("no worker is applicable"), "{reason}");

    let failed = run.run_test("/two").expect("a result");
    assert_eq!(failed.verdict, TestVerdict::Failed);
    assert!(matches!(
        run.run_test("/three"),
        Err(proctor::Error::NoSuchTest(id)) if id == "/three"
    ));
}

#[test]
fn the_outputs_the_settings_ask_for_are_written_as_the_cli_writes_them() {
    let dir = TempDir::new().expect("tempdir");
    fmf_tree(
        dir.path(),
        &[
            ("ok", "exit 0"),
            (
                "flaky",
                "f=\"$TMT_TREE/.once\"; [ -e \"$f\" ] || { touch \"$f\"; exit 1; }",
            ),
        ],
    );
    let junit = dir.path().join("report.xml");
    let mut run = Run::open(dir.path())
        .expect("a project")
        .retry_if(|failed| failed.test_id == "/flaky");
    run.settings_mut().retries.set(1);
    run.settings_mut().junit.set(Some(junit.clone()));
    let tests = run
        .select(&Selection::matching(["flaky", "ok"]))
        .expect("tests");
    let outcome = run.run(&tests).expect("a run");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.report.flaky, ["/flaky"]);
    let report = fs::read_to_string(&junit).expect("the JUnit report");
    assert!(
        report.contains("name=\"/ok\"") && report.contains("name=\"/flaky\""),
        "{report}"
    );
    let stored = outcome.stored.expect("a stored run");
    let repository = proctor_repository::Repository::open(dir.path()).expect("the repository");
    let latest = repository
        .latest()
        .expect("the latest run")
        .map(|info| info.id);
    assert_eq!(latest, Some(stored));
}
