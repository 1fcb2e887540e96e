//! The gateway's view of the realtime hubs: which exist (their Redis registrations, or the static
//! list), which are alive (the gateway's own probes and connection attempts), and in which order to
//! try them for an interview (rendezvous hashing of its session code).
//!
//! Registrations say which hubs exist; they expire a TTL after a hub dies, far too slowly for
//! failover, so liveness is the gateway's own business: a hub that refuses a connection is marked
//! down at once ([`Hubs::mark_down`]) and comes back when a probe of its `/healthz` is answered —
//! the periodic one, or the one made before an interview placed on it is moved away
//! ([`Hubs::still_down`]), so a hub restarted in less than a probe period keeps its interviews.
//! While Redis is unreachable, or has just lost its data (a restart), absent registrations prove
//! nothing: the last known set is kept, still probed, until registrations can be trusted again.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use duet_bus::Bus;

/// A hub marked down longer ago than this is probed again before an interview placed on it is moved
/// away or a request of a session it holds goes elsewhere ([`Hubs::still_down`]): a hub restarted
/// under the same id and address answers again well before the next periodic probe, and one
/// gateway moving its interviews away while another already sends it new sessions would split them.
pub const RECHECK_AFTER: Duration = Duration::from_millis(100);
/// How long that probe may take; a hub that does not answer within it stays down.
pub const RECHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// Key prefix under which hubs register their base URL (`duet:hub:<id>` → `http://host:port`).
pub const HUB_KEY_PREFIX: &str = "duet:hub:";

/// How often the registrations are re-read. A hub that deregisters stops getting new interviews
/// within this.
pub const DISCOVERY_EVERY: Duration = Duration::from_secs(1);

/// How often each known hub is probed (`GET /healthz`). A hub marked down is back in use within
/// this of answering again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Longest a probe may take. A hub is one thread and may be busy for a moment (loading interviews
/// after a failover): a slow answer does not mark it down, only a refused connection does.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A hub that deregistered stays reachable this long for the Engine.IO sessions it still serves (a
/// draining hub asks its clients to reconnect one after another); it gets no new interviews.
pub const RETIRED_KEEP: Duration = Duration::from_secs(60);

/// A hub that answered a handshake with 503 (draining) gets no new interviews for at most this long,
/// unless its probes fail first (it exited) or it registers again (a new process under its id).
/// A drain is bounded by the orchestrator's grace period (30 s in `k8s/`).
pub const DRAINING_HOLD: Duration = Duration::from_secs(30);

/// Written by gateways and never expected to vanish: when it has (Redis restarted without
/// persistence), the registrations are incomplete until every hub has renewed its own.
const MARKER_KEY: &str = "duet:gateways";
/// The marker's TTL, renewed every round: it outlives any pause of the gateways by far, and is gone
/// a day after the last gateway stopped.
const MARKER_TTL_SECS: u64 = 24 * 3600;

/// Longest a request waits, on a gateway just started, for the first read of the registrations: until
/// then the gateway knows no hub (unless `gateway.hub_urls` lists some) and could only answer 502. A
/// read takes milliseconds; past this, Redis is not answering and the request goes on without it.
pub const FIRST_ROUND_WAIT: Duration = Duration::from_secs(2);

/// A hub, as a gateway addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// Its registration id (`duet:hub:<id>`), or its URL for a hub from the static list.
    pub id: String,
    pub url: String,
}

/// What the gateway currently believes about a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Refused a connection (or a probe): no traffic until a probe is answered.
    Down,
    /// Refused a handshake with 503: serves the sessions it has, takes no new ones.
    Draining,
}

/// Where the gateway learnt of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Registered in Redis now.
    Registered,
    /// Registered before; its registration cannot be checked (Redis away or just restarted).
    Kept,
    /// Deregistered: only the sessions it already serves are sent there.
    Retired { since: Instant },
    /// `gateway.hub_urls`: used when no registered hub is known.
    Static,
}

#[derive(Debug, Clone)]
struct Entry {
    url: String,
    health: Health,
    /// When `health` last changed.
    since: Instant,
    source: Source,
}

