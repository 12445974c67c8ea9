//! Running one claimed job: its directories and `job.json`, its phases under supervision with the job's time
//! limits, its log and results streamed to the server, and the final state it ends in.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proctor_events::{Sink, Summary, TestVerdict};
use proctor_job::{AgentConfig, Device, Job, Phase, Timeouts};
use proctor_subunit::EventReader;
use proctor_supervisor::{CommandSpec, Exit, Limit, Limits, Outcome, Supervisor};
use serde::Deserialize;

use proctor_api::{ClaimedJob, StreamKind};
use proctor_archive::{pack_directory, ArchiveError, Layout};
use proctor_client::{Bytes, Client, ClientError};

use crate::client::ServerClient;
use crate::control::{Heartbeat, JobControl};
use crate::error::AgentError;
use crate::state::{self, InProgress};
use crate::upload::{Draining, PhaseMarks, UploadEnd, UploadSource, Uploader};
use crate::workdir::{WorkDirs, ARTIFACTS_DIR, JOB_FILE, PROCTOR_ARTIFACTS_DIR};
use crate::{AgentSettings, FinalState, JobReport};
use proctor_client::backoff::retry;

/// The file in the job's work directory where phases write their subunit v2 results.
pub(crate) const RESULTS_FILE: &str = "results.subunit";
/// The directory in the job's work directory where attachments are unpacked, as `<phase>/<path>`.
pub(crate) const ATTACHMENTS_DIR: &str = "attachments";
/// The file in the job's work directory holding a recipe's script.
pub(crate) const RECIPE_FILE: &str = "recipe";
/// The test phase's `$0` when it runs the job's `test_cmds`, and their file in the spool when they are long.
const TEST_CMDS_NAME: &str = "test_cmds.sh";
/// The longest `test_cmds` passed to bash as an argument; Linux refuses one argument over 128 KiB
/// (`MAX_ARG_STRLEN`), and the environment shares the limit on the whole command line.
const MAX_INLINE_SCRIPT: usize = 64 * 1024;
/// The status of a phase the job's global timeout ran out before, as `timeout(1)` reports a command it stopped.
const TIMED_OUT: i32 = 124;

/// Everything a job run needs from its agent.
pub(crate) struct JobContext<'a> {
    pub(crate) config: &'a AgentConfig,
    pub(crate) settings: &'a AgentSettings,
    pub(crate) client: &'a ServerClient,
    pub(crate) supervisor: &'a Supervisor,
    /// Where the job's work directory is made.
    pub(crate) work_dirs: &'a WorkDirs,
    /// Where the agent keeps its own files for the job (the log spool, the test script).
    pub(crate) spool_dir: &'a Path,
}

/// The reason a job left behind by an agent that stopped mid-job ends with.
pub(crate) const INTERRUPTED: &str = "agent restarted mid-job";

/// Runs `claimed` to its end and reports it finished to the server.
///
/// Between the claim and the first phase's process only the work directory and `job.json` are made: the spool, the
/// progress record and the uploaders are opened just after that process started ([`JobRun::open_streams`]), while
/// it starts up, as each file made on the way costs dispatch latency. An agent that dies in that window leaves no
/// record, and the server's reaper settles the job when its lease lapses.
pub(crate) fn run_job(
    context: &JobContext<'_>,
    claimed: ClaimedJob,
) -> Result<JobReport, AgentError> {
    let started = Instant::now();
    let job_id = claimed.job.id.clone();
    let writer = context.client.for_job(claimed.job_token.as_deref())?;
    let control = Arc::new(JobControl::default());
    let heartbeat = Heartbeat::start(
        context.client.clone(),
        job_id.clone(),
        Arc::clone(&control),
        context.settings.heartbeat_interval,
    );
    let mut run = JobRun {
        context,
        job_id: job_id.clone(),
        work_dir: context.work_dirs.job_dir(&job_id),
        spool: context.spool_dir.join(&job_id),
        log: LogWriter::default(),
        streams: None,
        control: Arc::clone(&control),
        started,
        token: claimed.job_token,
        writer: writer.clone(),
        recipe_script: claimed.recipe_script,
        reservation_ended: false,
        device: context.config.device_for_jobs(),
    };
    let (state, reason) = run.run_all(&claimed.job.definition, claimed.has_attachments);
    // At the latest now, so a job whose phases never started still sends the agent's notes.
    let (state, mut reason) = match run.open_streams() {
        Ok(()) => (state, reason),
        Err(problem) => (
            FinalState::Error,
            format!(
                "{problem}: the job's output was not kept (the phases made it {state}: {reason})"
            ),
        ),
    };
    if !control.is_lost() {
        if let Some(problem) = run.upload_artifacts() {
            reason = format!("{reason} ({problem})");
        }
    }
    run.log.note(&format!("the job ended {state}: {reason}"));
    let (record, results) = match run.streams.take() {
        Some(Ok(streams)) => (Some(streams.record), Some(streams.results)),
        _ => (None, None),
    };
    // Both closed before either is joined: they drain side by side, within one drain limit.
    let (log, results) = (run.log.close(), results.map(Uploader::close));
    let (log_end, results_end) = (log.map(Draining::join), results.map(Draining::join));
    let reason = with_upload_warnings(reason, log_end.as_ref(), results_end.as_ref());
    // The server gave the job to someone else (or ended it) when it is lost; finishing it would be refused.
    let finished = if control.is_lost() {
        Ok(())
    } else {
        retry(context.settings.drain_limit, || {
            context.client.finish(&writer, &job_id, state, &reason)
        })
        .map(drop)
    };
    // Only now: the lease must hold while the streams drain and the job is finished.
    heartbeat.stop();
    // Kept while the server could not be reached, so `recover` finishes the job on the agent's next start.
    let settled = finished
        .as_ref()
        .err()
        .is_none_or(|error| !error.is_transient());
    if let (Some(record), true) = (record, settled) {
        state::remove(&record);
    }
    finished?;
    Ok(JobReport {
        job_id,
        state,
        reason,
    })
}

