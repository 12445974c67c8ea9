//! Starting and running the server: its configuration, the bind-time safety check, and the serve loop with the
//! reaper beside it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
pub use proctor_archive::Limits;
use proctor_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{self, AppState, STORE_SLOTS};
use crate::changes;
use crate::dispatch::Wakers;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::reaper;
use crate::store_location::StoreLocation;

/// Where the server listens unless told otherwise: loopback, port 7370.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7370);

/// How the server runs. [`ServerConfig::new`] gives the defaults; every field may be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on; port 0 picks a free port ([`Server::local_addr`] tells which).
    pub listen: SocketAddr,
    /// The store: the SQLite file in a data directory, or a PostgreSQL database shared with other servers.
    pub store: StoreLocation,
    /// How long a claim waits for a job when none is queued before answering 204 (30 s).
    pub claim_hold: Duration,
    /// How long a claim or heartbeat leases a job for (20 s; agents heartbeat every 5 s).
    pub lease: Duration,
    /// How often the reaper looks for lapsed leases (1 s).
    pub reap_interval: Duration,
    /// How long an agent may stay silent before it is shown offline (one lease by default).
    pub agent_offline_after: Duration,
    /// The largest request body accepted; larger ones get 413 ([`proctor_api::DEFAULT_MAX_UPLOAD_BYTES`], 64 MiB).
    pub max_body_bytes: usize,
    /// The largest job definition accepted; larger ones get 413 naming the cap
    /// ([`proctor_api::DEFAULT_MAX_DEFINITION_BYTES`], 1 MiB).
    pub max_definition_bytes: usize,
    /// What uploaded bundles may expand to, checked on accept (413 naming the cap).
    pub bundle_limits: BundleLimits,
    /// Whether the web UI's read-only pages are open to visitors who have not signed in, beyond loopback too (on
    /// loopback they always are). Writes always need a signed-in user with the role the API asks for.
    pub public_pages: bool,
}

/// What each kind of bundle may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// A job's attachments ([`Limits::ATTACHMENTS`] by default: 1 GiB, 100 000 entries).
    pub attachments: Limits,
    /// A job's artifacts ([`Limits::ARTIFACTS`] by default: 4 GiB, 100 000 entries).
    pub artifacts: Limits,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            attachments: Limits::ATTACHMENTS,
            artifacts: Limits::ARTIFACTS,
        }
    }
}

impl ServerConfig {
    /// The defaults, with the SQLite store in `data_dir`.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig::on(StoreLocation::Sqlite(data_dir))
    }

    /// The defaults, with the store at `store`.
    pub fn on(store: StoreLocation) -> ServerConfig {
        let lease = Duration::from_secs(20);
        ServerConfig {
            listen: DEFAULT_LISTEN,
            store,
            claim_hold: Duration::from_secs(30),
            lease,
            reap_interval: Duration::from_secs(1),
            agent_offline_after: lease,
            max_body_bytes: proctor_api::DEFAULT_MAX_UPLOAD_BYTES as usize,
            max_definition_bytes: proctor_api::DEFAULT_MAX_DEFINITION_BYTES as usize,
            bundle_limits: BundleLimits::default(),
            public_pages: false,
        }
    }
}

/// A server bound to its address, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    state: AppState,
    config: ServerConfig,
}

impl Server {
    /// Opens the store and binds the listening socket. Refuses a non-loopback address unless
    /// authentication is configured (a token exists in the store).
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let location = config.store.clone();
        let store = tokio::task::spawn_blocking(move || {
            location.open().map_err(|source| ServerError::OpenStore {
                store: location.to_string(),
                source,
            })
        })
        .await
        .map_err(ServerError::StoreTask)??;
        Server::bind_with_store(config, store).await
    }

    /// Binds the listening socket for a server on `store`, refusing an open non-loopback address.
    async fn bind_with_store(
        config: ServerConfig,
        store: Arc<dyn Store>,
    ) -> Result<Server, ServerError> {
        let allow_open = config.listen.ip().is_loopback();
        if !allow_open {
            require_tokens(&store, config.listen).await?;
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    listen: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            listen: config.listen,
            source,
        })?;
        let state = AppState {
            store,
            wakers: Arc::new(Wakers::default()),
            metrics: Arc::new(Metrics::new().map_err(ServerError::Metrics)?),
            claim_hold: config.claim_hold,
            lease: config.lease,
            allow_open,
            pages_open: allow_open || config.public_pages,
            store_slots: Arc::new(Semaphore::new(STORE_SLOTS)),
            // A definition is a body too: the smaller of the two caps holds.
            max_definition_bytes: config.max_definition_bytes.min(config.max_body_bytes),
            bundle_limits: config.bundle_limits,
            storage: Arc::default(),
        };
        let router = api::router(state.clone(), config.max_body_bytes)?;
        Ok(Server {
            listener,
            local_addr,
            router,
            state,
            config,
        })
    }

    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests, with the reaper running beside, until `shutdown` completes; then stops taking connections
    /// and lets requests in flight finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let store = Arc::clone(&self.state.store);
        let wakers = Arc::clone(&self.state.wakers);
        let follower = tokio::task::spawn_blocking(move || changes::follow(store, wakers))
            .await
            .map_err(ServerError::StoreTask)?
            .map_err(ServerError::FollowChanges)?;
        let reaper = tokio::spawn(reaper::run(
            self.state,
            self.config.reap_interval,
            self.config.agent_offline_after,
        ));
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve);
        reaper.abort();
        // Stopping the follower waits for its thread's current wait on the feed to end.
        let _ = tokio::task::spawn_blocking(move || drop(follower)).await;
        served
    }
}

/// Refuses to go on when no token exists: a server beyond loopback must not run open.
async fn require_tokens(store: &Arc<dyn Store>, listen: SocketAddr) -> Result<(), ServerError> {
    let store = Arc::clone(store);
    let has_tokens = tokio::task::spawn_blocking(move || store.has_tokens())
        .await
        .map_err(ServerError::StoreTask)?
        .map_err(ServerError::CheckTokens)?;
    if has_tokens {
        Ok(())
    } else {
        Err(ServerError::OpenToNetwork { listen })
    }
}