/// One row of [`Hubs::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubStatus {
    pub hub: HubRef,
    pub health: Health,
    pub source: Source,
}

pub struct Hubs {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Whether the last read of the bus succeeded; placement lookups skip Redis while it is away.
    bus_ok: AtomicBool,
    /// `true` once discovery has read the bus (successfully or not), and from the start when there
    /// is no discovery: what requests on a gateway just started wait for ([`Hubs::first_round`]).
    first_round: tokio::sync::watch::Sender<bool>,
    /// Signalled when Redis is found empty (restarted without persistence): placement records are
    /// to be written again.
    pub redis_reset: tokio::sync::Notify,
    /// For [`Hubs::still_down`]'s probes, one at a time (callers behind one get its result).
    recheck: tokio::sync::Mutex<reqwest::Client>,
}

impl Hubs {
    /// Starts from the static list (each hub's id is its URL).
    pub fn new(static_urls: &[String]) -> Self {
        let now = Instant::now();
        let entries = static_urls
            .iter()
            .map(|url| {
                let entry = Entry {
                    url: url.clone(),
                    health: Health::Up,
                    since: now,
                    source: Source::Static,
                };
                (url.clone(), entry)
            })
            .collect();
        Self {
            entries: RwLock::new(entries),
            bus_ok: AtomicBool::new(false),
            first_round: tokio::sync::watch::Sender::new(true),
            redis_reset: tokio::sync::Notify::new(),
            recheck: tokio::sync::Mutex::new(
                reqwest::Client::builder()
                    .connect_timeout(RECHECK_TIMEOUT)
                    .timeout(RECHECK_TIMEOUT)
                    .build()
                    .unwrap_or_default(),
            ),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bus_ok(&self) -> bool {
        self.bus_ok.load(Ordering::Relaxed)
    }

    /// The outcome of a discovery round's read of the bus, once what it read is applied: this ends
    /// the first round.
    pub fn set_bus_ok(&self, ok: bool) {
        self.bus_ok.store(ok, Ordering::Relaxed);
        self.first_round
            .send_if_modified(|done| !std::mem::replace(done, true));
    }

    /// Discovery starts: until its first read of the bus ends ([`Hubs::set_bus_ok`]), requests wait
    /// for it ([`Hubs::first_round`]) and placement lookups ask Redis.
    pub fn discovery_starts(&self) {
        self.first_round.send_replace(false);
    }

    /// Whether discovery's first round has ended (or there is no discovery).
    pub fn first_round_done(&self) -> bool {
        *self.first_round.borrow()
    }

    /// Waits, at most `max`, until discovery's first round has ended (registrations read, or the read
    /// failed). Returns at once without discovery, and on every call after the first round.
    pub async fn first_round(&self, max: Duration) {
        if self.first_round_done() {
            return;
        }
        let mut rx = self.first_round.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|done| *done)).await;
    }

    /// Whether placement lookups ask Redis: while its last read succeeded, and before the first read
    /// (a gateway just started serves at once; hashing instead would send an established
    /// long-polling session to a hub that does not hold it — "Session ID unknown", a reconnect).
    pub fn placements_usable(&self) -> bool {
        self.bus_ok() || !self.first_round_done()
    }

