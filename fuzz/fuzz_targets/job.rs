//! Any bytes through proctor-job's parsers: a YAML job, a JSON job, an agent configuration and a timeout,
//! with the JSON round trip checked for every job that parses (see
//! `crates/proctor-job/tests/fuzz_input/mod.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-job/tests/fuzz_input/mod.rs"]
mod fuzz_input;

fuzz_target!(|data: &[u8]| fuzz_input::exercise(data));
