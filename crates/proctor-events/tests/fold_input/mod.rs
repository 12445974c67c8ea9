//! The fold of events into test runs, checked on any bytes: shared by the fuzz target `fold` and the `fold` test.
//!
//! The bytes are decoded as subunit v2 (with whatever garbage and corruption they hold), then folded whole and
//! folded in parts with the fold saved and resumed at cut points chosen from the bytes, as the server folds a job's
//! results upload by upload. Both must end the same runs with the same statuses, times, tags and totals.

use proctor_events::{Aggregator, RunStatus, Sink, Summary, Tally, TestRecord, Try};
use proctor_subunit::{Event, EventReader, Timestamp};

/// What a run must come to whichever way it was folded (attachments of a run open at a cut are not kept).
type Seen = (
    String,
    Option<String>,
    &'static str,
    Option<Timestamp>,
    Option<Timestamp>,
    Vec<String>,
);

fn seen(record: &TestRecord) -> Seen {
    (
        record.test_id.clone(),
        record.route_code.clone(),
        RunStatus::of(record.status).as_str(),
        record.start,
        record.end,
        record.tags.iter().cloned().collect(),
    )
}

/// Folds `events` whole.
fn whole(events: &[Event]) -> Vec<TestRecord> {
    let mut aggregator = Aggregator::new();
    let mut records: Vec<TestRecord> = events.iter().filter_map(|e| aggregator.push(e)).collect();
    records.extend(aggregator.finish());
    records
}

/// Folds `events` in parts split at `cuts`, saving and resuming between parts.
fn in_parts(events: &[Event], cuts: &[usize]) -> Vec<TestRecord> {
    let mut records = Vec::new();
    let mut open = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&events.len()]) {
        let cut = cut.clamp(start, events.len());
        let mut aggregator = Aggregator::resume(open);
        records.extend(events[start..cut].iter().filter_map(|e| aggregator.push(e)));
        open = aggregator.open_runs();
        start = cut;
    }
    records.extend(Aggregator::resume(open).finish());
    records
}

/// Checks the fold on `data`.
pub fn exercise(data: &[u8]) {
    let events: Vec<Event> = EventReader::new(data).map_while(Result::ok).collect();
    let mut hash = data.iter().fold(0x811C_9DC5u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut cuts: Vec<usize> = (0..4)
        .map(|_| {
            hash = hash.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (hash % (events.len() as u64 + 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    let expected = whole(&events);
    let resumed = in_parts(&events, &cuts);
    let mut expected_seen: Vec<Seen> = expected.iter().map(seen).collect();
    let mut resumed_seen: Vec<Seen> = resumed.iter().map(seen).collect();
    // Runs open at a cut come back in start order after the part that ends them; runs of one key keep their order.
    expected_seen.sort();
    resumed_seen.sort();
    assert_eq!(resumed_seen, expected_seen, "cuts {cuts:?}");

    let mut summary = Summary::new();
    for event in &events {
        summary.event(event).expect("a summary never fails");
    }
    summary.finish().expect("a summary never fails");
    let mut tally = Tally::new();
    for record in &resumed {
        tally.add(
            &record.test_id,
            Try::of(record, 1),
            RunStatus::of(record.status),
        );
    }
    assert_eq!(summary.tests.runs(), tally.runs());
    assert_eq!(summary.tests.tests(), tally.tests());
    let runs = tally.runs();
    assert_eq!(runs.total, resumed.len());
    assert_eq!(runs.total, runs.passed + runs.failed + runs.skipped);
    assert_eq!((summary.total, summary.failed), (runs.total, runs.failed));
}
