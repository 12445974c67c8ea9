//! Workers that are agents of a lab queue (`proctor run --lab`, a pool's `lab` provisioner): each worker is a job
//! submitted to the queue whose test phase is `proctor lab-worker`, holding the agent that claims it for the run.
//! The job carries the run's tree once, as its attachments; each batch is asked for in the job's `work` stream and
//! what it prints comes back through the job's `work-done` stream (see [`proctor_api::WorkRequest`]).
//!
//! Locally a batch is a process like any other the supervisor watches: `proctor lab-batch`, which asks for the
//! batch, prints what it prints (standard output and error apart) as it comes, and exits with the batch's status. Stopping
//! it (a time limit, an interrupted run) cancels the batch on the agent. When the job ends under it (the agent
//! was lost), it exits [`WORKER_LOST_EXIT`] and the worker is lost: its tests go back to the run and the source
//! holds another agent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::io::Write;

use proctor_api::{
    BatchRequest, OutputStream, StreamKind, WorkReport, WorkRequest, WORKER_LOST_EXIT,
};
use proctor_client::work::{LineReader, StreamError, StreamWriter};
use proctor_client::Client;
use proctor_pool::Platform;
use proctor_repository::DIRECTORY as RUN_REPOSITORY;
use proctor_sources::Invocation;

use crate::lock;

/// How long one wait for a held job's worker to be ready lasts before the slot checks it is still wanted.
const READY_POLL: Duration = Duration::from_secs(1);
/// How long a batch's local end waits on a lab that cannot answer (a server failing over) before it gives up.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long one read of a job's reports waits (the server caps it at its claim hold).
const HOLD: Duration = Duration::from_secs(30);
/// How long a released job gets to end on its own before it is cancelled.
const END_WAIT: Duration = Duration::from_secs(30);
/// The most the tree may pack to (the server's attachment cap is what finally decides).
const TREE_CAP: u64 = 512 << 20;
/// How long the worker on the agent waits for a batch before it takes the run for gone: a run killed with
/// `kill -9` holds its agents no longer than this. Long enough for a slot that waits while another worker runs a
/// long test whose retry may come to it.
const WORKER_IDLE: Duration = Duration::from_secs(600);

/// Why a lab source gave no worker.
#[derive(Debug)]
pub(crate) enum NoWorker {
    /// The run no longer needs one (it ended while the job waited for an agent); its job was cancelled.
    Unwanted,
    /// Something failed: what.
    Failed(String),
}

/// What a lab source holds its workers with: the lab, the queue, and the tree every job carries.
#[derive(Debug)]
pub(crate) struct LabPlan {
    pub(crate) client: Client,
    /// The token the client sends, which each batch's local end sends too.
    pub(crate) token: Option<String>,
    pub(crate) queue: String,
    pub(crate) tree: PathBuf,
    /// The tree packed, once for every worker of the provisioner.
    pub(crate) bundle: Arc<OnceLock<Result<Vec<u8>, String>>>,
    /// The worker's number in its provisioner, for the job's name.
    pub(crate) number: usize,
}

impl LabPlan {
    /// The plan of worker `number` of a lab provisioner: `server`'s `queue`, with `token` or else
    /// `PROCTOR_TOKEN`'s, each job carrying `tree` (packed once into `bundle` for all of them).
    pub(crate) fn new(
        server: &str,
        token: Option<&str>,
        queue: &str,
        tree: &Path,
        bundle: Arc<OnceLock<Result<Vec<u8>, String>>>,
        number: usize,
    ) -> Result<LabPlan, String> {
        let token = token
            .map(str::to_owned)
            .or_else(|| std::env::var("PROCTOR_TOKEN").ok());
        let client = Client::new(server, token.as_deref())
            .map_err(|error| format!("lab {server}: {error}"))?;
        Ok(LabPlan {
            client,
            token,
            queue: queue.to_owned(),
            tree: tree.to_path_buf(),
            bundle,
            number,
        })
    }
}

/// A job of the lab holding one agent for the run.
#[derive(Debug)]
pub(crate) struct Reservation {
    client: Client,
    token: Option<String>,
    job_id: String,
    /// The agent that holds it.
    pub(crate) agent: String,
    /// The agent's platform, as its worker found it.
    pub(crate) platform: Platform,
    /// Where the `work` and `work-done` streams ended when last looked at.
    ends: Mutex<(u64, u64)>,
    root: String,
    requests: tempfile::TempDir,
}

