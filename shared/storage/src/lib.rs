//! Duet's storage: one trait, two backends.
//!
//! - [`postgres::PgStorage`]: PostgreSQL through deadpool-postgres (the scaled services).
//! - [`sqlite::SqliteStorage`]: embedded SQLite (the all-in-one `duet` binary).
//!
//! Both run their own versioned migrations at start-up (`migrations/postgres`, `migrations/sqlite`) and
//! pass the same test suite (`tests/storage.rs`).
//!
//! The document history is append-only: [`Storage::append_updates`] adds rows, [`Storage::save_snapshot`]
//! adds a snapshot that *covers* the updates up to a sequence number so loading is fast, and nothing ever
//! deletes or rewrites an update, so an interview can be replayed from its first keystroke.

use async_trait::async_trait;
use duet_domain::{Language, NewSession, Session, SessionCode};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod postgres;
pub mod sqlite;

/// Errors a storage call can return. Callers map them to HTTP statuses / Socket.IO errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The session code is taken; the caller generates another and retries.
    #[error("session code already exists")]
    CodeTaken,
    /// The referenced session does not exist.
    #[error("session not found")]
    NotFound,
    /// The database cannot be reached (down, pool exhausted, timeout). Maps to 503; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data. Maps to 500; the cause is logged, never sent to clients.
    #[error("storage error: {0}")]
    Other(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One Yjs update to append to a session's history.
#[derive(Debug, Clone)]
pub struct NewUpdate {
    pub session_id: Uuid,
    /// Who made it (the participant's stable user id), if known.
    pub author: Option<Uuid>,
    /// Encoded Yjs update (v1 encoding).
    pub data: Vec<u8>,
}

/// An update as stored, with its per-database sequence number (monotonic within a session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    pub seq: i64,
    pub author: Option<Uuid>,
    pub data: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// A snapshot: the encoded Yjs state that contains every update with `seq <= upto_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub upto_seq: i64,
    pub data: Vec<u8>,
}

/// What is needed to rebuild a document: the newest snapshot plus every update after it, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentState {
    pub snapshot: Option<Snapshot>,
    pub updates: Vec<StoredUpdate>,
}

/// A participant's presence row: one per live connection, owned by the hub that serves it.
#[derive(Debug, Clone)]
pub struct Participant {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub color: String,
    pub hub_id: String,
}

/// A code run reported by a participant's browser (code runs only in browsers).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub language: Language,
    pub output: String,
    /// `ok`, `error` or `timeout`.
    pub status: String,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub language: Language,
    pub output: String,
    pub status: String,
    pub duration_ms: i64,
    pub created_at: OffsetDateTime,
}

/// Storage shared by every service. Implementations are cheap to clone behind an `Arc`.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Cheap round trip to the database, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Creates a session. Returns [`StorageError::CodeTaken`] if the code exists (nothing is written).
    async fn create_session(&self, new: NewSession) -> Result<Session>;
    async fn session_by_code(&self, code: &SessionCode) -> Result<Option<Session>>;
    async fn session_by_id(&self, id: Uuid) -> Result<Option<Session>>;
    /// Sets the session's language. [`StorageError::NotFound`] for an unknown id.
    async fn set_language(&self, session_id: Uuid, language: Language) -> Result<()>;
    /// Keeps the plain text current for the REST API (not the source of truth: the history is).
    async fn set_text(&self, session_id: Uuid, text: &str) -> Result<()>;
    /// [`Storage::set_text`] for several sessions at once, in ONE statement or transaction (a hub
    /// saving many interviews' texts pays one round trip and one commit, not one per interview).
    /// Each session at most once. Returns the ids whose text was saved: unknown ids are not, and
    /// neither are sessions whose row another transaction holds at that moment (the history writer
    /// locks the rows it appends to) — skipped rather than waited for, so a batch never waits on
    /// nor deadlocks with the writer; the caller tries those again later.
    async fn set_texts(&self, texts: &[(Uuid, String)]) -> Result<Vec<Uuid>>;

    /// Appends a batch of updates (possibly for several sessions) in ONE transaction: all or nothing.
    /// Returns the assigned sequence numbers, in input order. This is the group-commit primitive.
    ///
    /// Within one session, `seq` order is commit order: once an update with `seq = N` is visible,
    /// every update of that session with a lower `seq` is visible too. So a snapshot built from what
    /// [`Storage::load_document`] returned, saved with `upto_seq` = the highest `seq` it saw, never
    /// hides an update committed later.
    async fn append_updates(&self, batch: &[NewUpdate]) -> Result<Vec<i64>>;
    /// The newest snapshot and every update after it, ordered by `seq`.
    async fn load_document(&self, session_id: Uuid) -> Result<DocumentState>;
    /// Every update ever appended, ordered by `seq`, for replay.
    async fn history(&self, session_id: Uuid) -> Result<Vec<StoredUpdate>>;
    /// Stores a snapshot covering updates up to `upto_seq`. Never deletes updates.
    async fn save_snapshot(&self, session_id: Uuid, upto_seq: i64, data: &[u8]) -> Result<()>;

    /// Registers (or refreshes) a hub as alive until `now + ttl`.
    async fn hub_heartbeat(&self, hub_id: &str, ttl_secs: i64) -> Result<()>;
    async fn add_participant(&self, p: &Participant) -> Result<()>;
    async fn remove_participant(&self, participant_id: Uuid) -> Result<()>;
    /// Removes every participant row owned by a hub (on its clean shutdown).
    async fn remove_hub_participants(&self, hub_id: &str) -> Result<()>;
    /// Connected participants of a session, counting only rows owned by hubs whose heartbeat is fresh.
    async fn connected_count(&self, session_id: Uuid) -> Result<i64>;

    async fn record_run(&self, run: NewRun) -> Result<Run>;
    /// The newest `limit` runs of a session, newest first.
    async fn recent_runs(&self, session_id: Uuid, limit: i64) -> Result<Vec<Run>>;
}