/// Ends a job an earlier run of this agent left unfinished: uploads what it had spooled past what the server
/// acknowledged, then finishes the job `error`.
pub(crate) fn report_interrupted(
    context: &JobContext<'_>,
    record: &InProgress,
) -> Result<JobReport, AgentError> {
    let writer = context.client.for_job(record.job_token.as_deref())?;
    let resume = |stream, path: &Path| {
        Uploader::start(
            writer.clone(),
            UploadSource {
                job_id: record.job_id.clone(),
                stream,
                path: path.to_owned(),
                file: None,
                marks: None,
                resume: true,
            },
            context.settings.drain_limit,
        )
    };
    let log = resume(StreamKind::Log, &record.log);
    let results = resume(StreamKind::Results, &record.results);
    let (log, results) = (log.close(), results.close());
    let (log_end, results_end) = (log.join(), results.join());
    let reason = with_upload_warnings(INTERRUPTED.to_owned(), Some(&log_end), Some(&results_end));
    context
        .client
        .finish(&writer, &record.job_id, FinalState::Error, &reason)?;
    Ok(JobReport {
        job_id: record.job_id.clone(),
        state: FinalState::Error,
        reason,
    })
}

/// Creates (empties) a spool file; answers a handle to write it and one to read it back.
fn create_spool_file(path: &Path) -> Result<(File, File), AgentError> {
    let writer = File::create(path).map_err(spool_error(path))?;
    let reader = File::open(path).map_err(spool_error(path))?;
    Ok((writer, reader))
}

/// Opens the results file for its uploader, creating it if no phase has yet; what a phase already wrote is kept.
fn open_results_file(path: &Path) -> Result<File, AgentError> {
    fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(spool_error(path))
}

fn spool_error(path: &Path) -> impl FnOnce(io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        what: "could not create the job's spool file",
        path: path.to_owned(),
        source,
    }
}

/// The reason, with a note when a stream could not be uploaded whole.
fn with_upload_warnings(
    reason: String,
    log: Option<&UploadEnd>,
    results: Option<&UploadEnd>,
) -> String {
    let mut reason = reason;
    for (name, end) in [("log", log), ("results", results)] {
        let why = match end {
            Some(UploadEnd::Incomplete(stored)) => {
                format!("stopped at byte {stored}: the server could not be reached")
            }
            Some(UploadEnd::Refused(stored, error)) => {
                format!("was refused at byte {stored}: {error}")
            }
            Some(UploadEnd::Panicked) => "stopped: the uploader failed inside the agent".to_owned(),
            Some(UploadEnd::Complete) | None => continue,
        };
        reason.push_str(&format!(" (the {name} upload {why})"));
    }
    reason
}

/// The agent's copy of the job's output, uploaded as it grows.
#[derive(Default)]
struct LogWriter {
    sink: LogSink,
    written: u64,
    marks: PhaseMarks,
}

/// Where the log's bytes go.
enum LogSink {
    /// Held until the spool is open: only the agent's own notes come before the first phase starts.
    Pending(Vec<u8>),
    /// Written to the spool file that the uploader sends from.
    Spooled { file: File, uploader: Uploader },
    /// The spool could not be made: output is dropped, and the job ends `error` saying why.
    Lost,
}

impl Default for LogSink {
    fn default() -> Self {
        LogSink::Pending(Vec::new())
    }
}

