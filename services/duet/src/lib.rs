//! `duet`: the whole of Duet in one process on one port — session-API, realtime-hub and the browser
//! client — with embedded SQLite and an in-process bus by default. Setting `DATABASE_URL`
//! (`postgres://…`) and/or `REDIS_URL` switches the same code to the scaled backends.
//!
//! Interview tokens are signed with `SECRET_KEY` when it is set; otherwise with a key `duet`
//! generates once and keeps in `<data dir>/secret_key` (mode 0600), so tokens stay valid across
//! restarts. The API and the hub share the one key.
//!
//! It runs the session-API's background jobs too (`duet_session_api::jobs`): the webhook
//! dispatcher and, with `DUET_RETENTION__DAYS`, the retention job.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::{dev::Server, App, HttpResponse};
use async_trait::async_trait;
use duet_auth::TokenKey;
use duet_bus::Bus;
use duet_config::Settings;
use duet_domain::SessionCode;
use duet_gateway::pages::{PagesState, SessionDirectory};
use duet_realtime_hub::{Hub, HubOptions};
use duet_storage::Storage;
use duet_telemetry::connections::{self, ConnectionGate, ConnectionLimits};
use duet_telemetry::health::Readiness;
use duet_telemetry::methods;

/// Session lookups for the pages, straight from storage.
struct StorageDirectory(Arc<dyn Storage>);

#[async_trait]
impl SessionDirectory for StorageDirectory {
    async fn exists(&self, code: &SessionCode) -> Result<bool, String> {
        self.0
            .session_by_code(code)
            .await
            .map(|s| s.is_some())
            .map_err(|e| e.to_string())
    }
}

pub use duet_realtime_hub::startup::{open_bus, open_storage};

/// The file under the data directory that keeps the generated key.
pub const SECRET_KEY_FILE: &str = "secret_key";

/// The token key: `SECRET_KEY` when set, else the one kept in `<data dir>/secret_key`, generated
/// on first use.
pub fn token_key(settings: &Settings) -> anyhow::Result<TokenKey> {
    use secrecy::ExposeSecret;
    if let Some(secret) = settings.secret_key.as_ref() {
        return Ok(TokenKey::new(secret.expose_secret())?);
    }
    kept_key(&settings.data_dir)
}

/// The key kept in `dir/secret_key`; a fresh one (64 hex digits, written 0600) when there is none.
/// The file's text is the secret, as `SECRET_KEY` would be: copying it into `SECRET_KEY` keeps
/// every token valid.
pub fn kept_key(dir: &Path) -> anyhow::Result<TokenKey> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(SECRET_KEY_FILE);
    let read = |path: &Path| -> anyhow::Result<TokenKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the secret key file is readable by others; chmod 600 it"
            );
        }
        TokenKey::new(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    if path.exists() {
        return read(&path);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let secret: String = TokenKey::generate_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Written whole under another name, then linked into place: never a half-written key, and of
    // two processes starting at once the first link wins and both use that key.
    let tmp = dir.join(format!(".{SECRET_KEY_FILE}.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a secret key for interview tokens");
    read(&path)
}

/// `/metrics` on its own listener (`DUET_METRICS_ADDR`), never on the public port: a Prometheus
/// scraper reaches it, the internet does not.
fn serve_metrics(
    addr: &str,
    hub: Hub,
    jobs: duet_session_api::jobs::JobMetrics,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("DUET_METRICS_ADDR: cannot bind {addr}: {e}"))?;
    let server = actix_web::HttpServer::new(move || {
        App::new().service(methods::get("/metrics", {
            let hub = hub.clone();
            let jobs = jobs.clone();
            move || {
                let mut body = hub.metrics();
                body.push_str(&jobs.render());
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4")
                        .body(body)
                }
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    tracing::info!(%addr, "metrics served");
    actix_web::rt::spawn(server);
    Ok(())
}

pub struct Application {
    port: u16,
    server: Server,
    hub: Hub,
    /// Webhooks and retention; stopped when the application is dropped.
    _jobs: duet_session_api::jobs::Jobs,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| anyhow::anyhow!("cannot bind {}:{}: {e}", settings.host, settings.port))?;
        let storage = open_storage(settings).await?;
        let bus = open_bus(settings).await?;
        Self::with_backends(settings, listener, storage, bus).await
    }

    pub async fn with_backends(
        settings: &Settings,
        listener: TcpListener,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let tokens = token_key(settings)?;
        let options = HubOptions {
            public_url: settings.hub.public_url.clone(),
            tokens: Some(tokens.clone()),
        };
        let hub = Hub::start_with(settings, storage.clone(), bus.clone(), options).await?;
        let api = duet_session_api::ApiState::new(settings, storage.clone(), bus.clone(), tokens);
        let pages = PagesState::new(
            settings.frontend_dir.clone(),
            Arc::new(StorageDirectory(storage.clone())),
        );
        let readiness = Readiness(vec![
            duet_session_api::storage_check(storage.clone()),
            duet_session_api::bus_check(bus),
        ]);
        let hub_routes = hub.clone();
        if let Some(addr) = &settings.metrics_addr {
            serve_metrics(addr, hub.clone(), api.job_metrics.clone())?;
        }
        let jobs =
            duet_session_api::jobs::spawn(settings, storage.clone(), api.job_metrics.clone());
        let gate = ConnectionGate::new(ConnectionLimits::from_settings(&settings.http));
        let app = move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(|c| duet_session_api::configure(c, api.clone()))
                .configure(|c| hub_routes.configure(c))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                .configure(|c| duet_gateway::pages::configure(c, pages.clone()))
        };
        // WebSocket requests go through the same app, and once a handshake is answered the
        // socket leaves actix-http's dispatcher and its buffers (duet-socketio's takeover).
        let upgrades = {
            let app = app.clone();
            move || duet_socketio::takeover::upgrades(app())
        };
        let server = connections::serve_upgrading(listener, gate, false, app, upgrades)?;
        Ok(Self {
            port,
            server,
            hub,
            _jobs: jobs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM / Ctrl-C, then stops accepting, drains connections and lets the hub flush
    /// every pending edit to the database before the process exits.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        duet_realtime_hub::startup::serve_until_signal(self.server, &self.hub).await
    }
}
