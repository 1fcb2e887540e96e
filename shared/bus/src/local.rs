//! In-process bus, for the all-in-one binary (one process, so nothing to relay between hubs).
//!
//! Same semantics as [`crate::redis::RedisBus`] where they can apply: per-channel fan-out, a bounded
//! queue per subscription with [`BusEvent::Missed`] on overflow, a channel forgotten when its last
//! subscription is dropped, and keys that expire (checked when read). There is no connection to lose,
//! so `Missed` only ever means overflow here, and no call ever fails for lack of a server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::fanout::Registry;
use crate::{Bus, BusError, Skip, Subscription};

/// The in-process bus. Cloning it gives another handle to the same bus.
#[derive(Clone, Default)]
pub struct LocalBus {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    registry: Registry,
    /// key → (value, when it expires)
    keys: Mutex<HashMap<String, (String, Instant)>>,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, (String, Instant)>> {
        // No code panics while holding this lock half-way through an update.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When a key set now with `ttl_secs` expires. Redis rejects `SET .. EX 0`; refused here too so both
/// backends agree.
fn expiry(ttl_secs: u64) -> Result<Instant, BusError> {
    if ttl_secs == 0 {
        return Err(BusError::Other("ttl must be at least one second".into()));
    }
    Instant::now()
        .checked_add(Duration::from_secs(ttl_secs))
        .ok_or_else(|| BusError::Other(format!("ttl of {ttl_secs} s is out of range")))
}

/// Removes the subscriber from the registry when its [`Subscription`] is dropped.
struct Membership {
    shared: Arc<Shared>,
    channel: String,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shared.registry.remove(&self.channel, self.id);
    }
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many live subscriptions this bus holds on `channel` (for metrics and tests).
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shared.registry.subscriber_count(channel)
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        self.shared.registry.deliver(channel, &payload);
        Ok(())
    }

    async fn subscribe_skipping(
        &self,
        channel: &str,
        skip: Option<Skip>,
    ) -> Result<Subscription, BusError> {
        let (id, rx) = self.shared.registry.add(channel, skip);
        let membership = Membership {
            shared: Arc::clone(&self.shared),
            channel: channel.to_owned(),
            id,
        };
        Ok(Subscription {
            channel: channel.to_owned(),
            rx,
            _guard: Box::new(membership),
        })
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn set_with_ttl(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), BusError> {
        let expires = expiry(ttl_secs)?;
        self.shared
            .keys()
            .insert(key.to_owned(), (value.to_owned(), expires));
        Ok(())
    }

    async fn count(&self, key: &str, ttl_secs: u64) -> Result<u64, BusError> {
        let expires = expiry(ttl_secs)?;
        let mut keys = self.shared.keys();
        let now = std::time::Instant::now();
        let entry = keys
            .entry(key.to_owned())
            .or_insert_with(|| ("0".to_owned(), expires));
        if entry.1 <= now {
            *entry = ("0".to_owned(), expires);
        }
        let n = entry.0.parse::<u64>().unwrap_or(0) + 1;
        entry.0 = n.to_string();
        Ok(n)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, BusError> {
        let now = Instant::now();
        Ok(self
            .shared
            .keys()
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone()))
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        replacing: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String, BusError> {
        let expires = expiry(ttl_secs)?;
        let now = Instant::now();
        let mut keys = self.shared.keys();
        if let Some((current, until)) = keys.get(key) {
            if *until > now && current != value && Some(current.as_str()) != replacing {
                return Ok(current.clone());
            }
        }
        keys.insert(key.to_owned(), (value.to_owned(), expires));
        Ok(value.to_owned())
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, BusError> {
        let now = Instant::now();
        let mut keys = self.shared.keys();
        // Expiry is checked on read: drop what has expired, then list what is left.
        keys.retain(|_, (_, expires)| *expires > now);
        let mut live: Vec<String> = keys
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        live.sort();
        Ok(live)
    }
}
