//! Directories of test executables and exit-status suites, run for real.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{error_message, write};
use proctor_sources::{discover, Batching, ExitOutcome, Protocol, SourceError};

fn script(path: &Path, body: &str) {
    write(path, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// pass.sh, skip.sh, sub dir/fail it.sh, hard-error.sh; plus files that are
/// not tests.
fn test_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub dir")).expect("mkdir");
    std::fs::create_dir_all(root.join(".hidden")).expect("mkdir");
    script(&root.join("pass.sh"), "pwd > where.txt");
    script(&root.join("skip.sh"), "exit 77");
    script(&root.join("hard-error.sh"), "exit 99");
    script(&root.join("sub dir").join("fail it.sh"), "exit 3");
    script(&root.join(".hidden").join("secret.sh"), "exit 0");
    write(&root.join("README"), "not executable\n");
}

#[test]
fn every_executable_below_the_directory_is_a_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    test_tree(&dir.path().join("t"));
    let project = discover(dir.path(), Some(Path::new("t"))).expect("a directory");
    let [suite] = project.suites() else {
        panic!("one suite")
    };
    assert_eq!(suite.name(), "t");
    assert_eq!(suite.batching(), Batching::OnePerProcess);
    let Protocol::ExitStatus(mapping) = suite.protocol() else {
        panic!("executables report by exit status")
    };
    let tests = suite.list().unwrap_or_else(|error| panic!("{error}"));
    let ids: Vec<&str> = tests.iter().map(|test| test.id.as_str()).collect();
    assert_eq!(
        ids,
        ["hard-error.sh", "pass.sh", "skip.sh", "sub dir/fail it.sh"]
    );

    let mut outcomes = Vec::new();
    for test in &tests {
        let invocation = suite
            .invocation(&[test])
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(invocation.program.is_absolute());
        assert_eq!(invocation.tests, std::slice::from_ref(&test.id));
        let status = invocation.command().status().expect("runs");
        let code = status.code().expect("exited");
        outcomes.push(mapping.outcome(code));
    }
    assert_eq!(
        outcomes,
        [
            ExitOutcome::Error,
            ExitOutcome::Pass,
            ExitOutcome::Skip,
            ExitOutcome::Fail
        ]
    );
    // Tests run in the directory given, wherever they sit below it.
    let root = dir.path().canonicalize().expect("canonical").join("t");
    let wrote = std::fs::read_to_string(root.join("where.txt")).expect("pass.sh ran");
    assert_eq!(wrote.trim_end(), root.display().to_string());
}

#[test]
fn executables_run_one_at_a_time_and_only_inside() {
    let dir = tempfile::tempdir().expect("tempdir");
    test_tree(dir.path());
    let project = discover(dir.path(), Some(Path::new("."))).expect("a directory");
    let suite = &project.suites()[0];
    let tests = suite.list().unwrap_or_else(|error| panic!("{error}"));
    let message = error_message(suite.invocation(&[&tests[0], &tests[1]]));
    assert!(message.contains("runs one process per test"), "{message}");
    assert!(matches!(
        suite.invocation_all(),
        Err(SourceError::OnePerProcess { count: 0, .. })
    ));
    let escape = suite.test_case("../outside.sh");
    let message = error_message(suite.invocation(&[&escape]));
    assert!(message.contains("not a relative path inside"), "{message}");
}

#[test]
fn an_empty_directory_has_no_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = discover(dir.path(), Some(Path::new("."))).expect("a directory");
    assert_eq!(project.list().expect("lists"), []);
}

#[test]
fn exit_status_suites_pass_one_quoted_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    test_tree(&dir.path().join("t"));
    write(
        &dir.path().join("proctor.toml"),
        "[[suite]]\nname = \"scripts\"\ndirectory = \"t\"\n\
         list = \"find . -name '*.sh' -not -path './.hidden/*' | cut -c3- | sort\"\n\
         run = \"./$IDLIST\"\nprotocol = \"exit-status\"\n",
    );
    let project = discover(dir.path(), None).expect("valid");
    let suite = &project.suites()[0];
    let tests = suite.list().unwrap_or_else(|error| panic!("{error}"));
    let failing = tests
        .iter()
        .find(|test| test.id == "sub dir/fail it.sh")
        .expect("listed");
    let invocation = suite
        .invocation(&[failing])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(invocation.args[1], "./'sub dir/fail it.sh'");
    let status = invocation.command().status().expect("runs");
    assert_eq!(status.code(), Some(3), "the shell found and ran the script");
}
