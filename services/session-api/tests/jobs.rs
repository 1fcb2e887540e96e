//! The session-API's background jobs against real receivers (issue 15): webhooks signed and
//! retried after a 500, given up after their attempts, a hanging receiver that holds up no request;
//! the retention job erasing an old ended interview and keeping a fresh one. On SQLite and
//! PostgreSQL.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet_auth::TokenKey;
use duet_bus::LocalBus;
use duet_config::Settings;
use duet_domain::InterviewState;
use duet_session_api::jobs::{self, Jobs};
use duet_session_api::{ApiState, Application};
use duet_storage::{postgres::PgStorage, sqlite::SqliteStorage, Storage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const SECRET: &str = "whsec-test";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

/// How the receiver answers its n-th request (from 0): a status, or never.
type Answer = Arc<dyn Fn(usize) -> Option<u16> + Send + Sync>;

/// A real HTTP receiver on a free port: reads each request whole and answers it as `answer` says.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (g, c) = (got.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (g, c, answer) = (g.clone(), c.clone(), answer.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(req) = read_request(&mut stream).await else {
                            return;
                        };
                        let n = {
                            let mut got = g.lock().unwrap();
                            got.push(req);
                            got.len() - 1
                        };
                        c.fetch_add(1, Ordering::SeqCst);
                        let Some(status) = answer(n) else {
                            // Hang: hold the connection open, answer nothing.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        };
                        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            url,
            got,
            connections,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        headers,
        body: String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
    })
}

struct TestApp {
    base: String,
    http: reqwest::Client,
    storage: Arc<dyn Storage>,
    _jobs: Jobs,
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::load_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

impl TestApp {
    /// The API with its jobs running, as the standalone service and `duet` run them.
    async fn spawn(storage: Arc<dyn Storage>, settings: Settings) -> Self {
        let key = TokenKey::new("the test deployment's secret key").unwrap();
        let state = ApiState::new(&settings, storage.clone(), Arc::new(LocalBus::new()), key);
        let jobs = jobs::spawn(&settings, storage.clone(), state.job_metrics.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let app = Application::with_state(
            listener,
            state,
            duet_telemetry::connections::ConnectionLimits::default(),
        )
        .unwrap();
        let port = app.port();
        tokio::spawn(app.run_until_stopped());
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            storage,
            _jobs: jobs,
        }
    }

