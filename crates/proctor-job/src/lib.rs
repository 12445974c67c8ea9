//! Lab job definitions and agent configuration: the typed, checked form of what people submit to a
//! Proctor lab and of how an agent is set up. No HTTP and no storage: the server, the agent and the CLI
//! all read jobs and configurations through this crate, so they agree on what is valid.
//!
//! - A [`Job`] is YAML or JSON with Testflinger's field names (`job_queue`, `test_data.test_cmds`,
//!   `reserve_data.ssh_keys`, …) plus Proctor's `max_attempts`, `recipe` and `options`. Timeouts are whole
//!   seconds (as Testflinger writes them) or strings such as `"30m"` or `"1h 30m"`. Every field of Testflinger's
//!   job schema is accepted; those Proctor does not act on are kept ([`Job::inert_fields`]). A job serialises to
//!   JSON, timeouts as seconds, for the store and the agent's `job.json`, and reads back unchanged.
//! - An [`AgentConfig`] is `agent.toml` with Testflinger's agent keys (`agent_id`, `job_queues`,
//!   `<phase>_command`, timeout caps, …) and a `[device]` table, the [`Device`] beside the agent, with the keys of
//!   a Testflinger device connector's configuration (`device_ip`, …). [`AgentConfig::effective_timeouts`] gives the limits a job runs
//!   under on that agent, and [`AgentConfig::phases_for`] the phases it goes through.
//! - Every error is a [`Problem`]: its kind, the field path (`test_data.test_cmds[2]`), the line and
//!   column where the parser knows them, and what was wrong. Unknown fields are errors.
//!
//! ```
//! use proctor_job::{Job, ProblemKind};
//!
//! let job = Job::from_yaml("job_queue: local\ntest_data:\n  test_cmds: [echo hello]\n").unwrap();
//! assert_eq!(job.job_queue.as_str(), "local");
//!
//! let error = Job::from_yaml("job_queue: local\ntest_data:\n  test_cmds: [echo, [1]]\n").unwrap_err();
//! assert_eq!(error.problem.kind, ProblemKind::WrongType);
//! assert_eq!(error.problem.path, "test_data.test_cmds[1]");
//! assert_eq!(error.problem.location.map(|at| at.line), Some(3));
//! ```

mod agent;
mod device;
mod duration;
mod error;
mod job;
mod phase;
mod values;

pub use agent::{AgentConfig, AgentConfigError, LoggingLevel, Timeouts, DEFAULT_SERVER_ADDRESS};
pub use device::Device;
pub use duration::parse_timeout;
pub use error::{read_toml, Location, Problem, ProblemKind};
pub use job::{
    Attachment, Job, JobError, JobFormat, PhaseData, ReserveData, TestCommands, TestData,
    DEFAULT_GLOBAL_TIMEOUT, DEFAULT_OUTPUT_TIMEOUT, DEFAULT_RESERVE_TIMEOUT,
};
pub use phase::{Phase, UnknownPhase};
pub use values::{InsidePath, Name, ScalarText};