    /// Takes in the registrations read from Redis. With `trust_absence`, a known hub missing from
    /// them has deregistered (it is retired); without, it is kept as it is.
    pub fn apply_registrations(&self, registered: &[HubRef], trust_absence: bool) {
        let now = Instant::now();
        let mut entries = self.write();
        for hub in registered {
            match entries.get_mut(&hub.id) {
                Some(e) => {
                    if matches!(e.source, Source::Retired { .. }) && e.health == Health::Draining {
                        // Registered again under its id: a new process.
                        e.health = Health::Up;
                        e.since = now;
                    }
                    if e.url != hub.url {
                        tracing::info!(hub = %hub.id, url = %hub.url, "hub moved");
                        e.url = hub.url.clone();
                        e.health = Health::Up;
                        e.since = now;
                    }
                    if e.source != Source::Registered {
                        tracing::info!(hub = %hub.id, url = %hub.url, "hub registered");
                    }
                    e.source = Source::Registered;
                }
                None => {
                    tracing::info!(hub = %hub.id, url = %hub.url, "hub registered");
                    entries.insert(
                        hub.id.clone(),
                        Entry {
                            url: hub.url.clone(),
                            health: Health::Up,
                            since: now,
                            source: Source::Registered,
                        },
                    );
                }
            }
        }
        entries.retain(|id, e| {
            if registered.iter().any(|h| &h.id == id) {
                return true;
            }
            match e.source {
                Source::Registered | Source::Kept if trust_absence => {
                    tracing::info!(hub = %id, "hub deregistered");
                    e.source = Source::Retired { since: now };
                    true
                }
                Source::Registered => {
                    e.source = Source::Kept;
                    true
                }
                Source::Retired { since } => {
                    now.duration_since(since) < RETIRED_KEEP && e.health != Health::Down
                }
                Source::Kept | Source::Static => true,
            }
        });
    }

    /// Whether `entries` holds a hub from Redis (registered or kept): then the static list is not used.
    fn has_dynamic(entries: &BTreeMap<String, Entry>) -> bool {
        entries
            .values()
            .any(|e| matches!(e.source, Source::Registered | Source::Kept))
    }

    /// Whether a new interview may be placed on `entry`.
    fn eligible(entry: &Entry, dynamic: bool, now: Instant) -> bool {
        let usable_source = match entry.source {
            Source::Registered | Source::Kept => true,
            Source::Static => !dynamic,
            Source::Retired { .. } => false,
        };
        let healthy = match entry.health {
            Health::Up => true,
            Health::Down => false,
            Health::Draining => now.duration_since(entry.since) >= DRAINING_HOLD,
        };
        usable_source && healthy
    }

    /// The hubs a new interview keyed `key` may be placed on, best first (rendezvous order).
    pub fn candidates(&self, key: &str) -> Vec<HubRef> {
        let now = Instant::now();
        let entries = self.read();
        let dynamic = Self::has_dynamic(&entries);
        let mut hubs: Vec<(u64, HubRef)> = entries
            .iter()
            .filter(|(_, e)| Self::eligible(e, dynamic, now))
            .map(|(id, e)| {
                let hub = HubRef {
                    id: id.clone(),
                    url: e.url.clone(),
                };
                (score(key, id), hub)
            })
            .collect();
        hubs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        hubs.into_iter().map(|(_, h)| h).collect()
    }

    /// Whether a new interview may be placed on hub `id`.
    pub fn is_eligible(&self, id: &str) -> bool {
        let entries = self.read();
        let dynamic = Self::has_dynamic(&entries);
        entries
            .get(id)
            .is_some_and(|e| Self::eligible(e, dynamic, Instant::now()))
    }

    /// Hub `id` if it may still serve the sessions it has (known and not down; a retired or draining
    /// hub still may).
    pub fn reachable(&self, id: &str) -> Option<HubRef> {
        let entries = self.read();
        let e = entries.get(id)?;
        (e.health != Health::Down).then(|| HubRef {
            id: id.to_owned(),
            url: e.url.clone(),
        })
    }

    fn set_health(&self, id: &str, health: Health, why: &str) {
        let mut entries = self.write();
        if let Some(e) = entries.get_mut(id) {
            if e.health != health {
                match health {
                    Health::Up => tracing::info!(hub = %id, url = %e.url, "hub is back"),
                    _ => tracing::warn!(hub = %id, url = %e.url, ?health, why, "hub taken out"),
                }
                e.health = health;
                e.since = Instant::now();
            }
        }
    }

    /// A connection to the hub was refused: no traffic until a probe is answered.
    pub fn mark_down(&self, id: &str, why: &str) {
        self.set_health(id, Health::Down, why);
    }

