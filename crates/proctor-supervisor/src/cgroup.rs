//! Per-command memory cgroups, v2 or v1: finding a hierarchy this process may create cgroups
//! in, and creating, limiting, listing, measuring and removing one cgroup per command.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use procfs::process::Process;

use crate::error::CgroupProbeError;

const V2: &str = "cgroup2";
const V1: &str = "cgroup v1 memory";

/// Which cgroup interface a directory speaks; they name their memory files differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

impl Version {
    fn limit_files(self) -> &'static [&'static str] {
        match self {
            // memsw (memory + swap) after the plain limit: the kernel requires memsw >= limit.
            Version::V1 => &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            Version::V2 => &["memory.max"],
        }
    }

    /// Files that exist only on some kernels or configurations, written on a best-effort basis:
    /// no swap (so a hog is killed rather than swapped), and killing the whole group on OOM.
    fn optional_limit_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Version::V1 => &[],
            Version::V2 => &[("memory.swap.max", "0"), ("memory.oom.group", "1")],
        }
    }

    fn peak_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        }
    }

    /// The file holding an `oom_kill <count>` line.
    fn oom_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        }
    }
}

/// A cgroup directory under which the supervisor creates one cgroup per command.
#[derive(Debug)]
pub(crate) struct CgroupParent {
    version: Version,
    dir: PathBuf,
}

impl CgroupParent {
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// This process's cgroup in the unified hierarchy, if its memory controller is enabled for
    /// child cgroups or can be. When this process is alone in its cgroup, it moves itself into a
    /// leaf (`proctor-supervisor`) first, as cgroup v2 allows controllers only for cgroups
    /// without processes of their own.
    pub(crate) fn probe_v2() -> Result<Self, CgroupProbeError> {
        let dir = own_cgroup_dir(
            V2,
            |mount| mount.fs_type == "cgroup2",
            |cg| cg.hierarchy == 0,
        )?;
        let controllers = read(&dir.join("cgroup.controllers"))?;
        if !has_word(&controllers, "memory") {
            return Err(CgroupProbeError::NoMemoryController { path: dir });
        }
        if !has_word(&read(&dir.join("cgroup.subtree_control"))?, "memory") {
            delegate_memory_v2(&dir)?;
        }
        let parent = CgroupParent {
            version: Version::V2,
            dir,
        };
        parent.check_writable()?;
        Ok(parent)
    }

    /// This process's cgroup in the v1 `memory` hierarchy, if this process may create cgroups
    /// in it.
    pub(crate) fn probe_v1() -> Result<Self, CgroupProbeError> {
        let dir = own_cgroup_dir(
            V1,
            |mount| mount.fs_type == "cgroup" && mount.super_options.contains_key("memory"),
            |cg| cg.controllers.iter().any(|c| c == "memory"),
        )?;
        if !dir.join("memory.limit_in_bytes").is_file() {
            return Err(CgroupProbeError::NoMemoryController { path: dir });
        }
        let parent = CgroupParent {
            version: Version::V1,
            dir,
        };
        parent.check_writable()?;
        Ok(parent)
    }

    fn check_writable(&self) -> Result<(), CgroupProbeError> {
        let probe = self
            .dir
            .join(format!("proctor-probe-{}", std::process::id()));
        let io_error = |source| CgroupProbeError::Io {
            path: probe.clone(),
            source,
        };
        fs::create_dir(&probe).map_err(io_error)?;
        fs::remove_dir(&probe).map_err(io_error)
    }

    /// Creates the cgroup `name` with `memory_limit` (bytes) if given, ready to receive a
    /// process through [`CommandCgroup::procs_fd`].
    pub(crate) fn create(
        &self,
        name: &str,
        memory_limit: Option<u64>,
    ) -> Result<CommandCgroup, (PathBuf, io::Error)> {
        let dir = self.dir.join(name);
        fs::create_dir(&dir).map_err(|e| (dir.clone(), e))?;
        let cgroup = CommandCgroup::open(self.version, dir.clone()).inspect_err(|_| {
            let _ = fs::remove_dir(&dir);
        })?;
        if let Some(limit) = memory_limit {
            // On failure the cgroup is dropped, which removes its directory again.
            cgroup.set_memory_limit(limit)?;
        }
        Ok(cgroup)
    }
}

impl CgroupParent {
    /// Removes the command cgroups of supervisors whose process is gone (a
    /// proctor killed with SIGKILL cannot clean up), killing whatever still
    /// runs in them. A cgroup whose creator's pid is alive (or reused) is
    /// left alone.
    pub(crate) fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let dead = creator_pid(&name.to_string_lossy())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if dead {
                remove_with_processes(&entry.path());
            }
        }
    }
}

/// The pid in a command cgroup's name, `proctor-<pid>-<sequence>`.
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("proctor-")?;
    let (pid, sequence) = rest.split_once('-')?;
    sequence.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// SIGKILLs every process in the cgroup `dir`, then removes it (giving up
