//! Discovery precedence, and the errors bad configuration files get.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{error_message, write};
use proctor_sources::{discover, Batching, ExitMapping, Protocol, Source, SourceError};

const STESTR: &str = "[DEFAULT]\ntest_path=./tests\n";
const TESTR: &str = "[DEFAULT]\ntest_command=true $IDLIST\n";
const PROCTOR: &str = "[[suite]]\nname = \"s\"\nlist = \"true\"\nrun = \"true $IDLIST\"\n";

fn source_kind(dir: &Path) -> &'static str {
    match discover(dir, None)
        .unwrap_or_else(|error| panic!("discover: {error}"))
        .source()
    {
        Source::ProctorToml(_) => "proctor.toml",
        Source::Stestr(path) if path.ends_with(".stestr.conf") => ".stestr.conf",
        Source::Stestr(path) if path.ends_with("pyproject.toml") => "pyproject.toml",
        Source::Stestr(_) => "tox.ini",
        Source::Testr(_) => ".testr.conf",
        Source::Executables(_) => "executables",
        Source::Fmf(_) => "fmf",
        Source::Pytest(_) => "pytest",
        Source::Cargo(_) => "cargo",
    }
}

#[test]
fn precedence_proctor_then_stestr_then_testr_then_stestr_fallbacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    write(
        &path("tox.ini"),
        "[tox]\nenvlist = py3\n\n[stestr]\ntest_path = ./tests\n",
    );
    assert_eq!(source_kind(dir.path()), "tox.ini");
    write(
        &path("pyproject.toml"),
        "[tool.stestr]\ntest_path = \"./tests\"\n",
    );
    assert_eq!(source_kind(dir.path()), "pyproject.toml");
    write(&path(".testr.conf"), TESTR);
    assert_eq!(source_kind(dir.path()), ".testr.conf");
    write(&path(".stestr.conf"), STESTR);
    assert_eq!(source_kind(dir.path()), ".stestr.conf");
    write(&path("proctor.toml"), PROCTOR);
    assert_eq!(source_kind(dir.path()), "proctor.toml");

    // An explicit directory of executables wins over any configuration.
    std::fs::create_dir(path("bin")).expect("mkdir");
    let project = discover(dir.path(), Some(Path::new("bin"))).expect("explicit directory");
    let canonical = dir.path().canonicalize().expect("canonical");
    assert_eq!(
        project.source(),
        &Source::Executables(canonical.join("bin"))
    );
}

#[test]
fn python_files_without_stestr_sections_are_not_projects() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n",
    );
    write(&dir.path().join("tox.ini"), "[tox]\nenvlist = py3\n");
    let error = discover(dir.path(), None).expect_err("nothing to run");
    assert!(
        matches!(error, SourceError::NothingFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no tests found in"), "{error}");
}

#[test]
fn fmf_trees_are_a_source_with_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join(".fmf")).expect("mkdir");
    write(&dir.path().join(".fmf").join("version"), "1\n");
    write(
        &dir.path().join("main.fmf"),
        "/quick:\n    test: exit 0\n/slow:\n    test: sleep 1\n    duration: 10m\n\
         /off:\n    test: exit 0\n    enabled: false\n\
         /fedora-only:\n    test: exit 0\n    enabled: false\n    adjust:\n      \
         - when: distro == fedora\n        enabled: true\n",
    );
    let mut project = discover(dir.path(), None).expect("an fmf project");
    assert!(matches!(project.source(), proctor_sources::Source::Fmf(_)));
    let ids = |project: &proctor_sources::Project| -> Vec<String> {
        project
            .list()
            .expect("lists")
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids(&project), ["/quick", "/slow"]);
    project
        .set_fmf_context(&["distro=fedora-40".to_owned()])
        .expect("a context");
    assert_eq!(ids(&project), ["/fedora-only", "/quick", "/slow"]);
    let tests = project.list().expect("lists");
    let slow = &tests[2];
    assert_eq!(slow.time_limit, Some(std::time::Duration::from_secs(600)));
    assert_eq!(slow.estimate, Some(std::time::Duration::from_secs(600)));
    assert_eq!(tests[1].estimate, None);
    let suite = project.suite_of(slow).expect("its suite");
    let invocation = suite.invocation(&[slow]).expect("an invocation");
    assert_eq!(invocation.args, ["-c", "sleep 1"]);
    assert_eq!(
        invocation.cwd,
        dir.path().canonicalize().expect("canonical")
    );
    assert!(project.set_fmf_context(&["nonsense".to_owned()]).is_err());
    write(&dir.path().join("broken.fmf"), "test: [unclosed\n");
    let mut broken = discover(dir.path(), None).expect("discovers");
    broken.set_fmf_context(&[]).expect("empty context");
    let message = error_message(broken.list());
    assert!(message.contains("broken.fmf"), "{message}");
}

