//! Shared fixtures: small real projects in temporary directories, and what
//! a real test process reported.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeSet;
use std::path::Path;

use proctor_sources::{Invocation, SourceError};
use proctor_subunit::{EventReader, Status};

/// Ids of the Python tests [`python_project`] writes.
pub const PLAIN_IDS: [&str; 3] = [
    "tests.test_math.TestAdd.test_one",
    "tests.test_math.TestAdd.test_two",
    "tests.test_math.TestSub.test_minus",
];

/// Ids with characters a shell would split, glob or unquote.
pub const ODD_IDS: [&str; 3] = [
    "tests.test_odd.TestOdd.test_with space",
    "tests.test_odd.TestOdd.test_p[1]",
    "tests.test_odd.TestOdd.test_q'x\"",
];

/// Writes a unittest project under `dir/tests`, whose tests have
/// [`PLAIN_IDS`] and [`ODD_IDS`].
pub fn python_project(dir: &Path) {
    let tests = dir.join("tests");
    std::fs::create_dir_all(&tests).expect("create tests/");
    write(&tests.join("__init__.py"), "");
    write(
        &tests.join("test_math.py"),
        "import unittest\n\
         class TestAdd(unittest.TestCase):\n\
         \x20   def test_one(self): self.assertEqual(1 + 1, 2)\n\
         \x20   def test_two(self): self.assertEqual(2 + 2, 4)\n\
         class TestSub(unittest.TestCase):\n\
         \x20   def test_minus(self): self.assertEqual(2 - 1, 1)\n",
    );
    // unittest finds any attribute starting with "test", whatever its name.
    write(
        &tests.join("test_odd.py"),
        "import unittest\n\
         class TestOdd(unittest.TestCase):\n\
         \x20   pass\n\
         for name in ['test_with space', 'test_p[1]', 'test_q\\'x\"']:\n\
         \x20   setattr(TestOdd, name, lambda self: None)\n",
    );
}

pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// The venv's Python, as a string for configuration files and `PYTHON`.
pub fn python() -> String {
    proctor_testkit::python().to_string_lossy().into_owned()
}

/// Runs an invocation to completion and returns the ids its subunit stream
/// finished with each status.
pub fn run_subunit(invocation: &Invocation) -> Reported {
    let output = invocation
        .command()
        .output()
        .unwrap_or_else(|error| panic!("cannot run {invocation:?}: {error}"));
    let mut reader = EventReader::new(output.stdout.as_slice());
    let mut reported = Reported::default();
    while let Some(event) = reader.next_event().expect("reading a slice cannot fail") {
        if let (Some(status), Some(id)) = (event.status, event.test_id) {
            match status {
                Status::Success => reported.passed.insert(id),
                Status::Fail => reported.failed.insert(id),
                _ => false,
            };
        }
    }
    reported.stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    reported
}

/// What one process reported.
#[derive(Debug, Default)]
pub struct Reported {
    pub passed: BTreeSet<String>,
    pub failed: BTreeSet<String>,
    pub stderr: String,
}

pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// The error's message, panicking if there was none.
pub fn error_message<T: std::fmt::Debug>(result: Result<T, SourceError>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.to_string(),
    }
}
