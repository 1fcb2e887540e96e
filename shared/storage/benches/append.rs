//! How fast the hub's group commit can go: `append_updates` with batches of 256 updates of ~30 bytes
//! (a typical Yjs keystroke update), spread over a few sessions, one batch at a time as the hub's
//! writer does. Criterion reports the throughput in updates per second (`elem/s`).
//!
//! - `sqlite`: a file in a temp dir, as `SqliteStorage::open` configures it (WAL, synchronous=FULL).
//! - `postgres`: a database on the testkit's throw-away server (`TEST_DATABASE_URL` if set), which
//!   runs with `fsync = off`; a production server pays one WAL flush per batch on top.
//!
//! Run: `cargo bench -p duet-storage --bench append` (about 15 s).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use duet_domain::{DocKind, Language, NewSession, SessionCode, Title};
use duet_storage::postgres::PgStorage;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::{NewUpdate, Storage};
use tokio::runtime::Runtime;
use uuid::Uuid;

/// Updates per `append_updates` call: the hub's writer commits a few hundred at a time under load.
const BATCH: usize = 256;
/// Size of one encoded update: a single-character Yjs insert is about this big.
const UPDATE_BYTES: usize = 30;
/// Sessions the batch is spread over (a hub serves several interviews at once).
const SESSIONS: usize = 8;

fn batch(rt: &Runtime, store: &dyn Storage) -> Vec<NewUpdate> {
    let sessions: Vec<Uuid> = rt.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..SESSIONS {
            let new = NewSession {
                code: SessionCode::generate(),
                title: Title::parse("bench").expect("valid title"),
                language: Language::Javascript,
                lobby: false,
                password_hash: None,
            };
            ids.push(
                store
                    .create_session(new)
                    .await
                    .expect("create a session")
                    .id,
            );
        }
        ids
    });
    (0..BATCH)
        .map(|i| NewUpdate {
            session_id: sessions[i % SESSIONS],
            doc: DocKind::Code,
            author: (i % 2 == 0).then(Uuid::new_v4),
            data: vec![(i % 251) as u8; UPDATE_BYTES],
        })
        .collect()
}

fn bench_append(c: &mut Criterion, name: &str, rt: &Runtime, store: Arc<dyn Storage>) {
    let updates = batch(rt, store.as_ref());
    let mut group = c.benchmark_group("append_updates_256");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(store.append_updates(&updates))
                .expect("append a batch")
        })
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStorage::open(dir.path().join("bench.db")).expect("open SQLite");
    bench_append(c, "sqlite", &rt, Arc::new(sqlite));

    let pg = rt.block_on(async {
        let url = duet_testkit::postgres::fresh_database_url().await;
        PgStorage::connect(&url)
            .await
            .expect("connect to PostgreSQL")
    });
    bench_append(c, "postgres", &rt, Arc::new(pg));
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared, and the figure is stable within a few seconds.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = append
}
criterion_main!(benches);
