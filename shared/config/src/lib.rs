//! Duet's configuration: built-in defaults, then an optional TOML file, then the environment.
//!
//! - The seed's variables keep working unprefixed: `PORT`, `HOST`, `DATABASE_URL`, `REDIS_URL`,
//!   `SECRET_KEY`, `MAX_CONTENT_LENGTH`.
//! - Everything can be set with `DUET_` + the key path, `__` between sections:
//!   `DUET_LOG_FORMAT=json`, `DUET_HUB__IDLE_UNLOAD_SECS=60`.
//! - `DUET_CONFIG=/path/file.toml` names the optional file (default `duet.toml` if present).
//!
//! A value that does not parse stops start-up with an error naming the key.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Address to bind. `127.0.0.1` by default so a developer's `cargo run` is not exposed.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// PostgreSQL URL (`postgres://…`) or `sqlite://path`; unset means SQLite under `data_dir`.
    pub database_url: Option<String>,
    /// Redis URL; unset means the in-process bus (single process only).
    pub redis_url: Option<String>,
    /// The seed's `SECRET_KEY`, kept secret (never printed): signs and checks interview tokens
    /// (`duet_auth::TokenKey`). The scaled services refuse to start without it; the all-in-one
    /// `duet` generates one and keeps it under `data_dir` when it is unset.
    pub secret_key: Option<SecretString>,
    /// Largest request body / Socket.IO payload in bytes.
    pub max_content_length: usize,
    /// `duet`: where `/metrics` is served (`host:port`, e.g. `127.0.0.1:9464`), apart from the
    /// public port; unset: `duet` serves no metrics. (The scaled services serve `/metrics` on their
    /// own, internal ports; nginx keeps it off the public one.)
    pub metrics_addr: Option<String>,
    /// Where the all-in-one binary keeps its SQLite file.
    pub data_dir: PathBuf,
    /// The built browser client (`npm run build` in `frontend/`).
    pub frontend_dir: PathBuf,
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,duet=debug`.
    pub log_level: String,
    pub hub: HubSettings,
    pub gateway: GatewaySettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    /// OpenTelemetry traces over OTLP/HTTP; off unless an endpoint is set.
    #[serde(default)]
    pub otel: OtelSettings,
    /// How long interviews are kept (session-API and `duet`).
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Where interview events are announced (session-API and `duet`).
    #[serde(default)]
    pub webhook: WebhookSettings,
}

/// The retention job: interviews ended (or untouched) longer ago than `days` are erased with
/// everything of them. `DUET_RETENTION__DAYS`, `DUET_RETENTION__INTERVAL_SECS`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// 0 (the default): keep interviews for ever.
    pub days: u64,
    /// How often the job looks for expired interviews.
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            days: 0,
            interval_secs: 3600,
        }
    }
}

/// Webhooks: `interview.created`, `interview.started` and `interview.ended` POSTed to `url`,
/// signed with `secret`. `DUET_WEBHOOK__URL`, `DUET_WEBHOOK__SECRET`, …
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// The receiver (`http://` or `https://`); unset (the default): no webhooks.
    pub url: Option<String>,
    /// The HMAC-SHA256 key of the `Duet-Signature` header; required with `url`.
    pub secret: Option<SecretString>,
    /// The origin of the record links in the bodies (`<public_url>/api/session/<code>/record`);
    /// unset: `http://<host>:<port>`.
    pub public_url: Option<String>,
    /// Attempts per delivery before it is given up.
    pub max_attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub retry_base_ms: u64,
    /// How long one attempt may take (connect, send, answer).
    pub timeout_ms: u64,
    /// How often the dispatcher looks for deliveries due.
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            public_url: None,
            max_attempts: 8,
            retry_base_ms: 1_000,
            timeout_ms: 5_000,
            poll_interval_ms: 1_000,
        }
    }
}

/// Where traces go (`duet_telemetry::trace`). Set with `DUET_OTEL__ENDPOINT` /
/// `DUET_OTEL__PROTOCOL`, or with the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_PROTOCOL` (the `DUET_` names win when both are set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OtelSettings {
    /// The OTLP/HTTP collector's base URL, e.g. `http://127.0.0.1:4318`; spans are posted to
    /// `<endpoint>/v1/traces`. Unset (the default): no traces, nothing exported.
    pub endpoint: Option<String>,
    /// The body encoding of the exports.
    pub protocol: OtlpProtocol,
}

