//! Property tests: the codec round-trips every valid event, and no input —
//! random, structured or mutated — makes it panic, loop, lose a byte or
//! allocate more than the format allows.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use proctor_subunit::{
    encode, Decoded, Decoder, Event, EventReader, File, Status, Timestamp, MAX_PACKET_SIZE,
};
use proptest::prelude::*;
use support::{check, decode_whole, is_parser_event, XorShift};

// ---------------------------------------------------------------------------
// Allocation tracking: a global allocator that counts, per thread, the bytes
// live and the largest single request, so a test can bound what decoding a
// given input allocates while other tests run on other threads.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as isize;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

fn note_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as isize));
}

// SAFETY: defers every operation to `System` unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        note_dealloc(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `f` allocated on this thread: (peak bytes live above the starting
/// level, largest single allocation).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    LARGEST.with(|largest| largest.set(0));
    let value = f();
    let peak = (PEAK.with(Cell::get) - base).max(0) as usize;
    (value, peak, LARGEST.with(Cell::get))
}

/// Bounds what decoding `input` may allocate. The [`Decoder`] holds no
/// buffer: each event copies at most the bytes it consumed, plus small
/// fixed costs (names, messages, tag-set nodes, which are at worst a few
/// dozen bytes per input byte for a packet full of one-byte tags). The
/// [`EventReader`] adds its buffer: one read beyond a packet, and never more
/// than a maximal packet, whatever length a packet claims.
fn assert_bounded_allocation(input: &[u8]) {
    let n = input.len();
    let ((), peak, largest) = measure(|| {
        let mut decoder = Decoder::new();
        let mut rest = input;
        while let Decoded::Event { event, consumed } = decoder.decode(rest, true) {
            drop(event);
            rest = &rest[consumed..];
        }
    });
    assert!(
        largest <= n + 1024,
        "Decoder allocated {largest} at once for {n} bytes"
    );
    assert!(
        peak <= 64 * n + 4096,
        "Decoder peaked at {peak} bytes for {n} bytes"
    );

    let ((), peak, largest) = measure(|| {
        for event in EventReader::new(support::ChunkedReader::new(input, n as u64)) {
            drop(event.expect("reads"));
        }
    });
    let buffer_bound = MAX_PACKET_SIZE + 64 * 1024;
    assert!(
        largest <= buffer_bound,
        "EventReader allocated {largest} at once"
    );
    assert!(
        peak <= 2 * buffer_bound + 64 * n,
        "EventReader peaked at {peak} bytes for {n} bytes"
    );
}

// ---------------------------------------------------------------------------
// Strategies.

fn string() -> impl Strategy<Value = String> {
    // Any characters but NUL; sometimes long enough for a 2-byte length.
    prop_oneof![
        8 => "[^\u{0}]{0,12}",
        1 => "[^\u{0}]{60,80}",
    ]
}

fn status() -> impl Strategy<Value = Option<Status>> {
    prop::option::of(prop::sample::select(Status::ALL.to_vec()))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<u32>(), 0u32..1_000_000_000).prop_map(|(seconds, nanos)| Timestamp::new(seconds, nanos))
}

fn content() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..4096).prop_map(Bytes::from),
        // Across the 2-byte/3-byte length boundary (16 383).
        1 => (16_300usize..16_500, any::<u8>()).prop_map(|(n, b)| Bytes::from(vec![b; n])),
    ]
}

fn file() -> impl Strategy<Value = File> {
    (string(), content()).prop_map(|(name, content)| File { name, content })
}

prop_compose! {
    fn event()(
        status in status(),
        test_id in prop::option::of(string()),
        route_code in prop::option::of(string()),
        timestamp in prop::option::of(timestamp()),
        runnable in any::<bool>(),
        tags in prop::collection::btree_set(string(), 0..5),
        mime_type in prop::option::of(string()),
        file in prop::option::of(file()),
        eof in any::<bool>(),
    ) -> Event {
        Event { status, test_id, route_code, timestamp, runnable, tags, mime_type, file, eof }
    }
}

