//! Writing events as packets, in the strict form the format describes.

use std::io::{self, Write};

use crate::number::write_number;
use crate::{Event, MAX_NUMBER, MAX_PACKET_SIZE, SIGNATURE};

/// Why an event cannot be written as one packet.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A string field holds a NUL byte, which readers reject.
    #[error("the {field} {value:?} contains a NUL byte, which subunit strings cannot hold")]
    Nul {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A length or count exceeds the largest variable-length number.
    #[error("the {field} is {value}, more than the largest subunit number ({MAX_NUMBER})")]
    NumberTooLarge {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: usize,
    },
    /// The packet would exceed the 4 MiB limit; split files with
    /// [`Event::file_chunks`].
    #[error("the packet would be {size} bytes, more than the {MAX_PACKET_SIZE}-byte limit")]
    PacketTooLarge {
        /// The size it would have had.
        size: usize,
    },
    /// The underlying writer failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

const FLAG_VERSION_2: u16 = 0x2000;

/// Appends `event` as one packet to `out`. On error `out` is left as it was.
pub fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_packet(event, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_packet(event: &Event, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    let flags = flags(event);
    out.push(SIGNATURE);
    out.extend_from_slice(&flags.to_be_bytes());
    // The length's size depends on the body's, so leave room for the largest
    // form and close the gap afterwards.
    let length_at = out.len();
    out.extend_from_slice(&[0; 3]);
    write_body(event, out, start)?;
    let body_size = out.len() - length_at - 3;
    let unsized_total = 1 + 2 + body_size + 4;
    let length_size = [1, 2, 3]
        .into_iter()
        .find(|&n| unsized_total + n <= max_for_size(n))
        .ok_or(EncodeError::PacketTooLarge {
            size: unsized_total + 3,
        })?;
    let total = unsized_total + length_size;
    out.copy_within(length_at + 3.., length_at + length_size);
    out.truncate(start + total - 4);
    let mut length = Vec::with_capacity(3);
    write_number(total as u32, &mut length);
    out[length_at..length_at + length_size].copy_from_slice(&length);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    debug_assert!(total <= MAX_PACKET_SIZE);
    Ok(())
}

fn max_for_size(length_size: usize) -> usize {
    match length_size {
        1 => 0x3F,
        2 => 0x3FFF,
        _ => MAX_PACKET_SIZE,
    }
}

fn flags(event: &Event) -> u16 {
    let mut flags = FLAG_VERSION_2;
    let mut set = |present: bool, flag: u16| {
        if present {
            flags |= flag;
        }
    };
    set(event.test_id.is_some(), 0x0800);
    set(event.route_code.is_some(), 0x0400);
    set(event.timestamp.is_some(), 0x0200);
    set(event.runnable, 0x0100);
    set(!event.tags.is_empty(), 0x0080);
    set(event.file.is_some(), 0x0040);
    set(event.mime_type.is_some(), 0x0020);
    set(event.eof, 0x0010);
    flags | event.status.map_or(0, |s| u16::from(s.code()))
}

/// `start` is where this packet begins in `out` (which may hold earlier ones).
fn write_body(event: &Event, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    if let Some(timestamp) = event.timestamp {
        out.extend_from_slice(&timestamp.seconds.to_be_bytes());
        write_checked_number("timestamp's nanoseconds", timestamp.nanos as usize, out)?;
    }
    if let Some(test_id) = &event.test_id {
        write_string("test id", test_id, out)?;
    }
    if !event.tags.is_empty() {
        write_checked_number("tag count", event.tags.len(), out)?;
        for tag in &event.tags {
            write_string("tag", tag, out)?;
        }
    }
    if let Some(mime_type) = &event.mime_type {
        write_string("MIME type", mime_type, out)?;
    }
    if let Some(file) = &event.file {
        write_string("file name", &file.name, out)?;
        write_checked_number("file chunk size", file.content.len(), out)?;
        if out.len() - start + file.content.len() > MAX_PACKET_SIZE + 3 {
            return Err(EncodeError::PacketTooLarge {
                size: out.len() - start + file.content.len(),
            });
        }
        out.extend_from_slice(&file.content);
    }
    if let Some(route_code) = &event.route_code {
        write_string("route code", route_code, out)?;
    }
    Ok(())
}

fn write_checked_number(
    field: &'static str,
    value: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match u32::try_from(value) {
        Ok(value) if value <= MAX_NUMBER => {
            write_number(value, out);
            Ok(())
        }
        _ => Err(EncodeError::NumberTooLarge { field, value }),
    }
}

fn write_string(field: &'static str, value: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if value.as_bytes().contains(&0) {
        return Err(EncodeError::Nul {
            field,
            value: value.to_owned(),
        });
    }
    write_checked_number(field, value.len(), out)?;
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

/// Writes events as packets to any [`Write`].
///
/// Each event is written with one `write_all`, so packets from several
/// writers sharing a pipe never interleave mid-packet when the pipe allows
/// atomic writes of that size. Call [`EventWriter::flush`] to push buffered
/// bytes downstream.
#[derive(Debug)]
pub struct EventWriter<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> EventWriter<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> EventWriter<W> {
        EventWriter {
            inner,
            buffer: Vec::with_capacity(256),
        }
    }

    /// Writes one event as one packet.
    pub fn write(&mut self, event: &Event) -> Result<(), EncodeError> {
        self.buffer.clear();
        encode(event, &mut self.buffer)?;
        self.inner.write_all(&self.buffer)?;
        Ok(())
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::number_size;
    use crate::{Status, Timestamp};

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn encoded(event: &Event) -> String {
        let mut out = Vec::new();
        encode(event, &mut out).expect("encodes");
        hex(&out)
    }

    fn vector_timestamp() -> Timestamp {
        Timestamp::new(1_704_164_645, 678_901_000)
    }

    #[test]
    fn vector_a() {
        assert_eq!(
            encoded(&Event::test("foo", Status::Exists)),
            "b3 29 01 0c 03 66 6f 6f 08 55 5f 1b"
        );
    }

    #[test]
    fn vector_b() {
        let event = Event::test("pkg.test_a", Status::InProgress)
            .at(vector_timestamp())
            .tagged("worker-0")
            .routed("0");
        assert_eq!(
            encoded(&event),
            "b3 2f 82 27 65 93 7d 25 e8 77 35 08 0a 70 6b 67 2e 74 65 73 74 5f 61 \
             01 08 77 6f 72 6b 65 72 2d 30 01 30 af c7 47 0d"
        );
    }

    #[test]
    fn vector_c() {
        let mut event = Event::file(Some("pkg.test_a".into()), "traceback", &b"boom\n"[..], true)
            .at(vector_timestamp())
            .with_mime_type("text/plain;charset=utf8");
        event.status = Some(Status::Fail);
        assert_eq!(
            encoded(&event),
            "b3 2b 76 40 44 65 93 7d 25 e8 77 35 08 0a 70 6b 67 2e 74 65 73 74 5f 61 \
             17 74 65 78 74 2f 70 6c 61 69 6e 3b 63 68 61 72 73 65 74 3d 75 74 66 38 \
             09 74 72 61 63 65 62 61 63 6b 05 62 6f 6f 6d 0a 88 31 31 ec"
        );
    }

    #[test]
    fn vector_d() {
        let mut event = Event::file(None, "stdout", &b"hi\n"[..], false);
        event.runnable = false;
        assert_eq!(
            encoded(&event),
            "b3 20 40 13 06 73 74 64 6f 75 74 03 68 69 0a 69 1c cc 3c"
        );
    }

    #[test]
    fn length_sizes_switch_at_the_limits() {
        for content_len in [0, 40, 50, 16_000, 16_400, 4_000_000] {
            let event = Event::file(None, "f", vec![b'x'; content_len], true);
            let mut out = Vec::new();
            encode(&event, &mut out).expect("encodes");
            let (length, size) = crate::number::read_number(&out[3..]).expect("length");
            assert_eq!(length as usize, out.len());
            assert_eq!(size, number_size(out.len() as u32).min(3));
        }
    }

    #[test]
    fn refuses_what_readers_would_reject() {
        let mut out = vec![1, 2, 3];
        let nul = Event::test("a\0b", Status::Success);
        assert!(matches!(
            encode(&nul, &mut out),
            Err(EncodeError::Nul { .. })
        ));
        let huge = Event::file(None, "f", vec![0; MAX_PACKET_SIZE], true);
        assert!(matches!(
            encode(&huge, &mut out),
            Err(EncodeError::PacketTooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2, 3]);
    }
}
