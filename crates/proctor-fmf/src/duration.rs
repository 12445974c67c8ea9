//! tmt's test duration format, mirroring `tmt.utils.duration_to_seconds`.
//!
//! A duration is a sequence of parts: a time (`30`, `30s`, `5m`, `1h`, `2d`, plain numbers
//! being seconds, spaces allowed between number and unit) or a factor (`*2`, `*1.5`). The times
//! add up, the factors multiply the total, and the result is rounded up to whole seconds. When
//! the times add up to nothing (only factors, or `0`) the default is used instead: this is how
//! an adjust rule's `duration+: "*2"` doubles a test's limit even when the test set none.

use regex::Regex;
use std::sync::LazyLock;
use std::time::Duration;

/// tmt's default test duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5 * 60);

/// A duration tmt would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?} (expected parts like `30s`, `5m`, `1h 30m`, `2d`, `*2`)")]
pub struct DurationError(pub String);

// tmt's expression with its lookahead `(?![smhd])` after the factor dropped: the `\b` that
// follows already fails wherever the lookahead would, since a factor followed by a letter has no
// word boundary after it. `[0-9]` instead of `\d` keeps to what Rust parses as a number.
const PART: &str = r"(?x)
    (
        ( (?P<asterisk>\*) \s* (?P<factor>[0-9]+(\.[0-9]+)?) \s* )
        |
        ( (?P<digits>[0-9]+) \s* (?P<unit>[smhd])? \s* )
    )\b";

static VALID: LazyLock<Regex> = LazyLock::new(|| fixed_regex(&format!(r"(?x)\A( {PART} \s* )+\z")));
static PARTS: LazyLock<Regex> = LazyLock::new(|| fixed_regex(PART));
static UNIT_THEN_DIGIT: LazyLock<Regex> = LazyLock::new(|| fixed_regex(r"([smhd])([0-9])"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| fixed_regex(r"\s\s+"));

fn fixed_regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|error| unreachable!("fixed pattern {pattern}: {error}"))
}

/// Parses a tmt duration, using `default` when the times add up to zero.
pub fn parse_duration(text: &str, default: Duration) -> Result<Duration, DurationError> {
    let invalid = || DurationError(text.to_owned());
    // tmt first separates `1h30m` into `1h 30m` and collapses runs of white space.
    let separated = UNIT_THEN_DIGIT.replace_all(text, "$1 $2");
    let normalized = SPACES.replace_all(&separated, " ");
    if !VALID.is_match(&normalized) {
        return Err(invalid());
    }
    let mut seconds: u64 = 0;
    let mut factor: f64 = 1.0;
    for part in PARTS.captures_iter(&normalized) {
        if let Some(value) = part.name("factor") {
            factor *= value.as_str().parse::<f64>().map_err(|_| invalid())?;
        } else if let Some(digits) = part.name("digits") {
            let count: u64 = digits.as_str().parse().map_err(|_| invalid())?;
            let unit = part
                .name("unit")
                .map_or(1, |unit| unit_seconds(unit.as_str()));
            seconds = count
                .checked_mul(unit)
                .and_then(|part_seconds| seconds.checked_add(part_seconds))
                .ok_or_else(invalid)?;
        }
    }
    let base = if seconds == 0 {
        default.as_secs_f64()
    } else {
        seconds as f64
    };
    let total = (base * factor).ceil();
    // Python would raise OverflowError on an infinite result; reject anything a Duration cannot
    // hold.
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

fn unit_seconds(unit: &str) -> u64 {
    match unit {
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> u64 {
        parse_duration(text, DEFAULT_DURATION)
            .unwrap_or_else(|error| panic!("{error}"))
            .as_secs()
    }

    #[test]
    fn single_parts() {
        assert_eq!(seconds("30"), 30);
        assert_eq!(seconds("30s"), 30);
        assert_eq!(seconds("5m"), 300);
        assert_eq!(seconds("2h"), 7200);
        assert_eq!(seconds("2d"), 172_800);
        assert_eq!(seconds("5 m"), 300);
        assert_eq!(seconds("5m "), 300);
    }

    #[test]
    fn parts_add_up() {
        assert_eq!(seconds("1h 30m"), 5400);
        assert_eq!(seconds("1h30m"), 5400);
        assert_eq!(seconds("2 1m 4"), 66);
        assert_eq!(seconds("1d 1h 1m 1s"), 90_061);
        assert_eq!(seconds("1m  \t 1s"), 61);
    }

    #[test]
    fn factors_multiply_and_round_up() {
        assert_eq!(seconds("5m *2"), 600);
        assert_eq!(seconds("5m*2"), 600);
        assert_eq!(seconds("*2 5m"), 600);
        assert_eq!(seconds("10s *1.55"), 16);
        assert_eq!(seconds("1m *2 *3"), 360);
        assert_eq!(seconds("1m * 2"), 120);
    }

    #[test]
    fn nothing_to_multiply_uses_the_default() {
        assert_eq!(seconds("*2"), 600);
        assert_eq!(seconds("0"), 300);
        assert_eq!(
            parse_duration("*3", Duration::from_secs(10))
                .unwrap()
                .as_secs(),
            30
        );
    }

    #[test]
    fn rejects_what_tmt_rejects() {
        for bad in [
            "", " 5m", "5x", "1.5h", "5mm", "*2m", "*2 m", "m", "5m-", "abc", "*", "1h 30q",
        ] {
            assert!(
                parse_duration(bad, DEFAULT_DURATION).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999999d", DEFAULT_DURATION).is_err());
        assert!(parse_duration("18446744073709551615d", DEFAULT_DURATION).is_err());
        assert!(parse_duration("1000000000000000000d *1e400", DEFAULT_DURATION).is_err());
    }
}