impl LogWriter {
    /// Appends output. A full disk loses output rather than the job: the phase goes on.
    fn write(&mut self, bytes: &[u8]) {
        match &mut self.sink {
            LogSink::Pending(held) => held.extend_from_slice(bytes),
            LogSink::Spooled { file, uploader } => {
                if file.write_all(bytes).is_err() {
                    return;
                }
                uploader.nudge();
            }
            LogSink::Lost => return,
        }
        self.written += bytes.len() as u64;
    }

    /// From now on the log goes to `file`, starting with what was held.
    fn spool_to(&mut self, mut file: File, uploader: Uploader) {
        if let LogSink::Pending(held) = &self.sink {
            // Counted in `written` already; like any write, lost on a full disk.
            let _ = file.write_all(held);
            uploader.nudge();
        }
        self.sink = LogSink::Spooled { file, uploader };
    }

    /// The spool could not be made: nothing more is kept.
    fn lose(&mut self) {
        self.sink = LogSink::Lost;
    }

    /// Closes the log: its uploader sends what is left; `None` when the log was never spooled.
    fn close(self) -> Option<Draining> {
        match self.sink {
            LogSink::Spooled { file, uploader } => {
                drop(file);
                Some(uploader.close())
            }
            LogSink::Pending(_) | LogSink::Lost => None,
        }
    }

    /// Appends a line from the agent itself, so the log says what the agent did and why.
    fn note(&mut self, message: &str) {
        self.write(format!("proctor-agent: {message}\n").as_bytes());
    }

    /// Output from here on belongs to `phase`.
    fn begin_phase(&mut self, phase: Phase) {
        self.marks.mark(self.written, phase);
    }
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PhaseEnd {
    /// Its command exited with this status (signals as 128 + the signal number, as shells report them).
    Exited(i32),
    /// A limit stopped it.
    Limited(Limit, i32),
    /// It was stopped by a cancel or a lost lease.
    Stopped(i32),
    /// It could not be started; why.
    NotStarted(String),
}

/// A job's results upload and progress record, made with its log spool.
struct Streams {
    results: Uploader,
    record: PathBuf,
}

struct JobRun<'a, 'b> {
    context: &'b JobContext<'a>,
    job_id: String,
    work_dir: PathBuf,
    spool: PathBuf,
    log: LogWriter,
    /// Opened once, after the first phase started; the error says why they could not be.
    streams: Option<Result<Streams, String>>,
    control: Arc<JobControl>,
    started: Instant,
    /// The job's own token, for phases that call the API.
    token: Option<String>,
    /// The API as the job's holder: with the job's token, which every write to the job needs.
    writer: Client,
    /// The recipe's script, run as the test phase.
    recipe_script: Option<String>,
    /// Whether a cancel ended a reservation's hold.
    reservation_ended: bool,
    /// The machine under test, as the phases see it.
    device: Device,
}

impl JobRun<'_, '_> {
    /// Runs every phase the job needs and decides its final state and reason.
    fn run_all(
        &mut self,
        definition: &serde_json::Value,
        has_attachments: bool,
    ) -> (FinalState, String) {
        let job = match Job::deserialize(definition) {
            Ok(job) => job,
            Err(error) => {
                return (
                    FinalState::Error,
                    format!("the job definition could not be read: {error}"),
                )
            }
        };
        if let Err(error) = self.prepare_work_dir(definition) {
            return (FinalState::Error, error.with_causes());
        }
        if has_attachments {
            if let Err(problem) = self.fetch_attachments() {
                self.log.note(&problem);
                return (FinalState::Error, problem);
            }
        }
        let timeouts = self.context.config.effective_timeouts(&job);
        let mut verdict: Option<(FinalState, String)> = None;
        for phase in self.context.config.phases_for(&job) {
            if phase != Phase::Cleanup && verdict.is_some() {
                continue;
            }
            let end = self.run_phase(&job, phase, timeouts);
            let judged = judge(phase, &end, timeouts);
            if verdict.is_none() {
                verdict = judged;
            }
        }
        if self.control.is_cancelled() {
            let reason = if self.reservation_ended {
                "the reservation was ended by a cancel"
            } else {
                "cancelled by a user"
            };
            return (FinalState::Cancelled, reason.into());
        }
        if self.control.is_lost() {
            return (
                FinalState::Error,
                "the server took the job from this agent (its lease lapsed)".into(),
            );
        }
        verdict.unwrap_or_else(|| self.judge_results())
    }

