//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: every dependency answers).
//!
//! A service registers one [`ReadyCheck`] per dependency (database, Redis); `/readyz` runs them all
//! concurrently, each bounded by [`CHECK_TIMEOUT`], and answers 503 naming the ones that failed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

/// A dependency that takes longer than this to answer counts as down: a readiness probe must not hang.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// One named readiness check.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: &'static str,
    check: Arc<CheckFn>,
}

impl ReadyCheck {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            check: Arc::new(move || Box::pin(f())),
        }
    }
}

/// The checks `/readyz` runs.
#[derive(Clone, Default)]
pub struct Readiness(pub Vec<ReadyCheck>);

/// Mounts `/healthz` and `/readyz` (`GET` and `HEAD`; 405 for other methods).
pub fn configure(cfg: &mut web::ServiceConfig, readiness: Readiness) {
    cfg.app_data(web::Data::new(readiness))
        .service(crate::methods::get("/healthz", healthz))
        .service(crate::methods::get("/readyz", readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

impl Readiness {
    /// Runs every check at once, each bounded by [`CHECK_TIMEOUT`]: `(name, result)` in order.
    pub async fn run(&self) -> Vec<(&'static str, Result<(), String>)> {
        futures_util::future::join_all(self.0.iter().map(|c| async move {
            let r = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            (c.name, r)
        }))
        .await
    }
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let results = readiness.run().await;
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    if failed.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        for (name, r) in &results {
            if let Err(e) = r {
                tracing::warn!(check = name, error = %e, "readiness check failed");
            }
        }
        HttpResponse::ServiceUnavailable().json(json!({
            "error": {"code": "unavailable", "message": format!("not ready: {}", failed.join(", "))}
        }))
    }
}
