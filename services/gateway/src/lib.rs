//! gateway: the stateless edge. Serves the browser client's pages and assets ([`pages`]), proxies `/api/*`
//! to the session-API pool and `/socket.io/*` to a realtime hub chosen by rendezvous hashing of the
//! interview's code ([`proxy`]), over HTTP long-polling and WebSocket.

pub mod assets;
pub mod pages;
pub mod proxy;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, web, App, HttpServer};
use async_trait::async_trait;
use duet_bus::Bus;
use duet_config::Settings;
use duet_domain::SessionCode;
use duet_telemetry::health::{Readiness, ReadyCheck};
use pages::{PagesState, SessionDirectory};
use proxy::Upstreams;

/// How long a page waits for the session-API to say whether an interview exists.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the set of live hubs is re-read from their Redis registrations. Hubs register with a TTL of
/// several seconds, so a dead hub leaves the set within TTL + this.
const HUB_REFRESH: Duration = Duration::from_secs(1);
/// Key prefix under which hubs register their base URL (`duet:hub:<id>` → `http://host:port`).
pub const HUB_KEY_PREFIX: &str = "duet:hub:";

/// Reads the live hubs' URLs from their registrations.
pub async fn live_hubs(bus: &dyn Bus) -> Result<Vec<String>, duet_bus::BusError> {
    let mut urls = Vec::new();
    for key in bus.keys_with_prefix(HUB_KEY_PREFIX).await? {
        if let Some(url) = bus.get(&key).await? {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// Keeps `upstreams` in step with the registered hubs. The static list from the settings is used
/// whenever no hub is registered (or the bus cannot be read).
fn spawn_hub_discovery(bus: Arc<dyn Bus>, upstreams: Arc<Upstreams>, fallback: Vec<String>) {
    tokio::spawn(async move {
        loop {
            match live_hubs(bus.as_ref()).await {
                Ok(hubs) if !hubs.is_empty() => upstreams.set_hubs(hubs),
                Ok(_) => upstreams.set_hubs(fallback.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read hub registrations; keeping the last set")
                }
            }
            tokio::time::sleep(HUB_REFRESH).await;
        }
    });
}

/// Session lookups through the session-API (`GET /api/session/{code}`).
struct ApiDirectory {
    http: reqwest::Client,
    apis: Vec<String>,
}

#[async_trait]
impl SessionDirectory for ApiDirectory {
    async fn exists(&self, code: &SessionCode) -> Result<bool, String> {
        let mut last = String::from("no session-API configured");
        for api in &self.apis {
            let url = format!("{}/api/session/{}", api.trim_end_matches('/'), code);
            match self.http.get(&url).timeout(LOOKUP_TIMEOUT).send().await {
                Ok(r) if r.status().is_success() => return Ok(true),
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(false),
                Ok(r) => last = format!("{url}: {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }
}

pub struct Application {
    port: u16,
    server: Server,
    upstreams: Arc<Upstreams>,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let bus: Option<Arc<dyn Bus>> = match settings.redis_url.as_deref() {
            Some(url) => Some(Arc::new(duet_bus::RedisBus::connect(url).await?)),
            None => None,
        };
        Self::with_listener(settings, listener, bus)
    }

    /// Serves on `listener`. With a bus, the hubs are the ones registered on it (refreshed every
    /// [`HUB_REFRESH`]); without one, the static `gateway.hub_urls`.
    pub fn with_listener(
        settings: &Settings,
        listener: TcpListener,
        bus: Option<Arc<dyn Bus>>,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let apis = settings.gateway.session_api_urls.clone();
        let upstreams = Arc::new(Upstreams::new(
            apis.clone(),
            settings.gateway.hub_urls.clone(),
        ));
        let http = reqwest::Client::new();
        let pages = PagesState::new(
            settings.frontend_dir.clone(),
            Arc::new(ApiDirectory {
                http: http.clone(),
                apis: apis.clone(),
            }),
        );
        let readiness = Readiness(vec![ReadyCheck::new("session-api", move || {
            let http = http.clone();
            let apis = apis.clone();
            async move {
                for api in &apis {
                    let url = format!("{}/healthz", api.trim_end_matches('/'));
                    if http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                    {
                        return Ok(());
                    }
                }
                Err("no session-API answers".to_owned())
            }
        })]);
        if let Some(bus) = bus {
            spawn_hub_discovery(bus, upstreams.clone(), settings.gateway.hub_urls.clone());
        }
        let up = upstreams.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
                .app_data(web::Data::new(awc::Client::default()))
                .app_data(web::Data::new(up.clone()))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                .service(web::resource("/api/{tail:.*}").to(proxy::api))
                .service(web::resource("/socket.io/{tail:.*}").to(proxy::socketio))
                .configure(|c| pages::configure(c, pages.clone()))
        })
        .shutdown_timeout(10)
        // Edits and acks are small frames: without TCP_NODELAY, Nagle + delayed ACKs add up to 40 ms.
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            upstreams,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.upstreams.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
