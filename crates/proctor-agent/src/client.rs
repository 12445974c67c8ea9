//! The server's HTTP API as the agent uses it: register, claim, heartbeat, phase reports, stream uploads, finish.

use std::time::Duration;

use proctor_job::Phase;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::AgentError;
use crate::FinalState;

/// A job the server handed to this agent.
#[derive(Debug, Deserialize)]
pub(crate) struct ClaimedJob {
    /// The job id.
    pub(crate) id: String,
    /// The job definition as submitted, normalised to JSON.
    pub(crate) definition: serde_json::Value,
}

/// The heartbeat's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct HeartbeatReply {
    /// Jobs whose leases were renewed.
    pub(crate) renewed: Vec<String>,
    /// Jobs a user asked to cancel.
    pub(crate) cancel_requested: Vec<String>,
}

/// Which of a job's byte streams an upload goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// The phases' output.
    Log,
    /// The subunit v2 results.
    Results,
}

impl StreamKind {
    fn path(self) -> &'static str {
        match self {
            StreamKind::Log => "log",
            StreamKind::Results => "results",
        }
    }
}

/// Where the server stands after an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadAck {
    /// Everything before this offset is stored.
    StoredTo(u64),
    /// The chunk started past the stored end: resend from this offset.
    Gap(u64),
}

#[derive(Deserialize)]
struct AckBody {
    end_offset: u64,
}

#[derive(Deserialize)]
struct GapBody {
    expected_offset: Option<u64>,
}

#[derive(Serialize)]
struct FinishBody<'a> {
    state: FinalState,
    reason: &'a str,
    agent_id: &'a str,
}

/// A blocking client for one server, on behalf of one agent.
#[derive(Debug, Clone)]
pub(crate) struct ServerClient {
    http: Client,
    base: String,
    agent_id: String,
}

impl ServerClient {
    /// A client for the server at `base` (like `http://127.0.0.1:7370`); requests give up after `timeout`.
    pub(crate) fn new(base: &str, agent_id: &str, timeout: Duration) -> Result<Self, AgentError> {
        let http = Client::builder()
            .timeout(timeout)
            .build()
            .map_err(AgentError::Client)?;
        Ok(ServerClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            agent_id: agent_id.to_owned(),
        })
    }

    /// The server's base URL, as phases see it in `PROCTOR_SERVER`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Announces the agent and its queues.
    pub(crate) fn register(&self, queues: &[String], images: &[String]) -> Result<(), AgentError> {
        let url = self.url(&format!("/agents/{}", self.agent_id));
        let request = self
            .http
            .post(&url)
            .json(&json!({"queues": queues, "images": images}));
        expect_success(
            "registering the agent",
            &url,
            send("registering the agent", &url, request)?,
        )?;
        Ok(())
    }

    /// Waits up to `wait` for a job on `queues`; `None` when none came.
    pub(crate) fn claim(
        &self,
        queues: &[String],
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, AgentError> {
        const WHAT: &str = "claiming a job";
        let url = self.url(&format!("/agents/{}/claim", self.agent_id));
        let request = self
            .http
            .post(&url)
            .json(&json!({"queues": queues, "wait_seconds": wait.as_secs_f64()}));
        let response = expect_success(WHAT, &url, send(WHAT, &url, request)?)?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        read_json(WHAT, &url, response).map(Some)
    }

    /// Renews the leases of this agent's jobs.
    pub(crate) fn heartbeat(&self) -> Result<HeartbeatReply, AgentError> {
        const WHAT: &str = "sending a heartbeat";
        let url = self.url(&format!("/agents/{}/heartbeat", self.agent_id));
        let response = expect_success(WHAT, &url, send(WHAT, &url, self.http.post(&url))?)?;
        read_json(WHAT, &url, response)
    }

    /// Records that `phase` of `job_id` started.
    pub(crate) fn start_phase(&self, job_id: &str, phase: Phase) -> Result<(), AgentError> {
        const WHAT: &str = "reporting a phase start";
        let url = self.url(&format!("/jobs/{job_id}/phases/{phase}/start"));
        expect_success(WHAT, &url, send(WHAT, &url, self.http.post(&url))?)?;
        Ok(())
    }

    /// Records that `phase` of `job_id` ended with `exit_status`.
    pub(crate) fn end_phase(
        &self,
        job_id: &str,
        phase: Phase,
        exit_status: i32,
    ) -> Result<(), AgentError> {
        const WHAT: &str = "reporting a phase end";
        let url = self.url(&format!("/jobs/{job_id}/phases/{phase}/end"));
        let request = self
            .http
            .post(&url)
            .json(&json!({"exit_status": exit_status}));
        expect_success(WHAT, &url, send(WHAT, &url, request)?)?;
        Ok(())
    }

    /// Stores `bytes` at `offset` of one of the job's streams, tagged with the phase that wrote them.
    pub(crate) fn upload(
        &self,
        job_id: &str,
        stream: StreamKind,
        offset: u64,
        phase: Option<Phase>,
        bytes: Vec<u8>,
    ) -> Result<UploadAck, AgentError> {
        const WHAT: &str = "uploading output";
        let url = self.url(&format!("/jobs/{job_id}/{}", stream.path()));
        let mut query = vec![("offset", offset.to_string())];
        if let Some(phase) = phase {
            query.push(("phase", phase.as_str().to_owned()));
        }
        let request = self
            .http
            .put(&url)
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let response = send(WHAT, &url, request)?;
        if response.status() == StatusCode::CONFLICT {
            let gap: GapBody = read_json(WHAT, &url, response)?;
            if let Some(expected) = gap.expected_offset {
                return Ok(UploadAck::Gap(expected));
            }
            return Err(AgentError::Status {
                what: WHAT.into(),
                url,
                status: StatusCode::CONFLICT,
                body: "a conflict without an expected offset".into(),
            });
        }
        let ack: AckBody = read_json(WHAT, &url, expect_success(WHAT, &url, response)?)?;
        Ok(UploadAck::StoredTo(ack.end_offset))
    }

    /// Ends the job with its final state and reason.
    pub(crate) fn finish(
        &self,
        job_id: &str,
        state: FinalState,
        reason: &str,
    ) -> Result<(), AgentError> {
        const WHAT: &str = "finishing the job";
        let url = self.url(&format!("/jobs/{job_id}/finish"));
        let body = FinishBody {
            state,
            reason,
            agent_id: &self.agent_id,
        };
        expect_success(
            WHAT,
            &url,
            send(WHAT, &url, self.http.post(&url).json(&body))?,
        )?;
        Ok(())
    }
}

fn send(what: &str, url: &str, request: RequestBuilder) -> Result<Response, AgentError> {
    request.send().map_err(|source| AgentError::Request {
        what: what.into(),
        url: url.into(),
        source,
    })
}

fn expect_success(what: &str, url: &str, response: Response) -> Result<Response, AgentError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(AgentError::Status {
        what: what.into(),
        url: url.into(),
        status,
        body: response.text().unwrap_or_default(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(
    what: &str,
    url: &str,
    response: Response,
) -> Result<T, AgentError> {
    response.json().map_err(|source| AgentError::BadAnswer {
        what: what.into(),
        url: url.into(),
        source,
    })
}
