//! The hub's limits and timings, in one place. Each says why it has the value it has.

use std::time::Duration;

/// Largest y-protocols message (one `yjs` emit) a client may send. A paste of a large source file
/// fits; anything bigger is refused with `payload_too_large` (and capped further by the Socket.IO
/// payload limit, `MAX_CONTENT_LENGTH`).
pub const MAX_YJS_MESSAGE_BYTES: usize = 512 * 1024;
/// Longest text a seed client may send with `code_change`, in bytes (same reasoning as above).
pub const MAX_CODE_BYTES: usize = 512 * 1024;
/// Largest awareness state (JSON) one Yjs client may publish: name, colour, cursor and selection
/// need a few hundred bytes; more is abuse.
pub const MAX_AWARENESS_STATE_BYTES: usize = 4 * 1024;
/// Awareness client ids one connection may own (one per Y.Doc the tab has; a couple is normal).
pub const MAX_AWARENESS_CLIENTS_PER_CONN: usize = 4;
/// Longest run output shared with `execute_code`; a browser run prints at most this much.
pub const MAX_RUN_OUTPUT_BYTES: usize = 64 * 1024;
/// Longest run duration a client may report (browser runs are killed well before this).
pub const MAX_RUN_DURATION_MS: i64 = 10 * 60 * 1000;

/// Document messages (sync and updates) a connection may send per second on average. A fast typist
/// sends ~15/s; Yjs batches bursts. Above it the client is abusive and is disconnected (dropping a
/// document update would leave it unacknowledged and the replicas diverged until reconnect).
pub const DOC_MESSAGES_PER_SEC: f64 = 100.0;
/// Burst allowance for document messages (a reconnect re-sends a few at once).
pub const DOC_MESSAGES_BURST: f64 = 400.0;
/// Awareness messages per second (cursor moves are throttled by the client to ~10/s).
pub const AWARENESS_PER_SEC: f64 = 30.0;
/// Burst allowance for awareness messages.
pub const AWARENESS_BURST: f64 = 60.0;
/// Awareness messages refused in a row before the connection is closed as abusive.
pub const AWARENESS_STRIKES_BEFORE_DISCONNECT: u32 = 200;
/// Other events (language, runs, seed `code_change`) per second and burst.
pub const EVENTS_PER_SEC: f64 = 20.0;
pub const EVENTS_BURST: f64 = 60.0;
/// Activity events (`activity`: pastes, leaving the page and coming back) per second and burst,
/// per connection; beyond them the events are refused with `rate_limited`.
pub const ACTIVITY_PER_SEC: f64 = 5.0;
pub const ACTIVITY_BURST: f64 = 30.0;
/// The largest paste size (UTF-16 units) an `activity` event may report.
pub const MAX_PASTE_SIZE: u64 = 16 * 1024 * 1024;
/// The activity record's writer flushes what queued this often, or once it holds
/// [`EVENT_BATCH`] events.
pub const EVENT_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
pub const EVENT_BATCH: usize = 256;
/// Events waiting for the record's writer, at most; beyond that they are dropped and counted (the
/// record is not worth stalling or swelling a hub whose database is gone).
pub const EVENT_QUEUE: usize = 65_536;
/// Attempts at storing a batch of events while the database is unavailable, and the wait before
/// the first retry (doubled each time).
pub const EVENT_ATTEMPTS: u32 = 4;
pub const EVENT_RETRY: Duration = Duration::from_millis(100);

