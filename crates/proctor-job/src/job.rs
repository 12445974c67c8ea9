//! The job definition: what a submitter asks a queue's agent to do.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::device::Device;
use crate::error::{path_text, Location, Problem, ProblemKind};
use crate::phase::Phase;
use crate::values::{InsidePath, Name, ScalarText};

/// Testflinger's default for the whole job: 4 hours.
pub const DEFAULT_GLOBAL_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);
/// Testflinger's default for a phase that prints nothing: 15 minutes.
pub const DEFAULT_OUTPUT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Testflinger's default reservation: 1 hour.
pub const DEFAULT_RESERVE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Free-form data for a phase whose shape belongs to the device's tooling (`provision_data`, …).
pub type PhaseData = Map<String, Value>;

/// A job, with Testflinger's field names. Read it with [`Job::parse`]; it serialises to JSON (timeouts as
/// whole seconds) for the store and for the agent's `job.json`, and reads back to the same value.
///
/// Every field of Testflinger's job schema is accepted, so a job written for Testflinger runs unchanged; the ones
/// Proctor does not act on ([`Job::inert_fields`] names those a job sets) are kept and reach the phase commands
/// in `job.json`. A field Testflinger does not know either is refused, saying where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The queue whose agents may run the job.
    pub job_queue: Name,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free tags for searching.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Higher runs first among queued jobs; 0 by default.
    #[serde(default)]
    pub job_priority: u32,
    /// The time the whole job may take (the agent may cap it).
    #[serde(
        default = "default_global_timeout",
        deserialize_with = "crate::duration::deserialize",
        serialize_with = "crate::duration::serialize"
    )]
    pub global_timeout: Duration,
    /// The time a phase may go without printing anything (the agent may cap it).
    #[serde(
        default = "default_output_timeout",
        deserialize_with = "crate::duration::deserialize",
        serialize_with = "crate::duration::serialize"
    )]
    pub output_timeout: Duration,
    /// Testflinger's wait for a multi-device job's devices to be allocated; kept, not acted on.
    #[serde(
        default,
        deserialize_with = "crate::duration::deserialize_option",
        serialize_with = "crate::duration::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub allocation_timeout: Option<Duration>,
    /// How many times the job may be claimed when agents are lost under it; 1 by default.
    #[serde(default = "one_attempt")]
    pub max_attempts: NonZeroU32,
    /// Data for the provision phase (its shape is the provisioning tool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_data: Option<PhaseData>,
    /// Data for the firmware update phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_update_data: Option<PhaseData>,
    /// What the test phase runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data: Option<TestData>,
    /// Data for the allocate phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_data: Option<PhaseData>,
    /// Holding the machine for someone after the tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_data: Option<ReserveData>,
    /// Where Testflinger posts the job's status changes; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status_webhook: Option<String>,
    /// Agents Testflinger must not give the job to; kept, not acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_agents: Vec<String>,
    /// Testflinger's debug switch for the device connectors; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<bool>,
    /// Testflinger's id of a resubmitted job; kept, not acted on (Proctor gives every job its own id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Testflinger's parent of a multi-device child job; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<String>,
    /// A stored recipe to run as the test phase, instead of `test_data.test_cmds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Name>,
    /// The recipe's options, given to its script as `--key value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, ScalarText>,
}

/// The test phase's data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestData {
    /// The commands, run by bash in the job's work directory when the agent has no `test_command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_cmds: Option<TestCommands>,
    /// Extra environment for the test phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, ScalarText>,
    /// Files uploaded with the job and unpacked under `attachments/test/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The user to log in to the machine under test as (Testflinger's device connectors default to `ubuntu`);
    /// kept for the phase commands, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_username: Option<String>,
    /// That user's password; kept for the phase commands, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_password: Option<String>,
    /// Environment variables Testflinger fills from its secrets store (name, then secret path); kept, not acted
    /// on: a Proctor lab has no secrets store, so they are not set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// `test_cmds`: one script, or a list of commands; kept as written so the job reads back the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestCommands {
    /// A script (usually a YAML block scalar).
    Script(String),
    /// One command per entry.
    List(Vec<String>),
}

impl TestCommands {
    /// The commands as one bash script: a list becomes one command per line (as Testflinger does).
    pub fn script(&self) -> String {
        match self {
            TestCommands::Script(script) => script.clone(),
            TestCommands::List(commands) => {
                let mut script = commands.join("\n");
                script.push('\n');
                script
            }
        }
    }

    /// The commands as one bash script for a machine described by `device`: [`TestCommands::script`] with its
    /// `{device_ip}`-style placeholders filled in as Testflinger does (a list's commands one by one); see
    /// [`Device::fill_placeholders`].
    pub fn script_for(&self, device: &Device) -> String {
        match self {
            TestCommands::Script(script) => device.fill_placeholders(script).into_owned(),
            TestCommands::List(commands) => {
                let mut script = commands
                    .iter()
                    .map(|command| device.fill_placeholders(command))
                    .collect::<Vec<_>>()
                    .join("\n");
                script.push('\n');
                script
            }
        }
    }
}

