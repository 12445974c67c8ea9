//! The lab service: the HTTP JSON API under `/api/v1` (with its OpenAPI document at `/api/v1/openapi.json`),
//! dispatch by long-polling claims, leases renewed by heartbeats and lapsed by a background reaper, idempotent log
//! and result uploads (the results parsed into per-test rows as they arrive), live-tail reads, attachments and
//! artifacts as checked tar.gz archives, recipes, bearer-token authentication (with tokens scoped to one job for
//! the job's own scripts) and Prometheus metrics at `/metrics`.
//!
//! Long polls besides the claim: a heartbeat may wait for a cancel of one of its agent's jobs, and a log or results
//! read may wait for bytes or the job's end; both are woken at once by this server.
//!
//! The server keeps no state that two servers sharing one database would need to share, except wake-ups: every
//! job, lease and byte lives in the [`proctor_store::Store`]. A claim that finds nothing waits on a per-process
//! wake-up for its queues (a job submitted to this server wakes it at once) and retries the store's atomic claim.
//! Where the store has a change feed (PostgreSQL), a thread follows it and wakes this server's waiters for the
//! other servers' writes too.
//!
//! The CLI's `proctor server` and `proctor up` use it like this (port 0 picks a free port):
//!
//! ```no_run
//! # async fn run() -> Result<(), proctor_server::ServerError> {
//! use proctor_server::{Server, ServerConfig};
//!
//! let server = Server::bind(ServerConfig::new("/var/lib/proctor".into())).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```

mod api;
mod auth;
mod changes;
mod dispatch;
mod error;
mod metrics;
mod reaper;
mod results;
mod server;
mod store_location;
mod ui;

pub use api::openapi;
pub use error::ServerError;
pub use server::{BundleLimits, Limits, Server, ServerConfig, DEFAULT_LISTEN};
pub use store_location::{StoreLocation, UnknownStore};
