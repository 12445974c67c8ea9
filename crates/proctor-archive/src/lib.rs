//! The tar.gz bundles a lab job moves, with one set of rules for every side: attachments are packed by the
//! submitter, checked by the server and unpacked by the agent; artifacts are packed by the agent, checked by the
//! server and unpacked by the client.
//!
//! What a bundle may expand to is capped ([`Limits`]): its files' total size and its number of entries, checked
//! from each entry's header before its content is read, so a small bundle of zeros that would expand to gigabytes is
//! refused after reading its headers, on every side (accept, and every unpack, so a bundle stored before a cap
//! existed cannot blow up later either).
//!
//! Only regular files and directories travel, under relative paths without `..`: nothing in a bundle can land
//! outside the directory it is unpacked into, and a symbolic link cannot carry a file from elsewhere on the packing
//! machine (links are left out when packing and refused when checking or unpacking).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use proctor_job::{InsidePath, Phase};
use tar::{Archive, Builder, Entry, EntryType};

/// What went wrong with a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bytes are not a readable tar.gz.
    #[error("not a readable tar.gz: {0}")]
    Unreadable(#[source] io::Error),
    /// An entry breaks the rules; nothing after it was looked at.
    #[error("archive entry {entry:?} is refused: {reason}")]
    Refused {
        /// The entry's path as stored.
        entry: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The bundle expands past one of its [`Limits`]; nothing past the entry that crossed it was read.
    #[error("the bundle {what} past the cap of {cap} {unit}")]
    OverLimit {
        /// What crossed the cap: `expands`, `holds more entries`.
        what: &'static str,
        /// The cap.
        cap: u64,
        /// Its unit: bytes or entries.
        unit: &'static str,
    },
    /// Packing grew past the cap.
    #[error("the packed bundle is larger than the {cap}-byte cap")]
    OverCap {
        /// The cap, in bytes of tar.gz.
        cap: u64,
    },
    /// A file could not be read or written.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// What a bundle may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes its files may hold in all, unpacked.
    pub expanded_bytes: u64,
    /// The most entries (files and directories) it may hold.
    pub entries: u64,
}

impl Limits {
    /// The defaults for a job's artifacts: 4 GiB unpacked, 100 000 entries.
    pub const ARTIFACTS: Limits = Limits {
        expanded_bytes: 4 << 30,
        entries: 100_000,
    };
    /// The defaults for a job's attachments, unpacked on the machine under test: 1 GiB, 100 000 entries.
    pub const ATTACHMENTS: Limits = Limits {
        expanded_bytes: 1 << 30,
        entries: 100_000,
    };
}

/// How far a bundle got against its [`Limits`] so far.
struct Tally {
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Tally {
    fn new(limits: Limits) -> Tally {
        Tally {
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    /// Counts an entry of `size` bytes (as its header says, which is what unpacking it writes), refusing the one
    /// that crosses a limit before any of its content is read.
    fn count(&mut self, size: u64) -> Result<(), ArchiveError> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.entries > self.limits.entries {
            return Err(ArchiveError::OverLimit {
                what: "holds more entries",
                cap: self.limits.entries,
                unit: "entries",
            });
        }
        if self.bytes > self.limits.expanded_bytes {
            return Err(ArchiveError::OverLimit {
                what: "expands",
                cap: self.limits.expanded_bytes,
                unit: "bytes",
            });
        }
        Ok(())
    }
}

/// The most bytes read after the tar's end (its zero blocks and padding) while looking for trailing garbage: real
/// archives have at most a few blocks there, and a stream of zeros after the end must not be decompressed forever.
const TRAILER_CAP: u64 = 1 << 20;

/// How a bundle's paths are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Attachments: every file sits under a phase's directory (`test/data.txt`).
    UnderPhases,
    /// Artifacts: any relative layout.
    Any,
}

/// Reads a whole bundle and checks every entry against the rules and `limits`, writing nothing.
pub fn check(tar_gz: &[u8], layout: Layout, limits: Limits) -> Result<(), ArchiveError> {
    let mut archive = Archive::new(GzDecoder::new(tar_gz));
    let mut tally = Tally::new(limits);
    for entry in archive.entries().map_err(ArchiveError::Unreadable)? {
        let entry = entry.map_err(ArchiveError::Unreadable)?;
        if check_entry(&entry, layout)? {
            tally.count(entry.size())?;
        }
    }
    // A truncated or trailing-garbage gzip only shows once the rest is read.
    let trailer = io::copy(
        &mut archive.into_inner().take(TRAILER_CAP + 1),
        &mut io::sink(),
    )
    .map_err(ArchiveError::Unreadable)?;
    if trailer > TRAILER_CAP {
        return Err(ArchiveError::Unreadable(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {TRAILER_CAP} bytes follow the end of the archive"),
        )));
    }
    Ok(())
}

/// Unpacks a bundle into `destination` (made if missing), checking each entry against the rules and `limits` before
/// it is written; stops at the first refused entry (what came before it stays written).
pub fn unpack(
    tar_gz: impl Read,
    destination: &Path,
    layout: Layout,
    limits: Limits,
) -> Result<(), ArchiveError> {
    fs::create_dir_all(destination).map_err(|source| ArchiveError::Io {
        what: "create",
        path: destination.to_owned(),
        source,
    })?;
    let mut archive = Archive::new(GzDecoder::new(tar_gz));
    let mut tally = Tally::new(limits);
    for entry in archive.entries().map_err(ArchiveError::Unreadable)? {
        let mut entry = entry.map_err(ArchiveError::Unreadable)?;
        if !check_entry(&entry, layout)? {
            continue;
        }
        tally.count(entry.size())?;
        let unpacked = entry
            .unpack_in(destination)
            .map_err(|source| ArchiveError::Io {
                what: "unpack into",
                path: destination.to_owned(),
                source,
            })?;
        if !unpacked {
            return Err(refused(
                &entry_name(&entry),
                "it leads outside the destination",
            ));
        }
    }
    Ok(())
}

/// A directory packed by [`pack_directory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The tar.gz.
    pub bytes: Vec<u8>,
    /// Entries left out because they are neither files nor directories (links, sockets, devices), relative to the
    /// packed directory.
    pub skipped: Vec<PathBuf>,
}

