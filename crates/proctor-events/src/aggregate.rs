//! From events to one record per finished test run.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proctor_subunit::{Event, EventRef, Status, Tags, Timestamp};

use crate::runs::{OpenRuns, RunKey, RunKeyRef};

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

impl From<(String, Option<String>, BytesMut)> for Attachment {
    fn from((name, mime_type, content): (String, Option<String>, BytesMut)) -> Attachment {
        Attachment {
            name,
            mime_type,
            content: content.freeze(),
        }
    }
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
    /// The most recent tags given (as testtools keeps them). Shared between
    /// records with the same tags, which most streams repeat run after run.
    pub tags: Arc<BTreeSet<String>>,
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

/// A run a stream has started and not yet ended, as [`Aggregator::open_runs`] saves it and
/// [`Aggregator::resume`] takes it back: enough to end it in a later part of the stream (its attachments so far are
/// not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRun {
    /// The test id.
    pub test_id: String,
    /// Where it runs.
    pub route_code: Option<String>,
    /// The first timestamp seen for it.
    pub start: Option<Timestamp>,
    /// The latest timestamp seen for it.
    pub end: Option<Timestamp>,
    /// Its tags so far.
    pub tags: BTreeSet<String>,
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

/// What is known so far of a run that has not ended.
#[derive(Debug)]
struct Partial {
    status: Option<Status>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    tags: Arc<BTreeSet<String>>,
    files: Vec<(String, Option<String>, BytesMut)>,
}

impl Partial {
    /// A run with nothing known yet; `no_tags` is the shared empty set.
    fn new(no_tags: Arc<BTreeSet<String>>) -> Partial {
        Partial {
            status: None,
            start: None,
            end: None,
            tags: no_tags,
            files: Vec::new(),
        }
    }

    /// Takes an event of this run; tag sets are shared through `tag_sets`.
    fn update(&mut self, event: &EventRef<'_>, tag_sets: &mut TagSets) {
        if event.status.is_some() {
            self.status = event.status;
        }
        if let Some(timestamp) = event.timestamp {
            self.start.get_or_insert(timestamp);
            self.end = Some(timestamp);
        }
        if !event.tags.is_empty() && !event.tags.same_as(&self.tags) {
            self.tags = tag_sets.get(&event.tags);
        }
        if let Some(file) = &event.file {
            match self.files.iter_mut().find(|(name, ..)| name == file.name) {
                Some((_, mime_type, content)) => {
                    if mime_type.is_none() {
                        *mime_type = event.mime_type.map(str::to_owned);
                    }
                    content.extend_from_slice(file.content);
                }
                None => self.files.push((
                    file.name.to_owned(),
                    event.mime_type.map(str::to_owned),
                    BytesMut::from(file.content),
                )),
            }
        }
    }

    fn into_record(self, key: RunKey) -> TestRecord {
        TestRecord {
            test_id: key.test_id,
            route_code: key.route_code,
            status: self.status,
            start: self.start,
            end: self.end,
            tags: self.tags,
            attachments: if self.files.is_empty() {
                Vec::new()
            } else {
                self.files.into_iter().map(Attachment::from).collect()
            },
        }
    }
}

/// Collects each test run's events (keyed by test id and route code) and
/// yields one [`TestRecord`] when a final status arrives; a later event for
/// the same key starts a new run. `exists` events (listings) and events with
/// no test id are not runs and are ignored, as testtools ignores them.
#[derive(Debug, Default)]
pub struct Aggregator {
    open: OpenRuns<Partial>,
    tag_sets: TagSets,
}

/// The tag sets runs had lately, shared by the records that repeat them:
/// streams tag runs with a few sets over and over (one per worker, say), and
/// sharing saves building and freeing a set per run.
#[derive(Debug, Default)]
struct TagSets {
    recent: VecDeque<Arc<BTreeSet<String>>>,
    empty: Arc<BTreeSet<String>>,
}

impl TagSets {
    /// How many sets are remembered.
    const KEPT: usize = 16;

    fn get(&mut self, tags: &Tags<'_>) -> Arc<BTreeSet<String>> {
        if let Some(set) = self.recent.iter().find(|set| tags.same_as(set)) {
            return Arc::clone(set);
        }
        let set = Arc::new(tags.to_set());
        if self.recent.len() == Self::KEPT {
            self.recent.pop_back();
        }
        self.recent.push_front(Arc::clone(&set));
        set
    }
}

impl Aggregator {
    /// An aggregator with no runs open.
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Takes one event; returns the record of the run it finished, if any.
    pub fn push(&mut self, event: &Event) -> Option<TestRecord> {
        self.push_ref(&event.view())
    }