impl Reservation {
    /// Submits a job holding an agent of the plan's queue and waits until its worker is ready there, while
    /// `wanted` says the run still needs it.
    pub(crate) fn open(plan: &LabPlan, wanted: &dyn Fn() -> bool) -> Result<Reservation, NoWorker> {
        let failed = NoWorker::Failed;
        let bundle = plan
            .bundle
            .get_or_init(|| pack_tree(&plan.tree))
            .clone()
            .map_err(failed)?;
        let client = &plan.client;
        let definition = job_definition(plan);
        let job = client
            .submit_job(definition.as_bytes(), false)
            .map_err(|error| failed(error.to_string()))?;
        let held = Held {
            client,
            job_id: &job.id,
        };
        if let Err(error) = client.upload_attachments(&job.id, bundle) {
            return Err(held.give_up(error.to_string()));
        }
        let mut reports = LineReader::from(client.clone(), &job.id, StreamKind::WorkDone, 0);
        let platform = loop {
            if !wanted() {
                held.cancel();
                return Err(NoWorker::Unwanted);
            }
            let lines = match reports.next::<WorkReport>(READY_POLL) {
                Ok(lines) => lines,
                Err(StreamError::Client(error)) if error.is_transient() => {
                    std::thread::sleep(READY_POLL);
                    continue;
                }
                Err(error) => return Err(held.give_up(error.to_string())),
            };
            let ready = lines.messages.into_iter().find_map(|report| match report {
                WorkReport::Ready { arch, distro } => Some(Platform {
                    arch,
                    distro,
                    tags: Vec::new(),
                }),
                _ => None,
            });
            if let Some(platform) = ready {
                break platform;
            }
            if lines.job_state.is_some_and(|state| state.is_final()) {
                return Err(failed(held.ended_why()));
            }
        };
        let agent = client
            .job(&job.id)
            .ok()
            .and_then(|detail| detail.job.agent_id)
            .unwrap_or_else(|| "an agent".to_owned());
        let requests = tempfile::Builder::new()
            .prefix("proctor-lab.")
            .tempdir()
            .map_err(|error| {
                held.give_up(format!("cannot make a directory for batches: {error}"))
            })?;
        Ok(Reservation {
            client: client.clone(),
            token: plan.token.clone(),
            job_id: job.id,
            agent,
            platform,
            ends: Mutex::new((0, reports.offset())),
            root: plan.tree.to_string_lossy().into_owned(),
            requests,
        })
    }