/// Packs the files and directories under `directory` into a tar.gz of at most `cap` bytes, paths relative to it;
/// `None` when the directory is missing or empty. Links and special files are left out and listed.
pub fn pack_directory(directory: &Path, cap: u64) -> Result<Option<Packed>, ArchiveError> {
    pack_tree(directory, Path::new(""), &[], cap)
}

/// Packs `directory` as [`pack_directory`] does, its entries under `under` in the bundle (`test/tree` for an
/// attachment), leaving out the top-level entries named in `leave_out` (a checkout's `.git`).
pub fn pack_tree(
    directory: &Path,
    under: &Path,
    leave_out: &[&str],
    cap: u64,
) -> Result<Option<Packed>, ArchiveError> {
    let mut packer = Packer::new(cap);
    let mut skipped = Vec::new();
    let mut pending = vec![PathBuf::new()];
    let mut any = false;
    while let Some(relative) = pending.pop() {
        let listing = match fs::read_dir(directory.join(&relative)) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound && !any => return Ok(None),
            Err(source) => return Err(read_error(&directory.join(&relative), source)),
        };
        let mut names: Vec<_> = listing
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|source| read_error(&directory.join(&relative), source))?;
        names.sort();
        let top = relative.as_os_str().is_empty();
        names.retain(|name| !(top && leave_out.iter().any(|left| name.as_os_str() == *left)));
        for name in names {
            any = true;
            let inside = relative.join(name);
            let path = directory.join(&inside);
            let kind = fs::symlink_metadata(&path)
                .map_err(|source| read_error(&path, source))?
                .file_type();
            if kind.is_dir() {
                packer.add(&path, &under.join(&inside))?;
                pending.push(inside);
            } else if kind.is_file() {
                packer.add(&path, &under.join(&inside))?;
            } else {
                skipped.push(inside);
            }
        }
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(Packed {
        bytes: packer.finish()?,
        skipped,
    }))
}

