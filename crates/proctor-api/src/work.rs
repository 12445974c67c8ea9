//! The conversation between a local run and a lab job that serves it as a worker (`proctor run --lab`), carried
//! in two of the job's streams as JSON lines: the submitter writes [`WorkRequest`]s into `work`, the job's worker
//! (on the agent) writes [`WorkReport`]s into `work-done`, each batch's output among them. The output travels as it
//! was printed, standard output and error apart, whatever the test command's protocol (subunit, or exit codes and
//! text), so the run reads it exactly as it reads a local process's.
//!
//! Each stream has one writer at a time, which appends at the end it last read: a batch is only asked for once
//! the one before it has ended, and a cancel comes from the batch's own client.

use serde::{Deserialize, Serialize};

/// How a batch's command exits when its tree was killed on its memory limit where it ran (as the ssh wrapper's
/// does), so the run reports the limit as it would here.
pub const MEMORY_EXCEEDED_EXIT: i32 = 247;

/// How the local end of a batch (`proctor lab-batch`) exits when the lab job serving as its worker ended under it:
/// the worker is lost (the agent died or was cut off), not the test.
pub const WORKER_LOST_EXIT: i32 = 255;

/// The longest line either side reads from the other; a longer one is refused, not buffered.
pub const MAX_WORK_LINE: usize = 16 << 20;

/// A line of the `work` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkRequest {
    /// Run one batch of tests.
    Batch(BatchRequest),
    /// Stop a batch that is running (its client was stopped: a time limit, or the run was interrupted).
    Cancel {
        /// The batch.
        batch: u64,
    },
    /// The run is done with the worker: the job ends.
    End,
}

/// One batch: a test command as the run would start it here, with paths under the run's tree that the worker
/// points into its copy of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The batch's number: the offset of its request in the `work` stream, so it needs no counter.
    pub batch: u64,
    /// The tree's directory on the submitter's machine.
    pub root: String,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its extra environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: String,
    /// How long a stopped batch's tree gets between SIGTERM and SIGKILL.
    pub grace_seconds: u64,
    /// The most memory (bytes) the batch's tree may use; over it, the tree is killed and the batch exits
    /// [`MEMORY_EXCEEDED_EXIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// testrepository's `$IDFILE`, when the command names one: the file's path here and what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idfile: Option<(String, String)>,
}

/// A line of the `work-done` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkReport {
    /// The worker has the tree and waits for batches.
    Ready {
        /// Its machine's architecture.
        arch: Option<String>,
        /// Its machine's distribution and release (`debian-12`).
        distro: Option<String>,
    },
    /// Bytes a batch printed.
    Output {
        /// The batch.
        batch: u64,
        /// Which of its outputs.
        stream: OutputStream,
        /// The bytes (base64 on the wire).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// A batch ended.
    Ended {
        /// The batch.
        batch: u64,
        /// Its exit status, when it exited.
        exit: Option<i32>,
        /// Why it did not run or what stopped it, when something did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    },
}

/// Which output of a batch's command bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output (a subunit stream, for most test commands).
    Stdout,
    /// Standard error.
    Stderr,
}

/// Bytes as base64 text in JSON.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Splits complete lines off `pending` (bytes read so far), leaving a partial last line there. A line longer than
/// [`MAX_WORK_LINE`] is an error naming its length, whether it arrived whole or in parts.
///
/// One pass, and the taken bytes are dropped from `pending` once: splitting each line off the rest copied the
/// rest, which was quadratic in the lines of one read (64 Ki empty lines took 3.4 s; `tests/no_panic.rs`).
pub fn take_lines(pending: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(length) = pending[start..].iter().position(|&byte| byte == b'\n') {
        if length > MAX_WORK_LINE {
            return Err(format!(
                "a line of more than {MAX_WORK_LINE} bytes ({length})"
            ));
        }
        lines.push(pending[start..start + length].to_vec());
        start += length + 1;
    }
    if pending.len() - start > MAX_WORK_LINE {
        return Err(format!(
            "a line of more than {MAX_WORK_LINE} bytes ({} so far)",
            pending.len() - start
        ));
    }
    pending.drain(..start);
    Ok(lines)
}

/// One message as a line of its stream.
pub fn to_line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_keep_the_partial_tail() {
        let mut pending = b"{\"end\":1}\nab\ncd".to_vec();
        let lines = take_lines(&mut pending).expect("lines");
        assert_eq!(lines, [b"{\"end\":1}".to_vec(), b"ab".to_vec()]);
        assert_eq!(pending, b"cd");
        pending.extend(vec![b'x'; MAX_WORK_LINE]);
        assert!(take_lines(&mut pending)
            .expect_err("too long")
            .contains("more than"));
    }

    #[test]
    fn messages_read_back() {
        let request = WorkRequest::Batch(BatchRequest {
            batch: 7,
            root: "/src".into(),
            program: "python3".into(),
            args: vec!["-m".into(), "subunit.run".into()],
            env: vec![("A".into(), "1".into())],
            cwd: "/src".into(),
            grace_seconds: 10,
            memory_limit: None,
            idfile: Some(("/tmp/ids".into(), "a\nb\n".into())),
        });
        let line = to_line(&request);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: WorkRequest = serde_json::from_slice(&line).expect("request");
        assert_eq!(back, request);
        let end: WorkRequest = serde_json::from_slice(b"\"end\"").expect("end");
        assert_eq!(end, WorkRequest::End);
        let report: WorkReport =
            serde_json::from_slice(b"{\"ended\":{\"batch\":7,\"exit\":0}}").expect("report");
        assert_eq!(
            report,
            WorkReport::Ended {
                batch: 7,
                exit: Some(0),
                problem: None
            }
        );
        let output = WorkReport::Output {
            batch: 7,
            stream: OutputStream::Stderr,
            data: vec![0xb3, 0, 0xff, b'\n'],
        };
        let line = to_line(&output);
        assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
        assert_eq!(
            serde_json::from_slice::<WorkReport>(&line).expect("output"),
            output
        );
        assert!(serde_json::from_slice::<WorkReport>(
            b"{\"output\":{\"batch\":7,\"stream\":\"stdout\",\"data\":\"!!\"}}"
        )
        .is_err());
    }
}
