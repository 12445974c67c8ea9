//! The I/O-free decoder: bytes in, events out.
//!
//! Malformed packets are reported with python-subunit's messages (and its
//! offsets, which count from where its parser's buffer starts) so that a
//! corrupt stream decodes to the same events in both implementations.

use std::fmt;

use crate::event_ref::{EventRef, FileRef, Tags};
use crate::number::{encoded_size, read_number};
use crate::utf8::{truncated_surrogate, Utf8Tracker};
use crate::{Event, Status, Timestamp, SIGNATURE};

/// The test id the reference gives to parser errors.
pub const PARSER_TEST_ID: &str = "subunit.parser";

/// Non-subunit text is passed on in chunks of at most this many bytes (the
/// reference's limit), so a stream with no packets never grows the buffer.
const MAX_TEXT_CHUNK: usize = 1 << 20;

/// The reference always reads the flags and a 3-byte length's worth after the
/// signature before it knows the real length.
const HEADER_READ: usize = 6;

const FLAG_TEST_ID: u16 = 0x0800;
const FLAG_ROUTE_CODE: u16 = 0x0400;
const FLAG_TIMESTAMP: u16 = 0x0200;
const FLAG_RUNNABLE: u16 = 0x0100;
const FLAG_TAGS: u16 = 0x0080;
const FLAG_FILE_CONTENT: u16 = 0x0040;
const FLAG_MIME_TYPE: u16 = 0x0020;
const FLAG_EOF: u16 = 0x0010;

/// What one decoding step found.
#[derive(Debug)]
pub enum Decoded {
    /// An event, decoded from the first `consumed` bytes of the input.
    Event {
        /// The event.
        event: Event,
        /// How many input bytes it used.
        consumed: usize,
    },
    /// The input holds the start of a packet: call again once it holds at
    /// least `at_least` bytes (or at end of input).
    NeedMore {
        /// The input length needed to make progress.
        at_least: usize,
    },
    /// The input is empty.
    Empty,
}

/// What one decoding step found, borrowing from the input: see
/// [`Decoder::decode_ref`].
#[derive(Debug)]
pub enum DecodedRef<'a> {
    /// An event, decoded from the first `consumed` bytes of the input.
    Event {
        /// The event.
        event: EventRef<'a>,
        /// How many input bytes it used.
        consumed: usize,
    },
    /// The input holds the start of a packet: call again once it holds at
    /// least `at_least` bytes (or at end of input).
    NeedMore {
        /// The input length needed to make progress.
        at_least: usize,
    },
    /// The input is empty.
    Empty,
}

/// Turns bytes into events, one step at a time, holding no buffer of its own.
///
/// Each call to [`Decoder::decode`] either returns an event and how many bytes
/// it consumed (always at least one), or says how many bytes it needs; so a
/// caller never loops without progress and never buffers more than one packet.
#[derive(Debug, Default)]
pub struct Decoder {
    text: Utf8Tracker,
    /// The reason for the last malformed packet, whose `Parser Error` event is
    /// due next when `error_queued`.
    error_message: String,
    error_queued: bool,
}

/// What the next step will do, decided from the first few bytes.
pub(crate) enum Plan {
    Queued,
    Empty,
    NeedMore(usize),
    Text,
    Malformed {
        consumed: usize,
        fault: Fault,
    },
    Packet {
        flags: u16,
        length: usize,
        header_size: usize,
    },
}

