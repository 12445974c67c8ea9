//! The subunit v2 wire format, as python-subunit writes and reads it.
//!
//! This crate is the bottom layer of Proctor: it turns bytes into [`Event`]s and
//! back, exactly as `../shared/SUBUNIT_V2.md` specifies. Decoding is incremental
//! (an event is available as soon as its packet has arrived), never panics, and
//! turns anything that is not a valid packet into events instead of dropping it:
//! non-subunit bytes become `stdout` file events and a malformed packet becomes
//! the reference implementation's two `subunit.parser` events.
//!
//! - [`EventReader`] decodes from any [`std::io::Read`].
//! - [`SubunitCodec`] (feature `tokio`) decodes and encodes on async streams via
//!   `tokio_util::codec`.
//! - [`EventWriter`] and [`encode`] write packets in their shortest form.
//! - [`Decoder`] is the I/O-free core both readers share.

#[cfg(feature = "tokio")]
mod codec;
mod decode;
mod encode;
mod event;
mod event_ref;
mod number;
mod read;
mod utf8;

#[cfg(feature = "tokio")]
pub use codec::SubunitCodec;
pub use decode::{Decoded, DecodedRef, Decoder, PARSER_TEST_ID};
pub use encode::{encode, EncodeError, EventWriter};
pub use event::{Event, File, Status, Timestamp, UnknownStatus};
pub use event_ref::{EventRef, FileRef, Tags, TagsIter};
pub use read::EventReader;

/// The byte every packet starts with.
pub const SIGNATURE: u8 = 0xB3;
/// The largest packet the format allows (the biggest 3-byte length).
pub const MAX_PACKET_SIZE: usize = 4_194_303;
/// The largest value a variable-length number can hold.
pub const MAX_NUMBER: u32 = (1 << 30) - 1;
/// The largest file chunk [`Event::file_chunks`] puts in one packet, leaving room
/// for the other fields under [`MAX_PACKET_SIZE`].
pub const MAX_CHUNK_SIZE: usize = 4_000_000;
