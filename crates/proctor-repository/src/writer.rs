//! Writing one run into the repository as it happens.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proctor_events::{Aggregator, Sink, SinkError, TestRecord};
use proctor_subunit::{EncodeError, Event, EventWriter, Timestamp};

use crate::failing::counts_as_failing;
use crate::{ProcessCost, RepoError, Repository, RunCounts, RunInfo, RunState};

/// The first and last timestamps a stream carried.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Span {
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

impl Span {
    pub(crate) fn of_records(records: &[TestRecord]) -> Span {
        let mut span = Span::default();
        for record in records {
            record
                .start
                .into_iter()
                .chain(record.end)
                .for_each(|t| span.add(t));
        }
        span
    }

    fn add(&mut self, timestamp: Timestamp) {
        self.first = Some(self.first.map_or(timestamp, |t| t.min(timestamp)));
        self.last = Some(self.last.map_or(timestamp, |t| t.max(timestamp)));
    }

    /// The time from the first timestamp to the last.
    pub(crate) fn duration(self) -> Option<Duration> {
        Some(self.last?.saturating_since(self.first?))
    }

    /// The first timestamp as a point in time, if it is a valid one.
    pub(crate) fn start(self) -> Option<jiff::Timestamp> {
        let first = self.first?;
        let nanos = i32::try_from(first.nanos).ok()?;
        jiff::Timestamp::new(i64::from(first.seconds), nanos).ok()
    }
}

/// How a run's start and duration are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The run happens now: the wall clock measures it.
    Live,
    /// The run happened elsewhere: its stream's timestamps say when.
    Imported,
}

/// A run being written: a [`Sink`] that appends every event to the run's
/// stream file as it arrives, and notes each test's result for the history
/// and the failing set. End it with [`RunWriter::complete`] or
/// [`RunWriter::interrupt`]; a writer dropped without either (or a process
/// that dies) leaves the run [`RunState::Unfinished`], its stream readable
/// up to the last test that ended (or the last [`Sink::flush`]).
///
/// The stream file stays locked while the writer lives, which is how
/// readers tell a run in progress from one whose writer went away.
#[derive(Debug)]
pub struct RunWriter {
    repository: Repository,
    info: RunInfo,
    path: PathBuf,
    stream: EventWriter<BufWriter<File>>,
    aggregator: Aggregator,
    records: Vec<TestRecord>,
    span: Span,
    began: Instant,
    clock: Clock,
}

impl RunWriter {
    pub(crate) fn new(
        repository: Repository,
        info: RunInfo,
        path: PathBuf,
        file: File,
        clock: Clock,
    ) -> RunWriter {
        RunWriter {
            repository,
            info,
            path,
            stream: EventWriter::new(BufWriter::with_capacity(64 * 1024, file)),
            aggregator: Aggregator::new(),
            records: Vec::new(),
            span: Span::default(),
            began: Instant::now(),
            clock,
        }
    }

    /// The run's id.
    pub fn id(&self) -> u64 {
        self.info.id
    }

    /// The run's stream file.
    pub fn stream_path(&self) -> &Path {
        &self.path
    }

    /// Records what each suite's test processes cost in this run (by suite
    /// name), for the history to keep when the run ends.
    pub fn set_process_costs(&mut self, processes: BTreeMap<String, ProcessCost>) {
        self.info.processes = processes;
    }

    /// Ends the run normally: records its tests in the history and updates
    /// the failing set by its kind.
    pub fn complete(self) -> Result<RunInfo, RepoError> {
        self.end(RunState::Complete)
    }

    /// Ends a run that was stopped before all its tests ran: what ran is
    /// recorded, and it updates the failing set as a partial run does
    /// (whatever its kind), since the tests it did not reach have not been
    /// fixed. Tests it cut off count as failing, as stestr counts them.
    pub fn interrupt(self) -> Result<RunInfo, RepoError> {
        self.end(RunState::Interrupted)
    }

    /// Appends one event; the [`Sink`] implementation reports the same
    /// errors as [`SinkError`]s.
    pub(crate) fn write(&mut self, event: &Event) -> Result<(), RepoError> {
        self.stream.write(event).map_err(|error| match error {
            EncodeError::Io(source) => self.write_error(source),
            source => RepoError::Encode {
                path: self.path.clone(),
                source,
            },
        })?;
        if let Some(timestamp) = event.timestamp {
            self.span.add(timestamp);
        }
        if let Some(record) = self.aggregator.push(event) {
            self.keep(record);
            // A test ended: put it on disk, so that a crash loses only the
            // events of tests still running.
            self.flush_stream()?;
        }
        Ok(())
    }

    /// Keeps what the history and the failing set need of a finished test
    /// run: attachments only for failures, which the failing stream tells
    /// again.
    fn keep(&mut self, mut record: TestRecord) {
        if !counts_as_failing(&record) {
            record.attachments = Vec::new();
        }
        self.records.push(record);
    }

    fn flush_stream(&mut self) -> Result<(), RepoError> {
        self.stream
            .flush()
            .map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: io::Error) -> RepoError {
        RepoError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        }
    }

    fn end(mut self, state: RunState) -> Result<RunInfo, RepoError> {
        let unfinished = self.aggregator.finish();
        unfinished.into_iter().for_each(|record| self.keep(record));
        let file = self
            .stream
            .into_inner()
            .into_inner()
            .map_err(|error| RepoError::Io {
                action: "write",
                path: self.path.clone(),
                source: error.into_error(),
            })?;
        file.sync_data()
            .map_err(RepoError::io("sync", &self.path))?;
        let mut info = self.info;
        info.state = state;
        info.counts = Some(RunCounts::of(&self.records));
        match self.clock {
            Clock::Live => info.duration = Some(self.began.elapsed()),
            Clock::Imported => {
                info.started = self.span.start().unwrap_or(info.started);
                info.duration = self.span.duration();
            }
        }
        self.repository.record_finished(&info, self.records)?;
        // The stream stays locked until the run's state is on disk, so no
        // reader sees a finished run as abandoned.
        drop(file);
        Ok(info)
    }
}

impl Sink for RunWriter {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.write(event).map_err(sink_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.flush_stream().map_err(sink_error)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_stream().map_err(sink_error)
    }
}

/// A sink can only report I/O and encoding errors; keep the file's name in
/// the message.
fn sink_error(error: RepoError) -> SinkError {
    match error {
        RepoError::Encode { source, .. } => SinkError::Encode(source),
        RepoError::Io { ref source, .. } => {
            SinkError::Io(io::Error::new(source.kind(), error.to_string()))
        }
        other => SinkError::Io(io::Error::other(other.to_string())),
    }
}
