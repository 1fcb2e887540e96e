//! The sessions REST API against real backends: every test runs on SQLite and on PostgreSQL.

use std::net::TcpListener;
use std::sync::Arc;

use duet_session_api::Application;
use duet_storage::{postgres::PgStorage, sqlite::SqliteStorage, Storage};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Small so the 413 test does not need megabytes.
const TEST_MAX_BODY: usize = 4096;

struct TestApp {
    base: String,
    http: reqwest::Client,
}

impl TestApp {
    async fn spawn(storage: Arc<dyn Storage>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let app = Application::with_storage(
            listener,
            storage,
            TEST_MAX_BODY,
            duet_telemetry::connections::ConnectionLimits::default(),
        )
        .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn post_raw(&self, body: &'static str, content_type: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/session", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn postgres() -> Arc<dyn Storage> {
    let url = duet_testkit::postgres::fresh_database_url().await;
    Arc::new(PgStorage::connect(&url).await.unwrap())
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

async fn create_then_find(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage.clone()).await;
    let (status, created) = app
        .create(json!({"language": "python", "title": "  Round 1 "}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // The seed's names: `session_code` is the human-readable code, `code` the interview's text.
    let code = created["session_code"].as_str().unwrap();
    assert!(duet_domain::SessionCode::parse(code).is_ok(), "{code}");
    assert_eq!(created["code"], "", "a new interview has no text yet");
    assert_eq!(created["language"], "python");
    assert_eq!(created["title"], "Round 1");
    assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());
    assert!(time::OffsetDateTime::parse(
        created["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    let mut keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "code",
            "created_at",
            "editing_locked",
            "ended_at",
            "has_password",
            "id",
            "interviewer_token",
            "language",
            "links",
            "runs_enabled",
            "session_code",
            "started_at",
            "state",
            "title"
        ],
        "no other (old) field names"
    );

    let (status, found) = app
        .get(&format!("/api/session/{}", code.to_lowercase()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["session_code"], code);
    assert_eq!(found["code"], "");
    assert_eq!(found["id"], created["id"]);
    assert_eq!(found["language"], "python");
    assert_eq!(found["connected_users"], 0);
    assert_eq!(found["created_at"], created["created_at"]);
    assert!(found.get("text").is_none(), "{found}");
    assert!(found.get("interviewer_token").is_none(), "{found}");

    // `code` is the current text: the plain-text copy the hub saves.
    let id = uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    storage.set_text(id, "print('hi')\n").await.unwrap();
    let (_, found) = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found["code"], "print('hi')\n");
    // A NUL typed into the document is shown as U+FFFD (PostgreSQL text cannot hold U+0000).
    storage.set_text(id, "a\0b").await.unwrap();
    let (_, found) = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found["code"], "a\u{FFFD}b");

    // An empty body gets the defaults; codes differ.
    let (status, other) = app.post_raw("", "application/json").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(other["language"], "javascript");
    assert_ne!(other["session_code"], created["session_code"]);

    let (status, runs) = app.get(&format!("/api/session/{code}/runs")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs["runs"], json!([]));
}

async fn bad_input_gets_typed_errors(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let cases: Vec<(&'static str, &str, StatusCode, &str)> = vec![
        (
            "{not json",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            r#"{"language": "python""#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            r#"{"language": 5}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"title": ["x"]}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"lang": "python"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#""python""#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"language": "cobol"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_language",
        ),
        (
            r#"{"language": "python"}"#,
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (body, ct, status, code) in cases {
        let (got, json) = app.post_raw(body, ct).await;
        assert_eq!(got, status, "{body}: {json}");
        assert_eq!(error_code(&json), code, "{body}");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (status, json) = app.create(json!({"title": "x".repeat(201)})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&json), "title_too_long");
    // U+0000 cannot be stored on PostgreSQL; no control character belongs in a title. Both
    // backends give the same typed answer.
    for title in ["before\0after", "two\nlines", "bell\u{7}"] {
        let (status, json) = app.create(json!({ "title": title })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{title:?}: {json}");
        assert_eq!(error_code(&json), "invalid_field", "{title:?}");
    }

    let big = json!({"title": "y".repeat(TEST_MAX_BODY)});
    let (status, json) = app.create(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&json), "payload_too_large");

    let (status, json) = app.get("/api/session/ZZZZ2222").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&json), "session_not_found");
    for bad in [
        "/api/session/short",
        "/api/session/K7MX2QP0",
        "/api/session/%E2%9C%93%E2%9C%93%E2%9C%93",
    ] {
        let (status, json) = app.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(&json), "invalid_code");
    }
    let (status, json) = app.get("/api/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&json), "not_found");

    // Nothing above was stored: a good request still works and the service is healthy.
    let (status, _) = app.create(json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    let (status, langs) = app.get("/api/languages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(langs["languages"], json!(["javascript", "python", "html"]));
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_backend { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

on_both_backends!(create_then_find, bad_input_gets_typed_errors);

/// PostgreSQL going away gives 503s (not hangs or panics); when it is back the same service recovers.
#[tokio::test]
async fn database_outage_gives_503_and_recovers() {
    let mut pg = duet_testkit::postgres::TestPostgres::start().await;
    let url = pg.fresh_database_url().await;
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&url).await.unwrap());
    let app = TestApp::spawn(storage).await;
    let (_, created) = app.create(json!({})).await;
    let code = created["session_code"].as_str().unwrap().to_owned();

    pg.stop().await;
    let started = std::time::Instant::now();
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "unavailable");
    let (status, body) = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "unavailable");
    let (status, body) = app.create(json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "503s must come quickly, not after a hang"
    );

    pg.start_again().await;
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/readyz").await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(recovered, "readiness recovers by itself");
    let (status, found) = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["session_code"], code.as_str());
}

/// A known path asked with a method it does not serve: 405, `Allow`, the JSON error shape. `HEAD`
/// works wherever `GET` does (same status and headers, no body).
#[tokio::test]
async fn wrong_methods_get_405_with_allow_and_head_answers_like_get() {
    let app = TestApp::spawn(sqlite().await).await;
    let (_, created) = app.create(json!({})).await;
    let code = created["session_code"].as_str().unwrap();
    let session = format!("/api/session/{code}");
    let runs = format!("/api/session/{code}/runs");
    for (method, path, allow) in [
        ("GET", "/api/session", "POST"),
        ("PUT", "/api/session", "POST"),
        ("OPTIONS", "/api/session", "POST"),
        // DELETE erases (interviewer token; see tests/record.rs).
        ("PUT", session.as_str(), "GET, HEAD, DELETE"),
        ("POST", session.as_str(), "GET, HEAD, DELETE"),
        ("POST", runs.as_str(), "GET, HEAD"),
        ("PATCH", "/api/languages", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
    ] {
        duet_testkit::http::assert_method_not_allowed(&app.base, method, path, allow).await;
    }
    // Unknown paths stay 404, whatever the method.
    let r = app
        .http
        .delete(format!("{}/api/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    for path in [
        session.as_str(),
        runs.as_str(),
        "/api/languages",
        "/healthz",
        "/readyz",
        "/api/session/ZZZZ2222",
    ] {
        duet_testkit::http::assert_head_like_get(&app.base, path).await;
    }
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    let url = duet_testkit::postgres::fresh_database_url().await;
    duet_testkit::service::silent_connections_are_closed_after_the_handshake_timeout(
        env!("CARGO_BIN_EXE_duet-session-api"),
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", duet_testkit::redis::redis_url().as_str()),
            ("SECRET_KEY", "a test secret of enough length"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_silent_flood_never_starves_healthz_under_a_low_open_files_limit() {
    let url = duet_testkit::postgres::fresh_database_url().await;
    duet_testkit::service::a_silent_flood_never_starves_healthz(
        env!("CARGO_BIN_EXE_duet-session-api"),
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", duet_testkit::redis::redis_url().as_str()),
            ("SECRET_KEY", "a test secret of enough length"),
        ],
    )
    .await;
}

/// `/metrics`: requests by route pattern (not raw path), method and status, with a latency histogram.
#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::spawn(sqlite().await).await;
    let (status, created) = app.create(json!({"language": "python"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let code = created["session_code"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/session/{code}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/session/ZZZZ2222").await.0,
        StatusCode::NOT_FOUND
    );
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "duet_http_requests_total{method=\"POST\",route=\"/api/session\",service=\"session-api\",status=\"201\"} 1",
        "duet_http_requests_total{method=\"GET\",route=\"/api/session/{code}\",service=\"session-api\",status=\"200\"} 1",
        "duet_http_requests_total{method=\"GET\",route=\"/api/session/{code}\",service=\"session-api\",status=\"404\"} 1",
        "duet_http_request_duration_seconds_count{method=\"GET\",route=\"/api/session/{code}\",service=\"session-api\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // The scrape's own connection, at least, is open.
    let open: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("duet_http_open_connections{service=\"session-api\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no open-connections gauge in\n{text}"));
    assert!(open >= 1, "{text}");
    // Its database (SQLite here) and its in-process bus answer.
    for dependency in ["database", "bus"] {
        let line =
            format!("duet_dependency_up{{dependency=\"{dependency}\",service=\"session-api\"}} 1");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(!text.contains(code), "raw paths are never labels");
}
