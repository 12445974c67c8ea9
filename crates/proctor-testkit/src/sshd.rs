//! A real OpenSSH server on a loopback address, for tests of ssh workers: host and user keys generated for it, a
//! free port, and a known-hosts file that trusts it, so that clients need nothing from `~/.ssh`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/test` has Debian's `openssh-server` put the server.
const SSHD: &str = "/usr/sbin/sshd";

/// A running `sshd`, killed (with everything it started) when dropped.
pub struct Sshd {
    child: Option<Child>,
    /// The address it listens on.
    pub address: SocketAddrV4,
    /// The private key its `authorized_keys` trusts.
    pub identity: PathBuf,
    /// A known-hosts file that trusts its host key.
    pub known_hosts: PathBuf,
    directory: PathBuf,
}

impl Sshd {
    /// Starts a server on `127.0.0.<last_octet>` with its files in `directory` (made if missing), letting in the
    /// current user with a new key.
    pub fn start(directory: &Path, last_octet: u8) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run ./scripts/test, which installs openssh-server"
        );
        std::fs::create_dir_all(directory).unwrap();
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = directory.join("host_key");
        let identity = directory.join("user_key");
        for key in [&host_key, &identity] {
            let _ = std::fs::remove_file(key);
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key)
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success(), "ssh-keygen failed");
        }
        let authorized = directory.join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized).unwrap();
        // sshd reads the keys as the user logging in, who may not be the one running this.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ip = Ipv4Addr::new(127, 0, 0, last_octet);
        let port = TcpListener::bind(SocketAddrV4::new(ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = SocketAddrV4::new(ip, port);
        // The login shell runs its user's rc files for every command; a test host must not depend on what the
        // user running the tests keeps there (root's `.bashrc` here runs `pyenv init`, which waits up to a minute
        // on a stale rehash lock).
        let home = directory.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let config = directory.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nPermitRootLogin yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 MaxSessions 64\nMaxStartups 64\nSetEnv HOME={}\n",
                host_key.display(),
                authorized.display(),
                directory.join("sshd.pid").display(),
                home.display()
            ),
        )
        .unwrap();
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let known_hosts = directory.join("known_hosts");
        std::fs::write(&known_hosts, format!("[{ip}]:{port} {}\n", key.join(" "))).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(directory.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd starts");
        let sshd = Sshd {
            child: Some(child),
            address,
            identity,
            known_hosts,
            directory: directory.to_path_buf(),
        };
        sshd.wait_until_listening();
        sshd
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {}: {}",
                self.address,
                std::fs::read_to_string(self.directory.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pool file's entry for this host, logging in as the current user: `user@ip:port`.
    pub fn host_entry(&self) -> String {
        self.host_entry_as(&std::env::var("USER").unwrap_or_else(|_| "root".to_owned()))
    }

    /// The pool file's entry for this host, logging in as `user` (any user may log in with [`Sshd::identity`]).
    pub fn host_entry_as(&self, user: &str) -> String {
        format!("{user}@{}:{}", self.address.ip(), self.address.port())
    }

    /// Pool file lines that make ssh use this server's key and trust its host key, and nothing from `~/.ssh`.
    pub fn pool_options(&self) -> String {
        format!(
            "identity_file = \"{}\"\noptions = [\"UserKnownHostsFile={}\", \"StrictHostKeyChecking=yes\"]\n",
            self.identity.display(),
            self.known_hosts.display()
        )
    }

    /// The process ids of the server and everything it started.
    pub fn processes(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let mut tree = vec![child.id()];
        let mut index = 0;
        while index < tree.len() {
            tree.extend(children_of(tree[index]));
            index += 1;
        }
        tree
    }

    /// Kills the server and every session and command it started, at once (SIGKILL): the host is gone.
    pub fn kill(&mut self) {
        for pid in self.processes() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes whose parent is `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = &stat[stat.rfind(')')? + 2..];
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}
