//! Interoperability with the reference implementation, python-subunit 1.4.6.
//!
//! - Reference → Proctor: `tests/python/write_streams.py` writes streams with
//!   python-subunit's `StreamResultToBytes` (well-formed, damaged, and mixed
//!   with non-subunit text); each must decode with [`EventReader`] to exactly
//!   what `ByteStreamToStreamResult` decodes (`tests/python/decode_json.py`).
//! - Proctor → reference: events encoded by Proctor must decode in
//!   python-subunit to exactly the events Proctor meant.
//!
//! Events are compared as the JSON objects `decode_json.py` prints. Text
//! (`stdout` chunks of non-subunit bytes) is merged before comparing, since
//! where the reference splits it depends on timing. The differences that
//! SUBUNIT_V2.md documents are asserted explicitly, not hidden.
//!
//! These tests need the Python venv that `./scripts/test` creates; without it
//! they fail with a message saying so.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use proctor_subunit::{Event, EventReader, EventWriter, Status, Timestamp, PARSER_TEST_ID};
use serde_json::{json, Value};

/// Every case `write_streams.py` writes; a case added there must be added
/// here too, so none goes unchecked by accident.
const CASES: &[&str] = &[
    "attachment_chunks",
    "bad_strings",
    "bad_version",
    "bogus_signature_in_text",
    "corrupt_crc",
    "empty",
    "four_byte_length",
    "garbage_then_packet",
    "invalid_utf8_state",
    "lone_signature",
    "long_forms",
    "partial_char_before_packet",
    "short_length",
    "statuses",
    "tags_routes",
    "text_interleaved",
    "text_only",
    "text_trailing_newline",
    "timestamps",
    "truncated_big_body",
    "truncated_body",
    "truncated_header",
    "truncated_surrogate_text",
    "vector_a",
    "vector_b",
    "vector_c",
    "vector_d",
];

// -- events as decode_json.py prints them ------------------------------------

/// A timestamp as the reference presents it: python-subunit builds a
/// `datetime` from `timedelta(seconds, microseconds=nanos / 1000)`, which
/// rounds to the nearest microsecond (half to even), and decode_json.py prints
/// it with six fractional digits.
fn python_timestamp(timestamp: Timestamp) -> String {
    let nanos = u64::from(timestamp.nanos);
    let (quotient, remainder) = (nanos / 1000, nanos % 1000);
    let rounded = match remainder.cmp(&500) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + quotient % 2,
    };
    let micros = i64::from(timestamp.seconds) * 1_000_000 + rounded as i64;
    let time = jiff::Timestamp::from_microsecond(micros).expect("a wire timestamp is in range");
    let civil = time.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        civil.year(),
        civil.month(),
        civil.day(),
        civil.hour(),
        civil.minute(),
        civil.second(),
        micros.rem_euclid(1_000_000),
    )
}

/// An event in decode_json.py's shape.
fn to_json(event: &Event) -> Value {
    let base64 = base64::engine::general_purpose::STANDARD;
    json!({
        "status": event.status.map(Status::as_str),
        "test_id": event.test_id,
        "route_code": event.route_code,
        "timestamp": event.timestamp.map(python_timestamp),
        "runnable": event.runnable,
        // BTreeSet order is byte order, which for UTF-8 is Python's code point order.
        "tags": event.tags.iter().collect::<Vec<_>>(),
        "mime_type": event.mime_type,
        "file_name": event.file.as_ref().map(|file| file.name.as_str()),
        "file_content": event.file.as_ref().map(|file| base64.encode(&file.content)),
        "eof": event.eof,
    })
}

/// Whether an event is a chunk of non-subunit text: file `stdout` with
/// nothing else set (decode_json.py's `is_text`).
fn is_text(event: &Value) -> bool {
    event["file_name"] == "stdout"
        && event["status"].is_null()
        && event["test_id"].is_null()
        && event["route_code"].is_null()
        && event["timestamp"].is_null()
        && event["runnable"] == true
        && event["tags"] == json!([])
        && event["mime_type"].is_null()
        && event["eof"] == false
}

