//! `proctor subunit …` run as a real binary, checked against python-subunit's
//! own tools on the same streams.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use proctor_subunit::{encode, Event, Status};
use proctor_testkit::{expect_success, run_script_ok, run_with_stdin, venv_command};
use serde_json::Value;
use tempfile::TempDir;

fn proctor() -> Command {
    Command::cargo_bin("proctor").expect("the proctor binary is built")
}

fn proctor_output(args: &[&str], stdin: &[u8]) -> Output {
    proctor()
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .expect("proctor runs")
}

/// The reference streams `write_streams.py` makes, by case name.
fn reference_streams(dir: &TempDir) -> BTreeMap<String, PathBuf> {
    run_script_ok("write_streams.py", &[dir.path()], b"");
    let mut streams = BTreeMap::new();
    for entry in fs::read_dir(dir.path()).expect("stream dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        streams.insert(name, path);
    }
    assert!(streams.len() >= 20, "write_streams.py wrote {streams:?}");
    streams
}

/// subunit-stats' four totals and its tag line.
#[derive(Debug, PartialEq)]
struct ReferenceStats {
    total: u64,
    passed: u64,
    failed: u64,
    skipped: u64,
    tags: String,
}

fn subunit_stats(stream: &[u8]) -> (ReferenceStats, Option<i32>) {
    let mut command = venv_command("subunit-stats");
    command.arg("--no-passthrough");
    let output = run_with_stdin(command, stream);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let number = |label: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in subunit-stats output:\n{text}"))
    };
    let tags = text
        .lines()
        .find_map(|line| line.strip_prefix("Seen tags: "))
        .unwrap_or_default()
        .to_owned();
    let stats = ReferenceStats {
        total: number("Total tests:"),
        passed: number("Passed tests:"),
        failed: number("Failed tests:"),
        skipped: number("Skipped tests:"),
        tags,
    };
    (stats, output.status.code())
}

#[test]
fn stats_agrees_with_subunit_stats_on_every_reference_stream() {
    let dir = TempDir::new().expect("tempdir");
    for (case, path) in reference_streams(&dir) {
        let stream = fs::read(&path).expect("stream");
        let (mut reference, reference_code) = subunit_stats(&stream);
        if case == "bad_version" {
            // The reference does not check the version; Proctor reports a
            // wrong one as a malformed packet, a `subunit.parser` failure,
            // in place of the event it would otherwise be.
            reference.failed += 1;
            reference.passed -= 1;
        }
        let output = proctor_output(&["subunit", "stats", "--json"], &stream);
        let ours: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{case}: stats --json printed no JSON: {e}"));
        let count = |key: &str| {
            ours[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{case}: {key}"))
        };
        // subunit-stats counts an unexpected success as passed; Proctor (like
        // testtools and stestr) counts it as failed, and reports it apart.
        let uxsuccess = count("uxsuccess");
        let ours_as_reference = ReferenceStats {
            total: count("total"),
            passed: count("passed") + uxsuccess,
            failed: count("failed") - uxsuccess,
            skipped: count("skipped"),
            tags: ours["tags"]
                .as_array()
                .map(|tags| {
                    let names: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
                    names.join(", ")
                })
                .unwrap_or_default(),
        };
        assert_eq!(ours_as_reference, reference, "{case}");
        if uxsuccess == 0 && case != "bad_version" {
            assert_eq!(output.status.code(), reference_code, "{case}: exit status");
            let text = proctor_output(&["subunit", "stats"], &stream);
            let reference_text = run_with_stdin(venv_command("subunit-stats"), &stream);
            assert_eq!(
                String::from_utf8_lossy(&text.stdout),
                String::from_utf8_lossy(&reference_text.stdout),
                "{case}: text output"
            );
        }
    }
}

#[test]
fn stats_json_counts_xfail_as_passed_and_uxsuccess_as_failed() {
    let dir = TempDir::new().expect("tempdir");
    let stream = fs::read(reference_streams(&dir)["statuses"].clone()).expect("stream");
    let output = proctor_output(&["subunit", "stats", "--json"], &stream);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&output.stdout).expect("json");
    let passed = json["success"].as_u64().unwrap_or(0) + json["xfail"].as_u64().unwrap_or(0);
    assert_eq!(json["passed"].as_u64(), Some(passed));
    assert!(json["uxsuccess"].as_u64() >= Some(1), "{json}");
    let failed = json["fail"].as_u64().unwrap_or(0)
        + json["uxsuccess"].as_u64().unwrap_or(0)
        + json["incomplete"].as_u64().unwrap_or(0);
    assert_eq!(json["failed"].as_u64(), Some(failed));
}