/// What is wrong with a packet, known before its body is read.
pub(crate) enum Fault {
    ShortHeader { got: usize },
    FourByteLength,
    ShorterThanHeader { length: usize, header_size: usize },
    ShortBody { got: usize, wanted: usize },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::ShortHeader { got } => write!(f, "Short read - got {got} bytes, wanted 5 bytes"),
            Fault::FourByteLength => f.write_str("3 byte maximum given but 4 byte value found."),
            Fault::ShorterThanHeader {
                length,
                header_size,
            } => write!(
                f,
                "Packet length {length} is shorter than its {header_size}-byte header and \
                 4-byte checksum"
            ),
            Fault::ShortBody { got, wanted } => {
                write!(f, "Short read - got {got} bytes, wanted {wanted} bytes")
            }
        }
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes the next event from the start of `input`. `at_eof` says no
    /// more bytes will follow `input`, so a partial packet is malformed.
    pub fn decode(&mut self, input: &[u8], at_eof: bool) -> Decoded {
        match self.decode_ref(input, at_eof) {
            DecodedRef::Event { event, consumed } => Decoded::Event {
                event: event.to_event(),
                consumed,
            },
            DecodedRef::NeedMore { at_least } => Decoded::NeedMore { at_least },
            DecodedRef::Empty => Decoded::Empty,
        }
    }

    /// [`Decoder::decode`] without copying: the event borrows from `input`
    /// (and from the decoder, for a parser error's message), so it must be
    /// dropped before the next call.
    pub fn decode_ref<'a>(&'a mut self, input: &'a [u8], at_eof: bool) -> DecodedRef<'a> {
        let plan = self.plan(input, at_eof);
        self.follow(plan, input)
    }

    /// Takes the step `plan` (which [`Decoder::plan`] made for `input`).
    pub(crate) fn follow<'a>(&'a mut self, plan: Plan, input: &'a [u8]) -> DecodedRef<'a> {
        match plan {
            Plan::Queued => {
                self.error_queued = false;
                DecodedRef::Event {
                    event: parser_error(&self.error_message),
                    consumed: 0,
                }
            }
            Plan::Empty => DecodedRef::Empty,
            Plan::NeedMore(at_least) => DecodedRef::NeedMore { at_least },
            Plan::Text => self.decode_text(input),
            Plan::Malformed { consumed, fault } => {
                self.malformed(input, consumed, fault.to_string())
            }
            Plan::Packet {
                flags,
                length,
                header_size,
            } => match parse_packet(&input[..length], flags, header_size) {
                Ok(event) => DecodedRef::Event {
                    event,
                    consumed: length,
                },
                Err(message) => self.malformed(input, length, message),
            },
        }
    }

    /// Decides the next step from the start of `input` without consuming it.
    pub(crate) fn plan(&self, input: &[u8], at_eof: bool) -> Plan {
        if self.error_queued {
            return Plan::Queued;
        }
        match input.first() {
            None => Plan::Empty,
            Some(&SIGNATURE) if !self.text.mid_character() => plan_packet(input, at_eof),
            Some(_) => Plan::Text,
        }
    }

    /// Non-subunit bytes up to the next packet start (or the end of the input,
    /// so text is passed on as soon as it arrives) become a `stdout` chunk.
    fn decode_text<'a>(&mut self, input: &'a [u8]) -> DecodedRef<'a> {
        let limit = input.len().min(MAX_TEXT_CHUNK);
        let mut end = 0;
        while end < limit {
            let byte = input[end];
            if byte == SIGNATURE && !self.text.mid_character() {
                break;
            }
            self.text.feed(byte);
            end += 1;
        }
        let event = EventRef {
            file: Some(FileRef {
                name: "stdout",
                content: &input[..end],
            }),
            ..runnable_event(None)
        };
        DecodedRef::Event {
            event,
            consumed: end,
        }
    }

    /// The reference's two events for a malformed packet: its raw bytes as
    /// `Packet data` now, then a `fail` with the reason as `Parser Error`.
    fn malformed<'a>(
        &mut self,
        input: &'a [u8],
        consumed: usize,
        message: String,
    ) -> DecodedRef<'a> {
        self.error_message = message;
        self.error_queued = true;
        let event = EventRef {
            mime_type: Some("application/octet-stream"),
            file: Some(FileRef {
                name: "Packet data",
                content: &input[..consumed],
            }),
            eof: true,
            ..runnable_event(Some(PARSER_TEST_ID))
        };
        DecodedRef::Event { event, consumed }
    }
}

/// A runnable event with nothing else set.
fn runnable_event(test_id: Option<&str>) -> EventRef<'_> {
    EventRef {
        status: None,
        test_id,
        route_code: None,
        timestamp: None,
        runnable: true,
        tags: Tags::EMPTY,
        mime_type: None,
        file: None,
        eof: false,
    }
}

/// The second event for a malformed packet.
fn parser_error(message: &str) -> EventRef<'_> {
    EventRef {
        status: Some(Status::Fail),
        mime_type: Some("text/plain;charset=utf8"),
        file: Some(FileRef {
            name: "Parser Error",
            content: message.as_bytes(),
        }),
        eof: true,
        ..runnable_event(Some(PARSER_TEST_ID))
    }
}

