//! proctor-fmf against the reference: the `fmf` Python package in the test virtualenv must make
//! the same nodes, data (after inheritance and adjust), sources and decisions of the same trees,
//! contexts and conditions. Trees and conditions are generated from a fixed seed, so a failure
//! reproduces; every case goes to one Python process to keep the test fast.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proctor_fmf::{Context, Decision, FmfError, Mapping, Tree, Value};
use serde_json::json;
use std::path::Path;
use support::{reference, to_json, write_files};

/// A small deterministic generator (SplitMix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const DIMENSIONS: [&str; 4] = ["distro", "arch", "component", "trigger"];
const VALUES: [&str; 22] = [
    "fedora",
    "fedora-39",
    "fedora-40",
    "fedora-40.1",
    "Fedora-41",
    "fedora-rawhide",
    "centos",
    "centos-8",
    "centos-8.4",
    "centos-8.10",
    "centos-7.9",
    "centos-stream-9",
    "rhel-9",
    "rhel-9.2.0",
    "RHEL-10",
    "x86_64",
    "aarch64",
    "s390x",
    "bash",
    "python3-3.12.1-1.fc40",
    "1:2.3-4",
    "commit",
];
const REGEXES: [&str; 6] = [
    "^x86",
    "64$",
    "fedora-4[0-9]",
    "^(centos|rhel)",
    "a.ch",
    "stream",
];
const OPERATORS: [&str; 14] = [
    "==", "!=", "<", "<=", ">", ">=", "~=", "~!=", "~<", "~<=", "~>", "~>=", "~", "!~",
];

fn expression(random: &mut Random) -> String {
    let dimension = random.pick(&DIMENSIONS);
    match random.below(12) {
        0 => format!("{dimension} is defined"),
        1 => format!("{dimension} is not defined"),
        2 => random.pick(&["true", "false"]).to_string(),
        _ => {
            let operator = random.pick(&OPERATORS);
            let count = 1 + random.below(2);
            let values: Vec<&str> = (0..count)
                .map(|_| {
                    if matches!(*operator, "~" | "!~") {
                        *random.pick(&REGEXES)
                    } else {
                        *random.pick(&VALUES)
                    }
                })
                .collect();
            let operator = if *operator == "==" && random.chance(20) {
                "="
            } else {
                operator
            };
            let space = if random.chance(20) { "" } else { " " };
            format!("{dimension}{space}{operator}{space}{}", values.join(", "))
        }
    }
}

fn condition(random: &mut Random) -> String {
    if random.chance(3) {
        return random
            .pick(&["distro ?? x", "and distro == x", "distro == x or", "== x"])
            .to_string();
    }
    let mut text = expression(random);
    for _ in 0..random.below(3) {
        let joiner = random.pick(&[" and ", " or "]);
        text.push_str(joiner);
        text.push_str(&expression(random));
    }
    text
}

fn context_json(random: &mut Random) -> serde_json::Value {
    let mut context = serde_json::Map::new();
    for dimension in DIMENSIONS {
        if random.chance(60) {
            let count = 1 + random.below(2);
            let values: Vec<&str> = (0..count).map(|_| *random.pick(&VALUES)).collect();
            context.insert(dimension.to_owned(), json!(values));
        }
    }
    context.into()
}

fn context_of(case: &serde_json::Value) -> Context {
    let mut context = Context::new();
    for (dimension, values) in case["context"].as_object().expect("context object") {
        let values = values
            .as_array()
            .expect("values")
            .iter()
            .map(|value| value.as_str().expect("string"));
        context.set(dimension, values);
    }
    context.set_case_sensitive(case["case_sensitive"].as_bool().expect("flag"));
    context
}

