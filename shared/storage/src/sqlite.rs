//! [`Storage`] on embedded SQLite, for the all-in-one `duet` binary.
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool (`spawn_blocking`) so the
//! async runtime never waits on disk. SQLite allows one writer at a time anyway, and the hub already
//! batches its writes (group commit), so a single connection is not the bottleneck for one process.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use duet_domain::{DocKind, InterviewState, Language, NewSession, Session, SessionCode, Title};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    check_event, check_participant, check_run, controls_data, lifecycle_event, removed_data,
    storable_text, DocumentState, Event, NewEvent, NewRun, NewUpdate, Participant, Result, Run,
    Snapshot, Storage, StorageError, StoredUpdate, WebhookDelivery, WebhookKind,
};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a statement waits for a lock held by another connection (another process opening the
/// same file, or a backup tool) before failing as `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `SQLITE_CONSTRAINT_FOREIGNKEY`: every foreign key in the schema points at `sessions(id)`.
const FOREIGN_KEY_VIOLATION: std::ffi::c_int = 787;

const SESSION_COLUMNS: &str = "id, code, title, language, text, created_at, state, started_at, \
     ended_at, password_hash IS NOT NULL, editing_locked, runs_enabled";
const RUN_COLUMNS: &str =
    "id, session_id, user_id, user_name, language, output, status, duration_ms, created_at";

/// SQLite storage. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage").finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// Opens (or creates) the database file at `path`, creating its parent directory, and brings the
    /// schema up to date. Blocking: meant for start-up.
    ///
    /// WAL journal (readers never block the writer), `synchronous = FULL` (a commit is on disk when
    /// it returns: the durability contract acknowledges an edit only once committed, and the hub's
    /// group commit makes the per-commit fsync affordable), foreign keys on, a busy timeout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Other(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(sqlite_error)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        Self::setup(conn)
    }

    /// A private in-memory database (tests, demos): gone when the last clone is dropped.
    pub fn in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory().map_err(sqlite_error)?)
    }

    fn setup(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite_error)?;
        let report = embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| StorageError::Other(format!("SQLite migration failed: {e}")))?;
        for m in report.applied_migrations() {
            tracing::info!(migration = %m, "applied SQLite migration");
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back
            // on drop), so a poisoned connection is still consistent.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| StorageError::Other(format!("SQLite task failed: {e}")))?
    }
}

/// Sorts an SQLite error into the contract's kinds.
fn sqlite_error(e: rusqlite::Error) -> StorageError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            ErrorCode::ConstraintViolation
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    && msg.as_deref().is_some_and(|m| m.contains("sessions.code")) =>
            {
                return StorageError::CodeTaken;
            }
            ErrorCode::ConstraintViolation if f.extended_code == FOREIGN_KEY_VIOLATION => {
                return StorageError::NotFound;
            }
            // A full disk (or one failing writes) is the database being unavailable, not the data
            // being bad: writers hold their data and retry, and recover once there is room.
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure => {
                return StorageError::Unavailable(e.to_string());
            }
            _ => {}
        }
    }
    StorageError::Other(e.to_string())
}

/// Timestamps are stored as microseconds since the epoch: PostgreSQL's precision, so the backends
/// agree exactly.
fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(micros: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// Reads a text column into a domain type, reporting a value that does not parse as a conversion
/// failure (it can only come from corrupt data: values are validated before they are written).
fn parsed<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let raw: String = row.get(idx)?;
    parse(&raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_micros_opt(micros: Option<i64>) -> rusqlite::Result<Option<OffsetDateTime>> {
    micros.map(from_micros).transpose()
}

/// `now` as stored: microseconds since the epoch.
fn micros_of(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The error a state that does not parse becomes (only corrupt data can hold one: the column
/// has a CHECK constraint).
#[derive(Debug, thiserror::Error)]
#[error("unknown interview state {0:?}")]
struct UnknownState(String);

fn read_session(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        code: parsed(r, 1, SessionCode::parse)?,
        title: Title::from_stored(r.get(2)?),
        language: parsed(r, 3, Language::parse)?,
        text: r.get(4)?,
        created_at: from_micros(r.get(5)?)?,
        state: parsed(r, 6, |s| {
            InterviewState::parse(s).ok_or_else(|| UnknownState(s.to_owned()))
        })?,
        started_at: from_micros_opt(r.get(7)?)?,
        ended_at: from_micros_opt(r.get(8)?)?,
        has_password: r.get(9)?,
        editing_locked: r.get(10)?,
        runs_enabled: r.get(11)?,
    })
}

fn read_run(r: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        session_id: r.get(1)?,
        user_id: r.get(2)?,
        user_name: r.get(3)?,
        language: parsed(r, 4, Language::parse)?,
        output: r.get(5)?,
        status: r.get(6)?,
        duration_ms: r.get(7)?,
        created_at: from_micros(r.get(8)?)?,
    })
}

