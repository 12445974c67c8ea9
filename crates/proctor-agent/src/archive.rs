//! The job's files in and out as tar.gz: attachments unpacked into the work directory (refusing any entry that
//! could land outside it or is not a plain file or directory), artifacts packed for upload under a size cap.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{Archive, Builder, EntryType};

/// Why attachments could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    /// An entry would land outside the directory or is not a regular file or directory.
    #[error("the attachments hold a refused entry `{entry}`: {why}")]
    Refused {
        /// The entry's path as the archive names it.
        entry: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The archive could not be read or an entry not written.
    #[error("the attachments could not be unpacked: {0}")]
    Io(#[from] io::Error),
}

/// Unpacks the tar.gz `archive` into `destination`, entry by entry; stops at the first refused entry.
pub(crate) fn unpack_attachments(
    archive: impl Read,
    destination: &Path,
) -> Result<(), UnpackError> {
    fs::create_dir_all(destination)?;
    let mut archive = Archive::new(GzDecoder::new(archive));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let refused = |why| UnpackError::Refused {
            entry: path.display().to_string(),
            why,
        };
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Directory
        ) {
            return Err(refused("only regular files and directories are accepted"));
        }
        if path
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
        {
            return Err(refused(
                "the path must be relative and must not contain `..`",
            ));
        }
        if !entry.unpack_in(destination)? {
            return Err(refused("the path leads outside the attachments directory"));
        }
    }
    Ok(())
}

/// What packing the artifacts came to.
#[derive(Debug)]
pub(crate) enum Packed {
    /// The directory is missing or holds nothing: there is nothing to upload.
    Nothing,
    /// The tar.gz, within the cap.
    Archive(Vec<u8>),
    /// The tar.gz grew past the cap (bytes).
    OverCap(u64),
}

/// Packs the files under `directory` into a tar.gz of at most `cap` bytes. Symbolic links are stored as links, so
/// a link cannot smuggle a file from elsewhere on the machine into the upload.
pub(crate) fn pack_artifacts(directory: &Path, cap: u64) -> io::Result<Packed> {
    let is_empty = match fs::read_dir(directory) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => true,
        Err(error) => return Err(error),
    };
    if is_empty {
        return Ok(Packed::Nothing);
    }
    let mut builder = Builder::new(GzEncoder::new(
        CappedBuffer {
            bytes: Vec::new(),
            cap,
        },
        Compression::default(),
    ));
    builder.follow_symlinks(false);
    let packed = builder
        .append_dir_all(".", directory)
        .and_then(|()| builder.into_inner())
        .and_then(GzEncoder::finish);
    match packed {
        Ok(buffer) => Ok(Packed::Archive(buffer.bytes)),
        Err(error) if error.kind() == io::ErrorKind::FileTooLarge => Ok(Packed::OverCap(cap)),
        Err(error) => Err(error),
    }
}

/// A buffer that refuses to grow past its cap, so an oversized artifacts directory stops packing early.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: u64,
}

impl Write for CappedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if (self.bytes.len() + bytes.len()) as u64 > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the artifacts are larger than the cap",
            ));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        build(&mut builder);
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn file_header(size: u64, kind: EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        header
    }

    /// Writes a raw name into the header, as a hostile archive would (the tar crate refuses `..` when asked to).
    fn raw_entry(builder: &mut Builder<GzEncoder<Vec<u8>>>, name: &str, kind: EntryType) {
        let mut header = file_header(2, kind);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, &b"hi"[..]).unwrap();
    }

    #[test]
    fn files_and_directories_unpack_under_the_destination() {
        let archive = tar_gz(|builder| {
            let mut header = file_header(5, EntryType::Regular);
            builder
                .append_data(&mut header, "test/data/input.txt", &b"hello"[..])
                .unwrap();
        });
        let destination = tempfile::tempdir().unwrap();
        unpack_attachments(archive.as_slice(), destination.path()).unwrap();
        let unpacked = fs::read(destination.path().join("test/data/input.txt")).unwrap();
        assert_eq!(unpacked, b"hello");
    }

    #[test]
    fn escaping_paths_links_and_devices_are_refused_by_name() {
        for (name, kind) in [
            ("test/../../escape", EntryType::Regular),
            ("/etc/passwd-copy", EntryType::Regular),
            ("test/link", EntryType::Symlink),
            ("test/device", EntryType::Char),
        ] {
            let archive = tar_gz(|builder| raw_entry(builder, name, kind));
            let destination = tempfile::tempdir().unwrap();
            let error = unpack_attachments(archive.as_slice(), destination.path()).unwrap_err();
            assert!(
                matches!(&error, UnpackError::Refused { entry, .. } if entry == name),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let destination = tempfile::tempdir().unwrap();
        let error = unpack_attachments(&b"not a tar.gz"[..], destination.path()).unwrap_err();
        assert!(matches!(error, UnpackError::Io(_)), "{error}");
    }

    #[test]
    fn artifacts_pack_with_links_kept_as_links_and_respect_the_cap() {
        let directory = tempfile::tempdir().unwrap();
        assert!(matches!(
            pack_artifacts(&directory.path().join("missing"), 1024).unwrap(),
            Packed::Nothing
        ));
        fs::write(directory.path().join("report.txt"), "all good").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", directory.path().join("link")).unwrap();
        let Packed::Archive(bytes) = pack_artifacts(directory.path(), 1 << 20).unwrap() else {
            panic!("not packed");
        };
        let mut archive = Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut kinds: Vec<(String, EntryType)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.path().unwrap().display().to_string(),
                    entry.header().entry_type(),
                )
            })
            .filter(|(_, kind)| *kind != EntryType::Directory)
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kinds,
            [
                ("link".to_owned(), EntryType::Symlink),
                ("report.txt".to_owned(), EntryType::Regular)
            ]
        );
        assert!(matches!(
            pack_artifacts(directory.path(), 10).unwrap(),
            Packed::OverCap(10)
        ));
    }
}
