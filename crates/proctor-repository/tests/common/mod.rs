//! Streams and projects for the integration tests.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use proctor_subunit::{encode, Event, Status, Timestamp};
use tempfile::TempDir;

/// When the test streams start.
pub const EPOCH: u32 = 1_700_000_000;

/// One test's result in a made-up run: its id, how it ends
/// (`InProgress` means the stream never ends it) and how many
/// milliseconds it takes.
pub type Ran<'a> = (&'a str, Status, u32);

/// The events of a run in which the tests run one after the other, each
/// failure with a traceback attached.
pub fn events(results: &[Ran]) -> Vec<Event> {
    let mut clock = Timestamp::new(EPOCH, 0);
    let mut events = Vec::new();
    for &(id, status, millis) in results {
        events.push(Event::test(id, Status::InProgress).at(clock));
        if status == Status::Fail {
            events.push(Event::text(
                Some(id.into()),
                "traceback",
                &format!("{id} broke"),
            ));
        }
        clock = clock.saturating_add(std::time::Duration::from_millis(u64::from(millis)));
        if status != Status::InProgress {
            events.push(Event::test(id, status).at(clock));
        }
    }
    events
}

/// The same run as a subunit v2 byte stream.
pub fn stream(results: &[Ran]) -> Vec<u8> {
    encoded(&events(results))
}

/// Events as a subunit v2 byte stream.
pub fn encoded(events: &[Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        encode(event, &mut bytes).expect("test events encode");
    }
    bytes
}

/// An empty project directory.
pub fn project() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}
