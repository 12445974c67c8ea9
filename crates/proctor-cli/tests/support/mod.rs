//! What the lab's end-to-end tests share: a lab of real `proctor server` and `proctor agent` processes on
//! 127.0.0.1 ephemeral ports, and waiting for what they do.
// Each test binary that includes this uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use proctor_api::JobView;
use proctor_client::Client;
use proctor_subunit::{EventReader, Status};

/// Generous: a correctness bound, not a speed check.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn proctor() -> Command {
    Command::cargo_bin("proctor").unwrap()
}

/// `proctor run` in `project` with none of the developer's run settings: no user config file (its directory does
/// not exist), no `PROCTOR_*` setting variables, no token.
pub fn proctor_run(project: &Path) -> Command {
    let mut command = proctor();
    command
        .current_dir(project)
        .env("XDG_CONFIG_HOME", project.join(".no-user-config"))
        .env_remove("PROCTOR_TOKEN")
        .arg("run");
    for key in proctor::config::RunSettings::KEYS {
        command.env_remove(proctor::config::env_var(key));
    }
    command
}

/// A command's standard output and error, for messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The subunit stream of the last run stored in `project`.
pub fn last_run(project: &Path) -> Vec<u8> {
    let runs = project.join(".proctor/runs");
    let last = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|file| {
            let name = file.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".subunit")?.parse::<u32>().ok()
        })
        .max()
        .unwrap();
    std::fs::read(runs.join(format!("{last}.subunit"))).unwrap()
}

/// Children killed (SIGKILL) and reaped when dropped, even when a test panics.
#[derive(Default)]
pub struct Children(Vec<Child>);

impl Children {
    pub fn add(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.0.push(child);
        pid
    }

    pub fn kill(&mut self, pid: u32) {
        if let Some(index) = self.0.iter().position(|child| child.id() == pid) {
            let mut child = self.0.remove(index);
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Children {
    /// Sends SIGTERM (a clean stop) and waits for the child to exit; its exit status.
    pub fn terminate(&mut self, pid: u32) -> std::process::ExitStatus {
        let index = self.0.iter().position(|child| child.id() == pid).unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let mut child = self.0.remove(index);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "{pid} did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A server, its agents and a scratch directory.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub children: Children,
    pub server_pid: u32,
    pub addr: String,
    pub url: String,
    /// Kept so the server never writes to a closed pipe.
    _server_out: Vec<BufReader<ChildStdout>>,
}

impl Lab {
    /// A server on an ephemeral port with a 3 s lease and these extra flags.
    pub fn start(server_flags: &[&str]) -> Lab {
        Lab::start_in(tempfile::tempdir().unwrap(), server_flags)
    }

    /// The same, in `dir` (whose `data` directory may be made beforehand, on a filesystem of the test's choosing).
    pub fn start_in(dir: tempfile::TempDir, server_flags: &[&str]) -> Lab {
        Lab::start_on(dir, "127.0.0.1:0", server_flags)
    }

    /// The same, listening on `listen`.
    pub fn start_on(dir: tempfile::TempDir, listen: &str, server_flags: &[&str]) -> Lab {
        let mut lab = Lab {
            dir,
            children: Children::default(),
            server_pid: 0,
            addr: listen.into(),
            url: String::new(),
            _server_out: Vec::new(),
        };
        lab.start_server(server_flags);
        lab
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server on `self.addr` (the first time an ephemeral port, then the same one).
    pub fn start_server(&mut self, flags: &[&str]) {
        let mut server = proctor();
        server.args(["server", "--listen", &self.addr, "--lease", "3"]);
        // A lab on another store (`--store`) has no data directory.
        if !flags.contains(&"--store") {
            server.arg("--data-dir").arg(self.data_dir());
        }
        let mut child = server.args(flags).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        self.server_pid = self.children.add(child);
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in the server's first line {line:?}"));
        self.url = url.to_owned();
        self.addr = url.trim_start_matches("http://").to_owned();
        self._server_out.push(out);
    }

    pub fn kill_server(&mut self) {
        self.children.kill(self.server_pid);
    }

    /// Starts an agent serving `queue` and waits until the server knows it.
    pub fn agent(&mut self, id: &str, queue: &str, extra: &[&str]) -> u32 {
        let url = self.url.clone();
        self.agent_of(&url, id, queue, extra)
    }

    /// The same, given `servers` (a comma-separated list of this lab's servers).
    pub fn agent_of(&mut self, servers: &str, id: &str, queue: &str, extra: &[&str]) -> u32 {
        let child = proctor()
            .args(["agent", "--server", servers, "--id", id, "--queue", queue])
            .args([
                "--heartbeat",
                "1",
                "--grace",
                "1",
                "--claim-wait",
                "2",
                "--work-dir",
            ])
            .arg(self.dir.path().join("work").join(id))
            .args(extra)
            .env_remove("PROCTOR_TOKEN")
            .spawn()
            .unwrap();
        let pid = self.children.add(child);
        // An agent given a token is in a lab that has tokens, which lists its agents only to a token holder.
        let token = extra
            .iter()
            .position(|arg| *arg == "--token")
            .and_then(|at| extra.get(at + 1));
        let client = self.client(token.copied());
        eventually(|| {
            client
                .agents()
                .map(|agents| agents.iter().any(|agent| agent.id == id))
                .unwrap_or(false)
        });
        pid
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token).unwrap()
    }

    /// A `proctor` client command aimed at this lab.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = proctor();
        command
            .args(args)
            .env("PROCTOR_SERVER", &self.url)
            .env_remove("PROCTOR_TOKEN")
            .current_dir(self.dir.path());
        command
    }

    /// Runs a client command; its exit code, standard output and standard error.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.command(args).output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Writes a job file in the scratch directory.
    pub fn job_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Submits a job file without waiting; its id.
    pub fn submit(&self, file: &str) -> String {
        let (code, out, err) = self.run(&["submit", file]);
        assert_eq!(code, 0, "submit failed: {err}");
        out.trim().to_owned()
    }

    pub fn job(&self, id: &str) -> JobView {
        self.client(None).job(id).unwrap().job
    }

    /// Waits for the job to end (riding out a server that is down for a moment).
    pub fn ended(&self, id: &str) -> JobView {
        let client = self.client(None);
        let mut ended = None;
        eventually(|| {
            ended = client
                .job(id)
                .ok()
                .map(|detail| detail.job)
                .filter(|job| job.state.is_final());
            ended.is_some()
        });
        ended.unwrap()
    }

    pub fn log(&self, id: &str) -> String {
        let (code, out, err) = self.run(&["logs", id]);
        assert_eq!(code, 0, "logs failed: {err}");
        out
    }
}

/// A new token of `role` made in the store in `data_dir` (no server needed); its secret.
pub fn token(data_dir: &Path, role: &str) -> String {
    let output = proctor()
        .args(["token", "create", "--role", role, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

pub fn eventually(mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Final statuses by test id in a subunit stream.
pub fn statuses(stream: &[u8]) -> Vec<(String, Status)> {
    EventReader::new(stream)
        .map(|event| event.expect("decodes"))
        .filter_map(|event| match (event.test_id, event.status) {
            (Some(id), Some(status)) if status.is_final() && status != Status::Exists => {
                Some((id, status))
            }
            _ => None,
        })
        .collect()
}
