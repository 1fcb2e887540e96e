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
//! deletes or rewrites an update, so an interview can be replayed from its first keystroke. An
//! interview has two documents ([`DocKind`]): the code and the interviewers' notes; every read and
//! write of the history names the one it is about.
//!
//! An interview's lifecycle (`waiting` → `live` → `ended`, [`Storage::transition`]), its
//! interviewer controls ([`Storage::set_controls`]), the colours of its participant tokens
//! ([`Storage::next_token_number`]) and the users removed from it ([`Storage::remove_user`]) are
//! stored with it too.
//!
//! The interview record (issue 15): activity events ([`Storage::record_events`], [`Storage::events`];
//! the lifecycle's own `start` / `end` events are written by [`Storage::create_session`] and
//! [`Storage::transition`]), webhook deliveries (an outbox written in the same transactions,
//! drained by [`Storage::claim_webhooks`]), and erasure ([`Storage::erase_session`]): deleting a
//! whole interview, with every row of it in every table, is the one deletion path; edits are never
//! rewritten.

use std::borrow::Cow;

use async_trait::async_trait;
use duet_domain::{
    reject_nul, DocKind, InterviewState, Language, NewSession, Session, SessionCode,
};
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
    /// The interview cannot move from its state to the one asked for (it has ended, or it is live
    /// and was asked to wait). Nothing is written. Maps to 409 `invalid_transition`.
    #[error("an interview that is {from} cannot become {to}")]
    InvalidTransition {
        from: InterviewState,
        to: InterviewState,
    },
    /// The value cannot be stored (a run's output holding U+0000, which PostgreSQL `text` cannot
    /// hold). Refused before the database is asked, on both backends, so nothing is written. Maps
    /// to a 4xx: `invalid_field` in REST, `invalid_payload` on Socket.IO.
    #[error("cannot be stored: {0}")]
    Invalid(String),
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
    /// Which of the interview's documents it edits.
    pub doc: DocKind,
    /// Who made it (the participant's stable user id), if known.
    pub author: Option<Uuid>,
    /// Encoded Yjs update (v1 encoding).
    pub data: Vec<u8>,
}

/// An update as stored, with its per-database sequence number (monotonic within a session, shared
/// by its documents).
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

/// One activity event to record (kinds: `join`, `leave`, `language`, `start`, `end`, `paste`,
/// `blur`, `focus`, `controls`, `removed`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub session_id: Uuid,
    /// Who did it; `None` for the system (the lifecycle's `start` / `end` when no actor is known).
    pub user_id: Option<Uuid>,
    pub user_name: String,
    /// 1 to 32 characters of `a`-`z`, `0`-`9`, `_`, `.`, `-`.
    pub kind: String,
    /// A JSON object as text (the caller builds it); anything else is refused.
    pub data: String,
    pub at: OffsetDateTime,
}

/// An activity event as stored. `seq` grows with every event recorded (across interviews).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub kind: String,
    pub data: String,
    pub at: OffsetDateTime,
}

/// The webhook events announced through the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookKind {
    Created,
    Started,
    Ended,
}

impl WebhookKind {
    /// The `type` of the webhook's body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "interview.created",
            Self::Started => "interview.started",
            Self::Ended => "interview.ended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "interview.created" => Some(Self::Created),
            "interview.started" => Some(Self::Started),
            "interview.ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// A webhook delivery claimed by [`Storage::claim_webhooks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The outbox row: stable across attempts (a receiver can deduplicate by it).
    pub id: i64,
    pub kind: WebhookKind,
    pub session_id: Uuid,
    pub session_code: SessionCode,
    /// When the change happened.
    pub at: OffsetDateTime,
    /// Attempts made so far, this one included (1 on the first claim).
    pub attempts: i32,
}