/// OTLP over HTTP: protobuf (the OTLP default) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// The REST API's abuse limits (session-API and `duet`), per client IP and per process.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Peers (IP addresses or CIDR ranges) whose `X-Forwarded-For` says who the client is: the
    /// gateways in front of a session-API, a reverse proxy in front of `duet`. The client is the
    /// right-most address of the chain that is not itself a trusted proxy. Empty trusts no one: the
    /// client is the peer.
    pub trusted_proxies: Vec<String>,
    /// Interviews one client IP may create per minute (`POST /api/session`); 0: no limit.
    pub creates_per_minute: u32,
    /// Joins one client IP may make per minute (`POST /api/session/<code>/join`); 0: no limit.
    pub joins_per_minute: u32,
    /// Wrong interview passwords one client IP may give per minute; past it, every password
    /// attempt from it is refused unchecked until the budget refills. 0: no limit.
    pub password_failures_per_minute: u32,
}

/// Connection limits of every service's HTTP server (`duet_telemetry::connections`).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Most connections one process holds open at once; further capped by the open-files limit.
    pub max_connections: usize,
    /// A new connection must send its first byte within this, and then its request head within
    /// this again; otherwise it is closed.
    pub handshake_timeout_ms: u64,
    /// An idle keep-alive connection (between requests) is closed after this.
    pub keep_alive_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HubSettings {
    /// This hub's id in Redis / the participants table; unset means a random one per process.
    pub id: Option<String>,
    /// The base URL gateways use to reach this hub (registered in Redis); unset means
    /// `http://<host>:<port>`.
    pub public_url: Option<String>,
    /// Unload an interview from memory after it has had no participants for this long.
    pub idle_unload_secs: u64,
    /// Registration TTL; the hub refreshes it every third of this.
    pub heartbeat_ttl_secs: u64,
    /// Group commit: the longest an update waits before its batch is flushed.
    pub flush_interval_ms: u64,
    /// Write a snapshot after this many updates since the last one.
    pub snapshot_every: u64,
    /// Socket.IO heartbeat.
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// Allowed `Origin`s for handshakes; empty allows any.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// Base URLs of session-API replicas, e.g. `http://127.0.0.1:8081`.
    pub session_api_urls: Vec<String>,
    /// Static hub URLs, used when no hub is registered in Redis.
    pub hub_urls: Vec<String>,
    /// Peers (IP addresses or CIDR ranges, e.g. `127.0.0.1`, `10.0.0.0/8`) whose `X-Forwarded-For`
    /// the gateway extends; from anyone else it is replaced by the peer's address. Empty trusts no one.
    pub trusted_proxies: Vec<String>,
}

/// The standard OpenTelemetry variables Duet reads, mapped to their keys (a `DUET_` one wins).
const OTEL_VARS: [(&str, &str); 2] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel__endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otel__protocol"),
];

/// The seed's unprefixed variables, mapped to their keys.
const SEED_VARS: [(&str, &str); 6] = [
    ("PORT", "port"),
    ("HOST", "host"),
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("SECRET_KEY", "secret_key"),
    ("MAX_CONTENT_LENGTH", "max_content_length"),
];

