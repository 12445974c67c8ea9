//! Invariants every decoding of any input must satisfy.
//!
//! Shared by `properties.rs`, `fuzz_regressions.rs` and the cargo-fuzz targets
//! in `/fuzz` (which include this file by path), so a regression input replays
//! with exactly the checks that found it.
//!
//! [`check`] decodes one input five ways: the [`Decoder`] over the whole input
//! at end of stream, the [`Decoder`] fed in pieces as if from a pipe,
//! [`EventReader`] over a reader that returns short reads, and
//! [`SubunitCodec`] as `FramedRead` drives it. Each step is checked as it
//! happens (progress, `NeedMore` bounds, every byte accounted for, the second
//! parser event only after `Packet data`), and all five must agree once
//! adjacent `stdout` text chunks are joined (how text is split depends on
//! how the bytes arrived; nothing else may).

#![allow(dead_code)]

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use proctor_subunit::{
    encode, Decoded, Decoder, Event, EventReader, File, Status, SubunitCodec, MAX_PACKET_SIZE,
    PARSER_TEST_ID, SIGNATURE,
};

/// The text decoder's chunk limit (the reference's): a `stdout` event never
/// holds more than this.
pub const MAX_TEXT_CHUNK: usize = 1 << 20;

/// A tiny deterministic RNG (xorshift64*), so failures replay from a seed.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Zero is xorshift's one fixed point; mix the seed so that small
        // seeds still give different streams.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// A read size: mostly tiny, sometimes large, so both packet boundaries
    /// and whole-buffer reads are exercised.
    pub fn chunk_size(&mut self) -> usize {
        match self.below(8) {
            0..=2 => 1 + self.below(4),
            3..=5 => 1 + self.below(64),
            6 => 1 + self.below(4096),
            _ => 1 + self.below(200_000),
        }
    }
}

/// A reader returning random-sized short reads, and now and then
/// `Interrupted` (which a reader must retry, not report).
pub struct ChunkedReader<'a> {
    data: &'a [u8],
    rng: XorShift,
}

