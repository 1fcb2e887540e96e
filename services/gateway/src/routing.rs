//! Which hub serves an interview: its placement record in Redis first
//! ([`duet_bus::placement`]), rendezvous hashing over the live hubs when it has none (or its hub is
//! gone), and the record written on first routing so every gateway agrees from then on.
//!
//! Requests carrying an Engine.IO `sid` belong to a session a hub already holds: they go where the
//! record says (a short local cache spares a Redis round trip per long-poll). Handshakes read the
//! record fresh, and are the only requests that may move an interview.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet_bus::{placement, Bus};
use duet_domain::SessionCode;

use crate::hubs::{HubRef, Hubs, FIRST_ROUND_WAIT};

/// How long a placement read from Redis is used for requests of established sessions before it is
/// read again. Records change only when a hub is gone, and such a session's next request fails
/// anyway; one second keeps a long-polling client from costing a Redis read per request.
pub const PLACEMENT_CACHE: Duration = Duration::from_secs(1);

/// Longest a request waits for Redis to read or write a placement. Redis answers in well under a
/// millisecond; past this it is away (restarting, unreachable), and the request is better served by
/// what this gateway knows than by waiting for the bus's own two-second timeout.
pub const PLACEMENT_TIMEOUT: Duration = Duration::from_millis(300);

/// Runs a placement call within [`PLACEMENT_TIMEOUT`].
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, duet_bus::BusError>>,
) -> Result<T, String> {
    match tokio::time::timeout(PLACEMENT_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer from redis within {PLACEMENT_TIMEOUT:?}")),
    }
}

/// What this gateway remembers of an interview it routes.
#[derive(Debug)]
struct Seen {
    hub: String,
    /// When the record was last read or written.
    checked: Instant,
    /// When a request of this interview last went through this gateway.
    used: Instant,
    /// WebSocket bridges of this interview open through this gateway.
    open: usize,
}

pub struct Router {
    pub hubs: Arc<Hubs>,
    bus: Option<Arc<dyn Bus>>,
    seen: Mutex<HashMap<String, Seen>>,
}

/// The canonical session code of a request's `session` parameter, when it is one.
pub fn session_code(raw: &str) -> Option<String> {
    SessionCode::parse(raw).ok().map(|c| c.to_string())
}

