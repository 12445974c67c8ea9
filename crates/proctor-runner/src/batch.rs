//! Running one batch: one supervised process, its output turned into events
//! as it arrives, and an account of the tests it did not finish.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use proctor_events::{Sink, SinkError};
use proctor_formats::tap::TapParser;
use proctor_sources::{ExitOutcome, Invocation, Protocol, Suite, TestCase};
use proctor_subunit::{Decoded, Decoder, Event, Status, Timestamp};
use proctor_supervisor::{Chunk, CommandSpec, Exit, Limits, Outcome, Running, Stream, Supervisor};

use crate::schedule::ProcessCost;
use crate::workers::Worker;

/// The name of the attachment that says why Proctor failed a test itself.
pub const REASON: &str = "proctor-reason";

/// What a worker needs to start a batch's process.
pub(crate) struct Launch<'a> {
    pub(crate) supervisor: &'a Supervisor,
    pub(crate) suite: &'a Suite,
    pub(crate) worker: &'a Worker,
    pub(crate) route: &'a str,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) grace: Duration,
}

/// What happened to a batch.
#[derive(Default)]
pub(crate) struct BatchEnd {
    /// Tests the process never started, to be run again elsewhere.
    pub(crate) unstarted: Vec<TestCase>,
    /// What the process took, when it finished any test.
    pub(crate) measured: Option<Measured>,
    /// Why the worker is gone, when it was lost under the batch.
    pub(crate) lost: Option<String>,
    /// The tests that had started when the worker was lost: their runs stay unfinished in the stream, and they
    /// run again as a new try.
    pub(crate) interrupted: Vec<TestCase>,
}

/// What one test process took, or several added up: start-up (until the
/// first test began), then running the tests it finished.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Measured {
    processes: u32,
    startup: Duration,
    running: Duration,
    tests: u32,
}

impl Measured {
    /// Adds another process's times.
    pub(crate) fn add(&mut self, other: Measured) {
        self.processes += other.processes;
        self.startup += other.startup;
        self.running += other.running;
        self.tests += other.tests;
    }

    /// The mean start-up and the time per test over the processes measured.
    pub(crate) fn cost(&self) -> Option<ProcessCost> {
        let processes = Some(self.processes).filter(|n| *n > 0)?;
        let tests = Some(self.tests).filter(|n| *n > 0)?;
        Some(ProcessCost {
            startup: self.startup / processes,
            per_test: self.running / tests,
        })
    }
}

/// Starts the batch's process. On failure every test is failed with the
/// reason, so the caller has nothing left to do.
pub(crate) fn start(
    launch: &Launch<'_>,
    batch: &[TestCase],
    emit: &mut dyn FnMut(Event),
) -> Option<(Running, Invocation)> {
    let tests: Vec<&TestCase> = batch.iter().collect();
    let invocation = match launch.suite.invocation(&tests) {
        Ok(invocation) => launch
            .worker
            .place(invocation, launch.grace, launch.memory_limit),
        Err(error) => {
            let reason = format!("could not build the test command: {error}");
            fail_all(batch, &reason, launch.route, emit);
            return None;
        }
    };
    let spec = CommandSpec::new(&invocation.program)
        .args(&invocation.args)
        .cwd(&invocation.cwd)
        .env("PROCTOR_WORKER", launch.route)
        .limits(Limits {
            time: invocation.time_limit,
            no_output: invocation.no_output_limit,
            // A host's wrapper measures the tree there; the ssh client here is not it.
            memory: launch.memory_limit.filter(|_| !launch.worker.is_remote()),
        })
        .grace(launch.grace);
    let spec = if launch.worker.is_remote() {
        spec.stdin_held_open()
    } else {
        spec
    };
    let spec = invocation
        .env
        .iter()
        .fold(spec, |spec, (key, value)| spec.env(key, value));
    match launch.supervisor.spawn(spec) {
        Ok(running) => Some((running, invocation)),
        Err(error) => {
            let reason = format!("could not start the test command: {error}");
            fail_all(batch, &reason, launch.route, emit);
            None
        }
    }
}

