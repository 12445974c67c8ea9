//! A blocking client for the lab service's `/api/v1`: what the `proctor` command's client commands and the agent
//! call. It speaks the shapes in [`proctor_api`] and turns the server's error bodies into [`ClientError`]s that say
//! what was being done and what the server said.
//!
//! A client may be given several servers of one lab (`http://a:7370,http://b:7370`, servers sharing one
//! PostgreSQL database): a request that gets no answer moves the client to the next server, so the caller's retry
//! goes there.
//!
//! ```no_run
//! let client = proctor_client::Client::new("http://127.0.0.1:7370", None)?;
//! let job = client.submit_job(b"job_queue: local\ntest_data: {test_cmds: echo hi}\n", false)?;
//! println!("{} is {}", job.id, client.job(&job.id)?.job.state);
//! # Ok::<(), proctor_client::ClientError>(())
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod backoff;
pub mod work;

pub use bytes::Bytes;
use proctor_api::{
    AgentView, CancelView, ClaimRequest, ClaimedJob, ErrorBody, FinalState, FinishRequest,
    HeartbeatRequest, HeartbeatView, JobDetail, JobListView, JobState, JobView, JobsQuery,
    NewRecipe, PhaseEnd, QueueView, RecipeView, RegisterAgent, StartRecipe, StreamKind,
    TestResultsView, UploadAck, JOB_STATE_HEADER, NEXT_OFFSET_HEADER,
};
use proctor_job::Phase;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built (a bad token, say).
    #[error("could not set up the HTTP client: {0}")]
    Setup(String),
    /// The request got no answer: the server is down, unreachable or too slow.
    #[error("{what}: no answer from {url}")]
    Unreachable {
        /// What was being done.
        what: String,
        /// The URL called.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server refused or failed the request.
    #[error("{what}: {url} answered {status}: {message}")]
    Status {
        /// What was being done.
        what: String,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The server's explanation (its error body's message, or the raw body).
        message: String,
        /// The error body, when the server sent one.
        body: Option<Box<ErrorBody>>,
    },
    /// The answer was not what the API promises.
    #[error("{what}: the answer from {url} was not understood: {detail}")]
    BadAnswer {
        /// What was being done.
        what: String,
        /// The URL called.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the request again may succeed: the server gave no (understood) answer, or failed with a
    /// 5xx. A refusal (4xx) stays a refusal.
    pub fn is_transient(&self) -> bool {
        self.status().is_none_or(|status| status.is_server_error())
    }

    /// The server's error body, when it sent one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Status { body, .. } => body.as_deref(),
            _ => None,
        }
    }
}

/// Where a stream upload left the server's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Everything before this offset is stored.
    StoredTo(u64),
    /// The chunk started past the stored end: resend from this offset.
    Gap(u64),
}

/// Bytes read from one of a job's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    /// The bytes from the offset asked for.
    pub bytes: Vec<u8>,
    /// Where to read from next.
    pub next_offset: u64,
    /// The job's state when the server answered; once final and `bytes` is empty, the stream is complete.
    pub job_state: Option<JobState>,
}

/// A blocking client for one server, or for several servers of one lab.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    servers: Arc<Servers>,
    /// The `Authorization` header every request carries, if any.
    auth: Option<HeaderValue>,
}

