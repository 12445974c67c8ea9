//! Pool files: the provisioners a run's workers come from, for `proctor run --pool FILE` and `proctor pool check`.
//!
//! ```toml
//! [[provisioner]]
//! kind = "local"          # N slots on this machine
//! max_workers = 4
//!
//! [[provisioner]]
//! kind = "hooks"          # testrepository's instance hooks
//! provision = "make-vms $INSTANCE_COUNT"
//! execute = "run-in $INSTANCE_ID $FILES -- $COMMAND"
//! dispose = "drop-vms $INSTANCE_IDS"
//! max_workers = 2
//! platform = { arch = "x86_64", distro = "debian-12", tags = ["kvm"] }
//!
//! [[provisioner]]
//! kind = "ssh"            # hosts reached with the system ssh (and ~/.ssh/config)
//! hosts = ["root@10.0.0.5:22", "builder-2"]
//! identity_file = "~/.ssh/id_ed25519"
//! workers_per_host = 2
//! options = ["ServerAliveInterval=5"]    # more `ssh -o` options
//! failure_budget = 3      # failures (of a host, for ssh) before it is given up
//!
//! [[provisioner]]
//! kind = "lab"            # agents of a lab queue, each held by a job for the run (`proctor run --lab`)
//! server = "http://lab:7370"
//! queue = "rpi4"
//! max_workers = 4         # how many agents to hold; the token is PROCTOR_TOKEN's
//! ```
//!
//! A file that cannot be read is a [`PoolError`] naming the key, and the line and column where the parser knows
//! them.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use proctor_job::{read_toml, Location, Problem, ProblemKind};
use serde::Deserialize;

/// A pool: its provisioners, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The provisioners.
    pub provisioners: Vec<Provisioner>,
}

/// One provisioner of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioner {
    /// Its kind and what that kind needs.
    pub kind: ProvisionerKind,
    /// At most this many workers at a time.
    pub max_workers: NonZeroUsize,
    /// The platform its workers have, as the file gives it (a local worker, or an ssh host, finds what the file
    /// leaves out).
    pub platform: Platform,
    /// How many times one of its sources of workers (the provisioner; for ssh, a host) may fail to provision, or
    /// lose a worker, before it is given up for the rest of the run.
    pub failure_budget: u32,
}

/// How many failures a provisioner's source of workers gets when the file does not say.
pub const DEFAULT_FAILURE_BUDGET: u32 = 3;

/// A host of an ssh provisioner: `[user@]host[:port]`, or a `~/.ssh/config` alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// The user to log in as, when the entry names one.
    pub user: Option<String>,
    /// The host name, address or alias.
    pub host: String,
    /// The port, when the entry names one.
    pub port: Option<u16>,
}

impl SshHost {
    /// Reads `[user@]host[:port]` (an IPv6 address in brackets: `[::1]:22`).
    pub fn parse(entry: &str) -> Result<SshHost, String> {
        let (user, rest) = match entry.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return Err(format!("host {entry:?} has an empty user before `@`")),
            None => (None, entry),
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or(port))),
                None => return Err(format!("host {entry:?} has `[` without `]`")),
            },
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(format!("host {entry:?} has no host name"));
        }
        let port = port
            .map(|port| {
                port.parse::<u16>()
                    .ok()
                    .filter(|&port| port > 0)
                    .ok_or_else(|| format!("host {entry:?} has a bad port {port:?}"))
            })
            .transpose()?;
        Ok(SshHost {
            user,
            host: host.to_owned(),
            port,
        })
    }

    /// The destination as ssh takes it: `user@host`, or `host`.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