/// Packs files and whole directories under the names given (`(source, name in the bundle)`), following links the
/// way a user naming a file expects.
pub fn pack_paths(entries: &[(PathBuf, PathBuf)]) -> Result<Vec<u8>, ArchiveError> {
    let mut packer = Packer::new(u64::MAX);
    packer.builder.follow_symlinks(true);
    for (source, name) in entries {
        let packed = if source.is_dir() {
            packer.builder.append_dir_all(name, source)
        } else {
            packer.builder.append_path_with_name(source, name)
        };
        packed.map_err(|error| packing_error(source, error))?;
    }
    packer.finish()
}

/// A tar.gz being written into a capped buffer.
struct Packer {
    builder: Builder<GzEncoder<CappedBuffer>>,
    cap: u64,
}

impl Packer {
    fn new(cap: u64) -> Self {
        let buffer = CappedBuffer {
            bytes: Vec::new(),
            cap,
        };
        let mut builder = Builder::new(GzEncoder::new(buffer, Compression::default()));
        builder.follow_symlinks(false);
        Packer { builder, cap }
    }

    /// Adds one file or directory (not its contents) at `name`.
    fn add(&mut self, path: &Path, name: &Path) -> Result<(), ArchiveError> {
        let cap = self.cap;
        self.builder
            .append_path_with_name(path, name)
            .map_err(|error| {
                over_cap(error, cap).unwrap_or_else(|error| packing_error(path, error))
            })
    }

    fn finish(self) -> Result<Vec<u8>, ArchiveError> {
        let cap = self.cap;
        self.builder
            .into_inner()
            .and_then(GzEncoder::finish)
            .map(|buffer| buffer.bytes)
            .map_err(|error| {
                over_cap(error, cap).unwrap_or_else(|source| ArchiveError::Io {
                    what: "finish the bundle",
                    path: PathBuf::new(),
                    source,
                })
            })
    }
}

/// A buffer that refuses to grow past its cap, so an oversized directory stops packing early.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: u64,
}

impl Write for CappedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if (self.bytes.len() + bytes.len()) as u64 > self.cap {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "over the cap"));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The cap error when `error` is the capped buffer refusing to grow, else `error` back.
fn over_cap(error: io::Error, cap: u64) -> Result<ArchiveError, io::Error> {
    if error.kind() == io::ErrorKind::FileTooLarge {
        Ok(ArchiveError::OverCap { cap })
    } else {
        Err(error)
    }
}

fn packing_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        what: "pack",
        path: path.to_owned(),
        source,
    }
}

fn read_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        what: "read",
        path: path.to_owned(),
        source,
    }
}

/// Checks one entry; `false` for entries that carry no file (pax global headers) and are skipped.
fn check_entry<R: Read>(entry: &Entry<'_, R>, layout: Layout) -> Result<bool, ArchiveError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() {
        return Ok(false);
    }
    let name = entry_name(entry);
    if !(kind.is_file() || kind.is_dir()) {
        let reason = format!(
            "it is a {}; only regular files and directories are accepted",
            kind_name(kind)
        );
        return Err(refused(&name, &reason));
    }
    let path = entry
        .path()
        .map_err(|_| refused(&name, "its path is not valid text"))?;
    check_path(&path, kind.is_dir(), layout).map_err(|reason| refused(&name, &reason))?;
    Ok(true)
}

fn entry_name<R: Read>(entry: &Entry<'_, R>) -> String {
    String::from_utf8_lossy(&entry.path_bytes()).into_owned()
}

fn refused(entry: &str, reason: &str) -> ArchiveError {
    ArchiveError::Refused {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_path(path: &Path, is_dir: bool, layout: Layout) -> Result<(), String> {
    InsidePath::check(path)?;
    let normal: Vec<_> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    let Some(first) = normal.first() else {
        return if is_dir {
            Ok(())
        } else {
            Err("the path is empty".to_owned())
        };
    };
    if layout == Layout::UnderPhases {
        let first = first.to_string_lossy();
        if first.parse::<Phase>().is_err() {
            return Err(format!(
                "attachments go under a phase's directory ({}), not {first:?}",
                Phase::names()
            ));
        }
        if normal.len() == 1 && !is_dir {
            return Err(
                "a file must be inside the phase's directory, like test/data.txt".to_owned(),
            );
        }
    }
    Ok(())
}

/// A name for an entry type people recognise.
fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Symlink => "symbolic link",
        EntryType::Link => "hard link",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}
