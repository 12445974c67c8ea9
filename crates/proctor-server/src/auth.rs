//! Who is calling: bearer tokens with roles, checked per request against the store.
//!
//! Tokens are looked up on every request rather than cached, so a token created or revoked with the CLI against the
//! data directory takes effect at once, and several servers sharing one database agree.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use proctor_store::{Job, Role, Token};

use crate::api::AppState;
use crate::error::ApiError;

/// The caller of a request, as far as authentication is concerned.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No token exists and the server listens on loopback: a local lab, open to everyone on this machine.
    Open,
    /// A caller with a valid token.
    Token(Token),
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
            Caller::Open => None,
            Caller::Token(token) => Some(token.id.clone()),
        }
    }

    /// Only a job's submitter or an admin may cancel it (anyone, in an open local lab).
    pub(crate) fn require_may_cancel(&self, job: &Job) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Token(token) if token.role == Role::Admin => Ok(()),
            Caller::Token(token) if job.submitter.as_deref() == Some(token.id.as_str()) => Ok(()),
            Caller::Token(_) => Err(ApiError::Forbidden {
                needed: "admin (or the job's submitter)".to_owned(),
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer_secret(parts);
        let lookup = state
            .store_call(move |store| {
                if !store.has_tokens()? {
                    return Ok(Lookup::NoTokens);
                }
                let token = match secret {
                    Some(secret) => store.verify_token(&secret)?,
                    None => None,
                };
                Ok(token.map_or(Lookup::Invalid, Lookup::Valid))
            })
            .await?;
        match lookup {
            Lookup::NoTokens if state.allow_open => Ok(Caller::Open),
            // A server listening beyond loopback never runs open, even if every token was revoked after it started.
            Lookup::NoTokens | Lookup::Invalid => Err(ApiError::Unauthorized),
            Lookup::Valid(token) => Ok(Caller::Token(token)),
        }
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
}

/// The secret of an `Authorization: Bearer …` header, if the request has one.
fn bearer_secret(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim().to_owned())
}
