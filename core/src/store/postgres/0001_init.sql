-- intentkit on PostgreSQL, schema v1: the SQLite schema at its v4, plus what several instances
-- on one database need (the outbox head, leases). Timestamps are Unix milliseconds (UTC).

CREATE TABLE intents (
    id               TEXT PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    fingerprint      TEXT NOT NULL,
    provider         TEXT NOT NULL,
    account          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    provider_ref     TEXT,
    expires_at       BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    body             TEXT NOT NULL,
    reconcile_until  BIGINT,
    reconcile_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX intents_provider_ref ON intents (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;
CREATE INDEX intents_created ON intents (created_at);
CREATE INDEX intents_provider_account_created ON intents (provider, account, created_at, id);
CREATE INDEX intents_account_status_expiry ON intents (provider, account, status, expires_at);
CREATE INDEX intents_reconcile ON intents (provider, account, reconcile_until, reconcile_at)
    WHERE reconcile_until IS NOT NULL;

CREATE TABLE intent_history (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    intent_id          TEXT NOT NULL REFERENCES intents (id),
    from_status        TEXT,
    to_status          TEXT NOT NULL,
    cause              TEXT NOT NULL,
    at                 BIGINT NOT NULL,
    provider_event_id  TEXT
);
CREATE INDEX intent_history_intent ON intent_history (intent_id, id);

-- Provider deliveries already applied (or recorded as anomalies), per intent.
CREATE TABLE provider_events (
    provider     TEXT NOT NULL,
    intent_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, intent_id, event_id)
);

-- The outbox. `seq`, the consumers' cursor, is NULL while the writing transaction runs and is
-- assigned from `outbox_head` as that transaction's last step, under the head row's lock, so
-- seqs become visible in commit order: a reader never sees seq N+1 before seq N
-- (store/postgres.rs, "The outbox's order").
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq           BIGINT UNIQUE,
    event_id      TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    intent_id     TEXT NOT NULL,
    business_key  TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    payload       TEXT NOT NULL
);
CREATE TABLE outbox_head (
    one  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq  BIGINT NOT NULL
);
INSERT INTO outbox_head (one, seq) VALUES (TRUE, 0);

CREATE TABLE consumers (
    name        TEXT PRIMARY KEY,
    acked_seq   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE parked_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     TEXT NOT NULL,
    account      TEXT,
    lookup_key   TEXT NOT NULL,
    intent_id    TEXT,
    proof        TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    event        TEXT NOT NULL
);
CREATE UNIQUE INDEX parked_events_dedup
    ON parked_events (provider, COALESCE(account, ''), lookup_key, dedup_key);
CREATE INDEX parked_events_lookup ON parked_events (provider, lookup_key);
CREATE INDEX parked_events_account ON parked_events (provider, account, received_at);
CREATE INDEX parked_events_intent ON parked_events (intent_id) WHERE intent_id IS NOT NULL;

CREATE TABLE sweep_cursors (
    provider    TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, account, name)
);

-- Background work claimed by one instance at a time: a lease per (job, account), taken for a
-- bounded time; `fence` grows each time it changes hands.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    fence       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