    /// The hub refused a handshake with 503: it is draining.
    pub fn mark_draining(&self, id: &str) {
        let mut entries = self.write();
        if let Some(e) = entries.get_mut(id) {
            if e.health == Health::Up {
                tracing::info!(hub = %id, url = %e.url, "hub is draining");
                e.health = Health::Draining;
                e.since = Instant::now();
            }
        }
    }

    /// Whether hub `id` is down, after probing its `/healthz` once more if it was marked down more
    /// than [`RECHECK_AFTER`] ago; `false` when it is not marked down (up, draining, unknown: the
    /// caller looks it up again). One probe runs at a time; callers that waited for it see its
    /// outcome.
    pub async fn still_down(&self, id: &str) -> bool {
        let probe = |hubs: &Self| {
            let entries = hubs.read();
            match entries.get(id) {
                Some(e) if e.health == Health::Down => {
                    (e.since.elapsed() >= RECHECK_AFTER).then(|| e.url.clone())
                }
                _ => None,
            }
        };
        let down = |hubs: &Self| {
            hubs.read()
                .get(id)
                .is_some_and(|e| e.health == Health::Down)
        };
        if probe(self).is_none() {
            return down(self);
        }
        let http = self.recheck.lock().await;
        // Another caller may have probed meanwhile.
        let Some(url) = probe(self) else {
            return down(self);
        };
        let url = format!("{}/healthz", url.trim_end_matches('/'));
        match http.get(&url).send().await {
            Ok(_) => {
                self.mark_alive(id);
                false
            }
            Err(_) => {
                // Still down: counted from now, so the next recheck waits again.
                if let Some(e) = self.write().get_mut(id) {
                    if e.health == Health::Down {
                        e.since = Instant::now();
                    }
                }
                true
            }
        }
    }

    /// A probe (or a request) was answered.
    pub fn mark_alive(&self, id: &str) {
        let entries = self.read();
        if entries.get(id).is_some_and(|e| e.health == Health::Down) {
            drop(entries);
            self.set_health(id, Health::Up, "answered");
        }
    }

    /// Every hub the gateway knows, with what it believes about each.
    pub fn snapshot(&self) -> Vec<HubStatus> {
        self.read()
            .iter()
            .map(|(id, e)| HubStatus {
                hub: HubRef {
                    id: id.clone(),
                    url: e.url.clone(),
                },
                health: e.health,
                source: e.source,
            })
            .collect()
    }

    /// URLs of the hubs new interviews may go to.
    pub fn hubs(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.candidates("").into_iter().map(|h| h.url).collect();
        urls.sort();
        urls
    }
}

/// Rendezvous (highest random weight) hashing: every gateway ranks the hubs the same way for a key,
/// and when a hub leaves only its keys move, each to the next hub in its own order.
fn score(key: &str, hub_id: &str) -> u64 {
    // DefaultHasher::new() uses fixed keys, so all replicas of one build agree.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    hub_id.hash(&mut h);
    h.finish()
}

/// Reads the registered hubs.
pub async fn registered_hubs(bus: &dyn Bus) -> Result<Vec<HubRef>, duet_bus::BusError> {
    let mut hubs = Vec::new();
    for key in bus.keys_with_prefix(HUB_KEY_PREFIX).await? {
        if let Some(url) = bus.get(&key).await? {
            let id = key[HUB_KEY_PREFIX.len()..].to_owned();
            hubs.push(HubRef { id, url });
        }
    }
    Ok(hubs)
}