impl Settings {
    /// Loads from defaults, the optional file and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Loads from defaults, the optional file and the given variables (testable without touching
    /// the process environment).
    pub fn load_from(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut b = config::Config::builder()
            .set_default("host", "127.0.0.1")
            .and_then(|b| b.set_default("port", 8080))
            .and_then(|b| b.set_default("max_content_length", 1_000_000))
            .and_then(|b| b.set_default("data_dir", "./data"))
            .and_then(|b| b.set_default("frontend_dir", "frontend/dist"))
            .and_then(|b| b.set_default("log_format", "text"))
            .and_then(|b| b.set_default("log_level", "info"))
            .and_then(|b| b.set_default("hub.idle_unload_secs", 30))
            .and_then(|b| b.set_default("hub.heartbeat_ttl_secs", 15))
            .and_then(|b| b.set_default("hub.flush_interval_ms", 5))
            .and_then(|b| b.set_default("hub.snapshot_every", 500))
            .and_then(|b| b.set_default("hub.ping_interval_ms", 25_000))
            .and_then(|b| b.set_default("hub.ping_timeout_ms", 20_000))
            .and_then(|b| b.set_default("hub.allowed_origins", Vec::<String>::new()))
            .and_then(|b| b.set_default("gateway.session_api_urls", Vec::<String>::new()))
            .and_then(|b| b.set_default("gateway.hub_urls", Vec::<String>::new()))
            .and_then(|b| b.set_default("http.max_connections", 20_000))
            .and_then(|b| b.set_default("http.handshake_timeout_ms", 5_000))
            .and_then(|b| b.set_default("http.keep_alive_secs", 5))
            .and_then(|b| b.set_default("gateway.trusted_proxies", Vec::<String>::new()))
            .and_then(|b| b.set_default("api.trusted_proxies", Vec::<String>::new()))
            .and_then(|b| b.set_default("api.creates_per_minute", 30))
            .and_then(|b| b.set_default("api.joins_per_minute", 60))
            .and_then(|b| b.set_default("api.password_failures_per_minute", 10))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;

        let file = get("DUET_CONFIG");
        let file_required = file.is_some();
        b = b.add_source(
            config::File::with_name(file.as_deref().unwrap_or("duet.toml"))
                .format(config::FileFormat::Toml)
                .required(file_required),
        );

        let mut env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (var, key) in SEED_VARS.iter().chain(OTEL_VARS.iter()) {
            if let Some(v) = get(var).filter(|v| !v.is_empty()) {
                env.insert(key.to_uppercase(), v);
            }
        }
        for (name, value) in &vars {
            if let Some(rest) = name.strip_prefix("DUET_") {
                if rest != "CONFIG" && !value.is_empty() {
                    env.insert(rest.to_owned(), value.clone());
                }
            }
        }
        b = b.add_source(
            config::Environment::default()
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("hub.allowed_origins")
                .with_list_parse_key("gateway.session_api_urls")
                .with_list_parse_key("gateway.hub_urls")
                .with_list_parse_key("gateway.trusted_proxies")
                .with_list_parse_key("api.trusted_proxies")
                .try_parsing(true)
                .source(Some(env)),
        );
        let settings: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_content_length < 1024 {
            return Err(ConfigError::Invalid(
                "max_content_length (MAX_CONTENT_LENGTH) must be at least 1024 bytes".into(),
            ));
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite://"))
            {
                return Err(ConfigError::Invalid(
                    "database_url (DATABASE_URL) must start with postgres://, postgresql:// or sqlite://".into(),
                ));
            }
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::Invalid(
                    "redis_url (REDIS_URL) must start with redis:// or rediss://".into(),
                ));
            }
        }
        if self.http.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "http.max_connections (DUET_HTTP__MAX_CONNECTIONS) must be at least 1".into(),
            ));
        }
        if self.http.handshake_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "http.handshake_timeout_ms (DUET_HTTP__HANDSHAKE_TIMEOUT_MS) must be at least 1"
                    .into(),
            ));
        }
        for proxy in &self.gateway.trusted_proxies {
            if parse_net(proxy).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "gateway.trusted_proxies (DUET_GATEWAY__TRUSTED_PROXIES): {proxy:?} is not an IP address or CIDR range"
                )));
            }
        }
        for proxy in &self.api.trusted_proxies {
            if parse_net(proxy).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "api.trusted_proxies (DUET_API__TRUSTED_PROXIES): {proxy:?} is not an IP address or CIDR range"
                )));
            }
        }
        if let Some(endpoint) = &self.otel.endpoint {
            if !endpoint.starts_with("http://") {
                return Err(ConfigError::Invalid(format!(
                    "otel.endpoint (DUET_OTEL__ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT): {endpoint:?} must start with http:// (traces go to a collector over plain HTTP; there is no TLS client)"
                )));
            }
        }
        if let Some(url) = &self.webhook.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "webhook.url (DUET_WEBHOOK__URL): {url:?} must start with http:// or https://"
                )));
            }
            if self.webhook.secret.is_none() {
                return Err(ConfigError::Invalid(
                    "webhook.secret (DUET_WEBHOOK__SECRET) is required with webhook.url: every delivery is signed".into(),
                ));
            }
        }
        if self.webhook.max_attempts == 0 || self.webhook.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "webhook.max_attempts and webhook.timeout_ms (DUET_WEBHOOK__MAX_ATTEMPTS, DUET_WEBHOOK__TIMEOUT_MS) must be at least 1".into(),
            ));
        }
        if self.retention.interval_secs == 0 || self.webhook.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "retention.interval_secs and webhook.poll_interval_ms (DUET_RETENTION__INTERVAL_SECS, DUET_WEBHOOK__POLL_INTERVAL_MS) must be at least 1".into(),
            ));
        }
        if self.hub.heartbeat_ttl_secs < 3 {
            return Err(ConfigError::Invalid(
                "hub.heartbeat_ttl_secs (DUET_HUB__HEARTBEAT_TTL_SECS) must be at least 3".into(),
            ));
        }
        Ok(())
    }

    /// `gateway.trusted_proxies`, parsed (validated at load).
    pub fn trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        self.gateway
            .trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }

    /// `api.trusted_proxies`, parsed (validated at load).
    pub fn api_trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        self.api
            .trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }

    /// The SQLite file the all-in-one binary uses when `DATABASE_URL` is unset.
    pub fn sqlite_path(&self) -> PathBuf {
        match self
            .database_url
            .as_deref()
            .and_then(|u| u.strip_prefix("sqlite://"))
        {
            Some(path) => PathBuf::from(path),
            None => self.data_dir.join("duet.sqlite3"),
        }
    }

    /// True when `DATABASE_URL` names a PostgreSQL server.
    pub fn uses_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }
}

