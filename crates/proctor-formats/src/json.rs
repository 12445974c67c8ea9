//! One JSON object per event, for scripts.
//!
//! Every key is always present so consumers need no special cases:
//! `status`, `test_id`, `route_code`, `timestamp` (RFC 3339, UTC, to the
//! nanosecond), `runnable`, `tags` (sorted), `mime_type`, `file_name`,
//! `file_content` (base64) and `eof`; absent fields are `null`.

use std::io::Write;

use base64::Engine;
use proctor_events::{Sink, SinkError};
use proctor_subunit::Event;
use serde_json::{json, Value};

/// The JSON form of one event.
pub fn event_to_json(event: &Event) -> Value {
    let file = event.file.as_ref();
    json!({
        "status": event.status.map(|s| s.as_str()),
        "test_id": event.test_id,
        "route_code": event.route_code,
        "timestamp": event.timestamp.map(|t| t.to_string()),
        "runnable": event.runnable,
        "tags": event.tags,
        "mime_type": event.mime_type,
        "file_name": file.map(|f| f.name.as_str()),
        "file_content": file.map(|f| base64::engine::general_purpose::STANDARD.encode(&f.content)),
        "eof": event.eof,
    })
}

/// Writes each event as one line of JSON.
pub struct JsonLines<W> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines { out }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, &event_to_json(event))
            .map_err(std::io::Error::from)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use proctor_subunit::{Status, Timestamp};

    use super::*;

    #[test]
    fn every_key_is_present() {
        let event = Event::test("pkg.test_a", Status::Fail)
            .at(Timestamp::new(1_704_164_645, 678_901_234))
            .tagged("b")
            .tagged("a");
        let value = event_to_json(&event);
        assert_eq!(value["status"], "fail");
        assert_eq!(value["timestamp"], "2024-01-02T03:04:05.678901234Z");
        assert_eq!(value["tags"], json!(["a", "b"]));
        assert_eq!(value["file_name"], Value::Null);
        let chunk = Event::file(None, "stdout", &b"hi\n"[..], false);
        assert_eq!(event_to_json(&chunk)["file_content"], "aGkK");
    }
}
