//! TAP read by `tap_to_events` compared with python-subunit's `tap2subunit` on
//! the same input: the same tests with the same statuses and comments, and
//! the documented differences asserted, not hidden.
//!
//! Needs the Python venv that `./scripts/test` creates; without it the test
//! fails with a message saying so.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;

use proctor_events::{Aggregator, Collect, TestRecord};
use proctor_formats::tap::tap_to_events;
use proctor_subunit::{Event, EventReader};

const TAP: &str = "TAP version 13
1..8
ok 1 - foo bar
not ok 2 baz # TODO not done
# diag after 2
ok 3 # skip no net
ok
ok 6 - passing todo # TODO x
not ok 7 - broken
#   Failed test 'broken'
#   at t/basic.t line 12.
Bail out! db gone
";

fn records(events: &[Event]) -> Vec<TestRecord> {
    let mut aggregator = Aggregator::new();
    let mut records: Vec<_> = events.iter().filter_map(|e| aggregator.push(e)).collect();
    records.extend(aggregator.finish());
    records
}

fn text(record: &TestRecord, name: &str) -> Option<String> {
    let attachment = record.attachment(name)?;
    Some(String::from_utf8_lossy(&attachment.content).into_owned())
}

fn reference_events(tap: &str) -> Vec<Event> {
    let output = proctor_testkit::run_with_stdin(
        proctor_testkit::venv_command("tap2subunit"),
        tap.as_bytes(),
    );
    let bytes = proctor_testkit::expect_success("tap2subunit", output);
    EventReader::new(&bytes[..])
        .collect::<io::Result<_>>()
        .expect("the reference writes valid subunit")
}

fn our_events(tap: &str) -> Vec<Event> {
    let mut sink = Collect::default();
    tap_to_events(tap.as_bytes(), &mut sink).expect("converts");
    sink.events
}

#[test]
fn same_tests_and_statuses_as_tap2subunit() {
    let theirs = records(&reference_events(TAP));
    let ours = records(&our_events(TAP));
    let outcomes = |records: &[TestRecord]| {
        records
            .iter()
            .map(|r| (r.test_id.clone(), r.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes(&ours), outcomes(&theirs));
    assert_eq!(ours.len(), 9, "{:?}", outcomes(&ours));

    for (ours, theirs) in ours.iter().zip(&theirs) {
        let id = &ours.test_id;
        assert_eq!(text(ours, "tap meta"), text(theirs, "tap meta"), "{id}");
        match id.as_str() {
            // Deliberate difference: a directive's reason is the file
            // `reason`; the reference puts it first in `tap comment`.
            "test 2 baz" => {
                assert_eq!(
                    text(theirs, "tap comment").as_deref(),
                    Some("not done\n# diag after 2")
                );
                assert_eq!(text(ours, "reason").as_deref(), Some("not done"));
                assert_eq!(text(ours, "tap comment").as_deref(), Some("# diag after 2"));
            }
            "test 3" | "test 6 - passing todo" => {
                assert_eq!(text(ours, "reason"), text(theirs, "tap comment"), "{id}");
            }
            _ => assert_eq!(
                text(ours, "tap comment"),
                text(theirs, "tap comment"),
                "{id}"
            ),
        }
    }
}

#[test]
fn the_version_line_is_understood_not_forwarded() {
    let global = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.test_id.is_none())
            .filter_map(|e| e.file.as_ref())
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .collect::<String>()
    };
    assert_eq!(global(&reference_events(TAP)), "TAP version 13\n");
    assert_eq!(global(&our_events(TAP)), "");
}
