//! Cargo projects: the tests of a package's (or workspace's) test binaries.

use std::path::{Path, PathBuf};

use crate::invocation::Invocation;
use crate::suite::{Suite, TestCase};
use crate::SourceError;

/// The manifest that makes a directory a Cargo project.
pub(crate) const MANIFEST: &str = "Cargo.toml";

/// How a Cargo project's tests are built, listed and run.
#[derive(Clone, Debug)]
pub(crate) struct CargoTests {
    manifest: PathBuf,
    build_args: Vec<String>,
}

/// The suite of the Cargo project whose manifest is `manifest`, built with `build_args` given to
/// `cargo test --no-run`.
pub(crate) fn suite(manifest: &Path, build_args: &[String]) -> Result<Suite, SourceError> {
    let directory = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tests = CargoTests {
        manifest: manifest.to_path_buf(),
        build_args: build_args.to_vec(),
    };
    Ok(Suite::new(
        "cargo".to_owned(),
        directory,
        crate::suite::Runner::Cargo(tests),
        crate::invocation::Protocol::ExitStatus(crate::invocation::ExitMapping::AUTOMAKE),
    ))
}

impl CargoTests {
    /// The project's tests: its test binaries built, then each asked for its tests.
    pub(crate) fn list(&self, suite: &Suite) -> Result<Vec<TestCase>, SourceError> {
        Err(SourceError::CannotList {
            suite: suite.name().to_owned(),
            reason: format!(
                "Cargo projects ({}, built with {:?}) are not supported yet",
                self.manifest.display(),
                self.build_args
            ),
        })
    }

    /// The process that runs test `id`.
    pub(crate) fn invocation(&self, suite: &Suite, id: &str) -> Result<Invocation, SourceError> {
        Err(SourceError::UnusableId {
            suite: suite.name().to_owned(),
            id: id.to_owned(),
            reason: "Cargo projects are not supported yet",
        })
    }
}
