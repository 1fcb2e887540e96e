//! Redis bus, for the scaled services: hubs relay interview traffic to each other over Redis pub/sub,
//! and register themselves with keys that expire.
//!
//! # Connections
//!
//! A [`RedisBus`] holds two connections:
//!
//! - **commands** (`PUBLISH`, `PING`, `SET`, `SCAN`): a [`ConnectionManager`], which reconnects by
//!   itself. Every call is bounded by [`COMMAND_TIMEOUT`], including the time spent waiting for a
//!   reconnection, so while Redis is down a call returns [`BusError::Unavailable`] instead of hanging.
//! - **pub/sub**: one dedicated connection ([`PubSub`], split into sink and stream), driven by one
//!   background task. The task `SUBSCRIBE`s a channel when its first local [`Subscription`] is created
//!   and `UNSUBSCRIBE`s when the last one is dropped, and hands every message to the channel's local
//!   subscribers (see [`crate::fanout`] for the bounded queues).
//!
//! # Outages
//!
//! When the pub/sub connection drops (or stops answering the keep-alive `PING`), the task reconnects
//! with exponential backoff ([`RECONNECT_MIN_DELAY`] up to [`RECONNECT_MAX_DELAY`], for as long as it
//! takes), subscribes again to every channel that still has local subscribers, and then sends
//! [`BusEvent::Missed`](crate::BusEvent::Missed) to every one of them: Redis pub/sub does not keep
//! messages for absent subscribers, so anything published during the outage is gone and the hubs must
//! resync. Before sending `Missed` it also checks that the command connection is back, so a subscriber
//! that reacts to `Missed` by publishing does not trip over a connection that has not noticed yet.
//!
//! While the pub/sub connection is down, [`Bus::subscribe`] and [`Bus::ping`] return
//! [`BusError::Unavailable`]; subscriptions already held stay valid and resume after the `Missed`.
//!
//! The redis crate can resubscribe by itself (RESP3 push connections under a [`ConnectionManager`]
//! with automatic resubscription), but it discards a failed resubscription silently and gives no
//! signal that a reconnection happened, so a subscriber could never be told to resync. The contract
//! here needs both, hence the task of our own over the crate's `PubSub` connection.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub, PubSubSink};
use ::redis::{
    Client, Cmd, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, RetryMethod, Value,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, sleep, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::fanout::Registry;
use crate::{Bus, BusError, Skip, Subscription};

/// Longest wait for one TCP connection (and handshake) to Redis. Redis sits next to the services and
/// answers in milliseconds; a connection not made in two seconds is not coming, and waiting longer
/// only delays the next attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest any one bus call (`publish`, `ping`, `set_with_ttl`, one `SCAN` round, one `SUBSCRIBE`) may
/// take, including waiting for a reconnection in progress. Redis answers these in well under a
/// millisecond when healthy; past two seconds the caller is better served by `Unavailable` (edits are
/// persisted in the database anyway, and the hub resyncs on `Missed`) than by a stalled task.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest [`Bus::subscribe`] waits for the pub/sub task to confirm the `SUBSCRIBE`. Larger than
/// [`COMMAND_TIMEOUT`] because the request may queue behind the task's own work (a resubscription or a
/// keep-alive ping, each bounded by `COMMAND_TIMEOUT`).
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// First delay before reconnecting after a connection is lost: short, because the usual cause is a
/// Redis restart or failover that is over in a moment.
pub const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);

/// Cap on the (doubling) reconnect delay. One attempt a second per hub is nothing for Redis, and it
/// bounds how long after Redis comes back the hubs notice.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Reconnection attempts the command [`ConnectionManager`] makes before it waits for the next call to
/// try again. With [`RECONNECT_MAX_DELAY`] this keeps it trying through a typical restart (~10 s).
pub const COMMAND_RECONNECT_ATTEMPTS: usize = 12;

/// How often the pub/sub connection is pinged. A connection whose peer vanished without closing it
/// (a host lost, a network partition) would otherwise look healthy for many minutes while delivering
/// nothing; a ping that goes unanswered for [`COMMAND_TIMEOUT`] makes the task reconnect.
pub const PUBSUB_PING_INTERVAL: Duration = Duration::from_secs(10);

/// How many times, after the pub/sub connection is back, the command connection is pinged before the
/// `Missed` events go out anyway. Two suffice in practice: the first may only discover that the old
/// connection is dead (which starts its reconnection), the second waits for the new one.
const COMMAND_WARM_UP_ATTEMPTS: usize = 3;

