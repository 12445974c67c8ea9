//! The repository's operations, on real directories, checked with the
//! reference tools where they can read what we store.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::{encoded, events, project, stream, EPOCH};
use proctor_events::Sink;
use proctor_repository::{RepoError, Repository, RunKind, RunMeta, RunState};
use proctor_subunit::{Event, EventReader, Status, Timestamp};
use proctor_testkit::{run_with_stdin, venv_command};

use Status::{Fail, InProgress, Skip, Success, UxSuccess, XFail};

fn ids(records: &[proctor_events::TestRecord]) -> Vec<&str> {
    records.iter().map(|r| r.test_id.as_str()).collect()
}

#[test]
fn open_needs_a_repository_and_init_makes_one() {
    let dir = project();
    let error = Repository::open(dir.path()).expect_err("nothing there");
    assert!(matches!(error, RepoError::NotFound { .. }));
    assert!(error.to_string().contains(".proctor"), "{error}");

    let repository = Repository::init(dir.path()).expect("creates");
    assert_eq!(repository.path(), dir.path().join(".proctor"));
    assert_eq!(
        fs::read_to_string(dir.path().join(".proctor/format"))
            .ok()
            .as_deref(),
        Some("1\n")
    );
    assert!(matches!(
        Repository::init(dir.path()),
        Err(RepoError::AlreadyExists { .. })
    ));
    Repository::open(dir.path()).expect("opens");
    Repository::open_or_init(dir.path()).expect("opens again");
    assert!(repository.runs().expect("lists").is_empty());
    assert_eq!(repository.latest().expect("reads"), None);
    assert!(repository.failing().expect("reads").is_empty());
    assert!(repository.history().expect("reads").is_empty());
}

#[test]
fn open_refuses_another_format() {
    let dir = project();
    Repository::init(dir.path()).expect("creates");
    fs::write(dir.path().join(".proctor/format"), "2\n").expect("writes");
    let error = Repository::open(dir.path()).expect_err("format 2");
    assert!(matches!(&error, RepoError::UnsupportedFormat { found, .. } if found == "2"));
    assert!(error.to_string().contains("format"), "{error}");
}

#[test]
fn a_run_is_stored_as_a_stream_the_reference_tools_read() {
    let dir = project();
    let repository = Repository::open_or_init(dir.path()).expect("creates");
    let meta = RunMeta::partial()
        .with_command(["proctor", "run", "-k", "unit"])
        .with_filters(["unit"]);
    let mut writer = repository.begin_run(meta.clone()).expect("begins");
    assert_eq!(writer.id(), 0);
    let run_events = events(&[
        ("a", Success, 300),
        ("b", Fail, 100),
        ("c", Skip, 5),
        ("d", XFail, 1),
    ]);
    for event in &run_events {
        writer.event(event).expect("takes the event");
    }
    let live = repository.run(0).expect("listed while running");
    assert_eq!((live.state, live.counts), (RunState::Running, None));
    let info = writer.complete().expect("completes");
    assert_eq!(info.state, RunState::Complete);
    assert_eq!(info.kind(), RunKind::Partial);
    assert_eq!(info.meta, meta);
    let counts = info.counts.expect("counted");
    assert_eq!(
        (counts.total, counts.passed, counts.failed, counts.skipped),
        (4, 2, 1, 1)
    );
    assert!(info.duration.is_some());
    assert_eq!(repository.run(0).expect("reads"), info);
    assert_eq!(repository.runs().expect("lists"), vec![info.clone()]);
    assert_eq!(repository.latest().expect("reads"), Some(info));

    let path = repository.stream_path(0).expect("stored");
    assert_eq!(path, dir.path().join(".proctor/runs/0.subunit"));
    let stored = fs::read(&path).expect("reads");
    assert_eq!(stored, encoded(&run_events));
    let stats = run_with_stdin(venv_command("subunit-stats"), &stored);
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert!(stats.contains("Total tests:       4"), "{stats}");
    assert!(stats.contains("Failed tests:      1"), "{stats}");

    let records = repository.records(0).expect("reads");
    assert_eq!(ids(&records), ["a", "b", "c", "d"]);
    assert_eq!(records[0].duration(), Some(Duration::from_millis(300)));
    let from_file: Vec<Event> = EventReader::new(repository.open_stream(0).expect("opens"))
        .collect::<Result<_, _>>()
        .expect("decodes");
    assert_eq!(from_file, run_events);
}

