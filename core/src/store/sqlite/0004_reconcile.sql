-- intentkit schema v4: which intents a reconciliation sweep must still cover, and until when
-- (lifecycle::reconcile_until), so that a sweep costs the windows holding open work, not the
-- history.

ALTER TABLE intents ADD COLUMN reconcile_until INTEGER;
-- Where a sweep's window goes: when the provider's side was created (the hand-off), which
-- recovery after an outage may make long after the intent was recorded.
ALTER TABLE intents ADD COLUMN reconcile_at INTEGER;
UPDATE intents SET reconcile_at = created_at;

-- Rows written before v4: every status the provider may still change stays covered for the
-- horizon (seven days after creation). An expiry's cause is not a column; covering it is the
-- safe side.
UPDATE intents SET reconcile_until = created_at + 604800000
    WHERE status IN ('pending', 'payer_confirmed', 'late_arrival', 'canceled', 'expired');

CREATE INDEX intents_reconcile ON intents (provider, account, reconcile_until, reconcile_at)
    WHERE reconcile_until IS NOT NULL;

-- Maintenance runs per account: its expiry and recovery scans filter by account.
CREATE INDEX intents_account_status_expiry ON intents (provider, account, status, expires_at);
