//! A lab in this process: real servers on 127.0.0.1 (by default one, with SQLite in a temporary directory; or
//! several sharing one PostgreSQL database) and real agents serving queue `bench`, each on its own thread with its
//! own work directory. A lab may also be only agents, of servers running elsewhere ([`Lab::attach`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proctor_agent::{Agent, AgentSettings};
use proctor_api::{JobState, JobView, StreamKind};
use proctor_client::Client;
use proctor_job::{AgentConfig, Name};
use proctor_server::{Server, ServerConfig, StoreLocation};
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

/// Where a lab's servers keep their store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LabStore {
    /// SQLite in the lab's scratch directory (one server only: the file is not shared between servers).
    Sqlite,
    /// This PostgreSQL database, shared by every server of the lab.
    Postgres(String),
}

/// Which server each agent is given first, and where jobs are submitted, when the lab has several servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// Agent `i` is given server `i % servers` first (then the others in turn); jobs go to the servers in turn.
    Spread,
    /// Every agent is given the last server first and jobs go to the first, so that every job reaches its agent
    /// through the store's change feed.
    Apart,
}

/// A lab's servers (or none, when they run elsewhere) and agents; [`Lab::stop`] ends them.
pub(super) struct Lab {
    /// A client of the first server, for the bench's own requests.
    pub(super) client: Client,
    /// A client of each server, in order.
    clients: Vec<Client>,
    /// Each agent's first server, by agent index.
    homes: Vec<usize>,
    placement: Placement,
    /// Counts submits, so that [`Lab::submit`] takes the servers in turn.
    submits: AtomicUsize,
    /// Followed jobs whose log had bytes the read that saw the job ended did not (see [`Lab::follow_to_end`]).
    late_reads: AtomicUsize,
    shutdown: Arc<AtomicBool>,
    agents: Vec<JoinHandle<()>>,
    runtime: Runtime,
    // Removed last, after the server and agents stopped using it.
    scratch: TempDir,
}

impl Lab {
    /// Starts a server (SQLite) and `agents` agents, all registered (so jobs for [`QUEUE`] are accepted) and
    /// claiming.
    pub(super) fn start(agents: usize) -> Result<Lab, LabBenchError> {
        Lab::start_on(&LabStore::Sqlite, 1, agents, Placement::Spread)
    }

