//! stestr, testrepository and proctor.toml projects listed and run with the
//! real Python runners from the test virtualenv.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{error_message, python, python_project, run_subunit, set, write, ODD_IDS, PLAIN_IDS};
use proctor_sources::{discover, Batching, Project, Protocol, Source, SourceError, TestCase};

fn all_ids() -> BTreeSet<String> {
    set(&PLAIN_IDS).union(&set(&ODD_IDS)).cloned().collect()
}

fn ids(tests: &[TestCase]) -> BTreeSet<String> {
    tests.iter().map(|test| test.id.clone()).collect()
}

/// A project discovered in `dir`, with `$PYTHON` set to the venv's.
fn discover_with_python(dir: &std::path::Path) -> Project {
    let mut project = discover(dir, None).unwrap_or_else(|error| panic!("discover: {error}"));
    project.set_env("PYTHON", &python());
    project
}

fn pick<'a>(tests: &'a [TestCase], wanted: &[&str]) -> Vec<&'a TestCase> {
    tests
        .iter()
        .filter(|test| wanted.contains(&test.id.as_str()))
        .collect()
}

#[test]
fn stestr_project_lists_what_stestr_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\ntop_dir=./\n",
    );
    let project = discover_with_python(dir.path());
    assert_eq!(
        project.source(),
        &Source::Stestr(
            dir.path()
                .canonicalize()
                .expect("canonical")
                .join(".stestr.conf")
        )
    );
    let [suite] = project.suites() else {
        panic!("one suite expected")
    };
    assert_eq!(suite.protocol(), Protocol::Subunit);
    assert_eq!(suite.batching(), Batching::Batches);
    let tests = suite.list().unwrap_or_else(|error| panic!("list: {error}"));
    assert_eq!(ids(&tests), all_ids());
    assert!(tests
        .iter()
        .all(|test| test.suite == 0 && test.group.is_none()));

    // stestr itself, on the same project, agrees.
    let run = |args: &[&str]| {
        let mut command = proctor_testkit::venv_command("stestr");
        command.args(args).current_dir(dir.path());
        proctor_testkit::expect_success("stestr", proctor_testkit::run_with_stdin(command, b""))
    };
    run(&["init"]);
    let listed = String::from_utf8(run(&["list"])).expect("utf-8");
    let stestr_ids: BTreeSet<String> = listed.lines().map(str::to_owned).collect();
    assert_eq!(stestr_ids, all_ids());
}

#[test]
fn stestr_batch_runs_exactly_the_chosen_tests_through_idfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\n",
    );
    let project = discover_with_python(dir.path());
    let suite = &project.suites()[0];
    let tests = suite.list().unwrap_or_else(|error| panic!("list: {error}"));
    let wanted = [PLAIN_IDS[1], ODD_IDS[0], ODD_IDS[1], ODD_IDS[2]];
    let invocation = suite
        .invocation(&pick(&tests, &wanted))
        .unwrap_or_else(|error| panic!("invocation: {error}"));
    let idfile = invocation
        .idfile()
        .expect("stestr passes ids in a file")
        .to_path_buf();
    assert_eq!(
        std::fs::read_to_string(&idfile).expect("id file"),
        tests
            .iter()
            .filter(|test| wanted.contains(&test.id.as_str()))
            .map(|test| format!("{}\n", test.id))
            .collect::<String>()
    );
    assert_eq!(invocation.args[0], "-c");
    assert!(invocation.args[1].starts_with(
        r#"${PYTHON:-python3} -m stestr.subunit_runner.run discover -t "./" "./tests"  --load-list "#
    ));

    let reported = run_subunit(&invocation);
    assert_eq!(reported.passed, set(&wanted), "stderr: {}", reported.stderr);
    assert!(reported.failed.is_empty());
    drop(invocation);
    assert!(!idfile.exists(), "the id file goes with the invocation");
}

#[test]
fn testr_conf_with_continuation_lines_runs_under_sh() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    // The shape of OpenStack's .testr.conf files.
    write(
        &dir.path().join(".testr.conf"),
        "[DEFAULT]\n\
         test_command=OS_STDOUT_CAPTURE=${OS_STDOUT_CAPTURE:-1} \\\n\
         \x20            OS_STDERR_CAPTURE=${OS_STDERR_CAPTURE:-1} \\\n\
         \x20            ${PYTHON:-python} -m subunit.run discover -t ./ ./tests $LISTOPT $IDOPTION\n\
         test_id_option=--load-list $IDFILE\n\
         test_list_option=--list\n\
         group_regex=([^\\.]+\\.)+\n\
         filter_tags=worker-0 worker-1\n",
    );
    let project = discover_with_python(dir.path());
    assert!(matches!(project.source(), Source::Testr(path) if path.ends_with(".testr.conf")));
    let suite = &project.suites()[0];
    assert_eq!(suite.filter_tags(), ["worker-0", "worker-1"]);
    let tests = suite.list().unwrap_or_else(|error| panic!("list: {error}"));
    assert_eq!(ids(&tests), all_ids());
    let groups: BTreeSet<_> = tests.iter().filter_map(|test| test.group.clone()).collect();
    assert_eq!(
        groups,
        set(&[
            "tests.test_math.TestAdd.",
            "tests.test_math.TestSub.",
            "tests.test_odd.TestOdd."
        ])
    );

    let batch = pick(&tests, &PLAIN_IDS[..2]);
    let invocation = suite
        .invocation(&batch)
        .unwrap_or_else(|error| panic!("{error}"));
    let reported = run_subunit(&invocation);
    assert_eq!(
        reported.passed,
        set(&PLAIN_IDS[..2]),
        "stderr: {}",
        reported.stderr
    );
}