impl<'a> ChunkedReader<'a> {
    pub fn new(data: &'a [u8], seed: u64) -> ChunkedReader<'a> {
        ChunkedReader {
            data,
            rng: XorShift::new(seed),
        }
    }
}

impl Read for ChunkedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.below(16) == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.rng.chunk_size().min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Whether `event` has the shape of decoded non-subunit text.
pub fn is_text(event: &Event) -> bool {
    matches!(&event.file, Some(file) if file.name == "stdout")
        && event.status.is_none()
        && event.test_id.is_none()
        && event.route_code.is_none()
        && event.timestamp.is_none()
        && event.runnable
        && event.tags.is_empty()
        && event.mime_type.is_none()
        && !event.eof
}

/// Whether `event` is one of the two events a malformed packet becomes.
pub fn is_parser_event(event: &Event) -> bool {
    event.test_id.as_deref() == Some(PARSER_TEST_ID)
}

fn is_packet_data(event: &Event) -> bool {
    is_parser_event(event)
        && event.status.is_none()
        && matches!(&event.file, Some(file) if file.name == "Packet data")
        && event.mime_type.as_deref() == Some("application/octet-stream")
        && event.eof
}

fn assert_parser_error(event: &Event) {
    assert!(
        is_parser_event(event),
        "queued event is not a parser event: {event:?}"
    );
    assert_eq!(event.status, Some(Status::Fail), "{event:?}");
    assert_eq!(event.mime_type.as_deref(), Some("text/plain;charset=utf8"));
    assert!(event.eof);
    let file = event.file.as_ref().expect("Parser Error has a file");
    assert_eq!(file.name, "Parser Error");
    assert!(!file.content.is_empty(), "empty parser error message");
    assert!(std::str::from_utf8(&file.content).is_ok(), "{event:?}");
}

/// Decodes a single packet (or text) with a fresh decoder at end of input:
/// the one event and the bytes it consumed.
pub fn decode_one(bytes: &[u8]) -> (Event, usize) {
    match Decoder::new().decode(bytes, true) {
        Decoded::Event { event, consumed } => (event, consumed),
        other => panic!("{other:?} for {} bytes at end of input", bytes.len()),
    }
}

/// Re-encodes a decoded event and decodes the packet again: it must come
/// back equal. Parser events are exempt from encoding (a `Packet data` chunk
/// may hold a whole maximal packet, which cannot fit in another one) but are
/// round-tripped when they do fit. Returns the packet's size, if encoded.
pub fn assert_round_trips(event: &Event) -> Option<usize> {
    let mut packet = Vec::new();
    match encode(event, &mut packet) {
        Ok(()) => {}
        Err(error) if is_parser_event(event) => {
            let _ = error;
            return None;
        }
        Err(error) => panic!("decoded event does not re-encode: {error}: {event:?}"),
    }
    assert!(packet.len() <= MAX_PACKET_SIZE);
    let (again, consumed) = decode_one(&packet);
    assert_eq!(
        consumed,
        packet.len(),
        "re-encoded packet not consumed whole"
    );
    assert_eq!(&again, event, "re-encoded event decodes differently");
    Some(packet.len())
}

/// Checks one step's consumed bytes against its event: text and `Packet
/// data` carry exactly those bytes; anything else is one valid packet, which
/// a fresh decoder reads alone to the same event, and which re-encodes no
/// larger (the encoder writes shortest forms and drops duplicate tags).
/// Returns whether the event was `Packet data` (so a parser error follows).
fn account(bytes: &[u8], event: &Event) -> bool {
    assert!(!bytes.is_empty(), "an event consumed no bytes: {event:?}");
    let content = event.file.as_ref().map(|f| &f.content[..]);
    if is_text(event) && content == Some(bytes) {
        assert!(bytes.len() <= MAX_TEXT_CHUNK);
        assert_round_trips(event);
        return false;
    }
    assert_eq!(
        bytes[0], SIGNATURE,
        "non-text event not at a signature: {event:?}"
    );
    // A malformed packet's raw bytes (a valid packet may carry a re-encoded
    // parser event too, but never its own bytes).
    if is_packet_data(event) && content == Some(bytes) {
        assert!(bytes.len() <= MAX_PACKET_SIZE);
        return true;
    }
    assert!(
        (8..=MAX_PACKET_SIZE).contains(&bytes.len()),
        "valid packet of {} bytes",
        bytes.len()
    );
    let (alone, consumed) = decode_one(bytes);
    assert_eq!(consumed, bytes.len());
    assert_eq!(&alone, event, "packet decodes differently on its own");
    let size = assert_round_trips(event).expect("valid packet re-encodes");
    assert!(size <= bytes.len(), "re-encoding grew the packet");
    false
}

/// Decodes all of `input` with `at_eof`, checking every step; the events.
pub fn decode_whole(input: &[u8]) -> Vec<Event> {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut error_due = false;
    // Every event but a queued parser error consumes a byte, and a parser
    // error follows only a `Packet data` event.
    for _ in 0..=2 * input.len() + 1 {
        let rest = &input[pos..];
        match decoder.decode(rest, true) {
            Decoded::Event { event, consumed } => {
                assert!(
                    consumed <= rest.len(),
                    "consumed {consumed} of {}",
                    rest.len()
                );
                if error_due {
                    assert_eq!(consumed, 0, "the queued parser error consumed bytes");
                    assert_parser_error(&event);
                    error_due = false;
                } else {
                    error_due = account(&rest[..consumed], &event);
                }
                pos += consumed;
                events.push(event);
            }
            Decoded::NeedMore { at_least } => {
                panic!("NeedMore {{ at_least: {at_least} }} at end of input")
            }
            Decoded::Empty => {
                assert!(rest.is_empty(), "Empty with {} bytes left", rest.len());
                assert!(!error_due, "Packet data without a parser error");
                assert_eq!(pos, input.len());
                return events;
            }
        }
    }
    panic!("decoder made no progress on {} bytes", input.len());
}

/// Decodes `input` as a caller reading from a pipe would: the decoder sees
/// only what has arrived (random amounts at a time) and end of input only at
/// the end.
pub fn decode_arriving(input: &[u8], seed: u64) -> Vec<Event> {
    let mut rng = XorShift::new(seed);
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut arrived = 0;
    let mut error_due = false;
    // At most one step per consumed byte, one per parser error and one per
    // arrival.
    for _ in 0..=3 * input.len() + 2 {
        let at_eof = arrived == input.len();
        let rest = &input[pos..arrived];
        match decoder.decode(rest, at_eof) {
            Decoded::Event { event, consumed } => {
                assert!(consumed <= rest.len());
                if error_due {
                    assert_eq!(consumed, 0);
                    assert_parser_error(&event);
                    error_due = false;
                } else {
                    error_due = account(&rest[..consumed], &event);
                }
                pos += consumed;
                events.push(event);
                continue;
            }
            Decoded::NeedMore { at_least } => {
                assert!(!at_eof, "NeedMore at end of input");
                assert!(!rest.is_empty(), "NeedMore for empty input");
                assert_eq!(rest[0], SIGNATURE, "NeedMore for text");
                assert!(
                    at_least > rest.len(),
                    "NeedMore {at_least} with {} bytes",
                    rest.len()
                );
                assert!(at_least <= MAX_PACKET_SIZE, "NeedMore {at_least}");
            }
            Decoded::Empty if at_eof => {
                assert!(!error_due);
                assert_eq!(pos, input.len());
                return events;
            }
            Decoded::Empty => assert!(rest.is_empty()),
        }
        arrived = (arrived + rng.chunk_size()).min(input.len());
    }
    panic!("decoder made no progress on {} bytes", input.len());
}

/// Reads `input` through [`EventReader`] over short, interrupted reads.
pub fn read_events(input: &[u8], seed: u64) -> Vec<Event> {
    let mut reader = EventReader::new(ChunkedReader::new(input, seed));
    let mut events = Vec::new();
    // Each event is at least a byte or follows one that was; the reader
    // retries Interrupted itself, so every call yields or ends.
    for _ in 0..=2 * input.len() + 1 {
        match reader
            .next_event()
            .expect("reading from memory cannot fail")
        {
            Some(event) => events.push(event),
            None => {
                // End of input is sticky.
                assert!(reader.next_event().expect("reads").is_none());
                return events;
            }
        }
    }
    panic!("EventReader yielded more events than possible");
}

/// Decodes `input` through [`SubunitCodec`] as `FramedRead` drives it:
/// `decode` after each arrival until it yields nothing, `decode_eof` at the
/// end, and no bytes may be left over.
pub fn codec_events(input: &[u8], seed: u64) -> Vec<Event> {
    use tokio_util::codec::Decoder as _;
    let mut rng = XorShift::new(seed);
    let mut codec = SubunitCodec::default();
    let mut buffer = BytesMut::new();
    let mut events = Vec::new();
    let mut arrived = 0;
    let mut steps = 0;
    let mut step = || {
        steps += 1;
        assert!(steps <= 4 * input.len() + 4, "codec made no progress");
    };
    while arrived < input.len() {
        let n = rng.chunk_size().min(input.len() - arrived);
        buffer.extend_from_slice(&input[arrived..arrived + n]);
        arrived += n;
        while let Some(event) = codec.decode(&mut buffer).expect("decodes") {
            step();
            events.push(event);
        }
        step();
    }
    while let Some(event) = codec.decode_eof(&mut buffer).expect("decodes") {
        step();
        events.push(event);
    }
    assert!(
        buffer.is_empty(),
        "{} bytes left at end of stream",
        buffer.len()
    );
    events
}

/// Joins adjacent text chunks, which different arrivals split differently.
pub fn join_text(events: Vec<Event>) -> Vec<Event> {
    let mut joined: Vec<Event> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(last) = joined.last_mut() {
            if is_text(last) && is_text(&event) {
                let (Some(a), Some(b)) = (&last.file, &event.file) else {
                    unreachable!()
                };
                let mut content = a.content.to_vec();
                content.extend_from_slice(&b.content);
                last.file = Some(File {
                    name: a.name.clone(),
                    content: Bytes::from(content),
                });
                continue;
            }
        }
        joined.push(event);
    }
    joined
}

