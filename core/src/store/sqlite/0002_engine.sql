-- intentkit schema v2: what the engine needs beside the lifecycle.

-- Provider events that arrived before we knew the intent they name (the webhook beat the
-- create response). Kept, never lost, and applied when the intent learns that reference.
CREATE TABLE parked_events (
    id           INTEGER PRIMARY KEY,
    provider     TEXT NOT NULL,
    lookup_key   TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    event        TEXT NOT NULL
);
CREATE INDEX parked_events_lookup ON parked_events (provider, lookup_key);

-- The list API pages by (created_at, id) and filters by provider and account.
CREATE INDEX intents_provider_account_created ON intents (provider, account, created_at, id);
