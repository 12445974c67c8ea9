//! `proctor.toml`: Proctor's own suite configuration (the schema is in the
//! crate documentation).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::invocation::{ExitMapping, Protocol};
use crate::suite::{Batching, Concurrency, GroupRegex, Needs, Runner, Suite};
use crate::template::CommandTemplate;
use crate::SourceError;

/// The file name.
pub(crate) const FILE: &str = "proctor.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    suite: Vec<SuiteTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteTable {
    name: String,
    directory: Option<PathBuf>,
    run: String,
    list: Option<String>,
    #[serde(default)]
    id_option: String,
    #[serde(default)]
    list_option: String,
    #[serde(default)]
    protocol: ProtocolName,
    exit_codes: Option<ExitCodesName>,
    batching: Option<BatchingName>,
    group_regex: Option<String>,
    time_limit: Option<String>,
    no_output_limit: Option<String>,
    concurrency: Option<usize>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    needs: Vec<NeedsTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeedsTable {
    tests: Option<String>,
    arch: Option<String>,
    distro: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ProtocolName {
    #[default]
    Subunit,
    Tap,
    ExitStatus,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum ExitCodesName {
    Automake,
    Tmt,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum BatchingName {
    Batches,
    OnePerTest,
}

/// The suites of the `proctor.toml` at `path`, in file order.
pub(crate) fn load(path: &Path) -> Result<Vec<Suite>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// The suites `text` describes; relative directories are resolved against
/// `path`'s directory.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<Suite>, SourceError> {
    let file: FileTable = toml::from_str(text).map_err(|error| SourceError::Toml {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    if file.suite.is_empty() {
        return Err(SourceError::Toml {
            path: path.to_path_buf(),
            message: "no suites: add at least one [[suite]] table".to_owned(),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    let mut suites = Vec::with_capacity(file.suite.len());
    for table in file.suite {
        let name = table.name.clone();
        let checker = Checker { path, name: &name };
        if table.name.trim().is_empty() {
            return Err(checker.invalid("name", "a suite needs a non-empty name".to_owned()));
        }
        if !names.insert(table.name.clone()) {
            return Err(checker.invalid("name", "another suite has the same name".to_owned()));
        }
        suites.push(checker.suite(table, base)?);
    }
    Ok(suites)
}

/// Checks one suite table, naming it in errors.
struct Checker<'a> {
    path: &'a Path,
    name: &'a str,
}

impl Checker<'_> {
    fn invalid(&self, key: &str, message: String) -> SourceError {
        SourceError::InvalidValue {
            path: self.path.to_path_buf(),
            key: format!("suite {:?}: {key}", self.name),
            message,
        }
    }

    fn suite(&self, table: SuiteTable, base: &Path) -> Result<Suite, SourceError> {
        let directory = self.directory(table.directory.as_deref(), base)?;
        let protocol = self.protocol(table.protocol, table.exit_codes)?;
        let template = CommandTemplate {
            run: table.run,
            list: table.list,
            id_option: table.id_option,
            list_option: table.list_option,
            id_list_default: None,
        };
        if template.list_command().is_none() {
            return Err(self.invalid(
                "list",
                "no `list` command, and `run` has no $LISTOPT to list with".to_owned(),
            ));
        }
        let mut suite = Suite::new(
            table.name.clone(),
            directory,
            Runner::Commands(template),
            protocol,
        );
        suite.batching = self.batching(table.batching, protocol)?;
        if suite.batching == Batching::OnePerProcess && !suite.can_select() {
            return Err(self.invalid(
                "run",
                "a suite running one test per process must pass the test to `run` \
                 with $IDLIST, $IDFILE, or $IDOPTION and an `id_option`"
                    .to_owned(),
            ));
        }
        suite.group_regex = self.group_regex(table.group_regex, suite.batching)?;
        suite.time_limit = self.duration("time_limit", table.time_limit)?;
        suite.no_output_limit = self.duration("no_output_limit", table.no_output_limit)?;
        suite.concurrency = match table.concurrency {
            None => Concurrency::Unknown,
            Some(0) => return Err(self.invalid("concurrency", "must be at least 1".to_owned())),
            Some(count) => Concurrency::Fixed(count),
        };
        suite.env = table.env.into_iter().collect();
        suite.needs = table
            .needs
            .into_iter()
            .map(|needs| self.needs(needs))
            .collect::<Result<_, _>>()?;
        Ok(suite)
    }

    fn needs(&self, table: NeedsTable) -> Result<Needs, SourceError> {
        if table.arch.is_none() && table.distro.is_none() && table.tags.is_empty() {
            return Err(self.invalid(
                "needs",
                "needs nothing: give `arch`, `distro` or `tags`".to_owned(),
            ));
        }
        let tests = table
            .tests
            .map(|pattern| {
                regex::Regex::new(&pattern)
                    .map_err(|error| self.invalid("needs.tests", error.to_string()))
            })
            .transpose()?;
        Ok(Needs {
            tests,
            arch: table.arch,
            distro: table.distro,
            tags: table.tags,
        })
    }

    fn directory(&self, directory: Option<&Path>, base: &Path) -> Result<PathBuf, SourceError> {
        let directory = match directory {
            Some(directory) => base.join(directory),
            None => base.to_path_buf(),
        };
        if directory.is_dir() {
            Ok(directory)
        } else {
            Err(self.invalid(
                "directory",
                format!("{} is not a directory", directory.display()),
            ))
        }
    }

    fn protocol(
        &self,
        protocol: ProtocolName,
        exit_codes: Option<ExitCodesName>,
    ) -> Result<Protocol, SourceError> {
        match (protocol, exit_codes) {
            (ProtocolName::Subunit, None) => Ok(Protocol::Subunit),
            (ProtocolName::Tap, None) => Ok(Protocol::Tap),
            (ProtocolName::ExitStatus, codes) => Ok(Protocol::ExitStatus(match codes {
                None | Some(ExitCodesName::Automake) => ExitMapping::AUTOMAKE,
                Some(ExitCodesName::Tmt) => ExitMapping::TMT,
            })),
            (_, Some(_)) => Err(self.invalid(
                "exit_codes",
                "only a suite with protocol = \"exit-status\" has exit codes".to_owned(),
            )),
        }
    }

    fn batching(
        &self,
        batching: Option<BatchingName>,
        protocol: Protocol,
    ) -> Result<Batching, SourceError> {
        match (batching, protocol) {
            (Some(BatchingName::Batches), Protocol::ExitStatus(_)) => Err(self.invalid(
                "batching",
                "an exit status reports one test, so exit-status suites run one test per process"
                    .to_owned(),
            )),
            (Some(BatchingName::OnePerTest), _) | (None, Protocol::ExitStatus(_)) => {
                Ok(Batching::OnePerProcess)
            }
            (Some(BatchingName::Batches) | None, _) => Ok(Batching::Batches),
        }
    }

    fn group_regex(
        &self,
        pattern: Option<String>,
        batching: Batching,
    ) -> Result<Option<GroupRegex>, SourceError> {
        let Some(pattern) = pattern else {
            return Ok(None);
        };
        if batching == Batching::OnePerProcess {
            return Err(self.invalid(
                "group_regex",
                "tests of a suite running one test per process cannot share a process".to_owned(),
            ));
        }
        GroupRegex::new(&pattern)
            .map(Some)
            .map_err(|error| self.invalid("group_regex", error.to_string()))
    }

    fn duration(&self, key: &str, text: Option<String>) -> Result<Option<Duration>, SourceError> {
        let Some(text) = text else {
            return Ok(None);
        };
        let bad = |why: &str| {
            self.invalid(
                key,
                format!("{text:?} {why}: write a duration such as \"90s\", \"5m\" or \"1h 30m\""),
            )
        };
        let signed = jiff::SignedDuration::from_str(&text).map_err(|_| bad("is not a duration"))?;
        match Duration::try_from(signed) {
            Ok(duration) if !duration.is_zero() => Ok(Some(duration)),
            _ => Err(bad("is not a positive duration")),
        }
    }
}