#[test]
fn missing_directories_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = error_message(discover(&dir.path().join("nope"), None));
    assert!(message.contains("nope"), "{message}");
    write(&dir.path().join("file"), "");
    let message = error_message(discover(dir.path(), Some(Path::new("file"))));
    assert!(message.ends_with("file is not a directory"), "{message}");
}

/// Writes `contents` as `name` in a fresh directory and returns the
/// discovery error and the file's path.
fn discovery_error(name: &str, contents: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join(name), contents);
    let message = error_message(discover(dir.path(), None));
    let path = dir.path().canonicalize().expect("canonical").join(name);
    (message, path)
}

fn assert_error(name: &str, contents: &str, expected: &[&str]) {
    let (message, path) = discovery_error(name, contents);
    assert!(
        message.contains(&path.display().to_string()),
        "{message} should name {}",
        path.display()
    );
    for part in expected {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}

#[test]
fn bad_testr_conf_files() {
    assert_error(
        ".testr.conf",
        "[DEFAULT]\ntest_id_option=--load-list $IDFILE\n",
        &["no `test_command` in section [DEFAULT]"],
    );
    assert_error(
        ".testr.conf",
        "[DEFAULT]\ntest_command=run\ngroup_regex=(unclosed\n",
        &["bad value for `group_regex`"],
    );
    assert_error(
        ".testr.conf",
        "[DEFAULT]\ntest_command=run 100% of it\n",
        &[
            "bad value for `test_command`",
            "'%' must be followed by '%' or '('",
        ],
    );
    assert_error(".testr.conf", "[DEFAULT\ntest_command=run\n", &["line 1"]);
}

#[test]
fn testr_conf_interpolation_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join(".testr.conf"),
        "[DEFAULT]\nrunner=printf '%%s\\n'\nTEST_COMMAND=%(runner)s $LISTOPT $IDLIST\n\
         test_list_option=listed\ntest_id_list_default=a b\n",
    );
    let project = discover(dir.path(), None).expect("valid");
    let suite = &project.suites()[0];
    let tests = suite.list().unwrap_or_else(|error| panic!("{error}"));
    let ids: Vec<&str> = tests.iter().map(|test| test.id.as_str()).collect();
    // Listing gets $LISTOPT and the default id list, as testrepository does.
    assert_eq!(ids, ["listed", "a", "b"]);
}

#[test]
fn bad_stestr_conf_files() {
    assert_error(
        ".stestr.conf",
        "[DEFAULT]\ntop_dir=./\n",
        &["no `test_path`"],
    );
    assert_error(
        ".stestr.conf",
        "[DEFAULT]\ntest_path=t\nparallel_class=maybe\n",
        &["`parallel_class`", "not a boolean"],
    );
    assert_error(
        ".stestr.conf",
        "[DEFAULT]\ntest_path=t\ngroup_regex=[\n",
        &["`group_regex`"],
    );
    assert_error(
        "pyproject.toml",
        "[tool.stestr]\ntest_path = 3\n",
        &["`tool.stestr.test_path`", "expected a string"],
    );
    assert_error("pyproject.toml", "[tool.stestr\n", &["line 1"]);
    assert_error(
        "tox.ini",
        "[stestr]\ntop_dir = ./\n",
        &["no `test_path` in section [stestr]"],
    );
}