impl std::fmt::Display for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.destination())?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// What a provisioner makes its workers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerKind {
    /// Slots on this machine.
    Local,
    /// Instances made and run through hook commands, with testrepository's contract: `provision` gets
    /// `$INSTANCE_COUNT` and prints ids; `execute` gets `$INSTANCE_ID`, `$FILES` and `$COMMAND` and its standard
    /// output is that command's stream; `dispose` gets `$INSTANCE_IDS`.
    Hooks {
        /// The provisioning command.
        provision: String,
        /// The command that runs a test command in an instance.
        execute: String,
        /// The command that disposes of instances.
        dispose: Option<String>,
    },
    /// Hosts reached with the system `ssh`, one multiplexed connection per host, each running several workers.
    Ssh {
        /// The hosts.
        hosts: Vec<SshHost>,
        /// The key to log in with, when not ssh's own choice (a leading `~/` is the home directory).
        identity_file: Option<PathBuf>,
        /// How many workers run on each host.
        workers_per_host: NonZeroUsize,
        /// More options, each passed as `ssh -o OPTION`.
        options: Vec<String>,
    },
    /// Agents of a lab queue, each held for the run by a job whose test phase runs the run's batches there.
    Lab {
        /// The lab's server (servers of one lab comma-separated).
        server: String,
        /// The queue whose agents to hold.
        queue: String,
        /// The token to submit with; `PROCTOR_TOKEN`'s when `None` (a pool file never holds one).
        token: Option<String>,
    },
}

impl ProvisionerKind {
    /// The kind's name, as the pool file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ProvisionerKind::Local => "local",
            ProvisionerKind::Hooks { .. } => "hooks",
            ProvisionerKind::Ssh { .. } => "ssh",
            ProvisionerKind::Lab { .. } => "lab",
        }
    }
}

/// What a worker runs on: its architecture, distribution and free-form tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The architecture, like `x86_64`.
    pub arch: Option<String>,
    /// The distribution and release, like `debian-12`.
    pub distro: Option<String>,
    /// Anything else a test may ask for.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Platform {
    /// This machine's platform: its architecture and, from `/etc/os-release`, its distribution (`ID-VERSION_ID`).
    pub fn of_this_machine() -> Platform {
        let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |name: &str| {
            release.lines().find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix('=')?;
                Some(value.trim_matches('"').to_owned())
            })
        };
        let distro = match (field("ID"), field("VERSION_ID")) {
            (Some(id), Some(version)) => Some(format!("{id}-{version}")),
            (id, _) => id,
        };
        Platform {
            arch: Some(std::env::consts::ARCH.to_owned()),
            distro,
            tags: Vec::new(),
        }
    }

    /// This platform with what it leaves out taken from `found`.
    pub fn or(self, found: Platform) -> Platform {
        Platform {
            arch: self.arch.or(found.arch),
            distro: self.distro.or(found.distro),
            tags: if self.tags.is_empty() {
                found.tags
            } else {
                self.tags
            },
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = "unknown".to_owned();
        write!(
            f,
            "{} {}",
            self.arch.as_ref().unwrap_or(&unknown),
            self.distro.as_ref().unwrap_or(&unknown)
        )?;
        for tag in &self.tags {
            write!(f, " +{tag}")?;
        }
        Ok(())
    }
}

/// A pool file that could not be read or does not describe a pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The file could not be read.
    #[error("cannot read the pool file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid pool.
    #[error("{path}: invalid pool: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        problem: Problem,
    },
}

/// A provisioner as the file spells it; [`Pool::from_toml`] checks what each kind needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvisioner {
    kind: toml::Spanned<Kind>,
    max_workers: Option<NonZeroUsize>,
    provision: Option<String>,
    execute: Option<String>,
    dispose: Option<String>,
    hosts: Option<Vec<String>>,
    identity_file: Option<PathBuf>,
    workers_per_host: Option<NonZeroUsize>,
    options: Option<Vec<String>>,
    server: Option<String>,
    queue: Option<String>,
    failure_budget: Option<u32>,
    #[serde(default)]
    platform: Platform,
}

