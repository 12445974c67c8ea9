//! A suite: a set of tests that are listed and run the same way.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::executables;
use crate::instances::InstanceHooks;
use crate::invocation::{Invocation, Protocol};
use crate::shell::ShellCommand;
use crate::template::{CommandTemplate, ExpandError};
use crate::SourceError;

/// One test a suite can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// The test's id, as its runner reports it.
    pub id: String,
    /// The index of its suite in [`Project::suites`](crate::Project::suites).
    pub suite: usize,
    /// How long the test is expected to take, when its metadata says.
    pub estimate: Option<Duration>,
    /// The most the test may take.
    pub time_limit: Option<Duration>,
    /// Tests with the same group must run in the same process
    /// (from [`Suite::group_regex`]).
    pub group: Option<String>,
}

/// How a suite's tests may be spread over processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// Each test runs in a process of its own (tests reporting by exit status).
    OnePerProcess,
    /// A process can run many tests, and starting one costs time, so tests
    /// should go out in batches.
    Batches,
}

/// A `group_regex`: tests whose ids it matches to the same text run in the
/// same process.
///
/// As in testrepository and stestr, the pattern is matched at the start of
/// the id and the group is the whole matched text (not a capture group), so
/// `([^\.]+\.)+` groups `pkg.mod.Class.test_a` under `pkg.mod.Class.`.
#[derive(Clone, Debug)]
pub struct GroupRegex {
    pattern: String,
    anchored: Regex,
}

impl GroupRegex {
    /// Compiles `pattern` (Rust regex syntax, which covers the patterns
    /// Python projects use for grouping).
    pub fn new(pattern: &str) -> Result<GroupRegex, regex::Error> {
        Ok(GroupRegex {
            pattern: pattern.to_owned(),
            anchored: Regex::new(&format!(r"\A(?:{pattern})"))?,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The group of `id`: what the pattern matches at its start, or `None`
    /// when it does not match or matches nothing (Python's empty match is
    /// falsy, so the test is then its own group).
    pub fn group_of(&self, id: &str) -> Option<String> {
        self.anchored
            .find(id)
            .map(|found| found.as_str())
            .filter(|group| !group.is_empty())
            .map(str::to_owned)
    }
}

/// How a suite lists and runs its tests.
#[derive(Clone, Debug)]
pub(crate) enum Runner {
    /// Shell commands with testrepository placeholders.
    Commands(CommandTemplate),
    /// Each executable file under the suite's directory is a test.
    Executables,
    /// The test nodes of an FMF tree rooted at the suite's directory.
    Fmf(crate::fmf::FmfTests),
    /// pytest's node ids, run through the plugin Proctor ships.
    Pytest(crate::pytest::PytestTests),
    /// The tests of a Cargo project's test binaries, one process per test.
    Cargo(crate::cargo::CargoTests),
}

/// Where a suite's concurrency hint comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Concurrency {
    Unknown,
    Fixed(usize),
    /// testrepository's `test_run_concurrency` callout.
    Command(String),
}

/// A set of tests listed and run the same way: one `[[suite]]` of a
/// `proctor.toml`, a `.testr.conf` or `.stestr.conf` project, or a directory
/// of executables.
#[derive(Clone, Debug)]
pub struct Suite {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) directory: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) runner: Runner,
    pub(crate) protocol: Protocol,
    pub(crate) batching: Batching,
    pub(crate) group_regex: Option<GroupRegex>,
    pub(crate) time_limit: Option<Duration>,
    pub(crate) no_output_limit: Option<Duration>,
    pub(crate) concurrency: Concurrency,
    pub(crate) filter_tags: Vec<String>,
    pub(crate) instance_hooks: Option<InstanceHooks>,
    pub(crate) needs: Vec<Needs>,
}

/// What some of a suite's tests need of the worker that runs them (`proctor.toml`'s `[[suite.needs]]`): each field
/// given must match the worker's platform, and its tags must all be among the worker's.
#[derive(Clone, Debug)]
pub struct Needs {
    /// The tests it is for, by a regular expression over their ids (found anywhere in the id); all when `None`.
    pub tests: Option<Regex>,
    /// The architecture, like `x86_64`.
    pub arch: Option<String>,
    /// The distribution and release, like `debian-12`.
    pub distro: Option<String>,
    /// Tags the worker must have, like `kvm`.
    pub tags: Vec<String>,
}