#[test]
fn idlist_carries_odd_ids_to_the_runner_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    let python = shlex::try_quote(&python()).expect("quotable").into_owned();
    write(
        &dir.path().join("proctor.toml"),
        &format!(
            "[[suite]]\n\
             name = \"py\"\n\
             list = \"{python} -m subunit.run discover -t . tests --list\"\n\
             run = \"{python} -m subunit.run $IDLIST\"\n"
        ),
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    let suite = &project.suites()[0];
    let tests = suite.list().unwrap_or_else(|error| panic!("list: {error}"));
    assert_eq!(ids(&tests), all_ids());
    let invocation = suite
        .invocation(&pick(&tests, &ODD_IDS))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(invocation.idfile().is_none());
    let reported = run_subunit(&invocation);
    assert_eq!(
        reported.passed,
        set(&ODD_IDS),
        "stderr: {}",
        reported.stderr
    );
}

#[test]
fn stestr_parallel_class_groups_by_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\ngroup_regex=ignored\\.\nparallel_class=True\n",
    );
    let project = discover_with_python(dir.path());
    let suite = &project.suites()[0];
    assert_eq!(
        suite.group_regex().map(|regex| regex.as_str()),
        Some(r"([^\.]*\.)*")
    );
    let tests = suite.list().unwrap_or_else(|error| panic!("list: {error}"));
    let group_of = |id: &str| {
        tests
            .iter()
            .find(|test| test.id == id)
            .and_then(|test| test.group.clone())
    };
    assert_eq!(group_of(PLAIN_IDS[0]), group_of(PLAIN_IDS[1]));
    assert_ne!(group_of(PLAIN_IDS[0]), group_of(PLAIN_IDS[2]));
    assert_eq!(
        group_of(PLAIN_IDS[2]).as_deref(),
        Some("tests.test_math.TestSub.")
    );
}

#[test]
fn pyproject_stestr_table_is_a_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join("pyproject.toml"),
        "[project]\nname = \"demo\"\n\n[tool.stestr]\ntest_path = \"./tests\"\ntop_dir = \"./\"\n",
    );
    let project = discover_with_python(dir.path());
    assert!(matches!(project.source(), Source::Stestr(path) if path.ends_with("pyproject.toml")));
    let tests = project
        .list()
        .unwrap_or_else(|error| panic!("list: {error}"));
    assert_eq!(ids(&tests), all_ids());
}

#[test]
fn a_listing_that_cannot_import_reports_the_traceback() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join("tests").join("test_broken.py"),
        "import no_such_module_here\n",
    );
    write(
        &dir.path().join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\n",
    );
    let project = discover_with_python(dir.path());
    let error = project.suites()[0].list().expect_err("import fails");
    assert!(matches!(error, SourceError::ListFailed { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("suite `stestr`"), "{message}");
    assert!(
        message.contains("No module named 'no_such_module_here'"),
        "{message}"
    );
}

#[test]
fn a_failing_list_command_reports_status_and_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("proctor.toml"),
        "[[suite]]\nname = \"broken\"\nlist = \"echo cannot list >&2; exit 3\"\nrun = \"true $IDLIST\"\n",
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    let message = error_message(project.suites()[0].list());
    assert!(message.contains("suite `broken`"), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("cannot list"), "{message}");
}

#[test]
fn plain_text_listings_and_suite_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("proctor.toml"),
        "[[suite]]\nname = \"lines\"\nlist = \"printf '%s\\\\n' \\\"$FIRST\\\" 'second id' \\\"$FIRST\\\"\"\n\
         run = \"true $IDLIST\"\nenv = { FIRST = \"first.id\" }\n",
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    let tests = project.suites()[0]
        .list()
        .unwrap_or_else(|error| panic!("{error}"));
    let listed: Vec<&str> = tests.iter().map(|test| test.id.as_str()).collect();
    assert_eq!(listed, ["first.id", "second id"]);
}

#[test]
fn testr_concurrency_callout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join(".testr.conf");
    write(
        &conf,
        "[DEFAULT]\ntest_command=true $IDLIST\ntest_run_concurrency=echo ' 3'\n",
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        project.suites()[0].concurrency_hint().expect("runs"),
        Some(3)
    );

    write(
        &conf,
        "[DEFAULT]\ntest_command=true $IDLIST\ntest_run_concurrency=echo many\n",
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    let message = error_message(project.suites()[0].concurrency_hint());
    assert!(
        message.contains("printed \"many\", not a number"),
        "{message}"
    );

    write(
        &conf,
        "[DEFAULT]\ntest_command=true $IDLIST\ntest_run_concurrency=echo nope >&2; exit 1\n",
    );
    let project = discover(dir.path(), None).unwrap_or_else(|error| panic!("{error}"));
    let message = error_message(project.suites()[0].concurrency_hint());
    assert!(
        message.contains("failed") && message.contains("nope"),
        "{message}"
    );
}

#[test]
fn testr_without_an_id_option_can_only_run_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    python_project(dir.path());
    write(
        &dir.path().join(".testr.conf"),
        "[DEFAULT]\ntest_command=${PYTHON:-python} -m subunit.run discover -t ./ ./tests $LISTOPT $IDOPTION\ntest_list_option=--list\n",
    );
    let project = discover_with_python(dir.path());
    let suite = &project.suites()[0];
    assert!(!suite.can_select());
    let tests = suite.list().unwrap_or_else(|error| panic!("{error}"));
    let message = error_message(suite.invocation(&[&tests[0]]));
    assert!(message.contains("cannot select tests"), "{message}");
    let everything = suite
        .invocation_all()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(everything.tests.is_empty());
    assert_eq!(run_subunit(&everything).passed, all_ids());
}
