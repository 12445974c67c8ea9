//! Any bytes as a job's `work` or `work-done` stream: split into lines by `take_lines` whole and in pieces
//! (nothing lost or invented, no line over the limit), every line read as a `WorkRequest`, a `WorkReport` and a
//! `BatchRequest`, with the round trip through `to_line` checked for whatever reads (see
//! `crates/proctor-api/tests/fuzz_input/mod.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-api/tests/fuzz_input/mod.rs"]
mod fuzz_input;

fuzz_target!(|data: &[u8]| fuzz_input::exercise(data));
