//! Adjust rules on trees read from disk.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proctor_fmf::{Context, FmfError, RuleError, Tree, Value};
use support::{tree_dir, yaml};

fn adjusted(files: &[(&str, &str)], context: &[&str], name: &str) -> Result<Value, FmfError> {
    let dir = tree_dir(files);
    let context = Context::parse_pairs(context).expect("valid context");
    let tree = Tree::load(dir.path())?.adjusted(&context)?;
    let node = tree.find(name).unwrap_or_else(|| panic!("no node {name}"));
    Ok(Value::Mapping(node.data().clone()))
}

const DISTRO_RULES: &str = "\
test: ./run.sh
duration: 5m
adjust:
  - when: distro == fedora
    because: fedora is slow
    duration+: ' *2'
    tag+: [fedora]
  - when: distro < centos-8
    enabled: false
  - when: arch == s390x
    continue: false
    tag+: [s390x]
  - when: arch == s390x
    tag+: [never]
";

#[test]
fn matching_rules_merge_and_control_keys_are_dropped() {
    let data = adjusted(&[("main.fmf", DISTRO_RULES)], &["distro=fedora-40"], "/").unwrap();
    let Value::Mapping(data) = data else {
        unreachable!()
    };
    assert_eq!(data.get("duration"), Some(&yaml("5m *2")));
    assert_eq!(data.get("tag"), Some(&yaml("[fedora]")));
    assert_eq!(data.get("enabled"), None);
    assert_eq!(data.get("because"), None);
    assert!(data.get("adjust").is_some(), "fmf keeps the rules");
}

#[test]
fn undecided_rules_are_skipped() {
    // No `distro` at all: the version comparison cannot be decided.
    let data = adjusted(&[("main.fmf", DISTRO_RULES)], &[], "/").unwrap();
    assert_eq!(data.get("enabled"), None);
    // Different names cannot be ordered either.
    let data = adjusted(&[("main.fmf", DISTRO_RULES)], &["distro=fedora-40"], "/").unwrap();
    assert_eq!(data.get("enabled"), None);
    let data = adjusted(&[("main.fmf", DISTRO_RULES)], &["distro=centos-7.9"], "/").unwrap();
    assert_eq!(data.get("enabled"), Some(&Value::Bool(false)));
}

#[test]
fn continue_false_stops_the_list() {
    let data = adjusted(&[("main.fmf", DISTRO_RULES)], &["arch=s390x"], "/").unwrap();
    assert_eq!(data.get("tag"), Some(&yaml("[s390x]")));
}

#[test]
fn a_single_rule_mapping_and_constant_conditions_work() {
    let files = [(
        "main.fmf",
        "/always:\n  adjust: {environment+: {A: '1'}}\n\
         /never:\n  adjust:\n    when: false\n    x: 1\n\
         /yes:\n  adjust:\n    when: true\n    x: 1\n\
         /text:\n  adjust:\n    when: 'true or distro == x'\n    x: 2\n",
    )];
    assert_eq!(
        adjusted(&files, &[], "/always").unwrap().get("environment"),
        Some(&yaml("{A: '1'}"))
    );
    assert_eq!(adjusted(&files, &[], "/never").unwrap().get("x"), None);
    assert_eq!(
        adjusted(&files, &[], "/yes").unwrap().get("x"),
        Some(&yaml("1"))
    );
    assert_eq!(
        adjusted(&files, &[], "/text").unwrap().get("x"),
        Some(&yaml("2"))
    );
}

