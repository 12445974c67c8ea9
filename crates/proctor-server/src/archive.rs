//! Checks an uploaded tar.gz (a job's attachments or artifacts) before it is stored, so whoever unpacks it later
//! (the agent, a user's `proctor artifacts -o DIR`) cannot be made to write outside the directory it unpacks into.
//!
//! Every entry must be a regular file or a directory at a relative path without `..`; links, devices and FIFOs are
//! refused. The archive is stored as uploaded; only the check reads it here.

use std::path::{Component, Path};

use proctor_job::Phase;
use tar::EntryType;

/// Why an uploaded archive was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// The bytes are not a gzip-compressed tar archive (or are cut short).
    #[error("the upload is not a readable tar.gz")]
    Unreadable(#[source] std::io::Error),
    /// One entry may not be unpacked.
    #[error("archive entry {entry:?} is refused: {reason}")]
    BadEntry {
        /// The entry's path as the archive gives it.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What an archive's top level must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Attachments: every entry sits under a phase's directory (`test/data.bin`), unpacked into
    /// `attachments/<phase>/` on the agent.
    UnderPhases,
    /// Artifacts: any relative layout.
    Any,
}

/// Reads every entry header of `tar_gz` and refuses the archive at the first entry that may not be unpacked.
pub(crate) fn check_archive(tar_gz: &[u8], layout: Layout) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    for entry in archive.entries().map_err(ArchiveError::Unreadable)? {
        let entry = entry.map_err(ArchiveError::Unreadable)?;
        let path = entry.path().map_err(ArchiveError::Unreadable)?;
        let name = path.display().to_string();
        let bad = |reason: &str| ArchiveError::BadEntry {
            entry: name.clone(),
            reason: reason.to_owned(),
        };
        let kind = entry.header().entry_type();
        // A pax global header (git archive writes one) only carries metadata for the entries after it.
        if kind.is_pax_global_extensions() {
            continue;
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(&format!(
                "it is a {}; only regular files and directories may be uploaded",
                kind_name(kind)
            )));
        }
        check_path(&path, kind.is_dir(), layout).map_err(|reason| bad(&reason))?;
    }
    // Reading to the end checks the gzip trailer, so a truncated upload is caught here and not at unpacking.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(ArchiveError::Unreadable)?;
    Ok(())
}

/// Checks that an entry's path stays inside the directory it is unpacked into and fits `layout`.
fn check_path(path: &Path, is_dir: bool, layout: Layout) -> Result<(), String> {
    let mut normal = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err("the path is absolute".to_owned())
            }
            Component::ParentDir => return Err("the path has a `..` component".to_owned()),
            Component::CurDir => {}
            Component::Normal(part) => normal.push(part),
        }
    }
    let Some(first) = normal.first() else {
        // `./` itself, as `tar -C dir .` writes it.
        return if is_dir {
            Ok(())
        } else {
            Err("the path is empty".to_owned())
        };
    };
    if layout == Layout::UnderPhases {
        let first = first.to_string_lossy();
        if !Phase::ALL.iter().any(|phase| phase.as_str() == first) {
            let phases: Vec<&str> = Phase::ALL.iter().map(|phase| phase.as_str()).collect();
            return Err(format!(
                "attachments go under a phase's directory ({}), not {first:?}",
                phases.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        build(&mut builder);
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn file(builder: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, path: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_entry_type(EntryType::Regular);
        // set_path refuses `..`, so the raw name field is written, as a hostile client would.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, &b"hi"[..]).unwrap();
    }

    #[test]
    fn phase_directories_and_plain_files_pass() {
        let archive = tar_gz(|builder| {
            file(builder, "./test/data.txt");
            file(builder, "setup/a/b.txt");
        });
        check_archive(&archive, Layout::UnderPhases).unwrap();
        check_archive(&archive, Layout::Any).unwrap();
    }

    #[test]
    fn escaping_paths_and_files_outside_phases_are_named() {
        for (path, layout, expected) in [
            ("test/../../x", Layout::Any, "`..`"),
            ("/etc/passwd", Layout::Any, "absolute"),
            ("notaphase/x", Layout::UnderPhases, "phase"),
            ("test", Layout::UnderPhases, "inside the phase"),
        ] {
            let archive = tar_gz(|builder| file(builder, path));
            let error = check_archive(&archive, layout).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(path) && message.contains(expected),
                "{message}"
            );
        }
    }

    #[test]
    fn garbage_is_unreadable() {
        let error = check_archive(b"not gzip at all", Layout::Any).unwrap_err();
        assert!(matches!(error, ArchiveError::Unreadable(_)), "{error}");
    }
}