fn sorted_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The reference streams the per-test comparisons run on: every status,
/// tags and routes, chunked attachments, a corrupt packet.
const COMPARED_CASES: [&str; 4] = [
    "statuses",
    "tags_routes",
    "attachment_chunks",
    "corrupt_crc",
];

#[test]
fn ls_lists_the_same_tests_as_subunit_ls() {
    let dir = TempDir::new().expect("tempdir");
    let streams = reference_streams(&dir);
    for case in COMPARED_CASES {
        let stream = fs::read(&streams[case]).expect("stream");
        for flags in [&[][..], &["--exists"][..]] {
            let mut reference = venv_command("subunit-ls");
            reference.arg("--no-passthrough").args(flags);
            let reference = run_with_stdin(reference, &stream);
            let mut args = vec!["subunit", "ls", "--no-passthrough"];
            args.extend_from_slice(flags);
            let ours = proctor_output(&args, &stream);
            assert_eq!(
                sorted_lines(&ours.stdout),
                sorted_lines(&reference.stdout),
                "{case} {flags:?}"
            );
            assert_eq!(ours.status.code(), reference.status.code(), "{case}");
        }
    }
}

#[test]
fn ls_times_shows_durations() {
    let untimed = emit_stream(&[
        &["--start", "untimed", "--no-timestamp"],
        &["--test", "untimed", "--status", "success", "--no-timestamp"],
    ]);
    let output = proctor_output(&["subunit", "ls", "--times"], &untimed);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "untimed 0.000\n");
    let mut timed = emit_stream(&[&["--start", "timed"]]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    timed.extend(emit_stream(&[&["--test", "timed", "--status", "success"]]));
    let output = proctor_output(&["subunit", "ls", "--times"], &timed);
    let text = String::from_utf8_lossy(&output.stdout);
    let seconds: f64 = text
        .strip_prefix("timed ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((0.2..5.0).contains(&seconds), "{text}");
}

/// The events of a stream as python-subunit decodes them.
fn reference_events(stream: &[u8]) -> Vec<Value> {
    let json = run_script_ok("decode_json.py", &[] as &[&str], stream);
    String::from_utf8_lossy(&json)
        .lines()
        .map(|line| serde_json::from_str(line).expect("decode_json.py prints JSON"))
        .collect()
}

#[test]
fn filter_without_options_passes_everything() {
    let dir = TempDir::new().expect("tempdir");
    for (case, path) in reference_streams(&dir) {
        let stream = fs::read(&path).expect("stream");
        let output = proctor_output(&["subunit", "filter"], &stream);
        assert!(output.status.success(), "{case}");
        let ours = proctor_output(&["subunit", "json"], &output.stdout);
        let direct = proctor_output(&["subunit", "json"], &stream);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&direct.stdout),
            "{case}"
        );
    }
}

#[test]
fn filter_keeps_whole_runs_by_status_id_and_tag() {
    let dir = TempDir::new().expect("tempdir");
    let stream = fs::read(&reference_streams(&dir)["statuses"]).expect("stream");
    let failed = proctor_output(
        &["subunit", "filter", "--status", "fail", "--no-passthrough"],
        &stream,
    );
    let events = reference_events(&failed.stdout);
    assert!(!events.is_empty());
    let statuses: Vec<&str> = events.iter().filter_map(|e| e["status"].as_str()).collect();
    assert!(statuses.contains(&"fail"), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(*s, "fail" | "inprogress")),
        "{statuses:?}"
    );
    let bad_regex = proctor_output(&["subunit", "filter", "--with", "("], &stream);
    assert_eq!(bad_regex.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_regex.stderr).contains("regular expression"));
}

