//! Decoding from any blocking reader.

use std::io::{self, Read};

use crate::decode::Plan;
use crate::{DecodedRef, Decoder, Event, EventRef};

/// Reads smaller than this are not worth a system call.
const READ_SIZE: usize = 64 * 1024;

/// Decodes events from any [`Read`], as an iterator.
///
/// The reader asks for more bytes only when the buffered ones hold no whole
/// event, and takes whatever one `read` call returns, so on a pipe each event
/// is yielded as soon as its packet has arrived. The buffer holds at most one
/// packet (or one read's worth of text) beyond what has been yielded.
#[derive(Debug)]
pub struct EventReader<R: Read> {
    inner: R,
    decoder: Decoder,
    /// `buffer[start..end]` is read but not yet decoded; past `end` is space
    /// for the next read, zeroed once when the buffer grows, not per read.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    at_eof: bool,
}

impl<R: Read> EventReader<R> {
    /// A reader at the start of a stream.
    pub fn new(inner: R) -> EventReader<R> {
        EventReader {
            inner,
            decoder: Decoder::new(),
            buffer: Vec::new(),
            start: 0,
            end: 0,
            at_eof: false,
        }
    }

    /// The next event, `None` at end of input.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        Ok(self.next_ref()?.map(|event| event.to_event()))
    }

    /// The next event borrowed from the reader's buffer (no allocation), `None`
    /// at end of input. The event must be dropped before the next call.
    pub fn next_ref(&mut self) -> io::Result<Option<EventRef<'_>>> {
        let plan = loop {
            match self
                .decoder
                .plan(&self.buffer[self.start..self.end], self.at_eof)
            {
                Plan::Empty if self.at_eof => return Ok(None),
                Plan::Empty => self.fill(1)?,
                Plan::NeedMore(at_least) => self.fill(at_least)?,
                ready => break ready,
            }
        };
        match self
            .decoder
            .follow(plan, &self.buffer[self.start..self.end])
        {
            DecodedRef::Event { event, consumed } => {
                self.start += consumed;
                Ok(Some(event))
            }
            // Unreachable: the plan above was to decode an event.
            DecodedRef::NeedMore { .. } | DecodedRef::Empty => Ok(None),
        }
    }

    /// Reads once, into room for up to a read's worth more; reserves room for
    /// `at_least` unconsumed bytes without touching it, as a packet may claim
    /// more than the stream holds.
    fn fill(&mut self, at_least: usize) -> io::Result<()> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let filled = self.end;
        // Room for the packet and one read beyond it, exactly and at once:
        // amortized growth would reserve up to twice a maximal packet.
        let wanted = at_least.max(filled) + READ_SIZE;
        if wanted > self.buffer.capacity() {
            self.buffer.reserve_exact(wanted - self.buffer.len());
        }
        let target = filled + READ_SIZE;
        if target > self.buffer.len() {
            self.buffer.resize(target, 0);
        }
        let result = loop {
            match self.inner.read(&mut self.buffer[filled..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let read = *result.as_ref().unwrap_or(&0);
        self.end = (filled + read).min(self.buffer.len());
        if read == 0 && result.is_ok() {
            self.at_eof = true;
        }
        result.map(|_| ())
    }

    /// How many bytes have been read but not yet decoded. Zero means the next
    /// event needs a read, which may block: a good moment to flush output.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Iterator for EventReader<R> {
    type Item = io::Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Status};

    /// A reader that returns one byte per call, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((&first, rest)) if !buf.is_empty() => {
                    buf[0] = first;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn reads_one_byte_at_a_time() {
        let mut stream = Vec::new();
        for id in ["a", "b"] {
            encode(&Event::test(id, Status::Success), &mut stream).expect("encodes");
        }
        let events: Vec<Event> = EventReader::new(Trickle(&stream))
            .collect::<io::Result<_>>()
            .expect("reads");
        assert_eq!(
            events,
            vec![
                Event::test("a", Status::Success),
                Event::test("b", Status::Success)
            ]
        );
    }
}
