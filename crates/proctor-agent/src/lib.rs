//! The lab agent: claims jobs from the server for its queues and runs their phases under process supervision,
//! streaming logs and results back.
//!
//! An [`Agent`] registers with the server named in its [`AgentConfig`], long-polls for a job on its queues, and
//! runs the job's phases (`setup`, `provision`, …, `cleanup`, as [`AgentConfig::phases_for`] picks them) one after
//! another in the job's own work directory, `<work_dir>/<job id>`, which holds the job as `job.json` (made ahead as
//! `<work_dir>/.next-job` while the agent waits, and renamed when a job comes, so the claim-to-process path allocates
//! no files; the spool and the progress record are made while the first phase starts up). Each phase
//! is the agent's `<phase>_command` run with bash, or for the test phase without a `test_command`, the job's
//! `test_cmds` (the built-in local device). Phases see the job through `PROCTOR_JOB_ID`, `PROCTOR_PHASE`,
//! `PROCTOR_SERVER`, `PROCTOR_BIN` (the agent's own program), `PROCTOR_WORK_DIR`, `PROCTOR_JOB_FILE`,
//! `PROCTOR_RESULTS` (where to write a subunit v2 stream) and `PROCTOR_ARTIFACTS` (a directory that is there, `.proctor-artifacts/`), and the machine under test
//! through the `[device]` table's keys upper-cased (`DEVICE_IP`, …) and its `env` variables
//! ([`proctor_job::Device::environment`]). `test_cmds` that hold `{{` get their `{device_ip}`-style placeholders
//! filled as Testflinger's device connectors fill them ([`proctor_job::Device::fill_placeholders`]). Phases run
//! under the supervisor with what is left of the job's global timeout and its output timeout; a limit or a cancel
//! kills the phase's whole process tree.
//!
//! Output is copied to a spool file beside the work directories (`<work_dir>/.spool/<job id>/output.log`) and
//! uploaded from there by a background thread as it grows (within about 100 ms), by offset: an upload the server
//! could not take (no answer, or a 5xx) is retried with backoff from the offset the server acknowledged, so nothing
//! is lost or sent twice while the server is away; one it refused (a 4xx) ends the upload, and the job's reason says
//! so. The results file is uploaded the same way. A heartbeat renews the job's lease every few seconds and
//! brings cancels. The job then ends with one [`FinalState`] and a reason:
//!
//! - `passed` when every phase exited 0 and no test in the results failed; `failed` when the test, allocate or
//!   reserve phase exited non-zero or a test in the results failed;
//! - `error` when setup, provisioning, firmware update or cleanup failed, or a phase could not start;
//! - `killed` when the global or the output timeout fired; `cancelled` when a user cancelled it.
//!
//! `cleanup` runs after every other phase, whatever happened to them (with at least
//! [`AgentSettings::cleanup_allowance`] even when the job's time ran out).
//!
//! Around the phases:
//!
//! - The heartbeat asks the server to hold its reply until a cancel comes (up to one heartbeat interval), so a
//!   cancel stops the phase's tree at once while the lease is still renewed every interval.
//! - A job's attachments are downloaded (retried like the uploads while the server cannot be reached or fails)
//!   and unpacked into `attachments/<phase>/` of its work directory first; an entry that is
//!   absolute, climbs out with `..`, or is not a regular file or directory ends the job `error`, naming it.
//! - A recipe's script is the test phase: written into the work directory and run by its `#!` line with the job's
//!   options as `--key value` (by key). Every phase gets the job's own token as `PROCTOR_TOKEN` when the server
//!   issues one.
//! - The reserve phase runs the `reserve_command` (which installs the `ssh_keys` from `job.json`), then holds the
//!   machine for the reservation's timeout (within the global timeout), saying in the log how to connect; a cancel
//!   ends the hold and the job ends `cancelled`.
//! - The agent does not make `artifacts/` before the phases: jobs written for Testflinger make it themselves
//!   (`mkdir artifacts`, often under `set -e`). After the phases it is made if the job did not, what the phases
//!   left in `$PROCTOR_ARTIFACTS` is moved into it (the job's own file wins a clash, and the log says so), and it
//!   is packed as tar.gz (up to [`AgentSettings::artifacts_cap`]) and uploaded; a failure is noted in the reason
//!   without changing the verdict.
//! - While a job runs (from just after its first process started), a record of it
//!   (`<work_dir>/.in-progress/<job id>.json`) names its spooled streams; an agent started on the same work
//!   directory finds it, uploads what the server lacks, and ends the job `error` ("agent restarted mid-job") before
//!   taking new work ([`Agent::recover`]). The record is also kept when the job's finish could not reach the server
//!   within the drain limit, so the job is ended the same way once the server is back. A job whose agent died before its record was written is settled by the server when its
//!   lease lapses.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use proctor_agent::Agent;
//! use proctor_job::{AgentConfig, Name};
//!
//! let name = |text: &str| Name::new(text).expect("a valid name");
//! let config = AgentConfig::new(name("lab-1"), vec![name("local")]);
//! let agent = Agent::new(config, "/var/lib/proctor-agent".into())?;
//! let shutdown = AtomicBool::new(false);
//! agent.run(&shutdown, |error| eprintln!("{error}"));
//! # Ok::<(), proctor_agent::AgentError>(())
//! ```

