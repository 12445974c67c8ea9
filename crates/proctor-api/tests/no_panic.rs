//! Nothing panics, nothing is lost and every message read survives its round trip: arbitrary bytes, mutated
//! real lines of the `work` and `work-done` streams, lines at the length limit, and the inputs the fuzzer found,
//! replayed.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_input;

use proctor_api::{
    take_lines, to_line, BatchRequest, OutputStream, WorkReport, WorkRequest, MAX_WORK_LINE,
};
use proptest::prelude::*;
use std::path::Path;

/// One real line of each kind of message, so mutations get past the first parse error.
fn real_lines() -> Vec<Vec<u8>> {
    let batch = BatchRequest {
        batch: 4096,
        root: "/home/me/src".into(),
        program: "python3".into(),
        args: vec!["-m".into(), "subunit.run".into(), "discover".into()],
        env: vec![("PYTHONPATH".into(), "/home/me/src".into())],
        cwd: "/home/me/src/tests".into(),
        grace_seconds: 10,
        memory_limit: Some(1 << 30),
        idfile: Some(("/tmp/ids".into(), "a.b\nc.d\n".into())),
    };
    vec![
        to_line(&WorkRequest::Batch(batch.clone())),
        to_line(&WorkRequest::Batch(BatchRequest {
            memory_limit: None,
            idfile: None,
            ..batch
        })),
        to_line(&WorkRequest::Cancel { batch: 4096 }),
        to_line(&WorkRequest::End),
        to_line(&WorkReport::Ready {
            arch: Some("amd64".into()),
            distro: Some("debian-12".into()),
        }),
        to_line(&WorkReport::Ready {
            arch: None,
            distro: None,
        }),
        to_line(&WorkReport::Output {
            batch: 4096,
            stream: OutputStream::Stdout,
            data: vec![0xb3, 0x29, 0x01, 0x0c, 0x03, b'\n', 0xff],
        }),
        to_line(&WorkReport::Output {
            batch: 4096,
            stream: OutputStream::Stderr,
            data: b"Traceback (most recent call last):\n".to_vec(),
        }),
        to_line(&WorkReport::Ended {
            batch: 4096,
            exit: Some(1),
            problem: None,
        }),
        to_line(&WorkReport::Ended {
            batch: 4096,
            exit: None,
            problem: Some("killed on its memory limit".into()),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_input::exercise(&bytes);
    }

    #[test]
    fn mutated_lines_are_read_or_refused(
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let lines = real_lines();
        let mut stream: Vec<u8> =
            picks.iter().flat_map(|pick| lines[pick.index(lines.len())].clone()).collect();
        for (at, byte) in flips {
            let at = at.index(stream.len());
            stream[at] = byte;
        }
        // Streams are read at any point, so the last line may be partial.
        stream.truncate(stream.len() - cut.index(stream.len() / 4 + 1));
        fuzz_input::exercise(&stream);
    }
}

#[test]
fn real_lines_read_back() {
    let stream = real_lines().concat();
    let mut pending = stream.clone();
    let lines = take_lines(&mut pending).unwrap();
    assert!(pending.is_empty());
    assert_eq!(lines.len(), real_lines().len());
    let requests = lines
        .iter()
        .filter(|line| serde_json::from_slice::<WorkRequest>(line).is_ok())
        .count();
    let reports = lines
        .iter()
        .filter(|line| serde_json::from_slice::<WorkReport>(line).is_ok())
        .count();
    assert_eq!((requests, reports), (4, 6));
    fuzz_input::exercise(&stream);
}

#[test]
fn lines_at_the_limit() {
    // A line of exactly the limit is taken whole or in parts; one byte more is refused however it arrives.
    for extra in [0, 1] {
        let mut line = vec![b'x'; MAX_WORK_LINE + extra];
        line.push(b'\n');
        for cut in [
            0,
            1,
            MAX_WORK_LINE / 2,
            MAX_WORK_LINE,
            line.len() - 1,
            line.len(),
        ] {
            let mut pending = line[..cut].to_vec();
            let first = take_lines(&mut pending);
            pending.extend_from_slice(&line[cut..]);
            let result = first.and_then(|mut lines| {
                lines.extend(take_lines(&mut pending)?);
                Ok(lines)
            });
            if extra == 0 {
                assert_eq!(result.unwrap().len(), 1, "cut at {cut}");
                assert!(pending.is_empty());
            } else {
                // Not `expect_err`: it would print the 16 MiB of lines.
                let Err(problem) = result else {
                    panic!("a line of {} bytes taken, cut at {cut}", line.len() - 1);
                };
                assert!(problem.contains("more than"), "{problem}");
            }
        }
    }
}

#[test]
fn many_lines_in_one_read_take_linear_time() {
    // Splitting each line off the rest copied the rest: 64 Ki empty lines took 3.4 s, these would take minutes.
    let mut pending = vec![b'\n'; 1 << 18];
    pending.extend_from_slice(b"\"end\"");
    let started = std::time::Instant::now();
    let lines = take_lines(&mut pending).unwrap();
    assert_eq!((lines.len(), &pending[..]), (1 << 18, &b"\"end\""[..]));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn fuzz_regressions_replay() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (_, input) in proctor_testkit::fuzz_regressions(crate_dir, 1) {
        fuzz_input::exercise(&input);
    }
}
