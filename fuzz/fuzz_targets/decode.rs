//! Any bytes, decoded every way the crate offers (Decoder over the whole
//! input at end of stream, Decoder fed in pieces, EventReader over short
//! reads, SubunitCodec as FramedRead drives it), with every step's
//! invariants checked and all four required to agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-subunit/tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    // The read sizes come from the input too, so libFuzzer can steer them.
    let seed = data
        .iter()
        .fold(0xCBF4_3926u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    support::check(data, seed);
});