/// [`Bus::claim`] as one atomic step on the server: `KEYS[1]` the key; `ARGV` the value, the TTL in
/// seconds, whether a value may be replaced (`1`/`0`) and that value. Redis runs a script without
/// interleaving other commands, so two gateways claiming at once cannot both win.
const CLAIM_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] or (ARGV[3] == '1' and current == ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
return current
"#;

/// Keys asked for per `SCAN` round (a hint to Redis, which may return more or fewer).
const SCAN_BATCH: usize = 100;

/// The Redis-backed bus. Cloning it gives another handle on the same connections.
///
/// Subscriptions stay valid after every handle is dropped; the background task stops once the last
/// handle and the last subscription are gone.
#[derive(Clone)]
pub struct RedisBus {
    commands: ConnectionManager,
    shared: Arc<Shared>,
}

/// What the handles and subscriptions share with the pub/sub task (which holds it weakly, so it stops
/// when they are all gone).
struct Shared {
    registry: Registry,
    requests: mpsc::UnboundedSender<Request>,
    /// Whether the pub/sub connection is up, for [`Bus::ping`].
    pubsub_up: AtomicBool,
}

enum Request {
    /// A subscription to `channel` was added: make sure the connection is subscribed, then answer.
    Subscribe {
        channel: String,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    /// The last subscription to `channel` was dropped.
    Release { channel: String },
}

/// Removes a subscriber when its [`Subscription`] is dropped, and has the channel unsubscribed when it
/// was the last one.
struct Membership {
    shared: Arc<Shared>,
    channel: String,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.shared.registry.remove(&self.channel, self.id) {
            let channel = std::mem::take(&mut self.channel);
            // Fails only if the task has stopped, and then there is nothing to unsubscribe.
            let _ = self.shared.requests.send(Request::Release { channel });
        }
    }
}

impl RedisBus {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`): the command connection
    /// and the pub/sub connection must both come up, each within [`CONNECT_TIMEOUT`].
    ///
    /// The pub/sub task and the connections' drivers are spawned on the Tokio runtime this is called
    /// from, which must outlive the bus (under actix-web: call it in `main`, not in a worker). The
    /// handle itself may be used from any runtime.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let info = url
            .into_connection_info()
            .map_err(|e| BusError::Other(format!("invalid redis url: {e}")))?;
        // TCP_NODELAY, as most Redis clients set by default (this crate does not): with Nagle's
        // algorithm a publishing round written while the previous one is unacknowledged waits for
        // that acknowledgement. On loopback the acknowledgement rides on Redis's immediate reply, so
        // the hop measured the same either way (docs/BENCHMARKS.md); across machines it need not.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client = Client::open(info.set_tcp_settings(tcp))
            .map_err(|e| BusError::Other(format!("invalid redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(COMMAND_RECONNECT_ATTEMPTS);
        let commands = bounded(
            CONNECT_TIMEOUT,
            "connect",
            client.get_connection_manager_with_config(config),
        )
        .await?;
        let pubsub = bounded(
            CONNECT_TIMEOUT,
            "connect pub/sub",
            client.get_async_pubsub(),
        )
        .await?;

        let (requests, requests_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            requests,
            pubsub_up: AtomicBool::new(true),
        });
        let task = PubSubTask {
            client,
            commands: commands.clone(),
            shared: Arc::downgrade(&shared),
            requests: requests_rx,
        };
        tokio::spawn(task.run(pubsub));
        Ok(Self { commands, shared })
    }

    /// How many live subscriptions this bus holds on `channel` (for metrics and tests).
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shared.registry.subscriber_count(channel)
    }
}

/// [`Bus::count`]: INCR, and the expiry set with the first count (atomic, one round trip).
const COUNT_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        let mut publish = ::redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload.as_ref());
        query::<i64>(&self.commands, "publish", &publish).await?;
        Ok(())
    }

    async fn publish_many(&self, messages: &[(Arc<str>, Bytes)]) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for (channel, payload) in messages {
            pipe.cmd("PUBLISH")
                .arg(channel.as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        let mut con = self.commands.clone();
        bounded(COMMAND_TIMEOUT, "publish", pipe.query_async::<()>(&mut con)).await
    }

    async fn subscribe_skipping(
        &self,
        channel: &str,
        skip: Option<Skip>,
    ) -> Result<Subscription, BusError> {
        let (id, rx) = self.shared.registry.add(channel, skip);
        // From here on, dropping `membership` (on any error path too) undoes the registration.
        let membership = Membership {
            shared: Arc::clone(&self.shared),
            channel: channel.to_owned(),
            id,
        };
        let (done, answer) = oneshot::channel();
        self.shared
            .requests
            .send(Request::Subscribe {
                channel: channel.to_owned(),
                done,
            })
            .map_err(|_| task_stopped())?;
        match timeout(SUBSCRIBE_TIMEOUT, answer).await {
            Ok(Ok(Ok(()))) => Ok(Subscription {
                channel: channel.to_owned(),
                rx,
                _guard: Box::new(membership),
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(task_stopped()),
            Err(_) => Err(BusError::Unavailable(format!(
                "subscribe: no confirmation from redis within {SUBSCRIBE_TIMEOUT:?}"
            ))),
        }
    }

    async fn ping(&self) -> Result<(), BusError> {
        if !self.shared.pubsub_up.load(Ordering::Acquire) {
            return Err(BusError::Unavailable(
                "redis pub/sub connection is down; reconnecting".into(),
            ));
        }
        query::<String>(&self.commands, "ping", &::redis::cmd("PING")).await?;
        Ok(())
    }

    async fn set_with_ttl(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), BusError> {
        let mut set = ::redis::cmd("SET");
        set.arg(key).arg(value).arg("EX").arg(ttl_secs);
        query::<()>(&self.commands, "set", &set).await
    }

    async fn count(&self, key: &str, ttl_secs: u64) -> Result<u64, BusError> {
        let mut eval = ::redis::cmd("EVAL");
        eval.arg(COUNT_SCRIPT).arg(1).arg(key).arg(ttl_secs.max(1));
        query::<u64>(&self.commands, "count", &eval).await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, BusError> {
        let mut get = ::redis::cmd("GET");
        get.arg(key);
        query::<Option<String>>(&self.commands, "get", &get).await
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        replacing: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String, BusError> {
        let mut eval = ::redis::cmd("EVAL");
        eval.arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(value)
            .arg(ttl_secs)
            .arg(u8::from(replacing.is_some()))
            .arg(replacing.unwrap_or(""));
        query::<String>(&self.commands, "claim", &eval).await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, BusError> {
        let pattern = format!("{}*", escape_glob(prefix));
        // SCAN may return a key more than once; the set removes duplicates (and sorts).
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = ::redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let (next, batch) = query::<(u64, Vec<String>)>(&self.commands, "scan", &scan).await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys.into_iter().collect());
            }
            cursor = next;
        }
    }
}

/// Drives the pub/sub connection: reconnects, (un)subscribes, and fans messages out.
struct PubSubTask {
    client: Client,
    /// Only used to check, after an outage, that the command connection is back.
    commands: ConnectionManager,
    shared: Weak<Shared>,
    requests: mpsc::UnboundedReceiver<Request>,
}

/// Why [`PubSubTask::serve`] returned.
enum Ended {
    /// The connection is gone or unusable: reconnect.
    Lost,
    /// Every bus handle and subscription is gone: stop.
    Shutdown,
}

impl PubSubTask {
    async fn run(mut self, first: PubSub) {
        let mut connection = Some(first);
        let mut after_outage = false;
        let mut delay = RECONNECT_MIN_DELAY;
        loop {
            if let Some(pubsub) = connection.take() {
                match self.serve(pubsub, after_outage).await {
                    Ended::Shutdown => return,
                    Ended::Lost => {
                        after_outage = true;
                        delay = RECONNECT_MIN_DELAY;
                        if let Some(shared) = self.shared.upgrade() {
                            shared.pubsub_up.store(false, Ordering::Release);
                        }
                    }
                }
            }
            match self.reconnect_after(delay).await {
                None => return,
                Some(Ok(pubsub)) => connection = Some(pubsub),
                Some(Err(e)) => {
                    debug!(error = %e, "redis pub/sub reconnect attempt failed");
                    delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                }
            }
        }
    }

    /// Waits `delay`, then makes one connection attempt, answering subscribe requests with
    /// `Unavailable` meanwhile. `None` means shut down.
    async fn reconnect_after(&mut self, delay: Duration) -> Option<Result<PubSub, BusError>> {
        let client = self.client.clone();
        let attempt = async move {
            sleep(delay).await;
            bounded(
                CONNECT_TIMEOUT,
                "connect pub/sub",
                client.get_async_pubsub(),
            )
            .await
        };
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => return Some(result),
                request = self.requests.recv() => match request? {
                    Request::Subscribe { done, .. } => {
                        let _ = done.send(Err(BusError::Unavailable(
                            "redis pub/sub connection is down; reconnecting".into(),
                        )));
                    }
                    // Nothing is subscribed now; the next connection subscribes only to the channels
                    // that still have subscribers.
                    Request::Release { .. } => {}
                },
            }
        }
    }

    /// Runs one connection until it is lost or the bus is gone.
    async fn serve(&mut self, pubsub: PubSub, after_outage: bool) -> Ended {
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed = HashSet::new();

        let Some(held) = self.shared.upgrade().map(|s| s.registry.channels()) else {
            return Ended::Shutdown;
        };
        if !held.is_empty() {
            if let Err(e) = bounded(COMMAND_TIMEOUT, "resubscribe", sink.subscribe(&held)).await {
                warn!(error = %e, "redis pub/sub resubscription failed; reconnecting");
                return Ended::Lost;
            }
            subscribed.extend(held);
        }
        if after_outage {
            self.warm_up_commands().await;
            let Some(shared) = self.shared.upgrade() else {
                return Ended::Shutdown;
            };
            shared.pubsub_up.store(true, Ordering::Release);
            shared.registry.mark_missed(&subscribed);
            info!(
                channels = subscribed.len(),
                "redis pub/sub reconnected; subscribers told they may have missed messages"
            );
        }

        let mut keepalive =
            interval_at(Instant::now() + PUBSUB_PING_INTERVAL, PUBSUB_PING_INTERVAL);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        warn!("redis pub/sub connection closed; reconnecting");
                        return Ended::Lost;
                    };
                    let Some(shared) = self.shared.upgrade() else {
                        return Ended::Shutdown;
                    };
                    let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                    shared.registry.deliver(message.get_channel_name(), &payload);
                }
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return Ended::Shutdown;
                    };
                    if let Err(e) = self.handle(request, &mut sink, &mut subscribed).await {
                        warn!(error = %e, "redis pub/sub (un)subscribe failed; reconnecting");
                        return Ended::Lost;
                    }
                }
                _ = keepalive.tick() => {
                    if let Err(e) = bounded(COMMAND_TIMEOUT, "pub/sub ping", sink.ping::<Value>()).await {
                        warn!(error = %e, "redis pub/sub connection not answering; reconnecting");
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        request: Request,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), BusError> {
        match request {
            Request::Subscribe { channel, done } => {
                let result = self.reconcile(&channel, sink, subscribed).await;
                let answer = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(BusError::Unavailable(e.to_string())),
                };
                let _ = done.send(answer);
                result
            }
            Request::Release { channel } => self.reconcile(&channel, sink, subscribed).await,
        }
    }

    /// Brings the connection's subscription to `channel` in line with whether it has local subscribers.
    /// Requests are handled one at a time, so a quick unsubscribe/subscribe pair cannot reorder.
    async fn reconcile(
        &self,
        channel: &str,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), BusError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let wanted = shared.registry.contains(channel);
        drop(shared);
        match (wanted, subscribed.contains(channel)) {
            (true, false) => {
                bounded(COMMAND_TIMEOUT, "subscribe", sink.subscribe(channel)).await?;
                subscribed.insert(channel.to_owned());
                debug!(channel, "subscribed");
            }
            (false, true) => {
                bounded(COMMAND_TIMEOUT, "unsubscribe", sink.unsubscribe(channel)).await?;
                subscribed.remove(channel);
                debug!(channel, "unsubscribed");
            }
            _ => {}
        }
        Ok(())
    }

    /// Pings through the command connection until it answers (or [`COMMAND_WARM_UP_ATTEMPTS`] fail).
    async fn warm_up_commands(&self) {
        for _ in 0..COMMAND_WARM_UP_ATTEMPTS {
            match query::<String>(&self.commands, "ping", &::redis::cmd("PING")).await {
                Ok(_) => return,
                Err(e) => debug!(error = %e, "redis command connection not back yet"),
            }
        }
    }
}

/// Sends one command on the command connection, bounded by [`COMMAND_TIMEOUT`].
async fn query<T: FromRedisValue>(
    commands: &ConnectionManager,
    what: &str,
    cmd: &Cmd,
) -> Result<T, BusError> {
    let mut con = commands.clone();
    bounded(COMMAND_TIMEOUT, what, cmd.query_async::<T>(&mut con)).await
}

/// Runs a Redis call with a deadline, mapping its failure to a [`BusError`].
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T, BusError> {
    match timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(what, &e)),
        Err(_) => Err(BusError::Unavailable(format!(
            "{what}: no answer from redis within {limit:?}"
        ))),
    }
}

/// Connection trouble (Redis down, unreachable, restarting, loading) is `Unavailable`: worth retrying
/// later. Anything else (a rejected command, an unexpected reply) is `Other`.
fn classify(what: &str, e: &RedisError) -> BusError {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.retry_method(), RetryMethod::WaitAndRetry);
    if unavailable {
        BusError::Unavailable(format!("{what}: {e}"))
    } else {
        BusError::Other(format!("{what}: {e}"))
    }
}

fn task_stopped() -> BusError {
    BusError::Unavailable("redis pub/sub task has stopped".into())
}

/// Escapes the characters that are special in a Redis glob pattern, so a prefix matches literally.
fn escape_glob(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(escape_glob("duet:hub:"), "duet:hub:");
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }
}
