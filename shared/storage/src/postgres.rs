//! [`Storage`] on PostgreSQL, for the scaled services (session-api, realtime-hub).
//!
//! A deadpool-postgres pool with short timeouts: when the database is down every call fails with
//! [`StorageError::Unavailable`] within a few seconds instead of hanging, and because the pool drops
//! closed connections and opens new ones on demand it recovers by itself once the database is back.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use duet_domain::{DocKind, InterviewState, Language, NewSession, Session, SessionCode, Title};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::{
    check_event, check_participant, check_run, controls_data, lifecycle_event, removed_data,
    storable_text, DocumentState, Event, NewEvent, NewRun, NewUpdate, Participant, Result, Run,
    Snapshot, Storage, StorageError, StoredUpdate, WebhookDelivery, WebhookKind,
};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How long a caller waits for a pooled connection, or for a new one to be opened, before the call
/// fails as `Unavailable`. Short, so a database outage surfaces as a 503 rather than a hung request.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP connect timeout for new connections, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Unacknowledged data older than this kills the connection (Linux `TCP_USER_TIMEOUT`), so a
/// connection to a vanished host is closed and replaced instead of being reused forever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on one storage call, pool wait included: the "never hang" guarantee even when the
/// server accepts the connection but stops answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Key of the advisory lock held while migrating, so replicas starting together migrate one at a time.
const MIGRATION_LOCK_KEY: i64 = 0x6475_6574_6d69_6772; // "duetmigr"
/// Name of the unique constraint on `sessions.code` (see the V1 migration).
const CODE_CONSTRAINT: &str = "sessions_code_key";

const SESSION_COLUMNS: &str = "id, code, title, language, text, created_at, state, started_at, \
     ended_at, password_hash IS NOT NULL AS has_password, editing_locked, runs_enabled";
const RUN_COLUMNS: &str =
    "id, session_id, user_id, user_name, language, output, status, duration_ms, created_at";

/// PostgreSQL storage. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStorage {
    pool: Pool,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show only the pool's state.
        f.debug_struct("PgStorage")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStorage {
    /// Builds the pool for `url` (`postgres://user:pass@host:port/db?...`) and brings the schema up to
    /// date. Fails with `Unavailable` if the database cannot be reached, so start-up can retry or stop.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Other(format!("invalid database URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_tcp_user_timeout().is_none() {
            pg.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            // `Fast` skips a round trip per checkout; connections closed by the server are still
            // detected (`is_closed`) and replaced.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Other(format!("cannot build the connection pool: {e}")))?;
        let storage = Self { pool };
        storage.migrate().await?;
        Ok(storage)
    }

    /// Runs the embedded migrations under an advisory lock, on a connection taken out of the pool so
    /// the lock dies with it whatever happens.
    async fn migrate(&self) -> Result<()> {
        let object = self.pool.get().await.map_err(pool_error)?;
        let mut client = Object::take(object);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(pg_error)?;
        let report = embedded::migrations::runner()
            .run_async(&mut *client)
            .await
            .map_err(|e| StorageError::Other(format!("PostgreSQL migration failed: {e}")))?;
        for m in report.applied_migrations() {
            tracing::info!(migration = %m, "applied PostgreSQL migration");
        }
        Ok(())
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// One bounded statement that returns no rows: pooled client, cached prepare, execute.
    /// Returns the number of rows affected.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.execute(&stmt, params).await.map_err(pg_error)
        })
        .await
    }
}

/// Bounds a whole call (pool wait + queries) by [`CALL_TIMEOUT`].
async fn bounded<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(StorageError::Unavailable("database call timed out".into())))
}

fn pool_error(e: PoolError) -> StorageError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Timeout(kind) => {
            StorageError::Unavailable(format!("timed out waiting for a connection ({kind:?})"))
        }
        PoolError::Closed => StorageError::Unavailable("connection pool closed".into()),
        other => StorageError::Other(other.to_string()),
    }
}

