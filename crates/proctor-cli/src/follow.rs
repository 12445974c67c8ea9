//! Waiting for a job to end, with or without printing its output live, and the exit status its end gives.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use proctor_api::{JobState, JobView, StreamKind};
use proctor_client::{Client, ClientError, StreamRead};
use proctor_job::Phase;

use crate::error::CliError;
use crate::exit;

/// How long one request waits on the server for new log bytes or a change of the job's state. The server answers
/// the moment either happens, so this bounds only how often a quiet job costs a request.
const LONG_POLL: Duration = Duration::from_secs(10);
/// The pause before asking a server that could not be reached again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long the server may stay unreachable while we wait, before giving up.
const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(120);

/// The exit status for a job that ended in `state`: 0 passed, 1 failed, 2 anything else.
pub fn exit_status(state: JobState) -> u8 {
    match state {
        JobState::Passed => exit::OK,
        JobState::Failed => exit::TESTS_FAILED,
        _ => exit::ERROR,
    }
}

/// Waits until the job has ended and returns it. Each request after the first is held by the server until the job's
/// state changes from the one last seen, so the end is known as soon as the server knows it.
pub fn wait(client: &Client, job_id: &str) -> Result<JobView, CliError> {
    let mut retry = Retry::new();
    let mut seen = None;
    loop {
        let answer = match seen {
            None => client.job(job_id),
            Some(state) => client.job_changed_from(job_id, state, LONG_POLL),
        };
        match answer {
            Ok(detail) if detail.job.state.is_final() => return Ok(detail.job),
            Ok(detail) => {
                retry.reached();
                seen = Some(detail.job.state);
            }
            Err(error) => retry.unreachable(error)?,
        }
    }
}

/// Copies the job's log (or one phase's part of it) to `out` as it grows, until the job has ended and every byte
/// is printed; returns the ended job.
pub fn follow(
    client: &Client,
    job_id: &str,
    phase: Option<Phase>,
    out: &mut dyn Write,
) -> Result<JobView, CliError> {
    let mut offset = 0;
    let mut retry = Retry::new();
    loop {
        let read = match client.read_stream(job_id, StreamKind::Log, offset, phase, Some(LONG_POLL))
        {
            Ok(read) => read,
            Err(error) => {
                retry.unreachable(error)?;
                continue;
            }
        };
        retry.reached();
        out.write_all(&read.bytes)?;
        out.flush()?;
        offset = read.next_offset;
        // An empty answer from a running job came at the end of the server's hold: the next read waits again.
        if read.bytes.is_empty() {
            if let Some(job) = state_of(client, job_id, &read)? {
                return Ok(job);
            }
        }
    }
}

/// The job, once a read that found nothing new says (or the job says) it has ended.
fn state_of(client: &Client, job_id: &str, read: &StreamRead) -> Result<Option<JobView>, CliError> {
    if read.job_state.is_some_and(|state| !state.is_final()) {
        return Ok(None);
    }
    let job = client.job(job_id)?.job;
    Ok(job.state.is_final().then_some(job))
}

/// Reads a whole stream as it is stored now.
pub fn read_all(
    client: &Client,
    job_id: &str,
    stream: StreamKind,
    phase: Option<Phase>,
) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    loop {
        let read = client.read_stream(job_id, stream, bytes.len() as u64, phase, None)?;
        if read.bytes.is_empty() {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&read.bytes);
    }
}

/// Prints how a job ended, to standard error (standard output has the id or the log).
pub fn report_end(job: &JobView) {
    let reason = job.reason.as_deref().unwrap_or("");
    eprintln!(
        "job {} {}{}{}",
        job.id,
        job.state,
        if reason.is_empty() { "" } else { ": " },
        reason
    );
}

/// Rides out a server that goes away for a while (restarted, network trouble) while we wait for a job.
struct Retry {
    last_reached: Instant,
    warned: bool,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            last_reached: Instant::now(),
            warned: false,
        }
    }

    fn reached(&mut self) {
        self.last_reached = Instant::now();
        self.warned = false;
    }

    /// Lets an unreachable server be retried, after a pause, within the patience; other errors end the wait.
    fn unreachable(&mut self, error: ClientError) -> Result<(), CliError> {
        if !error.is_transient() || self.last_reached.elapsed() > UNREACHABLE_PATIENCE {
            return Err(error.into());
        }
        if !self.warned {
            let _ = writeln!(io::stderr(), "proctor: {error}; retrying");
            self.warned = true;
        }
        std::thread::sleep(RETRY_PAUSE);
        Ok(())
    }
}