impl Needs {
    /// Whether the test with this id has these needs.
    pub fn applies_to(&self, id: &str) -> bool {
        self.tests.as_ref().is_none_or(|tests| tests.is_match(id))
    }

    /// Whether a worker with this architecture, distribution and tags meets them; one it does not know does not.
    pub fn met_by(&self, arch: Option<&str>, distro: Option<&str>, tags: &[String]) -> bool {
        let matches = |need: &Option<String>, has: Option<&str>| {
            need.as_deref().is_none_or(|need| has == Some(need))
        };
        matches(&self.arch, arch)
            && matches(&self.distro, distro)
            && self.tags.iter().all(|tag| tags.contains(tag))
    }
}

impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut fields = Vec::new();
        fields.extend(self.arch.as_ref().map(|arch| format!("arch {arch}")));
        fields.extend(
            self.distro
                .as_ref()
                .map(|distro| format!("distro {distro}")),
        );
        fields.extend(self.tags.iter().map(|tag| format!("tag {tag}")));
        f.write_str(&fields.join(", "))
    }
}

impl Suite {
    /// A suite with nothing but the essentials set; loaders fill in the rest.
    pub(crate) fn new(
        name: String,
        directory: PathBuf,
        runner: Runner,
        protocol: Protocol,
    ) -> Suite {
        let batching = match protocol {
            Protocol::ExitStatus(_) => Batching::OnePerProcess,
            Protocol::Subunit | Protocol::Tap => Batching::Batches,
        };
        Suite {
            name,
            index: 0,
            directory,
            env: Vec::new(),
            runner,
            protocol,
            batching,
            group_regex: None,
            time_limit: None,
            no_output_limit: None,
            concurrency: Concurrency::Unknown,
            filter_tags: Vec::new(),
            instance_hooks: None,
            needs: Vec::new(),
        }
    }

    /// What its tests need of a worker, as its configuration declares.
    pub fn needs(&self) -> &[Needs] {
        &self.needs
    }

    /// testrepository's instance hooks, when the suite's processes run in instances they provision.
    pub fn instance_hooks(&self) -> Option<&InstanceHooks> {
        self.instance_hooks.as_ref()
    }

    /// The suite's name (unique within its project).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The suite's position in its project, as [`TestCase::suite`] holds it.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The directory its commands run in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Variables its processes get on top of the inherited environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Sets (or replaces) a variable for every command of this suite,
    /// listing included.
    pub fn set_env(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.env.iter_mut().find(|(existing, _)| *existing == key) {
            Some(entry) => entry.1 = value,
            None => self.env.push((key, value)),
        }
    }

    /// How its processes report results.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether its tests run one per process or in batches.
    pub fn batching(&self) -> Batching {
        self.batching
    }

    /// The pattern grouping tests that must share a process.
    pub fn group_regex(&self) -> Option<&GroupRegex> {
        self.group_regex.as_ref()
    }

    /// The most one test may take.
    pub fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    /// How long a process may print nothing before it is killed.
    pub fn no_output_limit(&self) -> Option<Duration> {
        self.no_output_limit
    }

    /// Tags whose tests should not count in totals (testrepository's
    /// `filter_tags`); failures among them still count.
    pub fn filter_tags(&self) -> &[String] {
        &self.filter_tags
    }

    /// How many processes the suite would like to run at once, if it says:
    /// a fixed number, or what its `test_run_concurrency` command prints
    /// (run now, in the suite's directory).
    pub fn concurrency_hint(&self) -> Result<Option<usize>, SourceError> {
        match &self.concurrency {
            Concurrency::Unknown => Ok(None),
            Concurrency::Fixed(count) => Ok(Some(*count)),
            Concurrency::Command(command) => self.shell(command).concurrency().map(Some),
        }
    }

    /// Whether [`Suite::invocation`] can run a chosen subset of the tests;
    /// when it cannot, only [`Suite::invocation_all`] works.
    pub fn can_select(&self) -> bool {
        match &self.runner {
            Runner::Commands(template) => template.can_select(),
            Runner::Executables | Runner::Fmf(_) | Runner::Pytest(_) | Runner::Cargo(_) => true,
        }
    }

