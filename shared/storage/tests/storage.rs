//! One suite, run against both backends: every test below is an async fn taking a fresh [`Backend`],
//! and `suite!` instantiates it once for PostgreSQL (`pg::name`, a new database on the test server)
//! and once for SQLite (`sqlite::name`, a new file). Backend-specific tests follow the suite.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_domain::{DocKind, InterviewState, Language, NewSession, Session, SessionCode, Title};
use duet_storage::postgres::PgStorage;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::{NewEvent, NewRun, NewUpdate, Participant, Storage, StorageError, WebhookKind};
use duet_testkit::postgres::{fresh_database_url, TestPostgres};
use time::OffsetDateTime;
use uuid::Uuid;

/// A storage under test plus a raw connection to the same database, to check what is really stored.
struct Backend {
    store: Arc<dyn Storage>,
    raw: Raw,
    /// Keeps the SQLite file's directory alive for the test.
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Pg(String),
    Sqlite(PathBuf),
}

impl Backend {
    async fn pg() -> Self {
        let url = fresh_database_url().await;
        let store = PgStorage::connect(&url)
            .await
            .expect("connect to the test database");
        Self {
            store: Arc::new(store),
            raw: Raw::Pg(url),
            _dir: None,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("duet.db");
        let store = SqliteStorage::open(&path).expect("open the SQLite database");
        Self {
            store: Arc::new(store),
            raw: Raw::Sqlite(path),
            _dir: Some(dir),
        }
    }

    /// Runs one SQL statement outside the storage layer; returns the first column of the first row
    /// as an integer (0 when there is none).
    async fn raw_sql(&self, sql: &str) -> Result<i64, String> {
        match &self.raw {
            Raw::Pg(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let rows = client.query(sql, &[]).await.map_err(|e| format!("{e:?}"))?;
                Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)))
            }
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
                let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
                let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
                match rows.next().map_err(|e| e.to_string())? {
                    Some(row) => row.get(0).map_err(|e| e.to_string()),
                    None => Ok(0),
                }
            }
        }
    }

    /// Runs one query outside the storage layer; every value of every row as text (SQLite blobs
    /// as upper-case hex, NULL as "").
    async fn raw_rows(&self, sql: &str) -> Vec<Vec<String>> {
        match &self.raw {
            Raw::Pg(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client
                    .simple_query(sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                            (0..r.len())
                                .map(|i| r.get(i).unwrap_or("").to_owned())
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect()
            }
            Raw::Sqlite(path) => {
                use rusqlite::types::ValueRef;
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                let mut rows = stmt.query([]).unwrap();
                let mut out = Vec::new();
                while let Some(row) = rows.next().unwrap() {
                    out.push(
                        (0..n)
                            .map(|i| match row.get_ref(i).unwrap() {
                                ValueRef::Null => String::new(),
                                ValueRef::Integer(v) => v.to_string(),
                                ValueRef::Real(v) => v.to_string(),
                                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                                ValueRef::Blob(b) => b.iter().map(|x| format!("{x:02X}")).collect(),
                            })
                            .collect(),
                    );
                }
                out
            }
        }
    }

    /// Every table of the schema (the migration tool's bookkeeping excepted).
    async fn tables(&self) -> Vec<String> {
        let sql = match self.raw {
            Raw::Pg(_) => {
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
                 AND table_name <> 'refinery_schema_history' ORDER BY 1"
            }
            Raw::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name <> 'refinery_schema_history' ORDER BY 1"
            }
        };
        self.raw_rows(sql)
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    }

    /// Rows of `table` holding `id` in any column (as a UUID, its text, or its 16 bytes).
    async fn rows_mentioning(&self, table: &str, id: Uuid) -> usize {
        let sql = match self.raw {
            Raw::Pg(_) => format!("SELECT t::text FROM {table} t"),
            Raw::Sqlite(_) => format!("SELECT * FROM {table}"),
        };
        let (text, hex) = (id.to_string(), id.simple().to_string().to_uppercase());
        self.raw_rows(&sql)
            .await
            .iter()
            .filter(|row| {
                row.iter().any(|v| {
                    let v = v.to_uppercase();
                    v.contains(&text.to_uppercase()) || v.contains(&hex)
                })
            })
            .count()
    }

    /// Moves an interview (its creation, start, end and events) `days` into the past, as if it
    /// had been created then. Test-only: the storage has no such call.
    async fn backdate(&self, id: Uuid, days: i64) {
        let sqls = match self.raw {
            Raw::Pg(_) => {
                let by = format!("interval '{days} days'");
                vec![
                    format!(
                        "UPDATE sessions SET created_at = created_at - {by}, \
                         started_at = started_at - {by}, ended_at = ended_at - {by} \
                         WHERE id = '{id}'"
                    ),
                    format!("UPDATE events SET at = at - {by} WHERE session_id = '{id}'"),
                ]
            }
            Raw::Sqlite(_) => {
                let by = days * 86_400 * 1_000_000;
                let hex = id.simple();
                vec![
                    format!(
                        "UPDATE sessions SET created_at = created_at - {by}, \
                         started_at = started_at - {by}, ended_at = ended_at - {by} \
                         WHERE id = X'{hex}'"
                    ),
                    format!("UPDATE events SET at = at - {by} WHERE session_id = X'{hex}'"),
                ]
            }
        };
        for sql in sqls {
            self.raw_sql(&sql).await.unwrap();
        }
    }

    async fn count(&self, table: &str) -> i64 {
        self.raw_sql(&format!("SELECT count(*) FROM {table}"))
            .await
            .expect("count rows")
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::pg().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::sqlite().await).await;
                }
            )*
        }
    };
}

suite!(
    ping_answers,
    sessions_are_created_and_found_by_code_and_id,
    a_taken_code_is_code_taken_and_writes_nothing,
    language_and_text_are_updated_and_unknown_ids_are_not_found,
    texts_of_several_sessions_are_saved_at_once_and_unknown_ids_skipped,
    appended_updates_keep_input_order_and_seq_grows_across_batches_and_sessions,
    a_batch_is_all_or_nothing,
    concurrent_batches_all_land_with_distinct_seqs,
    load_document_is_the_newest_snapshot_plus_only_later_updates,
    history_keeps_every_update_after_snapshots_and_refuses_rewrites,
    participants_count_only_while_their_hub_is_alive,
    runs_are_listed_newest_first_with_a_limit,
    a_nul_in_one_text_never_fails_the_batch,
    free_text_with_nul_is_refused_before_anything_is_written,
    a_title_stored_before_the_control_character_rule_still_reads,
    new_sessions_are_live_from_creation_or_wait_in_a_lobby,
    the_lifecycle_moves_forward_only_and_repeats_change_nothing,
    racing_transitions_set_one_timestamp,
    controls_are_set_one_at_a_time,
    token_numbers_count_up_atomically_per_interview,
    removed_users_are_recorded_per_interview,
    the_two_documents_have_separate_histories_and_snapshots,
    events_are_recorded_all_or_nothing_and_read_in_time_order,
    the_lifecycle_records_its_start_and_end_once,
    every_run_is_listed_oldest_first,
    erasing_an_interview_leaves_no_row_of_it_in_any_table,
    expired_interviews_are_the_ended_and_the_untouched_before_the_cutoff,
    webhook_deliveries_are_claimed_once_leased_retried_and_finished,
    control_changes_and_removals_are_recorded_once,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_session(title: &str) -> NewSession {
    NewSession {
        code: SessionCode::generate(),
        title: Title::parse(title).unwrap(),
        language: Language::Python,
        lobby: false,
        password_hash: None,
    }
}

async fn session(b: &Backend) -> Session {
    b.store.create_session(new_session("t")).await.unwrap()
}

fn update(session_id: Uuid, author: Option<Uuid>, data: &str) -> NewUpdate {
    NewUpdate {
        session_id,
        doc: DocKind::Code,
        author,
        data: data.as_bytes().to_vec(),
    }
}

fn payloads(updates: &[duet_storage::StoredUpdate]) -> Vec<String> {
    updates
        .iter()
        .map(|u| String::from_utf8(u.data.clone()).unwrap())
        .collect()
}

fn assert_recent(t: OffsetDateTime) {
    let age = OffsetDateTime::now_utc() - t;
    assert!(
        age.abs() < time::Duration::seconds(60),
        "timestamp {t} is not about now"
    );
}

// ---------------------------------------------------------------------------------------------
// The suite

async fn ping_answers(b: Backend) {
    b.store.ping().await.unwrap();
}

async fn sessions_are_created_and_found_by_code_and_id(b: Backend) {
    let new = new_session("Senior backend — round 2");
    let created = b.store.create_session(new.clone()).await.unwrap();
    assert_eq!(created.code, new.code);
    assert_eq!(created.title, new.title);
    assert_eq!(created.language, Language::Python);
    assert_eq!(created.text, "");
    assert_recent(created.created_at);

    let by_code = b.store.session_by_code(&new.code).await.unwrap();
    assert_eq!(
        by_code.as_ref(),
        Some(&created),
        "read back exactly what create returned"
    );
    let by_id = b.store.session_by_id(created.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&created));

    let other = b.store.create_session(new_session("")).await.unwrap();
    assert_ne!(other.id, created.id);
    assert_eq!(
        b.store.session_by_id(other.id).await.unwrap().unwrap().code,
        other.code
    );

    let unknown = loop {
        let c = SessionCode::generate();
        if c != created.code && c != other.code {
            break c;
        }
    };
    assert_eq!(b.store.session_by_code(&unknown).await.unwrap(), None);
    assert_eq!(b.store.session_by_id(Uuid::new_v4()).await.unwrap(), None);
}

