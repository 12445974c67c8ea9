//! One input through every parser of proctor-fmf, shared by the cargo-fuzz target `fmf`
//! (`fuzz/fuzz_targets/fmf.rs`) and the tests that replay its findings.
//!
//! The input is a metadata document, then (after a NUL byte) a `when` condition, then (after
//! another) context pairs. The document is read as a tree's `main.fmf`, adjusted for the
//! context and read for tests; the condition is parsed, decided and read as a duration. Errors
//! are fine; panics, stack overflows and runaway work are not.

use proctor_fmf::{parse_duration, Context, Rule, Tree, DEFAULT_DURATION};
use std::path::Path;

/// Runs `data` through the parsers, ignoring their errors.
pub fn exercise(data: &[u8]) {
    let mut parts = data.splitn(3, |&byte| byte == 0);
    let mut next_text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (document, condition, pairs) = (next_text(), next_text(), next_text());
    let context = pairs.parse::<Context>().unwrap_or_else(|_| {
        let mut context = Context::new();
        context.set("distro", ["fedora-39", "centos-8.4"]);
        context.set("arch", ["x86_64"]);
        context
    });
    if let Ok(rule) = Rule::parse(&condition) {
        let _ = rule.evaluate(&context);
    }
    let _ = parse_duration(&condition, DEFAULT_DURATION);
    if let Ok(tree) = Tree::parse(Path::new("/fuzz"), &document) {
        let _ = tree.tests(&context);
    }
}