    /// Opens the job's streams to the server, once: the log spool (with what the log held so far), the results
    /// upload and the progress record. Called just after the first phase's process started and at the job's end;
    /// the error says why they could not be opened (the job's output is then dropped, and it ends `error`).
    fn open_streams(&mut self) -> Result<(), String> {
        if self.streams.is_none() {
            let opened = self.try_open_streams().map_err(|error| error.with_causes());
            if opened.is_err() {
                self.log.lose();
            }
            self.streams = Some(opened);
        }
        match &self.streams {
            Some(Err(problem)) => Err(problem.clone()),
            _ => Ok(()),
        }
    }

    fn try_open_streams(&mut self) -> Result<Streams, AgentError> {
        create_dir(&self.spool)?;
        let log_path = self.spool.join("output.log");
        let (log_file, log_reader) = create_spool_file(&log_path)?;
        // Opened through a handle of the uploader's own, so it is read even if a phase deletes the work directory.
        create_dir(&self.work_dir)?;
        let results_path = self.work_dir.join(RESULTS_FILE);
        let results_reader = open_results_file(&results_path)?;
        let record = InProgress {
            job_id: self.job_id.clone(),
            job_token: self.token.clone(),
            log: log_path.clone(),
            results: results_path.clone(),
        }
        .save(&state::records_dir(self.context.work_dirs.root()))?;
        let upload = |stream, path, file, marks| {
            Uploader::start(
                self.writer.clone(),
                UploadSource {
                    job_id: self.job_id.clone(),
                    stream,
                    path,
                    file: Some(file),
                    marks,
                    resume: false,
                },
                self.context.settings.drain_limit,
            )
        };
        let log_uploader = upload(
            StreamKind::Log,
            log_path,
            log_reader,
            Some(self.log.marks.clone()),
        );
        self.log.spool_to(log_file, log_uploader);
        let results = upload(StreamKind::Results, results_path, results_reader, None);
        Ok(Streams { results, record })
    }

    /// The final state of a job whose phases all exited 0: `failed` when its results record a failed test.
    fn judge_results(&self) -> (FinalState, String) {
        judge_results(&self.work_dir.join(RESULTS_FILE))
    }

    /// Makes the job's work directory with `job.json` and the artifacts directory.
    fn prepare_work_dir(&self, definition: &serde_json::Value) -> Result<(), AgentError> {
        let text = serde_json::to_vec_pretty(definition).unwrap_or_default();
        self.context.work_dirs.take(&self.job_id, &text).map(drop)
    }

    /// Downloads the job's attachments and unpacks them under `attachments/`; the error says what went wrong. A
    /// download the server could not answer (unreachable, 5xx) is retried with backoff for the drain limit, as a
    /// server restarting must not fail the job; one it refused (no attachments, unknown job) is not.
    fn fetch_attachments(&self) -> Result<(), String> {
        let archive = retry(self.context.settings.drain_limit, || {
            self.writer.download_attachments(&self.job_id)
        })
        .map_err(|error| format!("the attachments could not be downloaded: {error}"))?;
        let destination = self.work_dir.join(ATTACHMENTS_DIR);
        let limits = self.context.settings.attachments_limits;
        proctor_archive::unpack(
            archive.as_slice(),
            &destination,
            Layout::UnderPhases,
            limits,
        )
        .map_err(|error| format!("the attachments could not be unpacked: {error}"))
    }

    /// Packs and uploads the artifacts directory, if it holds anything; a note for the job's reason when they
    /// could not be uploaded (the verdict stays what the phases made it).
    fn upload_artifacts(&mut self) -> Option<String> {
        let cap = self.context.settings.artifacts_cap;
        let artifacts = self.gather_artifacts();
        let problem = match pack_directory(&artifacts, cap) {
            Ok(None) => return None,
            Err(ArchiveError::OverCap { cap }) => format!(
                "the artifacts were not uploaded: packed, they are larger than the agent's cap of {cap} bytes"
            ),
            Ok(Some(packed)) => {
                for skipped in &packed.skipped {
                    self.log.note(&format!(
                        "left {} out of the artifacts: only files and directories are uploaded",
                        skipped.display()
                    ));
                }
                let size = packed.bytes.len();
                match self.send_artifacts(Bytes::from(packed.bytes)) {
                    Ok(()) => {
                        self.log
                            .note(&format!("uploaded the artifacts ({size} bytes packed)"));
                        return None;
                    }
                    Err(error) => format!("the artifacts were not uploaded: {error}"),
                }
            }
            Err(error) => format!("the artifacts could not be packed: {error}"),
        };
        self.log.note(&problem);
        Some(problem)
    }

