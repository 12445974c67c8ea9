//! Replays the inputs cargo-fuzz found interesting (`tests/fuzz-regressions`,
//! a small minimised selection from the `/fuzz` corpora, plus any crash
//! inputs) with the fuzz targets' own checks, so `cargo test` guards them
//! without cargo-fuzz or a nightly toolchain.

mod support;

use std::fs;
use std::path::PathBuf;

fn inputs() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut inputs: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.expect("lists").path();
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("reads"))
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "only {} regression inputs",
        inputs.len()
    );
    inputs
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