#[test]
fn missing_runs_are_named() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    for error in [
        repository.run(7).expect_err("no run 7"),
        repository.records(7).expect_err("no run 7"),
        repository.remove(7).expect_err("no run 7"),
        repository.open_stream(7).map(|_| ()).expect_err("no run 7"),
    ] {
        assert!(
            matches!(error, RepoError::NoSuchRun { id: 7, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("no run 7"), "{error}");
    }
}

#[test]
fn ids_count_up_and_are_not_reused_after_removal() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let load = |tests| {
        repository
            .load(&stream(tests)[..], RunMeta::full())
            .expect("loads")
            .id
    };
    assert_eq!(
        [
            load(&[("a", Success, 1)]),
            load(&[("a", Success, 1)]),
            load(&[("a", Success, 1)])
        ],
        [0, 1, 2]
    );
    repository.remove(2).expect("removes");
    assert!(matches!(
        repository.run(2),
        Err(RepoError::NoSuchRun { id: 2, .. })
    ));
    assert_eq!(load(&[("a", Success, 1)]), 3);
    assert_eq!(repository.prune(2).expect("prunes"), vec![0]);
    let left: Vec<u64> = repository
        .runs()
        .expect("lists")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [1, 3]);
    assert!(repository.prune(5).expect("prunes").is_empty());
    assert_eq!(repository.prune(0).expect("prunes"), vec![1, 3]);
    assert!(repository.runs().expect("lists").is_empty());
    assert_eq!(load(&[("a", Success, 1)]), 4);
}

#[test]
fn a_run_being_written_is_neither_removed_nor_pruned() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let writer = repository.begin_run(RunMeta::full()).expect("begins");
    assert!(matches!(
        repository.remove(0),
        Err(RepoError::RunInProgress { id: 0, .. })
    ));
    assert!(repository.prune(0).expect("prunes").is_empty());
    writer.complete().expect("completes");
    assert_eq!(repository.prune(0).expect("prunes"), vec![0]);
}

#[test]
fn loaded_runs_take_their_time_from_the_stream() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let meta = RunMeta::full().with_command(["proctor", "load", "ci.subunit"]);
    let info = repository
        .load(
            &stream(&[("a", Success, 1500), ("b", Success, 500)])[..],
            meta,
        )
        .expect("loads");
    assert_eq!(
        info.started,
        jiff::Timestamp::from_second(i64::from(EPOCH)).expect("valid")
    );
    assert_eq!(info.duration, Some(Duration::from_secs(2)));
    assert_eq!(info.meta.command, ["proctor", "load", "ci.subunit"]);
}

#[test]
fn a_failing_reader_leaves_an_interrupted_run() {
    struct Broken(Vec<u8>);
    impl std::io::Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the pipe broke"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let error = repository
        .load(
            Broken(stream(&[("a", Fail, 1), ("b", InProgress, 1)])),
            RunMeta::full(),
        )
        .expect_err("the reader fails");
    assert!(
        matches!(error, RepoError::LoadRead { id: 0, .. }),
        "{error}"
    );
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        cause.is_some_and(|cause| cause.contains("the pipe broke")),
        "{error:?}"
    );
    let info = repository.run(0).expect("kept");
    assert!(info.is_interrupted());
    assert_eq!(repository.failing().expect("reads"), ["a", "b"]);
}

#[test]
fn the_failing_stream_holds_the_failures_with_their_details() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(
            &stream(&[
                ("a", Fail, 10),
                ("b", Success, 10),
                ("c", UxSuccess, 1),
                ("d", InProgress, 1),
            ])[..],
            RunMeta::full(),
        )
        .expect("loads");
    assert_eq!(repository.failing().expect("reads"), ["a", "d"]);
    let failures = repository.failing_records().expect("reads");
    let traceback = failures[0].attachment("traceback").expect("kept");
    assert_eq!(&traceback.content[..], b"a broke");
    assert_eq!(failures[0].duration(), Some(Duration::from_millis(10)));

    let mut out = Vec::new();
    repository.write_failing_stream(&mut out).expect("writes");
    // subunit-ls exits 1 when the stream has failures: these are all failures.
    let listed = run_with_stdin(venv_command("subunit-ls"), &out);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "a\nd\n");
    let stats = run_with_stdin(venv_command("subunit-stats"), &out);
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert!(stats.contains("Failed tests:      2"), "{stats}");
}

