//! The few pieces of Python semantics that fmf's behaviour depends on: how `str()` renders a
//! value, `==` between numbers and booleans, `+` and `-` on numbers, `int()` on a version part,
//! `str.strip()`, and `re.sub` replacement templates. fmf is defined by its Python source, so
//! mirroring these is what makes a tree mean the same thing to Proctor as to tmt.

use serde_yaml_ng::{Mapping, Number, Value};
use std::cmp::Ordering;

/// Whether Python's `str.isspace()` holds for `c`: Unicode white space plus the four ASCII
/// separator controls that Python also counts.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
pub(crate) fn strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// Python's `str(value)` for the values YAML can hold.
pub(crate) fn str_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => repr(other),
    }
}

/// Python's `repr(value)`, which is also what `str()` gives for everything but strings.
pub(crate) fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(number) => number_repr(number),
        Value::String(text) => string_repr(text),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(mapping) => {
            let entries: Vec<String> = mapping
                .iter()
                .map(|(key, value)| format!("{}: {}", repr(key), repr(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Tagged(tagged) => repr(&tagged.value),
    }
}

fn number_repr(number: &Number) -> String {
    match number.as_f64() {
        Some(float) if number.is_f64() => float_repr(float),
        _ => number.to_string(),
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional for exponents from -4
/// to 15 and scientific (`1e+16`) outside them.
pub(crate) fn float_repr(float: f64) -> String {
    if float.is_nan() {
        return "nan".to_owned();
    }
    if float.is_infinite() {
        return if float > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let scientific = format!("{float:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let positional = format!("{float}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

fn string_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&escape_control(c)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn escape_control(c: char) -> String {
    let code = u32::from(c);
    if code <= 0xff {
        format!("\\x{code:02x}")
    } else {
        format!("\\u{code:04x}")
    }
}

/// A number as Python sees it: booleans are the integers 0 and 1.
#[derive(Clone, Copy)]
enum Numeric {
    Int(i128),
    Float(f64),
}

fn numeric(value: &Value) -> Option<Numeric> {
    match value {
        Value::Bool(flag) => Some(Numeric::Int(i128::from(*flag))),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                Some(Numeric::Int(i128::from(int)))
            } else if let Some(int) = number.as_u64() {
                Some(Numeric::Int(i128::from(int)))
            } else {
                number.as_f64().map(Numeric::Float)
            }
        }
        _ => None,
    }
}

fn as_float(number: Numeric) -> f64 {
    match number {
        // Precision loss is Python's too: int + float is computed in floating point.
        Numeric::Int(int) => int as f64,
        Numeric::Float(float) => float,
    }
}

/// What went wrong combining two numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Python's `left + right` (when `negate` is false) or `left - right` on two numbers, or `None`
/// when either is not a number. Integers beyond 64 bits are an [`Overflow`] (Python would switch
/// to big integers; no metadata needs them).
pub(crate) fn add_numbers(
    left: &Value,
    right: &Value,
    negate: bool,
) -> Option<Result<Value, Overflow>> {
    let (left, right) = (numeric(left)?, numeric(right)?);
    Some(match (left, right) {
        (Numeric::Int(a), Numeric::Int(b)) => {
            let sum = if negate { a - b } else { a + b };
            int_value(sum)
        }
        _ => {
            let (a, b) = (as_float(left), as_float(right));
            Ok(Value::Number(Number::from(if negate {
                a - b
            } else {
                a + b
            })))
        }
    })
}

fn int_value(int: i128) -> Result<Value, Overflow> {
    if let Ok(small) = i64::try_from(int) {
        Ok(Value::Number(Number::from(small)))
    } else if let Ok(big) = u64::try_from(int) {
        Ok(Value::Number(Number::from(big)))
    } else {
        Err(Overflow)
    }
}

/// Python's `==`: numbers and booleans compare by value across types (`1 == 1.0 == True`),
/// containers element by element.
pub(crate) fn equal(left: &Value, right: &Value) -> bool {
    if let (Some(a), Some(b)) = (numeric(left), numeric(right)) {
        return match (a, b) {
            (Numeric::Int(a), Numeric::Int(b)) => a == b,
            _ => as_float(a) == as_float(b),
        };
    }
    match (left, right) {
        (Value::Sequence(a), Value::Sequence(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y))
        }
        (Value::Mapping(a), Value::Mapping(b)) => mappings_equal(a, b),
        (Value::Tagged(a), _) => equal(&a.value, right),
        (_, Value::Tagged(b)) => equal(left, &b.value),
        _ => left == right,
    }
}

fn mappings_equal(left: &Mapping, right: &Mapping) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .all(|(key, value)| right.get(key).is_some_and(|other| equal(value, other)))
}

/// Python's `int(text)` on a version part, as a number that compares like Python's unbounded
/// integers: `None` when `int()` would raise `ValueError`. Only ASCII digits are recognised.
pub(crate) fn parse_int(text: &str) -> Option<BigInt> {
    let text = strip(text);
    let (negative, digits) = match text.as_bytes().first()? {
        b'+' => (false, &text[1..]),
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let magnitude: String = digits.chars().filter(|c| *c != '_').collect();
    let magnitude = magnitude.trim_start_matches('0').to_owned();
    let negative = negative && !magnitude.is_empty();
    Some(BigInt {
        negative,
        magnitude,
    })
}

/// An integer of any size, kept as its decimal digits: enough to order version parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BigInt {
    negative: bool,
    /// Decimal digits without leading zeros; empty for zero.
    magnitude: String,
}

impl Ord for BigInt {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_magnitude = self
            .magnitude
            .len()
            .cmp(&other.magnitude.len())
            .then_with(|| self.magnitude.cmp(&other.magnitude));
        match (self.negative, other.negative) {
            (false, false) => by_magnitude,
            (true, true) => by_magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for BigInt {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a Python replacement template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadTemplate(pub(crate) String);

/// Translates a Python `re.sub` replacement template (`\1`, `\g<name>`, `\n`, `\\`) into the
/// `regex` crate's syntax (`${1}`, `${name}`, a literal newline, a literal backslash, `$$`).
pub(crate) fn replacement_template(python: &str) -> Result<String, BadTemplate> {
    let mut out = String::with_capacity(python.len());
    let mut chars = python.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                None => return Err(BadTemplate("bad escape (end of pattern)".to_owned())),
                Some(digit @ '1'..='9') => {
                    let mut group = digit.to_string();
                    if let Some(second) = chars.next_if(char::is_ascii_digit) {
                        group.push(second);
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => out.push_str(&named_group(&mut chars)?),
                Some(escaped) => out.push_str(&template_escape(escaped)?),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

fn named_group(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, BadTemplate> {
    if chars.next() != Some('<') {
        return Err(BadTemplate("missing < after \\g".to_owned()));
    }
    let mut name = String::new();
    for c in chars.by_ref() {
        if c == '>' {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !valid {
                return Err(BadTemplate(format!("bad group name {name:?}")));
            }
            return Ok(format!("${{{name}}}"));
        }
        name.push(c);
    }
    Err(BadTemplate("missing > after \\g<".to_owned()))
}

fn template_escape(escaped: char) -> Result<String, BadTemplate> {
    Ok(match escaped {
        'n' => "\n".to_owned(),
        't' => "\t".to_owned(),
        'r' => "\r".to_owned(),
        'f' => "\u{c}".to_owned(),
        'v' => "\u{b}".to_owned(),
        'a' => "\u{7}".to_owned(),
        'b' => "\u{8}".to_owned(),
        '\\' => "\\".to_owned(),
        '0' => "\0".to_owned(),
        letter if letter.is_ascii_alphabetic() => {
            return Err(BadTemplate(format!("bad escape \\{letter}")));
        }
        other => format!("\\{other}").replace('$', "$$"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn str_matches_python() {
        assert_eq!(str_of(&yaml("1.0")), "1.0");
        assert_eq!(str_of(&yaml("1e20")), "1e+20");
        assert_eq!(str_of(&yaml("0.00001")), "1e-05");
        assert_eq!(str_of(&yaml("0.0001")), "0.0001");
        assert_eq!(str_of(&yaml("123.5")), "123.5");
        assert_eq!(str_of(&yaml("true")), "True");
        assert_eq!(str_of(&yaml("~")), "None");
        assert_eq!(str_of(&yaml("-7")), "-7");
        assert_eq!(
            str_of(&yaml("[a, 1, {b: \"it's\"}]")),
            "['a', 1, {'b': \"it's\"}]"
        );
    }

    #[test]
    fn numbers_add_like_python() {
        let add = |a: &str, b: &str| add_numbers(&yaml(a), &yaml(b), false).unwrap().unwrap();
        assert_eq!(add("1", "2"), yaml("3"));
        assert_eq!(add("true", "true"), yaml("2"));
        assert_eq!(add("1", "0.5"), yaml("1.5"));
        assert_eq!(
            add_numbers(
                &yaml("9223372036854775807"),
                &yaml("9223372036854775807"),
                false
            ),
            Some(Ok(yaml("18446744073709551614")))
        );
        assert_eq!(
            add_numbers(&yaml("18446744073709551615"), &yaml("1"), false),
            Some(Err(Overflow))
        );
        assert_eq!(add_numbers(&yaml("a"), &yaml("1"), false), None);
        assert_eq!(
            add_numbers(&yaml("5"), &yaml("7"), true).unwrap().unwrap(),
            yaml("-2")
        );
    }

    #[test]
    fn equality_crosses_numeric_types() {
        assert!(equal(&yaml("1"), &yaml("1.0")));
        assert!(equal(&yaml("1"), &yaml("true")));
        assert!(!equal(&yaml("1"), &yaml("'1'")));
        assert!(equal(&yaml("[1, {a: 2}]"), &yaml("[1.0, {a: 2.0}]")));
    }

    #[test]
    fn int_parsing_follows_python() {
        let int = |text: &str| parse_int(text);
        assert_eq!(int("007"), int("7"));
        assert_eq!(int(" 1_0 "), int("10"));
        assert_eq!(int("1__0"), None);
        assert_eq!(int("_1"), None);
        assert_eq!(int("fc32"), None);
        assert_eq!(int(""), None);
        assert_eq!(int("-0"), int("0"));
        assert!(int("100000000000000000000000").unwrap() > int("99999999999999999999999").unwrap());
        assert!(int("-5").unwrap() < int("3").unwrap());
        assert!(int("-5").unwrap() < int("-3").unwrap());
    }

    #[test]
    fn templates_translate() {
        assert_eq!(
            replacement_template(r"\1-\g<2>-\g<name>").unwrap(),
            "${1}-${2}-${name}"
        );
        assert_eq!(replacement_template(r"cost $5\n").unwrap(), "cost $$5\n");
        assert_eq!(replacement_template(r"a\\b").unwrap(), r"a\b");
        assert!(replacement_template(r"\q").is_err());
        assert!(replacement_template("\\").is_err());
        assert!(replacement_template(r"\g<x").is_err());
    }
}
