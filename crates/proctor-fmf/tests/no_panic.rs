//! Nothing panics on any input: arbitrary bytes as metadata files (on disk and in memory), as
//! `when` conditions, durations and context pairs; and the inputs the fuzzer found, replayed.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_input;
mod support;

use proctor_fmf::{parse_duration, Context, Rule, Tree, DEFAULT_DURATION};
use proptest::prelude::*;
use std::path::Path;

/// Fragments that make generated text look like metadata and conditions often enough to get
/// past the first parse error.
const FRAGMENTS: [&str; 32] = [
    "\n",
    " ",
    ": ",
    "- ",
    "/child",
    "/a/b",
    "/",
    "tag",
    "+",
    "-",
    "~",
    "+<",
    "-~",
    "adjust",
    "when",
    "continue",
    "{",
    "}",
    "[",
    "]",
    "&x ",
    "*x",
    "<<",
    "'",
    "\"",
    "distro",
    "==",
    "<=",
    "~<",
    " and ",
    " or ",
    "fedora-3.9",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&FRAGMENTS[..]), 0..40)
        .prop_map(|parts| parts.concat())
}

fn context() -> Context {
    let mut context = Context::new();
    context.set("distro", ["fedora-39", "centos-8.4"]);
    context.set("arch", ["x86_64"]);
    context
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_document_is_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512), text in fragments()) {
        for document in [String::from_utf8_lossy(&bytes).into_owned(), text] {
            if let Ok(tree) = Tree::parse(Path::new("/any"), &document) {
                let _ = tree.tests(&context());
            }
        }
    }

    #[test]
    fn any_condition_is_decided_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..128), text in fragments()) {
        for condition in [String::from_utf8_lossy(&bytes).into_owned(), text] {
            if let Ok(rule) = Rule::parse(&condition) {
                let _ = rule.evaluate(&context());
            }
            let _ = parse_duration(&condition, DEFAULT_DURATION);
            let _ = condition.parse::<Context>();
        }
    }
}

proptest! {
    // Fewer cases: each writes a tree to disk.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_file_on_disk_is_read_or_refused(main in prop::collection::vec(any::<u8>(), 0..256), child in fragments()) {
        let dir = support::tree_dir(&[("sub/child.fmf", &child)]);
        std::fs::write(dir.path().join("main.fmf"), &main).expect("write main.fmf");
        if let Ok(tree) = Tree::load(dir.path()) {
            let _ = tree.tests(&context());
        }
    }
}

#[test]
fn fuzz_regressions_replay() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (_, input) in proctor_testkit::fuzz_regressions(crate_dir, 1) {
        fuzz_input::exercise(&input);
    }
}
