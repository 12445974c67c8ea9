//! A borrowed view of an event: what consumers that do not keep events read.
//!
//! Decoding into an owned [`Event`] allocates for the test id, each tag and
//! each file chunk. A consumer that only looks at an event and moves on (a
//! summary, a filter deciding what to drop) can decode into an [`EventRef`]
//! instead, which borrows everything from the input buffer; `proctor subunit
//! stats` spends most of its time here, so this is where allocation matters.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;

use crate::number::read_number;
use crate::{Event, File, Status, Timestamp};

/// An event whose strings and file content borrow from the decoder's input
/// (or from an owned [`Event`], via [`Event::view`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The test status, if the event carries one.
    pub status: Option<Status>,
    /// The test id.
    pub test_id: Option<&'a str>,
    /// The route code.
    pub route_code: Option<&'a str>,
    /// When the event happened.
    pub timestamp: Option<Timestamp>,
    /// Whether the test is runnable.
    pub runnable: bool,
    /// The tags, possibly with duplicates when read off the wire.
    pub tags: Tags<'a>,
    /// The file content's MIME type.
    pub mime_type: Option<&'a str>,
    /// A chunk of a file attachment.
    pub file: Option<FileRef<'a>>,
    /// Whether this chunk ends its file.
    pub eof: bool,
}

/// A borrowed chunk of a file attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRef<'a> {
    /// The file's name.
    pub name: &'a str,
    /// This chunk's bytes.
    pub content: &'a [u8],
}

/// An event's tags, borrowed: either still in their wire encoding (already
/// validated) or an owned event's set.
#[derive(Clone, Copy)]
pub struct Tags<'a>(TagsRepr<'a>);

#[derive(Clone, Copy)]
enum TagsRepr<'a> {
    /// `count` length-prefixed strings, checked by the decoder.
    Encoded {
        bytes: &'a [u8],
        count: u32,
    },
    Set(&'a BTreeSet<String>),
}

impl<'a> Tags<'a> {
    /// No tags.
    pub const EMPTY: Tags<'static> = Tags(TagsRepr::Encoded {
        bytes: &[],
        count: 0,
    });

    /// Tags still in their wire encoding, which the decoder has checked.
    pub(crate) fn encoded(bytes: &'a [u8], count: u32) -> Tags<'a> {
        Tags(TagsRepr::Encoded { bytes, count })
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        match self.0 {
            TagsRepr::Encoded { count, .. } => count == 0,
            TagsRepr::Set(set) => set.is_empty(),
        }
    }

    /// The tags in stream order (sorted for an owned event's set).
    pub fn iter(&self) -> TagsIter<'a> {
        match self.0 {
            TagsRepr::Encoded { bytes, count } => {
                TagsIter(IterRepr::Encoded(EncodedTags { bytes, left: count }))
            }
            TagsRepr::Set(set) => TagsIter(IterRepr::Set(set.iter())),
        }
    }

    /// Whether these are exactly the tags in `set`, duplicates aside.
    pub fn same_as(&self, set: &BTreeSet<String>) -> bool {
        match self.0 {
            TagsRepr::Set(own) => own == set,
            // Comparing bytes skips re-validating UTF-8; tag sets are small.
            TagsRepr::Encoded { bytes, count } => {
                let tags = || EncodedTags { bytes, left: count };
                if count == 1 && set.len() == 1 {
                    // The usual case: one tag, unchanged.
                    return tags().eq(set.iter().map(String::as_bytes));
                }
                tags().all(|tag| set.iter().any(|own| own.as_bytes() == tag))
                    && set
                        .iter()
                        .all(|own| tags().any(|tag| own.as_bytes() == tag))
            }
        }
    }

    /// The tags as an owned set.
    pub fn to_set(&self) -> BTreeSet<String> {
        match self.0 {
            TagsRepr::Set(set) => set.clone(),
            TagsRepr::Encoded { .. } => {
                // Inserting one by one: collecting sorts through a Vec first,
                // which costs more than the usual one or two tags.
                let mut set = BTreeSet::new();
                for tag in self.iter() {
                    if !set.contains(tag) {
                        set.insert(tag.to_owned());
                    }
                }
                set
            }
        }
    }
}

impl PartialEq for Tags<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().collect::<BTreeSet<_>>() == other.iter().collect::<BTreeSet<_>>()
    }
}

impl Eq for Tags<'_> {}

impl fmt::Debug for Tags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// An iterator over [`Tags`].
pub struct TagsIter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Encoded(EncodedTags<'a>),
    Set(std::collections::btree_set::Iter<'a, String>),
}

impl<'a> Iterator for TagsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match &mut self.0 {
            IterRepr::Set(iter) => iter.next().map(String::as_str),
            // The decoder checked these bytes; a failure here would only end
            // the iteration early.
            IterRepr::Encoded(tags) => std::str::from_utf8(tags.next()?).ok(),
        }
    }
}

/// Encoded tags' bytes, one tag at a time.
struct EncodedTags<'a> {
    bytes: &'a [u8],
    left: u32,
}

impl<'a> Iterator for EncodedTags<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (length, size) = read_number(self.bytes)?;
        let (tag, rest) = self.bytes.get(size..)?.split_at_checked(length as usize)?;
        self.bytes = rest;
        self.left -= 1;
        Some(tag)
    }
}

impl<'a> EventRef<'a> {
    /// The owned event, copying what it borrows.
    pub fn to_event(&self) -> Event {
        Event {
            status: self.status,
            test_id: self.test_id.map(str::to_owned),
            route_code: self.route_code.map(str::to_owned),
            timestamp: self.timestamp,
            runnable: self.runnable,
            tags: self.tags.to_set(),
            mime_type: self.mime_type.map(str::to_owned),
            file: self.file.map(|file| File {
                name: file.name.to_owned(),
                content: Bytes::copy_from_slice(file.content),
            }),
            eof: self.eof,
        }
    }
}

impl Event {
    /// This event, borrowed.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            status: self.status,
            test_id: self.test_id.as_deref(),
            route_code: self.route_code.as_deref(),
            timestamp: self.timestamp,
            runnable: self.runnable,
            tags: Tags(TagsRepr::Set(&self.tags)),
            mime_type: self.mime_type.as_deref(),
            file: self.file.as_ref().map(|file| FileRef {
                name: &file.name,
                content: &file.content,
            }),
            eof: self.eof,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_round_trips() {
        let event = Event::text(Some("t".into()), "log", "hello")
            .tagged("b")
            .tagged("a")
            .routed("0");
        let view = event.view();
        assert_eq!(view.to_event(), event);
        assert_eq!(view.tags.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(view.tags.same_as(&event.tags));
    }

    #[test]
    fn encoded_tags_compare_as_sets() {
        // "b", "a", "b" as the wire has them.
        let bytes = [1, b'b', 1, b'a', 1, b'b'];
        let tags = Tags::encoded(&bytes, 3);
        assert_eq!(tags.iter().collect::<Vec<_>>(), ["b", "a", "b"]);
        let set: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        assert!(tags.same_as(&set));
        assert!(!tags.same_as(&BTreeSet::from(["a".to_owned()])));
        assert_eq!(tags.to_set(), set);
        assert_eq!(tags, Tags(TagsRepr::Set(&set)));
        assert!(Tags::EMPTY.is_empty() && !tags.is_empty());
    }
}