    /// `invocation` as a batch of this job: `proctor lab-batch` here, asking the job's worker to run it.
    pub(crate) fn place(
        &self,
        mut invocation: Invocation,
        grace: Duration,
        memory_limit: Option<u64>,
    ) -> Invocation {
        let (work, reports) = self.current_ends();
        let request = BatchRequest {
            batch: work,
            root: self.root.clone(),
            program: invocation.program.to_string_lossy().into_owned(),
            args: std::mem::take(&mut invocation.args),
            env: std::mem::take(&mut invocation.env),
            cwd: invocation.cwd.to_string_lossy().into_owned(),
            grace_seconds: grace.as_secs().max(1),
            memory_limit,
            idfile: invocation.idfile().map(|path| {
                let ids = std::fs::read_to_string(path).unwrap_or_default();
                (path.to_string_lossy().into_owned(), ids)
            }),
        };
        let file = self.requests.path().join(format!("batch-{work}.json"));
        // A request that cannot be written makes `lab-batch` fail saying so, and the batch's tests with it.
        let _ = std::fs::write(&file, serde_json::to_vec(&request).unwrap_or_default());
        invocation.program = batch_program();
        invocation.args = [
            "lab-batch",
            "--server",
            &self.client.servers(),
            "--job",
            &self.job_id,
            "--work-at",
            &work.to_string(),
            "--reports-at",
            &reports.to_string(),
            "--request",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([file.to_string_lossy().into_owned()])
        .collect();
        invocation.env = self
            .token
            .iter()
            .map(|token| ("PROCTOR_TOKEN".to_owned(), token.clone()))
            .collect();
        invocation
    }

    /// Why the worker is gone, when a batch's local end said so (`code`) and the job has indeed ended.
    pub(crate) fn lost(&self, code: Option<i32>) -> Option<String> {
        if code != Some(WORKER_LOST_EXIT) {
            return None;
        }
        match self.client.job(&self.job_id) {
            Ok(detail) if detail.job.state.is_final() => Some(format!(
                "lab job {} on agent {} ended {}{}",
                self.job_id,
                self.agent,
                detail.job.state,
                detail
                    .job
                    .reason
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            )),
            Ok(_) => None,
            Err(error) => Some(format!("lab job {}: {error}", self.job_id)),
        }
    }

    /// Tells the worker the run is done with it and waits for the job to end, cancelling it when it does not in
    /// time. What went wrong, if something did.
    pub(crate) fn end(&self) -> Result<(), String> {
        let (work, _) = self.current_ends();
        let held = Held {
            client: &self.client,
            job_id: &self.job_id,
        };
        let mut writer = StreamWriter::at(
            self.client.clone(),
            &self.job_id,
            StreamKind::Work,
            work,
            Duration::from_secs(10),
        );
        // A job that has already ended refuses the line; the wait below sees it ended.
        let _ = writer.send(&WorkRequest::End);
        let started = Instant::now();
        while started.elapsed() < END_WAIT {
            match self.client.job(&self.job_id) {
                Ok(detail) if detail.job.state.is_final() => return Ok(()),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        held.cancel();
        Err(format!(
            "lab job {} did not end within {} s of its run's end, and was cancelled",
            self.job_id,
            END_WAIT.as_secs()
        ))
    }

    /// Where the `work` and `work-done` streams end now (from where they ended before: only what is new is
    /// read).
    fn current_ends(&self) -> (u64, u64) {
        let mut ends = lock(&self.ends);
        let end_of = |stream, known: u64| {
            self.client
                .read_stream(&self.job_id, stream, known, None, None)
                .map_or(known, |read| read.next_offset)
        };
        *ends = (
            end_of(StreamKind::Work, ends.0),
            end_of(StreamKind::WorkDone, ends.1),
        );
        *ends
    }
}

/// The local end of one batch (`proctor lab-batch`): asks the job's worker for the batch and prints its output
/// here as it comes.
#[derive(Debug)]
pub struct BatchClient {
    client: Client,
    job_id: String,
    batch: u64,
    reports_at: u64,
    work: Mutex<StreamWriter>,
}

impl BatchClient {
    /// Asks job `job_id` of `server` for the batch in `request` (a file written by the run, removed once read),
    /// appending it to the job's `work` stream, which ends at `work_at`; its reports start after `reports_at`.
    pub fn start(
        server: &str,
        token: Option<&str>,
        job_id: &str,
        work_at: u64,
        reports_at: u64,
        request: &Path,
    ) -> Result<BatchClient, String> {
        let read = std::fs::read(request)
            .map_err(|error| format!("cannot read the batch {}: {error}", request.display()))?;
        let _ = std::fs::remove_file(request);
        let batch: BatchRequest = serde_json::from_slice(&read)
            .map_err(|error| format!("the batch {} is not one: {error}", request.display()))?;
        let client = Client::new(server, token).map_err(|error| error.to_string())?;
        let mut work =
            StreamWriter::at(client.clone(), job_id, StreamKind::Work, work_at, PATIENCE);
        let number = batch.batch;
        work.send(&WorkRequest::Batch(batch))
            .map_err(|error| error.to_string())?;
        Ok(BatchClient {
            client,
            job_id: job_id.to_owned(),
            batch: number,
            reports_at,
            work: Mutex::new(work),
        })
    }

    /// Asks the worker to stop the batch (this end was stopped: a time limit, or the run was interrupted).
    pub fn cancel(&self) {
        let cancel = WorkRequest::Cancel { batch: self.batch };
        if let Err(error) = lock(&self.work).send(&cancel) {
            eprintln!("proctor lab-batch: could not cancel the batch: {error}");
        }
    }

    /// Prints the batch's output to `out` and `err` as it comes, until it ends; the batch's exit status, or
    /// [`WORKER_LOST_EXIT`] when the job ended under it (2 when the lab could not be followed).
    pub fn relay(&self, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
        match self.follow(out, err) {
            Ok(status) => status,
            Err(problem) => {
                let _ = writeln!(err, "proctor lab-batch: {problem}");
                2
            }
        }
    }

    fn follow(&self, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, String> {
        let mut reports = LineReader::from(
            self.client.clone(),
            &self.job_id,
            StreamKind::WorkDone,
            self.reports_at,
        );
        let mut unanswered = None;
        loop {
            let lines = match reports.next::<WorkReport>(HOLD) {
                Ok(lines) => lines,
                Err(StreamError::Client(error)) if error.is_transient() => {
                    let since = *unanswered.get_or_insert_with(Instant::now);
                    if since.elapsed() > PATIENCE {
                        return Err(error.to_string());
                    }
                    std::thread::sleep(READY_POLL);
                    continue;
                }
                Err(error) => return Err(error.to_string()),
            };
            unanswered = None;
            let ended = lines.job_state.is_some_and(|state| state.is_final());
            if ended && lines.messages.is_empty() {
                let _ = writeln!(
                    err,
                    "proctor lab-batch: lab job {} ended under the batch",
                    self.job_id
                );
                return Ok(WORKER_LOST_EXIT);
            }
            for report in lines.messages {
                match report {
                    WorkReport::Output {
                        batch,
                        stream,
                        data,
                    } if batch == self.batch => {
                        let written = match stream {
                            OutputStream::Stdout => out.write_all(&data).and_then(|()| out.flush()),
                            OutputStream::Stderr => err.write_all(&data).and_then(|()| err.flush()),
                        };
                        written
                            .map_err(|error| format!("cannot write the batch's output: {error}"))?;
                    }
                    WorkReport::Ended {
                        batch,
                        exit,
                        problem,
                    } if batch == self.batch => {
                        if let Some(problem) = problem {
                            let _ = writeln!(err, "proctor lab-batch: {problem}");
                        }
                        return Ok(exit.unwrap_or(127));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A job submitted for a worker that is not ready yet.
struct Held<'a> {
    client: &'a Client,
    job_id: &'a str,
}

impl Held<'_> {
    /// Cancels the job (a job that ended already stays as it ended).
    fn cancel(&self) {
        let _ = self.client.cancel(self.job_id);
    }

    /// Cancels the job and says why, of it.
    fn give_up(&self, problem: String) -> NoWorker {
        self.cancel();
        NoWorker::Failed(format!("lab job {}: {problem}", self.job_id))
    }

    /// How the job ended before its worker was ready.
    fn ended_why(&self) -> String {
        match self.client.job(self.job_id) {
            Ok(detail) => format!(
                "lab job {} ended {} before its worker was ready{}",
                self.job_id,
                detail.job.state,
                detail
                    .job
                    .reason
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            ),
            Err(error) => format!("lab job {}: {error}", self.job_id),
        }
    }
}

/// The job that holds an agent for the run: its test phase is the worker, its attachment the tree.
fn job_definition(plan: &LabPlan) -> String {
    let day = 24 * 60 * 60;
    serde_json::json!({
        "job_queue": plan.queue,
        "name": format!("proctor run of {} (worker {})", plan.tree.display(), plan.number),
        "tags": ["proctor-run"],
        "max_attempts": 1,
        // The run's own limits stop its tests; the worker ends when the run is done or gone.
        "global_timeout": day,
        "output_timeout": day,
        "test_data": {
            "test_cmds": format!("exec \"$PROCTOR_BIN\" lab-worker --idle {}", WORKER_IDLE.as_secs()),
            "attachments": [{"local": plan.tree.to_string_lossy(), "agent": "tree"}],
        },
    })
    .to_string()
}

/// The tree as the job's attachment: under `test/tree`, without its `.git` and run repository.
fn pack_tree(tree: &Path) -> Result<Vec<u8>, String> {
    let packed = proctor_archive::pack_tree(
        tree,
        Path::new("test/tree"),
        &[".git", RUN_REPOSITORY],
        TREE_CAP,
    )
    .map_err(|error| format!("cannot pack the tree {}: {error}", tree.display()))?;
    packed
        .map(|packed| packed.bytes)
        .ok_or_else(|| format!("the tree {} is empty", tree.display()))
}

/// The program a batch's local end is: `PROCTOR_BIN` when set (a library's caller names the `proctor` binary),
/// else this program, which is `proctor` when the run came from the command line.
fn batch_program() -> PathBuf {
    std::env::var_os("PROCTOR_BIN")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("proctor"))
}
