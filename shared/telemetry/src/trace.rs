//! Distributed traces over OpenTelemetry, off by default.
//!
//! With `otel.endpoint` set (`DUET_OTEL__ENDPOINT`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`),
//! [`crate::init`] adds a `tracing-opentelemetry` layer whose spans a batch exporter posts to
//! `<endpoint>/v1/traces` (OTLP/HTTP, protobuf or JSON), and installs the W3C TraceContext
//! propagator. Then:
//! - every HTTP service's request span (`tracing-actix-web`) continues the trace of an incoming
//!   `traceparent` header;
//! - the gateway passes its request span's context on to the session-API or hub it proxies to
//!   ([`inject`]);
//! - the hub gives each edit a span, and passes its context to the other hubs with the relayed edit
//!   ([`ids`] / [`set_remote_parent`]), so a cross-hub edit is one trace.
//!
//! Without an endpoint nothing is installed and [`enabled`] is false: callers check it before they
//! make a span or a context, so the hot paths pay one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};

use duet_config::{OtelSettings, OtlpProtocol};
use opentelemetry::propagation::Injector;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an endpoint was configured and the layer installed).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The exporter's pipeline while tracing is on: flushes what is queued when dropped (at exit).
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Tracing is off.
    pub(crate) fn off() -> Self {
        Self { provider: None }
    }

    /// Exports every span ended so far, now (tests; shutdown does it too).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "could not flush the trace exporter");
            }
        }
    }

    pub(crate) fn mark_enabled(&self) {
        if self.provider.is_some() {
            ENABLED.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
            }
        }
    }
}

/// The exporter pipeline and the tracer for `service`, when `settings` name an endpoint.
pub(crate) fn pipeline(
    service: &str,
    settings: &OtelSettings,
) -> Result<Option<(Tracing, opentelemetry_sdk::trace::Tracer)>, TraceError> {
    let Some(base) = settings.endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let endpoint = format!("{}/v1/traces", base.trim_end_matches('/'));
    let protocol = match settings.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| TraceError::Exporter { endpoint, source })?;
    // OTEL_SERVICE_NAME, when set, names the service instead.
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(service.to_owned());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some((
        Tracing {
            provider: Some(provider),
        },
        tracer,
    )))
}

struct HeaderSink<F>(F);

impl<F: FnMut(&str, String)> Injector for HeaderSink<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

/// Writes `span`'s trace context as W3C headers (`traceparent`, `tracestate`) through `set`, for a
/// request to another service. Does nothing while tracing is off.
pub fn inject(span: &tracing::Span, set: impl FnMut(&str, String)) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut sink = HeaderSink(set);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut sink));
}

/// A span's identity in binary, as carried between hubs: trace id, span id, sampled.
pub type Ids = ([u8; 16], [u8; 8], bool);

/// `span`'s trace and span id, when tracing is on and the span is part of a trace.
pub fn ids(span: &tracing::Span) -> Option<Ids> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        (
            sc.trace_id().to_bytes(),
            sc.span_id().to_bytes(),
            sc.is_sampled(),
        )
    })
}

/// Makes `span` (not yet entered) the child of a span in another process, known by its [`Ids`].
pub fn set_remote_parent(span: &tracing::Span, (trace, id, sampled): Ids) {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(id),
        flags,
        true,
        TraceState::default(),
    );
    if sc.is_valid() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}
