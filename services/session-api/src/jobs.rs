//! Background jobs of the session-API (and of `duet`, which runs the same ones): the webhook
//! dispatcher and the retention job. Both work from the database only, so any number of replicas
//! may run them together: a webhook delivery is claimed by one dispatcher at a time
//! ([`Storage::claim_webhooks`]), and erasing an interview another replica erased already is a
//! no-op ([`Storage::erase_session`] answers `false`).
//!
//! Webhooks: each delivery is a `POST` of `{"type","id","session_code","at","record_url"}` with
//! `Duet-Timestamp: <unix seconds>`, `Duet-Signature: v1=<hex HMAC-SHA256(secret,
//! "<timestamp>.<body>")>` and `Duet-Delivery: <delivery id>` (the same on every attempt). A 2xx
//! answer delivers it; anything else (another status, a refused connection, no answer within
//! `webhook.timeout_ms`) is retried after `retry_base_ms`, then twice that, and so on, until
//! `max_attempts`, when it is given up. Outcomes are logged and counted
//! (`duet_webhook_deliveries_total{outcome="delivered"|"retried"|"failed"}`). Nothing waits for a
//! delivery: the change it announces was committed with its outbox row.

use std::sync::Arc;
use std::time::Duration;

use duet_config::Settings;
use duet_storage::{Storage, WebhookDelivery};
use hmac::{Hmac, Mac};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::routes::rfc3339;

/// Deliveries claimed per round.
const CLAIM_BATCH: i64 = 32;
/// Interviews erased per round of the retention job.
const RETENTION_BATCH: i64 = 100;

/// The jobs' counters, registered on the service's `/metrics`.
#[derive(Clone)]
pub struct JobMetrics {
    deliveries: IntCounterVec,
    erased: IntCounter,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl JobMetrics {
    pub fn new() -> Self {
        Self {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "duet_webhook_deliveries_total",
                    "Webhook delivery attempts by outcome (delivered, retried, failed: given up).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            erased: IntCounter::new(
                "duet_retention_erased_total",
                "Interviews erased by the retention job.",
            )
            .expect("valid metric"),
        }
    }

    /// Adds the counters to `registry` (once per registry).
    pub fn register(&self, registry: &Registry) {
        for c in [
            Box::new(self.deliveries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.erased.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "job metrics not registered");
            }
        }
    }

    /// The counters alone, in the Prometheus text format (for `duet`'s metrics listener).
    pub fn render(&self) -> String {
        let registry = Registry::new();
        self.register(&registry);
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap_or_default()
    }
}

/// The running jobs; dropping this stops them.
pub struct Jobs {
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Starts the webhook dispatcher (always: without a URL it discards what is queued, so the outbox
/// never grows) and, when `retention.days` is set, the retention job.
pub fn spawn(settings: &Settings, storage: Arc<dyn Storage>, metrics: JobMetrics) -> Jobs {
    let mut handles = Vec::new();
    let dispatcher = Dispatcher::new(settings, storage.clone(), metrics.clone());
    handles.push(tokio::spawn(dispatcher.run()));
    if settings.retention.days > 0 {
        let days = settings.retention.days;
        let every = Duration::from_secs(settings.retention.interval_secs);
        handles.push(tokio::spawn(retention(storage, days, every, metrics)));
    }
    Jobs { handles }
}

/// Erases, every `every`, the interviews expired `days` ago, in batches.
async fn retention(storage: Arc<dyn Storage>, days: u64, every: Duration, metrics: JobMetrics) {
    let keep = time::Duration::days(i64::try_from(days).unwrap_or(i64::MAX / 86_400 / 2));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff = OffsetDateTime::now_utc()
            .checked_sub(keep)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match erase_expired(storage.as_ref(), cutoff, &metrics).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(erased = n, %cutoff, "retention: expired interviews erased"),
            Err(e) => tracing::warn!(error = %e, "retention: round failed; retried next time"),
        }
    }
}

/// One round of the retention job: every interview expired at `cutoff`, `RETENTION_BATCH` at a
/// time. Returns how many this replica erased.
pub async fn erase_expired(
    storage: &dyn Storage,
    cutoff: OffsetDateTime,
    metrics: &JobMetrics,
) -> duet_storage::Result<usize> {
    let mut erased = 0;
    loop {
        let ids = storage.expired_sessions(cutoff, RETENTION_BATCH).await?;
        let mut progress = false;
        for id in &ids {
            if storage.erase_session(*id).await? {
                tracing::info!(session = %id, "retention: interview erased");
                metrics.erased.inc();
                erased += 1;
                progress = true;
            }
        }
        // A full batch may have more behind it; one that erased nothing (another replica got
        // there first) is left to the next round rather than spun on.
        if (ids.len() as i64) < RETENTION_BATCH || !progress {
            return Ok(erased);
        }
    }
}

/// What an attempt came to.
enum Attempt {
    Delivered,
    Failed(String),
}

