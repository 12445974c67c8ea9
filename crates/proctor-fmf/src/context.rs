//! The context adjust rules are decided against: dimensions such as `distro` or `arch`, each
//! with one or more values, as given to tmt by `--context distro=fedora-39`.

use crate::rule::{Decision, Rule, RuleError};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A context: dimension names with their values. Value comparisons ignore case by default, as
/// tmt asks of fmf; [`Context::set_case_sensitive`] switches to fmf's own default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    dimensions: BTreeMap<String, Vec<String>>,
    case_sensitive: bool,
}

/// A `--context` argument that is not `DIMENSION=VALUE[,VALUE...]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The argument has no `=`, or nothing before it.
    #[error("invalid context {argument:?}: expected DIMENSION=VALUE[,VALUE...]")]
    NotAPair {
        /// The argument.
        argument: String,
    },
    /// The argument has a dimension but an empty value.
    #[error("context dimension {dimension:?} has an empty value: use DIMENSION=VALUE or leave the dimension out")]
    EmptyValue {
        /// The dimension.
        dimension: String,
    },
}

impl Context {
    /// An empty context: every comparison is undecided, so only rules without dimensions
    /// (`true`, `is not defined`, ...) apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses command-line arguments, each `DIMENSION=VALUE` with comma-separated alternative
    /// values (`arch=x86_64,aarch64`). A dimension given twice keeps its last values, as in tmt.
    pub fn parse_pairs<S: AsRef<str>>(arguments: &[S]) -> Result<Self, ContextError> {
        let mut context = Context::new();
        for argument in arguments {
            let (dimension, values) = parse_pair(argument.as_ref())?;
            context.dimensions.insert(dimension, values);
        }
        Ok(context)
    }

    /// Sets a dimension's values, replacing any it had.
    pub fn set<I, V>(&mut self, dimension: &str, values: I)
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let values = values.into_iter().map(Into::into).collect();
        self.dimensions.insert(dimension.to_owned(), values);
    }

    /// The values of a dimension, or `None` when the context does not define it.
    pub fn values(&self, dimension: &str) -> Option<&[String]> {
        self.dimensions.get(dimension).map(Vec::as_slice)
    }

    /// The dimensions and their values, by name.
    pub fn dimensions(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.dimensions
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// Whether names and version parts compare case-sensitively (`false` unless set).
    pub fn is_case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// Chooses case-sensitive comparison (fmf's default) or not (tmt's choice, the default here).
    /// Regular expressions (`~`, `!~`) are always case-sensitive, as in fmf.
    pub fn set_case_sensitive(&mut self, case_sensitive: bool) {
        self.case_sensitive = case_sensitive;
    }

    /// Decides a `when` condition in this context.
    pub fn decide(&self, condition: &str) -> Result<Decision, RuleError> {
        Rule::parse(condition)?.evaluate(self)
    }
}

fn parse_pair(argument: &str) -> Result<(String, Vec<String>), ContextError> {
    let not_a_pair = || ContextError::NotAPair {
        argument: argument.to_owned(),
    };
    let (dimension, value) = argument.split_once('=').ok_or_else(not_a_pair)?;
    if dimension.is_empty() {
        return Err(not_a_pair());
    }
    if value.trim().is_empty() {
        return Err(ContextError::EmptyValue {
            dimension: dimension.to_owned(),
        });
    }
    Ok((
        dimension.to_owned(),
        value.split(',').map(str::to_owned).collect(),
    ))
}

impl FromStr for Context {
    type Err = ContextError;

    /// Parses whitespace-separated `DIMENSION=VALUE[,VALUE...]` pairs.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let pairs: Vec<&str> = text.split_whitespace().collect();
        Context::parse_pairs(&pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_with_alternatives() {
        let context = Context::parse_pairs(&["distro=fedora-39", "arch=x86_64,aarch64"]).unwrap();
        assert_eq!(
            context.values("distro"),
            Some(&["fedora-39".to_owned()][..])
        );
        assert_eq!(
            context.values("arch"),
            Some(&["x86_64".to_owned(), "aarch64".to_owned()][..])
        );
        assert_eq!(context.values("trigger"), None);
        assert!(!context.is_case_sensitive());
    }

    #[test]
    fn later_pairs_replace_earlier_ones() {
        let context = Context::parse_pairs(&["arch=x86_64", "arch=s390x"]).unwrap();
        assert_eq!(context.values("arch"), Some(&["s390x".to_owned()][..]));
    }

    #[test]
    fn values_may_contain_equals_signs() {
        let context: Context = "initiator=a=b component=bash".parse().unwrap();
        assert_eq!(context.values("initiator"), Some(&["a=b".to_owned()][..]));
        assert_eq!(context.dimensions().count(), 2);
    }

    #[test]
    fn rejects_malformed_pairs() {
        assert_eq!(
            Context::parse_pairs(&["distro"]),
            Err(ContextError::NotAPair {
                argument: "distro".to_owned()
            })
        );
        assert!(matches!(
            Context::parse_pairs(&["=x"]),
            Err(ContextError::NotAPair { .. })
        ));
        assert_eq!(
            Context::parse_pairs(&["distro= "]),
            Err(ContextError::EmptyValue {
                dimension: "distro".to_owned()
            })
        );
    }

    #[test]
    fn decides_conditions() {
        let mut context = Context::new();
        context.set("distro", ["fedora-40"]);
        assert_eq!(
            context.decide("distro >= fedora-39").unwrap(),
            Decision::Yes
        );
        assert_eq!(
            context.decide("arch == x86_64").unwrap(),
            Decision::Undecided
        );
        assert!(context.decide("distro ?").is_err());
    }
}