impl RawProvisioner {
    /// The keys that only some kinds take, and whether the file gave each.
    fn kind_keys(&self) -> [(&'static str, bool); 10] {
        [
            ("provision", self.provision.is_some()),
            ("execute", self.execute.is_some()),
            ("dispose", self.dispose.is_some()),
            ("hosts", self.hosts.is_some()),
            ("identity_file", self.identity_file.is_some()),
            ("workers_per_host", self.workers_per_host.is_some()),
            ("options", self.options.is_some()),
            ("max_workers", self.max_workers.is_some()),
            ("server", self.server.is_some()),
            ("queue", self.queue.is_some()),
        ]
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Local,
    Hooks,
    Ssh,
    Lab,
}

impl Kind {
    /// The keys of [`RawProvisioner::kind_keys`] this kind takes.
    fn takes(self, key: &str) -> bool {
        match self {
            Kind::Local => key == "max_workers",
            Kind::Hooks => matches!(key, "provision" | "execute" | "dispose" | "max_workers"),
            Kind::Ssh => matches!(
                key,
                "hosts" | "identity_file" | "workers_per_host" | "options" | "max_workers"
            ),
            Kind::Lab => matches!(key, "server" | "queue" | "max_workers"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    #[serde(rename = "provisioner", default)]
    provisioners: Vec<RawProvisioner>,
}

impl Pool {
    /// Reads a pool file.
    pub fn load(path: &Path) -> Result<Pool, PoolError> {
        let text = std::fs::read_to_string(path).map_err(|source| PoolError::Read {
            path: path.to_owned(),
            source,
        })?;
        Pool::from_toml(&text).map_err(|problem| PoolError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// Reads a pool from TOML text: at least one `[[provisioner]]`, each with what its kind needs and nothing
    /// another kind takes. A local provisioner has one worker per CPU unless `max_workers` says otherwise.
    pub fn from_toml(text: &str) -> Result<Pool, Problem> {
        let raw: RawPool = read_toml(text)?;
        if raw.provisioners.is_empty() {
            return Err(problem(
                "provisioner",
                None,
                "a pool needs at least one [[provisioner]]",
            ));
        }
        let provisioners = raw
            .provisioners
            .into_iter()
            .enumerate()
            .map(|(index, raw)| provisioner(text, index, raw))
            .collect::<Result<_, _>>()?;
        Ok(Pool { provisioners })
    }

    /// How many workers the pool has at most.
    pub fn max_workers(&self) -> usize {
        self.provisioners.iter().map(|p| p.max_workers.get()).sum()
    }

    /// The pool split into one pool per machine, to use them one at a time: each host of an ssh provisioner
    /// alone (named as its route codes begin, `user@host:port`), every other provisioner as it is
    /// (`provisioner N`, from 0).
    pub fn each_host(&self) -> Vec<(String, Pool)> {
        let alone = |name: String, provisioner: Provisioner| {
            let pool = Pool {
                provisioners: vec![provisioner],
            };
            (name, pool)
        };
        let mut machines = Vec::new();
        for (index, provisioner) in self.provisioners.iter().enumerate() {
            let ProvisionerKind::Ssh {
                hosts,
                workers_per_host,
                ..
            } = &provisioner.kind
            else {
                machines.push(alone(format!("provisioner {index}"), provisioner.clone()));
                continue;
            };
            for host in hosts {
                let mut one = provisioner.clone();
                if let ProvisionerKind::Ssh { hosts, .. } = &mut one.kind {
                    *hosts = vec![host.clone()];
                }
                one.max_workers = *workers_per_host;
                machines.push(alone(host.to_string(), one));
            }
        }
        machines
    }
}

/// Checks one provisioner of the file against its kind.
fn provisioner(text: &str, index: usize, raw: RawProvisioner) -> Result<Provisioner, Problem> {
    let path = format!("provisioner[{index}]");
    let at = Some(Location::of_offset(text, raw.kind.span().start));
    let fail = |message: String| problem(&path, at, &message);
    let kind = *raw.kind.get_ref();
    let foreign = raw
        .kind_keys()
        .into_iter()
        .find(|&(key, given)| given && !kind.takes(key));
    if let Some((key, _)) = foreign {
        return Err(fail(format!(
            "the {} provisioner takes no `{key}`",
            format!("{kind:?}").to_lowercase()
        )));
    }
    let kind = match kind {
        Kind::Local => ProvisionerKind::Local,
        Kind::Hooks => match (raw.provision, raw.execute) {
            (Some(provision), Some(execute)) => ProvisionerKind::Hooks {
                provision,
                execute,
                dispose: raw.dispose,
            },
            (None, _) => return Err(fail("a hooks provisioner needs `provision`".to_owned())),
            (_, None) => return Err(fail("a hooks provisioner needs `execute`".to_owned())),
        },
        Kind::Ssh => {
            let entries = raw.hosts.unwrap_or_default();
            if entries.is_empty() {
                return Err(fail(
                    "an ssh provisioner needs `hosts`, a list of [user@]host[:port]".to_owned(),
                ));
            }
            let hosts = entries
                .iter()
                .map(|entry| SshHost::parse(entry))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| fail(format!("in `hosts`: {message}")))?;
            ProvisionerKind::Ssh {
                hosts,
                identity_file: raw.identity_file.map(|file| home_relative(&file)),
                workers_per_host: raw.workers_per_host.unwrap_or(NonZeroUsize::MIN),
                options: raw.options.unwrap_or_default(),
            }
        }
        Kind::Lab => match (raw.server, raw.queue) {
            (Some(server), Some(queue)) => ProvisionerKind::Lab {
                server,
                queue,
                token: None,
            },
            (None, _) => return Err(fail("a lab provisioner needs `server`".to_owned())),
            (_, None) => return Err(fail("a lab provisioner needs `queue`".to_owned())),
        },
    };
    let max_workers = match (raw.max_workers, &kind) {
        (Some(n), _) => n,
        (None, ProvisionerKind::Local) => {
            std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
        }
        (
            None,
            ProvisionerKind::Ssh {
                hosts,
                workers_per_host,
                ..
            },
        ) => NonZeroUsize::new(hosts.len() * workers_per_host.get()).unwrap_or(NonZeroUsize::MIN),
        (None, ProvisionerKind::Hooks { .. }) => {
            return Err(fail(
                "a hooks provisioner needs `max_workers` (how many instances to ask for)"
                    .to_owned(),
            ))
        }
        (None, ProvisionerKind::Lab { .. }) => {
            return Err(fail(
                "a lab provisioner needs `max_workers` (how many agents to hold)".to_owned(),
            ))
        }
    };
    Ok(Provisioner {
        kind,
        max_workers,
        platform: raw.platform,
        failure_budget: raw.failure_budget.unwrap_or(DEFAULT_FAILURE_BUDGET),
    })
}

/// `~/rest` as a path under the home directory; any other path as it is.
fn home_relative(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

fn problem(path: &str, location: Option<Location>, message: &str) -> Problem {
    Problem {
        kind: ProblemKind::Conflict,
        path: path.to_owned(),
        location,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_of_both_kinds_reads() {
        let pool = Pool::from_toml(
            "[[provisioner]]\nkind = \"local\"\nmax_workers = 2\n\n[[provisioner]]\nkind = \"hooks\"\n\
             provision = \"p $INSTANCE_COUNT\"\nexecute = \"e $COMMAND\"\nmax_workers = 3\n\
             platform = { arch = \"aarch64\", tags = [\"kvm\"] }\n",
        )
        .expect("a pool");
        assert_eq!(pool.max_workers(), 5);
        assert_eq!(pool.provisioners[0].kind, ProvisionerKind::Local);
        assert_eq!(
            pool.provisioners[1].platform.arch.as_deref(),
            Some("aarch64")
        );
        assert!(matches!(
            pool.provisioners[1].kind,
            ProvisionerKind::Hooks { dispose: None, .. }
        ));
    }

    #[test]
    fn a_lab_pool_reads_its_queue() {
        let pool = Pool::from_toml(
            "[[provisioner]]\nkind = \"lab\"\nserver = \"http://a:7370,http://b:7370\"\nqueue = \"rpi4\"\n\
             max_workers = 4\n",
        )
        .expect("a pool");
        assert_eq!(pool.max_workers(), 4);
        assert_eq!(
            pool.provisioners[0].kind,
            ProvisionerKind::Lab {
                server: "http://a:7370,http://b:7370".to_owned(),
                queue: "rpi4".to_owned(),
                token: None
            }
        );
    }

    #[test]
    fn an_ssh_pool_reads_its_hosts() {
        let pool = Pool::from_toml(
            "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"root@10.0.0.5:22\", \"builder-2\", \"[::1]:2222\"]\n\
             workers_per_host = 2\nfailure_budget = 1\n",
        )
        .expect("a pool");
        let provisioner = &pool.provisioners[0];
        assert_eq!(provisioner.max_workers.get(), 6);
        assert_eq!(provisioner.failure_budget, 1);
        let ProvisionerKind::Ssh { hosts, .. } = &provisioner.kind else {
            panic!("not ssh: {provisioner:?}");
        };
        let shown: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["root@10.0.0.5:22", "builder-2", "::1:2222"]);
        assert_eq!(hosts[0].destination(), "root@10.0.0.5");
        assert_eq!(hosts[2].port, Some(2222));
    }

    #[test]
    fn a_pool_splits_into_one_pool_per_host() {
        let pool = Pool::from_toml(
            "[[provisioner]]\nkind = \"local\"\nmax_workers = 2\n\n[[provisioner]]\nkind = \"ssh\"\n\
             hosts = [\"a@10.0.0.5:22\", \"b\"]\nworkers_per_host = 3\n",
        )
        .expect("a pool");
        let machines = pool.each_host();
        let names: Vec<&str> = machines.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["provisioner 0", "a@10.0.0.5:22", "b"]);
        assert_eq!(
            machines[0].1,
            Pool {
                provisioners: vec![pool.provisioners[0].clone()]
            }
        );
        for (name, one) in &machines[1..] {
            assert_eq!(one.max_workers(), 3, "{name}");
            let ProvisionerKind::Ssh { hosts, .. } = &one.provisioners[0].kind else {
                panic!("not ssh: {one:?}");
            };
            let shown: Vec<String> = hosts.iter().map(ToString::to_string).collect();
            assert_eq!(&shown, std::slice::from_ref(name));
        }
    }

    #[test]
    fn bad_pools_say_what_and_where() {
        let cases = [
            ("", "provisioner", None, "at least one"),
            (
                "[[provisioner]]\nkind = \"vm\"\n",
                "provisioner[0].kind",
                Some((2, 8)),
                "unknown variant `vm`",
            ),
            (
                "[[provisioner]]\nkind = \"ssh\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "needs `hosts`",
            ),
            (
                "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"a@b:99999\"]\n",
                "provisioner[0]",
                Some((2, 8)),
                "bad port \"99999\"",
            ),
            (
                "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"a\"]\nprovision = \"p\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "the ssh provisioner takes no `provision`",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nmax_workers = 0\n",
                "provisioner[0].max_workers",
                Some((3, 15)),
                "nonzero",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nhosts = []\n",
                "provisioner[0]",
                Some((2, 8)),
                "the local provisioner takes no `hosts`",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nhost = []\n",
                "provisioner[0].host",
                Some((3, 1)),
                "unknown field `host`",
            ),
            (
                "[[provisioner]]\nkind = \"hooks\"\nexecute = \"e\"\nmax_workers = 1\n",
                "provisioner[0]",
                Some((2, 8)),
                "needs `provision`",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nexecute = \"e\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "takes no `execute`",
            ),
            (
                "[[provisioner]]\nkind = \"hooks\"\nprovision = \"p\"\nexecute = \"e\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "needs `max_workers`",
            ),
            (
                "[[provisioner]]\nkind = \"lab\"\nserver = \"http://a\"\nmax_workers = 2\n",
                "provisioner[0]",
                Some((2, 8)),
                "a lab provisioner needs `queue`",
            ),
            (
                "[[provisioner]]\nkind = \"lab\"\nserver = \"http://a\"\nqueue = \"q\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "needs `max_workers` (how many agents",
            ),
            (
                "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"a\"]\nqueue = \"q\"\n",
                "provisioner[0]",
                Some((2, 8)),
                "the ssh provisioner takes no `queue`",
            ),
        ];
        for (text, path, at, message) in cases {
            let problem = Pool::from_toml(text).expect_err(text);
            assert_eq!(problem.path, path, "{text}: {problem}");
            assert_eq!(
                problem.location.map(|l| (l.line, l.column)),
                at,
                "{text}: {problem}"
            );
            assert!(problem.message.contains(message), "{text}: {problem}");
        }
    }
}