fn content(event: &Value) -> Vec<u8> {
    let text = event["file_content"]
        .as_str()
        .unwrap_or_else(|| panic!("event has no file content: {event}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("file_content is base64")
}

fn set_content(event: &mut Value, bytes: &[u8]) {
    event["file_content"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
}

/// Events as JSON, consecutive text chunks merged into one.
fn normalise(events: &[Event]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for event in events {
        let event = to_json(event);
        match out.last_mut() {
            Some(last) if is_text(last) && is_text(&event) => {
                let mut joined = content(last);
                joined.extend_from_slice(&content(&event));
                set_content(last, &joined);
            }
            _ => out.push(event),
        }
    }
    out
}

// -- decoding both ways ------------------------------------------------------

/// A reader whose reads return 1, 2, 3, 5, 8, ... 987 bytes in turn, like a
/// pipe, so packets and characters straddle reads at many different places.
struct Uneven<R> {
    inner: R,
    turn: usize,
}

impl<R: Read> Read for Uneven<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const SIZES: [usize; 15] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987];
        let len = buf.len().min(SIZES[self.turn % SIZES.len()]);
        self.turn += 1;
        self.inner.read(&mut buf[..len])
    }
}

fn proctor_decode(reader: impl Read) -> Vec<Event> {
    EventReader::new(reader)
        .collect::<io::Result<Vec<_>>>()
        .expect("reading from a file or slice does not fail")
}

/// Proctor's decoding of a file, checked to be the same however the bytes
/// arrive.
fn proctor_json(path: &Path) -> Vec<Value> {
    let file = fs::File::open(path).expect("opens stream");
    let events = normalise(&proctor_decode(file));
    let bytes = fs::read(path).expect("reads stream");
    let uneven = normalise(&proctor_decode(Uneven {
        inner: &bytes[..],
        turn: 0,
    }));
    assert_eq!(
        events,
        uneven,
        "{}: decoding differs when the bytes arrive in small pieces",
        path.display()
    );
    events
}

fn parse_json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8(output.to_vec())
        .expect("decode_json.py prints UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("decode_json.py prints JSON lines"))
        .collect()
}

/// python-subunit's decoding of a file.
fn reference_json(path: &Path) -> Vec<Value> {
    let output = proctor_testkit::run_script_ok("decode_json.py", &[path], b"");
    parse_json_lines(&output)
}

/// python-subunit's decoding of bytes piped to it.
fn reference_json_from_stdin(stream: &[u8]) -> Vec<Value> {
    let output = proctor_testkit::run_script_ok("decode_json.py", &["-"], stream);
    parse_json_lines(&output)
}

/// A readable account of how two event lists differ, or `None`.
fn difference(proctor: &[Value], reference: &[Value]) -> Option<String> {
    if proctor == reference {
        return None;
    }
    let mut text = format!(
        "Proctor decoded {} events, python-subunit {}",
        proctor.len(),
        reference.len()
    );
    if let Some(index) =
        (0..proctor.len().max(reference.len())).find(|&i| proctor.get(i) != reference.get(i))
    {
        let show = |event: Option<&Value>| match event {
            Some(event) => serde_json::to_string_pretty(event).expect("serialises"),
            None => "(none)".to_owned(),
        };
        text += &format!(
            "; first difference at event {index}:\n  Proctor:        {}\n  python-subunit: {}",
            show(proctor.get(index)),
            show(reference.get(index)),
        );
    }
    Some(text)
}

// -- the documented differences ----------------------------------------------

fn is_parser_event(event: &Value, file_name: &str) -> bool {
    event["test_id"] == PARSER_TEST_ID && event["file_name"] == file_name
}

