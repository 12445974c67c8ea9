//! Who is looking: the session cookie a token sign-in sets, the CSRF token every form carries, and what a visitor
//! who has not signed in may see.
//!
//! The session cookie holds the token itself (HttpOnly, SameSite=Strict, and Secure when the request came over
//! HTTPS through a proxy that says so with `X-Forwarded-Proto`; the server itself speaks plain HTTP, where a
//! browser would drop a Secure cookie and no one could sign in): it is checked
//! against the store on every request like a bearer token, so a revoked token signs its sessions out at once, and
//! several servers on one database need no shared session table. The CSRF token is a random value in a second
//! cookie, which every form echoes in a hidden field (double submit); a cross-site form can neither read it nor, as
//! the cookies are SameSite=Strict, send the session with it.

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use proctor_store::Store;
use serde::Deserialize;

use super::{error_page, page, Frame};
use crate::api::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The session cookie's name.
const SESSION: &str = "proctor_session";
/// The CSRF cookie's name.
const CSRF: &str = "proctor_csrf";

/// A visitor of the UI: their caller (signed in, or an open local lab), and their CSRF token.
pub(crate) struct Visitor {
    /// Who they are to the API, when they are someone: signed in, or anyone in an open lab.
    caller: Option<Caller>,
    /// Their CSRF token; `fresh` when this request made it, so the answer sets its cookie.
    csrf: String,
    fresh: bool,
    /// May they read pages without signing in.
    pages_open: bool,
    /// Whether the request came over HTTPS (through a proxy), so the cookies can be `Secure`.
    https: bool,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = cookie(parts, SESSION);
        let signed_in = session.is_some();
        let caller = match Caller::with_secret(state, session).await {
            Ok(caller) => Some(caller),
            // A stale cookie (revoked token) is as good as none.
            Err(ApiError::Unauthorized) => None,
            Err(error) => return Err(error.into_response()),
        };
        // Without a session, only an open lab makes the visitor someone; a job's token is no session.
        let caller = caller.filter(|caller| match caller {
            Caller::Open => true,
            Caller::Token(_) => signed_in,
            Caller::Job { .. } => false,
        });
        let (csrf, fresh) = match cookie(parts, CSRF).filter(|value| value.len() == 32) {
            Some(csrf) => (csrf, false),
            None => (uuid::Uuid::new_v4().simple().to_string(), true),
        };
        Ok(Visitor {
            caller,
            csrf,
            fresh,
            pages_open: state.pages_open,
            https: came_over_https(parts),
        })
    }
}

impl Visitor {
    /// Who is signed in, as the header shows it: the token's id and role.
    pub(crate) fn who(&self) -> Option<String> {
        match &self.caller {
            Some(Caller::Token(token)) => Some(format!("{} ({})", token.id, token.role.as_str())),
            _ => None,
        }
    }

    /// The frame of a page of `nav`.
    pub(crate) fn frame(&self, nav: &'static str) -> Frame {
        Frame {
            nav,
            who: self.who(),
            csrf: self.csrf.clone(),
        }
    }

    /// The caller a read-only page reads as: the visitor's, else anyone when pages are open to all.
    pub(crate) fn reader(&self) -> Result<Caller, ApiError> {
        match &self.caller {
            Some(caller) => Ok(caller.clone()),
            None if self.pages_open => Ok(Caller::Open),
            None => Err(ApiError::Unauthorized),
        }
    }

    /// The caller a form's write acts as, after its CSRF token matched: only a signed-in visitor (or anyone in an
    /// open lab); the API's own checks decide the rest.
    pub(crate) fn writer(&self, form_csrf: &str) -> Result<Caller, ApiError> {
        self.check_csrf(form_csrf)?;
        self.caller.clone().ok_or(ApiError::Unauthorized)
    }

    /// Refuses a form whose CSRF token is not this browser's (or a browser that had none yet).
    fn check_csrf(&self, form_csrf: &str) -> Result<(), ApiError> {
        if self.fresh || form_csrf != self.csrf {
            return Err(ApiError::BadRequest(
                "the form's CSRF token does not match this browser's: reload the page and try again".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the visitor may try writes at all (the buttons a page shows; the API still decides).
    pub(crate) fn may_write(&self) -> bool {
        self.caller.is_some()
    }

    /// `response` with the CSRF cookie set, when this request made the token.
    pub(crate) fn with_cookies(&self, mut response: Response) -> Response {
        if self.fresh {
            let cookie = format!(
                "{CSRF}={}; Path=/; SameSite=Strict{}",
                self.csrf,
                self.secure()
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }

    fn secure(&self) -> &'static str {
        if self.https {
            "; Secure"
        } else {
            ""
        }
    }
}

/// Whether a proxy in front says the browser's request came over HTTPS (`X-Forwarded-Proto: https`).
fn came_over_https(parts: &Parts) -> bool {
    parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The value of cookie `name` in the request, when it has one.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    frame: Frame,
    error: &'a str,
    next: &'a str,
}

/// Where to go after signing in.
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    #[serde(default)]
    next: String,
}

/// `GET /sign-in`.
pub(crate) async fn sign_in_form(visitor: Visitor, Query(next): Query<Next>) -> Response {
    let template = SignInPage {
        frame: visitor.frame(""),
        error: "",
        next: &next.next,
    };
    page(&visitor, &template)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    csrf: String,
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /sign-in`: a valid token sets the session cookie and goes back to where the visitor was (a page of this
/// site only).
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SignIn>,
) -> Response {
    if let Err(error) = visitor.check_csrf(&form.csrf) {
        return error_page(&visitor, &error, "/sign-in");
    }
    let secret = form.token.trim().to_owned();
    let lookup = state
        .store_call({
            let secret = secret.clone();
            move |store: &dyn Store| store.verify_token(&secret)
        })
        .await;
    match lookup {
        Ok(Some(_)) => {
            let next = if form.next.starts_with('/') && !form.next.starts_with("//") {
                form.next.as_str()
            } else {
                "/"
            };
            let mut response = Redirect::to(next).into_response();
            let cookie = format!(
                "{SESSION}={secret}; Path=/; HttpOnly; SameSite=Strict{}",
                visitor.secure()
            );
            match HeaderValue::from_str(&cookie) {
                Ok(value) => {
                    response.headers_mut().append(SET_COOKIE, value);
                    response
                }
                Err(_) => refused(&visitor, &form.next),
            }
        }
        Ok(None) => refused(&visitor, &form.next),
        Err(error) => error_page(&visitor, &error, "/sign-in"),
    }
}

/// The sign-in form again, saying the token was not accepted.
fn refused(visitor: &Visitor, next: &str) -> Response {
    let template = SignInPage {
        frame: visitor.frame(""),
        error: "That token is not valid here.",
        next,
    };
    let mut response = page(visitor, &template);
    *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    response
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Plain {
    pub(crate) csrf: String,
}

/// `POST /sign-out`: the session cookie is dropped.
pub(crate) async fn sign_out(visitor: Visitor, Form(form): Form<Plain>) -> Response {
    if let Err(error) = visitor.check_csrf(&form.csrf) {
        return error_page(&visitor, &error, "/");
    }
    let mut response = Redirect::to("/").into_response();
    let cookie = format!("{SESSION}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}
