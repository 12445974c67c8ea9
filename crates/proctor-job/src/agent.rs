//! The agent's configuration file, `agent.toml`, with Testflinger's agent keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::device::Device;
use crate::error::{read_toml, Problem};
use crate::job::{Job, DEFAULT_GLOBAL_TIMEOUT, DEFAULT_OUTPUT_TIMEOUT};
use crate::phase::Phase;
use crate::values::Name;

/// Where an agent looks for its server when the file does not say: `proctor up`'s address.
pub const DEFAULT_SERVER_ADDRESS: &str = "http://127.0.0.1:7370";

/// An agent's configuration. Every key is Testflinger's agent key of the same name, but for `token` and the
/// `[device]` table (what Testflinger keeps in its device connector's own configuration file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's name, unique in the lab.
    pub agent_id: Name,
    /// The server's base URL; [`DEFAULT_SERVER_ADDRESS`] by default. Servers of one lab sharing a database may be
    /// listed comma-separated: the agent moves to the next when its server stops answering.
    #[serde(default = "default_server_address")]
    pub server_address: String,
    /// The bearer token the agent sends (an `agent` token); `PROCTOR_TOKEN` in the environment when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The queues this agent takes jobs from (at least one).
    #[serde(deserialize_with = "deserialize_queues")]
    pub job_queues: Vec<Name>,
    /// Queues to show to users, with a description of each.
    #[serde(default)]
    pub advertised_queues: BTreeMap<String, String>,
    /// Images each queue can provision: queue, then image name, then the provision data that selects it.
    #[serde(default)]
    pub advertised_images: BTreeMap<String, BTreeMap<String, String>>,
    /// Where each job's work directory is made.
    #[serde(default)]
    pub execution_basedir: Option<PathBuf>,
    /// Where the agent keeps logs (and spools output while the server is away).
    #[serde(default)]
    pub logging_basedir: Option<PathBuf>,
    /// Where results and artifacts wait for upload.
    #[serde(default)]
    pub results_basedir: Option<PathBuf>,
    /// How much the agent itself logs.
    #[serde(default)]
    pub logging_level: LoggingLevel,
    /// The longest whole-job time this agent allows; longer job timeouts are cut to it.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub global_timeout: Option<Duration>,
    /// The longest no-output time this agent allows; longer job timeouts are cut to it.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub output_timeout: Option<Duration>,
    /// The command for the setup phase.
    #[serde(default)]
    pub setup_command: Option<String>,
    /// The command for the provision phase.
    #[serde(default)]
    pub provision_command: Option<String>,
    /// The command for the firmware update phase.
    #[serde(default)]
    pub firmware_update_command: Option<String>,
    /// The command for the test phase; without one the agent runs the job's `test_cmds` with bash.
    #[serde(default)]
    pub test_command: Option<String>,
    /// The command for the allocate phase.
    #[serde(default)]
    pub allocate_command: Option<String>,
    /// The command for the reserve phase (it installs the job's `ssh_keys`).
    #[serde(default)]
    pub reserve_command: Option<String>,
    /// The command for the cleanup phase.
    #[serde(default)]
    pub cleanup_command: Option<String>,
    /// The machine under test, with the keys of a Testflinger device connector's configuration (`device_ip`,
    /// `serial_host`, `reboot_script`, `env`, …); see [`AgentConfig::device_for_jobs`].
    #[serde(default)]
    pub device: Device,
}

/// The agent's own log level, with Python's logging names as Testflinger uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum LoggingLevel {
    /// Everything.
    #[serde(rename = "DEBUG", alias = "debug")]
    Debug,
    /// Progress and problems (the default).
    #[default]
    #[serde(rename = "INFO", alias = "info")]
    Info,
    /// Problems.
    #[serde(rename = "WARNING", alias = "warning")]
    Warning,
    /// Failures.
    #[serde(rename = "ERROR", alias = "error")]
    Error,
    /// Only what stops the agent.
    #[serde(rename = "CRITICAL", alias = "critical")]
    Critical,
}

/// An agent configuration that could not be read: the key path, line and column, and what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid agent configuration: {problem}")]
pub struct AgentConfigError {
    /// What was wrong and where.
    pub problem: Problem,
}

