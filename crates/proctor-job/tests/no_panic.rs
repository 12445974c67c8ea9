//! Nothing panics on any input: arbitrary bytes and job-shaped fragments as YAML and JSON jobs, agent
//! configurations and timeouts; and the inputs the fuzzer found, replayed.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_input;

use proptest::prelude::*;
use std::path::Path;

/// Fragments that make generated text look like jobs and configurations often enough to get past the
/// first parse error.
const FRAGMENTS: [&str; 30] = [
    "\n",
    " ",
    "  ",
    ": ",
    "- ",
    "= ",
    "job_queue",
    "local",
    "test_data",
    "test_cmds",
    "reserve_data",
    "ssh_keys",
    "global_timeout",
    "30m",
    "1h",
    "-1",
    "0",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "agent_id",
    "job_queues",
    "[x]",
    "!tag ",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&FRAGMENTS[..]), 0..40)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_input::exercise(&bytes);
    }

    #[test]
    fn any_fragments_are_read_or_refused(text in fragments()) {
        fuzz_input::exercise(text.as_bytes());
    }
}

#[test]
fn fuzz_regressions_replay() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (_, input) in proctor_testkit::fuzz_regressions(crate_dir, 1) {
        fuzz_input::exercise(&input);
    }
}
