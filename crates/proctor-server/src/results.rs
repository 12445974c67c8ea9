//! Test runs from a job's subunit v2 results stream, parsed as the stream is uploaded, with the one fold of events
//! into runs that every reader of results uses ([`Aggregator`]).
//!
//! The store keeps how far the stream is parsed and the runs the parse left open; each upload decodes only the
//! complete packets after that offset (a packet split across uploads, like text that reaches the end of an upload,
//! waits for its rest), resumes the fold from the open runs, and records the runs that ended or went on with the
//! new offset in one step. Each attempt of a job has its own part of the stream: when an attempt ends, the runs it
//! left open did not finish, and the next attempt's part is parsed with a fresh fold. A corrupt packet stops the
//! parsing of its attempt for good and records why; the bytes stay stored and readable.

use crate::api::bytes_from;
use proctor_events::{Aggregator, OpenRun, RunStatus, TestRecord, Try};
use proctor_store::{
    JobAttempt, JobState, ResultsProgress, Store, StoreError, StreamKind, TestRun,
};
use proctor_subunit::{DecodedRef, Decoder, EventRef, Timestamp, PARSER_TEST_ID};

/// What decoding the unparsed tail of a stream found.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// How many bytes of the tail held complete packets (or plain text) and were decoded.
    pub(crate) consumed: usize,
    /// The runs that ended, in the order they ended.
    pub(crate) ended: Vec<TestRecord>,
    /// Why decoding stopped at `consumed` for good, when the stream is corrupt there.
    pub(crate) problem: Option<String>,
}

/// Parses the new part of the job's results ([`parse_new_results`]) and says on the server's standard error, for
/// its operator, when the stream is corrupt or the parse failed. The parse never fails its caller: the bytes are
/// stored either way, and a failed parse is retried by the next one (the next upload, or the end of the job).
pub(crate) fn parse_and_report(store: &dyn Store, job_id: &str, attempt_over: bool) {
    match parse_new_results(store, job_id, attempt_over) {
        Ok(None) => {}
        Ok(Some(problem)) => eprintln!("proctor server: job {job_id}: {problem}"),
        Err(error) => {
            eprintln!("proctor server: job {job_id}: parsing its results failed: {error}")
        }
    }
}

/// Parses whatever complete packets arrived in the job's results stream since the last parse and records the test
/// runs they ended or went on with. `attempt_over` says the job's current attempt has ended (the job ended, or its
/// agent was lost), so its stream is complete: a packet cut short there is corrupt rather than waiting for its
/// rest, and a run it left open did not finish. An earlier attempt's part of the stream is always complete.
/// Returns the problem when this parse found the stream corrupt.
pub(crate) fn parse_new_results(
    store: &dyn Store,
    job_id: &str,
    attempt_over: bool,
) -> Result<Option<String>, StoreError> {
    let mut found = None;
    loop {
        let progress = store.results_progress(job_id)?;
        let attempts = store.job_attempts(job_id)?;
        let next = attempts.iter().find(|a| a.attempt > progress.attempt);
        let this = attempts.iter().find(|a| a.attempt == progress.attempt);
        let ending = match next {
            Some(_) => Some(attempt_ended(progress.attempt, this)),
            None if attempt_over => Some(job_ended(store, job_id, progress.attempt, this)?),
            None => None,
        };
        let until = next.map(|next| next.results_base);
        let (runs, parsed_to) = parse_attempt(store, job_id, &progress, until, ending.as_deref())?;
        // A problem found in an earlier attempt's part is reported, though the parse goes on with the next attempt.
        let new_problem = parsed_to
            .problem
            .clone()
            .filter(|_| progress.problem.is_none());
        let to = match next {
            Some(next) => ResultsProgress {
                attempt: next.attempt,
                parsed_offset: next.results_base,
                problem: None,
            },
            None => parsed_to,
        };
        if (!runs.is_empty() || to != progress)
            && !store.record_parsed_results(job_id, &progress, &to, &runs)?
        {
            // Another parse got there first. Its parse may not have been the end of the attempt this one is, so
            // this one starts again from where that one left the stream (each retry follows someone's progress).
            continue;
        }
        found = found.or(new_problem);
        if next.is_none() {
            return Ok(found);
        }
    }
}

/// Why runs an attempt left open did not finish, when a later attempt started.
fn attempt_ended(attempt: u32, this: Option<&JobAttempt>) -> String {
    match this.and_then(|a| a.end_reason.as_deref()) {
        Some(reason) => format!("its stream ended with attempt {attempt}: {reason}"),
        None => format!("its stream ended with attempt {attempt}, before it did"),
    }
}

