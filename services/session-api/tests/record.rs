//! The interview record over REST (issue 15): `GET /record`, `GET /history?doc=`, `GET /export`
//! and `DELETE /api/session/{code}`: who may call them, what they answer after an interview with
//! edits, notes, activity events and runs, and that erasure leaves nothing behind. On SQLite and on
//! PostgreSQL.

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;

use base64::Engine;
use duet_auth::TokenKey;
use duet_bus::relay::{self, BusMessage};
use duet_bus::{Bus, BusEvent, LocalBus};
use duet_config::Settings;
use duet_domain::{DocKind, InterviewControl, Language};
use duet_session_api::{ApiState, Application};
use duet_storage::{
    postgres::PgStorage, sqlite::SqliteStorage, NewEvent, NewRun, NewUpdate, Storage,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use yrs::{Text, Transact};

const SECRET: &str = "the test deployment's secret key";

struct TestApp {
    base: String,
    http: reqwest::Client,
    storage: Arc<dyn Storage>,
    bus: Arc<LocalBus>,
}

impl TestApp {
    async fn spawn(storage: Arc<dyn Storage>) -> Self {
        let settings = Settings::load_from(Vec::<(String, String)>::new()).unwrap();
        let key = TokenKey::new(SECRET).unwrap();
        let bus = Arc::new(LocalBus::new());
        let state = ApiState::new(&settings, storage.clone(), bus.clone(), key);
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
            bus,
        }
    }

    async fn send(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if path.ends_with("/start") || path.ends_with("/end") || path.ends_with("/join") {
            r = r.json(&json!({"name": "Cand"}));
        }
        r.send().await.unwrap()
    }

    async fn json(&self, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let r = self.send(method, path, token).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates an interview: `(id, code, interviewer token)`.
    async fn create(&self, body: Value) -> (Uuid, String, String) {
        let r = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&body)
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

    async fn candidate_token(&self, code: &str) -> String {
        let (status, body) = self
            .json("POST", &format!("/api/session/{code}/join"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

async fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn postgres() -> Arc<dyn Storage> {
    let url = duet_testkit::postgres::fresh_database_url().await;
    Arc::new(PgStorage::connect(&url).await.unwrap())
}

/// Types `edits` into a Yjs text named `root` (one update per edit, as a browser sends them) and
/// stores them, alternating between two authors. Returns the stored updates' bytes.
async fn type_into(
    storage: &Arc<dyn Storage>,
    session_id: Uuid,
    doc: DocKind,
    authors: [Uuid; 2],
    edits: &[(u32, &str)],
) -> Vec<Vec<u8>> {
    let root = match doc {
        DocKind::Code => "code",
        DocKind::Notes => "notes",
    };
    let ydoc = yrs::Doc::new();
    let text = ydoc.get_or_insert_text(root);
    let mut updates = Vec::new();
    for (i, (at, s)) in edits.iter().enumerate() {
        let mut txn = ydoc.transact_mut();
        text.insert(&mut txn, *at, s);
        let data = txn.encode_update_v1();
        drop(txn);
        storage
            .append_updates(&[NewUpdate {
                session_id,
                doc,
                author: Some(authors[i % 2]),
                data: data.clone(),
            }])
            .await
            .unwrap();
        updates.push(data);
    }
    updates
}

/// An event `ms` milliseconds from now.
fn ev(session_id: Uuid, user: Uuid, name: &str, kind: &str, data: Value, ms: i64) -> NewEvent {
    NewEvent {
        session_id,
        user_id: Some(user),
        user_name: name.into(),
        kind: kind.into(),
        data: data.to_string(),
        at: OffsetDateTime::now_utc() + time::Duration::milliseconds(ms),
    }
}

/// An interview that was started, edited by two people, noted, run and ended. Returns
/// `(id, code, interviewer token, candidate id, interviewer id, code updates, notes updates)`.
struct Played {
    id: Uuid,
    code: String,
    token: String,
    candidate: Uuid,
    interviewer: Uuid,
    code_updates: Vec<Vec<u8>>,
}

async fn play(app: &TestApp) -> Played {
    let (id, code, token) = app
        .create(json!({"language": "python", "lobby": true, "title": "Round 2"}))
        .await;
    let (status, _) = app
        .json("POST", &format!("/api/session/{code}/start"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (candidate, interviewer) = (Uuid::new_v4(), Uuid::new_v4());
    let s = &app.storage;
    s.record_events(&[
        ev(
            id,
            interviewer,
            "Ivy",
            "join",
            json!({"role": "interviewer", "color": "#112233"}),
            1,
        ),
        ev(
            id,
            candidate,
            "Cam",
            "join",
            json!({"role": "candidate", "color": "#445566"}),
            2,
        ),
        ev(
            id,
            candidate,
            "Cam",
            "paste",
            json!({"size": 12, "doc": "code"}),
            4,
        ),
        ev(id, candidate, "Cam", "blur", json!({}), 5),
        ev(id, candidate, "Cam", "leave", json!({}), 8),
    ])
    .await
    .unwrap();
    let code_updates = type_into(
        s,
        id,
        DocKind::Code,
        [candidate, interviewer],
        &[(0, "print('hi')"), (11, "\n# done")],
    )
    .await;
    type_into(
        s,
        id,
        DocKind::Notes,
        [interviewer, interviewer],
        &[(0, "# Notes\n"), (8, "Strong *start*.")],
    )
    .await;
    s.record_run(NewRun {
        session_id: id,
        user_id: Some(candidate),
        user_name: "Cam".into(),
        language: Language::Python,
        output: "hi\n".into(),
        status: "ok".into(),
        duration_ms: 41,
    })
    .await
    .unwrap();
    // Ended after the last event.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, _) = app
        .json("POST", &format!("/api/session/{code}/end"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    Played {
        id,
        code,
        token,
        candidate,
        interviewer,
        code_updates,
    }
}

async fn only_interviewers_reach_the_record(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let (_, code, token) = app.create(json!({})).await;
    let candidate = app.candidate_token(&code).await;
    let (_, _, other_token) = app.create(json!({})).await;
    let paths = [
        ("GET", format!("/api/session/{code}/record")),
        ("GET", format!("/api/session/{code}/history?doc=code")),
        ("GET", format!("/api/session/{code}/export")),
        ("DELETE", format!("/api/session/{code}")),
    ];
    for (method, path) in &paths {
        let (status, body) = app.json(method, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, body) = app.json(method, path, Some("not.a.token")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        let (status, _) = app.json(method, path, Some(&other_token)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "another interview's token"
        );
        let (status, body) = app.json(method, path, Some(&candidate)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // Still there: nothing was erased by the refused calls.
    let (status, _) = app.json("GET", &format!("/api/session/{code}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .json("GET", &format!("/api/session/{code}/record"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    for (method, path) in [
        ("GET", "/api/session/ZZZZZZZZ/record"),
        ("DELETE", "/api/session/ZZZZZZZZ"),
    ] {
        let (status, body) = app.json(method, path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "session_not_found");
    }
    let (status, body) = app
        .json(
            "GET",
            &format!("/api/session/{code}/history?doc=secrets"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    duet_testkit::http::assert_method_not_allowed(
        &app.base,
        "PUT",
        &format!("/api/session/{code}"),
        "GET, HEAD, DELETE",
    )
    .await;
}

async fn the_record_holds_the_interview(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let p = play(&app).await;
    let (status, r) = app
        .json(
            "GET",
            &format!("/api/session/{}/record", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["id"], p.id.to_string());
    assert_eq!(r["session_code"], p.code);
    assert_eq!(r["title"], "Round 2");
    assert_eq!(r["language"], "python");
    assert_eq!(r["state"], "ended");
    assert!(r["started_at"].is_string() && r["ended_at"].is_string());
    assert_eq!(r["code"], "print('hi')\n# done");
    assert_eq!(r["notes"], "# Notes\nStrong *start*.");

    let participants = r["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2, "{participants:?}");
    assert_eq!(participants[0]["user_id"], p.interviewer.to_string());
    assert_eq!(participants[0]["name"], "Ivy");
    assert_eq!(participants[0]["role"], "interviewer");
    assert_eq!(participants[0]["color"], "#112233");
    assert!(participants[0]["first_joined"].is_string());
    assert!(participants[0]["last_left"].is_null(), "never left");
    assert_eq!(participants[1]["user_id"], p.candidate.to_string());
    assert_eq!(participants[1]["role"], "candidate");
    assert!(participants[1]["last_left"].is_string());

    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["output"], "hi\n");
    assert_eq!(runs[0]["status"], "ok");
    assert_eq!(runs[0]["duration_ms"], 41);
    assert_eq!(runs[0]["user_name"], "Cam");
    assert_eq!(runs[0]["language"], "python");

    let events = r["events"].as_array().unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    // The REST start and end, recorded by storage, around the hub's events by time.
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"end"));
    let mut middle: Vec<_> = kinds[1..kinds.len() - 1].to_vec();
    middle.sort_unstable();
    assert_eq!(middle, ["blur", "join", "join", "leave", "paste"]);
    let paste = events.iter().find(|e| e["kind"] == "paste").unwrap();
    assert_eq!(paste["data"], json!({"size": 12, "doc": "code"}));
    assert_eq!(paste["user_id"], p.candidate.to_string());
    assert_eq!(paste["user_name"], "Cam");
    assert!(paste["seq"].is_i64() && paste["at"].is_string());
    let ats: Vec<_> = events
        .iter()
        .map(|e| {
            OffsetDateTime::parse(
                e["at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "ordered by time");

    // The history, as the replay loads it.
    let (status, h) = app
        .json(
            "GET",
            &format!("/api/session/{}/history?doc=code", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["doc"], "code");
    let updates = h["updates"].as_array().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let decoded: Vec<Vec<u8>> = updates
        .iter()
        .map(|u| b64.decode(u["data"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(decoded, p.code_updates);
    assert_eq!(updates[0]["author"], p.candidate.to_string());
    assert_eq!(updates[1]["author"], p.interviewer.to_string());
    assert!(updates[0]["seq"].as_i64() < updates[1]["seq"].as_i64());
    let (_, notes) = app
        .json(
            "GET",
            &format!("/api/session/{}/history?doc=notes", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(notes["doc"], "notes");
    assert_eq!(notes["updates"].as_array().unwrap().len(), 2);
    let (_, default) = app
        .json(
            "GET",
            &format!("/api/session/{}/history", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(default, h, "the code by default");

    // A fresh interview: its record is empty but whole.
    let (_, code, token) = app.create(json!({"language": "html"})).await;
    let (status, r) = app
        .json("GET", &format!("/api/session/{code}/record"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (r["code"].as_str(), r["notes"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(r["participants"], json!([]));
    assert_eq!(r["runs"], json!([]));
    let kinds: Vec<_> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("start")], "live from its creation");
}

async fn the_export_is_a_zip_of_the_record(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage).await;
    let p = play(&app).await;
    let r = app
        .send(
            "GET",
            &format!("/api/session/{}/export", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"duet-{}.zip\"", p.code).as_str()
    );
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "events.json",
            "history/code.json",
            "history/notes.json",
            "notes.md",
            "record.json",
            "runs.json",
            "solution.py",
        ]
    );
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(read("solution.py"), "print('hi')\n# done");
    assert_eq!(read("notes.md"), "# Notes\nStrong *start*.");
    let (_, record) = app
        .json(
            "GET",
            &format!("/api/session/{}/record", p.code),
            Some(&p.token),
        )
        .await;
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap();
    assert_eq!(parse(read("record.json")), record);
    assert_eq!(parse(read("runs.json")), record["runs"]);
    assert_eq!(parse(read("events.json")), record["events"]);
    for doc in ["code", "notes"] {
        let (_, h) = app
            .json(
                "GET",
                &format!("/api/session/{}/history?doc={doc}", p.code),
                Some(&p.token),
            )
            .await;
        assert_eq!(parse(read(&format!("history/{doc}.json"))), h);
    }

    // The extension follows the language.
    for (language, file) in [("javascript", "solution.js"), ("html", "solution.html")] {
        let (_, code, token) = app.create(json!({ "language": language })).await;
        let r = app
            .send("GET", &format!("/api/session/{code}/export"), Some(&token))
            .await;
        let bytes = r.bytes().await.unwrap();
        let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        assert!(zip.file_names().any(|n| n == file), "{file}");
    }
}

async fn erasing_leaves_nothing_of_the_interview(storage: Arc<dyn Storage>) {
    let app = TestApp::spawn(storage.clone()).await;
    let p = play(&app).await;
    let kept = play(&app).await;
    storage.remove_user(p.id, p.candidate).await.unwrap();
    let mut sub = app.bus.subscribe(&relay::channel(p.id)).await.unwrap();

    let r = app
        .send(
            "DELETE",
            &format!("/api/session/{}", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());
    // The hubs are told: ended, read-only, no runs.
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
        .await
        .expect("a notice within 5 s")
        .unwrap();
    let BusEvent::Message(raw) = event else {
        panic!("{event:?}");
    };
    let (_, message) = relay::decode_all(&raw).remove(0);
    let BusMessage::Control { json } = message else {
        panic!("{message:?}");
    };
    let control: InterviewControl = serde_json::from_slice(&json).unwrap();
    assert_eq!(control.state, duet_domain::InterviewState::Ended);
    assert!(control.editing_locked && !control.runs_enabled);

    for path in [
        format!("/api/session/{}", p.code),
        format!("/api/session/{}/runs", p.code),
        format!("/api/session/{}/record", p.code),
        format!("/api/session/{}/history?doc=code", p.code),
        format!("/api/session/{}/export", p.code),
    ] {
        let (status, body) = app.json("GET", &path, Some(&p.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = app
        .json(
            "DELETE",
            &format!("/api/session/{}", p.code),
            Some(&p.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "erased already");

    // Nothing of it through any storage read (the storage suite counts the rows of every table).
    assert!(storage.session_by_id(p.id).await.unwrap().is_none());
    for doc in DocKind::ALL {
        assert!(storage.history(p.id, doc).await.unwrap().is_empty());
        assert_eq!(
            storage.load_document(p.id, doc).await.unwrap(),
            Default::default()
        );
    }
    assert!(storage.events(p.id).await.unwrap().is_empty());
    assert!(storage.runs(p.id).await.unwrap().is_empty());
    assert!(storage.removed_users(p.id).await.unwrap().is_empty());
    let queued = storage
        .claim_webhooks(OffsetDateTime::now_utc(), 60, 1000)
        .await
        .unwrap();
    assert!(queued.iter().all(|d| d.session_id != p.id));
    assert!(queued.iter().any(|d| d.session_id == kept.id));

    // The other interview is whole.
    let (status, r) = app
        .json(
            "GET",
            &format!("/api/session/{}/record", kept.code),
            Some(&kept.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["code"], "print('hi')\n# done");
    assert_eq!(r["runs"].as_array().unwrap().len(), 1);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_backend { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

on_both_backends!(
    only_interviewers_reach_the_record,
    the_record_holds_the_interview,
    the_export_is_a_zip_of_the_record,
    erasing_leaves_nothing_of_the_interview,
);
