//! Per-IP abuse limits of the REST API: creating interviews, joining them, and wrong interview
//! passwords. `duet` counts in process; the session-API replicas count together in Redis
//! ([`Limits::shared_through`]), so a client gets the same budget whichever replica (and gateway)
//! its requests reach.
//!
//! - **Who the client is** ([`Limits::client`]): the peer's address, unless the peer is a trusted
//!   proxy (`DUET_API__TRUSTED_PROXIES`: the gateways in front of a session-API, a reverse proxy in
//!   front of `duet`). Then `X-Forwarded-For` is read from the right, skipping trusted proxies: the
//!   first address that is not one is the client (all trusted: the left-most). A client cannot
//!   pose as someone else by sending the header itself, since only what trusted proxies appended
//!   is believed. IPv6 clients count per /64 (one customer's network), IPv4 per address.
//! - **Limits** in process are GCRA buckets ([`governor`]) of `N` per minute: a burst of `N`, then
//!   one more every `60/N` seconds. Shared through Redis they are `N` per calendar minute (a counter
//!   per client and minute, `duet:limit:<name>:<client>:<minute>`, expiring after two): at most `2N`
//!   across a minute's boundary. While Redis does not answer, each replica falls back to its own
//!   bucket. Over the limit the API answers 429 `rate_limited` with `Retry-After`.
//! - **Wrong passwords** count only when wrong; once a client is over, every password attempt of
//!   its own is refused *before* the password is checked, until its budget has room again, so a
//!   guesser learns nothing from the answers past the limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use duet_bus::Bus;
use duet_config::Settings;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;

/// How often idle buckets are dropped (a client's bucket is full again after at most a minute).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// One per-IP budget of `N` per minute (`None`: unlimited).
pub struct Limit {
    /// Its name in the shared counters' keys.
    name: &'static str,
    per_minute: u32,
    limiter: Option<Keyed>,
    clock: DefaultClock,
    last_sweep: Mutex<Instant>,
}