#[test]
fn children_apply_inherited_rules_to_their_own_data() {
    let files = [
        (
            "main.fmf",
            "adjust:\n  - when: arch == x86_64\n    tag+: [x86]\n",
        ),
        ("a.fmf", "tag: [a]\n"),
        (
            "b.fmf",
            "tag: [b]\nadjust+:\n  - when: arch == x86_64\n    tag+: [b-extra]\n",
        ),
        // fmf merges a list into an inherited single rule (a mapping) rule by rule: the
        // child's `tag+` lands on the parent's rule as a plain `tag`, which then replaces.
        (
            "d/main.fmf",
            "adjust:\n  when: arch == x86_64\n  tag+: [x86]\n",
        ),
        (
            "d/e.fmf",
            "tag: [e]\nadjust+:\n  - when: arch == x86_64\n    tag+: [e-extra]\n",
        ),
    ];
    assert_eq!(
        adjusted(&files, &["arch=x86_64"], "/a").unwrap().get("tag"),
        Some(&yaml("[a, x86]"))
    );
    assert_eq!(
        adjusted(&files, &["arch=x86_64"], "/b").unwrap().get("tag"),
        Some(&yaml("[b, x86, b-extra]"))
    );
    assert_eq!(
        adjusted(&files, &["arch=aarch64"], "/a")
            .unwrap()
            .get("tag"),
        Some(&yaml("[a]"))
    );
    assert_eq!(
        adjusted(&files, &["arch=x86_64"], "/d/e")
            .unwrap()
            .get("tag"),
        Some(&yaml("[e-extra]"))
    );
}

#[test]
fn comparisons_ignore_case_unless_asked() {
    let dir = tree_dir(&[("main.fmf", "adjust:\n  when: distro == Fedora\n  x: 1\n")]);
    let tree = Tree::load(dir.path()).unwrap();
    let mut context = Context::parse_pairs(&["distro=fedora-40"]).unwrap();
    assert_eq!(
        tree.adjusted(&context).unwrap().find("/").unwrap().get("x"),
        Some(&yaml("1"))
    );
    context.set_case_sensitive(true);
    assert_eq!(
        tree.adjusted(&context).unwrap().find("/").unwrap().get("x"),
        None
    );
}

#[test]
fn bad_conditions_name_node_expression_and_position() {
    let files = [(
        "tests/login.fmf",
        "adjust:\n  when: distro == fedora and arch ?? x86_64\n  x: 1\n",
    )];
    let error = adjusted(&files, &["distro=fedora"], "/tests/login").unwrap_err();
    let FmfError::Condition {
        node,
        file,
        expression,
        source,
    } = &error
    else {
        panic!("expected a condition error, got {error}");
    };
    assert_eq!(node, "/tests/login");
    assert!(file
        .as_ref()
        .is_some_and(|file| file.ends_with("tests/login.fmf")));
    assert_eq!(expression, "distro == fedora and arch ?? x86_64");
    assert_eq!(
        source,
        &RuleError::Unparsable {
            expression: "arch ?? x86_64".to_owned(),
            offset: 21
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("/tests/login") && message.contains("offset 21"),
        "{message}"
    );
}

#[test]
fn bad_regular_expressions_are_errors_when_reached() {
    let files = [("main.fmf", "adjust:\n  when: arch ~ ^(x86\n  x: 1\n")];
    let error = adjusted(&files, &["arch=x86_64"], "/").unwrap_err();
    assert!(
        matches!(
            error,
            FmfError::Condition {
                source: RuleError::BadRegex { .. },
                ..
            }
        ),
        "{error}"
    );
    // Without the dimension the comparison is never made, as in fmf.
    assert!(adjusted(&files, &[], "/").is_ok());
}

#[test]
fn malformed_rules_are_errors() {
    let cases = [
        "adjust: just text\n",
        "adjust: [just text]\n",
        "adjust:\n  when: [a]\n  x: 1\n",
        "adjust:\n  continue: 'no'\n  x: 1\n",
    ];
    for contents in cases {
        let error = adjusted(&[("main.fmf", contents)], &[], "/").unwrap_err();
        assert!(
            matches!(error, FmfError::Adjust { ref node, .. } if node == "/"),
            "{contents:?}: {error}"
        );
    }
    let error = adjusted(&[("main.fmf", "tag: [a]\nadjust:\n  tag+: b\n")], &[], "/").unwrap_err();
    assert!(matches!(error, FmfError::Merge { .. }), "{error}");
}