    /// Puts the job's artifacts in one directory and answers it: `artifacts/` as the job left it (or made now, when
    /// the job did not make it, as Testflinger's users expect), with what phases left in `$PROCTOR_ARTIFACTS` moved
    /// in. A name both hold keeps the job's `artifacts/` file, and the log says so. When the job left something
    /// other than a directory at `artifacts`, only `$PROCTOR_ARTIFACTS` is uploaded.
    fn gather_artifacts(&mut self) -> PathBuf {
        let artifacts = self.work_dir.join(ARTIFACTS_DIR);
        let proctor_artifacts = self.work_dir.join(PROCTOR_ARTIFACTS_DIR);
        let made_by_job = match fs::symlink_metadata(&artifacts) {
            Ok(metadata) if metadata.is_dir() => true,
            Ok(_) => {
                self.log.note(&format!(
                    "{ARTIFACTS_DIR} is not a directory: only $PROCTOR_ARTIFACTS is uploaded"
                ));
                return proctor_artifacts;
            }
            Err(_) => false,
        };
        if !made_by_job && fs::rename(&proctor_artifacts, &artifacts).is_ok() {
            return artifacts;
        }
        if let Err(error) = create_dir(&artifacts) {
            self.log.note(&error.with_causes());
            return proctor_artifacts;
        }
        let mut clashes = Vec::new();
        move_into(&proctor_artifacts, &artifacts, Path::new(""), &mut clashes);
        for clash in clashes {
            self.log.note(&format!(
                "$PROCTOR_ARTIFACTS/{0} was left out of the artifacts: the job's {ARTIFACTS_DIR}/{0} is kept",
                clash.display()
            ));
        }
        // Empty unless something clashed; what is left there stays for people to look at.
        let _ = fs::remove_dir(&proctor_artifacts);
        artifacts
    }

    /// Uploads packed artifacts, retrying with backoff for the drain limit while the server cannot be reached or
    /// fails; a refusal (too large, unknown job) is not retried.
    fn send_artifacts(&self, archive: Bytes) -> Result<(), ClientError> {
        // A clone of `Bytes` shares the archive (up to the artifacts cap) rather than copying it for each try.
        retry(self.context.settings.drain_limit, || {
            self.writer.upload_artifacts(&self.job_id, archive.clone())
        })
    }

    /// Runs one phase, reporting its start and end to the server. A phase the job's global timeout ran out before
    /// is reported too, as ended with [`TIMED_OUT`], so the server shows the phase the job's reason names.
    fn run_phase(&mut self, job: &Job, phase: Phase, timeouts: Timeouts) -> PhaseEnd {
        self.log.begin_phase(phase);
        // Reported beside the phase rather than before it: the report is a round trip to the server that would
        // otherwise sit between a claim and its process starting (the dispatch latency). It is awaited before the
        // phase's end is reported, so the server sees them in order.
        let start_report = self.report_phase_start(phase);
        let end = match self.time_left(phase, timeouts) {
            Some(time_limit) => self.run_phase_command(job, phase, timeouts, time_limit),
            None => {
                self.log.note(&format!(
                    "the global timeout ran out before the {phase} phase: nothing was run for it"
                ));
                PhaseEnd::Limited(Limit::Time, TIMED_OUT)
            }
        };
        if let PhaseEnd::NotStarted(reason) = &end {
            self.log
                .note(&format!("the {phase} phase could not start: {reason}"));
        }
        let status = match &end {
            PhaseEnd::Exited(status) | PhaseEnd::Limited(_, status) | PhaseEnd::Stopped(status) => {
                *status
            }
            PhaseEnd::NotStarted(_) => 127,
        };
        self.report_phase_end(phase, start_report, status);
        end
    }

    /// Runs the phase's command (and a reservation's hold) with `time_limit`.
    fn run_phase_command(
        &mut self,
        job: &Job,
        phase: Phase,
        timeouts: Timeouts,
        time_limit: Duration,
    ) -> PhaseEnd {
        let end = match self.phase_command(job, phase) {
            Ok(Some(command)) => self.supervise(
                phase,
                command.limits(Limits {
                    time: Some(time_limit),
                    no_output: Some(timeouts.output),
                    memory: None,
                }),
            ),
            Ok(None) => {
                self.log.note(&format!(
                    "the agent has no {phase}_command: nothing was run for the {phase} phase (no ssh keys were installed)"
                ));
                PhaseEnd::Exited(0)
            }
            Err(reason) => PhaseEnd::NotStarted(reason),
        };
        match (phase, &job.reserve_data) {
            (Phase::Reserve, Some(reserve)) if end == PhaseEnd::Exited(0) => {
                let left = self.time_left(phase, timeouts).unwrap_or_default();
                self.hold_reservation(reserve.timeout.min(left))
            }
            _ => end,
        }
    }