/// Keeps `hubs` in step with the registrations. `grace` is how long after Redis was unreachable or
/// lost its data the registrations are taken as incomplete (the hubs' registration TTL: by then each
/// live hub has renewed its own).
pub fn spawn_discovery(bus: Arc<dyn Bus>, hubs: Arc<Hubs>, grace: Duration) {
    // Before the task runs, so no request slips in between.
    hubs.discovery_starts();
    tokio::spawn(async move {
        // Untrusted from the start: this gateway has not seen a complete round yet.
        let mut trusted_from = Instant::now() + grace;
        loop {
            let mut reset = false;
            let round = async {
                let had_marker = bus.get(MARKER_KEY).await?.is_some();
                // Renewed every round, so it never expires while a gateway runs.
                bus.set_with_ttl(MARKER_KEY, "1", MARKER_TTL_SECS).await?;
                if !had_marker {
                    // First gateway ever, or Redis lost its data: hubs re-register within their TTL.
                    trusted_from = trusted_from.max(Instant::now() + grace);
                    reset = true;
                }
                registered_hubs(bus.as_ref()).await
            };
            match round.await {
                Ok(registered) => {
                    hubs.apply_registrations(&registered, Instant::now() >= trusted_from);
                    hubs.set_bus_ok(true);
                    if reset {
                        hubs.redis_reset.notify_one();
                    }
                }
                Err(e) => {
                    if hubs.bus_ok() {
                        tracing::warn!(error = %e, "cannot read hub registrations; keeping the last set");
                    }
                    hubs.set_bus_ok(false);
                    trusted_from = Instant::now() + grace;
                }
            }
            tokio::time::sleep(DISCOVERY_EVERY).await;
        }
    });
}