/// Sorts a PostgreSQL error into the contract's kinds.
fn pg_error(e: tokio_postgres::Error) -> StorageError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(CODE_CONSTRAINT) {
            return StorageError::CodeTaken;
        }
        // Every foreign key in the schema points at `sessions(id)`.
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return StorageError::NotFound;
        }
        let class = &code.code()[..2];
        // 08: connection exception; 53: insufficient resources (too many connections, disk full);
        // 57P0x: the server is shutting down or starting up.
        let transient = matches!(class, "08" | "53")
            || matches!(
                *code,
                SqlState::ADMIN_SHUTDOWN | SqlState::CRASH_SHUTDOWN | SqlState::CANNOT_CONNECT_NOW
            );
        let msg = format!("{} ({})", db.message(), code.code());
        return if transient {
            StorageError::Unavailable(msg)
        } else {
            StorageError::Other(msg)
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StorageError::Unavailable(e.to_string())
    } else {
        StorageError::Other(e.to_string())
    }
}

fn session_from_row(row: &Row) -> Result<Session> {
    let code: String = row.try_get("code").map_err(pg_error)?;
    let language: String = row.try_get("language").map_err(pg_error)?;
    let state: String = row.try_get("state").map_err(pg_error)?;
    Ok(Session {
        id: row.try_get("id").map_err(pg_error)?,
        code: SessionCode::parse(&code).map_err(|e| corrupt("sessions.code", e))?,
        title: Title::from_stored(row.try_get("title").map_err(pg_error)?),
        language: Language::parse(&language).map_err(|e| corrupt("sessions.language", e))?,
        text: row.try_get("text").map_err(pg_error)?,
        created_at: row.try_get("created_at").map_err(pg_error)?,
        state: InterviewState::parse(&state)
            .ok_or_else(|| corrupt("sessions.state", format!("{state:?}")))?,
        started_at: row.try_get("started_at").map_err(pg_error)?,
        ended_at: row.try_get("ended_at").map_err(pg_error)?,
        has_password: row.try_get("has_password").map_err(pg_error)?,
        editing_locked: row.try_get("editing_locked").map_err(pg_error)?,
        runs_enabled: row.try_get("runs_enabled").map_err(pg_error)?,
    })
}

fn update_from_row(row: &Row) -> Result<StoredUpdate> {
    Ok(StoredUpdate {
        seq: row.try_get("seq").map_err(pg_error)?,
        author: row.try_get("author").map_err(pg_error)?,
        data: row.try_get("data").map_err(pg_error)?,
        created_at: row.try_get("created_at").map_err(pg_error)?,
    })
}

fn run_from_row(row: &Row) -> Result<Run> {
    let language: String = row.try_get("language").map_err(pg_error)?;
    Ok(Run {
        id: row.try_get("id").map_err(pg_error)?,
        session_id: row.try_get("session_id").map_err(pg_error)?,
        user_id: row.try_get("user_id").map_err(pg_error)?,
        user_name: row.try_get("user_name").map_err(pg_error)?,
        language: Language::parse(&language).map_err(|e| corrupt("runs.language", e))?,
        output: row.try_get("output").map_err(pg_error)?,
        status: row.try_get("status").map_err(pg_error)?,
        duration_ms: row.try_get("duration_ms").map_err(pg_error)?,
        created_at: row.try_get("created_at").map_err(pg_error)?,
    })
}

fn event_from_row(row: &Row) -> Result<Event> {
    Ok(Event {
        seq: row.try_get("seq").map_err(pg_error)?,
        session_id: row.try_get("session_id").map_err(pg_error)?,
        user_id: row.try_get("user_id").map_err(pg_error)?,
        user_name: row.try_get("user_name").map_err(pg_error)?,
        kind: row.try_get("kind").map_err(pg_error)?,
        data: row.try_get("data").map_err(pg_error)?,
        at: row.try_get("at").map_err(pg_error)?,
    })
}