    /// Creates an interview: `(id, code, interviewer token)`.
    async fn create(&self, body: Value) -> (Uuid, String, String) {
        let r = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            Uuid::parse_str(v["id"].as_str().unwrap()).unwrap(),
            v["session_code"].as_str().unwrap().to_owned(),
            v["interviewer_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn action(&self, code: &str, action: &str, token: &str) {
        let r = self
            .http
            .post(format!("{}/api/session/{code}/{action}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

async fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn postgres() -> Arc<dyn Storage> {
    let url = duet_testkit::postgres::fresh_database_url().await;
    Arc::new(PgStorage::connect(&url).await.unwrap())
}

async fn until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

fn webhook_settings(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("DUET_WEBHOOK__URL", url),
        ("DUET_WEBHOOK__SECRET", SECRET),
        ("DUET_WEBHOOK__PUBLIC_URL", "https://duet.example.com/"),
        ("DUET_WEBHOOK__RETRY_BASE_MS", "200"),
        ("DUET_WEBHOOK__POLL_INTERVAL_MS", "50"),
        ("DUET_WEBHOOK__TIMEOUT_MS", "1000"),
    ];
    vars.extend_from_slice(extra);
    settings(&vars)
}

/// HMAC-SHA256 computed here independently of the service's `jobs::sign`.
fn expected_signature(timestamp: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

async fn webhooks_are_signed_and_retried_after_a_500(storage: Arc<dyn Storage>) {
    // The first request fails with 500; every later one is accepted.
    let receiver = Receiver::start(Arc::new(|n| Some(if n == 0 { 500 } else { 204 }))).await;
    let app = TestApp::spawn(storage, webhook_settings(&receiver.url, &[])).await;
    let (id, code, token) = app.create(json!({"lobby": true})).await;
    app.action(&code, "start", &token).await;
    app.action(&code, "end", &token).await;

    assert!(
        until(10, || receiver.got().len() >= 4).await,
        "got {:?}",
        receiver.got()
    );
    let got = receiver.got();
    assert_eq!(got.len(), 4, "one retry, no duplicate: {got:?}");
    let mut by_type: HashMap<String, Vec<(Value, Received)>> = HashMap::new();
    for r in &got {
        // The receiver's checks: a fresh timestamp, a signature over it and the exact body.
        let ts = &r.headers["duet-timestamp"];
        let age = OffsetDateTime::now_utc().unix_timestamp() - ts.parse::<i64>().unwrap();
        assert!((0..30).contains(&age), "timestamp {ts}");
        assert_eq!(r.headers["duet-signature"], expected_signature(ts, &r.body));
        assert_ne!(
            r.headers["duet-signature"],
            expected_signature(&(ts.parse::<i64>().unwrap() + 1).to_string(), &r.body),
            "a replayed body with another timestamp does not verify"
        );
        assert_eq!(r.headers["content-type"], "application/json");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        by_type
            .entry(body["type"].as_str().unwrap().to_owned())
            .or_default()
            .push((body, r.clone()));
    }
    let mut types: Vec<_> = by_type.keys().cloned().collect();
    types.sort();
    assert_eq!(
        types,
        ["interview.created", "interview.ended", "interview.started"]
    );
    let created = &by_type["interview.created"];
    assert_eq!(created.len(), 2, "the 500 was retried");
    assert_eq!(created[0].0, created[1].0, "the same body again");
    assert_eq!(
        created[0].1.headers["duet-delivery"], created[1].1.headers["duet-delivery"],
        "the same delivery id again"
    );
    for (body, _) in by_type.values().flatten() {
        assert_eq!(body["id"], id.to_string());
        assert_eq!(body["session_code"], code);
        assert_eq!(
            body["record_url"],
            format!("https://duet.example.com/api/session/{code}/record")
        );
        assert!(OffsetDateTime::parse(
            body["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
        assert_eq!(
            body.as_object().unwrap().len(),
            5,
            "type, id, session_code, at, record_url: {body}"
        );
    }
    let session = app.storage.session_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        by_type["interview.ended"][0].0["at"],
        json!(session
            .ended_at
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap())
    );

    // Counted, and the outbox is empty.
    let mut delivered = None;
    for _ in 0..100 {
        delivered = app
            .metric("duet_webhook_deliveries_total{outcome=\"delivered\"}")
            .await;
        if delivered == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, Some(3.0));
    assert_eq!(
        app.metric("duet_webhook_deliveries_total{outcome=\"retried\"}")
            .await,
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app
        .storage
        .claim_webhooks(OffsetDateTime::now_utc() + time::Duration::days(1), 60, 100)
        .await
        .unwrap()
        .is_empty());
}

async fn a_failing_receiver_is_given_up_after_its_attempts(storage: Arc<dyn Storage>) {
    let receiver = Receiver::start(Arc::new(|_| Some(500))).await;
    let app = TestApp::spawn(
        storage,
        webhook_settings(&receiver.url, &[("DUET_WEBHOOK__MAX_ATTEMPTS", "3")]),
    )
    .await;
    let started = Instant::now();
    app.create(json!({"lobby": true})).await;
    assert!(until(10, || receiver.got().len() >= 3).await);
    // 200 ms, then 400 ms between the attempts.
    assert!(started.elapsed() >= Duration::from_millis(600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), 3, "no fourth attempt");
    assert_eq!(
        app.metric("duet_webhook_deliveries_total{outcome=\"failed\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("duet_webhook_deliveries_total{outcome=\"retried\"}")
            .await,
        Some(2.0)
    );
}

async fn a_hanging_receiver_holds_up_no_request(storage: Arc<dyn Storage>) {
    let receiver = Receiver::start(Arc::new(|_| None)).await;
    let app = TestApp::spawn(storage, webhook_settings(&receiver.url, &[])).await;
    let (_, code, token) = app.create(json!({"lobby": true})).await;
    assert!(until(5, || !receiver.got().is_empty()).await);
    // The receiver holds the delivery; the API answers as ever meanwhile.
    for _ in 0..5 {
        let t = Instant::now();
        let (_, c, tok) = app.create(json!({})).await;
        app.action(&c, "end", &tok).await;
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    app.action(&code, "start", &token).await;
    assert!(t.elapsed() < Duration::from_millis(500));
    // The attempt times out (1 s) and is retried.
    assert!(
        until(10, || receiver.connections.load(Ordering::SeqCst) >= 2).await,
        "retried after the timeout"
    );
    assert!(app
        .metric("duet_webhook_deliveries_total{outcome=\"retried\"}")
        .await
        .is_some_and(|n| n >= 1.0));
}

async fn retention_erases_old_ended_interviews_and_keeps_fresh_ones(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(
        storage.clone(),
        settings(&[
            ("DUET_RETENTION__DAYS", "2"),
            ("DUET_RETENTION__INTERVAL_SECS", "1"),
        ]),
    )
    .await;
    let (old, _, _) = app.create(json!({})).await;
    let (ended_now, _, _) = app.create(json!({})).await;
    let (fresh, _, _) = app.create(json!({"lobby": true})).await;
    let (recent, _, _) = app.create(json!({})).await;
    let now = OffsetDateTime::now_utc();
    storage
        .transition(old, InterviewState::Ended, now - time::Duration::days(3))
        .await
        .unwrap();
    storage
        .transition(ended_now, InterviewState::Ended, now)
        .await
        .unwrap();
    storage
        .transition(recent, InterviewState::Ended, now - time::Duration::days(1))
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if storage.session_by_id(old).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the interview ended three days ago is erased");
    assert!(storage.events(old).await.unwrap().is_empty());
    // Another round passes; the others stay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for kept in [ended_now, fresh, recent] {
        assert!(storage.session_by_id(kept).await.unwrap().is_some());
    }
    assert_eq!(app.metric("duet_retention_erased_total").await, Some(1.0));
}

/// Two replicas running the job at once erase each interview once, and nothing else.
async fn replicas_share_the_retention_job(storage: Arc<dyn Storage>) {
    let now = OffsetDateTime::now_utc();
    let mut old = Vec::new();
    for _ in 0..5 {
        let s = storage
            .create_session(duet_domain::NewSession {
                code: duet_domain::SessionCode::generate(),
                title: duet_domain::Title::parse("").unwrap(),
                language: duet_domain::Language::Python,
                lobby: false,
                password_hash: None,
            })
            .await
            .unwrap();
        storage
            .transition(s.id, InterviewState::Ended, now - time::Duration::days(9))
            .await
            .unwrap();
        old.push(s.id);
    }
    let (a, b) = (jobs::JobMetrics::new(), jobs::JobMetrics::new());
    let cutoff = now - time::Duration::days(2);
    let (ra, rb) = tokio::join!(
        jobs::erase_expired(storage.as_ref(), cutoff, &a),
        jobs::erase_expired(storage.as_ref(), cutoff, &b),
    );
    assert_eq!(ra.unwrap() + rb.unwrap(), 5);
    for id in old {
        assert!(storage.session_by_id(id).await.unwrap().is_none());
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_backend { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

on_both_backends!(
    webhooks_are_signed_and_retried_after_a_500,
    a_failing_receiver_is_given_up_after_its_attempts,
    a_hanging_receiver_holds_up_no_request,
    retention_erases_old_ended_interviews_and_keeps_fresh_ones,
    replicas_share_the_retention_job,
);