/// Why runs the job's last attempt left open did not finish: the attempt's end, or the job's.
fn job_ended(
    store: &dyn Store,
    job_id: &str,
    attempt: u32,
    this: Option<&JobAttempt>,
) -> Result<String, StoreError> {
    if this.is_some_and(|a| a.end_reason.is_some()) {
        return Ok(attempt_ended(attempt, this));
    }
    let job = store.job(job_id)?;
    // A passed or failed job's reason is the verdict on its tests, which says nothing of why this one stopped.
    let cut_short = matches!(
        job.state,
        JobState::Error | JobState::Killed | JobState::Cancelled
    );
    Ok(match job.reason {
        Some(reason) if cut_short => {
            format!(
                "its stream ended before it did: the job ended {}: {reason}",
                job.state.as_str()
            )
        }
        _ => "its stream ended before it did".to_owned(),
    })
}

/// Parses one attempt's stream from `progress` up to `until` (the next attempt's start; the stream's end when
/// `None`): the runs that ended or went on, in the order to record them, and how far the parse got. With `ending`,
/// the attempt's stream is complete and the runs it left open did not finish, for that reason.
fn parse_attempt(
    store: &dyn Store,
    job_id: &str,
    progress: &ResultsProgress,
    until: Option<u64>,
    ending: Option<&str>,
) -> Result<(Vec<TestRun>, ResultsProgress), StoreError> {
    let open = store.open_test_runs(job_id, progress.attempt)?;
    let mut parsed = Parsed::default();
    let mut aggregator = Aggregator::resume(open.into_iter().map(open_run));
    if progress.problem.is_none() {
        let from = progress.parsed_offset;
        let chunks = store.read_stream(job_id, StreamKind::Results, from, None)?;
        let (mut tail, _) = bytes_from(chunks, from);
        if let Some(until) = until {
            tail.truncate(usize::try_from(until.saturating_sub(from)).unwrap_or(usize::MAX));
        }
        parsed = decode_tail(&tail, from, ending.is_some(), &mut aggregator);
    }
    let attempt = progress.attempt;
    let to = ResultsProgress {
        attempt,
        parsed_offset: progress.parsed_offset + parsed.consumed as u64,
        problem: progress.problem.clone().or(parsed.problem),
    };
    let mut runs: Vec<TestRun> = parsed
        .ended
        .iter()
        .map(|record| test_run(record, attempt, RunStatus::of(record.status), None))
        .collect();
    match ending {
        Some(reason) => {
            // Past a corrupt packet the stream may well have gone on: what ended these runs is the parse.
            let reason = match &to.problem {
                Some(problem) => format!("its stream could not be read to its end: {problem}"),
                None => reason.to_owned(),
            };
            runs.extend(
                aggregator
                    .finish()
                    .iter()
                    .map(|record| test_run(record, attempt, RunStatus::Unfinished, Some(&reason))),
            );
        }
        None => runs.extend(
            aggregator
                .open_runs()
                .into_iter()
                .map(|run| running(run, attempt)),
        ),
    }
    Ok((runs, to))
}

/// An open run as the store keeps it, for the fold to resume from.
fn open_run(run: TestRun) -> OpenRun {
    OpenRun {
        test_id: run.test_id,
        route_code: run.route_code,
        start: run.started_at.map(subunit_time),
        end: run.ended_at.map(subunit_time),
        tags: run.tags.into_iter().collect(),
    }
}

/// A run the fold has open as the store keeps it.
fn running(run: OpenRun, attempt: u32) -> TestRun {
    TestRun {
        attempt,
        retry: proctor_events::retry_of(run.tags.iter().map(String::as_str)),
        test_id: run.test_id,
        route_code: run.route_code,
        status: RunStatus::Running,
        reason: None,
        started_at: run.start.and_then(store_time),
        ended_at: run.end.and_then(store_time),
        duration_us: None,
        agent_id: None,
        tags: run.tags.into_iter().collect(),
    }
}

/// A run of the fold that ended as the store keeps it.
fn test_run(record: &TestRecord, attempt: u32, status: RunStatus, reason: Option<&str>) -> TestRun {
    let at = Try::of(record, attempt);
    TestRun {
        attempt,
        test_id: record.test_id.clone(),
        route_code: record.route_code.clone(),
        retry: at.retry,
        status,
        reason: reason.map(str::to_owned),
        started_at: record.start.and_then(store_time),
        ended_at: record.end.and_then(store_time),
        // A run that never ended has no duration, only a start.
        duration_us: record
            .duration()
            .filter(|_| status != RunStatus::Unfinished)
            .map(|duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)),
        agent_id: None,
        tags: record.tags.iter().cloned().collect(),
    }
}

/// A stream timestamp as the store keeps times (microseconds).
fn store_time(at: Timestamp) -> Option<jiff::Timestamp> {
    let micros = i64::from(at.seconds) * 1_000_000 + i64::from(at.nanos / 1_000);
    jiff::Timestamp::from_microsecond(micros).ok()
}

