//! One input through the readers of the lab's work streams, shared by the cargo-fuzz target `work`
//! (`fuzz/fuzz_targets/work.rs`) and the tests that replay its findings.
//!
//! The bytes are what a `LineReader` gets from a job's `work` or `work-done` stream: they are fed to
//! [`take_lines`] in pieces cut where the bytes say, as reads of the stream would bring them, and then whole.
//! Either way the lines and the pending tail must give back the input, byte for byte, with no line holding a
//! newline and no tail over [`MAX_WORK_LINE`] left without an error. Every line is then read as a
//! [`WorkRequest`], a [`WorkReport`] and a [`BatchRequest`]: errors are fine, panics are not, and whatever is read
//! must survive [`to_line`] and read back unchanged.

use proctor_api::{take_lines, to_line, BatchRequest, WorkReport, WorkRequest, MAX_WORK_LINE};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The lines of `pieces` fed one after another, and the tail left pending; `None` once a line is refused.
fn split(pieces: &[&[u8]]) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut pending = Vec::new();
    let mut lines = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        match take_lines(&mut pending) {
            Ok(more) => lines.extend(more),
            Err(problem) => {
                assert!(problem.contains("more than"), "{problem}");
                return None;
            }
        }
        assert!(
            pending.len() <= MAX_WORK_LINE,
            "a tail of {} bytes pending without an error",
            pending.len()
        );
        assert!(!pending.contains(&b'\n'), "a whole line was left pending");
    }
    Some((lines, pending))
}

/// Reads `line` as a `T` and, if it is one, checks that it comes back from its own line unchanged.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(line: &[u8]) {
    let Ok(message) = serde_json::from_slice::<T>(line) else {
        return;
    };
    let mut again = to_line(&message);
    assert_eq!(
        again.pop(),
        Some(b'\n'),
        "{message:?}: a line ends with a newline"
    );
    assert!(
        !again.contains(&b'\n'),
        "{message:?}: its line holds a newline"
    );
    let back: T = serde_json::from_slice(&again).unwrap_or_else(|error| {
        panic!(
            "{} does not read back: {error}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(back, message, "the line round trip changed the message");
}

/// Checks the line splitting and the messages on `data`.
pub fn exercise(data: &[u8]) {
    let mut hash = data.iter().fold(0x811C_9DC5u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut cuts: Vec<usize> = (0..4)
        .map(|_| {
            hash = hash.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (hash % (data.len() as u64 + 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts.iter().chain([&data.len()]) {
        pieces.push(&data[start..cut]);
        start = cut;
    }

    let whole = split(&[data]);
    let in_pieces = split(&pieces);
    assert_eq!(in_pieces, whole, "cuts {cuts:?} changed the lines");
    let Some((lines, tail)) = whole else {
        return;
    };
    let mut rebuilt = Vec::with_capacity(data.len());
    for line in &lines {
        assert!(!line.contains(&b'\n'), "a line holds a newline");
        rebuilt.extend_from_slice(line);
        rebuilt.push(b'\n');
    }
    rebuilt.extend_from_slice(&tail);
    assert!(rebuilt == data, "the lines and the tail are not the input");

    for line in lines.iter().chain([&tail]) {
        round_trip::<WorkRequest>(line);
        round_trip::<WorkReport>(line);
        round_trip::<BatchRequest>(line);
    }
}
