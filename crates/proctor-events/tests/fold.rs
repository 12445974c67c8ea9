//! The fold of events into test runs gives the same runs folded whole or resumed part by part, on the reference
//! streams, on mutations of them and on arbitrary bytes (the inputs the fuzz target `fold` explores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fold_input;

use std::path::Path;

/// The subunit streams the fuzzers start from.
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    assert!(seeds.len() >= 5, "{}: {} seeds", dir.display(), seeds.len());
    seeds.sort();
    seeds
}

#[test]
fn the_reference_streams_fold_the_same_whole_and_in_parts() {
    for seed in seeds() {
        fold_input::exercise(&seed);
    }
}

#[test]
fn mutated_and_arbitrary_streams_fold_the_same_whole_and_in_parts() {
    let seeds = seeds();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3_000 {
        let mut input = seeds[round % seeds.len()].clone();
        // Splice, flip and cut: the mutations libFuzzer starts with.
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 => input.insert(at, next() as u8),
                1 if at < input.len() => input[at] ^= 1 << (next() % 8),
                _ => input.truncate(at.max(1)),
            }
        }
        let other = &seeds[(next() as usize) % seeds.len()];
        input.extend_from_slice(&other[..(next() as usize) % (other.len() + 1)]);
        fold_input::exercise(&input);
    }
    for _ in 0..500 {
        let bytes: Vec<u8> = (0..next() % 300).map(|_| next() as u8).collect();
        fold_input::exercise(&bytes);
    }
}
