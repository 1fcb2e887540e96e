//! The hub benchmark (docs/BENCHMARKS.md, "Hub"): `cargo bench -p duet-realtime-hub --bench hub`.
//!
//! In one run, with the servers pinned to core 0 (`taskset -c 0`) and the load generator
//! (`tools/loadgen`, or `tests/js/collab/loadgen.mjs` with `BENCH_LOADGEN=node`) on core 1,
//! interviews of 5, 5 edits/s per client:
//! 1. the Node socket.io peer (`../shared/peers/node-socketio`, seed events) at 1,000 clients;
//! 2. one Duet hub, Yjs updates with durability acks (history on), 1,000 clients;
//! 3. one Duet hub, seed events (`code_change`, as the peer), 1,000 clients: clients that take the
//!    texts they are sent and change their own line (`--mode seed`), then clients that replace the
//!    whole text with theirs and never take another's (`--mode seed-replace`: pure conflict);
//! 4. two Duet hubs, each interview split across them (the Redis hop: deliveries across hubs
//!    against those within one hub, in the same run), 1,000 clients, three times (the median hop
//!    is reported);
//! 5. the largest client count at p99 ≤ 50 ms with no loss, for Duet (Yjs) and for the peer, then
//!    for one hub on a PostgreSQL of its own pinned to the hub's core, the database's processes'
//!    CPU counted with the hub's (the shared PostgreSQL of the other rows runs unpinned, uncounted);
//! 6. the history writer's commit rate (`append_updates` in the writer's batch size).
//!
//! Every point also reports the server processes' CPU time over the generator's measured window
//! (`--cpu-pids`): percent of a core, and milliseconds per 1,000 deliveries split into user and
//! system time — the peer README's efficiency figure, independent of where the latency bound falls.
//!
//! Environment: `BENCH_SECONDS` (measured seconds per point, default 15), `BENCH_QUICK=1` (skip the
//! search for the largest client count), `BENCH_LOADGEN=node` (the Node generator), `BENCH_HUB_BIN`
//! (another hub binary, for before/after comparisons), `BENCH_DB_POINTS=2000,2000` (only step 5's
//! last probes, at these client counts, fresh each). PostgreSQL and Redis are throw-away servers (duet-testkit).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_domain::{Language, NewSession, SessionCode, Title};
use duet_storage::postgres::PgStorage;
use duet_storage::{NewUpdate, Storage};
use duet_testkit::redis::TestRedis;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The latency bound of the capacity search.
const P99_BOUND_MS: f64 = 50.0;
/// Clients per interview and edits per second per client (the load).
const ROOM: usize = 5;
const RATE: usize = 5;
/// Two-hub runs per bench (the median hop is reported).
const HOP_RUNS: usize = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn wait_http(url: &str) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..1200 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer");
}

async fn spawn_hub(id: &str, db: &str, redis: &str) -> (Child, String) {
    let port = duet_testkit::free_port();
    // `BENCH_HUB_BIN`: another build of the hub (e.g. an older commit's, for before/after figures).
    let bin = std::env::var("BENCH_HUB_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet-realtime-hub").into());
    let child = Command::new("taskset")
        .args(["-c", "0", &bin])
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", db)
        .env("REDIS_URL", redis)
        .env("DUET_HUB__ID", id)
        // The hub refuses to start without a token key; the bench's clients join without tokens.
        .env("SECRET_KEY", "bench-secret-key-not-for-production")
        .env("DUET_LOG_LEVEL", "warn")
        .env("MAX_CONTENT_LENGTH", "1000000")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn realtime-hub");
    let url = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{url}/healthz")).await;
    (child, url)
}

/// The Node peer, installed once under target/ from its lock file.
async fn spawn_peer() -> (Child, String) {
    let src = repo().join("../shared/peers/node-socketio");
    let dir = repo().join("target/bench-node-peer");
    if !dir.join("node_modules/socket.io").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["server.js", "package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .unwrap();
        assert!(ok.success(), "npm ci for the Node peer");
    }
    let port = duet_testkit::free_port();
    let child = Command::new("taskset")
        .args(["-c", "0", "node", "server.js"])
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{url}/socket.io/?EIO=4&transport=polling")).await;
    (child, url)
}

