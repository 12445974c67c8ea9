//! The settings of a run, in layers, each value remembering where it came from.
//!
//! Every `proctor run` flag but the test selection has a key spelled like its long flag (`memory-limit`), and the
//! key has the same meaning in every layer. From the lowest layer up:
//!
//! 1. the built-in defaults ([`RunSettings::default`]);
//! 2. the user's file, `$XDG_CONFIG_HOME/proctor/config.toml` (else `~/.config/proctor/config.toml`);
//! 3. the project's file, `.config/proctor.toml` in the project directory (as nextest keeps `.config/nextest.toml`);
//! 4. the environment: `PROCTOR_` and the key upper-cased with `_` for `-` (`PROCTOR_MEMORY_LIMIT`, see
//!    [`env_var`]);
//! 5. explicit settings: [`Setting::set`], which is what `proctor run`'s flags call.
//!
//! [`RunSettings::load`] reads layers 1 to 4; a higher layer's value replaces a lower one's. In the files the keys
//! live in a `[run]` table:
//!
//! ```toml
//! [run]
//! concurrency = 4
//! retries = 2
//! memory-limit = "512M"
//! junit = "report.xml"   # a relative path in a file is relative to the project directory
//! ```
//!
//! A file may give a number or a boolean as TOML does, or as a string, as the environment and flags always do: each
//! key's type reads every layer's spelling with one function ([`Value::read`]). Bad input is a [`ConfigError`]
//! naming the file, key, line and column, or the environment variable, and what is wrong. A key a file does not
//! know is an error too: a misspelt key would otherwise be ignored without a word.
//!
//! The selection flags (the filters, `--exclude`, `--include-list`, `--exclude-list`, `--executables`, `--context`
//! and `-C`) have no keys: they say which tests one command picks (`proctor list` takes them too, and a filter is
//! positional, with no name to give it), a selection kept in a file would silently make every run partial, and
//! `-C` says where the project's file is.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_job::{read_toml, Location, Problem, ProblemKind};
use proctor_runner::RunConfig;
use serde::Deserialize;
use toml::Spanned;

/// Where a setting's value came from: one of the layers, lowest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Proctor's built-in default.
    Default,
    /// The user's config file.
    UserFile(PathBuf),
    /// The project's config file.
    ProjectFile(PathBuf),
    /// This environment variable.
    Env(String),
    /// Set explicitly: a command-line flag, or [`Setting::set`] in code.
    Explicit,
}

impl Source {
    /// The layer's name, as `proctor config list --json` gives it.
    pub fn layer(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::UserFile(_) => "user-file",
            Source::ProjectFile(_) => "project-file",
            Source::Env(_) => "environment",
            Source::Explicit => "explicit",
        }
    }

    /// A higher layer's value replaces a lower one's.
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::UserFile(_) => 1,
            Source::ProjectFile(_) => 2,
            Source::Env(_) => 3,
            Source::Explicit => 4,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::UserFile(path) | Source::ProjectFile(path) => write!(f, "{}", path.display()),
            Source::Env(name) => write!(f, "${name}"),
            Source::Explicit => f.write_str("explicit"),
        }
    }
}

/// One setting: its value and where the value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    value: T,
    source: Source,
}

impl<T> Setting<T> {
    fn new(default: T) -> Setting<T> {
        Setting {
            value: default,
            source: Source::Default,
        }
    }

    /// The value in force.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Where the value in force came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Sets the value explicitly, the highest layer: what a command-line flag does.
    pub fn set(&mut self, value: T) {
        self.value = value;
        self.source = Source::Explicit;
    }
}

/// A value as a layer spells it, before its key's type reads it: the environment and flags give text, a file may
/// also give a TOML number or boolean. Only this module makes them.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    spelling: Spelling<'a>,
    /// What a relative path is relative to: the project directory for the files, the current directory (an empty
    /// path) for the environment and flags, as a shell user expects.
    base: &'a Path,
}