async fn a_taken_code_is_code_taken_and_writes_nothing(b: Backend) {
    let first = b.store.create_session(new_session("first")).await.unwrap();
    let clash = NewSession {
        code: first.code.clone(),
        title: Title::parse("second").unwrap(),
        language: Language::Html,
        lobby: true,
        password_hash: Some("$argon2id$whatever".into()),
    };
    let err = b.store.create_session(clash).await.unwrap_err();
    assert!(matches!(err, StorageError::CodeTaken), "got {err:?}");

    assert_eq!(
        b.count("sessions").await,
        1,
        "the rejected session left no row"
    );
    let stored = b.store.session_by_code(&first.code).await.unwrap();
    assert_eq!(stored, Some(first), "the existing session is untouched");

    // The caller's retry with another code succeeds.
    b.store.create_session(new_session("second")).await.unwrap();
    assert_eq!(b.count("sessions").await, 2);
}

async fn language_and_text_are_updated_and_unknown_ids_are_not_found(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    b.store.set_language(s.id, Language::Html).await.unwrap();
    b.store.set_text(s.id, "<h1>héllo 🌍</h1>\n").await.unwrap();
    let got = b.store.session_by_id(s.id).await.unwrap().unwrap();
    assert_eq!(got.language, Language::Html);
    assert_eq!(got.text, "<h1>héllo 🌍</h1>\n");
    assert_eq!(got.code, s.code);

    let untouched = b.store.session_by_id(other.id).await.unwrap().unwrap();
    assert_eq!(untouched, other, "only the targeted session changed");

    let missing = Uuid::new_v4();
    let err = b
        .store
        .set_language(missing, Language::Python)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
    let err = b.store.set_text(missing, "x").await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn texts_of_several_sessions_are_saved_at_once_and_unknown_ids_skipped(b: Backend) {
    let s1 = session(&b).await;
    let s2 = session(&b).await;
    let other = session(&b).await;
    assert!(b.store.set_texts(&[]).await.unwrap().is_empty());
    let mut saved = b
        .store
        .set_texts(&[
            (s1.id, "fn main() {}\n".to_owned()),
            (Uuid::new_v4(), "nobody".to_owned()),
            (s2.id, "héllo 🌍 'quoted' \"text\"".to_owned()),
        ])
        .await
        .unwrap();
    saved.sort();
    let mut expected = vec![s1.id, s2.id];
    expected.sort();
    assert_eq!(saved, expected, "the known sessions are reported saved");
    let got = |id| {
        let store = b.store.clone();
        async move { store.session_by_id(id).await.unwrap().unwrap() }
    };
    assert_eq!(got(s1.id).await.text, "fn main() {}\n");
    assert_eq!(got(s2.id).await.text, "héllo 🌍 'quoted' \"text\"");
    assert_eq!(
        got(other.id).await,
        other,
        "a session not in the batch is untouched"
    );
    assert_eq!(
        b.count("sessions").await,
        3,
        "an unknown id creates nothing"
    );
    // A later batch overwrites.
    b.store.set_texts(&[(s1.id, String::new())]).await.unwrap();
    assert_eq!(got(s1.id).await.text, "");
    assert_eq!(got(s2.id).await.text, "héllo 🌍 'quoted' \"text\"");
}

async fn appended_updates_keep_input_order_and_seq_grows_across_batches_and_sessions(b: Backend) {
    let a = session(&b).await;
    let c = session(&b).await;
    let alice = Uuid::new_v4();
    assert_eq!(
        b.store.append_updates(&[]).await.unwrap(),
        Vec::<i64>::new()
    );

    let first = vec![
        update(a.id, Some(alice), "a1"),
        update(c.id, None, "c1"),
        update(a.id, None, "a2"),
        update(a.id, Some(alice), "a3"),
        update(c.id, Some(alice), "c2"),
    ];
    let seqs1 = b.store.append_updates(&first).await.unwrap();
    assert_eq!(seqs1.len(), first.len());
    assert!(
        seqs1.windows(2).all(|w| w[0] < w[1]),
        "seqs follow input order: {seqs1:?}"
    );

    // A batch large enough to matter, with distinct payloads.
    let second: Vec<NewUpdate> = (0..300)
        .map(|i| update(if i % 3 == 0 { c.id } else { a.id }, None, &format!("b{i}")))
        .collect();
    let seqs2 = b.store.append_updates(&second).await.unwrap();
    assert_eq!(seqs2.len(), 300);
    assert!(seqs2.windows(2).all(|w| w[0] < w[1]));
    assert!(
        seqs2[0] > *seqs1.last().unwrap(),
        "a later batch gets larger seqs"
    );

    let history_a = b.store.history(a.id, DocKind::Code).await.unwrap();
    let mut expected_a = vec!["a1".to_owned(), "a2".into(), "a3".into()];
    expected_a.extend((0..300).filter(|i| i % 3 != 0).map(|i| format!("b{i}")));
    assert_eq!(payloads(&history_a), expected_a);
    assert!(history_a.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(history_a[0].author, Some(alice));
    assert_eq!(history_a[1].author, None);
    assert_eq!(
        history_a[0].seq, seqs1[0],
        "the returned seq is the stored one"
    );
    assert_eq!(history_a[2].seq, seqs1[3]);
    assert_recent(history_a[0].created_at);

    let history_c = b.store.history(c.id, DocKind::Code).await.unwrap();
    let mut expected_c = vec!["c1".to_owned(), "c2".into()];
    expected_c.extend((0..300).filter(|i| i % 3 == 0).map(|i| format!("b{i}")));
    assert_eq!(payloads(&history_c), expected_c);
    assert_eq!(history_c[1].author, Some(alice));

    // Binary data round-trips byte for byte.
    let bytes: Vec<u8> = (0..=255).collect();
    let seq = b
        .store
        .append_updates(&[NewUpdate {
            session_id: c.id,
            doc: DocKind::Code,
            author: None,
            data: bytes.clone(),
        }])
        .await
        .unwrap();
    let last = b
        .store
        .history(c.id, DocKind::Code)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((last.seq, last.data), (seq[0], bytes));
}

async fn a_batch_is_all_or_nothing(b: Backend) {
    let s = session(&b).await;
    b.store
        .append_updates(&[update(s.id, None, "kept")])
        .await
        .unwrap();
    let batch = vec![
        update(s.id, None, "x1"),
        update(Uuid::new_v4(), None, "orphan"),
        update(s.id, None, "x2"),
    ];
    let err = b.store.append_updates(&batch).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
    assert_eq!(
        payloads(&b.store.history(s.id, DocKind::Code).await.unwrap()),
        ["kept"]
    );
    assert_eq!(
        b.count("doc_updates").await,
        1,
        "no row of the failed batch was kept"
    );

    // And the store goes on working.
    b.store
        .append_updates(&[update(s.id, None, "after")])
        .await
        .unwrap();
    assert_eq!(
        payloads(&b.store.history(s.id, DocKind::Code).await.unwrap()),
        ["kept", "after"]
    );
}

async fn concurrent_batches_all_land_with_distinct_seqs(b: Backend) {
    let s = session(&b).await;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for batch in 0..5 {
                    let updates: Vec<_> = (0..20)
                        .map(|i| update(s.id, None, &format!("{t}-{batch}-{i}")))
                        .collect();
                    seqs.extend(store.append_updates(&updates).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs only grow"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 400, "every update got its own seq");
    let history = b.store.history(s.id, DocKind::Code).await.unwrap();
    assert_eq!(history.iter().map(|u| u.seq).collect::<Vec<_>>(), all);
}

async fn load_document_is_the_newest_snapshot_plus_only_later_updates(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;

    let empty = b.store.load_document(s.id, DocKind::Code).await.unwrap();
    assert_eq!(empty.snapshot, None);
    assert!(empty.updates.is_empty());

    let first: Vec<_> = (1..=5)
        .map(|i| update(s.id, None, &format!("u{i}")))
        .collect();
    let seqs = b.store.append_updates(&first).await.unwrap();
    b.store
        .append_updates(&[update(other.id, None, "elsewhere")])
        .await
        .unwrap();

    let doc = b.store.load_document(s.id, DocKind::Code).await.unwrap();
    assert_eq!(doc.snapshot, None);
    assert_eq!(payloads(&doc.updates), ["u1", "u2", "u3", "u4", "u5"]);

    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[1], b"snap-upto-u2")
        .await
        .unwrap();
    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[3], b"snap-upto-u4")
        .await
        .unwrap();
    // Saved last but older: "newest" means the highest upto_seq, not the latest write.
    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[2], b"snap-upto-u3")
        .await
        .unwrap();
    // Saving the same point again keeps the first snapshot.
    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[3], b"duplicate")
        .await
        .unwrap();
    let more: Vec<_> = (6..=7)
        .map(|i| update(s.id, None, &format!("u{i}")))
        .collect();
    b.store.append_updates(&more).await.unwrap();

    let doc = b.store.load_document(s.id, DocKind::Code).await.unwrap();
    let snap = doc.snapshot.expect("a snapshot");
    assert_eq!(snap.upto_seq, seqs[3]);
    assert_eq!(snap.data, b"snap-upto-u4");
    assert_eq!(payloads(&doc.updates), ["u5", "u6", "u7"]);
    assert!(doc.updates.iter().all(|u| u.seq > snap.upto_seq));

    // Snapshots of one session do not leak into another.
    let doc = b
        .store
        .load_document(other.id, DocKind::Code)
        .await
        .unwrap();
    assert_eq!(doc.snapshot, None);
    assert_eq!(payloads(&doc.updates), ["elsewhere"]);

    let err = b
        .store
        .save_snapshot(Uuid::new_v4(), DocKind::Code, 1, b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn history_keeps_every_update_after_snapshots_and_refuses_rewrites(b: Backend) {
    let s = session(&b).await;
    let batch: Vec<_> = (1..=6)
        .map(|i| update(s.id, None, &format!("u{i}")))
        .collect();
    let seqs = b.store.append_updates(&batch).await.unwrap();
    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[5], b"everything")
        .await
        .unwrap();
    b.store
        .append_updates(&[update(s.id, None, "u7")])
        .await
        .unwrap();

    let history = b.store.history(s.id, DocKind::Code).await.unwrap();
    assert_eq!(
        payloads(&history),
        ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]
    );
    assert_eq!(b.count("doc_updates").await, 7);
    assert_eq!(
        b.store
            .load_document(s.id, DocKind::Code)
            .await
            .unwrap()
            .updates
            .len(),
        1
    );

    // The database itself refuses to rewrite history, whoever asks.
    let delete = b.raw_sql("DELETE FROM doc_updates").await;
    assert!(
        delete.as_ref().is_err_and(|e| e.contains("append-only")),
        "got {delete:?}"
    );
    let rewrite = b.raw_sql("UPDATE doc_updates SET data = data").await;
    assert!(
        rewrite.as_ref().is_err_and(|e| e.contains("append-only")),
        "got {rewrite:?}"
    );
    assert_eq!(b.count("doc_updates").await, 7);
}

