//! What went wrong in a document, and where: the shared shape of job and agent configuration errors.

use std::fmt;

use serde_path_to_error::Segment;

/// A 1-based line and column in the document text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number (in characters), starting at 1.
    pub column: usize,
}

impl Location {
    /// The location of a byte offset in `text` (clamped to the text, and to a character boundary).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The kind of a [`Problem`], so callers can react without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The text is not well-formed YAML, JSON or TOML.
    Syntax,
    /// A field that the format does not have.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong type (the message names the expected one).
    WrongType,
    /// A value of the right type that is not allowed (an empty queue name, a zero timeout…).
    InvalidValue,
    /// Fields that are fine alone but contradict each other, or one field given twice.
    Conflict,
}

/// One problem in a document: what was wrong, at which field, and where in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem this is.
    pub kind: ProblemKind,
    /// The field path, like `test_data.test_cmds[2]`; empty for the document as a whole.
    pub path: String,
    /// Where in the text, when the parser knows it (YAML, JSON and TOML errors found while reading; not
    /// the checks between fields made afterwards).
    pub location: Option<Location>,
    /// What was wrong, as the parser or the check said it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str("the document")?;
        } else {
            write!(f, "`{}`", self.path)?;
        }
        if let Some(location) = self.location {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Problem {
    /// A problem found by a serde deserialiser, classified by serde's standard message wording.
    pub(crate) fn from_serde(path: String, location: Option<Location>, message: String) -> Problem {
        let mut problem = Problem {
            kind: classify(&message),
            path,
            location,
            message,
        };
        problem.point_at_named_field();
        problem
    }

    /// A problem between fields, found after the document was read.
    pub(crate) fn conflict(path: &str, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Conflict,
            path: path.to_owned(),
            location: None,
            message: message.into(),
        }
    }

    /// serde reports an unknown or duplicate field at its parent; the path is more useful when it names
    /// the field itself.
    fn point_at_named_field(&mut self) {
        let names_a_field =
            self.kind == ProblemKind::UnknownField || self.message.starts_with("duplicate field");
        if !names_a_field {
            return;
        }
        let Some(field) = backquoted_name(&self.message) else {
            return;
        };
        if self.path.is_empty() {
            self.path = field.to_owned();
        } else if !self.path.ends_with(&format!(".{field}")) && self.path != field {
            self.path = format!("{}.{field}", self.path);
        }
    }
}

/// serde's derive and primitive impls word their errors in a fixed way; anything else that reaches us
/// without one of these openings came from the parser itself.
fn classify(message: &str) -> ProblemKind {
    if message.starts_with("unknown field") {
        ProblemKind::UnknownField
    } else if message.starts_with("missing field") {
        ProblemKind::MissingField
    } else if message.starts_with("duplicate field") {
        ProblemKind::Conflict
    } else if message.starts_with("invalid type") {
        ProblemKind::WrongType
    } else if ["invalid value", "invalid length", "unknown variant"]
        .iter()
        .any(|opening| message.starts_with(opening))
    {
        ProblemKind::InvalidValue
    } else {
        ProblemKind::Syntax
    }
}

/// The first name between backquotes in `message` (serde quotes field names that way).
fn backquoted_name(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let length = message[start..].find('`')?;
    Some(&message[start..start + length])
}

/// Reads a TOML document into `T`. A problem names the key path (`provisioner[1].max_workers`) and, when the parser
/// knows it, the line and column.
pub fn read_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Problem> {
    let problem = |path: String, error: toml::de::Error| {
        let location = error
            .span()
            .map(|span| Location::of_offset(text, span.start));
        Problem::from_serde(path, location, error.message().to_owned())
    };
    let deserializer =
        toml::Deserializer::parse(text).map_err(|error| problem(String::new(), error))?;
    serde_path_to_error::deserialize(deserializer)
        .map_err(|error| problem(path_text(error.path()), error.into_inner()))
}

/// The path from `serde_path_to_error` as we print it: `test_data.test_cmds[2]`, empty for the document
/// itself. Segments the deserialiser could not name (an unfinished JSON key) are left out.
pub(crate) fn path_text(path: &serde_path_to_error::Path) -> String {
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            // toml's `Spanned` reads its value through a private key: the value is the field itself.
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 6),
            Location { line: 2, column: 1 }
        );
        // After the two-byte é, the column counts characters, not bytes.
        assert_eq!(
            Location::of_offset(text, 9),
            Location { line: 2, column: 3 }
        );
        // Inside a character or past the end is clamped rather than a panic.
        assert_eq!(
            Location::of_offset(text, 8),
            Location { line: 2, column: 2 }
        );
        assert_eq!(
            Location::of_offset(text, 999),
            Location { line: 3, column: 1 }
        );
    }

    #[test]
    fn unknown_fields_are_pointed_at_themselves() {
        let problem = Problem::from_serde(
            "test_data".into(),
            None,
            "unknown field `test_cmd`, expected one of `test_cmds`".into(),
        );
        assert_eq!(problem.kind, ProblemKind::UnknownField);
        assert_eq!(problem.path, "test_data.test_cmd");
    }
}
