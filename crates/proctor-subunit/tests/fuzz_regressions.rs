//! Replays the inputs cargo-fuzz found interesting (`tests/fuzz-regressions`,
//! a small minimised selection from the `/fuzz` corpora, plus any crash
//! inputs) with the fuzz targets' own checks, so `cargo test` guards them
//! without cargo-fuzz or a nightly toolchain.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

fn inputs() -> Vec<(String, Vec<u8>)> {
    proctor_testkit::fuzz_regressions(Path::new(env!("CARGO_MANIFEST_DIR")), 10)
}

/// The `decode` target's checks: every decoding path, with several read
/// patterns.
#[test]
fn decode_regressions() {
    for (name, input) in inputs() {
        eprintln!("{name}: {} bytes", input.len());
        for seed in 0..8 {
            support::check(&input, seed);
        }
    }
}

/// The `roundtrip` target's checks.
#[test]
fn roundtrip_regressions() {
    for (name, input) in inputs() {
        eprintln!("{name}: {} bytes", input.len());
        support::check_round_trip(&input);
    }
}
