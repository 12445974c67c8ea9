//! Reading one `.fmf` file (or `.fmf/config`) as YAML, the way fmf's `YAML(typ="safe")` does:
//! one document, no duplicate keys, `<<` merge keys applied, no application-specific tags.

use crate::FmfError;
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

/// Parses `text`, the contents of `path`, into the node data it defines: `None` for an empty
/// document, else a mapping.
pub(crate) fn parse_metadata(path: &Path, text: &str) -> Result<Option<Mapping>, FmfError> {
    match parse_document(path, text)? {
        Value::Null => Ok(None),
        Value::Mapping(mapping) => Ok(Some(mapping)),
        other => Err(FmfError::Format {
            path: path.to_owned(),
            problem: format!(
                "the top level must be a mapping of keys to values, found {}",
                kind(&other)
            ),
        }),
    }
}

/// Parses `text`, the contents of `path`, into a YAML value.
pub(crate) fn parse_document(path: &Path, text: &str) -> Result<Value, FmfError> {
    let mut value: Value =
        serde_yaml_ng::from_str(text).map_err(|error| yaml_error(path, &error))?;
    apply_merge_keys(&mut value).map_err(|problem| FmfError::Yaml {
        path: path.to_owned(),
        line: None,
        column: None,
        message: problem.to_owned(),
    })?;
    if let Some(tag) = find_tag(&value) {
        return Err(FmfError::Yaml {
            path: path.to_owned(),
            line: None,
            column: None,
            message: format!("could not determine a constructor for the tag {tag}"),
        });
    }
    Ok(value)
}

/// Resolves `<<` merge keys as fmf's loader (ruamel.yaml) does, which matters because fmf
/// merges a node's keys in order: merged entries come first (from the last mapping of a
/// `<<: [*a, *b]` list to the first, earlier ones winning), then the mapping's own entries,
/// which win over merged ones but keep their position. (`serde_yaml_ng`'s own `apply_merge`
/// appends merged entries after the mapping's own.) Inner mappings are resolved first, so a
/// merged mapping brings no `<<` of its own along. Recursion is bounded by the parser's depth
/// limit.
fn apply_merge_keys(value: &mut Value) -> Result<(), &'static str> {
    match value {
        Value::Sequence(items) => items.iter_mut().try_for_each(apply_merge_keys),
        Value::Tagged(tagged) => apply_merge_keys(&mut tagged.value),
        Value::Mapping(mapping) => {
            mapping.values_mut().try_for_each(apply_merge_keys)?;
            let Some(sources) = mapping.shift_remove("<<") else {
                return Ok(());
            };
            let sources = match sources {
                Value::Mapping(source) => vec![source],
                Value::Sequence(items) => items
                    .into_iter()
                    .rev()
                    .map(|item| match item {
                        Value::Mapping(source) => Ok(source),
                        _ => Err("expected a mapping for merging"),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err("expected a mapping or a list of mappings for merging"),
            };
            let mut merged = Mapping::new();
            for (key, value) in sources.into_iter().flatten().chain(std::mem::take(mapping)) {
                merged.insert(key, value);
            }
            *mapping = merged;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn yaml_error(path: &Path, error: &serde_yaml_ng::Error) -> FmfError {
    let location = error.location();
    FmfError::Yaml {
        path: path.to_owned(),
        line: location.as_ref().map(|location| location.line()),
        column: location.as_ref().map(|location| location.column()),
        message: error.to_string(),
    }
}

/// The first application-specific tag (`!foo`) in `value`: fmf's safe loader refuses them.
fn find_tag(value: &Value) -> Option<String> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Tagged(tagged) => return Some(tagged.tag.to_string()),
            Value::Sequence(items) => pending.extend(items),
            Value::Mapping(mapping) => {
                for (key, value) in mapping {
                    pending.push(key);
                    pending.push(value);
                }
            }
            _ => {}
        }
    }
    None
}

/// A value's kind, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Mapping>, FmfError> {
        parse_metadata(Path::new("x.fmf"), text)
    }

    #[test]
    fn empty_documents_define_empty_nodes() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn merge_keys_and_anchors_resolve() {
        let data = parse("base: &b {a: 1, b: 2}\nchild:\n  <<: *b\n  b: 3\n")
            .unwrap()
            .unwrap();
        let expected: Mapping =
            serde_yaml_ng::from_str("base: {a: 1, b: 2}\nchild: {a: 1, b: 3}").unwrap();
        assert_eq!(data, expected);
    }

    #[test]
    fn merged_entries_come_first_and_own_entries_win() {
        let data =
            parse("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  w+: 0\n  <<: [*a, *b]\n  z: 3\n")
                .unwrap()
                .unwrap();
        let c = data.get("c").and_then(Value::as_mapping).unwrap();
        let keys: Vec<&str> = c.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["y", "z", "x", "w+"]);
        let expected: Mapping = serde_yaml_ng::from_str("{y: 1, z: 3, x: 1, w+: 0}").unwrap();
        assert_eq!(c, &expected);
        assert!(parse("a: {<<: 1}\n").is_err());
        assert!(parse("a: {<<: [1]}\n").is_err());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let FmfError::Yaml {
            path, line, column, ..
        } = parse("a: 1\nb: [1\n").unwrap_err()
        else {
            panic!("expected a YAML error");
        };
        assert_eq!(path, Path::new("x.fmf"));
        assert_eq!((line, column), (Some(3), Some(1)));
    }

    #[test]
    fn refuses_what_the_safe_loader_refuses() {
        assert!(matches!(parse("a: 1\na: 2\n"), Err(FmfError::Yaml { .. })));
        assert!(matches!(
            parse("a: !custom 1\n"),
            Err(FmfError::Yaml { .. })
        ));
        assert!(matches!(
            parse("a: 1\n---\nb: 2\n"),
            Err(FmfError::Yaml { .. })
        ));
        assert!(matches!(parse("- a\n"), Err(FmfError::Format { .. })));
        assert!(matches!(parse("just text\n"), Err(FmfError::Format { .. })));
    }
}