/// `BENCH_LOADGEN=node` selects the Node generator (`tests/js/collab/loadgen.mjs`, saturates above
/// ~2,000 clients); the default is the Rust one (`tools/loadgen`, same arguments and output).
fn node_generator() -> bool {
    std::env::var("BENCH_LOADGEN").is_ok_and(|v| v == "node")
}

/// The release `duet-loadgen` binary, built on first use.
fn rust_generator() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "duet-loadgen"])
            .current_dir(repo())
            .status()
            .expect("cargo build -p duet-loadgen")
            .success();
        assert!(ok, "building duet-loadgen failed");
    });
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), PathBuf::from)
        .join("release/duet-loadgen")
}

/// The server processes under test (their CPU time is measured over the generator's window).
type Pids<'a> = &'a [Option<u32>];

async fn loadgen(
    urls: &[String],
    pids: Pids<'_>,
    codes: &[String],
    clients: usize,
    mode: &str,
    seconds: u64,
) -> Value {
    let codes = &codes[..clients.div_ceil(ROOM).min(codes.len())];
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1"]);
    if node_generator() {
        cmd.args(["node", "--max-old-space-size=4096"])
            .arg(repo().join("tests/js/collab/loadgen.mjs"));
    } else {
        cmd.arg(rust_generator());
    }
    let out = cmd
        .args([
            "--urls",
            &urls.join(","),
            "--codes",
            &codes.join(","),
            "--clients",
            &clients.to_string(),
        ])
        .args([
            "--room",
            &ROOM.to_string(),
            "--rate",
            &RATE.to_string(),
            "--seconds",
            &seconds.to_string(),
            "--mode",
            mode,
        ])
        .args(["--cpu-pids", &pid_list(pids)])
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim().lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("loadgen said: {line}"))
}

/// A PostgreSQL server's processes: its postmaster and the postmaster's children (backends,
/// writers, launchers), from `/proc`.
fn server_pids(pg: &duet_testkit::postgres::TestPostgres) -> Vec<u32> {
    let Some(main) = pg.server_pid() else {
        return Vec::new();
    };
    let mut pids = vec![main];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the last `)`.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(main) {
            pids.push(pid);
        }
    }
    pids
}

fn pid_list(pids: Pids<'_>) -> String {
    pids.iter()
        .flatten()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn ok(r: &Value) -> bool {
    r["loss"].as_i64() == Some(0)
        && r["errors"].as_i64() == Some(0)
        && r["p99"].as_f64().is_some_and(|p| p <= P99_BOUND_MS)
}

fn row(label: &str, r: &Value) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} ({} + {}) |",
        r["clients"],
        r["p50"],
        r["p99"],
        r["max"],
        r["received"],
        r["expected"],
        r["ack_p99"],
        r["generator_lag_max_ms"],
        r["server_cpu_pct"],
        r["server_cpu_ms_per_1k"],
        r["server_user_ms_per_1k"],
        r["server_sys_ms_per_1k"]
    )
}

/// Doubles, then bisects, the client count while `run(n)` keeps p99 ≤ 50 ms with no loss.
async fn capacity<F, Fut>(mut n: usize, max: usize, run: F) -> (usize, Vec<Value>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut results = Vec::new();
    let (mut good, mut bad) = (0, None);
    while n <= max {
        let r = run(n).await;
        eprintln!("capacity probe {n}: {r}");
        let pass = ok(&r);
        results.push(r);
        if pass {
            good = n;
            n *= 2;
        } else {
            bad = Some(n);
            break;
        }
    }
    if let Some(mut hi) = bad {
        let mut lo = good;
        while hi - lo > (lo / 8).max(ROOM * 10) {
            let mid = (lo + hi) / 2 / ROOM * ROOM;
            let r = run(mid).await;
            eprintln!("capacity probe {mid}: {r}");
            if ok(&r) {
                lo = mid;
            } else {
                hi = mid;
            }
            results.push(r);
        }
        good = lo;
    }
    (good, results)
}