/// A stream cut short inside a packet: both report the same `Short read`
/// error, but the reference's `Packet data` holds only what it had appended
/// to its packet buffer before the failed read (the signature when the cut is
/// in the 5-byte header, the signature and header when it is in the body)
/// and drops the bytes the failed read consumed, while Proctor keeps every
/// byte it consumed: all of them, to the end of the stream. Checks exactly
/// that, then makes Proctor's `Packet data` the reference's so the rest of the
/// comparison covers everything else.
fn reconcile_short_read(stream: &[u8], proctor: &mut [Value], reference: &[Value]) {
    let index = proctor
        .iter()
        .position(|event| is_parser_event(event, "Packet data"))
        .expect("a truncated stream yields a Packet data event");
    let message = String::from_utf8(content(&proctor[index + 1])).expect("UTF-8 message");
    assert!(
        message.starts_with("Short read - got "),
        "unexpected parser error {message:?}"
    );
    let ours = content(&proctor[index]);
    assert!(
        stream.ends_with(&ours) && ours.first() == Some(&0xb3),
        "Proctor's Packet data must be every byte from the signature to the end of the stream"
    );
    let reference_event = reference
        .get(index)
        .filter(|event| is_parser_event(event, "Packet data"))
        .expect("the reference reports Packet data at the same place");
    let theirs = content(reference_event);
    let expected_reference_len = if message.ends_with("wanted 5 bytes") {
        1
    } else {
        6
    };
    assert_eq!(
        theirs.len(),
        expected_reference_len,
        "the reference's Packet data for {message:?}"
    );
    assert!(
        ours.len() > theirs.len() && ours.starts_with(&theirs),
        "the reference's Packet data must be a strict prefix of Proctor's"
    );
    set_content(&mut proctor[index], &theirs);
}

/// A packet whose version bits are not 2: the reference ignores the version
/// and decodes the packet; Proctor reports it as malformed (SUBUNIT_V2.md,
/// "Flags"). Checks that, then puts the reference's event in place of
/// Proctor's two parser events.
fn reconcile_bad_version(stream: &[u8], proctor: &mut Vec<Value>, reference: &[Value]) {
    let index = proctor
        .iter()
        .position(|event| is_parser_event(event, "Packet data"))
        .expect("Proctor reports the version 1 packet as malformed");
    let packet = content(&proctor[index]);
    assert_eq!(
        packet[1] >> 4,
        1,
        "the malformed packet is the version 1 one"
    );
    assert!(stream
        .windows(packet.len())
        .any(|window| window == &packet[..]));
    assert_eq!(
        content(&proctor[index + 1]),
        b"Unsupported version 1 (expected 2)"
    );
    assert_eq!(proctor[index + 1]["status"], "fail");
    let decoded = reference
        .get(index)
        .expect("the reference decodes the packet");
    assert_eq!(decoded["test_id"], "pkg.v1");
    assert_eq!(decoded["status"], "success");
    proctor.splice(index..index + 2, [decoded.clone()]);
}

// -- reference → Proctor -----------------------------------------------------

