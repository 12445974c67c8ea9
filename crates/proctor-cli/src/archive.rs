//! A job's attachments, packed from the submitter's files (the bundle rules are proctor-archive's).

use std::path::{Path, PathBuf};

use proctor_job::{Attachment, Phase};

use crate::error::CliError;

/// Packs the attachments of `phase` as `<phase>/<agent path or file name>` entries, reading each `local` file
/// (or directory) relative to `base` (the job file's directory).
pub fn pack_attachments(
    base: &Path,
    phase: Phase,
    attachments: &[Attachment],
) -> Result<Vec<u8>, CliError> {
    let entries = attachments
        .iter()
        .map(|attachment| {
            let name = Path::new(phase.as_str()).join(entry_name(attachment)?);
            Ok((base.join(&attachment.local), name))
        })
        .collect::<Result<Vec<(PathBuf, PathBuf)>, CliError>>()?;
    Ok(proctor_archive::pack_paths(&entries)?)
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

#[cfg(test)]
mod tests {
    use std::fs;

    use proctor_archive::Layout;

    use super::*;

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
        proctor_archive::unpack(&packed[..], out.path(), Layout::UnderPhases).unwrap();
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
