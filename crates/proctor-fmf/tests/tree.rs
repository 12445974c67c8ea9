//! Reading trees from disk: node names, files, inheritance, merging, directives and errors.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proctor_fmf::{FmfError, Tree, Value};
use support::{tree_dir, write_files, yaml};

fn names(tree: &Tree) -> Vec<&str> {
    tree.nodes().map(|node| node.name()).collect()
}

fn data(tree: &Tree, name: &str) -> Value {
    let node = tree.find(name).unwrap_or_else(|| panic!("no node {name}"));
    Value::Mapping(node.data().clone())
}

#[test]
fn files_directories_and_child_keys_make_nodes() {
    let dir = tree_dir(&[
        ("main.fmf", "summary: root\n/inline:\n  test: ./inline.sh\n"),
        ("tests/main.fmf", "component: bash\n"),
        ("tests/smoke.fmf", "test: ./smoke.sh\n"),
        (
            "tests/login/main.fmf",
            "/basic:\n  test: ./basic.sh\n/deep/er/still:\n  test: ./deep.sh\n",
        ),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(
        names(&tree),
        [
            "/",
            "/inline",
            "/tests",
            "/tests/login",
            "/tests/login/basic",
            "/tests/login/deep",
            "/tests/login/deep/er",
            "/tests/login/deep/er/still",
            "/tests/smoke",
        ]
    );
    assert_eq!(tree.root(), dir.path());
    assert_eq!(tree.version(), 1);
    let still = tree.find("/tests/login/deep/er/still").unwrap();
    assert!(still.is_leaf() && still.is_selected());
    assert!(!tree.find("/tests/login").unwrap().is_selected());
    assert_eq!(
        data(&tree, "/tests/smoke"),
        yaml("summary: root\ncomponent: bash\ntest: ./smoke.sh")
    );
    let login = tree.find("/tests/login").unwrap();
    let children: Vec<&str> = tree.children(login).map(|node| node.name()).collect();
    assert_eq!(children, ["/tests/login/basic", "/tests/login/deep"]);
}

#[test]
fn the_root_is_found_from_a_subdirectory() {
    let dir = tree_dir(&[("a/b/main.fmf", "test: x\n")]);
    let tree = Tree::load(&dir.path().join("a/b")).unwrap();
    assert_eq!(tree.root(), dir.path());
    assert_eq!(names(&tree), ["/", "/a", "/a/b"]);
}

#[test]
fn sources_list_the_files_ancestors_first() {
    let dir = tree_dir(&[
        ("main.fmf", "a: 1\n"),
        ("sub/main.fmf", "/leaf:\n  b: 2\n"),
        ("sub/leaf.fmf", "c: 3\n"),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    let leaf = tree.find("/sub/leaf").unwrap();
    let root = dir.path();
    assert_eq!(
        leaf.sources(),
        [
            root.join("main.fmf"),
            root.join("sub/main.fmf"),
            root.join("sub/leaf.fmf")
        ]
    );
    // Both the key in main.fmf and the file define the node; the file comes later and adds.
    assert_eq!(data(&tree, "/sub/leaf"), yaml("a: 1\nb: 2\nc: 3"));
}

#[test]
fn later_definitions_of_a_node_override_earlier_ones() {
    let dir = tree_dir(&[
        ("main.fmf", "/x:\n  v: from-main\n  w: kept\n"),
        ("x.fmf", "v: from-file\n"),
        ("x/main.fmf", "v: from-directory\n"),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(data(&tree, "/x"), yaml("v: from-directory\nw: kept"));
}

#[test]
fn hidden_files_subtrees_and_empty_directories_are_skipped() {
    let dir = tree_dir(&[
        ("main.fmf", "a: 1\n"),
        (".hidden.fmf", "b: 2\n"),
        (".hidden/main.fmf", "b: 2\n"),
        ("nested-tree/.fmf/version", "1\n"),
        ("nested-tree/main.fmf", "c: 3\n"),
        ("no-metadata/readme.txt", "just a file\n"),
        ("no-metadata/deeper/script.sh", "true\n"),
        ("notes.yaml", "d: 4\n"),
        ("empty.fmf", ""),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(names(&tree), ["/", "/empty"]);
    assert_eq!(data(&tree, "/empty"), yaml("a: 1"));
}

#[test]
fn config_can_include_hidden_names() {
    let dir = tree_dir(&[
        (".fmf/config", "explore:\n  include: [.ci, .extra.fmf]\n"),
        (".ci/main.fmf", "test: ./ci.sh\n"),
        (".extra.fmf", "test: ./extra.sh\n"),
        (".other/main.fmf", "test: ./other.sh\n"),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(names(&tree), ["/", "/.ci", "/.extra"]);
}

#[test]
fn bad_config_is_an_error() {
    let dir = tree_dir(&[
        (".fmf/config", "explore:\n  include: .ci\n"),
        ("main.fmf", "a: 1\n"),
    ]);
    let error = Tree::load(dir.path()).unwrap_err();
    assert!(
        matches!(error, FmfError::Format { ref path, .. } if path.ends_with(".fmf/config")),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_entered_once() {
    let dir = tree_dir(&[("a/main.fmf", "x: 1\n")]);
    std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("a/loop")).unwrap();
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(names(&tree), ["/", "/a", "/a/loop"]);
}

#[test]
fn inheritance_merges_with_suffixes() {
    let dir = tree_dir(&[
        (
            "main.fmf",
            "tag: [a, b, c]\nsummary: Root\ncount: 10\nenvironment: {A: '1', B: '2'}\nrequire: [{name: x}, {name: y}]\nlogs: fedora-39.log\n",
        ),
        (
            "child.fmf",
            "tag+: [d]\ntag-: [b]\nsummary+: ' child'\ncount-: 3\nenvironment+: {C: '3'}\nenvironment-: [A]\nrequire+: {optional: true}\nlogs~: /fedora-(\\d+)/f\\1/\n",
        ),
        ("pre.fmf", "tag+<: [z]\ntag-~: ^c$\nsummary-~: oo\n"),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(
        data(&tree, "/child"),
        yaml(
            "tag: [a, c, d]\nsummary: Root child\ncount: 7\nenvironment: {B: '2', C: '3'}\n\
             require: [{name: x, optional: true}, {name: y, optional: true}]\nlogs: f39.log"
        )
    );
    assert_eq!(
        data(&tree, "/pre"),
        yaml(
            "tag: [z, a, b]\nsummary: ''\ncount: 10\nenvironment: {A: '1', B: '2'}\n\
             require: [{name: x}, {name: y}]\nlogs: fedora-39.log"
        )
    );
}

#[test]
fn the_inherit_directive_cuts_inheritance() {
    let dir = tree_dir(&[
        ("main.fmf", "a: 1\n"),
        ("alone.fmf", "/:\n  inherit: false\nb: 2\n"),
        ("sub/main.fmf", "/leaf:\n  /:\n    inherit: false\n  c: 3\n"),
    ]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(data(&tree, "/alone"), yaml("b: 2"));
    assert_eq!(data(&tree, "/sub/leaf"), yaml("c: 3"));
    assert_eq!(
        tree.find("/alone").unwrap().sources(),
        [dir.path().join("alone.fmf")]
    );
}

#[test]
fn the_select_directive_overrides_leafness() {
    let dir = tree_dir(&[(
        "main.fmf",
        "/branch:\n  /: {select: true}\n  /leaf: {}\n/hidden-leaf:\n  /: {select: false}\n",
    )]);
    let tree = Tree::load(dir.path()).unwrap();
    let selected: Vec<&str> = tree
        .nodes()
        .filter(|node| node.is_selected())
        .map(|node| node.name())
        .collect();
    assert_eq!(selected, ["/branch", "/branch/leaf"]);
}

#[test]
fn a_slash_path_key_can_carry_directives() {
    let dir = tree_dir(&[("main.fmf", "a: 1\n/x/:\n  inherit: false\n/x/y: {}\n")]);
    let tree = Tree::load(dir.path()).unwrap();
    assert_eq!(data(&tree, "/x"), yaml("{}"));
    assert_eq!(data(&tree, "/x/y"), yaml("{}"));
}

#[test]
fn merge_errors_name_node_file_and_key() {
    let dir = tree_dir(&[("main.fmf", "tag: [a]\n"), ("bad.fmf", "tag+: text\n")]);
    let error = Tree::load(dir.path()).unwrap_err();
    let FmfError::Merge {
        node, file, key, ..
    } = &error
    else {
        panic!("expected a merge error, got {error}");
    };
    assert_eq!((node.as_str(), key.as_str()), ("/bad", "tag"));
    assert_eq!(file.as_deref(), Some(dir.path().join("bad.fmf").as_path()));
    assert!(error.to_string().contains("bad.fmf"), "{error}");
}

#[test]
fn yaml_errors_name_file_line_and_column() {
    let dir = tree_dir(&[("tests/broken.fmf", "summary: fine\ntest: [unclosed\n")]);
    let error = Tree::load(dir.path()).unwrap_err();
    let FmfError::Yaml {
        path, line, column, ..
    } = &error
    else {
        panic!("expected a YAML error, got {error}");
    };
    assert_eq!(path, &dir.path().join("tests/broken.fmf"));
    assert_eq!((*line, *column), (Some(3), Some(1)));
    let message = error.to_string();
    assert!(
        message.contains("broken.fmf") && message.contains("line 3, column 1"),
        "{message}"
    );
}

#[test]
fn duplicate_keys_are_errors() {
    let dir = tree_dir(&[("main.fmf", "test: a\ntest: b\n")]);
    assert!(matches!(Tree::load(dir.path()), Err(FmfError::Yaml { .. })));
}

#[test]
fn files_that_are_not_fmf_are_errors() {
    let cases = [
        ("main.fmf", "- a list\n"),
        ("main.fmf", "1: numeric key\n"),
        ("main.fmf", "/child: a string\n"),
        ("main.fmf", "/: {unknown: true}\n"),
        ("main.fmf", "/: {inherit: 'no'}\n"),
        ("main.fmf", "/: [inherit]\n"),
    ];
    for (file, contents) in cases {
        let dir = tree_dir(&[(file, contents)]);
        let error = Tree::load(dir.path()).unwrap_err();
        assert!(
            matches!(&error, FmfError::Format { path, .. } if path.ends_with(file)),
            "{contents:?}: {error}"
        );
    }
}

#[test]
fn invalid_utf8_is_an_error() {
    let dir = tree_dir(&[]);
    std::fs::write(dir.path().join("main.fmf"), b"a: \xff\n").unwrap();
    assert!(matches!(Tree::load(dir.path()), Err(FmfError::Yaml { .. })));
}

#[test]
fn missing_roots_and_versions_are_errors() {
    let plain = tempfile::tempdir().unwrap();
    // A temporary directory could in theory sit inside a tree; ours do not.
    assert!(matches!(
        Tree::load(plain.path()),
        Err(FmfError::NoRoot { .. })
    ));
    assert!(matches!(
        Tree::load(&plain.path().join("missing")),
        Err(FmfError::Io { .. })
    ));
    std::fs::create_dir(plain.path().join(".fmf")).unwrap();
    assert!(matches!(Tree::load(plain.path()), Err(FmfError::Io { .. })));
    write_files(plain.path(), &[(".fmf/version", "one\n")]);
    assert!(matches!(
        Tree::load(plain.path()),
        Err(FmfError::BadVersion { .. })
    ));
}

#[test]
fn nesting_is_bounded() {
    let key: String = "/a".repeat(proctor_fmf::MAX_DEPTH + 1);
    let dir = tree_dir(&[("main.fmf", &format!("{key}: {{}}\n"))]);
    assert!(matches!(
        Tree::load(dir.path()),
        Err(FmfError::Format { .. })
    ));
    let key: String = "/a".repeat(proctor_fmf::MAX_DEPTH);
    let dir = tree_dir(&[("main.fmf", &format!("{key}: {{}}\n"))]);
    assert_eq!(
        Tree::load(dir.path()).unwrap().nodes().count(),
        proctor_fmf::MAX_DEPTH + 1
    );
}

#[test]
fn a_tree_can_be_parsed_from_one_document() {
    let root = std::path::Path::new("/srv/tests");
    let tree = Tree::parse(root, "tag: [a]\n/one:\n  tag+: [b]\n/two/three: {}\n").unwrap();
    assert_eq!(names(&tree), ["/", "/one", "/two", "/two/three"]);
    assert_eq!(data(&tree, "/one"), yaml("tag: [a, b]"));
    assert_eq!(
        tree.find("/two/three").unwrap().sources(),
        [root.join("main.fmf")]
    );
    assert_eq!(tree.root(), root);
    let error = Tree::parse(root, "a: [\n").unwrap_err();
    assert!(
        matches!(error, FmfError::Yaml { ref path, .. } if path == &root.join("main.fmf")),
        "{error}"
    );
}
