-- Duet schema, version 3 (PostgreSQL): the interview record — activity events, webhook deliveries,
-- and erasure.
--
-- Edits stay append-only: no `doc_updates` row is ever rewritten (UPDATE and TRUNCATE are refused
-- as before). Erasing a whole interview (`Storage::erase_session`: `DELETE /api/session/<code>` and
-- the retention job) is the ONE deletion path: it deletes every row of that interview from every
-- table in one transaction, after setting the transaction-local flag `duet.erasing`. The trigger
-- below lets a DELETE of `doc_updates` through only while that flag is set; any other DELETE is
-- refused as before.

CREATE OR REPLACE FUNCTION doc_updates_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('duet.erasing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'doc_updates is append-only (% refused)', TG_OP;
END;
$$;

-- Activity events (joins, leaves, language changes, start/end, pastes, focus changes, ...), like
-- the history: only ever inserted, deleted only with their interview. `data` is a JSON object as
-- text (text, not jsonb, so it is returned exactly as written, as on SQLite).
CREATE TABLE events (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    user_id     uuid,
    user_name   text        NOT NULL,
    kind        text        NOT NULL,
    data        text        NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX events_session_at ON events (session_id, at, seq);

-- Webhook deliveries still to be made (an outbox): written in the same transaction as the change
-- they announce, claimed by a dispatcher (`FOR UPDATE SKIP LOCKED`, so replicas never claim the same
-- row together) and deleted once delivered or given up. They go with their interview when it is
-- erased.
CREATE TABLE webhook_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id      uuid        NOT NULL REFERENCES sessions (id),
    kind            text        NOT NULL,
    at              timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
CREATE INDEX webhook_outbox_session ON webhook_outbox (session_id);

-- The retention job looks for interviews ended (or created) before a cutoff.
CREATE INDEX sessions_ended_at ON sessions (ended_at);
CREATE INDEX sessions_created_at ON sessions (created_at);
-- Erasure and the "untouched since" check find an interview's rows by session.
CREATE INDEX doc_snapshots_session ON doc_snapshots (session_id);
CREATE INDEX runs_session ON runs (session_id);
