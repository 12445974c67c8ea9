//! How the pages write times, durations and ANSI-coloured logs.

use std::time::Duration;

use jiff::Timestamp;

/// A duration for people: `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 10 min`, `3 d 4 h`.
pub(crate) fn duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{} ms", duration.as_millis()),
        1..60 => format!("{:.1} s", duration.as_secs_f64()),
        60..3600 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        3600..86400 => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86400, seconds % 86400 / 3600),
    }
}

/// The time from `from` to `to` (zero when `to` is earlier).
pub(crate) fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// How long ago `at` was.
pub(crate) fn age(at: Timestamp) -> String {
    duration(between(at, Timestamp::now()))
}

/// A timestamp to the second, in UTC.
pub(crate) fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A job's duration: from its start to its end, or to now while it runs; empty before it starts.
pub(crate) fn job_duration(started: Option<Timestamp>, ended: Option<Timestamp>) -> String {
    match (started, ended) {
        (Some(started), Some(ended)) => duration(between(started, ended)),
        (Some(started), None) => format!("{} so far", duration(between(started, Timestamp::now()))),
        _ => String::new(),
    }
}

/// Log bytes as HTML: escaped, with ANSI colours as spans (a sequence that does not parse is shown as text).
pub(crate) fn log_html(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    ansi_to_html::convert(&text).unwrap_or_else(|_| escape(&text))
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_every_scale() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_400)), "12.4 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(duration(Duration::from_secs(7800)), "2 h 10 min");
        assert_eq!(
            duration(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3 d 4 h"
        );
    }

    #[test]
    fn logs_are_escaped_and_coloured() {
        let html = log_html(b"<script>alert(1)</script> \x1b[31mred\x1b[0m");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("red</span>"), "{html}");
    }
}