#[test]
fn history_gives_durations_slowest_and_flaky() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let runs: [&[common::Ran]; 3] = [
        &[
            ("quick", Success, 10),
            ("slow", Success, 900),
            ("wobbly", Fail, 50),
        ],
        &[
            ("quick", Success, 30),
            ("slow", Success, 1100),
            ("wobbly", Success, 60),
        ],
        &[
            ("quick", Success, 20),
            ("slow", Fail, 5),
            ("wobbly", Fail, 70),
            ("wobbly", Success, 80),
        ],
    ];
    for (i, run) in runs.into_iter().enumerate() {
        let mut events = common::events(run);
        if i == 2 {
            // The last run's second `wobbly` is the runner's retry of it, tagged so.
            let len = events.len();
            for event in &mut events[len - 2..] {
                event
                    .tags
                    .insert(format!("{}1", proctor_events::RETRY_TAG_PREFIX));
            }
        }
        repository
            .load(&common::encoded(&events)[..], RunMeta::full())
            .expect("loads");
    }
    let expected = repository.expected_durations().expect("reads");
    assert_eq!(expected["quick"], Duration::from_millis(20));
    assert_eq!(expected["slow"], Duration::from_millis(1000));
    assert_eq!(expected["wobbly"], Duration::from_millis(70));

    let history = repository.history().expect("reads");
    let slow = history.test("slow").expect("recorded");
    assert_eq!((slow.runs, slow.passed, slow.failed), (3, 2, 1));
    assert_eq!(
        history.slowest(2)[0],
        ("slow".to_owned(), Duration::from_millis(1000))
    );

    assert_eq!(
        repository.slowest(2).expect("reads"),
        [
            ("wobbly".to_owned(), Duration::from_millis(80)),
            ("quick".to_owned(), Duration::from_millis(20))
        ]
    );

    let flaky = repository.flaky().expect("reads");
    assert_eq!(flaky.len(), 1, "{flaky:?}");
    assert_eq!(
        (flaky[0].test_id.as_str(), flaky[0].retried, flaky[0].flips),
        ("wobbly", 1, 1)
    );
}

#[test]
fn a_dropped_writer_leaves_an_unfinished_run() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(&stream(&[("old", Fail, 1)])[..], RunMeta::full())
        .expect("loads");
    let mut writer = repository.begin_run(RunMeta::full()).expect("begins");
    for event in events(&[
        ("a", Success, 100),
        ("old", Success, 1),
        ("b", InProgress, 1),
    ]) {
        writer.event(&event).expect("takes the event");
    }
    drop(writer);
    let info = repository.run(1).expect("readable");
    assert_eq!(info.state, RunState::Unfinished);
    let counts = info.counts.expect("counted from the stream");
    assert_eq!((counts.total, counts.passed, counts.failed), (3, 2, 1));
    assert_eq!(info.duration, Some(Duration::from_millis(101)));
    assert_eq!(
        ids(&repository.records(1).expect("reads")),
        ["a", "old", "b"]
    );
    // It did not count: the failing set and the history are as run 0 left them.
    assert_eq!(repository.failing().expect("reads"), ["old"]);
    assert!(repository.history().expect("reads").test("a").is_none());
    assert_eq!(
        repository.begin_run(RunMeta::full()).expect("begins").id(),
        2
    );
}

#[test]
fn an_interrupted_full_run_only_merges_into_the_failing_set() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(
            &stream(&[("a", Fail, 1), ("b", Fail, 1)])[..],
            RunMeta::full(),
        )
        .expect("loads");
    let mut writer = repository.begin_run(RunMeta::full()).expect("begins");
    for event in events(&[("a", Success, 1), ("c", InProgress, 1)]) {
        writer.event(&event).expect("takes the event");
    }
    let info = writer.interrupt().expect("ends");
    assert!(info.is_interrupted());
    assert_eq!(info.kind(), RunKind::Full);
    assert_eq!(repository.failing().expect("reads"), ["b", "c"]);
}

