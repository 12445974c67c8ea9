//! Who is calling: bearer tokens with roles, checked per request against the store.
//!
//! Tokens are looked up on every request rather than cached, so a token created or revoked with the CLI against the
//! data directory takes effect at once, and several servers sharing one database agree.
//!
//! Besides the role tokens there are job tokens, issued at each claim and scoped to that one job while it runs: the
//! endpoints of that job that admit them ([`JobToken::Allowed`]) accept them, everything else answers 403.
//!
//! Writing to a job (its log and results, artifacts, phases, its end) has one rule, [`Caller::require_job_writer`]:
//! only the job token of the job's current claim, which the holding agent got with the claim, or an admin. An agent
//! token alone never writes to a job, so another agent serving the same queue cannot, nor can the holder of an
//! earlier attempt after the job was claimed again. Of a job's streams, [`Caller::require_stream_writer`] says who
//! writes which: the holder every stream but `work`, which only the job's submitter (or an admin) writes, while the
//! job has not ended: it is what a `proctor run --lab` asks of the job serving it as a worker.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use proctor_store::{Job, JobState, JobTokenUse, Role, Store, StoreError, StreamKind, Token};

use crate::api::AppState;
use crate::error::ApiError;

/// The caller of a request, as far as authentication is concerned.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No token exists and the server listens on loopback: a local lab, open to everyone on this machine.
    Open,
    /// A caller with a valid token.
    Token(Token),
    /// A caller with a job token: it may act on that job only, only while the job runs, and only while the token
    /// is the one of the job's current claim.
    Job {
        /// The job the token is scoped to.
        job_id: String,
        /// Whether the job still runs (the token stops working when it ends).
        running: bool,
        /// Whether no later claim of the job superseded the token.
        current: bool,
    },
}

/// Whether an endpoint of a job admits that job's own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobToken {
    /// The job's token may call it (reading the job, its streams, tests and files; uploading its output).
    Allowed,
    /// Only role tokens may call it.
    Refused,
}

