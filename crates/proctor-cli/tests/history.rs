//! The run-repository commands (`load`, `last`, `failing`, `slowest`,
//! `history`) run as the real `proctor` binary in temporary projects, checked
//! against real stestr loading the same streams.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use proctor_subunit::{encode, Event, Status, Timestamp};
use proctor_testkit::{run_with_stdin, stestr, venv_command};
use tempfile::TempDir;

use Status::{Fail, InProgress, Skip, Success, UxSuccess, XFail};

/// When the made-up streams start (2023-11-14 22:13:20 UTC).
const EPOCH: u32 = 1_700_000_000;

/// One test's result in a made-up run: its id, how it ends (`InProgress`:
/// the stream never ends it) and how many milliseconds it takes.
type Ran<'a> = (&'a str, Status, u64);

/// A run in which the tests run one after the other, each failure with a
/// traceback naming its test.
fn stream(results: &[Ran]) -> Vec<u8> {
    let mut clock = Timestamp::new(EPOCH, 0);
    let mut events = Vec::new();
    for &(id, status, millis) in results {
        events.push(Event::test(id, InProgress).at(clock));
        if status == Fail {
            let traceback = format!("Traceback (most recent call last):\n  {id} broke");
            events.push(Event::text(Some(id.into()), "traceback", &traceback));
        }
        clock = clock.saturating_add(Duration::from_millis(millis));
        if status != InProgress {
            events.push(Event::test(id, status).at(clock));
        }
    }
    let mut bytes = Vec::new();
    for event in &events {
        encode(event, &mut bytes).expect("test events encode");
    }
    bytes
}

fn project() -> TempDir {
    TempDir::new().expect("a temporary directory")
}

