//! The lab's end of a run's worker: `proctor lab-worker`, the test phase of the job `proctor run --lab` submits
//! to hold an agent for a run. It reads batches from the job's `work` stream, runs each in the job's copy of the
//! run's tree (its attachments, under `attachments/test/tree`), and sends what each batch prints, and how it
//! ended, into `work-done` as it comes ([`proctor_api::WorkReport`]).
//!
//! It ends when the run says so (`end`), when the job ends, or when no batch came for [`RunWorker::idle`]: a run
//! that was killed without a word leaves its reservation for no longer than that.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proctor_api::{
    to_line, BatchRequest, OutputStream, StreamKind, WorkReport, WorkRequest, MEMORY_EXCEEDED_EXIT,
};
use proctor_client::backoff::{Backoff, MAX_JOB_WAIT};
use proctor_client::work::{LineReader, StreamError, StreamWriter};
use proctor_client::Client;
use proctor_pool::Platform;
use proctor_supervisor::{CommandSpec, Exit, Limit, Stream, Supervisor, SupervisorConfig};

/// How long an append waits for a lab that cannot answer (a server restarting, or failing over).
const PATIENCE: Duration = Duration::from_secs(120);
/// How long one read of the `work` stream waits for a line (the server caps it at its claim hold).
const HOLD: Duration = Duration::from_secs(30);
/// Output is sent once this much has gathered (as lines), or [`FLUSH_AFTER`] after its first byte, whichever is
/// first.
const FLUSH_BYTES: usize = 256 * 1024;
/// See [`FLUSH_BYTES`]: short, so a run sees each test end as it happens.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// Where the run's tree is unpacked, under the job's work directory.
pub const TREE: &str = "attachments/test/tree";

/// A run's worker, set up from the test phase's environment.
#[derive(Debug)]
pub struct RunWorker {
    client: Client,
    job_id: String,
    tree: PathBuf,
    /// How long it waits for a batch before it takes the run for gone.
    pub idle: Duration,
}

/// The batch that runs now, and batches cancelled before they started.
#[derive(Default)]
struct Running {
    current: Option<(u64, proctor_supervisor::StopHandle)>,
    cancelled: HashSet<u64>,
}