/// Probes every known hub's `/healthz` every [`PROBE_EVERY`]: a refused connection marks it down, any
/// answer marks it alive.
pub fn spawn_probes(hubs: Arc<Hubs>) {
    let http = reqwest::Client::builder()
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap_or_default();
    tokio::spawn(async move {
        loop {
            let targets = hubs.snapshot();
            let probes = targets.into_iter().map(|s| {
                let http = http.clone();
                let hubs = hubs.clone();
                async move {
                    let url = format!("{}/healthz", s.hub.url.trim_end_matches('/'));
                    match http.get(&url).send().await {
                        Ok(_) => hubs.mark_alive(&s.hub.id),
                        Err(e) if e.is_connect() => hubs.mark_down(&s.hub.id, "probe refused"),
                        // Slow, not gone: leave it as it is.
                        Err(_) => {}
                    }
                }
            });
            futures_util::future::join_all(probes).await;
            tokio::time::sleep(PROBE_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(id: &str) -> HubRef {
        HubRef {
            id: id.to_owned(),
            url: format!("http://{id}"),
        }
    }

    fn first(h: &Hubs, key: &str) -> String {
        h.candidates(key).first().unwrap().id.clone()
    }

    /// A restart under the same id and address: the hub refused a connection (marked down), and
    /// answers again before the periodic probe comes round; the gateway asks it again before
    /// moving its interviews away. A hub still gone stays down.
    #[tokio::test]
    async fn a_hub_marked_down_is_asked_again_before_it_is_given_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let back = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = std::io::Read::read(&mut s, &mut buf);
                let _ = std::io::Write::write_all(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let h = Hubs::new(&[]);
        let hubs = [
            HubRef {
                id: "back".into(),
                url: back,
            },
            HubRef {
                id: "gone".into(),
                url: gone,
            },
        ];
        h.apply_registrations(&hubs, true);
        h.mark_down("back", "connection refused");
        h.mark_down("gone", "connection refused");
        assert!(h.still_down("back").await, "just marked: believed");
        assert!(h.reachable("back").is_none());
        tokio::time::sleep(RECHECK_AFTER).await;
        assert!(!h.still_down("back").await, "it answers again");
        assert!(h.reachable("back").is_some());
        assert!(h.candidates("x").iter().any(|c| c.id == "back"));
        assert!(h.still_down("gone").await);
        assert!(h.reachable("gone").is_none());
        assert!(
            h.still_down("gone").await,
            "re-marked: believed again without a probe"
        );
        assert!(!h.still_down("unknown").await);
    }

    #[test]
    fn placements_are_asked_for_from_the_start_and_while_redis_answers() {
        let h = Hubs::new(&["http://hub-1".to_owned()]);
        assert!(
            h.first_round_done(),
            "nothing to wait for without discovery"
        );
        h.discovery_starts();
        assert!(!h.first_round_done());
        assert!(!h.bus_ok(), "not known to answer before a read");
        assert!(h.placements_usable(), "a gateway just started asks Redis");
        h.set_bus_ok(false);
        assert!(
            h.first_round_done(),
            "a failed read ends the first round too"
        );
        assert!(!h.placements_usable(), "not while Redis does not answer");
        h.set_bus_ok(true);
        assert!(h.placements_usable());
    }

    #[test]
    fn rendezvous_is_stable_and_moves_only_the_dead_hubs_keys() {
        let all: Vec<HubRef> = (1..=4).map(|i| hub(&format!("hub{i}"))).collect();
        let h = Hubs::new(&[]);
        h.apply_registrations(&all, true);
        let keys: Vec<String> = (0..400).map(|i| format!("CODE{i:04}")).collect();
        let before: Vec<String> = keys.iter().map(|k| first(&h, k)).collect();
        for hb in &all {
            let n = before.iter().filter(|b| **b == hb.id).count();
            assert!(n > 40, "{} got {n} of 400", hb.id);
        }
        // Same answer in another instance that learnt the hubs in another order.
        let again = Hubs::new(&[]);
        again.apply_registrations(&all.iter().rev().cloned().collect::<Vec<_>>(), true);
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(&first(&again, k), b);
        }
        // hub2 marked down: only its keys move, each to its second choice.
        again.mark_down("hub2", "test");
        for (k, b) in keys.iter().zip(&before) {
            let now = first(&again, k);
            if b != "hub2" {
                assert_eq!(&now, b);
            } else {
                assert_eq!(now, h.candidates(k)[1].id);
            }
        }
        // Back once a probe is answered.
        again.mark_alive("hub2");
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(&first(&again, k), b);
        }
    }

    #[test]
    fn no_hubs_no_choice() {
        assert!(Hubs::new(&[]).candidates("X").is_empty());
    }

    #[test]
    fn absence_is_believed_only_when_trusted() {
        let h = Hubs::new(&[]);
        h.apply_registrations(&[hub("a"), hub("b")], true);
        // Redis came back empty: nothing is forgotten.
        h.apply_registrations(&[], false);
        assert_eq!(h.hubs(), vec!["http://a", "http://b"]);
        h.apply_registrations(&[hub("a")], false);
        assert_eq!(h.hubs(), vec!["http://a", "http://b"]);
        // Trusted again: b deregistered. It gets no new interviews but still serves its sessions.
        h.apply_registrations(&[hub("a")], true);
        assert_eq!(h.hubs(), vec!["http://a"]);
        assert!(!h.is_eligible("b"));
        assert_eq!(h.reachable("b"), Some(hub("b")));
        // Once down it is forgotten.
        h.mark_down("b", "test");
        h.apply_registrations(&[hub("a")], true);
        assert_eq!(h.reachable("b"), None);
        assert!(h.snapshot().iter().all(|s| s.hub.id != "b"));
    }

    #[test]
    fn the_static_list_is_a_fallback() {
        let h = Hubs::new(&["http://s1".to_owned()]);
        assert_eq!(h.hubs(), vec!["http://s1"]);
        h.apply_registrations(&[hub("a")], true);
        assert_eq!(h.hubs(), vec!["http://a"]);
        h.apply_registrations(&[], true);
        assert_eq!(h.hubs(), vec!["http://s1"]);
    }

    #[test]
    fn a_draining_hub_takes_no_new_interviews_until_it_registers_again() {
        let h = Hubs::new(&[]);
        h.apply_registrations(&[hub("a"), hub("b")], true);
        h.mark_draining("a");
        assert_eq!(h.hubs(), vec!["http://b"]);
        assert!(h.reachable("a").is_some(), "still serves its sessions");
        // A probe answer does not end a drain.
        h.mark_alive("a");
        assert_eq!(h.hubs(), vec!["http://b"]);
        // Deregistered, then a new process registers under its id.
        h.apply_registrations(&[hub("b")], true);
        h.apply_registrations(&[hub("a"), hub("b")], true);
        assert_eq!(h.hubs(), vec!["http://a", "http://b"]);
    }
}