impl Caller {
    /// Refuses callers whose role is not one of `roles` (an admin may do everything).
    pub(crate) fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Token(token) if token.role == Role::Admin || roles.contains(&token.role) => {
                Ok(())
            }
            Caller::Token(_) => Err(ApiError::Forbidden {
                needed: roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            }),
            Caller::Job { job_id, .. } => Err(ApiError::OutsideJob {
                job_id: job_id.clone(),
            }),
        }
    }

    /// For an endpoint of job `job_id`: refuses callers whose role is not one of `roles`, an agent token limited to
    /// queues that do not include the job's, and a job token of another job, of an ended job, or where `job_token`
    /// refuses it.
    pub(crate) async fn require_on_job(
        &self,
        state: &AppState,
        job_id: &str,
        roles: &[Role],
        job_token: JobToken,
    ) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Job { job_id: own, .. } if own != job_id || job_token == JobToken::Refused => {
                Err(ApiError::OutsideJob {
                    job_id: own.clone(),
                })
            }
            Caller::Job { .. } => self.job_token_in_force(job_id),
            Caller::Token(token) => {
                self.require(roles)?;
                if token.role == Role::Agent && !token.queues.is_empty() {
                    let id = job_id.to_owned();
                    let queue = state.store_call(move |store| store.job_queue(&id)).await?;
                    self.require_queues(std::slice::from_ref(&queue))?;
                }
                Ok(())
            }
        }
    }

    /// The one rule for every write to job `job_id` (its log, results, artifacts and phases, and finishing it): the
    /// job token of its current claim, while the job runs, or an admin (anyone, in an open local lab). Any other
    /// caller, an agent token included, is refused with 403 before anything is stored.
    pub(crate) fn require_job_writer(&self, job_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Token(token) if token.role == Role::Admin => Ok(()),
            Caller::Token(_) => Err(ApiError::NotJobHolder {
                job_id: job_id.to_owned(),
            }),
            Caller::Job { job_id: own, .. } if own != job_id => Err(ApiError::OutsideJob {
                job_id: own.clone(),
            }),
            Caller::Job { .. } => self.job_token_in_force(job_id),
        }
    }

    /// The one rule for every write to a stream of job `job_id`, checked before anything is stored. The job's output
    /// (`log`, `results`) and its worker's reports (`work-done`) are writes to the job, so
    /// [`Caller::require_job_writer`]'s. The `work` stream is what the job's submitter asks of the job serving its
    /// `proctor run --lab` as a worker: only the submitter (a user token) or an admin writes it (anyone, in an open
    /// local lab), never a job or agent token, and only while the job is queued or running; a write to an ended
    /// job's `work` is a conflict ([`ApiError::JobEnded`]).
    pub(crate) async fn require_stream_writer(
        &self,
        state: &AppState,
        job_id: &str,
        stream: StreamKind,
    ) -> Result<(), ApiError> {
        match stream {
            StreamKind::Log | StreamKind::Results | StreamKind::WorkDone => {
                self.require_job_writer(job_id)
            }
            StreamKind::Work => {
                self.require(&[Role::User])?;
                let id = job_id.to_owned();
                let job = state.store_call(move |store| store.job(&id)).await?;
                self.require_submitter_or_admin(&job)?;
                if job.state.is_final() {
                    return Err(ApiError::JobEnded {
                        job_id: job.id,
                        state: job.state,
                    });
                }
                Ok(())
            }
        }
    }

    /// Refuses a job token of job `job_id` that an ended run or a later claim made void.
    fn job_token_in_force(&self, job_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Job { current: false, .. } => Err(ApiError::SupersededJobToken {
                job_id: job_id.to_owned(),
            }),
            Caller::Job { running: false, .. } => Err(ApiError::JobTokenEnded {
                job_id: job_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses an agent token limited to other queues.
    pub(crate) fn require_queues(&self, queues: &[String]) -> Result<(), ApiError> {
        match self {
            Caller::Token(token) if !queues.iter().all(|queue| token.allows_queue(queue)) => {
                Err(ApiError::Forbidden {
                    needed: format!("access to the queues {}", queues.join(", ")),
                })
            }
            _ => Ok(()),
        }
    }

    /// Who to record as a job's submitter: the token's id.
    pub(crate) fn submitter(&self) -> Option<String> {
        match self {
            Caller::Open | Caller::Job { .. } => None,
            Caller::Token(token) => Some(token.id.clone()),
        }
    }

    /// Only a job's submitter or an admin may cancel it or upload its attachments (anyone, in an open local lab).
    pub(crate) fn require_submitter_or_admin(&self, job: &Job) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Token(token) if token.role == Role::Admin => Ok(()),
            Caller::Token(token) if job.submitter.as_deref() == Some(token.id.as_str()) => Ok(()),
            Caller::Token(_) => Err(ApiError::Forbidden {
                needed: "admin (or the job's submitter)".to_owned(),
            }),
            Caller::Job { job_id, .. } => Err(ApiError::OutsideJob {
                job_id: job_id.clone(),
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Caller::with_secret(state, bearer_secret(parts)).await
    }
}

impl Caller {
    /// The caller that presents `secret` (a bearer token, or the web UI's session cookie), or none.
    pub(crate) async fn with_secret(
        state: &AppState,
        secret: Option<String>,
    ) -> Result<Caller, ApiError> {
        let lookup = state
            .store_call(move |store| look_up(store, secret))
            .await?;
        match lookup {
            Lookup::NoTokens if state.allow_open => Ok(Caller::Open),
            // A server listening beyond loopback never runs open, even if every token was revoked after it started.
            Lookup::NoTokens | Lookup::Invalid => Err(ApiError::Unauthorized),
            Lookup::Valid(token) => Ok(Caller::Token(token)),
            Lookup::Job(token) => Ok(Caller::Job {
                running: token.job_state == JobState::Running,
                current: token.current,
                job_id: token.job_id,
            }),
        }
    }
}

/// Finds the token a request carries. A job token is honoured (and limited) even on an open lab, so a job's
/// scripts get the same answers everywhere.
fn look_up(store: &dyn Store, secret: Option<String>) -> Result<Lookup, StoreError> {
    if let Some(secret) = secret {
        if let Some(token) = store.verify_token(&secret)? {
            return Ok(Lookup::Valid(token));
        }
        if let Some(token) = store.verify_job_token(&secret)? {
            return Ok(Lookup::Job(token));
        }
    }
    if store.has_tokens()? {
        Ok(Lookup::Invalid)
    } else {
        Ok(Lookup::NoTokens)
    }
}

/// What the store says about a request's token.
enum Lookup {
    /// No token exists at all.
    NoTokens,
    /// Tokens exist, and the request has none or one the store does not know.
    Invalid,
    /// The request's token.
    Valid(Token),
    /// The request's job token.
    Job(JobTokenUse),
}

/// The secret of an `Authorization: Bearer …` header, if the request has one.
fn bearer_secret(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim().to_owned())
}
