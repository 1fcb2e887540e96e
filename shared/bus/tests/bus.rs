//! The bus contract, one suite run against both backends (`local::*` and `redis::*`), plus Redis-only
//! tests that stop and restart a dedicated redis-server.
//!
//! Redis tests use `TEST_REDIS_URL` when it is set, else a redis-server the test kit starts for this
//! process; every test uses channel and key names of its own, so they can share one server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use duet_bus::{
    Bus, BusError, BusEvent, LocalBus, RedisBus, Subscription, SUBSCRIPTION_QUEUE_CAPACITY,
};
use duet_testkit::redis::{redis_url, TestRedis};

/// Longest a test waits for an event that should arrive.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// Longest a test waits for subscribers to hear of a reconnection after Redis is back: the reconnect
/// backoff is capped at one second, so this is generous.
const RECONNECT_WAIT: Duration = Duration::from_secs(15);

/// How long a call to a bus whose Redis is down may take before the test calls it a hang.
const OUTAGE_CALL_LIMIT: Duration = Duration::from_secs(5);

/// A name no other test (or test process sharing the server) uses.
fn unique(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "duet-test:{what}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn msg(text: &str) -> BusEvent {
    BusEvent::Message(Bytes::copy_from_slice(text.as_bytes()))
}

async fn next_event_within(sub: &mut Subscription, wait: Duration) -> BusEvent {
    match tokio::time::timeout(wait, sub.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("subscription to {} ended", sub.channel),
        Err(_) => panic!("no event on {} within {wait:?}", sub.channel),
    }
}

async fn next_event(sub: &mut Subscription) -> BusEvent {
    next_event_within(sub, EVENT_WAIT).await
}

/// Everything already queued on `sub`, without waiting.
fn queued(sub: &mut Subscription) -> Vec<BusEvent> {
    let mut events = Vec::new();
    while let Ok(event) = sub.rx.try_recv() {
        events.push(event);
    }
    events
}

/// A backend under test, and a way to see whether the backend itself still holds a subscription.
trait Backend {
    fn bus(&self) -> &dyn Bus;
    /// Local subscriptions the bus holds on `channel`.
    fn subscriber_count(&self, channel: &str) -> usize;
    /// Whether the backend is subscribed to `channel`: for Redis, `PUBSUB NUMSUB` on the server.
    async fn upstream_subscribed(&self, channel: &str) -> bool;
}

struct Local(LocalBus);

impl Backend for Local {
    fn bus(&self) -> &dyn Bus {
        &self.0
    }
    fn subscriber_count(&self, channel: &str) -> usize {
        self.0.subscriber_count(channel)
    }
    async fn upstream_subscribed(&self, channel: &str) -> bool {
        // In-process, the bus's own table is the subscription.
        self.0.subscriber_count(channel) > 0
    }
}

async fn make_local() -> Local {
    Local(LocalBus::new())
}

struct Redis {
    bus: RedisBus,
    url: String,
}

impl Backend for Redis {
    fn bus(&self) -> &dyn Bus {
        &self.bus
    }
    fn subscriber_count(&self, channel: &str) -> usize {
        self.bus.subscriber_count(channel)
    }
    async fn upstream_subscribed(&self, channel: &str) -> bool {
        numsub(&self.url, channel).await > 0
    }
}

async fn make_redis() -> Redis {
    let url = redis_url();
    let bus = RedisBus::connect(&url).await.expect("connect to redis");
    Redis { bus, url }
}

