-- intentkit schema v3: parked events carry the account that received them, what they prove on
-- their own, and a dedup key, so that they can be bounded per account; provider sweeps keep
-- their cursors here instead of in one process's memory.

CREATE TABLE parked_events_v3 (
    id           INTEGER PRIMARY KEY,
    provider     TEXT NOT NULL,
    -- NULL only for rows parked before v3, whose receiving account is unknown: they are
    -- confirmed with the status API of the intent's own account, like an unsigned claim.
    account      TEXT,
    lookup_key   TEXT NOT NULL,
    -- Set when the claim's intent is known but the provider has not confirmed it yet.
    intent_id    TEXT,
    proof        TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    event        TEXT NOT NULL
);
CREATE UNIQUE INDEX parked_events_dedup
    ON parked_events_v3 (provider, COALESCE(account, ''), lookup_key, dedup_key);

INSERT INTO parked_events_v3
        (id, provider, account, lookup_key, intent_id, proof, dedup_key, received_at, event)
    SELECT id, provider, NULL, lookup_key, NULL, 'claim', 'legacy:' || id, received_at, event
    FROM parked_events;
DROP TABLE parked_events;
ALTER TABLE parked_events_v3 RENAME TO parked_events;

CREATE INDEX parked_events_lookup ON parked_events (provider, lookup_key);
-- The per-account cap counts, and the TTL prunes, by account and age.
CREATE INDEX parked_events_account ON parked_events (provider, account, received_at);
CREATE INDEX parked_events_intent ON parked_events (intent_id) WHERE intent_id IS NOT NULL;

-- Where a provider sweep stopped (e.g. the missed-webhook replay), per account.
CREATE TABLE sweep_cursors (
    provider    TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, account, name)
) WITHOUT ROWID;

-- Provider deliveries are deduplicated per intent: a redelivery always names the intent the
-- first delivery did, and an event id seen for one intent must never silence a delivery for
-- another (an id used first by someone holding another account's secret, say).
CREATE TABLE provider_events_v3 (
    provider     TEXT NOT NULL,
    intent_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, intent_id, event_id)
) WITHOUT ROWID;
INSERT INTO provider_events_v3 (provider, intent_id, event_id, received_at)
    SELECT provider, intent_id, event_id, received_at FROM provider_events;
DROP TABLE provider_events;
ALTER TABLE provider_events_v3 RENAME TO provider_events;