#[test]
fn a_corrupt_stream_still_reads() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(
            &stream(&[("a", Success, 1), ("b", Success, 1)])[..],
            RunMeta::full(),
        )
        .expect("loads");
    let path = repository.stream_path(0).expect("stored");
    let mut bytes = fs::read(&path).expect("reads");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes.truncate(bytes.len() - 2);
    fs::write(&path, bytes).expect("writes");
    let records = repository.records(0).expect("still reads");
    assert!(
        ids(&records).contains(&proctor_subunit::PARSER_TEST_ID),
        "{:?}",
        ids(&records)
    );
    assert_eq!(repository.run(0).expect("reads").state, RunState::Complete);
}

#[test]
fn a_corrupt_index_is_named_and_rebuilt_from_the_streams() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(
            &stream(&[("a", Success, 40), ("b", Fail, 1)])[..],
            RunMeta::full(),
        )
        .expect("loads");
    let index = dir.path().join(".proctor/index.json");
    fs::write(&index, "{\"tests\": [garbage").expect("writes");
    let error = repository.history().expect_err("corrupt");
    assert!(
        matches!(&error, RepoError::Corrupt { path, .. } if *path == index),
        "{error}"
    );
    assert!(error.to_string().contains("index.json"), "{error}");

    // Recording the next run rebuilds it.
    repository
        .load(&stream(&[("a", Success, 60)])[..], RunMeta::partial())
        .expect("loads");
    let history = repository.history().expect("rebuilt");
    assert_eq!(history.test("a").map(|t| t.runs), Some(2));
    assert_eq!(
        history.test("a").and_then(|t| t.expected_duration()),
        Some(Duration::from_millis(50))
    );
    assert_eq!(repository.failing().expect("reads"), ["b"]);

    // And so does rebuild_index, which forgets removed runs.
    fs::remove_file(&index).expect("removes");
    repository.remove(0).expect("removes");
    repository.rebuild_index().expect("rebuilds");
    let history = repository.history().expect("rebuilt");
    assert_eq!(history.test("a").map(|t| t.runs), Some(1));
    assert!(history.test("b").is_none());
    assert!(repository.failing().expect("reads").is_empty());
}

#[test]
fn corrupt_metadata_and_counter_are_named() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    repository
        .load(&stream(&[("a", Success, 1)])[..], RunMeta::full())
        .expect("loads");
    let meta = dir.path().join(".proctor/runs/0.json");
    fs::write(&meta, "not json").expect("writes");
    let error = repository.run(0).expect_err("corrupt");
    assert!(
        matches!(&error, RepoError::Corrupt { path, .. } if *path == meta),
        "{error}"
    );

    let counter = dir.path().join(".proctor/next-run");
    fs::write(&counter, "seven").expect("writes");
    let error = repository.begin_run(RunMeta::full()).expect_err("corrupt");
    assert!(
        matches!(&error, RepoError::CorruptCounter { content, .. } if content == "seven"),
        "{error}"
    );

    // Without a counter, ids go on after the newest stored run.
    fs::remove_file(&counter).expect("removes");
    assert_eq!(
        repository.begin_run(RunMeta::full()).expect("begins").id(),
        1
    );
}

#[test]
fn a_stream_without_metadata_is_an_unfinished_run() {
    let dir = project();
    let repository = Repository::init(dir.path()).expect("creates");
    let bytes = encoded(&[Event::test("a", Success).at(Timestamp::new(EPOCH, 0))]);
    fs::write(dir.path().join(".proctor/runs/5.subunit"), bytes).expect("writes");
    let info = repository.run(5).expect("reads");
    assert_eq!(info.state, RunState::Unfinished);
    assert_eq!(info.counts.map(|c| c.passed), Some(1));
    assert_eq!(
        repository.begin_run(RunMeta::full()).expect("begins").id(),
        6
    );
}
