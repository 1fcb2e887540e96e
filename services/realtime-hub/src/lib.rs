//! # duet-realtime-hub
//!
//! Where interviews live: participants connect over Socket.IO (`/socket.io/`), edit one Yjs document
//! per interview, see each other's cursors, and every edit is committed to the database before it is
//! acknowledged. Hubs scale out: each interview has a bus channel (`duet:interview:<session_id>`) that
//! relays edits between the hubs that have participants in it. The wire protocol is
//! `docs/PROTOCOL.md`.
//!
//! ## Using it
//!
//! Embedded (the all-in-one `duet` binary, or any actix-web app):
//!
//! ```no_run
//! # async fn demo(settings: duet_config::Settings,
//! #               storage: std::sync::Arc<dyn duet_storage::Storage>,
//! #               bus: std::sync::Arc<dyn duet_bus::Bus>) -> anyhow::Result<()> {
//! use duet_realtime_hub::Hub;
//! let hub = Hub::start(&settings, storage, bus).await?;       // background tasks, registration
//! let routes = hub.clone();
//! let server = actix_web::HttpServer::new(move || {
//!     actix_web::App::new().configure(|c| routes.configure(c)) // mounts /socket.io/
//! });
//! // … serve; on SIGTERM:
//! hub.shutdown().await;  // disconnect clients, commit pending edits, deregister, remove rows
//! # let _ = server; Ok(()) }
//! ```
//!
//! - [`Hub::start`] / [`Hub::start_with`] (with [`HubOptions`], e.g. the URL registered for the
//!   gateway), [`Hub::configure`], [`Hub::ready`] (database and bus answer, not shutting down),
//!   [`Hub::shutdown`], [`Hub::metrics`] (Prometheus text).
//! - Standalone: [`startup::Application`] (`Application::build(&settings)` binds — port 0 for tests —
//!   opens PostgreSQL/Redis, or SQLite/in-process bus when `DATABASE_URL`/`REDIS_URL` are unset, and
//!   serves `/socket.io/`, `/healthz`, `/readyz`, `/metrics`; then `port()`, `run_until_stopped()`).
//!   `main.rs` of the `realtime-hub` binary is just that. The standalone hub is one thread: HTTP is
//!   served on the hub's own event loop ([`startup::serve_local`]), so connections, interview
//!   workers, the writer and the bus tasks hand work to each other without cross-thread wake-ups.
//!   A hub scales out by running more hubs (one per core), not more threads.
//!
//! ## How it is built
//!
//! Three layers, each depending only on those below it:
//! - [`edge`]: Socket.IO wiring — one file per client event, validating its payload and turning
//!   it into a command for the interview (or a join);
//! - [`runtime`]: the registry of live interviews, the executor of the core's effects, one worker
//!   task per interview (bus subscription, resyncs, snapshots, text saves, unloading), the
//!   group-commit writer, the bus publisher, the hub's inbox and heartbeat — the only part that
//!   knows tokio;
//! - [`interview`]: one interview as a pure state machine — inputs in, effects out, no IO and no
//!   clock reads: documents (the code, the interviewers' notes) and awareness, the durability
//!   bookkeeping that releases acks only after commit, roles and the lifecycle, updates held until
//!   what they depend on arrives, presence, the seed-protocol merge, the y-protocols framing.
//!
//! Beside them: [`duet_bus::relay`] (what hubs say to each other on the bus), [`transport`] (what the hub
//! needs from Socket.IO, so tests can record instead), [`error`] (the typed errors clients get),
//! [`limits`] (every limit and timing, with its reason) and [`metrics`]. The path of one edit is
//! `docs/ARCHITECTURE.md`.

pub mod edge;
pub mod error;
pub mod interview;
pub mod limits;
pub mod metrics;

pub mod runtime;
pub mod startup;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use duet_bus::Bus;
use duet_config::Settings;
use duet_socketio::{SioConfig, SocketIo};
use duet_storage::Storage;

use crate::runtime::{HubConfig, Runtime};

pub use crate::error::{ErrorCode, HubError};
/// How long a draining hub takes to close its clients' transports: spread out so they do not all
/// reconnect to the other hubs in the same instant, short enough to keep a rolling restart quick.
pub const DRAIN_SPREAD: Duration = Duration::from_millis(500);

/// Options beyond `Settings`.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Base URL registered in Redis (`duet:hub:<id>`) for the gateway. Default:
    /// `http://{settings.host}:{settings.port}`.
    pub public_url: Option<String>,
    /// The key participant tokens are checked with at `join_session`. `None`: made from
    /// `SECRET_KEY` (the hub refuses to start without one).
    pub tokens: Option<duet_auth::TokenKey>,
}

