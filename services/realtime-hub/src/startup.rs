//! The standalone `realtime-hub` service: PostgreSQL + Redis (or SQLite + the in-process bus when
//! `DATABASE_URL` / `REDIS_URL` are unset), `/socket.io/`, `/healthz`, `/readyz`, `/metrics`.
//!
//! The standalone hub serves HTTP on the thread that runs the hub itself ([`serve_local`]): its
//! connections, interview workers, group-commit writer and bus tasks all share one event loop, so
//! handing an edit from a connection to the bus publisher, an ack from the writer to a
//! connection, or a relayed edit from the bus to the connections is a task wake-up, not a
//! cross-thread wake (eventfd write + context switch). actix-web's own server always runs its
//! workers on other threads than the caller's; on the one core a hub is given, those threads only
//! take turns. Scale a hub out by running more hubs, not more threads.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, Service, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::{App, HttpResponse};
use duet_bus::{Bus, LocalBus, RedisBus};
use duet_config::Settings;
use duet_storage::postgres::PgStorage;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::Storage;
use duet_telemetry::connections::{ConnectionGate, ConnectionLimits, DISCONNECT_TIMEOUT};
use duet_telemetry::health::{Readiness, ReadyCheck};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Hub, HubOptions};

/// Seconds the HTTP server gives open connections to finish on shutdown.
const HTTP_SHUTDOWN_SECS: u64 = 10;
/// Wait before accepting again after an accept error (out of file descriptors, say): the error
/// repeats until something is closed, so retrying at once would spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Accept errors are logged at most this often (with how many since the last line).
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    listener: TcpListener,
    readiness: Readiness,
    hub: Hub,
    gate: ConnectionGate,
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
            tokens: Some(crate::token_key(settings, true)?),
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
        Ok(Self {
            port,
            listener,
            readiness,
            hub,
            gate: ConnectionGate::new(ConnectionLimits::from_settings(&settings.http)),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until SIGTERM / Ctrl-C; then disconnects clients, commits every pending edit and
    /// deregisters before the process exits. Runs on the calling thread (an actix `System`, as
    /// `#[actix_web::main]` or `actix_web::rt::spawn` give).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            readiness,
            hub,
            gate,
            ..
        } = self;
        let stop = CancellationToken::new();
        let routes = hub.clone();
        let app = move || {
            let metrics_hub = routes.clone();
            // With tracing on, a span per HTTP request (handshakes, long-polls, WebSocket upgrades)
            // that continues an incoming `traceparent` (the gateway's); off, nothing per request.
            App::new()
                .wrap(actix_web::middleware::Condition::new(
                    duet_telemetry::trace::enabled(),
                    tracing_actix_web::TracingLogger::default(),
                ))
                .configure(|c| routes.configure(c))
                .configure(|c| duet_telemetry::health::configure(c, readiness.clone()))
                .service(duet_telemetry::methods::get("/metrics", move || {
                    let body = metrics_hub.metrics();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(body)
                    }
                }))
        };
        let server = actix_web::rt::spawn(serve_local(listener, gate, app, stop.clone()));
        duet_telemetry::shutdown_signal().await;
        // Clients first (told to reconnect elsewhere, pending edits committed), then HTTP.
        hub.shutdown().await;
        stop.cancel();
        server.await??;
        Ok(())
    }
}

/// Serves the actix-web app `app` makes on `listener`, on the calling thread (see the module
/// docs), until `stop` is cancelled; then stops accepting and gives open connections
/// up to `HTTP_SHUTDOWN_SECS` (10 s) to finish (what is left ends with the runtime).
///
/// Every connection passes `gate` (`duet_telemetry::connections`): silent ones are closed after
/// the handshake timeout, and at the connection limit the longest-silent one makes room, so the
/// accept loop never stops taking connections and a health probe is never queued behind silent
/// ones. An accept error (out of file descriptors, say) is logged at most every
/// [`ACCEPT_ERROR_LOG_EVERY`] and retried after [`ACCEPT_ERROR_BACKOFF`].
pub async fn serve_local<F, T, B>(
    listener: TcpListener,
    gate: ConnectionGate,
    app: F,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    F: Fn() -> App<T>,
    B: actix_web::body::MessageBody + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let limits = gate.limits().clone();
    let stopping = stop.clone();
    let factory = HttpService::build()
        // Idle keep-alive connections (the gateways' pools) close as soon as the server stops, so a
        // stopping hub exits once its requests are done instead of after the keep-alive timeout.
        .graceful_shutdown_signal(move || {
            let stopping = stopping.clone();
            async move { stopping.cancelled().await }
        })
        .keep_alive(limits.keep_alive)
        .client_request_timeout(limits.handshake_timeout)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .local_addr(listener.local_addr()?)
        // A WebSocket leaves actix-http's dispatcher (and its two 8 KiB buffers) once its
        // handshake is answered: duet-socketio's takeover.
        .upgrade(duet_socketio::takeover::upgrades(app()))
        .finish(map_config(app().into_factory(), |_| AppConfig::default()));
    let factory = gate.wrap(duet_telemetry::connections::http1(factory));
    let service = factory
        .new_service(())
        .await
        .map_err(|()| anyhow::anyhow!("the HTTP service did not start"))?;
    let connections = TaskTracker::new();
    let mut accept_errors = 0u64;
    let mut accept_error_logged: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so without flooding the log.
                    accept_errors += 1;
                    if accept_error_logged.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                        tracing::warn!(error = %e, errors = accept_errors, open = gate.open(), "accept failed");
                        accept_error_logged = Some(Instant::now());
                        accept_errors = 0;
                    }
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        // Counts the connection now (closing one to make room, or this one, at the limit), so
        // a burst of accepts cannot outrun the count.
        let connection = service.call(stream);
        actix_web::rt::spawn(connections.track_future(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = ?e, "HTTP connection ended with an error");
            }
        }));
        if gate.open() > gate.limits().max_connections {
            // A connection was just closed to make room: let its task run and release its file
            // before accepting the next.
            tokio::task::yield_now().await;
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(Duration::from_secs(HTTP_SHUTDOWN_SECS), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// Serves `server` until SIGTERM / Ctrl-C, then shuts the hub down first (clients are told to
/// reconnect elsewhere, pending edits are committed) and only then stops the HTTP server, draining it.
/// Used by the all-in-one `duet` (the standalone hub serves with [`serve_local`] instead).
pub async fn serve_until_signal(server: actix_web::dev::Server, hub: &Hub) -> anyhow::Result<()> {
    let handle = server.handle();
    let server = tokio::spawn(server);
    duet_telemetry::shutdown_signal().await;
    hub.shutdown().await;
    handle.stop(true).await;
    server.await??;
    Ok(())
}
