//! The errors reading, adjusting and interpreting a tree can end in.

use crate::rule::RuleError;
use std::path::PathBuf;

/// Everything that can go wrong reading an FMF tree, adjusting it, or reading its tests. Each
/// variant names the file or node (and the file that defines it) where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum FmfError {
    /// No directory at or above the given path has a `.fmf` directory.
    #[error("no fmf tree found at or above {path} (the root of a tree has a `.fmf` directory)")]
    NoRoot {
        /// Where the search started.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `.fmf/version` does not hold an integer.
    #[error("{path}: the format version must be an integer, found {found:?}")]
    BadVersion {
        /// The `.fmf/version` file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// A metadata file is not valid YAML (or not UTF-8, or holds several documents).
    #[error("{}: invalid YAML{}: {message}", path.display(), at_line_column(*line, *column))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// The 1-based column of the problem, when the parser knows it.
        column: Option<usize>,
        /// The parser's description.
        message: String,
    },
    /// A file is valid YAML but not valid FMF: its top level is not a mapping, a node key is
    /// not a string, a child node is not a mapping, a directive is unknown or mistyped.
    #[error("{}: {problem}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `key+`, `key-`, `key~` or `key-~` cannot combine the two values (as fmf's `MergeError`).
    #[error(
        "node {node} ({}): cannot merge key `{key}`: {problem}",
        defined_in(file)
    )]
    Merge {
        /// The node's name.
        node: String,
        /// The file that defines the node, when it has one.
        file: Option<PathBuf>,
        /// The key being merged, without its suffix.
        key: String,
        /// Why not.
        problem: String,
    },
    /// An `adjust` value or rule has the wrong shape.
    #[error("node {node} ({}): invalid adjust rule: {problem}", defined_in(file))]
    Adjust {
        /// The node's name.
        node: String,
        /// The file that defines the node, when it has one.
        file: Option<PathBuf>,
        /// What is wrong.
        problem: String,
    },
    /// A `when` condition cannot be parsed or evaluated.
    #[error(
        "node {node} ({}): bad `when` condition {expression:?}: {source}",
        defined_in(file)
    )]
    Condition {
        /// The node's name.
        node: String,
        /// The file that defines the node, when it has one.
        file: Option<PathBuf>,
        /// The whole condition.
        expression: String,
        /// What is wrong and where.
        source: RuleError,
    },
    /// A test's key has a value tmt would not accept.
    #[error("test {node} ({}): key `{key}`: {problem}", defined_in(file))]
    TestKey {
        /// The test's name.
        node: String,
        /// The file that defines the test, when it has one.
        file: Option<PathBuf>,
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn at_line_column(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn defined_in(file: &Option<PathBuf>) -> String {
    match file {
        Some(file) => format!("defined in {}", file.display()),
        None => "defined in no file".to_owned(),
    }
}
