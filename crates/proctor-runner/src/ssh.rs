//! Workers on hosts reached with the system `ssh`: one multiplexed connection (ControlMaster) per host, through
//! which the test tree is copied once into a per-run directory and every test command runs.
//!
//! The system `ssh` rather than a crate: it honours `~/.ssh/config`, agents and keys as users expect, and the
//! command it runs is a plain process the supervisor watches like a local test (the `openssh` crate drives the same
//! ControlMaster but through tokio, and its children would escape the supervisor).
//!
//! A test command runs on the host in a session of its own, under a small `sh` wrapper that kills that session
//! (SIGTERM, the grace period, SIGKILL) when its standard input ends. The supervisor holds the local `ssh` client's
//! input open until the client is gone, and the master closes the channel when its client dies, so a test the
//! supervisor kills on a limit is killed on the host as a whole tree, not just the local client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use proctor_pool::{Platform, SshHost};
use proctor_repository::DIRECTORY as RUN_REPOSITORY;
use proctor_sources::Invocation;

/// The exit status `ssh` gives when the connection, not the remote command, failed.
const SSH_FAILED: i32 = 255;

/// Runs `$@` in `$2` in a session of its own and kills that session, after a grace of `$1` seconds, once standard
/// input ends. File descriptor 3 keeps the input, since `&` gives a background job `/dev/null`.
const WRAPPER: &str = r#"exec 3<&0
g=$1; m=$2; cd "$3" || exit 127; shift 3
setsid "$@" </dev/null 3<&- &
c=$!
(cat <&3 >/dev/null; kill -TERM -$c $c 2>/dev/null; sleep $g; kill -KILL -$c $c 2>/dev/null) >/dev/null 2>&1 &
w=$!
exec 3<&-
f="${TMPDIR:-/tmp}/proctor-memory.$$"
if [ "$m" -gt 0 ]; then
  (while kill -0 $c 2>/dev/null; do
    r=$(ps -o rss= -s $c 2>/dev/null | awk '{s += $1} END {print s + 0}')
    if [ "$r" -gt "$m" ]; then : > "$f"; kill -KILL -$c $c; exit; fi
    sleep 0.1
  done) >/dev/null 2>&1 &
fi
wait $c; s=$?
kill $w 2>/dev/null
if [ -e "$f" ]; then rm -f "$f"; exit 247; fi
exit $s"#;

/// How the wrapper exits when it killed the test's tree on its memory limit.
pub(crate) const MEMORY_EXCEEDED: i32 = proctor_api::MEMORY_EXCEEDED_EXIT;

/// An open connection to one host, with the run's copy of the test tree on it.
#[derive(Debug)]
pub(crate) struct Connection {
    host: SshHost,
    /// The options every `ssh` of this connection takes (control socket, key, port, the pool's `-o`s).
    options: Vec<String>,
    local_root: PathBuf,
    remote_root: String,
    /// The host's platform: the pool file's, with what it leaves out found on the host.
    pub(crate) platform: Platform,
}

