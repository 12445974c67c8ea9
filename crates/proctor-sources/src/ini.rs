//! INI files as Python's `configparser.ConfigParser()` reads them, which is
//! how testrepository and stestr read `.testr.conf` and `.stestr.conf`.
//!
//! The `configparser` crate does the line syntax (sections, `=` or `:`,
//! `#`/`;` comment lines, values continued on more-indented lines with blank
//! lines kept inside); this module adds what Python does on top: option
//! names are case-insensitive, `[DEFAULT]` values show through in every
//! section, inline `#` is part of the value (shell commands contain it), and
//! values are interpolated with `%(name)s` and `%%` (`BasicInterpolation`).
//!
//! Where the crate is more lenient than Python it is left so: options before
//! any section header belong to `[DEFAULT]`, and a repeated section or
//! option keeps its last value instead of being an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use configparser::ini::{Ini, IniDefault};

use crate::SourceError;

/// Python's `DEFAULTSECT`.
pub(crate) const DEFAULT: &str = "DEFAULT";
/// Python's `MAX_INTERPOLATION_DEPTH`.
const MAX_DEPTH: usize = 10;

/// A parsed INI file; option names are lowercased, values raw.
#[derive(Debug)]
pub(crate) struct IniFile {
    path: PathBuf,
    sections: HashMap<String, HashMap<String, String>>,
}

impl IniFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<IniFile, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        IniFile::parse(text, path)
    }

    /// Parses `text`, naming `path` in errors.
    pub fn parse(text: String, path: &Path) -> Result<IniFile, SourceError> {
        let error = |message: String| SourceError::Ini {
            path: path.to_path_buf(),
            message,
        };
        let mut defaults = IniDefault::default();
        defaults.default_section = DEFAULT.to_owned();
        defaults.case_sensitive = true;
        defaults.multiline = true;
        defaults.enable_inline_comments = false;
        let mut parser = Ini::new_from_defaults(defaults);
        let raw = parser.read(text).map_err(error)?;
        let mut sections = HashMap::with_capacity(raw.len());
        for (section, options) in raw {
            let mut values = HashMap::with_capacity(options.len());
            for (key, value) in options {
                let value = value.ok_or_else(|| {
                    error(format!(
                        "line `{key}` in [{section}] is not an option: expected `name = value`"
                    ))
                })?;
                values.insert(key.to_lowercase(), value);
            }
            sections.insert(section, values);
        }
        Ok(IniFile {
            path: path.to_path_buf(),
            sections,
        })
    }

    /// Whether the file has `[section]` (`DEFAULT` always counts, as in Python).
    pub fn has_section(&self, section: &str) -> bool {
        section == DEFAULT || self.sections.contains_key(section)
    }

    /// The interpolated value of `key` in `section` (or in `[DEFAULT]`).
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>, SourceError> {
        match self.raw(section, &key.to_lowercase()) {
            Some(raw) => self.interpolate(section, key, raw, 1).map(Some),
            None => Ok(None),
        }
    }

    /// `key` as a boolean, with the words `ConfigParser.getboolean` accepts.
    pub fn get_bool(&self, section: &str, key: &str) -> Result<Option<bool>, SourceError> {
        let Some(value) = self.get(section, key)? else {
            return Ok(None);
        };
        match value.to_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(Some(true)),
            "0" | "no" | "false" | "off" => Ok(Some(false)),
            _ => Err(self.invalid(
                key,
                format!("{value:?} is not a boolean (use true/false, yes/no, on/off or 1/0)"),
            )),
        }
    }

    /// An [`SourceError::InvalidValue`] for `key` in this file.
    pub fn invalid(&self, key: &str, message: String) -> SourceError {
        SourceError::InvalidValue {
            path: self.path.clone(),
            key: key.to_owned(),
            message,
        }
    }

    fn raw(&self, section: &str, key: &str) -> Option<&str> {
        let in_section = self
            .sections
            .get(section)
            .and_then(|options| options.get(key));
        let in_default = || {
            self.sections
                .get(DEFAULT)
                .and_then(|options| options.get(key))
        };
        in_section.or_else(in_default).map(String::as_str)
    }

    /// Python's `BasicInterpolation._interpolate_some`.
    fn interpolate(
        &self,
        section: &str,
        key: &str,
        value: &str,
        depth: usize,
    ) -> Result<String, SourceError> {
        if depth > MAX_DEPTH {
            return Err(self.invalid(
                key,
                format!("%(...)s references nest deeper than {MAX_DEPTH} levels (a loop?)"),
            ));
        }
        let mut result = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(percent) = rest.find('%') {
            result.push_str(&rest[..percent]);
            rest = &rest[percent..];
            if let Some(after) = rest.strip_prefix("%%") {
                result.push('%');
                rest = after;
            } else if rest.starts_with("%(") {
                let (name, after) = reference(rest).ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("bad interpolation variable reference {rest:?}"),
                    )
                })?;
                let name = name.to_lowercase();
                let referenced = self.raw(section, &name).ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("%({name})s refers to an option that is not in [{section}]"),
                    )
                })?;
                result.push_str(&self.interpolate(section, key, referenced, depth + 1)?);
                rest = after;
            } else {
                return Err(self.invalid(
                    key,
                    format!("'%' must be followed by '%' or '(' (write %% for a literal %), found {rest:?}"),
                ));
            }
        }
        result.push_str(rest);
        Ok(result)
    }
}