/// `PUBSUB NUMSUB channel` through a plain connection of its own.
async fn numsub(url: &str, channel: &str) -> i64 {
    let client = ::redis::Client::open(url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("plain redis connection");
    let (_, count): (String, i64) = ::redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut con)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

/// Polls until `channel` is (or is no longer) subscribed upstream, for up to [`EVENT_WAIT`].
async fn eventually<B: Backend>(backend: &B, channel: &str, want: bool) {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let now = backend.upstream_subscribed(channel).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: upstream subscribed is still {now} after {EVENT_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The contract both backends keep.
mod contract {
    use super::*;

    pub async fn round_trip<B: Backend>(backend: &B) {
        let bus = backend.bus();
        bus.ping().await.expect("ping");
        let channel = unique("round-trip");
        let mut sub = bus.subscribe(&channel).await.expect("subscribe");
        assert_eq!(sub.channel, channel);

        bus.publish(&channel, Bytes::from_static(b"hello"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut sub).await, msg("hello"));

        // Arbitrary bytes, not only text, and order kept.
        let binary = Bytes::from_static(&[0, 159, 146, 150, 255, b'\n']);
        bus.publish(&channel, binary.clone())
            .await
            .expect("publish");
        for i in 0..20 {
            bus.publish(&channel, Bytes::from(i.to_string()))
                .await
                .expect("publish");
        }
        assert_eq!(next_event(&mut sub).await, BusEvent::Message(binary));
        for i in 0..20 {
            assert_eq!(next_event(&mut sub).await, msg(&i.to_string()));
        }
    }

    pub async fn channels_are_isolated<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let (a, b) = (unique("isolation-a"), unique("isolation-b"));
        let mut sub_a = bus.subscribe(&a).await.expect("subscribe a");
        let mut sub_b = bus.subscribe(&b).await.expect("subscribe b");

        bus.publish(&a, Bytes::from_static(b"for a"))
            .await
            .expect("publish a");
        bus.publish(&b, Bytes::from_static(b"for b"))
            .await
            .expect("publish b");

        // Each sees exactly its own message first: a leak would show up ahead of it.
        assert_eq!(next_event(&mut sub_a).await, msg("for a"));
        assert_eq!(next_event(&mut sub_b).await, msg("for b"));
        // Publishing to a channel nobody holds goes nowhere, and is not an error.
        bus.publish(&unique("nobody"), Bytes::from_static(b"x"))
            .await
            .expect("publish to an unheld channel");
        bus.publish(&a, Bytes::from_static(b"a again"))
            .await
            .expect("publish a");
        assert_eq!(next_event(&mut sub_a).await, msg("a again"));
        assert!(queued(&mut sub_a).is_empty());
        assert!(queued(&mut sub_b).is_empty());
    }

    /// `publish_many`: every message reaches its own channel's subscribers, in the order given.
    pub async fn publish_many_keeps_order_per_channel<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let (a, b) = (unique("many-a"), unique("many-b"));
        let mut sub_a = bus.subscribe(&a).await.expect("subscribe a");
        let mut sub_b = bus.subscribe(&b).await.expect("subscribe b");
        let (ca, cb): (std::sync::Arc<str>, std::sync::Arc<str>) = (a.into(), b.into());
        let mut round = Vec::new();
        for i in 0..50 {
            let channel = if i % 3 == 0 { &cb } else { &ca };
            round.push((channel.clone(), Bytes::from(i.to_string())));
        }
        bus.publish_many(&round).await.expect("publish_many");
        bus.publish_many(&[]).await.expect("an empty round");
        for i in (0..50).filter(|i| i % 3 != 0) {
            assert_eq!(next_event(&mut sub_a).await, msg(&i.to_string()));
        }
        for i in (0..50).filter(|i| i % 3 == 0) {
            assert_eq!(next_event(&mut sub_b).await, msg(&i.to_string()));
        }
        assert!(queued(&mut sub_a).is_empty());
        assert!(queued(&mut sub_b).is_empty());
    }

    pub async fn every_subscriber_of_a_channel_receives<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let channel = unique("two-subscribers");
        let mut first = bus.subscribe(&channel).await.expect("subscribe");
        let mut second = bus.subscribe(&channel).await.expect("subscribe");
        assert_eq!(backend.subscriber_count(&channel), 2);

        bus.publish(&channel, Bytes::from_static(b"both"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut first).await, msg("both"));
        assert_eq!(next_event(&mut second).await, msg("both"));
    }

    pub async fn dropping_the_last_subscription_unsubscribes<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let channel = unique("unsubscribe");
        assert!(!backend.upstream_subscribed(&channel).await);

        let first = bus.subscribe(&channel).await.expect("subscribe");
        let mut second = bus.subscribe(&channel).await.expect("subscribe");
        assert_eq!(backend.subscriber_count(&channel), 2);
        assert!(backend.upstream_subscribed(&channel).await);

        // One of two gone: still subscribed, and the other still receives.
        drop(first);
        assert_eq!(backend.subscriber_count(&channel), 1);
        bus.publish(&channel, Bytes::from_static(b"still here"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut second).await, msg("still here"));
        assert!(backend.upstream_subscribed(&channel).await);

        // The last one gone: unsubscribed.
        second.unsubscribe();
        assert_eq!(backend.subscriber_count(&channel), 0);
        eventually(backend, &channel, false).await;

        // And the channel can be subscribed to again.
        let mut again = bus.subscribe(&channel).await.expect("subscribe again");
        assert!(backend.upstream_subscribed(&channel).await);
        bus.publish(&channel, Bytes::from_static(b"welcome back"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut again).await, msg("welcome back"));
    }

    pub async fn keys_expire_and_only_live_ones_are_listed<B: Backend>(backend: &B) {
        let bus = backend.bus();
        // A `*` in the prefix must match literally, not as a wildcard.
        let prefix = format!("{}:hub*:", unique("ttl"));
        let look_alike = prefix.replace('*', "X");
        let key = |name: &str| format!("{prefix}{name}");

        bus.set_with_ttl(&key("short"), "1", 1).await.expect("set");
        bus.set_with_ttl(&key("refreshed"), "2", 1)
            .await
            .expect("set");
        bus.set_with_ttl(&key("long"), "3", 60).await.expect("set");
        bus.set_with_ttl(&format!("{look_alike}other"), "4", 60)
            .await
            .expect("set");
        // A heartbeat renews the TTL.
        bus.set_with_ttl(&key("refreshed"), "2", 60)
            .await
            .expect("set");

        let mut listed = bus.keys_with_prefix(&prefix).await.expect("list");
        listed.sort();
        assert_eq!(listed, vec![key("long"), key("refreshed"), key("short")]);

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut listed = bus.keys_with_prefix(&prefix).await.expect("list");
        listed.sort();
        assert_eq!(listed, vec![key("long"), key("refreshed")]);
        assert_eq!(
            bus.get(&key("long")).await.expect("get").as_deref(),
            Some("3")
        );
        assert_eq!(
            bus.get(&key("refreshed")).await.expect("get").as_deref(),
            Some("2")
        );
        assert_eq!(bus.get(&key("short")).await.expect("get"), None, "expired");
        assert_eq!(bus.get(&unique("never-set")).await.expect("get"), None);

        assert!(bus
            .keys_with_prefix(&unique("no-such-prefix"))
            .await
            .expect("list")
            .is_empty());
        assert!(matches!(
            bus.set_with_ttl(&key("zero"), "5", 0).await,
            Err(BusError::Other(_))
        ));
    }

    pub async fn claims_are_compare_and_set_with_expiry<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let key = unique("claim");
        // Absent: the first claim wins; a rival's claim learns the winner and changes nothing.
        assert_eq!(
            bus.claim(&key, "hub-a", None, 60).await.expect("claim"),
            "hub-a"
        );
        assert_eq!(
            bus.claim(&key, "hub-b", None, 60).await.expect("claim"),
            "hub-a"
        );
        assert_eq!(bus.get(&key).await.expect("get").as_deref(), Some("hub-a"));
        // Replacing another value than the one held changes nothing either.
        assert_eq!(
            bus.claim(&key, "hub-b", Some("hub-c"), 60)
                .await
                .expect("claim"),
            "hub-a"
        );
        // Replacing the held value (hub-a found dead) moves it.
        assert_eq!(
            bus.claim(&key, "hub-b", Some("hub-a"), 60)
                .await
                .expect("claim"),
            "hub-b"
        );
        // The holder renews with a short TTL; then it expires and anyone may claim.
        assert_eq!(
            bus.claim(&key, "hub-b", None, 1).await.expect("renew"),
            "hub-b"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(bus.get(&key).await.expect("get"), None, "expired");
        assert_eq!(
            bus.claim(&key, "hub-c", None, 60).await.expect("claim"),
            "hub-c"
        );
        assert!(matches!(
            bus.claim(&key, "hub-c", None, 0).await,
            Err(BusError::Other(_))
        ));
        // Concurrent claims on a fresh key: exactly one value wins and every caller is told it.
        let fresh = unique("claim-race");
        let answers = futures_util::future::join_all((0..8).map(|i| {
            let fresh = fresh.clone();
            async move {
                bus.claim(&fresh, &format!("hub-{i}"), None, 60)
                    .await
                    .expect("claim")
            }
        }))
        .await;
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        assert_eq!(
            bus.get(&fresh).await.expect("get"),
            Some(answers[0].clone())
        );
    }

    pub async fn counters_count_together_and_expire<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let key = unique("count");
        // Many callers at once (as several replicas would): every count is distinct.
        let mut got = futures_util::future::join_all((0..20).map(|_| bus.count(&key, 1)))
            .await
            .into_iter()
            .map(|r| r.expect("count"))
            .collect::<Vec<_>>();
        got.sort_unstable();
        assert_eq!(got, (1..=20).collect::<Vec<u64>>());
        // The expiry runs from the first count: later counts do not extend it.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(bus.count(&key, 1).await.expect("count"), 21);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            bus.count(&key, 1).await.expect("count"),
            1,
            "expired, counting again"
        );
        assert!(matches!(
            bus.count(&unique("zero"), 0).await,
            Ok(1) | Err(BusError::Other(_))
        ));
    }

    pub async fn a_slow_subscriber_misses_messages_without_slowing_others<B: Backend>(backend: &B) {
        let bus = backend.bus();
        let channel = unique("slow");
        let mut slow = bus.subscribe(&channel).await.expect("subscribe");
        let mut fast = bus.subscribe(&channel).await.expect("subscribe");

        // `fast` reads every message before the next is published; `slow` reads nothing.
        let total = SUBSCRIPTION_QUEUE_CAPACITY + 10;
        for i in 0..total {
            bus.publish(&channel, Bytes::from(i.to_string()))
                .await
                .expect("publish");
            assert_eq!(next_event(&mut fast).await, msg(&i.to_string()));
        }

        // `slow` got what fitted, in order, then `Missed` for the rest.
        let events = queued(&mut slow);
        assert_eq!(events.len(), SUBSCRIPTION_QUEUE_CAPACITY + 1, "{events:?}");
        for (i, event) in events[..SUBSCRIPTION_QUEUE_CAPACITY].iter().enumerate() {
            assert_eq!(event, &msg(&i.to_string()));
        }
        assert_eq!(events[SUBSCRIPTION_QUEUE_CAPACITY], BusEvent::Missed);

        // Having caught up, it receives again; `fast` never saw a `Missed`.
        bus.publish(&channel, Bytes::from_static(b"caught up"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut slow).await, msg("caught up"));
        assert_eq!(next_event(&mut fast).await, msg("caught up"));
        assert!(queued(&mut fast).is_empty());
    }
}