/// Reads a packet's header and decides whether it is complete, malformed, or
/// needs more bytes.
fn plan_packet(input: &[u8], at_eof: bool) -> Plan {
    if input.len() < HEADER_READ {
        if at_eof {
            return Plan::Malformed {
                consumed: input.len(),
                fault: Fault::ShortHeader {
                    got: input.len() - 1,
                },
            };
        }
        return Plan::NeedMore(HEADER_READ);
    }
    let flags = u16::from_be_bytes([input[1], input[2]]);
    let length_size = encoded_size(input[3]);
    if length_size == 4 {
        return Plan::Malformed {
            consumed: HEADER_READ,
            fault: Fault::FourByteLength,
        };
    }
    let Some((length, _)) = read_number(&input[3..]) else {
        // Unreachable: HEADER_READ covers a 3-byte length.
        return Plan::Malformed {
            consumed: HEADER_READ,
            fault: Fault::FourByteLength,
        };
    };
    let length = length as usize;
    let header_size = 3 + length_size;
    // The reference reads `HEADER_READ` bytes before it looks at the
    // length. Below that it would read to the end of the stream and lose
    // it, so Proctor reports the packet and resumes after its header. From
    // there on it reads `length` bytes and checks their CRC however short
    // they are for the header; so does Proctor (see `parse_packet`).
    if length < HEADER_READ {
        return Plan::Malformed {
            consumed: header_size,
            fault: Fault::ShorterThanHeader {
                length,
                header_size,
            },
        };
    }
    if input.len() < length {
        if at_eof {
            return Plan::Malformed {
                consumed: input.len(),
                fault: Fault::ShortBody {
                    got: input.len() - HEADER_READ,
                    wanted: length - HEADER_READ,
                },
            };
        }
        return Plan::NeedMore(length);
    }
    Plan::Packet {
        flags,
        length,
        header_size,
    }
}

/// Parses a whole packet whose length is known; the error is the reference's
/// message.
fn parse_packet(packet: &[u8], flags: u16, header_size: usize) -> Result<EventRef<'_>, String> {
    let (body, stored) = packet.split_at(packet.len() - 4);
    let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let calculated = crc32fast::hash(body);
    if calculated != stored {
        return Err(format!(
            "Bad checksum - calculated (0x{calculated:x}), stored (0x{stored:x})"
        ));
    }
    let version = flags >> 12;
    if version != 2 {
        return Err(format!("Unsupported version {version} (expected 2)"));
    }
    if body.len() < header_size {
        // A valid CRC over too few bytes. Every such version 2 packet flags
        // a field, which the reference fails on while reading (struct.error).
        return Err(Fault::ShorterThanHeader {
            length: packet.len(),
            header_size,
        }
        .to_string());
    }
    let mut fields = Fields {
        body,
        pos: header_size,
        // Where the reference's offsets count from: after the signature, or
        // after its 6-byte header read when the length took 3 bytes.
        origin: if header_size == HEADER_READ {
            HEADER_READ
        } else {
            1
        },
    };
    let timestamp = if flags & FLAG_TIMESTAMP != 0 {
        Some(fields.timestamp()?)
    } else {
        None
    };
    let test_id = fields.optional_string(flags & FLAG_TEST_ID)?;
    let tags = if flags & FLAG_TAGS != 0 {
        fields.tags()?
    } else {
        Tags::EMPTY
    };
    let mime_type = fields.optional_string(flags & FLAG_MIME_TYPE)?;
    let file = if flags & FLAG_FILE_CONTENT != 0 {
        let name = fields.string()?;
        let content = fields.file_content()?;
        Some(FileRef { name, content })
    } else {
        None
    };
    let route_code = fields.optional_string(flags & FLAG_ROUTE_CODE)?;
    Ok(EventRef {
        status: Status::from_code((flags & 0x7) as u8),
        test_id,
        route_code,
        timestamp,
        runnable: flags & FLAG_RUNNABLE != 0,
        tags,
        mime_type,
        file,
        eof: flags & FLAG_EOF != 0,
    })
}

