-- Duet schema, version 2 (SQLite): interviews, not just pads. Same changes as the PostgreSQL V2.
--
-- The document history stays append-only (the V1 triggers still refuse UPDATE and DELETE of
-- `doc_updates`; adding a column fires neither). Erasing a whole interview, with its history, will be
-- the only deletion path (issue 15 adds it); nothing else deletes.

-- The lifecycle: `waiting` (a lobby) → `live` → `ended`. Interviews that existed before were live
-- from their creation. Booleans are 0/1 integers.
ALTER TABLE sessions ADD COLUMN state TEXT NOT NULL DEFAULT 'live'
    CHECK (state IN ('waiting', 'live', 'ended'));
ALTER TABLE sessions ADD COLUMN started_at INTEGER;
ALTER TABLE sessions ADD COLUMN ended_at INTEGER;
-- Argon2id PHC string; NULL when the interview has no password.
ALTER TABLE sessions ADD COLUMN password_hash TEXT;
ALTER TABLE sessions ADD COLUMN editing_locked INTEGER NOT NULL DEFAULT 0
    CHECK (editing_locked IN (0, 1));
ALTER TABLE sessions ADD COLUMN runs_enabled INTEGER NOT NULL DEFAULT 1
    CHECK (runs_enabled IN (0, 1));
-- Participant tokens issued so far: the next one's number picks its colour.
ALTER TABLE sessions ADD COLUMN tokens_issued INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET started_at = created_at;

-- Two documents per interview: 0 = the code, 1 = the interviewers' private notes.
ALTER TABLE doc_updates ADD COLUMN doc INTEGER NOT NULL DEFAULT 0 CHECK (doc IN (0, 1));
CREATE INDEX doc_updates_session_doc_seq ON doc_updates (session_id, doc, seq);
DROP INDEX doc_updates_session_seq;

-- SQLite cannot change a primary key in place: the snapshots move to a new table.
CREATE TABLE doc_snapshots_v2 (
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    doc         INTEGER NOT NULL DEFAULT 0 CHECK (doc IN (0, 1)),
    upto_seq    INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, doc, upto_seq)
) STRICT;
INSERT INTO doc_snapshots_v2 (session_id, doc, upto_seq, data, created_at)
    SELECT session_id, 0, upto_seq, data, created_at FROM doc_snapshots;
DROP TABLE doc_snapshots;
ALTER TABLE doc_snapshots_v2 RENAME TO doc_snapshots;

-- Users an interviewer removed: their tokens are refused from then on.
CREATE TABLE removed_users (
    session_id  BLOB    NOT NULL REFERENCES sessions (id),
    user_id     BLOB    NOT NULL,
    removed_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
) STRICT;
