//! session-api: the REST API for interview sessions.
//!
//! - `POST /api/session` creates an interview (`{language?, title?, lobby?, password?}` → 201 with
//!   the interview, its `interviewer_token` and `links`; the seed's names: `session_code` is the
//!   human-readable code, `code` the interview's current text).
//! - `GET /api/session/{code}` → 200 the interview (state, timestamps, controls;
//!   `connected_users`) or 404. Never a token or a password hash.
//! - `GET /api/session/{code}/runs` → the newest code runs reported by participants.
//! - `POST /api/session/{code}/join` → a participant token (candidate, or interviewer with an
//!   interviewer's `Authorization: Bearer`).
//! - `POST /api/session/{code}/start|end|controls|remove` → the interviewer's actions, announced to
//!   the hubs as a `Control` message on the interview's bus channel.
//! - `GET /api/session/{code}/record` → the interview record (final code and notes, participants,
//!   runs, activity events); `GET /api/session/{code}/history?doc=code|notes` → every update of a
//!   document (base64); `GET /api/session/{code}/export` → all of it as a zip;
//!   `DELETE /api/session/{code}` → erases the interview (interviewer token, like the actions).
//! - `GET /api/languages` → the closed list of languages.
//!
//! Background jobs ([`jobs`]): the webhook dispatcher and the retention job, in the standalone
//! service ([`Application::build`]) and in `duet`.
//!
//! Errors are JSON `{error: {code, message}}` with a stable code ([`error::ApiError`]).
//! [`configure`] mounts the API on any actix `App` (the all-in-one `duet` mounts it too);
//! [`Application`] is the standalone service on PostgreSQL and Redis.

pub mod error;
mod interview;
pub mod jobs;
pub mod limits;
mod record;
mod routes;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{dev::Server, http::StatusCode, web, App};
use duet_auth::TokenKey;
use duet_bus::{Bus, LocalBus, RedisBus};
use duet_config::Settings;
use duet_storage::{postgres::PgStorage, Storage};
use duet_telemetry::connections::{self, ConnectionGate, ConnectionLimits};
use duet_telemetry::health::{Readiness, ReadyCheck};
use duet_telemetry::methods;

pub use routes::{ApiState, MAX_PASSWORD_CHARS};

/// A `POST`-only resource: 405 with `Allow: POST` to anything else.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(methods::not_allowed("POST"))
}

/// Mounts `/api/*`: `HEAD` wherever `GET`, 405 with `Allow` for a known path asked with another
/// method, and a JSON 404 for unknown API paths.
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState) {
    cfg.service(
        web::scope("/api")
            .app_data(web::Data::new(state))
            .service(post("/session", routes::create_session))
            .service(
                web::resource("/session/{code}")
                    .route(methods::get_or_head().to(routes::get_session))
                    .route(web::delete().to(record::erase))
                    .default_service(methods::not_allowed("GET, HEAD, DELETE")),
            )
            .service(methods::get("/session/{code}/runs", routes::get_runs))
            .service(post("/session/{code}/join", interview::join))
            .service(post("/session/{code}/start", interview::start))
            .service(post("/session/{code}/end", interview::end))
            .service(post("/session/{code}/controls", interview::controls))
            .service(post("/session/{code}/remove", interview::remove))
            .service(methods::get("/session/{code}/record", record::record))
            .service(methods::get("/session/{code}/history", record::history))
            .service(methods::get("/session/{code}/export", record::export))
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

/// The readiness check for the bus.
pub fn bus_check(bus: Arc<dyn Bus>) -> ReadyCheck {
    ReadyCheck::new("bus", move || {
        let bus = bus.clone();
        async move { bus.ping().await.map_err(|e| e.to_string()) }
    })
}

/// The standalone session-API service (PostgreSQL).
pub struct Application {
    port: u16,
    server: Server,
    /// The background jobs, when this process runs them ([`Application::build`]).
    jobs: Option<jobs::Jobs>,
}

impl Application {
    /// The service as deployed: `SECRET_KEY` (tokens), `DATABASE_URL=postgres://…` and
    /// `REDIS_URL` (to tell the hubs about interviewer actions) are all required; start-up stops
    /// with a message naming what is missing.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let tokens = TokenKey::required(settings.secret_key.as_ref().map(|s| s.expose_secret()))?;
        let url = settings
            .database_url
            .as_deref()
            .filter(|_| settings.uses_postgres())
            .ok_or_else(|| anyhow::anyhow!("session-api needs DATABASE_URL=postgres://…"))?;
        let redis = settings.redis_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "session-api needs REDIS_URL=redis://… (it tells the hubs about interviewer actions)"
            )
        })?;
        let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(url).await?);
        let bus: Arc<dyn Bus> = Arc::new(
            RedisBus::connect(redis)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
        );
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let limits = ConnectionLimits::from_settings(&settings.http);
        let mut state = ApiState::new(settings, storage.clone(), bus.clone(), tokens);
        // The replicas behind the gateways count each client's requests together.
        state.limits = Arc::new(limits::Limits::from_settings(settings).shared_through(bus));
        let jobs = jobs::spawn(settings, storage, state.job_metrics.clone());
        let mut app = Self::with_state(listener, state, limits)?;
        app.jobs = Some(jobs);
        Ok(app)
    }

    /// Serves on `listener` with the given storage, default settings, a fresh random key and an
    /// in-process bus (tests that only need the API's plain routes).
    pub fn with_storage(
        listener: TcpListener,
        storage: Arc<dyn Storage>,
        max_body: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let mut settings = Settings::load_from(Vec::<(String, String)>::new())?;
        settings.max_content_length = max_body;
        let tokens = TokenKey::new(TokenKey::generate_secret())?;
        let state = ApiState::new(&settings, storage, Arc::new(LocalBus::new()), tokens);
        Self::with_state(listener, state, limits)
    }

    /// Serves `state` on `listener` (tests use port 0 and any backend).
    pub fn with_state(
        listener: TcpListener,
        state: ApiState,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        // The database only: without the bus, creating and joining still work and interviewer
        // actions answer 503 on their own, so a Redis outage must not take every replica out of
        // its load balancer.
        let readiness = Readiness(vec![storage_check(state.storage.clone())]);
        let metrics = duet_telemetry::metrics::HttpMetrics::new("session-api");
        state.job_metrics.register(metrics.registry());
        let gate = ConnectionGate::new(limits);
        metrics.watch_connections(&gate);
        // Both backends, the bus too (it is left out of readiness, not out of sight).
        metrics.watch_dependencies(Readiness(vec![
            storage_check(state.storage.clone()),
            bus_check(state.bus.clone()),
        ]));
        let server = connections::serve(listener, gate, true, move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    duet_telemetry::metrics::record,
                ))
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(|c| duet_telemetry::metrics::configure(c, metrics.clone(), None))
                .configure(|c| configure(c, state.clone()))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
        })?;
        Ok(Self {
            port,
            server,
            jobs: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM / Ctrl-C (actix drains connections gracefully).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let _jobs = self.jobs;
        self.server.await
    }
}