/// Whether `bytes` are ASCII with no NUL, checked a word at a time. Test ids
/// and tags nearly always are, and this one pass replaces the NUL search and
/// UTF-8 validation, which were a third of decoding (see BENCHMARKS.md).
fn is_plain_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            return false;
        };
        let word = u64::from_le_bytes(word);
        // A byte's high bit is set in the second term exactly when some byte
        // is zero; in the first when a byte is not ASCII.
        if (word | (word.wrapping_sub(ONES) & !word)) & HIGH_BITS != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&byte| byte != 0 && byte < 0x80)
}

/// A cursor over a packet's fields (CRC excluded).
struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    origin: usize,
}

impl<'a> Fields<'a> {
    /// The offset the reference would print for the current position.
    fn reference_offset(&self) -> isize {
        self.pos as isize - self.origin as isize - 2
    }

    fn number(&mut self) -> Result<u32, String> {
        let (value, size) = read_number(&self.body[self.pos..]).ok_or_else(|| {
            format!(
                "Number at offset {} extends past end of packet",
                self.pos as isize - self.origin as isize
            )
        })?;
        self.pos += size;
        Ok(value)
    }

    fn timestamp(&mut self) -> Result<Timestamp, String> {
        let seconds = self.body.get(self.pos..self.pos + 4).ok_or_else(|| {
            format!(
                "Timestamp at offset {} extends past end of packet",
                self.pos as isize - self.origin as isize
            )
        })?;
        let seconds = u32::from_be_bytes([seconds[0], seconds[1], seconds[2], seconds[3]]);
        self.pos += 4;
        let nanos = self.number()?;
        Ok(Timestamp { seconds, nanos })
    }

    fn optional_string(&mut self, flag: u16) -> Result<Option<&'a str>, String> {
        if flag == 0 {
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// A length-prefixed UTF-8 string without NUL bytes.
    fn string(&mut self) -> Result<&'a str, String> {
        let length = self.number()? as usize;
        let offset = self.reference_offset();
        let available = self.body.len() - self.pos;
        if length > available {
            return Err(format!(
                "UTF8 string at offset {offset} extends past end of packet: claimed {length} \
                 bytes, {available} available"
            ));
        }
        let bytes = &self.body[self.pos..self.pos + length];
        if is_plain_ascii(bytes) {
            self.pos += length;
            // SAFETY: ASCII is valid UTF-8.
            #[allow(unsafe_code)]
            let text = unsafe { std::str::from_utf8_unchecked(bytes) };
            return Ok(text);
        }
        if bytes.contains(&0) {
            return Err(format!("UTF8 string at offset {offset} contains NUL byte"));
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            // The reference decodes with final=False, so a string cut inside
            // its last character is "partially decodable", not "not UTF8";
            // to CPython that includes a surrogate's first two bytes.
            Err(error)
                if error.error_len().is_none()
                    || truncated_surrogate(&bytes[error.valid_up_to()..]) =>
            {
                let undecoded = length - error.valid_up_to();
                return Err(format!(
                    "Invalid (partially decodable) string at offset {offset}, {undecoded} \
                     undecoded bytes"
                ));
            }
            Err(_) => return Err(format!("UTF8 string at offset {offset} is not UTF8")),
        };
        self.pos += length;
        Ok(text)
    }

