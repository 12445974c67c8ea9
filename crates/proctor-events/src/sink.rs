//! The sink trait and the simplest sinks.

use std::io::{self, Write};

use proctor_subunit::{EncodeError, Event, EventRef, EventWriter};

/// Why a sink could not take an event.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing downstream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An event could not be encoded as a packet.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Something that consumes a stream of events.
pub trait Sink {
    /// Takes one event.
    fn event(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Takes one borrowed event, as a decoder yields it without copying.
    /// Sinks that only look at events override this to skip the copy that
    /// the default makes for [`Sink::event`].
    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        self.event(&event.to_event())
    }

    /// The input has paused: push anything written so far downstream, so
    /// that readers of a live stream see it now.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// The stream has ended: flush what is buffered.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        (**self).event(event)
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        (**self).event_ref(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        (**self).finish()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        (**self).event(event)
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        (**self).event_ref(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        (**self).finish()
    }
}

/// Writing events as subunit v2: flushed at the end of the stream.
impl<W: Write> Sink for EventWriter<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        Ok(self.write(event)?)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(EventWriter::flush(self)?)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(EventWriter::flush(self)?)
    }
}

/// Copies every event to each of several sinks, in order.
#[derive(Default)]
pub struct Tee<'a> {
    sinks: Vec<Box<dyn Sink + 'a>>,
}

impl<'a> Tee<'a> {
    /// A tee with no outputs yet.
    pub fn new() -> Tee<'a> {
        Tee::default()
    }

    /// Adds an output.
    pub fn with(mut self, sink: impl Sink + 'a) -> Tee<'a> {
        self.sinks.push(Box::new(sink));
        self
    }
}

impl Sink for Tee<'_> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|sink| sink.event(event))
    }

    fn event_ref(&mut self, event: &EventRef<'_>) -> Result<(), SinkError> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| sink.event_ref(event))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|sink| sink.flush())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|sink| sink.finish())
    }
}

/// Keeps every event, for tests and small streams.
#[derive(Debug, Default)]
pub struct Collect {
    /// The events received so far.
    pub events: Vec<Event>,
}

impl Sink for Collect {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.events.push(event.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proctor_subunit::{EventReader, Status};

    use super::*;

    #[test]
    fn tee_copies_to_every_sink() {
        let mut first = Collect::default();
        let mut bytes = Vec::new();
        {
            let mut writer = EventWriter::new(&mut bytes);
            let mut tee = Tee::new().with(&mut first).with(&mut writer);
            tee.event(&Event::test("a", Status::Success))
                .expect("sinks");
            tee.finish().expect("finishes");
        }
        let decoded: Vec<Event> = EventReader::new(&bytes[..])
            .collect::<io::Result<_>>()
            .expect("decodes");
        assert_eq!(first.events, decoded);
    }
}
