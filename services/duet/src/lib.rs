//! `duet`: the whole of Duet in one process on one port — session-API, realtime-hub and the browser
//! client — with embedded SQLite and an in-process bus by default. Setting `DATABASE_URL`
//! (`postgres://…`) and/or `REDIS_URL` switches the same code to the scaled backends.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{dev::Server, App, HttpResponse};
use async_trait::async_trait;
use duet_bus::Bus;
use duet_config::Settings;
use duet_domain::SessionCode;
use duet_gateway::pages::{PagesState, SessionDirectory};
use duet_realtime_hub::{Hub, HubOptions};
use duet_storage::Storage;
use duet_telemetry::connections::{self, ConnectionGate, ConnectionLimits};
use duet_telemetry::health::{Readiness, ReadyCheck};
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

pub struct Application {
    port: u16,
    server: Server,
    hub: Hub,
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
        let options = HubOptions {
            public_url: settings.hub.public_url.clone(),
        };
        let hub = Hub::start_with(settings, storage.clone(), bus.clone(), options).await?;
        let api = duet_session_api::ApiState {
            storage: storage.clone(),
            max_body: settings.max_content_length,
        };
        let pages = PagesState::new(
            settings.frontend_dir.clone(),
            Arc::new(StorageDirectory(storage.clone())),
        );
        let bus_check = bus.clone();
        let readiness = Readiness(vec![
            duet_session_api::storage_check(storage),
            ReadyCheck::new("bus", move || {
                let bus = bus_check.clone();
                async move { bus.ping().await.map_err(|e| e.to_string()) }
            }),
        ]);
        let hub_routes = hub.clone();
        let hub_metrics = hub.clone();
        let gate = ConnectionGate::new(ConnectionLimits::from_settings(&settings.http));
        let server = connections::serve(listener, gate, false, move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(|c| duet_session_api::configure(c, api.clone()))
                .configure(|c| hub_routes.configure(c))
                .service(methods::get("/metrics", {
                    let hub = hub_metrics.clone();
                    move || {
                        let body = hub.metrics();
                        async move {
                            HttpResponse::Ok()
                                .content_type("text/plain; version=0.0.4")
                                .body(body)
                        }
                    }
                }))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                .configure(|c| duet_gateway::pages::configure(c, pages.clone()))
        })?;
        Ok(Self { port, server, hub })
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
