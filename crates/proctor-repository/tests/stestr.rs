//! The same runs loaded into stestr's repository and into ours must give the
//! same failing set after every run, and the same `last` and `slowest`.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{encoded, project, stream, Ran};
use proctor_events::Aggregator;
use proctor_repository::{Repository, RunKind, RunMeta};
use proctor_subunit::{Event, EventReader, Status};
use proctor_testkit::{expect_success, run_python_code, stestr};

use Status::{Fail, InProgress, Skip, Success, UxSuccess, XFail};

/// `stestr load` has no `--partial` any more, but stestr's file repository
/// still honours `partial` in its inserter (it is how `stestr run` used to
/// record subset runs): load through it directly.
const STESTR_PARTIAL_LOAD: &str = "
import sys
import subunit
from stestr.repository import util
repo = util.get_repo_open(repo_url=sys.argv[1])
inserter = repo.get_inserter(partial=True)
case = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name='stdout')
inserter.startTestRun()
case.run(inserter)
inserter.stopTestRun()
";

fn stestr_load(project: &Path, kind: RunKind, bytes: &[u8]) {
    match kind {
        RunKind::Full => {
            stestr(project, &["load"], bytes);
        }
        RunKind::Partial => {
            let output = run_python_code(STESTR_PARTIAL_LOAD, &[project], bytes);
            expect_success("stestr partial load", output);
        }
    }
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each test run in a stream: its id and final status.
fn outcomes(bytes: &[u8]) -> Vec<(String, Option<Status>)> {
    let mut aggregator = Aggregator::new();
    let mut records = Vec::new();
    for event in EventReader::new(bytes) {
        records.extend(aggregator.push(&event.expect("decodes")));
    }
    records.extend(aggregator.finish());
    records.into_iter().map(|r| (r.test_id, r.status)).collect()
}

#[test]
fn failing_last_and_slowest_match_stestr() {
    let dir = project();
    stestr(dir.path(), &["init"], b"");
    let repository = Repository::init(dir.path()).expect("creates");
    let file_only = encoded(&[Event::file(Some("x".into()), "log", &b"hi"[..], true)]);
    let runs: [(RunKind, &[Ran], &[u8]); 4] = [
        (
            RunKind::Full,
            &[
                ("a", Fail, 100),
                ("b", Fail, 200),
                ("c", Success, 300),
                ("d", Fail, 50),
                ("e", Skip, 10),
                ("f", XFail, 20),
                ("g", UxSuccess, 30),
                ("h", InProgress, 5),
            ],
            b"",
        ),
        (
            RunKind::Partial,
            &[
                ("a", Success, 110),
                ("e", Fail, 15),
                ("d", UxSuccess, 60),
                ("i", Fail, 70),
            ],
            b"",
        ),
        (
            RunKind::Full,
            &[
                ("a", Fail, 120),
                ("a", Success, 130),
                ("b", Success, 210),
                ("j", Fail, 80),
                ("c", Success, 320),
            ],
            &file_only,
        ),
        (
            RunKind::Partial,
            &[
                ("j", Skip, 5),
                ("n", Fail, 1),
                ("m", InProgress, 7),
                ("k", XFail, 25),
                ("b", Fail, 220),
                ("c", Success, 330),
            ],
            b"",
        ),
    ];
    // What each run leaves failing, so that agreeing with stestr is seen to
    // cover replacing, merging, retries, skips, xfail, uxsuccess and tests
    // cut off.
    let expected: [&[&str]; 4] = [
        &["a", "b", "d", "h"],
        &["b", "h", "e", "i"],
        &["j", "x"],
        &["x", "n", "b", "m"],
    ];
    for (number, (kind, tests, extra)) in runs.into_iter().enumerate() {
        let mut bytes = stream(tests);
        bytes.extend_from_slice(extra);
        stestr_load(dir.path(), kind, &bytes);
        repository
            .load(&bytes[..], RunMeta::of_kind(kind))
            .expect("loads");
        let theirs = lines(&stestr(dir.path(), &["failing", "--list"], b"").stdout);
        let ours = repository.failing().expect("reads");
        assert_eq!(ours, theirs, "failing set after run {number}");
        assert_eq!(ours, expected[number], "failing set after run {number}");
    }

    let mut ours = Vec::new();
    repository.write_failing_stream(&mut ours).expect("writes");
    let theirs = stestr(dir.path(), &["failing", "--subunit"], b"").stdout;
    assert_eq!(outcomes(&ours), outcomes(&theirs), "failing streams");

    let last = stestr(dir.path(), &["last", "--subunit"], b"").stdout;
    let latest = repository.latest().expect("reads").expect("has runs");
    let ours: Vec<_> = repository
        .records(latest.id)
        .expect("reads")
        .into_iter()
        .map(|r| r.test_id)
        .collect();
    let theirs: Vec<_> = outcomes(&last).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ours, theirs, "last run's tests");

    let table = lines(&stestr(dir.path(), &["slowest", "--all"], b"").stdout);
    let theirs: Vec<(String, String)> = table
        .iter()
        .skip(2)
        .filter_map(|row| {
            let mut cells = row.split_whitespace();
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .collect();
    let ours: Vec<(String, String)> = repository
        .slowest(usize::MAX)
        .expect("reads")
        .into_iter()
        .map(|(id, duration)| (id, format!("{:.3}", duration.as_secs_f64())))
        .collect();
    assert_eq!(ours, theirs, "slowest of the last run");
}
