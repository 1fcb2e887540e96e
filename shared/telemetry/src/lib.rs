//! Operations basics for every Duet service: logging (`tracing`, text or JSON), graceful-shutdown
//! signals, connection limits for the HTTP servers ([`connections`]), the `/healthz` / `/readyz`
//! endpoints ([`health`]), the HTTP method conventions (`HEAD` wherever `GET`, 405 with `Allow` for
//! other methods: [`methods`]), request metrics on `/metrics` ([`metrics`]) and OpenTelemetry
//! traces over OTLP, off by default ([`trace`]).

pub mod connections;
pub mod health;
pub mod methods;
pub mod metrics;
pub mod trace;

use duet_config::{LogFormat, Settings};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

pub use trace::{TraceError, Tracing};

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs the global subscriber for `service` (the name its spans carry): logs filtered by
/// `settings.log_level` (`tracing` directives such as `info,duet=debug`; `RUST_LOG` overrides it),
/// as text or JSON, and — when `settings.otel` names an endpoint — spans at `INFO` and above
/// exported over OTLP ([`trace`]), whatever the log level. Keep the returned [`Tracing`] until exit:
/// dropping it flushes the spans still queued.
///
/// Calling it twice is harmless (the second subscriber is ignored, and so is its exporter), so
/// tests may too.
pub fn init(service: &str, settings: &Settings) -> Result<Tracing, TraceError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let logs: BoxedLayer = match settings.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt::layer().with_target(true).with_filter(filter).boxed(),
    };
    let mut layers = vec![logs];
    let tracing = match trace::pipeline(service, &settings.otel)? {
        Some((tracing, tracer)) => {
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(LevelFilter::INFO)
                    .boxed(),
            );
            tracing
        }
        None => Tracing::off(),
    };
    // Already initialised (tests start several apps in one process): keep the first.
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
    {
        tracing.mark_enabled();
    }
    Ok(tracing)
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