#[test]
fn tags_adds_and_removes() {
    let stream = emit_stream(&[&["--start", "t", "--tag", "old", "--tag", "kept"]]);
    let output = proctor_output(&["subunit", "tags", "+new", "-old", "also"], &stream);
    assert!(output.status.success());
    let events = reference_events(&output.stdout);
    assert_eq!(
        events[0]["tags"],
        serde_json::json!(["also", "kept", "new"])
    );
}

/// A stream made by running `proctor subunit emit` once per argument list.
fn emit_stream(calls: &[&[&str]]) -> Vec<u8> {
    let mut stream = Vec::new();
    for args in calls {
        let mut full = vec!["subunit", "emit"];
        full.extend_from_slice(args);
        let output = proctor_output(&full, b"");
        assert!(output.status.success(), "{args:?}: {output:?}");
        stream.extend_from_slice(&output.stdout);
    }
    stream
}

#[test]
fn emit_writes_what_python_subunit_reads() {
    let dir = TempDir::new().expect("tempdir");
    let big = dir.path().join("big.log");
    let content: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&big, &content).expect("write");
    let stream = emit_stream(&[
        &["--start", "suite.test_big", "--tag", "shell"],
        &[
            "--test",
            "suite.test_big",
            "--status",
            "fail",
            "--attach",
            big.to_str().expect("utf8 path"),
            "--mime-type",
            "application/octet-stream",
        ],
    ]);
    let events = reference_events(&stream);
    assert_eq!(events[0]["status"], "inprogress");
    assert_eq!(events[0]["tags"], serde_json::json!(["shell"]));
    let chunks: Vec<&Value> = events[1..].iter().collect();
    assert!(chunks.len() >= 2, "a 5 MB file needs several packets");
    assert!(chunks.iter().all(|e| e["file_name"] == "big.log"));
    assert_eq!(
        chunks.last().map(|e| e["status"].clone()),
        Some("fail".into())
    );
    assert_eq!(chunks.last().map(|e| e["eof"].clone()), Some(true.into()));
    let rebuilt: Vec<u8> = chunks
        .iter()
        .flat_map(|e| decode_base64(e["file_content"].as_str().unwrap_or_default()))
        .collect();
    assert!(rebuilt == content, "the attachment survives the round trip");
    let (stats, code) = subunit_stats(&stream);
    assert_eq!((stats.total, stats.failed, code), (1, 1, Some(1)));
}

fn decode_base64(text: &str) -> Vec<u8> {
    let output = run_with_stdin(
        {
            let mut command = venv_command("python");
            command.args([
                "-c",
                "import sys,base64; sys.stdout.buffer.write(base64.b64decode(sys.stdin.read()))",
            ]);
            command
        },
        text.as_bytes(),
    );
    expect_success("base64 decode", output)
}