    /// The ids of the tests a worker whose platform has these context dimensions (`arch`, `distro`) may run, when
    /// the suite's metadata says (an FMF tree's `adjust` rules); `None` when every test may run anywhere.
    pub fn enabled_on(
        &self,
        dimensions: &[(&str, &str)],
    ) -> Result<Option<HashSet<String>>, SourceError> {
        match &self.runner {
            Runner::Fmf(tests) => {
                crate::fmf::enabled_with(tests, &self.directory, dimensions).map(Some)
            }
            Runner::Commands(_) | Runner::Executables | Runner::Pytest(_) | Runner::Cargo(_) => {
                Ok(None)
            }
        }
    }

    /// The suite's tests, in the order its lister gives them, each once.
    /// For command suites this runs the list command now.
    pub fn list(&self) -> Result<Vec<TestCase>, SourceError> {
        let ids = match &self.runner {
            Runner::Commands(template) => {
                let command = template
                    .list_command()
                    .ok_or_else(|| SourceError::CannotList {
                        suite: self.name.clone(),
                        reason: "the test command has no $LISTOPT and there is no list command"
                            .to_owned(),
                    })?;
                self.shell(&command).list_ids()?
            }
            Runner::Executables => executables::find(&self.directory)?,
            Runner::Fmf(tests) => {
                let listed = crate::fmf::list(tests, &self.directory)?;
                return Ok(listed
                    .into_iter()
                    .map(|(id, time_limit, estimate)| TestCase {
                        time_limit: Some(time_limit),
                        estimate,
                        ..self.test_case(id)
                    })
                    .collect());
            }
            Runner::Pytest(tests) => return tests.list(self),
            Runner::Cargo(tests) => return tests.list(self),
        };
        Ok(ids.into_iter().map(|id| self.test_case(id)).collect())
    }

    /// The test with this id as this suite would list it (for ids known
    /// without listing, such as a previous run's failures).
    pub fn test_case(&self, id: impl Into<String>) -> TestCase {
        let id = id.into();
        TestCase {
            group: self
                .group_regex
                .as_ref()
                .and_then(|regex| regex.group_of(&id)),
            id,
            suite: self.index,
            estimate: None,
            time_limit: self.time_limit,
        }
    }

    /// The process that runs exactly `tests` (one test, or a batch when the
    /// suite batches). Its time limit is the sum of the tests' limits.
    pub fn invocation(&self, tests: &[&TestCase]) -> Result<Invocation, SourceError> {
        self.check_batch(tests)?;
        let ids: Vec<&str> = tests.iter().map(|test| test.id.as_str()).collect();
        let mut invocation = match &self.runner {
            Runner::Commands(template) => self.command_invocation(template, &ids)?,
            Runner::Executables => self.executable_invocation(ids[0])?,
            Runner::Fmf(fmf) => crate::fmf::invocation(fmf, &self.directory, ids[0])?,
            Runner::Pytest(pytest) => self.finish(pytest.invocation(self, &ids)?),
            Runner::Cargo(cargo) => self.finish(cargo.invocation(self, ids[0])?),
        };
        invocation.tests = ids.iter().map(|id| (*id).to_owned()).collect();
        invocation.time_limit = total_time_limit(tests);
        Ok(invocation)
    }

    /// The process that runs every test of the suite, for suites that cannot
    /// select tests. It has no overall time limit, as how many tests it will
    /// run is unknown; the no-output limit still applies.
    pub fn invocation_all(&self) -> Result<Invocation, SourceError> {
        match &self.runner {
            Runner::Commands(template) => Ok(self.finish(Invocation::shell(
                template.run_all_command(),
                &self.directory,
                self.protocol,
            ))),
            Runner::Executables | Runner::Fmf(_) | Runner::Pytest(_) | Runner::Cargo(_) => {
                Err(SourceError::OnePerProcess {
                    suite: self.name.clone(),
                    count: 0,
                })
            }
        }
    }