async fn participants_count_only_while_their_hub_is_alive(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    let participant = |session_id: Uuid, hub: &str, name: &str| Participant {
        id: Uuid::new_v4(),
        session_id,
        user_id: Uuid::new_v4(),
        name: name.into(),
        color: "#e91e63".into(),
        hub_id: hub.into(),
    };
    let short = format!("hub-short-{}", Uuid::new_v4());
    let long = format!("hub-long-{}", Uuid::new_v4());
    let silent = format!("hub-silent-{}", Uuid::new_v4());
    let p1 = participant(s.id, &short, "Ada");
    let p2 = participant(s.id, &short, "Grace");
    let p3 = participant(s.id, &long, "Linus");
    let p4 = participant(s.id, &silent, "Ghost");
    let p5 = participant(other.id, &long, "Elsewhere");
    for p in [&p1, &p2, &p3, &p4, &p5] {
        b.store.add_participant(p).await.unwrap();
    }
    // Adding again is idempotent (a re-sent join), not a second connection.
    b.store.add_participant(&p1).await.unwrap();
    assert_eq!(
        b.store.connected_count(s.id).await.unwrap(),
        0,
        "no hub is alive yet"
    );

    // Heartbeats last, so the 1 s TTL is not eaten by the set-up on a loaded machine.
    b.store.hub_heartbeat(&long, 60).await.unwrap();
    b.store.hub_heartbeat(&short, 1).await.unwrap();
    assert_eq!(
        b.store.connected_count(s.id).await.unwrap(),
        3,
        "a hub with no heartbeat counts for nothing"
    );
    assert_eq!(b.store.connected_count(other.id).await.unwrap(), 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        b.store.connected_count(s.id).await.unwrap(),
        1,
        "the short hub expired"
    );

    b.store.hub_heartbeat(&short, 60).await.unwrap();
    assert_eq!(
        b.store.connected_count(s.id).await.unwrap(),
        3,
        "its heartbeat revives its rows"
    );

    b.store.remove_participant(p1.id).await.unwrap();
    b.store.remove_participant(p1.id).await.unwrap();
    assert_eq!(b.store.connected_count(s.id).await.unwrap(), 2);

    b.store.remove_hub_participants(&short).await.unwrap();
    assert_eq!(
        b.store.connected_count(s.id).await.unwrap(),
        1,
        "only the long hub's row is left"
    );
    assert_eq!(
        b.store.connected_count(other.id).await.unwrap(),
        1,
        "other hubs keep their rows"
    );
    assert_eq!(b.count("participants").await, 3, "p3, p4 and p5 remain");

    let err = b
        .store
        .add_participant(&participant(Uuid::new_v4(), &long, "Nobody"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn runs_are_listed_newest_first_with_a_limit(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    let user = Uuid::new_v4();
    let mut recorded = Vec::new();
    for i in 0..5 {
        let run = b
            .store
            .record_run(NewRun {
                session_id: s.id,
                user_id: (i % 2 == 0).then_some(user),
                user_name: format!("user {i}"),
                language: if i == 4 {
                    Language::Javascript
                } else {
                    Language::Python
                },
                output: format!("output {i}\nline two"),
                status: if i == 3 { "error".into() } else { "ok".into() },
                duration_ms: 10 * i,
            })
            .await
            .unwrap();
        assert_recent(run.created_at);
        recorded.push(run);
        // Distinct timestamps on any clock resolution.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.store
        .record_run(NewRun {
            session_id: other.id,
            user_id: None,
            user_name: "x".into(),
            language: Language::Html,
            output: String::new(),
            status: "ok".into(),
            duration_ms: 1,
        })
        .await
        .unwrap();

    let recent = b.store.recent_runs(s.id, 3).await.unwrap();
    let expected: Vec<_> = recorded.iter().rev().take(3).cloned().collect();
    assert_eq!(recent, expected, "newest first, limited, fields round-trip");

    assert_eq!(b.store.recent_runs(s.id, 100).await.unwrap().len(), 5);
    assert!(b.store.recent_runs(s.id, 0).await.unwrap().is_empty());
    assert!(b
        .store
        .recent_runs(Uuid::new_v4(), 10)
        .await
        .unwrap()
        .is_empty());

    let err = b
        .store
        .record_run(NewRun {
            session_id: Uuid::new_v4(),
            user_id: None,
            user_name: "x".into(),
            language: Language::Html,
            output: String::new(),
            status: "ok".into(),
            duration_ms: 1,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

/// A NUL typed into one document: PostgreSQL `text` cannot hold U+0000, so the plain-text copy
/// stores it as U+FFFD on both backends (one UTF-16 unit for one, so offsets into the copy still
/// match the document), and the other interviews of the batch are saved as usual.
async fn a_nul_in_one_text_never_fails_the_batch(b: Backend) {
    let typed = session(&b).await;
    let bystander = session(&b).await;
    let mut saved = b
        .store
        .set_texts(&[
            (typed.id, "a\0b\0".to_owned()),
            (bystander.id, "untouched by the NUL".to_owned()),
        ])
        .await
        .expect("a NUL in one text does not fail the batch");
    saved.sort();
    let mut both = vec![typed.id, bystander.id];
    both.sort();
    assert_eq!(saved, both);
    let text = |id| {
        let store = b.store.clone();
        async move { store.session_by_id(id).await.unwrap().unwrap().text }
    };
    assert_eq!(text(typed.id).await, "a\u{FFFD}b\u{FFFD}");
    assert_eq!(text(bystander.id).await, "untouched by the NUL");
    b.store.set_text(typed.id, "\0").await.unwrap();
    assert_eq!(text(typed.id).await, "\u{FFFD}");
}

/// A run's output is kept as it was produced, so one holding U+0000 is refused (typed, before
/// the database is asked) rather than altered; nothing is written. Participant rows likewise.
async fn free_text_with_nul_is_refused_before_anything_is_written(b: Backend) {
    let s = session(&b).await;
    let run = |output: &str, user_name: &str| NewRun {
        session_id: s.id,
        user_id: None,
        user_name: user_name.into(),
        language: Language::Python,
        output: output.into(),
        status: "ok".into(),
        duration_ms: 1,
    };
    for bad in [run("before\0after", "Ada"), run("fine", "A\0da")] {
        let err = b.store.record_run(bad).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "got {err:?}");
    }
    assert_eq!(b.count("runs").await, 0, "nothing is written");
    b.store
        .record_run(run(
            "control characters other than NUL are output too: \u{1b}[31m\t",
            "Ada",
        ))
        .await
        .unwrap();
    assert_eq!(b.count("runs").await, 1);

    // The same rule guards participant rows (names are checked at the edge too).
    let err = b
        .store
        .add_participant(&Participant {
            id: Uuid::new_v4(),
            session_id: s.id,
            user_id: Uuid::new_v4(),
            name: "A\0da".into(),
            color: "#336699".into(),
            hub_id: "hub".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Invalid(_)), "got {err:?}");
    assert_eq!(b.count("participants").await, 0);
}

/// Titles with control characters are refused at the edge now; an interview created before that
/// rule must still load.
async fn a_title_stored_before_the_control_character_rule_still_reads(b: Backend) {
    let s = session(&b).await;
    b.raw_sql(&format!(
        "UPDATE sessions SET title = 'line\nbreak' WHERE code = '{}'",
        s.code
    ))
    .await
    .unwrap();
    let found = b.store.session_by_code(&s.code).await.unwrap().unwrap();
    assert_eq!(found.title.as_str(), "line\nbreak");
}

/// A timestamp as both backends store it: whole microseconds.
fn micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap()
}

/// `now` with a sub-microsecond part, to see that both backends cut it the same way.
fn instant(offset_secs: i64) -> OffsetDateTime {
    (OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs))
        .replace_nanosecond(123_456_789)
        .unwrap()
}

async fn new_sessions_are_live_from_creation_or_wait_in_a_lobby(b: Backend) {
    let live = session(&b).await;
    assert_eq!(live.state, InterviewState::Live);
    assert_eq!(
        live.started_at,
        Some(live.created_at),
        "live from its creation"
    );
    assert_eq!(live.ended_at, None);
    assert!(!live.has_password);
    assert!(!live.editing_locked, "editing is open by default");
    assert!(live.runs_enabled, "runs are allowed by default");
    assert_eq!(b.store.password_hash(live.id).await.unwrap(), None);

    let hash = duet_auth::hash_password("open sesame");
    let lobby = b
        .store
        .create_session(NewSession {
            lobby: true,
            password_hash: Some(hash.clone()),
            ..new_session("with a lobby")
        })
        .await
        .unwrap();
    assert_eq!(lobby.state, InterviewState::Waiting);
    assert_eq!(lobby.started_at, None);
    assert_eq!(lobby.ended_at, None);
    assert!(lobby.has_password);
    assert_eq!(
        b.store.session_by_code(&lobby.code).await.unwrap(),
        Some(lobby.clone()),
        "read back as created"
    );
    let stored = b.store.password_hash(lobby.id).await.unwrap().unwrap();
    assert_eq!(stored, hash);
    assert!(duet_auth::verify_password("open sesame", &stored));
    let err = b.store.password_hash(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn the_lifecycle_moves_forward_only_and_repeats_change_nothing(b: Backend) {
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("lifecycle")
        })
        .await
        .unwrap();
    let (t1, t2, t3, t4) = (instant(1), instant(2), instant(3), instant(4));

    let live = b
        .store
        .transition(s.id, InterviewState::Live, t1)
        .await
        .unwrap();
    assert_eq!(live.state, InterviewState::Live);
    assert_eq!(live.started_at, Some(micros(t1)));
    assert_eq!(live.ended_at, None);
    let again = b
        .store
        .transition(s.id, InterviewState::Live, t2)
        .await
        .unwrap();
    assert_eq!(again, live, "starting again changes nothing");

    let err = b
        .store
        .transition(s.id, InterviewState::Waiting, t2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::InvalidTransition {
                from: InterviewState::Live,
                to: InterviewState::Waiting
            }
        ),
        "got {err:?}"
    );

    let ended = b
        .store
        .transition(s.id, InterviewState::Ended, t3)
        .await
        .unwrap();
    assert_eq!(ended.state, InterviewState::Ended);
    assert_eq!(ended.started_at, Some(micros(t1)));
    assert_eq!(ended.ended_at, Some(micros(t3)));
    assert_eq!(
        b.store
            .transition(s.id, InterviewState::Ended, t4)
            .await
            .unwrap(),
        ended,
        "ending again changes nothing"
    );
    for to in [InterviewState::Live, InterviewState::Waiting] {
        let err = b.store.transition(s.id, to, t4).await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::InvalidTransition {
                    from: InterviewState::Ended,
                    ..
                }
            ),
            "got {err:?}"
        );
    }
    assert_eq!(
        b.store.session_by_id(s.id).await.unwrap(),
        Some(ended),
        "refused moves wrote nothing"
    );

    // Straight from the lobby to the end: it never started.
    let skipped = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("never started")
        })
        .await
        .unwrap();
    let ended = b
        .store
        .transition(skipped.id, InterviewState::Ended, t1)
        .await
        .unwrap();
    assert_eq!(
        (ended.state, ended.started_at, ended.ended_at),
        (InterviewState::Ended, None, Some(micros(t1)))
    );
    // An interview live from its creation keeps `started_at = created_at`.
    let live = session(&b).await;
    let started = b
        .store
        .transition(live.id, InterviewState::Live, t1)
        .await
        .unwrap();
    assert_eq!(started.started_at, Some(live.created_at));

    let err = b
        .store
        .transition(Uuid::new_v4(), InterviewState::Live, t1)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn racing_transitions_set_one_timestamp(b: Backend) {
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("race")
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move {
                store
                    .transition(s.id, InterviewState::Live, instant(i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut started = Vec::new();
    for t in tasks {
        started.push(t.await.unwrap().started_at.unwrap());
    }
    started.dedup();
    assert_eq!(
        started.len(),
        1,
        "every caller sees the one start: {started:?}"
    );
}

async fn controls_are_set_one_at_a_time(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    let locked = b.store.set_controls(s.id, Some(true), None).await.unwrap();
    assert!(locked.editing_locked);
    assert!(locked.runs_enabled, "left as it was");
    let no_runs = b.store.set_controls(s.id, None, Some(false)).await.unwrap();
    assert!(no_runs.editing_locked, "left as it was");
    assert!(!no_runs.runs_enabled);
    assert_eq!(
        b.store.set_controls(s.id, None, None).await.unwrap(),
        no_runs,
        "nothing asked, nothing changed"
    );
    let both = b
        .store
        .set_controls(s.id, Some(false), Some(true))
        .await
        .unwrap();
    assert!(!both.editing_locked && both.runs_enabled);
    b.store
        .set_controls(s.id, Some(true), Some(false))
        .await
        .unwrap();
    let read = b.store.session_by_code(&s.code).await.unwrap().unwrap();
    assert!(read.editing_locked && !read.runs_enabled, "stored");
    assert_eq!(
        b.store.session_by_id(other.id).await.unwrap(),
        Some(other),
        "only the targeted interview changed"
    );
    let err = b
        .store
        .set_controls(Uuid::new_v4(), Some(true), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn token_numbers_count_up_atomically_per_interview(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move { store.next_token_number(s.id).await.unwrap() })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (0..12).collect::<Vec<i64>>(), "distinct, from 0");
    let colours: std::collections::HashSet<_> = numbers
        .iter()
        .map(|&n| duet_domain::palette_color(n))
        .collect();
    assert_eq!(colours.len(), 12);
    assert_eq!(b.store.next_token_number(s.id).await.unwrap(), 12);
    assert_eq!(
        b.store.next_token_number(other.id).await.unwrap(),
        0,
        "each interview counts its own"
    );
    let err = b.store.next_token_number(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn removed_users_are_recorded_per_interview(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    let (u1, u2, u3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(b.store.removed_users(s.id).await.unwrap().is_empty());
    b.store.remove_user(s.id, u1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    b.store.remove_user(s.id, u2).await.unwrap();
    b.store
        .remove_user(s.id, u1)
        .await
        .expect("removing again is fine");
    assert!(b.store.is_removed(s.id, u1).await.unwrap());
    assert!(b.store.is_removed(s.id, u2).await.unwrap());
    assert!(!b.store.is_removed(s.id, u3).await.unwrap());
    assert!(
        !b.store.is_removed(other.id, u1).await.unwrap(),
        "removed from one interview only"
    );
    assert!(!b.store.is_removed(Uuid::new_v4(), u1).await.unwrap());
    assert_eq!(b.store.removed_users(s.id).await.unwrap(), vec![u1, u2]);
    assert!(b.store.removed_users(other.id).await.unwrap().is_empty());
    assert_eq!(b.count("removed_users").await, 2);
    let err = b.store.remove_user(Uuid::new_v4(), u3).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
}

async fn the_two_documents_have_separate_histories_and_snapshots(b: Backend) {
    let s = session(&b).await;
    let doc_update = |doc, data: &str| NewUpdate {
        doc,
        ..update(s.id, None, data)
    };
    // One batch, both documents interleaved: one transaction, seqs in input order.
    let seqs = b
        .store
        .append_updates(&[
            doc_update(DocKind::Code, "c1"),
            doc_update(DocKind::Notes, "n1"),
            doc_update(DocKind::Code, "c2"),
            doc_update(DocKind::Notes, "n2"),
            doc_update(DocKind::Notes, "n3"),
        ])
        .await
        .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        payloads(&b.store.history(s.id, DocKind::Code).await.unwrap()),
        ["c1", "c2"]
    );
    assert_eq!(
        payloads(&b.store.history(s.id, DocKind::Notes).await.unwrap()),
        ["n1", "n2", "n3"]
    );
    assert_eq!(
        b.raw_sql("SELECT count(*) FROM doc_updates WHERE doc = 1")
            .await
            .unwrap(),
        3,
        "stored as doc 1"
    );

    // A notes snapshot covers notes only; both documents may hold a snapshot at the same seq.
    b.store
        .save_snapshot(s.id, DocKind::Notes, seqs[3], b"notes-upto-n2")
        .await
        .unwrap();
    b.store
        .save_snapshot(s.id, DocKind::Code, seqs[3], b"code-upto-c2")
        .await
        .unwrap();
    let notes = b.store.load_document(s.id, DocKind::Notes).await.unwrap();
    assert_eq!(notes.snapshot.as_ref().unwrap().data, b"notes-upto-n2");
    assert_eq!(payloads(&notes.updates), ["n3"]);
    let code = b.store.load_document(s.id, DocKind::Code).await.unwrap();
    assert_eq!(code.snapshot.as_ref().unwrap().data, b"code-upto-c2");
    assert!(code.updates.is_empty());

    // A session with notes only: its code is empty.
    let fresh = session(&b).await;
    b.store
        .append_updates(&[NewUpdate {
            doc: DocKind::Notes,
            ..update(fresh.id, None, "only notes")
        }])
        .await
        .unwrap();
    assert_eq!(
        b.store
            .load_document(fresh.id, DocKind::Code)
            .await
            .unwrap(),
        Default::default()
    );
    // The database refuses a third document, whoever asks.
    let bad = b
        .raw_sql(&format!(
            "INSERT INTO doc_updates (session_id, doc, data, created_at) \
             SELECT id, 2, data, created_at FROM doc_updates WHERE seq = {}",
            seqs[0]
        ))
        .await;
    assert!(bad.is_err(), "got {bad:?}");
}

fn event(session_id: Uuid, kind: &str, data: &str, at: OffsetDateTime) -> NewEvent {
    NewEvent {
        session_id,
        user_id: Some(Uuid::nil()),
        user_name: "Ada".into(),
        kind: kind.into(),
        data: data.into(),
        at,
    }
}

fn kinds(events: &[duet_storage::Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

async fn events_are_recorded_all_or_nothing_and_read_in_time_order(b: Backend) {
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("events")
        })
        .await
        .unwrap();
    let other = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("other")
        })
        .await
        .unwrap();
    let (t1, t2, t3) = (instant(1), instant(2), instant(3));
    b.store
        .record_events(&[
            event(s.id, "paste", r#"{"size":312,"doc":"code"}"#, t3),
            event(
                s.id,
                "join",
                r##"{"role":"candidate","color":"#aabbcc"}"##,
                t1,
            ),
            event(other.id, "join", "{}", t1),
            event(s.id, "blur", "{}", t2),
            // Same instant as the blur: recorded later, so listed after it.
            NewEvent {
                user_id: None,
                user_name: "Zoë — ünïcode".into(),
                ..event(s.id, "focus", "{}", t2)
            },
        ])
        .await
        .unwrap();
    let events = b.store.events(s.id).await.unwrap();
    assert_eq!(kinds(&events), ["join", "blur", "focus", "paste"]);
    assert_eq!(events[0].at, micros(t1));
    assert_eq!(
        events[0].data,
        r##"{"role":"candidate","color":"#aabbcc"}"##
    );
    assert_eq!(events[0].user_id, Some(Uuid::nil()));
    assert_eq!(events[2].user_id, None);
    assert_eq!(events[2].user_name, "Zoë — ünïcode");
    assert_eq!(
        events[3].data, r#"{"size":312,"doc":"code"}"#,
        "exactly as written"
    );
    assert!(events.iter().all(|e| e.session_id == s.id));
    assert!(events[1].seq < events[2].seq);
    assert_eq!(kinds(&b.store.events(other.id).await.unwrap()), ["join"]);
    assert!(b.store.events(Uuid::new_v4()).await.unwrap().is_empty());
    b.store.record_events(&[]).await.unwrap();

    // Refused before anything is written, the valid events of the batch included.
    let before = b.count("events").await;
    let refused = [
        NewEvent {
            user_name: "A\0da".into(),
            ..event(s.id, "blur", "{}", t1)
        },
        event(s.id, "paste", "{\"doc\":\"co\0de\"}", t1),
        event(s.id, "bl\0ur", "{}", t1),
        event(s.id, "", "{}", t1),
        event(s.id, "Blur", "{}", t1),
        event(s.id, "blur", "[1]", t1),
        event(s.id, "blur", "not json", t1),
    ];
    for bad in refused {
        let err = b
            .store
            .record_events(&[event(s.id, "focus", "{}", t1), bad.clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Invalid(_)),
            "{bad:?}: got {err:?}"
        );
    }
    // An unknown interview fails the whole batch.
    let err = b
        .store
        .record_events(&[
            event(s.id, "focus", "{}", t1),
            event(Uuid::new_v4(), "focus", "{}", t1),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
    assert_eq!(b.count("events").await, before, "nothing written");
}

async fn the_lifecycle_records_its_start_and_end_once(b: Backend) {
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("lifecycle events")
        })
        .await
        .unwrap();
    assert!(
        b.store.events(s.id).await.unwrap().is_empty(),
        "a lobby has not started"
    );
    let (t1, t2, t3) = (instant(1), instant(2), instant(3));
    b.store
        .transition(s.id, InterviewState::Waiting, t1)
        .await
        .unwrap();
    b.store
        .transition(s.id, InterviewState::Live, t1)
        .await
        .unwrap();
    b.store
        .transition(s.id, InterviewState::Live, t2)
        .await
        .unwrap();
    b.store
        .transition(s.id, InterviewState::Waiting, t2)
        .await
        .unwrap_err();
    b.store
        .transition(s.id, InterviewState::Ended, t3)
        .await
        .unwrap();
    b.store
        .transition(s.id, InterviewState::Ended, t3)
        .await
        .unwrap();
    let events = b.store.events(s.id).await.unwrap();
    assert_eq!(kinds(&events), ["start", "end"]);
    assert_eq!((events[0].at, events[1].at), (micros(t1), micros(t3)));
    assert!(events.iter().all(|e| e.user_id.is_none() && e.data == "{}"));

    // Racing starts record one.
    let race = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("race")
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move {
                store
                    .transition(race.id, InterviewState::Live, instant(i))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(kinds(&b.store.events(race.id).await.unwrap()), ["start"]);

    // Live from its creation: started then.
    let live = session(&b).await;
    let events = b.store.events(live.id).await.unwrap();
    assert_eq!(kinds(&events), ["start"]);
    assert_eq!(events[0].at, live.created_at);

    // The webhooks queued with them, in order.
    let queued: Vec<_> = b
        .store
        .claim_webhooks(OffsetDateTime::now_utc(), 60, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.session_id == s.id)
        .map(|d| (d.kind, d.session_code.clone(), d.at))
        .collect();
    assert_eq!(
        queued,
        [
            (WebhookKind::Created, s.code.clone(), s.created_at),
            (WebhookKind::Started, s.code.clone(), micros(t1)),
            (WebhookKind::Ended, s.code.clone(), micros(t3)),
        ]
    );
}

async fn control_changes_and_removals_are_recorded_once(b: Backend) {
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("controls")
        })
        .await
        .unwrap();
    b.store.set_controls(s.id, Some(true), None).await.unwrap();
    b.store
        .set_controls(s.id, Some(true), Some(true))
        .await
        .unwrap(); // no change
    b.store.set_controls(s.id, None, None).await.unwrap(); // no change
    b.store
        .set_controls(s.id, Some(false), Some(false))
        .await
        .unwrap();
    let user = Uuid::new_v4();
    b.store.remove_user(s.id, user).await.unwrap();
    b.store.remove_user(s.id, user).await.unwrap(); // again: nothing new
    let events = b.store.events(s.id).await.unwrap();
    assert_eq!(kinds(&events), ["controls", "controls", "removed"]);
    let data: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(
        data,
        [
            serde_json::json!({"editing_locked": true, "runs_enabled": true}),
            serde_json::json!({"editing_locked": false, "runs_enabled": false}),
            serde_json::json!({"user_id": user}),
        ]
    );
    assert!(events.iter().all(|e| e.user_id.is_none()));
    assert_recent(events[2].at);
    // An unknown interview records nothing.
    let before = b.count("events").await;
    assert!(b.store.remove_user(Uuid::new_v4(), user).await.is_err());
    assert!(b
        .store
        .set_controls(Uuid::new_v4(), Some(true), None)
        .await
        .is_err());
    assert_eq!(b.count("events").await, before);
}

async fn every_run_is_listed_oldest_first(b: Backend) {
    let s = session(&b).await;
    let other = session(&b).await;
    for i in 0..5 {
        b.store
            .record_run(NewRun {
                session_id: if i == 2 { other.id } else { s.id },
                user_id: None,
                user_name: "Ada".into(),
                language: Language::Python,
                output: format!("run {i}"),
                status: "ok".into(),
                duration_ms: i,
            })
            .await
            .unwrap();
    }
    let runs = b.store.runs(s.id).await.unwrap();
    let outputs: Vec<_> = runs.iter().map(|r| r.output.as_str()).collect();
    assert_eq!(outputs, ["run 0", "run 1", "run 3", "run 4"]);
    assert_eq!(b.store.runs(other.id).await.unwrap().len(), 1);
    assert!(b.store.runs(Uuid::new_v4()).await.unwrap().is_empty());
}

/// An interview with a row in every table that holds interview data.
async fn full_interview(b: &Backend) -> Session {
    let s = session(b).await;
    let user = Uuid::new_v4();
    let seqs = b
        .store
        .append_updates(&[
            update(s.id, Some(user), "code"),
            NewUpdate {
                doc: DocKind::Notes,
                ..update(s.id, Some(user), "notes")
            },
        ])
        .await
        .unwrap();
    for doc in DocKind::ALL {
        b.store
            .save_snapshot(s.id, doc, seqs[1], b"snap")
            .await
            .unwrap();
    }
    b.store
        .record_events(&[event(s.id, "join", "{}", instant(0))])
        .await
        .unwrap();
    b.store
        .record_run(NewRun {
            session_id: s.id,
            user_id: Some(user),
            user_name: "Ada".into(),
            language: Language::Python,
            output: "42".into(),
            status: "ok".into(),
            duration_ms: 3,
        })
        .await
        .unwrap();
    b.store.hub_heartbeat("hub-1", 30).await.unwrap();
    b.store
        .add_participant(&Participant {
            id: Uuid::new_v4(),
            session_id: s.id,
            user_id: user,
            name: "Ada".into(),
            color: "#123456".into(),
            hub_id: "hub-1".into(),
        })
        .await
        .unwrap();
    b.store.remove_user(s.id, Uuid::new_v4()).await.unwrap();
    b.store
        .transition(s.id, InterviewState::Ended, instant(1))
        .await
        .unwrap();
    s
}

async fn erasing_an_interview_leaves_no_row_of_it_in_any_table(b: Backend) {
    let s = full_interview(&b).await;
    let kept = full_interview(&b).await;
    let tables = b.tables().await;
    for t in [
        "sessions",
        "doc_updates",
        "doc_snapshots",
        "events",
        "runs",
        "participants",
        "removed_users",
        "webhook_outbox",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
        assert!(
            b.rows_mentioning(t, s.id).await > 0,
            "the interview has rows in {t}"
        );
    }
    let mut kept_rows = Vec::new();
    for t in &tables {
        kept_rows.push(b.rows_mentioning(t, kept.id).await);
    }

    assert!(b.store.erase_session(s.id).await.unwrap());
    for t in &tables {
        assert_eq!(
            b.rows_mentioning(t, s.id).await,
            0,
            "a row of it is left in {t}"
        );
    }
    for (t, n) in tables.iter().zip(&kept_rows) {
        assert_eq!(
            b.rows_mentioning(t, kept.id).await,
            *n,
            "the other interview lost rows in {t}"
        );
    }
    assert_eq!(b.store.session_by_id(s.id).await.unwrap(), None);
    assert_eq!(b.store.session_by_code(&s.code).await.unwrap(), None);
    assert!(b
        .store
        .history(s.id, DocKind::Code)
        .await
        .unwrap()
        .is_empty());
    assert!(b.store.events(s.id).await.unwrap().is_empty());
    assert_eq!(b.count("hubs").await, 1, "hubs are no interview's data");
    assert!(
        !b.store.erase_session(s.id).await.unwrap(),
        "already erased"
    );
    assert!(!b.store.erase_session(Uuid::new_v4()).await.unwrap());

    // Writes to an erased interview are refused, not stored as orphans.
    let err = b
        .store
        .append_updates(&[update(s.id, None, "late")])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");
    let err = b
        .store
        .record_events(&[event(s.id, "leave", "{}", instant(2))])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "got {err:?}");

    // Erasure is the one way out: the history still refuses a DELETE or rewrite outside it.
    for sql in [
        "DELETE FROM doc_updates",
        "UPDATE doc_updates SET data = data",
    ] {
        let r = b.raw_sql(sql).await;
        assert!(
            r.as_ref().is_err_and(|e| e.contains("append-only")),
            "{sql}: got {r:?}"
        );
    }
    assert_eq!(b.rows_mentioning("doc_updates", kept.id).await, 2);

    // Erasing many at once (replicas racing on the same ids): each is erased once.
    let ids: Vec<Uuid> = futures_util::future::join_all((0..4).map(|_| full_interview(&b)))
        .await
        .iter()
        .map(|s| s.id)
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&b.store);
            let id = ids[i % ids.len()];
            tokio::spawn(async move { store.erase_session(id).await.unwrap() })
        })
        .collect();
    let mut erased = 0;
    for t in tasks {
        erased += usize::from(t.await.unwrap());
    }
    assert_eq!(erased, ids.len());
    assert_eq!(
        b.count("sessions").await,
        1,
        "only the kept interview is left"
    );
}