    /// Reports the end of `phase` with `status`, once its start report (`start_report`) is done.
    fn report_phase_end(
        &mut self,
        phase: Phase,
        start_report: JoinHandle<Result<(), String>>,
        status: i32,
    ) {
        let reported = start_report
            .join()
            .unwrap_or_else(|_| Err("the reporting thread panicked".to_owned()));
        if let Err(error) = reported {
            self.log.note(&format!(
                "could not report the start of the {phase} phase: {error}"
            ));
        }
        if let Err(error) = self.writer.end_phase(&self.job_id, phase, status) {
            self.log.note(&format!(
                "could not report the end of the {phase} phase: {error}"
            ));
        }
    }

    /// Reports the start of `phase` to the server on a thread of its own; join it for the outcome.
    fn report_phase_start(&self, phase: Phase) -> JoinHandle<Result<(), String>> {
        let client = self.writer.clone();
        let job_id = self.job_id.clone();
        std::thread::spawn(move || {
            client
                .start_phase(&job_id, phase)
                .map_err(|error| error.to_string())
        })
    }

    /// The time `phase` may take: what is left of the job's global timeout. `cleanup` always gets at least the
    /// agent's cleanup allowance, so a job that ran out of time is still tidied up.
    fn time_left(&self, phase: Phase, timeouts: Timeouts) -> Option<Duration> {
        let left = timeouts.global.saturating_sub(self.started.elapsed());
        if phase == Phase::Cleanup {
            return Some(left.max(self.context.settings.cleanup_allowance));
        }
        (!left.is_zero()).then_some(left)
    }

    /// Holds the machine for `hold` (the reservation), saying in the log how to reach it and until when; a cancel
    /// ends the hold early.
    fn hold_reservation(&mut self, hold: Duration) -> PhaseEnd {
        let until = time_after(hold);
        self.log.note(&format!(
            "the machine is reserved for {} s, until {until}: connect with `ssh {}`",
            hold.as_secs(),
            ssh_destination()
        ));
        if self.control.hold(hold) {
            self.log.note("the reservation's time is up");
            PhaseEnd::Exited(0)
        } else {
            self.reservation_ended = true;
            self.log.note("the reservation was ended early");
            PhaseEnd::Stopped(0)
        }
    }

    /// The command for `phase`: a recipe's script for `test`, else the agent's `<phase>_command`, else for `test`
    /// the job's `test_cmds` run with bash (the built-in local device); `None` when there is nothing to run (a
    /// reservation on an agent without a `reserve_command`).
    fn phase_command(&mut self, job: &Job, phase: Phase) -> Result<Option<CommandSpec>, String> {
        // A phase may have deleted the work directory; the next one still gets it.
        let proctor_artifacts = self.work_dir.join(PROCTOR_ARTIFACTS_DIR);
        create_dir(&proctor_artifacts).map_err(|error| error.to_string())?;
        let configured = self.context.config.command(phase);
        let spec = match (phase, &self.recipe_script, configured) {
            (Phase::Test, Some(script), _) => self.recipe_command(script, job)?,
            (_, _, Some(command)) => CommandSpec::new("bash").args(["-c", command]),
            (Phase::Test, _, None) => self.test_cmds_command(job)?,
            (_, _, None) => return Ok(None),
        };
        // Before the agent's own variables, which a device key of the same name must not replace.
        let mut spec = spec.cwd(&self.work_dir);
        for (name, value) in self.device.environment() {
            spec = spec.env(name, value);
        }
        let mut spec = spec
            .grace(self.context.settings.grace)
            .env("PROCTOR_JOB_ID", &self.job_id)
            .env("PROCTOR_PHASE", phase.as_str())
            .env("PROCTOR_SERVER", self.context.client.servers())
            .env("PROCTOR_BIN", own_executable())
            .env("PROCTOR_WORK_DIR", &self.work_dir)
            .env("PROCTOR_JOB_FILE", self.work_dir.join(JOB_FILE))
            .env("PROCTOR_RESULTS", self.work_dir.join(RESULTS_FILE))
            .env("PROCTOR_ARTIFACTS", proctor_artifacts);
        if let Some(token) = &self.token {
            spec = spec.env("PROCTOR_TOKEN", token);
        }
        if phase == Phase::Test {
            for (name, value) in job.test_data.iter().flat_map(|data| &data.environment) {
                spec = spec.env(name, value.to_string());
            }
        }
        Ok(Some(spec))
    }