macro_rules! contract_suite {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn round_trip() {
                contract::round_trip(&$make().await).await;
            }

            #[tokio::test]
            async fn channels_are_isolated() {
                contract::channels_are_isolated(&$make().await).await;
            }

            #[tokio::test]
            async fn publish_many_keeps_order_per_channel() {
                contract::publish_many_keeps_order_per_channel(&$make().await).await;
            }

            #[tokio::test]
            async fn every_subscriber_of_a_channel_receives() {
                contract::every_subscriber_of_a_channel_receives(&$make().await).await;
            }

            #[tokio::test]
            async fn dropping_the_last_subscription_unsubscribes() {
                contract::dropping_the_last_subscription_unsubscribes(&$make().await).await;
            }

            #[tokio::test]
            async fn keys_expire_and_only_live_ones_are_listed() {
                contract::keys_expire_and_only_live_ones_are_listed(&$make().await).await;
            }

            #[tokio::test]
            async fn claims_are_compare_and_set_with_expiry() {
                contract::claims_are_compare_and_set_with_expiry(&$make().await).await;
            }

            #[tokio::test]
            async fn counters_count_together_and_expire() {
                contract::counters_count_together_and_expire(&$make().await).await;
            }

            #[tokio::test]
            async fn a_slow_subscriber_misses_messages_without_slowing_others() {
                contract::a_slow_subscriber_misses_messages_without_slowing_others(&$make().await)
                    .await;
            }
        }
    };
}

