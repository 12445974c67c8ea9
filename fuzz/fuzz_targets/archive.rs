//! Any bytes through proctor-archive's `check` and `unpack` in both layouts: no panic, nothing written outside the
//! destination, and whatever `check` accepts unpacks (see `crates/proctor-archive/tests/fuzz_input/mod.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-archive/tests/fuzz_input/mod.rs"]
mod fuzz_input;

fuzz_target!(|data: &[u8]| fuzz_input::exercise(data));