/// Every check on one input; `seed` picks the read sizes. The events, as
/// decoded from the whole input.
pub fn check(input: &[u8], seed: u64) -> Vec<Event> {
    let whole = decode_whole(input);
    let expected = join_text(whole.clone());
    let arriving = join_text(decode_arriving(input, seed));
    assert_eq!(arriving, expected, "Decoder fed in pieces disagrees");
    let read = join_text(read_events(input, seed ^ 1));
    assert_eq!(read, expected, "EventReader disagrees");
    let codec = join_text(codec_events(input, seed ^ 2));
    assert_eq!(codec, expected, "SubunitCodec disagrees");
    whole
}

/// The `roundtrip` fuzz target: every event decoded from `input` re-encodes
/// (parser events excepted, when too large) and decodes again to itself, and
/// the re-encoded events as one stream pass every [`check`] and decode to
/// the same events in the same order.
pub fn check_round_trip(input: &[u8]) {
    let mut decoder = Decoder::new();
    let mut rest = input;
    let mut events = Vec::new();
    for _ in 0..=2 * input.len() + 1 {
        match decoder.decode(rest, true) {
            Decoded::Event { event, consumed } => {
                rest = &rest[consumed..];
                events.push(event);
            }
            _ => break,
        }
    }
    assert!(rest.is_empty(), "{} bytes not decoded", rest.len());
    let mut stream = Vec::new();
    let mut encodable = Vec::new();
    for event in events {
        if assert_round_trips(&event).is_some() {
            encode(&event, &mut stream).expect("encoded once already");
            encodable.push(event);
        }
    }
    let again = check(&stream, stream.len() as u64);
    assert_eq!(
        again, encodable,
        "the re-encoded stream decodes differently"
    );
}
