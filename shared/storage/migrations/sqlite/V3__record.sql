-- Duet schema, version 3 (SQLite): the interview record — activity events, webhook deliveries, and
-- erasure. Same tables as the PostgreSQL V3.
--
-- Edits stay append-only: no `doc_updates` row is ever rewritten (UPDATE is refused as before).
-- Erasing a whole interview (`Storage::erase_session`: `DELETE /api/session/<code>` and the
-- retention job) is the ONE deletion path: in one transaction it marks the interview in `erasing`,
-- deletes every row of it from every table, and removes the mark. The trigger below lets a DELETE of
-- `doc_updates` through only for a marked interview; any other DELETE is refused as before.

-- Interviews being erased, only ever inside the erasing transaction (empty otherwise).
CREATE TABLE erasing (
    session_id  BLOB    NOT NULL PRIMARY KEY
) STRICT;

DROP TRIGGER doc_updates_no_delete;
CREATE TRIGGER doc_updates_no_delete BEFORE DELETE ON doc_updates
    WHEN NOT EXISTS (SELECT 1 FROM erasing WHERE session_id = OLD.session_id)
BEGIN
    SELECT RAISE(ABORT, 'doc_updates is append-only (DELETE refused)');
END;

-- Activity events: only ever inserted, deleted only with their interview. `data` is a JSON object
-- as text.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    user_id     BLOB,
    user_name   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    at          INTEGER NOT NULL
) STRICT;
CREATE INDEX events_session_at ON events (session_id, at, seq);

-- Webhook deliveries still to be made (an outbox): written in the same transaction as the change
-- they announce, claimed by a dispatcher and deleted once delivered or given up. They go with their
-- interview when it is erased.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      BLOB    NOT NULL REFERENCES sessions (id),
    kind            TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
CREATE INDEX webhook_outbox_session ON webhook_outbox (session_id);

CREATE INDEX sessions_ended_at ON sessions (ended_at);
CREATE INDEX sessions_created_at ON sessions (created_at);
CREATE INDEX doc_snapshots_session ON doc_snapshots (session_id);
CREATE INDEX runs_session ON runs (session_id);
