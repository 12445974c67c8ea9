//! Sinks that change events on their way through.

use std::collections::BTreeSet;

use proctor_subunit::{Event, Timestamp};

use crate::{Sink, SinkError};

/// Gives every event that lacks a timestamp the current time.
pub struct Timestamper<S> {
    inner: S,
    clock: Box<dyn FnMut() -> Timestamp + Send>,
}

impl<S: Sink> Timestamper<S> {
    /// Stamps events with the system clock.
    pub fn new(inner: S) -> Timestamper<S> {
        Timestamper::with_clock(inner, Timestamp::now)
    }

    /// Stamps events with the given clock.
    pub fn with_clock(
        inner: S,
        clock: impl FnMut() -> Timestamp + Send + 'static,
    ) -> Timestamper<S> {
        Timestamper {
            inner,
            clock: Box::new(clock),
        }
    }
}

impl<S: Sink> Sink for Timestamper<S> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        if event.timestamp.is_some() {
            return self.inner.event(event);
        }
        let stamped = event.clone().at((self.clock)());
        self.inner.event(&stamped)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }
}

/// Adds and removes tags on every event, as `subunit-tags` does.
pub struct TagEditor<S> {
    inner: S,
    add: BTreeSet<String>,
    remove: BTreeSet<String>,
}

impl<S: Sink> TagEditor<S> {
    /// Adds `add` to and removes `remove` from every event's tags.
    pub fn new(inner: S, add: BTreeSet<String>, remove: BTreeSet<String>) -> TagEditor<S> {
        TagEditor { inner, add, remove }
    }
}

impl<S: Sink> Sink for TagEditor<S> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut event = event.clone();
        event.tags.extend(self.add.iter().cloned());
        event.tags.retain(|tag| !self.remove.contains(tag));
        self.inner.event(&event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use proctor_subunit::Status;

    use super::*;
    use crate::Collect;

    #[test]
    fn stamps_only_what_lacks_a_time() {
        let mut out = Collect::default();
        let mut stamper = Timestamper::with_clock(&mut out, || Timestamp::new(5, 0));
        let timed = Event::test("a", Status::Success).at(Timestamp::new(1, 0));
        stamper.event(&timed).expect("passes");
        stamper
            .event(&Event::test("b", Status::Success))
            .expect("passes");
        let times: Vec<_> = out.events.iter().map(|e| e.timestamp).collect();
        assert_eq!(
            times,
            vec![Some(Timestamp::new(1, 0)), Some(Timestamp::new(5, 0))]
        );
    }

    #[test]
    fn edits_tags() {
        let mut out = Collect::default();
        let mut editor = TagEditor::new(
            &mut out,
            BTreeSet::from(["new".to_owned()]),
            BTreeSet::from(["old".to_owned()]),
        );
        let event = Event::test("a", Status::Success)
            .tagged("old")
            .tagged("kept");
        editor.event(&event).expect("passes");
        let tags: Vec<_> = out.events[0].tags.iter().map(String::as_str).collect();
        assert_eq!(tags, ["kept", "new"]);
    }
}