/// How long a request may take beyond any wait it asks the server for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A client for the server at `base` (like `http://127.0.0.1:7370`), sending `token` as its bearer token. A
    /// comma-separated list of servers of one lab is tried in turn: the first, then the next whenever one gives
    /// no answer.
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Ok(Client {
            http,
            servers: Arc::new(Servers::parse(base)?),
            auth: token.map(bearer).transpose()?,
        })
    }

    /// The same server, connections and all, sending `token` instead: a job token, for the writes to its job that
    /// only the holder of the job's current claim may make.
    pub fn with_token(&self, token: &str) -> Result<Self, ClientError> {
        Ok(Client {
            auth: Some(bearer(token)?),
            ..self.clone()
        })
    }

    /// The base URL of the server the client talks to now.
    pub fn base(&self) -> &str {
        self.servers.current()
    }

    /// Every server the client may talk to, comma-separated, as [`Client::new`] takes them.
    pub fn servers(&self) -> String {
        self.servers.bases.join(",")
    }

    /// A request carrying the client's token.
    fn request_to(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.servers.current())
    }

    /// One request with an optional JSON body, answered with JSON.
    fn call<T: DeserializeOwned>(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        json(Call::new(
            &self.servers,
            what,
            &url,
            self.request(method, &url, body),
            REQUEST_TIMEOUT,
        ))
    }

    /// One request with an optional JSON body, answered with nothing to read.
    fn call_empty(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let url = self.url(path);
        empty(Call::new(
            &self.servers,
            what,
            &url,
            self.request(method, &url, body),
            REQUEST_TIMEOUT,
        ))
    }

    /// Puts a tar.gz bundle at `path`.
    fn put_bundle(&self, what: &'static str, path: &str, tar_gz: Bytes) -> Result<(), ClientError> {
        let url = self.url(path);
        let request = self
            .request_to(Method::PUT, &url)
            .header(CONTENT_TYPE, "application/gzip")
            .body(tar_gz);
        empty(Call::new(
            &self.servers,
            what,
            &url,
            request,
            REQUEST_TIMEOUT,
        ))
    }

    fn request(&self, method: Method, url: &str, body: Option<&impl Serialize>) -> RequestBuilder {
        let request = self.request_to(method, url);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    // --- jobs, for users ---

    /// Submits a job definition (YAML or JSON, told apart by the server). A queue no agent ever served is refused
    /// unless `allow_unknown_queue`.
    pub fn submit_job(
        &self,
        definition: &[u8],
        allow_unknown_queue: bool,
    ) -> Result<JobView, ClientError> {
        let url = self.url("/jobs");
        let request = self
            .request_to(Method::POST, &url)
            .query(&[("allow_unknown_queue", allow_unknown_queue)])
            .header(CONTENT_TYPE, "application/yaml")
            .body(definition.to_vec());
        json(Call::new(
            &self.servers,
            "submitting the job",
            &url,
            request,
            REQUEST_TIMEOUT,
        ))
    }

    /// Uploads a held job's attachments (a tar.gz of `<phase>/<path>` entries); the job becomes claimable.
    pub fn upload_attachments(
        &self,
        job_id: &str,
        tar_gz: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.put_bundle(
            "uploading the attachments",
            &format!("/jobs/{job_id}/attachments"),
            tar_gz.into(),
        )
    }

    /// One job with its phases.
    pub fn job(&self, job_id: &str) -> Result<JobDetail, ClientError> {
        self.call(
            "reading the job",
            Method::GET,
            &format!("/jobs/{job_id}"),
            None::<&()>,
        )
    }

    /// The job once its state is no longer `seen`, or as it is after `wait` if it did not change by then: the server
    /// holds the request, so the change is learnt at once.
    pub fn job_changed_from(
        &self,
        job_id: &str,
        seen: JobState,
        wait: Duration,
    ) -> Result<JobDetail, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}"));
        let query = [
            ("changed_from", seen.as_str().to_owned()),
            ("wait_seconds", wait.as_secs_f64().to_string()),
        ];
        json(Call::new(
            &self.servers,
            "waiting for the job's state to change",
            &url,
            self.request_to(Method::GET, &url).query(&query),
            REQUEST_TIMEOUT + wait,
        ))
    }

    /// One page of jobs, newest first, without their definitions; `query` filters and pages them.
    pub fn jobs(&self, query: &JobsQuery) -> Result<JobListView, ClientError> {
        let url = self.url("/jobs");
        json(Call::new(
            &self.servers,
            "listing jobs",
            &url,
            self.request_to(Method::GET, &url).query(query),
            REQUEST_TIMEOUT,
        ))
    }

    /// Cancels a job: at once if it has not started, through its agent if it runs.
    pub fn cancel(&self, job_id: &str) -> Result<CancelView, ClientError> {
        self.call(
            "cancelling the job",
            Method::POST,
            &format!("/jobs/{job_id}/cancel"),
            None::<&()>,
        )
    }

    /// Reads one of a job's streams from `from` (only `phase`'s chunks, if given), waiting up to `wait` for bytes
    /// when none are there yet and the job still runs.
    pub fn read_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        from: u64,
        phase: Option<Phase>,
        wait: Option<Duration>,
    ) -> Result<StreamRead, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/{stream}"));
        let mut query = stream_query("from", from, phase);
        if let Some(wait) = wait {
            query.push(("wait_seconds", wait.as_secs_f64().to_string()));
        }
        let call = Call::new(
            &self.servers,
            "reading the job's output",
            &url,
            self.request_to(Method::GET, &url).query(&query),
            REQUEST_TIMEOUT + wait.unwrap_or_default(),
        );
        let response = call.success()?;
        let next_offset = header(&response, NEXT_OFFSET_HEADER)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| call.bad_answer(format!("no {NEXT_OFFSET_HEADER} header")))?;
        let job_state = header(&response, JOB_STATE_HEADER).and_then(|value| value.parse().ok());
        let bytes = call.read_bytes(response)?;
        Ok(StreamRead {
            bytes,
            next_offset,
            job_state,
        })
    }

    /// The job's per-test results as parsed so far.
    pub fn tests(&self, job_id: &str) -> Result<TestResultsView, ClientError> {
        self.call(
            "reading the job's test results",
            Method::GET,
            &format!("/jobs/{job_id}/tests"),
            None::<&()>,
        )
    }

    /// The job's artifacts as the agent packed them (tar.gz), or `None` when it uploaded none.
    pub fn artifacts(&self, job_id: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/artifacts"));
        let call = Call::new(
            &self.servers,
            "downloading the artifacts",
            &url,
            self.request_to(Method::GET, &url),
            REQUEST_TIMEOUT,
        );
        match call.success() {
            Ok(response) => call.read_bytes(response).map(Some),
            Err(error)
                if error.status() == Some(StatusCode::NOT_FOUND)
                    && error
                        .body()
                        .is_some_and(|body| body.error == "no_artifacts") =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    // --- queues, agents and recipes ---

    /// The queues with what waits on them.
    pub fn queues(&self) -> Result<Vec<QueueView>, ClientError> {
        self.call("listing queues", Method::GET, "/queues", None::<&()>)
    }

    /// The agents and their states.
    pub fn agents(&self) -> Result<Vec<AgentView>, ClientError> {
        self.call("listing agents", Method::GET, "/agents", None::<&()>)
    }

    /// Stores (or replaces) a recipe.
    pub fn put_recipe(&self, name: &str, recipe: &NewRecipe) -> Result<RecipeView, ClientError> {
        self.call(
            "storing the recipe",
            Method::PUT,
            &format!("/recipes/{name}"),
            Some(recipe),
        )
    }

    /// Every recipe.
    pub fn recipes(&self) -> Result<Vec<RecipeView>, ClientError> {
        self.call("listing recipes", Method::GET, "/recipes", None::<&()>)
    }

    /// One recipe.
    pub fn recipe(&self, name: &str) -> Result<RecipeView, ClientError> {
        self.call(
            "reading the recipe",
            Method::GET,
            &format!("/recipes/{name}"),
            None::<&()>,
        )
    }

    /// Removes a recipe.
    pub fn remove_recipe(&self, name: &str) -> Result<(), ClientError> {
        self.call_empty(
            "removing the recipe",
            Method::DELETE,
            &format!("/recipes/{name}"),
            None::<&()>,
        )
    }

    /// Makes a job of a recipe.
    pub fn start_recipe(&self, name: &str, start: &StartRecipe) -> Result<JobView, ClientError> {
        self.call(
            "starting the recipe",
            Method::POST,
            &format!("/recipes/{name}/start"),
            Some(start),
        )
    }

    // --- for agents ---

    /// Announces an agent and its queues.
    pub fn register_agent(
        &self,
        agent_id: &str,
        registration: &RegisterAgent,
    ) -> Result<AgentView, ClientError> {
        self.call(
            "registering the agent",
            Method::POST,
            &format!("/agents/{agent_id}"),
            Some(registration),
        )
    }

    /// Waits up to `wait` for a job on `queues`; `None` when none came.
    pub fn claim(
        &self,
        agent_id: &str,
        queues: &[String],
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, ClientError> {
        let url = self.url(&format!("/agents/{agent_id}/claim"));
        let body = ClaimRequest {
            queues: queues.to_vec(),
            wait_seconds: Some(wait.as_secs_f64()),
        };
        let call = Call::new(
            &self.servers,
            "claiming a job",
            &url,
            self.request_to(Method::POST, &url).json(&body),
            REQUEST_TIMEOUT + wait,
        );
        let response = call.success()?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        call.read_json(response).map(Some)
    }

    /// Renews the leases of the agent's jobs, then waits up to `wait` for a cancel of one of them.
    pub fn heartbeat(
        &self,
        agent_id: &str,
        wait: Option<Duration>,
    ) -> Result<HeartbeatView, ClientError> {
        let url = self.url(&format!("/agents/{agent_id}/heartbeat"));
        let body = HeartbeatRequest {
            wait_seconds: wait.map(|wait| wait.as_secs_f64()),
        };
        json(Call::new(
            &self.servers,
            "sending a heartbeat",
            &url,
            self.request_to(Method::POST, &url).json(&body),
            REQUEST_TIMEOUT + wait.unwrap_or_default(),
        ))
    }

    /// Records that a phase of a job started.
    pub fn start_phase(&self, job_id: &str, phase: Phase) -> Result<(), ClientError> {
        self.call_empty(
            "reporting a phase start",
            Method::POST,
            &format!("/jobs/{job_id}/phases/{phase}/start"),
            None::<&()>,
        )
    }

    /// Records that a phase of a job ended with `exit_status`.
    pub fn end_phase(
        &self,
        job_id: &str,
        phase: Phase,
        exit_status: i32,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/phases/{phase}/end"));
        let request = self
            .request_to(Method::POST, &url)
            .json(&PhaseEnd { exit_status });
        empty(Call::new(
            &self.servers,
            "reporting a phase end",
            &url,
            request,
            REQUEST_TIMEOUT,
        ))
    }

    /// Stores `bytes` at `offset` of one of the job's streams, tagged with the phase that wrote them.
    pub fn upload(
        &self,
        job_id: &str,
        stream: StreamKind,
        offset: u64,
        phase: Option<Phase>,
        bytes: Vec<u8>,
    ) -> Result<Upload, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/{stream}"));
        let query = stream_query("offset", offset, phase);
        let request = self
            .request_to(Method::PUT, &url)
            .query(&query)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let call = Call::new(
            &self.servers,
            "uploading output",
            &url,
            request,
            REQUEST_TIMEOUT,
        );
        match call.success() {
            Ok(response) => call
                .read_json::<UploadAck>(response)
                .map(|ack| Upload::StoredTo(ack.end_offset)),
            Err(error) => match error.body().and_then(|body| body.expected_offset) {
                Some(expected) if error.status() == Some(StatusCode::CONFLICT) => {
                    Ok(Upload::Gap(expected))
                }
                _ => Err(error),
            },
        }
    }

    /// Fetches a job's attachments (tar.gz of `<phase>/<path>` entries).
    pub fn download_attachments(&self, job_id: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/attachments"));
        let call = Call::new(
            &self.servers,
            "downloading the attachments",
            &url,
            self.request_to(Method::GET, &url),
            REQUEST_TIMEOUT,
        );
        let response = call.success()?;
        call.read_bytes(response)
    }

    /// Uploads a job's artifacts, packed as tar.gz. A [`Bytes`] is sent without a copy, so a retry can resend the
    /// same archive cheaply.
    pub fn upload_artifacts(
        &self,
        job_id: &str,
        tar_gz: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.put_bundle(
            "uploading the artifacts",
            &format!("/jobs/{job_id}/artifacts"),
            tar_gz.into(),
        )
    }

    /// Ends a job with its final state and reason, on behalf of the agent holding it.
    pub fn finish(
        &self,
        job_id: &str,
        agent_id: &str,
        state: FinalState,
        reason: &str,
    ) -> Result<JobView, ClientError> {
        let url = self.url(&format!("/jobs/{job_id}/finish"));
        let body = FinishRequest {
            state,
            reason: reason.to_owned(),
            agent_id: Some(agent_id.to_owned()),
        };
        json(Call::new(
            &self.servers,
            "finishing the job",
            &url,
            self.request_to(Method::POST, &url).json(&body),
            REQUEST_TIMEOUT,
        ))
    }
}

/// The `Authorization` header for a bearer token, marked sensitive so it is never logged.
fn bearer(token: &str) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ClientError::Setup("the token has characters a header cannot carry".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The servers of one lab a client may talk to, and which one it talks to now.
#[derive(Debug)]
struct Servers {
    bases: Vec<String>,
    current: AtomicUsize,
}

impl Servers {
    /// `http://a:7370` or `http://a:7370,http://b:7370`.
    fn parse(list: &str) -> Result<Servers, ClientError> {
        let bases: Vec<String> = list
            .split(',')
            .map(|base| base.trim().trim_end_matches('/').to_owned())
            .filter(|base| !base.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(ClientError::Setup(format!(
                "{list:?} names no server: give a URL like http://127.0.0.1:7370"
            )));
        }
        Ok(Servers {
            bases,
            current: AtomicUsize::new(0),
        })
    }

    fn current(&self) -> &str {
        let index = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[index]
    }

    /// The server `url` is on gave no answer: the next request goes to the next server (unless another request
    /// moved on already).
    fn unreachable(&self, url: &str) {
        let index = self.current.load(Ordering::Relaxed);
        if url.starts_with(self.bases[index % self.bases.len()].as_str()) {
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % self.bases.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// One request, with what it is for (for errors).
struct Call<'a> {
    servers: &'a Servers,
    what: &'static str,
    url: &'a str,
    request: RefCell<Option<RequestBuilder>>,
}

impl<'a> Call<'a> {
    fn new(
        servers: &'a Servers,
        what: &'static str,
        url: &'a str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Self {
        let request = RefCell::new(Some(request.timeout(timeout)));
        Call {
            servers,
            what,
            url,
            request,
        }
    }

    /// Sends the request (once); anything but a 2xx is an error carrying the server's explanation.
    fn success(&self) -> Result<Response, ClientError> {
        let request = self.request.borrow_mut().take();
        let request =
            request.ok_or_else(|| self.bad_answer("the request was already sent".into()))?;
        let response = request.send().map_err(|source| self.unreachable(source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let message = body
            .as_ref()
            .map_or_else(|| text.trim().to_owned(), |body| body.message.clone());
        Err(ClientError::Status {
            what: self.what.into(),
            url: self.url.into(),
            status,
            message,
            body: body.map(Box::new),
        })
    }

    fn read_json<T: DeserializeOwned>(&self, response: Response) -> Result<T, ClientError> {
        let bytes = response
            .bytes()
            .map_err(|source| self.unreachable(source))?;
        serde_json::from_slice(&bytes).map_err(|error| self.bad_answer(error.to_string()))
    }

    fn read_bytes(&self, response: Response) -> Result<Vec<u8>, ClientError> {
        Ok(response
            .bytes()
            .map_err(|source| self.unreachable(source))?
            .to_vec())
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        self.servers.unreachable(self.url);
        ClientError::Unreachable {
            what: self.what.into(),
            url: self.url.into(),
            source,
        }
    }

    fn bad_answer(&self, detail: String) -> ClientError {
        ClientError::BadAnswer {
            what: self.what.into(),
            url: self.url.into(),
            detail,
        }
    }
}

fn json<T: DeserializeOwned>(call: Call<'_>) -> Result<T, ClientError> {
    let response = call.success()?;
    call.read_json(response)
}

fn empty(call: Call<'_>) -> Result<(), ClientError> {
    call.success().map(drop)
}

/// A stream request's query: where in the stream (`from` or `offset`), and the phase if any.
fn stream_query(
    at: &'static str,
    offset: u64,
    phase: Option<Phase>,
) -> Vec<(&'static str, String)> {
    let mut query = vec![(at, offset.to_string())];
    if let Some(phase) = phase {
        query.push(("phase", phase.as_str().to_owned()));
    }
    query
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}