/// The time limits a job runs under on a given agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the whole job.
    pub global: Duration,
    /// For a phase that prints nothing.
    pub output: Duration,
}

impl AgentConfig {
    /// Reads `agent.toml` text and checks it.
    pub fn from_toml(text: &str) -> Result<AgentConfig, AgentConfigError> {
        read_toml(text).map_err(|problem| AgentConfigError { problem })
    }

    /// An agent on `queues` with every other key at its default.
    pub fn new(agent_id: Name, queues: Vec<Name>) -> AgentConfig {
        AgentConfig {
            agent_id,
            server_address: default_server_address(),
            token: None,
            job_queues: queues,
            advertised_queues: BTreeMap::new(),
            advertised_images: BTreeMap::new(),
            execution_basedir: None,
            logging_basedir: None,
            results_basedir: None,
            logging_level: LoggingLevel::default(),
            global_timeout: None,
            output_timeout: None,
            setup_command: None,
            provision_command: None,
            firmware_update_command: None,
            test_command: None,
            allocate_command: None,
            reserve_command: None,
            cleanup_command: None,
            device: Device::default(),
        }
    }

    /// The device description jobs see: the `[device]` table, with `agent_name` this agent's id unless the table
    /// gives one (Testflinger's device configurations name their agent so).
    pub fn device_for_jobs(&self) -> Device {
        let mut device = self.device.clone();
        device.set_default("agent_name", self.agent_id.as_str());
        device
    }

    /// The configured command for `phase`, if any.
    pub fn command(&self, phase: Phase) -> Option<&str> {
        let command = match phase {
            Phase::Setup => &self.setup_command,
            Phase::Provision => &self.provision_command,
            Phase::FirmwareUpdate => &self.firmware_update_command,
            Phase::Test => &self.test_command,
            Phase::Allocate => &self.allocate_command,
            Phase::Reserve => &self.reserve_command,
            Phase::Cleanup => &self.cleanup_command,
        };
        command.as_deref()
    }

    /// The phases `job` goes through on this agent, in order: those the agent has a command for and the
    /// job has data for, plus the test phase whenever the job has test data (the built-in bash runner
    /// stands in for a missing `test_command`) and the reserve phase whenever it has reserve data (the agent
    /// holds the machine even when it has no `reserve_command` to install keys).
    pub fn phases_for(&self, job: &Job) -> Vec<Phase> {
        Phase::ALL
            .into_iter()
            .filter(|&phase| job.has_data_for(phase))
            .filter(|&phase| {
                matches!(phase, Phase::Test | Phase::Reserve) || self.command(phase).is_some()
            })
            .collect()
    }

    /// The time limits `job` runs under here: the job's own (or the defaults), cut to the agent's caps.
    pub fn effective_timeouts(&self, job: &Job) -> Timeouts {
        Timeouts {
            global: capped(job.global_timeout, self.global_timeout),
            output: capped(job.output_timeout, self.output_timeout),
        }
    }
}

impl Default for Timeouts {
    /// The limits of a job that sets none, on an agent that caps none.
    fn default() -> Timeouts {
        Timeouts {
            global: DEFAULT_GLOBAL_TIMEOUT,
            output: DEFAULT_OUTPUT_TIMEOUT,
        }
    }
}

fn capped(wanted: Duration, cap: Option<Duration>) -> Duration {
    cap.map_or(wanted, |cap| wanted.min(cap))
}

fn default_server_address() -> String {
    DEFAULT_SERVER_ADDRESS.to_owned()
}

/// `job_queues` must name at least one queue, or the agent would never get work.
fn deserialize_queues<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Name>, D::Error> {
    deserializer.deserialize_seq(QueuesVisitor)
}

struct QueuesVisitor;

impl<'de> Visitor<'de> for QueuesVisitor {
    type Value = Vec<Name>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of at least one queue name")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut entries: A) -> Result<Vec<Name>, A::Error> {
        let mut queues = Vec::new();
        while let Some(queue) = entries.next_element::<Name>()? {
            queues.push(queue);
        }
        if queues.is_empty() {
            return Err(de::Error::invalid_length(0, &self));
        }
        Ok(queues)
    }
}