impl Serialize for TestCommands {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TestCommands::Script(script) => serializer.serialize_str(script),
            TestCommands::List(commands) => commands.serialize(serializer),
        }
    }
}

// Written by hand rather than as an untagged enum: serde's untagged enums buffer the value and lose both
// the index of a bad entry (`test_cmds[2]`) and its line.
impl<'de> Deserialize<'de> for TestCommands {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TestCommands, D::Error> {
        deserializer.deserialize_any(TestCommandsVisitor)
    }
}

struct TestCommandsVisitor;

impl<'de> Visitor<'de> for TestCommandsVisitor {
    type Value = TestCommands;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, script: &str) -> Result<TestCommands, E> {
        Ok(TestCommands::Script(script.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut entries: A) -> Result<TestCommands, A::Error> {
        let mut commands = Vec::new();
        while let Some(command) = entries.next_element::<String>()? {
            commands.push(command);
        }
        Ok(TestCommands::List(commands))
    }
}

/// A file uploaded with the job (Testflinger's `{local, agent}` shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The file on the submitter's machine.
    pub local: String,
    /// Where it lands under `attachments/<phase>/` on the agent; by default the local path relative to the job
    /// file's directory (the file's name when it is outside), as Testflinger's CLI does. An absolute path loses
    /// its leading `/`, as there (`/data/x` lands at `data/x`).
    #[serde(
        default,
        deserialize_with = "deserialize_agent_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent: Option<InsidePath>,
    /// Where Testflinger copies it on the machine under test; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// The reserve phase's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveData {
    /// Keys to install, as `ssh-import-id` names (`lp:user`, `gh:user`), as in Testflinger; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// How long to hold the machine; 1 hour by default.
    #[serde(
        default = "default_reserve_timeout",
        deserialize_with = "crate::duration::deserialize",
        serialize_with = "crate::duration::serialize"
    )]
    pub timeout: Duration,
}

/// An attachment's `agent` path, made relative by dropping its leading `/`s as Testflinger's CLI does. A visitor
/// rather than reading a `String` first, so that an error points at the value rather than at its mapping.
fn deserialize_agent_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<InsidePath>, D::Error> {
    deserializer.deserialize_str(AgentPathVisitor).map(Some)
}

struct AgentPathVisitor;

impl Visitor<'_> for AgentPathVisitor {
    type Value = InsidePath;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a path without `..`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<InsidePath, E> {
        InsidePath::new(text.trim_start_matches('/')).map_err(|reason| {
            E::invalid_value(
                de::Unexpected::Str(text),
                &format!("a path inside the attachments ({reason})").as_str(),
            )
        })
    }
}

fn default_global_timeout() -> Duration {
    DEFAULT_GLOBAL_TIMEOUT
}

fn default_output_timeout() -> Duration {
    DEFAULT_OUTPUT_TIMEOUT
}

fn default_reserve_timeout() -> Duration {
    DEFAULT_RESERVE_TIMEOUT
}

fn one_attempt() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// The two ways a job is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFormat {
    /// YAML (errors carry line and column).
    Yaml,
    /// JSON (errors carry line and column too).
    Json,
}

impl JobFormat {
    /// The format a file name suggests: `.json` is JSON, anything else YAML.
    pub fn from_path(path: &Path) -> JobFormat {
        let is_json = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
        if is_json {
            JobFormat::Json
        } else {
            JobFormat::Yaml
        }
    }

    /// The format the text looks like: JSON when it starts with `{`, YAML otherwise. (JSON is nearly
    /// YAML too, but serde_json's errors are the better ones for JSON.)
    pub fn detect(text: &str) -> JobFormat {
        if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
        {
            JobFormat::Json
        } else {
            JobFormat::Yaml
        }
    }
}

impl fmt::Display for JobFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobFormat::Yaml => "YAML",
            JobFormat::Json => "JSON",
        })
    }
}

/// A job that could not be read: the format and the [`Problem`] (field path, line and column, message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {format} job: {problem}")]
pub struct JobError {
    /// The format the job was read as.
    pub format: JobFormat,
    /// What was wrong and where.
    pub problem: Problem,
}

impl Job {
    /// Reads a job written in `format` and checks it.
    pub fn parse(text: &str, format: JobFormat) -> Result<Job, JobError> {
        let job = match format {
            JobFormat::Yaml => read_yaml(text),
            JobFormat::Json => read_json(text),
        }
        .and_then(|job| job.check_fields_agree().map(|()| job));
        job.map_err(|problem| JobError { format, problem })
    }

    /// Reads a YAML job and checks it.
    pub fn from_yaml(text: &str) -> Result<Job, JobError> {
        Job::parse(text, JobFormat::Yaml)
    }

    /// Reads a JSON job and checks it.
    pub fn from_json(text: &str) -> Result<Job, JobError> {
        Job::parse(text, JobFormat::Json)
    }

