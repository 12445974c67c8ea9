//! fmf's merging of a node's keys into the data it inherited (and of an applied adjust rule
//! into a node), mirroring `Tree._merge_special` and its helpers:
//!
//! - `key: value` replaces;
//! - `key+: value` adds: lists extend, strings concatenate, numbers add, mappings merge
//!   recursively (with these same suffixes), a mapping merges into every mapping of a list, and
//!   a list of mappings turns a mapping into a list of merged copies; `key+<` prepends instead;
//! - `key-: value` removes: numbers subtract, a regular expression is deleted from a string,
//!   list items are removed from a list, a list of keys is removed from a mapping;
//! - `key~: /pattern/replacement/` substitutes in a string or every string of a list;
//! - `key-~: pattern` drops list items, mapping keys or a whole string that match.

use crate::python;
use regex::Regex;
use serde_yaml_ng::{Mapping, Value};

/// Why a key could not be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeProblem {
    /// The key without its suffix.
    pub(crate) key: String,
    /// What went wrong.
    pub(crate) problem: String,
}

impl MergeProblem {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        MergeProblem {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The merge a key's suffix asks for.
enum Suffix<'k> {
    Append(&'k str),
    Prepend(&'k str),
    RemoveMatching(&'k str),
    Remove(&'k str),
    Substitute(&'k str),
    Replace,
}

/// Reads a key's suffix in fmf's order of checks. Like Python's `rstrip`, every trailing
/// character of the suffix's set is stripped (`tag++` is `tag`).
fn suffix(key: &str) -> Suffix<'_> {
    let strip = |set: &[char]| key.trim_end_matches(|c| set.contains(&c));
    if key.ends_with('+') {
        Suffix::Append(strip(&['+']))
    } else if key.ends_with("+<") {
        Suffix::Prepend(strip(&['+', '<']))
    } else if key.ends_with("-~") {
        Suffix::RemoveMatching(strip(&['-', '~']))
    } else if key.ends_with('-') {
        Suffix::Remove(strip(&['-']))
    } else if key.ends_with('~') {
        Suffix::Substitute(strip(&['~']))
    } else {
        Suffix::Replace
    }
}

/// Merges `source` into `data`, handling the special suffixes of string keys.
pub(crate) fn merge_special(data: &mut Mapping, source: &Mapping) -> Result<(), MergeProblem> {
    for (key, value) in source {
        let Value::String(text) = key else {
            data.insert(key.clone(), value.clone());
            continue;
        };
        match suffix(text) {
            Suffix::Append(name) => merge_plus(data, name, value, false)?,
            Suffix::Prepend(name) => merge_plus(data, name, value, true)?,
            Suffix::RemoveMatching(name) => merge_minus_regex(data, name, value)?,
            Suffix::Remove(name) => merge_minus(data, name, value)?,
            Suffix::Substitute(name) => merge_substitute(data, name, value)?,
            Suffix::Replace => {
                data.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

fn merge_plus(
    data: &mut Mapping,
    key: &str,
    value: &Value,
    prepend: bool,
) -> Result<(), MergeProblem> {
    let Some(current) = data.get_mut(key) else {
        data.insert(Value::from(key), value.clone());
        return Ok(());
    };
    match (current, value) {
        (Value::Sequence(items), Value::Mapping(update)) => {
            for item in items {
                let Value::Mapping(item) = item else {
                    return Err(not_a_mapping(key, item));
                };
                merge_special(item, update)?;
            }
        }
        (current @ Value::Mapping(_), Value::Sequence(updates)) => {
            let Value::Mapping(base) = &*current else {
                unreachable!("matched as a mapping");
            };
            let merged = updates
                .iter()
                .map(|update| {
                    let Value::Mapping(update) = update else {
                        return Err(not_a_mapping(key, update));
                    };
                    let mut copy = base.clone();
                    merge_special(&mut copy, update)?;
                    Ok(Value::Mapping(copy))
                })
                .collect::<Result<Vec<_>, _>>()?;
            *current = Value::Sequence(merged);
        }
        (Value::Mapping(current), Value::Mapping(update)) => merge_special(current, update)?,
        (current, value) => {
            let (left, right) = if prepend {
                (value, &*current)
            } else {
                (&*current, value)
            };
            *current = python_plus(key, left, right)?;
        }
    }
    Ok(())
}

fn not_a_mapping(key: &str, item: &Value) -> MergeProblem {
    MergeProblem::new(
        key,
        format!("item {} must be a mapping", python::repr(item)),
    )
}

/// Python's `left + right` for the types YAML has.
fn python_plus(key: &str, left: &Value, right: &Value) -> Result<Value, MergeProblem> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Sequence(a), Value::Sequence(b)) => {
            Ok(Value::Sequence(a.iter().chain(b).cloned().collect()))
        }
        _ => match python::add_numbers(left, right, false) {
            Some(Ok(sum)) => Ok(sum),
            Some(Err(python::Overflow)) => Err(MergeProblem::new(key, "integer overflow")),
            None => Err(MergeProblem::new(
                key,
                format!("cannot add {} to {}", type_name(right), type_name(left)),
            )),
        },
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn merge_minus(data: &mut Mapping, key: &str, value: &Value) -> Result<(), MergeProblem> {
    let Some(current) = data.get_mut(key) else {
        return Ok(());
    };
    if let Some(difference) = python::add_numbers(current, value, true) {
        *current =
            difference.map_err(|python::Overflow| MergeProblem::new(key, "integer overflow"))?;
        return Ok(());
    }
    match (current, value) {
        (Value::String(text), Value::String(pattern)) => {
            *text = compile(key, pattern)?.replace_all(text, "").into_owned();
        }
        (Value::Sequence(items), Value::Sequence(removed)) => {
            items.retain(|item| !removed.iter().any(|gone| python::equal(item, gone)));
        }
        (Value::Mapping(mapping), Value::Sequence(removed)) => {
            for gone in removed {
                mapping.shift_remove(gone);
            }
        }
        (current, value) => {
            return Err(MergeProblem::new(
                key,
                format!(
                    "cannot remove {} from {}",
                    type_name(value),
                    type_name(current)
                ),
            ));
        }
    }
    Ok(())
}

fn merge_minus_regex(data: &mut Mapping, key: &str, value: &Value) -> Result<(), MergeProblem> {
    let Some(current) = data.get_mut(key) else {
        return Ok(());
    };
    let mut patterns = LazyPatterns::new(key, value);
    match current {
        Value::Sequence(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                if !patterns.any_matches(&python::str_of(&item))? {
                    kept.push(item);
                }
            }
            *items = kept;
        }
        Value::String(text) => {
            if patterns.any_matches(text)? {
                text.clear();
            }
        }
        Value::Mapping(mapping) => {
            let mut kept = Mapping::new();
            for (name, item) in std::mem::take(mapping) {
                if !patterns.any_matches(&python::str_of(&name))? {
                    kept.insert(name, item);
                }
            }
            *mapping = kept;
        }
        other => {
            return Err(MergeProblem::new(
                key,
                format!("cannot remove matches from {}", type_name(other)),
            ));
        }
    }
    Ok(())
}

/// The patterns of a `-~` value (one string, or a list of them), compiled only when a search
/// reaches them: fmf searches lazily, so a bad pattern after one that matched, or any pattern
/// against an empty list, is never an error there either.
struct LazyPatterns<'v> {
    key: &'v str,
    sources: Result<Vec<&'v Value>, String>,
    compiled: Vec<Option<Regex>>,
}

impl<'v> LazyPatterns<'v> {
    fn new(key: &'v str, value: &'v Value) -> Self {
        let sources = match value {
            Value::String(_) => Ok(vec![value]),
            Value::Sequence(items) => Ok(items.iter().collect()),
            // Python iterates a mapping's keys.
            Value::Mapping(mapping) => Ok(mapping.keys().collect()),
            other => Err(format!(
                "patterns must be a string or a list, found {}",
                type_name(other)
            )),
        };
        let compiled = sources.as_ref().map_or(0, Vec::len);
        LazyPatterns {
            key,
            sources,
            compiled: (0..compiled).map(|_| None).collect(),
        }
    }

    fn any_matches(&mut self, text: &str) -> Result<bool, MergeProblem> {
        let sources = self
            .sources
            .as_ref()
            .map_err(|problem| MergeProblem::new(self.key, problem.clone()))?;
        for (source, slot) in sources.iter().zip(&mut self.compiled) {
            if slot.is_none() {
                let Value::String(pattern) = source else {
                    return Err(MergeProblem::new(
                        self.key,
                        format!("pattern {} must be a string", python::repr(source)),
                    ));
                };
                *slot = Some(compile(self.key, pattern)?);
            }
            if slot.as_ref().is_some_and(|regex| regex.is_match(text)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn compile(key: &str, pattern: &str) -> Result<Regex, MergeProblem> {
    Regex::new(pattern).map_err(|error| {
        MergeProblem::new(
            key,
            format!("invalid regular expression {pattern:?}: {error}"),
        )
    })
}

fn merge_substitute(data: &mut Mapping, key: &str, value: &Value) -> Result<(), MergeProblem> {
    let Some(current) = data.get_mut(key) else {
        return Ok(());
    };
    let rules: Vec<&Value> = match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::String(_) => vec![value],
        other => {
            return Err(MergeProblem::new(
                key,
                format!(
                    "substitutions must be a string or a list, found {}",
                    type_name(other)
                ),
            ))
        }
    };
    // fmf checks every rule's form first, and compiles a pattern only when it substitutes.
    let substitutions = rules
        .into_iter()
        .map(|rule| substitution(key, rule))
        .collect::<Result<Vec<_>, _>>()?;
    for (pattern, replacement) in substitutions {
        let mut compiled: Option<(Regex, String)> = None;
        let mut substitute = |text: &mut String| -> Result<(), MergeProblem> {
            if compiled.is_none() {
                let template = python::replacement_template(replacement).map_err(
                    |python::BadTemplate(why)| {
                        MergeProblem::new(key, format!("bad replacement {replacement:?}: {why}"))
                    },
                )?;
                compiled = Some((compile(key, pattern)?, template));
            }
            if let Some((regex, template)) = &compiled {
                *text = regex.replace_all(text, template.as_str()).into_owned();
            }
            Ok(())
        };
        match current {
            Value::Sequence(items) => {
                for item in items.iter_mut() {
                    let Value::String(text) = item else {
                        return Err(MergeProblem::new(key, "not a string"));
                    };
                    substitute(text)?;
                }
            }
            Value::String(text) => substitute(text)?,
            _ => return Err(MergeProblem::new(key, "wrong type")),
        }
    }
    Ok(())
}

/// Splits `<d>pattern<d>replacement<d>` (any delimiter `d`, which may not appear inside) as
/// fmf's `split_pattern_replacement` does.
fn substitution<'v>(key: &str, rule: &'v Value) -> Result<(&'v str, &'v str), MergeProblem> {
    let Value::String(source) = rule else {
        return Err(MergeProblem::new(
            key,
            format!("substitution {} must be a string", python::repr(rule)),
        ));
    };
    let problem = |what: &str| MergeProblem::new(key, format!("{source:?} {what}"));
    let delimiter = source
        .chars()
        .next()
        .ok_or_else(|| problem("has to start and end with the same delimiter"))?;
    if !source.ends_with(delimiter) || source.len() == delimiter.len_utf8() {
        return Err(problem(&format!("has to end with {delimiter:?}")));
    }
    let inner = &source[delimiter.len_utf8()..source.len() - delimiter.len_utf8()];
    let parts: Vec<&str> = inner.split(delimiter).collect();
    let [pattern, replacement] = parts[..] else {
        return Err(problem("can't be split in two parts"));
    };
    if pattern.is_empty() {
        return Err(problem("has an empty pattern"));
    }
    Ok((pattern, replacement))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(text: &str) -> Mapping {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn merged(data: &str, source: &str) -> Result<Mapping, MergeProblem> {
        let mut data = mapping(data);
        merge_special(&mut data, &mapping(source)).map(|()| data)
    }

    #[test]
    fn plus_extends_concatenates_adds_and_merges() {
        assert_eq!(merged("t: [a]", "t+: [b]").unwrap(), mapping("t: [a, b]"));
        assert_eq!(merged("t: [a]", "t+<: [b]").unwrap(), mapping("t: [b, a]"));
        assert_eq!(merged("s: ab", "s+: cd").unwrap(), mapping("s: abcd"));
        assert_eq!(merged("s: ab", "s+<: cd").unwrap(), mapping("s: cdab"));
        assert_eq!(merged("n: 1", "n+: 2.5").unwrap(), mapping("n: 3.5"));
        assert_eq!(
            merged("m: {a: 1, b: [x]}", "m+: {b+: [y], c: 3}").unwrap(),
            mapping("m: {a: 1, b: [x, y], c: 3}")
        );
        assert_eq!(merged("{}", "new+: [a]").unwrap(), mapping("new: [a]"));
        assert_eq!(
            merged("++: 1", "++: 2").unwrap(),
            mapping("{'++': 1, '': 2}")
        );
    }

    #[test]
    fn plus_spreads_over_lists_of_mappings() {
        assert_eq!(
            merged("r: [{a: 1}, {a: 2}]", "r+: {b: 0}").unwrap(),
            mapping("r: [{a: 1, b: 0}, {a: 2, b: 0}]")
        );
        assert_eq!(
            merged("r: {a: 1}", "r+: [{b: 1}, {b: 2}]").unwrap(),
            mapping("r: [{a: 1, b: 1}, {a: 1, b: 2}]")
        );
        assert!(merged("r: [x]", "r+: {b: 0}").is_err());
        assert!(merged("r: {a: 1}", "r+: [x]").is_err());
    }

    #[test]
    fn plus_refuses_mismatched_types() {
        let problem = merged("t: [a]", "t+: b").unwrap_err();
        assert_eq!(problem.key, "t");
        assert!(
            problem.problem.contains("cannot add a string to a list"),
            "{problem:?}"
        );
        assert!(merged("t: ~", "t+: b").is_err());
    }

    #[test]
    fn minus_removes() {
        assert_eq!(merged("n: 5", "n-: 2").unwrap(), mapping("n: 3"));
        assert_eq!(
            merged("s: hello world", "s-: ' w.*'").unwrap(),
            mapping("s: hello")
        );
        assert_eq!(
            merged("t: [a, b, 1]", "t-: [b, 1.0]").unwrap(),
            mapping("t: [a]")
        );
        assert_eq!(
            merged("m: {a: 1, b: 2}", "m-: [a, z]").unwrap(),
            mapping("m: {b: 2}")
        );
        assert_eq!(merged("{}", "gone-: [a]").unwrap(), mapping("{}"));
        assert!(merged("t: [a]", "t-: a").is_err());
    }

    #[test]
    fn minus_regex_drops_matches() {
        assert_eq!(
            merged("t: [tier1, slow, tier2]", "t-~: ^tier").unwrap(),
            mapping("t: [slow]")
        );
        assert_eq!(
            merged("t: [a, 10, 20]", "t-~: ['^1', a]").unwrap(),
            mapping("t: [20]")
        );
        assert_eq!(merged("s: abc", "s-~: b").unwrap(), mapping("s: ''"));
        assert_eq!(
            merged("m: {ab: 1, cd: 2}", "m-~: a").unwrap(),
            mapping("m: {cd: 2}")
        );
        assert!(merged("n: 1", "n-~: a").is_err());
    }

    #[test]
    fn tilde_substitutes() {
        assert_eq!(
            merged("s: fedora-39", "s~: /fedora-(\\d+)/f\\1/").unwrap(),
            mapping("s: f39")
        );
        assert_eq!(
            merged("t: [a1, b1]", "t~: ['/1/2/', '|2|3|']").unwrap(),
            mapping("t: [a3, b3]")
        );
        assert!(merged("s: x", "s~: /x/").is_err());
        assert!(merged("s: x", "s~: //y/").is_err());
        assert!(merged("s: x", "s~: /x/y").is_err());
        assert!(merged("s: x", "s~: /").is_err());
        assert!(merged("t: [1]", "t~: /1/2/").is_err());
    }
}
