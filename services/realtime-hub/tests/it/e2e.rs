//! End to end: two `realtime-hub` processes sharing a throw-away PostgreSQL and Redis, driven by Node
//! clients (the official `socket.io-client`, `yjs`, `y-protocols`) from `tests/js/collab/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use duet_storage::postgres::PgStorage;
use duet_storage::Storage;
use duet_testkit::redis::TestRedis;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, StateVector, Transact};

use crate::common::new_session;

/// The longest a Node scenario may run (it bounds its own waits well below this).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

pub struct HubProc {
    pub child: Child,
    pub url: String,
}

impl HubProc {
    pub async fn spawn(id: &str, db: &str, redis: &str) -> Self {
        let port = duet_testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_duet-realtime-hub"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", db)
            .env("REDIS_URL", redis)
            .env("DUET_HUB__ID", id)
            .env("SECRET_KEY", crate::common::TEST_SECRET)
            .env("DUET_HUB__HEARTBEAT_TTL_SECS", "3")
            .env("DUET_HUB__PING_INTERVAL_MS", "1000")
            .env("DUET_HUB__PING_TIMEOUT_MS", "2000")
            .env("DUET_HUB__IDLE_UNLOAD_SECS", "5")
            .env(
                "DUET_LOG_LEVEL",
                std::env::var("HUB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("DUET_CONFIG")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn realtime-hub");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hub {id} did not become ready");
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/js/collab")
        .join(name)
}

/// Runs a Node scenario; `ctl` handles its `CTL {...}` requests. Returns its `RESULT {...}`.
pub async fn run_node<F>(name: &str, args: &[String], mut ctl: F) -> Value
where
    F: AsyncFnMut(Value),
{
    let mut child = Command::new("node")
        .arg(script(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let work = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(cmd) = line.strip_prefix("CTL ") {
                ctl(serde_json::from_str(cmd).unwrap()).await;
                stdin.write_all(b"ok\n").await.unwrap();
            } else if let Some(res) = line.strip_prefix("RESULT ") {
                return serde_json::from_str::<Value>(res).unwrap();
            } else {
                eprintln!("node: {line}");
            }
        }
        panic!("{name} ended without a result");
    };
    tokio::time::timeout(SCENARIO_TIMEOUT, work)
        .await
        .expect("scenario timed out")
}

/// A state vector from its base64 Yjs encoding.
fn sv(b64: &Value) -> StateVector {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap();
    StateVector::decode_v1(&raw).unwrap()
}

/// The stored document's text and state vector.
async fn stored(storage: &Arc<dyn Storage>, id: uuid::Uuid) -> (String, StateVector) {
    let state = storage
        .load_document(id, duet_domain::DocKind::Code)
        .await
        .unwrap();
    let doc = duet_realtime_hub::interview::doc_from_storage(id, &state);
    let text = doc.get_or_insert_text(duet_realtime_hub::interview::TEXT_NAME);
    let txn = doc.transact();
    let s = yrs::GetString::get_string(&text, &txn);
    (s, txn.state_vector())
}

fn check(result: &Value, label: &str) {
    assert_eq!(result["ok"], true, "{label}: {result}");
    assert_eq!(
        result["unsaved"], 0,
        "{label}: every edit acknowledged: {result}"
    );
    assert!(
        result["errors"].as_array().unwrap().is_empty(),
        "{label}: no errors: {result}"
    );
    assert!(
        result["acked"].as_u64().unwrap() > 50,
        "{label}: enough edits: {result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_clients_on_two_hubs_converge_through_redis_restarts() {
    let db = duet_testkit::postgres::fresh_database_url().await;
    let mut redis = TestRedis::start();
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&db).await.unwrap());
    let hubs = [
        HubProc::spawn("hub-a", &db, &redis.url()).await,
        HubProc::spawn("hub-b", &db, &redis.url()).await,
    ];
    let urls = format!("{},{}", hubs[0].url, hubs[1].url);
    for seed in [7u64, 8, 9] {
        let session = new_session(&storage).await;
        let args: Vec<String> = [
            "--hubs",
            &urls,
            "--code",
            session.code.as_str(),
            "--seed",
            &seed.to_string(),
            "--restart-redis",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let result = run_node("convergence.mjs", &args, async |cmd: Value| {
            assert_eq!(cmd["do"], "restart-redis");
            redis.stop();
            tokio::time::sleep(Duration::from_millis(300)).await;
            redis.start_again();
        })
        .await;
        check(&result, &format!("seed {seed}"));
        // The stored document holds the same text and every insert of every client.
        let mut last = (String::new(), StateVector::default());
        for _ in 0..50 {
            last = stored(&storage, session.id).await;
            if last.0 == result["text"] && last.1 == sv(&result["sv"]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            last.0,
            result["text"].as_str().unwrap(),
            "seed {seed}: stored text"
        );
        assert_eq!(
            last.1,
            sv(&result["sv"]),
            "seed {seed}: stored state vector"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_typing_loses_no_acknowledged_edit() {
    let db = duet_testkit::postgres::fresh_database_url().await;
    let redis = TestRedis::start();
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&db).await.unwrap());
    let mut hubs = [
        HubProc::spawn("hub-a", &db, &redis.url()).await,
        HubProc::spawn("hub-b", &db, &redis.url()).await,
    ];
    let urls = format!("{},{}", hubs[0].url, hubs[1].url);
    let session = new_session(&storage).await;
    let args: Vec<String> = [
        "--hubs",
        &urls,
        "--code",
        session.code.as_str(),
        "--seed",
        "21",
        "--kill-hub",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = run_node("convergence.mjs", &args, async |cmd: Value| {
        assert_eq!(cmd["do"], "kill-hub");
        let i = cmd["hub"].as_u64().unwrap() as usize;
        hubs[i].child.start_kill().unwrap();
        let _ = hubs[i].child.wait().await;
    })
    .await;
    check(&result, "hub crash");
    let (text, stored_sv) = stored(&storage, session.id).await;
    assert_eq!(
        text,
        result["text"].as_str().unwrap(),
        "stored text after the crash"
    );
    assert_eq!(
        stored_sv,
        sv(&result["sv"]),
        "every insert, acknowledged or re-sent, is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_yjs_clients_presence_and_bad_input_over_sockets() {
    let db = duet_testkit::postgres::fresh_database_url().await;
    let redis = TestRedis::start();
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&db).await.unwrap());
    let hubs = [
        HubProc::spawn("hub-a", &db, &redis.url()).await,
        HubProc::spawn("hub-b", &db, &redis.url()).await,
    ];
    let session = new_session(&storage).await;
    let args: Vec<String> = [
        "--hubs",
        &format!("{},{}", hubs[0].url, hubs[1].url),
        "--code",
        session.code.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = run_node("seed_presence.mjs", &args, async |cmd: Value| {
        assert_eq!(cmd["do"], "count");
        let expect = cmd["expect"].as_i64().unwrap();
        let mut n = -1;
        for _ in 0..50 {
            n = storage.connected_count(session.id).await.unwrap();
            if n == expect {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(n, expect, "connected count in the database, across hubs");
    })
    .await;
    assert_eq!(result["ok"], true, "{result:#}");
    let (text, _) = stored(&storage, session.id).await;
    assert_eq!(text, result["text"].as_str().unwrap());
}
