//! Finding a project's test source, and the suites it yields.

use std::path::{Path, PathBuf};

use crate::suite::{Suite, TestCase};
use crate::{executables, fmf, proctor_toml, stestr, testr, SourceError};

/// Where a project's suites came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `proctor.toml` (its path).
    ProctorToml(PathBuf),
    /// An stestr configuration: `.stestr.conf`, `pyproject.toml` or `tox.ini`.
    Stestr(PathBuf),
    /// A testrepository `.testr.conf`.
    Testr(PathBuf),
    /// A directory of test executables.
    Executables(PathBuf),
    /// An FMF (tmt) metadata tree (its root).
    Fmf(PathBuf),
}

/// A project's test suites, as [`discover`] found them.
#[derive(Clone, Debug)]
pub struct Project {
    source: Source,
    suites: Vec<Suite>,
}

impl Project {
    fn new(source: Source, mut suites: Vec<Suite>) -> Project {
        for (index, suite) in suites.iter_mut().enumerate() {
            suite.index = index;
        }
        Project { source, suites }
    }

    /// Sets the context FMF `adjust` rules are decided on, from
    /// `DIMENSION=VALUE[,VALUE…]` pairs (tmt's `--context`); other sources
    /// have no use for it.
    pub fn set_fmf_context(&mut self, pairs: &[String]) -> Result<(), SourceError> {
        let context =
            proctor_fmf::Context::parse_pairs(pairs).map_err(|source| SourceError::FmfContext {
                reason: source.to_string(),
            })?;
        for suite in &mut self.suites {
            fmf::set_context(suite, context.clone());
        }
        Ok(())
    }

    /// Where the suites came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The suites, in configuration order; [`TestCase::suite`] indexes this.
    pub fn suites(&self) -> &[Suite] {
        &self.suites
    }

    /// The suite a test belongs to.
    pub fn suite_of(&self, test: &TestCase) -> Option<&Suite> {
        self.suites.get(test.suite)
    }

    /// Sets a variable for every command of every suite (for example
    /// `PYTHON` for stestr projects).
    pub fn set_env(&mut self, key: &str, value: &str) {
        for suite in &mut self.suites {
            suite.set_env(key, value);
        }
    }

    /// Every suite's tests, suite by suite (running each list command).
    pub fn list(&self) -> Result<Vec<TestCase>, SourceError> {
        let mut tests = Vec::new();
        for suite in &self.suites {
            tests.extend(suite.list()?);
        }
        Ok(tests)
    }
}

/// Finds the tests of the project in directory `project`.
///
/// With `explicit_dir` (relative paths are taken from `project`), every
/// executable file below that directory is a test, whatever configuration
/// the project has: the caller asked for exactly that. Otherwise the first
/// of these found in `project` itself (parent directories are not searched)
/// is the source:
///
/// 1. `proctor.toml`;
/// 2. `.stestr.conf`, then `.testr.conf`;
/// 3. `pyproject.toml` with a `[tool.stestr]` table, then `tox.ini` with a
///    `[stestr]` section (stestr's own fallbacks);
/// 4. an FMF tree (`.fmf/version`): recognised, but not supported yet.
///
/// Paths in the result are absolute.
pub fn discover(project: &Path, explicit_dir: Option<&Path>) -> Result<Project, SourceError> {
    let project = absolute_dir(project)?;
    if let Some(dir) = explicit_dir {
        let dir = absolute_dir(&project.join(dir))?;
        let suite = executables::suite(&dir);
        return Ok(Project::new(Source::Executables(dir), vec![suite]));
    }
    let proctor_toml = project.join(proctor_toml::FILE);
    if proctor_toml.is_file() {
        let suites = proctor_toml::load(&proctor_toml)?;
        return Ok(Project::new(Source::ProctorToml(proctor_toml), suites));
    }
    let stestr_conf = project.join(stestr::FILE);
    if stestr_conf.is_file() {
        let suite = stestr::load_conf(&stestr_conf, &project)?;
        return Ok(Project::new(Source::Stestr(stestr_conf), vec![suite]));
    }
    let testr_conf = project.join(testr::FILE);
    if testr_conf.is_file() {
        let suite = testr::load(&testr_conf, &project)?;
        return Ok(Project::new(Source::Testr(testr_conf), vec![suite]));
    }
    if let Some(found) = stestr_fallback(&project)? {
        return Ok(found);
    }
    if project.join(".fmf").join("version").is_file() {
        let suite = fmf::suite(&project);
        return Ok(Project::new(Source::Fmf(project), vec![suite]));
    }
    Err(SourceError::NothingFound { dir: project })
}

/// stestr's own fallbacks when there is no `.stestr.conf`.
fn stestr_fallback(project: &Path) -> Result<Option<Project>, SourceError> {
    let pyproject = project.join(stestr::PYPROJECT);
    if pyproject.is_file() {
        if let Some(suite) = stestr::load_pyproject(&pyproject, project)? {
            return Ok(Some(Project::new(Source::Stestr(pyproject), vec![suite])));
        }
    }
    let tox = project.join(stestr::TOX);
    if tox.is_file() {
        if let Some(suite) = stestr::load_tox(&tox, project)? {
            return Ok(Some(Project::new(Source::Stestr(tox), vec![suite])));
        }
    }
    Ok(None)
}

/// `dir` made absolute, resolving links, so commands and executables are
/// found wherever the process's own directory is.
fn absolute_dir(dir: &Path) -> Result<PathBuf, SourceError> {
    let absolute = std::fs::canonicalize(dir).map_err(|source| SourceError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if absolute.is_dir() {
        Ok(absolute)
    } else {
        Err(SourceError::NotADirectory {
            path: dir.to_path_buf(),
        })
    }
}
