//! The one event type every part of Proctor passes around.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// A test status: the low three bits of a packet's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Enumerated by a listing, not run.
    Exists,
    /// Started and still running.
    InProgress,
    /// Passed.
    Success,
    /// Passed although expected to fail: counts as a failure.
    UxSuccess,
    /// Skipped.
    Skip,
    /// Failed or errored.
    Fail,
    /// Failed as expected: counts as a pass.
    XFail,
}

impl Status {
    /// Every status, in wire-code order.
    pub const ALL: [Status; 7] = [
        Status::Exists,
        Status::InProgress,
        Status::Success,
        Status::UxSuccess,
        Status::Skip,
        Status::Fail,
        Status::XFail,
    ];

    /// The status for a wire code (0 means no status).
    pub fn from_code(code: u8) -> Option<Status> {
        match code & 0x7 {
            0 => None,
            n => Some(Status::ALL[usize::from(n) - 1]),
        }
    }

    /// The wire code of this status.
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The name python-subunit and testtools use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Exists => "exists",
            Status::InProgress => "inprogress",
            Status::Success => "success",
            Status::UxSuccess => "uxsuccess",
            Status::Skip => "skip",
            Status::Fail => "fail",
            Status::XFail => "xfail",
        }
    }

    /// Whether this status completes a run of a test (everything but
    /// `inprogress`; `exists` completes a listing).
    pub fn is_final(self) -> bool {
        self != Status::InProgress
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the seven statuses.
#[derive(Debug, thiserror::Error)]
#[error("unknown test status {0:?}: expected one of exists, inprogress, success, uxsuccess, skip, fail, xfail")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A point in time as the wire carries it: unsigned seconds since the Unix epoch
/// and nanoseconds (kept in full, unlike the reference's microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: u32,
    /// Nanoseconds within the second (a reader keeps whatever the packet held).
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp from seconds and nanoseconds.
    pub fn new(seconds: u32, nanos: u32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    /// The current time (clamped to the range the wire can carry).
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a system time, clamping to 1970..2106.
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        match u32::try_from(since_epoch.as_secs()) {
            Ok(seconds) => Timestamp::new(seconds, since_epoch.subsec_nanos()),
            Err(_) => Timestamp::new(u32::MAX, 999_999_999),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u128 {
        u128::from(self.seconds) * 1_000_000_000 + u128::from(self.nanos)
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        let nanos = self.as_nanos().saturating_sub(earlier.as_nanos());
        Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        )
    }

    /// This timestamp plus a duration, saturating at the largest one.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let nanos = self.as_nanos() + duration.as_nanos();
        match u32::try_from(nanos / 1_000_000_000) {
            Ok(seconds) => Timestamp::new(seconds, (nanos % 1_000_000_000) as u32),
            Err(_) => Timestamp::new(u32::MAX, 999_999_999),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with as many fractional digits as needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra_seconds = self.nanos / 1_000_000_000;
        let nanos = (self.nanos % 1_000_000_000) as i32;
        match jiff::Timestamp::new(i64::from(self.seconds) + i64::from(extra_seconds), nanos) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "{}.{:09}s", self.seconds, self.nanos),
        }
    }
}

/// One chunk of a file attachment.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct File {
    /// The file's name, e.g. `stdout`, `stderr` or `traceback`.
    pub name: String,
    /// This chunk's bytes.
    pub content: Bytes,
}

/// One subunit v2 event: every field of a packet, each optional.
///
/// An event may carry a status, a file chunk, or both. Consumers derive
/// meaning (tests, runs, attachments) from sequences of events.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// The test status, if any.
    pub status: Option<Status>,
    /// The test this event is about; none for global events.
    pub test_id: Option<String>,
    /// Where the event came from in a tree of workers (`0/3`).
    pub route_code: Option<String>,
    /// When it happened.
    pub timestamp: Option<Timestamp>,
    /// Whether the test can be run on its own (clear for fixtures, sub-tests).
    pub runnable: bool,
    /// Tags; empty means the packet carries none.
    pub tags: BTreeSet<String>,
    /// The MIME type of the file this chunk belongs to.
    pub mime_type: Option<String>,
    /// A file chunk.
    pub file: Option<File>,
    /// Whether this is the last chunk of its file.
    pub eof: bool,
}