#[test]
fn conditions_decide_like_fmf() {
    let mut random = Random(0x5EED_0001);
    let cases: Vec<serde_json::Value> = (0..1500)
        .map(|_| {
            json!({
                "rule": condition(&mut random),
                "context": context_json(&mut random),
                "case_sensitive": random.chance(50),
            })
        })
        .collect();
    let expected = reference("decide", &json!({ "cases": cases }));
    let mut mismatches = Vec::new();
    for (case, expected) in cases.iter().zip(expected.as_array().expect("a list")) {
        let rule = case["rule"].as_str().expect("rule");
        let ours = match context_of(case).decide(rule) {
            Ok(Decision::Yes) => "yes".to_owned(),
            Ok(Decision::No) => "no".to_owned(),
            Ok(Decision::Undecided) => "undecided".to_owned(),
            Err(error) => format!("error: {error}"),
        };
        let expected = expected.as_str().expect("string");
        let agree =
            ours == expected || (ours.starts_with("error") && expected.starts_with("error"));
        if !agree {
            mismatches.push(format!("{case}: fmf {expected}, proctor-fmf {ours}"));
        }
    }
    let decided = expected
        .as_array()
        .expect("a list")
        .iter()
        .filter(|result| *result == "yes")
        .count();
    assert!(
        decided > 100,
        "the generator should make many true conditions, made {decided}"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

const NAMES: [&str; 5] = ["tests", "login", "smoke", "alpha", "beta"];
const WORDS: [&str; 6] = ["a", "b", "c", "slow", "tier1", "fedora-39"];

fn word_list(random: &mut Random) -> Value {
    let count = random.below(4);
    Value::Sequence(
        (0..count)
            .map(|_| Value::from(*random.pick(&WORDS)))
            .collect(),
    )
}

fn environment(random: &mut Random) -> Value {
    let mut mapping = Mapping::new();
    for _ in 0..random.below(3) {
        mapping.insert(
            Value::from(*random.pick(&["A", "B", "C"])),
            Value::from(*random.pick(&WORDS)),
        );
    }
    Value::Mapping(mapping)
}

/// The merge suffixes that suit each generated key's type.
const KEYS: [(&str, &[&str]); 7] = [
    ("tag", &["", "+", "-", "+<", "-~", "~"]),
    ("summary", &["", "+", "+<", "-", "-~", "~"]),
    ("count", &["", "+", "-", "+<"]),
    ("environment", &["", "+", "-", "-~"]),
    ("require", &["", "+"]),
    ("duration", &["", "+", "+<", "~"]),
    ("enabled", &[""]),
];
const SUFFIXES: [&str; 6] = ["", "+", "-", "+<", "-~", "~"];

/// A key and value for node data, suffixes included; now and then a suffix or value that does
/// not suit the key (which both implementations must refuse alike).
fn data_entry(random: &mut Random) -> (String, Value) {
    let (key, suffixes) = *random.pick(&KEYS);
    let suffix = if random.chance(95) {
        *random.pick(suffixes)
    } else {
        *random.pick(&SUFFIXES)
    };
    let value = match (key, suffix) {
        (_, "-~") => Value::from(*random.pick(&["^t", "slow", "b|c", "A"])),
        (_, "~") => Value::from(*random.pick(&["/a/z/", "|fedora-(\\d+)|f\\1|", "/^s/S/"])),
        ("tag", _) => word_list(random),
        ("summary", "-") => Value::from(*random.pick(&["o+", "^S", " "])),
        ("summary", _) => Value::from(*random.pick(&["Smoke", " test", "slow", ""])),
        ("count", _) => Value::from(random.below(10) as i64 - 3),
        ("environment", "-") => Value::Sequence(vec![Value::from(*random.pick(&["A", "B"]))]),
        ("environment", _) => environment(random),
        ("require", _) if random.chance(50) => {
            let mut item = Mapping::new();
            item.insert(Value::from("name"), Value::from(*random.pick(&WORDS)));
            Value::Sequence(vec![Value::Mapping(item)])
        }
        ("require", _) => {
            let mut item = Mapping::new();
            item.insert(Value::from("optional"), Value::Bool(random.chance(50)));
            Value::Mapping(item)
        }
        ("duration", _) => Value::from(*random.pick(&["5m", " *2", "1h", " 30s"])),
        _ => Value::Bool(random.chance(50)),
    };
    let value = if random.chance(2) {
        Value::from(7)
    } else {
        value
    };
    (format!("{key}{suffix}"), value)
}

fn rule(random: &mut Random) -> Value {
    let mut rule = Mapping::new();
    match random.below(10) {
        0 => {}
        1 => {
            rule.insert(Value::from("when"), Value::Bool(random.chance(50)));
        }
        _ => {
            rule.insert(Value::from("when"), Value::from(condition(random)));
        }
    }
    if random.chance(30) {
        rule.insert(Value::from("continue"), Value::Bool(random.chance(50)));
    }
    if random.chance(30) {
        rule.insert(Value::from("because"), Value::from("reasons"));
    }
    for _ in 0..1 + random.below(2) {
        let (key, value) = data_entry(random);
        rule.insert(Value::from(key), value);
    }
    Value::Mapping(rule)
}

fn node_data(random: &mut Random, depth: usize) -> Mapping {
    let mut data = Mapping::new();
    for _ in 0..random.below(4) {
        let (key, value) = data_entry(random);
        data.insert(Value::from(key), value);
    }
    if random.chance(40) {
        data.insert(
            Value::from("test"),
            Value::from(format!("./run-{}.sh", random.below(100))),
        );
    }
    if random.chance(35) {
        let rules: Vec<Value> = (0..1 + random.below(3)).map(|_| rule(random)).collect();
        let key = if random.chance(30) {
            "adjust+"
        } else {
            "adjust"
        };
        let value = if rules.len() == 1 && random.chance(50) {
            rules[0].clone()
        } else {
            Value::Sequence(rules)
        };
        data.insert(Value::from(key), value);
    }
    if random.chance(10) {
        let mut directives = Mapping::new();
        let directive = *random.pick(&["inherit", "select"]);
        directives.insert(Value::from(directive), Value::Bool(random.chance(50)));
        data.insert(Value::from("/"), Value::Mapping(directives));
    }
    if depth < 2 {
        for _ in 0..random.below(3) {
            let name = random.pick(&NAMES);
            let key = if random.chance(25) {
                format!("/{name}/{}", random.pick(&NAMES))
            } else {
                format!("/{name}")
            };
            let child = if random.chance(10) {
                Value::Null
            } else {
                Value::Mapping(node_data(random, depth + 1))
            };
            data.insert(Value::from(key), child);
        }
    }
    data
}

fn write_random_tree(random: &mut Random, root: &Path) {
    write_files(root, &[(".fmf/version", "1\n")]);
    let mut directories = vec![String::new()];
    for _ in 0..random.below(4) {
        let parent = random.pick(&directories).clone();
        let name = random.pick(&NAMES);
        directories.push(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        });
    }
    for directory in &directories {
        let prefix = if directory.is_empty() {
            String::new()
        } else {
            format!("{directory}/")
        };
        let mut files = Vec::new();
        if random.chance(70) {
            files.push(format!("{prefix}main.fmf"));
        }
        for _ in 0..random.below(3) {
            files.push(format!("{prefix}{}.fmf", random.pick(&NAMES)));
        }
        for file in files {
            let data = node_data(random, 0);
            let text = serde_yaml_ng::to_string(&data).expect("YAML");
            write_files(root, &[(file.as_str(), text.as_str())]);
        }
    }
}

/// What proctor-fmf makes of a tree, in the reference's JSON shape: adjusted for the case's
/// context unless it is null.
fn ours(root: &Path, case: &serde_json::Value) -> Result<serde_json::Value, FmfError> {
    let mut tree = Tree::load(root)?;
    if !case["context"].is_null() {
        tree.adjust(&context_of(case))?;
    }
    let nodes: Vec<serde_json::Value> = tree
        .nodes()
        .map(|node| {
            json!({
                "name": node.name(),
                "data": to_json(&Value::Mapping(node.data().clone())),
                "sources": node.sources(),
                "select": node.is_selected(),
            })
        })
        .collect();
    Ok(json!({ "nodes": nodes }))
}

/// Drops each node's `adjust` key. fmf assigns values by reference, so when one rule's `key+`
/// value becomes a node's value and a later rule edits that value in place (merging a mapping
/// into it), the edit shows in the first rule too. proctor-fmf copies values, leaving rules as
/// written; the data they produce is the same, and the rules themselves are compared before
/// adjusting (the cases with a null context).
fn without_rules(mut tree: serde_json::Value) -> serde_json::Value {
    if let Some(nodes) = tree["nodes"].as_array_mut() {
        for node in nodes {
            if let Some(data) = node["data"].as_object_mut() {
                data.remove("adjust");
            }
        }
    }
    tree
}

#[test]
fn trees_read_and_adjust_like_fmf() {
    let mut random = Random(0x5EED_0002);
    let workspace = tempfile::tempdir().expect("temporary directory");
    let mut cases = Vec::new();
    for index in 0..40 {
        let root = workspace.path().join(format!("tree-{index}"));
        write_random_tree(&mut random, &root);
        cases.push(json!({"root": root, "context": null, "case_sensitive": true}));
        for _ in 0..3 {
            cases.push(json!({
                "root": root,
                "context": context_json(&mut random),
                "case_sensitive": random.chance(50),
            }));
        }
    }
    let expected = reference("trees", &json!({ "cases": cases }));
    let expected = expected.as_array().expect("a list");
    let mut mismatches = Vec::new();
    let mut compared_nodes = 0;
    for (case, expected) in cases.iter().zip(expected) {
        let root = Path::new(case["root"].as_str().expect("root"));
        match (ours(root, case), expected.get("error")) {
            (Ok(ours), None) => {
                compared_nodes += ours["nodes"].as_array().map_or(0, Vec::len);
                let (ours, expected) = if case["context"].is_null() {
                    (ours, expected.clone())
                } else {
                    (without_rules(ours), without_rules(expected.clone()))
                };
                if ours != expected {
                    mismatches.push(format!(
                        "{case}:\nfmf:         {expected}\nproctor-fmf: {ours}"
                    ));
                }
            }
            // Both refuse the tree. Which of several problems is reported first may differ:
            // fmf adjusts children in the order it created them, proctor-fmf in name order.
            (Err(_), Some(_)) => {}
            (Ok(_), Some(_)) => mismatches.push(format!(
                "{case}: fmf raised {expected}, proctor-fmf did not"
            )),
            (Err(error), None) => {
                mismatches.push(format!("{case}: proctor-fmf failed ({error}), fmf did not"))
            }
        }
    }
    let failures = expected
        .iter()
        .filter(|result| result.get("error").is_some())
        .count();
    assert!(
        compared_nodes > 500,
        "too few nodes compared: {compared_nodes}"
    );
    assert!(
        failures < cases.len() / 2,
        "too many trees fail to compare data: {failures}"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

#[test]
fn hand_written_trees_read_like_fmf() {
    let workspace = tempfile::tempdir().expect("temporary directory");
    let trees: [&[(&str, &str)]; 4] = [
        &[
            ("main.fmf", "summary: Root\ntag: [a]\n/inline/deeper:\n  tag+: [x]\n"),
            ("tests/main.fmf", "component: bash\nadjust:\n  - when: distro == fedora\n    tag+: [fedora]\n  - when: arch != x86_64\n    enabled: false\n"),
            ("tests/one.fmf", "test: ./one.sh\nduration: 5m\nadjust+:\n  - when: distro >= fedora-40\n    duration+: ' *2'\n    continue: false\n  - tag: [never]\n"),
            ("tests/.hidden.fmf", "test: nope\n"),
            ("tests/sub/main.fmf", "/: {inherit: false}\ntest: ./alone.sh\n"),
            ("empty/readme.txt", "no metadata\n"),
        ],
        &[
            ("main.fmf", "base: &base {a: 1, b: [x]}\n/anchored:\n  <<: *base\n  b+: [y]\n"),
            ("x.fmf", ""),
            ("x/main.fmf", "/: {select: true}\n/y: {}\n"),
        ],
        &[
            ("main.fmf", "environment: {A: '1', B: '2'}\nrequire: [{name: a}, {name: b}]\n"),
            ("c.fmf", "environment-: [A]\nenvironment+: {C: '3'}\nrequire+: {type: library}\nrequire-~: ''\n"),
            ("d.fmf", "require+: [{extra: 1}]\nenvironment-~: ^B\n"),
        ],
        &[
            ("main.fmf", "adjust:\n  when: initiator is not defined or initiator != packit\n  because: local runs\n  enabled: false\n"),
            ("t.fmf", "test: x\n"),
        ],
    ];
    let contexts = [
        json!({}),
        json!({"distro": ["fedora-40"], "arch": ["aarch64"], "initiator": ["packit"]}),
    ];
    let mut cases = Vec::new();
    for (index, files) in trees.iter().enumerate() {
        let root = workspace.path().join(format!("tree-{index}"));
        write_files(&root, &[(".fmf/version", "1\n")]);
        write_files(&root, files);
        for context in &contexts {
            cases.push(json!({"root": root, "context": context, "case_sensitive": false}));
        }
    }
    let expected = reference("trees", &json!({ "cases": cases }));
    for (case, expected) in cases.iter().zip(expected.as_array().expect("a list")) {
        let root = Path::new(case["root"].as_str().expect("root"));
        let ours = ours(root, case).unwrap_or_else(|error| panic!("{case}: {error}"));
        assert_eq!(&ours, expected, "{case}");
    }
}