#[test]
fn reference_streams_decode_identically() {
    let dir = tempfile::tempdir().expect("temporary directory");
    proctor_testkit::run_script_ok("write_streams.py", &[dir.path()], b"");
    let mut written: Vec<String> = fs::read_dir(dir.path())
        .expect("lists streams")
        .map(|entry| {
            let name = entry.expect("directory entry").file_name();
            let name = name.to_str().expect("UTF-8 file name").to_owned();
            name.strip_suffix(".subunit")
                .unwrap_or_else(|| panic!("unexpected file {name}"))
                .to_owned()
        })
        .collect();
    written.sort();
    assert_eq!(written, CASES, "write_streams.py's cases and CASES differ");

    let paths: Vec<_> = CASES
        .iter()
        .map(|case| dir.path().join(format!("{case}.subunit")))
        .collect();
    // One Python process decodes them all: its start-up is most of the time.
    let mut args = vec![std::ffi::OsString::from("--each")];
    args.extend(paths.iter().map(|path| path.as_os_str().to_owned()));
    proctor_testkit::run_script_ok("decode_json.py", &args, b"");
    let references = paths.iter().map(|path| {
        let mut jsonl = path.as_os_str().to_owned();
        jsonl.push(".jsonl");
        parse_json_lines(&fs::read(jsonl).expect("decode_json.py wrote its output"))
    });
    let mut failures = Vec::new();
    for ((case, path), reference) in CASES.iter().zip(&paths).zip(references) {
        let stream = fs::read(path).expect("reads stream");
        let mut proctor = proctor_json(path);
        match *case {
            "truncated_body" | "truncated_big_body" | "truncated_header" => {
                reconcile_short_read(&stream, &mut proctor, &reference)
            }
            "bad_version" => reconcile_bad_version(&stream, &mut proctor, &reference),
            _ => {}
        }
        if let Some(difference) = difference(&proctor, &reference) {
            failures.push(format!("{case}: {difference}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} streams decode differently:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn reference_streams_have_the_documented_vectors() {
    // write_streams.py asserts its vectors equal SUBUNIT_V2.md's bytes; check
    // Proctor decodes those bytes to the events the document describes.
    let dir = tempfile::tempdir().expect("temporary directory");
    proctor_testkit::run_script_ok("write_streams.py", &[dir.path()], b"");
    let read = |case: &str| {
        let file = fs::File::open(dir.path().join(format!("{case}.subunit"))).expect("opens");
        proctor_decode(file)
    };
    let vector_time = Timestamp::new(1_704_164_645, 678_901_000);
    assert_eq!(read("vector_a"), vec![Event::test("foo", Status::Exists)]);
    assert_eq!(
        read("vector_b"),
        vec![Event::test("pkg.test_a", Status::InProgress)
            .at(vector_time)
            .tagged("worker-0")
            .routed("0")]
    );
    let mut fail = Event::file(Some("pkg.test_a".into()), "traceback", &b"boom\n"[..], true)
        .at(vector_time)
        .with_mime_type("text/plain;charset=utf8");
    fail.status = Some(Status::Fail);
    assert_eq!(read("vector_c"), vec![fail]);
    let mut stdout = Event::file(None, "stdout", &b"hi\n"[..], false);
    stdout.runnable = false;
    assert_eq!(read("vector_d"), vec![stdout]);
}

// -- Proctor → reference -----------------------------------------------------

/// Events covering every field Proctor writes, with timestamps in whole
/// microseconds (the reference keeps no more).
fn proctor_events() -> Vec<Event> {
    let mut events = Vec::new();
    let mut time = Timestamp::new(1_704_164_645, 678_901_000); // 4-byte nanoseconds
    for (index, status) in Status::ALL.into_iter().enumerate() {
        events.push(Event::test(format!("pkg.test_{status}"), status));
        let mut fixture = Event::test(format!("pkg.fixture_{status}"), status).at(time);
        fixture.runnable = false;
        events.push(fixture);
        time.seconds += 1;
        time.nanos = [0, 1_000, 16_000, 17_000, 4_194_000, 4_195_000, 999_999_000][index];
    }
    // No status at all.
    events.push(Event {
        test_id: Some("pkg.no_status".into()),
        ..Event::default()
    });
    // Tags and route codes.
    let tagged = |status| {
        Event::test("pkg.tagged", status)
            .tagged("worker-0")
            .tagged("b")
            .tagged("a")
            .tagged("ñ")
            .tagged("日本")
    };
    events.push(tagged(Status::InProgress).routed("0"));
    events.push(tagged(Status::Success).routed("0/3"));
    events.push(Event::test("pkg.tést_ó", Status::Skip).routed("1/2/3"));
    events.push(Event {
        tags: BTreeSet::from(["global".to_owned()]),
        ..Event::default()
    });
    // An attachment in chunks with a MIME type, a large chunk (3-byte length)
    // with signature bytes in it, and an empty EOF chunk.
    let test = Some("pkg.attach".to_owned());
    let text = "text/plain;charset=utf8";
    events.push(Event::test("pkg.attach", Status::InProgress).at(Timestamp::new(0, 0)));
    events.push(Event::file(test.clone(), "log", &b"first "[..], false).with_mime_type(text));
    events.push(Event::file(
        test.clone(),
        "log",
        "señor ó ".as_bytes(),
        false,
    ));
    events.push(Event::file(test.clone(), "log", &b"last\n"[..], true).with_mime_type(text));
    let binary: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    events.push(
        Event::file(test.clone(), "core", binary, false)
            .with_mime_type("application/octet-stream")
            .routed("0"),
    );
    events.push(Event::file(test.clone(), "core", Bytes::new(), true).routed("0"));
    events.extend(Event::file_chunks(
        &Event::test("pkg.attach", Status::Fail)
            .with_mime_type("text/x-traceback;charset=utf8")
            .at(Timestamp::new(u32::MAX, 999_999_000)),
        "traceback",
        Bytes::from_static(b"Traceback (most recent call last):\n  boom\n"),
    ));
    // Global output: a stdout chunk outside any test (vector D) and a routed
    // stderr file.
    let mut stdout = Event::file(None, "stdout", &b"hi\n"[..], false);
    stdout.runnable = false;
    events.push(stdout);
    let mut stderr = Event::file(None, "stderr", &b"warning\n"[..], true)
        .with_mime_type(text)
        .routed("1");
    stderr.runnable = false;
    events.push(stderr);
    events
}

fn encode_all(events: &[Event]) -> Vec<u8> {
    let mut writer = EventWriter::new(Vec::new());
    for event in events {
        writer.write(event).expect("encodes");
    }
    writer.into_inner()
}

#[test]
fn proctor_streams_decode_in_the_reference() {
    let events = proctor_events();
    let stream = encode_all(&events);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("proctor.subunit");
    fs::write(&path, &stream).expect("writes stream");

    let meant = normalise(&events);
    assert_eq!(meant.len(), events.len(), "no event here looks like text");
    if let Some(difference) = difference(&meant, &reference_json(&path)) {
        panic!("python-subunit decodes Proctor's stream differently (from a file): {difference}");
    }
    if let Some(difference) = difference(&meant, &reference_json_from_stdin(&stream)) {
        panic!("python-subunit decodes Proctor's stream differently (from a pipe): {difference}");
    }
    // And Proctor reads back exactly what it wrote.
    assert_eq!(proctor_decode(&stream[..]), events);
}

#[test]
fn reference_rounds_sub_microsecond_timestamps_half_to_even() {
    // Proctor keeps nanoseconds; the reference turns them into microseconds
    // with float division and timedelta's round-half-to-even. Nothing Proctor
    // writes by default has sub-microsecond parts that matter to the
    // reference, but the conversion above must match it exactly.
    let nanos = [
        1_499,
        1_500,
        2_500,
        2_501,
        999_999_499,
        999_999_500,
        999_999_999,
    ];
    let events: Vec<Event> = nanos
        .iter()
        .map(|&n| Event::test(format!("pkg.ns_{n}"), Status::Success).at(Timestamp::new(10, n)))
        .collect();
    let reference = reference_json_from_stdin(&encode_all(&events));
    let times: Vec<&str> = reference
        .iter()
        .map(|event| event["timestamp"].as_str().expect("a timestamp"))
        .collect();
    assert_eq!(
        times,
        [
            "1970-01-01T00:00:10.000001Z",
            "1970-01-01T00:00:10.000002Z",
            "1970-01-01T00:00:10.000002Z",
            "1970-01-01T00:00:10.000003Z",
            "1970-01-01T00:00:10.999999Z",
            "1970-01-01T00:00:11.000000Z",
            "1970-01-01T00:00:11.000000Z",
        ]
    );
    if let Some(difference) = difference(&normalise(&events), &reference) {
        panic!("{difference}");
    }
}