fn read_update(row: &Row<'_>) -> rusqlite::Result<StoredUpdate> {
    Ok(StoredUpdate {
        seq: row.get(0)?,
        author: row.get(1)?,
        data: row.get(2)?,
        created_at: from_micros(row.get(3)?)?,
    })
}

fn session_where(
    conn: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<Session>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE {column} = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([value], read_session).optional())
    .map_err(sqlite_error)
}

fn updates_after(
    conn: &Connection,
    session_id: Uuid,
    doc: DocKind,
    after: i64,
) -> Result<Vec<StoredUpdate>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, author, data, created_at FROM doc_updates \
             WHERE session_id = ?1 AND doc = ?2 AND seq > ?3 ORDER BY seq",
        )
        .map_err(sqlite_error)?;
    let rows = stmt
        .query_map(params![session_id, doc.as_i16(), after], read_update)
        .map_err(sqlite_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
}

/// Records a lifecycle event (no user, data `{}`) and queues its webhook, inside the caller's
/// transaction.
fn record_lifecycle(
    tx: &Connection,
    session_id: Uuid,
    kind: &str,
    webhook: WebhookKind,
    at: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
         VALUES (?1, NULL, '', ?2, '{}', ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![session_id, kind, at]))
    .map_err(sqlite_error)?;
    queue_webhook(tx, session_id, webhook, at)
}

/// Records an event of no user at the current time (`controls`, `removed`), inside the caller's
/// transaction.
fn record_system_event(tx: &Connection, session_id: Uuid, kind: &str, data: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
         VALUES (?1, NULL, '', ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| stmt.execute(params![session_id, kind, data, now_micros()]))
    .map_err(sqlite_error)?;
    Ok(())
}

/// Queues a webhook delivery, due at once (0: whatever the claimer's clock says), inside the
/// caller's transaction.
fn queue_webhook(tx: &Connection, session_id: Uuid, kind: WebhookKind, at: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO webhook_outbox (session_id, kind, at, next_attempt_at) \
         VALUES (?1, ?2, ?3, 0)",
    )
    .and_then(|mut stmt| stmt.execute(params![session_id, kind.as_str(), at]))
    .map_err(sqlite_error)?;
    Ok(())
}

fn read_event(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        session_id: r.get(1)?,
        user_id: r.get(2)?,
        user_name: r.get(3)?,
        kind: r.get(4)?,
        data: r.get(5)?,
        at: from_micros(r.get(6)?)?,
    })
}

/// The error a webhook kind that does not parse becomes (only corrupt data can hold one).
#[derive(Debug, thiserror::Error)]
#[error("unknown webhook kind {0:?}")]
struct UnknownWebhook(String);