fn encoded(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    encode(event, &mut out).expect("valid events encode");
    out
}

/// Bytes that are mostly stream-shaped: valid packets, text, and packets
/// damaged the ways streams get damaged, in any order.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        3 => event().prop_map(|e| encoded(&e)),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "[^\u{0}]{0,40}\n".prop_map(String::into_bytes),
        2 => (event(), any::<usize>(), any::<u8>()).prop_map(|(e, at, xor)| {
            let mut packet = encoded(&e);
            let at = at % packet.len();
            packet[at] ^= xor.max(1);
            packet
        }),
        1 => (event(), any::<usize>()).prop_map(|(e, cut)| {
            let packet = encoded(&e);
            packet[..cut % packet.len()].to_vec()
        }),
    ];
    prop::collection::vec(segment, 0..8).prop_map(|segments| segments.concat())
}

// ---------------------------------------------------------------------------
// (a) Round trips.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_valid_event_round_trips(event in event()) {
        let packet = encoded(&event);
        prop_assert!(packet.len() <= MAX_PACKET_SIZE);
        let mut decoder = Decoder::new();
        match decoder.decode(&packet, false) {
            Decoded::Event { event: decoded, consumed } => {
                prop_assert_eq!(consumed, packet.len());
                prop_assert_eq!(decoded, event.clone());
            }
            other => prop_assert!(false, "{:?}", other),
        }
        // Every shorter prefix asks for more, never decodes early.
        for cut in [1, 5, 6, packet.len() / 2, packet.len() - 1] {
            match Decoder::new().decode(&packet[..cut.min(packet.len() - 1)], false) {
                Decoded::NeedMore { at_least } => {
                    prop_assert!(at_least > cut.min(packet.len() - 1));
                    prop_assert!(at_least <= packet.len());
                }
                other => prop_assert!(false, "prefix {}: {:?}", cut, other),
            }
        }
        // Appending to a non-empty buffer writes the same packet.
        let mut appended = vec![0xAA; 7];
        encode(&event, &mut appended).expect("encodes");
        prop_assert_eq!(&appended[7..], &packet[..]);
    }

    #[test]
    fn event_sequences_round_trip_through_short_reads(
        events in prop::collection::vec(event(), 0..16),
        seed in any::<u64>(),
    ) {
        let mut stream = Vec::new();
        for event in &events {
            encode(event, &mut stream).expect("encodes");
        }
        let read: Vec<Event> = EventReader::new(support::ChunkedReader::new(&stream, seed))
            .collect::<std::io::Result<_>>()
            .expect("reads");
        prop_assert_eq!(&read, &events);
        // And every other way of decoding agrees, byte for byte.
        let checked = check(&stream, seed);
        prop_assert_eq!(checked, events);
    }
}