impl Router {
    pub fn new(hubs: Arc<Hubs>, bus: Option<Arc<dyn Bus>>) -> Self {
        Self {
            hubs,
            bus,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bus, while it answers (placement lookups skip it while it does not, and hashing decides).
    fn bus(&self) -> Option<&dyn Bus> {
        self.bus
            .as_deref()
            .filter(|_| self.hubs.placements_usable())
    }

    fn remember(&self, code: &str, hub: &str) {
        let now = Instant::now();
        let mut seen = self.seen();
        let e = seen.entry(code.to_owned()).or_insert_with(|| Seen {
            hub: hub.to_owned(),
            checked: now,
            used: now,
            open: 0,
        });
        e.hub = hub.to_owned();
        e.checked = now;
        e.used = now;
    }

    /// The hub this gateway last routed `code` to, if it is in use here.
    fn last_known(&self, code: &str) -> Option<String> {
        self.seen().get(code).map(|e| e.hub.clone())
    }

    /// The record's hub: from the cache when younger than `max_age`, else from Redis. When Redis has
    /// no record but this gateway carries the interview (Redis restarted and lost its data), the hub it
    /// carries it to is the answer, and the record is written again at once so the other gateways
    /// agree.
    async fn record(&self, code: &str, max_age: Duration) -> Option<String> {
        {
            let mut seen = self.seen();
            if let Some(e) = seen.get_mut(code) {
                if e.checked.elapsed() < max_age {
                    e.used = Instant::now();
                    return Some(e.hub.clone());
                }
            }
        }
        let Some(bus) = self.bus() else {
            return self.last_known(code);
        };
        match bounded(placement::placement(bus, code)).await {
            Ok(Some(hub)) => {
                self.remember(code, &hub);
                Some(hub)
            }
            Ok(None) => {
                let hub = self.last_known(code)?;
                if self.hubs.reachable(&hub).is_none() {
                    return Some(hub);
                }
                match bounded(placement::refresh(bus, code, &hub)).await {
                    Ok(holder) => {
                        self.remember(code, &holder);
                        Some(holder)
                    }
                    Err(_) => Some(hub),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "placement lookup failed; using what this gateway knows");
                self.last_known(code)
            }
        }
    }

    /// The hub for a request of an established Engine.IO session (one with a `sid`); with `fresh`,
    /// the record is read from Redis rather than from this gateway's cache.
    pub async fn for_session(&self, code: Option<&str>, key: &str, fresh: bool) -> Option<HubRef> {
        self.hubs.first_round(FIRST_ROUND_WAIT).await;
        if let Some(code) = code {
            let max_age = if fresh {
                Duration::ZERO
            } else {
                PLACEMENT_CACHE
            };
            if let Some(id) = self.record(code, max_age).await {
                if let Some(hub) = self.hubs.reachable(&id) {
                    return Some(hub);
                }
                // Only the hub that holds the session can serve it: if it is back (restarted
                // quickly), it is still the one to ask.
                if !self.hubs.still_down(&id).await {
                    if let Some(hub) = self.hubs.reachable(&id) {
                        return Some(hub);
                    }
                }
            }
        }
        self.hubs.candidates(key).into_iter().next()
    }

    /// The hub for a handshake: the interview's placed hub while it may take new connections,
    /// else the first live hub in rendezvous order, which is then claimed as its placement.
    pub async fn for_handshake(&self, code: Option<&str>, key: &str) -> Option<HubRef> {
        self.hubs.first_round(FIRST_ROUND_WAIT).await;
        let mut candidates = self.hubs.candidates(key);
        let Some(code) = code else {
            return candidates.into_iter().next();
        };
        let placed = self.record(code, Duration::ZERO).await;
        if let Some(id) = &placed {
            if let Some(hub) = candidates.iter().find(|h| &h.id == id) {
                return Some(hub.clone());
            }
            // Placed on a hub believed down: make sure before moving the interview away (a hub
            // restarted under its id is serving it again, and other gateways send it there).
            if !self.hubs.still_down(id).await {
                candidates = self.hubs.candidates(key);
                if let Some(hub) = candidates.iter().find(|h| &h.id == id) {
                    return Some(hub.clone());
                }
            }
        }
        let pick = candidates.first()?.clone();
        let Some(bus) = self.bus() else {
            return Some(pick);
        };
        match bounded(placement::claim(bus, code, &pick.id, placed.as_deref())).await {
            Ok(winner) if winner == pick.id => {
                if let Some(old) = placed {
                    tracing::info!(code, from = %old, to = %pick.id, "interview moved to another hub");
                }
                self.remember(code, &pick.id);
                Some(pick)
            }
            Ok(winner) => {
                // Another gateway placed it meanwhile: go there if this gateway sees it alive.
                self.remember(code, &winner);
                candidates
                    .into_iter()
                    .find(|h| h.id == winner)
                    .or(Some(pick))
            }
            Err(e) => {
                tracing::debug!(error = %e, "placement claim failed; hashing instead");
                Some(pick)
            }
        }
    }

    /// Notes a request of `code` served by `hub`, so the record is renewed while it is in use.
    pub fn used(&self, code: &str, hub: &str) {
        let mut seen = self.seen();
        if let Some(e) = seen.get_mut(code) {
            e.used = Instant::now();
            if e.hub != hub {
                e.hub = hub.to_owned();
            }
        } else {
            drop(seen);
            self.remember(code, hub);
        }
    }

    /// A WebSocket bridge of `code` opened (`+1`) or closed (`-1`).
    pub fn bridge(&self, code: &str, hub: &str, opened: bool) {
        let mut seen = self.seen();
        let now = Instant::now();
        let e = seen.entry(code.to_owned()).or_insert_with(|| Seen {
            hub: hub.to_owned(),
            checked: now,
            used: now,
            open: 0,
        });
        e.used = now;
        if opened {
            e.open += 1;
        } else {
            e.open = e.open.saturating_sub(1);
        }
    }

    /// Renews the records of the interviews in use through this gateway, and forgets the others.
    pub async fn renew(&self) {
        let Some(bus) = self.bus() else { return };
        let ttl = placement::PLACEMENT_TTL;
        let due: Vec<(String, String)> = {
            let mut seen = self.seen();
            seen.retain(|_, e| e.open > 0 || e.used.elapsed() < ttl);
            seen.iter()
                .map(|(code, e)| (code.clone(), e.hub.clone()))
                .collect()
        };
        for (code, hub) in due {
            // Only a hub that still serves: a dead hub's record is moved by the next handshake.
            if self.hubs.reachable(&hub).is_none() {
                continue;
            }
            match bounded(placement::refresh(bus, &code, &hub)).await {
                Ok(holder) if holder != hub => {
                    tracing::info!(code, hub, holder, "interview split over two hubs");
                    if let Some(e) = self.seen().get_mut(&code) {
                        e.checked = Instant::now();
                        e.hub = holder;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "placement renewal failed");
                    return;
                }
            }
        }
    }

    /// Interviews this gateway currently routes (for metrics).
    pub fn interviews(&self) -> usize {
        self.seen().len()
    }
}

/// Renews placement records every [`placement::PLACEMENT_REFRESH`], and at once when Redis is found
/// to have lost its data (the records are gone, and other gateways would place the interviews
/// afresh).
pub fn spawn_renewal(router: Arc<Router>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(placement::PLACEMENT_REFRESH) => {}
                _ = router.hubs.redis_reset.notified() => {}
            }
            router.renew().await;
        }
    });
}
