//! gateway: the stateless edge. Serves the browser client's pages and assets ([`pages`]), proxies `/api/*`
//! to the session-API pool and `/socket.io/*` to the realtime hub that serves the interview
//! ([`proxy`]), over HTTP long-polling and WebSocket. Which hubs exist and are alive is [`hubs`];
//! which one serves an interview (its placement record, else rendezvous hashing) is [`routing`].

pub mod assets;
pub mod hubs;
pub mod pages;
pub mod proxy;
pub mod routing;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, web, App};
use async_trait::async_trait;
use duet_bus::Bus;
use duet_config::Settings;
use duet_domain::SessionCode;
use duet_telemetry::connections::{self, ConnectionGate, ConnectionLimits};
use duet_telemetry::health::{Readiness, ReadyCheck};
use hubs::{Health, Hubs};
use pages::{PagesState, SessionDirectory};
use proxy::Upstreams;
use routing::Router;

pub use hubs::HUB_KEY_PREFIX;

/// How long a page waits for the session-API to say whether an interview exists.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds a stopping gateway waits for requests in flight. Nothing it holds is worth waiting longer
/// for: API calls take milliseconds, and the long-lived ones — WebSockets (closed at once on
/// SIGTERM) and held long-polls — are better re-made by their clients through another gateway.
const SHUTDOWN_SECS: u64 = 3;

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

/// The gateway's own metrics besides the request counters: upstream errors, and the hubs it knows by
/// state (set at scrape time).
fn gateway_metrics(
    metrics: &duet_telemetry::metrics::HttpMetrics,
    upstreams: &Arc<Upstreams>,
) -> anyhow::Result<duet_telemetry::metrics::Update> {
    let registry = metrics.registry();
    registry.register(Box::new(upstreams.errors.clone()))?;
    let hubs_gauge = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "duet_gateway_hubs",
            "Hubs this gateway knows, by state: up, down (refused a connection or a probe), \
             draining (refused a handshake with 503), retired (deregistered, serving its sessions).",
        ),
        &["state"],
    )?;
    let interviews = prometheus::IntGauge::new(
        "duet_gateway_interviews",
        "Interviews routed through this gateway in the last placement TTL.",
    )?;
    let bus_up = prometheus::IntGauge::new(
        "duet_gateway_bus_up",
        "1 while this gateway reads the hubs' registrations from Redis; 0 while Redis does not \
         answer (or the gateway has no Redis).",
    )?;
    registry.register(Box::new(hubs_gauge.clone()))?;
    registry.register(Box::new(interviews.clone()))?;
    registry.register(Box::new(bus_up.clone()))?;
    let up = upstreams.clone();
    Ok(Arc::new(move || {
        let mut counts = [0i64; 4];
        for s in up.hubs().snapshot() {
            let i = match (s.health, s.source) {
                (_, hubs::Source::Retired { .. }) => 3,
                (Health::Up, _) => 0,
                (Health::Down, _) => 1,
                (Health::Draining, _) => 2,
            };
            counts[i] += 1;
        }
        for (state, n) in ["up", "down", "draining", "retired"].iter().zip(counts) {
            hubs_gauge.with_label_values(&[state]).set(n);
        }
        interviews.set(up.router.interviews() as i64);
        bus_up.set(i64::from(up.hubs().bus_ok()));
    }))
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

    /// Serves on `listener`. With a bus, the hubs are the ones registered on it (the static
    /// `gateway.hub_urls` while none is) and interviews keep their placement records there; without
    /// one, the static `gateway.hub_urls` and hashing alone.
    pub fn with_listener(
        settings: &Settings,
        listener: TcpListener,
        bus: Option<Arc<dyn Bus>>,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let apis = settings.gateway.session_api_urls.clone();
        let hubs = Arc::new(Hubs::new(&settings.gateway.hub_urls));
        let router = Arc::new(Router::new(hubs.clone(), bus.clone()));
        let upstreams = Arc::new(Upstreams::new(
            apis.clone(),
            router.clone(),
            settings.trusted_proxies(),
            settings.max_content_length,
        ));
        let metrics = duet_telemetry::metrics::HttpMetrics::new("gateway");
        let update = gateway_metrics(&metrics, &upstreams)?;
        let http = reqwest::Client::new();
        let pages = PagesState::new(
            settings.frontend_dir.clone(),
            Arc::new(ApiDirectory {
                http: http.clone(),
                apis: apis.clone(),
            }),
        );
        let mut checks = vec![ReadyCheck::new("session-api", move || {
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
        })];
        // Not ready before it has read which hubs exist (requests meanwhile wait for that read).
        let known = hubs.clone();
        checks.push(ReadyCheck::new("hub-discovery", move || {
            let done = known.first_round_done();
            async move {
                if done {
                    Ok(())
                } else {
                    Err("the hub registrations have not been read yet".to_owned())
                }
            }
        }));
        let readiness = Readiness(checks);
        if let Some(bus) = bus {
            // Absent registrations are believed once every live hub has had a chance to renew its own.
            let grace = Duration::from_secs(settings.hub.heartbeat_ttl_secs);
            hubs::spawn_discovery(bus, hubs.clone(), grace);
            routing::spawn_renewal(router);
        }
        hubs::spawn_probes(hubs);
        let up = upstreams.clone();
        let gate = ConnectionGate::new(ConnectionLimits::from_settings(&settings.http));
        metrics.watch_connections(&gate);
        // SIGTERM is handled in `run_until_stopped`, which closes the WebSockets first.
        let server =
            connections::serve_with_grace(listener, gate, false, SHUTDOWN_SECS, move || {
                App::new()
                    .wrap(actix_web::middleware::from_fn(
                        duet_telemetry::metrics::record,
                    ))
                    .wrap(tracing_actix_web::TracingLogger::default())
                    .app_data(web::Data::new(proxy::upstream_client()))
                    .app_data(web::Data::new(up.clone()))
                    .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                    .configure(|c| {
                        duet_telemetry::metrics::configure(c, metrics.clone(), Some(update.clone()))
                    })
                    .service(web::resource("/api/{tail:.*}").to(proxy::api))
                    .service(web::resource("/socket.io/{tail:.*}").to(proxy::socketio))
                    .configure(|c| pages::configure(c, pages.clone()))
            })?;
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

    pub fn router(&self) -> Arc<Router> {
        self.upstreams.router.clone()
    }

    /// Serves until SIGTERM / Ctrl-C; then stops accepting, asks every WebSocket client to reconnect
    /// (with 1001 "going away": through nginx it lands on another gateway) and exits once the requests
    /// in flight are done, within [`SHUTDOWN_SECS`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let closing = self.upstreams.closing.clone();
        tokio::spawn(async move {
            duet_telemetry::shutdown_signal().await;
            closing.cancel();
            handle.stop(true).await;
        });
        self.server.await
    }
}
