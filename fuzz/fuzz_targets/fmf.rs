//! Any bytes through proctor-fmf's parsers: a metadata document, a `when` condition and context
//! pairs, separated by NUL bytes (see `crates/proctor-fmf/tests/fuzz_input/mod.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-fmf/tests/fuzz_input/mod.rs"]
mod fuzz_input;

fuzz_target!(|data: &[u8]| fuzz_input::exercise(data));