mod client;
mod control;
mod error;
mod job;
mod run_worker;
mod state;
mod upload;
mod workdir;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proctor_job::AgentConfig;
use proctor_supervisor::{Supervisor, SupervisorConfig};

pub use error::AgentError;
/// The state a job ends in, as the server records it.
pub use proctor_api::FinalState;
pub use proctor_archive::Limits;
pub use run_worker::{RunWorker, TREE as RUN_TREE};

use client::ServerClient;
use job::{report_interrupted, run_job, JobContext};
use proctor_client::backoff::Backoff;
use state::InProgress;
use workdir::WorkDirs;

/// How a job this agent ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job's id.
    pub job_id: String,
    /// Its final state.
    pub state: FinalState,
    /// Why, as sent to the server.
    pub reason: String,
}

/// The agent's pacing; [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// How long one claim waits for a job (25 s); also how long [`Agent::run`] may take to see a shutdown.
    pub claim_wait: Duration,
    /// How often a running job's lease is renewed and cancels are looked for (5 s; the server's lease is 20 s).
    pub heartbeat_interval: Duration,
    /// Between SIGTERM and SIGKILL when a phase is stopped (10 s).
    pub grace: Duration,
    /// How long to keep retrying a job's attachments download before its phases, its uploads after it ended, and
    /// then its finish, while the server cannot be reached or fails (60 s each).
    pub drain_limit: Duration,
    /// The least time `cleanup` gets, even when the job's global timeout has run out (5 min).
    pub cleanup_allowance: Duration,
    /// The largest packed (tar.gz) artifacts upload; a job whose artifacts pack larger uploads none (the server's
    /// default body limit, [`proctor_api::DEFAULT_MAX_UPLOAD_BYTES`]).
    pub artifacts_cap: u64,
    /// What a job's attachments may expand to on this machine ([`Limits::ATTACHMENTS`]: 1 GiB, 100 000 entries),
    /// checked while they are unpacked, so a user's bundle cannot fill the test machine's disk.
    pub attachments_limits: Limits,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            claim_wait: Duration::from_secs(25),
            heartbeat_interval: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            drain_limit: Duration::from_secs(60),
            cleanup_allowance: Duration::from_secs(5 * 60),
            artifacts_cap: proctor_api::DEFAULT_MAX_UPLOAD_BYTES,
            attachments_limits: Limits::ATTACHMENTS,
        }
    }
}

/// The longest wait between attempts when [`Agent::run`] cannot reach the server.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// A lab agent: one configuration, one work directory, one job at a time.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    settings: AgentSettings,
    client: ServerClient,
    supervisor: Supervisor,
    work_dirs: WorkDirs,
    spool_dir: PathBuf,
}

impl Agent {
    /// An agent with the default [`AgentSettings`], making job work directories under `work_dir`. Makes this
    /// process the subreaper of the phases it runs.
    pub fn new(config: AgentConfig, work_dir: PathBuf) -> Result<Agent, AgentError> {
        Agent::with_settings(config, work_dir, AgentSettings::default())
    }

