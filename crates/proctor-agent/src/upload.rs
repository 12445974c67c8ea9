//! Background uploads of a job's byte streams. Each stream is a file on this machine (the agent's log of the
//! phases' output, or the subunit results a phase writes); an uploader thread sends what the file holds past the
//! server's acknowledged end, so a failed request is simply retried from the acknowledged offset and the file is
//! the spool while the server is away.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proctor_job::Phase;

use proctor_api::StreamKind;
use proctor_client::{Client, ClientError, Upload};

use proctor_client::backoff::{Backoff, MAX_JOB_WAIT};

/// The most bytes sent in one request (well under the server's default 64 MiB body limit).
const MAX_CHUNK: u64 = 1024 * 1024;
/// How often the file is looked at when nobody says it grew (the results file is written by a phase).
const POLL: Duration = Duration::from_millis(100);

/// Which phase wrote which bytes of the log: each entry is the offset where a phase's output starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct PhaseMarks(Arc<Mutex<Vec<(u64, Phase)>>>);

impl PhaseMarks {
    /// Records that `phase`'s output starts at `offset`.
    pub(crate) fn mark(&self, offset: u64, phase: Phase) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((offset, phase));
    }

    /// The phase that wrote the byte at `offset`, and where the next phase's output starts.
    fn phase_at(&self, offset: u64) -> (Option<Phase>, Option<u64>) {
        let marks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let current = marks.iter().rev().find(|(start, _)| *start <= offset);
        let next = marks.iter().find(|(start, _)| *start > offset);
        (
            current.map(|(_, phase)| *phase),
            next.map(|(start, _)| *start),
        )
    }
}

/// What an uploader sends and where.
pub(crate) struct UploadSource {
    /// The job the stream belongs to.
    pub(crate) job_id: String,
    /// Which stream.
    pub(crate) stream: StreamKind,
    /// The file holding it; it may appear only later (a results file).
    pub(crate) path: PathBuf,
    /// The file, already open: read from this handle even if a phase deletes the path.
    pub(crate) file: Option<File>,
    /// Phase attribution (log only).
    pub(crate) marks: Option<PhaseMarks>,
    /// Whether the server may already hold part of the stream (an agent resuming after a restart): it is asked
    /// where its copy ends before anything is sent.
    pub(crate) resume: bool,
}

/// A running uploader. [`nudge`](Self::nudge) says the file grew; [`close`](Self::close) says it is complete.
pub(crate) struct Uploader {
    nudge: SyncSender<()>,
    thread: JoinHandle<UploadEnd>,
}

/// A closed uploader sending what is left: [`join`](Self::join) waits until all of it is stored, or until the server
/// has stayed unreachable for the drain limit.
pub(crate) struct Draining {
    thread: JoinHandle<UploadEnd>,
}

/// How an upload ended.
#[derive(Debug)]
pub(crate) enum UploadEnd {
    /// Everything the file held is stored.
    Complete,
    /// The server stored only up to this offset before the drain limit ran out.
    Incomplete(u64),
    /// The server refused the upload (a 4xx) when it had stored up to this offset.
    Refused(u64, ClientError),
    /// The uploader's thread panicked (a bug in the agent): how far the server got is unknown.
    Panicked,
}

impl Uploader {
    /// Starts uploading `source` with `client`; after [`close`](Self::close) it keeps retrying for `drain_limit`.
    pub(crate) fn start(client: Client, source: UploadSource, drain_limit: Duration) -> Self {
        let (nudge, nudged) = mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let mut source = source;
            UploadLoop {
                client,
                file: source.file.take(),
                must_probe: source.resume,
                source,
                acked: 0,
            }
            .run(nudged, drain_limit)
        });
        Uploader { nudge, thread }
    }

    /// Says the file grew, so it is sent now rather than at the next poll.
    pub(crate) fn nudge(&self) {
        // A full channel already holds a nudge the uploader has not seen: nothing is lost.
        let _ = self.nudge.try_send(());
    }

    /// Says the file is complete: the uploader sends what is left, and [`Draining::join`] waits for it. Close every
    /// uploader of a job before joining any, so they drain side by side.
    pub(crate) fn close(self) -> Draining {
        drop(self.nudge);
        Draining {
            thread: self.thread,
        }
    }
}

impl Draining {
    /// Waits until the uploader stopped and says how far the server got.
    pub(crate) fn join(self) -> UploadEnd {
        self.thread.join().unwrap_or(UploadEnd::Panicked)
    }
}

struct UploadLoop {
    client: Client,
    source: UploadSource,
    /// Kept open once found, so the stream can still be read after a phase deletes the file.
    file: Option<File>,
    /// Everything before this offset is stored on the server.
    acked: u64,
    /// Whether the server's end must be learnt before sending.
    must_probe: bool,
}

