//! Async decoding and encoding through `tokio_util::codec`.

use bytes::{Buf, BytesMut};
use tokio_util::codec;

use crate::{encode, Decoded, Decoder, EncodeError, Event};

/// A `tokio_util` codec for subunit v2: wrap an `AsyncRead` in
/// `FramedRead::new(reader, SubunitCodec::default())` for a stream of events,
/// or an `AsyncWrite` in `FramedWrite` to send them.
#[derive(Debug, Default)]
pub struct SubunitCodec {
    decoder: Decoder,
}

impl SubunitCodec {
    fn step(&mut self, src: &mut BytesMut, at_eof: bool) -> Option<Event> {
        match self.decoder.decode(src, at_eof) {
            Decoded::Event { event, consumed } => {
                src.advance(consumed);
                Some(event)
            }
            Decoded::NeedMore { at_least } => {
                src.reserve(at_least.saturating_sub(src.len()));
                None
            }
            Decoded::Empty => None,
        }
    }
}

impl codec::Decoder for SubunitCodec {
    type Item = Event;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Self::Error> {
        Ok(self.step(src, false))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Self::Error> {
        Ok(self.step(src, true))
    }
}

impl codec::Encoder<&Event> for SubunitCodec {
    type Error = EncodeError;

    fn encode(&mut self, event: &Event, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let mut packet = Vec::new();
        encode(event, &mut packet)?;
        dst.extend_from_slice(&packet);
        Ok(())
    }
}

impl From<EncodeError> for std::io::Error {
    fn from(error: EncodeError) -> Self {
        match error {
            EncodeError::Io(error) => error,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    use super::*;
    use crate::Status;

    #[tokio::test]
    async fn events_arrive_before_the_stream_ends() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut events = FramedRead::new(reader, SubunitCodec::default());
        let mut packet = Vec::new();
        encode(&Event::test("live", Status::InProgress), &mut packet).expect("encodes");
        writer.write_all(&packet).await.expect("writes");
        let first = events.next().await.expect("an event").expect("decodes");
        assert_eq!(first.test_id.as_deref(), Some("live"));
        drop(writer);
        assert!(events.next().await.is_none());
    }
}