impl Connection {
    /// Connects to `host` (a master connection on `control`), makes a per-run directory there, copies the tree at
    /// `local_root` into it and finds the host's platform. The error names the host and says what ssh said.
    pub(crate) fn open(
        host: &SshHost,
        identity_file: Option<&Path>,
        extra: &[String],
        control: &Path,
        local_root: &Path,
        platform: &Platform,
    ) -> Result<Connection, String> {
        let mut options = vec![
            "-o".to_owned(),
            format!("ControlPath={}", control.display()),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            "ConnectTimeout=10".to_owned(),
            "-o".to_owned(),
            "ServerAliveInterval=5".to_owned(),
        ];
        if let Some(port) = host.port {
            options.extend(["-p".to_owned(), port.to_string()]);
        }
        if let Some(identity) = identity_file {
            options.extend(["-i".to_owned(), identity.display().to_string()]);
        }
        for option in extra {
            options.extend(["-o".to_owned(), option.clone()]);
        }
        let mut connection = Connection {
            host: host.clone(),
            options,
            local_root: local_root.to_path_buf(),
            remote_root: String::new(),
            platform: platform.clone(),
        };
        let master = connection
            .command()
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=yes",
                "-f",
                "-N",
            ])
            .arg(host.destination())
            .stdin(Stdio::null())
            .output();
        connection.check("connect", master)?;
        let prepared = connection.prepare().and_then(|found| {
            connection.platform = connection.platform.clone().or(found);
            connection.copy_tree()
        });
        if let Err(problem) = prepared {
            let _ = connection.close();
            return Err(problem);
        }
        Ok(connection)
    }

    /// `ssh` with this connection's options, before the destination.
    fn command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(&self.options);
        command
    }

    /// Runs `remote` (a shell command line) on the host through the master, with `stdin` as its input.
    fn run(&self, remote: &str, stdin: Stdio) -> std::io::Result<Output> {
        self.command()
            .args(["-T", &self.host.destination(), remote])
            .stdin(stdin)
            .output()
    }

    /// The output of a step that must succeed, or what ssh (or the host) said.
    fn check(&self, step: &str, output: std::io::Result<Output>) -> Result<String, String> {
        let output =
            output.map_err(|error| format!("host {}: cannot run ssh: {error}", self.host))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "host {}: {step} failed ({}){}",
            self.host,
            output.status,
            match said.trim() {
                "" => String::new(),
                said => format!(": ssh said: {said}"),
            }
        ))
    }

    /// Makes the per-run directory and reads the host's architecture and distribution.
    fn prepare(&mut self) -> Result<Platform, String> {
        let script = r#"d=$(mktemp -d "${TMPDIR:-/tmp}/proctor-run.XXXXXXXX") && echo "$d" && uname -m && { . /etc/os-release 2>/dev/null; echo "${ID:-}-${VERSION_ID:-}"; }"#;
        let printed = self.check("making the run directory", self.run(script, Stdio::null()))?;
        let mut lines = printed.lines().map(str::trim);
        let (Some(directory), arch, distro) = (lines.next(), lines.next(), lines.next()) else {
            return Err(format!("host {}: mktemp printed no directory", self.host));
        };
        self.remote_root = directory.to_owned();
        Ok(Platform {
            arch: arch.filter(|arch| !arch.is_empty()).map(str::to_owned),
            distro: distro
                .map(|distro| distro.trim_matches('-'))
                .filter(|distro| !distro.is_empty())
                .map(str::to_owned),
            tags: Vec::new(),
        })
    }

    /// Copies the tree (without its run repository and `.git`) into the run directory: tar over the connection.
    fn copy_tree(&self) -> Result<(), String> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&self.local_root)
            .args(["-cf", "-", "--exclude=./.git"])
            .arg(format!("--exclude=./{RUN_REPOSITORY}"))
            .arg(".")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run tar to copy the tree: {error}"))?;
        let Some(archive) = tar.stdout.take() else {
            return Err("tar's output was not piped".to_owned());
        };
        let unpack = format!("tar -C {} -xf -", quote(&self.remote_root));
        let copied = self.check("copying the tree", self.run(&unpack, archive.into()));
        let packed = tar
            .wait_with_output()
            .map_err(|error| format!("tar failed: {error}"))?;
        if !packed.status.success() {
            return Err(format!(
                "tar of {} failed ({}): {}",
                self.local_root.display(),
                packed.status,
                String::from_utf8_lossy(&packed.stderr).trim()
            ));
        }
        copied.map(drop)
    }

    /// `invocation` as it runs on the host: paths under the tree point into the run directory, its environment is
    /// set there, and the local process is the `ssh` client (whose input the supervisor must hold open, see the
    /// module's documentation).
    /// `memory_limit` (bytes) is enforced on the host: the wrapper sums its tree's resident memory (`ps -s`) every
    /// 100 ms and kills the tree over it.
    pub(crate) fn place(
        &self,
        mut invocation: Invocation,
        grace: Duration,
        memory_limit: Option<u64>,
    ) -> Invocation {
        // The `$IDFILE` is written on the host first, in the run directory, and named there instead.
        let idfile = invocation.idfile().map(|local| {
            let name = local.file_name().unwrap_or_default().to_string_lossy();
            let remote = format!("{}/.proctor-ids-{name}", self.remote_root);
            let ids = std::fs::read_to_string(local).unwrap_or_default();
            (local.to_string_lossy().into_owned(), remote, ids)
        });
        let on_host = |text: &str| match &idfile {
            Some((local, remote, _)) => self.remote_path(&text.replace(local.as_str(), remote)),
            None => self.remote_path(text),
        };
        let mut words = vec![
            "exec".to_owned(),
            "sh".to_owned(),
            "-c".to_owned(),
            WRAPPER.to_owned(),
            "proctor-worker".to_owned(),
            grace.as_secs().max(1).to_string(),
            memory_limit
                .map_or(0, |bytes| bytes.div_ceil(1024))
                .to_string(),
            on_host(&invocation.cwd.to_string_lossy()),
            "env".to_owned(),
        ];
        words.extend(
            invocation
                .env
                .drain(..)
                .map(|(key, value)| format!("{key}={}", on_host(&value))),
        );
        words.push(invocation.program.to_string_lossy().into_owned());
        words.extend(invocation.args.iter().map(|arg| on_host(arg)));
        let mut remote: Vec<String> = words.iter().map(|word| quote(word)).collect();
        if let Some((_, path, ids)) = &idfile {
            let write = format!("printf %s {} > {} &&", quote(ids), quote(path));
            remote.insert(0, write);
        }
        invocation.args = self
            .options
            .iter()
            .cloned()
            .chain(["-T".to_owned(), self.host.destination(), remote.join(" ")])
            .collect();
        invocation.program = PathBuf::from("ssh");
        invocation.cwd = self.local_root.clone();
        invocation
    }

    /// `text` with the tree's local path replaced by the run directory's.
    fn remote_path(&self, text: &str) -> String {
        let local = self.local_root.to_string_lossy();
        text.replace(local.as_ref(), &self.remote_root)
    }

    /// Why a command that exited with `code` lost this connection, when it did: ssh's own failure status and a
    /// master that no longer answers.
    pub(crate) fn lost(&self, code: Option<i32>) -> Option<String> {
        if code != Some(SSH_FAILED) {
            return None;
        }
        let check = self
            .command()
            .args(["-O", "check", &self.host.destination()])
            .stdin(Stdio::null())
            .output();
        match check {
            Ok(output) if output.status.success() => None,
            Ok(output) => Some(format!(
                "the connection to host {} was lost: {}",
                self.host,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => Some(format!("host {}: cannot run ssh: {error}", self.host)),
        }
    }

    /// Removes the run directory and closes the master connection.
    pub(crate) fn close(&self) -> Result<(), String> {
        let removed = match self.remote_root.as_str() {
            "" => Ok(String::new()),
            root => self.check(
                "removing the run directory",
                self.run(&format!("rm -rf {}", quote(root)), Stdio::null()),
            ),
        };
        let _ = self
            .command()
            .args(["-O", "exit", &self.host.destination()])
            .stdin(Stdio::null())
            .output();
        removed.map(drop)
    }
}

/// `word` quoted for a POSIX shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for word in ["plain", "it's", "a b", "$HOME", "\"x\"", ""] {
            let output = Command::new("sh")
                .args(["-c", &format!("printf %s {}", quote(word))])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&output.stdout), word);
        }
    }
}