async fn writer_rate(storage: &Arc<dyn Storage>, sessions: &[uuid::Uuid]) -> f64 {
    let batch: Vec<NewUpdate> = (0..duet_realtime_hub::limits::MAX_BATCH)
        .map(|i| NewUpdate {
            session_id: sessions[i % sessions.len()],
            doc: duet_domain::DocKind::Code,
            author: Some(uuid::Uuid::new_v4()),
            data: vec![7u8; 40],
        })
        .collect();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(5) {
        storage.append_updates(&batch).await.unwrap();
        n += batch.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Creates interviews on demand, so each load starts on empty documents.
struct Sessions {
    storage: Arc<dyn Storage>,
    ids: std::sync::Mutex<Vec<uuid::Uuid>>,
}

impl Sessions {
    /// Codes of `clients / ROOM` new interviews.
    async fn fresh(&self, clients: usize) -> Vec<String> {
        let mut codes = Vec::new();
        for _ in 0..clients.div_ceil(ROOM) {
            let s = self
                .storage
                .create_session(NewSession {
                    code: SessionCode::generate(),
                    title: Title::default(),
                    language: Language::Javascript,
                    lobby: false,
                    password_hash: None,
                })
                .await
                .unwrap();
            codes.push(s.code.as_str().to_owned());
            self.ids.lock().unwrap().push(s.id);
        }
        codes
    }

    /// One load run of `clients` on new interviews.
    async fn load(
        &self,
        urls: &[String],
        pids: Pids<'_>,
        clients: usize,
        mode: &str,
        seconds: u64,
    ) -> Value {
        let codes = self.fresh(clients).await;
        loadgen(urls, pids, &codes, clients, mode, seconds).await
    }
}

/// One hub on a PostgreSQL of its own pinned to the hub's core (its processes pinned there; the
/// backends it forks for the hub inherit that): the server, interviews on it, the hub and its URL.
async fn own_postgres(
    redis: &str,
) -> (
    duet_testkit::postgres::TestPostgres,
    Sessions,
    Child,
    String,
) {
    let pg = duet_testkit::postgres::TestPostgres::start().await;
    let pg_db = pg.fresh_database_url().await;
    let pool = Sessions {
        storage: Arc::new(PgStorage::connect(&pg_db).await.unwrap()),
        ids: std::sync::Mutex::new(Vec::new()),
    };
    for pid in server_pids(&pg) {
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(pinned, "taskset -p on PostgreSQL's process {pid}");
    }
    let (hub, url) = spawn_hub("bench-db", &pg_db, redis).await;
    (pg, pool, hub, url)
}

/// The processes whose CPU counts for a hub on its own PostgreSQL: the hub's and the database's
/// (read at each probe: PostgreSQL forks a backend per connection).
fn counted_pids(hub: &Child, pg: &duet_testkit::postgres::TestPostgres) -> Vec<Option<u32>> {
    let mut pids = vec![hub.id()];
    pids.extend(server_pids(pg).into_iter().map(Some));
    pids
}

/// `BENCH_DB_POINTS=2000,2000,…`: only the probes of one hub on its own PostgreSQL, the database's
/// CPU counted, at these client counts (a fresh server and hub for each): the database path's
/// before/after figures with `BENCH_HUB_BIN`.
async fn db_points(points: &str, redis: &str, seconds: u64) {
    for n in points
        .split(',')
        .filter_map(|p| p.trim().parse::<usize>().ok())
    {
        let (pg, pool, mut hub, url) = own_postgres(redis).await;
        let pids = counted_pids(&hub, &pg);
        let r = pool.load(&[url], &pids, n, "yjs", seconds).await;
        println!(
            "{}",
            row(
                "Duet (Yjs), PostgreSQL on the hub's core, its CPU counted",
                &r
            )
        );
        let _ = hub.kill().await;
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let quick = std::env::var("BENCH_QUICK").is_ok();
    if let Ok(points) = std::env::var("BENCH_DB_POINTS") {
        let redis = TestRedis::start();
        db_points(&points, &redis.url(), seconds).await;
        return;
    }
    let db = duet_testkit::postgres::fresh_database_url().await;
    let redis = TestRedis::start();
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&db).await.unwrap());
    let max_clients = 16_000;
    // Every scenario and capacity probe gets interviews of its own: reusing codes would start later
    // runs on documents that earlier ones filled (the seed scenario's merged whole-text edits, the
    // previous probe's history), which is not the load being measured.
    let pool = Sessions {
        storage: storage.clone(),
        ids: std::sync::Mutex::new(Vec::new()),
    };
    let mut lines = vec![
        "| scenario | clients | p50 ms | p99 ms | max ms | delivered / expected | ack p99 ms | generator lag ms | server CPU % | server CPU ms per 1k deliveries (user + sys) |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];

    let (mut peer, peer_url) = spawn_peer().await;
    let node = pool
        .load(
            std::slice::from_ref(&peer_url),
            &[peer.id()],
            1000,
            "seed",
            seconds,
        )
        .await;
    lines.push(row("Node socket.io peer, seed events", &node));

    let (mut hub_a, url_a) = spawn_hub("bench-a", &db, &redis.url()).await;
    let one_yjs = pool
        .load(
            std::slice::from_ref(&url_a),
            &[hub_a.id()],
            1000,
            "yjs",
            seconds,
        )
        .await;
    lines.push(row("Duet, 1 hub, Yjs + durable acks", &one_yjs));
    let one_seed = pool
        .load(
            std::slice::from_ref(&url_a),
            &[hub_a.id()],
            1000,
            "seed",
            seconds,
        )
        .await;
    lines.push(row("Duet, 1 hub, seed events", &one_seed));
    let one_replace = pool
        .load(
            std::slice::from_ref(&url_a),
            &[hub_a.id()],
            1000,
            "seed-replace",
            seconds,
        )
        .await;
    lines.push(row(
        "Duet, 1 hub, seed events replacing the whole text",
        &one_replace,
    ));

    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let hop = |r: &Value| num(&r["cross_hub_p99"]) - num(&r["same_hub_p99"]);
    // The hop is a difference of two tail latencies, so it moves from run to run: the two-hub load
    // runs `HOP_RUNS` times (new interviews each time) and the run with the median hop is reported.
    let (mut hub_b, url_b) = spawn_hub("bench-b", &db, &redis.url()).await;
    let mut twos = Vec::new();
    for _ in 0..HOP_RUNS {
        let r = pool
            .load(
                &[url_a.clone(), url_b.clone()],
                &[hub_a.id(), hub_b.id()],
                1000,
                "yjs",
                seconds,
            )
            .await;
        lines.push(row("Duet, 2 hubs via Redis, Yjs", &r));
        twos.push(r);
    }
    let _ = hub_b.start_kill();
    let hops: Vec<String> = twos.iter().map(|r| format!("{:+.2}", hop(r))).collect();
    twos.sort_by(|a, b| hop(a).total_cmp(&hop(b)));
    let two = twos.swap_remove(twos.len() / 2);

    let mut summary = vec![format!(
        "p99 at 1,000 clients: Duet {} ms (1 hub, Yjs), {} ms (seed events), {} ms (2 hubs) vs Node {} ms",
        one_yjs["p99"], one_seed["p99"], two["p99"], node["p99"]
    )];
    // The Redis hop two ways: within the two-hub run (deliveries across hubs against deliveries
    // between clients of the same hub, same load and moment), and against the one-hub run.
    summary.push(format!(
        "Redis hop at 1,000 clients (median of {HOP_RUNS} two-hub runs: {}): p99 across hubs {} ms \
         ({} deliveries) vs within one hub {} ms ({} deliveries): {:+.2} ms; \
         2-hub p99 - 1-hub p99 = {:+.2} ms",
        hops.join(", "),
        two["cross_hub_p99"],
        two["cross_hub_received"],
        two["same_hub_p99"],
        two["same_hub_received"],
        hop(&two),
        num(&two["p99"]) - num(&one_yjs["p99"]),
    ));
    let cpu = |r: &Value| num(&r["server_cpu_ms_per_1k"]);
    summary.push(format!(
        "server CPU ms per 1,000 deliveries at 1,000 clients: Duet {} (1 hub, Yjs; user {} + sys {}), \
         {} (seed events), {} (2 hubs together) vs Node {} (user {} + sys {}): Node / Duet (Yjs) = {:.1}x",
        one_yjs["server_cpu_ms_per_1k"],
        one_yjs["server_user_ms_per_1k"],
        one_yjs["server_sys_ms_per_1k"],
        one_seed["server_cpu_ms_per_1k"],
        two["server_cpu_ms_per_1k"],
        node["server_cpu_ms_per_1k"],
        node["server_user_ms_per_1k"],
        node["server_sys_ms_per_1k"],
        cpu(&node) / cpu(&one_yjs)
    ));
    if !quick {
        let urls = [url_a.clone()];
        let pids = [hub_a.id()];
        let (duet_cap, rs) = capacity(1000, max_clients, |n| {
            let (pool, urls, pids) = (&pool, &urls, &pids);
            async move { pool.load(urls, pids, n, "yjs", seconds).await }
        })
        .await;
        for r in &rs {
            lines.push(row("Duet capacity probe (Yjs)", r));
        }
        let peer_urls = [peer_url.clone()];
        let peer_pids = [peer.id()];
        let (node_cap, rs) = capacity(250, max_clients, |n| {
            let (pool, urls, pids) = (&pool, &peer_urls, &peer_pids);
            async move { pool.load(urls, pids, n, "seed", seconds).await }
        })
        .await;
        for r in &rs {
            lines.push(row("Node capacity probe (seed)", r));
        }
        summary.push(format!(
            "largest client count at p99 <= 50 ms, no loss: Duet {duet_cap}, Node {node_cap} ({:.1}x)",
            duet_cap as f64 / node_cap.max(1) as f64
        ));

        // One hub on PostgreSQL with the database's CPU counted: a server of its own on the hub's
        // core (its processes pinned there; the backends it forks for the hub inherit that), every
        // process of it measured with the hub.
        // The hub and the peer measured above are done: stopped, so their chores (unloading
        // thousands of idle interviews, their snapshots) do not take the measured hub's core.
        let _ = hub_a.kill().await;
        let _ = peer.kill().await;
        let (pg, pg_pool, mut hub_db, url_db) = own_postgres(&redis.url()).await;
        let urls = [url_db];
        let (db_cap, rs) = capacity(1000, max_clients, |n| {
            let pids = counted_pids(&hub_db, &pg);
            let (pool, urls) = (&pg_pool, &urls);
            async move { pool.load(urls, &pids, n, "yjs", seconds).await }
        })
        .await;
        for r in &rs {
            lines.push(row(
                "Duet capacity probe (Yjs), PostgreSQL on the hub's core, its CPU counted",
                r,
            ));
        }
        summary.push(format!(
            "largest client count at p99 <= 50 ms, no loss, with PostgreSQL on the hub's core and its \
             CPU counted: Duet {db_cap}, Node {node_cap} ({:.1}x)",
            db_cap as f64 / node_cap.max(1) as f64
        ));
        let _ = hub_db.start_kill();
    }
    let _ = hub_a.start_kill();
    let _ = peer.start_kill();
    let ids = pool.ids.lock().unwrap().clone();
    let rate = writer_rate(&storage, &ids).await;
    summary.push(format!(
        "history writer: {rate:.0} updates/s committed (append_updates, batches of {})",
        duet_realtime_hub::limits::MAX_BATCH
    ));

    let report = format!("{}\n\n{}\n", lines.join("\n"), summary.join("\n"));
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hub-bench.md");
    let _ = std::fs::write(out, &report);
}
