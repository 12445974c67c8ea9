//! A lab in this process: a real server on 127.0.0.1 (SQLite in a temporary directory) and real agents serving
//! queue `bench`, each on its own thread with its own work directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proctor_agent::{Agent, AgentSettings};
use proctor_api::{JobState, JobView, StreamKind};
use proctor_client::Client;
use proctor_job::{AgentConfig, Name};
use proctor_server::{Server, ServerConfig};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use super::LabBenchError;

/// The queue the bench's agents serve.
pub(super) const QUEUE: &str = "bench";
/// Generous: only a broken server or agent takes this long for one job.
pub(super) const PATIENCE: Duration = Duration::from_secs(120);
/// How long an agent's claim is held; also bounds how long stopping takes when the server goes first.
const CLAIM_WAIT: Duration = Duration::from_secs(25);
/// How long one read of a followed log waits for bytes or the job's end.
const FOLLOW_WAIT: Duration = Duration::from_secs(10);

/// A running server and its agents; [`Lab::stop`] ends them.
pub(super) struct Lab {
    /// A client of the server, for the bench's own requests.
    pub(super) client: Client,
    shutdown: Arc<AtomicBool>,
    agents: Vec<JoinHandle<()>>,
    runtime: Runtime,
    // Removed last, after the server and agents stopped using it.
    scratch: TempDir,
}

impl Lab {
    /// Starts a server and `agents` agents, all registered (so jobs for [`QUEUE`] are accepted) and claiming.
    pub(super) fn start(agents: usize) -> Result<Lab, LabBenchError> {
        let scratch = super::scratch_dir()?;
        let runtime = super::multi_thread_runtime()?;
        let data_dir = scratch.path().join("server");
        let mut config = ServerConfig::new(data_dir);
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = runtime.block_on(Server::bind(config))?;
        let base = format!("http://{}", server.local_addr());
        // The server stops with the runtime (at `stop` or on an error path's drop), not gracefully: a graceful
        // stop would wait for every held claim.
        runtime.spawn(server.run(std::future::pending()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut lab = Lab {
            client: Client::new(&base, None)?,
            shutdown,
            agents: Vec::new(),
            runtime,
            scratch,
        };
        for index in 0..agents {
            lab.start_agent(&base, index)?;
        }
        Ok(lab)
    }

    fn start_agent(&mut self, base: &str, index: usize) -> Result<(), LabBenchError> {
        let id = format!("bench-agent-{index}");
        let name = |text: &str| Name::new(text).map_err(LabBenchError::BadName);
        let mut config = AgentConfig::new(name(&id)?, vec![name(QUEUE)?]);
        config.server_address = base.to_owned();
        let work_dir = self.scratch.path().join(&id);
        let settings = AgentSettings {
            claim_wait: CLAIM_WAIT,
            ..AgentSettings::default()
        };
        let agent = Agent::with_settings(config, work_dir, settings)?;
        agent.register()?;
        let shutdown = Arc::clone(&self.shutdown);
        self.agents.push(thread::spawn(move || {
            agent.run(&shutdown, |error| {
                // Once stopping, the server going away is expected.
                if !shutdown.load(Ordering::SeqCst) {
                    eprintln!("proctor-bench lab: {id}: {error}");
                }
            });
        }));
        Ok(())
    }

    /// Submits a job for [`QUEUE`] whose test phase runs `test_cmds` (a bash script).
    pub(super) fn submit(&self, test_cmds: &str) -> Result<JobView, LabBenchError> {
        Ok(self
            .client
            .submit_job(job_definition(test_cmds).as_bytes(), false)?)
    }

    /// Follows the job's log with held reads (one request that waits on the server, instead of polling the job's
    /// state while it starts) until the job ended; answers the whole log. The job must have passed. An agent
    /// finishes a job only after its log is stored, so once the job has ended a read that finds nothing new has read
    /// it all.
    pub(super) fn follow_to_end(&self, job_id: &str) -> Result<String, LabBenchError> {
        let deadline = Instant::now() + PATIENCE;
        let mut log = Vec::new();
        let mut offset = 0;
        loop {
            let read = self.client.read_stream(
                job_id,
                StreamKind::Log,
                offset,
                None,
                Some(FOLLOW_WAIT),
            )?;
            let ended = read.bytes.is_empty() && read.job_state.is_some_and(JobState::is_final);
            log.extend_from_slice(&read.bytes);
            offset = read.next_offset;
            if ended {
                require_passed(self.client.job(job_id)?.job)?;
                return Ok(String::from_utf8_lossy(&log).into_owned());
            }
            if Instant::now() > deadline {
                return Err(LabBenchError::TimedOut {
                    what: format!("job {job_id} to end"),
                    patience: PATIENCE,
                });
            }
        }
    }

    /// Writes `text` to file `name` in the lab's scratch directory; answers its path.
    pub(super) fn scratch_file(&self, name: &str, text: &str) -> Result<PathBuf, LabBenchError> {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, text).map_err(|source| LabBenchError::Io {
            action: "writing",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The job's whole log as stored so far.
    pub(super) fn log(&self, job_id: &str) -> Result<String, LabBenchError> {
        let read = self
            .client
            .read_stream(job_id, StreamKind::Log, 0, None, None)?;
        Ok(String::from_utf8_lossy(&read.bytes).into_owned())
    }

    /// Stops the agents and the server.
    pub(super) fn stop(self) -> Result<(), LabBenchError> {
        self.shutdown.store(true, Ordering::SeqCst);
        // Dropping the server's connections ends the agents' held claims at once; each then sees the shutdown.
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        for agent in self.agents {
            agent.join().map_err(|_| LabBenchError::WorkerPanicked)?;
        }
        Ok(())
    }
}

/// A job for [`QUEUE`] with `test_cmds` as its test phase's script.
fn job_definition(test_cmds: &str) -> String {
    let indented: String = test_cmds
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!("job_queue: {QUEUE}\ntest_data:\n  test_cmds: |\n{indented}")
}

/// `job` if it passed; otherwise the error that says how it ended.
pub(super) fn require_passed(job: JobView) -> Result<JobView, LabBenchError> {
    if job.state == JobState::Passed {
        Ok(job)
    } else {
        Err(LabBenchError::JobFailed {
            job_id: job.id,
            state: job.state,
            reason: job.reason,
        })
    }
}
