//! A directory of test executables, automake style: every executable file
//! below it is a test, run on its own, reporting by exit status.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use walkdir::{DirEntry, WalkDir};

use crate::invocation::{ExitMapping, Protocol};
use crate::suite::{Runner, Suite};
use crate::SourceError;

/// A suite of the executables under the directory `dir`, named after it.
/// Nothing is read until the suite is listed.
pub(crate) fn suite(dir: &Path) -> Suite {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    Suite::new(
        name,
        dir.to_path_buf(),
        Runner::Executables,
        Protocol::ExitStatus(ExitMapping::AUTOMAKE),
    )
}

/// The ids of the executables below `dir`: their paths relative to it with
/// `/` separators, in sorted order. Subdirectories are searched; hidden
/// files and directories (names starting with `.`) are not, nor are
/// symbolic links to directories (which could loop), while symbolic links
/// to executable files count.
pub(crate) fn find(dir: &Path) -> Result<Vec<String>, SourceError> {
    let walk = WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| !is_hidden(entry));
    let mut ids = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|source| SourceError::Walk {
            dir: dir.to_path_buf(),
            source,
        })?;
        if is_executable_file(entry.path()) {
            ids.push(relative_id(dir, &entry)?);
        }
    }
    Ok(ids)
}

fn is_hidden(entry: &DirEntry) -> bool {
    entry.file_name().to_string_lossy().starts_with('.')
}

/// A regular file (after following links) with any execute bit set.
fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

fn relative_id(dir: &Path, entry: &DirEntry) -> Result<String, SourceError> {
    let non_utf8 = || SourceError::NonUtf8Path {
        path: entry.path().to_path_buf(),
    };
    // Walked entries always lie under `dir`.
    let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
    let parts = relative
        .components()
        .map(|component| component.as_os_str().to_str().ok_or_else(non_utf8))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join("/"))
}
