//! One input through proctor-archive's readers, shared by the cargo-fuzz target `archive`
//! (`fuzz/fuzz_targets/archive.rs`) and the tests that replay its findings.
//!
//! The bytes are checked as attachments and as artifacts and unpacked into a fresh directory. Errors are fine;
//! panics are not, nothing may be written outside the directory, and whatever `check` accepts must unpack.

use std::path::Path;

use proctor_archive::{check, unpack, Layout, Limits};

/// Runs `data` through `check` and `unpack` in both layouts.
pub fn exercise(data: &[u8]) {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    for (index, layout) in [Layout::UnderPhases, Layout::Any].into_iter().enumerate() {
        let destination = scratch.path().join(format!("out{index}"));
        let checked = check(data, layout, Limits::ARTIFACTS);
        let unpacked = unpack(data, &destination, layout, Limits::ARTIFACTS);
        if checked.is_ok() {
            assert!(unpacked.is_ok(), "checked but not unpacked: {unpacked:?}");
        }
    }
    assert_only_outputs(scratch.path());
}

/// Nothing but the two output directories appeared in the scratch directory.
fn assert_only_outputs(scratch: &Path) {
    for entry in std::fs::read_dir(scratch).expect("the scratch directory") {
        let name = entry.expect("an entry").file_name();
        assert!(
            name == "out0" || name == "out1",
            "an entry escaped to {name:?}"
        );
    }
}