/// Reads the process's output to its end, then accounts for every test of
/// the batch.
pub(crate) fn finish(
    running: Running,
    invocation: &Invocation,
    batch: Vec<TestCase>,
    worker: &Worker,
    emit: &mut dyn FnMut(Event),
) -> BatchEnd {
    let route = worker.route.as_str();
    let began = Instant::now();
    let mut tracker = Tracker::default();
    let mut output = Output::new(invocation.protocol, &batch);
    let mut send = |mut event: Event| {
        event.prefix_route(route);
        tracker.see(&event);
        emit(event);
    };
    output.begin(&mut send);
    for chunk in running.output() {
        output.chunk(chunk, &mut send);
    }
    let mut outcome = running.wait();
    if let Ok(ended) = outcome.as_mut() {
        // The host's wrapper killed the tree on its memory limit: the limit fired, as it would here.
        if worker.is_remote() && ended.exit == Exit::Code(crate::ssh::MEMORY_EXCEEDED) {
            ended.limit = Some(proctor_supervisor::Limit::Memory);
        }
    }
    let code = match &outcome {
        Ok(Outcome {
            exit: Exit::Code(code),
            limit: None,
            stopped: false,
            ..
        }) => Some(*code),
        _ => None,
    };
    // A lost worker's exit status is ssh's, not the test's: the tests it had started end with nothing.
    if let Some(lost) = worker.lost(code) {
        let measured = tracker.measured(began);
        let (interrupted, unstarted) = batch
            .into_iter()
            .filter(|test| !tracker.finished.contains(&test.id))
            .partition(|test| tracker.started.contains(&test.id));
        return BatchEnd {
            unstarted,
            measured,
            lost: Some(lost),
            interrupted,
        };
    }
    output.end(outcome.as_ref().ok(), &mut send);
    let (crashed, why) = match &outcome {
        Ok(outcome) => (abnormal(outcome), describe(outcome, invocation, worker)),
        Err(error) => (true, format!("supervision failed: {error}")),
    };
    let measured = tracker.measured(began);
    let mut end = account(batch, &tracker, crashed, &why, emit, route);
    end.measured = measured;
    end
}

/// Fails the tests that started and did not finish, and returns the ones
/// that never started.
fn account(
    batch: Vec<TestCase>,
    tracker: &Tracker,
    crashed: bool,
    why: &str,
    emit: &mut dyn FnMut(Event),
    route: &str,
) -> BatchEnd {
    // A process that left a test unfinished died mid-batch, whatever its exit
    // status says (a shell reports a killed child as 128 + signal).
    let crashed = crashed
        || batch
            .iter()
            .any(|test| tracker.started.contains(&test.id) && !tracker.finished.contains(&test.id));
    let mut unstarted = Vec::new();
    for test in batch {
        if tracker.finished.contains(&test.id) {
            continue;
        }
        if crashed && !tracker.started.contains(&test.id) {
            unstarted.push(test);
            continue;
        }
        let mut event = if tracker.started.contains(&test.id) {
            failure(&test.id, &format!("the test did not finish: {why}"))
        } else {
            failure(
                &test.id,
                &format!("the test command never reported this test ({why})"),
            )
        };
        event.prefix_route(route);
        emit(event);
    }
    BatchEnd {
        unstarted,
        measured: None,
        lost: None,
        interrupted: Vec::new(),
    }
}

fn abnormal(outcome: &Outcome) -> bool {
    outcome.limit.is_some() || outcome.stopped || matches!(outcome.exit, Exit::Signal(_))
}

/// Says how a process ended, naming the limit that fired.
fn describe(outcome: &Outcome, invocation: &Invocation, worker: &Worker) -> String {
    let mut text = String::new();
    match outcome.limit {
        Some(proctor_supervisor::Limit::Time) => {
            let limit = invocation.time_limit.unwrap_or_default();
            let _ = write!(text, "time limit of {limit:?} exceeded; ");
        }
        Some(proctor_supervisor::Limit::NoOutput) => {
            let limit = invocation.no_output_limit.unwrap_or_default();
            let _ = write!(text, "no output for {limit:?}; ");
        }
        Some(proctor_supervisor::Limit::Memory) if worker.is_remote() => {
            text.push_str("memory limit exceeded on the host; ")
        }
        Some(proctor_supervisor::Limit::Memory) => text.push_str("memory limit exceeded; "),
        None if outcome.stopped => text.push_str("the run was interrupted; "),
        None => {}
    }
    let _ = write!(text, "the process exited with {}", outcome.exit);
    text
}

