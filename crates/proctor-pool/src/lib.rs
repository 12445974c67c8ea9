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
    /// The platform its workers have, as the file gives it (a local worker finds what the file leaves out).
    pub platform: Platform,
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
}

/// What a worker runs on: its architecture, distribution and free-form tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
    #[serde(default)]
    platform: Platform,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Local,
    Hooks,
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
}

/// Checks one provisioner of the file against its kind.
fn provisioner(text: &str, index: usize, raw: RawProvisioner) -> Result<Provisioner, Problem> {
    let path = format!("provisioner[{index}]");
    let at = Some(Location::of_offset(text, raw.kind.span().start));
    let kind = match *raw.kind.get_ref() {
        Kind::Local => {
            let hook_keys = [
                ("provision", &raw.provision),
                ("execute", &raw.execute),
                ("dispose", &raw.dispose),
            ];
            if let Some((key, _)) = hook_keys.iter().find(|(_, value)| value.is_some()) {
                return Err(problem(
                    &path,
                    at,
                    &format!("a local provisioner takes no `{key}` (only kind = \"hooks\" does)"),
                ));
            }
            ProvisionerKind::Local
        }
        Kind::Hooks => match (raw.provision, raw.execute) {
            (Some(provision), Some(execute)) => ProvisionerKind::Hooks {
                provision,
                execute,
                dispose: raw.dispose,
            },
            (provision, _) => {
                let missing = if provision.is_none() {
                    "provision"
                } else {
                    "execute"
                };
                return Err(problem(
                    &path,
                    at,
                    &format!("a hooks provisioner needs `{missing}`"),
                ));
            }
        },
    };
    let max_workers = match (raw.max_workers, &kind) {
        (Some(n), _) => n,
        (None, ProvisionerKind::Local) => {
            std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
        }
        (None, ProvisionerKind::Hooks { .. }) => {
            return Err(problem(
                &path,
                at,
                "a hooks provisioner needs `max_workers` (how many instances to ask for)",
            ))
        }
    };
    Ok(Provisioner {
        kind,
        max_workers,
        platform: raw.platform,
    })
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
    fn bad_pools_say_what_and_where() {
        let cases = [
            ("", "provisioner", None, "at least one"),
            (
                "[[provisioner]]\nkind = \"ssh\"\n",
                "provisioner[0].kind",
                Some((2, 8)),
                "unknown variant `ssh`",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nmax_workers = 0\n",
                "provisioner[0].max_workers",
                Some((3, 15)),
                "nonzero",
            ),
            (
                "[[provisioner]]\nkind = \"local\"\nhosts = []\n",
                "provisioner[0].hosts",
                Some((3, 1)),
                "unknown field `hosts`",
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
