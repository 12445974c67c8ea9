//! tmt's view of a tree: which nodes are tests and what their keys mean.

use crate::duration::{parse_duration, DEFAULT_DURATION};
use crate::python;
use crate::tree::{Node, Tree};
use crate::{Context, FmfError};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// tmt's default `order`.
pub const DEFAULT_ORDER: i64 = 50;

/// How a test's outcome becomes its result (tmt's `result` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultMode {
    /// The exit code decides: 0 passes, 1 fails, anything else is an error.
    #[default]
    Respect,
    /// Expected failure: a failure passes and a pass fails.
    Xfail,
    /// Always pass.
    Pass,
    /// Always info.
    Info,
    /// Always warn.
    Warn,
    /// Always error.
    Error,
    /// Always fail.
    Fail,
    /// The test writes its own results file.
    Custom,
    /// Results are reported through restraint.
    Restraint,
}

/// A `result` value that is none of tmt's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid result interpretation {0:?} (expected respect, xfail, pass, info, warn, error, fail, custom or restraint)")]
pub struct UnknownResultMode(pub String);

impl FromStr for ResultMode {
    type Err = UnknownResultMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "respect" => ResultMode::Respect,
            "xfail" => ResultMode::Xfail,
            "pass" => ResultMode::Pass,
            "info" => ResultMode::Info,
            "warn" => ResultMode::Warn,
            "error" => ResultMode::Error,
            "fail" => ResultMode::Fail,
            "custom" => ResultMode::Custom,
            "restraint" => ResultMode::Restraint,
            other => return Err(UnknownResultMode(other.to_owned())),
        })
    }
}

/// A test as tmt sees it after adjusting: a selected node (normally a leaf) with a `test` key.
#[derive(Debug, Clone, PartialEq)]
pub struct TestMeta {
    /// The node's name, such as `/tests/login/basic`.
    pub name: String,
    /// The shell command that runs the test.
    pub test: String,
    /// The absolute directory the test runs in: the tree root joined with the `path` key when
    /// it is set (tmt reads it relative to the root, with or without a leading `/`), else the
    /// directory of the file that defines the node.
    pub path: PathBuf,
    /// The time limit: `duration` in tmt's format, 5 minutes by default.
    pub duration: Duration,
    /// Environment variables for the test (values as Python's `str()` renders them).
    pub environment: BTreeMap<String, String>,
    /// The `tag` key: one string or a list of them.
    pub tags: Vec<String>,
    /// The `tier` key, as a string (`tier: 1` is `"1"`).
    pub tier: Option<String>,
    /// Whether the test is enabled (default true). tmt lists disabled tests but does not run
    /// them.
    pub enabled: bool,
    /// How the outcome becomes a result.
    pub result: ResultMode,
    /// The one-line summary.
    pub summary: Option<String>,
    /// The longer description.
    pub description: Option<String>,
    /// The `order` key: tmt runs lower orders first (default 50).
    pub order: i64,
    /// All of the node's data after adjusting, the keys above included.
    pub data: Mapping,
    /// The files the node's data came from (see [`Node::sources`]).
    pub sources: Vec<PathBuf>,
}

impl Tree {
    /// The tests of the tree adjusted for `context`, in tree order: selected nodes (see
    /// [`Node::is_selected`]) having a `test` key, as in tmt.
    pub fn tests(&self, context: &Context) -> Result<Vec<TestMeta>, FmfError> {
        let adjusted = self.adjusted(context)?;
        adjusted
            .nodes()
            .filter(|node| node.is_selected() && node.get("test").is_some())
            .map(|node| TestMeta::from_node(node, adjusted.root()))
            .collect()
    }
}

