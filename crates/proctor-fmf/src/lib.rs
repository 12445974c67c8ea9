//! Reads FMF trees, the Flexible Metadata Format tmt keeps test metadata in, so Proctor can run
//! a tmt test tree.
//!
//! The rules are fmf's and tmt's, read from their Python sources (fmf 1.7, tmt 1.78) and checked
//! against the `fmf` package by this crate's interop tests:
//!
//! - [`Tree::load`] finds the root (the nearest directory with a `.fmf` directory) and reads
//!   every `*.fmf` file as YAML: `main.fmf` is its directory's node, `NAME.fmf` a child `NAME`,
//!   `/child:` keys (also `/a/b:` paths) further children. Node names are paths from the root.
//!   [`Tree::parse`] reads a tree held in one document.
//! - Children inherit their parent's data; `key+`, `key+<`, `key-`, `key~` and `key-~` merge
//!   into the inherited value instead of replacing it, and the `/` directive key can turn
//!   inheritance off (`inherit: false`) or list a branch (`select: true`).
//! - [`Tree::adjust`] applies `adjust` rules whose `when` condition holds in a [`Context`] (the
//!   `--context distro=fedora-39` dimensions), with fmf's expression language ([`Rule`]) and
//!   three-valued logic: a rule whose dimension is missing is skipped.
//! - [`Tree::tests`] gives tmt's tests ([`TestMeta`]): selected nodes with a `test` key, with
//!   their directory, duration, environment, tags and other keys typed.
//!
//! ```no_run
//! use proctor_fmf::{Context, Tree};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tree = Tree::load("tests".as_ref())?;
//! let context = Context::parse_pairs(&["distro=fedora-39", "arch=x86_64"])?;
//! for test in tree.tests(&context)? {
//!     println!("{} in {}: {} (limit {:?})", test.name, test.path.display(), test.test, test.duration);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! YAML is read by `serde_yaml_ng`, the maintained fork of `serde_yaml`: it keeps key order,
//! resolves anchors, aliases and `<<` merge keys, refuses duplicate keys as fmf's loader does,
//! reports line and column, and bounds nesting depth and alias expansion, so no file can
//! exhaust the stack or memory. (`yaml-rust2` and `saphyr` neither apply merge keys nor limit
//! alias expansion.) Its values are re-exported as [`Value`] and [`Mapping`].
//!
//! Where Python and Rust differ, the differences are small and deliberate: regular expressions
//! (`~` conditions, `key-`, `key~`, `key-~`) use the `regex` crate's syntax, which lacks
//! look-around and backreferences; YAML scalars follow the YAML 1.2 core schema, so the extras
//! of fmf's loader (`1_000`, `0b101`, `017` and dates as numbers or dates) stay strings; an
//! unreadable directory is an error rather than silently skipped; inputs that crash fmf (a
//! list as a file's top level, a non-string key, a child node that is not a mapping) are
//! [`FmfError`]s; and values are copied where Python shares them, so a rule in `adjust` stays as
//! written where fmf's copy would show later rules' in-place edits (the data the rules produce
//! is the same, unless YAML aliases share one mapping between two keys that are then merged
//! into).

mod adjust;
mod context;
mod duration;
mod error;
mod merge;
mod python;
mod rule;
mod test_meta;
mod tree;
mod yaml;

pub use context::{Context, ContextError};
pub use duration::{parse_duration, DurationError, DEFAULT_DURATION};
pub use error::FmfError;
pub use rule::{Decision, Rule, RuleError};
pub use serde_yaml_ng::{Mapping, Value};
pub use test_meta::{ResultMode, TestMeta, UnknownResultMode, DEFAULT_ORDER};
pub use tree::{Node, Tree, MAX_DEPTH};
