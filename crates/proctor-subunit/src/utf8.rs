//! The reference reader's UTF-8 tracking for non-subunit text.
//!
//! python-subunit feeds each non-packet byte to an incremental UTF-8 decoder
//! and treats `0xB3` as a packet start only when that decoder is not in the
//! middle of a character, so the `b3` in "ó" (`c3 b3`) stays text. Its decoder
//! keeps its partial character when a byte is invalid (the exception skips the
//! buffer update), and this tracker reproduces that too. It also takes a
//! surrogate's first two bytes (`ed a0`..`ed bf`) at the end of its input as
//! an incomplete character, not an error (see [`truncated_surrogate`]).

/// Whether `rest`, the undecodable end of some bytes, is the start of a UTF-16
/// surrogate (U+D800..U+DFFF). CPython's UTF-8 decoder, when not told the
/// input is final, reports it as incomplete where Rust (and the standard)
/// call it invalid; no byte can complete it, so the next one is an error.
pub(crate) fn truncated_surrogate(rest: &[u8]) -> bool {
    matches!(rest, [0xED, 0xA0..=0xBF])
}

/// Where the reference's incremental decoder is within a character.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Utf8Tracker {
    pending: [u8; 4],
    pending_len: u8,
    mid_character: bool,
}

impl Utf8Tracker {
    /// Whether a `0xB3` seen now would be part of a character, not a packet.
    pub(crate) fn mid_character(&self) -> bool {
        self.mid_character
    }

    /// Feeds one byte of text.
    pub(crate) fn feed(&mut self, byte: u8) {
        if self.pending_len == 0 && byte < 0x80 {
            self.mid_character = false;
            return;
        }
        let len = usize::from(self.pending_len);
        let mut data = self.pending;
        data[len] = byte;
        match std::str::from_utf8(&data[..=len]) {
            Ok(_) => {
                self.pending_len = 0;
                self.mid_character = false;
            }
            Err(error)
                if (error.error_len().is_none() && len + 1 < 4)
                    || truncated_surrogate(&data[..=len]) =>
            {
                self.pending = data;
                self.pending_len += 1;
                self.mid_character = true;
            }
            Err(_) => self.mid_character = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid_after(bytes: &[u8]) -> bool {
        let mut tracker = Utf8Tracker::default();
        bytes.iter().for_each(|&b| tracker.feed(b));
        tracker.mid_character()
    }

    #[test]
    fn tracks_characters() {
        assert!(!mid_after(b"abc"));
        assert!(mid_after(&[0xc3]));
        assert!(!mid_after(&[0xc3, 0xb3]));
        assert!(mid_after(&[0xe2, 0x82]));
        assert!(!mid_after(&[0xe2, 0x82, 0xac]));
        // A stray continuation byte is an error, not the middle of a character.
        assert!(!mid_after(&[0xb3]));
    }

    #[test]
    fn a_truncated_surrogate_is_mid_character_then_stuck() {
        // As CPython: "ed a0" is incomplete, so a b3 after it is text...
        assert!(mid_after(&[0xed, 0xa0]));
        assert!(!mid_after(&[0xed, 0x80, 0x80]));
        // ...and then every byte is an error, "ó" included.
        assert!(!mid_after(&[0xed, 0xa0, 0xb3, 0xc3]));
        assert!(!mid_after(&[0xed, 0xa0, 0xb3, b'a', 0xc3]));
    }

    #[test]
    fn keeps_partial_character_after_an_error() {
        // c3 41: error, but c3 stays buffered, so a9 then completes "é".
        let mut tracker = Utf8Tracker::default();
        for b in [0xc3, 0x41] {
            tracker.feed(b);
        }
        assert!(!tracker.mid_character());
        tracker.feed(0xa9);
        assert!(!tracker.mid_character());
        assert_eq!(tracker.pending_len, 0);
    }
}
