//! Timeouts as Testflinger writes them (whole seconds) or as people do (`"30m"`, `"1h 30m"`, `"PT2H"`).
//!
//! Strings are read by jiff's duration parser (its "friendly" format and ISO 8601), so every spelling jiff
//! documents works. A timeout must be a positive whole number of seconds; it is written back as seconds,
//! which is what Testflinger and the agent's `job.json` expect.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserializer, Serializer};

const EXPECTED: &str =
    "a positive whole number of seconds or a duration string like \"30m\" or \"1h 30m\"";

/// Deserialises a required timeout.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(TimeoutVisitor)
}

/// Deserialises an optional timeout (`null` or absent is `None`).
pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_option(OptionalTimeoutVisitor)
}

/// Serialises a timeout as whole seconds.
pub(crate) fn serialize<S: Serializer>(
    timeout: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(timeout.as_secs())
}

/// Serialises an optional timeout as whole seconds (or `null`).
pub(crate) fn serialize_option<S: Serializer>(
    timeout: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match timeout {
        Some(timeout) => serialize(timeout, serializer),
        None => serializer.serialize_none(),
    }
}

/// Parses a duration string: plain digits are seconds, anything else goes to jiff.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        let seconds = trimmed
            .parse::<u64>()
            .map_err(|_| format!("{trimmed} seconds is too long"))?;
        return positive(Duration::from_secs(seconds));
    }
    let signed: jiff::SignedDuration = trimmed
        .parse()
        .map_err(|error: jiff::Error| format!("not a duration: {error}"))?;
    if signed.subsec_nanos() != 0 {
        return Err("a timeout must be a whole number of seconds".to_owned());
    }
    let seconds =
        u64::try_from(signed.as_secs()).map_err(|_| "a timeout cannot be negative".to_owned())?;
    positive(Duration::from_secs(seconds))
}

fn positive(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() {
        Err("a timeout must be longer than zero".to_owned())
    } else {
        Ok(timeout)
    }
}

struct TimeoutVisitor;

impl<'de> Visitor<'de> for TimeoutVisitor {
    type Value = Duration;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        positive(Duration::from_secs(seconds))
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(seconds), &self))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        match u64::try_from(seconds) {
            Ok(seconds) => self.visit_u64(seconds),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(seconds), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_timeout(text).map_err(|reason| {
            E::invalid_value(
                Unexpected::Str(text),
                &format!("{EXPECTED} ({reason})").as_str(),
            )
        })
    }
}

struct OptionalTimeoutVisitor;

impl<'de> Visitor<'de> for OptionalTimeoutVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(EXPECTED)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_in_every_spelling_become_seconds() {
        assert_eq!(parse_timeout("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_timeout("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("2 hours"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("PT2H"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn zero_negative_fractional_and_nonsense_are_refused() {
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("-5m").is_err());
        assert!(parse_timeout("1.5s").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("").is_err());
        assert!(parse_timeout("99999999999999999999999").is_err());
    }
}
