//! Request metrics for an actix-web service, exposed in the Prometheus text format on `/metrics`:
//! requests by route, method and status, and a latency histogram by route.
//!
//! Routes are the matched patterns (`/api/session/{code}`), never raw paths, so a client cannot
//! create label values at will; a request no route matched counts as `unmatched`.
//!
//! A service adds its own metrics to [`HttpMetrics::registry`] and, for values read at scrape time,
//! passes an `update` hook to [`configure`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::connections::ConnectionGate;
use crate::health::Readiness;

/// Latency buckets, seconds: sub-millisecond proxy hops up to Engine.IO long-polls, which a hub holds
/// for up to a ping interval (25 s).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// `duet_http_open_connections`, read from the gate at scrape time once one is watched.
    connections: IntGauge,
    gate: Arc<OnceLock<ConnectionGate>>,
    /// `duet_dependency_up{dependency}`, from checks run at scrape time once some are watched.
    dependencies: IntGaugeVec,
    checks: Arc<OnceLock<Readiness>>,
}

impl HttpMetrics {
    /// Metrics of service `service` (`duet_http_*{service="…"}`).
    pub fn new(service: &str) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("duet_http_requests_total", "HTTP requests answered.")
                .const_label("service", service),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "duet_http_request_duration_seconds",
                "Time to the response's head (a proxied long-poll counts its hold time).",
            )
            .const_label("service", service)
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        let connections = IntGauge::with_opts(
            Opts::new(
                "duet_http_open_connections",
                "HTTP connections open now (admitted, or waiting for their first byte).",
            )
            .const_label("service", service),
        )
        .expect("valid metric");
        let dependencies = IntGaugeVec::new(
            Opts::new(
                "duet_dependency_up",
                "1 if the dependency (database, bus, …) answered its check at this scrape, else 0.",
            )
            .const_label("service", service),
            &["dependency"],
        )
        .expect("valid metric");
        Self {
            registry,
            requests,
            latency,
            connections,
            gate: Arc::default(),
            dependencies,
            checks: Arc::default(),
        }
    }

    /// Runs `checks` at every scrape (each bounded as `/readyz`'s are) and exports their outcome
    /// as `duet_dependency_up{dependency}`; the first set watched is the one run.
    pub fn watch_dependencies(&self, checks: Readiness) {
        if self.checks.set(checks).is_ok() {
            let _ = self.registry.register(Box::new(self.dependencies.clone()));
        }
    }

    async fn check_dependencies(&self) {
        if let Some(checks) = self.checks.get() {
            for (name, r) in checks.run().await {
                self.dependencies
                    .with_label_values(&[name])
                    .set(i64::from(r.is_ok()));
            }
        }
    }

    /// Exports the number of connections `gate` holds open (`duet_http_open_connections`); the
    /// first gate watched is the one reported.
    pub fn watch_connections(&self, gate: &ConnectionGate) {
        if self.gate.set(gate.clone()).is_ok() {
            let _ = self.registry.register(Box::new(self.connections.clone()));
        }
    }

    /// Where a service registers metrics of its own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn observe(&self, route: &str, method: &str, status: u16, started: Instant) {
        self.requests
            .with_label_values(&[route, method, status.to_string().as_str()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition of everything registered.
    pub fn render(&self) -> String {
        if let Some(gate) = self.gate.get() {
            self.connections
                .set(i64::try_from(gate.open()).unwrap_or(i64::MAX));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// Middleware recording every request (`App::wrap(from_fn(metrics::record))` with the
/// [`HttpMetrics`] in app data).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        m.observe(&route, &method, res.status().as_u16(), started);
    }
    Ok(res)
}

/// Hook run before each scrape, to set gauges from the service's state.
pub type Update = Arc<dyn Fn() + Send + Sync>;

/// Adds `GET /metrics` and the metrics as app data. Wrap the app in
/// `actix_web::middleware::from_fn(duet_telemetry::metrics::record)` to count requests.
pub fn configure(cfg: &mut web::ServiceConfig, metrics: HttpMetrics, update: Option<Update>) {
    cfg.app_data(web::Data::new(metrics)).service(
        web::resource("/metrics")
            .route(
                crate::methods::get_or_head().to(move |m: web::Data<HttpMetrics>| {
                    if let Some(update) = &update {
                        update();
                    }
                    async move {
                        m.check_dependencies().await;
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4; charset=utf-8")
                            .body(m.render())
                    }
                }),
            )
            .default_service(crate::methods::not_allowed(crate::methods::GET_HEAD)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ReadyCheck;

    #[tokio::test]
    async fn dependencies_are_checked_at_each_scrape() {
        let m = HttpMetrics::new("x");
        // Nothing watched: no series.
        m.check_dependencies().await;
        assert!(!m.render().contains("duet_dependency_up"));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let d = down.clone();
        m.watch_dependencies(Readiness(vec![
            ReadyCheck::new("database", move || {
                let down = d.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    if down {
                        Err("refused".to_owned())
                    } else {
                        Ok(())
                    }
                }
            }),
            ReadyCheck::new("bus", || async { Ok(()) }),
        ]));
        m.check_dependencies().await;
        let text = m.render();
        assert!(
            text.contains("duet_dependency_up{dependency=\"database\",service=\"x\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("duet_dependency_up{dependency=\"bus\",service=\"x\"} 1"),
            "{text}"
        );
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        m.check_dependencies().await;
        assert!(m
            .render()
            .contains("duet_dependency_up{dependency=\"database\",service=\"x\"} 1"));
    }
}
