//! The JUnit XML that `JunitSink` writes, read back as GitLab and Jenkins read
//! it, and compared with python-subunit's `subunit2junitxml` on one stream.
//!
//! The comparison needs the Python venv that `./scripts/test` creates; without
//! it the test fails with a message saying so.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proctor_events::Sink;
use proctor_formats::junit::JunitSink;
use proctor_subunit::{Event, EventWriter, Status, Timestamp};
use roxmltree::{Document, Node};

fn at(millis: u64) -> Timestamp {
    Timestamp::new(1_704_164_645, 0).saturating_add(Duration::from_millis(millis))
}

fn text(test_id: &str, name: &str, content: &str) -> Event {
    Event::text(Some(test_id.to_owned()), name, content)
}

/// One run of each kind, timestamped, with the usual attachments.
fn stream() -> Vec<Event> {
    let mut events = Vec::new();
    let mut run = |id: &str, status: Status, start: u64, end: u64, files: Vec<Event>| {
        events.push(Event::test(id, Status::InProgress).at(at(start)));
        events.extend(files.into_iter().map(|file| file.at(at(end))));
        events.push(Event::test(id, status).at(at(end)));
    };
    run("pkg.mod.TestA.test_ok", Status::Success, 0, 1250, vec![]);
    run(
        "pkg.mod.TestA.test_fail",
        Status::Fail,
        1250,
        1500,
        vec![
            text(
                "pkg.mod.TestA.test_fail",
                "traceback",
                "Traceback:\nValueError: <bad> & \"worse\"\n",
            ),
            text("pkg.mod.TestA.test_fail", "stdout", "printed\n"),
        ],
    );
    run(
        "noclass",
        Status::Skip,
        1500,
        1500,
        vec![text("noclass", "reason", "no network")],
    );
    run(
        "pkg.x(param.1)",
        Status::XFail,
        1500,
        1600,
        vec![text("pkg.x(param.1)", "reason", "known bug")],
    );
    run("pkg.ux", Status::UxSuccess, 1600, 1700, vec![]);
    events.push(Event::test("pkg.unfinished", Status::InProgress).at(at(1700)));
    events.push(Event::file(None, "stdout", &b"outside any test\n"[..], false).at(at(2000)));
    events
}

fn junit_xml(events: &[Event]) -> String {
    let mut sink = JunitSink::new();
    for event in events {
        sink.event(event).expect("takes events");
    }
    sink.finish().expect("finishes");
    sink.to_xml_string().expect("serializes")
}

fn attribute<'a>(node: Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name} attribute", node.tag_name().name()))
}

fn children<'a, 'input>(node: Node<'a, 'input>, tag: &str) -> Vec<Node<'a, 'input>> {
    node.children()
        .filter(|child| child.has_tag_name(tag))
        .collect()
}

fn child<'a, 'input>(node: Node<'a, 'input>, tag: &str) -> Option<Node<'a, 'input>> {
    children(node, tag).into_iter().next()
}

