//! The server's errors: [`ServerError`] for starting and running it, `ApiError` for what one request gets back.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use proctor_job::{JobError, ProblemKind};
use proctor_store::StoreError;

use proctor_api::ErrorBody;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error("cannot open the store {store}")]
    OpenStore {
        /// Where it is (a URL without its password).
        store: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The store's feed of other servers' changes could not be followed.
    #[error("cannot follow the store's changes")]
    FollowChanges(#[source] StoreError),
    /// The store could not say whether authentication is configured.
    #[error("cannot check for access tokens in the store")]
    CheckTokens(#[source] StoreError),
    /// A non-loopback address was asked for, but no token exists, so anyone on the network could use the API.
    #[error(
        "refusing to listen on {listen}, which is not a loopback address, without authentication; \
         create a token first (`proctor token create --role admin`)"
    )]
    OpenToNetwork {
        /// The address asked for.
        listen: SocketAddr,
    },
    /// The listening socket could not be made.
    #[error("cannot listen on {listen}")]
    Bind {
        /// The address asked for.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving connections failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// A blocking store task could not be run to its end.
    #[error("a store task failed to run")]
    StoreTask(#[source] tokio::task::JoinError),
    /// The metrics could not be registered.
    #[error("cannot set up the metrics")]
    Metrics(#[source] prometheus::Error),
    /// The OpenAPI document could not be serialized (once, when the router is built).
    #[error("cannot serialize the OpenAPI document")]
    OpenApi(#[source] serde_json::Error),
}

/// What a request gets instead of its answer; each variant maps to one status and a JSON [`ErrorBody`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No token, or one the store does not know.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A token whose role may not do this.
    #[error("a token with role {needed} is required")]
    Forbidden {
        /// The roles that may, for the message.
        needed: String,
    },
    /// A job token used outside its job, or on an endpoint job tokens may not call.
    #[error("this token is scoped to job {job_id} and may not do this")]
    OutsideJob {
        /// The job the token belongs to.
        job_id: String,
    },
    /// A job token whose job has ended.
    #[error("the token of job {job_id} stopped working when the job ended")]
    JobTokenEnded {
        /// The job.
        job_id: String,
    },
    /// A job definition over the server's cap.
    #[error(
        "the job definition is larger than this server's cap of {cap} bytes (--max-definition-bytes); put large \
         data in attachments"
    )]
    DefinitionTooLarge {
        /// The cap, in bytes.
        cap: usize,
    },
    /// A job token that a later claim of its job replaced: its holder lost the job.
    #[error(
        "this token is from an earlier claim of job {job_id}, which was claimed again since: only its current holder \
         may write to it"
    )]
    SupersededJobToken {
        /// The job.
        job_id: String,
    },
    /// A role token writing to a job: only the job token of its current claim (or an admin) may.
    #[error(
        "only the agent holding job {job_id}, with the job token handed over at its claim, or an admin may write to it"
    )]
    NotJobHolder {
        /// The job.
        job_id: String,
    },
    /// A write that only a job that has not ended takes (its `work` stream), to a job that has.
    #[error("job {job_id} has ended ({state}): it takes no more work")]
    JobEnded {
        /// The job.
        job_id: String,
        /// The state it ended in.
        state: proctor_store::JobState,
    },
    /// An uploaded tar.gz (attachments or artifacts) is unreadable or has an entry that may not be unpacked.
    #[error(transparent)]
    InvalidArchive(#[from] proctor_archive::ArchiveError),
    /// The job exists but no artifacts were uploaded for it.
    #[error("job {0} has no artifacts (none were uploaded)")]
    NoArtifacts(String),
    /// The job exists but has no attachments.
    #[error("job {0} has no attachments")]
    NoAttachments(String),
    /// The job text is not a valid job.
    #[error(transparent)]
    InvalidJob(#[from] JobError),
    /// The job names a queue that no agent ever served.
    #[error(
        "no agent has ever served queue {0:?}; check the name, or submit with allow_unknown_queue=true"
    )]
    UnknownQueue(String),
    /// A malformed request (a bad query value, an unknown phase, a body that is not text).
    #[error("{0}")]
    BadRequest(String),
    /// A body type the endpoint does not read.
    #[error("unsupported content type {0:?}; send JSON or YAML")]
    UnsupportedMediaType(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A write failed because the server's storage is full.
    #[error("the server's storage is full ({0}); reads still work, and writes resume once space is freed")]
    StorageFull(StoreError),
    /// A blocking store task panicked or was cancelled.
    #[error("a store task failed to run")]
    StoreTask(#[from] tokio::task::JoinError),
    /// The metrics could not be rendered.
    #[error("cannot render the metrics")]
    Metrics(#[from] prometheus::Error),
}

impl ApiError {
    /// The status the error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::DefinitionTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden { .. }
            | ApiError::OutsideJob { .. }
            | ApiError::JobTokenEnded { .. }
            | ApiError::SupersededJobToken { .. }
            | ApiError::NotJobHolder { .. } => StatusCode::FORBIDDEN,
            ApiError::InvalidArchive(proctor_archive::ArchiveError::OverLimit { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::InvalidArchive(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NoArtifacts(_) | ApiError::NoAttachments(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidJob(error) if error.problem.kind == ProblemKind::Syntax => {
                StatusCode::BAD_REQUEST
            }
            ApiError::InvalidJob(_) | ApiError::UnknownQueue(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::JobEnded { .. } => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Store(error) => store_status(error),
            ApiError::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::StoreTask(_) | ApiError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable name for the error.
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::DefinitionTooLarge { .. } => "definition_too_large",
            ApiError::Forbidden { .. }
            | ApiError::OutsideJob { .. }
            | ApiError::JobTokenEnded { .. }
            | ApiError::SupersededJobToken { .. }
            | ApiError::NotJobHolder { .. } => "forbidden",
            ApiError::InvalidArchive(_) => "invalid_archive",
            ApiError::NoArtifacts(_) => "no_artifacts",
            ApiError::NoAttachments(_) => "not_found",
            ApiError::InvalidJob(_) => "invalid_job",
            ApiError::UnknownQueue(_) => "unknown_queue",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::JobEnded { .. } => "job_ended",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Store(StoreError::StreamGap { .. }) => "stream_gap",
            ApiError::Store(error) if store_status(error) == StatusCode::NOT_FOUND => "not_found",
            ApiError::Store(error) if store_status(error) == StatusCode::CONFLICT => "conflict",
            ApiError::StorageFull(_) => "storage_full",
            ApiError::Store(_) | ApiError::StoreTask(_) | ApiError::Metrics(_) => "internal",
        }
    }

    /// The message with its causes, so a store failure says what the database said.
    pub(crate) fn full_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}

/// The status for a store error: missing things are 404, state conflicts 409, anything else the server's fault.
fn store_status(error: &StoreError) -> StatusCode {
    match error {
        StoreError::JobNotFound(_)
        | StoreError::AgentNotFound(_)
        | StoreError::RecipeNotFound(_)
        | StoreError::TokenNotFound(_)
        | StoreError::ArtifactNotFound { .. }
        | StoreError::PhaseNotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::JobNotRunning { .. }
        | StoreError::NotJobHolder { .. }
        | StoreError::NotHeld { .. }
        | StoreError::StreamGap { .. } => StatusCode::CONFLICT,
        StoreError::NoAttempts | StoreError::OutOfRange { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.full_message(),
            problem: match &self {
                ApiError::InvalidJob(error) => Some((&error.problem).into()),
                _ => None,
            },
            expected_offset: match &self {
                ApiError::Store(StoreError::StreamGap { expected, .. }) => Some(*expected),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
