//! Interviews over REST (issue 14): tokens and links, joining with and without a password, the
//! interviewer's actions and who may take them, the `Control` announcements on the bus, the per-IP
//! limits, and the standalone service's required settings. Storage-facing tests run on SQLite and
//! on PostgreSQL.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_auth::{Claims, TokenKey, TokenKind};
use duet_bus::relay::{self, BusMessage};
use duet_bus::{Bus, BusEvent, LocalBus, RedisBus, Subscription};
use duet_config::Settings;
use duet_domain::{palette_color, InterviewControl, Role};
use duet_session_api::{ApiState, Application};
use duet_storage::{postgres::PgStorage, sqlite::SqliteStorage, Storage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "the test deployment's secret key";

struct TestApp {
    base: String,
    port: u16,
    http: reqwest::Client,
    key: TokenKey,
    bus: Arc<LocalBus>,
}

fn settings() -> Settings {
    Settings::load_from(Vec::<(String, String)>::new()).unwrap()
}

impl TestApp {
    async fn spawn(storage: Arc<dyn Storage>) -> Self {
        Self::spawn_with(storage, settings()).await
    }

    async fn spawn_with(storage: Arc<dyn Storage>, settings: Settings) -> Self {
        Self::spawn_sharing(storage, settings, None).await
    }

    /// With `shared`, the limits are counted there (as the standalone service does in Redis).
    async fn spawn_sharing(
        storage: Arc<dyn Storage>,
        settings: Settings,
        shared: Option<Arc<dyn Bus>>,
    ) -> Self {
        let key = TokenKey::new(SECRET).unwrap();
        let bus = Arc::new(LocalBus::new());
        let mut state = ApiState::new(&settings, storage, bus.clone(), key.clone());
        if let Some(shared) = shared {
            state.limits = Arc::new(
                duet_session_api::limits::Limits::from_settings(&settings).shared_through(shared),
            );
        }
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
            port,
            http: reqwest::Client::new(),
            key,
            bus,
        }
    }

    /// POSTs `body` to `path` with an optional Bearer token.
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.post_with(path, token, body, &[]).await
    }

    async fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Reply::of(r.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Reply {
        Reply::of(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Creates an interview; returns its answer.
    async fn create(&self, body: Value) -> Value {
        let r = self.post("/api/session", None, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    async fn join(&self, code: &str, token: Option<&str>, body: Value) -> Reply {
        self.post(&format!("/api/session/{code}/join"), token, body)
            .await
    }

    /// Joins as a candidate (no password) and returns `(token, user_id)`.
    async fn candidate(&self, code: &str) -> (String, Uuid) {
        let r = self.join(code, None, json!({"name": "Cand"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (r.str("token"), r.uuid("user_id"))
    }

    async fn subscribe(&self, session_id: Uuid) -> Subscription {
        self.bus
            .subscribe(&relay::channel(session_id))
            .await
            .unwrap()
    }
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    async fn of(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.json().await.unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.body))
            .to_owned()
    }

    fn uuid(&self, field: &str) -> Uuid {
        Uuid::parse_str(&self.str(field)).unwrap()
    }

    #[track_caller]
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        assert!(self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

fn id_of(created: &Value) -> Uuid {
    Uuid::parse_str(created["id"].as_str().unwrap()).unwrap()
}

fn code_of(created: &Value) -> String {
    created["session_code"].as_str().unwrap().to_owned()
}

/// The next `Control` message on a subscription (within 5 s), with its origin.
async fn next_control(sub: &mut Subscription) -> (String, InterviewControl) {
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("a message within 5 s")
        .expect("subscription open");
    let BusEvent::Message(raw) = event else {
        panic!("{event:?}");
    };
    let mut messages = relay::decode_all(&raw);
    assert_eq!(messages.len(), 1, "one message");
    let (origin, message) = messages.remove(0);
    let BusMessage::Control { json } = message else {
        panic!("not a Control message: {message:?}");
    };
    (origin, serde_json::from_slice(&json).unwrap())
}

/// Nothing arrives on the subscription for a while.
async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("unexpected bus message: {event:?}");
    }
}

async fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn postgres() -> Arc<dyn Storage> {
    let url = duet_testkit::postgres::fresh_database_url().await;
    Arc::new(PgStorage::connect(&url).await.unwrap())
}

async fn creating_gives_an_interviewer_token_and_links(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app
        .create(json!({"language": "python", "lobby": true, "password": "open sesame"}))
        .await;
    let (id, code) = (id_of(&created), code_of(&created));
    assert_eq!(created["state"], "waiting");
    assert_eq!(created["started_at"], Value::Null);
    assert_eq!(created["ended_at"], Value::Null);
    assert_eq!(created["has_password"], true);
    assert_eq!(created["editing_locked"], false);
    assert_eq!(created["runs_enabled"], true);

    // The token is a link token for this interview, signed with the deployment's key.
    let token = created["interviewer_token"].as_str().unwrap();
    let claims = app.key.verify(token, id).unwrap();
    assert_eq!(
        (claims.role, claims.kind, claims.uid),
        (Role::Interviewer, TokenKind::Link, None)
    );
    // Links: absolute, from the request's origin; the token only in the interviewer's fragment.
    let candidate = format!("http://127.0.0.1:{}/interview/{code}", app.port);
    assert_eq!(created["links"]["candidate"], candidate.as_str());
    assert_eq!(
        created["links"]["interviewer"],
        format!("{candidate}#token={token}").as_str()
    );
    let text = created.to_string();
    assert!(!text.contains("$argon2"), "no hash in {text}");
    assert!(!text.contains("open sesame"), "no password in {text}");

    // The origin is the one the request names.
    let other = app
        .post_with("/api/session", None, json!({}), &[("host", "duet.example")])
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert!(other.body["links"]["candidate"]
        .as_str()
        .unwrap()
        .starts_with("http://duet.example/interview/"));
    assert_ne!(
        other.body["interviewer_token"], created["interviewer_token"],
        "every interview has its own"
    );

    // GET shows the state, never a token or the hash.
    let found = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found.status, StatusCode::OK);
    for field in [
        "state",
        "started_at",
        "ended_at",
        "has_password",
        "editing_locked",
        "runs_enabled",
    ] {
        assert_eq!(found.body[field], created[field], "{field}");
    }
    let text = found.body.to_string();
    assert!(!text.contains(token) && !text.contains("$argon2"), "{text}");
    assert!(found.body.get("interviewer_token").is_none());
    assert!(found.body.get("links").is_none());

    // Without a lobby it is live from creation; an empty password is none.
    let live = app.create(json!({"password": ""})).await;
    assert_eq!(live["state"], "live");
    assert_eq!(live["started_at"], live["created_at"]);
    assert_eq!(live["has_password"], false);

    // Passwords are 1–128 characters (an empty one being none).
    let r = app
        .post("/api/session", None, json!({"password": "é".repeat(129)}))
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    let r = app
        .post("/api/session", None, json!({"password": "é".repeat(128)}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .post("/api/session", None, json!({"lobby": "yes"}))
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
}

async fn joining_gives_participant_tokens(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app.create(json!({})).await;
    let (id, code) = (id_of(&created), code_of(&created));
    let link = created["interviewer_token"].as_str().unwrap();

    let first = app.join(&code, None, json!({"name": "Ada"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["role"], "candidate");
    assert_eq!(first.body["color"], palette_color(0));
    let claims = app.key.verify(&first.str("token"), id).unwrap();
    assert_eq!(claims.kind, TokenKind::Participant);
    assert_eq!(claims.role, Role::Candidate);
    assert_eq!(claims.uid, Some(first.uuid("user_id")));
    assert_eq!(claims.color.as_deref(), Some(palette_color(0)));

    // The interviewer link joins as interviewer; every join has its own user and colour.
    let second = app
        .join(&code.to_lowercase(), Some(link), json!({"name": "Grace"}))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["role"], "interviewer");
    assert_eq!(second.body["color"], palette_color(1));
    assert_ne!(second.body["user_id"], first.body["user_id"]);
    let claims = app.key.verify(&second.str("token"), id).unwrap();
    assert_eq!(
        (claims.role, claims.uid),
        (Role::Interviewer, Some(second.uuid("user_id")))
    );
    // An interviewer's participant token is an interviewer's too.
    let third = app
        .join(
            &code,
            Some(&second.str("token")),
            json!({"name": "Grace 2"}),
        )
        .await;
    assert_eq!(third.body["role"], "interviewer");
    // A candidate's token joins as a candidate.
    let fourth = app
        .join(&code, Some(&first.str("token")), json!({"name": "Ada"}))
        .await;
    assert_eq!(fourth.body["role"], "candidate");

    // Names are display names.
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "a\nb"}),
        json!({"name": "x".repeat(65)}),
        json!({}),
        json!({"name": 5}),
        json!({"name": "Ada", "role": "interviewer"}),
    ] {
        let r = app.join(&code, None, body.clone()).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    }
    app.join("ZZZZ2222", None, json!({"name": "Ada"}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "session_not_found");
    // A token that does not verify is refused, not ignored.
    let forged = TokenKey::new("another deployment's secret key")
        .unwrap()
        .link_token(id);
    app.join(&code, Some(&forged), json!({"name": "Mallory"}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn a_password_guards_candidate_joins(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app.create(json!({"password": "open sesame"})).await;
    let (id, code) = (id_of(&created), code_of(&created));
    let link = created["interviewer_token"].as_str().unwrap();

    app.join(&code, None, json!({"name": "Ada"}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "password_required");
    app.join(&code, None, json!({"name": "Ada", "password": ""}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "password_required");
    app.join(
        &code,
        None,
        json!({"name": "Ada", "password": "open sesam"}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "invalid_password");
    app.join(
        &code,
        None,
        json!({"name": "Ada", "password": "x".repeat(500)}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "invalid_password");
    let ok = app
        .join(
            &code,
            None,
            json!({"name": "Ada", "password": "open sesame"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["role"], "candidate");
    assert!(app.key.verify(&ok.str("token"), id).is_ok());
    // The interviewer needs none; a candidate's token does not stand in for the password.
    let r = app.join(&code, Some(link), json!({"name": "Grace"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "interviewer");
    app.join(&code, Some(&ok.str("token")), json!({"name": "Ada"}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "password_required");
}

/// Tokens that are no interviewer's for this interview: none, forged, expired, another
/// interview's, another scheme → 401; a candidate's → 403. Nothing changes, nothing is announced.
async fn only_interviewers_start_end_control_and_remove(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app.create(json!({"lobby": true})).await;
    let (id, code) = (id_of(&created), code_of(&created));
    let other = app.create(json!({})).await;
    let (candidate, candidate_id) = app.candidate(&code).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = app.key.sign(&Claims {
        sid: id,
        role: Role::Interviewer,
        kind: TokenKind::Link,
        uid: None,
        color: None,
        iat: now - 7200,
        exp: now - 3600,
    });
    let forged = TokenKey::new("another deployment's secret key")
        .unwrap()
        .link_token(id);
    let other_interview = other["interviewer_token"].as_str().unwrap().to_owned();
    let mut sub = app.subscribe(id).await;

    let actions = [
        ("start", json!({})),
        ("end", json!({})),
        (
            "controls",
            json!({"editing_locked": true, "runs_enabled": false}),
        ),
        ("remove", json!({"user_id": candidate_id})),
    ];
    for (action, body) in &actions {
        let path = format!("/api/session/{code}/{action}");
        let none = app.post(&path, None, body.clone()).await;
        none.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(none.headers["www-authenticate"], "Bearer");
        for token in [
            forged.as_str(),
            expired.as_str(),
            other_interview.as_str(),
            "not-a-token",
        ] {
            app.post(&path, Some(token), body.clone())
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        let basic = app
            .post_with(
                &path,
                None,
                body.clone(),
                &[("authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")],
            )
            .await;
        basic.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        app.post(&path, Some(&candidate), body.clone())
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(
            &format!("/api/session/ZZZZ2222/{action}"),
            None,
            body.clone(),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND, "session_not_found");
    }
    assert_quiet(&mut sub).await;
    // Nothing changed: still waiting, unlocked, runs on, the candidate still in.
    let found = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found.body["state"], "waiting");
    assert_eq!(found.body["editing_locked"], false);
    assert_eq!(found.body["runs_enabled"], true);
    assert_eq!(
        app.join(&code, Some(&candidate), json!({"name": "Cand"}))
            .await
            .status,
        StatusCode::OK,
        "the candidate was not removed"
    );

    // The link token and an interviewer's participant token both work.
    let link = created["interviewer_token"].as_str().unwrap();
    let r = app
        .post(&format!("/api/session/{code}/start"), Some(link), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let joined = app.join(&code, Some(link), json!({"name": "Grace"})).await;
    let r = app
        .post(
            &format!("/api/session/{code}/controls"),
            Some(&joined.str("token")),
            json!({"editing_locked": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["editing_locked"], true);
}

async fn the_lifecycle_moves_forward_only_and_is_announced(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app.create(json!({"lobby": true})).await;
    let (id, code) = (id_of(&created), code_of(&created));
    let link = created["interviewer_token"].as_str().unwrap();
    let mut sub = app.subscribe(id).await;
    let act = |action: &'static str| {
        let path = format!("/api/session/{code}/{action}");
        let app = &app;
        async move { app.post(&path, Some(link), json!({})).await }
    };

    let started = act("start").await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    assert_eq!(started.body["state"], "live");
    assert!(started.body["started_at"].is_string());
    assert_eq!(started.body["ended_at"], Value::Null);
    assert!(
        started.body.get("removed").is_none(),
        "no removals listed: {}",
        started.body
    );
    let (origin, control) = next_control(&mut sub).await;
    assert_eq!(origin, relay::API_ORIGIN);
    assert_eq!(serde_json::to_value(&control).unwrap(), started.body);

    // Repeating is harmless: the first start time stays.
    let again = act("start").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["started_at"], started.body["started_at"]);
    next_control(&mut sub).await;

    let ended = act("end").await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(ended.body["state"], "ended");
    assert_eq!(ended.body["started_at"], started.body["started_at"]);
    assert!(ended.body["ended_at"].is_string());
    let (_, control) = next_control(&mut sub).await;
    assert_eq!(serde_json::to_value(&control).unwrap(), ended.body);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = act("end").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["ended_at"], ended.body["ended_at"],
        "the first end time stays"
    );
    next_control(&mut sub).await;

    // Nothing leaves `ended`; nothing is announced for the refusal.
    let r = act("start").await;
    r.assert_error(StatusCode::CONFLICT, "invalid_transition");
    assert_quiet(&mut sub).await;
    let found = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found.body["state"], "ended");
    assert_eq!(found.body["ended_at"], ended.body["ended_at"]);
    assert_eq!(found.body["started_at"], started.body["started_at"]);

    // A lobby can be ended without ever going live.
    let lobby = app.create(json!({"lobby": true})).await;
    let r = app
        .post(
            &format!("/api/session/{}/end", code_of(&lobby)),
            lobby["interviewer_token"].as_str(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "ended");
    assert_eq!(r.body["started_at"], Value::Null);
}

async fn controls_and_removal_are_stored_and_announced(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let created = app.create(json!({})).await;
    let (id, code) = (id_of(&created), code_of(&created));
    let link = created["interviewer_token"].as_str().unwrap();
    let mut sub = app.subscribe(id).await;
    let controls = format!("/api/session/{code}/controls");

    let r = app
        .post(&controls, Some(link), json!({"editing_locked": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["editing_locked"], &r.body["runs_enabled"]),
        (&json!(true), &json!(true))
    );
    let (origin, control) = next_control(&mut sub).await;
    assert_eq!(origin, relay::API_ORIGIN);
    assert!(control.editing_locked && control.runs_enabled);
    let r = app
        .post(&controls, Some(link), json!({"runs_enabled": false}))
        .await;
    assert_eq!(
        (&r.body["editing_locked"], &r.body["runs_enabled"]),
        (&json!(true), &json!(false)),
        "one control leaves the other alone"
    );
    let (_, control) = next_control(&mut sub).await;
    assert!(control.editing_locked && !control.runs_enabled);
    let found = app.get(&format!("/api/session/{code}")).await;
    assert_eq!(found.body["editing_locked"], true);
    assert_eq!(found.body["runs_enabled"], false);
    for bad in [
        json!({"editing_locked": "yes"}),
        json!({"locked": true}),
        json!([true]),
    ] {
        app.post(&controls, Some(link), bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    }
    assert_quiet(&mut sub).await;

    // Removing a candidate: announced with its id; its token is refused from then on.
    let (candidate, candidate_id) = app.candidate(&code).await;
    let interviewer = app.join(&code, Some(link), json!({"name": "Grace"})).await;
    let interviewer_token = interviewer.str("token");
    let remove = format!("/api/session/{code}/remove");
    let r = app
        .post(&remove, Some(link), json!({"user_id": candidate_id}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["removed"], json!([candidate_id]));
    assert_eq!(r.body["state"], "live");
    assert_eq!(r.body["editing_locked"], true);
    let (_, control) = next_control(&mut sub).await;
    assert_eq!(control.removed, vec![candidate_id]);
    assert_eq!(serde_json::to_value(&control).unwrap(), r.body);
    app.join(&code, Some(&candidate), json!({"name": "Cand"}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Removing an interviewer takes its actions away (its token, not the link).
    let r = app
        .post(
            &remove,
            Some(link),
            json!({"user_id": interviewer.uuid("user_id")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    next_control(&mut sub).await;
    app.post(&controls, Some(&interviewer_token), json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post(
        &format!("/api/session/{code}/end"),
        Some(&interviewer_token),
        json!({}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_quiet(&mut sub).await;
    assert_eq!(
        app.get(&format!("/api/session/{code}")).await.body["state"],
        "live"
    );
    // Bad bodies.
    for bad in [json!({}), json!({"user_id": "nobody"})] {
        app.post(&remove, Some(link), bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_backend { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

on_both_backends!(
    creating_gives_an_interviewer_token_and_links,
    joining_gives_participant_tokens,
    a_password_guards_candidate_joins,
    only_interviewers_start_end_control_and_remove,
    the_lifecycle_moves_forward_only_and_is_announced,
    controls_and_removal_are_stored_and_announced,
);

/// The new paths answer POST only.
#[tokio::test]
async fn interview_actions_answer_post_only() {
    let app = TestApp::spawn(sqlite().await).await;
    let code = code_of(&app.create(json!({})).await);
    for action in ["join", "start", "end", "controls", "remove"] {
        duet_testkit::http::assert_method_not_allowed(
            &app.base,
            "GET",
            &format!("/api/session/{code}/{action}"),
            "POST",
        )
        .await;
    }
}

fn limited(creates: u32, joins: u32, failures: u32, trusted: &[&str]) -> Settings {
    let mut s = settings();
    s.api.creates_per_minute = creates;
    s.api.joins_per_minute = joins;
    s.api.password_failures_per_minute = failures;
    s.api.trusted_proxies = trusted.iter().map(|t| t.to_string()).collect();
    s
}

#[track_caller]
fn assert_rate_limited(r: &Reply) {
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "Retry-After {after}");
}

/// Per client IP: creations, then 429 with Retry-After; another client (by the trusted proxy's
/// X-Forwarded-For) has its own budget; an untrusted peer cannot dodge it with the header.
/// A bus whose publishes fail (Redis down), for the session-API's side of an outage.
struct DeadBus(LocalBus);

#[async_trait::async_trait]
impl Bus for DeadBus {
    async fn publish(&self, _: &str, _: bytes::Bytes) -> Result<(), duet_bus::BusError> {
        Err(duet_bus::BusError::Unavailable(
            "test: the bus is down".into(),
        ))
    }
    async fn subscribe_skipping(
        &self,
        channel: &str,
        skip: Option<duet_bus::Skip>,
    ) -> Result<Subscription, duet_bus::BusError> {
        self.0.subscribe_skipping(channel, skip).await
    }
    async fn ping(&self) -> Result<(), duet_bus::BusError> {
        Err(duet_bus::BusError::Unavailable(
            "test: the bus is down".into(),
        ))
    }
    async fn set_with_ttl(&self, k: &str, v: &str, ttl: u64) -> Result<(), duet_bus::BusError> {
        self.0.set_with_ttl(k, v, ttl).await
    }
    async fn keys_with_prefix(&self, p: &str) -> Result<Vec<String>, duet_bus::BusError> {
        self.0.keys_with_prefix(p).await
    }
    async fn get(&self, k: &str) -> Result<Option<String>, duet_bus::BusError> {
        self.0.get(k).await
    }
}

/// The bus down: creating and joining work and the service stays ready; an interviewer's action
/// is stored but answered 503 (repeating it is safe), so the caller knows the hubs were not told.
#[tokio::test]
async fn without_the_bus_actions_are_stored_and_answered_503() {
    let key = TokenKey::new(SECRET).unwrap();
    let state = ApiState::new(
        &settings(),
        sqlite().await,
        Arc::new(DeadBus(LocalBus::new())),
        key,
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::with_state(
        listener,
        state,
        duet_telemetry::connections::ConnectionLimits::default(),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/session"))
        .json(&json!({"lobby": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code_of(&created);
    let r = http
        .post(format!("{base}/api/session/{code}/join"))
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "ready: the database is what it needs"
    );
    let r = Reply::of(
        http.post(format!("{base}/api/session/{code}/start"))
            .bearer_auth(created["interviewer_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(r.headers["retry-after"], "2");
    let found: Value = http
        .get(format!("{base}/api/session/{code}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["state"], "live", "stored all the same");
}

#[tokio::test]
async fn creating_is_limited_per_client() {
    let app = TestApp::spawn_with(sqlite().await, limited(2, 0, 0, &[])).await;
    let as_ = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        let r = app
            .post_with("/api/session", None, json!({}), &as_("198.51.100.1"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // Nobody is trusted here: the header changes nothing, the peer is the client.
    let r = app
        .post_with("/api/session", None, json!({}), &as_("198.51.100.2"))
        .await;
    assert_rate_limited(&r);
    // Bad requests count too.
    assert_rate_limited(&app.post("/api/session", None, json!({"x": 1})).await);

    let app = TestApp::spawn_with(sqlite().await, limited(2, 0, 0, &["127.0.0.1"])).await;
    for _ in 0..2 {
        let r = app
            .post_with("/api/session", None, json!({}), &as_("198.51.100.1"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    assert_rate_limited(
        &app.post_with("/api/session", None, json!({}), &as_("198.51.100.1"))
            .await,
    );
    let r = app
        .post_with("/api/session", None, json!({}), &as_("198.51.100.2"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "another client");
    // A forged entry on the left does not make a new client.
    assert_rate_limited(
        &app.post_with(
            "/api/session",
            None,
            json!({}),
            &as_("203.0.113.77, 198.51.100.1"),
        )
        .await,
    );
}

/// Two replicas behind the gateways count a client's requests together in Redis: the budget is the
/// client's, not each replica's; another client has its own; wrong passwords likewise.
#[tokio::test]
async fn replicas_count_each_client_together_through_redis() {
    let redis: Arc<dyn Bus> = Arc::new(
        RedisBus::connect(&duet_testkit::redis::redis_url())
            .await
            .unwrap(),
    );
    let storage = sqlite().await;
    // The shared counters are per calendar minute: not across a minute's boundary.
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute >= 55 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    // A client address unique to this run (the counters live in a Redis other tests share).
    let me = format!("198.51.{}.{}", rand_octet(), rand_octet());
    let other = format!("203.0.{}.{}", rand_octet(), rand_octet());
    let settings = limited(3, 0, 2, &["127.0.0.1"]);
    let a = TestApp::spawn_sharing(storage.clone(), settings.clone(), Some(redis.clone())).await;
    let b = TestApp::spawn_sharing(storage.clone(), settings, Some(redis.clone())).await;
    let from = |ip: &str| [("x-forwarded-for", ip.to_owned())];
    let post = |app: &TestApp, ip: String| {
        let h = from(&ip);
        let app_base = app.base.clone();
        let http = app.http.clone();
        async move {
            http.post(format!("{app_base}/api/session"))
                .header(h[0].0, h[0].1.clone())
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(&a, me.clone()).await, StatusCode::CREATED);
    assert_eq!(post(&b, me.clone()).await, StatusCode::CREATED);
    assert_eq!(post(&a, me.clone()).await, StatusCode::CREATED);
    let over = b
        .post_with(
            "/api/session",
            None,
            json!({}),
            &[("x-forwarded-for", me.as_str())],
        )
        .await;
    assert_rate_limited(&over);
    assert_eq!(
        post(&b, other.clone()).await,
        StatusCode::CREATED,
        "another client"
    );

    // Wrong passwords: two in all, whichever replica; then even the right one waits.
    let created = a
        .post_with(
            "/api/session",
            None,
            json!({"password": "open sesame"}),
            &[("x-forwarded-for", other.as_str())],
        )
        .await;
    let code = code_of(&created.body);
    join_as(&a, &code, "wrong", &me)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_password");
    join_as(&b, &code, "wrong", &me)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_password");
    assert_rate_limited(&join_as(&a, &code, "wrong", &me).await);
    assert_rate_limited(&join_as(&b, &code, "open sesame", &me).await);
}

async fn join_as(app: &TestApp, code: &str, password: &str, ip: &str) -> Reply {
    let body = json!({"name": "Cara", "password": password});
    app.post_with(
        &format!("/api/session/{code}/join"),
        None,
        body,
        &[("x-forwarded-for", ip)],
    )
    .await
}

fn rand_octet() -> u8 {
    (uuid::Uuid::new_v4().as_u128() % 250) as u8 + 1
}

#[tokio::test]
async fn joining_is_limited_per_client() {
    let app = TestApp::spawn_with(sqlite().await, limited(0, 3, 0, &[])).await;
    let code = code_of(&app.create(json!({})).await);
    for _ in 0..3 {
        app.candidate(&code).await;
    }
    assert_rate_limited(&app.join(&code, None, json!({"name": "Ada"})).await);
    // Creating is another budget.
    app.create(json!({})).await;
}

/// Wrong passwords: within the budget 401; past it 429, and then even the right password is not
/// checked (429) for that client, while another client's right password works.
#[tokio::test]
async fn wrong_passwords_are_limited_per_client() {
    let app = TestApp::spawn_with(sqlite().await, limited(0, 0, 2, &["127.0.0.1"])).await;
    let code = code_of(&app.create(json!({"password": "open sesame"})).await);
    let join = |ip: &'static str, password: &'static str| {
        let app = &app;
        let code = code.clone();
        async move {
            app.post_with(
                &format!("/api/session/{code}/join"),
                None,
                json!({"name": "Ada", "password": password}),
                &[("x-forwarded-for", ip)],
            )
            .await
        }
    };
    assert_eq!(
        join("198.51.100.1", "open sesame").await.status,
        StatusCode::OK
    );
    for _ in 0..2 {
        join("198.51.100.1", "guess")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_password");
    }
    assert_rate_limited(&join("198.51.100.1", "guess").await);
    assert_rate_limited(&join("198.51.100.1", "open sesame").await);
    assert_eq!(
        join("198.51.100.2", "open sesame").await.status,
        StatusCode::OK
    );
    // Missing passwords are no guesses.
    join("198.51.100.3", "")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "password_required");
}

/// Runs `bin` with exactly `env` and returns its exit status and stderr; it must exit within 30 s.
fn run_to_exit(bin: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("DUET_DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The standalone service needs SECRET_KEY (long enough) and REDIS_URL, and says so.
#[tokio::test]
async fn the_standalone_service_refuses_to_start_without_secret_key_or_redis() {
    let bin = env!("CARGO_BIN_EXE_duet-session-api");
    let db = duet_testkit::postgres::fresh_database_url().await;
    let redis = duet_testkit::redis::redis_url();
    for (env, names) in [
        (
            vec![("DATABASE_URL", db.as_str()), ("REDIS_URL", redis.as_str())],
            "SECRET_KEY",
        ),
        (
            vec![
                ("DATABASE_URL", db.as_str()),
                ("REDIS_URL", redis.as_str()),
                ("SECRET_KEY", "too short"),
            ],
            "SECRET_KEY",
        ),
        (
            vec![("DATABASE_URL", db.as_str()), ("SECRET_KEY", SECRET)],
            "REDIS_URL",
        ),
    ] {
        let (status, stderr) = run_to_exit(bin, &env);
        assert!(!status.success(), "{env:?} must not start");
        assert!(stderr.contains(names), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The standalone service as deployed: its tokens are signed with SECRET_KEY and its
/// announcements reach the hubs through Redis.
#[tokio::test]
async fn the_standalone_service_signs_with_secret_key_and_announces_on_redis() {
    let db = duet_testkit::postgres::fresh_database_url().await;
    let redis = duet_testkit::redis::redis_url();
    let service = duet_testkit::service::Service::start(
        env!("CARGO_BIN_EXE_duet-session-api"),
        &[
            ("DATABASE_URL", db.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("SECRET_KEY", SECRET),
        ],
        None,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/session", service.base))
        .json(&json!({"lobby": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = id_of(&created);
    let token = created["interviewer_token"].as_str().unwrap();
    TokenKey::new(SECRET).unwrap().verify(token, id).unwrap();

    let hub_side = RedisBus::connect(&redis).await.unwrap();
    let mut sub = hub_side.subscribe(&relay::channel(id)).await.unwrap();
    let r = http
        .post(format!(
            "{}/api/session/{}/start",
            service.base,
            code_of(&created)
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let (origin, control) = next_control(&mut sub).await;
    assert_eq!(origin, relay::API_ORIGIN);
    assert_eq!(serde_json::to_value(&control).unwrap(), body);
    assert_eq!(body["state"], "live");
    assert!(service.stop().success());
}
