//! Duet's message bus: per-channel publish/subscribe between hubs.
//!
//! Two backends behind one trait: [`redis::RedisBus`] (Redis pub/sub, the scaled services) and
//! [`local::LocalBus`] (in-process, the all-in-one binary). Delivery is at-most-once, as Redis pub/sub is:
//! after a connection outage (or when a slow subscriber's queue overflowed) a subscriber receives
//! [`BusEvent::Missed`] on the affected channels, telling it that messages may have been missed so it can
//! resync.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

mod fanout;
pub mod local;
pub mod placement;
pub mod redis;
pub mod relay;

pub use local::LocalBus;
pub use redis::RedisBus;

/// How many messages a subscription buffers before it counts as slow.
///
/// A subscriber that lets this many messages pile up loses the next ones and receives
/// [`BusEvent::Missed`] instead; nobody else waits for it. One more slot than this is reserved in each
/// queue so that the `Missed` always fits. 256 covers a burst of keystrokes from a whole interview while
/// the consumer is briefly busy, and bounds the memory one stuck subscriber can hold.
pub const SUBSCRIPTION_QUEUE_CAPACITY: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus error: {0}")]
    Other(String),
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message published on the channel.
    Message(Bytes),
    /// Messages on this channel may have been lost: the connection to the bus dropped and is back (the
    /// subscription is live again), or this subscriber fell behind and its queue overflowed.
    Missed,
}

/// Decides from a payload's bytes that a subscriber does not want it — typically its own messages,
/// which Redis pub/sub delivers back to the publisher. Skipped messages never reach the
/// subscriber's queue (no copy, no wake-up).
pub type Skip = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A live subscription. Dropping it (or calling [`Subscription::unsubscribe`]) ends it; the backend
/// unsubscribes from the channel when its last local subscription is gone.
pub struct Subscription {
    pub channel: String,
    pub rx: mpsc::Receiver<BusEvent>,
    pub(crate) _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.rx.recv().await
    }
    pub fn unsubscribe(self) {}
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError>;
    /// Publishes several messages, in order, in one round trip where the backend can (Redis: one
    /// pipeline). A busy publisher pays one command's overhead per round instead of per message.
    async fn publish_many(&self, messages: &[(Arc<str>, Bytes)]) -> Result<(), BusError> {
        for (channel, payload) in messages {
            self.publish(channel, payload.clone()).await?;
        }
        Ok(())
    }
    async fn subscribe(&self, channel: &str) -> Result<Subscription, BusError> {
        self.subscribe_skipping(channel, None).await
    }
    /// Like [`Bus::subscribe`], leaving out the messages `skip` matches.
    async fn subscribe_skipping(
        &self,
        channel: &str,
        skip: Option<Skip>,
    ) -> Result<Subscription, BusError>;
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), BusError>;
    /// Key/value with expiry, for hub registration (`duet:hub:<id>` with a heartbeat TTL).
    async fn set_with_ttl(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), BusError>;
    /// Keys with the given prefix that have not expired, for discovering live hubs.
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, BusError>;
    /// The value of a key that has not expired (a hub's registered URL).
    async fn get(&self, key: &str) -> Result<Option<String>, BusError>;
    /// Adds one to a counter that expires `ttl_secs` after its first count, and returns it: what
    /// several processes count together (the REST API's per-client limits, shared by its replicas).
    /// The default is a plain read-then-write, atomic only where nothing else writes the key; both
    /// backends here override it with an atomic one.
    async fn count(&self, key: &str, ttl_secs: u64) -> Result<u64, BusError> {
        let n = match self.get(key).await? {
            Some(v) => v.parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        self.set_with_ttl(key, &n.to_string(), ttl_secs).await?;
        Ok(n)
    }
    /// Compare-and-set with expiry, for records several processes write (an interview's placement):
    /// atomically sets `key` → `value` for `ttl_secs` when the key is absent, already holds `value`
    /// (which renews it), or holds `replacing`; otherwise leaves it alone. Returns the value the key
    /// holds afterwards, so the caller learns who won.
    ///
    /// The default is a plain read-then-write, atomic only where nothing else writes the key; both
    /// backends here override it with an atomic one.
    async fn claim(
        &self,
        key: &str,
        value: &str,
        replacing: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String, BusError> {
        match self.get(key).await? {
            Some(current) if current != value && Some(current.as_str()) != replacing => Ok(current),
            _ => {
                self.set_with_ttl(key, value, ttl_secs).await?;
                Ok(value.to_owned())
            }
        }
    }
}