/// after half a second if it stays busy).
fn remove_with_processes(dir: &Path) {
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// The directory of this process's own cgroup in the hierarchy `mount_matches` selects.
fn own_cgroup_dir(
    hierarchy: &'static str,
    mount_matches: impl Fn(&procfs::process::MountInfo) -> bool,
    entry_matches: impl Fn(&procfs::ProcessCGroup) -> bool,
) -> Result<PathBuf, CgroupProbeError> {
    let myself = Process::myself().map_err(proc_error("/proc/self"))?;
    let mounts = myself
        .mountinfo()
        .map_err(proc_error("/proc/self/mountinfo"))?;
    let mount = mounts
        .into_iter()
        .find(|mount| mount_matches(mount))
        .ok_or(CgroupProbeError::NotMounted { hierarchy })?;
    let cgroups = myself.cgroups().map_err(proc_error("/proc/self/cgroup"))?;
    let own = cgroups
        .into_iter()
        .find(|cg| entry_matches(cg))
        .ok_or(CgroupProbeError::NoOwnCgroup { hierarchy })?;
    Ok(join_cgroup_path(
        &mount.mount_point,
        &mount.root,
        &own.pathname,
    ))
}

/// Where a cgroup path from `/proc/self/cgroup` lives under a mount of `mount_root`. Inside a
/// cgroup namespace the path may not start with the mount's root; it is then relative to the
/// mount point itself.
fn join_cgroup_path(mount_point: &Path, mount_root: &str, pathname: &str) -> PathBuf {
    let relative = Path::new(pathname)
        .strip_prefix(mount_root)
        .unwrap_or_else(|_| Path::new(pathname));
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    mount_point.join(relative)
}

/// Enables the memory controller for the children of `dir`, which this process must have to
/// itself: the process moves into the leaf `dir/proctor-supervisor` first.
fn delegate_memory_v2(dir: &Path) -> Result<(), CgroupProbeError> {
    let own_pid = std::process::id().to_string();
    let members = read(&dir.join("cgroup.procs"))?;
    if members.split_whitespace().any(|pid| pid != own_pid) {
        return Err(CgroupProbeError::NotDelegated {
            path: dir.to_path_buf(),
        });
    }
    let leaf = dir.join("proctor-supervisor");
    if let Err(source) = fs::create_dir(&leaf) {
        if source.kind() != io::ErrorKind::AlreadyExists {
            return Err(CgroupProbeError::Io { path: leaf, source });
        }
    }
    write(&leaf.join("cgroup.procs"), "0")?;
    write(&dir.join("cgroup.subtree_control"), "+memory").inspect_err(|_| {
        // Undo the move, so a failed probe leaves this process where it was.
        let _ = fs::write(dir.join("cgroup.procs"), "0");
        let _ = fs::remove_dir(&leaf);
    })
}

fn proc_error(path: &'static str) -> impl Fn(procfs::ProcError) -> CgroupProbeError {
    move |error| CgroupProbeError::Io {
        path: PathBuf::from(path),
        source: io::Error::other(error),
    }
}

fn read(path: &Path) -> Result<String, CgroupProbeError> {
    fs::read_to_string(path).map_err(|source| CgroupProbeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupProbeError> {
    fs::write(path, value).map_err(|source| CgroupProbeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

/// The cgroup of one command. Removed (once empty) when dropped.
#[derive(Debug)]
pub(crate) struct CommandCgroup {
    version: Version,
    dir: PathBuf,
    /// `cgroup.procs`, opened for writing before the fork so that the child only has to write
    /// "0" to it (async-signal-safe) to move itself in before it runs the program.
    procs: File,
}

impl CommandCgroup {
    fn open(version: Version, dir: PathBuf) -> Result<Self, (PathBuf, io::Error)> {
        let procs_path = dir.join("cgroup.procs");
        let procs = OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|e| (procs_path, e))?;
        Ok(CommandCgroup {
            version,
            dir,
            procs,
        })
    }

    fn set_memory_limit(&self, bytes: u64) -> Result<(), (PathBuf, io::Error)> {
        let value = bytes.to_string();
        for (index, name) in self.version.limit_files().iter().enumerate() {
            let path = self.dir.join(name);
            match fs::write(&path, &value) {
                Ok(()) => {}
                // memsw exists only with swap accounting; the plain limit (index 0) is required.
                Err(e) if index > 0 && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err((path, e)),
            }
        }
        for (name, value) in self.version.optional_limit_settings() {
            let _ = fs::write(self.dir.join(name), value);
        }
        Ok(())
    }

    /// `cgroup.procs`, for the child to write "0" to.
    pub(crate) fn procs_fd(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }

    /// The processes in the cgroup now (zombies are not listed).
    pub(crate) fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| {
                text.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The cgroup's memory high-water mark in bytes, if the kernel keeps one.
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        fs::read_to_string(self.dir.join(self.version.peak_file()))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Ok(text) = fs::read_to_string(self.dir.join(self.version.oom_file())) else {
            return 0;
        };
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        // The last processes may still be detaching right after being reaped, which makes
        // rmdir fail with EBUSY for a moment.
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_cgroup_names_give_their_creator() {
        assert_eq!(creator_pid("proctor-123-7"), Some(123));
        assert_eq!(creator_pid("proctor-supervisor"), None);
        assert_eq!(creator_pid("proctor-12-x"), None);
        assert_eq!(creator_pid("other-1-2"), None);
    }

    #[test]
    fn cgroup_paths_join_under_the_mount_point() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            join_cgroup_path(mount, "/", "/process_api/abc"),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(join_cgroup_path(mount, "/", "/"), mount);
        // A mount of a sub-tree (as in containers) strips the mount's root.
        assert_eq!(
            join_cgroup_path(mount, "/docker/x", "/docker/x/job"),
            mount.join("job")
        );
        // Inside a cgroup namespace the path is already relative to the mount.
        assert_eq!(
            join_cgroup_path(mount, "/docker/x", "/job"),
            mount.join("job")
        );
    }
}