    /// The recipe's script, written into the work directory and run directly (its `#!` line picks the
    /// interpreter), with the job's options as `--key value`, by key.
    fn recipe_command(&self, script: &str, job: &Job) -> Result<CommandSpec, String> {
        let path = self.work_dir.join(RECIPE_FILE);
        write_executable(&path, script).map_err(|error| {
            format!(
                "could not write the recipe's script {}: {error}",
                path.display()
            )
        })?;
        let arguments = job
            .options
            .iter()
            .flat_map(|(key, value)| [format!("--{key}"), value.0.clone()]);
        Ok(CommandSpec::new(path).args(arguments))
    }

    /// The job's `test_cmds` run with bash: given on its command line (no file to make on the dispatch path), or
    /// when too long for one argument, written to the spool.
    fn test_cmds_command(&mut self, job: &Job) -> Result<CommandSpec, String> {
        let commands = job
            .test_data
            .as_ref()
            .and_then(|data| data.test_cmds.as_ref())
            .ok_or("the job has no test_cmds and the agent has no test_command")?;
        let script = commands.script_for(&self.device);
        if script != commands.script() {
            self.log.note(
                "test_cmds hold `{{`: their {device_ip}-style placeholders were filled from the agent's [device] table (Testflinger's deprecated templating)",
            );
        }
        let own_interpreter = names_other_interpreter(&script);
        if script.len() <= MAX_INLINE_SCRIPT && !own_interpreter {
            return Ok(CommandSpec::new("bash").args(["-c", &script, TEST_CMDS_NAME]));
        }
        let path = self.spool.join(TEST_CMDS_NAME);
        create_dir(&self.spool)
            .map_err(|error| error.to_string())
            .and_then(|()| {
                write_executable(&path, &script)
                    .map_err(|error| format!("could not write {}: {error}", path.display()))
            })?;
        // Testflinger runs the script as a file, so a `#!` line naming another interpreter (python3, sh) picks it.
        if own_interpreter {
            Ok(CommandSpec::new(path))
        } else {
            Ok(CommandSpec::new("bash").arg(path))
        }
    }