#[async_trait]
impl Storage for SqliteStorage {
    async fn ping(&self) -> Result<()> {
        self.call(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite_error)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(code = %new.code))]
    async fn create_session(&self, new: NewSession) -> Result<Session> {
        self.call(move |conn| {
            let id = Uuid::new_v4();
            let created = now_micros();
            let (state, started) = if new.lobby {
                (InterviewState::Waiting, None)
            } else {
                (InterviewState::Live, Some(created))
            };
            let tx = conn.transaction().map_err(sqlite_error)?;
            tx.prepare_cached(
                "INSERT INTO sessions (id, code, title, language, created_at, state, started_at, \
                     password_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    new.code.as_str(),
                    new.title.as_str(),
                    new.language.as_str(),
                    created,
                    state.as_str(),
                    started,
                    new.password_hash,
                ])
            })
            .map_err(sqlite_error)?;
            queue_webhook(&tx, id, WebhookKind::Created, created)?;
            if let (Some(started), Some((kind, webhook))) = (started, lifecycle_event(state)) {
                record_lifecycle(&tx, id, kind, webhook, started)?;
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(Session {
                id,
                code: new.code,
                title: new.title,
                language: new.language,
                text: String::new(),
                created_at: from_micros(created).map_err(sqlite_error)?,
                state,
                started_at: from_micros_opt(started).map_err(sqlite_error)?,
                ended_at: None,
                has_password: new.password_hash.is_some(),
                editing_locked: false,
                runs_enabled: true,
            })
        })
        .await
    }

    async fn session_by_code(&self, code: &SessionCode) -> Result<Option<Session>> {
        let code = code.as_str().to_owned();
        self.call(move |conn| session_where(conn, "code", &code))
            .await
    }

    async fn session_by_id(&self, id: Uuid) -> Result<Option<Session>> {
        self.call(move |conn| session_where(conn, "id", &id)).await
    }

    async fn set_language(&self, session_id: Uuid, language: Language) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached("UPDATE sessions SET language = ?2 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![session_id, language.as_str()]))
                .map_err(sqlite_error)?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn set_text(&self, session_id: Uuid, text: &str) -> Result<()> {
        let text = storable_text(text).into_owned();
        self.call(move |conn| {
            let n = conn
                .prepare_cached("UPDATE sessions SET text = ?2 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![session_id, text]))
                .map_err(sqlite_error)?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(())
        })
        .await
    }

    /// One transaction (the one connection serialises writers, so nothing is ever skipped).
    async fn set_texts(&self, texts: &[(Uuid, String)]) -> Result<Vec<Uuid>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let texts = texts.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let mut saved = Vec::with_capacity(texts.len());
            {
                let mut stmt = tx
                    .prepare_cached("UPDATE sessions SET text = ?2 WHERE id = ?1")
                    .map_err(sqlite_error)?;
                for (id, text) in &texts {
                    let text = storable_text(text);
                    if stmt.execute(params![id, text]).map_err(sqlite_error)? > 0 {
                        saved.push(*id);
                    }
                }
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(saved)
        })
        .await
    }

    async fn password_hash(&self, session_id: Uuid) -> Result<Option<String>> {
        self.call(move |conn| {
            conn.prepare_cached("SELECT password_hash FROM sessions WHERE id = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([session_id], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map_err(sqlite_error)?
                .ok_or(StorageError::NotFound)
        })
        .await
    }

    /// One immediate transaction: the state is read and written under the write lock.
    async fn transition(
        &self,
        session_id: Uuid,
        to: InterviewState,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let now = micros_of(now);
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let from = session_where(&tx, "id", &session_id)?
                .ok_or(StorageError::NotFound)?
                .state;
            if !from.can_move_to(to) {
                return Err(StorageError::InvalidTransition { from, to });
            }
            if from != to {
                tx.prepare_cached(
                    "UPDATE sessions SET state = ?2, \
                         started_at = CASE WHEN ?2 = 'live' THEN ?3 ELSE started_at END, \
                         ended_at = CASE WHEN ?2 = 'ended' THEN ?3 ELSE ended_at END \
                     WHERE id = ?1",
                )
                .and_then(|mut stmt| stmt.execute(params![session_id, to.as_str(), now]))
                .map_err(sqlite_error)?;
                if let Some((kind, webhook)) = lifecycle_event(to) {
                    record_lifecycle(&tx, session_id, kind, webhook, now)?;
                }
            }
            let session = session_where(&tx, "id", &session_id)?.ok_or(StorageError::NotFound)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(session)
        })
        .await
    }

    async fn set_controls(
        &self,
        session_id: Uuid,
        editing_locked: Option<bool>,
        runs_enabled: Option<bool>,
    ) -> Result<Session> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let before = session_where(&tx, "id", &session_id)?.ok_or(StorageError::NotFound)?;
            tx.prepare_cached(
                "UPDATE sessions SET editing_locked = coalesce(?2, editing_locked), \
                     runs_enabled = coalesce(?3, runs_enabled) WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![session_id, editing_locked, runs_enabled]))
            .map_err(sqlite_error)?;
            let session = session_where(&tx, "id", &session_id)?.ok_or(StorageError::NotFound)?;
            if (before.editing_locked, before.runs_enabled)
                != (session.editing_locked, session.runs_enabled)
            {
                record_system_event(
                    &tx,
                    session_id,
                    "controls",
                    &controls_data(session.editing_locked, session.runs_enabled),
                )?;
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(session)
        })
        .await
    }

    async fn next_token_number(&self, session_id: Uuid) -> Result<i64> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET tokens_issued = tokens_issued + 1 WHERE id = ?1 \
                 RETURNING tokens_issued - 1",
            )
            .and_then(|mut stmt| stmt.query_row([session_id], |r| r.get(0)).optional())
            .map_err(sqlite_error)?
            .ok_or(StorageError::NotFound)
        })
        .await
    }

    async fn remove_user(&self, session_id: Uuid, user_id: Uuid) -> Result<()> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let added = tx
                .prepare_cached(
                    "INSERT INTO removed_users (session_id, user_id, removed_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (session_id, user_id) DO NOTHING",
                )
                .and_then(|mut stmt| stmt.execute(params![session_id, user_id, now_micros()]))
                .map_err(sqlite_error)?;
            if added > 0 {
                record_system_event(&tx, session_id, "removed", &removed_data(user_id))?;
            }
            tx.commit().map_err(sqlite_error)
        })
        .await
    }

    async fn is_removed(&self, session_id: Uuid, user_id: Uuid) -> Result<bool> {
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM removed_users WHERE session_id = ?1 AND user_id = ?2)",
            )
            .and_then(|mut stmt| stmt.query_row(params![session_id, user_id], |r| r.get(0)))
            .map_err(sqlite_error)
        })
        .await
    }

    async fn removed_users(&self, session_id: Uuid) -> Result<Vec<Uuid>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user_id FROM removed_users WHERE session_id = ?1 \
                     ORDER BY removed_at, rowid",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map([session_id], |r| r.get(0))
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
        })
        .await
    }

    /// One transaction, one prepared statement executed per update; each insert's rowid is its
    /// `seq`, so the result is in input order by construction. Dropping the transaction on error
    /// rolls the whole batch back.
    #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
    async fn append_updates(&self, batch: &[NewUpdate]) -> Result<Vec<i64>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let created = now_micros();
            let mut seqs = Vec::with_capacity(batch.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO doc_updates (session_id, doc, author, data, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(sqlite_error)?;
                for u in &batch {
                    // `insert` returns the new rowid, which is `seq` (INTEGER PRIMARY KEY).
                    let seq = stmt
                        .insert(params![
                            u.session_id,
                            u.doc.as_i16(),
                            u.author,
                            u.data,
                            created
                        ])
                        .map_err(sqlite_error)?;
                    seqs.push(seq);
                }
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(seqs)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_document(&self, session_id: Uuid, doc: DocKind) -> Result<DocumentState> {
        self.call(move |conn| {
            // One read transaction: the snapshot and the updates come from the same state.
            let tx = conn.transaction().map_err(sqlite_error)?;
            let snapshot = tx
                .prepare_cached(
                    "SELECT upto_seq, data FROM doc_snapshots WHERE session_id = ?1 AND doc = ?2 \
                     ORDER BY upto_seq DESC LIMIT 1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![session_id, doc.as_i16()], |r| {
                        Ok(Snapshot {
                            upto_seq: r.get(0)?,
                            data: r.get(1)?,
                        })
                    })
                    .optional()
                })
                .map_err(sqlite_error)?;
            let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
            let updates = updates_after(&tx, session_id, doc, after)?;
            Ok(DocumentState { snapshot, updates })
        })
        .await
    }

    async fn history(&self, session_id: Uuid, doc: DocKind) -> Result<Vec<StoredUpdate>> {
        self.call(move |conn| updates_after(conn, session_id, doc, 0))
            .await
    }

    /// Saving the same `(session, upto_seq)` twice keeps the first: both describe the same state.
    async fn save_snapshot(
        &self,
        session_id: Uuid,
        doc: DocKind,
        upto_seq: i64,
        data: &[u8],
    ) -> Result<()> {
        let data = data.to_vec();
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO doc_snapshots (session_id, doc, upto_seq, data, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session_id, doc, upto_seq) DO NOTHING",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    session_id,
                    doc.as_i16(),
                    upto_seq,
                    data,
                    now_micros()
                ])
            })
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn hub_heartbeat(&self, hub_id: &str, ttl_secs: i64) -> Result<()> {
        let hub_id = hub_id.to_owned();
        self.call(move |conn| {
            let expires = now_micros().saturating_add(ttl_secs.saturating_mul(1_000_000));
            conn.prepare_cached(
                "INSERT INTO hubs (hub_id, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (hub_id) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .and_then(|mut stmt| stmt.execute(params![hub_id, expires]))
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    /// Idempotent: adding the same participant id again updates its row (a re-sent join).
    async fn add_participant(&self, p: &Participant) -> Result<()> {
        check_participant(p)?;
        let p = p.clone();
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO participants (id, session_id, user_id, name, color, hub_id, joined_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, \
                     user_id = excluded.user_id, name = excluded.name, \
                     color = excluded.color, hub_id = excluded.hub_id",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    p.id,
                    p.session_id,
                    p.user_id,
                    p.name,
                    p.color,
                    p.hub_id,
                    now_micros()
                ])
            })
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    /// Removing an unknown participant is not an error: leaving is idempotent.
    async fn remove_participant(&self, participant_id: Uuid) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM participants WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([participant_id]))
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn remove_hub_participants(&self, hub_id: &str) -> Result<()> {
        let hub_id = hub_id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM participants WHERE hub_id = ?1")
                .and_then(|mut stmt| stmt.execute([hub_id]))
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    /// Counts connections (rows), not distinct users: a user with two tabs counts twice.
    async fn connected_count(&self, session_id: Uuid) -> Result<i64> {
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM participants p JOIN hubs h ON h.hub_id = p.hub_id \
                 WHERE p.session_id = ?1 AND h.expires_at > ?2",
            )
            .and_then(|mut stmt| stmt.query_row(params![session_id, now_micros()], |r| r.get(0)))
            .map_err(sqlite_error)
        })
        .await
    }

    async fn record_run(&self, run: NewRun) -> Result<Run> {
        check_run(&run)?;
        self.call(move |conn| {
            let id = Uuid::new_v4();
            let created = now_micros();
            conn.prepare_cached(
                "INSERT INTO runs (id, session_id, user_id, user_name, language, output, status, \
                     duration_ms, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    run.session_id,
                    run.user_id,
                    run.user_name,
                    run.language.as_str(),
                    run.output,
                    run.status,
                    run.duration_ms,
                    created
                ])
            })
            .map_err(sqlite_error)?;
            Ok(Run {
                id,
                session_id: run.session_id,
                user_id: run.user_id,
                user_name: run.user_name,
                language: run.language,
                output: run.output,
                status: run.status,
                duration_ms: run.duration_ms,
                created_at: from_micros(created).map_err(sqlite_error)?,
            })
        })
        .await
    }

    /// A negative `limit` is treated as 0. Runs recorded in the same microsecond keep their
    /// insertion order (rowid) as the tie-break.
    async fn recent_runs(&self, session_id: Uuid, limit: i64) -> Result<Vec<Run>> {
        let limit = limit.max(0);
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ?1 \
                     ORDER BY created_at DESC, rowid DESC LIMIT ?2"
                ))
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![session_id, limit], read_run)
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
        })
        .await
    }

    /// Runs recorded in the same microsecond keep their insertion order (rowid).
    async fn runs(&self, session_id: Uuid) -> Result<Vec<Run>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ?1 \
                     ORDER BY created_at, rowid"
                ))
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map([session_id], read_run)
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
        })
        .await
    }

    async fn record_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        events.iter().try_for_each(check_event)?;
        let events = events.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(sqlite_error)?;
                for e in &events {
                    stmt.execute(params![
                        e.session_id,
                        e.user_id,
                        e.user_name,
                        e.kind,
                        e.data,
                        micros_of(e.at)
                    ])
                    .map_err(sqlite_error)?;
                }
            }
            tx.commit().map_err(sqlite_error)
        })
        .await
    }

    async fn events(&self, session_id: Uuid) -> Result<Vec<Event>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, session_id, user_id, user_name, kind, data, at FROM events \
                     WHERE session_id = ?1 ORDER BY at, seq",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map([session_id], read_event)
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
        })
        .await
    }

    /// One immediate transaction: the interview is marked in `erasing` (the history's DELETE
    /// trigger lets its rows go only then), every table is emptied of it, the mark removed.
    async fn erase_session(&self, session_id: Uuid) -> Result<bool> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)")
                .and_then(|mut stmt| stmt.query_row([session_id], |r| r.get(0)))
                .map_err(sqlite_error)?;
            if !exists {
                return Ok(false);
            }
            for sql in [
                "INSERT INTO erasing (session_id) VALUES (?1)",
                "DELETE FROM doc_updates WHERE session_id = ?1",
                "DELETE FROM doc_snapshots WHERE session_id = ?1",
                "DELETE FROM events WHERE session_id = ?1",
                "DELETE FROM runs WHERE session_id = ?1",
                "DELETE FROM participants WHERE session_id = ?1",
                "DELETE FROM removed_users WHERE session_id = ?1",
                "DELETE FROM webhook_outbox WHERE session_id = ?1",
                "DELETE FROM sessions WHERE id = ?1",
                "DELETE FROM erasing WHERE session_id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut stmt| stmt.execute([session_id]))
                    .map_err(sqlite_error)?;
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(true)
        })
        .await
    }

    async fn expired_sessions(&self, cutoff: OffsetDateTime, limit: i64) -> Result<Vec<Uuid>> {
        let cutoff = micros_of(cutoff);
        let limit = limit.max(0);
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM sessions s WHERE \
                         (s.state = 'ended' AND s.ended_at < ?1) \
                         OR (s.state <> 'ended' AND s.created_at < ?1 \
                             AND coalesce(s.started_at, s.created_at) < ?1 \
                             AND NOT EXISTS (SELECT 1 FROM doc_updates u \
                                 WHERE u.session_id = s.id AND u.created_at >= ?1) \
                             AND NOT EXISTS (SELECT 1 FROM events e \
                                 WHERE e.session_id = s.id AND e.at >= ?1) \
                             AND NOT EXISTS (SELECT 1 FROM runs r \
                                 WHERE r.session_id = s.id AND r.created_at >= ?1)) \
                     ORDER BY coalesce(s.ended_at, s.created_at), s.id LIMIT ?2",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![cutoff, limit], |r| r.get(0))
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
        })
        .await
    }

    /// One immediate transaction (the one connection serialises dispatchers anyway).
    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let now = micros_of(now);
        let until = now.saturating_add(lease_secs.max(0).saturating_mul(1_000_000));
        let limit = limit.max(0);
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let claimed = {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2 \
                         WHERE id IN (SELECT id FROM webhook_outbox WHERE next_attempt_at <= ?1 \
                             ORDER BY id LIMIT ?3) \
                         RETURNING id",
                    )
                    .map_err(sqlite_error)?;
                let ids = stmt
                    .query_map(params![now, until, limit], |r| r.get::<_, i64>(0))
                    .map_err(sqlite_error)?;
                ids.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)?
            };
            let mut out = Vec::with_capacity(claimed.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT o.id, o.kind, o.session_id, s.code, o.at, o.attempts \
                         FROM webhook_outbox o JOIN sessions s ON s.id = o.session_id \
                         WHERE o.id = ?1",
                    )
                    .map_err(sqlite_error)?;
                for id in claimed {
                    let d = stmt
                        .query_row([id], |r| {
                            Ok(WebhookDelivery {
                                id: r.get(0)?,
                                kind: parsed(r, 1, |k| {
                                    WebhookKind::parse(k).ok_or_else(|| UnknownWebhook(k.into()))
                                })?,
                                session_id: r.get(2)?,
                                session_code: parsed(r, 3, SessionCode::parse)?,
                                at: from_micros(r.get(4)?)?,
                                attempts: r.get(5)?,
                            })
                        })
                        .map_err(sqlite_error)?;
                    out.push(d);
                }
            }
            tx.commit().map_err(sqlite_error)?;
            out.sort_by_key(|d| d.id);
            Ok(out)
        })
        .await
    }

    async fn retry_webhook(&self, id: i64, at: OffsetDateTime) -> Result<()> {
        let at = micros_of(at);
        self.call(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET next_attempt_at = ?2 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id, at]))
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn finish_webhook(&self, id: i64) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }
}
