//! Helpers shared by the integration tests: trees on disk and the Python reference.

#![allow(dead_code)] // each test binary uses its own subset

use proctor_fmf::Value;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

/// A tree in a temporary directory: `.fmf/version` plus `files` (path, contents).
pub fn tree_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_files(dir.path(), &[(".fmf/version", "1\n")]);
    write_files(dir.path(), files);
    dir
}

/// Writes `files` (path relative to `root`, contents), creating directories.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write file");
    }
}

/// Parses YAML text into a value, for expected data.
pub fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

/// A YAML value as the JSON Python's `json.dumps` makes of the same data.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                int.into()
            } else if let Some(int) = number.as_u64() {
                int.into()
            } else {
                number.as_f64().map_or(serde_json::Value::Null, |float| {
                    serde_json::Number::from_f64(float).map_or(serde_json::Value::Null, Into::into)
                })
            }
        }
        Value::String(text) => text.clone().into(),
        Value::Sequence(items) => items.iter().map(to_json).collect(),
        Value::Mapping(mapping) => mapping
            .iter()
            .map(|(key, value)| {
                let key = match key {
                    Value::String(text) => text.clone(),
                    other => serde_json::to_string(&to_json(other)).expect("JSON key"),
                };
                (key, to_json(value))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

/// Runs `tests/python/fmf_reference.py MODE` in the test virtualenv with `request` on stdin.
pub fn reference(mode: &str, request: &serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fmf_reference.py");
    let mut command = Command::new(proctor_testkit::python());
    command
        .arg(script)
        .arg(mode)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = proctor_testkit::run_with_stdin(command, request.to_string().as_bytes());
    let stdout = proctor_testkit::expect_success("fmf_reference.py", output);
    serde_json::from_slice(&stdout).expect("the reference writes JSON")
}
