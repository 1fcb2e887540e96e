//! The standalone `realtime-hub` service: PostgreSQL + Redis (or SQLite + the in-process bus when
//! `DATABASE_URL` / `REDIS_URL` are unset), `/socket.io/`, `/healthz`, `/readyz`, `/metrics`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use duet_bus::{Bus, LocalBus, RedisBus};
use duet_config::Settings;
use duet_storage::postgres::PgStorage;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::Storage;
use duet_telemetry::health::{Readiness, ReadyCheck};

use crate::{Hub, HubOptions};

/// Seconds the HTTP server gives open connections to finish on shutdown.
const HTTP_SHUTDOWN_SECS: u64 = 10;

pub struct Application {
    port: u16,
    server: Server,
    hub: Hub,
}

/// Opens the storage `settings` names.
pub async fn open_storage(settings: &Settings) -> anyhow::Result<Arc<dyn Storage>> {
    if settings.uses_postgres() {
        let url = settings.database_url.as_deref().unwrap_or_default();
        Ok(Arc::new(PgStorage::connect(url).await?))
    } else {
        let path = settings.sqlite_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Arc::new(SqliteStorage::open(&path)?))
    }
}

/// Opens the bus `settings` names.
pub async fn open_bus(settings: &Settings) -> anyhow::Result<Arc<dyn Bus>> {
    match settings.redis_url.as_deref() {
        Some(url) => Ok(Arc::new(RedisBus::connect(url).await?)),
        None => Ok(Arc::new(LocalBus::new())),
    }
}

impl Application {
    /// Binds `settings.host:settings.port` (0 picks a free port), opens the backends and starts the hub.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| anyhow::anyhow!("cannot bind {}:{}: {e}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let storage = open_storage(settings).await?;
        let bus = open_bus(settings).await?;
        let options = HubOptions {
            public_url: Some(
                settings
                    .hub
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}:{port}", settings.host)),
            ),
        };
        let hub = Hub::start_with(settings, storage, bus, options).await?;
        let ready_hub = hub.clone();
        let readiness = Readiness(vec![ReadyCheck::new("hub", move || {
            let hub = ready_hub.clone();
            async move {
                if hub.ready().await {
                    Ok(())
                } else {
                    Err("database or bus unavailable, or shutting down".to_owned())
                }
            }
        })]);
        let routes = hub.clone();
        let server = HttpServer::new(move || {
            let metrics_hub = routes.clone();
            App::new()
                .configure(|c| routes.configure(c))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                .route(
                    "/metrics",
                    web::get().to(move || {
                        let body = metrics_hub.metrics();
                        async move {
                            HttpResponse::Ok()
                                .content_type("text/plain; version=0.0.4")
                                .body(body)
                        }
                    }),
                )
        })
        .shutdown_timeout(HTTP_SHUTDOWN_SECS)
        // Edits are small frames: without TCP_NODELAY, Nagle holds a frame until the previous one is
        // acknowledged, and delayed ACKs make that up to 40 ms.
        .tcp_nodelay(true)
        .listen(listener)?
        .disable_signals()
        .run();
        Ok(Self { port, server, hub })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until SIGTERM / Ctrl-C; then disconnects clients, commits every pending edit and
    /// deregisters before the process exits.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        serve_until_signal(self.server, &self.hub).await
    }
}

/// Serves `server` until SIGTERM / Ctrl-C, then shuts the hub down first (clients are told to
/// reconnect elsewhere, pending edits are committed) and only then stops the HTTP server, draining it.
/// Used by the standalone hub and by the all-in-one `duet`.
pub async fn serve_until_signal(server: actix_web::dev::Server, hub: &Hub) -> anyhow::Result<()> {
    let handle = server.handle();
    let server = tokio::spawn(server);
    duet_telemetry::shutdown_signal().await;
    hub.shutdown().await;
    handle.stop(true).await;
    server.await??;
    Ok(())
}
