-- Duet schema, version 1 (SQLite). Same tables as the PostgreSQL schema.
--
-- Types: UUIDs are 16-byte BLOBs; timestamps are INTEGER microseconds since the Unix epoch (UTC), the
-- same precision as PostgreSQL's timestamptz, so both backends return identical values.
-- Tables are STRICT so a wrong type is an error rather than silently stored.
--
-- Sessions are never deleted and the document history is append-only: `doc_updates` rows are only ever
-- inserted (triggers below refuse UPDATE and DELETE).

CREATE TABLE sessions (
    id          BLOB    NOT NULL PRIMARY KEY,
    code        TEXT    NOT NULL,
    title       TEXT    NOT NULL DEFAULT '',
    language    TEXT    NOT NULL,
    text        TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    CONSTRAINT sessions_code_key UNIQUE (code)
) STRICT;

CREATE TABLE doc_updates (
    -- AUTOINCREMENT: a sequence number is never reused, even for the highest row.
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    author      BLOB,
    data        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX doc_updates_session_seq ON doc_updates (session_id, seq);

CREATE TRIGGER doc_updates_no_update BEFORE UPDATE ON doc_updates
BEGIN
    SELECT RAISE(ABORT, 'doc_updates is append-only (UPDATE refused)');
END;
CREATE TRIGGER doc_updates_no_delete BEFORE DELETE ON doc_updates
BEGIN
    SELECT RAISE(ABORT, 'doc_updates is append-only (DELETE refused)');
END;

CREATE TABLE doc_snapshots (
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    upto_seq    INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, upto_seq)
) STRICT;

CREATE TABLE hubs (
    hub_id      TEXT    NOT NULL PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE participants (
    id          BLOB    NOT NULL PRIMARY KEY,
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    user_id     BLOB    NOT NULL,
    name        TEXT    NOT NULL,
    color       TEXT    NOT NULL,
    hub_id      TEXT    NOT NULL,
    joined_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX participants_session ON participants (session_id);
CREATE INDEX participants_hub ON participants (hub_id);

CREATE TABLE runs (
    id          BLOB    NOT NULL PRIMARY KEY,
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    user_id     BLOB,
    user_name   TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    output      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    duration_ms INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_session_created ON runs (session_id, created_at DESC);
