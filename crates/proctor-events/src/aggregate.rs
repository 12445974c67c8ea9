//! From events to one record per finished test run.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proctor_subunit::{Event, Status, Timestamp};

use crate::runs::OpenRuns;

/// A file attached to a test run, all its chunks joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file's name (`traceback`, `stdout`, ...).
    pub name: String,
    /// Its MIME type: the first one any chunk gave, else
    /// `application/octet-stream`.
    pub mime_type: Option<String>,
    /// Its whole content.
    pub content: Bytes,
}

/// One run of one test: everything the stream said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    /// The test id.
    pub test_id: String,
    /// Where it ran.
    pub route_code: Option<String>,
    /// Its final status; `None` or `InProgress` for a run the stream never
    /// finished.
    pub status: Option<Status>,
    /// The first timestamp seen for this run.
    pub start: Option<Timestamp>,
    /// The timestamp of the event that finished it (or the last one seen).
    pub end: Option<Timestamp>,
    /// The most recent tags given (as testtools keeps them).
    pub tags: BTreeSet<String>,
    /// Attached files, in the order they started.
    pub attachments: Vec<Attachment>,
}

impl TestRecord {
    /// How long the run took, when the stream gave both ends.
    pub fn duration(&self) -> Option<Duration> {
        Some(self.end?.saturating_since(self.start?))
    }

    /// Whether the stream finished this run with a final status.
    pub fn is_complete(&self) -> bool {
        self.status.is_some_and(Status::is_final)
    }

    /// The attachment with this name.
    pub fn attachment(&self, name: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.name == name)
    }
}

/// A test run in progress, as [`Aggregator::running`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The test id.
    pub test_id: String,
    /// Where it runs.
    pub route_code: Option<String>,
    /// When it started, if the stream said.
    pub start: Option<Timestamp>,
    /// How long it has run at the time asked about.
    pub elapsed: Option<Duration>,
}

#[derive(Debug)]
struct Partial {
    record: TestRecord,
    files: Vec<(String, Option<String>, BytesMut)>,
}

impl Partial {
    fn new((test_id, route_code): &(String, Option<String>)) -> Partial {
        Partial {
            record: TestRecord {
                test_id: test_id.clone(),
                route_code: route_code.clone(),
                status: None,
                start: None,
                end: None,
                tags: BTreeSet::new(),
                attachments: Vec::new(),
            },
            files: Vec::new(),
        }
    }

    fn update(&mut self, event: &Event) {
        let record = &mut self.record;
        if event.status.is_some() {
            record.status = event.status;
        }
        if let Some(timestamp) = event.timestamp {
            record.start.get_or_insert(timestamp);
            record.end = Some(timestamp);
        }
        if !event.tags.is_empty() && record.tags != event.tags {
            record.tags.clone_from(&event.tags);
        }
        if let Some(file) = &event.file {
            match self.files.iter_mut().find(|(name, ..)| *name == file.name) {
                Some((_, mime_type, content)) => {
                    if mime_type.is_none() {
                        mime_type.clone_from(&event.mime_type);
                    }
                    content.extend_from_slice(&file.content);
                }
                None => self.files.push((
                    file.name.clone(),
                    event.mime_type.clone(),
                    BytesMut::from(&file.content[..]),
                )),
            }
        }
    }

    fn into_record(mut self) -> TestRecord {
        self.record.attachments = self
            .files
            .into_iter()
            .map(|(name, mime_type, content)| Attachment {
                name,
                mime_type,
                content: content.freeze(),
            })
            .collect();
        self.record
    }
}

/// Collects each test run's events (keyed by test id and route code) and
/// yields one [`TestRecord`] when a final status arrives; a later event for
/// the same key starts a new run. `exists` events (listings) and events with
/// no test id are not runs and are ignored, as testtools ignores them.
#[derive(Debug, Default)]
pub struct Aggregator {
    open: OpenRuns<Partial>,
}

impl Aggregator {
    /// An aggregator with no runs open.
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Takes one event; returns the record of the run it finished, if any.
    pub fn push(&mut self, event: &Event) -> Option<TestRecord> {
        let test_id = event.test_id.as_deref()?;
        if event.status == Some(Status::Exists) {
            return None;
        }
        let key = (test_id.to_owned(), event.route_code.clone());
        self.open.entry(key.clone(), Partial::new).update(event);
        if !event.status.is_some_and(Status::is_final) {
            return None;
        }
        self.open.remove(&key).map(Partial::into_record)
    }

    /// The runs still open, in the order they started.
    pub fn running(&self, now: Timestamp) -> Vec<Running> {
        self.open
            .iter()
            .map(|partial| Running {
                test_id: partial.record.test_id.clone(),
                route_code: partial.record.route_code.clone(),
                start: partial.record.start,
                elapsed: partial
                    .record
                    .start
                    .map(|start| now.saturating_since(start)),
            })
            .collect()
    }

    /// Ends the stream: the records of every run it left open, in the order
    /// they started.
    pub fn finish(&mut self) -> Vec<TestRecord> {
        self.open
            .drain()
            .into_iter()
            .map(Partial::into_record)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u32) -> Timestamp {
        Timestamp::new(seconds, 0)
    }

    #[test]
    fn one_record_per_run_with_attachments() {
        let mut aggregator = Aggregator::new();
        let start = Event::test("t", Status::InProgress).at(at(10)).tagged("a");
        assert_eq!(aggregator.push(&start), None);
        let chunk = |text: &'static str, eof| {
            Event::file(Some("t".into()), "traceback", text.as_bytes(), eof)
                .with_mime_type("text/plain")
        };
        assert_eq!(aggregator.push(&chunk("bo", false)), None);
        assert_eq!(aggregator.push(&chunk("om", true)), None);
        let running = aggregator.running(at(12));
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].elapsed, Some(Duration::from_secs(2)));
        let record = aggregator
            .push(&Event::test("t", Status::Fail).at(at(13)))
            .expect("finished");
        assert_eq!(record.status, Some(Status::Fail));
        assert_eq!(record.duration(), Some(Duration::from_secs(3)));
        assert_eq!(record.tags, BTreeSet::from(["a".to_owned()]));
        let traceback = record.attachment("traceback").expect("attached");
        assert_eq!(&traceback.content[..], b"boom");
        assert_eq!(traceback.mime_type.as_deref(), Some("text/plain"));
        assert!(aggregator.running(at(14)).is_empty());
    }

    #[test]
    fn reruns_and_routes_are_separate_records() {
        let mut aggregator = Aggregator::new();
        let mut records = Vec::new();
        for route in ["0", "1", "0"] {
            aggregator.push(&Event::test("t", Status::InProgress).routed(route));
            records.extend(aggregator.push(&Event::test("t", Status::Success).routed(route)));
        }
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn unfinished_runs_are_flushed_at_the_end() {
        let mut aggregator = Aggregator::new();
        aggregator.push(&Event::test("slow", Status::InProgress));
        aggregator.push(&Event::file(Some("quiet".into()), "log", &b"x"[..], false));
        aggregator.push(&Event::test("listed", Status::Exists));
        let left: Vec<_> = aggregator
            .finish()
            .into_iter()
            .map(|r| (r.test_id, r.status))
            .collect();
        assert_eq!(
            left,
            vec![
                ("slow".into(), Some(Status::InProgress)),
                ("quiet".into(), None)
            ]
        );
    }
}