    /// Starts `servers` servers on `store` (SQLite allows one) and `agents` agents placed as `placement` says,
    /// each given every server (a comma-separated list, its first server first).
    pub(super) fn start_on(
        store: &LabStore,
        servers: usize,
        agents: usize,
        placement: Placement,
    ) -> Result<Lab, LabBenchError> {
        let scratch = super::scratch_dir()?;
        let runtime = super::multi_thread_runtime()?;
        let location = match store {
            LabStore::Sqlite if servers > 1 => return Err(LabBenchError::Usage),
            LabStore::Sqlite => StoreLocation::Sqlite(scratch.path().join("server")),
            LabStore::Postgres(url) => StoreLocation::Postgres(url.clone()),
        };
        let bases = (0..servers.max(1))
            .map(|_| start_server(&runtime, location.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Lab::with_agents(&bases, agents, placement, runtime, scratch)
    }

    /// Starts `agents` agents of servers running elsewhere, at `bases`, spread over them
    /// ([`Placement::Spread`]).
    pub(super) fn attach(bases: &[String], agents: usize) -> Result<Lab, LabBenchError> {
        let scratch = super::scratch_dir()?;
        let runtime = super::multi_thread_runtime()?;
        Lab::with_agents(bases, agents, Placement::Spread, runtime, scratch)
    }

    fn with_agents(
        bases: &[String],
        agents: usize,
        placement: Placement,
        runtime: Runtime,
        scratch: TempDir,
    ) -> Result<Lab, LabBenchError> {
        let Some(first) = bases.first() else {
            return Err(LabBenchError::Usage);
        };
        let clients = bases
            .iter()
            .map(|base| Client::new(base, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut lab = Lab {
            client: Client::new(first, None)?,
            clients,
            homes: Vec::with_capacity(agents),
            placement,
            submits: AtomicUsize::new(0),
            late_reads: AtomicUsize::new(0),
            shutdown: Arc::new(AtomicBool::new(false)),
            agents: Vec::new(),
            runtime,
            scratch,
        };
        for index in 0..agents {
            lab.start_agent(bases, index)?;
        }
        Ok(lab)
    }

    fn start_agent(&mut self, bases: &[String], index: usize) -> Result<(), LabBenchError> {
        let id = agent_id(index);
        let home = match self.placement {
            Placement::Spread => index % bases.len(),
            Placement::Apart => bases.len() - 1,
        };
        let name = |text: &str| Name::new(text).map_err(LabBenchError::BadName);
        let mut config = AgentConfig::new(name(&id)?, vec![name(QUEUE)?]);
        config.server_address = server_list(bases, home);
        let work_dir = self.scratch.path().join(&id);
        let settings = AgentSettings {
            claim_wait: CLAIM_WAIT,
            ..AgentSettings::default()
        };
        let agent = Agent::with_settings(config, work_dir, settings)?;
        agent.register()?;
        let shutdown = Arc::clone(&self.shutdown);
        self.homes.push(home);
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

    /// The server the agent named `agent_id` was given first (where its claims are held while that server
    /// answers), when it is one of the lab's agents.
    pub(super) fn home_of(&self, agent_id: &str) -> Option<usize> {
        let index: usize = agent_id.strip_prefix(AGENT_PREFIX)?.parse().ok()?;
        self.homes.get(index).copied()
    }

    /// Submits a job for [`QUEUE`] whose test phase runs `test_cmds` (a bash script), to the lab's servers as its
    /// placement says.
    pub(super) fn submit(&self, test_cmds: &str) -> Result<JobView, LabBenchError> {
        Ok(self.submit_counted(test_cmds)?.0)
    }

    /// [`Lab::submit`], answering also the index of the server the job was submitted to.
    pub(super) fn submit_counted(
        &self,
        test_cmds: &str,
    ) -> Result<(JobView, usize), LabBenchError> {
        let server = match self.placement {
            Placement::Spread => self.submits.fetch_add(1, Ordering::Relaxed) % self.clients.len(),
            Placement::Apart => 0,
        };
        let client = self.clients.get(server).unwrap_or(&self.client);
        let job = client.submit_job(job_definition(test_cmds).as_bytes(), false)?;
        Ok((job, server))
    }

    /// Follows the job's log with held reads (one request that waits on the server, instead of polling the job's
    /// state while it starts) until the job ended; answers the whole log. The job must have passed. An agent
    /// finishes a job only after its log is stored, so once a read has seen the job ended, one more read has the
    /// rest of the log.
    pub(super) fn follow_to_end(&self, job_id: &str) -> Result<String, LabBenchError> {
        Ok(self.follow_job_to_end(job_id)?.1)
    }

    /// [`Lab::follow_to_end`], answering also the job as it ended.
    pub(super) fn follow_job_to_end(
        &self,
        job_id: &str,
    ) -> Result<(JobView, String), LabBenchError> {
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
                // Servers before e7e3e45 read the stream, then the job's state: bytes stored and the job finished
                // between the two were missed by that read. Once the job is seen ended, one more read has them all.
                let last = self
                    .client
                    .read_stream(job_id, StreamKind::Log, offset, None, None)?;
                if !last.bytes.is_empty() {
                    self.late_reads.fetch_add(1, Ordering::Relaxed);
                }
                log.extend_from_slice(&last.bytes);
                let job = require_passed(self.client.job(job_id)?.job)?;
                return Ok((job, String::from_utf8_lossy(&log).into_owned()));
            }
            if Instant::now() > deadline {
                return Err(LabBenchError::TimedOut {
                    what: format!("job {job_id} to end"),
                    patience: PATIENCE,
                });
            }
        }
    }

    /// How many followed jobs' logs had bytes that the read which saw the job ended missed.
    pub(super) fn late_reads(&self) -> usize {
        self.late_reads.load(Ordering::Relaxed)
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

    /// Tells the agents the lab is stopping, so that they take the servers going away as expected (call it before
    /// stopping servers that run elsewhere).
    pub(super) fn stopping(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Stops the agents and the lab's own servers.
    pub(super) fn stop(self) -> Result<(), LabBenchError> {
        self.stopping();
        // Dropping the server's connections ends the agents' held claims at once; each then sees the shutdown.
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        for agent in self.agents {
            agent.join().map_err(|_| LabBenchError::WorkerPanicked)?;
        }
        Ok(())
    }
}

/// What the bench's agent ids start with; the agent's index follows.
const AGENT_PREFIX: &str = "bench-agent-";

fn agent_id(index: usize) -> String {
    format!("{AGENT_PREFIX}{index}")
}

/// Every server of `bases`, comma-separated, starting at `first` and going round.
fn server_list(bases: &[String], first: usize) -> String {
    (0..bases.len())
        .filter_map(|offset| bases.get((first + offset) % bases.len()))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// Binds a server on 127.0.0.1 with its store at `store` and runs it on `runtime`; answers its base URL.
fn start_server(runtime: &Runtime, store: StoreLocation) -> Result<String, LabBenchError> {
    let mut config = ServerConfig::on(store);
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = runtime.block_on(Server::bind(config))?;
    let base = format!("http://{}", server.local_addr());
    // The server stops with the runtime (at `stop` or on an error path's drop), not gracefully: a graceful stop
    // would wait for every held claim.
    runtime.spawn(server.run(std::future::pending()));
    Ok(base)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_start_at_the_agents_first_server() {
        let bases: Vec<String> = ["http://a", "http://b", "http://c"]
            .iter()
            .map(|base| (*base).to_owned())
            .collect();
        assert_eq!(server_list(&bases, 0), "http://a,http://b,http://c");
        assert_eq!(server_list(&bases, 2), "http://c,http://a,http://b");
        assert_eq!(server_list(&bases[..1], 0), "http://a");
    }
}
