//! Per-test results from a job's subunit v2 results stream, parsed as the stream is uploaded.
//!
//! The store keeps how far the stream is parsed; each upload decodes only the complete packets after that offset
//! (a packet split across uploads, like text that reaches the end of an upload, waits for its rest) and records
//! their test events with the new offset in one step. A corrupt packet stops the parsing for good and records why;
//! the bytes stay stored and readable.

use crate::api::bytes_from;
use proctor_store::{Store, StoreError, StreamKind, TestUpdate};
use proctor_subunit::{DecodedRef, Decoder, EventRef, Status, PARSER_TEST_ID};

/// What decoding the unparsed tail of a stream found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// How many bytes of the tail held complete packets (or plain text) and were decoded.
    pub(crate) consumed: usize,
    /// The test events, in stream order.
    pub(crate) updates: Vec<TestUpdate>,
    /// Why decoding stopped at `consumed` for good, when the stream is corrupt there.
    pub(crate) problem: Option<String>,
}

/// Parses the new part of the job's results ([`parse_new_results`]) and says on the server's standard error, for
/// its operator, when the stream is corrupt or the parse failed. The parse never fails its caller: the bytes are
/// stored either way, and a failed parse is retried by the next one (the next upload, or the end of the job).
pub(crate) fn parse_and_report(store: &dyn Store, job_id: &str, at_end: bool) {
    match parse_new_results(store, job_id, at_end) {
        Ok(None) => {}
        Ok(Some(problem)) => eprintln!("proctor server: job {job_id}: {problem}"),
        Err(error) => {
            eprintln!("proctor server: job {job_id}: parsing its results failed: {error}")
        }
    }
}

/// Parses whatever complete packets arrived in the job's results stream since the last parse and records their
/// test events. `at_end` says the stream is complete (the job ended), so a packet cut short there is corrupt
/// rather than waiting for its rest. Returns the problem when this parse found the stream corrupt.
pub(crate) fn parse_new_results(
    store: &dyn Store,
    job_id: &str,
    at_end: bool,
) -> Result<Option<String>, StoreError> {
    let progress = store.results_progress(job_id)?;
    if progress.problem.is_some() {
        return Ok(None);
    }
    let from = progress.parsed_offset;
    let chunks = store.read_stream(job_id, StreamKind::Results, from, None)?;
    let (tail, _) = bytes_from(chunks, from);
    let parsed = decode_tail(&tail, from, at_end);
    if parsed.consumed == 0 && parsed.problem.is_none() {
        return Ok(None);
    }
    let to = from + parsed.consumed as u64;
    let recorded = store.record_parsed_results(
        job_id,
        from,
        to,
        &parsed.updates,
        parsed.problem.as_deref(),
    )?;
    Ok(parsed.problem.filter(|_| recorded))
}

/// Decodes the complete packets at the start of `tail` (which starts at byte `base` of the stream); with `at_end`,
/// a partial packet at its end is corrupt.
///
/// Unless `at_end`, plain text that runs to the end of `tail` is left unconsumed: the decoder tracks whether text
/// stops inside a UTF-8 character (whose `0xb3` byte then is text, not a packet start), and the next upload starts
/// a fresh decoder, so it must see that text again whole rather than begin inside the character.
pub(crate) fn decode_tail(tail: &[u8], base: u64, at_end: bool) -> Parsed {
    let mut decoder = Decoder::new();
    let mut parsed = Parsed::default();
    loop {
        let rest = &tail[parsed.consumed..];
        let (update, consumed) = match decoder.decode_ref(rest, at_end) {
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
            DecodedRef::Event { event, consumed } => (test_update(&event), consumed),
            DecodedRef::NeedMore { .. } | DecodedRef::Empty => return parsed,
        };
        parsed.consumed += consumed;
        parsed.updates.extend(update);
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

/// The test event an event carries: a test id with a status other than `exists` (a listing, not a run).
fn test_update(event: &EventRef<'_>) -> Option<TestUpdate> {
    let test_id = event.test_id?;
    let status = event.status.filter(|status| *status != Status::Exists)?;
    Some(TestUpdate {
        test_id: test_id.to_owned(),
        status: status.as_str().to_owned(),
        at: event.timestamp.and_then(|at| {
            let micros = i64::from(at.seconds) * 1_000_000 + i64::from(at.nanos / 1_000);
            jiff::Timestamp::from_microsecond(micros).ok()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_subunit::{encode, Event, Timestamp};

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

    #[test]
    fn a_packet_cut_short_waits_for_its_rest() {
        let mut stream = packet("t.a", Status::InProgress, 10);
        let first_len = stream.len();
        stream.extend(packet("t.a", Status::Success, 12));
        let parsed = decode_tail(&stream[..first_len + 3], 0, false);
        assert_eq!(parsed.consumed, first_len);
        assert_eq!(parsed.updates.len(), 1);
        assert_eq!(parsed.updates[0].status, "inprogress");
        let parsed = decode_tail(&stream[first_len..], first_len as u64, false);
        assert_eq!(parsed.consumed, stream.len() - first_len);
        assert_eq!(parsed.updates[0].status, "success");
        assert_eq!(parsed.problem, None);
    }

    /// Parses `stream` as the server does when it arrives in two uploads split at `split`, then ends: returns how
    /// far the parse got, its test events and its problem.
    fn parse_in_two_uploads(
        stream: &[u8],
        split: usize,
    ) -> (usize, Vec<TestUpdate>, Option<String>) {
        let mut offset = 0;
        let mut updates = Vec::new();
        for (available, at_end) in [(split, false), (stream.len(), false), (stream.len(), true)] {
            let parsed = decode_tail(&stream[offset..available], offset as u64, at_end);
            offset += parsed.consumed;
            updates.extend(parsed.updates);
            if parsed.problem.is_some() {
                return (offset, updates, parsed.problem);
            }
        }
        (offset, updates, None)
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
        let whole = decode_tail(&stream, 0, true);
        assert_eq!(whole.problem, None);
        assert_eq!(whole.updates.len(), 3);
        for split in 0..=stream.len() {
            let (parsed_to, updates, problem) = parse_in_two_uploads(&stream, split);
            assert_eq!(problem, None, "split at byte {split}");
            assert_eq!(parsed_to, stream.len(), "split at byte {split}");
            assert_eq!(updates, whole.updates, "split at byte {split}");
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
        let parsed = decode_tail(&stream, 100, false);
        assert_eq!(parsed.consumed, good);
        assert_eq!(parsed.updates.len(), 1);
        let problem = parsed.problem.unwrap();
        assert!(
            problem.contains(&format!("byte {}", 100 + good)),
            "{problem}"
        );
    }
}