    /// An agent with its own pacing.
    pub fn with_settings(
        config: AgentConfig,
        work_dir: PathBuf,
        settings: AgentSettings,
    ) -> Result<Agent, AgentError> {
        let client = ServerClient::new(
            &config.server_address,
            config.agent_id.as_str(),
            config.token.as_deref(),
        )?;
        let supervisor = Supervisor::new(SupervisorConfig {
            grace: settings.grace,
            ..SupervisorConfig::default()
        })?;
        // Absolute from here on: phases run in their job's directory, where a relative path would name another.
        let work_dir = absolute(work_dir, "could not resolve the work directory")?;
        let spool_dir = match &config.logging_basedir {
            Some(dir) => absolute(
                dir.clone(),
                "could not resolve the spool directory (logging_basedir)",
            )?,
            None => work_dir.join(".spool"),
        };
        Ok(Agent {
            config,
            settings,
            client,
            supervisor,
            work_dirs: WorkDirs::new(work_dir),
            spool_dir,
        })
    }

    /// Tells the server this agent exists and which queues it serves (again after a restart).
    pub fn register(&self) -> Result<(), AgentError> {
        let images: Vec<String> = self
            .config
            .advertised_images
            .values()
            .flat_map(|images| images.keys().cloned())
            .collect();
        Ok(self.client.register(&self.queues(), &images)?)
    }

    /// Waits up to [`AgentSettings::claim_wait`] for a job; runs it to its end when one comes. `None` when none came.
    pub fn run_once(&self) -> Result<Option<JobReport>, AgentError> {
        self.work_dirs.prepare();
        let Some(claimed) = self
            .client
            .claim(&self.queues(), self.settings.claim_wait)?
        else {
            return Ok(None);
        };
        run_job(&self.context(), claimed).map(Some)
    }

    /// Ends the jobs an earlier run of this agent (on the same work directory) left unfinished, as `error` with
    /// the reason "agent restarted mid-job", after uploading what they had spooled. A job the server no longer
    /// lets this agent finish (it was reaped or requeued) goes to `on_error` and is let go. Fails, keeping the
    /// records for a later try, when the server cannot be reached or fails (5xx).
    pub fn recover(
        &self,
        mut on_error: impl FnMut(&AgentError),
    ) -> Result<Vec<JobReport>, AgentError> {
        let mut reports = Vec::new();
        for (path, record) in InProgress::load_all(&state::records_dir(self.work_dirs.root())) {
            match record.and_then(|record| report_interrupted(&self.context(), &record)) {
                Ok(report) => reports.push(report),
                Err(AgentError::Server(error)) if error.is_transient() => {
                    return Err(AgentError::Server(error))
                }
                Err(error) => on_error(&error),
            }
            state::remove(&path);
        }
        Ok(reports)
    }

    /// Registers, ends the jobs an earlier run left unfinished ([`recover`](Self::recover)), and runs jobs until
    /// `shutdown` is set (seen between jobs, within one claim wait). Errors never stop it: each goes to
    /// `on_error` and the agent tries again after a backoff, registering anew.
    pub fn run(&self, shutdown: &AtomicBool, mut on_error: impl FnMut(&AgentError)) {
        let mut stage = Stage::Register;
        let mut backoff = Backoff::new(MAX_RETRY_WAIT);
        while !shutdown.load(Ordering::SeqCst) {
            let attempt = match stage {
                Stage::Register => self.register(),
                Stage::Recover => self.recover(&mut on_error).map(drop),
                Stage::Work => self.run_once().map(drop),
            };
            match attempt {
                Ok(()) => {
                    stage = stage.next();
                    backoff.reset();
                }
                Err(error) => {
                    on_error(&error);
                    stage = Stage::Register;
                    backoff.sleep();
                }
            }
        }
    }

    fn context(&self) -> JobContext<'_> {
        JobContext {
            config: &self.config,
            settings: &self.settings,
            client: &self.client,
            supervisor: &self.supervisor,
            work_dirs: &self.work_dirs,
            spool_dir: &self.spool_dir,
        }
    }

    fn queues(&self) -> Vec<String> {
        self.config
            .job_queues
            .iter()
            .map(|queue| queue.as_str().to_owned())
            .collect()
    }
}

/// Where [`Agent::run`] is: a fresh start registers, then settles what an earlier run left, then works.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Register,
    Recover,
    Work,
}

impl Stage {
    fn next(self) -> Stage {
        match self {
            Stage::Register => Stage::Recover,
            Stage::Recover | Stage::Work => Stage::Work,
        }
    }
}

/// `path` made absolute against the current directory (without resolving links, and without needing it to exist).
fn absolute(path: PathBuf, what: &'static str) -> Result<PathBuf, AgentError> {
    std::path::absolute(&path).map_err(|source| AgentError::Io { what, path, source })
}