    /// [`Aggregator::push`] for a borrowed event: a run's key and strings are
    /// copied once, when the run starts.
    pub fn push_ref(&mut self, event: &EventRef<'_>) -> Option<TestRecord> {
        let key = RunKeyRef::of(event)?;
        match event.status {
            Some(Status::Exists) => None,
            Some(status) if status.is_final() => {
                let (key, mut partial) = self.open.remove(key).unwrap_or_else(|| {
                    let partial = Partial::new(Arc::clone(&self.tag_sets.empty));
                    (RunKey::from(&key), partial)
                });
                partial.update(event, &mut self.tag_sets);
                Some(partial.into_record(key))
            }
            _ => {
                let no_tags = &self.tag_sets.empty;
                self.open
                    .entry(key, || Partial::new(Arc::clone(no_tags)))
                    .update(event, &mut self.tag_sets);
                None
            }
        }
    }

    /// An aggregator that goes on from where one that saved `open` ([`Aggregator::open_runs`]) stopped: the
    /// events of the stream's next part end those runs as if the aggregator had seen the whole stream.
    pub fn resume(open: impl IntoIterator<Item = OpenRun>) -> Aggregator {
        let mut aggregator = Aggregator::new();
        for run in open {
            let key = RunKey {
                test_id: run.test_id,
                route_code: run.route_code,
            };
            let tags = if run.tags.is_empty() {
                Arc::clone(&aggregator.tag_sets.empty)
            } else {
                Arc::new(run.tags)
            };
            let partial = Partial {
                status: Some(Status::InProgress),
                start: run.start,
                end: run.end,
                tags,
                files: Vec::new(),
            };
            aggregator.open.insert(key, partial);
        }
        aggregator
    }

    /// The runs still open, in the order they started, to [`resume`](Aggregator::resume) from.
    pub fn open_runs(&self) -> Vec<OpenRun> {
        self.open
            .iter()
            .into_iter()
            .map(|(key, partial)| OpenRun {
                test_id: key.test_id.clone(),
                route_code: key.route_code.clone(),
                start: partial.start,
                end: partial.end,
                tags: partial.tags.as_ref().clone(),
            })
            .collect()
    }

    /// The runs still open, in the order they started.
    pub fn running(&self, now: Timestamp) -> Vec<Running> {
        self.open
            .iter()
            .into_iter()
            .map(|(key, partial)| Running {
                test_id: key.test_id.clone(),
                route_code: key.route_code.clone(),
                start: partial.start,
                elapsed: partial.start.map(|start| now.saturating_since(start)),
            })
            .collect()
    }

    /// Ends the stream: the records of every run it left open, in the order
    /// they started.
    pub fn finish(&mut self) -> Vec<TestRecord> {
        self.open
            .drain()
            .into_iter()
            .map(|(key, partial)| partial.into_record(key))
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
        assert_eq!(*record.tags, BTreeSet::from(["a".to_owned()]));
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

    /// Every way of cutting a stream in two, with the aggregator saved at the cut and resumed after it, ends the
    /// same runs with the same statuses, times and tags as reading it whole.
    #[test]
    fn a_resumed_aggregator_ends_runs_as_one_that_saw_the_whole_stream() {
        let events = [
            Event::test("a", Status::InProgress).at(at(1)).tagged("w0"),
            Event::test("b", Status::InProgress).at(at(2)).routed("1"),
            Event::test("a", Status::InProgress).at(at(2)).routed("0"),
            Event::test("a", Status::Fail).at(at(3)).routed("0"),
            Event::test("b", Status::Success).at(at(5)).routed("1"),
            Event::test("a", Status::Success).at(at(6)),
            Event::test("c", Status::InProgress).at(at(7)),
        ];
        let summary = |records: Vec<TestRecord>| -> Vec<_> {
            records
                .into_iter()
                .map(|r| (r.test_id, r.route_code, r.status, r.start, r.end, r.tags))
                .collect()
        };
        let mut whole = Aggregator::new();
        let mut expected: Vec<_> = events.iter().filter_map(|e| whole.push(e)).collect();
        expected.extend(whole.finish());
        for cut in 0..=events.len() {
            let mut first = Aggregator::new();
            let mut records: Vec<_> = events[..cut].iter().filter_map(|e| first.push(e)).collect();
            let mut second = Aggregator::resume(first.open_runs());
            records.extend(events[cut..].iter().filter_map(|e| second.push(e)));
            records.extend(second.finish());
            assert_eq!(summary(records), summary(expected.clone()), "cut at {cut}");
        }
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
