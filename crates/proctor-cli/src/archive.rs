//! A job's attachments, packed from the submitter's files (the bundle rules are proctor-archive's).

use std::path::{Component, Path, PathBuf};

use proctor_job::{Attachment, InsidePath, Phase};

use crate::error::CliError;

/// Packs the attachments of `phase` as `<phase>/<agent path>` entries (see `entry_name`), reading each `local` file
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

/// Where an attachment lands on the agent, as Testflinger's CLI decides it: its `agent` path, else its local path
/// when that is inside the job file's directory (`scripts/run.sh` lands at `scripts/run.sh`), else the local file's
/// name.
fn entry_name(attachment: &Attachment) -> Result<PathBuf, CliError> {
    if let Some(path) = &attachment.agent {
        return Ok(path.as_path().to_owned());
    }
    let local = Path::new(&attachment.local);
    let inside: PathBuf = local
        .components()
        .filter(|component| *component != Component::CurDir)
        .collect();
    if local.is_relative() && InsidePath::check(&inside).is_ok() && inside.file_name().is_some() {
        return Ok(inside);
    }
    local.file_name().map(PathBuf::from).ok_or_else(|| {
        CliError::Usage(format!(
            "the attachment {:?} names no file; give it an `agent` path",
            attachment.local
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proctor_archive::Layout;

    use super::*;

    #[test]
    fn packs_attachments_under_their_phase_where_testflinger_puts_them() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("jobs");
        fs::create_dir_all(dir.join("scripts")).unwrap();
        fs::create_dir_all(root.path().join("outside")).unwrap();
        fs::write(dir.join("check.sh"), "echo ok").unwrap();
        fs::write(dir.join("scripts/run.sh"), "echo run").unwrap();
        fs::write(root.path().join("outside/run.sh"), "echo outside").unwrap();
        let attachments = [
            Attachment {
                local: "check.sh".into(),
                agent: None,
                device: None,
            },
            Attachment {
                local: "check.sh".into(),
                agent: Some(InsidePath::new("bin/again.sh").unwrap()),
                device: None,
            },
            Attachment {
                local: "./scripts/run.sh".into(),
                agent: None,
                device: None,
            },
            Attachment {
                local: "../outside/run.sh".into(),
                agent: None,
                device: None,
            },
        ];
        let packed = pack_attachments(&dir, Phase::Test, &attachments).unwrap();
        let out = tempfile::tempdir().unwrap();
        proctor_archive::unpack(
            &packed[..],
            out.path(),
            Layout::UnderPhases,
            proctor_archive::Limits::ATTACHMENTS,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("test/check.sh")).unwrap(),
            "echo ok"
        );
        assert_eq!(
            fs::read_to_string(out.path().join("test/bin/again.sh")).unwrap(),
            "echo ok"
        );
        assert_eq!(
            fs::read_to_string(out.path().join("test/scripts/run.sh")).unwrap(),
            "echo run"
        );
        assert_eq!(
            fs::read_to_string(out.path().join("test/run.sh")).unwrap(),
            "echo outside"
        );
    }

    #[test]
    fn a_missing_attachment_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let attachments = [Attachment {
            local: "missing.sh".into(),
            agent: None,
            device: None,
        }];
        let error = pack_attachments(dir.path(), Phase::Test, &attachments).unwrap_err();
        assert!(error.to_string().contains("missing.sh"), "{error}");
    }
}