impl RunWorker {
    /// The worker of the job the phase runs (`PROCTOR_JOB_ID`), talking to `PROCTOR_SERVER` with `PROCTOR_TOKEN`,
    /// with the tree in `PROCTOR_WORK_DIR`.
    pub fn from_environment(idle: Duration) -> Result<RunWorker, String> {
        let variable = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!(
                    "{name} is not set: `proctor lab-worker` runs as the test phase of a lab job"
                )
            })
        };
        let token = std::env::var("PROCTOR_TOKEN").ok();
        let client = Client::new(&variable("PROCTOR_SERVER")?, token.as_deref())
            .map_err(|error| error.to_string())?;
        let tree = PathBuf::from(variable("PROCTOR_WORK_DIR")?).join(TREE);
        if !tree.is_dir() {
            return Err(format!(
                "the job has no tree at {}: it was not submitted by `proctor run --lab`",
                tree.display()
            ));
        }
        Ok(RunWorker {
            client,
            job_id: variable("PROCTOR_JOB_ID")?,
            tree,
            idle,
        })
    }

    /// Serves the run until it ends, the job ends or the run is gone; what went wrong, when something did.
    pub fn serve(self) -> Result<(), String> {
        let supervisor = Supervisor::new(SupervisorConfig::default())
            .map_err(|error| format!("cannot supervise batches: {error}"))?;
        let mut reports = StreamWriter::at(
            self.client.clone(),
            &self.job_id,
            StreamKind::WorkDone,
            0,
            PATIENCE,
        );
        let platform = Platform::of_this_machine();
        reports
            .send(&WorkReport::Ready {
                arch: platform.arch,
                distro: platform.distro,
            })
            .map_err(|error| error.to_string())?;
        let running = Arc::new(Mutex::new(Running::default()));
        let requests = self.follow_requests(Arc::clone(&running));
        eprintln!("proctor lab-worker: ready in {}", self.tree.display());
        loop {
            match requests.recv_timeout(self.idle) {
                Ok(Ok(WorkRequest::Batch(batch))) => {
                    self.run_batch(&supervisor, batch, &running, &mut reports)
                        .map_err(|error| error.to_string())?;
                }
                Ok(Ok(WorkRequest::End)) => {
                    eprintln!("proctor lab-worker: the run is done with this worker");
                    return Ok(());
                }
                Ok(Ok(WorkRequest::Cancel { .. })) => {}
                Ok(Err(problem)) => return Err(problem),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no batch came for {} s: the run is gone",
                        self.idle.as_secs()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    eprintln!("proctor lab-worker: the job ended");
                    return Ok(());
                }
            }
        }
    }

    /// Follows the `work` stream on a thread of its own, stopping a batch as soon as its cancel comes and passing
    /// every other request on; the channel closes when the job ends.
    fn follow_requests(
        &self,
        running: Arc<Mutex<Running>>,
    ) -> mpsc::Receiver<Result<WorkRequest, String>> {
        let (send, receive) = mpsc::channel();
        let mut reader = LineReader::from(self.client.clone(), &self.job_id, StreamKind::Work, 0);
        std::thread::spawn(move || {
            let mut backoff = Backoff::new(MAX_JOB_WAIT);
            loop {
                let lines = match reader.next::<WorkRequest>(HOLD) {
                    Ok(lines) => lines,
                    Err(StreamError::Client(error)) if error.is_transient() => {
                        backoff.sleep();
                        continue;
                    }
                    Err(error) => {
                        let _ = send.send(Err(error.to_string()));
                        return;
                    }
                };
                backoff.reset();
                let ended = lines.job_state.is_some_and(|state| state.is_final());
                for request in lines.messages {
                    if let WorkRequest::Cancel { batch } = request {
                        cancel(&running, batch);
                    } else if send.send(Ok(request)).is_err() {
                        return;
                    }
                }
                if ended {
                    return;
                }
            }
        });
        receive
    }

    /// Runs one batch, sending its output as it comes and reporting its end.
    fn run_batch(
        &self,
        supervisor: &Supervisor,
        batch: BatchRequest,
        running: &Mutex<Running>,
        reports: &mut StreamWriter,
    ) -> Result<(), StreamError> {
        let number = batch.batch;
        let ended = |exit: Option<i32>, problem: Option<String>| WorkReport::Ended {
            batch: number,
            exit,
            problem,
        };
        let spec = match self.command(&batch) {
            Ok(spec) => spec,
            Err(problem) => return reports.send(&ended(None, Some(problem))),
        };
        let child = match supervisor.spawn(spec) {
            Ok(child) => child,
            Err(error) => {
                let problem = format!("could not start the test command: {error}");
                return reports.send(&ended(None, Some(problem)));
            }
        };
        {
            let mut state = lock(running);
            if state.cancelled.remove(&number) {
                child.stop_handle().stop();
            }
            state.current = Some((number, child.stop_handle()));
        }
        let mut pending = Pending::default();
        // Once the lab stops taking its output (the job ended, or its token was superseded), the batch is stopped
        // rather than left running for no one.
        let mut refused = None;
        loop {
            let wait = pending
                .since
                .map_or(HOLD, |at| FLUSH_AFTER.saturating_sub(at.elapsed()));
            match child.output().recv_timeout(wait) {
                Ok(chunk) if refused.is_some() => drop(chunk),
                Ok(chunk) => {
                    let stream = match chunk.stream {
                        Stream::Stdout => OutputStream::Stdout,
                        Stream::Stderr => OutputStream::Stderr,
                    };
                    pending.add(number, stream, &chunk.data);
                    if pending.lines.len() < FLUSH_BYTES {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if refused.is_none() {
                if let Err(error) = pending.send(reports) {
                    child.stop_handle().stop();
                    refused = Some(error);
                }
            }
        }
        let outcome = child.wait();
        lock(running).current = None;
        if let Some(error) = refused {
            return Err(error);
        }
        pending.send(reports)?;
        let (exit, problem) = match outcome {
            Ok(outcome) => {
                let exit = match (outcome.limit, outcome.exit) {
                    (Some(Limit::Memory), _) => MEMORY_EXCEEDED_EXIT,
                    (_, Exit::Code(code)) => code,
                    (_, Exit::Signal(signal)) => 128 + signal,
                };
                let problem = outcome
                    .stopped
                    .then(|| "stopped: the run cancelled it".to_owned());
                (Some(exit), problem)
            }
            Err(error) => (
                None,
                Some(format!("could not wait for the test command: {error}")),
            ),
        };
        reports.send(&ended(exit, problem))
    }

    /// The batch's command with the run's tree pointed at this copy of it, its `$IDFILE` written here.
    fn command(&self, batch: &BatchRequest) -> Result<CommandSpec, String> {
        let tree = self.tree.to_string_lossy();
        let mut swaps = vec![(batch.root.clone(), tree.clone().into_owned())];
        if let Some((path, ids)) = &batch.idfile {
            let name = std::path::Path::new(path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "ids".to_owned());
            let here = self.tree.join(format!(".proctor-ids-{name}"));
            std::fs::write(&here, ids)
                .map_err(|error| format!("could not write {}: {error}", here.display()))?;
            swaps.insert(0, (path.clone(), here.to_string_lossy().into_owned()));
        }
        let here = |text: &str| {
            swaps.iter().fold(text.to_owned(), |text, (from, to)| {
                text.replace(from.as_str(), to)
            })
        };
        let mut spec = CommandSpec::new(here(&batch.program))
            .args(batch.args.iter().map(|arg| here(arg)))
            .cwd(here(&batch.cwd))
            .grace(Duration::from_secs(batch.grace_seconds.max(1)));
        if let Some(bytes) = batch.memory_limit {
            spec = spec.memory_limit(bytes);
        }
        Ok(batch
            .env
            .iter()
            .fold(spec, |spec, (key, value)| spec.env(key, here(value))))
    }
}

/// Stops batch `number` now if it runs, or before it starts.
fn cancel(running: &Mutex<Running>, number: u64) {
    let mut state = lock(running);
    match &state.current {
        Some((current, stop)) if *current == number => stop.stop(),
        _ => {
            state.cancelled.insert(number);
        }
    }
}

/// Output gathered since the last send, as `work-done` lines, and when its first byte came.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    since: Option<Instant>,
}

impl Pending {
    fn add(&mut self, batch: u64, stream: OutputStream, data: &[u8]) {
        let report = WorkReport::Output {
            batch,
            stream,
            data: data.to_vec(),
        };
        self.lines.extend(to_line(&report));
        self.since.get_or_insert_with(Instant::now);
    }

    /// Sends what gathered, in one append.
    fn send(&mut self, reports: &mut StreamWriter) -> Result<(), StreamError> {
        self.since = None;
        if self.lines.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.lines);
        reports.append(&lines)
    }
}

fn lock(running: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}
