//! The two ends of a job's JSON-line streams (`work` and `work-done`, see [`proctor_api::WorkRequest`]): a
//! [`StreamWriter`] that appends at the end it knows, retrying while the lab cannot answer, and a [`LineReader`]
//! that follows a stream and hands out its messages.

use std::time::{Duration, Instant};

use proctor_api::{take_lines, to_line, JobState, StreamKind};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backoff::{Backoff, MAX_JOB_WAIT};
use crate::{Client, ClientError, Upload};

/// What went wrong following or writing a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The lab refused or did not answer in time.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The stream does not end where its only writer left it: someone else wrote to it.
    #[error("the {stream} stream of job {job_id} ends at byte {found}, not at {expected} where this writer left it")]
    Moved {
        /// The job.
        job_id: String,
        /// The stream.
        stream: StreamKind,
        /// Where the writer expected the end.
        expected: u64,
        /// Where the lab says it is.
        found: u64,
    },
    /// A line is not a message of the stream.
    #[error("the {stream} stream of job {job_id}, at byte {offset}: {problem}")]
    Bad {
        /// The job.
        job_id: String,
        /// The stream.
        stream: StreamKind,
        /// Where the line starts.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },
}

/// Appends to one of a job's streams as its only writer, from an offset it was told or found.
#[derive(Debug)]
pub struct StreamWriter {
    client: Client,
    job_id: String,
    stream: StreamKind,
    offset: u64,
    patience: Duration,
}

impl StreamWriter {
    /// A writer of `stream` of `job_id` whose end is `offset`, retrying an append the lab cannot answer for up to
    /// `patience`.
    pub fn at(
        client: Client,
        job_id: &str,
        stream: StreamKind,
        offset: u64,
        patience: Duration,
    ) -> StreamWriter {
        StreamWriter {
            client,
            job_id: job_id.to_owned(),
            stream,
            offset,
            patience,
        }
    }

    /// The end of what it wrote.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends one message as a line.
    pub fn send<T: Serialize>(&mut self, message: &T) -> Result<(), StreamError> {
        self.append(&to_line(message))
    }

    /// Appends `bytes` at the end, retrying with backoff while the lab cannot answer.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut backoff = Backoff::new(MAX_JOB_WAIT);
        let expected = self.offset + bytes.len() as u64;
        loop {
            let upload =
                self.client
                    .upload(&self.job_id, self.stream, self.offset, None, bytes.to_vec());
            match upload {
                Ok(Upload::StoredTo(end)) if end == expected => {
                    self.offset = end;
                    return Ok(());
                }
                Ok(Upload::StoredTo(found) | Upload::Gap(found)) => {
                    return Err(StreamError::Moved {
                        job_id: self.job_id.clone(),
                        stream: self.stream,
                        expected: self.offset,
                        found,
                    })
                }
                Err(error) if error.is_transient() && started.elapsed() < self.patience => {
                    backoff.sleep();
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Follows one of a job's JSON-line streams from an offset.
#[derive(Debug)]
pub struct LineReader {
    client: Client,
    job_id: String,
    stream: StreamKind,
    offset: u64,
    pending: Vec<u8>,
}

/// What one read of a [`LineReader`] gave.
#[derive(Debug)]
pub struct Lines<T> {
    /// The complete messages that arrived.
    pub messages: Vec<T>,
    /// The job's state when the lab answered; once final and no message came, none will.
    pub job_state: Option<JobState>,
}

impl LineReader {
    /// A reader of `stream` of `job_id` from `offset`, which must be a line's start.
    pub fn from(client: Client, job_id: &str, stream: StreamKind, offset: u64) -> LineReader {
        LineReader {
            client,
            job_id: job_id.to_owned(),
            stream,
            offset,
            pending: Vec::new(),
        }
    }

    /// Where the next read starts: past every byte read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The messages that arrive next, waiting up to `wait` for some while the job runs.
    pub fn next<T: DeserializeOwned>(&mut self, wait: Duration) -> Result<Lines<T>, StreamError> {
        let read =
            self.client
                .read_stream(&self.job_id, self.stream, self.offset, None, Some(wait))?;
        let line_start = self.offset - self.pending.len() as u64;
        self.offset = read.next_offset;
        self.pending.extend_from_slice(&read.bytes);
        let bad = |offset: u64, problem: String| StreamError::Bad {
            job_id: self.job_id.clone(),
            stream: self.stream,
            offset,
            problem,
        };
        let lines = take_lines(&mut self.pending).map_err(|problem| bad(line_start, problem))?;
        let mut at = line_start;
        let mut messages = Vec::with_capacity(lines.len());
        for line in lines {
            let message =
                serde_json::from_slice(&line).map_err(|error| bad(at, error.to_string()))?;
            messages.push(message);
            at += line.len() as u64 + 1;
        }
        Ok(Lines {
            messages,
            job_state: read.job_state,
        })
    }
}