impl Limit {
    /// `per_minute` per client per minute; 0 switches the limit off.
    pub fn per_minute(name: &'static str, per_minute: u32) -> Self {
        Self {
            name,
            per_minute,
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes one from `client`'s budget; `Err(seconds to wait)` when it is empty.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        self.sweep(limiter);
        limiter
            .check_key(&client)
            .map_err(|not_until| retry_secs(not_until.wait_time_from(self.clock.now())))
    }

    fn sweep(&self, limiter: &Keyed) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Whole seconds to wait, at least 1 (`Retry-After` counts whole seconds).
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The wrong-password budget: failures are counted; past the budget, the client is blocked from
/// password attempts until the budget has room again.
pub struct FailureLimit {
    limit: Limit,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailureLimit {
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limit: Limit::per_minute("password", per_minute),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Before a password is checked: `Err(seconds)` while `client` is blocked.
    pub fn allowed(&self, client: IpAddr) -> Result<(), u64> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        match blocked.get(&client) {
            Some(until) => Err(retry_secs(*until - now)),
            None => Ok(()),
        }
    }

    /// After a wrong password: `Err(seconds)` when this one was over the budget (the client is
    /// blocked from now on for that long).
    pub fn failed(&self, client: IpAddr) -> Result<(), u64> {
        self.limit.check(client).inspect_err(|&secs| {
            let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
            blocked.insert(client, Instant::now() + Duration::from_secs(secs));
        })
    }
}

/// The API's limits and whom it believes about client addresses.
pub struct Limits {
    trusted_proxies: Vec<IpNet>,
    /// Where the replicas count together (Redis); `None`: in process.
    shared: Option<Arc<dyn Bus>>,
    pub creates: Limit,
    pub joins: Limit,
    pub password_failures: FailureLimit,
}

impl Limits {
    /// From `api.*` in the settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            trusted_proxies: settings.api_trusted_proxies(),
            shared: None,
            creates: Limit::per_minute("create", settings.api.creates_per_minute),
            joins: Limit::per_minute("join", settings.api.joins_per_minute),
            password_failures: FailureLimit::per_minute(settings.api.password_failures_per_minute),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client's address as the limits count it (see the module documentation).
    pub fn client(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip().to_canonical());
        let mut client = peer;
        if self.trusted(peer) {
            let chain: Vec<&str> = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            for entry in chain.iter().rev() {
                let Some(ip) = parse_entry(entry) else {
                    break;
                };
                client = ip;
                if !self.trusted(ip) {
                    break;
                }
            }
        }
        bucket(client)
    }

    /// Counts together with the other replicas through `bus` (Redis).
    pub fn shared_through(mut self, bus: Arc<dyn Bus>) -> Self {
        self.shared = Some(bus);
        self
    }

    /// Takes one from `client`'s budget of `limit`; 429 when it is empty.
    pub async fn take(&self, limit: &Limit, client: IpAddr) -> Result<(), ApiError> {
        match self.shared_verdict(limit, client, true).await {
            Some(verdict) => verdict,
            None => limit.check(client).map_err(ApiError::RateLimited),
        }
    }

    /// Before a password is checked: 429 while `client` is over its wrong-password budget.
    pub async fn password_allowed(&self, client: IpAddr) -> Result<(), ApiError> {
        let f = &self.password_failures;
        match self.shared_verdict(&f.limit, client, false).await {
            Some(verdict) => verdict,
            None => f.allowed(client).map_err(ApiError::RateLimited),
        }
    }

    /// After a wrong password: counted; 429 when this one was over the budget.
    pub async fn password_failed(&self, client: IpAddr) -> Result<(), ApiError> {
        let f = &self.password_failures;
        match self.shared_verdict(&f.limit, client, true).await {
            Some(verdict) => verdict,
            None => f.failed(client).map_err(ApiError::RateLimited),
        }
    }

    /// The verdict of the shared counter (`add`: this request counts; else: would one more be
    /// over?); `None` when the limit is counted in process (no shared counter, or it does not
    /// answer).
    async fn shared_verdict(
        &self,
        limit: &Limit,
        client: IpAddr,
        add: bool,
    ) -> Option<Result<(), ApiError>> {
        if limit.per_minute == 0 {
            return Some(Ok(()));
        }
        let n = self.shared_count(limit, client, add).await? + u64::from(!add);
        Some(if n > u64::from(limit.per_minute) {
            Err(ApiError::RateLimited(secs_to_next_minute()))
        } else {
            Ok(())
        })
    }

    /// This minute's shared count for `client` (`add`: counting this request); `None` without a
    /// shared counter or while it does not answer.
    async fn shared_count(&self, limit: &Limit, client: IpAddr, add: bool) -> Option<u64> {
        let bus = self.shared.as_ref()?;
        let minute = unix_secs() / 60;
        let key = format!("duet:limit:{}:{client}:{minute}", limit.name);
        let counted = if add {
            bus.count(&key, 120).await
        } else {
            bus.get(&key)
                .await
                .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
        };
        match counted {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "shared rate limit unavailable; counting in this process");
                None
            }
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `Retry-After` for a shared limit: the start of the next minute.
fn secs_to_next_minute() -> u64 {
    (60 - unix_secs() % 60).max(1)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// The key a client counts under: IPv4 by address, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limits(trusted: &str) -> Limits {
        let mut settings = Settings::load_from(Vec::<(String, String)>::new()).unwrap();
        settings.api.trusted_proxies = trusted
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Limits::from_settings(&settings)
    }

    fn request(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(xff) = xff {
            r = r.insert_header(("x-forwarded-for", xff));
        }
        r.to_http_request()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let none = limits("");
        // Nobody trusted: the header is ignored, whatever it says.
        assert_eq!(
            none.client(&request("203.0.113.9:4000", Some("198.51.100.1"))),
            ip("203.0.113.9")
        );
        let l = limits("127.0.0.1,10.0.0.0/8");
        // From a trusted proxy: the right-most untrusted entry.
        assert_eq!(
            l.client(&request("127.0.0.1:4000", Some("198.51.100.1"))),
            ip("198.51.100.1")
        );
        // nginx → gateway → API: "client, nginx"; a forged entry the client sent is on the left.
        assert_eq!(
            l.client(&request(
                "10.1.2.3:4000",
                Some("6.6.6.6, 198.51.100.1, 10.9.9.9")
            )),
            ip("198.51.100.1")
        );
        // Several headers are one chain.
        let req = TestRequest::default()
            .peer_addr("127.0.0.1:1".parse().unwrap())
            .append_header(("x-forwarded-for", "6.6.6.6"))
            .append_header(("x-forwarded-for", "198.51.100.7:5555"))
            .to_http_request();
        assert_eq!(l.client(&req), ip("198.51.100.7"));
        // Every entry trusted: the left-most; no header: the peer.
        assert_eq!(
            l.client(&request("127.0.0.1:1", Some("127.0.0.1, 10.0.0.1"))),
            ip("127.0.0.1")
        );
        assert_eq!(l.client(&request("10.0.0.5:1", None)), ip("10.0.0.5"));
        // Garbage stops the walk at the last good address.
        assert_eq!(
            l.client(&request(
                "127.0.0.1:1",
                Some("198.51.100.1, nonsense, 10.0.0.2")
            )),
            ip("10.0.0.2")
        );
        // An untrusted peer is the client even when it forwards for someone.
        assert_eq!(
            l.client(&request("192.0.2.1:1", Some("198.51.100.1"))),
            ip("192.0.2.1")
        );
        // IPv6 counts per /64; IPv4-mapped is IPv4.
        assert_eq!(
            none.client(&request("[2001:db8:1:2:aaaa::1]:1", None)),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            none.client(&request("[::ffff:192.0.2.8]:1", None)),
            ip("192.0.2.8")
        );
    }

    #[test]
    fn a_budget_is_per_client_and_says_when_to_come_back() {
        let limit = Limit::per_minute("t", 2);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert!(limit.check(a).is_ok());
        assert!(limit.check(a).is_ok());
        let wait = limit.check(a).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(limit.check(b).is_ok(), "another client has its own budget");
        let off = Limit::per_minute("t", 0);
        for _ in 0..1000 {
            assert!(off.check(a).is_ok());
        }
    }

    #[test]
    fn past_the_failure_budget_attempts_are_refused_before_checking() {
        let f = FailureLimit::per_minute(2);
        let a = ip("192.0.2.1");
        assert!(f.allowed(a).is_ok());
        assert!(f.failed(a).is_ok());
        assert!(f.failed(a).is_ok());
        assert!(f.allowed(a).is_ok(), "two failures are within the budget");
        let wait = f.failed(a).unwrap_err();
        assert!(wait >= 1);
        assert!(f.allowed(a).is_err(), "blocked from now on");
        assert!(f.allowed(ip("192.0.2.2")).is_ok());
    }
}
