//! Events as text for people: one line per event, attachments shown inline.

use std::io::Write;

use proctor_events::{Sink, SinkError};
use proctor_subunit::Event;

/// Writes each event as a line (`time test-id [route] status tags`) followed
/// by its file chunk, indented: as text when it is UTF-8, else its size.
pub struct TextSink<W> {
    out: W,
}

impl<W: Write> TextSink<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> TextSink<W> {
        TextSink { out }
    }
}

/// Attachment content for people: each line of UTF-8 text after `indent`,
/// or the size of binary content.
pub fn indented_content(content: &[u8], indent: &str) -> String {
    match std::str::from_utf8(content) {
        Ok(text) => text
            .lines()
            .map(|line| format!("{indent}{line}\n"))
            .collect(),
        Err(_) => format!("{indent}<{} bytes of binary data>\n", content.len()),
    }
}

/// The one-line heading of an event.
pub fn describe(event: &Event) -> String {
    let mut parts = Vec::new();
    if let Some(timestamp) = event.timestamp {
        parts.push(timestamp.to_string());
    }
    parts.push(
        event
            .test_id
            .clone()
            .unwrap_or_else(|| "(global)".to_owned()),
    );
    if let Some(route) = &event.route_code {
        parts.push(format!("[{route}]"));
    }
    if let Some(status) = event.status {
        parts.push(status.to_string());
    }
    if !event.tags.is_empty() {
        let tags: Vec<&str> = event.tags.iter().map(String::as_str).collect();
        parts.push(format!("tags: {}", tags.join(",")));
    }
    if !event.runnable {
        parts.push("(not runnable)".to_owned());
    }
    parts.join(" ")
}

impl<W: Write> Sink for TextSink<W> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        writeln!(self.out, "{}", describe(event))?;
        let Some(file) = &event.file else {
            return Ok(());
        };
        let mime = event
            .mime_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let eof = if event.eof { ", end" } else { "" };
        writeln!(self.out, "  {} ({mime}{eof}):", file.name)?;
        self.out
            .write_all(indented_content(&file.content, "    ").as_bytes())?;
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
    use proctor_subunit::Status;

    use super::*;

    #[test]
    fn shows_attachments_indented() {
        let mut out = Vec::new();
        let mut sink = TextSink::new(&mut out);
        let mut event = Event::file(
            Some("t".into()),
            "traceback",
            &b"line 1\nline 2\n"[..],
            true,
        )
        .with_mime_type("text/plain")
        .routed("0");
        event.status = Some(Status::Fail);
        sink.event(&event).expect("writes");
        sink.event(&Event::file(None, "blob", vec![0xff, 0xfe], false))
            .expect("writes");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "t [0] fail\n  traceback (text/plain, end):\n    line 1\n    line 2\n\
             (global)\n  blob (application/octet-stream):\n    <2 bytes of binary data>\n"
        );
    }
}
