//! session-api: the REST API for interview sessions.
//!
//! - `POST /api/session` creates a session (`{language?, title?}` → 201 `{id, session_code, code,
//!   title, language, created_at}`; the seed's names: `session_code` is the human-readable code,
//!   `code` the interview's current text).
//! - `GET /api/session/{code}` → 200 `{id, session_code, code, title, language, created_at,
//!   connected_users}` or 404.
//! - `GET /api/session/{code}/runs` → the newest code runs reported by participants.
//! - `GET /api/languages` → the closed list of languages.
//!
//! Errors are JSON `{error: {code, message}}` with a stable code ([`error::ApiError`]).
//! [`configure`] mounts the API on any actix `App` (the all-in-one `duet` mounts it too);
//! [`Application`] is the standalone service on PostgreSQL.

pub mod error;
mod routes;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{dev::Server, http::StatusCode, web, App};
use duet_config::Settings;
use duet_storage::{postgres::PgStorage, Storage};
use duet_telemetry::connections::{self, ConnectionGate, ConnectionLimits};
use duet_telemetry::health::{Readiness, ReadyCheck};
use duet_telemetry::methods;

pub use routes::ApiState;

/// Mounts `/api/*`: `HEAD` wherever `GET`, 405 with `Allow` for a known path asked with another
/// method, and a JSON 404 for unknown API paths.
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState) {
    cfg.service(
        web::scope("/api")
            .app_data(web::Data::new(state))
            .service(
                web::resource("/session")
                    .route(web::post().to(routes::create_session))
                    .default_service(methods::not_allowed("POST")),
            )
            .service(methods::get("/session/{code}", routes::get_session))
            .service(methods::get("/session/{code}/runs", routes::get_runs))
            .service(methods::get("/languages", routes::languages))
            .default_service(web::to(|| async {
                error::json_error(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
            })),
    );
}

/// The readiness check for a storage backend.
pub fn storage_check(storage: Arc<dyn Storage>) -> ReadyCheck {
    ReadyCheck::new("database", move || {
        let storage = storage.clone();
        async move { storage.ping().await.map_err(|e| e.to_string()) }
    })
}

/// The standalone session-API service (PostgreSQL).
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings
            .database_url
            .as_deref()
            .filter(|_| settings.uses_postgres())
            .ok_or_else(|| anyhow::anyhow!("session-api needs DATABASE_URL=postgres://…"))?;
        let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(url).await?);
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let limits = ConnectionLimits::from_settings(&settings.http);
        Self::with_storage(listener, storage, settings.max_content_length, limits)
    }

    /// Serves on `listener` with the given storage (tests use port 0 and any backend).
    pub fn with_storage(
        listener: TcpListener,
        storage: Arc<dyn Storage>,
        max_body: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let state = ApiState {
            storage: storage.clone(),
            max_body,
        };
        let readiness = Readiness(vec![storage_check(storage)]);
        let metrics = duet_telemetry::metrics::HttpMetrics::new("session-api");
        let server = connections::serve(listener, ConnectionGate::new(limits), true, move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    duet_telemetry::metrics::record,
                ))
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(|c| duet_telemetry::metrics::configure(c, metrics.clone(), None))
                .configure(|c| configure(c, state.clone()))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
        })?;
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM / Ctrl-C (actix drains connections gracefully).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