/// Runs `proctor ARGS` in `project` with `stdin`.
fn proctor(project: &Path, args: &[&str], stdin: &[u8]) -> Output {
    Command::cargo_bin("proctor")
        .expect("the proctor binary is built")
        .current_dir(project)
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .expect("proctor runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(bytes: &[u8]) -> Vec<String> {
    text(bytes).lines().map(str::to_owned).collect()
}

/// The ids of the tests in a subunit v2 stream, as subunit-ls lists them.
fn listed(stream: &[u8]) -> Vec<String> {
    let mut command = venv_command("subunit-ls");
    command.arg("--no-passthrough");
    let output = run_with_stdin(command, stream);
    assert!(output.status.code().is_some_and(|code| code <= 1));
    lines(&output.stdout)
}

/// The rows of a slowest table, without its header and rule.
fn slowest_rows(table: &[u8]) -> Vec<(String, String)> {
    lines(table)
        .iter()
        .skip(2)
        .filter_map(|row| {
            let mut cells = row.split_whitespace();
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .collect()
}

/// Runs proctor and checks its exit status, returning its standard output.
fn expect(code: i32, project: &Path, args: &[&str], stdin: &[u8]) -> String {
    let output = proctor(project, args, stdin);
    assert_eq!(
        output.status.code(),
        Some(code),
        "proctor {args:?}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs proctor expecting it to fail with status 2, returning its message.
fn expect_error(project: &Path, args: &[&str], stdin: &[u8]) -> String {
    let output = proctor(project, args, stdin);
    assert_eq!(output.status.code(), Some(2), "proctor {args:?}");
    // miette wraps long messages: compare words, not lines.
    text(&output.stderr)
        .split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Three full runs: failures of every kind, then some fixed and one new,
/// then everything passing.
const RUNS: [&[Ran]; 3] = [
    &[
        ("pkg.a", Fail, 100),
        ("pkg.b", Fail, 2500),
        ("pkg.c", Success, 300),
        ("pkg.d", Skip, 3),
        ("pkg.e", XFail, 20),
        ("pkg.f", UxSuccess, 30),
        ("pkg.h", Success, 40),
        ("pkg.g", InProgress, 5),
    ],
    &[
        ("pkg.a", Success, 110),
        ("pkg.b", Fail, 2400),
        ("pkg.i", Fail, 70),
        ("pkg.c", Success, 320),
    ],
    &[("pkg.a", Success, 90), ("pkg.b", Success, 1200)],
];

#[test]
fn load_last_failing_and_slowest_agree_with_stestr() {
    let dir = project();
    let project = dir.path();
    stestr(project, &["init"], b"");
    for (number, run) in RUNS.iter().enumerate() {
        let bytes = stream(run);
        stestr(project, &["load"], &bytes);
        let theirs_failed = stestr(project, &["last"], b"").status.code();
        let loaded = proctor(project, &["load"], &bytes);
        assert_eq!(loaded.status.code(), theirs_failed, "load of run {number}");
        assert!(text(&loaded.stdout).contains(&format!("Run {number}: complete (full run)")));

        let theirs = stestr(project, &["failing", "--list"], b"");
        let ours = proctor(project, &["failing", "--list"], b"");
        assert_eq!(
            lines(&ours.stdout),
            lines(&theirs.stdout),
            "failing after run {number}"
        );
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "failing's status, run {number}"
        );
        let last = proctor(project, &["last"], b"");
        assert_eq!(
            last.status.code(),
            theirs_failed,
            "last's status, run {number}"
        );
    }

    let theirs = slowest_rows(&stestr(project, &["slowest", "--all"], b"").stdout);
    let ours = expect(0, project, &["slowest", "-n", "100"], b"");
    assert_eq!(slowest_rows(ours.as_bytes()), theirs, "slowest");
    let top = expect(0, project, &["slowest", "-n", "1"], b"");
    assert_eq!(
        top,
        "Test id  Runtime (s)\n-------  -----------\npkg.b    1.200\n"
    );

    let ours = proctor(project, &["last", "--subunit"], b"");
    assert_eq!(ours.status.code(), Some(0));
    assert_eq!(
        ours.stdout,
        stream(RUNS[2]),
        "last --subunit is the stored stream"
    );
    let theirs = stestr(project, &["last", "--subunit"], b"").stdout;
    assert_eq!(listed(&ours.stdout), listed(&theirs));
}

#[test]
fn failing_shows_the_set_with_details_and_as_subunit() {
    let dir = project();
    let project = dir.path();
    stestr(project, &["init"], b"");
    let bytes = stream(RUNS[0]);
    stestr(project, &["load"], &bytes);
    expect(1, project, &["load"], &bytes);

    let details = expect(1, project, &["failing"], b"");
    for id in ["pkg.a", "pkg.b", "pkg.g"] {
        assert!(details.contains(id), "{id} in\n{details}");
    }
    assert!(
        details.contains("pkg.a broke"),
        "tracebacks shown:\n{details}"
    );
    assert!(
        !details.contains("pkg.c"),
        "passing tests left out:\n{details}"
    );
    assert!(details.ends_with("3 failing tests.\n"), "{details}");

    let ours = proctor(project, &["failing", "--subunit"], b"");
    // stestr exits 0 once the stream is written, whatever it holds.
    assert_eq!(ours.status.code(), Some(0));
    let theirs = stestr(project, &["failing", "--subunit"], b"");
    assert_eq!(listed(&ours.stdout), listed(&theirs.stdout));
    assert_eq!(listed(&ours.stdout), ["pkg.a", "pkg.b", "pkg.g"]);
}

#[test]
fn last_shows_failures_totals_and_the_run() {
    let dir = project();
    let project = dir.path();
    expect(1, project, &["load"], &stream(RUNS[0]));
    let last = expect(1, project, &["last"], b"");
    assert!(last.contains("FAIL [  2.500s] pkg.b"), "{last}");
    assert!(last.contains("pkg.b broke"), "{last}");
    assert!(
        last.contains("UXPASS"),
        "unexpected successes are failures:\n{last}"
    );
    assert!(
        last.contains("INCOMPLETE"),
        "cut-off tests are failures:\n{last}"
    );
    assert!(!last.contains("pkg.c"), "passing tests left out:\n{last}");
    assert!(
        last.ends_with(
            "\n8 tests in 2.993s: 3 passed, 4 failed, 1 skipped\n\
             Run 0: complete (full run), started 2023-11-14 22:13:20Z\n"
        ),
        "{last}"
    );

    let passing = dir.path().join("passing.subunit");
    std::fs::write(&passing, stream(RUNS[2])).expect("writes the stream");
    let loaded = expect(0, project, &["load", "--partial", "passing.subunit"], b"");
    assert!(loaded.contains("Run 1: complete (partial run)"), "{loaded}");
    let last = expect(0, project, &["last"], b"");
    assert_eq!(
        last,
        "\n2 tests in 1.290s: 2 passed, 0 failed, 0 skipped\n\
         Run 1: complete (partial run), started 2023-11-14 22:13:20Z\n"
    );
    // A partial run only takes out what it ran.
    let failing = expect(1, project, &["failing", "--list"], b"");
    assert_eq!(failing, "pkg.g\n");
}

#[test]
fn load_takes_several_files_and_stdin() {
    let dir = project();
    let project = dir.path();
    for (name, run) in [("one.subunit", RUNS[1]), ("two.subunit", RUNS[2])] {
        std::fs::write(project.join(name), stream(run)).expect("writes the stream");
    }
    let loaded = expect(1, project, &["load", "one.subunit", "two.subunit"], b"");
    assert!(loaded.contains("Run 0: complete"), "{loaded}");
    assert!(loaded.contains("Run 1: complete"), "{loaded}");
    assert!(loaded.contains("pkg.i broke"), "failures shown:\n{loaded}");
    let loaded = expect(0, project, &["load"], &stream(RUNS[2]));
    assert!(loaded.contains("Run 2: complete"), "{loaded}");
    // The last full run passed everything.
    assert_eq!(expect(0, project, &["failing"], b""), "No failing tests.\n");
}

#[test]
fn history_lists_shows_removes_and_prunes_runs() {
    let dir = project();
    let project = dir.path();
    // An empty stream is a run of no tests, started when it was loaded.
    let empty = expect(0, project, &["load"], b"");
    assert!(
        empty.starts_with("\n0 tests: 0 passed, 0 failed, 0 skipped\nRun 0: complete (full run)"),
        "{empty}"
    );
    assert_eq!(
        expect(0, project, &["slowest"], b""),
        "Run 0 has no timed tests.\n"
    );
    expect(1, project, &["load", "--partial"], &stream(RUNS[1]));
    expect(0, project, &["load"], &stream(RUNS[2]));

    let listing = expect(0, project, &["history"], b"");
    let rows = lines(listing.as_bytes());
    assert_eq!(rows.len(), 5, "{listing}");
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "Run", "Started", "Duration", "Tests", "Passed", "Failed", "Skipped", "State", "Kind",
            "Command"
        ]
    );
    let cells: Vec<&str> = rows[3].split_whitespace().collect();
    assert_eq!(
        cells[..10],
        [
            "1",
            "2023-11-14",
            "22:13:20Z",
            "2.900s",
            "4",
            "2",
            "2",
            "0",
            "complete",
            "partial",
        ]
    );
    // The command line that loaded it.
    assert!(rows[3].ends_with("proctor load --partial"), "{listing}");
    assert_eq!(expect(0, project, &["history", "list"], b""), listing);

    let shown = expect(1, project, &["history", "show", "1"], b"");
    for line in [
        "  PASS [  0.110s] pkg.a",
        "  FAIL [  2.400s] pkg.b",
        "  FAIL [  0.070s] pkg.i",
        "  PASS [  0.320s] pkg.c",
        "Run 1: complete (partial run), started 2023-11-14 22:13:20Z",
    ] {
        assert!(shown.contains(line), "{line:?} in\n{shown}");
    }
    assert!(shown.contains("pkg.i broke"), "{shown}");
    expect(0, project, &["history", "show", "2"], b"");

    assert_eq!(
        expect(0, project, &["history", "remove", "1"], b""),
        "Removed run 1.\n"
    );
    assert_eq!(
        expect(0, project, &["history", "prune", "--keep", "1"], b""),
        "Removed run 0.\n"
    );
    assert_eq!(
        expect(0, project, &["history", "prune", "--keep", "1"], b""),
        "No runs removed.\n"
    );
    let rows = lines(expect(0, project, &["history"], b"").as_bytes());
    assert_eq!(rows.len(), 3);
    assert!(rows[2].starts_with("2 "), "{rows:?}");
    // Ids are never reused.
    assert!(expect(0, project, &["load"], &stream(RUNS[2])).contains("Run 3: complete"));
}

#[test]
fn commands_work_on_the_project_named_by_dash_c() {
    let dir = project();
    let elsewhere = project();
    let path = dir.path().to_str().expect("a UTF-8 temporary path");
    expect(1, elsewhere.path(), &["load", "-C", path], &stream(RUNS[0]));
    assert!(dir.path().join(".proctor").is_dir());
    assert!(!elsewhere.path().join(".proctor").exists());
    let failing = expect(1, elsewhere.path(), &["failing", "--list", "-C", path], b"");
    assert_eq!(failing, "pkg.a\npkg.b\npkg.g\n");
    expect(0, elsewhere.path(), &["slowest", "--project", path], b"");
}

#[test]
fn commands_without_a_repository_say_so() {
    let dir = project();
    for args in [
        &["last"][..],
        &["last", "--subunit"],
        &["failing"],
        &["failing", "--list"],
        &["slowest"],
        &["history"],
        &["history", "show", "0"],
        &["history", "remove", "0"],
        &["history", "prune", "--keep", "0"],
    ] {
        let message = expect_error(dir.path(), args, b"");
        assert!(
            message.contains("no run repository at"),
            "{args:?}: {message}"
        );
    }
    assert!(!dir.path().join(".proctor").exists(), "nothing created");
}

#[test]
fn an_empty_repository_has_no_last_run_and_nothing_failing() {
    let dir = project();
    let project = dir.path();
    expect(1, project, &["load"], &stream(RUNS[0]));
    expect(0, project, &["history", "prune", "--keep", "0"], b"");
    for args in [&["last"][..], &["last", "--subunit"], &["slowest"]] {
        let message = expect_error(project, args, b"");
        assert!(message.contains("no runs stored in"), "{args:?}: {message}");
    }
    assert_eq!(expect(0, project, &["history"], b""), "No runs stored.\n");
    // Removing runs does not change the failing set (as in stestr).
    assert_eq!(
        expect(1, project, &["failing", "--list"], b""),
        "pkg.a\npkg.b\npkg.g\n"
    );
}

#[test]
fn unknown_run_ids_are_errors() {
    let dir = project();
    let project = dir.path();
    expect(0, project, &["load"], &stream(RUNS[2]));
    for args in [&["history", "show", "7"][..], &["history", "remove", "7"]] {
        let message = expect_error(project, args, b"");
        assert!(
            message.contains("no run 7 in the repository"),
            "{args:?}: {message}"
        );
    }
    expect(0, project, &["history", "show", "0"], b"");
}

#[test]
fn unreadable_files_are_not_loaded() {
    let dir = project();
    let project = dir.path();
    std::fs::write(project.join("good.subunit"), stream(RUNS[2])).expect("writes");
    let message = expect_error(project, &["load", "good.subunit", "missing.subunit"], b"");
    assert!(message.contains("cannot read missing.subunit"), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    // Every file is opened before any is stored.
    assert!(!project.join(".proctor").exists());

    std::fs::create_dir(project.join("directory")).expect("creates");
    let message = expect_error(project, &["load", "directory"], b"");
    assert!(
        message.contains(
            "cannot read directory to its end; what was read is stored as run 0, marked interrupted"
        ),
        "{message}"
    );
    let rows = lines(expect(0, project, &["history"], b"").as_bytes());
    assert!(rows[2].contains("interrupted"), "{rows:?}");
}

#[test]
fn a_corrupt_stream_loads_with_parser_failures_as_stestr_reads_it() {
    let dir = project();
    let project = dir.path();
    let whole = stream(RUNS[2]);
    let mut corrupt = whole[..whole.len() / 2].to_vec();
    corrupt.extend_from_slice(b"not subunit at all\n\xb3\x29\x01\x00\x05zz");
    corrupt.extend_from_slice(&whole[whole.len() / 2..]);
    stestr(project, &["init"], b"");
    stestr(project, &["load"], &corrupt);
    let loaded = expect(1, project, &["load"], &corrupt);
    assert!(loaded.contains("subunit.parser"), "{loaded}");
    let theirs = stestr(project, &["failing", "--list"], b"");
    let ours = expect(1, project, &["failing", "--list"], b"");
    assert_eq!(lines(ours.as_bytes()), lines(&theirs.stdout));
    assert!(ours.contains("subunit.parser"), "{ours}");
    // The stored stream tells the garbage as parser failures, as stestr's.
    let ours = proctor(project, &["last", "--subunit"], b"").stdout;
    let stored = std::fs::read(project.join(".proctor/runs/0.subunit")).expect("stored");
    assert_eq!(ours, stored);
    let theirs = stestr(project, &["last", "--subunit"], b"").stdout;
    assert_eq!(listed(&ours), listed(&theirs));
}