async fn expired_sessions_for(b: &Backend, cutoff: OffsetDateTime, limit: i64) -> Vec<Uuid> {
    let mut ids = b.store.expired_sessions(cutoff, limit).await.unwrap();
    ids.sort_unstable();
    ids
}

async fn expired_interviews_are_the_ended_and_the_untouched_before_the_cutoff(b: Backend) {
    let now = OffsetDateTime::now_utc();
    let cutoff = now - time::Duration::days(1);
    let days_ago = |d: i64| now - time::Duration::days(d);
    let lobby = || NewSession {
        lobby: true,
        ..new_session("retention")
    };

    // Ended ten days ago.
    let ended_long_ago = b.store.create_session(lobby()).await.unwrap();
    b.store
        .transition(ended_long_ago.id, InterviewState::Ended, now)
        .await
        .unwrap();
    b.backdate(ended_long_ago.id, 10).await;
    // Created long ago, ended just now.
    let ended_now = b.store.create_session(lobby()).await.unwrap();
    b.backdate(ended_now.id, 10).await;
    b.store
        .transition(ended_now.id, InterviewState::Ended, now)
        .await
        .unwrap();
    // A lobby nobody ever opened.
    let untouched_lobby = b.store.create_session(lobby()).await.unwrap();
    b.backdate(untouched_lobby.id, 10).await;
    // Live for ten days, its last event five days ago.
    let idle = session(&b).await;
    b.backdate(idle.id, 10).await;
    b.store
        .record_events(&[event(idle.id, "join", "{}", days_ago(5))])
        .await
        .unwrap();
    // Old but touched since the cutoff: an edit, an event, a run.
    let edited = session(&b).await;
    b.backdate(edited.id, 10).await;
    b.store
        .append_updates(&[update(edited.id, None, "x")])
        .await
        .unwrap();
    let active = session(&b).await;
    b.backdate(active.id, 10).await;
    b.store
        .record_events(&[event(active.id, "focus", "{}", days_ago(0))])
        .await
        .unwrap();
    let ran = session(&b).await;
    b.backdate(ran.id, 10).await;
    b.store
        .record_run(NewRun {
            session_id: ran.id,
            user_id: None,
            user_name: "Ada".into(),
            language: Language::Python,
            output: String::new(),
            status: "ok".into(),
            duration_ms: 1,
        })
        .await
        .unwrap();
    // Created a moment ago.
    let fresh = session(&b).await;
    // A lobby started just now after waiting ten days.
    let started_now = b.store.create_session(lobby()).await.unwrap();
    b.backdate(started_now.id, 10).await;
    b.store
        .transition(started_now.id, InterviewState::Live, now)
        .await
        .unwrap();

    let mut expected = vec![ended_long_ago.id, untouched_lobby.id, idle.id];
    expected.sort_unstable();
    assert_eq!(expired_sessions_for(&b, cutoff, 100).await, expected);
    // Batched: the oldest first.
    let first = b.store.expired_sessions(cutoff, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(expected.contains(&first[0]));
    assert!(b
        .store
        .expired_sessions(cutoff, 0)
        .await
        .unwrap()
        .is_empty());

    // An earlier cutoff: only what ended or idled before it.
    assert_eq!(expired_sessions_for(&b, days_ago(7), 100).await, {
        let mut v = vec![ended_long_ago.id, untouched_lobby.id];
        v.sort_unstable();
        v
    });
    for id in &expected {
        assert!(b.store.erase_session(*id).await.unwrap());
    }
    assert!(expired_sessions_for(&b, cutoff, 100).await.is_empty());
    for kept in [ended_now, edited, active, ran, fresh, started_now] {
        assert!(b.store.session_by_id(kept.id).await.unwrap().is_some());
    }
}

async fn webhook_deliveries_are_claimed_once_leased_retried_and_finished(b: Backend) {
    let now = OffsetDateTime::now_utc();
    let s = b
        .store
        .create_session(NewSession {
            lobby: true,
            ..new_session("hooks")
        })
        .await
        .unwrap();
    let claimed = b.store.claim_webhooks(now, 30, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!(
        (d.kind, d.session_id, d.attempts),
        (WebhookKind::Created, s.id, 1)
    );
    assert_eq!(d.session_code, s.code);
    assert_eq!(d.at, s.created_at);
    // Leased: not claimed again until the lease is over (the claimer may have died).
    assert!(b
        .store
        .claim_webhooks(now, 30, 10)
        .await
        .unwrap()
        .is_empty());
    let again = b
        .store
        .claim_webhooks(now + time::Duration::seconds(31), 30, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (d.id, 2));
    // A retry is due at the time given.
    let later = now + time::Duration::seconds(100);
    b.store.retry_webhook(d.id, later).await.unwrap();
    assert!(b
        .store
        .claim_webhooks(later - time::Duration::seconds(1), 30, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.store.claim_webhooks(later, 30, 10).await.unwrap()[0].attempts,
        3
    );
    b.store.finish_webhook(d.id).await.unwrap();
    b.store.finish_webhook(d.id).await.unwrap();
    assert!(b
        .store
        .claim_webhooks(later + time::Duration::days(1), 30, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.count("webhook_outbox").await, 0);

    // Several dispatchers claiming together: every delivery goes to exactly one of them.
    for _ in 0..10 {
        session(&b).await; // created + started: two each
    }
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move { store.claim_webhooks(now, 30, 3).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap().into_iter().map(|d| d.id));
    }
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "a delivery claimed twice");
    assert_eq!(total, 18, "6 claimers × 3 of the 20 due");
}

// ---------------------------------------------------------------------------------------------
// SQLite only

#[tokio::test]
async fn sqlite_in_memory_works() {
    let store = SqliteStorage::in_memory().unwrap();
    let s = store.create_session(new_session("mem")).await.unwrap();
    store
        .append_updates(&[update(s.id, None, "x")])
        .await
        .unwrap();
    assert_eq!(store.session_by_id(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        payloads(&store.history(s.id, DocKind::Code).await.unwrap()),
        ["x"]
    );
}

#[tokio::test]
async fn sqlite_creates_its_directory_uses_wal_and_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/duet.db");
    let s = {
        let store = SqliteStorage::open(&path).unwrap();
        let s = store.create_session(new_session("kept")).await.unwrap();
        store
            .append_updates(&[update(s.id, None, "edit")])
            .await
            .unwrap();
        s
    };
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(raw);

    // Reopening runs the migrations again: nothing to do, nothing lost.
    let store = SqliteStorage::open(&path).unwrap();
    assert_eq!(store.session_by_id(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        payloads(&store.history(s.id, DocKind::Code).await.unwrap()),
        ["edit"]
    );
}

/// A database made by the version-1 schema, with an interview, its history and a snapshot, is
/// brought to version 2 on open: the interview is live from its creation, its history is the code's.
#[tokio::test]
async fn sqlite_v1_database_migrates_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let id = Uuid::new_v4();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        v1_runner(include_str!("../migrations/sqlite/V1__initial.sql"))
            .run(&mut conn)
            .unwrap();
        conn.execute(
            "INSERT INTO sessions (id, code, title, language, text, created_at) \
             VALUES (?1, 'V2V3V4V5', 'old', 'python', 'x = 1', 1700000000123456)",
            [id],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO doc_updates (session_id, data, created_at) VALUES (?1, x'0102', 1700000000200000)",
            [id],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO doc_snapshots (session_id, upto_seq, data, created_at) VALUES (?1, 1, x'09', 1700000000300000)",
            [id],
        )
        .unwrap();
    }
    let store = SqliteStorage::open(&path).unwrap();
    check_migrated_v1(&store, id).await;
}

fn v1_runner(sql: &str) -> refinery::Runner {
    refinery::Runner::new(&[refinery::Migration::unapplied("V1__initial", sql).unwrap()])
}

async fn check_migrated_v1(store: &dyn Storage, id: Uuid) {
    let s = store.session_by_id(id).await.unwrap().unwrap();
    assert_eq!(s.code.as_str(), "V2V3V4V5");
    assert_eq!(s.text, "x = 1");
    assert_eq!(s.state, InterviewState::Live);
    assert_eq!(s.started_at, Some(s.created_at), "live since its creation");
    assert_eq!(s.created_at.unix_timestamp(), 1_700_000_000);
    assert_eq!(s.ended_at, None);
    assert!(!s.has_password && !s.editing_locked && s.runs_enabled);
    let code = store.load_document(id, DocKind::Code).await.unwrap();
    assert_eq!(code.snapshot.unwrap().data, [9]);
    assert!(code.updates.is_empty());
    assert_eq!(
        store.history(id, DocKind::Code).await.unwrap()[0].data,
        [1, 2],
        "the old history is the code's"
    );
    assert!(store.history(id, DocKind::Notes).await.unwrap().is_empty());
    assert_eq!(store.next_token_number(id).await.unwrap(), 0);
    // And the interview goes on: it can end.
    let ended = store
        .transition(id, InterviewState::Ended, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(ended.state, InterviewState::Ended);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// A connection of its own to the backend's PostgreSQL database.
async fn raw_pg(b: &Backend) -> tokio_postgres::Client {
    let Raw::Pg(url) = &b.raw else { unreachable!() };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Takes the row lock the history writer holds on a session while it appends, until `tx` ends.
async fn lock_session_row(tx: &tokio_postgres::Transaction<'_>, id: Uuid) {
    tx.query(
        "SELECT id FROM sessions WHERE id = $1 FOR NO KEY UPDATE",
        &[&id],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn pg_text_batches_skip_rows_another_transaction_holds_instead_of_waiting() {
    let b = Backend::pg().await;
    let (held, free) = (session(&b).await, session(&b).await);
    let mut client = raw_pg(&b).await;
    // As the history writer does while it appends to a session.
    let tx = client.transaction().await.unwrap();
    lock_session_row(&tx, held.id).await;
    let saved = tokio::time::timeout(
        Duration::from_secs(5),
        b.store
            .set_texts(&[(held.id, "held".to_owned()), (free.id, "free".to_owned())]),
    )
    .await
    .expect("the batch does not wait for the held row")
    .unwrap();
    assert_eq!(saved, vec![free.id]);
    tx.commit().await.unwrap();
    let text = |id| {
        let store = b.store.clone();
        async move { store.session_by_id(id).await.unwrap().unwrap().text }
    };
    assert_eq!(text(free.id).await, "free");
    assert_eq!(
        text(held.id).await,
        "",
        "the held row was skipped, not written"
    );
    // Once released, the next batch saves it.
    let saved = b
        .store
        .set_texts(&[(held.id, "held".to_owned())])
        .await
        .unwrap();
    assert_eq!(saved, vec![held.id]);
    assert_eq!(text(held.id).await, "held");
}

#[tokio::test]
async fn pg_appends_to_one_session_wait_for_each_other_and_for_no_other() {
    // Two hubs may append to one interview during a failover. A sequence hands out numbers at
    // INSERT, not at COMMIT: without the per-session lock a lower `seq` could become visible after
    // a higher one, and a snapshot of "everything up to N" read in between would miss it.
    let b = Backend::pg().await;
    let (busy, other) = (session(&b).await, session(&b).await);
    let mut client = raw_pg(&b).await;
    // Another writer's append to `busy`, in flight.
    let tx = client.transaction().await.unwrap();
    lock_session_row(&tx, busy.id).await;
    let store = b.store.clone();
    let mut waiting =
        tokio::spawn(async move { store.append_updates(&[update(busy.id, None, "b")]).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "an append to the same session waits for the one in flight"
    );
    let free = tokio::time::timeout(
        Duration::from_secs(5),
        b.store.append_updates(&[update(other.id, None, "o")]),
    )
    .await
    .expect("an append to another session does not wait")
    .unwrap();
    tx.commit().await.unwrap();
    let after = waiting.await.unwrap().unwrap();
    assert!(
        after[0] > free[0],
        "the waiting append got its number after the lock: {after:?} vs {free:?}"
    );
    let history = b.store.history(busy.id, DocKind::Code).await.unwrap();
    assert_eq!(payloads(&history), ["b"]);
}

#[tokio::test]
async fn pg_replicas_connecting_together_migrate_once() {
    let url = fresh_database_url().await;
    let (a, b, c) = tokio::join!(
        PgStorage::connect(&url),
        PgStorage::connect(&url),
        PgStorage::connect(&url)
    );
    let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let s = a.create_session(new_session("shared")).await.unwrap();
    assert_eq!(b.session_by_id(s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn pg_connect_to_nothing_is_unavailable_quickly() {
    let port = duet_testkit::free_port();
    let started = Instant::now();
    let err = PgStorage::connect(&format!("postgres://postgres@127.0.0.1:{port}/duet"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "got {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// The database goes away under a running storage: calls fail fast as `Unavailable` (never hang),
/// and once it is back the same storage works again without being rebuilt.
#[tokio::test]
async fn pg_outage_is_unavailable_then_recovers_without_rebuilding() {
    let mut server = TestPostgres::start().await;
    let url = server.fresh_database_url().await;
    let store = PgStorage::connect(&url).await.unwrap();
    let s = store.create_session(new_session("outage")).await.unwrap();
    // Fill the pool with several open connections, which the outage will kill.
    let warm: Vec<_> = (0..4).map(|_| store.session_by_id(s.id)).collect();
    for r in futures_util::future::join_all(warm).await {
        r.unwrap();
    }

    server.stop().await;
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.session_by_id(s.id).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "got {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let err = store
            .append_updates(&[update(s.id, None, "lost")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "got {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "got {err:?}");

    server.start_again().await;
    store
        .ping()
        .await
        .expect("the first call after the restart succeeds");
    assert_eq!(store.session_by_id(s.id).await.unwrap(), Some(s.clone()));
    let seqs = store
        .append_updates(&[update(s.id, None, "after")])
        .await
        .unwrap();
    assert_eq!(seqs.len(), 1);
    assert_eq!(
        payloads(&store.history(s.id, DocKind::Code).await.unwrap()),
        ["after"],
        "the failed append wrote nothing"
    );

    // A short blip nobody called during: the pooled connections died with the server, and the
    // next call must not be handed one of those corpses.
    server.stop().await;
    server.start_again().await;
    store
        .ping()
        .await
        .expect("the first call after a blip succeeds");
    assert_eq!(store.history(s.id, DocKind::Code).await.unwrap().len(), 1);
}

/// As `sqlite_v1_database_migrates_with_its_history`, on PostgreSQL.
#[tokio::test]
async fn pg_v1_database_migrates_with_its_history() {
    let url = fresh_database_url().await;
    let id = Uuid::new_v4();
    {
        let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        v1_runner(include_str!("../migrations/postgres/V1__initial.sql"))
            .run_async(&mut client)
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO sessions (id, code, title, language, text, created_at) \
                 VALUES ($1, 'V2V3V4V5', 'old', 'python', 'x = 1', to_timestamp(1700000000.123456))",
                &[&id],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO doc_updates (session_id, data) VALUES ($1, '\\x0102')",
                &[&id],
            )
            .await
            .unwrap();
        let seq: i64 = client
            .query_one("SELECT max(seq) FROM doc_updates", &[])
            .await
            .unwrap()
            .get(0);
        client
            .execute(
                "INSERT INTO doc_snapshots (session_id, upto_seq, data) VALUES ($1, $2, '\\x09')",
                &[&id, &seq],
            )
            .await
            .unwrap();
    }
    let store = PgStorage::connect(&url).await.unwrap();
    check_migrated_v1(&store, id).await;
}