/// A final `fail` for a test, with the reason attached.
pub(crate) fn failure(test_id: &str, reason: &str) -> Event {
    let mut event = Event::text(Some(test_id.to_owned()), REASON, reason).at(Timestamp::now());
    event.status = Some(Status::Fail);
    event
}

fn fail_all(batch: &[TestCase], reason: &str, route: &str, emit: &mut dyn FnMut(Event)) {
    for test in batch {
        let mut event = failure(&test.id, reason);
        event.prefix_route(route);
        emit(event);
    }
}

/// Which tests the process's own events started and finished, and when
/// the first one began.
#[derive(Default)]
struct Tracker {
    started: HashSet<String>,
    finished: HashSet<String>,
    first_test_at: Option<Instant>,
}

impl Tracker {
    fn see(&mut self, event: &Event) {
        let (Some(test_id), Some(status)) = (&event.test_id, event.status) else {
            return;
        };
        self.first_test_at.get_or_insert_with(Instant::now);
        match status {
            Status::Exists => {}
            Status::InProgress => {
                self.started.insert(test_id.clone());
            }
            _ => {
                self.finished.insert(test_id.clone());
            }
        }
    }
}

impl Tracker {
    /// What the process took, from when it was started (`began`) to now.
    fn measured(&self, began: Instant) -> Option<Measured> {
        let first = self.first_test_at?;
        let tests = u32::try_from(self.finished.len()).ok().filter(|n| *n > 0)?;
        Some(Measured {
            processes: 1,
            startup: first.saturating_duration_since(began),
            running: Instant::now().saturating_duration_since(first),
            tests,
        })
    }
}

/// Turns a process's output into events according to its protocol.
enum Output {
    Subunit {
        buffer: BytesMut,
        decoder: Decoder,
    },
    Tap {
        parser: Box<TapParser>,
        line: Vec<u8>,
        /// The batch's test ids, which TAP descriptions are matched to.
        ids: HashSet<String>,
    },
    /// One test, whose result is the exit status.
    ExitStatus {
        test_id: String,
        mapping: proctor_sources::ExitMapping,
        streams: [bool; 2],
    },
}

impl Output {
    fn new(protocol: Protocol, batch: &[TestCase]) -> Output {
        match protocol {
            Protocol::Subunit => Output::Subunit {
                buffer: BytesMut::new(),
                decoder: Decoder::new(),
            },
            Protocol::Tap => Output::Tap {
                parser: Box::new(TapParser::new().with_system_clock()),
                line: Vec::new(),
                ids: batch.iter().map(|test| test.id.clone()).collect(),
            },
            Protocol::ExitStatus(mapping) => Output::ExitStatus {
                test_id: batch.first().map(|t| t.id.clone()).unwrap_or_default(),
                mapping,
                streams: [false; 2],
            },
        }
    }

    fn begin(&mut self, emit: &mut dyn FnMut(Event)) {
        if let Output::ExitStatus { test_id, .. } = self {
            emit(Event::test(test_id.clone(), Status::InProgress).at(Timestamp::now()));
        }
    }

    fn chunk(&mut self, chunk: Chunk, emit: &mut dyn FnMut(Event)) {
        let at = timestamp(chunk.at);
        match (self, chunk.stream) {
            (
                Output::ExitStatus {
                    test_id, streams, ..
                },
                stream,
            ) => {
                let name = stream_name(stream);
                streams[stream as usize] = true;
                emit(Event::file(Some(test_id.clone()), name, chunk.data, false).at(at));
            }
            (_, Stream::Stderr) => emit(Event::file(None, "stderr", chunk.data, false).at(at)),
            (Output::Subunit { buffer, decoder }, Stream::Stdout) => {
                buffer.extend_from_slice(&chunk.data);
                decode_available(buffer, decoder, false, emit);
            }
            (Output::Tap { parser, line, ids }, Stream::Stdout) => {
                line.extend_from_slice(&chunk.data);
                while let Some(end) = line.iter().position(|&b| b == b'\n') {
                    let text: Vec<u8> = line.drain(..=end).collect();
                    feed_tap_line(parser, &text, ids, emit);
                }
            }
        }
    }