impl Event {
    /// A runnable status event for a test, as `StreamResult.status` makes one.
    pub fn test(test_id: impl Into<String>, status: Status) -> Event {
        Event {
            status: Some(status),
            test_id: Some(test_id.into()),
            runnable: true,
            ..Event::default()
        }
    }

    /// A runnable file-chunk event (`test_id` none for a global file).
    pub fn file(
        test_id: Option<String>,
        name: impl Into<String>,
        content: impl Into<Bytes>,
        eof: bool,
    ) -> Event {
        Event {
            test_id,
            runnable: true,
            file: Some(File {
                name: name.into(),
                content: content.into(),
            }),
            eof,
            ..Event::default()
        }
    }

    /// A runnable, complete (EOF) UTF-8 text attachment in one chunk,
    /// `text/plain;charset=utf8` as python-subunit labels text.
    pub fn text(test_id: Option<String>, name: impl Into<String>, content: &str) -> Event {
        Event::file(
            test_id,
            name,
            Bytes::copy_from_slice(content.as_bytes()),
            true,
        )
        .with_mime_type("text/plain;charset=utf8")
    }

    /// Sets the timestamp.
    pub fn at(mut self, timestamp: Timestamp) -> Event {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the route code.
    pub fn routed(mut self, route_code: impl Into<String>) -> Event {
        self.route_code = Some(route_code.into());
        self
    }

    /// Adds a tag.
    pub fn tagged(mut self, tag: impl Into<String>) -> Event {
        self.tags.insert(tag.into());
        self
    }

    /// Sets the MIME type.
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Event {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Splits a whole file into events whose chunks fit in a packet, the last
    /// one marked EOF. `template` supplies the other fields (test id, route,
    /// MIME type, timestamp); an empty file yields one empty EOF chunk.
    pub fn file_chunks(template: &Event, name: &str, content: Bytes) -> Vec<Event> {
        if content.is_empty() {
            return vec![Event {
                file: Some(File {
                    name: name.to_owned(),
                    content,
                }),
                eof: true,
                ..template.clone()
            }];
        }
        let count = content.len().div_ceil(crate::MAX_CHUNK_SIZE);
        (0..count)
            .map(|i| {
                let start = i * crate::MAX_CHUNK_SIZE;
                let end = (start + crate::MAX_CHUNK_SIZE).min(content.len());
                Event {
                    file: Some(File {
                        name: name.to_owned(),
                        content: content.slice(start..end),
                    }),
                    eof: i + 1 == count,
                    ..template.clone()
                }
            })
            .collect()
    }

    /// The event's route code with a prefix added, as a multiplexer labels its
    /// inputs: `3` on input `0` becomes `0/3`, no route becomes `0`.
    pub fn prefix_route(&mut self, prefix: &str) {
        self.route_code = Some(match self.route_code.take() {
            Some(route) => format!("{prefix}/{route}"),
            None => prefix.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(status));
        }
        assert_eq!(Status::from_code(0), None);
        assert!("passed".parse::<Status>().is_err());
    }

    #[test]
    fn timestamp_displays_as_rfc3339() {
        let ts = Timestamp::new(1_704_164_645, 678_901_000);
        assert_eq!(ts.to_string(), "2024-01-02T03:04:05.678901Z");
        let later = ts.saturating_add(Duration::from_millis(1500));
        assert_eq!(later.saturating_since(ts), Duration::from_millis(1500));
        assert_eq!(ts.saturating_since(later), Duration::ZERO);
    }

    #[test]
    fn prefix_route_nests() {
        let mut event = Event::test("a", Status::Success);
        event.prefix_route("1");
        assert_eq!(event.route_code.as_deref(), Some("1"));
        event.prefix_route("0");
        assert_eq!(event.route_code.as_deref(), Some("0/1"));
    }

    #[test]
    fn file_chunks_split_large_files() {
        let content = Bytes::from(vec![7u8; crate::MAX_CHUNK_SIZE + 10]);
        let chunks = Event::file_chunks(&Event::default(), "big", content);
        assert_eq!(chunks.len(), 2);
        assert!(!chunks[0].eof && chunks[1].eof);
        assert_eq!(chunks[1].file.as_ref().map(|f| f.content.len()), Some(10));
    }
}
