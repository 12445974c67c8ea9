//! stestr projects, configured the three ways stestr accepts: `.stestr.conf`,
//! `[tool.stestr]` in `pyproject.toml`, or `[stestr]` in `tox.ini`.
//!
//! stestr has no test command in its configuration; it builds one from
//! `test_path` and `top_dir` (`stestr/config_file.py`):
//!
//! ```text
//! ${PYTHON} -m stestr.subunit_runner.run discover -t "TOP_DIR" "TEST_PATH" $LISTOPT $IDOPTION
//! ```
//!
//! with `$LISTOPT` = `--list` and `$IDOPTION` = `--load-list $IDFILE`. It
//! uses `${PYTHON}` when `PYTHON` is set and otherwise the interpreter stestr
//! itself runs in. Proctor has no such interpreter, so it writes
//! `${PYTHON:-python3}`: `$PYTHON` when set, else the `python3` on `PATH`
//! (an activated virtualenv's). `parallel_class = true` groups tests by
//! class with the group regex `([^\.]*\.)*`, overriding `group_regex`.
//! stestr sets no environment variables for its workers.

use std::path::Path;

use crate::ini::{IniFile, DEFAULT};
use crate::invocation::Protocol;
use crate::suite::{GroupRegex, Runner, Suite};
use crate::template::CommandTemplate;
use crate::SourceError;

/// stestr's own configuration file.
pub(crate) const FILE: &str = ".stestr.conf";
/// The Python project file that may hold `[tool.stestr]`.
pub(crate) const PYPROJECT: &str = "pyproject.toml";
/// The tox file that may hold `[stestr]`.
pub(crate) const TOX: &str = "tox.ini";

/// The interpreter expression in the command (see the module docs).
const PYTHON: &str = "${PYTHON:-python3}";
/// stestr's group regex for `parallel_class`.
const PARALLEL_CLASS_REGEX: &str = r"([^\.]*\.)*";

/// The four settings stestr reads, wherever from.
#[derive(Debug, Default)]
struct Settings {
    test_path: Option<String>,
    top_dir: Option<String>,
    parallel_class: bool,
    group_regex: Option<String>,
}

/// The suite of a `.stestr.conf` (its `[DEFAULT]` section).
pub(crate) fn load_conf(path: &Path, directory: &Path) -> Result<Suite, SourceError> {
    let ini = IniFile::load(path)?;
    let settings = ini_settings(&ini, DEFAULT)?;
    suite(settings, path, directory)
}

/// The suite of `tox.ini`'s `[stestr]` section, or `None` without one.
pub(crate) fn load_tox(path: &Path, directory: &Path) -> Result<Option<Suite>, SourceError> {
    let ini = IniFile::load(path)?;
    if !ini.has_section("stestr") {
        return Ok(None);
    }
    let settings = ini_settings(&ini, "stestr")?;
    suite(settings, path, directory).map(Some)
}

/// The suite of `pyproject.toml`'s `[tool.stestr]` table, or `None` without
/// one.
pub(crate) fn load_pyproject(path: &Path, directory: &Path) -> Result<Option<Suite>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let document: toml::Table = toml::from_str(&text).map_err(|error| SourceError::Toml {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    let table = document
        .get("tool")
        .and_then(|tool| tool.get("stestr"))
        .and_then(toml::Value::as_table);
    let Some(table) = table else {
        return Ok(None);
    };
    let string = |key: &str| -> Result<Option<String>, SourceError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(value)) => Ok(Some(value.clone())),
            Some(other) => Err(invalid(
                path,
                key,
                format!("expected a string, found {other}"),
            )),
        }
    };
    let parallel_class = match table.get("parallel_class") {
        None => false,
        Some(toml::Value::Boolean(value)) => *value,
        Some(other) => {
            return Err(invalid(
                path,
                "parallel_class",
                format!("expected true or false, found {other}"),
            ))
        }
    };
    let settings = Settings {
        test_path: string("test_path")?,
        top_dir: string("top_dir")?,
        parallel_class,
        group_regex: string("group_regex")?,
    };
    suite(settings, path, directory).map(Some)
}

fn ini_settings(ini: &IniFile, section: &str) -> Result<Settings, SourceError> {
    Ok(Settings {
        test_path: ini.get(section, "test_path")?,
        top_dir: ini.get(section, "top_dir")?,
        parallel_class: ini.get_bool(section, "parallel_class")?.unwrap_or(false),
        group_regex: ini.get(section, "group_regex")?,
    })
}

fn suite(settings: Settings, path: &Path, directory: &Path) -> Result<Suite, SourceError> {
    let test_path = settings
        .test_path
        .filter(|test_path| !test_path.is_empty())
        .ok_or_else(|| SourceError::MissingKey {
            path: path.to_path_buf(),
            section: section_name(path).to_owned(),
            key: "test_path".to_owned(),
        })?;
    let top_dir = settings
        .top_dir
        .filter(|top_dir| !top_dir.is_empty())
        .unwrap_or_else(|| "./".to_owned());
    let template = CommandTemplate {
        run: format!(
            r#"{PYTHON} -m stestr.subunit_runner.run discover -t "{top_dir}" "{test_path}" $LISTOPT $IDOPTION"#
        ),
        list: None,
        id_option: "--load-list $IDFILE".to_owned(),
        list_option: "--list".to_owned(),
        id_list_default: None,
    };
    let mut suite = Suite::new(
        "stestr".to_owned(),
        directory.to_path_buf(),
        Runner::Commands(template),
        Protocol::Subunit,
    );
    let pattern = if settings.parallel_class {
        Some(PARALLEL_CLASS_REGEX.to_owned())
    } else {
        settings.group_regex.filter(|pattern| !pattern.is_empty())
    };
    suite.group_regex = pattern
        .map(|pattern| GroupRegex::new(&pattern))
        .transpose()
        .map_err(|error| invalid(path, "group_regex", error.to_string()))?;
    Ok(suite)
}

fn section_name(path: &Path) -> &'static str {
    match path.file_name().and_then(|name| name.to_str()) {
        Some(PYPROJECT) => "tool.stestr",
        Some(TOX) => "stestr",
        _ => DEFAULT,
    }
}

fn invalid(path: &Path, key: &str, message: String) -> SourceError {
    let key = match section_name(path) {
        DEFAULT => key.to_owned(),
        section => format!("{section}.{key}"),
    };
    SourceError::InvalidValue {
        path: path.to_path_buf(),
        key,
        message,
    }
}
