//! Every event decoded from any bytes re-encodes (parser events excepted,
//! when too large) and decodes again to itself; and the re-encoded events,
//! as one stream, decode to the same events through every decoding path.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proctor-subunit/tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    support::check_round_trip(data);
});