    /// Runs `command` under the supervisor, copying its output into the log as it comes.
    fn supervise(&mut self, phase: Phase, command: CommandSpec) -> PhaseEnd {
        let running = match self.context.supervisor.spawn(command) {
            Ok(running) => running,
            Err(error) => return PhaseEnd::NotStarted(error.to_string()),
        };
        if phase != Phase::Cleanup {
            self.control.set_running(running.stop_handle());
        }
        // The job's output is dropped if this fails; the job ends `error` saying why (see `run_job`).
        let _ = self.open_streams();
        for chunk in running.output() {
            self.log.write(&chunk.data);
        }
        let outcome = running.wait();
        self.control.clear_running();
        match outcome {
            Ok(outcome) => classify(&outcome),
            Err(error) => PhaseEnd::NotStarted(error.to_string()),
        }
    }
}

/// How a supervised command's outcome counts for its phase.
fn classify(outcome: &Outcome) -> PhaseEnd {
    let status = match outcome.exit {
        Exit::Code(code) => code,
        Exit::Signal(signal) => 128 + signal,
    };
    match (outcome.limit, outcome.stopped) {
        (Some(limit), _) => PhaseEnd::Limited(limit, status),
        (None, true) => PhaseEnd::Stopped(status),
        (None, false) => PhaseEnd::Exited(status),
    }
}

/// The final state a phase's end calls for, if it is not a success. Setup, provisioning and firmware failures are
/// the system's (`error`); a failing test, allocate or reserve phase is the job's (`failed`).
fn judge(phase: Phase, end: &PhaseEnd, timeouts: Timeouts) -> Option<(FinalState, String)> {
    match end {
        PhaseEnd::Exited(0) => None,
        PhaseEnd::Exited(status) => {
            let state = match phase {
                Phase::Setup | Phase::Provision | Phase::FirmwareUpdate | Phase::Cleanup => {
                    FinalState::Error
                }
                Phase::Test | Phase::Allocate | Phase::Reserve => FinalState::Failed,
            };
            Some((
                state,
                format!("the {phase} phase exited with status {status}"),
            ))
        }
        PhaseEnd::Limited(Limit::Time, _) => Some((
            FinalState::Killed,
            format!(
                "the global timeout ({} s) ran out in the {phase} phase",
                timeouts.global.as_secs()
            ),
        )),
        PhaseEnd::Limited(Limit::NoOutput, _) => Some((
            FinalState::Killed,
            format!(
                "the {phase} phase printed nothing for the output timeout ({} s)",
                timeouts.output.as_secs()
            ),
        )),
        PhaseEnd::Limited(Limit::Memory, _) => Some((
            FinalState::Killed,
            format!("the {phase} phase went over its memory limit"),
        )),
        PhaseEnd::Stopped(_) => Some((
            FinalState::Cancelled,
            format!("the {phase} phase was stopped"),
        )),
        PhaseEnd::NotStarted(reason) => Some((
            FinalState::Error,
            format!("the {phase} phase could not start: {reason}"),
        )),
    }
}

/// The verdict of a job whose phases all exited 0, from its subunit v2 results file (none is no tests) by the one
/// results model every reader of results in Proctor uses: it failed when a test failed (a run of its latest try
/// failed, or started and never finished); a test that passed only on a retry is flaky, which does not fail it.
/// Corrupt bytes fail the reader's own `subunit.parser` test.
fn judge_results(path: &Path) -> (FinalState, String) {
    let mut summary = Summary::new();
    if let Ok(file) = File::open(path) {
        for event in EventReader::new(BufReader::new(file)).map_while(Result::ok) {
            // A summary only counts; it has no way to fail.
            let _ = summary.event(&event);
        }
    }
    let _ = summary.finish();
    let runs = summary.tests.runs();
    let tests = summary.tests.tests();
    let unfinished = summary.statuses.incomplete;
    let flaky = summary.tests.with_verdict(TestVerdict::Flaky);
    let flaky_note = match flaky.len() {
        0 => String::new(),
        n => format!("; {n} of {} tests flaky: {}", tests.total, listed(&flaky)),
    };
    if tests.failed == 0 {
        return (
            FinalState::Passed,
            format!("every phase exited 0{flaky_note}"),
        );
    }
    let unfinished_note = match unfinished {
        0 => String::new(),
        n => format!(" ({n} did not finish)"),
    };
    let failed = summary.tests.with_verdict(TestVerdict::Failed);
    (
        FinalState::Failed,
        format!(
            "{} of {} test runs failed{unfinished_note}; {} of {} tests failed: {}{flaky_note}",
            runs.failed,
            runs.total,
            tests.failed,
            tests.total,
            listed(&failed)
        ),
    )
}

/// Test ids for a job's reason: the first few, and how many more.
fn listed(ids: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = ids[..ids.len().min(SHOWN)].join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

/// Whether a script's `#!` line names an interpreter other than bash (directly or through `env`).
fn names_other_interpreter(script: &str) -> bool {
    let Some(line) = script
        .strip_prefix("#!")
        .and_then(|rest| rest.lines().next())
    else {
        return false;
    };
    let file_name = |path: &str| {
        Path::new(path)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    };
    let mut words = line.split_whitespace();
    let program = words.next().and_then(file_name);
    let interpreter = if program.as_deref() == Some("env") {
        words
            .find(|word| !word.starts_with('-'))
            .and_then(file_name)
    } else {
        program
    };
    interpreter.is_some_and(|name| name != "bash")
}

/// Moves the entries of `from` into `into` by renaming them, merging directories both have; the path (below the
/// top) of each entry `into` already has a file for is added to `clashes` and the entry stays where it was. A
/// directory that cannot be read moves nothing.
fn move_into(from: &Path, into: &Path, below: &Path, clashes: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let (source, target) = (entry.path(), into.join(entry.file_name()));
        let relative = below.join(entry.file_name());
        match fs::symlink_metadata(&target) {
            Err(_) => {
                if fs::rename(&source, &target).is_err() {
                    clashes.push(relative);
                }
            }
            Ok(existing) if existing.is_dir() && source.is_dir() && !source.is_symlink() => {
                move_into(&source, &target, &relative, clashes);
            }
            Ok(_) => clashes.push(relative),
        }
    }
}

/// Writes `text` to `path` as an executable file (replacing one a phase left there).
fn write_executable(path: &Path, text: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    // `mode` applies only to a new file.
    file.set_permissions(fs::Permissions::from_mode(0o755))
}

/// The time (UTC, to the second) `wait` from now, for people reading the log.
fn time_after(wait: Duration) -> String {
    jiff::Timestamp::now()
        .checked_add(wait)
        .and_then(|until| until.round(jiff::Unit::Second))
        .map_or_else(
            |_| format!("{} s from now", wait.as_secs()),
            |until| until.to_string(),
        )
}

/// How to reach this machine over ssh: the user the agent runs as, at the machine's host name.
fn ssh_destination() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_owned());
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}

fn create_dir(path: &Path) -> Result<(), AgentError> {
    fs::create_dir_all(path).map_err(|source| AgentError::Io {
        what: "could not create the directory",
        path: path.to_owned(),
        source,
    })
}

/// The agent's own program, so a phase can call Proctor's commands (`"$PROCTOR_BIN" lab-worker`) on a machine
/// where `proctor` is not on the `PATH`; `proctor` when it cannot be found.
fn own_executable() -> std::ffi::OsString {
    std::env::current_exe().map_or_else(|_| "proctor".into(), |path| path.into_os_string())
}