#[derive(Debug, Clone, Copy)]
enum Spelling<'a> {
    Text(&'a str),
    Bool(bool),
    Integer(i64),
    Float(f64),
}

impl fmt::Display for Spelling<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spelling::Text(text) => write!(f, "{text:?}"),
            Spelling::Bool(value) => write!(f, "{value}"),
            Spelling::Integer(value) => write!(f, "{value}"),
            Spelling::Float(value) => write!(f, "{value}"),
        }
    }
}

impl<'a> Raw<'a> {
    fn text(text: &'a str) -> Raw<'a> {
        Raw {
            spelling: Spelling::Text(text),
            base: Path::new(""),
        }
    }

    /// A file's value, or `None` for one no key takes (an array, a table, a date).
    fn of_toml(value: &'a toml::Value, base: &'a Path) -> Option<Raw<'a>> {
        let spelling = match value {
            toml::Value::String(text) => Spelling::Text(text),
            toml::Value::Boolean(value) => Spelling::Bool(*value),
            toml::Value::Integer(value) => Spelling::Integer(*value),
            toml::Value::Float(value) => Spelling::Float(*value),
            toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
                return None
            }
        };
        Some(Raw { spelling, base })
    }

    /// The message for a value that is not of the key's type.
    fn expected(&self, what: &str) -> String {
        format!("expected {what}, not {}", self.spelling)
    }
}

