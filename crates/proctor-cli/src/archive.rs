//! The tar.gz archives the lab moves: a job's attachments, packed here from the submitter's files, and its
//! artifacts, unpacked here without letting any entry land outside the chosen directory.

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use proctor_job::{Attachment, Phase};
use tar::{Archive, Builder, EntryType};

use crate::error::CliError;

/// Packs the attachments of `phase` as `<phase>/<agent path or file name>` entries, reading each `local` file
/// (or directory) relative to `base` (the job file's directory).
pub fn pack_attachments(
    base: &Path,
    phase: Phase,
    attachments: &[Attachment],
) -> Result<Vec<u8>, CliError> {
    let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    builder.follow_symlinks(true);
    for attachment in attachments {
        let local = base.join(&attachment.local);
        let name = Path::new(phase.as_str()).join(entry_name(attachment)?);
        let packing_error = |source| CliError::Archive {
            what: format!("pack the attachment {}", local.display()),
            source,
        };
        if local.is_dir() {
            builder
                .append_dir_all(&name, &local)
                .map_err(packing_error)?;
        } else {
            builder
                .append_path_with_name(&local, &name)
                .map_err(packing_error)?;
        }
    }
    let finish_error = |source| CliError::Archive {
        what: "finish the attachments archive".to_owned(),
        source,
    };
    builder
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(finish_error)
}

/// Where an attachment lands on the agent: its `agent` path, or the local file's name.
fn entry_name(attachment: &Attachment) -> Result<&Path, CliError> {
    match &attachment.agent {
        Some(path) => Ok(path.as_path()),
        None => Path::new(&attachment.local)
            .file_name()
            .map(Path::new)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "the attachment {:?} names no file; give it an `agent` path",
                    attachment.local
                ))
            }),
    }
}

/// Unpacks a tar.gz into `target` (made if missing), refusing absolute paths, `..` and links, which could write
/// outside it; only files and directories are unpacked.
pub fn unpack_safely(tar_gz: impl Read, target: &Path) -> Result<(), CliError> {
    let unpack_error = |source| CliError::Archive {
        what: format!("unpack the artifacts into {}", target.display()),
        source,
    };
    fs::create_dir_all(target).map_err(unpack_error)?;
    let mut archive = Archive::new(GzDecoder::new(tar_gz));
    for entry in archive.entries().map_err(unpack_error)? {
        let mut entry = entry.map_err(unpack_error)?;
        let path = entry.path().map_err(unpack_error)?.into_owned();
        let shown = path.display().to_string();
        check_entry(&shown, &path, entry.header().entry_type())?;
        entry.unpack_in(target).map_err(unpack_error)?;
    }
    Ok(())
}

fn check_entry(shown: &str, path: &Path, kind: EntryType) -> Result<(), CliError> {
    let refuse = |why| {
        Err(CliError::UnsafeEntry {
            entry: shown.to_owned(),
            why,
        })
    };
    if !matches!(kind, EntryType::Regular | EntryType::Directory) {
        return refuse("only files and directories are unpacked (no links or devices)");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return refuse("it climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return refuse("it is an absolute path"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz_with(path: &str, kind: EntryType) -> Vec<u8> {
        let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(2);
        header.set_mode(0o644);
        // set_path refuses `..`, as it should for honest archives; a hostile one writes the bytes directly.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if kind == EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        builder.append(&header, &b"hi"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacks_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        unpack_safely(
            &tar_gz_with("logs/out.txt", EntryType::Regular)[..],
            dir.path(),
        )
        .unwrap();
        assert_eq!(fs::read(dir.path().join("logs/out.txt")).unwrap(), b"hi");
    }

    #[test]
    fn refuses_parent_absolute_and_link_entries() {
        for (path, kind) in [
            ("../escaped.txt", EntryType::Regular),
            ("a/../../escaped.txt", EntryType::Regular),
            ("/tmp/escaped.txt", EntryType::Regular),
            ("link", EntryType::Symlink),
            ("hard", EntryType::Link),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("out");
            let error = unpack_safely(&tar_gz_with(path, kind)[..], &target).unwrap_err();
            assert!(
                matches!(&error, CliError::UnsafeEntry { entry, .. } if entry == path),
                "{path}: {error:?}"
            );
            assert!(!dir.path().join("escaped.txt").exists());
            assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "{path}");
        }
    }

    #[test]
    fn packs_attachments_under_their_phase() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("check.sh"), "echo ok").unwrap();
        let attachments = [
            Attachment {
                local: "check.sh".into(),
                agent: None,
            },
            Attachment {
                local: "check.sh".into(),
                agent: Some(proctor_job::InsidePath::new("bin/again.sh").unwrap()),
            },
        ];
        let packed = pack_attachments(dir.path(), Phase::Test, &attachments).unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack_safely(&packed[..], out.path()).unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("test/check.sh")).unwrap(),
            "echo ok"
        );
        assert_eq!(
            fs::read_to_string(out.path().join("test/bin/again.sh")).unwrap(),
            "echo ok"
        );
    }

    #[test]
    fn a_missing_attachment_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let attachments = [Attachment {
            local: "missing.sh".into(),
            agent: None,
        }];
        let error = pack_attachments(dir.path(), Phase::Test, &attachments).unwrap_err();
        assert!(error.to_string().contains("missing.sh"), "{error}");
    }
}
