-- Duet schema, version 2 (PostgreSQL): interviews, not just pads.
--
-- The document history stays append-only (the V1 triggers still refuse UPDATE, DELETE and TRUNCATE
-- of `doc_updates`; adding a column with a default fires none of them). Erasing a whole interview,
-- with its history, will be the only deletion path (issue 15 adds it); nothing else deletes.

-- The lifecycle: `waiting` (a lobby) → `live` → `ended`. Interviews that existed before were live
-- from their creation.
ALTER TABLE sessions
    ADD COLUMN state          text        NOT NULL DEFAULT 'live'
        CONSTRAINT sessions_state_check CHECK (state IN ('waiting', 'live', 'ended')),
    ADD COLUMN started_at     timestamptz,
    ADD COLUMN ended_at       timestamptz,
    -- Argon2id PHC string; NULL when the interview has no password.
    ADD COLUMN password_hash  text,
    -- Interviewer controls: candidates' edits refused / candidates' runs allowed.
    ADD COLUMN editing_locked boolean     NOT NULL DEFAULT false,
    ADD COLUMN runs_enabled   boolean     NOT NULL DEFAULT true,
    -- Participant tokens issued so far: the next one's number picks its colour.
    ADD COLUMN tokens_issued  bigint      NOT NULL DEFAULT 0;
UPDATE sessions SET started_at = created_at;

-- Two documents per interview: 0 = the code, 1 = the interviewers' private notes.
ALTER TABLE doc_updates
    ADD COLUMN doc smallint NOT NULL DEFAULT 0
        CONSTRAINT doc_updates_doc_check CHECK (doc IN (0, 1));
-- Loading and replaying read one document's updates in `seq` order.
CREATE INDEX doc_updates_session_doc_seq ON doc_updates (session_id, doc, seq);
DROP INDEX doc_updates_session_seq;

ALTER TABLE doc_snapshots
    ADD COLUMN doc smallint NOT NULL DEFAULT 0
        CONSTRAINT doc_snapshots_doc_check CHECK (doc IN (0, 1));
ALTER TABLE doc_snapshots
    DROP CONSTRAINT doc_snapshots_pkey,
    ADD PRIMARY KEY (session_id, doc, upto_seq);

-- Users an interviewer removed: their tokens are refused from then on.
CREATE TABLE removed_users (
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    user_id     uuid        NOT NULL,
    removed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);