/// A stored time as a stream timestamp (times before 1970 or after 2106, which no stream carries, clamp).
fn subunit_time(at: jiff::Timestamp) -> Timestamp {
    let micros = at.as_microsecond().max(0);
    let seconds = u32::try_from(micros / 1_000_000).unwrap_or(u32::MAX);
    Timestamp::new(
        seconds,
        u32::try_from(micros % 1_000_000).unwrap_or(0) * 1_000,
    )
}

/// Decodes the complete packets at the start of `tail` (which starts at byte `base` of the stream) into
/// `aggregator`; with `at_end`, a partial packet at its end is corrupt.
///
/// Unless `at_end`, plain text that runs to the end of `tail` is left unconsumed: the decoder tracks whether text
/// stops inside a UTF-8 character (whose `0xb3` byte then is text, not a packet start), and the next upload starts
/// a fresh decoder, so it must see that text again whole rather than begin inside the character.
pub(crate) fn decode_tail(
    tail: &[u8],
    base: u64,
    at_end: bool,
    aggregator: &mut Aggregator,
) -> Parsed {
    let mut decoder = Decoder::new();
    let mut parsed = Parsed::default();
    loop {
        let rest = &tail[parsed.consumed..];
        let consumed = match decoder.decode_ref(rest, at_end) {
            DecodedRef::Event { event, .. } if event.test_id == Some(PARSER_TEST_ID) => {
                let at = base + parsed.consumed as u64;
                parsed.problem = Some(corruption(&mut decoder, at));
                return parsed;
            }
            DecodedRef::Event { event, consumed }
                if !at_end && consumed == rest.len() && is_plain_text(&event, consumed) =>
            {
                return parsed;
            }
            DecodedRef::Event { event, consumed } => {
                parsed.ended.extend(aggregator.push_ref(&event));
                consumed
            }
            DecodedRef::NeedMore { .. } | DecodedRef::Empty => return parsed,
        };
        parsed.consumed += consumed;
    }
}

/// Whether a decoded event is non-subunit text rather than a packet: only text carries every byte it consumed as
/// its content (a packet's content excludes at least its header and checksum).
fn is_plain_text(event: &EventRef<'_>, consumed: usize) -> bool {
    event.test_id.is_none()
        && event
            .file
            .is_some_and(|file| file.content.len() == consumed)
}

/// The reason for the malformed packet the decoder just reported: its next event carries the parser's message.
fn corruption(decoder: &mut Decoder, at: u64) -> String {
    let message = match decoder.decode_ref(&[], false) {
        DecodedRef::Event { event, .. } => event
            .file
            .map(|file| String::from_utf8_lossy(file.content).into_owned()),
        _ => None,
    };
    format!(
        "the subunit results stream is corrupt at byte {at}: {}; per-test results stop there",
        message.as_deref().unwrap_or("malformed packet")
    )
}

/// A job's whole results stream as a JUnit XML report (retries grouped as JUnit's flaky and rerun elements), or
/// why it cannot be read to its end.
pub(crate) fn junit_xml(stream: &[u8]) -> Result<String, String> {
    use proctor_events::Sink;
    let mut junit = proctor_formats::junit::JunitSink::new().group_retries(true);
    for event in proctor_subunit::EventReader::new(stream) {
        let event = event.map_err(|error| format!("the results stream cannot be read: {error}"))?;
        junit
            .event(&event)
            .map_err(|error| format!("the results cannot be reported: {error}"))?;
    }
    junit
        .finish()
        .map_err(|error| format!("the results cannot be reported: {error}"))?;
    junit
        .to_xml_string()
        .map_err(|error| format!("the JUnit report cannot be written: {error}"))
}

/// The most of one attachment a page shows.
const ATTACHMENT_SHOWN: usize = 64 * 1024;

