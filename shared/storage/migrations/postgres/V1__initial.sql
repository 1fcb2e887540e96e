-- Duet schema, version 1 (PostgreSQL).
--
-- Sessions are never deleted and the document history is append-only: `doc_updates` rows are only ever
-- inserted (triggers below refuse UPDATE, DELETE and TRUNCATE), so an interview can be replayed from its
-- first keystroke. Snapshots only speed up loading; they never replace updates.

CREATE TABLE sessions (
    id          uuid        PRIMARY KEY,
    code        text        NOT NULL,
    title       text        NOT NULL DEFAULT '',
    language    text        NOT NULL,
    text        text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- The storage layer maps a violation of this constraint (by name) to `CodeTaken`.
    CONSTRAINT sessions_code_key UNIQUE (code)
);

CREATE TABLE doc_updates (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    author      uuid,
    data        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Loading and replaying read one session's updates in `seq` order.
CREATE INDEX doc_updates_session_seq ON doc_updates (session_id, seq);

CREATE FUNCTION doc_updates_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'doc_updates is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER doc_updates_no_update_or_delete
    BEFORE UPDATE OR DELETE ON doc_updates
    FOR EACH STATEMENT EXECUTE FUNCTION doc_updates_append_only();
CREATE TRIGGER doc_updates_no_truncate
    BEFORE TRUNCATE ON doc_updates
    FOR EACH STATEMENT EXECUTE FUNCTION doc_updates_append_only();

CREATE TABLE doc_snapshots (
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    -- The snapshot contains every update of the session with `seq <= upto_seq`.
    upto_seq    bigint      NOT NULL,
    data        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, upto_seq)
);

-- Live hubs: a hub refreshes `expires_at` with its heartbeat; participants of a hub whose heartbeat
-- lapsed (crashed, partitioned) stop counting as connected without anyone having to clean up.
CREATE TABLE hubs (
    hub_id      text        PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE participants (
    id          uuid        PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    user_id     uuid        NOT NULL,
    name        text        NOT NULL,
    color       text        NOT NULL,
    -- Not a foreign key: a hub may add participants before its first heartbeat lands.
    hub_id      text        NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX participants_session ON participants (session_id);
CREATE INDEX participants_hub ON participants (hub_id);

CREATE TABLE runs (
    id          uuid        PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    user_id     uuid,
    user_name   text        NOT NULL,
    language    text        NOT NULL,
    output      text        NOT NULL,
    status      text        NOT NULL,
    duration_ms bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_session_created ON runs (session_id, created_at DESC);
