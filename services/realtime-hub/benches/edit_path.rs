//! What the hub's edit path costs with tracing off and on (`docs/ARCHITECTURE.md`, "Observing the
//! path"): one client's one-character Yjs update through `Connection::yjs` — rate-checked, decoded,
//! integrated, broadcast to the other participant, queued for the group commit, timed into the edit →
//! delivery histogram — on an in-process hub (SQLite in memory, the in-process bus).
//!
//! - `off`: no OTLP endpoint: no span, no trace context (the default);
//! - `on`: an endpoint (an in-process receiver): a `hub.edit` span per edit, exported.
//!
//! Each round sends 20,000 edits, 250 per connection (under the per-connection rate limit's burst),
//! each connection joined and its updates made beforehand (not timed); the text stays short (each
//! insert is followed by its delete), each round on an interview of its own. Five rounds per mode;
//! the median is printed in ns per edit.
//! Run: `cargo bench -p duet-realtime-hub --bench edit_path` (about 30 s).

#[path = "../tests/it/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{new_session, TestHub, YClient};
use duet_bus::{Bus, LocalBus};
use duet_realtime_hub::interview::{new_doc, protocol, TEXT_NAME};
use duet_storage::{sqlite::SqliteStorage, Storage};
use yrs::{Text, Transact};

const EDITS: usize = 20_000;
const PER_CONN: usize = 250;
const ROUNDS: usize = 5;

/// `n` updates of a document of its own (a client id no one else uses): an insert, then its delete.
fn updates(n: usize) -> Vec<Vec<u8>> {
    let doc = new_doc();
    let text = doc.get_or_insert_text(TEXT_NAME);
    (0..n)
        .map(|i| {
            let mut txn = doc.transact_mut();
            if i % 2 == 0 {
                text.insert(&mut txn, 0, "x");
            } else {
                text.remove_range(&mut txn, 0, 1);
            }
            protocol::encode_update(&txn.encode_update_v1())
        })
        .collect()
}

/// One round, on an interview of its own (a fresh, short document): ns per edit.
async fn round(hub: &TestHub, storage: &Arc<dyn Storage>) -> f64 {
    let session = new_session(storage).await;
    let code = &session.code;
    let watcher = YClient::join(hub, code, "Watcher").await;
    let mut took = Duration::ZERO;
    for _ in 0..EDITS / PER_CONN {
        let writer = YClient::join(hub, code, "Writer").await;
        let msgs = updates(PER_CONN);
        let start = Instant::now();
        for m in &msgs {
            writer.conn.yjs(m, None);
        }
        took += start.elapsed();
        let refused = common::errors(&writer.sink.take());
        assert!(refused.is_empty(), "edits refused: {refused:?}");
        watcher.sink.take();
        writer.conn.disconnected().await;
    }
    took.as_nanos() as f64 / EDITS as f64
}

async fn mode(name: &str) {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().unwrap());
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let hub = TestHub::start("bench", storage.clone(), bus).await;
    let mut ns = Vec::new();
    for _ in 0..ROUNDS {
        ns.push(round(&hub, &storage).await);
    }
    ns.sort_by(f64::total_cmp);
    println!(
        "edit_path/{name}: median {:.0} ns per edit (rounds: {})",
        ns[ROUNDS / 2],
        ns.iter()
            .map(|n| format!("{n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    assert!(!duet_telemetry::trace::enabled());
    mode("off").await;

    let receiver = duet_testkit::otlp::Receiver::start().await;
    let settings = duet_config::Settings::load_from([
        ("DUET_OTEL__ENDPOINT".to_owned(), receiver.endpoint()),
        ("DUET_OTEL__PROTOCOL".to_owned(), "http/json".to_owned()),
        // Spans are exported at INFO whatever the log level; the logs stay quiet.
        ("DUET_LOG_LEVEL".to_owned(), "warn".to_owned()),
    ])
    .unwrap();
    let tracing = duet_telemetry::init("bench", &settings).unwrap();
    assert!(duet_telemetry::trace::enabled());
    mode("on").await;
    tokio::task::block_in_place(|| tracing.flush());
    let spans = receiver
        .spans()
        .iter()
        .filter(|s| s.name == "hub.edit")
        .count();
    println!("edit_path/on: {spans} hub.edit spans received");
}