/// Housekeeping period of an interview's worker (text saves, snapshots, unload, takeovers).
pub const MAINTENANCE_TICK: Duration = Duration::from_millis(200);
/// The plain text (`sessions.text`, read by the REST API) is written at most this often per
/// interview: it is a convenience copy, the history is the truth.
pub const TEXT_SAVE_DEBOUNCE: Duration = Duration::from_millis(750);
/// Texts that come due within this window are saved together, in one statement
/// ([`crate::runtime::writer::save_texts`]): a hub with hundreds of busy interviews otherwise runs hundreds
/// of single-row updates (and commits) per second for a convenience copy.
pub const TEXT_SAVE_WINDOW: Duration = Duration::from_millis(50);
/// Most texts saved in one statement.
pub const TEXT_SAVE_BATCH: usize = 512;
/// An update relayed by another hub that it has not confirmed as committed within this time is
/// committed by this hub too (the other hub may have died). Duplicates are harmless: Yjs updates
/// are idempotent.
pub const REMOTE_COMMIT_TAKEOVER: Duration = Duration::from_millis(1500);
/// When an interview's commits stop advancing, its last commit notice to the other hubs is sent once
/// more after this long (on the worker's next tick): a notice handled before the update it covers,
/// or dropped, is made good well before [`REMOTE_COMMIT_TAKEOVER`] would commit the update twice.
pub const NOTICE_REPEAT_AFTER: Duration = Duration::from_millis(250);
/// How often stale awareness states and expired remote presence are looked for.
pub const PURGE_EVERY: Duration = Duration::from_secs(1);
/// Awareness states not renewed for this long are dropped (y-protocols clients renew every 15 s and
/// drop remote states after 30 s themselves).
pub const AWARENESS_STALE: Duration = Duration::from_secs(30);
/// How long turning a seed client's text into a minimal edit may take; past it the diff is
/// still exact, only less minimal (a huge whole-text change).
pub const SEED_DIFF_TIME: Duration = Duration::from_millis(50);

/// Group commit: most updates in one `append_updates` transaction.
pub const MAX_BATCH: usize = 4096;
/// First retry delay after a failed commit; doubles up to [`WRITE_RETRY_MAX`].
pub const WRITE_RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest delay between commit retries while the database is down.
pub const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);
/// Commit attempts failing with a non-availability error before the batch is split per interview
/// and the failing interviews are closed (a deleted session must not block everyone else).
pub const WRITE_HARD_FAILURES: u32 = 3;
/// How long shutdown waits for pending edits to be committed.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the outgoing bus queue; when full, messages are dropped and the interview resyncs.
pub const PUBLISH_QUEUE: usize = 65_536;

/// Structs (insertions, deleted runs) one update may carry. A keystroke is one; a paste is one; the
/// step 2 of a client that edited offline for an hour is a few hundred. An update of thousands of
/// one-character structs is how a client makes the hub spend seconds integrating (concurrent
/// inserts at one place are scanned pairwise): refused with `payload_too_large`.
pub const MAX_UPDATE_STRUCTS: u64 = 10_000;
/// Structs one interview's code document may hold over its life (deleted ones stay as tombstones).
/// A two-hour interview of steady typing makes a few thousand; the bound also bounds what one
/// struct can cost to integrate (it may be compared with every struct of the document: about a
/// microsecond each). Beyond it, edits are refused with `document_too_large`.
pub const MAX_DOC_STRUCTS: u64 = 30_000;
/// UTF-16 units of text one interview's document may take in over its life (deleted text is kept
/// for replay and merging): 4 Mi units, some 8 MB, hundreds of times a long interview's code.
pub const MAX_DOC_INSERTED_UNITS: u64 = 4 * 1024 * 1024;
/// Bytes of history (stored updates) one interview may accumulate: a two-hour interview stores
/// about a megabyte.
pub const MAX_HISTORY_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of history one interview may add per minute (a few large pastes fit; a client streaming
/// whole texts many times a second does not): beyond it, edits are refused with `rate_limited`.
pub const MAX_HISTORY_BYTES_PER_MINUTE: u64 = 8 * 1024 * 1024;
/// An update with more structs than this is integrated a few structs at a time between other
/// work (staged), so one large message cannot hold the hub's event loop.
pub const STAGE_STRUCTS: u64 = 64;

/// How long an update with a gap waits for what it depends on before it is refused
/// (`interview::held`).
pub const HELD_FOR: Duration = Duration::from_secs(10);
/// Updates with a gap waiting per interview; beyond it, one more is refused at once.
pub const MAX_HELD: usize = 64;
/// Staged bytes one interview may hold waiting to be integrated; beyond, `rate_limited`.
pub const MAX_STAGED_BYTES: usize = 4 * 1024 * 1024;
/// Event-loop time one interview's document work may take per second (handling its clients'
/// updates), and the burst: beyond it, its updates are staged and integrated at this pace, so an
/// interview under attack takes at most a quarter of its hub. Six people typing fast take about
/// 2 ms a second in a release build (twenty times that in a debug build on a busy machine).
pub const INTEGRATION_BUDGET_PER_SEC: Duration = Duration::from_millis(250);
pub const INTEGRATION_BUDGET_BURST: Duration = Duration::from_millis(500);
