//! Nothing panics on any input and nothing escapes: arbitrary bytes, mutated real bundles, and the inputs the fuzzer
//! found, replayed.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_input;

use std::path::Path;

use proptest::prelude::*;

/// A small real bundle to mutate, so inputs get past the gzip and tar headers.
fn seed_bundle() -> Vec<u8> {
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("test")).unwrap();
    std::fs::write(source.path().join("test/data.txt"), "some data").unwrap();
    proctor_archive::pack_paths(&[(source.path().join("test"), "test".into())]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_input::exercise(&bytes);
    }

    #[test]
    fn mutated_bundles_are_read_or_refused(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bundle = seed_bundle();
        for (at, byte) in flips {
            let at = at.index(bundle.len());
            bundle[at] = byte;
        }
        fuzz_input::exercise(&bundle);
    }
}

#[test]
fn fuzz_regressions_replay() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (_, input) in proctor_testkit::fuzz_regressions(crate_dir, 1) {
        fuzz_input::exercise(&input);
    }
}