/// What U+0000 becomes in a stored plain-text copy ([`Storage::set_text`]): U+FFFD, the
/// replacement character. PostgreSQL `text` cannot hold U+0000, and the copy is a convenience for
/// the REST API (the Yjs history, stored as bytes, keeps the NUL), so it is replaced rather than
/// refused: a NUL typed into one document must not fail the batch that saves many interviews'
/// texts. U+FFFD is one UTF-16 unit like U+0000, so offsets into the copy still match the document.
/// Both backends store it the same way.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The plain text as it is stored (see [`NUL_REPLACEMENT`]); borrowed when there is no NUL.
pub fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(text)
    }
}

/// Refuses a run that cannot be stored as it is (U+0000 in its free text, which PostgreSQL `text`
/// cannot hold), before either backend writes anything.
fn check_run(run: &NewRun) -> Result<()> {
    reject_nul("output", &run.output)
        .and_then(|()| reject_nul("user_name", &run.user_name))
        .and_then(|()| reject_nul("status", &run.status))
        .map_err(|e| StorageError::Invalid(e.to_string()))
}

/// Refuses a participant row that cannot be stored (see [`check_run`]).
fn check_participant(p: &Participant) -> Result<()> {
    reject_nul("name", &p.name)
        .and_then(|()| reject_nul("color", &p.color))
        .map_err(|e| StorageError::Invalid(e.to_string()))
}

/// Refuses an event that cannot be stored: U+0000 anywhere (PostgreSQL `text` cannot hold it), a
/// kind outside its alphabet, data that is not a JSON object. Checked for the whole batch before
/// either backend writes anything.
fn check_event(e: &NewEvent) -> Result<()> {
    reject_nul("user_name", &e.user_name)
        .and_then(|()| reject_nul("kind", &e.kind))
        .and_then(|()| reject_nul("data", &e.data))
        .map_err(|err| StorageError::Invalid(err.to_string()))?;
    let kind_ok = (1..=32).contains(&e.kind.len())
        && e.kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !kind_ok {
        return Err(StorageError::Invalid(format!(
            "event kind {:?} is not 1-32 of a-z 0-9 _ . -",
            e.kind
        )));
    }
    match serde_json::from_str::<serde_json::Value>(&e.data) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(StorageError::Invalid(
            "event data is not a JSON object".into(),
        )),
    }
}

/// The lifecycle event (kind, webhook) a move to `to` records, if it records one.
fn lifecycle_event(to: InterviewState) -> Option<(&'static str, WebhookKind)> {
    match to {
        InterviewState::Live => Some(("start", WebhookKind::Started)),
        InterviewState::Ended => Some(("end", WebhookKind::Ended)),
        InterviewState::Waiting => None,
    }
}

/// The `data` of a `controls` event.
fn controls_data(editing_locked: bool, runs_enabled: bool) -> String {
    serde_json::json!({"editing_locked": editing_locked, "runs_enabled": runs_enabled}).to_string()
}

/// The `data` of a `removed` event.
fn removed_data(user_id: Uuid) -> String {
    serde_json::json!({ "user_id": user_id }).to_string()
}

