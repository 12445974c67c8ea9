//! pytest projects: node ids found by pytest's own collection and run in batches through a small plugin Proctor
//! ships (`pytest_plugin.py`), which writes each test's events as subunit v2 the moment it ends.
//!
//! The plugin is given to `pytest.main()` as an object, through `python -c`, rather than installed and loaded
//! with `-p`: nothing has to be installed where the tests run, which may be a lab agent or an ssh host. The node
//! ids go in a file, so a batch of any size fits on a command line.
//!
//! The process that collects stays while the suite lives and serves the run's batches: each batch's own process
//! (`python -c` of the plugin, which does not import pytest) hands its node ids, standard streams, environment,
//! directory, process group and control groups to it over a Unix socket, and it forks a child from the collected
//! session that runs them, so a first run imports the tests once, as pytest-xdist's workers do, and batches stay
//! apart from each other. Killing the batch's process group kills the child and what it started; a memory limit
//! counts it. A batch that cannot reach the socket (an ssh host, a lab agent) runs in its own interpreter.
//!
//! Collecting imports every test module, which is most of a quick suite's time (`proctor list` took 0.98 s on
//! toolz, whose whole `pytest -n 2` run takes about 1.1 s; BENCHMARKS.md). So the
//! last collection is kept in the cache directory the caller gives (the run repository's) with a fingerprint of
//! what collection depends on: every file of the project (by path, size and modification time; caches and
//! checkouts' metadata left out) and every directory's path, the interpreter and the modification times of the directories on
//! its `sys.path` (an installed or removed package changes its directory's), pytest's environment variables and
//! the plugin. While the fingerprint holds, the collection is not run again. What it cannot see is a test
//! parametrized from data outside the project.

use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ini::IniFile;
use crate::invocation::{Invocation, Protocol};
use crate::suite::{Runner, Suite, TestCase};
use crate::template::write_idfile;
use crate::SourceError;

/// The plugin, run with `python -c`.
const PLUGIN: &str = include_str!("pytest_plugin.py");

/// How deep below the project a test file is looked for when no configuration says it is a pytest project.
const LOOK_DEPTH: usize = 4;

/// How deep the fingerprint walks; a larger tree is collected every time.
const FINGERPRINT_ENTRIES: usize = 100_000;
/// Directories the fingerprint leaves out: caches, metadata and environments that collection does not read
/// tests from (a virtual environment counts through the interpreter's `sys.path` instead).
const NOT_FINGERPRINTED: &[&str] = &[
    ".git",
    ".hg",
    ".proctor",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "node_modules",
    "target",
];
/// The variable that tells a batch where the collecting process serves batches.
const SERVER_VARIABLE: &str = "PROCTOR_PYTEST_SERVER";
/// The cache file, in the cache directory.
const CACHE_FILE: &str = "pytest-collection.json";

/// How a pytest project's tests are listed and run.
#[derive(Clone, Debug)]
pub(crate) struct PytestTests {
    python: PathBuf,
    /// Where the last collection is kept, when anywhere.
    cache: Option<PathBuf>,
    /// The process that collected, serving batches, once there is one (shared by the suite's copies).
    server: Arc<Mutex<Option<Server>>>,
}

