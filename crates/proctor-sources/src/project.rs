//! Finding a project's test source, and the suites it yields.

use std::path::{Path, PathBuf};

use crate::suite::{Suite, TestCase};
use crate::{cargo, executables, fmf, proctor_toml, pytest, stestr, testr, SourceError};

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
    /// A pytest project: the file that configures pytest, or the project's directory when none does.
    Pytest(PathBuf),
    /// A Cargo package or workspace (its `Cargo.toml`).
    Cargo(PathBuf),
}

/// A source the caller names, instead of the first one found (`proctor run --source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// pytest, in the project's directory.
    Pytest,
    /// Cargo, from the project's `Cargo.toml`.
    Cargo,
}

/// How [`discover_with`] looks for a project's tests.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// A directory of executables to run as tests, whatever else the project has (relative to the project).
    pub executables: Option<PathBuf>,
    /// The source to use instead of the first one found.
    pub source: Option<SourceKind>,
    /// What `cargo test --no-run` is given to pick the packages and features of a Cargo project
    /// (`--workspace`, `--package P`, `--features F`, …).
    pub cargo_args: Vec<String>,
    /// A directory where sources keep what they learned between runs (a pytest project's last collection), or
    /// `None` to keep nothing.
    pub cache: Option<PathBuf>,
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

/// Finds the tests of the project in directory `project`, as [`discover_with`] does with `explicit_dir` as the
/// directory of executables.
pub fn discover(project: &Path, explicit_dir: Option<&Path>) -> Result<Project, SourceError> {
    discover_with(
        project,
        &Discovery {
            executables: explicit_dir.map(Path::to_path_buf),
            ..Discovery::default()
        },
    )
}

/// Finds the tests of the project in directory `project`.
///
/// With [`Discovery::executables`], every executable file below that directory is a test, whatever configuration
/// the project has: the caller asked for exactly that; with [`Discovery::source`], that source. Otherwise the
/// first of these found in `project` itself (parent directories are not searched) is the source:
///
/// 1. `proctor.toml`;
/// 2. `.stestr.conf`, then `.testr.conf`;
/// 3. `pyproject.toml` with a `[tool.stestr]` table, then `tox.ini` with a `[stestr]` section (stestr's own
///    fallbacks);
/// 4. an FMF tree (`.fmf/version`);
/// 5. a pytest configuration: `pytest.ini`, `pyproject.toml` with `[tool.pytest.ini_options]`, `tox.ini` with
///    `[pytest]`, `setup.cfg` with `[tool:pytest]`;
/// 6. `Cargo.toml`;
/// 7. pytest without a configuration: a `conftest.py`, or `test_*.py` / `*_test.py` files, when the project's
///    Python has pytest.
///
/// Paths in the result are absolute.
pub fn discover_with(project: &Path, how: &Discovery) -> Result<Project, SourceError> {
    let project = absolute_dir(project)?;
    if let Some(dir) = &how.executables {
        let dir = absolute_dir(&project.join(dir))?;
        let suite = executables::suite(&dir);
        return Ok(Project::new(Source::Executables(dir), vec![suite]));
    }
    match how.source {
        Some(SourceKind::Pytest) => return pytest_project(&project, None, how),
        Some(SourceKind::Cargo) => return cargo_project(&project, how),
        None => {}
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
    if let Some(config) = pytest::configuration(&project)? {
        return pytest_project(&project, Some(config), how);
    }
    if project.join(cargo::MANIFEST).is_file() {
        return cargo_project(&project, how);
    }
    if pytest::looks_like_tests(&project) {
        if !pytest::python_has_pytest(&project) {
            return Err(SourceError::PytestMissing {
                python: pytest::python(&project),
                dir: project,
            });
        }
        return pytest_project(&project, None, how);
    }
    Err(SourceError::NothingFound { dir: project })
}

/// The pytest project in `project`, configured by `config` when a file does.
fn pytest_project(
    project: &Path,
    config: Option<PathBuf>,
    how: &Discovery,
) -> Result<Project, SourceError> {
    let suite = pytest::suite(project, how.cache.as_deref())?;
    let source = Source::Pytest(config.unwrap_or_else(|| project.to_path_buf()));
    Ok(Project::new(source, vec![suite]))
}

/// The Cargo project whose manifest is in `project`.
fn cargo_project(project: &Path, how: &Discovery) -> Result<Project, SourceError> {
    let manifest = project.join(cargo::MANIFEST);
    let suite = cargo::suite(&manifest, &how.cargo_args)?;
    Ok(Project::new(Source::Cargo(manifest), vec![suite]))
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
