//! Variable-length numbers: 1 to 4 bytes, the size in the top two bits.

use crate::MAX_NUMBER;

/// Appends `value` in its shortest form. The caller has checked
/// `value <= MAX_NUMBER`.
pub(crate) fn write_number(value: u32, out: &mut Vec<u8>) {
    debug_assert!(value <= MAX_NUMBER);
    match value {
        0..=0x3F => out.push(value as u8),
        0x40..=0x3FFF => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3F_FFFF => {
            let bytes = (value | 0x80_0000).to_be_bytes();
            out.extend_from_slice(&bytes[1..]);
        }
        _ => out.extend_from_slice(&(value | 0xC000_0000).to_be_bytes()),
    }
}

/// The number of bytes the shortest form of `value` takes.
#[cfg(test)]
pub(crate) fn number_size(value: u32) -> usize {
    match value {
        0..=0x3F => 1,
        0x40..=0x3FFF => 2,
        0x4000..=0x3F_FFFF => 3,
        _ => 4,
    }
}

/// How many bytes a number takes, from its first byte.
pub(crate) fn encoded_size(first: u8) -> usize {
    usize::from(first >> 6) + 1
}

/// Reads a number at the start of `bytes`: its value and size, or `None` when
/// `bytes` ends first.
pub(crate) fn read_number(bytes: &[u8]) -> Option<(u32, usize)> {
    let first = *bytes.first()?;
    let size = encoded_size(first);
    let rest = bytes.get(1..size)?;
    let value = rest
        .iter()
        .fold(u32::from(first & 0x3F), |acc, &b| (acc << 8) | u32::from(b));
    Some((value, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors from SUBUNIT_V2.md.
    const VECTORS: &[(u32, &[u8])] = &[
        (0, &[0x00]),
        (63, &[0x3f]),
        (64, &[0x40, 0x40]),
        (16383, &[0x7f, 0xff]),
        (16384, &[0x80, 0x40, 0x00]),
        (4194303, &[0xbf, 0xff, 0xff]),
        (4194304, &[0xc0, 0x40, 0x00, 0x00]),
        (MAX_NUMBER, &[0xff, 0xff, 0xff, 0xff]),
    ];

    #[test]
    fn writes_shortest_form() {
        for &(value, bytes) in VECTORS {
            let mut out = Vec::new();
            write_number(value, &mut out);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(number_size(value), bytes.len());
        }
    }

    #[test]
    fn reads_every_form() {
        for &(value, bytes) in VECTORS {
            assert_eq!(read_number(bytes), Some((value, bytes.len())));
        }
        // Longer forms than needed are accepted, as the reference does.
        assert_eq!(read_number(&[0x40, 0x05]), Some((5, 2)));
        assert_eq!(read_number(&[0x80, 0x00]), None);
        assert_eq!(read_number(&[]), None);
    }
}
