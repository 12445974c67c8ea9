//! The web UI at `/`: server-rendered pages (askama templates, escaped by default) over the same handlers and store
//! calls as the JSON API, htmx for partial refreshes, and Server-Sent Events for a running job's log.
//!
//! Who may do what is the API's rule: a page calls the API's own handler functions with the visitor's [`Caller`]
//! (from the session cookie a token sign-in sets), so a button the API would refuse is refused here too. Read-only
//! pages are open to visitors who have not signed in on loopback, or beyond it with
//! [`ServerConfig::public_pages`](crate::ServerConfig::public_pages). Every form carries a CSRF token.

mod format;
mod history;
mod live;
mod pages;
mod session;

use askama::Template;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;
use crate::error::ApiError;
pub(crate) use session::Visitor;

/// The UI's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/junit.xml", get(pages::junit))
        .route("/jobs/{id}/results.subunit", get(pages::results_stream))
        .route("/jobs/{id}/log.txt", get(pages::log_text))
        .route("/jobs/{id}/artifacts.tar.gz", get(pages::artifacts))
        .route("/jobs/{id}/cancel", post(pages::cancel))
        .route("/jobs/{id}/again", post(pages::submit_again))
        .route("/jobs/{id}/live", get(live::job_events))
        .route("/live/queues", get(live::queue_events))
        .route("/agents", get(pages::agents))
        .route("/agents/{id}", get(pages::agent))
        .route("/recipes", get(pages::recipes))
        .route("/recipes/{name}", get(pages::recipe))
        .route("/recipes/{name}/start", post(pages::start_plan))
        .route("/tests", get(pages::test_history))
        .route("/compare", get(pages::compare))
        .route(
            "/sign-in",
            get(session::sign_in_form).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/assets/{name}", get(asset))
}

/// What every page's frame shows: which page it is, who is signed in, and the CSRF token for its forms.
pub(crate) struct Frame {
    pub(crate) nav: &'static str,
    pub(crate) who: Option<String>,
    pub(crate) csrf: String,
}

/// A page as the visitor gets it: the rendered template, and the CSRF cookie when the visitor had none.
pub(crate) fn page(visitor: &Visitor, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => visitor.with_cookies(Html(html).into_response()),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be rendered: {error}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    frame: Frame,
    status: String,
    message: &'a str,
    sign_in: bool,
    next: &'a str,
}

/// An API error as a page: its status and message (a sign-in link when signing in would help).
pub(crate) fn error_page(visitor: &Visitor, error: &ApiError, next: &str) -> Response {
    let status = error.status();
    let template = ErrorPage {
        frame: visitor.frame(""),
        status: format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        message: &error.full_message(),
        sign_in: matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            && visitor.who().is_none(),
        next,
    };
    let mut response = page(visitor, &template);
    *response.status_mut() = status;
    response
}

/// The embedded static files; nothing is built or fetched at run time.
async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type): (&'static str, &str) = match name.as_str() {
        "style.css" => (include_str!("../../assets/style.css"), "text/css"),
        "live.js" => (include_str!("../../assets/live.js"), "text/javascript"),
        // htmx 2.0.11 (Zero-Clause BSD), from the npm package htmx.org, unchanged.
        "htmx.min.js" => (include_str!("../../assets/htmx.min.js"), "text/javascript"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