    /// A count and that many strings, checked and left encoded.
    fn tags(&mut self) -> Result<Tags<'a>, String> {
        let count = self.number()?;
        let start = self.pos;
        for _ in 0..count {
            self.string()?;
        }
        Ok(Tags::encoded(&self.body[start..self.pos], count))
    }

    fn file_content(&mut self) -> Result<&'a [u8], String> {
        let length = self.number()? as usize;
        let available = self.body.len() - self.pos;
        if length > available {
            return Err(format!(
                "File content extends past end of packet: claimed {length} bytes, {available} \
                 available"
            ));
        }
        let content = &self.body[self.pos..self.pos + length];
        self.pos += length;
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        let mut rest = input;
        loop {
            match decoder.decode(rest, true) {
                Decoded::Event { event, consumed } => {
                    events.push(event);
                    rest = &rest[consumed..];
                }
                Decoded::Empty => return events,
                Decoded::NeedMore { .. } => panic!("NeedMore at eof"),
            }
        }
    }

    const VECTOR_A: &[u8] = &[
        0xb3, 0x29, 0x01, 0x0c, 0x03, 0x66, 0x6f, 0x6f, 0x08, 0x55, 0x5f, 0x1b,
    ];

    #[test]
    fn vector_a_decodes() {
        let events = decode_all(VECTOR_A);
        assert_eq!(events, vec![Event::test("foo", Status::Exists)]);
    }

    #[test]
    fn bad_crc_gives_two_parser_events_and_resumes() {
        let mut input = VECTOR_A.to_vec();
        input[5] ^= 0x01;
        input.extend_from_slice(VECTOR_A);
        let events = decode_all(&input);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].test_id.as_deref(), Some(PARSER_TEST_ID));
        assert_eq!(
            events[0].file.as_ref().map(|f| &f.content[..]),
            Some(&input[..12])
        );
        assert_eq!(events[1].status, Some(Status::Fail));
        let message = events[1].file.as_ref().map(|f| f.content.clone());
        assert_eq!(
            message.as_deref(),
            Some(&b"Bad checksum - calculated (0x997352c), stored (0x8555f1b)"[..])
        );
        assert_eq!(events[2], Event::test("foo", Status::Exists));
    }

    #[test]
    fn text_before_packet_becomes_stdout() {
        let mut input = "señor ó\n".as_bytes().to_vec();
        input.extend_from_slice(VECTOR_A);
        let events = decode_all(&input);
        assert_eq!(events.len(), 2);
        let text = events[0].file.as_ref().map(|f| f.content.clone());
        assert_eq!(text.as_deref(), Some("señor ó\n".as_bytes()));
        assert_eq!(events[1].test_id.as_deref(), Some("foo"));
    }

    #[test]
    fn needs_only_the_current_packet() {
        let mut decoder = Decoder::new();
        assert!(matches!(
            decoder.decode(&VECTOR_A[..3], false),
            Decoded::NeedMore { at_least: 6 }
        ));
        assert!(matches!(
            decoder.decode(&VECTOR_A[..7], false),
            Decoded::NeedMore { at_least: 12 }
        ));
        assert!(matches!(
            decoder.decode(VECTOR_A, false),
            Decoded::Event { consumed: 12, .. }
        ));
    }

    #[test]
    fn four_byte_length_is_malformed() {
        let events = decode_all(&[0xb3, 0x20, 0x00, 0xc0, 0x00, 0x00, 0x10]);
        assert_eq!(events.len(), 3);
        let message = events[1].file.as_ref().map(|f| f.content.clone());
        assert_eq!(
            message.as_deref(),
            Some(&b"3 byte maximum given but 4 byte value found."[..])
        );
        // The byte after the 6-byte header read is text again.
        assert_eq!(
            events[2].file.as_ref().map(|f| f.name.as_str()),
            Some("stdout")
        );
    }

    #[test]
    fn too_short_length_consumes_the_claimed_bytes() {
        // Length 7 cannot hold a header and CRC; like the reference, the CRC
        // is checked over the 7 bytes and reading resumes after them.
        let mut input = vec![0xb3, 0x20, 0x00, 0x07, b'A', b'B', b'C'];
        input.extend_from_slice(VECTOR_A);
        let events = decode_all(&input);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].file.as_ref().map(|f| &f.content[..]),
            Some(&input[..7])
        );
        let message = events[1].file.as_ref().map(|f| f.content.clone());
        assert_eq!(
            message.as_deref(),
            Some(&b"Bad checksum - calculated (0xadddbdf9), stored (0x7414243)"[..])
        );
        assert_eq!(events[2], Event::test("foo", Status::Exists));
        // A valid CRC over such a packet (flags 0x206e: tags, file, MIME) is
        // malformed too, not read past its end.
        let mut packet = vec![0xb3, 0x20, 0x6e];
        packet.extend_from_slice(&crc32fast::hash(&packet).to_be_bytes());
        assert_eq!(packet[3], 0x07);
        let events = decode_all(&packet);
        let message = events[1].file.as_ref().map(|f| f.content.clone());
        assert_eq!(
            message.as_deref(),
            Some(&b"Packet length 7 is shorter than its 4-byte header and 4-byte checksum"[..])
        );
    }

    #[test]
    fn truncated_packet_at_eof_is_malformed() {
        let events = decode_all(&VECTOR_A[..9]);
        let message = events[1].file.as_ref().map(|f| f.content.clone());
        assert_eq!(
            message.as_deref(),
            Some(&b"Short read - got 3 bytes, wanted 6 bytes"[..])
        );
    }
}