contract_suite!(local, make_local);
contract_suite!(redis, make_redis);

/// Redis-only: what happens when Redis goes away and comes back.
mod redis_outage {
    use super::*;

    /// Runs `call` and checks it finished within [`OUTAGE_CALL_LIMIT`], so a hang fails the test.
    async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = tokio::time::timeout(OUTAGE_CALL_LIMIT * 2, call)
            .await
            .unwrap_or_else(|_| panic!("{what} hung while redis was down"));
        let elapsed = started.elapsed();
        assert!(
            elapsed < OUTAGE_CALL_LIMIT,
            "{what} took {elapsed:?} while redis was down"
        );
        result
    }

    #[tokio::test]
    async fn publish_fails_fast_while_down_then_subscribers_get_missed_and_traffic_resumes() {
        let mut server = TestRedis::start();
        let url = server.url();
        let bus = RedisBus::connect(&url).await.expect("connect");
        let (one, two, three) = (unique("outage-1"), unique("outage-2"), unique("outage-3"));
        let mut one_a = bus.subscribe(&one).await.expect("subscribe");
        let mut one_b = bus.subscribe(&one).await.expect("subscribe");
        let mut two_a = bus.subscribe(&two).await.expect("subscribe");

        bus.publish(&one, Bytes::from_static(b"before"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut one_a).await, msg("before"));
        assert_eq!(next_event(&mut one_b).await, msg("before"));

        server.stop();

        // Several calls: the first may fail on the dead socket at once, later ones meet the manager
        // reconnecting; none may hang.
        for attempt in 0..3 {
            let result = bounded(
                "publish",
                bus.publish(&one, Bytes::from(format!("during {attempt}"))),
            )
            .await;
            assert!(
                matches!(result, Err(BusError::Unavailable(_))),
                "publish while down: {result:?}"
            );
        }
        let ping = bounded("ping", bus.ping()).await;
        assert!(matches!(ping, Err(BusError::Unavailable(_))), "{ping:?}");
        let subscribe = bounded("subscribe", bus.subscribe(&three)).await;
        assert!(
            matches!(subscribe, Err(BusError::Unavailable(_))),
            "subscribe while down: {:?}",
            subscribe.map(|s| s.channel)
        );
        assert_eq!(bus.subscriber_count(&three), 0);

        server.start_again();

        // Every held subscription hears that it may have missed messages, before anything else.
        for sub in [&mut one_a, &mut one_b, &mut two_a] {
            assert_eq!(
                next_event_within(sub, RECONNECT_WAIT).await,
                BusEvent::Missed,
                "{}",
                sub.channel
            );
        }
        // Publishing works at once (no retry), and reaches everyone again.
        bus.publish(&one, Bytes::from_static(b"after"))
            .await
            .expect("publish right after Missed");
        bus.publish(&two, Bytes::from_static(b"after too"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut one_a).await, msg("after"));
        assert_eq!(next_event(&mut one_b).await, msg("after"));
        assert_eq!(next_event(&mut two_a).await, msg("after too"));
        bus.ping().await.expect("ping after restart");

        // The restarted server sees one subscription per held channel, none for the refused one.
        assert_eq!(numsub(&url, &one).await, 1);
        assert_eq!(numsub(&url, &two).await, 1);
        assert_eq!(numsub(&url, &three).await, 0);
    }

    #[tokio::test]
    async fn a_subscription_dropped_during_an_outage_is_not_renewed() {
        let mut server = TestRedis::start();
        let url = server.url();
        let bus = RedisBus::connect(&url).await.expect("connect");
        let (kept, dropped) = (unique("kept"), unique("dropped"));
        let mut keep = bus.subscribe(&kept).await.expect("subscribe");
        let gone = bus.subscribe(&dropped).await.expect("subscribe");

        server.stop();
        drop(gone);
        server.start_again();

        assert_eq!(
            next_event_within(&mut keep, RECONNECT_WAIT).await,
            BusEvent::Missed
        );
        assert_eq!(numsub(&url, &kept).await, 1);
        assert_eq!(numsub(&url, &dropped).await, 0);
        // And the channel dropped meanwhile can be subscribed to again.
        let mut back = bus.subscribe(&dropped).await.expect("subscribe again");
        bus.publish(&dropped, Bytes::from_static(b"hi"))
            .await
            .expect("publish");
        assert_eq!(next_event(&mut back).await, msg("hi"));
    }

    #[tokio::test]
    async fn repeated_outages_each_end_in_missed() {
        let mut server = TestRedis::start();
        let bus = RedisBus::connect(&server.url()).await.expect("connect");
        let channel = unique("repeated");
        let mut sub = bus.subscribe(&channel).await.expect("subscribe");
        for round in 0..2 {
            server.stop();
            server.start_again();
            assert_eq!(
                next_event_within(&mut sub, RECONNECT_WAIT).await,
                BusEvent::Missed,
                "round {round}"
            );
            let text = format!("round {round}");
            bus.publish(&channel, Bytes::from(text.clone()))
                .await
                .expect("publish");
            assert_eq!(next_event(&mut sub).await, msg(&text));
        }
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_fast() {
        let url = format!("redis://127.0.0.1:{}/", duet_testkit::free_port());
        let result = bounded("connect", RedisBus::connect(&url)).await;
        assert!(
            matches!(result, Err(BusError::Unavailable(_))),
            "connect to a closed port: {:?}",
            result.err()
        );
    }
}
