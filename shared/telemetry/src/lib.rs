//! Operations basics for every Duet service: logging (`tracing`, text or JSON), graceful-shutdown
//! signals, connection limits for the HTTP servers ([`connections`]), the `/healthz` / `/readyz`
//! endpoints ([`health`]), the HTTP method conventions (`HEAD` wherever `GET`, 405 with `Allow` for
//! other methods: [`methods`]) and request metrics on `/metrics` ([`metrics`]).

pub mod connections;
pub mod health;
pub mod methods;
pub mod metrics;

use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

/// Installs the global subscriber. `filter` uses `tracing` directives (`info,duet=debug`); `RUST_LOG`
/// overrides it when set. Calling it twice is harmless (the second call is ignored), so tests may too.
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .flatten_event(true),
            )
            .try_init()
    } else {
        registry.with(fmt::layer().with_target(true)).try_init()
    };
    // Already initialised (tests start several apps in one process): keep the first.
    drop(result);
}

/// Resolves on SIGTERM or Ctrl-C, whichever comes first; used for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