/// Splits `%(name)s…` into `name` and what follows (Python's `_KEYCRE`,
/// `%\(([^)]+)\)s`).
fn reference(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix("%(")?;
    let close = inner.find(')')?;
    let name = &inner[..close];
    let after = inner[close + 1..].strip_prefix('s')?;
    (!name.is_empty()).then_some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IniFile {
        IniFile::parse(text.to_owned(), Path::new("test.conf"))
            .unwrap_or_else(|error| panic!("parses: {error}"))
    }

    fn get(file: &IniFile, key: &str) -> Option<String> {
        file.get(DEFAULT, key)
            .unwrap_or_else(|error| panic!("interpolates: {error}"))
    }

    #[test]
    fn continuation_lines_join_with_newlines() {
        let file = parse(
            "[DEFAULT]\n\
             test_command=A=1 \\\n    B=2 \\\n\n    run $IDOPTION\n\
             # a comment\n\
             Test_ID_Option : --load-list $IDFILE # not a comment\n",
        );
        assert_eq!(
            get(&file, "test_command").as_deref(),
            Some("A=1 \\\nB=2 \\\n\nrun $IDOPTION")
        );
        assert_eq!(
            get(&file, "TEST_ID_OPTION").as_deref(),
            Some("--load-list $IDFILE # not a comment")
        );
    }

    #[test]
    fn interpolation_follows_python() {
        let file = parse(
            "[DEFAULT]\npy=python3\ncmd=%(PY)s -m x 100%%\n[stestr]\npy=python\nshown=%(cmd)s\n",
        );
        assert_eq!(get(&file, "cmd").as_deref(), Some("python3 -m x 100%"));
        let in_section = file.get("stestr", "shown").expect("interpolates");
        assert_eq!(in_section.as_deref(), Some("python -m x 100%"));
    }

    #[test]
    fn bad_interpolation_names_the_key() {
        let cases = [
            ("[DEFAULT]\nk=50% done\n", "'%' must be followed"),
            ("[DEFAULT]\nk=%(missing)s\n", "%(missing)s refers"),
            ("[DEFAULT]\nk=%(oops\n", "bad interpolation"),
            ("[DEFAULT]\nk=%(k)s\n", "deeper than 10"),
        ];
        for (text, expected) in cases {
            let error = parse(text).get(DEFAULT, "k").expect_err(text).to_string();
            assert!(
                error.contains("test.conf") && error.contains("`k`"),
                "{error}"
            );
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn booleans_as_getboolean_reads_them() {
        let file = parse("[DEFAULT]\na=Yes\nb=off\nc=maybe\n");
        assert_eq!(file.get_bool(DEFAULT, "a").expect("bool"), Some(true));
        assert_eq!(file.get_bool(DEFAULT, "b").expect("bool"), Some(false));
        assert_eq!(file.get_bool(DEFAULT, "missing").expect("bool"), None);
        let error = file.get_bool(DEFAULT, "c").expect_err("not a bool");
        assert!(
            error.to_string().contains("\"maybe\" is not a boolean"),
            "{error}"
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        for text in ["[DEFAULT\nk=v\n", "[DEFAULT]\njust words\n"] {
            let error = IniFile::parse(text.to_owned(), Path::new("bad.conf"))
                .expect_err(text)
                .to_string();
            assert!(error.starts_with("bad.conf: "), "{error}");
        }
    }
}