/// The key for participant tokens from `SECRET_KEY`. Without one: an error when `required` (the
/// standalone hub of the scaled set must check the tokens the session-API issues), else a random
/// key for this process alone (tokenless joins work; no token verifies), with a warning.
pub fn token_key(settings: &Settings, required: bool) -> anyhow::Result<duet_auth::TokenKey> {
    use secrecy::ExposeSecret;
    let secret = settings.secret_key.as_ref().map(|s| s.expose_secret());
    if secret.is_none() && !required {
        tracing::warn!("SECRET_KEY is not set: interview tokens cannot be checked; only joins without a token work");
        return Ok(duet_auth::TokenKey::new(
            duet_auth::TokenKey::generate_secret(),
        )?);
    }
    Ok(duet_auth::TokenKey::required(secret)?)
}

/// A running hub. Cheap to clone (every clone is the same hub).
#[derive(Clone)]
pub struct Hub {
    rt: Arc<Runtime>,
    io: SocketIo,
}

impl Hub {
    /// Starts a hub with the URL derived from `settings`.
    pub async fn start(
        settings: &Settings,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Hub> {
        Self::start_with(settings, storage, bus, HubOptions::default()).await
    }

    /// Starts a hub: the group-commit writer, the bus publisher and the heartbeat run until
    /// [`Hub::shutdown`].
    pub async fn start_with(
        settings: &Settings,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
        options: HubOptions,
    ) -> anyhow::Result<Hub> {
        let h = &settings.hub;
        let tokens = match options.tokens {
            Some(key) => key,
            None => token_key(settings, false)?,
        };
        let cfg = HubConfig {
            flush_interval: Duration::from_millis(h.flush_interval_ms.max(1)),
            snapshot_every: h.snapshot_every.max(1),
            idle_unload: Duration::from_secs(h.idle_unload_secs),
            heartbeat_ttl: Duration::from_secs(h.heartbeat_ttl_secs),
            max_message_bytes: settings.max_content_length,
            tokens,
        };
        let io = SocketIo::builder()
            .config(SioConfig {
                ping_interval: Duration::from_millis(h.ping_interval_ms),
                ping_timeout: Duration::from_millis(h.ping_timeout_ms),
                max_payload: settings.max_content_length,
                allowed_origins: (!h.allowed_origins.is_empty()).then(|| h.allowed_origins.clone()),
                // Without a list: a page of another site cannot open a session.
                same_host_origins: true,
                // No handler reads the handshake's headers: not kept per connection.
                keep_headers: false,
                ..SioConfig::default()
            })
            .build();
        let hub_id = h
            .id
            .clone()
            .unwrap_or_else(|| format!("hub-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
        let public_url = options
            .public_url
            .unwrap_or_else(|| format!("http://{}:{}", settings.host, settings.port));
        let rt = Runtime::start(
            cfg,
            hub_id,
            public_url,
            storage,
            bus,
            Arc::new(edge::SioOut(io.clone())),
        )
        .await?;
        edge::mount(&io, rt.clone());
        Ok(Hub { rt, io })
    }

    /// Mounts `/socket.io/` (HTTP long-polling and WebSocket).
    pub fn configure(&self, cfg: &mut actix_web::web::ServiceConfig) {
        self.io.configure(cfg);
    }

    /// True while the hub can serve: the database and the bus answer and it is not shutting down.
    pub async fn ready(&self) -> bool {
        self.rt.ready().await
    }

    /// Graceful shutdown, as a drain: the registration goes first (the gateways send no new
    /// interviews here), new Engine.IO sessions are refused with 503 (the gateway offers them to
    /// the next hub), every client's transport is closed — spread over [`DRAIN_SPREAD`] — so it
    /// reconnects elsewhere, then every pending edit is committed and the participant rows are
    /// removed. Returns as soon as that is done. Idempotent.
    pub async fn shutdown(&self) {
        self.rt.deregister().await;
        self.io.drain(DRAIN_SPREAD).await;
        self.rt.shutdown().await;
    }

    /// This hub's id (Redis registration and participant rows).
    pub fn id(&self) -> &str {
        self.rt.hub_id()
    }

    /// The runtime (tests, embedding).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Prometheus text exposition of the hub's metrics.
    pub fn metrics(&self) -> String {
        self.rt.metrics()
    }
}