    /// A job on `queue` with every other field at its default.
    pub fn on_queue(queue: Name) -> Job {
        Job {
            job_queue: queue,
            name: None,
            tags: Vec::new(),
            job_priority: 0,
            global_timeout: DEFAULT_GLOBAL_TIMEOUT,
            output_timeout: DEFAULT_OUTPUT_TIMEOUT,
            allocation_timeout: None,
            max_attempts: one_attempt(),
            provision_data: None,
            firmware_update_data: None,
            test_data: None,
            allocate_data: None,
            reserve_data: None,
            job_status_webhook: None,
            exclude_agents: Vec::new(),
            debug: None,
            job_id: None,
            parent_job_id: None,
            recipe: None,
            options: BTreeMap::new(),
        }
    }

    /// Whether the job has data for `phase` (`setup` and `cleanup` need none; a recipe is test data).
    pub fn has_data_for(&self, phase: Phase) -> bool {
        match phase {
            Phase::Setup | Phase::Cleanup => true,
            Phase::Provision => self.provision_data.is_some(),
            Phase::FirmwareUpdate => self.firmware_update_data.is_some(),
            Phase::Test => self.test_data.is_some() || self.recipe.is_some(),
            Phase::Allocate => self.allocate_data.is_some(),
            Phase::Reserve => self.reserve_data.is_some(),
        }
    }

    /// The Testflinger fields this job sets that Proctor keeps but does not act on, by their paths
    /// (`test_data.test_username`, `test_data.attachments[].device`, …), in the order of the job schema.
    pub fn inert_fields(&self) -> Vec<&'static str> {
        let test_data = self.test_data.as_ref();
        let set = [
            ("job_id", self.job_id.is_some()),
            ("parent_job_id", self.parent_job_id.is_some()),
            ("allocation_timeout", self.allocation_timeout.is_some()),
            ("job_status_webhook", self.job_status_webhook.is_some()),
            ("exclude_agents", !self.exclude_agents.is_empty()),
            ("debug", self.debug.is_some()),
            (
                "test_data.test_username",
                test_data.is_some_and(|data| data.test_username.is_some()),
            ),
            (
                "test_data.test_password",
                test_data.is_some_and(|data| data.test_password.is_some()),
            ),
            (
                "test_data.secrets",
                test_data.is_some_and(|data| !data.secrets.is_empty()),
            ),
            (
                "test_data.attachments[].device",
                test_data.is_some_and(|data| {
                    data.attachments
                        .iter()
                        .any(|attachment| attachment.device.is_some())
                }),
            ),
        ];
        set.into_iter()
            .filter_map(|(field, is_set)| is_set.then_some(field))
            .collect()
    }

    /// The checks between fields, which serde cannot make while reading one field.
    fn check_fields_agree(&self) -> Result<(), Problem> {
        if !self.options.is_empty() && self.recipe.is_none() {
            return Err(Problem::conflict(
                "options",
                "`options` are given to a recipe, but the job names no `recipe`",
            ));
        }
        let has_test_cmds = self
            .test_data
            .as_ref()
            .is_some_and(|data| data.test_cmds.is_some());
        if self.recipe.is_some() && has_test_cmds {
            return Err(Problem::conflict(
                "test_data.test_cmds",
                "a job runs either a `recipe` or `test_data.test_cmds` as its test phase, not both",
            ));
        }
        Ok(())
    }
}

fn read_yaml(text: &str) -> Result<Job, Problem> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = path_text(error.path());
        let location = error.inner().location().map(|location| Location {
            line: location.line(),
            column: location.column(),
        });
        let message = yaml_message(error.inner(), &path, location);
        Problem::from_serde(path, location, message)
    })
}

/// serde_yaml_ng's message without the position and the path it adds itself (we keep those apart). Its
/// path can stop short of ours (at the parent of an unknown field), so any leading part of ours is removed.
fn yaml_message(error: &serde_yaml_ng::Error, path: &str, location: Option<Location>) -> String {
    let mut message = error.to_string();
    if let Some(location) = location {
        let position = format!(" at line {} column {}", location.line, location.column);
        message = message.replacen(&position, "", 1);
    }
    let own_path =
        path_and_parents(path).find(|parent| message.starts_with(&format!("{parent}: ")));
    match own_path {
        Some(parent) => message[parent.len() + 2..].to_owned(),
        None => message,
    }
}

/// `a.b[2]`, then `a.b`, then `a`.
fn path_and_parents(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let current = rest.filter(|current| !current.is_empty())?;
        rest = current.rfind(['.', '[']).map(|cut| &current[..cut]);
        Some(current)
    })
}

fn read_json(text: &str) -> Result<Job, Problem> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let job = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| json_problem(path_text(error.path()), error.inner()))?;
    // Trailing text after the object is an error too, as serde_json::from_str would say.
    deserializer
        .end()
        .map_err(|error| json_problem(String::new(), &error))?;
    Ok(job)
}

fn json_problem(path: String, error: &serde_json::Error) -> Problem {
    let location = (error.line() > 0).then(|| Location {
        line: error.line(),
        column: error.column(),
    });
    let problem = Problem::from_serde(path, location, json_message(error));
    match error.classify() {
        Category::Syntax | Category::Eof => Problem {
            kind: ProblemKind::Syntax,
            ..problem
        },
        Category::Data | Category::Io => problem,
    }
}

/// serde_json's message without the position it appends (we keep that apart).
fn json_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}
