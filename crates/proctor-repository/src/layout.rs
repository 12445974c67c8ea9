//! Where everything lives under `.proctor/`, and the two primitives that keep
//! it consistent: the repository lock and atomic replacement of a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::RepoError;

/// The on-disk format this version reads and writes, as the `format` file
/// holds it.
pub const FORMAT: u32 = 1;

/// The name of the repository directory inside a project.
pub const DIRECTORY: &str = ".proctor";

/// The paths of one repository.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    base: PathBuf,
}

impl Layout {
    pub(crate) fn in_project(project: &Path) -> Layout {
        Layout {
            base: project.join(DIRECTORY),
        }
    }

    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    pub(crate) fn format(&self) -> PathBuf {
        self.base.join("format")
    }

    pub(crate) fn lock(&self) -> PathBuf {
        self.base.join("lock")
    }

    pub(crate) fn next_run(&self) -> PathBuf {
        self.base.join("next-run")
    }

    pub(crate) fn index(&self) -> PathBuf {
        self.base.join("index.json")
    }

    pub(crate) fn failing(&self) -> PathBuf {
        self.base.join("failing.subunit")
    }

    pub(crate) fn runs(&self) -> PathBuf {
        self.base.join("runs")
    }

    pub(crate) fn stream(&self, id: u64) -> PathBuf {
        self.runs().join(format!("{id}.subunit"))
    }

    pub(crate) fn meta(&self, id: u64) -> PathBuf {
        self.runs().join(format!("{id}.json"))
    }

    /// Takes the repository lock, held until the guard drops. Every change
    /// to shared state (the run counter, the index, the failing set, removing
    /// runs) happens under it; readers need none, as files are replaced
    /// atomically.
    pub(crate) fn lock_exclusive(&self) -> Result<RepoLock, RepoError> {
        let path = self.lock();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RepoError::io("open the lock file", &path))?;
        file.lock().map_err(RepoError::io("lock", &path))?;
        Ok(RepoLock { _file: file })
    }
}

/// The repository lock; released when dropped (closing the file releases it,
/// also when the process dies).
#[derive(Debug)]
pub(crate) struct RepoLock {
    _file: File,
}

/// Replaces `path` with `contents` so that readers see the old file or the
/// new one, never a mix, even if we crash: write a temporary file beside it,
/// sync it, rename it over.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), RepoError> {
    let temporary = temporary_beside(path);
    let written = write_synced(&temporary, contents).and_then(|()| fs::rename(&temporary, path));
    written.map_err(|source| {
        // The temporary file is garbage now; failing to delete it changes
        // nothing for the caller, who gets the first error.
        let _ = fs::remove_file(&temporary);
        RepoError::Io {
            action: "replace",
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A name beside `path` no other process or thread uses at the same time.
fn temporary_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{unique}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads a file that may not exist yet.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RepoError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RepoError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}