/// An address (`10.0.0.1`, a host's own range) or a CIDR range (`10.0.0.0/8`).
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_serve_on_8080_with_sqlite_under_data() {
        let s = load(&[]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.max_content_length, 1_000_000);
        assert!(!s.uses_postgres());
        assert_eq!(s.sqlite_path(), PathBuf::from("./data/duet.sqlite3"));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.http.max_connections, 20_000);
        assert_eq!(s.http.handshake_timeout_ms, 5_000);
        assert_eq!(s.http.keep_alive_secs, 5);
        assert!(s.secret_key.is_none());
        assert_eq!(
            (
                s.api.creates_per_minute,
                s.api.joins_per_minute,
                s.api.password_failures_per_minute
            ),
            (30, 60, 10)
        );
        assert!(s.api_trusted_proxies().is_empty());
    }

    #[test]
    fn retention_and_webhooks_are_off_by_default_and_settable() {
        use secrecy::ExposeSecret;
        let s = load(&[]).unwrap();
        assert_eq!((s.retention.days, s.retention.interval_secs), (0, 3600));
        assert!(s.webhook.url.is_none());
        assert_eq!(s.webhook.max_attempts, 8);
        let s = load(&[
            ("DUET_RETENTION__DAYS", "30"),
            ("DUET_RETENTION__INTERVAL_SECS", "60"),
            ("DUET_WEBHOOK__URL", "https://hooks.example.com/duet"),
            ("DUET_WEBHOOK__SECRET", "whsec-abc"),
            ("DUET_WEBHOOK__PUBLIC_URL", "https://duet.example.com"),
            ("DUET_WEBHOOK__MAX_ATTEMPTS", "3"),
        ])
        .unwrap();
        assert_eq!((s.retention.days, s.retention.interval_secs), (30, 60));
        assert_eq!(
            s.webhook.url.as_deref(),
            Some("https://hooks.example.com/duet")
        );
        assert_eq!(s.webhook.secret.unwrap().expose_secret(), "whsec-abc");
        assert_eq!(
            s.webhook.public_url.as_deref(),
            Some("https://duet.example.com")
        );
        assert_eq!(s.webhook.max_attempts, 3);
        for bad in [
            vec![("DUET_WEBHOOK__URL", "ftp://x")],
            vec![("DUET_WEBHOOK__URL", "http://x")],
            vec![("DUET_WEBHOOK__MAX_ATTEMPTS", "0")],
            vec![("DUET_RETENTION__INTERVAL_SECS", "0")],
            vec![("DUET_RETENTION__DAYS", "-1")],
        ] {
            assert!(load(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_limits_and_trusted_proxies_are_settable() {
        let s = load(&[
            ("DUET_API__CREATES_PER_MINUTE", "2"),
            ("DUET_API__JOINS_PER_MINUTE", "0"),
            ("DUET_API__PASSWORD_FAILURES_PER_MINUTE", "3"),
            ("DUET_API__TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(s.api.creates_per_minute, 2);
        assert_eq!(s.api.joins_per_minute, 0);
        assert_eq!(s.api.password_failures_per_minute, 3);
        let nets: Vec<String> = s
            .api_trusted_proxies()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, vec!["127.0.0.1/32", "10.0.0.0/8"]);
    }

    #[test]
    fn otel_is_off_by_default_and_set_by_either_name() {
        let s = load(&[]).unwrap();
        assert_eq!(s.otel.endpoint, None);
        assert_eq!(s.otel.protocol, OtlpProtocol::HttpProtobuf);
        let s = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap();
        assert_eq!(s.otel.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(s.otel.protocol, OtlpProtocol::HttpJson);
        let s = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://standard:4318"),
            ("DUET_OTEL__ENDPOINT", "http://duet:4318"),
        ])
        .unwrap();
        assert_eq!(s.otel.endpoint.as_deref(), Some("http://duet:4318"));
        for (var, val) in [
            ("DUET_OTEL__ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ] {
            let e = load(&[(var, val)]).unwrap_err().to_string();
            assert!(e.contains("otel") || e.contains("protocol"), "{var}: {e}");
        }
    }

    #[test]
    fn seed_variables_are_honoured() {
        let s = load(&[
            ("PORT", "9001"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_URL", "redis://127.0.0.1:6380"),
            ("MAX_CONTENT_LENGTH", "2048"),
            ("SECRET_KEY", "s3cret"),
        ])
        .unwrap();
        assert_eq!(s.port, 9001);
        assert!(s.uses_postgres());
        assert_eq!(s.redis_url.as_deref(), Some("redis://127.0.0.1:6380"));
        assert_eq!(s.max_content_length, 2048);
        assert!(s.secret_key.is_some());
        assert!(!format!("{s:?}").contains("s3cret"), "secrets never print");
    }

    #[test]
    fn prefixed_nested_keys_and_lists() {
        let s = load(&[
            ("DUET_HUB__IDLE_UNLOAD_SECS", "7"),
            ("DUET_LOG_FORMAT", "json"),
            ("DUET_GATEWAY__HUB_URLS", "http://a:1,http://b:2"),
        ])
        .unwrap();
        assert_eq!(s.hub.idle_unload_secs, 7);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.gateway.hub_urls, vec!["http://a:1", "http://b:2"]);
        let s = load(&[("DUET_GATEWAY__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        let nets: Vec<String> = s.trusted_proxies().iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, vec!["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (var, val, key) in [
            ("PORT", "eighty", "port"),
            ("MAX_CONTENT_LENGTH", "-5", "max_content_length"),
            ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
            ("REDIS_URL", "http://x", "REDIS_URL"),
            ("DUET_LOG_FORMAT", "xml", "log_format"),
            ("DUET_HTTP__MAX_CONNECTIONS", "0", "max_connections"),
            ("DUET_HTTP__MAX_CONNECTIONS", "many", "max_connections"),
            (
                "DUET_HTTP__HANDSHAKE_TIMEOUT_MS",
                "0",
                "handshake_timeout_ms",
            ),
            (
                "DUET_GATEWAY__TRUSTED_PROXIES",
                "10.0.0.0/8,nginx",
                "DUET_GATEWAY__TRUSTED_PROXIES",
            ),
            (
                "DUET_API__TRUSTED_PROXIES",
                "gateway",
                "DUET_API__TRUSTED_PROXIES",
            ),
            ("DUET_API__JOINS_PER_MINUTE", "-1", "joins_per_minute"),
        ] {
            let err = load(&[(var, val)]).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={val}: {err}");
        }
    }

    #[test]
    fn a_named_config_file_is_read_and_env_wins() {
        let dir = std::env::temp_dir().join(format!("duet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("duet.toml");
        std::fs::write(
            &file,
            "port = 7000\nlog_level = \"debug\"\n[hub]\nsnapshot_every = 9\n",
        )
        .unwrap();
        let path = file.to_string_lossy().to_string();
        let s = load(&[("DUET_CONFIG", path.as_str()), ("PORT", "7001")]).unwrap();
        assert_eq!(s.port, 7001);
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.hub.snapshot_every, 9);
        let missing = load(&[("DUET_CONFIG", "/nonexistent/duet.toml")]);
        assert!(missing.is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
