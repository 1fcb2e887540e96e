//! gateway: the stateless edge. Serves the browser client's pages and assets ([`pages`]), proxies `/api/*`
//! to the session-API pool and `/socket.io/*` to a realtime hub chosen by rendezvous hashing of the
//! interview's code ([`proxy`]), over HTTP long-polling and WebSocket.

pub mod pages;
pub mod proxy;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, web, App, HttpServer};
use async_trait::async_trait;
use duet_config::Settings;
use duet_domain::SessionCode;
use duet_telemetry::health::{ReadyCheck, Readiness};
use pages::{PagesState, SessionDirectory};
use proxy::Upstreams;

/// How long a page waits for the session-API to say whether an interview exists.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

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
        Self::with_listener(settings, listener)
    }

    pub fn with_listener(settings: &Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let apis = settings.gateway.session_api_urls.clone();
        let upstreams = Arc::new(Upstreams::new(apis.clone(), settings.gateway.hub_urls.clone()));
        let http = reqwest::Client::new();
        let pages = PagesState {
            frontend_dir: settings.frontend_dir.clone(),
            directory: Arc::new(ApiDirectory { http: http.clone(), apis: apis.clone() }),
        };
        let readiness = Readiness(vec![ReadyCheck::new("session-api", move || {
            let http = http.clone();
            let apis = apis.clone();
            async move {
                for api in &apis {
                    let url = format!("{}/healthz", api.trim_end_matches('/'));
                    if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                        return Ok(());
                    }
                }
                Err("no session-API answers".to_owned())
            }
        })]);
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
        .listen(listener)?
        .run();
        Ok(Self { port, server, upstreams })
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
