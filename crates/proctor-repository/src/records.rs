//! Between stream files and per-test records.

use std::fs::File;
use std::path::Path;

use proctor_events::{Aggregator, TestRecord};
use proctor_subunit::{Event, EventReader, Status};

use crate::RepoError;

/// Every test run in a stream file, in the order they ended, then those the
/// stream left unfinished. Garbage in the file decodes as the reference
/// reader decodes it (`stdout` chunks, `subunit.parser` failures), so a
/// corrupt or truncated file still reads.
pub(crate) fn read_records(path: &Path) -> Result<Vec<TestRecord>, RepoError> {
    let file = File::open(path).map_err(RepoError::io("open", path))?;
    let mut aggregator = Aggregator::new();
    let mut records = Vec::new();
    for event in EventReader::new(file) {
        let event = event.map_err(RepoError::io("read", path))?;
        records.extend(aggregator.push(&event));
    }
    records.extend(aggregator.finish());
    Ok(records)
}

/// Events that tell `record` again: its start, its attachments, its end.
/// A run the stream never finished ends as `fail`, as stestr stores it, so
/// that every reader counts it the same way.
pub(crate) fn record_events(record: &TestRecord) -> Vec<Event> {
    let about = |status: Status, timestamp| Event {
        route_code: record.route_code.clone(),
        timestamp,
        tags: (*record.tags).clone(),
        ..Event::test(record.test_id.clone(), status)
    };
    let mut events = vec![about(Status::InProgress, record.start)];
    for attachment in &record.attachments {
        let template = Event {
            test_id: Some(record.test_id.clone()),
            route_code: record.route_code.clone(),
            runnable: true,
            mime_type: attachment.mime_type.clone(),
            ..Event::default()
        };
        events.extend(Event::file_chunks(
            &template,
            &attachment.name,
            attachment.content.clone(),
        ));
    }
    let status = record
        .status
        .filter(|status| status.is_final())
        .unwrap_or(Status::Fail);
    events.push(about(status, record.end));
    events
}

#[cfg(test)]
mod tests {
    use proctor_subunit::{encode, Timestamp};

    use super::*;

    fn records_of(events: &[Event]) -> Vec<TestRecord> {
        let mut aggregator = Aggregator::new();
        let mut records: Vec<_> = events.iter().filter_map(|e| aggregator.push(e)).collect();
        records.extend(aggregator.finish());
        records
    }

    #[test]
    fn record_events_tell_the_same_record() {
        let original = records_of(&[
            Event::test("t", Status::InProgress)
                .at(Timestamp::new(5, 0))
                .routed("1")
                .tagged("worker-0"),
            Event::text(Some("t".into()), "traceback", "boom").routed("1"),
            Event::test("t", Status::Fail)
                .at(Timestamp::new(7, 0))
                .routed("1")
                .tagged("worker-0"),
        ]);
        let events = record_events(&original[0]);
        assert_eq!(records_of(&events), original);
    }

    #[test]
    fn unfinished_runs_are_told_as_failures() {
        let cut = records_of(&[Event::test("cut", Status::InProgress)]);
        let told = records_of(&record_events(&cut[0]));
        assert_eq!(told[0].status, Some(Status::Fail));
    }

    #[test]
    fn truncated_files_still_read() {
        let mut bytes = Vec::new();
        for event in [
            Event::test("a", Status::Success),
            Event::test("b", Status::Success),
        ] {
            encode(&event, &mut bytes).expect("encodes");
        }
        bytes.truncate(bytes.len() - 3);
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("cut.subunit");
        std::fs::write(&path, &bytes).expect("writes");
        let ids: Vec<_> = read_records(&path)
            .expect("reads")
            .into_iter()
            .map(|r| (r.test_id, r.status))
            .collect();
        assert_eq!(ids[0], ("a".to_owned(), Some(Status::Success)));
        assert!(ids[1..]
            .iter()
            .any(|(id, _)| id == proctor_subunit::PARSER_TEST_ID));
    }
}
