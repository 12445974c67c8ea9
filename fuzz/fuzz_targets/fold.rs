//! Any bytes decoded as subunit v2 and folded into test runs, whole and resumed part by part as the server folds a
//! job's uploads: the same runs and totals either way (see `crates/proctor-events/tests/fold_input/mod.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-events/tests/fold_input/mod.rs"]
mod fold_input;

fuzz_target!(|data: &[u8]| fold_input::exercise(data));