    fn end(&mut self, outcome: Option<&Outcome>, emit: &mut dyn FnMut(Event)) {
        match self {
            Output::Subunit { buffer, decoder } => decode_available(buffer, decoder, true, emit),
            Output::Tap { parser, line, ids } => {
                if !line.is_empty() {
                    let rest = std::mem::take(line);
                    feed_tap_line(parser, &rest, ids, emit);
                }
                let mut sink = EmitSink { emit, ids };
                if let Err(error) = parser.finish(&mut sink) {
                    emit(Event::text(None, "stderr", &format!("TAP: {error}\n")));
                }
            }
            Output::ExitStatus {
                test_id,
                mapping,
                streams,
            } => {
                for (index, used) in streams.iter().enumerate() {
                    if *used {
                        let name = if index == 0 { "stdout" } else { "stderr" };
                        emit(Event::file(Some(test_id.clone()), name, &b""[..], true));
                    }
                }
                if let Some(outcome) = outcome.filter(|outcome| !abnormal(outcome)) {
                    if let Exit::Code(code) = outcome.exit {
                        emit(exit_status_event(test_id, mapping.outcome(code), code));
                    }
                }
            }
        }
    }
}

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// The final event for a test whose exit status is its result.
fn exit_status_event(test_id: &str, outcome: ExitOutcome, code: i32) -> Event {
    let status = match outcome {
        ExitOutcome::Pass => Status::Success,
        ExitOutcome::Skip => Status::Skip,
        ExitOutcome::Fail | ExitOutcome::Error => Status::Fail,
    };
    let mut event = match outcome {
        ExitOutcome::Error => failure(test_id, &format!("error: the test exited with code {code}")),
        _ => Event::test(test_id, status).at(Timestamp::now()),
    };
    event.status = Some(status);
    event
}

fn decode_available(
    buffer: &mut BytesMut,
    decoder: &mut Decoder,
    at_eof: bool,
    emit: &mut dyn FnMut(Event),
) {
    loop {
        match decoder.decode(buffer, at_eof) {
            Decoded::Event { event, consumed } => {
                buffer.advance(consumed);
                emit(event);
            }
            Decoded::NeedMore { .. } | Decoded::Empty => return,
        }
    }
}

fn feed_tap_line(
    parser: &mut TapParser,
    line: &[u8],
    ids: &HashSet<String>,
    emit: &mut dyn FnMut(Event),
) {
    let text = String::from_utf8_lossy(line);
    let mut sink = EmitSink { emit, ids };
    if let Err(error) = parser.line(&text, &mut sink) {
        emit(Event::text(None, "stderr", &format!("TAP: {error}\n")));
    }
}

fn timestamp(at: SystemTime) -> Timestamp {
    Timestamp::from_system_time(at)
}

/// Lets a closure stand where the TAP parser wants a sink, giving each
/// result the id of the test it reports on.
struct EmitSink<'a> {
    emit: &'a mut dyn FnMut(Event),
    ids: &'a HashSet<String>,
}

impl Sink for EmitSink<'_> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut event = event.clone();
        if let Some(id) = event
            .test_id
            .as_deref()
            .and_then(|id| listed_id(id, self.ids))
        {
            event.test_id = Some(id.to_owned());
        }
        (self.emit)(event);
        Ok(())
    }
}

/// The batch's test id a TAP result names: the parser calls results
/// `test N - description` (as python-subunit's tap2subunit does), and a
/// suite's test prints its id as the description.
fn listed_id<'a>(tap_id: &str, ids: &'a HashSet<String>) -> Option<&'a String> {
    let numbered = tap_id.strip_prefix("test ")?;
    let description = numbered.trim_start_matches(|c: char| c.is_ascii_digit());
    let description = description
        .strip_prefix(" - ")
        .unwrap_or(description)
        .trim();
    ids.get(description)
}