/// Storage shared by every service. Implementations are cheap to clone behind an `Arc`.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Cheap round trip to the database, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Creates a session: `Waiting` with no `started_at` when [`NewSession::lobby`], else `Live`
    /// with `started_at = created_at`. Returns [`StorageError::CodeTaken`] if the code exists
    /// (nothing is written). In the same transaction it queues the `interview.created` webhook,
    /// and for an interview live from its creation records its `start` event (at `created_at`, no
    /// user) and queues `interview.started`, as [`Storage::transition`] does for a lobby's start.
    async fn create_session(&self, new: NewSession) -> Result<Session>;
    async fn session_by_code(&self, code: &SessionCode) -> Result<Option<Session>>;
    async fn session_by_id(&self, id: Uuid) -> Result<Option<Session>>;
    /// Sets the session's language. [`StorageError::NotFound`] for an unknown id.
    async fn set_language(&self, session_id: Uuid, language: Language) -> Result<()>;
    /// Keeps the plain text current for the REST API (not the source of truth: the history is).
    /// U+0000 is stored as [`NUL_REPLACEMENT`].
    async fn set_text(&self, session_id: Uuid, text: &str) -> Result<()>;
    /// [`Storage::set_text`] for several sessions at once, in ONE statement or transaction (a hub
    /// saving many interviews' texts pays one round trip and one commit, not one per interview).
    /// Each session at most once. Returns the ids whose text was saved: unknown ids are not, and
    /// neither are sessions whose row another transaction holds at that moment (the history writer
    /// locks the rows it appends to) — skipped rather than waited for, so a batch never waits on
    /// nor deadlocks with the writer; the caller tries those again later. U+0000 is stored as
    /// [`NUL_REPLACEMENT`], so no text can fail the batch for the others.
    async fn set_texts(&self, texts: &[(Uuid, String)]) -> Result<Vec<Uuid>>;

    /// The interview password's PHC string, `None` when it has none. [`StorageError::NotFound`] for
    /// an unknown id. The only call that hands the hash out: [`Session`] says `has_password` only.
    async fn password_hash(&self, session_id: Uuid) -> Result<Option<String>>;
    /// Moves the interview to `to` (see [`InterviewState::can_move_to`]) and returns it as it is
    /// afterwards. Going live sets `started_at = now`, ending sets `ended_at = now`; asking for the
    /// state it is in changes nothing (idempotent: the timestamps stay the first ones).
    /// [`StorageError::InvalidTransition`] for a move backwards or out of `Ended` (nothing is
    /// written), [`StorageError::NotFound`] for an unknown id. Atomic: two racing calls never both
    /// set a timestamp.
    ///
    /// When the state actually changes, the same transaction records the `start` (→ live) or
    /// `end` (→ ended) event at `now` (no user, data `{}`) and queues the `interview.started` /
    /// `interview.ended` webhook; a repeated move records nothing, so each is recorded once
    /// whichever service (hub socket, REST) made the move.
    async fn transition(
        &self,
        session_id: Uuid,
        to: InterviewState,
        now: OffsetDateTime,
    ) -> Result<Session>;
    /// Sets the interviewer controls given (`None` leaves one as it is) and returns the interview.
    /// [`StorageError::NotFound`] for an unknown id. When a control actually changes, the same
    /// transaction records a `controls` event (now, no user, data `{editing_locked,
    /// runs_enabled}` as they are afterwards).
    async fn set_controls(
        &self,
        session_id: Uuid,
        editing_locked: Option<bool>,
        runs_enabled: Option<bool>,
    ) -> Result<Session>;
    /// Counts a participant token issued for the interview and returns its number, from 0: the
    /// n-th token gets colour `duet_domain::palette_color(n)`. Atomic, so concurrent joins get
    /// distinct numbers. [`StorageError::NotFound`] for an unknown id.
    async fn next_token_number(&self, session_id: Uuid) -> Result<i64>;
    /// Records that `user_id` was removed from the interview: its tokens are refused from then on.
    /// Removing a user again is not an error. [`StorageError::NotFound`] for an unknown interview.
    /// The first removal records a `removed` event (now, no user, data `{user_id}`) in the same
    /// transaction.
    async fn remove_user(&self, session_id: Uuid, user_id: Uuid) -> Result<()>;
    /// Whether `user_id` was removed from the interview (`false` for an unknown interview).
    async fn is_removed(&self, session_id: Uuid, user_id: Uuid) -> Result<bool>;
    /// Every user removed from the interview, in the order they were removed.
    async fn removed_users(&self, session_id: Uuid) -> Result<Vec<Uuid>>;

    /// Appends a batch of updates (possibly for several sessions and documents) in ONE transaction:
    /// all or nothing.
    /// Returns the assigned sequence numbers, in input order. This is the group-commit primitive.
    ///
    /// Within one session, `seq` order is commit order: once an update with `seq = N` is visible,
    /// every update of that session with a lower `seq` is visible too. So a snapshot built from what
    /// [`Storage::load_document`] returned, saved with `upto_seq` = the highest `seq` it saw, never
    /// hides an update committed later.
    async fn append_updates(&self, batch: &[NewUpdate]) -> Result<Vec<i64>>;
    /// The document's newest snapshot and every update of it after that, ordered by `seq`.
    async fn load_document(&self, session_id: Uuid, doc: DocKind) -> Result<DocumentState>;
    /// Every update ever appended to the document, ordered by `seq`, for replay.
    async fn history(&self, session_id: Uuid, doc: DocKind) -> Result<Vec<StoredUpdate>>;
    /// Stores a snapshot of the document covering its updates up to `upto_seq`. Never deletes
    /// updates.
    async fn save_snapshot(
        &self,
        session_id: Uuid,
        doc: DocKind,
        upto_seq: i64,
        data: &[u8],
    ) -> Result<()>;

    /// Registers (or refreshes) a hub as alive until `now + ttl`.
    async fn hub_heartbeat(&self, hub_id: &str, ttl_secs: i64) -> Result<()>;
    /// [`StorageError::Invalid`] for a name or colour holding U+0000 (nothing is written).
    async fn add_participant(&self, p: &Participant) -> Result<()>;
    async fn remove_participant(&self, participant_id: Uuid) -> Result<()>;
    /// Removes every participant row owned by a hub (on its clean shutdown).
    async fn remove_hub_participants(&self, hub_id: &str) -> Result<()>;
    /// Connected participants of a session, counting only rows owned by hubs whose heartbeat is fresh.
    async fn connected_count(&self, session_id: Uuid) -> Result<i64>;

    /// Stores a run as it was produced. [`StorageError::Invalid`] if its output, user name or
    /// status holds U+0000 (nothing is written; callers check with [`duet_domain::reject_nul`] at
    /// the edge first).
    async fn record_run(&self, run: NewRun) -> Result<Run>;
    /// The newest `limit` runs of a session, newest first.
    async fn recent_runs(&self, session_id: Uuid, limit: i64) -> Result<Vec<Run>>;
    /// Every run of a session, oldest first.
    async fn runs(&self, session_id: Uuid) -> Result<Vec<Run>>;

    /// Records a batch of activity events (possibly of several interviews) in ONE transaction: all
    /// or nothing. [`StorageError::Invalid`] if any holds U+0000, a kind outside `a-z 0-9 _ . -`
    /// (1-32 long) or data that is not a JSON object (nothing is written);
    /// [`StorageError::NotFound`] if an interview does not exist (erased meanwhile).
    async fn record_events(&self, events: &[NewEvent]) -> Result<()>;
    /// Every event of an interview, ordered by `(at, seq)`.
    async fn events(&self, session_id: Uuid) -> Result<Vec<Event>>;

    /// Erases the interview and every row of it in every table (history, snapshots, runs, events,
    /// participants, removed users, queued webhooks, the interview itself) in one transaction: the
    /// one deletion path of the history. `false` for an unknown (or already erased) id, so
    /// replicas erasing the same interview together are harmless.
    async fn erase_session(&self, session_id: Uuid) -> Result<bool>;
    /// Up to `limit` interviews the retention job erases at `cutoff`: ended before `cutoff`, or
    /// not ended, created (and started) before `cutoff` and untouched since (no update, event or
    /// run at or after `cutoff`). Oldest first.
    async fn expired_sessions(&self, cutoff: OffsetDateTime, limit: i64) -> Result<Vec<Uuid>>;

    /// Claims up to `limit` webhook deliveries due at `now`, oldest first: each one's attempts
    /// count goes up by one and it is not due again before `now + lease_secs` (if the claimer
    /// dies, another one retries it then). Safe with several dispatchers: a row is claimed by one
    /// at a time.
    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>>;
    /// Makes a claimed delivery due again at `at` (a failed attempt to retry).
    async fn retry_webhook(&self, id: i64, at: OffsetDateTime) -> Result<()>;
    /// Removes a delivery from the outbox (delivered, or given up). Unknown ids are not an error.
    async fn finish_webhook(&self, id: i64) -> Result<()>;
}