#[test]
fn emit_rejects_a_status_without_a_test() {
    let output = proctor_output(&["subunit", "emit", "--status", "fail"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--test"));
    let output = proctor_output(
        &["subunit", "emit", "--test", "t", "--status", "passed"],
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown test status"));
}

#[test]
fn mux_prefixes_route_codes_per_input() {
    let dir = TempDir::new().expect("tempdir");
    let first = dir.path().join("first.subunit");
    let second = dir.path().join("second.subunit");
    fs::write(&first, emit_stream(&[&["--start", "a"]])).expect("write");
    fs::write(&second, emit_stream(&[&["--start", "b", "--route", "7"]])).expect("write");
    let output = proctor_output(
        &["subunit", "mux", path_str(&first), path_str(&second)],
        b"",
    );
    assert!(output.status.success());
    let mut routes: Vec<(String, String)> = reference_events(&output.stdout)
        .iter()
        .map(|e| (e["test_id"].to_string(), e["route_code"].to_string()))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            ("\"a\"".to_owned(), "\"0\"".to_owned()),
            ("\"b\"".to_owned(), "\"1/7\"".to_owned())
        ]
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

#[test]
fn missing_input_is_a_clear_error() {
    let output = proctor_output(&["subunit", "stats", "/nonexistent/run.subunit"], b"");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/run.subunit"), "{stderr}");
}

#[test]
fn json_and_cat_show_every_event() {
    let dir = TempDir::new().expect("tempdir");
    let stream = fs::read(&reference_streams(&dir)["text_interleaved"]).expect("stream");
    let json = proctor_output(&["subunit", "json"], &stream);
    let lines = String::from_utf8_lossy(&json.stdout).lines().count();
    let events = proctor_output(&["subunit", "cat"], &stream);
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(lines >= 3);
    assert!(text.contains("ó"), "non-subunit text is shown: {text}");
}

#[test]
fn stestr_loads_a_proctor_stream() {
    let dir = TempDir::new().expect("tempdir");
    let stream_path = dir.path().join("example.subunit");
    let example = proctor()
        .args(["example", "--output", path_str(&stream_path)])
        .output()
        .expect("runs");
    assert!(example.status.success(), "{example:?}");
    let project = dir.path().join("project");
    fs::create_dir(&project).expect("mkdir");
    fs::write(project.join(".stestr.conf"), "[DEFAULT]\ntest_path=.\n").expect("conf");
    let mut init = venv_command("stestr");
    init.current_dir(&project).arg("init");
    expect_success("stestr init", run_with_stdin(init, b""));
    let mut load = venv_command("stestr");
    load.current_dir(&project).arg("load");
    let stream = fs::read(&stream_path).expect("stream");
    expect_success("stestr load", run_with_stdin(load, &stream));
    let mut last = venv_command("stestr");
    last.current_dir(&project).args(["last", "--subunit"]);
    let stored = expect_success("stestr last", run_with_stdin(last, b""));
    let (stats, _) = subunit_stats(&stored);
    assert_eq!((stats.total, stats.passed, stats.skipped), (5, 4, 1));
}

#[test]
fn example_runs_and_records_a_readable_stream() {
    let dir = TempDir::new().expect("tempdir");
    let stream_path = dir.path().join("example.subunit");
    let output = proctor()
        .args(["example", "-j", "3", "--output", path_str(&stream_path)])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let totals = stdout
        .lines()
        .find(|line| line.starts_with("5 tests in "))
        .unwrap_or_else(|| panic!("no totals line:\n{stdout}"));
    assert!(
        totals.ends_with("s: 4 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    let stream = fs::read(&stream_path).expect("stream");
    let (stats, code) = subunit_stats(&stream);
    assert_eq!(
        (stats.total, stats.passed, stats.failed, stats.skipped),
        (5, 4, 0, 1)
    );
    assert_eq!(code, Some(0));
    let events = reference_events(&stream);
    let routes: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| e["route_code"].as_str().map(str::to_owned))
        .collect();
    assert!(!routes.is_empty() && routes.len() <= 3, "{routes:?}");
}

/// (classname, name, outcome) of every testcase in a JUnit XML document.
fn junit_cases(xml: &str) -> Vec<(String, String, String)> {
    let document = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let mut cases: Vec<_> = document
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .map(|case| {
            let outcome = ["failure", "error", "skipped"]
                .into_iter()
                .find(|tag| case.children().any(|child| child.has_tag_name(*tag)))
                .unwrap_or("pass");
            let attribute = |name| case.attribute(name).unwrap_or_default().to_owned();
            (
                attribute("classname"),
                attribute("name"),
                outcome.to_owned(),
            )
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn junit_agrees_with_subunit2junitxml() {
    let dir = TempDir::new().expect("tempdir");
    let streams = reference_streams(&dir);
    for case in COMPARED_CASES {
        let stream = fs::read(&streams[case]).expect("stream");
        let mut reference = venv_command("subunit2junitxml");
        reference.arg("--no-passthrough");
        let reference = run_with_stdin(reference, &stream);
        let ours = proctor_output(&["subunit", "junit"], &stream);
        assert!(ours.status.success(), "{case}: {ours:?}");
        let mut expected = junit_cases(&String::from_utf8_lossy(&reference.stdout));
        let actual = junit_cases(&String::from_utf8_lossy(&ours.stdout));
        // subunit2junitxml reports an unfinished run as a failure; Proctor
        // as an error (the test never reached a verdict).
        let unfinished: Vec<_> = actual
            .iter()
            .filter(|(_, _, outcome)| outcome == "error")
            .map(|(class, name, _)| (class.clone(), name.clone()))
            .collect();
        for (class, name, outcome) in &mut expected {
            if unfinished.contains(&(class.clone(), name.clone())) && outcome == "failure" {
                *outcome = "error".to_owned();
            }
        }
        assert_eq!(actual, expected, "{case}");
    }
}

const TAP_SAMPLE: &str = "TAP version 13\n1..5\nok 1 - adds\nnot ok 2 - subtracts\n  ---\n  message: off by one\n  ...\nok 3 - divides # SKIP no floats\nnot ok 4 - sorts # TODO not yet\n# a comment\nok 5 - prints\n";

#[test]
fn tap2subunit_agrees_with_the_reference_on_outcomes() {
    let ours = proctor_output(&["subunit", "tap2subunit"], TAP_SAMPLE.as_bytes());
    assert!(ours.status.success(), "{ours:?}");
    let reference = run_with_stdin(venv_command("tap2subunit"), TAP_SAMPLE.as_bytes());
    let (our_stats, _) = subunit_stats(&ours.stdout);
    let (reference_stats, _) = subunit_stats(&reference.stdout);
    assert_eq!(our_stats, reference_stats);
    let events = reference_events(&ours.stdout);
    let diagnostics = events
        .iter()
        .find(|e| e["file_name"] == "diagnostics")
        .expect("the YAML block is attached");
    assert_eq!(diagnostics["test_id"], "test 2 - subtracts");
}

#[test]
fn to_tap_writes_a_plan_and_keeps_failures_failing() {
    let dir = TempDir::new().expect("tempdir");
    let stream = fs::read(&reference_streams(&dir)["statuses"]).expect("stream");
    let tap = proctor_output(&["subunit", "to-tap"], &stream);
    let text = String::from_utf8_lossy(&tap.stdout);
    assert!(text.starts_with("TAP version 13\n"), "{text}");
    let back = proctor_output(&["subunit", "tap2subunit"], &tap.stdout);
    let original = proctor_output(&["subunit", "stats", "--json"], &stream);
    let round_trip = proctor_output(&["subunit", "stats", "--json"], &back.stdout);
    let original: Value = serde_json::from_slice(&original.stdout).expect("json");
    let round_trip: Value = serde_json::from_slice(&round_trip.stdout).expect("json");
    for key in ["total", "failed", "skipped"] {
        assert_eq!(original[key], round_trip[key], "{key}:\n{text}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new().expect("tempdir");
    let mut stream = Vec::new();
    for i in 0..50_000 {
        let id = format!("test_{i}");
        for status in [Status::InProgress, Status::Success] {
            encode(&Event::test(&id, status), &mut stream).expect("encodes");
        }
    }
    let input = dir.path().join("big.subunit");
    fs::write(&input, &stream).expect("writes the stream");
    let binary = assert_cmd::cargo::cargo_bin("proctor");
    let mut child = std::process::Command::new(binary)
        .args(["subunit", "json"])
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts proctor");
    // Like `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("reads a line");
    assert!(first.starts_with('{'), "{first}");
    let output = child.wait_with_output().expect("proctor exits");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