/// Records a lifecycle event (no user, data `{}`) and queues its webhook, inside the caller's
/// transaction.
async fn record_lifecycle(
    tx: &deadpool_postgres::Transaction<'_>,
    session_id: Uuid,
    kind: &str,
    webhook: WebhookKind,
    at: OffsetDateTime,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
             VALUES ($1, NULL, '', $2, '{}', $3)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&stmt, &[&session_id, &kind, &at])
        .await
        .map_err(pg_error)?;
    queue_webhook(tx, session_id, webhook, at).await
}

/// Records an event of no user at the current time (`controls`), inside the caller's transaction.
async fn record_system_event(
    tx: &deadpool_postgres::Transaction<'_>,
    session_id: Uuid,
    kind: &str,
    data: &str,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
             VALUES ($1, NULL, '', $2, $3, $4)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &stmt,
        &[&session_id, &kind, &data, &OffsetDateTime::now_utc()],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Queues a webhook delivery, due at once (`-infinity`: whatever the claimer's clock says), inside
/// the caller's transaction.
async fn queue_webhook(
    tx: &deadpool_postgres::Transaction<'_>,
    session_id: Uuid,
    kind: WebhookKind,
    at: OffsetDateTime,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO webhook_outbox (session_id, kind, at, next_attempt_at) \
             VALUES ($1, $2, $3, '-infinity')",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&stmt, &[&session_id, &kind.as_str(), &at])
        .await
        .map_err(pg_error)?;
    Ok(())
}

fn corrupt(column: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(format!("corrupt value in {column}: {e}"))
}

#[async_trait]
impl Storage for PgStorage {
    async fn ping(&self) -> Result<()> {
        bounded(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(code = %new.code))]
    async fn create_session(&self, new: NewSession) -> Result<Session> {
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Without a lobby the interview is live from its creation: `started_at = created_at`
            // (one `now()` in a transaction is one instant).
            let stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO sessions (id, code, title, language, state, started_at, \
                         password_hash) \
                     VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN 'waiting' ELSE 'live' END, \
                         CASE WHEN $5 THEN NULL ELSE now() END, $6) \
                     RETURNING {SESSION_COLUMNS}"
                ))
                .await
                .map_err(pg_error)?;
            let id = Uuid::new_v4();
            let row = tx
                .query_one(
                    &stmt,
                    &[
                        &id,
                        &new.code.as_str(),
                        &new.title.as_str(),
                        &new.language.as_str(),
                        &new.lobby,
                        &new.password_hash,
                    ],
                )
                .await
                .map_err(pg_error)?;
            let session = session_from_row(&row)?;
            queue_webhook(&tx, id, WebhookKind::Created, session.created_at).await?;
            if let (Some(started), Some((kind, webhook))) =
                (session.started_at, lifecycle_event(session.state))
            {
                record_lifecycle(&tx, id, kind, webhook, started).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(session)
        })
        .await
    }

    async fn session_by_code(&self, code: &SessionCode) -> Result<Option<Session>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE code = $1"
                ))
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(&stmt, &[&code.as_str()])
                .await
                .map_err(pg_error)?;
            row.as_ref().map(session_from_row).transpose()
        })
        .await
    }

    async fn session_by_id(&self, id: Uuid) -> Result<Option<Session>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
                ))
                .await
                .map_err(pg_error)?;
            let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_error)?;
            row.as_ref().map(session_from_row).transpose()
        })
        .await
    }

    async fn set_language(&self, session_id: Uuid, language: Language) -> Result<()> {
        let n = self
            .execute(
                "UPDATE sessions SET language = $2 WHERE id = $1",
                &[&session_id, &language.as_str()],
            )
            .await?;
        if n == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    async fn set_text(&self, session_id: Uuid, text: &str) -> Result<()> {
        let n = self
            .execute(
                "UPDATE sessions SET text = $2 WHERE id = $1",
                &[&session_id, &storable_text(text).as_ref()],
            )
            .await?;
        if n == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    /// One statement: the rows are locked in id order, skipping those another transaction holds
    /// (see the trait), then updated.
    async fn set_texts(&self, texts: &[(Uuid, String)]) -> Result<Vec<Uuid>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = texts.iter().map(|(id, _)| *id).collect();
        let stored: Vec<_> = texts.iter().map(|(_, t)| storable_text(t)).collect();
        let bodies: Vec<&str> = stored.iter().map(AsRef::as_ref).collect();
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE sessions SET text = u.t \
                     FROM UNNEST($1::uuid[], $2::text[]) AS u(id, t) \
                     WHERE sessions.id = u.id AND sessions.id IN ( \
                         SELECT id FROM sessions WHERE id = ANY($1::uuid[]) \
                         ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) \
                     RETURNING sessions.id",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&ids, &bodies])
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|r| r.try_get::<_, Uuid>(0).map_err(pg_error))
                .collect()
        })
        .await
    }

    async fn password_hash(&self, session_id: Uuid) -> Result<Option<String>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("SELECT password_hash FROM sessions WHERE id = $1")
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?
                .ok_or(StorageError::NotFound)?;
            row.try_get(0).map_err(pg_error)
        })
        .await
    }

    /// One transaction: the row is locked while its state is read, checked and written.
    async fn transition(
        &self,
        session_id: Uuid,
        to: InterviewState,
        now: OffsetDateTime,
    ) -> Result<Session> {
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let lock = tx
                .prepare_cached("SELECT state FROM sessions WHERE id = $1 FOR NO KEY UPDATE")
                .await
                .map_err(pg_error)?;
            let state: String = tx
                .query_opt(&lock, &[&session_id])
                .await
                .map_err(pg_error)?
                .ok_or(StorageError::NotFound)?
                .try_get(0)
                .map_err(pg_error)?;
            let from = InterviewState::parse(&state)
                .ok_or_else(|| corrupt("sessions.state", format!("{state:?}")))?;
            if !from.can_move_to(to) {
                return Err(StorageError::InvalidTransition { from, to });
            }
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE sessions SET state = $2, \
                         started_at = CASE WHEN $2 = 'live' AND state <> 'live' \
                             THEN $3 ELSE started_at END, \
                         ended_at = CASE WHEN $2 = 'ended' AND state <> 'ended' \
                             THEN $3 ELSE ended_at END \
                     WHERE id = $1 RETURNING {SESSION_COLUMNS}"
                ))
                .await
                .map_err(pg_error)?;
            let row = tx
                .query_one(&stmt, &[&session_id, &to.as_str(), &now])
                .await
                .map_err(pg_error)?;
            let session = session_from_row(&row)?;
            if from != to {
                if let Some((kind, webhook)) = lifecycle_event(to) {
                    record_lifecycle(&tx, session_id, kind, webhook, now).await?;
                }
            }
            tx.commit().await.map_err(pg_error)?;
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let lock = tx
                .prepare_cached(
                    "SELECT editing_locked, runs_enabled FROM sessions WHERE id = $1 \
                     FOR NO KEY UPDATE",
                )
                .await
                .map_err(pg_error)?;
            let before = tx
                .query_opt(&lock, &[&session_id])
                .await
                .map_err(pg_error)?
                .ok_or(StorageError::NotFound)?;
            let before: (bool, bool) = (
                before.try_get(0).map_err(pg_error)?,
                before.try_get(1).map_err(pg_error)?,
            );
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE sessions SET editing_locked = coalesce($2, editing_locked), \
                         runs_enabled = coalesce($3, runs_enabled) \
                     WHERE id = $1 RETURNING {SESSION_COLUMNS}"
                ))
                .await
                .map_err(pg_error)?;
            let row = tx
                .query_opt(&stmt, &[&session_id, &editing_locked, &runs_enabled])
                .await
                .map_err(pg_error)?
                .ok_or(StorageError::NotFound)?;
            let session = session_from_row(&row)?;
            if before != (session.editing_locked, session.runs_enabled) {
                record_system_event(
                    &tx,
                    session_id,
                    "controls",
                    &controls_data(session.editing_locked, session.runs_enabled),
                )
                .await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(session)
        })
        .await
    }

    async fn next_token_number(&self, session_id: Uuid) -> Result<i64> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE sessions SET tokens_issued = tokens_issued + 1 WHERE id = $1 \
                     RETURNING tokens_issued - 1",
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?
                .ok_or(StorageError::NotFound)?;
            row.try_get(0).map_err(pg_error)
        })
        .await
    }

    /// One statement: the event is inserted only when the removal row was.
    async fn remove_user(&self, session_id: Uuid, user_id: Uuid) -> Result<()> {
        self.execute(
            "WITH added AS ( \
                 INSERT INTO removed_users (session_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT (session_id, user_id) DO NOTHING RETURNING session_id) \
             INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
             SELECT session_id, NULL, '', 'removed', $3, $4 FROM added",
            &[
                &session_id,
                &user_id,
                &removed_data(user_id),
                &OffsetDateTime::now_utc(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn is_removed(&self, session_id: Uuid, user_id: Uuid) -> Result<bool> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM removed_users \
                     WHERE session_id = $1 AND user_id = $2)",
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&stmt, &[&session_id, &user_id])
                .await
                .map_err(pg_error)?;
            row.try_get(0).map_err(pg_error)
        })
        .await
    }

    async fn removed_users(&self, session_id: Uuid) -> Result<Vec<Uuid>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT user_id FROM removed_users WHERE session_id = $1 \
                     ORDER BY removed_at, user_id",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|r| r.try_get::<_, Uuid>(0).map_err(pg_error))
                .collect()
        })
        .await
    }

    /// One transaction for the whole batch: the sessions' rows are locked (see below), then ONE
    /// statement inserts three arrays unnested into rows. Within a statement the identity values are drawn in row order, and the rows are fed in input
    /// order (`ORDER BY ordinality`), so the returned `seq`s sorted ascending are the input order,
    /// whatever order `RETURNING` yields them in.
    #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
    async fn append_updates(&self, batch: &[NewUpdate]) -> Result<Vec<i64>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let sessions: Vec<Uuid> = batch.iter().map(|u| u.session_id).collect();
        let docs: Vec<i16> = batch.iter().map(|u| u.doc.as_i16()).collect();
        let authors: Vec<Option<Uuid>> = batch.iter().map(|u| u.author).collect();
        let data: Vec<&[u8]> = batch.iter().map(|u| u.data.as_slice()).collect();
        let mut distinct = sessions.clone();
        distinct.sort_unstable();
        distinct.dedup();
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Serialise appends per session (two hubs may write one interview during a failover): a
            // sequence hands out numbers at INSERT, not at COMMIT, so without this lock a lower `seq`
            // could become visible after a higher one, and a snapshot covering "everything up to N"
            // read in between would miss it. Locks are taken in id order, so writers never deadlock.
            // NO KEY UPDATE conflicts with itself but not with the foreign key's KEY SHARE.
            let lock = tx
                .prepare_cached(
                    "SELECT id FROM sessions WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE",
                )
                .await
                .map_err(pg_error)?;
            tx.query(&lock, &[&distinct]).await.map_err(pg_error)?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO doc_updates (session_id, doc, author, data) \
                     SELECT s, k, a, d \
                     FROM UNNEST($1::uuid[], $2::smallint[], $3::uuid[], $4::bytea[]) \
                         WITH ORDINALITY AS u(s, k, a, d, n) ORDER BY n \
                     RETURNING seq",
                )
                .await
                .map_err(pg_error)?;
            let rows = tx
                .query(&stmt, &[&sessions, &docs, &authors, &data])
                .await
                .map_err(pg_error)?;
            let mut seqs = rows
                .iter()
                .map(|r| r.try_get::<_, i64>(0).map_err(pg_error))
                .collect::<Result<Vec<_>>>()?;
            if seqs.len() != batch.len() {
                return Err(StorageError::Other(format!(
                    "inserted {} updates for a batch of {}",
                    seqs.len(),
                    batch.len()
                )));
            }
            tx.commit().await.map_err(pg_error)?;
            seqs.sort_unstable();
            Ok(seqs)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_document(&self, session_id: Uuid, doc: DocKind) -> Result<DocumentState> {
        let doc = doc.as_i16();
        bounded(async {
            let client = self.client().await?;
            let snap_stmt = client
                .prepare_cached(
                    "SELECT upto_seq, data FROM doc_snapshots WHERE session_id = $1 AND doc = $2 \
                     ORDER BY upto_seq DESC LIMIT 1",
                )
                .await
                .map_err(pg_error)?;
            let snapshot = client
                .query_opt(&snap_stmt, &[&session_id, &doc])
                .await
                .map_err(pg_error)?
                .map(|row| -> Result<Snapshot> {
                    Ok(Snapshot {
                        upto_seq: row.try_get(0).map_err(pg_error)?,
                        data: row.try_get(1).map_err(pg_error)?,
                    })
                })
                .transpose()?;
            // Read after the snapshot, with its bound: a snapshot saved in between cannot hide updates.
            let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
            let stmt = client
                .prepare_cached(
                    "SELECT seq, author, data, created_at FROM doc_updates \
                     WHERE session_id = $1 AND doc = $2 AND seq > $3 ORDER BY seq",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id, &doc, &after])
                .await
                .map_err(pg_error)?;
            let updates = rows.iter().map(update_from_row).collect::<Result<_>>()?;
            Ok(DocumentState { snapshot, updates })
        })
        .await
    }

    async fn history(&self, session_id: Uuid, doc: DocKind) -> Result<Vec<StoredUpdate>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT seq, author, data, created_at FROM doc_updates \
                     WHERE session_id = $1 AND doc = $2 ORDER BY seq",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id, &doc.as_i16()])
                .await
                .map_err(pg_error)?;
            rows.iter().map(update_from_row).collect()
        })
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
        self.execute(
            "INSERT INTO doc_snapshots (session_id, doc, upto_seq, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (session_id, doc, upto_seq) DO NOTHING",
            &[&session_id, &doc.as_i16(), &upto_seq, &data],
        )
        .await?;
        Ok(())
    }

    /// Uses the database's clock, so hubs with skewed clocks still agree on who is alive.
    async fn hub_heartbeat(&self, hub_id: &str, ttl_secs: i64) -> Result<()> {
        self.execute(
            "INSERT INTO hubs (hub_id, expires_at) \
             VALUES ($1, now() + $2::bigint * interval '1 second') \
             ON CONFLICT (hub_id) DO UPDATE SET expires_at = excluded.expires_at",
            &[&hub_id, &ttl_secs],
        )
        .await?;
        Ok(())
    }

    /// Idempotent: adding the same participant id again updates its row (a re-sent join).
    async fn add_participant(&self, p: &Participant) -> Result<()> {
        check_participant(p)?;
        self.execute(
            "INSERT INTO participants (id, session_id, user_id, name, color, hub_id) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, \
                 user_id = excluded.user_id, name = excluded.name, \
                 color = excluded.color, hub_id = excluded.hub_id",
            &[
                &p.id,
                &p.session_id,
                &p.user_id,
                &p.name,
                &p.color,
                &p.hub_id,
            ],
        )
        .await?;
        Ok(())
    }

    /// Removing an unknown participant is not an error: leaving is idempotent.
    async fn remove_participant(&self, participant_id: Uuid) -> Result<()> {
        self.execute("DELETE FROM participants WHERE id = $1", &[&participant_id])
            .await?;
        Ok(())
    }

    async fn remove_hub_participants(&self, hub_id: &str) -> Result<()> {
        self.execute("DELETE FROM participants WHERE hub_id = $1", &[&hub_id])
            .await?;
        Ok(())
    }

    /// Counts connections (rows), not distinct users: a user with two tabs counts twice.
    async fn connected_count(&self, session_id: Uuid) -> Result<i64> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT count(*) FROM participants p JOIN hubs h ON h.hub_id = p.hub_id \
                     WHERE p.session_id = $1 AND h.expires_at > now()",
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?;
            row.try_get(0).map_err(pg_error)
        })
        .await
    }

    async fn record_run(&self, run: NewRun) -> Result<Run> {
        check_run(&run)?;
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO runs (id, session_id, user_id, user_name, language, output, \
                         status, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     RETURNING created_at",
                )
                .await
                .map_err(pg_error)?;
            let id = Uuid::new_v4();
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &id,
                        &run.session_id,
                        &run.user_id,
                        &run.user_name,
                        &run.language.as_str(),
                        &run.output,
                        &run.status,
                        &run.duration_ms,
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(Run {
                id,
                session_id: run.session_id,
                user_id: run.user_id,
                user_name: run.user_name,
                language: run.language,
                output: run.output,
                status: run.status,
                duration_ms: run.duration_ms,
                created_at: row.try_get(0).map_err(pg_error)?,
            })
        })
        .await
    }

    /// A negative `limit` is treated as 0.
    async fn recent_runs(&self, session_id: Uuid, limit: i64) -> Result<Vec<Run>> {
        let limit = limit.max(0);
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE session_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2"
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id, &limit])
                .await
                .map_err(pg_error)?;
            rows.iter().map(run_from_row).collect()
        })
        .await
    }

    async fn runs(&self, session_id: Uuid) -> Result<Vec<Run>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE session_id = $1 ORDER BY created_at, id"
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?;
            rows.iter().map(run_from_row).collect()
        })
        .await
    }

    /// One statement: the batch's columns unnested into rows, in input order.
    async fn record_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        events.iter().try_for_each(check_event)?;
        let sessions: Vec<Uuid> = events.iter().map(|e| e.session_id).collect();
        let users: Vec<Option<Uuid>> = events.iter().map(|e| e.user_id).collect();
        let names: Vec<&str> = events.iter().map(|e| e.user_name.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let ats: Vec<OffsetDateTime> = events.iter().map(|e| e.at).collect();
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO events (session_id, user_id, user_name, kind, data, at) \
                     SELECT s, u, n, k, d, a \
                     FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                         $6::timestamptz[]) WITH ORDINALITY AS e(s, u, n, k, d, a, i) ORDER BY i",
                )
                .await
                .map_err(pg_error)?;
            client
                .execute(&stmt, &[&sessions, &users, &names, &kinds, &data, &ats])
                .await
                .map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    async fn events(&self, session_id: Uuid) -> Result<Vec<Event>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT seq, session_id, user_id, user_name, kind, data, at FROM events \
                     WHERE session_id = $1 ORDER BY at, seq",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&session_id])
                .await
                .map_err(pg_error)?;
            rows.iter().map(event_from_row).collect()
        })
        .await
    }

    /// One transaction: the interview's row is locked first (appends to its history, which lock
    /// it too, wait and then find it gone), `duet.erasing` is set for this transaction only (the
    /// history's DELETE trigger lets rows go only then), and every table is emptied of it.
    async fn erase_session(&self, session_id: Uuid) -> Result<bool> {
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let lock = tx
                .prepare_cached("SELECT id FROM sessions WHERE id = $1 FOR UPDATE")
                .await
                .map_err(pg_error)?;
            if tx
                .query_opt(&lock, &[&session_id])
                .await
                .map_err(pg_error)?
                .is_none()
            {
                return Ok(false);
            }
            tx.execute("SELECT set_config('duet.erasing', 'on', true)", &[])
                .await
                .map_err(pg_error)?;
            for sql in [
                "DELETE FROM doc_updates WHERE session_id = $1",
                "DELETE FROM doc_snapshots WHERE session_id = $1",
                "DELETE FROM events WHERE session_id = $1",
                "DELETE FROM runs WHERE session_id = $1",
                "DELETE FROM participants WHERE session_id = $1",
                "DELETE FROM removed_users WHERE session_id = $1",
                "DELETE FROM webhook_outbox WHERE session_id = $1",
                "DELETE FROM sessions WHERE id = $1",
            ] {
                let stmt = tx.prepare_cached(sql).await.map_err(pg_error)?;
                tx.execute(&stmt, &[&session_id]).await.map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
        .await
    }

    async fn expired_sessions(&self, cutoff: OffsetDateTime, limit: i64) -> Result<Vec<Uuid>> {
        let limit = limit.max(0);
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id FROM sessions s WHERE \
                         (s.state = 'ended' AND s.ended_at < $1) \
                         OR (s.state <> 'ended' AND s.created_at < $1 \
                             AND coalesce(s.started_at, s.created_at) < $1 \
                             AND NOT EXISTS (SELECT 1 FROM doc_updates u \
                                 WHERE u.session_id = s.id AND u.created_at >= $1) \
                             AND NOT EXISTS (SELECT 1 FROM events e \
                                 WHERE e.session_id = s.id AND e.at >= $1) \
                             AND NOT EXISTS (SELECT 1 FROM runs r \
                                 WHERE r.session_id = s.id AND r.created_at >= $1)) \
                     ORDER BY coalesce(s.ended_at, s.created_at), s.id LIMIT $2",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&cutoff, &limit])
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|r| r.try_get::<_, Uuid>(0).map_err(pg_error))
                .collect()
        })
        .await
    }

    /// One statement: due rows are locked `FOR UPDATE SKIP LOCKED` (a row another dispatcher is
    /// claiming right now is skipped, not waited for), then pushed past their lease.
    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let limit = limit.max(0);
        let lease_secs = lease_secs.max(0);
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "WITH due AS ( \
                         SELECT id FROM webhook_outbox WHERE next_attempt_at <= $1 \
                         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED), \
                     claimed AS ( \
                         UPDATE webhook_outbox o SET attempts = o.attempts + 1, \
                             next_attempt_at = $1 + $2::bigint * interval '1 second' \
                         FROM due WHERE o.id = due.id \
                         RETURNING o.id, o.kind, o.session_id, o.at, o.attempts) \
                     SELECT c.id, c.kind, c.session_id, s.code, c.at, c.attempts \
                     FROM claimed c JOIN sessions s ON s.id = c.session_id ORDER BY c.id",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&now, &lease_secs, &limit])
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|r| {
                    let kind: String = r.try_get(1).map_err(pg_error)?;
                    let code: String = r.try_get(3).map_err(pg_error)?;
                    Ok(WebhookDelivery {
                        id: r.try_get(0).map_err(pg_error)?,
                        kind: WebhookKind::parse(&kind)
                            .ok_or_else(|| corrupt("webhook_outbox.kind", format!("{kind:?}")))?,
                        session_id: r.try_get(2).map_err(pg_error)?,
                        session_code: SessionCode::parse(&code)
                            .map_err(|e| corrupt("sessions.code", e))?,
                        at: r.try_get(4).map_err(pg_error)?,
                        attempts: r.try_get(5).map_err(pg_error)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn retry_webhook(&self, id: i64, at: OffsetDateTime) -> Result<()> {
        self.execute(
            "UPDATE webhook_outbox SET next_attempt_at = $2 WHERE id = $1",
            &[&id, &at],
        )
        .await?;
        Ok(())
    }

    async fn finish_webhook(&self, id: i64) -> Result<()> {
        self.execute("DELETE FROM webhook_outbox WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }
}