/// The file that configures pytest in `project`, when one does (in pytest's own order of precedence).
pub(crate) fn configuration(project: &Path) -> Result<Option<PathBuf>, SourceError> {
    let ini = project.join("pytest.ini");
    if ini.is_file() {
        // pytest takes a pytest.ini even when it is empty.
        return Ok(Some(ini));
    }
    let pyproject = project.join("pyproject.toml");
    if pyproject.is_file() && pyproject_configures_pytest(&pyproject)? {
        return Ok(Some(pyproject));
    }
    for (file, section) in [("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")] {
        let path = project.join(file);
        if path.is_file() && IniFile::load(&path)?.has_section(section) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn pyproject_configures_pytest(path: &Path) -> Result<bool, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let document: toml::Table = toml::from_str(&text).map_err(|error| SourceError::Toml {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    Ok(document
        .get("tool")
        .and_then(|tool| tool.get("pytest"))
        .and_then(|pytest| pytest.get("ini_options"))
        .is_some())
}

/// Whether `project` has what pytest would collect without a configuration: a `conftest.py`, or `test_*.py` /
/// `*_test.py` files (not under hidden directories, virtual environments or caches).
pub(crate) fn looks_like_tests(project: &Path) -> bool {
    if project.join("conftest.py").is_file() {
        return true;
    }
    walkdir::WalkDir::new(project)
        .max_depth(LOOK_DEPTH)
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            entry.depth() == 0
                || !(name.starts_with('.')
                    || name == "__pycache__"
                    || name == "node_modules"
                    || name == "venv"
                    || name == "target")
        })
        .filter_map(Result::ok)
        .any(|entry| {
            let name = entry.file_name().to_string_lossy();
            entry.file_type().is_file()
                && name.ends_with(".py")
                && (name.starts_with("test_") || name.ends_with("_test.py"))
        })
}

/// The interpreter a project's tests run with: `$PYTHON`, else the project's `.venv`, else `python3`.
pub(crate) fn python(project: &Path) -> PathBuf {
    if let Some(python) = std::env::var_os("PYTHON").filter(|python| !python.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = project.join(".venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Whether the project's interpreter can import pytest.
pub(crate) fn python_has_pytest(project: &Path) -> bool {
    Command::new(python(project))
        .args(["-c", "import pytest"])
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The pytest suite of `project`, keeping its last collection in `cache` when given.
pub(crate) fn suite(project: &Path, cache: Option<&Path>) -> Result<Suite, SourceError> {
    let tests = PytestTests {
        python: python(project),
        cache: cache.map(Path::to_path_buf),
        server: Arc::default(),
    };
    Ok(Suite::new(
        "pytest".to_owned(),
        project.to_path_buf(),
        Runner::Pytest(tests),
        Protocol::Subunit,
    ))
}

/// A line the plugin prints while collecting: a test, or that it serves batches now.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listed {
    Serving { serving: bool },
    Test(Collected),
}

/// The collecting process, kept while the suite lives: it forks a child per batch, so that a batch does not
/// import the tests again. Batches find it through [`SERVER_VARIABLE`]; one that cannot reach it (on an ssh
/// host, a lab agent) runs alone.
#[derive(Debug)]
struct Server {
    child: Child,
    socket: PathBuf,
    /// Holds the socket; removed after the process ended.
    _directory: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its standard input ends it, and it kills any batch child still running.
        drop(self.child.stdin.take());
        for _ in 0..200 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// The file a failed collection's words were written to, from its start (what could be read).
fn read_from_start(mut file: std::fs::File) -> String {
    let mut text = String::new();
    drop(file.seek(SeekFrom::Start(0)));
    drop(file.take(64 * 1024).read_to_string(&mut text));
    text
}

/// A line the plugin prints while collecting (and an entry of the cache).
#[derive(Clone, Deserialize, Serialize)]
struct Collected {
    id: String,
    #[serde(default)]
    group: Option<String>,
}

/// The cache file: a collection and the fingerprint it was made under.
#[derive(Deserialize, Serialize)]
struct Cached {
    fingerprint: String,
    tests: Vec<Collected>,
}

impl PytestTests {
    /// The node ids pytest collects, each with the module it must share a process with when it uses a fixture
    /// wider than a function. A file that fails to collect is listed as a test of its own, which fails when run
    /// with pytest's report of why.
    pub(crate) fn list(&self, suite: &Suite) -> Result<Vec<TestCase>, SourceError> {
        let fingerprint = self.cache.as_ref().and_then(|_| self.fingerprint(suite));
        let cached =
            self.cache
                .as_ref()
                .zip(fingerprint.as_ref())
                .and_then(|(cache, fingerprint)| {
                    let text = std::fs::read(cache.join(CACHE_FILE)).ok()?;
                    let cached: Cached = serde_json::from_slice(&text).ok()?;
                    (cached.fingerprint == *fingerprint).then_some(cached.tests)
                });
        let collected = match cached {
            Some(tests) => tests,
            None => {
                let tests = self.collect(suite)?;
                if let (Some(cache), Some(fingerprint)) = (&self.cache, fingerprint) {
                    let cached = Cached {
                        fingerprint,
                        tests: tests.clone(),
                    };
                    store(cache, &cached);
                }
                tests
            }
        };
        Ok(collected
            .into_iter()
            .map(|collected| TestCase {
                group: collected.group,
                ..suite.test_case(collected.id)
            })
            .collect())
    }

    /// What collection depends on, hashed (see the module's documentation); `None` when it cannot be told.
    fn fingerprint(&self, suite: &Suite) -> Option<String> {
        // A hash only has to tell a change: std's, fixed-keyed within a build, is enough (a new build that hashes
        // differently just collects once more).
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        PLUGIN.hash(&mut hasher);
        self.python.hash(&mut hasher);
        suite.env().hash(&mut hasher);
        for name in ["PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH"] {
            std::env::var_os(name).hash(&mut hasher);
        }
        let paths = Command::new(&self.python)
            .args(["-c", "import sys\nfor p in sys.path: print(p)"])
            .current_dir(suite.directory())
            .envs(suite.env().iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())?;
        for path in String::from_utf8_lossy(&paths.stdout).lines() {
            path.hash(&mut hasher);
            modified(Path::new(path)).hash(&mut hasher);
        }
        let walk = walkdir::WalkDir::new(suite.directory())
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0
                    || !NOT_FINGERPRINTED.contains(&entry.file_name().to_string_lossy().as_ref())
            });
        for (count, entry) in walk.enumerate() {
            let entry = entry.ok()?;
            if count > FINGERPRINT_ENTRIES {
                return None;
            }
            // A directory by its path alone: what it holds is walked, and its own time changes when the run
            // repository is made in it.
            entry.path().hash(&mut hasher);
            if entry.file_type().is_file() {
                entry.metadata().ok()?.len().hash(&mut hasher);
                modified(entry.path()).hash(&mut hasher);
            }
        }
        Some(format!("{:016x}", hasher.finish()))
    }

    /// Runs pytest's collection in a process that then stays, serving the run's batches (module docs).
    fn collect(&self, suite: &Suite) -> Result<Vec<Collected>, SourceError> {
        let directory = tempfile::Builder::new()
            .prefix("proctor-pytest-")
            .tempdir()
            .map_err(|error| {
                self.cannot_list(
                    suite,
                    format!("cannot make its socket's directory: {error}"),
                )
            })?;
        let socket = directory.path().join("batches.sock");
        let said = tempfile::tempfile().map_err(|error| {
            self.cannot_list(suite, format!("cannot make a file for its errors: {error}"))
        })?;
        let mut child = Command::new(&self.python)
            .args(["-c", PLUGIN, "serve"])
            .arg(&socket)
            .current_dir(suite.directory())
            .envs(suite.env().iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(
                said.try_clone()
                    .map_err(|error| self.cannot_list(suite, error.to_string()))?,
            )
            // Its own group, so that a Ctrl-C at the terminal reaches the run, which ends it, and not it.
            .process_group(0)
            .spawn()
            .map_err(|error| self.cannot_list(suite, format!("cannot start it: {error}")))?;
        let mut tests: Vec<Collected> = Vec::new();
        let mut serving = false;
        let listing = child
            .stdout
            .take()
            .ok_or_else(|| self.cannot_list(suite, "no standard output".to_owned()))?;
        for line in BufReader::new(listing).lines() {
            let Ok(line) = line else { break };
            if let Ok(Listed::Serving { serving: true }) = serde_json::from_str(&line) {
                serving = true;
            } else if let Ok(Listed::Test(collected)) = serde_json::from_str(&line) {
                if !tests.iter().any(|test| test.id == collected.id) {
                    tests.push(collected);
                }
            }
        }
        if serving {
            let server = Server {
                child,
                socket,
                _directory: directory,
            };
            *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(server);
            return Ok(tests);
        }
        drop(child.stdin.take());
        let status = child
            .wait()
            .map_err(|error| self.cannot_list(suite, format!("cannot wait for it: {error}")))?;
        let said = read_from_start(said);
        if said.contains("No module named pytest") || said.contains("No module named 'pytest'") {
            return Err(self.cannot_list(
                suite,
                "pytest is not installed for it: install it there (`python -m pip install pytest`), or name \
                 another interpreter with $PYTHON"
                    .to_owned(),
            ));
        }
        if !status.success() {
            return Err(self.cannot_list(
                suite,
                format!("collection failed ({status}): {}", said.trim()),
            ));
        }
        Ok(tests)
    }

    fn cannot_list(&self, suite: &Suite, why: String) -> SourceError {
        SourceError::CannotList {
            suite: suite.name().to_owned(),
            reason: format!("{}: {why}", self.python.display()),
        }
    }

    /// The process that runs exactly the node ids `ids`, in one interpreter.
    pub(crate) fn invocation(
        &self,
        suite: &Suite,
        ids: &[&str],
    ) -> Result<Invocation, SourceError> {
        let idfile = write_idfile(ids).map_err(|source| SourceError::IdFile {
            suite: suite.name().to_owned(),
            source,
        })?;
        let mut env = Vec::new();
        if let Some(server) = &*self.server.lock().unwrap_or_else(PoisonError::into_inner) {
            env.push((
                SERVER_VARIABLE.to_owned(),
                server.socket.to_string_lossy().into_owned(),
            ));
        }
        let args = vec![
            "-c".to_owned(),
            PLUGIN.to_owned(),
            "run".to_owned(),
            idfile.to_string_lossy().into_owned(),
        ];
        let mut invocation =
            Invocation::new(&self.python, args, suite.directory(), Protocol::Subunit)
                .with_idfile(Some(idfile));
        invocation.env = env;
        Ok(invocation)
    }
}

/// A path's modification time in nanoseconds since the epoch, 0 when it has none.
fn modified(path: &Path) -> u128 {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos())
}

/// Keeps a collection and its fingerprint. A cache that cannot be written only costs the next run a collection.
fn store(cache: &Path, cached: &Cached) {
    let Ok(text) = serde_json::to_vec(cached) else {
        return;
    };
    let written = std::fs::create_dir_all(cache).and_then(|()| {
        // Renamed into place, so a run reading it never sees half a file.
        let temporary = cache.join(format!("{CACHE_FILE}.{}", std::process::id()));
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, cache.join(CACHE_FILE))
    });
    drop(written);
}