#[test]
fn report_has_the_structure_ci_servers_read() {
    let xml = junit_xml(&stream());
    let document = Document::parse(&xml).expect("well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(attribute(root, "tests"), "6");
    assert_eq!(attribute(root, "failures"), "2");
    assert_eq!(attribute(root, "errors"), "1");

    let suites = children(root, "testsuite");
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(attribute(suite, "name"), "proctor");
    assert_eq!(attribute(suite, "tests"), "6");
    assert_eq!(attribute(suite, "failures"), "2");
    assert_eq!(attribute(suite, "errors"), "1");
    assert_eq!(attribute(suite, "skipped"), "1");
    assert_eq!(attribute(suite, "time"), "2.000");
    assert_eq!(
        attribute(suite, "timestamp"),
        "2024-01-02T03:04:05.000+00:00"
    );
    assert_eq!(
        child(suite, "system-out").and_then(|node| node.text()),
        Some("outside any test\n")
    );

    let cases = children(suite, "testcase");
    let summary: Vec<_> = cases
        .iter()
        .map(|case| {
            (
                attribute(*case, "classname"),
                attribute(*case, "name"),
                attribute(*case, "time"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pkg.mod.TestA", "test_ok", "1.250"),
            ("pkg.mod.TestA", "test_fail", "0.250"),
            ("", "noclass", "0.000"),
            ("pkg", "x(param.1)", "0.100"),
            ("pkg", "ux", "0.100"),
            ("pkg", "unfinished", "0.000"),
        ]
    );
    assert_eq!(
        attribute(cases[0], "timestamp"),
        "2024-01-02T03:04:05.000+00:00"
    );
    assert!(cases[0].first_element_child().is_none());

    let failure = child(cases[1], "failure").expect("a failure");
    assert_eq!(
        attribute(failure, "message"),
        "ValueError: <bad> & \"worse\""
    );
    assert_eq!(
        failure.text(),
        Some("Traceback:\nValueError: <bad> & \"worse\"\n")
    );
    assert_eq!(
        child(cases[1], "system-out").and_then(|node| node.text()),
        Some("printed\n")
    );

    let skipped = child(cases[2], "skipped").expect("skipped");
    assert_eq!(attribute(skipped, "message"), "no network");

    assert!(child(cases[3], "failure").is_none());
    assert_eq!(
        child(cases[3], "system-out").and_then(|node| node.text()),
        Some("expected failure: known bug\n")
    );

    let unexpected = child(cases[4], "failure").expect("a failure");
    assert_eq!(attribute(unexpected, "message"), "unexpected success");

    let error = child(cases[5], "error").expect("an error");
    assert_eq!(attribute(error, "message"), "test did not finish");
}

fn retry(n: u32) -> String {
    format!("{}{n}", proctor_events::RETRY_TAG_PREFIX)
}

#[test]
fn flaky_tests_are_reported_as_flaky() {
    let events = [
        Event::test("pkg.t", Status::InProgress).routed("0"),
        text("pkg.t", "traceback", "AssertionError: once\n").routed("0"),
        Event::test("pkg.t", Status::Fail).routed("0"),
        // The runner tags a retry's runs: those are reruns, whatever worker they ran on.
        Event::test("pkg.t", Status::Success)
            .routed("1")
            .tagged(retry(1)),
        Event::test("pkg.u", Status::Fail),
        Event::test("pkg.u", Status::Fail).tagged(retry(1)),
    ];
    let mut sink = JunitSink::new()
        .with_suite_name("retries")
        .group_retries(true);
    for event in &events {
        sink.event(event).expect("takes events");
    }
    sink.finish().expect("finishes");
    let xml = sink.to_xml_string().expect("serializes");
    let document = Document::parse(&xml).expect("well-formed XML");
    let suite = child(document.root_element(), "testsuite").expect("a suite");
    assert_eq!(attribute(suite, "name"), "retries");
    assert_eq!(attribute(suite, "tests"), "2");
    assert_eq!(attribute(suite, "failures"), "1");
    let cases = children(suite, "testcase");
    assert!(child(cases[0], "failure").is_none());
    let flaky = children(cases[0], "flakyFailure");
    assert_eq!(flaky.len(), 1);
    assert_eq!(attribute(flaky[0], "message"), "AssertionError: once");
    assert!(child(cases[1], "failure").is_some());
    assert_eq!(children(cases[1], "rerunFailure").len(), 1);
}

/// Each test case of a report: class name, name, and what it came to.
fn outcomes(xml: &str) -> Vec<(String, String, &'static str)> {
    let document = Document::parse(xml).expect("well-formed XML");
    document
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .map(|case| {
            let outcome = ["failure", "error", "skipped"]
                .into_iter()
                .find(|tag| child(case, tag).is_some())
                .unwrap_or("pass");
            (
                attribute(case, "classname").to_owned(),
                attribute(case, "name").to_owned(),
                outcome,
            )
        })
        .collect()
}

#[test]
fn matches_subunit2junitxml_where_it_means_to() {
    let events = stream();
    let mut writer = EventWriter::new(Vec::new());
    for event in &events {
        writer.write(event).expect("encodes");
    }
    let bytes = writer.into_inner();
    let output =
        proctor_testkit::run_with_stdin(proctor_testkit::venv_command("subunit2junitxml"), &bytes);
    // It exits 1 when a test failed, and passes the output that belongs to
    // no test through (as a packet) before the XML.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let start = stdout.find("<testsuite").expect("an XML report");
    let reference = &stdout[start..];

    let ours = outcomes(&junit_xml(&events));
    let mut theirs = outcomes(reference);
    // Deliberate difference: a run the stream never finished is an error for
    // us, a failure for the reference.
    let last = theirs.last_mut().expect("the unfinished run");
    assert_eq!((last.1.as_str(), last.2), ("unfinished", "failure"));
    last.2 = "error";
    assert_eq!(ours, theirs);
}