/// A type a setting can have: read from any layer by one function, and shown as it would be written.
pub trait Value: Sized {
    /// Reads the value from a layer's spelling; the error says what was expected and what was found.
    fn read(raw: Raw<'_>) -> Result<Self, String>;

    /// The value as a file or the environment would spell it; `None` for an optional value that is not set.
    fn show(&self) -> Option<String>;
}

/// Reads a value from a flag's or variable's text, as every layer reads it: the command line's parser for the
/// flags whose keys are not plain booleans.
pub fn parse<T: Value>(text: &str) -> Result<T, String> {
    T::read(Raw::text(text))
}

impl Value for bool {
    fn read(raw: Raw<'_>) -> Result<bool, String> {
        match raw.spelling {
            Spelling::Bool(value) => Ok(value),
            Spelling::Text("true" | "1") => Ok(true),
            Spelling::Text("false" | "0") => Ok(false),
            _ => Err(raw.expected("true or false")),
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A whole number, from a TOML integer or its digits.
fn whole<T: TryFrom<i64> + std::str::FromStr>(raw: Raw<'_>, what: &str) -> Result<T, String> {
    let number = match raw.spelling {
        Spelling::Integer(value) => T::try_from(value).ok(),
        Spelling::Text(text) => text.trim().parse().ok(),
        Spelling::Bool(_) | Spelling::Float(_) => None,
    };
    number.ok_or_else(|| raw.expected(what))
}

impl Value for u32 {
    fn read(raw: Raw<'_>) -> Result<u32, String> {
        whole(raw, "a whole number, 0 or more")
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Value for NonZeroUsize {
    fn read(raw: Raw<'_>) -> Result<NonZeroUsize, String> {
        let what = "a whole number, at least 1";
        whole::<usize>(raw, what)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| raw.expected(what))
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A duration, as a number of seconds (`10`, `2.5`).
impl Value for Duration {
    fn read(raw: Raw<'_>) -> Result<Duration, String> {
        let seconds = match raw.spelling {
            Spelling::Integer(value) => Some(value as f64),
            Spelling::Float(value) => Some(value),
            Spelling::Text(text) => text.trim().parse().ok(),
            Spelling::Bool(_) => None,
        };
        seconds
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .ok_or_else(|| raw.expected("a number of seconds, 0 or more"))
    }

    fn show(&self) -> Option<String> {
        Some(self.as_secs_f64().to_string())
    }
}

impl Value for PathBuf {
    fn read(raw: Raw<'_>) -> Result<PathBuf, String> {
        match raw.spelling {
            Spelling::Text(text) if !text.is_empty() => Ok(raw.base.join(text)),
            _ => Err(raw.expected("a path")),
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

/// An amount of memory in bytes, spelt as bytes or with a K, M or G suffix (`512M`, `2G`, `100000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

/// The suffixes of [`Bytes`], largest first, with their factors.
const BYTE_UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];

impl Value for Bytes {
    fn read(raw: Raw<'_>) -> Result<Bytes, String> {
        let bytes = match raw.spelling {
            Spelling::Integer(value) => u64::try_from(value).ok(),
            Spelling::Text(text) => size(text),
            Spelling::Bool(_) | Spelling::Float(_) => None,
        };
        bytes
            .map(Bytes)
            .ok_or_else(|| raw.expected("a number of bytes with an optional K, M or G suffix"))
    }

    /// The largest suffix that divides the amount exactly, so `512M` reads back as it was written.
    fn show(&self) -> Option<String> {
        let shown = BYTE_UNITS
            .iter()
            .find(|(_, factor)| self.0 >= *factor && self.0.is_multiple_of(*factor))
            .map_or_else(
                || self.0.to_string(),
                |(unit, factor)| format!("{}{unit}", self.0 / factor),
            );
        Some(shown)
    }
}

/// `512M`, `2g`, `1KiB`, `100000` as bytes.
fn size(text: &str) -> Option<u64> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(at);
    let unit = unit.to_ascii_uppercase();
    // `K`, `KB` and `KiB` are all 1024: memory limits are never meant in powers of ten.
    let prefix = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let factor = match prefix {
        "" => 1,
        unit => BYTE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)?,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

impl<T: Value> Value for Option<T> {
    fn read(raw: Raw<'_>) -> Result<Option<T>, String> {
        T::read(raw).map(Some)
    }

    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// A setting that a layer fills from its spelling, whatever the setting's type.
trait Slot {
    fn fill(&mut self, raw: Raw<'_>, source: Source) -> Result<(), String>;
}

impl<T: Value> Slot for Setting<T> {
    fn fill(&mut self, raw: Raw<'_>, source: Source) -> Result<(), String> {
        self.value = T::read(raw)?;
        self.source = source;
        Ok(())
    }
}

/// A key with its value in force and where that came from, as `proctor config list` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    /// The key, spelt like its `proctor run` flag.
    pub key: &'static str,
    /// The value as a file or the environment would spell it; `None` when an optional setting is not set.
    pub value: Option<String>,
    /// Where the value came from.
    pub source: &'a Source,
}

/// Declares [`RunSettings`] from one list of keys, so the struct, the defaults and the key tables that the layers
/// and `proctor config list` go through cannot disagree.
macro_rules! run_settings {
    ($($(#[doc = $doc:literal])+ $key:literal => $field:ident: $type:ty = $default:expr;)+) => {
        /// The settings of a run: one [`Setting`] per key, each with its value and where the value came from.
        /// See [the module](self) for the layers.
        #[derive(Debug, Clone, PartialEq)]
        pub struct RunSettings {
            $(
                $(#[doc = $doc])+
                #[doc = ""]
                #[doc = concat!("Key `", $key, "`.")]
                pub $field: Setting<$type>,
            )+
        }

        impl Default for RunSettings {
            /// The built-in defaults, the lowest layer.
            fn default() -> RunSettings {
                RunSettings { $($field: Setting::new($default),)+ }
            }
        }

        impl RunSettings {
            /// Every key, in the order of `proctor run`'s flags.
            pub const KEYS: &'static [&'static str] = &[$($key),+];

            /// Every key with its value and source, in the order of [`Self::KEYS`].
            pub fn entries(&self) -> Vec<Entry<'_>> {
                vec![$(Entry {
                    key: $key,
                    value: self.$field.get().show(),
                    source: self.$field.source(),
                }),+]
            }

            /// Every key with the setting a layer fills for it.
            fn slots(&mut self) -> Vec<(&'static str, &mut dyn Slot)> {
                vec![$(($key, &mut self.$field as &mut dyn Slot)),+]
            }
        }
    };
}

run_settings! {
    /// Run only the tests in the failing set.
    "failing" => failing: bool = false;
    /// How many tests run at once (default: the number of CPUs).
    "concurrency" => concurrency: NonZeroUsize =
        NonZeroUsize::new(RunConfig::default().concurrency).unwrap_or(NonZeroUsize::MIN);
    /// Run on the workers of this pool file's provisioners instead of slots here.
    "pool" => pool: Option<PathBuf> = None;
    /// Run one test at a time.
    "serial" => serial: bool = false;
    /// Run again and again until a test fails.
    "until-failure" => until_failure: bool = false;
    /// Run a failed test again up to this many times; passing on a retry is flaky.
    "retries" => retries: u32 = RunConfig::default().retries;
    /// Write only the subunit v2 stream to standard output.
    "subunit" => subunit: bool = false;
    /// Also write a JUnit XML report here.
    "junit" => junit: Option<PathBuf> = None;
    /// Do not store the run in `.proctor/`.
    "no-store" => no_store: bool = false;
    /// Kill a test whose process tree uses more memory than this.
    "memory-limit" => memory_limit: Option<Bytes> = None;
    /// How long a stopped test gets between SIGTERM and SIGKILL.
    "grace" => grace: Duration = RunConfig::default().grace;
    /// Kill a test that runs longer than this (with everything it started), whatever its suite allows.
    "time-limit" => time_limit: Option<Duration> = None;
}

/// Where a run's workers come from, as `serial`, `concurrency` and `pool` decide together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workers {
    /// This many slots on this machine (or instances of the project's testrepository hooks).
    Slots(NonZeroUsize),
    /// The provisioners of this pool file.
    Pool(PathBuf),
}

/// What a settings file holds: `[run]` today; other commands' tables may join it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    run: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

impl RunSettings {
    /// The settings for the project in `project`: the built-in defaults, the user's file, the project's file and
    /// the `PROCTOR_*` environment. A file that does not exist is no layer; explicit settings go on top with
    /// [`Setting::set`].
    pub fn load(project: &Path) -> Result<RunSettings, ConfigError> {
        RunSettings::load_with(project, |name| std::env::var_os(name))
    }

    /// [`Self::load`] with the environment read through `var`, so tests need not change their process's.
    fn load_with(
        project: &Path,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<RunSettings, ConfigError> {
        // Absolute, so that a source and a file's relative path name the same file from any directory (`-C`).
        let project = std::path::absolute(project).unwrap_or_else(|_| project.to_owned());
        let mut settings = RunSettings::default();
        if let Some(path) = user_file(&var) {
            settings.merge_file(&path, Source::UserFile(path.clone()), &project)?;
        }
        let path = project.join(".config").join("proctor.toml");
        settings.merge_file(&path, Source::ProjectFile(path.clone()), &project)?;
        settings.merge_env(var)?;
        Ok(settings)
    }

    /// The workers these settings ask for. `serial = true`, `pool` and a `concurrency` other than the default each
    /// choose them: the one from the highest layer wins (a `-j` flag over a file's `serial`), and two from the same
    /// layer contradict each other. With none, `concurrency`'s default: one slot per CPU.
    pub fn workers(&self) -> Result<Workers, ConfigError> {
        let serial = (*self.serial.get()).then_some(Workers::Slots(NonZeroUsize::MIN));
        let pool = self.pool.get().clone().map(Workers::Pool);
        let concurrency = (self.concurrency.source() != &Source::Default)
            .then(|| Workers::Slots(*self.concurrency.get()));
        let choices = [
            ("serial", self.serial.source(), serial),
            ("pool", self.pool.source(), pool),
            ("concurrency", self.concurrency.source(), concurrency),
        ];
        let mut chosen: Vec<_> = choices
            .into_iter()
            .filter_map(|(key, source, workers)| Some((key, source, workers?)))
            .collect();
        let top = chosen.iter().map(|(_, source, _)| source.rank()).max();
        chosen.retain(|(_, source, _)| Some(source.rank()) == top);
        match chosen.as_slice() {
            [] => Ok(Workers::Slots(*self.concurrency.get())),
            [(_, _, workers)] => Ok(workers.clone()),
            [(first, first_source, _), (second, second_source, _), ..] => {
                Err(ConfigError::Conflict {
                    first,
                    first_source: Source::clone(first_source),
                    second,
                    second_source: Source::clone(second_source),
                })
            }
        }
    }

    /// Layers a settings file over these settings; a file that does not exist changes nothing.
    fn merge_file(&mut self, path: &Path, source: Source, base: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source: error,
                })
            }
        };
        self.merge_toml(&text, &source, base)
            .map_err(|problem| ConfigError::File {
                path: path.to_owned(),
                problem,
            })
    }

    /// Layers a settings file's text over these settings; a problem names the key, line and column.
    fn merge_toml(&mut self, text: &str, source: &Source, base: &Path) -> Result<(), Problem> {
        let file: SettingsFile = read_toml(text)?;
        for (key, value) in &file.run {
            let problem = |kind, span: std::ops::Range<usize>, message| Problem {
                kind,
                path: format!("run.{}", key.get_ref()),
                location: Some(Location::of_offset(text, span.start)),
                message,
            };
            let Some(slot) = self.slot(key.get_ref()) else {
                let message = format!(
                    "unknown key `{}`; the keys are {}",
                    key.get_ref(),
                    RunSettings::KEYS.join(", ")
                );
                return Err(problem(ProblemKind::UnknownField, key.span(), message));
            };
            let raw = Raw::of_toml(value.get_ref(), base).ok_or_else(|| {
                let message = format!(
                    "expected a single value, not {}",
                    value.get_ref().type_str()
                );
                problem(ProblemKind::WrongType, value.span(), message)
            })?;
            slot.fill(raw, source.clone())
                .map_err(|message| problem(ProblemKind::InvalidValue, value.span(), message))?;
        }
        Ok(())
    }

    /// Layers the `PROCTOR_*` variables that `var` finds over these settings.
    fn merge_env(&mut self, var: impl Fn(&str) -> Option<OsString>) -> Result<(), ConfigError> {
        for (key, slot) in self.slots() {
            let name = env_var(key);
            let Some(value) = var(&name) else {
                continue;
            };
            let bad = |message| ConfigError::Env {
                name: name.clone(),
                message,
            };
            let text = value
                .to_str()
                .ok_or_else(|| bad(format!("expected text, not {value:?}")))?;
            slot.fill(Raw::text(text), Source::Env(name.clone()))
                .map_err(bad)?;
        }
        Ok(())
    }

    fn slot(&mut self, key: &str) -> Option<&mut dyn Slot> {
        self.slots()
            .into_iter()
            .find_map(|(name, slot)| (name == key).then_some(slot))
    }
}

/// The environment variable of a key: `PROCTOR_MEMORY_LIMIT` for `memory-limit`.
pub fn env_var(key: &str) -> String {
    format!("PROCTOR_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// The user's settings file: `$XDG_CONFIG_HOME/proctor/config.toml`, else `$HOME/.config/proctor/config.toml`;
/// none without either. A relative `XDG_CONFIG_HOME` is ignored, as the XDG base directory specification says.
fn user_file(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name| {
        var(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let config_home = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))?;
    Some(config_home.join("proctor").join("config.toml"))
}

/// Settings that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A settings file exists but could not be read.
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A settings file holds something that is not a setting.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// The key, where it is, and what is wrong.
        problem: Problem,
    },
    /// A `PROCTOR_*` environment variable holds a value its key does not take.
    #[error("${name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Two settings of the same layer choose the workers differently.
    #[error(
        "`{first}` ({first_source}) and `{second}` ({second_source}) both choose the run's workers; set one of them"
    )]
    Conflict {
        /// One key.
        first: &'static str,
        /// Where its value came from.
        first_source: Source,
        /// The other key.
        second: &'static str,
        /// Where its value came from.
        second_source: Source,
    },
}

#[cfg(test)]
mod tests;