impl TestMeta {
    /// Reads a test's keys from an (adjusted) node of a tree rooted at `root`.
    pub fn from_node(node: &Node, root: &Path) -> Result<TestMeta, FmfError> {
        let keys = Keys { node };
        Ok(TestMeta {
            name: node.name().to_owned(),
            test: keys.required_string("test")?,
            path: keys.path(root)?,
            duration: keys.duration()?,
            environment: keys.environment()?,
            tags: keys.string_list("tag")?,
            tier: keys.scalar_text("tier")?,
            enabled: keys.boolean("enabled", true)?,
            result: keys.result()?,
            summary: keys.optional_string("summary")?,
            description: keys.optional_string("description")?,
            order: keys.order()?,
            data: node.data().clone(),
            sources: node.sources().to_vec(),
        })
    }
}

/// Typed access to a node's keys, with errors naming the node, its file and the key.
struct Keys<'n> {
    node: &'n Node,
}

impl Keys<'_> {
    fn error(&self, key: &str, problem: impl Into<String>) -> FmfError {
        FmfError::TestKey {
            node: self.node.name().to_owned(),
            file: self.node.sources().last().cloned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> FmfError {
        self.error(
            key,
            format!("expected {expected}, found {}", crate::yaml::kind(found)),
        )
    }

    /// A key's value, treating `key: ~` as absent (as tmt does).
    fn get(&self, key: &str) -> Option<&Value> {
        self.node.get(key).filter(|value| !value.is_null())
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>, FmfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, FmfError> {
        self.optional_string(key)?
            .ok_or_else(|| self.error(key, "must be defined"))
    }

    /// A scalar as Python's `str()` gives it.
    fn scalar_text(&self, key: &str) -> Result<Option<String>, FmfError> {
        match self.get(key) {
            None => Ok(None),
            Some(value @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                Ok(Some(python::str_of(value)))
            }
            Some(other) => Err(self.wrong_type(key, "a string or a number", other)),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, FmfError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>, FmfError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(vec![text.clone()]),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.wrong_type(key, "a list of strings", other)),
                })
                .collect(),
            Some(other) => Err(self.wrong_type(key, "a string or a list of strings", other)),
        }
    }

    fn path(&self, root: &Path) -> Result<PathBuf, FmfError> {
        if let Some(relative) = self.optional_string("path")? {
            return Ok(root.join(relative.trim_start_matches('/')));
        }
        // tmt: the directory of the last source file, or the root for a node with none.
        Ok(self
            .node
            .sources()
            .last()
            .and_then(|file| file.parent())
            .map_or_else(|| root.to_owned(), Path::to_path_buf))
    }

    fn duration(&self) -> Result<Duration, FmfError> {
        let Some(text) = self.scalar_text("duration")? else {
            return Ok(DEFAULT_DURATION);
        };
        parse_duration(&text, DEFAULT_DURATION)
            .map_err(|error| self.error("duration", error.to_string()))
    }

    fn environment(&self) -> Result<BTreeMap<String, String>, FmfError> {
        match self.get("environment") {
            None => Ok(BTreeMap::new()),
            Some(Value::Mapping(variables)) => variables
                .iter()
                .map(|(name, value)| match value {
                    Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
                        Err(self.wrong_type("environment", "scalar values", value))
                    }
                    scalar => Ok((python::str_of(name), python::str_of(scalar))),
                })
                .collect(),
            Some(other) => Err(self.wrong_type("environment", "a mapping", other)),
        }
    }

    fn result(&self) -> Result<ResultMode, FmfError> {
        match self.optional_string("result")? {
            None => Ok(ResultMode::default()),
            Some(text) => text
                .parse()
                .map_err(|error: UnknownResultMode| self.error("result", error.to_string())),
        }
    }

    fn order(&self) -> Result<i64, FmfError> {
        match self.get("order") {
            None => Ok(DEFAULT_ORDER),
            Some(Value::Number(number)) => number
                .as_i64()
                .ok_or_else(|| self.error("order", format!("{number} is not an integer"))),
            Some(Value::String(text)) => python::strip(text)
                .parse()
                .map_err(|_| self.error("order", format!("{text:?} is not an integer"))),
            Some(other) => Err(self.wrong_type("order", "an integer", other)),
        }
    }
}
