//! tmt's reading of tests from a tree: which nodes are tests and their typed keys.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proctor_fmf::{Context, FmfError, ResultMode, TestMeta, Tree};
use std::collections::BTreeMap;
use std::time::Duration;
use support::tree_dir;

fn tests(
    files: &[(&str, &str)],
    context: &[&str],
) -> Result<(tempfile::TempDir, Vec<TestMeta>), FmfError> {
    let dir = tree_dir(files);
    let context = Context::parse_pairs(context).expect("valid context");
    let tests = Tree::load(dir.path())?.tests(&context)?;
    Ok((dir, tests))
}

fn only(files: &[(&str, &str)], context: &[&str]) -> (tempfile::TempDir, TestMeta) {
    let (dir, mut tests) = tests(files, context).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(tests.len(), 1, "{tests:#?}");
    (dir, tests.remove(0))
}

#[test]
fn tests_are_selected_nodes_with_a_test_key() {
    let (_dir, found) = tests(
        &[
            ("main.fmf", "test: ./inherited.sh\n"),
            ("plans/main.fmf", "execute: {how: tmt}\n"),
            ("tests/main.fmf", "/one: {}\n/two:\n  test: ./two.sh\n"),
            ("tests/branch/main.fmf", "/: {select: true}\n/leaf: {}\n"),
            ("tests/skipped.fmf", "/: {select: false}\n"),
        ],
        &[],
    )
    .unwrap();
    let names: Vec<&str> = found.iter().map(|test| test.name.as_str()).collect();
    // /plans inherits `test` from the root like everything else, as in tmt.
    assert_eq!(
        names,
        [
            "/plans",
            "/tests/branch",
            "/tests/branch/leaf",
            "/tests/one",
            "/tests/two"
        ]
    );
    let two = &found[4];
    assert_eq!(two.test, "./two.sh");
}

#[test]
fn defaults_follow_tmt() {
    let (dir, test) = only(&[("tests/smoke.fmf", "test: ./smoke.sh\n")], &[]);
    assert_eq!(test.name, "/tests/smoke");
    assert_eq!(test.path, dir.path().join("tests"));
    assert_eq!(test.duration, Duration::from_secs(300));
    assert!(test.environment.is_empty());
    assert!(test.tags.is_empty());
    assert_eq!(test.tier, None);
    assert!(test.enabled);
    assert_eq!(test.result, ResultMode::Respect);
    assert_eq!(test.summary, None);
    assert_eq!(test.order, 50);
    assert_eq!(test.sources, [dir.path().join("tests/smoke.fmf")]);
}

#[test]
fn keys_are_typed() {
    let (dir, test) = only(
        &[(
            "main.fmf",
            "/t:\n  test: make check\n  path: /src/app\n  duration: 1h 30m\n  environment: {A: 1, B: yes, C: 1.5, D: true}\n  tag: smoke\n  tier: 1\n  enabled: false\n  result: xfail\n  summary: Checks\n  description: Long text\n  order: 10\n  framework: beakerlib\n",
        )],
        &[],
    );
    assert_eq!(test.test, "make check");
    assert_eq!(test.path, dir.path().join("src/app"));
    assert_eq!(test.duration, Duration::from_secs(5400));
    let expected: BTreeMap<String, String> =
        [("A", "1"), ("B", "yes"), ("C", "1.5"), ("D", "True")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
    assert_eq!(test.environment, expected);
    assert_eq!(test.tags, ["smoke"]);
    assert_eq!(test.tier.as_deref(), Some("1"));
    assert!(!test.enabled);
    assert_eq!(test.result, ResultMode::Xfail);
    assert_eq!(test.summary.as_deref(), Some("Checks"));
    assert_eq!(test.description.as_deref(), Some("Long text"));
    assert_eq!(test.order, 10);
    assert_eq!(
        test.data.get("framework").and_then(|value| value.as_str()),
        Some("beakerlib")
    );
    // A node defined by a key takes the directory of the file holding the key.
    let (dir, test) = only(&[("sub/main.fmf", "/t:\n  test: x\n")], &[]);
    assert_eq!(test.path, dir.path().join("sub"));
}

#[test]
fn relative_paths_are_relative_to_the_root() {
    let (dir, test) = only(&[("deep/t.fmf", "test: x\npath: tools\n")], &[]);
    assert_eq!(test.path, dir.path().join("tools"));
}

#[test]
fn adjust_can_multiply_the_duration() {
    let rules = "adjust:\n  when: arch == aarch64\n  duration+: '*2'\n";
    let (_dir, test) = only(
        &[("t.fmf", &format!("test: x\nduration: 10m\n{rules}"))],
        &["arch=aarch64"],
    );
    assert_eq!(test.duration, Duration::from_secs(1200));
    // Without a duration of its own, the default is what gets multiplied.
    let (_dir, test) = only(
        &[("t.fmf", &format!("test: x\n{rules}"))],
        &["arch=aarch64"],
    );
    assert_eq!(test.duration, Duration::from_secs(600));
    let (_dir, test) = only(&[("t.fmf", &format!("test: x\n{rules}"))], &["arch=x86_64"]);
    assert_eq!(test.duration, Duration::from_secs(300));
}

#[test]
fn adjust_can_disable_tests_and_change_results() {
    let files = [(
        "t.fmf",
        "test: x\nadjust:\n  - when: distro < fedora-40\n    enabled: false\n  - when: distro == fedora-41\n    result: xfail\n",
    )];
    let (_dir, test) = only(&files, &["distro=fedora-39"]);
    assert!(!test.enabled);
    let (_dir, test) = only(&files, &["distro=fedora-41"]);
    assert!(test.enabled);
    assert_eq!(test.result, ResultMode::Xfail);
}

#[test]
fn bad_keys_name_the_test_and_key() {
    let cases = [
        ("test: [a]\n", "test"),
        ("test: ~\n", "test"),
        ("test: x\nduration: soon\n", "duration"),
        ("test: x\nduration: 1.5h\n", "duration"),
        ("test: x\nenabled: 'no'\n", "enabled"),
        ("test: x\nresult: maybe\n", "result"),
        ("test: x\ntag: [1]\n", "tag"),
        ("test: x\nenvironment: [A=1]\n", "environment"),
        ("test: x\nenvironment: {A: [1]}\n", "environment"),
        ("test: x\ntier: [1]\n", "tier"),
        ("test: x\norder: first\n", "order"),
        ("test: x\npath: 1\n", "path"),
    ];
    for (contents, bad_key) in cases {
        let error = tests(&[("t.fmf", contents)], &[]).unwrap_err();
        let FmfError::TestKey {
            node, key, file, ..
        } = &error
        else {
            panic!("{contents:?}: expected a test key error, got {error}");
        };
        assert_eq!(
            (node.as_str(), key.as_str()),
            ("/t", bad_key),
            "{contents:?}"
        );
        assert!(file.as_ref().is_some_and(|file| file.ends_with("t.fmf")));
    }
}

#[test]
fn result_modes_parse() {
    for (text, mode) in [
        ("respect", ResultMode::Respect),
        ("xfail", ResultMode::Xfail),
        ("pass", ResultMode::Pass),
        ("info", ResultMode::Info),
        ("warn", ResultMode::Warn),
        ("error", ResultMode::Error),
        ("fail", ResultMode::Fail),
        ("custom", ResultMode::Custom),
        ("restraint", ResultMode::Restraint),
    ] {
        assert_eq!(text.parse::<ResultMode>(), Ok(mode));
    }
    assert!("Respect".parse::<ResultMode>().is_err());
}