    fn check_batch(&self, tests: &[&TestCase]) -> Result<(), SourceError> {
        if tests.is_empty() {
            return Err(SourceError::EmptyBatch {
                suite: self.name.clone(),
            });
        }
        if let Some(foreign) = tests.iter().find(|test| test.suite != self.index) {
            return Err(SourceError::ForeignTest {
                suite: self.name.clone(),
                index: self.index,
                id: foreign.id.clone(),
                other: foreign.suite,
            });
        }
        if self.batching == Batching::OnePerProcess && tests.len() > 1 {
            return Err(SourceError::OnePerProcess {
                suite: self.name.clone(),
                count: tests.len(),
            });
        }
        Ok(())
    }

    fn command_invocation(
        &self,
        template: &CommandTemplate,
        ids: &[&str],
    ) -> Result<Invocation, SourceError> {
        if !template.can_select() {
            return Err(SourceError::CannotSelect {
                suite: self.name.clone(),
            });
        }
        let expanded = template.run_command(ids).map_err(|error| match error {
            ExpandError::UnusableId { id, reason } => SourceError::UnusableId {
                suite: self.name.clone(),
                id,
                reason,
            },
            ExpandError::IdFile(source) => SourceError::IdFile {
                suite: self.name.clone(),
                source,
            },
        })?;
        let invocation = Invocation::shell(expanded.command, &self.directory, self.protocol);
        Ok(self.finish(invocation).with_idfile(expanded.idfile))
    }

    fn executable_invocation(&self, id: &str) -> Result<Invocation, SourceError> {
        let relative = Path::new(id);
        let inside = relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        if !inside || id.is_empty() {
            return Err(SourceError::UnusableId {
                suite: self.name.clone(),
                id: id.to_owned(),
                reason: "it is not a relative path inside the test directory",
            });
        }
        // An absolute program path: a relative one would be resolved against
        // the parent's directory or the child's depending on the platform.
        let program = self.directory.join(relative);
        let invocation = Invocation::new(program, Vec::new(), &self.directory, self.protocol);
        Ok(self.finish(invocation))
    }

    fn finish(&self, mut invocation: Invocation) -> Invocation {
        // The suite's variables first, so a source's own (a Cargo test's CARGO_MANIFEST_DIR) win a clash.
        let own = std::mem::replace(&mut invocation.env, self.env.clone());
        invocation.env.extend(own);
        invocation.no_output_limit = self.no_output_limit;
        invocation
    }

    fn shell<'a>(&'a self, command: &'a str) -> ShellCommand<'a> {
        ShellCommand {
            suite: &self.name,
            command,
            cwd: &self.directory,
            env: &self.env,
        }
    }
}

/// The sum of the tests' limits; none if any test is unlimited.
fn total_time_limit(tests: &[&TestCase]) -> Option<Duration> {
    tests
        .iter()
        .map(|test| test.time_limit)
        .try_fold(Duration::ZERO, |total, limit| {
            Some(total.saturating_add(limit?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_the_anchored_whole_match() {
        let regex = GroupRegex::new(r"([^\.]+\.)+").expect("valid");
        assert_eq!(
            regex.group_of("pkg.mod.Class.test_a").as_deref(),
            Some("pkg.mod.Class.")
        );
        assert_eq!(regex.group_of("nodots"), None);
        let anchored = GroupRegex::new(r"mod\.").expect("valid");
        assert_eq!(
            anchored.group_of("pkg.mod.x"),
            None,
            "must match at the start"
        );
        let parallel_class = GroupRegex::new(r"([^\.]*\.)*").expect("valid");
        assert_eq!(
            parallel_class.group_of("nodots"),
            None,
            "an empty match is no group"
        );
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let regex = GroupRegex::new("a|b").expect("valid");
        assert_eq!(regex.group_of("xb"), None);
        assert_eq!(regex.group_of("bx").as_deref(), Some("b"));
    }

    #[test]
    fn batch_limits_add_up() {
        let test = |limit: Option<u64>| TestCase {
            id: "t".into(),
            suite: 0,
            estimate: None,
            time_limit: limit.map(Duration::from_secs),
            group: None,
        };
        let (a, b, none) = (test(Some(2)), test(Some(3)), test(None));
        assert_eq!(total_time_limit(&[&a, &b]), Some(Duration::from_secs(5)));
        assert_eq!(total_time_limit(&[&a, &none]), None);
    }
}