struct Dispatcher {
    storage: Arc<dyn Storage>,
    url: Option<String>,
    secret: Option<SecretString>,
    public_url: String,
    client: reqwest::Client,
    max_attempts: i32,
    retry_base: Duration,
    poll: Duration,
    lease_secs: i64,
    metrics: JobMetrics,
}

impl Dispatcher {
    fn new(settings: &Settings, storage: Arc<dyn Storage>, metrics: JobMetrics) -> Self {
        let w = &settings.webhook;
        let timeout = Duration::from_millis(w.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Duet-Webhooks/1")
            .build()
            .unwrap_or_default();
        let public_url = w
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", settings.host, settings.port));
        Self {
            storage,
            url: w.url.clone(),
            secret: w.secret.clone(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            client,
            max_attempts: i32::try_from(w.max_attempts).unwrap_or(i32::MAX),
            retry_base: Duration::from_millis(w.retry_base_ms),
            poll: Duration::from_millis(w.poll_interval_ms),
            // Past the attempt's own timeout: a dispatcher that dies mid-attempt leaves the
            // delivery to another one then.
            lease_secs: i64::try_from(w.timeout_ms / 1000).unwrap_or(3600) * 2 + 10,
            metrics,
        }
    }

    async fn run(self) {
        let this = Arc::new(self);
        loop {
            let now = OffsetDateTime::now_utc();
            let claimed = match this
                .storage
                .claim_webhooks(now, this.lease_secs, CLAIM_BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot claim deliveries; retrying");
                    tokio::time::sleep(this.poll).await;
                    continue;
                }
            };
            let full = claimed.len() as i64 == CLAIM_BATCH;
            let rounds: Vec<_> = claimed
                .into_iter()
                .map(|d| {
                    let this = this.clone();
                    tokio::spawn(async move { this.handle(d).await })
                })
                .collect();
            for r in rounds {
                let _ = r.await;
            }
            if !full {
                tokio::time::sleep(this.poll).await;
            }
        }
    }

    async fn handle(&self, d: WebhookDelivery) {
        let (Some(url), Some(secret)) = (&self.url, &self.secret) else {
            // No receiver configured: nothing to announce to.
            self.settle(d.id, None).await;
            return;
        };
        match self.attempt(url, secret, &d).await {
            Attempt::Delivered => {
                tracing::info!(delivery = d.id, kind = d.kind.as_str(), code = %d.session_code, attempts = d.attempts, "webhook delivered");
                self.metrics
                    .deliveries
                    .with_label_values(&["delivered"])
                    .inc();
                self.settle(d.id, None).await;
            }
            Attempt::Failed(why) if d.attempts >= self.max_attempts => {
                tracing::warn!(delivery = d.id, kind = d.kind.as_str(), code = %d.session_code, attempts = d.attempts, error = %why, "webhook given up");
                self.metrics.deliveries.with_label_values(&["failed"]).inc();
                self.settle(d.id, None).await;
            }
            Attempt::Failed(why) => {
                let exp = u32::try_from(d.attempts.saturating_sub(1))
                    .unwrap_or(0)
                    .min(20);
                let wait = self.retry_base.saturating_mul(1 << exp);
                tracing::info!(delivery = d.id, kind = d.kind.as_str(), code = %d.session_code, attempts = d.attempts, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook failed; retrying");
                self.metrics
                    .deliveries
                    .with_label_values(&["retried"])
                    .inc();
                let at = OffsetDateTime::now_utc() + wait;
                self.settle(d.id, Some(at)).await;
            }
        }
    }

    /// Finishes the delivery (`None`) or makes it due again at `retry`. A storage failure here
    /// leaves it leased: it is attempted again when the lease ends.
    async fn settle(&self, id: i64, retry: Option<OffsetDateTime>) {
        let result = match retry {
            None => self.storage.finish_webhook(id).await,
            Some(at) => self.storage.retry_webhook(id, at).await,
        };
        if let Err(e) = result {
            tracing::warn!(delivery = id, error = %e, "webhooks: outcome not stored; the delivery is attempted again after its lease");
        }
    }

    async fn attempt(&self, url: &str, secret: &SecretString, d: &WebhookDelivery) -> Attempt {
        let body = json!({
            "type": d.kind.as_str(),
            "id": d.session_id,
            "session_code": d.session_code,
            "at": rfc3339(d.at),
            "record_url": format!("{}/api/session/{}/record", self.public_url, d.session_code),
        })
        .to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature = sign(secret.expose_secret(), &timestamp, &body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("duet-timestamp", &timestamp)
            .header("duet-signature", format!("v1={signature}"))
            .header("duet-delivery", d.id.to_string())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => Attempt::Failed(format!("answered {}", r.status())),
            Err(e) if e.is_timeout() => Attempt::Failed("no answer in time".into()),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`: what `Duet-Signature` carries after `v1=`.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature of a known input (computed independently with `openssl dgst -sha256 -hmac`).
    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        assert_eq!(
            sign("key", "1700000000", "{}"),
            "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