// ---------------------------------------------------------------------------
// (b) Arbitrary input.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn arbitrary_bytes_decode_safely(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        seed in any::<u64>(),
    ) {
        check(&input, seed);
    }

    #[test]
    fn signature_heavy_bytes_decode_safely(
        input in prop::collection::vec(prop_oneof![
            4 => Just(0xB3u8),
            1 => Just(0x20u8),
            1 => Just(0x0Au8),
            1 => Just(0xC3u8),
            4 => any::<u8>(),
        ], 0..512),
        seed in any::<u64>(),
    ) {
        check(&input, seed);
    }

    #[test]
    fn damaged_streams_decode_safely(input in stream_bytes(), seed in any::<u64>()) {
        check(&input, seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoding_allocates_no_more_than_the_input_allows(input in stream_bytes()) {
        assert_bounded_allocation(&input);
    }
}

/// Packets that claim far more than they hold: the largest length, a 4-byte
/// length, 2^30 tags, a 2^30-byte string and file. None may allocate by the
/// claim.
#[test]
fn claims_are_not_trusted() {
    let with_crc = |mut body: Vec<u8>| {
        let crc = crc32fast_hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        body
    };
    let cases: Vec<Vec<u8>> = vec![
        // Length 4 194 303, six bytes present.
        vec![0xB3, 0x20, 0x00, 0xBF, 0xFF, 0xFF],
        // 4-byte length.
        vec![0xB3, 0x20, 0x00, 0xFF, 0xFF, 0xFF, 0xFF],
        // Tags: count 2^30-1, then nothing.
        with_crc(vec![0xB3, 0x20, 0x80, 0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
        // Tags: count 2^30-1, then many one-byte tags.
        with_crc({
            let mut p = vec![0xB3, 0x20, 0x80, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
            for i in 0..8200u32 {
                p.extend_from_slice(&[1, b'a' + (i % 26) as u8]);
            }
            p.truncate(16_383 - 4);
            p
        }),
        // Test id claiming 2^30-1 bytes.
        with_crc(vec![0xB3, 0x28, 0x00, 0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
        // File content claiming 2^30-1 bytes.
        with_crc(vec![0xB3, 0x20, 0x40, 0x0D, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]),
        // Timestamp nanos in 4-byte form, cut short.
        with_crc(vec![0xB3, 0x22, 0x00, 0x0E, 0, 0, 0, 1, 0xFF, 0xFF]),
    ];
    for input in &cases {
        let events = check(input, 7);
        assert!(!events.is_empty());
        assert_bounded_allocation(input);
    }
    // The 2^30-tag packet holds 1 byte per tag count's claim: its tags end
    // early, so it is malformed.
    let events = decode_whole(&cases[3]);
    assert!(is_parser_event(&events[0]), "{:?}", events[0].file);
}

fn crc32fast_hash(bytes: &[u8]) -> u32 {
    // The IEEE CRC-32 written out, so this test does not share the codec's
    // dependency for the value it checks.
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc_matches_the_check_value() {
    assert_eq!(crc32fast_hash(b"123456789"), 0xCBF4_3926);
}

/// Text with no packets is passed on in chunks of at most 1 MiB, so a stream
/// of text never grows a buffer; and it is never lost.
#[test]
fn long_text_is_chunked() {
    let text: Vec<u8> = (0..(2 << 20) + 17)
        .map(|i| b"abc\xC3\xB3\n"[i % 6])
        .collect();
    let events = decode_whole(&text);
    assert_eq!(events.len(), 3);
    let joined: Vec<u8> = events
        .iter()
        .flat_map(|e| e.file.as_ref().expect("text").content.to_vec())
        .collect();
    assert_eq!(joined, text);
}

/// Encoding appends: a large chunk after earlier packets in the same buffer
/// must not be mistaken for an oversized packet.
#[test]
fn large_chunks_append_to_a_full_buffer() {
    let mut out = vec![0; 300_000];
    let event = Event::file(None, "big", vec![b'x'; 4_000_000], true);
    encode(&event, &mut out).expect("a 4 MB chunk fits in a packet wherever it is written");
    let (decoded, consumed) = support::decode_one(&out[300_000..]);
    assert_eq!(consumed, out.len() - 300_000);
    assert_eq!(decoded, event);
}

/// A maximal packet read in small pieces: the reader's buffer grows to one
/// packet plus one read, not to twice that.
#[test]
fn a_maximal_packet_is_buffered_once() {
    let mut event = Event::file(Some("t".into()), "f", Vec::new(), true);
    let overhead = encoded(&event).len();
    event.file = Some(File {
        name: "f".into(),
        // A 3-byte length and a 3-byte content size, 2 bytes more each.
        content: Bytes::from(vec![b'x'; MAX_PACKET_SIZE - overhead - 4]),
    });
    let packet = encoded(&event);
    assert_eq!(packet.len(), MAX_PACKET_SIZE);

    /// Reads of at most 4 KiB, like a pipe.
    struct Pipe<'a>(&'a [u8]);
    impl std::io::Read for Pipe<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(4096);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let (events, peak, largest) = measure(|| {
        EventReader::new(Pipe(&packet))
            .collect::<std::io::Result<Vec<Event>>>()
            .expect("reads")
    });
    assert_eq!(events, vec![event]);
    let buffer_bound = MAX_PACKET_SIZE + 64 * 1024;
    assert!(largest <= buffer_bound, "largest allocation {largest}");
    // The buffer and the event's copy of the content.
    assert!(peak <= buffer_bound + MAX_PACKET_SIZE + 4096, "peak {peak}");
}

// ---------------------------------------------------------------------------
// (c) Mutations of a realistic stream.

/// Five tests as a runner reports them: inprogress then a final status, with
/// tags, timestamps, a route code, and one failure's traceback attachment,
/// with a line of stray text in the middle.
fn five_test_stream() -> Vec<u8> {
    let mut stream = Vec::new();
    let finals = [
        Status::Success,
        Status::Fail,
        Status::Success,
        Status::Skip,
        Status::XFail,
    ];
    for (i, status) in finals.into_iter().enumerate() {
        let id = format!("pkg.module.Test.test_{i}");
        let start = Timestamp::new(1_704_164_645 + i as u32, 678_901_000);
        let end = Timestamp::new(1_704_164_645 + i as u32, 999_000_123);
        let started = Event::test(id.clone(), Status::InProgress)
            .at(start)
            .tagged("worker-0")
            .routed("0");
        encode(&started, &mut stream).expect("encodes");
        if i == 2 {
            stream.extend_from_slice("stray output: ó\n".as_bytes());
        }
        let mut finished = Event::test(id.clone(), status)
            .at(end)
            .tagged("worker-0")
            .tagged("slow")
            .routed("0");
        if status == Status::Fail {
            finished.file = Some(File {
                name: "traceback".into(),
                content: Bytes::from_static(
                    b"Traceback (most recent call last):\n  File \"t.py\", line 3\nAssertionError: boom\n",
                ),
            });
            finished.mime_type = Some("text/plain;charset=utf8".into());
            finished.eof = true;
        }
        encode(&finished, &mut stream).expect("encodes");
    }
    stream
}

fn mutate(stream: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut data = stream.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = data.len();
        match rng.below(6) {
            0 | 1 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.byte();
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(4);
                let bytes: Vec<u8> = (0..count).map(|_| rng.byte()).collect();
                data.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(8)).min(len);
                data.drain(at..end);
            }
            _ => {
                let cut = rng.below(len + 1);
                data.truncate(cut);
            }
        }
    }
    data
}

/// The mutation test: 200 000 mutated streams (20 000 in debug
/// builds, where `cargo test` runs and each decode is ~10x slower), each
/// decoded with every check; every event must re-encode or be a parser
/// event.
#[test]
fn mutated_streams_never_panic() {
    let stream = five_test_stream();
    let clean = check(&stream, 0);
    assert_eq!(clean.len(), 11, "ten statuses and one text line");
    assert!(clean.iter().all(|e| !is_parser_event(e)));

    let count = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let mut rng = XorShift::new(0x05EE_D5B3);
    let started = Instant::now();
    let mut parser_errors = 0usize;
    let mut events = 0usize;
    for i in 0..count {
        let mutated = mutate(&stream, &mut rng);
        // The full five-way check on some; the whole-input decode (which
        // re-encodes every event) on all.
        let decoded = if i % 16 == 0 {
            check(&mutated, i as u64)
        } else {
            decode_whole(&mutated)
        };
        events += decoded.len();
        parser_errors += decoded.iter().filter(|e| is_parser_event(e)).count();
    }
    // The mutations must actually hit the parser's error paths.
    assert!(
        parser_errors > count / 2,
        "only {parser_errors} parser events"
    );
    eprintln!(
        "{count} mutations, {events} events, {parser_errors} parser events in {:?}",
        started.elapsed()
    );
}

#[test]
fn tags_are_a_set() {
    let mut tags = BTreeSet::new();
    tags.insert("b".to_owned());
    tags.insert("a".to_owned());
    let event = Event {
        tags,
        ..Event::test("t", Status::Success)
    };
    // Written sorted, read back as the same set.
    let packet = encoded(&event);
    assert_eq!(decode_whole(&packet), vec![event]);
}
