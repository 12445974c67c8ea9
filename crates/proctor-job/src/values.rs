//! Small checked value types shared by jobs and agent configurations.

use std::fmt;
use std::path::{Component, Path};

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A queue, agent or recipe name: not empty, with no whitespace or control characters, because names
/// appear in URLs, on command lines and in file names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Checks `text` and makes it a name; the error says what is wrong with it.
    pub fn new(text: &str) -> Result<Name, String> {
        if text.is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "a name cannot contain whitespace or control characters ({bad:?})"
            ));
        }
        Ok(Name(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl Visitor<'_> for NameVisitor {
    type Value = Name;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a name without whitespace")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Name, E> {
        Name::new(text).map_err(|reason| {
            E::invalid_value(
                Unexpected::Str(text),
                &format!("a name ({reason})").as_str(),
            )
        })
    }
}

/// A scalar written as text: environment values and recipe options. YAML authors write `RETRIES: 3` or
/// `verbose: true` and mean the text, so numbers and booleans are accepted and kept as their text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ScalarText(pub String);

impl fmt::Display for ScalarText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ScalarText, D::Error> {
        deserializer.deserialize_any(ScalarTextVisitor)
    }
}

struct ScalarTextVisitor;

impl Visitor<'_> for ScalarTextVisitor {
    type Value = ScalarText;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ScalarText, E> {
        Ok(ScalarText(text.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<ScalarText, E> {
        Ok(ScalarText(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ScalarText, E> {
        Ok(ScalarText(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ScalarText, E> {
        Ok(ScalarText(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<ScalarText, E> {
        Ok(ScalarText(value.to_string()))
    }
}

/// A relative path that stays inside the directory it is joined to (no `..`, no root, not empty): where an
/// attachment lands in the job's work directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct InsidePath(String);

impl InsidePath {
    /// Checks `text`; the error says why it could escape.
    pub fn new(text: &str) -> Result<InsidePath, String> {
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        InsidePath::check(Path::new(text))?;
        Ok(InsidePath(text.to_owned()))
    }

    /// The rule every path joined to a directory must keep to stay inside it (an attachment's `agent` path, an
    /// archive's entries): relative, with no `..`. The error names the first component that breaks it. An empty
    /// path keeps to it; whether one is allowed is the caller's rule.
    pub fn check(path: &Path) -> Result<(), String> {
        for component in path.components() {
            match component {
                Component::Prefix(_) | Component::RootDir => {
                    return Err("the path must be relative, not absolute".to_owned())
                }
                Component::ParentDir => return Err("the path must not contain `..`".to_owned()),
                Component::CurDir | Component::Normal(_) => {}
            }
        }
        Ok(())
    }

    /// The path as written.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl<'de> Deserialize<'de> for InsidePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<InsidePath, D::Error> {
        deserializer.deserialize_str(InsidePathVisitor)
    }
}

struct InsidePathVisitor;

impl Visitor<'_> for InsidePathVisitor {
    type Value = InsidePath;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a relative path without `..`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<InsidePath, E> {
        InsidePath::new(text).map_err(|reason| {
            E::invalid_value(
                Unexpected::Str(text),
                &format!("a relative path ({reason})").as_str(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_empty_and_blank() {
        assert!(Name::new("rpi4-lab_2.queue").is_ok());
        assert!(Name::new("").is_err());
        assert!(Name::new("two words").is_err());
        assert!(Name::new("tab\there").is_err());
    }

    #[test]
    fn inside_paths_cannot_escape() {
        assert!(InsidePath::new("data/config.json").is_ok());
        assert!(InsidePath::new("./script.sh").is_ok());
        assert!(InsidePath::new("../etc/passwd").is_err());
        assert!(InsidePath::new("a/../../b").is_err());
        assert!(InsidePath::new("/etc/passwd").is_err());
        assert!(InsidePath::new("").is_err());
    }
}
