-- intentkit schema v1. Timestamps are Unix milliseconds (UTC). Each intent row keeps the
-- columns that queries filter on, plus the whole snapshot as JSON in `body`.

CREATE TABLE intents (
    id               TEXT PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    fingerprint      TEXT NOT NULL,
    provider         TEXT NOT NULL,
    account          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    provider_ref     TEXT,
    expires_at       INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    body             TEXT NOT NULL
);

-- One provider intent maps to exactly one of ours.
CREATE UNIQUE INDEX intents_provider_ref ON intents (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;
-- Expiry and reconciliation sweeps walk the open intents by deadline, not the whole table.
CREATE INDEX intents_status_expiry ON intents (status, expires_at);
CREATE INDEX intents_created ON intents (created_at);

CREATE TABLE intent_history (
    id                 INTEGER PRIMARY KEY,
    intent_id          TEXT NOT NULL REFERENCES intents (id),
    from_status        TEXT,
    to_status          TEXT NOT NULL,
    cause              TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    provider_event_id  TEXT
);
CREATE INDEX intent_history_intent ON intent_history (intent_id, id);

-- Provider deliveries already applied (or recorded as anomalies): a redelivery is a duplicate.
CREATE TABLE provider_events (
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    intent_id    TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
) WITHOUT ROWID;

-- AUTOINCREMENT: a seq is never reused, even after the newest row is deleted.
CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    intent_id     TEXT NOT NULL,
    business_key  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    payload       TEXT NOT NULL
);

CREATE TABLE consumers (
    name        TEXT PRIMARY KEY,
    acked_seq   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