/// The attachments of every failed test run in a results stream (tracebacks, output), by test id, as text: each
/// `--- name ---` and its content (the first 64 KiB). A stream cut short gives what it held.
pub(crate) fn failure_attachments(stream: &[u8]) -> std::collections::HashMap<String, String> {
    let mut aggregator = Aggregator::new();
    let mut records = Vec::new();
    for event in proctor_subunit::EventReader::new(stream) {
        let Ok(event) = event else { break };
        records.extend(aggregator.push(&event));
    }
    records.extend(aggregator.finish());
    let mut shown: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for record in records {
        if RunStatus::of(record.status).outcome() != Some(proctor_events::Outcome::Failed) {
            continue;
        }
        let text = shown.entry(record.test_id.clone()).or_default();
        for attachment in &record.attachments {
            let content = &attachment.content[..attachment.content.len().min(ATTACHMENT_SHOWN)];
            text.push_str(&format!("--- {} ---\n", attachment.name));
            text.push_str(&String::from_utf8_lossy(content));
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    shown.retain(|_, text| !text.is_empty());
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_subunit::{encode, Event, Status};

    fn packet(test_id: &str, status: Status, second: u32) -> Vec<u8> {
        let event = Event {
            test_id: Some(test_id.into()),
            status: Some(status),
            timestamp: Some(Timestamp::new(second, 0)),
            ..Event::default()
        };
        let mut bytes = Vec::new();
        encode(&event, &mut bytes).unwrap();
        bytes
    }

    /// What a list of ended runs says, for comparing.
    fn ended(records: &[TestRecord]) -> Vec<(String, Option<Status>, Option<Timestamp>)> {
        records
            .iter()
            .map(|r| (r.test_id.clone(), r.status, r.start))
            .collect()
    }

    #[test]
    fn a_packet_cut_short_waits_for_its_rest() {
        let mut stream = packet("t.a", Status::InProgress, 10);
        let first_len = stream.len();
        stream.extend(packet("t.a", Status::Success, 12));
        let mut aggregator = Aggregator::new();
        let parsed = decode_tail(&stream[..first_len + 3], 0, false, &mut aggregator);
        assert_eq!(parsed.consumed, first_len);
        assert!(parsed.ended.is_empty());
        let mut resumed = Aggregator::resume(aggregator.open_runs());
        let parsed = decode_tail(&stream[first_len..], first_len as u64, false, &mut resumed);
        assert_eq!(parsed.consumed, stream.len() - first_len);
        assert_eq!(
            ended(&parsed.ended),
            [(
                "t.a".into(),
                Some(Status::Success),
                Some(Timestamp::new(10, 0))
            )]
        );
        assert!(parsed.problem.is_none());
    }

    /// Parses `stream` as the server does when it arrives in two uploads split at `split`, then ends, saving the
    /// fold's open runs between parses as the store does: returns how far the parse got, the runs that ended and
    /// the problem.
    fn parse_in_two_uploads(
        stream: &[u8],
        split: usize,
    ) -> (usize, Vec<TestRecord>, Option<String>) {
        let mut offset = 0;
        let mut records = Vec::new();
        let mut open = Vec::new();
        for (available, at_end) in [(split, false), (stream.len(), false), (stream.len(), true)] {
            let mut aggregator = Aggregator::resume(open);
            let parsed = decode_tail(
                &stream[offset..available],
                offset as u64,
                at_end,
                &mut aggregator,
            );
            offset += parsed.consumed;
            records.extend(parsed.ended);
            if parsed.problem.is_some() {
                return (offset, records, parsed.problem);
            }
            open = aggregator.open_runs();
        }
        (offset, records, None)
    }

    #[test]
    fn text_split_inside_a_character_parses_whole_at_every_split_point() {
        // "ó" is c3 b3: its second byte is the packet signature unless the text before it is tracked. (Inside a
        // packet, an attachment's text is length-delimited, so a split there waits like any cut packet.)
        let mut stream = packet("t.a", Status::InProgress, 10);
        stream.extend("out: ó\n".as_bytes());
        let attachment = Event::text(Some("t.a".into()), "traceback", "café ó");
        encode(&attachment, &mut stream).unwrap();
        stream.extend(packet("t.a", Status::Success, 12));
        stream.extend("ó".as_bytes());
        stream.extend(packet("t.b", Status::Fail, 13));
        stream.extend("tail ó".as_bytes());
        let whole = decode_tail(&stream, 0, true, &mut Aggregator::new());
        assert_eq!(whole.problem, None);
        assert_eq!(whole.ended.len(), 2);
        for split in 0..=stream.len() {
            let (parsed_to, records, problem) = parse_in_two_uploads(&stream, split);
            assert_eq!(problem, None, "split at byte {split}");
            assert_eq!(parsed_to, stream.len(), "split at byte {split}");
            assert_eq!(
                ended(&records),
                ended(&whole.ended),
                "split at byte {split}"
            );
        }
    }

    #[test]
    fn a_corrupt_packet_stops_the_parse_where_it_starts() {
        let mut stream = packet("t.a", Status::Success, 10);
        let good = stream.len();
        let mut bad = packet("t.b", Status::Fail, 11);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        stream.extend(bad);
        let parsed = decode_tail(&stream, 100, false, &mut Aggregator::new());
        assert_eq!(parsed.consumed, good);
        assert_eq!(parsed.ended.len(), 1);
        let problem = parsed.problem.unwrap();
        assert!(
            problem.contains(&format!("byte {}", 100 + good)),
            "{problem}"
        );
    }

    #[test]
    fn stream_times_survive_the_store_to_the_microsecond() {
        let at = Timestamp::new(1_700_000_000, 123_456_000);
        assert_eq!(store_time(at).map(subunit_time), Some(at));
    }
}
