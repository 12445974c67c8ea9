//! An FMF (tmt) tree as a test source: every enabled test node runs as
//! `bash -c TEST` in its `path`, one process per test, under its `duration`
//! as time limit, and its exit status decides as tmt decides (0 pass, 1
//! fail, anything else an error), adjusted by its `result` key.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proctor_fmf::{Context, ResultMode, TestMeta, Tree};

use crate::invocation::{ExitMapping, Invocation, Protocol};
use crate::suite::{Runner, Suite};
use crate::SourceError;

/// The test metadata of a tree, read once per suite when first needed.
#[derive(Clone, Debug, Default)]
pub(crate) struct FmfTests {
    context: Context,
    loaded: Arc<OnceLock<Result<Loaded, String>>>,
}

/// A tree's tests in tree order, and where each name is among them.
#[derive(Debug)]
struct Loaded {
    tests: Vec<TestMeta>,
    by_name: HashMap<String, usize>,
}

impl FmfTests {
    fn load(&self, root: &Path) -> Result<&Loaded, SourceError> {
        let loaded = self.loaded.get_or_init(|| {
            let tests = Tree::load(root)
                .and_then(|tree| tree.tests(&self.context))
                .map_err(|error| error.to_string())?;
            let by_name = tests
                .iter()
                .enumerate()
                .map(|(index, test)| (test.name.clone(), index))
                .collect();
            Ok(Loaded { tests, by_name })
        });
        loaded.as_ref().map_err(|reason| SourceError::Fmf {
            root: root.to_path_buf(),
            reason: reason.clone(),
        })
    }
}

/// The suite of the tree rooted at `root`; nothing is read until it lists.
pub(crate) fn suite(root: &Path) -> Suite {
    Suite::new(
        "fmf".to_owned(),
        root.to_path_buf(),
        Runner::Fmf(FmfTests::default()),
        Protocol::ExitStatus(ExitMapping::TMT),
    )
}

/// Sets the context `adjust` rules are decided on (before listing).
pub(crate) fn set_context(suite: &mut Suite, context: Context) {
    if let Runner::Fmf(tests) = &mut suite.runner {
        *tests = FmfTests {
            context,
            loaded: Arc::default(),
        };
    }
}

/// The enabled tests: (id, time limit, expected duration when the metadata
/// declares one).
pub(crate) fn list(
    tests: &FmfTests,
    root: &Path,
) -> Result<Vec<(String, Duration, Option<Duration>)>, SourceError> {
    Ok(tests
        .load(root)?
        .tests
        .iter()
        .filter(|test| test.enabled)
        .map(|test| {
            let declared = test.data.contains_key("duration").then_some(test.duration);
            (test.name.clone(), test.duration, declared)
        })
        .collect())
}

/// The names of the tests enabled when the context also has these dimensions: the tests a worker with that
/// platform (`arch`, `distro`) may run, as the tree's `adjust` rules decide there. A dimension the run's own
/// context sets (`--context`) keeps its value: the user said what to test as.
pub(crate) fn enabled_with(
    tests: &FmfTests,
    root: &Path,
    dimensions: &[(&str, &str)],
) -> Result<HashSet<String>, SourceError> {
    let mut context = tests.context.clone();
    for (dimension, value) in dimensions {
        if context.values(dimension).is_none() {
            context.set(dimension, [*value]);
        }
    }
    let adjusted = Tree::load(root)
        .and_then(|tree| tree.tests(&context))
        .map_err(|error| SourceError::Fmf {
            root: root.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok(adjusted
        .into_iter()
        .filter(|test| test.enabled)
        .map(|test| test.name)
        .collect())
}

/// The process that runs the test `id`.
pub(crate) fn invocation(
    tests: &FmfTests,
    root: &Path,
    id: &str,
) -> Result<Invocation, SourceError> {
    let loaded = tests.load(root)?;
    let test = loaded.by_name.get(id).map(|&index| &loaded.tests[index]);
    let test = test.ok_or_else(|| SourceError::Fmf {
        root: root.to_path_buf(),
        reason: format!("no enabled test named {id}"),
    })?;
    let mut invocation = Invocation::new(
        "bash",
        vec!["-c".to_owned(), with_result_mode(&test.test, test.result)],
        &test.path,
        Protocol::ExitStatus(ExitMapping::TMT),
    );
    invocation.env = test
        .environment
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .chain([
            ("TMT_TEST_NAME".to_owned(), test.name.clone()),
            ("TMT_TREE".to_owned(), path_text(root)),
        ])
        .collect();
    Ok(invocation)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The test's command with its exit status rewritten as its `result` key
/// says (tmt's modes); `respect` and the modes Proctor cannot act on
/// (`custom`, `restraint`) leave it alone. `info` and `warn` count as passing.
fn with_result_mode(test: &str, mode: ResultMode) -> String {
    let rewrite = match mode {
        ResultMode::Respect | ResultMode::Custom | ResultMode::Restraint => return test.to_owned(),
        ResultMode::Pass | ResultMode::Info | ResultMode::Warn => "exit 0",
        ResultMode::Fail => "exit 1",
        ResultMode::Error => "exit 2",
        ResultMode::Xfail => "case $rc in 0) exit 1;; 1) exit 0;; *) exit $rc;; esac",
    };
    format!("(\n{test}\n)\nrc=$?\n{rewrite}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(script: &str) -> Option<i32> {
        std::process::Command::new("bash")
            .args(["-c", script])
            .status()
            .ok()
            .and_then(|status| status.code())
    }

    #[test]
    fn result_modes_rewrite_the_exit_status() {
        assert_eq!(
            status(&with_result_mode("exit 1", ResultMode::Xfail)),
            Some(0)
        );
        assert_eq!(
            status(&with_result_mode("true", ResultMode::Xfail)),
            Some(1)
        );
        assert_eq!(
            status(&with_result_mode("exit 3", ResultMode::Xfail)),
            Some(3)
        );
        assert_eq!(
            status(&with_result_mode("exit 1", ResultMode::Pass)),
            Some(0)
        );
        assert_eq!(status(&with_result_mode("true", ResultMode::Fail)), Some(1));
        assert_eq!(
            status(&with_result_mode("exit 5", ResultMode::Respect)),
            Some(5)
        );
    }
}