#[test]
fn bad_proctor_toml_files() {
    let cases: &[(&str, &[&str])] = &[
        ("[[suite]]\nname = \"a\"\nrun = \"r\"\nlsit = \"l\"\n", &["unknown field `lsit`"]),
        ("[[suite]]\nname = \"a\"\nlist = \"l\"\n", &["missing field `run`"]),
        ("[[suite]\n", &["line 1"]),
        ("", &["missing field `suite`"]),
        ("suite = []\n", &["no suites"]),
        (
            "[[suite]]\nname = \"a\"\nrun = \"r $IDLIST\"\nprotocol = \"junit\"\nlist = \"l\"\n",
            &["unknown variant `junit`"],
        ),
        (
            "[[suite]]\nname = \"a\"\nrun = \"r $IDLIST\"\n",
            &["suite \"a\": list", "no `list` command"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\n[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r\"\n",
            &["same name"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\nprotocol = \"exit-status\"\nbatching = \"batches\"\n",
            &["suite \"a\": batching", "one test per process"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r\"\nprotocol = \"exit-status\"\n",
            &["suite \"a\": run", "must pass the test"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r\"\nexit_codes = \"tmt\"\n",
            &["suite \"a\": exit_codes"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\ntime_limit = \"soon\"\n",
            &["suite \"a\": time_limit", "\"soon\" is not a duration"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\nno_output_limit = \"0s\"\n",
            &["suite \"a\": no_output_limit", "not a positive duration"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\nconcurrency = 0\n",
            &["suite \"a\": concurrency", "at least 1"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\ndirectory = \"missing\"\n",
            &["suite \"a\": directory", "is not a directory"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\ngroup_regex = \"(\"\n",
            &["suite \"a\": group_regex"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\nbatching = \"one-per-test\"\ngroup_regex = \"x\"\n",
            &["cannot share a process"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\n[[suite.needs]]\ntests = \"x\"\n",
            &["suite \"a\": needs", "needs nothing"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\n[[suite.needs]]\ntests = \"(\"\ntags = [\"kvm\"]\n",
            &["suite \"a\": needs.tests"],
        ),
        (
            "[[suite]]\nname = \"a\"\nlist = \"l\"\nrun = \"r $IDLIST\"\n[[suite.needs]]\nram = \"4G\"\n",
            &["unknown field `ram`"],
        ),
    ];
    for (contents, expected) in cases {
        assert_error("proctor.toml", contents, expected);
    }
}

#[test]
fn proctor_toml_settings_reach_suites_tests_and_invocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    write(
        &dir.path().join("proctor.toml"),
        "[[suite]]\nname = \"batched\"\ndirectory = \"sub\"\nlist = \"printf 'a\\\\nb\\\\nc\\\\n'\"\n\
         run = \"r $IDOPTION\"\nid_option = \"--ids $IDLIST\"\nprotocol = \"tap\"\n\
         time_limit = \"1m 30s\"\nno_output_limit = \"10s\"\nconcurrency = 3\nenv = { A = \"1\" }\n\n\
         [[suite]]\nname = \"single\"\nlist = \"echo x\"\nrun = \"./$IDLIST\"\nprotocol = \"exit-status\"\n\
         exit_codes = \"tmt\"\n",
    );
    let project = discover(dir.path(), None).expect("valid");
    let [batched, single] = project.suites() else {
        panic!("two suites")
    };
    assert_eq!((batched.index(), single.index()), (0, 1));
    assert_eq!(
        batched.directory(),
        dir.path().canonicalize().expect("canonical").join("sub")
    );
    assert_eq!(batched.protocol(), Protocol::Tap);
    assert_eq!(batched.batching(), Batching::Batches);
    assert_eq!(batched.concurrency_hint().expect("fixed"), Some(3));
    assert_eq!(single.protocol(), Protocol::ExitStatus(ExitMapping::TMT));
    assert_eq!(single.batching(), Batching::OnePerProcess);
    assert_eq!(single.concurrency_hint().expect("none"), None);

    let tests = batched.list().unwrap_or_else(|error| panic!("{error}"));
    assert!(tests
        .iter()
        .all(|test| test.time_limit == Some(Duration::from_secs(90))));
    let batch: Vec<_> = tests.iter().collect();
    let invocation = batched
        .invocation(&batch)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(invocation.args, ["-c", "r --ids a b c"]);
    assert_eq!(invocation.env, [("A".to_owned(), "1".to_owned())]);
    assert_eq!(invocation.tests, ["a", "b", "c"]);
    assert_eq!(invocation.time_limit, Some(Duration::from_secs(270)));
    assert_eq!(invocation.no_output_limit, Some(Duration::from_secs(10)));

    // A test of one suite cannot be run by another.
    let message = error_message(single.invocation(&[&tests[0]]));
    assert!(
        message.contains("was given test `a` of suite #0"),
        "{message}"
    );
    let message = error_message(batched.invocation(&[]));
    assert!(message.contains("needs at least one test"), "{message}");
}

#[test]
fn precedence_fmf_then_pytest_configuration_then_cargo_then_pytest_test_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    std::fs::create_dir(path("tests")).expect("mkdir");
    write(&path("tests/test_it.py"), "def test_it():\n    pass\n");
    write(
        &path("Cargo.toml"),
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
    );
    // Test files alone do not beat a Cargo package (a Rust project with Python helpers).
    assert_eq!(source_kind(dir.path()), "cargo");
    write(&path("setup.cfg"), "[metadata]\nname = x\n");
    assert_eq!(
        source_kind(dir.path()),
        "cargo",
        "setup.cfg without [tool:pytest]"
    );
    write(&path("setup.cfg"), "[tool:pytest]\ntestpaths = tests\n");
    assert_eq!(source_kind(dir.path()), "pytest");
    std::fs::create_dir(path(".fmf")).expect("mkdir");
    write(&path(".fmf/version"), "1\n");
    assert_eq!(source_kind(dir.path()), "fmf");
}
