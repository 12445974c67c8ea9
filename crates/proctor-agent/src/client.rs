//! The server's API on behalf of one agent: [`proctor_client::Client`] with the agent's id filled in.

use std::time::Duration;

use proctor_api::{ClaimedJob, HeartbeatView, JobView, RegisterAgent};
use proctor_client::{Client, ClientError};

use crate::FinalState;

/// A client for one server, acting as one agent.
#[derive(Debug, Clone)]
pub(crate) struct ServerClient {
    /// The API itself, for the calls that do not name the agent.
    pub(crate) api: Client,
    agent_id: String,
}

impl ServerClient {
    /// A client for the server at `base` (like `http://127.0.0.1:7370`), sending `token` as its bearer token.
    pub(crate) fn new(
        base: &str,
        agent_id: &str,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        Ok(ServerClient {
            api: Client::new(base, token)?,
            agent_id: agent_id.to_owned(),
        })
    }

    /// The lab's servers, comma-separated, as phases see them in `PROCTOR_SERVER`.
    pub(crate) fn servers(&self) -> String {
        self.api.servers()
    }

    /// Announces the agent and its queues.
    pub(crate) fn register(&self, queues: &[String], images: &[String]) -> Result<(), ClientError> {
        let registration = RegisterAgent {
            queues: queues.to_vec(),
            images: images.to_vec(),
        };
        self.api
            .register_agent(&self.agent_id, &registration)
            .map(drop)
    }

    /// Waits up to `wait` for a job on `queues`; `None` when none came.
    pub(crate) fn claim(
        &self,
        queues: &[String],
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, ClientError> {
        self.api.claim(&self.agent_id, queues, wait)
    }

    /// Renews the leases of this agent's jobs, then waits up to `wait` for a cancel of one of them.
    pub(crate) fn heartbeat(&self, wait: Option<Duration>) -> Result<HeartbeatView, ClientError> {
        self.api.heartbeat(&self.agent_id, wait)
    }

    /// The API as the holder of a job claimed with `job_token`, the credential every write to that job needs; the
    /// agent's own when the server issued none.
    pub(crate) fn for_job(&self, job_token: Option<&str>) -> Result<Client, ClientError> {
        match job_token {
            Some(token) => self.api.with_token(token),
            None => Ok(self.api.clone()),
        }
    }

    /// Ends the job with its final state and reason, through `writer` (from [`for_job`](Self::for_job)).
    pub(crate) fn finish(
        &self,
        writer: &Client,
        job_id: &str,
        state: FinalState,
        reason: &str,
    ) -> Result<JobView, ClientError> {
        writer.finish(job_id, &self.agent_id, state, reason)
    }
}