/// What one step of the loop did.
enum Step {
    /// Sent (or skipped) some bytes.
    Progress,
    /// The server has everything the file holds now.
    CaughtUp,
    /// The server could not be reached or failed: worth retrying.
    Failed,
    /// The server refused: retrying would be refused again.
    Refused(ClientError),
}

impl UploadLoop {
    fn run(mut self, nudged: Receiver<()>, drain_limit: Duration) -> UploadEnd {
        let mut closed_at: Option<Instant> = None;
        let mut backoff = Backoff::new(MAX_JOB_WAIT);
        loop {
            match self.step() {
                Step::Progress => backoff.reset(),
                Step::CaughtUp if closed_at.is_some() => return UploadEnd::Complete,
                Step::CaughtUp => match nudged.recv_timeout(POLL) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => closed_at = Some(Instant::now()),
                },
                Step::Refused(error) => return UploadEnd::Refused(self.acked, error),
                Step::Failed => {
                    if closed_at.is_some_and(|closed| closed.elapsed() >= drain_limit) {
                        return UploadEnd::Incomplete(self.acked);
                    }
                    // Not cut short by nudges: every chunk of output nudges, so a chatty phase would make one retry
                    // per chunk while the server is away.
                    backoff.sleep();
                    if closed_at.is_none() && is_closed(&nudged) {
                        closed_at = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        if self.must_probe {
            return self.probe();
        }
        let Some((phase, bytes)) = self.next_chunk() else {
            return Step::CaughtUp;
        };
        match self.client.upload(
            &self.source.job_id,
            self.source.stream,
            self.acked,
            phase,
            bytes,
        ) {
            // The server resumes us at its own end: past ours when a previous attempt was stored but not
            // acknowledged, before ours when it lost bytes it had acknowledged.
            Ok(Upload::Gap(expected)) => {
                self.acked = expected;
                Step::Progress
            }
            Ok(Upload::StoredTo(stored)) if stored > self.acked => {
                self.acked = stored;
                Step::Progress
            }
            // An acknowledgement that does not move forward would make us resend the same bytes forever.
            Ok(Upload::StoredTo(_)) => Step::Failed,
            Err(error) => failure(error),
        }
    }

    /// Learns where the server's copy ends with an empty chunk at the local end: the server answers its end,
    /// as an acknowledgement or as a gap to resume from.
    fn probe(&mut self) -> Step {
        let length = self.local_length().unwrap_or(0);
        match self.client.upload(
            &self.source.job_id,
            self.source.stream,
            length,
            None,
            Vec::new(),
        ) {
            Ok(Upload::Gap(end) | Upload::StoredTo(end)) => {
                self.acked = end.min(length);
                self.must_probe = false;
                Step::Progress
            }
            Err(error) => failure(error),
        }
    }

    fn local_length(&mut self) -> Option<u64> {
        if self.file.is_none() {
            self.file = File::open(&self.source.path).ok();
        }
        Some(self.file.as_ref()?.metadata().ok()?.len())
    }

    /// The bytes past the acknowledged end, up to the next phase's output and the chunk size, with the phase that
    /// wrote them; `None` when there are none (or the file cannot be read now).
    fn next_chunk(&mut self) -> Option<(Option<Phase>, Vec<u8>)> {
        let length = self.local_length()?;
        let file = self.file.as_ref()?;
        if self.acked >= length {
            return None;
        }
        let (phase, next_mark) = self
            .source
            .marks
            .as_ref()
            .map_or((None, None), |marks| marks.phase_at(self.acked));
        let end = length
            .min(self.acked + MAX_CHUNK)
            .min(next_mark.unwrap_or(u64::MAX));
        read_range(file, self.acked, end).map(|bytes| (phase, bytes))
    }
}

/// The step a failed request makes: a retry later, unless the server refused.
fn failure(error: ClientError) -> Step {
    if error.is_transient() {
        Step::Failed
    } else {
        Step::Refused(error)
    }
}

/// Whether the uploader was closed; a nudge waiting in the channel is taken (the next step sends what it announced).
fn is_closed(nudged: &Receiver<()>) -> bool {
    matches!(nudged.try_recv(), Err(TryRecvError::Disconnected))
}

/// The bytes of `file` from `start` to `end`, or `None` when they cannot be read (the file shrank).
fn read_range(file: &File, start: u64, end: u64) -> Option<Vec<u8>> {
    let length = usize::try_from(end.saturating_sub(start)).ok()?;
    let mut bytes = vec![0; length];
    file.read_exact_at(&mut bytes, start).ok()?;
    Some(bytes)
}
