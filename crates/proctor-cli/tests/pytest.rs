//! pytest projects with no configuration of Proctor's: found, collected by pytest, run per test in batches through
//! the plugin Proctor ships, with pytest's own totals; a real project from PyPI (toolz's sdist, fetched by
//! `scripts/test`) gives the totals `pytest` gives.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use proctor_subunit::{EventReader, Status};
use support::text;
use tempfile::TempDir;

fn run(project: &Path, args: &[&str]) -> Output {
    support::proctor_run(project)
        .env("PYTHON", proctor_testkit::python())
        .args(args)
        .output()
        .unwrap()
}

/// pytest's own verdicts on `project`: its summary line's counts by word (`passed`, `failed`, `error`, …).
fn pytest_counts(project: &Path) -> BTreeMap<String, u32> {
    let output = Command::new(proctor_testkit::python())
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
        ])
        .current_dir(project)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let summary = said
        .lines()
        .rev()
        .find(|line| line.contains(" in ") && (line.contains("passed") || line.contains("failed")))
        .unwrap_or_else(|| panic!("no summary from pytest: {said}"));
    summary
        .trim_matches(|c: char| c == '=' || c.is_whitespace())
        .split(" in ")
        .next()
        .unwrap()
        .split(", ")
        .map(|count| {
            let (n, word) = count.trim().split_once(' ').unwrap();
            // pytest says "1 error" and "2 errors".
            (word.trim_end_matches('s').to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// What Proctor's summary line says: `N tests in …: P passed, F failed, S skipped`.
fn proctor_counts(output: &Output) -> (u32, u32, u32) {
    let shown = text(output);
    let line = shown
        .lines()
        .find(|line| line.contains(" tests in ") || line.contains(" test in "))
        .unwrap_or_else(|| panic!("no summary: {shown}"));
    let count = |word: &str| -> u32 {
        let before = line.split(&format!(" {word}")).next().unwrap();
        before
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (count("passed"), count("failed"), count("skipped"))
}

/// Each test's last final status in a stored run, and its attachments' text by name.
fn stored(project: &Path) -> BTreeMap<String, (Status, BTreeMap<String, String>)> {
    let stream = support::last_run(project);
    let mut tests: BTreeMap<String, (Status, BTreeMap<String, String>)> = BTreeMap::new();
    for event in EventReader::new(&stream[..]) {
        let event = event.unwrap();
        let Some(id) = event.test_id.clone() else {
            continue;
        };
        let entry = tests
            .entry(id)
            .or_insert((Status::InProgress, BTreeMap::new()));
        if let Some(file) = &event.file {
            entry
                .1
                .entry(file.name.clone())
                .or_default()
                .push_str(&String::from_utf8_lossy(&file.content));
        }
        if let Some(status) = event.status.filter(|status| status.is_final()) {
            entry.0 = status;
        }
    }
    tests
}

/// The tests a subunit stream finished.
fn finished(stream: &[u8]) -> BTreeSet<String> {
    EventReader::new(stream)
        .filter_map(|event| {
            let event = event.unwrap();
            event.status.filter(|status| status.is_final())?;
            event.test_id
        })
        .collect()
}

/// A project with no configuration: a module with a module-scoped fixture (whose tests record their process),
/// parametrized ids with brackets and a space, a skip with a reason, an xfail, an xpass, captured output, a
/// failure with a message, a `*_test.py` file, and a file that fails to collect.
fn plain_project(project: &Path) {
    let pids = project.join("pids");
    fs::create_dir_all(project.join("tests")).unwrap();
    fs::create_dir_all(&pids).unwrap();
    fs::write(
        project.join("tests/test_fixtures.py"),
        format!(
            r#"import os, pytest

@pytest.fixture(scope="module")
def shared():
    return {{"pid": os.getpid()}}

def record(name):
    with open(os.path.join({pids:?}, name), "w") as f:
        f.write(str(os.getpid()))

def test_uses_shared(shared):
    record("uses_shared")
    print("hello from the test")
    assert shared["pid"] == os.getpid()

@pytest.mark.parametrize("x", [1, 2, "a b"])
def test_param(x):
    record("param-" + str(x))
    assert x != 2, "two is bad"

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_expected_failure():
    assert False

@pytest.mark.xfail(reason="maybe fixed")
def test_unexpected_pass():
    pass

@pytest.mark.xfail(reason="must fail", strict=True)
def test_strict_unexpected_pass():
    pass
"#,
            pids = pids.display().to_string()
        ),
    )
    .unwrap();
    fs::write(
        project.join("tests/other_test.py"),
        "def test_plain():\n    pass\n\ndef test_second():\n    pass\n",
    )
    .unwrap();
    fs::write(
        project.join("tests/test_broken.py"),
        "import no_such_module\n\ndef test_never():\n    pass\n",
    )
    .unwrap();
}

#[test]
fn a_project_with_no_configuration_runs_per_test_with_pytests_totals() {
    let project = TempDir::new().unwrap();
    plain_project(project.path());
    let output = run(project.path(), &["-j", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));

    // pytest: 2 failed (one a strict xpass), 5 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 error. Proctor counts an xfail and an xpass
    // as passes and a collection error as a failure.
    let pytest = pytest_counts(project.path());
    let of = |word: &str| pytest.get(word).copied().unwrap_or(0);
    assert_eq!(
        proctor_counts(&output),
        (
            of("passed") + of("xfailed") + of("xpassed"),
            of("failed") + of("error"),
            of("skipped")
        ),
        "pytest said {pytest:?}; {}",
        text(&output)
    );

    let tests = stored(project.path());
    let ids: BTreeSet<&str> = tests.keys().map(String::as_str).collect();
    assert!(
        ids.contains("tests/test_fixtures.py::test_param[a b]"),
        "{ids:?}"
    );
    let (status, files) = &tests["tests/test_fixtures.py::test_param[2]"];
    assert_eq!(*status, Status::Fail);
    assert!(files["traceback"].contains("two is bad"), "{files:?}");
    let (status, files) = &tests["tests/test_broken.py"];
    assert_eq!(*status, Status::Fail, "a collection error fails the file");
    assert!(files["traceback"].contains("no_such_module"), "{files:?}");
    let (status, files) = &tests["tests/test_fixtures.py::test_uses_shared"];
    assert_eq!(*status, Status::Success);
    assert!(
        files
            .iter()
            .any(|(name, text)| name.contains("stdout") && text.contains("hello from the test")),
        "captured output is attached: {files:?}"
    );
    let (status, files) = &tests["tests/test_fixtures.py::test_skipped"];
    assert_eq!(*status, Status::Skip);
    assert!(files["reason"].contains("not today"), "{files:?}");
    assert_eq!(
        tests["tests/test_fixtures.py::test_expected_failure"].0,
        Status::XFail
    );

    // The module with a module-scoped fixture ran in one process.
    let pids: BTreeSet<String> = fs::read_dir(project.path().join("pids"))
        .unwrap()
        .map(|file| fs::read_to_string(file.unwrap().path()).unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");

    // `--failing` reruns exactly the failures.
    let again = run(project.path(), &["--failing", "--subunit"]);
    assert_eq!(again.status.code(), Some(1));
    let rerun = finished(&again.stdout);
    assert_eq!(
        rerun,
        BTreeSet::from([
            "tests/test_broken.py".to_owned(),
            "tests/test_fixtures.py::test_param[2]".to_owned(),
            "tests/test_fixtures.py::test_strict_unexpected_pass".to_owned()
        ])
    );
}

#[test]
fn pytest_is_found_by_each_configuration_file_and_forced_with_source() {
    for (file, config) in [
        ("pytest.ini", "[pytest]\n"),
        (
            "pyproject.toml",
            "[tool.pytest.ini_options]\nminversion = \"6.0\"\n",
        ),
        ("tox.ini", "[pytest]\naddopts = -q\n"),
        ("setup.cfg", "[tool:pytest]\n"),
    ] {
        let project = TempDir::new().unwrap();
        fs::create_dir(project.path().join("checks")).unwrap();
        // A name pytest's default patterns would not find without `python_files`.
        fs::write(project.path().join(file), config).unwrap();
        fs::write(
            project.path().join("checks/test_one.py"),
            "def test_it():\n    pass\n",
        )
        .unwrap();
        let listed = support::proctor()
            .args(["list"])
            .current_dir(project.path())
            .env("PYTHON", proctor_testkit::python())
            .output()
            .unwrap();
        assert_eq!(listed.status.code(), Some(0), "{file}: {}", text(&listed));
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).trim(),
            "checks/test_one.py::test_it",
            "{file}"
        );
    }
    // A file pytest would not collect by default is no pytest project; nor is an empty directory.
    let project = TempDir::new().unwrap();
    fs::write(
        project.path().join("checks.py"),
        "def test_it():\n    pass\n",
    )
    .unwrap();
    let found = run(project.path(), &[]);
    assert_eq!(found.status.code(), Some(2), "{}", text(&found));
    assert!(text(&found).contains("no tests found"), "{}", text(&found));

    // A project another source comes first in is run with pytest when `--source pytest` says so.
    let project = TempDir::new().unwrap();
    fs::write(
        project.path().join(".testr.conf"),
        "[DEFAULT]\ntest_command=echo from-testr $LISTOPT\ntest_list_option=\n",
    )
    .unwrap();
    fs::write(
        project.path().join("test_it.py"),
        "def test_it():\n    pass\n",
    )
    .unwrap();
    let list = |extra: &[&str]| {
        let output = support::proctor()
            .arg("list")
            .args(extra)
            .current_dir(project.path())
            .env("PYTHON", proctor_testkit::python())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(list(&[]), "from-testr");
    assert_eq!(list(&["--source", "pytest"]), "test_it.py::test_it");
}

#[test]
fn a_python_without_pytest_is_named_in_the_error() {
    let project = TempDir::new().unwrap();
    plain_project(project.path());
    let bare = project.path().join("bare");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&bare)
        .status()
        .unwrap();
    assert!(made.success());
    let output = support::proctor_run(project.path())
        .env("PYTHON", bare.join("bin/python"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("cannot import pytest")
            && said.contains(&bare.join("bin/python").display().to_string()),
        "{said}"
    );
}

#[test]
fn a_hanging_test_is_killed_by_the_time_limit_with_its_children() {
    let project = TempDir::new().unwrap();
    let pid_file = project.path().join("child.pid");
    fs::write(
        project.path().join("test_hang.py"),
        format!(
            "import subprocess, time\n\ndef test_hangs():\n    child = subprocess.Popen(['sleep', '600'])\n    \
             open({:?}, 'w').write(str(child.pid))\n    time.sleep(600)\n\ndef test_quick():\n    pass\n",
            pid_file.display().to_string()
        ),
    )
    .unwrap();
    let output = run(project.path(), &["--time-limit", "2", "-j", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("time limit"), "{shown}");
    let tests = stored(project.path());
    assert_eq!(tests["test_hang.py::test_quick"].0, Status::Success);
    assert_eq!(tests["test_hang.py::test_hangs"].0, Status::Fail);
    let child: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    support::eventually(|| !Path::new(&format!("/proc/{child}")).exists());
}

#[test]
fn a_real_project_from_pypi_gives_the_totals_pytest_gives() {
    let source = proctor_testkit::pytest_project();
    let project = TempDir::new().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", source.display()))
        .arg(project.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let output = run(project.path(), &["-j", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let pytest = pytest_counts(project.path());
    let (passed, failed, skipped) = proctor_counts(&output);
    assert_eq!(failed, 0, "{}", text(&output));
    assert_eq!(
        (passed, skipped),
        (
            pytest.get("passed").copied().unwrap_or(0)
                + pytest.get("xfailed").copied().unwrap_or(0)
                + pytest.get("xpassed").copied().unwrap_or(0),
            pytest.get("skipped").copied().unwrap_or(0)
        ),
        "pytest said {pytest:?}"
    );

    // A deliberately broken test is seen failed with its message, and `--failing` reruns exactly it.
    let broken = project.path().join("toolz/tests/test_broken_on_purpose.py");
    fs::write(
        &broken,
        "def test_broken():\n    assert 1 + 1 == 3, 'arithmetic is broken on purpose'\n",
    )
    .unwrap();
    let output = run(project.path(), &["-j", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("arithmetic is broken on purpose"));
    let again = run(project.path(), &["--failing", "--subunit"]);
    let rerun = finished(&again.stdout);
    assert_eq!(
        rerun,
        BTreeSet::from(["toolz/tests/test_broken_on_purpose.py::test_broken".to_owned()])
    );
}

#[test]
fn the_collection_is_kept_until_the_project_changes() {
    let project = TempDir::new().unwrap();
    // Outside the project: a file in it that changes is a change of the project.
    let logs = TempDir::new().unwrap();
    let collections = logs.path().join("collections.log");
    fs::write(
        project.path().join("conftest.py"),
        format!(
            // The plugin's collecting mode is `serve` (batches run in its `run` mode).
            "import sys\ndef pytest_configure(config):\n    if sys.argv[1:2] == ['serve']:\n        \
             open({:?}, 'a').write('collected\\n')\n",
            collections.display().to_string()
        ),
    )
    .unwrap();
    fs::write(
        project.path().join("test_a.py"),
        "def test_a():\n    pass\n",
    )
    .unwrap();
    let collected = || {
        fs::read_to_string(&collections)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let first = run(project.path(), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(collected(), 1);
    let second = run(project.path(), &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(
        collected(),
        1,
        "nothing changed: the kept collection is used"
    );
    // A new test in a new file: collected again, and run.
    fs::write(
        project.path().join("test_b.py"),
        "def test_b():\n    assert False, 'b is new and broken'\n",
    )
    .unwrap();
    let third = run(project.path(), &[]);
    assert_eq!(third.status.code(), Some(1), "{}", text(&third));
    assert!(
        text(&third).contains("b is new and broken"),
        "{}",
        text(&third)
    );
    assert_eq!(collected(), 2);
    // Without storing the run, nothing is kept (and nothing is written).
    let other = TempDir::new().unwrap();
    fs::write(other.path().join("test_c.py"), "def test_c():\n    pass\n").unwrap();
    let unstored = run(other.path(), &["--no-store"]);
    assert_eq!(unstored.status.code(), Some(0), "{}", text(&unstored));
    assert!(!other.path().join(".proctor").exists());
}

#[test]
fn a_first_run_imports_the_tests_once_and_each_batch_has_its_own_environment() {
    let project = TempDir::new().unwrap();
    let logs = TempDir::new().unwrap();
    let imports = logs.path().join("imports.log");
    for module in ["test_one.py", "test_two.py"] {
        fs::write(
            project.path().join(module),
            format!(
                "import os\nopen({:?}, 'a').write('{module}\\n')\n\n{}",
                imports.display().to_string(),
                (0..10)
                    .map(|n| format!(
                        "def test_{n}():\n    assert os.environ['PROCTOR_WORKER']\n\n"
                    ))
                    .collect::<String>()
            ),
        )
        .unwrap();
    }
    let output = run(project.path(), &["-j", "2", "--subunit"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(finished(&output.stdout).len(), 20);
    let imported = fs::read_to_string(&imports).unwrap();
    assert_eq!(
        imported.lines().count(),
        2,
        "the batches run in children of the collecting process, which imported each module once: {imported}"
    );
}
